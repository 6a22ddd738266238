"""Describe what a checkpoint file holds without building a network from it."""
from __future__ import annotations

from pathlib import Path

from .registry import load_checkpoint_file


def inspect_checkpoint(path) -> dict:
    model = load_checkpoint_file(path)
    n_g = sum(p.numel() for p in model.G.parameters())
    n_d = sum(p.numel() for p in model.D.parameters()) if model.D is not None else 0
    return {"file": str(Path(path)), "format": "latentatlas", "arch": model.info.arch,
            "z_dim": model.z_dim, "w_dim": model.w_dim, "num_ws": model.num_ws,
            "resolution": model.img_resolution, "channels": model.img_channels,
            "generator_parameters": n_g, "discriminator": "present" if model.D is not None else "absent",
            "discriminator_parameters": n_d, "minibatch_std": model.has_minibatch_std,
            "spaces": ",".join(model.spaces), "weights_hash": model.weights_hash()}
