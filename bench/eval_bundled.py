"""Quality of the bundled Fashion-MNIST models on 10k samples vs the test split, next to the
floor FID(train 10k, test 10k) in the same feature space."""
from __future__ import annotations

import numpy as np
import torch

from latentatlas.data.fashion import CLASSES, load_fashion_mnist
from latentatlas.errors import LatentAtlasError
from latentatlas.metrics.features import FashionFeatures, reference_stats
from latentatlas.metrics.suite import evaluate_model, features_of_images, quality_metrics
from latentatlas.models.registry import load_generator


def main(n: int = 10000):
    ref = reference_stats()
    x, _ = load_fashion_mnist("train")
    idx = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(0))[:n]
    f = features_of_images(x[idx], FashionFeatures())
    floor = quality_metrics(ref["feats"].astype(np.float64), f.astype(np.float64), real_stats=(ref["mu"], ref["sigma"]))
    print(f"floor (train {n} vs test 10k): " + ", ".join(f"{k} {v:.4f}" for k, v in floor.items()))
    for name in ("fashion-stylegan2", "fashion-wgangp"):
        try:
            m = load_generator(name)
        except LatentAtlasError as e:
            print(f"{name}: {e}")
            continue
        r = evaluate_model(m, n=n, progress=False)
        print(f"{name}: " + ", ".join(f"{k} {v:.4f}" for k, v in r.items() if isinstance(v, float)))
        print("  classes: " + ", ".join(f"{c} {h:.3f}" for c, h in zip(CLASSES, r["class_histogram"])))


if __name__ == "__main__":
    main()
