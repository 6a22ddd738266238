"""StyleGAN3 (Karras et al. 2021, "Alias-free GAN"), configurations T and R, in pure PyTorch.

The synthesis network starts from Fourier features (a fixed set of frequencies and phases,
rotated and translated per sample by an affine map of the first w), then runs a chain of
modulated convolutions, each followed by the *filtered leaky ReLU*: add the bias, upsample with
a low-pass filter, apply LeakyReLU(0.2)·√2 and the clamp, low-pass filter again and
downsample. We write that op from its definition with ``F.conv2d`` (no custom CUDA kernel), so
the network runs on any device.

Everything that StyleGAN3 derives from its hyper-parameters at construction (sizes, sampling
rates, padding, up/down factors, filter taps, clamps) is held per layer in
:class:`StyleGAN3LayerSpec`; a loader reads it from the checkpoint (NVIDIA pickles store each
layer's derived attributes and its filters), so no filter is re-designed and no upstream code
runs. Parameter names follow NVIDIA's (``synthesis.input.freqs``,
``synthesis.L3_36_32.affine.weight`` ...), so state dicts map one-to-one.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from ..validate import check_fields
from .ops import upfirdn
from .stylegan2 import FC, Mapping


@dataclass(frozen=True)
class StyleGAN3LayerSpec:
    name: str                      # e.g. "L3_36_32" (NVIDIA's: index, output size, channels)
    in_channels: int
    out_channels: int
    in_size: tuple                 # (width, height)
    out_size: tuple
    conv_kernel: int
    up: int
    down: int
    padding: tuple                 # (x0, x1, y0, y1) before the upsampling filter
    is_torgb: bool
    conv_clamp: float | None
    up_taps: int                   # 1 = no filter
    down_taps: int
    down_radial: bool              # 2-D (jinc) downsampling filter instead of a separable one

    LIMITS = {"in_channels": (1, 65536), "out_channels": (1, 65536), "in_size": (1, 16384), "out_size": (1, 16384),
              "conv_kernel": (1, 15), "up": (1, 8), "down": (1, 8), "padding": (-16384, 16384),
              "conv_clamp": (0.0, 1e6), "up_taps": (1, 1024), "down_taps": (1, 1024)}

    @classmethod
    def from_dict(cls, d):
        if not isinstance(d, dict):
            raise ValueError(f"a layer spec is a {type(d).__name__}, not an object")
        name = str(d.get("name", "?"))[:40]
        d = check_fields(cls, d, f"layer {name}", cls.LIMITS)
        for k, n in (("in_size", 2), ("out_size", 2), ("padding", 4)):
            if k not in d or len(d[k]) != n:
                raise ValueError(f"layer {name}: {k} must hold {n} numbers")
            d[k] = tuple(int(v) for v in d[k])
        return cls(**d)


@dataclass(frozen=True)
class StyleGAN3Config:
    z_dim: int
    w_dim: int
    img_resolution: int
    img_channels: int
    input_channels: int
    input_size: tuple              # (width, height) of the Fourier-feature grid
    input_sampling_rate: float
    input_bandwidth: float
    layers: tuple                  # StyleGAN3LayerSpec per synthesis layer, to-RGB last
    output_scale: float = 0.25
    c_dim: int = 0
    mapping_layers: int = 2
    mapping_lr_mul: float = 0.01
    embed_features: int | None = None
    layer_features: int | None = None
    mapping_activation: str = "lrelu"
    w_avg_beta: float = 0.998
    variant: str = "T"             # "T" (translation) or "R" (rotation equivariant)
    d_config: dict | None = field(default=None)   # StyleGAN2Config dict of the discriminator

    LIMITS = {"z_dim": (1, 8192), "w_dim": (1, 8192), "img_resolution": (4, 8192), "img_channels": (1, 16),
              "input_channels": (1, 65536), "input_size": (1, 16384), "input_sampling_rate": (1e-6, 1e6),
              "input_bandwidth": (1e-6, 1e6), "output_scale": (-1e6, 1e6), "c_dim": (0, 100_000),
              "mapping_layers": (1, 64), "mapping_lr_mul": (1e-6, 100.0), "embed_features": (1, 8192),
              "layer_features": (1, 8192), "w_avg_beta": (0.0, 1.0)}

    def __post_init__(self):
        if not isinstance(self.layers, (list, tuple)) or not 1 <= len(self.layers) <= 64:
            raise ValueError("layers must be a list of 1 to 64 layer specs")
        object.__setattr__(self, "layers", tuple(l if isinstance(l, StyleGAN3LayerSpec)
                                                 else StyleGAN3LayerSpec.from_dict(l) for l in self.layers))
        object.__setattr__(self, "input_size", tuple(int(v) for v in self.input_size))

    @property
    def num_ws(self) -> int:
        return len(self.layers) + 1

    def to_dict(self) -> dict:
        d = asdict(self)
        d["layers"] = [asdict(l) for l in self.layers]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "StyleGAN3Config":
        return cls(**d)


def filtered_lrelu(x, fu, fd, b, *, up: int, down: int, padding, gain: float, slope: float,
                   clamp: float | None):
    """Bias, upsample (zero insertion + ``fu``, gain up²), leaky ReLU with ``slope`` times
    ``gain``, clamp to ±clamp, then ``fd`` and downsample."""
    x = x + b.reshape(1, -1, 1, 1)
    x = upfirdn(x, fu, up=up, pad=tuple(padding), gain=up * up)
    if slope != 1:
        x = F.leaky_relu(x, slope)
    if gain != 1:
        x = x * gain
    if clamp is not None:
        x = x.clamp(-clamp, clamp)
    return upfirdn(x, fd, down=down)


class SynthesisInput(nn.Module):
    """Fourier features [N, C, H, W], rotated/translated per sample by ``affine(w)``."""

    def __init__(self, cfg: StyleGAN3Config):
        super().__init__()
        self.channels, self.size = cfg.input_channels, cfg.input_size
        self.sampling_rate, self.bandwidth = cfg.input_sampling_rate, cfg.input_bandwidth
        self.weight = nn.Parameter(torch.randn(self.channels, self.channels))
        self.affine = FC(cfg.w_dim, 4)
        self.register_buffer("transform", torch.eye(3))
        self.register_buffer("freqs", torch.zeros(self.channels, 2))
        self.register_buffer("phases", torch.zeros(self.channels))

    def forward(self, w):
        # the geometry and the phases in fp32 whatever the network's precision: sin() of phases
        # that grow with frequency x position loses them entirely in bf16
        t = self.affine(w).float()                           # (r_c, r_s, t_x, t_y)
        t = t / t[:, :2].norm(dim=1, keepdim=True)
        # built out of place (no index assignment), so the layer also runs under torch.func.vmap
        c, s, one, zero = t[:, 0], t[:, 1], torch.ones_like(t[:, 0]), torch.zeros_like(t[:, 0])
        rot = torch.stack([torch.stack([c, -s, zero], 1), torch.stack([s, c, zero], 1),
                           torch.stack([zero, zero, one], 1)], 1)
        tra = torch.stack([torch.stack([one, zero, -t[:, 2]], 1), torch.stack([zero, one, -t[:, 3]], 1),
                           torch.stack([zero, zero, one], 1)], 1)
        m = rot @ tra @ self.transform.float().unsqueeze(0)
        phases = self.phases.float().unsqueeze(0) + (self.freqs.float().unsqueeze(0) @ m[:, :2, 2:]).squeeze(2)
        freqs = self.freqs.float().unsqueeze(0) @ m[:, :2, :2]
        amp = (1 - (freqs.norm(dim=2) - self.bandwidth) / (self.sampling_rate / 2 - self.bandwidth)).clamp(0, 1)
        sx, sy = self.size
        theta = torch.eye(2, 3, device=w.device)
        theta[0, 0] = 0.5 * sx / self.sampling_rate
        theta[1, 1] = 0.5 * sy / self.sampling_rate
        grid = F.affine_grid(theta.unsqueeze(0), [1, 1, sy, sx], align_corners=False)   # [1, H, W, 2]
        x = torch.einsum("hwk,nck->nhwc", grid[0], freqs) + phases[:, None, None, :]
        x = (torch.sin(x * (2 * math.pi)) * amp[:, None, None, :]).to(self.weight.dtype)
        x = x @ (self.weight / math.sqrt(self.channels)).t()
        return x.permute(0, 3, 1, 2)


class SynthesisLayer(nn.Module):
    def __init__(self, spec: StyleGAN3LayerSpec, w_dim: int):
        super().__init__()
        self.spec = spec
        k = spec.conv_kernel
        self.affine = FC(w_dim, spec.in_channels, bias_init=1.0)
        self.weight = nn.Parameter(torch.randn(spec.out_channels, spec.in_channels, k, k))
        self.bias = nn.Parameter(torch.zeros(spec.out_channels))
        self.register_buffer("magnitude_ema", torch.ones([]))
        self.register_buffer("up_filter", torch.zeros(spec.up_taps) if spec.up_taps > 1 else None)
        dshape = (spec.down_taps, spec.down_taps) if spec.down_radial else (spec.down_taps,)
        self.register_buffer("down_filter", torch.zeros(dshape) if spec.down_taps > 1 else None)

    def forward(self, x, w):
        s = self.spec
        styles = self.affine(w)
        gain_in = self.magnitude_ema.rsqrt()
        weight = self.weight
        n = x.shape[0]
        if s.is_torgb:
            styles = styles / math.sqrt(s.in_channels * s.conv_kernel ** 2)
            x = F.conv2d(x * (styles * gain_in).reshape(n, -1, 1, 1), weight, padding=s.conv_kernel - 1)
        else:
            # pre-normalisation (cancels under demodulation up to its epsilon; per sample, so an
            # image never depends on the rest of its batch), then demodulation coefficients
            weight = weight * weight.square().mean(dim=[1, 2, 3], keepdim=True).rsqrt()
            styles = styles * styles.square().mean(dim=1, keepdim=True).rsqrt()
            dco = (styles.square() @ weight.square().sum(dim=[2, 3]).t() + 1e-8).rsqrt()   # [N, O]
            x = F.conv2d(x * (styles * gain_in).reshape(n, -1, 1, 1), weight, padding=s.conv_kernel - 1)
            x = x * dco.reshape(n, -1, 1, 1)
        return filtered_lrelu(x, self.up_filter, self.down_filter, self.bias, up=s.up, down=s.down,
                              padding=s.padding, gain=1.0 if s.is_torgb else math.sqrt(2),
                              slope=1.0 if s.is_torgb else 0.2, clamp=s.conv_clamp)


class Synthesis(nn.Module):
    """ws [N, num_ws, w_dim] -> image [N, C, R, R]; ``start``/``stop`` split it at a layer."""

    def __init__(self, cfg: StyleGAN3Config):
        super().__init__()
        self.output_scale = cfg.output_scale
        self.input = SynthesisInput(cfg)
        self.layer_names = [l.name for l in cfg.layers]
        for spec in cfg.layers:
            setattr(self, spec.name, SynthesisLayer(spec, cfg.w_dim))

    def forward(self, ws, *, start: str | None = None, stop: str | None = None, state=None, **_):
        names = ["input"] + self.layer_names
        i0 = names.index(start) + 1 if start is not None else 0
        x = state
        for i in range(i0, len(names)):
            x = self.input(ws[:, 0]) if i == 0 else getattr(self, names[i])(x, ws[:, i])
            if names[i] == stop:
                return x
        return x * self.output_scale if self.output_scale != 1 else x


class StyleGAN3Generator(nn.Module):
    def __init__(self, cfg: StyleGAN3Config):
        super().__init__()
        self.cfg = cfg
        self.z_dim, self.w_dim, self.num_ws = cfg.z_dim, cfg.w_dim, cfg.num_ws
        self.img_resolution, self.img_channels = cfg.img_resolution, cfg.img_channels
        self.mapping = Mapping(z_dim=cfg.z_dim, c_dim=cfg.c_dim, w_dim=cfg.w_dim, num_layers=cfg.mapping_layers,
                               lr_mul=cfg.mapping_lr_mul, embed_features=cfg.embed_features,
                               layer_features=cfg.layer_features, activation=cfg.mapping_activation,
                               w_avg_beta=cfg.w_avg_beta)
        self.synthesis = Synthesis(cfg)

    def forward(self, z, c=None, *, psi: float = 1.0, **kw):
        w = self.mapping(z, c)
        if psi != 1.0:
            w = self.mapping.w_avg.lerp(w, psi)
        return self.synthesis(w.unsqueeze(1).expand(-1, self.num_ws, -1))
