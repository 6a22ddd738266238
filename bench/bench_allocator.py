"""The C allocator policy of latentatlas.runtime, on and off, in one run.

The policy is process-wide and cannot be undone inside a process, so each measurement runs in
its own subprocess (LATENTATLAS_MALLOC=default for the baseline), alternating, and the median
of the repeats is compared. Workloads: rendering fashion-stylegan2 samples at batch 500 and
forward + backward of an inversion-sized batch.

    python bench/bench_allocator.py [repeats]
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys

_CHILD = r"""
import json, sys, time, torch
sys.path.insert(0, "bench")
import _common  # applies the allocator policy unless LATENTATLAS_MALLOC=default
from latentatlas.models.registry import load_generator
from latentatlas.runtime import tune_allocator
torch.set_num_threads(2)
m = load_generator("fashion-stylegan2")
z = m.sample_z(2000, 0)
out = {"policy": tune_allocator()}
with torch.inference_mode():
    m(z[:500])
    t = time.perf_counter()
    for i in range(0, 2000, 500):
        m(z[i:i + 500])
    out["render 2000 (batch 500)"] = time.perf_counter() - t
zz = m.sample_z(64, 1).requires_grad_()
m(zz).square().sum().backward()
t = time.perf_counter()
for _ in range(5):
    m(zz).square().sum().backward()
out["5 x forward+backward (batch 64)"] = time.perf_counter() - t
print(json.dumps(out))
"""


def _run(default: bool) -> dict:
    env = dict(os.environ, LATENTATLAS_MALLOC="default" if default else "tuned")
    r = subprocess.run([sys.executable, "-c", _CHILD], env=env, capture_output=True, text=True, check=True)
    return json.loads(r.stdout.strip().splitlines()[-1])


def main():
    repeats = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    runs = {False: [], True: []}
    for _ in range(repeats):
        for default in (True, False):
            runs[default].append(_run(default))
    assert all(not r["policy"] for r in runs[True]) and all(r["policy"] for r in runs[False])
    print(f"{'workload':<34}{'glibc default s':>16}{'tuned s':>10}{'ratio':>8}   (median of {repeats}, 2 threads)")
    for key in runs[True][0]:
        if key == "policy":
            continue
        a = statistics.median(r[key] for r in runs[True])
        b = statistics.median(r[key] for r in runs[False])
        print(f"{key:<34}{a:>16.3f}{b:>10.3f}{a / b:>7.2f}x")


if __name__ == "__main__":
    main()
