"""Inversion memory (issue 39 item 5): the memory an image holds for its backward pass is measured
before the work, the batch is cut to what --max-memory holds, and a limit below one image is
refused in one line."""
import json

import pytest
import torch

from conftest import tiny_stylegan2
from latentatlas.cli.main import main
from latentatlas.errors import LatentAtlasError
from latentatlas.imageio import save_png
from latentatlas.inversion import InversionConfig
from latentatlas.inversion.memory import MemoryProbe, fit_batch, parse_size, probe
from latentatlas.models.registry import save_model


def test_probe_counts_activations_not_weights(tiny_sg2):
    p = probe(tiny_sg2, InversionConfig(space="wplus", perceptual="none"))
    weights = sum(x.numel() * 4 for x in tiny_sg2.G.synthesis.parameters())
    assert 0 < p.per_image < 50 * weights
    with_d = probe(tiny_sg2, InversionConfig(space="wplus", perceptual="discriminator"))
    assert with_d.per_image > p.per_image                       # the perceptual network's activations too


def test_fit_batch_and_sizes():
    m = MemoryProbe(per_image=10 * 2 ** 20, fixed=2 ** 20)
    assert fit_batch(m, 101 * 2 ** 20, 32) == 10 and fit_batch(m, 10 ** 12, 32) == 32
    with pytest.raises(LatentAtlasError, match="one image needs"):
        fit_batch(m, 5 * 2 ** 20, 8)
    assert parse_size("8G") == 8 * 2 ** 30 and parse_size("1.5M") == int(1.5 * 2 ** 20) and parse_size("512") == 512
    for bad in ("lots", "-1G", "0"):
        with pytest.raises(LatentAtlasError):
            parse_size(bad)


def test_invert_cuts_its_batch_to_the_memory_limit(tmp_path, capsys):
    m = tiny_stylegan2()
    f = save_model(tmp_path / "tiny.pt", arch="stylegan2", config=m.cfg.to_dict(), G=m.G, D=m.D)
    (tmp_path / "imgs").mkdir()
    with torch.no_grad():
        for i, img in enumerate(m(m.sample_z(4, 2)).clamp(-1, 1)):
            save_png(img, tmp_path / "imgs" / f"{i}.png")
    per = probe(m, InversionConfig(space="wplus"))
    limit = per.batch_bytes(2) + per.per_image // 2                     # room for 2 images, not 3
    assert main(["invert", str(tmp_path / "imgs"), "--model", str(f), "--steps", "3", "--min-psnr", "0",
                 "--max-memory", str(limit), "--out", str(tmp_path / "o"), "--json"]) == 0
    s = json.loads(capsys.readouterr().out)
    assert s["memory"]["batch_size"] == 2 and s["done"] == 4
    assert main(["invert", str(tmp_path / "imgs"), "--model", str(f), "--steps", "3", "--max-memory", "1K",
                 "--out", str(tmp_path / "o2")]) == 2
    err = capsys.readouterr().err
    assert "one image needs" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o2").exists()                               # refused before anything is written


def test_activation_checkpointing_fits_one_image_and_changes_nothing(tmp_path, capsys):
    from latentatlas.inversion import invert
    m = tiny_stylegan2()
    cfg = InversionConfig(space="wplus", steps=4, perceptual="none", init="mean")
    plain = probe(m, cfg)
    assert m.set_checkpointing(True)
    light = probe(m, cfg)
    x = m(m.sample_z(2, 9)).detach().clamp(-1, 1)
    a = invert(m, x, cfg)
    m.set_checkpointing(False)
    b = invert(m, x, cfg)
    assert light.per_image < plain.per_image
    assert torch.allclose(a.ws, b.ws, atol=1e-5)                       # the same optimisation, less memory
    # invert turns it on by itself when one image would not fit, and off afterwards
    f = save_model(tmp_path / "tiny.pt", arch="stylegan2", config=m.cfg.to_dict(), G=m.G, D=m.D)
    (tmp_path / "imgs").mkdir()
    save_png(x[0], tmp_path / "imgs" / "a.png")
    full = probe(m, InversionConfig(space="wplus"))
    m.set_checkpointing(True)
    ck = probe(m, InversionConfig(space="wplus"))
    m.set_checkpointing(False)
    limit = (full.batch_bytes(1) + ck.batch_bytes(1)) // 2
    assert main(["invert", str(tmp_path / "imgs"), "--model", str(f), "--steps", "2", "--min-psnr", "0",
                 "--init", "mean", "--max-memory", str(limit), "--out", str(tmp_path / "o"), "--json"]) == 0
    s = json.loads(capsys.readouterr().out)
    assert s["memory"]["activation_checkpointing"] is True and s["memory"]["batch_size"] == 1
