"""The report's one table of every method: each sampling strategy at its best setting, each
inversion method and each direction method, scored by the same function on the same metrics.

Within a family every row shares its images' origin (the sweep's seeds for sampling, the same
targets for inversion, the same base samples for directions); across families the metrics are
identical: the distribution metrics of the produced images against the report's reference set
(FID where the set is large enough, KID ± std always, precision, recall, coverage, the median
realism score and the share of samples outside the real manifold), how far each image moved from
its starting image (mean pixel L2), and the share that kept the starting image's class.
"""
from __future__ import annotations

import numpy as np
import torch

from ..evaluation.sampling import rank_key
from ..metrics.reference import classifier, resolve
from ..metrics.suite import features_of_images
from ..walks.edit import render_walk, walk_latents

SHARED = ("fid", "kid", "kid_std", "precision", "recall", "coverage", "realism", "share_unrealistic")
COLUMNS = ("family", "method", "setting", "n", *SHARED, "pixel_dist", "class_kept")


def shared_metrics(ref, ext, images: torch.Tensor, start: torch.Tensor, seed: int = 0) -> dict:
    """The shared columns for ``images`` [N, C, H, W] produced from ``start`` (same shape):
    distribution metrics against ``ref`` in ``ext``'s feature space, mean pixel L2 to the start
    image (the sampling sweep's ``pixel_dist``) and the share whose predicted class is kept."""
    with torch.no_grad():
        f = features_of_images(images, ext)
        sc = ref.scores(f.astype(np.float64), kid_subsets=50, seed=seed)
        row = {k: sc.get(k) for k in SHARED}
        row["pixel_dist"] = float((images - start).flatten(1).norm(dim=1).mean())
        row["class_kept"] = None
        if classifier(ext) is not None:
            head = ext.net.head
            c1, c0 = (head(torch.from_numpy(x)).argmax(1) for x in (f, features_of_images(start, ext)))
            row["class_kept"] = float((c1 == c0).float().mean())
    return row


def _sampling_rows(res: dict) -> list[dict]:
    """The untruncated baseline, then each strategy at its best point by the sweep's ranking (FID,
    or KID without FID) among the points that change the samples at all (an identity point such
    as ψ = 1 would only repeat the baseline)."""
    best = {}
    for r in res.get("rows", []):
        if "error" in r or not r.get("pixel_dist"):
            continue
        if r["strategy"] not in best or rank_key(r) < rank_key(best[r["strategy"]]):
            best[r["strategy"]] = r
    if res.get("baseline"):
        best = {"none (baseline)": res["baseline"], **best}
    rows = []
    for name, r in best.items():
        rows.append({"family": "sampling", "method": name, "setting": r["params"], "n": res["n"],
                     **{k: r.get(k) for k in SHARED}, "pixel_dist": r.get("pixel_dist"),
                     "class_kept": r.get("class_preserved")})
    return rows


def direction_row(m, ref, ext, d, dp_model, kind: str, n: int, seed: int) -> dict:
    """The method table's row of a direction set: ``n`` samples (seeds from ``seed``) walked to ±2σ
    along its first direction, ``kind`` 'linear' or 'dp', scored against their start images."""
    base = m.sample_z(n, seed)
    if d.space == "w":
        with torch.no_grad():
            base = m.mapping(base)
    lat = walk_latents(m, d, 0, base, kind=kind, steps=3, extent=2.0, dp_model=dp_model)
    with torch.no_grad():
        ends = render_walk(m, d, lat)          # [-2σ, 0 (the samples themselves), +2σ]
    return {"setting": f"direction 0 at ±2σ ({d.space})", "n": 2 * n,
            **shared_metrics(ref, ext, torch.cat([ends[0], ends[-1]]), torch.cat([ends[1], ends[1]]), seed)}


def direction_row_task(worker, d, dp_model, kind: str, n: int, seed: int, reference: dict) -> dict:
    """Pool task: ``direction_row`` on the worker's model, its reference set resolved once per worker."""
    ref, ext = worker.cached(("overview-reference", repr(sorted(reference.items()))), lambda: resolve(
        worker.model, folder=reference.get("reference"), features=reference.get("features"),
        device=worker.model.device, inception=reference.get("inception"), what="the method table"))
    return direction_row(worker.model, ref, ext, d, dp_model, kind, n, seed)


def overview_rows(ctx) -> tuple[list[dict], list[str]]:
    """Rows of the table from what the sections stored in ``ctx.figures``, and notes on what is
    missing (a family whose section could not run on this model)."""
    m = ctx.model
    notes = []
    try:
        ref, ext = ctx.metrics_reference()
    except Exception as e:      # noqa: BLE001 - the reason is shown in the report
        return [], [f"no reference set: {e}"]
    rows = []
    res = ctx.figures.get("sampling")
    if res:
        rows += _sampling_rows(res)
    else:
        notes.append("sampling: the sweep did not run on this model")
    inv = ctx.figures.get("inversion_images")
    if inv:
        targets, outs = inv
        for label, imgs in outs.items():
            rows.append({"family": "inversion", "method": label, "setting": f"{ctx.invert_steps} steps",
                         "n": len(targets), **shared_metrics(ref, ext, imgs, targets, ctx.seed)})
    else:
        notes.append("inversion: the section did not run")
    dsets = ctx.figures.get("direction_sets") or []
    if dsets:
        jobs = [((method, kind), (d, dp_model, kind, ctx.overview_n, ctx.seed, ctx.reference), {})
                for method, d, dp_model in dsets for kind in ("linear", "dp")]
        runs = ctx.pool.imap(direction_row_task, jobs) if ctx.pool is not None else \
            ((meta, direction_row(m, ref, ext, *a[:-1])) for meta, a, _ in jobs)
        for (method, kind), row in runs:
            rows.append({"family": "directions", "method": f"{method} {kind}", **row})
    else:
        notes.append("directions: the walks section did not run")
    return [{c: r.get(c) for c in COLUMNS} for r in rows], notes
