"""A real-size smoke test (issue 39 item 6): a narrow 256-px StyleGAN2 and a 256-px StyleGAN (v1)
through load, sample, invert (with the memory probe) and the quick paths — every resolution's code
runs in the default suite in seconds; the full 256/1024-px measurements live in bench/."""
import json

import pytest
import torch

from latentatlas.cli.main import main
from latentatlas.models.registry import load_generator, save_model
from latentatlas.models.stylegan1 import StyleGAN1Config, StyleGAN1Discriminator, StyleGAN1Generator
from latentatlas.models.stylegan2 import StyleGAN2Config, StyleGAN2Discriminator, StyleGAN2Generator

RES = [2 ** i for i in range(2, 9)]


def _file(tmp_path, arch):
    torch.manual_seed(0)
    if arch == "stylegan2":
        cfg = StyleGAN2Config(z_dim=32, w_dim=32, img_resolution=256, img_channels=3, mapping_layers=2,
                              channels={r: 16 if r <= 32 else 8 for r in RES})
        G, D = StyleGAN2Generator(cfg), StyleGAN2Discriminator(cfg)
    else:
        cfg = StyleGAN1Config(z_dim=32, w_dim=32, img_resolution=256, img_channels=3, mapping_layers=2,
                              channels={r: 16 if r <= 32 else 8 for r in RES}, d_channels={r: 8 for r in RES})
        G, D = StyleGAN1Generator(cfg), StyleGAN1Discriminator(cfg)
    return save_model(tmp_path / f"{arch}-256.pt", arch=arch, config=cfg.to_dict(), G=G, D=D)


@pytest.mark.parametrize("arch", ["stylegan2", "stylegan1"])
def test_a_256_px_model_end_to_end(arch, tmp_path, capsys):
    f = _file(tmp_path, arch)
    m = load_generator(str(f))
    assert m.img_resolution == 256 and m.num_ws == 14
    with torch.no_grad():
        img = m(m.sample_z(2, 0))
    assert img.shape == (2, 3, 256, 256) and torch.isfinite(img).all()
    assert main(["sample", "--model", str(f), "--n", "2", "--out-dir", str(tmp_path / "s")]) == 0
    capsys.readouterr()
    assert main(["invert", str(tmp_path / "s"), "--model", str(f), "--steps", "2", "--min-psnr", "0", "--init", "mean",
                 "--out", str(tmp_path / "inv"), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["done"] == 2 and summary["memory"]["per_image_bytes"] > 0
    assert main(["models", "--inspect", str(f)]) == 0
    assert "256" in capsys.readouterr().out
