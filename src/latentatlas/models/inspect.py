"""Describe what a checkpoint holds, and which of latentatlas's methods apply to a model.

``capabilities(model)`` is the one place that knows which method runs on which model: the
README's method-by-family table, ``models --inspect`` and the tests read it. Each entry is
``None`` when the method applies, else the one-line reason it does not.
"""
from __future__ import annotations

from pathlib import Path

from .readers.nvidia import inspect as inspect_nvidia
from .readers.r3gan import inspect as inspect_r3gan
from .readers.tf_pickle import inspect as inspect_tf
from .registry import family_of, load_checkpoint_file, read_pickle

METHODS = ("sample", "truncation", "p-norm atlas", "pca-log", "clusters", "diamond", "diamond walk",
           "invert z", "invert w/w+", "invert p-norm+", "ganspace", "sefa", "dp-lase", "walks")


def capabilities(model) -> dict[str, str | None]:
    """method -> None (applies) or the reason it does not apply to ``model``."""
    no_w = None if model.has_mapping else "no W space (Z-only generator)"
    no_p = no_w or (None if model.p_space_ok else "mapping does not end in LeakyReLU(0.2): no P space")
    no_d = None if model.has_discriminator else "no discriminator"
    no_mbstd = no_d or (None if model.has_minibatch_std else "discriminator has no minibatch-std layer")
    no_layers = None if model.layer_names else "no named layers to split G at"
    has_styles = model.has_mapping and hasattr(model.G.synthesis, "layer_names")
    return {
        "sample": None,
        "truncation": None,           # ψ toward w̄ in W; resampling threshold t in Z
        "p-norm atlas": no_p,
        "pca-log": no_p,
        "clusters": no_w,
        "diamond": no_mbstd,
        "diamond walk": None,
        "invert z": None,
        "invert w/w+": no_w,
        "invert p-norm+": no_p,
        "ganspace": None if (model.has_mapping or model.layer_names) else "no W space and no named layers",
        "sefa": None if has_styles else "no style (affine) layers",
        "dp-lase": no_layers,
        "walks": None,
    }


def inspect_checkpoint(path) -> dict:
    """Family, format, configuration, sizes, spaces, discriminator and the methods that apply,
    for a checkpoint file or model folder of any supported format."""
    model = load_checkpoint_file(path)
    n_g = sum(p.numel() for p in model.G.parameters())
    n_d = sum(p.numel() for p in model.D.parameters()) if model.D is not None else 0
    info = {"file": str(Path(path)), "family": family_of(model), "loaded_as": model.info.source,
            "z_dim": model.z_dim, "w_dim": model.w_dim, "num_ws": model.num_ws if model.has_mapping else None,
            "c_dim": model.c_dim, "resolution": model.img_resolution, "channels": model.img_channels,
            "generator_parameters": n_g, "discriminator": "present" if model.D is not None else "absent",
            "discriminator_parameters": n_d, "minibatch_std": model.has_minibatch_std,
            "spaces": ",".join(model.spaces), "layers": ",".join(model.layer_names),
            "weights_hash": model.weights_hash()}
    cfg = getattr(model.G, "cfg", None)
    if cfg is not None and hasattr(cfg, "to_dict"):
        info["config"] = {k: v for k, v in cfg.to_dict().items() if k not in ("layers", "d_config")}
    caps = capabilities(model)
    info["methods"] = ", ".join(k for k, v in caps.items() if v is None)
    info["not applicable"] = "; ".join(f"{k}: {v}" for k, v in caps.items() if v is not None) or "—"
    fmt = (model.info.extra or {}).get("format")
    if fmt == "nvidia-pkl":
        info["snapshot"] = inspect_nvidia(path)
    elif fmt == "tf-pkl":
        info["snapshot"] = inspect_tf(path)
    elif fmt == "r3gan-pkl":
        info["snapshot"] = inspect_r3gan(path, read_pickle(Path(path).read_bytes(), str(path)))
    info.update({k: v for k, v in (model.info.extra or {}).items() if k not in info})
    return info
