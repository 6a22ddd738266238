"""Where an inversion starts, registered by name (``InversionConfig.init``).

* ``mean`` — the mean w (the StyleGAN2 projector's start); a seeded draw in Z.
* ``best-of:N`` — the best of N sampled codes (and the atlas's cluster centres when it has a
  mixture) by the inversion's own image distance (pixel + perceptual term), one batched
  distance matrix; Diamond in the rough's best-of-1000 for Z.
* ``multi-start:K[:N]`` — the K best distinct candidates of that pool per image, optimised
  together for a warm-up, the best kept per image (the engine does the selection).
* ``encoder[:PATH]`` — a trained per-model encoder's prediction (``inversion.encoder``); without
  a path, the one cached for the model's weights (``latentatlas train-encoder``).

Each strategy returns a :class:`Starts`: codes ``[T, K, ...]`` in the optimised space and a label
per start saying where it came from (recorded as the winning init of every result).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..errors import LatentAtlasError
from .encoder import load_encoder

# spec -> meaning: the CLI help table (parse_init is the grammar)
INIT_TABLE = {
    "mean": "the mean w (StyleGAN2 projector's start); a seeded draw in Z",
    "best-of:N": "best of N seeded draws (+ the atlas's cluster centres) by the inversion's own distance (N=256)",
    "multi-start:K[:N]": "K best starts of that pool per image run together for --warmup-steps, the best kept (N=256)",
    "encoder[:PATH]": "a trained encoder's prediction (default: the one cached for the model by 'train-encoder')",
}
INITS = ("mean", "best-of", "multi-start", "encoder")
DEFAULT_POOL = 256


@dataclass
class Starts:
    codes: torch.Tensor              # [T, K, *code_shape] in the optimised space
    labels: list                     # [T][K] strings


def parse_init(spec: str) -> tuple[str, dict]:
    """'mean' | 'best-of:N' (or the older 'best-of-N') | 'multi-start:K[:N]' | 'encoder[:PATH]'."""
    name, _, rest = spec.partition(":")
    if name.startswith("best-of-") and not rest:
        name, rest = "best-of", name[8:]
    try:
        if name == "mean" and not rest:
            return "mean", {}
        if name == "best-of":
            n = int(rest) if rest else DEFAULT_POOL
            if n < 1:
                raise ValueError
            return "best-of", {"n": n}
        if name == "multi-start":
            k, _, n = rest.partition(":")
            k, n = int(k) if k else 4, int(n) if n else DEFAULT_POOL
            if k < 1 or n < k:
                raise ValueError
            return "multi-start", {"k": k, "n": n}
        if name == "encoder":
            return "encoder", {"path": rest or None}
    except ValueError:
        pass
    raise LatentAtlasError(f"init {spec!r}: use mean, best-of:N, multi-start:K[:N] or encoder[:PATH]")


def n_starts(spec: str) -> int:
    name, p = parse_init(spec)
    return p["k"] if name == "multi-start" else 1


def _in_space(sp, w: torch.Tensor) -> torch.Tensor:
    """w [n, D] -> codes of the optimised space."""
    s = sp.cfg.space
    if s == "w":
        return w
    ws = sp.model.broadcast(w).clone()
    return ws if s == "wplus" else sp.plus.transform(ws)


@torch.no_grad()
def _pool(sp, n: int):
    """Candidate codes of the optimised space [n', ...] with their labels: n seeded draws plus the
    atlas's cluster centres (all levels of its EM mixture) when it has one."""
    m, cfg = sp.model, sp.cfg
    z = torch.randn(n, m.z_dim, generator=torch.Generator().manual_seed(cfg.seed)).to(m.device)
    labels = [f"pool draw {i} (seed {cfg.seed})" for i in range(n)]
    if cfg.space == "z":
        return z, labels
    w = torch.cat([m.mapping(z[i:i + 1024]) for i in range(0, n, 1024)])
    em = getattr(sp.atlas, "em", None) if sp.atlas is not None else None
    if em is not None:
        for level in em.level_ranges:
            try:
                c = em.centres(level).to(m.device)
            except (KeyError, LatentAtlasError):
                continue
            w = torch.cat([w, c])
            labels += [f"{level} cluster {k}" for k in range(c.shape[0])]
    return _in_space(sp, w), labels


@torch.no_grad()
def _distances(sp, dist, codes: torch.Tensor, targets: torch.Tensor, chunk: int = 256) -> torch.Tensor:
    """[T, n] image distances of every candidate to every target, in chunks of candidates."""
    return torch.cat([dist.matrix(sp.images(codes[i:i + chunk]), targets) for i in range(0, codes.shape[0], chunk)], 1)


def _mean(sp, targets, dist, p) -> Starts:
    m, T = sp.model, targets.shape[0]
    if sp.cfg.space == "z":   # Z has no mean code (z = 0 is off the sphere): a seeded draw
        z = torch.randn(T, m.z_dim, generator=torch.Generator().manual_seed(sp.cfg.seed)).to(m.device)
        return Starts(z[:, None], [["seeded draw"] for _ in range(T)])
    w = m.w_avg.to(m.device).expand(T, -1).clone()
    return Starts(_in_space(sp, w)[:, None], [["mean w"] for _ in range(T)])


def _best_k(sp, targets, dist, n: int, k: int) -> Starts:
    codes, labels = _pool(sp, n)
    d = _distances(sp, dist, codes, targets)                          # [T, n']
    idx = d.topk(min(k, d.shape[1]), dim=1, largest=False).indices    # [T, k]
    return Starts(codes[idx], [[labels[j] for j in row] for row in idx.tolist()])


def _best_of(sp, targets, dist, p) -> Starts:
    return _best_k(sp, targets, dist, p["n"], 1)


def _multi_start(sp, targets, dist, p) -> Starts:
    return _best_k(sp, targets, dist, p["n"], p["k"])


def _encoder(sp, targets, dist, p) -> Starts:
    enc = load_encoder(p["path"], sp.model)
    codes = enc.predict(targets, space=sp.cfg.space, plus=sp.plus)
    return Starts(codes[:, None], [[f"encoder {enc.source}"] for _ in range(targets.shape[0])])


_REGISTRY = {"mean": _mean, "best-of": _best_of, "multi-start": _multi_start, "encoder": _encoder}


def make_starts(sp, targets: torch.Tensor, dist) -> Starts:
    name, p = parse_init(sp.cfg.init)
    return _REGISTRY[name](sp, targets, dist, p)
