"""Keyframe interpolation: a video through two or more latents (seeds, saved latents, inverted
images) — slerp in Z (the Gaussian's mass lies on a shell: a straight line between two samples
passes through its improbable middle), lerp in W / W+, lerp in P-norm+ coordinates (II2S's
interpolation space) — rendered with the model's constant noise."""
from __future__ import annotations

import torch

from ..errors import LatentAtlasError
from . import linear, pnorm_plus_interp, slerp

SPACES = ("z", "w", "wplus", "pnorm+", "pnorm+sphere")


def keyframe_path(keys: torch.Tensor, steps: int, space: str, *, atlas=None) -> torch.Tensor:
    """Frames [F, 1, ...] through the keyframes ``keys`` [K, ...] (K ≥ 2), ``steps`` frames per
    segment with the endpoints included, each shared keyframe once: F = (K − 1)(steps − 1) + 1.
    ``space``: z (slerp), w / wplus (lerp), pnorm+ (lerp in P-norm+ coordinates of W+ codes; needs
    the ``atlas``), pnorm+sphere (the density-preserving option: slerp of each row in P-norm+
    coordinates, norms interpolated, so every frame stays on the Gaussian's typical shell)."""
    if space not in SPACES:
        raise LatentAtlasError(f"unknown keyframe space {space!r}; choose from {', '.join(SPACES)}")
    if keys.shape[0] < 2:
        raise LatentAtlasError(f"a keyframe walk needs at least two keyframes, got {keys.shape[0]}")
    if steps < 2:
        raise LatentAtlasError(f"a keyframe walk needs at least 2 frames per segment, got {steps}")
    if space.startswith("pnorm+") and atlas is None:
        raise LatentAtlasError("interpolating in P-norm+ needs the model's atlas (latentatlas fit)")
    frames = []
    for i in range(keys.shape[0] - 1):
        a, b = keys[i:i + 1], keys[i + 1:i + 2]
        if space == "z":
            seg = slerp(a, b, steps)
        elif space.startswith("pnorm+"):
            seg = pnorm_plus_interp(a, b, steps, atlas.pnorm_plus.to(a.device), spherical=space == "pnorm+sphere")
        else:
            seg = linear(a, b, steps)
        frames.append(seg if i == 0 else seg[1:])
    return torch.cat(frames)


@torch.no_grad()
def keyframe_walk(model, keys: torch.Tensor, *, steps: int = 24, space: str = "z", atlas=None) -> torch.Tensor:
    """Images [F, 1, C, H, W] of the walk through ``keys``: z [K, z_dim] for space z, W codes
    [K, w_dim] for w, W+ codes [K, num_ws, w_dim] for wplus and pnorm+."""
    expect = {"z": (model.z_dim,), "w": (model.w_dim,), "wplus": (model.num_ws, model.w_dim),
              "pnorm+": (model.num_ws, model.w_dim), "pnorm+sphere": (model.num_ws, model.w_dim)}.get(space)
    if space != "z" and not model.has_mapping:
        raise LatentAtlasError(f"model '{model.name}' has only a Z space: keyframes interpolate in z")
    if expect is not None and tuple(keys.shape[1:]) != expect:
        raise LatentAtlasError(f"keyframes of shape {list(keys.shape)} do not fit space {space} "
                               f"(expected [K, {', '.join(map(str, expect))}])")
    path = keyframe_path(keys.to(model.device), steps, space, atlas=atlas)
    out = []
    for frame in path:
        if space == "z":
            img = model(frame)
        else:
            img = model.synthesis(model.broadcast(frame) if space == "w" else frame)
        out.append(img.clamp(-1, 1).cpu())
    return torch.stack(out)
