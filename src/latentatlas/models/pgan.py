"""Progressive GAN (Karras et al. 2018) as trained by facebookresearch/pytorch_GAN_zoo, in
our own code: pixel-normalised z, an equalised-learning-rate stack of nearest-upsampling
3x3 convolutions with pixel-norm after every layer, one to-RGB per scale, and the fade-in of a
newly added scale (``alpha`` = weight of the old, low-resolution path; 0 = fully grown). The
discriminator mirrors it, with pytorch_GAN_zoo's minibatch-std (groups of consecutive samples,
unbiased variance).

Equalised learning rate here scales *after* the bias: ``(conv(x, W) + b) · √(2 / fan_in)``.
Parameter names follow pytorch_GAN_zoo's state dicts (``scaleLayers.{i}.{j}.module.weight``,
``toRGBLayers.{i}``, ``formatLayer``, ``groupScale0`` / ``groupScaleZero``, ``decisionLayer``).
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class PGANConfig:
    latent_dim: int
    depth_scale0: int
    depth_other_scales: tuple            # channels of each scale after the first (8x8, 16x16 ...)
    img_channels: int = 3
    alpha: float = 0.0                   # fade-in weight of the previous scale's output
    leaky: float = 0.2
    pixel_norm: bool = True              # perChannelNormalization
    equalized: bool = True
    output_activation: str = "none"      # "tanh" for the DCGAN / MSE losses, "none" otherwise
    mbstd: bool = True                   # discriminator minibatch-std
    d_depth_scale0: int | None = None
    d_depth_other_scales: tuple | None = None
    d_decision_dim: int = 1

    def __post_init__(self):
        object.__setattr__(self, "depth_other_scales", tuple(int(v) for v in self.depth_other_scales))
        if self.d_depth_other_scales is not None:
            object.__setattr__(self, "d_depth_other_scales", tuple(int(v) for v in self.d_depth_other_scales))
        if not 0.0 <= self.alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {self.alpha}")
        if self.output_activation not in ("none", "tanh"):
            raise ValueError(f"output_activation must be 'none' or 'tanh', got {self.output_activation!r}")

    @property
    def img_resolution(self) -> int:
        return 4 * 2 ** len(self.depth_other_scales)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "PGANConfig":
        return cls(**d)


class EqLayer(nn.Module):
    """A conv or linear layer whose output (bias included) is scaled by He's constant."""

    def __init__(self, module: nn.Module, equalized: bool = True):
        super().__init__()
        self.module = module
        self.scale = math.sqrt(2.0 / module.weight[0].numel()) if equalized else 1.0

    def forward(self, x):
        return self.module(x) * self.scale


def _conv(i, o, k, eq):
    return EqLayer(nn.Conv2d(i, o, k, padding=k // 2), eq)


def pixel_norm(x):
    return x * (x.square().mean(dim=1, keepdim=True) + 1e-8).rsqrt()


def up2(x):
    return F.interpolate(x, scale_factor=2, mode="nearest")


class PGANGenerator(nn.Module):
    def __init__(self, cfg: PGANConfig):
        super().__init__()
        self.cfg = cfg
        self.z_dim = cfg.latent_dim
        eq, d0 = cfg.equalized, cfg.depth_scale0
        self.formatLayer = EqLayer(nn.Linear(cfg.latent_dim, 16 * d0), eq)
        self.groupScale0 = nn.ModuleList([_conv(d0, d0, 3, eq)])
        self.scaleLayers = nn.ModuleList()
        prev = d0
        for d in cfg.depth_other_scales:
            self.scaleLayers.append(nn.ModuleList([_conv(prev, d, 3, eq), _conv(d, d, 3, eq)]))
            prev = d
        depths = (d0,) + cfg.depth_other_scales
        self.toRGBLayers = nn.ModuleList([EqLayer(nn.Conv2d(d, cfg.img_channels, 1), eq) for d in depths])
        self.stage_names = [f"scale{i}" for i in range(len(depths))]

    def _norm(self, x):
        return pixel_norm(x) if self.cfg.pixel_norm else x

    def _act(self, x):
        return F.leaky_relu(x, self.cfg.leaky)

    def _stage(self, i, x):
        if i == 0:
            x = self._norm(x)
            x = self._norm(self._act(self.formatLayer(x.flatten(1))).reshape(x.shape[0], -1, 4, 4))
            for conv in self.groupScale0:
                x = self._norm(self._act(conv(x)))
            return x
        x = up2(x)
        for conv in self.scaleLayers[i - 1]:
            x = self._norm(self._act(conv(x)))
        return x

    def run(self, x, *, start: str | None = None, stop: str | None = None):
        """From z (or the state after ``start``) through the scales; with ``stop``, return the
        state (features, previous scale's features) after that scale."""
        if start is None:
            feats, prev, i0 = x, None, 0
        else:
            (feats, prev), i0 = x, self.stage_names.index(start) + 1
        for i in range(i0, len(self.stage_names)):
            prev, feats = (feats if i > 0 else None), self._stage(i, feats)
            if self.stage_names[i] == stop:
                return feats, prev
        return self._to_image(feats, prev)

    def _to_image(self, x, prev):
        out = self.toRGBLayers[-1](x)
        a = self.cfg.alpha
        if a > 0 and prev is not None and len(self.toRGBLayers) > 1:
            out = a * up2(self.toRGBLayers[-2](prev)) + (1 - a) * out
        return torch.tanh(out) if self.cfg.output_activation == "tanh" else out

    def forward(self, z):
        return self.run(z)


def minibatch_std_consecutive(x: torch.Tensor, group: int = 4) -> torch.Tensor:
    """pytorch_GAN_zoo's minibatch-std: groups of ``group`` consecutive samples (the whole batch
    when it does not divide), unbiased variance, one appended channel; zeros for group 1."""
    n, c, h, w = x.shape
    g = min(n, group)
    if n % g:
        g = n
    if g <= 1:
        return torch.cat([x, x.new_zeros(n, 1, h, w)], dim=1)
    y = x.reshape(-1, g, c, h, w).var(dim=1, unbiased=True)
    y = (y + 1e-8).sqrt().flatten(1).mean(dim=1)                     # [n / g]
    y = y.reshape(-1, 1, 1, 1, 1).expand(-1, g, 1, h, w).reshape(n, 1, h, w)
    return torch.cat([x, y], dim=1)


class PGANDiscriminator(nn.Module):
    """``forward(img)`` -> scores [N, 1] (the first decision output); ``features(img)`` -> the
    activations before the decision layer [N, depth_scale0]."""

    def __init__(self, cfg: PGANConfig):
        super().__init__()
        self.cfg = cfg
        eq = cfg.equalized
        d0 = cfg.d_depth_scale0 or cfg.depth_scale0
        others = cfg.d_depth_other_scales if cfg.d_depth_other_scales is not None else cfg.depth_other_scales
        depths = (d0,) + tuple(others)
        self.scaleLayers = nn.ModuleList()
        for i, d in enumerate(others):
            self.scaleLayers.append(nn.ModuleList([_conv(d, d, 3, eq), _conv(d, depths[i], 3, eq)]))
        self.fromRGBLayers = nn.ModuleList([EqLayer(nn.Conv2d(cfg.img_channels, d, 1), eq) for d in depths])
        extra = 1 if cfg.mbstd else 0
        self.groupScaleZero = nn.ModuleList([_conv(d0 + extra, d0, 3, eq), EqLayer(nn.Linear(16 * d0, d0), eq)])
        self.decisionLayer = EqLayer(nn.Linear(d0, cfg.d_decision_dim), eq)

    @property
    def has_minibatch_std(self) -> bool:
        return self.cfg.mbstd

    def _act(self, x):
        return F.leaky_relu(x, self.cfg.leaky)

    def features(self, img, mbstd_group: int | None = None):
        a = self.cfg.alpha
        if a > 0 and len(self.fromRGBLayers) > 1:
            y = self._act(self.fromRGBLayers[-2](F.avg_pool2d(img, 2)))
        x = self._act(self.fromRGBLayers[-1](img))
        merge = a > 0 and len(self.scaleLayers) > 1
        for group in reversed(self.scaleLayers):
            for conv in group:
                x = self._act(conv(x))
            x = F.avg_pool2d(x, 2)
            if merge:
                merge = False
                x = a * y + (1 - a) * x
        if self.cfg.mbstd:
            x = minibatch_std_consecutive(x, 4 if mbstd_group is None else mbstd_group)
        x = self._act(self.groupScaleZero[0](x))
        return self._act(self.groupScaleZero[1](x.flatten(1)))

    def forward(self, img):
        return self.decisionLayer(self.features(img))[:, :1]
