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


CHUNK = 2000          # seeds per chunk: the unit of streaming and of a pool task
KEEP = 10_000         # generated features kept for KID / PRDC / realism (the first KEEP seeds)


@torch.no_grad()
def chunk_stats(model, ext: Extractor, start: int, count: int, *, seed: int, keep: int, batch_size: int = 250,
                latents_to_images: Callable | None = None) -> dict:
    """Seeds ``seed+start .. seed+start+count-1`` generated and featurised: their float64 Σx and
    Σxxᵀ (the FID moments, reduced exactly over chunks), the features of those among the first
    ``keep`` seeds (KID and the k-NN metrics need samples) and the classes' counts (a classifier's
    features)."""
    fn = latents_to_images or model
    d = None
    out = {"n": 0, "feats": [], "hist": None}
    for i in range(start, start + count, batch_size):
        b = min(batch_size, start + count - i)
        f = ext(fn(model.sample_z(b, seed + i)).clamp(-1, 1)).float()
        f64 = f.double().cpu()
        if d is None:
            d = f.shape[1]
            out["s"], out["ss"] = torch.zeros(d, dtype=torch.float64), torch.zeros(d, d, dtype=torch.float64)
        out["s"] += f64.sum(0)
        out["ss"] += f64.T @ f64
        out["n"] += b
        if i < keep:
            out["feats"].append(f[: keep - i].cpu())
        if isinstance(ext, FashionFeatures):
            h = torch.bincount(ext.net.head(f).argmax(1).cpu(), minlength=10)
            out["hist"] = h if out["hist"] is None else out["hist"] + h
    out["s"], out["ss"] = out["s"].numpy(), out["ss"].numpy()
    out["feats"] = torch.cat(out["feats"]).numpy() if out["feats"] else None
    out["hist"] = out["hist"].numpy() if out["hist"] is not None else None
    return out


def quality_chunk_task(worker, start: int, count: int, seed: int, keep: int, setup: dict) -> dict:
    """Pool task: ``chunk_stats`` on the worker's model, its extractor resolved once per worker."""
    ext = worker.cached(("quality-extractor", repr(sorted(setup.items()))),
                        lambda: resolve(worker.model, device=worker.model.device, what="evaluate", **setup)[1])
    return chunk_stats(worker.model, ext, start, count, seed=seed, keep=keep)


def reduce_chunks(parts) -> dict:
    """Chunk results (in seed order) summed: n, mean and unbiased covariance from the float64
    moments (Σxxᵀ − n μμᵀ) / (n − 1), the kept features and the class counts."""
    n, s, ss, feats, hist = 0, None, None, [], None
    for p in parts:
        n += p["n"]
        s = p["s"].copy() if s is None else s + p["s"]
        ss = p["ss"].copy() if ss is None else ss + p["ss"]
        if p["feats"] is not None:
            feats.append(p["feats"])
        if p["hist"] is not None:
            hist = p["hist"] if hist is None else hist + p["hist"]
    mu = s / n
    cov = (ss - n * np.outer(mu, mu)) / max(n - 1, 1)
    return {"n": n, "mu": mu, "sigma": (cov + cov.T) / 2, "feats": np.concatenate(feats), "hist": hist}


def evaluate_model(model, *, n: int = 10000, features: str | None = None, seed: int = 0, device="cpu",
                   progress: bool = True, latents_to_images=None, reference=None, inception: str | None = None,
                   pool=None, keep: int = KEEP) -> dict:
    """Quality of ``n`` samples (seeds ``seed..``) against the reference that fits the model: the
    Fashion-MNIST test split for Fashion-MNIST models, else the image folder ``reference`` (see
    ``metrics.reference``). Returns FID (None when too few samples for a full-rank covariance),
    KID and its std, precision, recall, density, coverage, and the class histogram when the
    features come from the Fashion-MNIST classifier.

    Streams: seeds go in chunks of ``CHUNK``; FID reads the float64 moments summed over all n
    (memory set by a chunk and the D×D moments, not by n), KID and the k-NN metrics the features
    of the first ``keep`` seeds. ``pool`` (``latentatlas.parallel``) runs the chunks on its workers
    (``quality_chunk_task``); the chunks are reduced in seed order either way, so a pool's result
    equals this process's."""
    setup = dict(folder=reference, features=features, inception=inception)
    ref, ext = resolve(model, device=device, what="evaluate", **setup)
    starts = list(range(0, n, CHUNK))
    if pool is None or latents_to_images is not None:
        parts = (chunk_stats(model, ext, a, min(CHUNK, n - a), seed=seed, keep=keep, latents_to_images=latents_to_images)
                 for a in tqdm(starts, disable=not progress, desc=f"generate+features ({CHUNK} per chunk)", leave=False))
        red = reduce_chunks(parts)
    else:
        done, parts = {}, []
        tasks = ((i, (a, min(CHUNK, n - a), seed, keep, setup), {}) for i, a in enumerate(starts))
        with tqdm(total=len(starts), disable=not progress, desc="chunks", leave=False) as bar:
            for i, part in pool.imap(quality_chunk_task, tasks):
                done[i] = part               # a pool may finish out of order: reduced in seed order
                while len(parts) in done:
                    parts.append(done.pop(len(parts)))
                bar.update(1)
        red = reduce_chunks(parts)
    res = {"model": model.name, "n": n, "features": ref.features, "reference": ref.name,
           **ref.scores(red["feats"], seed=seed, fake_stats=(red["n"], red["mu"], red["sigma"]))}
    if n > keep:
        res["knn_n"] = keep            # KID, precision/recall/density/coverage and realism read this many
    if red["hist"] is not None:
        hist = red["hist"] / red["hist"].sum()
        res["class_histogram"] = [round(float(h), 4) for h in hist]
    return res
