"""Describe what a checkpoint file holds."""
from __future__ import annotations

from pathlib import Path

from .registry import load_checkpoint_file


def inspect_checkpoint(path) -> dict:
    """Format, architecture, sizes, spaces and discriminator of a checkpoint file (any
    supported format); for NVIDIA pickles also every entry of the snapshot."""
    model = load_checkpoint_file(path)
    n_g = sum(p.numel() for p in model.G.parameters())
    n_d = sum(p.numel() for p in model.D.parameters()) if model.D is not None else 0
    info = {"file": str(Path(path)), "loaded_as": model.info.source, "arch": model.info.arch,
            "z_dim": model.z_dim, "w_dim": model.w_dim, "num_ws": model.num_ws if model.has_mapping else None,
            "resolution": model.img_resolution, "channels": model.img_channels,
            "generator_parameters": n_g, "discriminator": "present" if model.D is not None else "absent",
            "discriminator_parameters": n_d, "minibatch_std": model.has_minibatch_std,
            "spaces": ",".join(model.spaces), "weights_hash": model.weights_hash()}
    if model.has_mapping:
        cfg = model.cfg
        info.update(mapping_layers=cfg.mapping_layers, synthesis_channels=cfg.channels,
                    discriminator_channels=cfg.d_channels, conv_clamp=cfg.conv_clamp)
    if (model.info.extra or {}).get("format") == "nvidia-pkl":
        from .formats import inspect_nvidia_pickle
        info["snapshot"] = inspect_nvidia_pickle(path)
    info.update({k: v for k, v in (model.info.extra or {}).items() if k not in info})
    return info
