"""Perceptual path length as Karras et al. define it (StyleGAN §4.2; the StyleGAN2-ADA metric):

    PPL = E[ d(G(i(a, b; t)), G(i(a, b; t + ε))) / ε² ],   ε = 1e-4,

with i = slerp in Z (on normalised vectors, as their code) or lerp in W / W+, endpoints (a, b)
drawn from the model's distribution (or given: e.g. pairs of inversion embeddings, or a walk's
two ends), t ~ U(0, 1) ('full') or t = 0 ('end'), and the mean taken after dropping the values
below the 1st and above the 99th percentile. ``d`` is LPIPS where the user has the ``lpips``
package with its weights locally, else the model's discriminator features or the Fashion-MNIST
feature network (``metrics.perceptual.perceptual_fn``); the result names the distance, and only LPIPS
values are comparable with published figures. This is the one implementation: the inversion
evaluation, the direction evaluation and the report call it.
"""
from __future__ import annotations

import contextlib

import numpy as np
import torch

from ..data.fashion import fashion_format
from ..errors import LatentAtlasError
from .perceptual import perceptual_fn

SPACES = ("z", "w", "wplus")


def default_distance(model) -> str:
    try:
        import lpips  # noqa: F401
        return "lpips"
    except ImportError:
        pass
    if fashion_format(model):
        return "fashion-features"
    if model.has_discriminator:
        return "discriminator"
    raise LatentAtlasError(f"PPL needs a perceptual distance for model '{model.name}': install lpips with its "
                           "weights present locally (never downloaded)")


def _slerp_unit(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Karras et al.'s slerp: between the normalised a and b, result normalised. [N, D], t [N, 1]."""
    a = a / a.norm(dim=-1, keepdim=True)
    b = b / b.norm(dim=-1, keepdim=True)
    d = (a * b).sum(-1, keepdim=True).clamp(-1 + 1e-7, 1 - 1e-7)
    p = t * torch.acos(d)
    c = b - d * a
    c = c / c.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    out = a * torch.cos(p) + c * torch.sin(p)
    return out / out.norm(dim=-1, keepdim=True)


def _render(model, codes: torch.Tensor, space: str) -> torch.Tensor:
    if space == "z":
        # normalised directions: scale to the typical norm of the input (a mapping network
        # normalises anyway; a Z-only generator sees a point on its own sphere)
        return model(codes * codes.shape[-1] ** 0.5)
    return model.synthesis(codes)


def _kept(d: np.ndarray) -> np.ndarray:
    lo = np.percentile(d, 1, method="lower")
    hi = np.percentile(d, 99, method="higher")
    return d[(d >= lo) & (d <= hi)]


def filtered_mean(d: np.ndarray) -> float:
    """Mean after dropping values below the 1st and above the 99th percentile (their code)."""
    keep = _kept(d)
    return float(keep.mean()) if keep.size else float("nan")


@torch.no_grad()
def perceptual_path_length(model, *, n: int = 10000, space: str = "w", sampling: str = "full",
                           epsilon: float = 1e-4, distance: str | None = None, endpoints=None,
                           batch_size: int = 100, seed: int = 0, progress: bool = False) -> dict:
    """PPL of ``model`` (see the module). ``endpoints``: a pair of code tensors [N, ...] in
    ``space`` to interpolate between instead of samples (``n`` is then their count). Returns
    ``{"ppl", "sem", "n", "space", "sampling", "epsilon", "distance", "median"}`` (``sem``: the
    standard error of the filtered mean)."""
    from tqdm import tqdm

    if space not in SPACES:
        raise LatentAtlasError(f"PPL space must be one of {', '.join(SPACES)}, got {space!r}")
    if sampling not in ("full", "end"):
        raise LatentAtlasError(f"PPL sampling must be 'full' or 'end', got {sampling!r}")
    if space != "z":
        model.require_mapping(f"PPL in {space}")
    if not 0 < epsilon < 1:
        raise LatentAtlasError("PPL epsilon must be in (0, 1)")
    distance = distance or default_distance(model)
    dist = perceptual_fn(distance, model)
    if dist is None:
        raise LatentAtlasError("PPL needs a perceptual distance, not 'none'")
    g = torch.Generator().manual_seed(seed)
    if endpoints is not None:
        a_all, b_all = (e.to(model.device).float() for e in endpoints)
        if a_all.shape != b_all.shape:
            raise LatentAtlasError(f"PPL endpoints differ in shape: {list(a_all.shape)} vs {list(b_all.shape)}")
        n = a_all.shape[0]
    out = []
    # an fp32 island (precision.FP32_ISLANDS): a 1e-4 step of the latent is below bf16's resolution
    island = model.fp32("PPL's epsilon-differences") if hasattr(model, "fp32") else contextlib.nullcontext()
    with island:
        for i in tqdm(range(0, n, batch_size), disable=not progress, desc="PPL", leave=False):
            m = min(batch_size, n - i)
            if endpoints is not None:
                a, b = a_all[i:i + m], b_all[i:i + m]
            else:
                z = torch.randn(2 * m, model.z_dim, generator=g).to(model.device)
                if space == "z":
                    a, b = z[:m], z[m:]
                else:
                    w = model.mapping(z)
                    a, b = (model.broadcast(w[:m]), model.broadcast(w[m:])) if space == "wplus" else (w[:m], w[m:])
            t = (torch.rand(m, generator=g) if sampling == "full" else torch.zeros(m)).to(model.device)
            t = t.reshape(-1, *([1] * (a.ndim - 1)))
            if space == "z":
                c0, c1 = _slerp_unit(a, b, t), _slerp_unit(a, b, t + epsilon)
            else:
                c0, c1 = a.lerp(b, t), a.lerp(b, t + epsilon)
            imgs = _render(model, torch.cat([c0, c1]), space)
            out.append((dist(imgs[:m], imgs[m:]).double() / epsilon ** 2).cpu())
    d = torch.cat(out).numpy()
    keep = _kept(d)
    sem = float(keep.std(ddof=1) / np.sqrt(keep.size)) if keep.size > 1 else float("nan")
    return {"ppl": filtered_mean(d), "sem": sem, "median": float(np.median(d)), "n": int(n), "space": space,
            "sampling": sampling, "epsilon": epsilon, "distance": distance}


EMBEDDING_PAIRS = 1000


def embedding_ppl(model, ws: torch.Tensor, *, pairs: int = EMBEDDING_PAIRS, seed: int = 0,
                  distance: str | None = None) -> dict:
    """PPL (lerp in W+) between ``pairs`` random pairs (i ≠ j, drawn with replacement) of the W+
    embeddings ``ws`` [N, L, D], each pair with its own t: the PPL of II2S's Table 3, where a short
    path length marks embeddings outside the space's semantic range. Pairing 100 embeddings once
    was too noisy to compare methods (the same method gave 28.6 and 36.3 in two runs). Returns
    ``perceptual_path_length``'s dict with ``pairs``."""
    n = ws.shape[0]
    if n < 2:
        raise LatentAtlasError(f"PPL between embeddings needs at least 2 of them, got {n}")
    g = torch.Generator().manual_seed(seed + 7_331)
    i = torch.randint(n, (pairs,), generator=g)
    j = (i + torch.randint(1, n, (pairs,), generator=g)) % n
    ws = ws.detach()
    res = perceptual_path_length(model, space="wplus", endpoints=(ws[i.to(ws.device)], ws[j.to(ws.device)]),
                                 seed=seed, distance=distance)
    return {**res, "pairs": pairs}
