"""Inversion benchmarks.

``inits`` (default): does inversion find every image? On N of the model's own samples spread
evenly over the ten Fashion-MNIST classes (the feature network's labels) and on N Fashion-MNIST
test images, for each start (mean w, best-of-N, multi-start, encoder): the share that reaches
the target PSNR (25 dB on generated, 20 dB on real images) and the median steps to reach it
(W+, default losses, each image stops at the target), all in one run; plus a grid of the hardest
class's targets and reconstructions. ``throughput``: the batched engine vs the same algorithm
looped one image at a time (how the peers' projectors run), and steps to 28 dB.

usage: python bench/bench_invert.py [inits|throughput] [N] [MAX_STEPS] [INITS] [GRID.png]"""
from __future__ import annotations

import sys
import time

import torch

from latentatlas.errors import LatentAtlasError
from latentatlas.inversion import InversionConfig, invert
from latentatlas.metrics.reconstruction import psnr
from latentatlas.models.registry import load_generator


def spread_samples(m, n: int, seed: int = 50_000):
    """n generated images, as even as possible over the feature network's ten classes."""
    from latentatlas.metrics.features import FashionFeatures
    ext = FashionFeatures()
    per = -(-n // 10)
    with torch.no_grad():
        x = torch.cat([m(m.sample_z(500, seed + i)).clamp(-1, 1) for i in range(6)])
        cls = torch.cat([ext.classify(x[i:i + 500]) for i in range(0, x.shape[0], 500)])
    idx = torch.cat([torch.nonzero(cls == c).flatten()[:per] for c in range(10)])[:n]
    return x[idx], cls[idx]


def run_init(m, x, init, steps, target, reg=("none", 0.0)):
    cfg = InversionConfig(space="wplus", steps=steps, init=init, stop_psnr=target, regularizer=reg[0], reg_value=reg[1])
    t0 = time.perf_counter()
    recs, used, ok = [], [], []
    for i in range(0, x.shape[0], 64):
        r = invert(m, x[i:i + 64], cfg)
        p = psnr(r.images, x[i:i + 64])
        recs.append(r.images)
        used.append(r.steps_used)
        ok.append(p >= target - 1e-6)
    used, ok = torch.cat(used), torch.cat(ok)
    med = used[ok].float().median().item() if ok.any() else float("nan")
    return {"share": ok.float().mean().item(), "median_steps": med, "seconds": time.perf_counter() - t0,
            "ok": ok, "recon": torch.cat(recs)}


def encoder_alone(m, x):
    """PSNR of the encoder's prediction itself (no optimisation step)."""
    from latentatlas.inversion.encoder import load_encoder
    t0 = time.perf_counter()
    enc = load_encoder(None, m)
    with torch.no_grad():
        y = m.synthesis(enc.predict(x, space="wplus")).clamp(-1, 1)
    p = psnr(y, x)
    return {"mean": p.mean().item(), "min": p.min().item(), "seconds": time.perf_counter() - t0}


def inits_table(n: int = 256, steps: int = 400, inits=None, grid=None):
    from latentatlas.data.fashion import load_fashion_mnist
    from latentatlas.imageio import save_grid
    from latentatlas.inversion.encoder import default_path
    m = load_generator("fashion-stylegan2")
    inits = inits or ["mean", "best-of:256", "multi-start:4:256", "encoder"]
    if "encoder" in inits and not default_path(m).is_file():
        print("no encoder trained for fashion-stylegan2 (latentatlas train-encoder --model fashion-stylegan2): "
              "its rows are left out")
        inits = [i for i in inits if i != "encoder"]
    gen, cls = spread_samples(m, n)
    real = load_fashion_mnist("test")[0][:n]
    names = ("Bottom", "Top", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
    print(f"fashion-stylegan2, W+, max {steps} steps, default losses; each image stops at its target PSNR")
    print(f"{'set':<24}{'init':<22}{'share >= target':>16}{'median steps':>14}{'seconds':>10}")
    worst = None
    for label, x, target, reg in (("generated (25 dB)", gen, 25.0, ("none", 0.0)),
                                  ("generated, clip 2", gen, 25.0, ("pnorm-clip", 2.0)),
                                  ("Fashion-MNIST (20 dB)", real, 20.0, ("none", 0.0))):
        for init in inits:
            # the regularised and the real-image sets: the starts that matter for the default choice
            if reg[0] != "none" and init != inits[1]:
                continue
            if label.startswith("Fashion") and init.startswith("multi-start"):
                continue
            if init == "encoder" and reg[0] == "none":
                e = encoder_alone(m, x)
                print(f"{label:<24}{'encoder alone':<22}{'mean ' + format(e['mean'], '.2f') + ' dB':>16}"
                      f"{'min ' + format(e['min'], '.1f'):>14}{e['seconds']:>10.1f}", flush=True)
            r = run_init(m, x, init, steps, target, reg)
            print(f"{label:<24}{init:<22}{r['share']:>16.1%}{r['median_steps']:>14.0f}{r['seconds']:>10.0f}", flush=True)
            if label.startswith("generated (") and init == "mean":
                worst = r
            if label.startswith("generated (") and init == inits[1]:
                best = r
    if grid and worst is not None:
        share = torch.stack([(~worst["ok"][cls == c]).float().mean() for c in range(10)])
        hard = share.topk(3).indices.tolist()
        rows = []
        for c in hard:
            i = torch.nonzero(cls == c).flatten()[:8]
            rows += [gen[i], worst["recon"][i], best["recon"][i]]
        save_grid(torch.cat(rows), grid, nrow=8, scale=3)
        print(f"grid {grid}: for classes {', '.join(names[c] for c in hard)} (most misses from the mean start): "
              f"rows = targets, mean-start reconstructions, {inits[1]} reconstructions")


def main(n: int = 64, steps: int = 100):
    name = sys.argv[2] if len(sys.argv) > 2 else "fashion-stylegan2"
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
    a = sys.argv[1:]
    if a and a[0] == "throughput":
        main()
    else:
        inits_table(int(a[1]) if len(a) > 1 else 256, int(a[2]) if len(a) > 2 else 400,
                    a[3].split(",") if len(a) > 3 else None, a[4] if len(a) > 4 else None)
