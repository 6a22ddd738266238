"""Process-wide settings that make the CPU path fast: the C allocator's large-block policy.

glibc serves every allocation above its mmap threshold (at most 32 MB) with a fresh ``mmap``
and unmaps it on free, so each batch-sized activation (a [500, 32, 32, 32] float tensor is
65 MB) is page-faulted in from zeroed pages on every layer of every call: on the 2-core
machines this project targets that made the elementwise layers of a StyleGAN2 render cost as
much as its convolutions. Keeping large blocks on the heap (no mmap, no trimming below
2 GB) lets freed activations be reused: rendering 2000 fashion-stylegan2 samples at batch 500
took 2.80 s instead of 4.11 s (1.47x; bench/bench_allocator.py, median of 3 alternating
processes), and the default test suite 373 s instead of 432 s. Work already batched below the
threshold is unchanged (the renderer's default batch of 64, forward + backward at batch 64:
0.99x), and so is the report's build time.

The CLI, the Ray workers, the benchmarks and the tests call :func:`tune_allocator` once at
start; a library user opts in by calling it. ``LATENTATLAS_MALLOC=default`` leaves the
allocator alone. The cost is that the process keeps its peak heap until it exits.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_TRIM_BYTES = 2 ** 31 - 1       # mallopt takes an int
_done: bool | None = None


def tune_allocator() -> bool:
    """Keep large freed blocks for reuse instead of returning them to the OS (glibc only).

    Returns True when the policy is in force (also on a second call), False where it does not
    apply: not Linux/glibc, or ``LATENTATLAS_MALLOC=default``."""
    global _done
    if _done is not None:
        return _done
    _done = False
    if os.environ.get("LATENTATLAS_MALLOC", "").lower() == "default" or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):     # musl and others: no mallopt
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    _done = bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, _TRIM_BYTES))
    return _done
