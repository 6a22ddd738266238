"""The precision policy (``latentatlas.precision``): one place resolves auto/fp32/bf16/fp16 for a
device, the model runs synthesis and discriminator at it from a copy cast once, and what must
stay fp32 (``FP32_ISLANDS``) stays fp32. Speed is a benchmark (bench/bench_precision.py), never
asserted here."""
import json

import pytest
import torch

from latentatlas import precision as prec
from latentatlas.cli.main import main
from latentatlas.errors import LatentAtlasError
from latentatlas.models.registry import load_generator


def test_auto_is_bf16_only_where_the_cpu_has_it(monkeypatch):
    monkeypatch.setattr(prec, "cpu_flags", lambda: frozenset({"avx2", "amx_bf16", "amx_tile"}))
    p = prec.resolve("auto", "cpu")
    assert p.name == "bf16" and p.dtype == torch.bfloat16 and "amx_bf16" in p.reason
    monkeypatch.setattr(prec, "cpu_flags", lambda: frozenset({"avx2", "avx512f"}))
    assert prec.resolve("auto", "cpu").name == "fp32"
    assert prec.resolve("bf16", "cpu").name == "bf16" and "not native" in prec.resolve("bf16", "cpu").reason
    assert prec.resolve("fp32", "cpu").record() == {"precision": "fp32", "requested": "fp32", "reason": "fp32 as asked"}
    with pytest.raises(LatentAtlasError, match="unknown precision"):
        prec.resolve("int8", "cpu")


def test_auto_picks_what_this_machine_has():
    native, why = prec.native_bf16("cpu")
    assert prec.resolve("auto", "cpu").name == ("bf16" if native else "fp32"), why


@pytest.mark.parametrize("name", ["fashion-stylegan2", "fashion-wgangp"])
def test_bf16_images_are_fp32_tensors_close_to_fp32_and_the_islands_stay_fp32(name):
    m = load_generator(name)
    z = m.sample_z(32, 0)
    with torch.no_grad():
        ref = m(z)
        w_ref = m.mapping(z) if m.has_mapping else None
        s_ref = m.score(ref)
        wh = m.weights_hash()
        m.set_precision("bf16")
        low = m(z)
        assert low.dtype == torch.float32 and m.score(ref).dtype == torch.float32
        d = (low - ref).abs()
        assert float(d.mean()) < 0.01 and float(d.max()) < 0.25          # bf16 keeps 8 bits of mantissa
        assert float((m.score(ref) - s_ref).abs().max()) < 0.1 * float(s_ref.std())
        if w_ref is not None:                                           # the mapping is an fp32 island
            assert torch.equal(m.mapping(z), w_ref)
        assert m.weights_hash() == wh                                   # the fp32 weights stay the model's
        assert all(p.dtype == torch.float32 for p in m.G.parameters())
        with m.fp32("images and features handed back"):
            assert torch.equal(m(z), ref)
        assert m.precision.name == "bf16"
        m.set_precision("fp32")
        assert torch.equal(m(z), ref)                                   # back to exactly the fp32 images
    with pytest.raises(ValueError, match="fp32 islands"):
        m.fp32("somewhere else").__enter__()


def test_ppl_differences_are_taken_in_fp32():
    from latentatlas.metrics.ppl import embedding_ppl
    m = load_generator("fashion-stylegan2")
    with torch.no_grad():
        ws = m.broadcast(m.mapping(m.sample_z(8, 3)))
    ref = embedding_ppl(m, ws, pairs=16, seed=1)
    m.set_precision("bf16")
    assert embedding_ppl(m, ws, pairs=16, seed=1)["ppl"] == ref["ppl"]


def test_inversion_at_bf16_optimises_fp32_latents():
    from latentatlas.inversion import InversionConfig, invert
    m = load_generator("fashion-stylegan2").set_precision("bf16")
    x = m(m.sample_z(2, 5)).detach().clamp(-1, 1)
    res = invert(m, x, InversionConfig(space="wplus", steps=20, init="mean", perceptual="none"))
    assert res.codes.dtype == torch.float32 and res.ws.dtype == torch.float32 and res.images.dtype == torch.float32
    assert torch.isfinite(res.final_loss).all()


def test_cli_precision_is_recorded_in_the_outputs(tmp_path, capsys):
    assert main(["sample", "--model", "fashion-stylegan2", "--n", "4", "--out-dir", str(tmp_path / "s"),
                 "--precision", "bf16", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["precision"]["precision"] == "bf16" and out["precision"]["requested"] == "bf16"
    img = torch.zeros(1, 32, 32)
    from latentatlas.imageio import save_png
    save_png(img, tmp_path / "t.png")
    assert main(["invert", str(tmp_path / "t.png"), "--model", "fashion-stylegan2", "--steps", "3", "--init", "mean",
                 "--precision", "auto", "--out", str(tmp_path / "inv"), "--json"]) in (0, 3)
    rec = json.loads((tmp_path / "inv" / "t.json").read_text())
    assert rec["precision"] == prec.resolve("auto", "cpu").name
    assert main(["sample", "--model", "fashion-stylegan2", "--n", "1", "--out", str(tmp_path / "x.png"),
                 "--precision", "int8"]) == 2


@pytest.mark.slow
def test_compiled_synthesis_gives_the_eager_images():
    """``--compile`` (torch.compile of the synthesis) changes the speed, not the images: at fp32 to
    float rounding, at bf16 within bf16's own spread of the eager bf16 images."""
    m = load_generator("fashion-stylegan2")
    z = m.sample_z(16, 0)
    with torch.no_grad():
        ref = m(z)
        m.set_precision("fp32", compile=True)
        assert float((m(z) - ref).abs().max()) < 1e-4
        m.set_precision("bf16", compile=False)
        eager = m(z)
        m.set_precision("bf16", compile=True)
        comp = m(z)
    assert float((comp - eager).abs().mean()) < 0.01 and m.compiled


def test_training_in_bf16_keeps_fp32_master_weights_and_records_its_recipe():
    from latentatlas.train.run import build_trainer
    tr = build_trainer("stylegan2", seed=0, precision="bf16", r1_every=1)
    real = torch.rand(4, 1, 32, 32) * 2 - 1
    before = [p.detach().clone() for p in tr.G.parameters()]
    logs = [tr.step(real, step, 4 * step) for step in range(2)]
    assert all(v == v and abs(v) < 1e6 for log in logs for v in log.values())        # finite, R1 included
    assert all(p.dtype == torch.float32 for p in [*tr.G.parameters(), *tr.D.parameters(), *tr.G_ema.parameters()])
    assert any(not torch.equal(a, p) for a, p in zip(before, tr.G.parameters()))       # it trained
    assert tr.hparams["precision"] == "bf16" and tr.precision.name == "bf16"
    with pytest.raises(LatentAtlasError, match="unknown precision"):
        build_trainer("stylegan2", precision="int8")
