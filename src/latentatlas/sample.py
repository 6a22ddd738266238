"""Plain sampling: seeds -> latents -> (optionally psi-truncated) images, and writers."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .errors import LatentAtlasError
from .imageio import atomic_path, save_grid, save_png
from .models.interface import GANModel


@dataclass
class SampleResult:
    model: str
    seeds: list[int]
    z: torch.Tensor                  # [N, z_dim]
    ws: torch.Tensor | None          # [N, num_ws, w_dim] for mapped models, after truncation
    images: torch.Tensor             # [N, C, H, W] in [-1, 1], CPU
    psi: float


@torch.no_grad()
def sample_images(model: GANModel, *, n: int, seed: int = 0, psi: float = 1.0,
                  cutoff: int | None = None, batch_size: int = 64) -> SampleResult:
    """``n`` images for seeds ``seed .. seed+n-1``. ψ-truncation needs a W space."""
    if n <= 0:
        raise LatentAtlasError(f"n must be positive, got {n}")
    if psi != 1.0 and not model.has_mapping:
        raise LatentAtlasError(f"--truncation-psi needs a W space; model '{model.name}' has only Z "
                               "(use a Z-space strategy instead)")
    z = model.sample_z(n, seed)
    ws_all, imgs = [], []
    for i in range(0, n, batch_size):
        zb = z[i: i + batch_size]
        if model.has_mapping:
            ws = model.truncate(model.broadcast(model.mapping(zb)), psi, cutoff)
            ws_all.append(ws.cpu())
            imgs.append(model.synthesis(ws).cpu())
        else:
            imgs.append(model(zb).cpu())
    return SampleResult(model.name, list(range(seed, seed + n)), z.cpu(),
                        torch.cat(ws_all) if ws_all else None, torch.cat(imgs).clamp(-1, 1), psi)


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
    from .sampling import Context, apply_strategy, initial_latents, render
    if n <= 0:
        raise LatentAtlasError(f"n must be positive, got {n}")
    ctx = ctx or Context(model)
    zs, wss, imgs = [], [], []
    for i in range(0, n, batch_size):
        lat = initial_latents(model, model.sample_z(min(batch_size, n - i), seed + i))
        new = apply_strategy(model, strategy, lat, ctx, **(params or {}))
        zs.append(new.z.detach().cpu())
        if new.ws is not None:
            wss.append(new.ws.detach().cpu())
        imgs.append(render(model, new))
    return SampleResult(model.name, list(range(seed, seed + n)), torch.cat(zs),
                        torch.cat(wss) if wss else None, torch.cat(imgs), float(p if (p := (params or {}).get("psi")) is not None else 1.0))


def _check_png(path: str):
    if Path(path).suffix.lower() != ".png":
        raise LatentAtlasError(f"output {path}: only .png is supported")


def write_samples(result: SampleResult, *, out: str | None = None, out_dir: str | None = None,
                  nrow: int | None = None) -> list[Path]:
    if not out and not out_dir:
        raise LatentAtlasError("nothing to write: give --out GRID.png and/or --out-dir DIR")
    if out:
        _check_png(out)
    written = []
    if out:
        written.append(save_grid(result.images, out, nrow=nrow))
    if out_dir:
        d = Path(out_dir)
        for s, img in zip(result.seeds, result.images):
            written.append(save_png(img, d / f"seed{s:06d}.png"))
        arrays = {"seeds": np.asarray(result.seeds), "z": result.z.numpy(), "psi": np.asarray(result.psi)}
        if result.ws is not None:
            arrays["ws"] = result.ws.numpy()
        with atomic_path(d / "latents.npz") as tmp:
            with open(tmp, "wb") as fh:
                np.savez(fh, **arrays)
        written.append(d / "latents.npz")
    return written
