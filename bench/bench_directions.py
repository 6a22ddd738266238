"""The walks-and-directions measurement table: every direction method on fashion-stylegan2
(W space) and the Z-space ones on fashion-wgangp / faces-dcgan, each measured by
``evaluate_directions`` on the same seeds: density drift of linear vs density-preserving walks
(mean |Δ log-density| per step under the learned CDF model F), orthogonality error of the set,
G1 feature variation, class probabilities moved, class flips, perceptual path length; plus the
time to compute the set.

usage: python bench/bench_directions.py [K] [N] [DP_STEPS] [MODELS_OR_METHODS]  (directions per method, samples per walk,
       DP-LaSE discovery steps)"""
from __future__ import annotations

import sys
import time

import numpy as np

from _common import print_dp_curve
from latentatlas.models.registry import load_generator
from latentatlas.walks.directions import compute_directions
from latentatlas.walks.edit import evaluate_directions

COLS = ("density_drift_linear", "density_drift_dp", "g1_variation", "classes_moved", "class_flip_rate", "ppl")


def run(model, method, keep, n, **kw):
    t0 = time.perf_counter()
    d = compute_directions(model, method, **kw)
    t_fit = time.perf_counter() - t0
    if len(d) > keep:
        d.vectors, d.sigmas = d.vectors[:keep], d.sigmas[:keep]
        if d.meta.get("names"):
            d.meta["names"] = d.meta["names"][:keep]
    t0 = time.perf_counter()
    res = evaluate_directions(model, d, n=n, dp_model=getattr(d, "dp_model", None))
    t_eval = time.perf_counter() - t0
    row = {"model": model.name, "method": method, "space": d.space, "k": len(d), "ortho_err": res["orthogonality_error"],
           **{c: float(np.mean([r[c] for r in res["rows"]])) if all(c in r for r in res["rows"]) else float("nan")
              for c in COLS},
           "fit_s": t_fit, "eval_s": t_eval}
    return row, res, d


def main():
    k = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 64
    steps = int(sys.argv[3]) if len(sys.argv) > 3 else 1500
    plan = [("fashion-stylegan2", "ganspace", {}), ("fashion-stylegan2", "sefa", {}),
            ("fashion-stylegan2", "dplase", {"k": k, "layer": "b8", "steps": steps}), ("fashion-stylegan2", "mean-diff", {}),
            ("fashion-stylegan2", "linear-classifier", {}), ("fashion-wgangp", "ganspace", {"layer": "s8"}),
            ("fashion-wgangp", "diamond", {}), ("faces-dcgan", "ganspace", {"layer": "s8"})]
    only = sys.argv[4].split(",") if len(sys.argv) > 4 else None      # optional model / method filter
    plan = [p for p in plan if only is None or p[0] in only or p[1] in only]
    models = {}
    rows = []
    head = f"{'model':>18} {'method':>17} {'sp':>2} {'k':>2} {'orth.err':>8} " + " ".join(f"{c[:12]:>12}" for c in COLS) \
        + f" {'fit s':>6} {'eval s':>6}"
    print(head, flush=True)
    for name, method, kw in plan:
        m = models.setdefault(name, load_generator(name))
        row, res, d = run(m, method, k, n, **kw)
        rows.append(row)
        print(f"{name:>18} {method:>17} {row['space']:>2} {row['k']:>2} {row['ortho_err']:>8.4f} "
              + " ".join(f"{row[c]:>12.4g}" for c in COLS) + f" {row['fit_s']:>6.0f} {row['eval_s']:>6.0f}", flush=True)
        if method == "dplase":            # the DP-LaSE loss curve (bench_dplase.py prints the same alone)
            print(f"    DP-LaSE training: {d.log.losses[-1][0] + 1} steps in {d.log.seconds:.1f} s; losses every 100 steps:")
            print_dp_curve(d.log, indent="    ")
        for r in res["rows"]:
            print("  - " + "  ".join(f"{key}={v:.4g}" if isinstance(v, float) else f"{key}={v}" for key, v in r.items()))
    lin, dp = np.array([r["density_drift_linear"] for r in rows]), np.array([r["density_drift_dp"] for r in rows])
    print(f"density drift, linear / density-preserving walk, mean over all sets: {lin.mean():.3f} / {dp.mean():.3f} "
          f"({lin.mean() / dp.mean():.1f}x lower)")


if __name__ == "__main__":
    main()
