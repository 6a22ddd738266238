"""Issue 41's editing check: a "Sneaker vs Sandal" direction from the user's labels (a CSV of 500
Fashion-MNIST *training* images — 250 Sneakers, 250 Sandals — whose probe labels the model's
samples; the bundled classifier is not used to find it) applied to 100 held-out *test* images
(50 Sneakers, 50 Sandals) inverted in W+: the share whose bundled-classifier reading flips to the
other class at each amount (in σ) along the direction toward it. Compared with the mean-difference
direction from the same labels and with the boundary from the bundled classifier.

usage: python bench/bench_boundary_flip.py [--steps 300] [--amounts 2,4,6]"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from latentatlas.data.fashion import CLASSES, load_fashion_mnist
from latentatlas.data.folder import load_image
from latentatlas.imageio import save_png
from latentatlas.inversion import InversionConfig, invert
from latentatlas.metrics.attributes import probe_from_csv
from latentatlas.metrics.features import FashionFeatures
from latentatlas.metrics.reconstruction import psnr
from latentatlas.metrics.reference import resolve
from latentatlas.models.registry import load_generator
from latentatlas.walks.directions import boundary, from_labelled_codes, mean_diff

PAIR = ("Sneaker", "Sandal")


def labels_csv(d: Path) -> Path:
    x, y = load_fashion_mnist("train")
    g = torch.Generator().manual_seed(0)
    rows = []
    for name in PAIR:
        idx = (y == CLASSES.index(name)).nonzero().flatten()
        for i in idx[torch.randperm(len(idx), generator=g)[:250]].tolist():
            save_png(x[i], d / f"tr{i}.png")
            rows.append(f"{d / f'tr{i}.png'},{name}")
    (d / "labels.csv").write_text("\n".join(rows) + "\n")
    return d / "labels.csv"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--amounts", default="2,4,6", help="amounts in sigma (comma-separated)")
    a = ap.parse_args()
    m = load_generator("fashion-stylegan2")
    clf = FashionFeatures(m.device)
    with tempfile.TemporaryDirectory() as d:
        csv = labels_csv(Path(d))
        _, ext = resolve(m, what="bench")
        probe = probe_from_csv(csv, m, ext)
        t0 = time.perf_counter()
        sets = {"boundary (labels probe on samples)": boundary(m, attributes=probe),
                "mean-diff (labels probe on samples)": mean_diff(m, attributes=probe),
                "boundary (bundled classifier)": boundary(m)}
        # the labelled images themselves inverted (W+, 150 steps, averaged over rows)
        rows = [line.split(",") for line in csv.read_text().splitlines()]
        xs = torch.stack([load_image(p, size=32, channels=1).tensor for p, _ in rows])
        cfg = InversionConfig(space="wplus", steps=150, perceptual="discriminator")
        codes = torch.cat([invert(m, xs[i:i + 250], cfg).ws.mean(1).cpu() for i in range(0, len(xs), 250)])
        for method in ("mean-diff", "boundary"):
            sets[f"{method} (inverted labelled images)"] = from_labelled_codes(m, codes, [lab for _, lab in rows],
                                                                                 method=method)
        print(f"directions: {time.perf_counter() - t0:.0f} s; probe held-out accuracy {probe.heldout_accuracy}")
    xt, yt = load_fashion_mnist("test")
    g = torch.Generator().manual_seed(1)
    pick = torch.cat([(yt == CLASSES.index(n)).nonzero().flatten()[torch.randperm(1000, generator=g)[:50]]
                      for n in PAIR])
    targets, truth = xt[pick], yt[pick]
    t0 = time.perf_counter()
    res = invert(m, targets.to(m.device), InversionConfig(space="wplus", steps=a.steps, perceptual="discriminator"))
    print(f"inverted {len(targets)} test images in W+, {a.steps} steps: {time.perf_counter() - t0:.0f} s; median PSNR "
          f"{psnr(res.images.cpu().clamp(-1, 1), targets).median():.2f} dB")
    with torch.no_grad():
        before = clf.classify(res.images.clamp(-1, 1))
    ok = before == truth.to(before.device)
    print(f"reconstructions read as their own class: {int(ok.sum())} of {len(ok)} (flips counted on those)")
    amounts = [float(v) for v in a.amounts.split(",")]
    for label, dirs in sets.items():
        names = dirs.meta["names"]
        flips = {amt: 0 for amt in amounts}
        for i in range(len(targets)):
            if not ok[i]:
                continue
            src = CLASSES[int(truth[i])]
            dst = PAIR[1] if src == PAIR[0] else PAIR[0]
            k = names.index(f"{dst} - rest") if f"{dst} - rest" in names else names.index(dst)
            for amt in amounts:
                v = dirs.vectors[k].to(m.device) * float(dirs.sigmas[k]) * amt
                with torch.no_grad():
                    img = m.synthesis(res.ws[i:i + 1] + v).clamp(-1, 1)
                flips[amt] += int(CLASSES[int(clf.classify(img)[0])] == dst)
        acc = dirs.meta.get("heldout_accuracy")
        print(f"{label:<42} flips to the other class: " + ", ".join(
            f"+{amt:g} sigma {flips[amt]}/{int(ok.sum())} ({flips[amt] / max(int(ok.sum()), 1):.0%})" for amt in amounts)
            + (f"; boundary held-out accuracy {[round(x, 3) for x in acc if x is not None][:2]}" if acc else "")
            + (f", L2 {dirs.meta['l2']}" if "l2" in dirs.meta else ""))


if __name__ == "__main__":
    main()
