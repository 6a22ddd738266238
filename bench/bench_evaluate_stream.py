"""evaluate streams (issue 39): peak memory (VmHWM) and time of `latentatlas evaluate` at two N in
fresh processes — the peak should stay flat as N grows (chunks of metrics.suite.CHUNK seeds; FID
from float64 moments over all N, KID / k-NN metrics on the first KEEP samples).

usage: python bench/bench_evaluate_stream.py [MODEL] [N1,N2]   (default fashion-wgangp 10000,50000)"""
from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

WRAPPER = """
import json, sys
from latentatlas.cli.main import main
rc = main(sys.argv[2:])
hwm = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:"))
json.dump({"rc": rc, "peak_mb": hwm / 1024}, open(sys.argv[1], "w"))
"""


def main():
    model = sys.argv[1] if len(sys.argv) > 1 else "fashion-wgangp"
    ns = [int(x) for x in (sys.argv[2] if len(sys.argv) > 2 else "10000,50000").split(",")]
    print(f"latentatlas evaluate --model {model}: peak RSS (VmHWM) and wall time per N, one process each")
    with tempfile.TemporaryDirectory() as d:
        for n in ns:
            stats = Path(d) / f"{n}.json"
            t0 = time.perf_counter()
            p = subprocess.run([sys.executable, "-c", WRAPPER, str(stats), "evaluate", "--model", model, "--n", str(n),
                                "--json"], capture_output=True, text=True)
            dt = time.perf_counter() - t0
            st = json.loads(stats.read_text())
            res = json.loads(p.stdout)
            print(f"N = {n:>6}: peak RSS {st['peak_mb']:7.0f} MB, {dt:6.1f} s, FID {res['fid']:.3f}, "
                  f"k-NN metrics on {res.get('knn_n', n)} samples")


if __name__ == "__main__":
    main()
