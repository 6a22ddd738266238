"""Putting a checkpoint's tensors into a module: one strict load that every reader uses, with
errors that name the file, the key and what is wrong, and ``build_checked``: the module a
file's config describes is first built on the ``meta`` device (no memory), its size checked
against ``MAX_PARAMETERS`` and its tensors' names and shapes against the file's, and only then
built for real — a config that declares absurd sizes is refused before memory is touched."""
from __future__ import annotations

import torch

from ..errors import LatentAtlasError

# The largest generator or discriminator a file may describe: 2^31 values (8 GiB at fp32). The
# largest common models are far below (StyleGAN2 config-f 1024 px: 30M in G; BigGAN-deep 512: 56M).
MAX_PARAMETERS = 2 ** 31


def build_checked(factory, sd: dict, what: str, *, max_parameters: int | None = None) -> torch.nn.Module:
    """``factory()`` built and loaded with ``sd`` — after a probe on the meta device has shown that
    its size is sane and that its tensors are the file's (names and shapes)."""
    limit = MAX_PARAMETERS if max_parameters is None else max_parameters
    try:
        with torch.device("meta"):
            probe = factory()
    except (TypeError, ValueError, RuntimeError, NotImplementedError) as e:
        raise LatentAtlasError(f"{what}: the file's configuration does not describe a buildable network "
                               f"({type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''})") from None
    own = probe.state_dict()
    n = sum(t.numel() for t in own.values())
    if n > limit:
        raise LatentAtlasError(f"{what}: its configuration describes {n:,} values (limit {limit:,}); not built")
    _check_names_and_shapes(own, sd, what)
    module = factory()
    load_state(module, sd, what)
    return module


def _check_names_and_shapes(own: dict, sd: dict, what: str):
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
        if tuple(t.shape) != tuple(v.shape):
            raise LatentAtlasError(f"{what}: shape mismatch for {k}: file has {list(t.shape)}, "
                                   f"model expects {list(v.shape)}")


def load_state(module: torch.nn.Module, sd: dict, what: str):
    """Strict state-dict load with an error that names missing/unexpected keys, shape mismatches
    (both shapes) and non-finite tensors."""
    own = module.state_dict()
    _check_names_and_shapes(own, sd, what)
    for k in own:
        t = sd[k]
        # one pass without a mask: a NaN or infinity anywhere makes the float64 sum non-finite (a
        # finite float32 tensor cannot overflow a float64 sum); the exact check only then
        if t.is_floating_point() and not torch.isfinite(t.sum(dtype=torch.float64)) and not torch.isfinite(t).all():
            raise LatentAtlasError(f"{what}: tensor {k} holds NaN or infinite values")
    module.load_state_dict(sd)
