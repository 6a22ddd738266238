"""Train the ``fashion-features`` classifier and write its weights plus the test-split
reference statistics into the package (``python -m latentatlas.train.features``)."""
from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..data.fashion import load_fashion_mnist
from ..imageio import atomic_path
from ..metrics.features import FEATURES_FILE, REFERENCE_FILE, FashionClassifier

log = logging.getLogger("latentatlas.train")


@torch.no_grad()
def _eval(net, x, y, bs=1000):
    net.eval()
    feats, correct = [], 0
    for i in range(0, x.shape[0], bs):
        e = net.embed(x[i:i + bs])
        feats.append(e)
        correct += (net.head(e).argmax(1) == y[i:i + bs]).sum().item()
    return torch.cat(feats), correct / x.shape[0]


def train_features(out_dir: Path, *, epochs: int = 8, batch: int = 128, lr: float = 2e-3, seed: int = 0,
                   data_dir=None) -> dict:
    torch.manual_seed(seed)
    xtr, ytr = load_fashion_mnist("train", path=data_dir)
    xte, yte = load_fashion_mnist("test", path=data_dir)
    cfg = dict(width=32, embed_dim=128, num_classes=10)
    net = FashionClassifier(**cfg)
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=5e-4)
    steps = epochs * (xtr.shape[0] // batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps)
    g = torch.Generator().manual_seed(seed)
    t0 = time.time()
    for ep in range(epochs):
        net.train()
        perm = torch.randperm(xtr.shape[0], generator=g)
        for i in range(0, xtr.shape[0] - batch + 1, batch):
            idx = perm[i:i + batch]
            xb = xtr[idx]
            flip = torch.rand(xb.shape[0], generator=g) < 0.5          # horizontal flips
            xb = torch.where(flip[:, None, None, None], xb.flip(3), xb)
            loss = F.cross_entropy(net(xb), ytr[idx], label_smoothing=0.05)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
        _, acc = _eval(net, xte, yte)
        log.info("epoch %d: test accuracy %.4f (%.0f s)", ep + 1, acc, time.time() - t0)
    feats, acc = _eval(net, xte, yte)
    f64 = feats.double().numpy()
    out_dir.mkdir(parents=True, exist_ok=True)
    with atomic_path(out_dir / FEATURES_FILE) as tmp:
        torch.save({"config": cfg, "state_dict": net.state_dict(),
                    "meta": {"test_accuracy": acc, "epochs": epochs, "train_seconds": round(time.time() - t0)}}, tmp)
    with atomic_path(out_dir / REFERENCE_FILE) as tmp:
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, mu=f64.mean(0), sigma=np.cov(f64, rowvar=False),
                                feats=feats.numpy().astype(np.float16), labels=yte.numpy().astype(np.int8))
    return {"test_accuracy": acc, "seconds": round(time.time() - t0)}


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "weights"))
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--threads", type=int, default=None)
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    print(json.dumps(train_features(Path(a.out), epochs=a.epochs)))
