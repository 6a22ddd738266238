"""Training step time of the fashion-stylegan2 recipe at fp32 and under bf16 autocast, in one
run (G + D step at batch 32, R1 on every 16th step as the recipe does; both warm-started from
the bundled weights so the networks are the trained ones).

usage: python bench/bench_train_precision.py [STEPS=48] [THREADS=2]"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import torch
from _common import tune_allocator  # noqa: F401  (the CLI's allocator setting)

from latentatlas.data.fashion import load_fashion_mnist
from latentatlas.train.run import build_trainer

WEIGHTS = Path(__file__).resolve().parents[1] / "src" / "latentatlas" / "weights" / "fashion-stylegan2.pt"


def main(steps: int = 48, threads: int = 2):
    torch.set_num_threads(threads)
    data, _ = load_fashion_mnist("train")
    warm = torch.load(WEIGHTS, map_location="cpu", weights_only=True)
    print(f"fashion-stylegan2 recipe, batch 32, {threads} threads, {steps} steps each (R1 every 16)")
    times = {}
    for p in ("fp32", "bf16"):
        tr = build_trainer("stylegan2", seed=0, precision=p)
        tr.G.load_state_dict(warm["G"])
        tr.D.load_state_dict(warm["D"])
        g = torch.Generator().manual_seed(0)
        tr.step(data[torch.randint(len(data), (32,), generator=g)], 1, 0)     # warm-up
        t0 = time.perf_counter()
        for s in range(steps):
            tr.step(data[torch.randint(len(data), (32,), generator=g)], s, 32 * s)
        times[p] = (time.perf_counter() - t0) / steps
        print(f"  {p}: {times[p]:.3f} s per step", flush=True)
    print(f"bf16 autocast: {times['fp32'] / times['bf16']:.2f}x the fp32 step rate")


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:]))
