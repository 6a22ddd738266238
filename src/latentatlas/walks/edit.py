"""Walking along a direction: latents per step, images, strips and GIFs, and the direction
measurements (density drift, orthogonality, G1 variation, disentanglement, path length)."""
from __future__ import annotations

from pathlib import Path

import torch

from ..data.fashion import fashion_format
from ..errors import LatentAtlasError
from ..imageio import ANIMATION_SUFFIXES, atomic_path, make_grid, save_animation
from ..metrics.features import FashionFeatures
from ..metrics.ppl import perceptual_path_length
from . import density, great_circle, learned_dp_walk, linear_walk, norm_preserving_walk
from .density import DPConfig
from .directions import Directions

WALK_KINDS = ("linear", "dp", "great-circle")


def walk_latents(model, dirs: Directions, index: int, base: torch.Tensor, *, kind: str = "linear",
                 steps: int = 9, extent: float = 2.0, dp_model=None) -> torch.Tensor:
    """Latents [steps, N, D] along direction ``index`` from ``base`` [N, D] (w or z), offsets
    ε from −extent·σ to +extent·σ. ``dp`` = norm-preserving in Z, the learned DP-LaSE walk in W
    (``dp_model`` trained with these directions, or trained here)."""
    if not 0 <= index < len(dirs):
        raise LatentAtlasError(f"direction index {index} out of range (file has {len(dirs)})")
    if kind not in WALK_KINDS:
        raise LatentAtlasError(f"unknown walk kind {kind!r}; choose from {', '.join(WALK_KINDS)}")
    g = dirs.vectors[index].to(base.device)
    eps = torch.linspace(-extent, extent, steps, device=base.device) * float(dirs.sigmas[index])
    if kind == "linear":
        return linear_walk(base, g, eps)
    if kind == "great-circle":
        if dirs.space != "z":
            raise LatentAtlasError("the great-circle walk lives on the sphere of a Gaussian space: use a Z direction")
        return great_circle(base, g, eps)
    if dirs.space == "z":
        return norm_preserving_walk(base, g, eps)
    if dp_model is None:
        dp_model = dirs.dp_walk_model()          # DP-LaSE sets carry their trained F and C
    if dp_model is None:
        dp_model, _ = density.train_dp_lase(model, DPConfig(steps=400), space="w", directions=dirs.vectors,
                                    sigmas=dirs.sigmas)
    with torch.no_grad():
        return learned_dp_walk(dp_model, base, g, eps)


@torch.no_grad()
def render_walk(model, dirs: Directions, path: torch.Tensor) -> torch.Tensor:
    """[steps, N, D] latents -> images [steps, N, C, H, W]."""
    S, N = path.shape[:2]
    flat = path.reshape(S * N, -1)
    imgs = model.synthesis(flat) if dirs.space == "w" else model(flat)
    return imgs.clamp(-1, 1).reshape(S, N, *imgs.shape[1:]).cpu()


def save_strip(images: torch.Tensor, out, scale: int = 2, mark=None):
    """Rows = samples, columns = steps; ``.png`` strip, or a ``.gif`` / ``.mp4`` animation over the
    steps (forward and back). ``mark``: one step index per sample framed in red (e.g. the
    protoimage of a great-circle walk)."""
    out = Path(out)
    S, N = images.shape[:2]
    if out.suffix.lower() == ".png":
        cells = [i * S + int(k) for i, k in enumerate(mark)] if mark is not None else ()
        grid = make_grid(images.transpose(0, 1).reshape(S * N, *images.shape[2:]), nrow=S, scale=scale, mark=cells)
        with atomic_path(out) as tmp:
            grid.save(tmp, format="PNG")
    elif out.suffix.lower() in ANIMATION_SUFFIXES:
        frames = [make_grid(images[s], nrow=N, scale=scale, mark=[i for i, k in enumerate(mark) if int(k) == s]
                            if mark is not None else ()) for s in range(S)]
        save_animation(frames, out, fps=8, bounce=True)
    else:
        raise LatentAtlasError(f"output {out}: use .png (strip), .gif or .mp4 (animation)")
    return out


# -- measurements --------------------------------------------------------------------------------

def _feature_fn(model):
    if fashion_format(model):
        ext = FashionFeatures(model.device)
        return ext, ext.logits
    return (lambda x: x.flatten(1)), None


@torch.no_grad()
def evaluate_directions(model, dirs: Directions, *, n: int = 64, steps: int = 9, extent: float = 2.0,
                        seed: int = 0, layer: str | None = None, dp_steps: int = 600, dp_model=None,
                        drift: bool = True, ppl: bool = True, first: int | None = None) -> dict:
    """Per direction: density drift (mean |log p(walk point) − log p(start)|; learned F in W,
    the exact Gaussian in Z) of the linear vs the learned/norm-preserving walk, G1
    feature variation, number of class probabilities moved by > 0.1, class-flip rate, the walk's
    roughness (squared feature change per σ between frames) and Karras et al.'s perceptual path
    length on the walk's segment (``metrics.ppl``); plus the orthogonality error of the whole set.
    ``drift=False`` skips the density drift (and so the DP model a W set without one would train),
    ``ppl=False`` the path length; ``first``: measure only the first ``first`` directions (the
    orthogonality error is still the whole set's)."""
    dirs.check_model(model)
    z = model.sample_z(n, seed)
    base = model.mapping(z) if dirs.space == "w" else z
    dp = dp_model
    if not drift:
        logp = None
    elif dirs.space == "z":
        # Z ~ N(0, I): the exact log-density (up to a constant); the dp walk keeps ‖z‖
        logp = lambda x: -0.5 * x.square().sum(-1)
    else:
        if dp is None:
            dp = dirs.dp_walk_model()
        if dp is None:
            with torch.enable_grad():
                dp, _ = density.train_dp_lase(model, DPConfig(steps=dp_steps), space=dirs.space, directions=dirs.vectors,
                                      sigmas=dirs.sigmas)
        logp = dp.F.log_density
    feat, logits = _feature_fn(model)
    layer = layer or (model.layer_names[1] if len(model.layer_names) > 1 else None)
    V = dirs.vectors
    rows = []
    for i in range(len(dirs) if first is None else min(first, len(dirs))):
        lin = walk_latents(model, dirs, i, base, kind="linear", steps=steps, extent=extent)
        row = {"direction": i, "name": (dirs.meta.get("names") or [None] * len(dirs))[i] or f"{dirs.method} {i}"}
        if logp is not None:
            dpw = walk_latents(model, dirs, i, base, kind="dp", steps=steps, extent=extent, dp_model=dp)
            ld = lambda p: torch.stack([logp(x) for x in p])                   # [S, N]
            l0 = logp(base)
            row["density_drift_linear"] = (ld(lin) - l0).abs().mean().item()
            row["density_drift_dp"] = (ld(dpw) - l0).abs().mean().item()
        imgs = render_walk(model, dirs, lin)                                   # [S, N, C, H, W]
        fs = torch.stack([feat(im.to(model.device)).cpu() for im in imgs])     # [S, N, F]
        step_eps = 2 * extent / (steps - 1)
        # roughness: squared feature change per σ between the walk's frames (coarse steps);
        # ppl: Karras et al.'s PPL (ε = 1e-4) on the segment between the walk's two ends
        row["roughness"] = ((fs[1:] - fs[:-1]).square().sum(-1) / step_eps ** 2).mean().item()
        if ppl:
            row["ppl"] = perceptual_path_length(model, space="w" if dirs.space == "w" else "z",
                                                endpoints=(lin[0], lin[-1]), seed=seed)["ppl"] \
                if dirs.space == "w" or not model.has_mapping else float("nan")
        if layer is not None:
            mid = steps // 2
            h = lambda p: model.features_at(layer, p).flatten(1)
            row["g1_variation"] = (h(lin[-1]) - h(lin[mid])).norm(dim=1).mean().item()
        if logits is not None:
            p0 = torch.softmax(logits(imgs[steps // 2].to(model.device)), 1).cpu()
            pe = torch.softmax(logits(imgs[-1].to(model.device)), 1).cpu()
            row["classes_moved"] = float(((pe - p0).abs() > 0.1).float().sum(1).mean())
            row["class_flip_rate"] = float((pe.argmax(1) != p0.argmax(1)).float().mean())
        rows.append(row)
    ortho = float((V @ V.t() - torch.eye(len(V))).norm())
    return {"model": model.name, "method": dirs.method, "space": dirs.space, "orthogonality_error": ortho,
            "layer": layer, "rows": rows}
