"""Shared helpers for the benchmarks: timing and the machine's measured GEMM peak."""
from __future__ import annotations

import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from latentatlas.runtime import tune_allocator  # noqa: E402

tune_allocator()        # as the CLI does (LATENTATLAS_MALLOC=default to measure without)


def timeit(fn, *, min_time: float = 1.0, warmup: int = 1) -> float:
    """Seconds per call (median of repeated calls until ``min_time`` has passed)."""
    for _ in range(warmup):
        fn()
    times = []
    t_end = time.perf_counter() + min_time
    while time.perf_counter() < t_end or len(times) < 3:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    times.sort()
    return times[len(times) // 2]


def gemm_peak(n: int = 2048) -> float:
    """FLOP/s of a float32 n x n matrix product on this machine, measured now."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    t = timeit(lambda: a @ b, min_time=1.5)
    return 2 * n ** 3 / t


def flops_of(fn) -> int:
    from torch.utils.flop_counter import FlopCounterMode
    with FlopCounterMode(display=False) as fc:
        fn()
    return fc.get_total_flops()


def print_dp_curve(log, indent: str = "") -> None:
    """A DP-LaSE training log (``DPTrainLog``) as a table: every 100th step and the last."""
    print(indent + "".join(f"{h:>10}" for h in ("step", "l_mon", "l_lik", "l_den", "l_var", "l_reg")))
    for row in log.losses:
        if row[0] % 100 == 0 or row is log.losses[-1]:
            print(indent + f"{row[0]:>10}" + "".join(f"{v:>10.4f}" for v in row[1:]))
