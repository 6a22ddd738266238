"""Putting a checkpoint's tensors into a module: one strict load that every reader uses, with
errors that name the file, the key and what is wrong."""
from __future__ import annotations

import torch

from ..errors import LatentAtlasError


def load_state(module: torch.nn.Module, sd: dict, what: str):
    """Strict state-dict load with an error that names missing/unexpected keys and shape
    mismatches (both shapes)."""
    own = module.state_dict()
    missing = [k for k in own if k not in sd]
    unexpected = [k for k in sd if k not in own]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing keys {missing[:5]}{' ...' if len(missing) > 5 else ''}")
        if unexpected:
            parts.append(f"unexpected keys {unexpected[:5]}{' ...' if len(unexpected) > 5 else ''}")
        raise LatentAtlasError(f"{what}: wrong architecture: {'; '.join(parts)}")
    for k, v in own.items():
        t = sd[k]
        if not isinstance(t, torch.Tensor):
            raise LatentAtlasError(f"{what}: entry {k} is a {type(t).__name__}, not a tensor")
        if t.is_floating_point() and not torch.isfinite(t).all():
            raise LatentAtlasError(f"{what}: tensor {k} holds NaN or infinite values")
        if tuple(sd[k].shape) != tuple(v.shape):
            raise LatentAtlasError(f"{what}: shape mismatch for {k}: file has {list(sd[k].shape)}, "
                                   f"model expects {list(v.shape)}")
    module.load_state_dict(sd)
