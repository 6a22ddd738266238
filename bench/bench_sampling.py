"""Time per strategy of the sampling sweep on fashion-stylegan2 (n per point, default 10000)
and the resulting table; first, on 256 samples, the two σ solvers of the Diamond strategy
(seed 002's Adam descent vs the forward-only bracket solver): objective reached and time.

usage: python bench/bench_sampling.py [MODEL] [N] [OUT_DIR]"""
from __future__ import annotations

import sys
import time

import torch

from latentatlas import diamond as dm
from latentatlas.models.registry import load_generator
from latentatlas.sampling import Context, _reals_for
from latentatlas.evaluation.sampling import evaluate_sampling, format_table, plot_sampling, save_json


def solver_comparison(m, ctx, n=256):
    t0 = time.perf_counter()
    proto = ctx.mean_proto()          # the strategy's default mean protoimage, cached for the sweep
    t_proto = time.perf_counter() - t0
    ctx.diamond["m"] = mid = dm.midpoint_score(m, _reals_for(m))
    z0 = m.sample_z(n, 555)
    zp = proto.expand_as(z0)
    print(f"mean protoimage search: {t_proto:.1f} s; midpoint score m = {mid:.4f}")
    print(f"{'solver':>8} {'seconds':>8} {'objective':>10} {'mean sigma':>10}")
    for solver, batch in (("adam", 256), ("bracket", 64)):
        t0 = time.perf_counter()
        s = dm.optimise_sigma(m, z0, zp, dm.SigmaConfig(m=mid, solver=solver), batch=batch)
        dt = time.perf_counter() - t0
        with torch.no_grad():
            obj = torch.cat([(m.score(m(dm.realism_step(z0[i:i + 64], zp[i:i + 64], s[i:i + 64]))) - mid).square()
                             for i in range(0, n, 64)]).mean()
        print(f"{solver:>8} {dt:>8.1f} {float(obj):>10.4f} {float(s.mean()):>10.3f}")
    return t_proto


def main():
    m = load_generator(sys.argv[1] if len(sys.argv) > 1 else "fashion-stylegan2")
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 10000
    ctx = Context(m)
    t_proto = solver_comparison(m, ctx) if m.has_minibatch_std else 0.0
    t0 = time.perf_counter()
    res = evaluate_sampling(m, ["truncation", "pca-log", "cluster", "diamond"], n=n, progress=False, ctx=ctx)
    total = time.perf_counter() - t0
    print(format_table(res))
    per = {}
    for r in res["rows"]:
        per[r["strategy"]] = per.get(r["strategy"], 0) + r.get("seconds", 0)
    print("seconds per strategy: " + ", ".join(f"{k} {v:.0f}" for k, v in per.items())
          + f"; sweep {total:.0f} s + mean protoimage search {t_proto:.0f} s = {total + t_proto:.0f} s")
    if len(sys.argv) > 3:
        save_json(res, f"{sys.argv[3]}/sampling.json")
        plot_sampling(res, sys.argv[3])


if __name__ == "__main__":
    main()
