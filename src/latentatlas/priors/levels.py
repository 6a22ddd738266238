"""The three levels of W+ (Katzir et al.): their names, their rows, and sampling or showing codes
whose levels are fixed to clusters of a level mixture (the EM mixture and the learned one alike)."""
from __future__ import annotations

import math

import torch

from ..errors import LatentAtlasError

LEVELS = ("coarse", "medium", "fine")


def default_level_ranges(num_ws: int) -> dict[str, tuple[int, int]]:
    """Split W+ rows into coarse / medium / fine thirds (rows [a, b)). For a 32x32 StyleGAN2
    (8 rows: 4, 8x8, 16x16, 32x32 blocks) this is coarse 0-2, medium 3-5, fine 6-7."""
    a = math.ceil(num_ws / 3)
    b = math.ceil(2 * num_ws / 3)
    return {"coarse": (0, a), "medium": (a, b), "fine": (b, num_ws)}


def sample_levels(mixture, model, fixed: dict, n: int, seed: int = 0, base: torch.Tensor | None = None) -> torch.Tensor:
    """Multi-level sampling (Katzir et al., Fig. 1): W+ codes [n, num_ws, w_dim] whose rows of
    each level in ``fixed`` (level -> cluster index) come from that cluster of the level's
    mixture, and whose other levels are free: ``base`` [n, num_ws, w_dim] when given, else the
    model's own w of seed ``seed + i``. Row i is drawn from seeds derived from ``seed + i`` alone,
    so any batch size gives the same codes."""
    for level, k in fixed.items():
        if level not in mixture.level_ranges:
            raise LatentAtlasError(f"unknown level {level!r}; levels: {', '.join(mixture.level_ranges)}")
        if level not in mixture.params_:
            raise LatentAtlasError(f"level {level!r} has no clusters in this {mixture.kind} mixture")
        K = mixture.n_clusters[level]
        if not 0 <= int(k) < K:
            raise LatentAtlasError(f"cluster {k} out of range for level {level!r} (0..{K - 1})")
    with torch.no_grad():
        ws = (base if base is not None else model.broadcast(model.mapping(model.sample_z(n, seed)))).clone()
        for li, (level, k) in enumerate(sorted(fixed.items())):
            a, b = mixture.level_ranges[level]
            rows = [mixture.sample(level, int(k), 1, seed=((seed + i) * 7 + li + 1) % 2 ** 63) for i in range(n)]
            ws[:, a:b] = torch.cat(rows).to(ws.device)[:, None]
    return ws




@torch.no_grad()
def fig1_grid(model, mixture, base_ws: torch.Tensor, clusters: dict | None = None, max_per_level: int = 4):
    """Katzir et al.'s Fig. 1 block: images [n, C, H, W], the images per grid row and the cluster
    indices shown per level. One block
    per coarse cluster (side by side, a blank column between blocks), one row per medium
    cluster, one column per fine cluster; each level's W+ rows set to its cluster centre on the
    base code ``base_ws`` [1, num_ws, w_dim]. ``clusters``: level -> the cluster indices to show
    (default: the first ``max_per_level`` of each level)."""
    for lv in LEVELS:
        if not mixture.n_clusters.get(lv) or lv not in mixture.level_ranges:
            raise LatentAtlasError(f"the Fig. 1 grid needs clusters on all three levels; '{lv}' has none")
    chosen = {lv: list((clusters or {}).get(lv) or range(min(max_per_level, mixture.n_clusters[lv])))
              for lv in LEVELS}
    for lv, ks in chosen.items():
        bad = [k for k in ks if not 0 <= k < mixture.n_clusters[lv]]
        if bad:
            raise LatentAtlasError(f"cluster(s) {bad} out of range for level {lv!r} (0..{mixture.n_clusters[lv] - 1})")
    cs = {lv: mixture.centres(lv) for lv in LEVELS}
    cell = {}
    for c in chosen["coarse"]:
        for md in chosen["medium"]:
            for f in chosen["fine"]:
                ws = base_ws.clone()
                for lv, k in (("coarse", c), ("medium", md), ("fine", f)):
                    a, b = mixture.level_ranges[lv]
                    ws[:, a:b] = cs[lv][k].to(ws.device)
                cell[c, md, f] = model.synthesis(ws).clamp(-1, 1).cpu()
    blank = torch.ones_like(next(iter(cell.values())))
    imgs = []
    for md in chosen["medium"]:
        for i, c in enumerate(chosen["coarse"]):
            imgs += [cell[c, md, f] for f in chosen["fine"]] + ([blank] if i < len(chosen["coarse"]) - 1 else [])
    kc, kf = len(chosen["coarse"]), len(chosen["fine"])
    return torch.cat(imgs), kc * kf + kc - 1, chosen
