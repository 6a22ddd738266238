"""Mean/covariance + PCA (P-norm) from 1M mapped samples of fashion-stylegan2: wall time,
samples/s, the split between mapping and statistics, and peak memory (RSS)."""
from __future__ import annotations

import resource
import sys
import time

import torch

from latentatlas.models.registry import load_generator
from latentatlas.spaces import PNormSpace, mapped_moments


def main(n: int = 1_000_000):
    m = load_generator(sys.argv[1] if len(sys.argv) > 1 else "fashion-stylegan2")
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t0 = time.perf_counter()
    timings = {}
    mom = mapped_moments(m, n, seed=0, batch_size=20000, timings=timings)
    t1 = time.perf_counter()
    sp = PNormSpace().fit(moments=mom)
    t2 = time.perf_counter()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"model {m.name}: {n} samples in {t2 - t0:.1f} s ({n / (t2 - t0):,.0f} samples/s)")
    print(f"  mapping {timings['mapping_s']:.1f} s, statistics {timings['statistics_s']:.1f} s, PCA {t2 - t1:.2f} s")
    print(f"  peak RSS {rss:.0f} MiB (before: {rss0:.0f} MiB)")
    print(f"  top-5 P-norm variances {sp.explained_variance_[:5].tolist()}")


if __name__ == "__main__":
    main()
