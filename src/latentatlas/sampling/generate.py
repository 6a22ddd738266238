"""Plain sampling: seeds -> latents -> (optionally psi-truncated) images, and writers."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import LatentAtlasError
from ..imageio import atomic_path, grid_scale, save_grid, save_png
from ..models.interface import GANModel
from . import Context, apply_strategy, atlas_need, initial_latents, render


@dataclass
class SampleResult:
    model: str
    seeds: list[int]
    z: torch.Tensor                  # [N, z_dim]
    ws: torch.Tensor | None          # [N, num_ws, w_dim] for mapped models, after truncation
    images: torch.Tensor             # [N, C, H, W] in [-1, 1], CPU
    psi: float


MAX_SEEDS = 10_000_000      # latents one command may name (counted as the list is parsed, before it is built)


def check_count(n: int, what: str) -> int:
    """Refuse a number of latents beyond ``MAX_SEEDS`` before anything is built for them."""
    if n > MAX_SEEDS:
        raise LatentAtlasError(f"{what}: {n:,} latents; at most {MAX_SEEDS:,} in one command (split the run)")
    return n


def parse_seeds(spec: str) -> list[int]:
    """'0-7,42' -> [0, 1, ..., 7, 42] (NVIDIA's --seeds syntax); at most ``MAX_SEEDS`` of them,
    counted before the list is built."""
    if len(spec) > 100_000:
        raise LatentAtlasError(f"--seeds: {len(spec):,} characters; give ranges like 0-999")
    out, count = [], 0
    for part in spec.split(","):
        part = part.strip()
        lo, dash, hi = part.partition("-")
        try:
            rng = range(int(lo), int(hi) + 1) if dash else [int(part)]
        except ValueError:
            raise LatentAtlasError(f"--seeds {spec!r}: expected comma-separated seeds or ranges like 0-7,42") from None
        if dash and int(hi) < int(lo):
            raise LatentAtlasError(f"--seeds {spec!r}: range {part} is empty")
        count = check_count(count + len(rng), f"--seeds {spec[:40]!r}")
        out.extend(rng)
    if not out or any(not 0 <= s < 2 ** 63 for s in out):
        raise LatentAtlasError(f"--seeds {spec!r}: seeds must be in [0, 2^63)")
    return out


def iter_samples(model: GANModel, *, n: int = 0, seed: int = 0, psi: float = 1.0, cutoff: int | None = None,
                 strategy: str | None = None, params: dict | None = None, batch_size: int = 64, ctx=None,
                 seeds: list[int] | None = None):
    """Batches (``SampleResult`` each) for seeds seed..seed+n-1 (or the given ``seeds``):
    plain, ψ-truncated, or modified by a registered sampling strategy. Nothing is held across
    batches, so callers can stream any N to disk."""
    seeds = list(seeds) if seeds is not None else list(range(seed, seed + n))
    n = len(seeds)
    if n <= 0:
        raise LatentAtlasError(f"n must be positive, got {n}")
    if strategy is None and psi != 1.0 and not model.has_mapping:
        raise LatentAtlasError(f"--truncation-psi needs a W space; model '{model.name}' has only Z "
                               "(use --strategy truncation --param t=T, the resampling truncation in Z)")
    if strategy is not None:
        ctx = ctx or Context(model)
    for i in range(0, n, batch_size):
        bseeds = seeds[i: i + batch_size]
        zb = model.latents_for(bseeds)
        if strategy is not None:
            new = apply_strategy(model, strategy, initial_latents(model, zb), ctx, **(params or {}))
            p = (params or {}).get("psi")
            yield SampleResult(model.name, bseeds, new.z.detach().cpu(),
                               new.ws.detach().cpu() if new.ws is not None else None,
                               render(model, new), float(p) if p is not None else 1.0)
            continue
        with torch.no_grad():
            if model.has_mapping:
                ws = model.truncate(model.broadcast(model.mapping(zb)), psi, cutoff)
                imgs, ws = model.synthesis(ws).cpu(), ws.cpu()
            else:
                imgs, ws = model(zb).cpu(), None
        yield SampleResult(model.name, bseeds, zb.cpu(), ws, imgs.clamp(-1, 1), psi)


def pooled_samples(pool, model: GANModel, *, seeds: list[int], psi: float = 1.0, cutoff: int | None = None,
                   strategy: str | None = None, params: dict | None = None, batch_size: int = 64, ctx=None):
    """``iter_samples``'s batches computed on a ``latentatlas.parallel`` pool's workers (one task per
    batch), yielded in seed order as they become available: the same images as ``iter_samples``."""
    if strategy is not None:
        need = atlas_need([strategy])
        if need:
            pool.share_atlas((ctx or Context(model)).get_atlas(need))
    batches = [seeds[i:i + batch_size] for i in range(0, len(seeds), batch_size)]
    if not batches:
        raise LatentAtlasError("n must be positive, got 0")
    ready, nxt = {}, 0
    for i, res in pool.imap(sample_batch_task, ((i, (b, psi, cutoff, strategy, params), {}) for i, b in enumerate(batches))):
        ready[i] = res
        while nxt in ready:
            yield ready.pop(nxt)
            nxt += 1


def concat_samples(parts: list[SampleResult]) -> SampleResult:
    return SampleResult(parts[0].model, [s for p in parts for s in p.seeds], torch.cat([p.z for p in parts]),
                        torch.cat([p.ws for p in parts]) if parts[0].ws is not None else None,
                        torch.cat([p.images for p in parts]), parts[0].psi)


def sample_images(model: GANModel, *, n: int, seed: int = 0, psi: float = 1.0,
                  cutoff: int | None = None, batch_size: int = 64) -> SampleResult:
    """``n`` images for seeds ``seed .. seed+n-1``. ψ-truncation needs a W space."""
    return concat_samples(list(iter_samples(model, n=n, seed=seed, psi=psi, cutoff=cutoff, batch_size=batch_size)))


def parse_params(items: list[str] | None) -> dict:
    """['psi=0.7', 'k=4', 'sigma=auto'] -> {'psi': 0.7, 'k': 4, 'sigma': 'auto'}."""
    out = {}
    for it in items or []:
        k, eq, v = it.partition("=")
        if not eq or not k:
            raise LatentAtlasError(f"--param {it!r}: expected NAME=VALUE")
        if v.lower() in ("none", "null"):
            out[k] = None
            continue
        try:
            out[k] = int(v)
        except ValueError:
            try:
                f = float(v)
            except ValueError:
                out[k] = v
            else:
                if f != f:
                    raise LatentAtlasError(f"--param {it!r}: NaN is not a valid value") from None
                out[k] = f
    return out


def sample_with_strategy(model: GANModel, *, n: int, seed: int = 0, strategy: str = "none",
                         params: dict | None = None, batch_size: int = 64, ctx=None) -> SampleResult:
    """Samples for seeds seed..seed+n-1 modified by a registered sampling strategy."""
    return concat_samples(list(iter_samples(model, n=n, seed=seed, strategy=strategy, params=params,
                                     batch_size=batch_size, ctx=ctx)))


def _check_png(path: str):
    if Path(path).suffix.lower() != ".png":
        raise LatentAtlasError(f"output {path}: only .png is supported")


def write_samples(result: SampleResult, *, out: str | None = None, out_dir: str | None = None,
                  nrow: int | None = None, scale: int | None = None) -> list[Path]:
    if not out and not out_dir:
        raise LatentAtlasError("nothing to write: give --out GRID.png and/or --out-dir DIR")
    if out:
        _check_png(out)
    written = []
    if out:
        scale = scale or grid_scale(len(result.seeds), result.images.shape[-1], nrow)
        written.append(save_grid(result.images, out, nrow=nrow, scale=scale))
    if out_dir:
        written += stream_samples([result], out_dir)
    return written


def stream_samples(batches, out_dir) -> list[Path]:
    """Write each batch's PNGs as it arrives (only latents are kept), then ``latents.npz``."""
    d = Path(out_dir)
    written, seeds, zs, wss, psi = [], [], [], [], 1.0
    for r in batches:
        for s, img in zip(r.seeds, r.images):
            written.append(save_png(img, d / f"seed{s:06d}.png"))
        seeds += r.seeds
        zs.append(r.z)
        if r.ws is not None:
            wss.append(r.ws)
        psi = r.psi
    arrays = {"seeds": np.asarray(seeds), "z": torch.cat(zs).numpy(), "psi": np.asarray(psi)}
    if wss:
        arrays["ws"] = torch.cat(wss).numpy()
    with atomic_path(d / "latents.npz") as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)
    written.append(d / "latents.npz")
    return written


def sample_batch_task(worker, seeds, psi, cutoff, strategy, params) -> SampleResult:
    """Pool task: one batch of seeds on the worker's model (the strategies' context built once)."""
    ctx = worker.cached("sampling-context", lambda: Context(worker.model, atlas=worker.atlas))
    return next(iter_samples(worker.model, seeds=seeds, psi=psi, cutoff=cutoff, strategy=strategy, params=params,
                             batch_size=len(seeds), ctx=ctx))
