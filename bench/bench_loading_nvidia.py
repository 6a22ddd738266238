"""Loading an NVIDIA network pickle (issue 39 item 1): our loader against NVIDIA's own
(stylegan2-ada-pytorch ``legacy.load_network_pkl``) on the same file, each in fresh processes —
load time (best of N) and peak memory (VmHWM over the process's after its imports). The files are
written by NVIDIA's code from a checkout given on the command line (used by this bench only, in
child processes; never part of the project): a ``paper256``-config snapshot (G, D, G_ema; 256 px,
fmaps 0.5, 8 mapping layers, fp16 in the top 4 resolutions, clamp 256) and a ``config-f``-like one
at 1024 px. Random weights.

usage: python bench/bench_loading_nvidia.py /path/to/stylegan2-ada-pytorch [--sizes 256,1024] [--repeat 3]"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

WRITE = """
import pickle, sys, copy, torch
sys.path.insert(0, sys.argv[1])
from training.networks import Generator, Discriminator
res = int(sys.argv[3])
cbase, fp16 = (16384, 4) if res == 256 else (32768, 0)
G = Generator(z_dim=512, c_dim=0, w_dim=512, img_resolution=res, img_channels=3,
              mapping_kwargs=dict(num_layers=8),
              synthesis_kwargs=dict(channel_base=cbase, channel_max=512, num_fp16_res=fp16, conv_clamp=256 if fp16 else None))
D = Discriminator(c_dim=0, img_resolution=res, img_channels=3, channel_base=cbase, channel_max=512,
                  num_fp16_res=fp16, conv_clamp=256 if fp16 else None)
snap = dict(G=G.eval().requires_grad_(False), D=D.eval().requires_grad_(False),
            G_ema=copy.deepcopy(G).eval().requires_grad_(False), augment_pipe=None, training_set_kwargs=None)
with open(sys.argv[2], "wb") as f:
    pickle.dump(snap, f)
"""

THEIRS = """
import json, sys, time
def hwm():
    return next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:")) / 1024
sys.path.insert(0, sys.argv[1])
t0 = time.perf_counter()
import legacy, dnnlib
t1 = time.perf_counter(); base = hwm()
with open(sys.argv[2], "rb") as f:
    G = legacy.load_network_pkl(f)["G_ema"]
t2 = time.perf_counter()
print(json.dumps({"import_s": t1 - t0, "load_s": t2 - t1, "peak_mb": hwm() - base}))
"""

OURS = """
import json, sys, time
def hwm():
    return next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:")) / 1024
t0 = time.perf_counter()
from latentatlas.models.registry import load_generator
t1 = time.perf_counter(); base = hwm()
m = load_generator(sys.argv[2])
t2 = time.perf_counter()
print(json.dumps({"import_s": t1 - t0, "load_s": t2 - t1, "peak_mb": hwm() - base}))
"""


def run(code: str, *args, env=None) -> dict:
    out = subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True, env=env)
    if out.returncode:
        raise SystemExit(out.stderr[-2000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("nvidia", help="a checkout of NVlabs/stylegan2-ada-pytorch (scratch; bench only)")
    ap.add_argument("--sizes", default="256,1024")
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    shim = Path(tempfile.mkdtemp())
    (shim / "pkg_resources.py").write_text("from packaging.version import parse as parse_version\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPATH"] = str(shim) + os.pathsep + env.get("PYTHONPATH", "")
    print(f"{'file':<22}{'MB':>7}  {'loader':<12}{'load s (best)':>14}{'peak MB':>10}{'  ours/theirs: time, memory'}")
    with tempfile.TemporaryDirectory() as d:
        for res in (int(x) for x in a.sizes.split(",")):
            pkl = Path(d) / f"nvidia-{res}.pkl"
            subprocess.run([sys.executable, "-c", WRITE, a.nvidia, str(pkl), str(res)], check=True, env=env)
            rows = {}
            for name, code in (("NVIDIA", THEIRS), ("latentatlas", OURS)):
                runs = [run(code, a.nvidia, pkl, env=env) for _ in range(a.repeat)]
                rows[name] = (min(r["load_s"] for r in runs), min(r["peak_mb"] for r in runs))
            mb = pkl.stat().st_size / 2 ** 20
            for name, (t, p) in rows.items():
                ratio = "" if name == "NVIDIA" else (f"  {t / rows['NVIDIA'][0]:.2f}x, {p / rows['NVIDIA'][1]:.2f}x")
                print(f"{pkl.name:<22}{mb:>7.0f}  {name:<12}{t:>14.2f}{p:>10.0f}{ratio}")


if __name__ == "__main__":
    main()
