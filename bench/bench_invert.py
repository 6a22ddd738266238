"""Inversion throughput: the batched engine vs the same algorithm looped one image at a time
(how the peers' projectors run), images per minute at a fixed step count, and the steps and
seconds until generated 32x32 images reach PSNR >= 28 dB (pixel MSE only, so the loss is the PSNR)."""
from __future__ import annotations

import math
import sys
import time

import torch

from latentatlas.errors import LatentAtlasError
from latentatlas.inversion import InversionConfig, invert
from latentatlas.models.registry import load_generator


def main(n: int = 64, steps: int = 100):
    name = sys.argv[1] if len(sys.argv) > 1 else "fashion-stylegan2"
    try:
        m = load_generator(name)
    except LatentAtlasError as e:
        print(f"{name}: {e}")
        return
    with torch.no_grad():
        x = m(m.sample_z(n, 50_000)).clamp(-1, 1)
    cfg = InversionConfig(space="wplus", steps=steps, lr=0.05, perceptual="discriminator", perceptual_weight=0.05,
                          early_stop_patience=10 ** 9)
    t0 = time.perf_counter()
    invert(m, x, cfg)
    tb = time.perf_counter() - t0
    k = min(n, 8)             # the loop is slow: time k images and scale
    t0 = time.perf_counter()
    for i in range(k):
        invert(m, x[i:i + 1], cfg)
    tl = (time.perf_counter() - t0) / k * n
    print(f"{name}, W+, {steps} steps, {n} images (D-feature perceptual term):")
    print(f"  batched: {tb:.1f} s -> {n / tb * 60:.1f} images/min")
    print(f"  loop:    {tl:.1f} s (from {k} images) -> {n / tl * 60:.1f} images/min")
    print(f"  speed-up batched / loop: {tl / tb:.1f}x")
    # steps and seconds to PSNR >= 28 dB
    cfg2 = InversionConfig(space="wplus", steps=1000, lr=0.05, perceptual="none", perceptual_weight=0.0,
                           lr_rampdown=0.0, early_stop_patience=10 ** 9)
    reached = torch.full((n,), -1)
    t_reach = torch.full((n,), float("nan"))
    t0 = time.perf_counter()

    def cb(step, loss, active):
        p = 10 * torch.log10(4.0 / loss.clamp_min(1e-12))
        new = (p >= 28) & (reached < 0)
        reached[new] = step + 1
        t_reach[new] = time.perf_counter() - t0
    res = invert(m, x, cfg2, callback=cb)
    ok = reached > 0
    print(f"  PSNR >= 28 dB: {int(ok.sum())}/{n} images within 1000 steps; median steps "
          f"{reached[ok].float().median().item() if ok.any() else float('nan'):.0f}, median seconds (batch of {n}) "
          f"{t_reach[ok].median().item() if ok.any() else float('nan'):.1f}; total {res.seconds:.1f} s")


if __name__ == "__main__":
    main()
