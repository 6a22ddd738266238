"""ONNX out (convert FILE OUT.onnx): every generator family's graphs agree with PyTorch under
onnxruntime to <= 1e-4 at batch sizes other than the export's, and the mapping models' W-space
graphs (mapping, synthesis) too."""
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import tiny_stylegan2
from latentatlas.cli.main import main
from latentatlas.models.registry import load_generator, save_model

ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")

R2 = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures" / "round2"
TF = Path(__file__).parent / "fixtures" / "tf"
needs_r2 = pytest.mark.skipif(not R2.is_dir() and not os.environ.get("CI"), reason="../shared/fixtures not present")

FAMILIES = {
    "stylegan2-tiny": None,                                  # conftest's tiny model, exported to a file
    "stylegan1-tf": TF / "tf-sg1-64-lod1.5.pkl",
    "stylegan2-tf-conditional": TF / "tf-ada-cond-32.pkl",
    "stylegan3-t": R2 / "c4t-sg3-T-32.pkl",
    "stylegan3-r": R2 / "c4r-sg3-R-32.pkl",
    "pgan": R2 / "s-pgan-32.pth",
    "biggan": R2 / "s-biggan-32",
    "dcgan": "fashion-wgangp",
    "r3gan-conditional": Path(__file__).parent / "fixtures" / "r3gan" / "r3gan-16-cond.pkl",
}


@pytest.fixture
def tiny_file(tmp_path_factory):
    m = tiny_stylegan2()
    return save_model(tmp_path_factory.mktemp("tiny") / "tiny.pt", arch="stylegan2", config=m.cfg.to_dict(), G=m.G,
                      D=m.D)


def _run(path, **feeds):
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run(None, {k: v.numpy() for k, v in feeds.items()})[0]


# the StyleGAN3 exports take ~30 s each on 2 cores: slow (make test-slow)
@pytest.mark.parametrize("family", [pytest.param(f, marks=[needs_r2] + ([pytest.mark.slow] if "stylegan3" in f else []))
                                    if str(v).startswith(str(R2)) else f for f, v in FAMILIES.items()])
def test_onnx_export_matches_pytorch(family, tmp_path, capsys, tiny_file):
    src = str(tiny_file) if FAMILIES[family] is None else str(FAMILIES[family])
    out = tmp_path / "g.onnx"
    assert main(["convert", src, str(out), "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    m = load_generator(src)
    for n in (1, 4):
        z = m.sample_z(n, seed=3)
        c = torch.nn.functional.one_hot(torch.arange(n) % m.c_dim, m.c_dim).float() if m.conditional else None
        feeds = {"z": z, "c": c} if c is not None else {"z": z}
        with torch.no_grad():
            want = m.synthesis(m.mapping(z, c), noise_mode="const") if m.has_mapping else m.synthesis(z, c)
        assert np.abs(_run(out, **feeds) - want.numpy()).max() <= 1e-4
        if m.has_mapping:
            with torch.no_grad():
                w = m.mapping(z, c)
                ws = m.broadcast(w) + 0.1 * torch.randn(n, m.num_ws, m.w_dim)      # a real W+ code
                img = m.synthesis(ws, noise_mode="const")
            assert np.abs(_run(tmp_path / "g.mapping.onnx", **feeds) - w.numpy()).max() <= 1e-4
            assert np.abs(_run(tmp_path / "g.synthesis.onnx", ws=ws) - img.numpy()).max() <= 1e-4
    assert all(d is not None and d <= 1e-4 for d in res["max_abs_diff"].values())
    meta = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert meta["weights_hash"] == m.weights_hash() and meta["precision"] == "fp32"
    if m.has_mapping:
        assert np.allclose(json.loads(meta["w_avg"]), m.w_avg.numpy(), atol=1e-6)
        assert len(res["files"]) == 3
    else:
        assert len(res["files"]) == 1


def test_onnx_export_refusals(tmp_path, capsys, tiny_file):
    assert main(["convert", str(tiny_file), str(tmp_path / "g.pt"), "--to", "onnx"]) == 2
    assert "written as .onnx" in capsys.readouterr().err
    from latentatlas.errors import LatentAtlasError
    from latentatlas.models.onnx_export import export_onnx
    m = load_generator(str(tiny_file)).set_precision("bf16")
    with pytest.raises(LatentAtlasError, match="fp32"):
        export_onnx(m, tmp_path / "g.onnx", family="stylegan2")
    assert not list(tmp_path.iterdir())            # nothing half-written
