"""Write a bundled model's card (``weights/NAME.md``) from its file's training metadata and
the quality figures measured on it (``python -m latentatlas.train.card NAME [--n 10000]``)."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from ..data.fashion import CLASSES, load_fashion_mnist
from ..metrics.features import FashionFeatures, reference_stats
from ..metrics.suite import evaluate_model, features_of_images, quality_metrics
from ..models.registry import load_generator

WEIGHTS = Path(__file__).resolve().parents[1] / "weights"

DESCRIPTIONS = {
    "fashion-stylegan2": "StyleGAN2 (our pure-PyTorch implementation): 8-layer mapping (z, w in R^128, lr multiplier "
                         "0.01), skip synthesis 4->32 with channels 256/128/64/32, constant noise buffers; residual "
                         "discriminator with minibatch-std (group 4). Non-saturating logistic loss, lazy R1 "
                         "(gamma 0.05 every 16 steps), style mixing 0.9, EMA generator (half-life 10 kimg), Adam "
                         "(lr 0.0025, betas 0/0.99), batch 32. Sizing: 256 channels at 4x4 cost nothing measurable on "
                         "CPU while the 16/32 convolutions dominate; with 0.56 s per G+D step at batch 32 on an idle "
                         "2-core machine, 5 h buys ~30k steps (~1M images). In practice the run shared the two cores "
                         "with the project's other work for most of its time (at 1 thread, 0.8-0.9 s per step), so "
                         "its 5 h bought far fewer steps (see Training). Recall stalled near 0.23 at R1 gamma 0.05 "
                         "(0.159 / 0.225 / 0.229 at 391 / 512 / 576 kimg), so from step 15,993 (512 kimg) the run "
                         "continued on a branch with R1 gamma 0.2 (the hyper-parameters below are the branch's); "
                         "by 615 kimg it was better on every figure (recall 0.225 -> 0.264, FID 2.03 -> 1.83) and "
                         "replaced the gamma 0.05 weights. Every step ran on CPU (no GPU was lent).",
    "fashion-wgangp": "DCGAN-style generator (z in R^128 ~ N(0, I); ConvT 4x4 from 1x1 to 4x4, then three stride-2 "
                      "ConvT with BatchNorm/ReLU, widths 256/128/64, tanh) against a WGAN-GP critic (stride-2 convs "
                      "32/64/128 with LeakyReLU, no normalisation, minibatch-std, 3x3 conv, two linear layers). "
                      "Gradient penalty 10, 5 critic steps per generator step, Adam (1e-4, betas 0.5/0.9), batch 64, "
                      "EMA generator. Steps below count critic steps (one generator step per 5).",
}


def write_card(name: str, n: int = 10000) -> Path:
    m = load_generator(name)
    meta = m.info.extra or {}
    res = evaluate_model(m, n=n, progress=False)
    ref = reference_stats()
    x, _ = load_fashion_mnist("train")
    idx = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(0))[:n]
    floor = quality_metrics(ref["feats"].astype(np.float64), features_of_images(x[idx], FashionFeatures()).astype(np.float64),
                            real_stats=(ref["mu"], ref["sigma"]))
    lines = [f"# {name}", "", DESCRIPTIONS.get(name, ""), "",
             "## Training", "",
             f"* data: {meta.get('data', 'Fashion-MNIST train split')}",
             f"* steps: {meta.get('steps')}; images seen: {meta.get('images_seen'):,}; "
             f"training wall time: {meta.get('train_wall_hours')} h (2 CPU cores, shared with other work)",
             f"* hyper-parameters: `{json.dumps(meta.get('hparams', {}))}`",
             f"* weights hash: `{m.weights_hash()}`", "",
             f"## Quality ({n} samples vs the 10k test split, fashion-features, k = 3)", "",
             "| metric | model | floor: train vs test |", "|---|---|---|"]
    for k in ("fid", "kid", "precision", "recall", "density", "coverage", "realism", "share_unrealistic"):
        lines.append(f"| {k} | {res[k]:.4f} | {floor[k]:.4f} |")
    lines += ["", "Class histogram of samples (feature-network predictions): "
              + ", ".join(f"{c} {h:.3f}" for c, h in zip(CLASSES, res["class_histogram"])), ""]
    bar = [("precision >= 0.6", res["precision"] >= 0.6), ("recall >= 0.4", res["recall"] >= 0.4),
           ("every class >= 3% of samples", min(res["class_histogram"]) >= 0.03)]
    met = all(ok for _, ok in bar)
    lines += ["## Status", "", "Quality bar of the project: " + "; ".join(f"{t}: {'met' if ok else 'NOT met'}" for t, ok in bar)
              + (". These are the release weights." if met else
                 ". These weights do not meet it; training resumes from them with "
                 f"`latentatlas train {meta.get('arch')} --batch {meta['images_seen'] // meta['steps']} --out runs/{name} "
                 f"--init-from src/latentatlas/weights/{name}.pt`."), ""]
    path = WEIGHTS / f"{name}.md"
    path.write_text("\n".join(lines))
    return path


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("name")
    ap.add_argument("--n", type=int, default=10000)
    a = ap.parse_args()
    print(write_card(a.name, a.n))
