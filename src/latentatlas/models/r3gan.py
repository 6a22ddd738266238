"""R3GAN (Huang et al., NeurIPS 2024, "The GAN is dead; long live the GAN!") in pure PyTorch.

A Z-only generator: z (and an embedded class label) through a learned 4×4 *generative basis*
(``Basis · Linear(z)``), then stages of ConvNeXt-style residual blocks (1×1 expand, grouped k×k,
1×1 project, each of the first two followed by bias + LeakyReLU(0.2), the last linear layer
zero-gain at init), between stages a 1×1 channel change and a 2× FIR up-sampling (the [1,2,1]
filter convolved with [1,1]); a 1×1 aggregation to RGB, no output non-linearity. The
discriminator mirrors it: a 1×1 extraction, residual stages with FIR down-sampling, a
*discriminative basis* (a depthwise 4×4 convolution and a linear layer) and, for conditional
models, the projection on the embedded label.

Parameter names follow R3GAN's ``R3GAN/Networks.py`` (``MainLayers.{i}.Layers.{j}...``) so its
pickles map one to one; the code is ours and runs without its CUDA operators. Stages the file
marks for bf16 (``FP16Stages``) run at the model's precision policy instead (fp32 by default).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .ops import downsample2x, upsample2x


@dataclass(frozen=True)
class R3GANConfig:
    z_dim: int = 64
    img_resolution: int = 32
    img_channels: int = 3
    widths: tuple = (64, 48, 32, 16)           # generator width per stage, 4x4 first
    cardinalities: tuple = (4, 4, 2, 2)
    blocks: tuple = (1, 1, 1, 1)
    expansion: int = 2
    kernel_size: int = 3
    c_dim: int = 0
    embed_dim: int = 0                         # the generator's label embedding (added to z)
    d_widths: tuple | None = None              # discriminator width per stage, full resolution first
    d_cardinalities: tuple | None = None
    d_blocks: tuple | None = None
    d_embed_dim: int = 0
    filter_taps: int = 4                       # the FIR kernel's side (R3GAN: [1,2,1] * [1,1] = 4)

    LIMITS = {"z_dim": (1, 8192), "img_resolution": (4, 8192), "img_channels": (3, 3), "widths": (1, 65536),
              "cardinalities": (1, 65536), "blocks": (0, 64), "expansion": (1, 64), "kernel_size": (1, 15),
              "c_dim": (0, 100_000), "embed_dim": (0, 8192), "d_widths": (1, 65536), "d_cardinalities": (1, 65536),
              "d_blocks": (0, 64), "d_embed_dim": (0, 8192), "filter_taps": (1, 16)}

    def __post_init__(self):
        for name in ("widths", "cardinalities", "blocks", "d_widths", "d_cardinalities", "d_blocks"):
            v = getattr(self, name)
            if v is not None:
                object.__setattr__(self, name, tuple(int(x) for x in v))
        if 4 * 2 ** (len(self.widths) - 1) != self.img_resolution:
            raise ValueError(f"{len(self.widths)} stages from 4x4 give {4 * 2 ** (len(self.widths) - 1)} px, "
                             f"not {self.img_resolution}")
        if not len(self.widths) == len(self.cardinalities) == len(self.blocks):
            raise ValueError("widths, cardinalities and blocks need one entry per stage")

    def to_dict(self) -> dict:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict) -> "R3GANConfig":
        unknown = set(d) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"unknown R3GAN config keys: {sorted(unknown)}")
        return cls(**d)


class Convolution(nn.Module):
    def __init__(self, in_c, out_c, k, groups=1):
        super().__init__()
        self.Layer = nn.Conv2d(in_c, out_c, k, padding=(k - 1) // 2, groups=groups, bias=False)

    def forward(self, x):
        return F.conv2d(x, self.Layer.weight.to(x.dtype), padding=self.Layer.padding, groups=self.Layer.groups)


class BiasedActivation(nn.Module):
    def __init__(self, channels):
        super().__init__()
        self.Bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x):
        b = self.Bias.to(x.dtype)
        return F.leaky_relu(x + (b.view(1, -1, 1, 1) if x.ndim > 2 else b.view(1, -1)), 0.2)


class ResidualBlock(nn.Module):
    def __init__(self, channels, cardinality, expansion, k):
        super().__init__()
        e = channels * expansion
        self.LinearLayer1 = Convolution(channels, e, 1)
        self.LinearLayer2 = Convolution(e, e, k, groups=cardinality)
        self.LinearLayer3 = Convolution(e, channels, 1)
        self.NonLinearity1 = BiasedActivation(e)
        self.NonLinearity2 = BiasedActivation(e)

    def forward(self, x):
        y = self.LinearLayer2(self.NonLinearity1(self.LinearLayer1(x)))
        return x + self.LinearLayer3(self.NonLinearity2(y))


class _Resampler(nn.Module):
    def __init__(self, taps):
        super().__init__()
        self.register_buffer("Kernel", torch.zeros(taps, taps))


class ResampleLayer(nn.Module):
    """A stage transition: 1×1 channel change (when the widths differ) then 2× FIR up-sampling
    (generator), or 2× FIR down-sampling then the channel change (discriminator)."""

    def __init__(self, in_c, out_c, taps, *, up: bool):
        super().__init__()
        self.up = up
        self.Resampler = _Resampler(taps)
        if in_c != out_c:
            self.LinearLayer = Convolution(in_c, out_c, 1)

    def _linear(self, x):
        return self.LinearLayer(x) if hasattr(self, "LinearLayer") else x

    def forward(self, x):
        if self.up:
            return upsample2x(self._linear(x), self.Resampler.Kernel)
        return self._linear(downsample2x(x, self.Resampler.Kernel))


class GenerativeBasis(nn.Module):
    def __init__(self, in_dim, out_c):
        super().__init__()
        self.Basis = nn.Parameter(torch.randn(out_c, 4, 4))
        self.LinearLayer = nn.Linear(in_dim, out_c, bias=False)

    def forward(self, x):
        return self.Basis.to(x.dtype).view(1, -1, 4, 4) * F.linear(x, self.LinearLayer.weight.to(x.dtype)).view(
            x.shape[0], -1, 1, 1)


class DiscriminativeBasis(nn.Module):
    def __init__(self, in_c, out_dim):
        super().__init__()
        self.Basis = nn.Conv2d(in_c, in_c, 4, groups=in_c, bias=False)
        self.LinearLayer = nn.Linear(in_c, out_dim, bias=False)

    def forward(self, x):
        x = F.conv2d(x, self.Basis.weight.to(x.dtype), groups=self.Basis.groups)
        return F.linear(x.view(x.shape[0], -1), self.LinearLayer.weight.to(x.dtype))


class Stage(nn.Module):
    def __init__(self, layers):
        super().__init__()
        self.Layers = nn.ModuleList(layers)

    def forward(self, x):
        for layer in self.Layers:
            x = layer(x)
        return x


class R3GANGenerator(nn.Module):
    """``forward(z, c=None)`` -> image [N, 3, R, R]; ``run(x, start=, stop=)`` for the named
    stages (``stage0`` = 4×4 ...)."""

    def __init__(self, cfg: R3GANConfig):
        super().__init__()
        self.cfg, self.c_dim = cfg, cfg.c_dim
        w, k = cfg.widths, cfg.kernel_size
        stages = []
        for i in range(len(w)):
            first = GenerativeBasis(cfg.z_dim + cfg.embed_dim, w[0]) if i == 0 else ResampleLayer(w[i - 1], w[i],
                                                                                                  cfg.filter_taps, up=True)
            stages.append(Stage([first] + [ResidualBlock(w[i], cfg.cardinalities[i], cfg.expansion, k)
                                           for _ in range(cfg.blocks[i])]))
        self.MainLayers = nn.ModuleList(stages)
        self.AggregationLayer = Convolution(w[-1], cfg.img_channels, 1)
        if cfg.c_dim:
            self.EmbeddingLayer = nn.Linear(cfg.c_dim, cfg.embed_dim, bias=False)
        self.stage_names = [f"stage{i}" for i in range(len(w))]

    def _input(self, z, c):
        if self.cfg.c_dim:
            if c is None:
                raise ValueError("this R3GAN generator is class-conditional: a label is needed")
            z = torch.cat([z, F.linear(c.to(z.dtype), self.EmbeddingLayer.weight.to(z.dtype))], dim=1)
        return z

    def run(self, x, c=None, *, start: str | None = None, stop: str | None = None):
        running = start is None
        if running:
            x = self._input(x, c)
        for name, stage in zip(self.stage_names, self.MainLayers):
            if running:
                x = stage(x)
                if name == stop:
                    return x
            elif name == start:
                running = True
        return self.AggregationLayer(x)

    def forward(self, z, c=None):
        return self.run(z, c)


class R3GANDiscriminator(nn.Module):
    def __init__(self, cfg: R3GANConfig):
        super().__init__()
        self.cfg = cfg
        w, k, n = cfg.d_widths, cfg.kernel_size, len(cfg.d_widths)
        stages = []
        for i in range(n):
            last = (DiscriminativeBasis(w[i], cfg.d_embed_dim if cfg.c_dim else 1) if i == n - 1
                    else ResampleLayer(w[i], w[i + 1], cfg.filter_taps, up=False))
            stages.append(Stage([ResidualBlock(w[i], cfg.d_cardinalities[i], cfg.expansion, k)
                                 for _ in range(cfg.d_blocks[i])] + [last]))
        self.ExtractionLayer = Convolution(cfg.img_channels, w[0], 1)
        self.MainLayers = nn.ModuleList(stages)
        if cfg.c_dim:
            self.EmbeddingLayer = nn.Linear(cfg.c_dim, cfg.d_embed_dim, bias=False)

    conditional = property(lambda self: bool(self.cfg.c_dim))

    def features(self, img, mbstd_group=None):
        """The last stage's input (before the discriminative basis), flattened: R3GAN has no
        minibatch layer, so every image's features are its own."""
        x = self.ExtractionLayer(img)
        for stage in self.MainLayers[:-1]:
            x = stage(x)
        for layer in self.MainLayers[-1].Layers[:-1]:
            x = layer(x)
        return x.flatten(1)

    def forward(self, img, c=None):
        x = self.ExtractionLayer(img)
        for stage in self.MainLayers:
            x = stage(x)
        if self.cfg.c_dim:
            if c is None:
                raise ValueError("this R3GAN discriminator is class-conditional: a label is needed")
            x = (x * F.linear(c.to(x.dtype), self.EmbeddingLayer.weight.to(x.dtype))).sum(dim=1, keepdim=True)
        return x.view(x.shape[0], 1)
