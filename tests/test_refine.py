"""Refinement after inversion (pivotal tuning): it lowers the reconstruction error, its delta file
round-trips (and is refused for other weights), edit/walk use it, and it runs on a conditional
and a StyleGAN3 model and refuses Z-only ones in one line."""
import json
import os
from pathlib import Path

import pytest
import torch

from conftest import tiny_stylegan2
from latentatlas.cli.main import main
from latentatlas.errors import LatentAtlasError
from latentatlas.imageio import save_png
from latentatlas.inversion.refine import RefineConfig, apply_delta, delta_of, load_delta, load_refined, refine, save_delta
from latentatlas.models.registry import load_generator, save_model

R2 = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures" / "round2"


@pytest.fixture
def tiny_file(tmp_path):
    m = tiny_stylegan2()
    return save_model(tmp_path / "tiny.pt", arch="stylegan2", config=m.cfg.to_dict(), G=m.G, D=m.D)


def _targets(m, n=3):
    with torch.no_grad():        # targets the model cannot quite reach from the pivot: other samples, perturbed
        return (m(m.sample_z(n, 50)) + 0.2 * torch.randn(n, m.img_channels, m.img_resolution, m.img_resolution,
                                                         generator=torch.Generator().manual_seed(0))).clamp(-1, 1)


def test_refinement_lowers_the_error_and_its_delta_round_trips(tiny_file, tmp_path):
    m = load_generator(str(tiny_file))
    x = _targets(m)
    ws = m.broadcast(m.mapping(m.sample_z(3, 0)))
    res = refine(m, x, ws, RefineConfig(steps=25, lr=3e-3, perceptual="none"))
    err0 = (res.before - x).square().flatten(1).mean(1)
    err1 = (res.images - x).square().flatten(1).mean(1)
    assert (err1 < err0).all() and res.losses[-1] < res.losses[0]
    f = save_delta(tmp_path / "a.refine.safetensors", delta_of(res, 1), model=m, cfg=RefineConfig(steps=25))
    r = load_refined(m, f)
    with torch.no_grad():
        assert torch.allclose(r.synthesis(ws[1:2]), res.images[1:2], atol=1e-5)
        assert torch.allclose(m.synthesis(ws[1:2]), res.before[1:2], atol=1e-5)   # the base model is untouched
    assert r.weights_hash() != m.weights_hash() and r.info.extra["refined"]
    # another model's weights: refused in one line
    other = tiny_stylegan2()
    with torch.no_grad():
        other.G.synthesis.b4.conv1.weight.add_(1)
    with pytest.raises(LatentAtlasError, match="made for weights"):
        load_delta(f, other)
    (tmp_path / "junk.safetensors").write_bytes(b"not a file")
    with pytest.raises(LatentAtlasError, match="not a readable refinement"):
        load_delta(tmp_path / "junk.safetensors", m)


def test_locality_keeps_far_codes_closer_to_the_base(tiny_file):
    m = load_generator(str(tiny_file))
    x, ws = _targets(m, 2), m.broadcast(m.mapping(m.sample_z(2, 0)))
    far = m.broadcast(m.mapping(m.sample_z(16, 99)))

    def drift(locality):
        res = refine(m, x, ws, RefineConfig(steps=20, lr=3e-3, perceptual="none", locality=locality, seed=1))
        r = apply_delta(m, delta_of(res, 0))
        with torch.no_grad():
            return float((r.synthesis(far) - m.synthesis(far)).square().mean())
    assert drift(10.0) < drift(0.0)


def test_invert_refine_cli_and_edit_with_the_delta(tiny_file, tmp_path, capsys):
    m = load_generator(str(tiny_file))
    src = tmp_path / "imgs"
    src.mkdir()
    for i, img in enumerate(_targets(m, 2)):
        save_png(img, src / f"im{i}.png")
    out = tmp_path / "inv"
    assert main(["invert", str(src), "--model", str(tiny_file), "--steps", "10", "--out", str(out), "--min-psnr", "0",
                 "--refine", "15", "--perceptual", "none", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["refine"]["refined"] == 2
    rec = json.loads((out / "im0.json").read_text())
    assert rec["refine"]["psnr_after"] > rec["refine"]["psnr_before"]
    assert (out / "im0.refine.safetensors").exists() and (out / "im0.refined.png").exists()
    # refine again: nothing left to do
    assert main(["refine", str(out), "--model", str(tiny_file), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["refined"] == 0
    # edit with the refined generator
    assert main(["directions", "--method", "ganspace", "--model", str(tiny_file), "--k", "2", "--n", "64",
                 "--out", str(tmp_path / "g.npz")]) == 0
    assert main(["edit", str(out / "im0.npz"), "--model", str(tiny_file), "--direction", f"{tmp_path / 'g.npz'}:0",
                 "--refined", str(out / "im0.refine.safetensors"), "--out", str(tmp_path / "e.png")]) == 0
    assert (tmp_path / "e.png").exists()
    capsys.readouterr()


def test_refine_refuses_z_only_models_in_one_line(tmp_path, capsys):
    assert main(["refine", str(tmp_path), "--model", "fashion-wgangp"]) == 2
    err = capsys.readouterr().err
    assert "no mapping network" in err and len(err.strip().splitlines()) == 1


@pytest.mark.skipif(not R2.is_dir() and not os.environ.get("CI"), reason="../shared/fixtures not present")
@pytest.mark.parametrize("name,cls", [("c1-sg2ada-64-cond.pkl", 3), ("c4t-sg3-T-32.pkl", None)])
def test_refinement_on_conditional_and_stylegan3(name, cls):
    m = load_generator(str(R2 / name))
    if cls is not None:
        m.set_class(cls)
    x = _targets(m, 2)
    ws = m.broadcast(m.mapping(m.sample_z(2, 0)))
    res = refine(m, x, ws, RefineConfig(steps=6, lr=3e-3, perceptual="none"))
    assert ((res.images - x).square().mean() < (res.before - x).square().mean())
    r = apply_delta(m, delta_of(res, 0))
    with torch.no_grad():
        assert torch.allclose(r.synthesis(ws[:1]), res.images[:1], atol=1e-4)


def test_serve_with_a_refined_generator_takes_the_base_latents(tiny_file, tmp_path):
    from latentatlas.serve.explorer import Explorer
    from latentatlas.serve.jobs import latent_npz
    m = load_generator(str(tiny_file))
    x, ws = _targets(m, 1), m.broadcast(m.mapping(m.sample_z(1, 0)))
    res = refine(m, x, ws, RefineConfig(steps=5, lr=3e-3, perceptual="none"))
    f = save_delta(tmp_path / "a.refine.safetensors", delta_of(res, 0), model=m, cfg=RefineConfig(steps=5))
    ex = Explorer(load_refined(m, f))
    try:
        from latentatlas.serve.jobs import Job
        job = Job("x", status="done", ws=ws, code=ws)
        npz = latent_npz(job, m)                       # written for the base model
        up = ex.upload_latent(npz)
        assert up.status == "done"
    finally:
        ex.close()
