"""Perceptual image distances by name, per image: the model's discriminator features, the
Fashion-MNIST feature network, or LPIPS (only with its weights already on the machine). Used by
inversion's loss, its evaluation and PPL."""
from __future__ import annotations

import logging

import torch

from ..data.fashion import fashion_format
from ..errors import LatentAtlasError
from .features import FashionFeatures

log = logging.getLogger("latentatlas")


class FeatureDistance:
    """d(a, b) = mean squared feature difference [N]; ``against(b)`` fixes the targets so their
    features are computed once per inversion instead of once per step."""

    def __init__(self, feat):
        self.feat = feat

    def __call__(self, a, b):
        return (self.feat(a) - self.feat(b)).square().mean(1)

    def against(self, b):
        """d(a, idx=None): distances of a to the targets b (or to b[idx]) [len(a)]."""
        with torch.no_grad():
            fb = self.feat(b)
        return lambda a, idx=None: (self.feat(a) - (fb if idx is None else fb[idx])).square().mean(1)

    @torch.no_grad()
    def matrix(self, a, b):
        """[len(b), len(a)] distances of every a to every b."""
        fa, fb = self.feat(a).flatten(1).double(), self.feat(b).flatten(1).double()
        return (torch.cdist(fb, fa).square() / fa.shape[1]).float()



def perceptual_fn(name: str, model):
    """Per-image perceptual distance d(a, b) -> [N]."""
    if name == "none":
        return None
    if name == "discriminator" and not model.has_discriminator:
        # the default must work on every model: fall back to the feature network where it fits
        # the model's images (1-channel 32x32), else to pixels only, and say so
        fallback = "fashion-features" if fashion_format(model) else "none"
        log.warning("model '%s' has no discriminator: perceptual distance '%s' used instead of 'discriminator'",
                    model.name, fallback)
        return perceptual_fn(fallback, model)
    if name == "discriminator":
        return FeatureDistance(lambda x: model.features(x, independent=True))
    if name == "fashion-features":
        return FeatureDistance(FashionFeatures(model.device))
    if name == "lpips":
        try:
            import lpips  # noqa: F401
        except ImportError:
            raise LatentAtlasError("perceptual 'lpips' needs the lpips package with its backbone weights "
                                   "already present locally; latentatlas never downloads weights") from None
        net = lpips.LPIPS(net="vgg", verbose=False).to(model.device).eval()   # fails offline without cached weights
        return lambda a, b: net(a.expand(-1, 3, -1, -1) if a.shape[1] == 1 else a,
                                b.expand(-1, 3, -1, -1) if b.shape[1] == 1 else b).flatten()
    raise LatentAtlasError(f"unknown perceptual distance {name!r}")
