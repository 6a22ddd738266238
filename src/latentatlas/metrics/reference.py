"""The real image set a model's samples are compared with, and the one rule every metric-taking
command follows: the shipped Fashion-MNIST test split only for 1-channel 32x32 models trained on
Fashion-MNIST (their metadata says so); otherwise the user's own image folder (``--reference
DIR``), whose features are computed once and cached under the cache directory by the content
hash of its files, the feature network and the model's image format; otherwise a refusal.

Feature network for a folder: the one the user names, else the standard Inception when its local
file is configured ($LATENTATLAS_INCEPTION), else the model's own discriminator (figures then
compare strategies on one model, not across models), else fashion-features for 1-channel models;
an RGB model without a discriminator and no Inception file is refused.
"""
from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..cache import cache_dir
from ..data import folder as image_folder
from ..data.fashion import is_fashion_model, load_fashion_mnist
from ..errors import LatentAtlasError
from ..imageio import atomic_path
from .distribution import feature_stats, frechet_distance, kid, prdc, realism_summary
from .features import Extractor, FashionFeatures, get_extractor, reference_stats

log = logging.getLogger("latentatlas.metrics")

MIN_REFERENCE_IMAGES = 50           # fewer makes every k-NN and covariance figure noise
FASHION_NAME = "Fashion-MNIST test split"


@dataclass
class Reference:
    """Features of a real image set in one feature space: ``feats`` [N, D] (float64), their mean
    and covariance, class labels when known, and where they came from."""
    name: str
    features: str
    feats: np.ndarray
    mu: np.ndarray
    sigma: np.ndarray
    labels: np.ndarray | None = None
    notes: list = field(default_factory=list)

    @property
    def n(self) -> int:
        return int(self.feats.shape[0])

    def scores(self, fake: np.ndarray, *, k: int = 3, kid_subsets: int = 50, seed: int = 0,
               fake_stats: tuple | None = None) -> dict:
        """FID, KID (mean and std over subsets), precision, recall, density, coverage, and the
        per-sample realism score's median and the share of samples below 1 (outside the real
        manifold; Kynkäänniemi et al. 2019) of ``fake`` features [M, D] against this set. FID is left out (None) when either set has fewer
        samples than feature dimensions: its covariance would be singular. ``fake_stats`` = (n, mean,
        covariance) of a larger generated set whose features were streamed (FID reads those)."""
        fake = np.asarray(fake, dtype=np.float64)
        if fake.ndim != 2 or fake.shape[1] != self.feats.shape[1]:
            raise LatentAtlasError(f"features of shape {list(fake.shape)} do not match the reference's "
                                   f"{self.feats.shape[1]}-d {self.features} space")
        k_mean, k_std = kid(self.feats, fake, num_subsets=kid_subsets, seed=seed)
        fid = None
        n_fake = fake.shape[0] if fake_stats is None else fake_stats[0]
        if min(n_fake, self.n) > fake.shape[1]:
            mu, sig = feature_stats(fake) if fake_stats is None else fake_stats[1:]
            fid = frechet_distance(self.mu, self.sigma, mu, sig)
        return {"fid": fid, "kid": k_mean, "kid_std": k_std, **prdc(self.feats, fake, k=k, seed=seed),
                **realism_summary(self.feats, fake, k=k)}


def fashion_reference() -> Reference:
    ref = reference_stats()
    return Reference(FASHION_NAME, "fashion-features", ref["feats"].astype(np.float64), ref["mu"], ref["sigma"],
                     labels=ref.get("labels"))


def _default_features(model) -> str:
    if os.environ.get("LATENTATLAS_INCEPTION"):
        return "inception"
    if model.D is not None:
        return "discriminator"
    if model.img_channels == 1:
        return "fashion-features"
    raise LatentAtlasError(
        f"no feature network fits model '{model.name}' ({model.img_channels}x{model.img_resolution}x"
        f"{model.img_resolution}, no discriminator): set $LATENTATLAS_INCEPTION (or --inception) to a local "
        "Inception TorchScript file")


def _folder_key(paths: list[Path], features: str, model) -> str:
    h = hashlib.sha256()
    for p in paths:
        h.update(p.name.encode())
        h.update(hashlib.sha256(p.read_bytes()).digest())
    h.update(f"|{features}|{model.img_channels}x{model.img_resolution}".encode())
    if features == "discriminator":           # the features depend on the model's weights
        h.update(model.weights_hash().encode())
    return h.hexdigest()[:16]


@torch.no_grad()
def folder_reference(model, folder, *, features: str | None = None, device=None, inception: str | None = None,
                     use_cache: bool = True, batch_size: int = 250) -> Reference:
    """Reference features of the images in ``folder`` (PNG/JPEG, converted to the model's channels
    and resolution), cached by content hash. Unreadable files are skipped with a warning."""
    features = features or _default_features(model)
    paths = image_folder.list_images(folder)
    if len(paths) < MIN_REFERENCE_IMAGES:
        raise LatentAtlasError(f"{folder}: {len(paths)} images; a reference set needs at least "
                               f"{MIN_REFERENCE_IMAGES} (FID, KID and k-NN precision/recall are noise below that)")
    key = _folder_key(paths, features, model)
    cache = cache_dir() / f"reference-{key}.npz"
    name = str(folder)
    if use_cache and cache.is_file():
        with np.load(cache, allow_pickle=False) as z:
            feats = z["feats"]
        log.info("reference %s: %d cached %s features", name, feats.shape[0], features)
    else:
        ext = _extractor(features, model, device, inception)
        x, ok_paths, bad = image_folder.load_folder(paths, size=model.img_resolution, channels=model.img_channels)
        for b in bad:
            log.warning("reference: skipped %s (%s)", b.path, b.note)
        if len(ok_paths) < MIN_REFERENCE_IMAGES:
            raise LatentAtlasError(f"{folder}: only {len(ok_paths)} readable images; a reference set needs at "
                                   f"least {MIN_REFERENCE_IMAGES}")
        feats = np.concatenate([ext(x[i: i + batch_size]).float().cpu().numpy()
                                for i in range(0, x.shape[0], batch_size)]).astype(np.float64)
        if not np.isfinite(feats).all():
            raise LatentAtlasError(f"{folder}: the {features} features of these images are not finite")
        cache.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(cache) as tmp:
            with open(tmp, "wb") as f:
                np.savez(f, feats=feats)
    mu, sigma = feature_stats(feats)
    return Reference(name, features, feats, mu, sigma)


def _extractor(features: str, model, device, inception: str | None) -> Extractor:
    kw = {"path": inception} if features == "inception" else {}
    return get_extractor(features, model=model, device=device or model.device, **kw)


def extractor_for(model, *, features: str | None = None, device=None, inception: str | None = None) -> Extractor:
    """The feature network the metrics would use on ``model``'s images (``features`` when given,
    else the module's default), without a reference set: for probes on labelled images."""
    if features is None and is_fashion_model(model):
        return FashionFeatures(device or model.device)
    return _extractor(features or _default_features(model), model, device, inception)


def resolve(model, *, folder=None, features: str | None = None, device=None, inception: str | None = None,
            what: str = "metrics") -> tuple[Reference, Extractor]:
    """The reference and the feature extractor for metrics on ``model``'s samples, by the module's
    rule. ``what`` names the command in the refusal."""
    if folder is not None:
        ref = folder_reference(model, folder, features=features, device=device, inception=inception)
        return ref, _extractor(ref.features, model, device, inception)
    if not is_fashion_model(model):
        data = str((model.info.extra or {}).get("data", ""))
        raise LatentAtlasError(
            f"{what} compares samples with the Fashion-MNIST test split, which fits only 1x32x32 models trained "
            f"on Fashion-MNIST; model '{model.name}' ({model.img_channels}x{model.img_resolution}x"
            f"{model.img_resolution}{', data: ' + data if data else ', training data not recorded'}) needs "
            f"--reference DIR (a folder of real images like its training data)")
    if features not in (None, "fashion-features"):
        ext = _extractor(features, model, device, inception)
        x, y = load_fashion_mnist("test")
        feats = np.concatenate([ext(x[i: i + 500]).float().cpu().numpy() for i in range(0, x.shape[0], 500)])
        feats = feats.astype(np.float64)
        mu, sigma = feature_stats(feats)
        return Reference(FASHION_NAME, features, feats, mu, sigma, labels=np.asarray(y)), ext
    return fashion_reference(), FashionFeatures(device or model.device)


def classifier(ext: Extractor):
    """``images -> class index`` when the extractor is the Fashion-MNIST classifier, else None."""
    return ext.classify if isinstance(ext, FashionFeatures) else None
