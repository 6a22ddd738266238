"""Front-ends: features of a generator (with a latent sampler) or of an image set, and the
full quality report (FID, KID, precision, recall, density, coverage, class histogram)
against the shipped Fashion-MNIST test-split reference or any real feature set."""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch
from tqdm import tqdm

from .distribution import feature_stats, frechet_distance, kid, prdc, realism_summary
from .features import Extractor, FashionFeatures
from .reference import resolve


@torch.no_grad()
def features_of_images(images: torch.Tensor, extractor: Extractor, *, batch_size: int = 500,
                       progress: bool = False) -> np.ndarray:
    out = []
    for i in tqdm(range(0, images.shape[0], batch_size), disable=not progress, desc="features", leave=False):
        out.append(extractor(images[i: i + batch_size]).float().cpu())
    return torch.cat(out).numpy()


@torch.no_grad()
def features_of_generator(model, extractor: Extractor, *, n: int, seed: int = 0, batch_size: int = 250,
                          latents_to_images: Callable | None = None, progress: bool = False,
                          with_classes: bool = False):
    """Features of ``n`` generated images (seeds ``seed..seed+n-1``). ``latents_to_images(z)``
    overrides plain ``model(z)`` (e.g. a sampling strategy). Returns features [n, D] (and the
    predicted classes when ``with_classes`` and the extractor is a classifier)."""
    feats, classes = [], []
    fn = latents_to_images or model
    for i in tqdm(range(0, n, batch_size), disable=not progress, desc="generate+features", leave=False):
        z = model.sample_z(min(batch_size, n - i), seed + i)
        imgs = fn(z).clamp(-1, 1)
        feats.append(extractor(imgs).float().cpu())
        if with_classes and isinstance(extractor, FashionFeatures):
            classes.append(extractor.net.head(feats[-1].to(extractor.device)).argmax(1).cpu())
    f = torch.cat(feats).numpy()
    if with_classes:
        return f, (torch.cat(classes).numpy() if classes else None)
    return f


def quality_metrics(real_feats: np.ndarray, fake_feats: np.ndarray, *, real_stats=None, k: int = 3,
                    kid_subsets: int = 50, seed: int = 0) -> dict:
    mu_r, s_r = real_stats if real_stats is not None else feature_stats(real_feats)
    mu_f, s_f = feature_stats(fake_feats)
    k_mean, k_std = kid(real_feats, fake_feats, num_subsets=kid_subsets, seed=seed)
    return {"fid": frechet_distance(mu_r, s_r, mu_f, s_f), "kid": k_mean, "kid_std": k_std,
            **prdc(real_feats, fake_feats, k=k, seed=seed), **realism_summary(real_feats, fake_feats, k=k)}


def evaluate_model(model, *, n: int = 10000, features: str | None = None, seed: int = 0, device="cpu",
                   progress: bool = True, latents_to_images=None, reference=None, inception: str | None = None) -> dict:
    """Quality of ``n`` samples (seeds ``seed..``) against the reference that fits the model: the
    Fashion-MNIST test split for Fashion-MNIST models, else the image folder ``reference`` (see
    ``metrics.reference``). Returns FID (None when too few samples for a full-rank covariance),
    KID and its std, precision, recall, density, coverage, and the class histogram when the
    features come from the Fashion-MNIST classifier."""
    ref, ext = resolve(model, folder=reference, features=features, device=device, inception=inception,
                       what="evaluate")
    fake, classes = features_of_generator(model, ext, n=n, seed=seed, progress=progress, with_classes=True,
                                          latents_to_images=latents_to_images)
    res = {"model": model.name, "n": n, "features": ref.features, "reference": ref.name,
           **ref.scores(fake, seed=seed)}
    if classes is not None:
        hist = np.bincount(classes, minlength=10) / len(classes)
        res["class_histogram"] = [round(float(h), 4) for h in hist]
    return res
