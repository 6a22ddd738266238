"""Issue 41's refinement check (pivotal tuning, PTI): 100 held-out Fashion-MNIST *test* images (10
per class) inverted in W+, then refined; reconstruction before and after (PSNR / SSIM /
perceptual, the inversion's discriminator-feature distance), seconds per image, and whether edits
survive: II2S's edit range (the bundled classifier's probabilities along GANSpace's first three
directions at -2..2 sigma) of the refined generators minus that of the unrefined one, paired over
the images with a 95% interval (PTI's claim: refinement keeps the pivot's editability).

usage: python bench/bench_refine.py [--n 100] [--invert-steps 300] [--steps 100] [--batch 10]"""
from __future__ import annotations

import argparse
import time

import torch

from latentatlas.data.fashion import load_fashion_mnist
from latentatlas.evaluation.inversion import edit_probs, edit_range_of, paired_edit_difference
from latentatlas.inversion import InversionConfig, invert
from latentatlas.inversion.refine import RefineConfig, refine, render_refined
from latentatlas.metrics.attributes import ClassifierAttributes
from latentatlas.metrics.features import FashionFeatures
from latentatlas.metrics.perceptual import perceptual_fn
from latentatlas.metrics.reconstruction import reconstruction_metrics
from latentatlas.models.registry import load_generator
from latentatlas.walks.directions import ganspace


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--invert-steps", type=int, default=300)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--batch", type=int, default=10)
    ap.add_argument("--locality", type=float, default=0.1)
    a = ap.parse_args()
    m = load_generator("fashion-stylegan2")
    xt, yt = load_fashion_mnist("test")
    g = torch.Generator().manual_seed(3)
    pick = torch.cat([(yt == k).nonzero().flatten()[torch.randperm(1000, generator=g)[:a.n // 10]] for k in range(10)])
    x = xt[pick]
    t0 = time.perf_counter()
    inv = invert(m, x, InversionConfig(space="wplus", steps=a.invert_steps, perceptual="discriminator"))
    t_inv = time.perf_counter() - t0
    perc = perceptual_fn("discriminator", m)
    cfg = RefineConfig(steps=a.steps, locality=a.locality)
    deltas, after, secs = {}, [], 0.0
    for i in range(0, len(x), a.batch):
        r = refine(m, x[i:i + a.batch], inv.ws[i:i + a.batch], cfg)
        secs += r.seconds
        after.append(r.images)
        for k, v in r.deltas.items():
            deltas.setdefault(k, []).append(v)
    deltas = {k: torch.cat(v) for k, v in deltas.items()}
    after = torch.cat(after)
    with torch.no_grad():
        before = m.synthesis(inv.ws)
    m0, m1 = reconstruction_metrics(x, before, perc), reconstruction_metrics(x, after, perc)
    print(f"fashion-stylegan2, {len(x)} test images (10 per class); W+ inversion {a.invert_steps} steps "
          f"({t_inv / len(x):.2f} s/image); refinement {a.steps} steps, lr {cfg.lr}, locality {cfg.locality}, "
          f"batches of {a.batch}: {secs / len(x):.2f} s/image")
    for k in ("psnr", "ssim", "perceptual"):
        b, f = m0[k].float(), m1[k].float()
        print(f"  {k:<10} median before {b.median():.4f}  after {f.median():.4f}  (mean {b.mean():.4f} -> {f.mean():.4f}; "
              f"improved on {int((f > b).sum() if k != 'perceptual' else (f < b).sum())}/{len(x)})")
    dirs = ganspace(m, k=3)
    attrs = ClassifierAttributes(FashionFeatures(m.device))
    p_base = edit_probs(m, inv.ws, dirs, attrs)
    probs = []
    for i in range(3):
        u, s = dirs.vectors[i].to(m.device), float(dirs.sigmas[i])
        probs.append(torch.stack([attrs.probs(render_refined(m, deltas, inv.ws + amt * s * u)).float().cpu()
                                  for amt in (-2, -1, 0, 1, 2)]))
    p_ref = torch.stack(probs)
    d = paired_edit_difference(p_ref, p_base)
    print(f"  edit range (GANSpace 1-3, classifier probabilities): unrefined {float(edit_range_of(p_base).values.mean()):.4f}, "
          f"refined {float(edit_range_of(p_ref).values.mean()):.4f}; refined - unrefined {d['diff']:+.4f} "
          f"[{d['lo']:+.4f}, {d['hi']:+.4f}] (95%, paired over the images)")


if __name__ == "__main__":
    main()
