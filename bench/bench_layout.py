"""Memory layout on the CPU: the bundled generator and the Fashion feature network with
contiguous (NCHW) weights against the layout the library now uses (channels-last weights; for
the feature network also BatchNorm folded into the layer before it), timed alternately in one
run, with the largest difference of the outputs.

usage: python bench/bench_layout.py [THREADS] [BATCH]"""
from __future__ import annotations

import sys
import time

import torch

from latentatlas.metrics.features import FashionClassifier, _resource, FEATURES_FILE
from latentatlas.models.registry import load_generator


def _time(fn, reps: int = 3) -> float:
    fn()
    t = time.perf_counter()
    for _ in range(reps):
        fn()
    return (time.perf_counter() - t) / reps


def main():
    threads = int(sys.argv[1]) if len(sys.argv) > 1 else torch.get_num_threads()
    batch = int(sys.argv[2]) if len(sys.argv) > 2 else 250
    torch.set_num_threads(threads)
    print(f"{threads} thread(s), batch {batch}")
    fast = load_generator("fashion-stylegan2")                     # channels-last weights (GANModel.to)
    plain = load_generator("fashion-stylegan2")
    plain.G.to(memory_format=torch.contiguous_format)
    z = fast.sample_z(batch, 0)
    ck = torch.load(_resource(FEATURES_FILE), map_location="cpu", weights_only=True)
    net = FashionClassifier(**ck["config"])
    net.load_state_dict(ck["state_dict"])
    net.eval()
    fnet = net.for_inference()
    with torch.inference_mode():
        x = plain(z)
        pairs = [("generator fashion-stylegan2", lambda: plain(z), lambda: fast(z)),
                 ("fashion-features embed", lambda: net.embed(x), lambda: fnet.embed(x))]
        for name, a, b in pairs:
            diff = (a() - b()).abs().max().item()
            ta = min(_time(a), _time(a))
            tb = min(_time(b), _time(b))
            print(f"{name:<30} NCHW {ta:.3f} s  now {tb:.3f} s  speed-up {ta / tb:.2f}x  max |diff| {diff:.2e}")


if __name__ == "__main__":
    main()
