"""TensorFlow-era network pickles (NVlabs/stylegan, NVlabs/stylegan2, NVlabs/stylegan2-ada TF):
the fixtures in tests/fixtures/tf (written with a stand-in Network class; references from
upstream's legacy.py for StyleGAN2 and from an independent numpy evaluation of the v1 graph,
see its README) load and reproduce their references; nothing from the file executes; every
method runs on a v1 and a StyleGAN2 file."""
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import every_method

from latentatlas.cli.main import main
from latentatlas.errors import LatentAtlasError
from latentatlas.models.readers import tf_pickle
from latentatlas.models.registry import load_generator

TF = Path(__file__).parent / "fixtures" / "tf"
SG2 = ["tf-sg2-skip-32", "tf-sg2-resnet-16-gray", "tf-sg2-orig-16", "tf-ada-cond-32"]
SG1 = ["tf-sg1-128", "tf-sg1-32-gray-lod0.6", "tf-sg1-64-lod1.5"]
CANARY = Path("/tmp/latentatlas-tf-canary")


def _mx(a, b):
    return float(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64)).max())


@pytest.mark.parametrize("name", SG2 + SG1)
def test_tf_pickle_reproduces_its_reference(name):
    m = load_generator(str(TF / f"{name}.pkl"))
    ref = np.load(TF / f"{name}.ref.npz")
    z = torch.from_numpy(ref["z"])
    c = torch.from_numpy(ref["c"]) if "c" in ref and ref["c"].shape[1] else None
    with torch.no_grad():
        ws = m.broadcast(m.mapping(z, c))
        img, img7 = m.synthesis(ws), m.synthesis(m.truncate(ws, 0.7))
        d = m.D(torch.from_numpy(ref["img"]), c) if c is not None else m.D(torch.from_numpy(ref["img"]))
    assert _mx(ws, ref["ws"]) <= 1e-5 and _mx(m.truncate(ws, 0.7), ref["ws_psi07"]) <= 1e-5
    assert _mx(img, ref["img"]) <= 1e-4 and _mx(img7, ref["img_psi07"]) <= 1e-4
    assert _mx(d, ref["d"]) <= 1e-3
    assert m.info.extra["format"] == "tf-pkl"
    assert m.info.arch == ("stylegan1" if name.startswith("tf-sg1") else "stylegan2")


def test_v1_snapshot_mid_fade_in_reads_its_lod():
    m = load_generator(str(TF / "tf-sg1-32-gray-lod0.6.pkl"))
    assert abs(m.cfg.lod - 0.6) < 1e-6 and m.info.extra["tf_truncation"] == {"psi": 0.7, "cutoff": 8}
    m15 = load_generator(str(TF / "tf-sg1-64-lod1.5.pkl"))
    with torch.no_grad():        # at lod 1.5 the 64-px image is the 16/32-px heads' blend up-scaled by 2
        img = m15(m15.sample_z(2, 0))
    assert torch.equal(img[..., 0::2, 0::2], img[..., 1::2, 1::2])
    assert m.p_space_ok and m.num_ws == 8


def test_nothing_in_the_file_executes():
    CANARY.unlink(missing_ok=True)
    for name in SG2 + SG1:
        obj = tf_pickle.read((TF / f"{name}.pkl").read_bytes(), name)
        Gs, _ = tf_pickle.networks(obj, name)
        assert "latentatlas-tf-canary" in Gs.build_module_src      # the canary is in the file ...
        load_generator(str(TF / f"{name}.pkl"))
    assert not CANARY.exists()                                     # ... and never ran


class _Evil:
    def __reduce__(self):
        return (eval, ("1+1",))


class _Network:
    """The stand-in for dnnlib.tflib.network.Network (its pickled state is a dict)."""

    def __getstate__(self):
        return self.__dict__["state"]

    def __setstate__(self, state):
        self.__dict__["state"] = state


@pytest.fixture
def tf_bytes(monkeypatch):
    """Re-writes a TF fixture with one part of its state replaced."""
    import types
    mods = {n: types.ModuleType(n) for n in ("dnnlib", "dnnlib.tflib", "dnnlib.tflib.network")}
    _Network.__module__, _Network.__qualname__ = "dnnlib.tflib.network", "Network"
    mods["dnnlib.tflib.network"].Network = _Network
    for n, mod in mods.items():
        monkeypatch.setitem(__import__("sys").modules, n, mod)

    def make(edit):
        G, D, Gs = pickle.loads((TF / "tf-sg2-resnet-16-gray.pkl").read_bytes())
        edit(Gs.state)
        return pickle.dumps((G, D, Gs), protocol=3)
    return make


@pytest.mark.parametrize("edit,msg", [
    (lambda s: s["static_kwargs"].update(resolution=64), "resolution 64"),
    (lambda s: s["static_kwargs"].update(evil=_Evil()), "disallowed global builtins.eval"),
    (lambda s: s["components"]["synthesis"].state["variables"].append(("ToRGB_lod0/weight", np.zeros(3, np.float32))),
     "revised"),
    (lambda s: s["components"]["mapping"].state["variables"].append(("LabelConcat/weight", np.zeros((2, 32), np.float32))),
     "LabelConcat"),
    (lambda s: s.update(variables="x"), "not a list"),
    (lambda s: s["components"]["mapping"].state.update(variables=[("Dense0/weight", np.array(["a"]))]),
     "not numeric"),
])
def test_hostile_or_unsupported_tf_pickles_fail_in_one_line(tmp_path, capsys, tf_bytes, edit, msg):
    p = tmp_path / "bad.pkl"
    p.write_bytes(tf_bytes(edit))
    with pytest.raises(LatentAtlasError, match=msg):
        load_generator(str(p))
    assert main(["sample", "--model", str(p), "--n", "1", "--out", str(tmp_path / "x.png")]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_v1_converts_to_our_formats_and_back(tmp_path):
    src = TF / "tf-sg1-64-lod1.5.pkl"
    a = load_generator(str(src))
    for out in (tmp_path / "v1.pt", tmp_path / "v1.safetensors"):
        assert main(["convert", str(src), str(out)]) == 0
        b = load_generator(str(out))
        assert b.weights_hash() == a.weights_hash() and b.cfg == a.cfg
        z = a.sample_z(3, 1)
        with torch.no_grad():
            assert torch.equal(a(z), b(z)) and torch.equal(a.score(a(z)), b.score(a(z)))


@pytest.mark.parametrize("name,cls", [("tf-sg1-32-gray-lod0.6", None), ("tf-ada-cond-32", 2)])
def test_every_method_on_tf_pickles(name, cls, tmp_path, capsys, monkeypatch):
    every_method(TF / f"{name}.pkl", cls, tmp_path, capsys, monkeypatch, name)


@pytest.mark.parametrize("name", ["tf-sg1-32-gray-lod0.6", "tf-sg2-resnet-16-gray"])
def test_quick_report_on_tf_pickles(name, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert main(["report", "--model", str(TF / f"{name}.pkl"), "--out", str(tmp_path / "rep"), "--n", "8",
                 "--profile", "quick"]) == 0, capsys.readouterr().err
    html = (tmp_path / "rep" / "index.html").read_text()
    assert "samples.png" in html and "section not available" not in html
