"""Sampling speed against NVIDIA's own code (issue 38 item 3): the same ``paper256``-config network
pickle (written by NVIDIA's stylegan2-ada-pytorch from a scratch checkout, random weights),
sampled by their ``G_ema(z, None, noise_mode='const', force_fp32=True)`` in a child process (their
code on a CPU runs fp32: fp16 is CUDA-only there) and by ours at fp32 and bf16 (eager, and bf16
through torch.compile) in this process; 1 and 2 threads, the best of a few batch sizes, seconds per
image (the best of repeated timed calls after a warm-up). Their code is used by this bench only.

usage: python bench/bench_speed_nvidia.py /path/to/stylegan2-ada-pytorch [--batches 1,4,8] [--min-time 3]"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from bench_loading_nvidia import WRITE

from latentatlas.models.registry import load_generator
from latentatlas.runtime import tune_allocator

THEIRS = """
import json, sys, time, torch
sys.path.insert(0, sys.argv[1])
import legacy
torch.set_num_threads(int(sys.argv[3]))
with open(sys.argv[2], "rb") as f:
    G = legacy.load_network_pkl(f)["G_ema"].eval()
out = {}
for b in map(int, sys.argv[4].split(",")):
    z = torch.randn(b, G.z_dim)
    with torch.no_grad():
        G(z, None, noise_mode="const", force_fp32=True)
        best, t_all = float("inf"), time.perf_counter()
        while time.perf_counter() - t_all < float(sys.argv[5]):
            t0 = time.perf_counter(); G(z, None, noise_mode="const", force_fp32=True)
            best = min(best, (time.perf_counter() - t0) / b)
    out[b] = best
print(json.dumps(out))
"""


def ours(model, batches, min_time: float) -> dict:
    out = {}
    for b in batches:
        z = model.sample_z(b, 0)
        with torch.no_grad():
            model(z)
            best, t_all = float("inf"), time.perf_counter()
            while time.perf_counter() - t_all < min_time:
                t0 = time.perf_counter()
                model(z)
                best = min(best, (time.perf_counter() - t0) / b)
        out[b] = best
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("nvidia", help="a checkout of NVlabs/stylegan2-ada-pytorch (scratch; bench only)")
    ap.add_argument("--batches", default="1,4,8")
    ap.add_argument("--min-time", type=float, default=3.0)
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--compile", action="store_true", help="also ours at bf16 through torch.compile")
    a = ap.parse_args()
    tune_allocator()
    batches = [int(x) for x in a.batches.split(",")]
    shim = Path(tempfile.mkdtemp())
    (shim / "pkg_resources.py").write_text("from packaging.version import parse as parse_version\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPATH"] = str(shim) + os.pathsep + env.get("PYTHONPATH", "")
    with tempfile.TemporaryDirectory() as d:
        pkl = Path(d) / "nvidia-paper256.pkl"
        subprocess.run([sys.executable, "-c", WRITE, a.nvidia, str(pkl), "256"], check=True, env=env)
        m = load_generator(str(pkl))
        print("seconds per image, best batch (b), paper256 config 256 px, random weights; ratios against NVIDIA fp32 "
              "in the same run")
        print(f"{'threads':>7}  {'NVIDIA fp32':>14}{'ours fp32':>14}{'ours bf16':>14}"
              + (f"{'bf16+compile':>15}" if a.compile else "") + "   ours fp32 / bf16" + (" / compiled" if a.compile else "")
              + " vs NVIDIA")
        for threads in (int(x) for x in a.threads.split(",")):
            out = subprocess.run([sys.executable, "-c", THEIRS, a.nvidia, str(pkl), str(threads), a.batches,
                                  str(a.min_time)], capture_output=True, text=True, env=env)
            if out.returncode:
                raise SystemExit(out.stderr[-2000:])
            theirs = {int(k): v for k, v in json.loads(out.stdout.strip().splitlines()[-1]).items()}
            torch.set_num_threads(threads)
            res = {"NVIDIA fp32": min((v, b) for b, v in theirs.items())}
            for p in ("fp32", "bf16"):
                m.set_precision(p)
                r = ours(m, batches, a.min_time)
                res[f"ours {p}"] = min((v, b) for b, v in r.items())
            if a.compile:
                m.set_precision("bf16", compile=True)
                b = res["ours bf16"][1]
                res["compiled"] = (ours(m, [b], a.min_time)[b], b)
                m.set_precision("fp32", compile=False)
            base = res["NVIDIA fp32"][0]
            cells = "".join(f"{v:>9.4f} b{b:<3}" for v, b in res.values())
            ratios = " / ".join(f"{base / v:.2f}x" for k, (v, _) in res.items() if k != "NVIDIA fp32")
            print(f"{threads:>7}  {cells}   {ratios}", flush=True)


if __name__ == "__main__":
    main()
