"""fp32 against bf16 (``--precision``), in one run: speed and whether the answers change.

Speed (ratios measured in the same run, 1 and 2 torch threads): sampling (mapping + synthesis,
no grad) and one W+ inversion step (synthesis forward + backward of an MSE loss to the latents)
on fashion-stylegan2 (32 px) and on a StyleGAN2 of the ``paper256`` configuration with random
weights (256 px, 512-d W, 14 W+ rows, channels min(16384/res, 512)), each at the best of a few
batch sizes.

Equivalence (``--equivalence``): on fashion-stylegan2, the distribution metrics at N samples
against the Fashion-MNIST test split at fp32 over several disjoint seed sets, whose spread sets
the scale, and bf16 on the same seed sets (paired); W+ inversion PSNR of K held-out test images at S steps, fp32 vs bf16
from the same starts; and the images of every conformance fixture, max and mean |difference|.

usage: python bench/bench_precision.py [--equivalence] [--n 10000] [--k 100] [--steps 300] [--skip-speed]"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from _common import timeit

from latentatlas.models.interface import ModelInfo, StyleGANModel
from latentatlas.models.registry import load_generator
from latentatlas.models.stylegan2 import StyleGAN2Config, StyleGAN2Generator
from latentatlas.precision import resolve

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures"


def paper256(resolution: int = 256, device: str = "cpu") -> StyleGANModel:
    """stylegan2-ada's paper256 configuration (cbase 16384, cmax 512, 8 mapping layers), random
    weights; at 1024 px the same rule gives config-f's widths (cbase 32768 there: 512 down to 32)."""
    torch.manual_seed(0)
    cbase = 16384 if resolution <= 256 else 32768
    ch = {2 ** i: min(cbase // 2 ** i, 512) for i in range(2, int(np.log2(resolution)) + 1)}
    cfg = StyleGAN2Config(z_dim=512, w_dim=512, img_resolution=resolution, img_channels=3, channels=ch,
                          mapping_layers=8, conv_clamp=256)
    G = StyleGAN2Generator(cfg)
    with torch.no_grad():
        for p in G.parameters():
            p.normal_(0, 1) if p.ndim > 1 else p.normal_(0, 0.1)
    return StyleGANModel(ModelInfo(f"paper256-random-{resolution}", "stylegan2", "bench"), G).to(device)


def per_image(fn, batch: int, min_time: float) -> float:
    return timeit(fn, min_time=min_time, warmup=1) / batch


def speed(model, batches, min_time: float) -> dict:
    """Best seconds per image over ``batches`` for sampling and for one W+ inversion step."""
    out = {}
    for what in ("sample", "invert step"):
        best = None
        for b in batches:
            z = model.sample_z(b, 0)
            if what == "sample":
                def fn():
                    with torch.no_grad():
                        model(z)
            else:
                with torch.no_grad():
                    target = model(z).detach()
                    ws0 = model.broadcast(model.mapping(model.sample_z(b, 1)))

                def fn():
                    ws = ws0.clone().requires_grad_(True)
                    loss = (model.synthesis(ws) - target).square().mean()
                    loss.backward()
            t = per_image(fn, b, min_time)
            if best is None or t < best[0]:
                best = (t, b)
        out[what] = best
    return out


def run_speed(min_time: float, device: str = "cpu", sizes=(256,), compiled: bool = False):
    models = [("fashion-stylegan2 32px", load_generator("fashion-stylegan2", device=device), (16, 64, 256))]
    gpu = device != "cpu"
    for r in sizes:
        models.append((f"paper256-config {r}px", paper256(r, device),
                       ((8, 32, 64) if r <= 256 else (2, 8, 16)) if gpu else ((1, 4, 8) if r <= 256 else (1, 2))))
    print(f"speed on {device}: seconds per image (best batch), fp32 vs bf16 in the same run")
    print(f"{'model':<24}{'threads':>8}{'task':>13}{'fp32 s/img':>12}{'bf16 s/img':>12}{'bf16 x':>8}")
    for threads in ((torch.get_num_threads(),) if gpu else (1, 2)):
        torch.set_num_threads(threads)
        for name, m, batches in models:
            res = {}
            for p in ("fp32", "bf16"):
                m.set_precision(p)
                res[p] = speed(m, batches, min_time)
            for task in ("sample", "invert step"):
                (a, ba), (b, bb) = res["fp32"][task], res["bf16"][task]
                print(f"{name:<24}{threads:>8}{task:>13}{a:>9.4f} b{ba:<2}{b:>9.4f} b{bb:<2}{a / b:>8.2f}", flush=True)
            if compiled and "256" in name:
                for p in ("fp32", "bf16"):     # sampling with the synthesis through torch.compile, at the best batch
                    m.set_precision(p, compile=True)
                    b = res[p]["sample"][1]
                    z = m.sample_z(b, 0)
                    t0 = time.perf_counter()
                    with torch.no_grad():
                        m(z)
                    first = time.perf_counter() - t0

                    def fn():
                        with torch.no_grad():
                            m(z)
                    t = per_image(fn, b, min_time)
                    a = res["fp32"]["sample"][0]
                    print(f"{name:<24}{threads:>8}{'sample':>13}  {p} + torch.compile: {t:.4f} s/img b{b} "
                          f"({a / t:.2f}x eager fp32; first call {first:.0f} s)", flush=True)
                m.set_precision("fp32", compile=False)
            m.set_precision("fp32")


def run_equivalence(n: int, k: int, steps: int, seed_sets: int = 5):
    from latentatlas.data.fashion import load_fashion_mnist
    from latentatlas.inversion import InversionConfig, invert
    from latentatlas.metrics.reconstruction import psnr
    from latentatlas.metrics.suite import evaluate_model
    torch.set_num_threads(2)
    m = load_generator("fashion-stylegan2")
    keys = ("fid", "kid", "precision", "recall", "density", "coverage")
    rows = {}
    seeds = [i * n for i in range(seed_sets)]          # disjoint seed ranges: the seed-to-seed spread
    for p in ("fp32", "bf16"):
        m.set_precision(p)
        for s in seeds:
            t0 = time.perf_counter()
            r = evaluate_model(m, n=n, seed=s, progress=False)
            rows[p, s] = {key: r[key] for key in keys}
            print(f"  {p} seeds {s}..{s + n - 1}: {time.perf_counter() - t0:.0f} s", flush=True)
    print(f"\nequivalence on fashion-stylegan2, N = {n} against the Fashion-MNIST test split, {seed_sets} seed sets "
          "(the same latents at both precisions)")
    print("| metric | fp32 mean | bf16 mean | bf16 - fp32, paired mean | its s.e. | fp32 seed-to-seed std |")
    print("|---|---|---|---|---|---|")
    for key in keys:
        a = np.array([rows["fp32", s][key] for s in seeds])
        b = np.array([rows["bf16", s][key] for s in seeds])
        d = b - a
        print(f"| {key} | {a.mean():.4f} | {b.mean():.4f} | {d.mean():+.4f} | {d.std(ddof=1) / np.sqrt(len(d)):.4f} "
              f"| {a.std(ddof=1):.4f} |")
    # inversion: the same K test images from the mean w, same steps, fp32 vs bf16
    x = load_fashion_mnist("test")[0][-k:]
    cfg = InversionConfig(space="wplus", steps=steps, init="mean", perceptual="none")
    ps = {}
    for p in ("fp32", "bf16"):
        m.set_precision(p)
        t0 = time.perf_counter()
        res = invert(m, x, cfg)
        with torch.no_grad():
            m.set_precision("fp32")
            ps[p] = psnr(m.synthesis(res.ws), x).numpy()       # both read back at fp32
        print(f"  inversion {p}: {time.perf_counter() - t0:.0f} s", flush=True)
    d = ps["bf16"] - ps["fp32"]
    print(f"\ninversion PSNR, {k} held-out test images, W+ from the mean w, {steps} steps (read back at fp32): "
          f"fp32 mean {ps['fp32'].mean():.2f} dB, bf16 mean {ps['bf16'].mean():.2f} dB, "
          f"difference mean {d.mean():+.3f} dB (per image: median {np.median(d):+.3f}, 5-95% "
          f"[{np.percentile(d, 5):+.3f}, {np.percentile(d, 95):+.3f}])")
    print("\nconformance fixtures: images at bf16 vs fp32 (16 seeds)")
    print("| fixture | max abs diff | mean abs diff | fp32 images' std |")
    print("|---|---|---|---|")
    files = sorted([*FIXTURES.glob("*.pkl"), *FIXTURES.glob("*.pt"), *(FIXTURES / "round2").glob("*.pkl"),
                    *(FIXTURES / "round2").glob("*.pth"), FIXTURES / "round2" / "s-biggan-32"])
    for f in files:
        if not f.exists():
            continue
        fm = load_generator(str(f))
        if fm.conditional:
            fm.set_class(0)
        z = fm.sample_z(16, 0)
        with torch.no_grad():
            ref = fm(z)
            low = fm.set_precision("bf16")(z)
        dd = (low - ref).abs()
        print(f"| {f.name} | {float(dd.max()):.4f} | {float(dd.mean()):.5f} | {float(ref.std()):.3f} |")


def run_headline(n: int, device: str, steps: int = 1000, batch: int = 100):
    """N images x ``steps`` Adam steps of W+ inversion at 256 px, auto precision, in batches: the
    wall time (the issue's target on one H100-class GPU: 1,000 x 1,000 in <= 5 minutes)."""
    from latentatlas.inversion import InversionConfig, invert
    m = paper256(256, device).set_precision("auto")
    cfg = InversionConfig(space="wplus", steps=steps, init="mean", perceptual="none", lr=0.01)
    t0 = time.perf_counter()
    done = 0
    while done < n:
        b = min(batch, n - done)
        with torch.no_grad():
            x = m(m.sample_z(b, 10_000 + done)).clamp(-1, 1)
        invert(m, x, cfg)
        done += b
        print(f"  {done}/{n} images, {time.perf_counter() - t0:.0f} s", flush=True)
    dt = time.perf_counter() - t0
    print(f"headline: {n} images x {steps} steps of W+ inversion at 256 px ({m.precision.name}): {dt:.0f} s "
          f"({dt / n:.2f} s per image)")


def run_directions(steps: int):
    """DP-LaSE discovery (k = 3 at b8, ``steps`` steps) at fp32 with two seeds and at bf16 with the
    first: the directions' |cosine| to fp32 seed 0's (matched in order), their G1 variation and
    density drift read at fp32, and the discovery's seconds per step."""
    from latentatlas.walks.directions import compute_directions
    from latentatlas.walks.edit import evaluate_directions
    torch.set_num_threads(2)
    m = load_generator("fashion-stylegan2")
    runs = {}
    for label, p, seed in (("fp32 seed 0", "fp32", 0), ("fp32 seed 1", "fp32", 1), ("bf16 seed 0", "bf16", 0)):
        m.set_precision(p)
        t0 = time.perf_counter()
        d = compute_directions(m, "dplase", k=3, layer="b8", steps=steps, seed=seed)
        sec = (time.perf_counter() - t0) / steps
        m.set_precision("fp32")
        ev = evaluate_directions(m, d, n=64, layer="b8")
        runs[label] = (d, sec, ev)
        print(f"  DP-LaSE {label}: {sec:.3f} s per discovery step", flush=True)
    ref = runs["fp32 seed 0"][0].vectors
    print(f"\nDP-LaSE discovery on fashion-stylegan2 (k 3, layer b8, {steps} steps), read at fp32 (64 samples)")
    print("| run | |cos| to fp32 seed 0 (per direction) | G1 variation (mean) | density drift, dp walk (mean) "
          "| density drift, linear (mean) | s per step |")
    print("|---|---|---|---|---|---|")
    for label, (d, sec, ev) in runs.items():
        cos = (d.vectors @ ref.t()).diagonal().abs().tolist()
        r = ev["rows"]
        mean = lambda k: float(np.mean([x[k] for x in r if k in x])) if any(k in x for x in r) else float("nan")
        print(f"| {label} | {', '.join(f'{c:.3f}' for c in cos)} | {mean('g1_variation'):.3f} | "
              f"{mean('density_drift_dp'):.3f} | {mean('density_drift_linear'):.3f} | {sec:.3f} |")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--equivalence", action="store_true")
    ap.add_argument("--skip-speed", action="store_true")
    ap.add_argument("--directions", action="store_true", help="DP-LaSE discovery at fp32 (two seeds) vs bf16")
    ap.add_argument("--dp-steps", type=int, default=300)
    ap.add_argument("--n", type=int, default=10000)
    ap.add_argument("--k", type=int, default=100)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--seed-sets", type=int, default=5, help="seed sets of N for the metrics' spread")
    ap.add_argument("--min-time", type=float, default=3.0)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--compile", action="store_true", help="also time sampling with the synthesis through torch.compile")
    ap.add_argument("--sizes", default="256", help="resolutions of the paper256-config model, e.g. 256,1024")
    ap.add_argument("--tf32", action="store_true", help="allow TF32 in the fp32 runs (CUDA)")
    ap.add_argument("--headline", type=int, default=0, metavar="N",
                    help="also time N images x 1000 steps of W+ inversion at 256 px (the GPU headline)")
    a = ap.parse_args()
    if a.tf32:
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    if a.device != "cpu":
        torch.backends.cudnn.benchmark = True
    print(f"auto resolves to: {resolve('auto', a.device).name} ({resolve('auto', a.device).reason})")
    if not a.skip_speed:
        run_speed(a.min_time, a.device, tuple(int(s) for s in a.sizes.split(",")), a.compile)
    if a.headline:
        run_headline(a.headline, a.device)
    if a.equivalence:
        run_equivalence(a.n, a.k, a.steps, a.seed_sets)
    if a.directions:
        run_directions(a.dp_steps)


if __name__ == "__main__":
    main()
