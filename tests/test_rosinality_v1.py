"""rosinality/style-based-gan-pytorch .model files (StyleGAN v1 port): both layouts load, the
trained size is found, and the images match the port's own code (tests/fixtures/rosinality-v1)."""
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import every_method
from latentatlas.models.registry import load_generator

RV1 = Path(__file__).parent / "fixtures" / "rosinality-v1"
FILES = ["rosinality-v1-train_step-6.model", "rosinality-v1-000100.model"]


@pytest.mark.parametrize("name", FILES)
def test_rosinality_v1_matches_the_port(name):
    ref = np.load(RV1 / "rosinality-v1.ref.npz")
    m = load_generator(str(RV1 / name))
    assert m.info.arch == "stylegan1" and m.img_resolution == 128 and m.num_ws == 12 and m.D is None
    z = torch.from_numpy(ref["z"])
    with torch.no_grad():
        w = m.mapping(z)
        img0 = m.synthesis(w, noise_mode="none")
        for i, r in enumerate(m.G.synthesis.resolutions):      # the port's noise, as its reference used it
            blk = getattr(m.G.synthesis, f"b{r}")
            for layer in (blk.conv0, blk.conv1):
                layer.noise_const.copy_(torch.from_numpy(ref[f"noise{i}"]))
        img = m.synthesis(w)
    assert np.abs(w.numpy() - ref["w"]).max() <= 1e-5
    assert np.abs(img0.numpy() - ref["img_nonoise"]).max() <= 1e-4
    assert np.abs(img.numpy() - ref["img"]).max() <= 1e-4
    assert np.abs(ref["img"] - ref["img_nonoise"]).max() > 0.5          # the noise weights are exercised


# 128 px: ~25-40 s on 2 cores, so slow (the 32-px v1 TF file runs every method in the default suite)
@pytest.mark.slow
def test_every_method_on_rosinality_v1(tmp_path, capsys, monkeypatch):
    every_method(RV1 / FILES[1], None, tmp_path, capsys, monkeypatch, "rosinality-v1")
