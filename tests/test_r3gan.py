"""R3GAN network pickles (brownvc/R3GAN): the fixtures in tests/fixtures/r3gan (written and
referenced by R3GAN's own code) load and reproduce their references; only allowed classes are
read, as records; every Z-space method runs on them."""
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import every_method
from latentatlas.cli.main import main
from latentatlas.errors import LatentAtlasError
from latentatlas.models.registry import load_generator

R3 = Path(__file__).parent / "fixtures" / "r3gan"
NAMES = ["r3gan-32", "r3gan-16-cond"]


@pytest.mark.parametrize("name", NAMES)
def test_r3gan_reproduces_upstream(name):
    m = load_generator(str(R3 / f"{name}.pkl"))
    ref = np.load(R3 / f"{name}.ref.npz")
    c = torch.from_numpy(ref["c"]) if m.conditional else None
    with torch.no_grad():
        img = m.synthesis(torch.from_numpy(ref["z"]), c)
        d = m.score(torch.from_numpy(ref["img"]), c)
    assert np.abs(img.numpy() - ref["img"]).max() <= 1e-4
    assert np.abs(d.numpy() - ref["d"]).max() <= 1e-3
    assert m.info.arch == "r3gan" and not m.has_mapping
    if m.conditional:          # the label matters
        with torch.no_grad():
            other = m.synthesis(torch.from_numpy(ref["z"]), torch.roll(c, 1, dims=1))
        assert np.abs(other.numpy() - ref["img"]).max() > 0.05


def test_r3gan_file_precision_stages_are_recorded():
    m = load_generator(str(R3 / "r3gan-32.pkl"))
    assert m.info.extra["file_low_precision_stages"] == [2, 3]


def test_r3gan_pickle_with_a_foreign_class_is_refused(tmp_path, capsys):
    raw = (R3 / "r3gan-16-cond.pkl").read_bytes()
    bad = raw.replace(b"BiasedActivationCUDA", b"BiasedActivationEvil")    # same length: a class not allowed
    (tmp_path / "bad.pkl").write_bytes(bad)
    with pytest.raises(LatentAtlasError, match="disallowed global R3GAN.FusedOperators.BiasedActivationEvil"):
        load_generator(str(tmp_path / "bad.pkl"))
    (tmp_path / "evil.pkl").write_bytes(pickle.dumps({"G_ema": __import__("os").getcwd}))
    assert main(["sample", "--model", str(tmp_path / "evil.pkl"), "--n", "1", "--out", str(tmp_path / "x.png")]) == 2
    assert "disallowed global" in capsys.readouterr().err


def test_r3gan_converts_and_reads_back(tmp_path):
    a = load_generator(str(R3 / "r3gan-16-cond.pkl"))
    assert main(["convert", str(R3 / "r3gan-16-cond.pkl"), str(tmp_path / "r.safetensors")]) == 0
    b = load_generator(str(tmp_path / "r.safetensors"))
    assert a.weights_hash() == b.weights_hash()
    z = a.sample_z(3, 0)
    with torch.no_grad():
        assert torch.equal(a.synthesis(z, 1), b.synthesis(z, 1))


@pytest.mark.parametrize("name,cls", [("r3gan-32", None), ("r3gan-16-cond", 3)])
def test_every_method_on_r3gan(name, cls, tmp_path, capsys, monkeypatch):
    every_method(R3 / f"{name}.pkl", cls, tmp_path, capsys, monkeypatch, name)
