"""Inversion around the optimiser: the per-model encoder (training, resume, use as a start) and
editing what was inverted (``edit``)."""
import json
import signal

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import model_and_images
from latentatlas.cli.main import main
from latentatlas.errors import LatentAtlasError
from latentatlas.inversion import InversionConfig, invert
from latentatlas.inversion import encoder as enc_mod
from latentatlas.inversion.encoder import EncoderConfig, load_encoder, train_encoder

CFG = EncoderConfig(steps=12, batch=4, rec_from=0.5, width=8)


def _same_state(a, b):
    sa, sb = torch.load(a, weights_only=True)["net"], torch.load(b, weights_only=True)["net"]
    return all(torch.equal(sa[k], sb[k]) for k in sa)


def test_encoder_trains_resumes_after_sigterm_and_matches_an_uninterrupted_run(tiny_sg2, tmp_path, monkeypatch):
    full = train_encoder(tiny_sg2, tmp_path / "full.pt", CFG)
    assert full["step"] == 12 and full["target"] == "wplus"
    assert full["log"][-1]["rec"] > 0            # the reconstruction term is on in the second half
    calls = {"n": 0}
    real = enc_mod._batch

    def interrupting(*a, **k):
        calls["n"] += 1
        if calls["n"] == 5:
            signal.raise_signal(signal.SIGTERM)   # a session ending: checkpoint after this step
        return real(*a, **k)
    monkeypatch.setattr(enc_mod, "_batch", interrupting)
    part = train_encoder(tiny_sg2, tmp_path / "part.pt", CFG)
    assert part["step"] == 5
    monkeypatch.setattr(enc_mod, "_batch", real)
    done = train_encoder(tiny_sg2, tmp_path / "part.pt", CFG)
    assert done["step"] == 12 and _same_state(tmp_path / "full.pt", tmp_path / "part.pt")
    with pytest.raises(LatentAtlasError, match="another model or configuration"):
        train_encoder(tiny_sg2, tmp_path / "part.pt", EncoderConfig(steps=13, batch=4, width=8))


def test_encoder_starts_an_inversion_in_every_w_space(tiny_sg2, tmp_path):
    path = tmp_path / "e.pt"
    train_encoder(tiny_sg2, path, CFG)
    with torch.no_grad():
        x = tiny_sg2(tiny_sg2.sample_z(3, seed=4)).clamp(-1, 1)
    for space in ("w", "wplus", "pnorm+"):
        res = invert(tiny_sg2, x, InversionConfig(space=space, steps=2, init=f"encoder:{path}"))
        assert res.init_labels[0].startswith("encoder") and torch.isfinite(res.codes).all()
    with pytest.raises(LatentAtlasError, match="predicts W\\+"):
        invert(tiny_sg2, x, InversionConfig(space="z", steps=2, init=f"encoder:{path}"))


def test_encoder_file_checks(tiny_sg2, tmp_path):
    from conftest import tiny_stylegan2
    path = tmp_path / "e.pt"
    train_encoder(tiny_sg2, path, CFG)
    with pytest.raises(LatentAtlasError, match="trained for weights"):
        load_encoder(path, tiny_stylegan2(seed=1))
    (tmp_path / "bad.pt").write_bytes(b"garbage")
    with pytest.raises(LatentAtlasError, match="not a latentatlas encoder"):
        load_encoder(tmp_path / "bad.pt", tiny_sg2)
    with pytest.raises(LatentAtlasError, match="no encoder at"):
        load_encoder(tmp_path / "missing.pt", tiny_sg2)


def test_edit_inverted_latents_cli(tiny_sg2, tmp_path, capsys):
    f, src = model_and_images(tiny_sg2, tmp_path, seed=1)
    assert main(["invert", str(src), "--model", str(f), "--steps", "3", "--out", str(tmp_path / "o"),
                 "--min-psnr", "0", "--json"]) == 0
    capsys.readouterr()
    assert main(["directions", "--method", "ganspace", "--model", str(f), "--k", "3", "--n", "500",
                 "--out", str(tmp_path / "d.npz")]) == 0
    capsys.readouterr()
    out = tmp_path / "strip.png"
    code = main(["edit", str(tmp_path / "o" / "im0.npz"), "--model", str(f), "--direction", f"{tmp_path / 'd.npz'}:1",
                 "--amounts", "-2,0,2", "--rows", "0:3", "--json", "--scale", "1", "--out", str(out)])
    cap = capsys.readouterr()
    assert code == 0, cap.err
    info = json.loads(cap.out)
    assert code == 0 and info["rows"] == [0, 1, 2] and info["amounts"] == [-2.0, 0.0, 2.0]
    # rows by level name (the tiny model's 6 rows in thirds: coarse 0-1, medium 2-3, fine 4-5)
    by_name, by_rows = tmp_path / "named.png", tmp_path / "rows.png"
    common = ["edit", str(tmp_path / "o" / "im0.npz"), "--model", str(f), "--direction", f"{tmp_path / 'd.npz'}:1",
              "--amounts", "-2,0,2", "--json", "--scale", "1"]
    assert main(common + ["--layers", "coarse", "--out", str(by_name)]) == 0
    assert json.loads(capsys.readouterr().out)["rows"] == [0, 1]
    assert main(common + ["--rows", "0:2", "--out", str(by_rows)]) == 0
    capsys.readouterr()
    assert np.array_equal(np.asarray(Image.open(by_name)), np.asarray(Image.open(by_rows)))
    assert main(common + ["--layers", "coarse,fine", "--out", str(tmp_path / "cf.png")]) == 0
    assert json.loads(capsys.readouterr().out)["rows"] == [0, 1, 4, 5]
    for bad in (["--layers", "huge"], ["--layers", "fine", "--rows", "0:2"]):
        assert main(["edit", str(tmp_path / "o" / "im0.npz"), "--model", str(f), "--direction",
                     f"{tmp_path / 'd.npz'}:1", "--out", str(tmp_path / "y.png")] + bad) == 2
    strip = np.asarray(Image.open(out))
    assert strip.shape[1] == 3 * 16 + 4 * 2                     # three columns of 16 px with padding
    cols = [strip[2:18, 2 + i * 18:18 + i * 18].astype(float) for i in range(3)]
    assert np.abs(cols[0] - cols[2]).mean() > 0                  # the edit changes the image
    # amount 0 re-renders the inverted code: the reconstruction written by invert
    rec = np.asarray(Image.open(tmp_path / "o" / "im0.png").convert("L")).astype(float)
    assert np.abs(cols[1] - rec).max() <= 1
    for bad, msg in ((["--amounts", "a,b"], "--amounts"), (["--rows", "5:2"], "--rows"),
                     (["--direction", f"{tmp_path / 'd.npz'}:7"], "out of range")):
        argv = ["edit", str(tmp_path / "o" / "im0.npz"), "--model", str(f), "--direction", f"{tmp_path / 'd.npz'}:1",
                "--out", str(tmp_path / "x.png")]
        i = argv.index(bad[0]) if bad[0] in argv else None
        if i is not None:
            argv[i + 1] = bad[1]
        else:
            argv += bad
        assert main(argv) == 2 and msg in capsys.readouterr().err


def test_videos_of_an_inversion_and_of_an_edit(tiny_sg2, tmp_path, capsys):
    """invert --save-video: target beside the reconstruction over the optimisation; edit --video:
    the strip as an animation (GIF always; MP4 where ffmpeg is found)."""
    from latentatlas.imageio import ffmpeg_exe
    f, src = model_and_images(tiny_sg2, tmp_path, seed=3)
    assert main(["invert", str(src), "--model", str(f), "--steps", "30", "--init", "multi-start:2:8",
                 "--warmup-steps", "5", "--out", str(tmp_path / "o"), "--min-psnr", "0", "--save-video", "gif"]) == 0
    capsys.readouterr()
    with Image.open(tmp_path / "o" / "im1.gif") as g:
        assert g.n_frames >= 10 and g.size[0] > 2 * g.size[1] * 0.9       # target | reconstruction
        g.seek(0)
        first = np.asarray(g.convert("L")).astype(float)
        g.seek(g.n_frames - 1)
        last = np.asarray(g.convert("L")).astype(float)
    s = 128 // 16                                                            # grid scale, 2 px padding
    rec = np.asarray(Image.open(tmp_path / "o" / "im1.png").convert("L").resize((16 * s,) * 2, Image.NEAREST))
    cell = last[2 * s:18 * s, 20 * s:36 * s]                                # right cell: the reconstruction
    assert np.abs(first - last).mean() > 0                                  # the reconstruction moves
    assert np.abs(cell - rec.astype(float)).mean() < 3                      # and ends at the saved result
    assert main(["directions", "--method", "ganspace", "--model", str(f), "--k", "2", "--n", "300",
                 "--out", str(tmp_path / "d.npz")]) == 0
    for suffix in ([".gif", ".mp4"] if ffmpeg_exe() else [".gif"]):
        video = tmp_path / f"edit{suffix}"
        assert main(["edit", str(tmp_path / "o" / "im0.npz"), "--model", str(f), "--direction",
                     f"{tmp_path / 'd.npz'}:0", "--amounts", "-2,-1,0,1,2", "--out", str(tmp_path / "s.png"),
                     "--video", str(video)]) == 0
        assert video.stat().st_size > 0 and (tmp_path / "s.png").is_file()
        if suffix == ".mp4":
            assert video.read_bytes()[4:8] == b"ftyp"
    assert main(["edit", str(tmp_path / "o" / "im0.npz"), "--model", str(f), "--direction", f"{tmp_path / 'd.npz'}:0",
                 "--amounts", "0", "--out", str(tmp_path / "s.png"), "--video", str(tmp_path / "v.avi")]) == 2
    assert "use .gif or .mp4" in capsys.readouterr().err
