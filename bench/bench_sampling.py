"""Time per strategy of the sampling sweep on fashion-stylegan2 (n per point, default 10000)
and the resulting table."""
from __future__ import annotations

import sys
import time

from latentatlas.models.registry import load_generator
from latentatlas.sampling.evaluate import evaluate_sampling, format_table


def main():
    m = load_generator(sys.argv[1] if len(sys.argv) > 1 else "fashion-stylegan2")
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 10000
    t0 = time.perf_counter()
    res = evaluate_sampling(m, ["truncation", "pca-log", "cluster", "diamond"], n=n, progress=False)
    total = time.perf_counter() - t0
    print(format_table(res))
    per = {}
    for r in res["rows"]:
        per[r["strategy"]] = per.get(r["strategy"], 0) + r.get("seconds", 0)
    print("seconds per strategy: " + ", ".join(f"{k} {v:.0f}" for k, v in per.items()) + f"; total {total:.0f} s")


if __name__ == "__main__":
    main()
