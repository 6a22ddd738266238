"""Feature extractors for metrics, registered by name.

* ``fashion-features``: the project's own Fashion-MNIST classifier (weights ship with the
  package); its 128-d penultimate layer is the metric embedding, its softmax the class
  estimator. Reference statistics of the test split ship beside it.
* ``discriminator``: a model's own discriminator features (``GANModel.features``).
* ``inception``: the standard FID Inception network, only from a local TorchScript file the
  user names (``--inception PATH`` / $LATENTATLAS_INCEPTION); never downloaded.
"""
from __future__ import annotations

import importlib.resources
import os
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from ..errors import LatentAtlasError

FEATURES_FILE = "fashion-features.pt"
REFERENCE_FILE = "fashion-features-ref.npz"


class FashionClassifier(nn.Module):
    """32x32 grayscale -> 10 classes. ``embed`` gives the 128-d penultimate activations."""

    def __init__(self, width: int = 32, embed_dim: int = 128, num_classes: int = 10):
        super().__init__()

        def block(i, o):
            return [nn.Conv2d(i, o, 3, padding=1), nn.BatchNorm2d(o), nn.ReLU(True)]
        w = width
        self.body = nn.Sequential(*block(1, w), *block(w, w), nn.MaxPool2d(2),          # 16
                                  *block(w, 2 * w), *block(2 * w, 2 * w), nn.MaxPool2d(2),  # 8
                                  *block(2 * w, 4 * w), nn.MaxPool2d(2),                # 4
                                  nn.Flatten(), nn.Dropout(0.3),
                                  nn.Linear(4 * w * 16, embed_dim), nn.BatchNorm1d(embed_dim), nn.ReLU(True))
        self.head = nn.Sequential(nn.Dropout(0.3), nn.Linear(embed_dim, num_classes))

    def embed(self, x):
        return self.body(x)

    def for_inference(self) -> "FashionClassifier":
        """An eval-mode copy with each BatchNorm folded into the convolution or linear layer
        before it (the same function up to float rounding) and channels-last conv weights: about
        2x faster on the CPU, where every metric and sweep spends a third of its time here."""
        import copy

        from torch.nn.utils.fusion import fuse_conv_bn_eval, fuse_linear_bn_eval
        net = copy.deepcopy(self).eval()
        mods, out = list(net.body), []
        while mods:
            m = mods.pop(0)
            if mods and isinstance(mods[0], nn.BatchNorm2d) and isinstance(m, nn.Conv2d):
                m = fuse_conv_bn_eval(m, mods.pop(0))
            elif mods and isinstance(mods[0], nn.BatchNorm1d) and isinstance(m, nn.Linear):
                m = fuse_linear_bn_eval(m, mods.pop(0))
            out.append(m)
        net.body = nn.Sequential(*out)
        return net.to(memory_format=torch.channels_last)

    def forward(self, x):
        return self.head(self.body(x))


def _resource(name: str) -> Path:
    return Path(str(importlib.resources.files("latentatlas.weights").joinpath(name)))


_CLASSIFIER: FashionClassifier | None = None


def fashion_classifier(device="cpu") -> FashionClassifier:
    global _CLASSIFIER
    if _CLASSIFIER is None:
        path = _resource(FEATURES_FILE)
        if not path.is_file():
            raise LatentAtlasError(f"feature network weights missing at {path}; train them with "
                                   "'python -m latentatlas.train.features'")
        ck = torch.load(path, map_location="cpu", weights_only=True)
        net = FashionClassifier(**ck["config"])
        net.load_state_dict(ck["state_dict"])
        _CLASSIFIER = net.eval().for_inference().requires_grad_(False)
    return _CLASSIFIER.to(device)


def reference_stats() -> dict:
    """The shipped test-split reference: ``mu`` [128], ``sigma`` [128,128] (float64),
    ``feats`` [10000, 128] (float16 storage), ``labels`` [10000]."""
    path = _resource(REFERENCE_FILE)
    if not path.is_file():
        raise LatentAtlasError(f"reference statistics missing at {path}")
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


def _prepare_gray32(images: torch.Tensor) -> torch.Tensor:
    if images.ndim != 4:
        raise LatentAtlasError(f"images must be [N, C, H, W], got {list(images.shape)}")
    x = images.float()
    if x.shape[1] == 3:
        x = (x * torch.tensor([0.299, 0.587, 0.114], device=x.device).reshape(1, 3, 1, 1)).sum(1, keepdim=True)
    elif x.shape[1] != 1:
        raise LatentAtlasError(f"fashion-features takes 1 or 3 channels, got {x.shape[1]}")
    if x.shape[-1] != 32 or x.shape[-2] != 32:
        x = nn.functional.interpolate(x, size=(32, 32), mode="bilinear", antialias=True, align_corners=False)
    return x.clamp(-1, 1)


class Extractor:
    """``__call__(images [N,C,H,W] in [-1,1]) -> features [N, D]`` (torch, no grad unless asked)."""

    name: str = ""
    dim: int = 0

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


class FashionFeatures(Extractor):
    name, dim = "fashion-features", 128

    def __init__(self, device="cpu"):
        self.net = fashion_classifier(device)
        self.device = device

    def __call__(self, images):
        return self.net.embed(_prepare_gray32(images.to(self.device)))

    def logits(self, images):
        return self.net(_prepare_gray32(images.to(self.device)))

    def classify(self, images) -> torch.Tensor:
        return self.logits(images).argmax(1)


class DiscriminatorFeatures(Extractor):
    name = "discriminator"

    def __init__(self, model):
        model.require_discriminator("the 'discriminator' feature extractor")
        self.model = model

    def __call__(self, images):
        return self.model.features(images.to(self.model.device))


class InceptionFeatures(Extractor):
    """Standard FID Inception from a local TorchScript file taking uint8 [N,3,H,W] and
    ``return_features=True`` (the signature of the detector file used by StyleGAN2-ADA metrics)."""

    name, dim = "inception", 2048

    def __init__(self, path: str | None = None, device="cpu"):
        path = path or os.environ.get("LATENTATLAS_INCEPTION")
        if not path:
            raise LatentAtlasError("the 'inception' extractor needs a local weights file: pass its path "
                                   "(or set $LATENTATLAS_INCEPTION); latentatlas never downloads weights")
        if not Path(path).is_file():
            raise LatentAtlasError(f"{path}: Inception weights file not found")
        try:
            self.net = torch.jit.load(path, map_location=device).eval()
        except Exception as e:
            raise LatentAtlasError(f"{path}: not a TorchScript Inception file ({type(e).__name__})") from None
        self.device = device

    def __call__(self, images):
        x = images.to(self.device)
        if x.shape[1] == 1:
            x = x.repeat(1, 3, 1, 1)
        x = ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
        return self.net(x, return_features=True)


_EXTRACTORS: dict[str, Callable] = {}


def register_extractor(name: str, factory: Callable):
    if name in _EXTRACTORS:
        raise ValueError(f"feature extractor {name!r} already registered")
    _EXTRACTORS[name] = factory


register_extractor("fashion-features", lambda model=None, device="cpu", **kw: FashionFeatures(device))
register_extractor("discriminator", lambda model=None, device="cpu", **kw: DiscriminatorFeatures(model))
register_extractor("inception", lambda model=None, device="cpu", path=None, **kw: InceptionFeatures(path, device))


def extractor_names() -> list[str]:
    return list(_EXTRACTORS)


def get_extractor(name: str, model=None, device="cpu", **kw) -> Extractor:
    if name not in _EXTRACTORS:
        raise LatentAtlasError(f"unknown feature extractor {name!r}; choose from {', '.join(_EXTRACTORS)}")
    return _EXTRACTORS[name](model=model, device=device, **kw)
