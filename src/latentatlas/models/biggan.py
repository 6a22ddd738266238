"""BigGAN-deep generator (Brock et al. 2019) in the layout of PyPI
``pytorch-pretrained-biggan`` (the TF-hub conversion), in our own code.

Class-conditional: the condition vector is ``cat(z, E c)`` (E: a bias-free linear map of the
one-hot class, of size z_dim), fed to the first linear layer and to every conditional
batch-norm (``(x - mean) / sqrt(var + eps) · (1 + scale(cond)) + offset(cond)``). Batch-norm
statistics are *stored per truncation value* (``n_stats`` rows for t = 0, 1/(n-1), ..., 1) and a
call with truncation t reads them as the upstream code does, including its interpolation with
swapped weights between two rows. Spectral normalisation is evaluated as in eval mode:
``W / (uᵀ W v)`` with the stored ``u``, ``v`` (no power iteration, no SVD).
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class BigGANConfig:
    z_dim: int = 128
    num_classes: int = 1000
    channel_width: int = 128
    layers: tuple = ()                   # (upsample, in multiplier, out multiplier) per block
    attention_layer_position: int = 8
    eps: float = 1e-4
    n_stats: int = 51

    def __post_init__(self):
        object.__setattr__(self, "layers", tuple((bool(a), int(b), int(c)) for a, b, c in self.layers))
        for up, i, o in self.layers:
            if i != o and o * 2 != i:
                raise ValueError(f"BigGAN block {i}->{o}: out must equal in or in/2")

    @property
    def img_resolution(self) -> int:
        return 4 * 2 ** sum(1 for up, _, _ in self.layers if up)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["layers"] = [list(l) for l in self.layers]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "BigGANConfig":
        return cls(**d)


class SNLinear(nn.Module):
    def __init__(self, i, o, bias=True):
        super().__init__()
        self.weight_orig = nn.Parameter(torch.zeros(o, i))
        self.bias = nn.Parameter(torch.zeros(o)) if bias else None
        self.register_buffer("weight_u", torch.zeros(o))
        self.register_buffer("weight_v", torch.zeros(i))

    def weight(self):
        w = self.weight_orig
        return w / torch.dot(self.weight_u, w.reshape(w.shape[0], -1) @ self.weight_v)

    def forward(self, x):
        return F.linear(x, self.weight(), self.bias)


class SNConv(SNLinear):
    def __init__(self, i, o, k, bias=True):
        nn.Module.__init__(self)
        self.weight_orig = nn.Parameter(torch.zeros(o, i, k, k))
        self.bias = nn.Parameter(torch.zeros(o)) if bias else None
        self.register_buffer("weight_u", torch.zeros(o))
        self.register_buffer("weight_v", torch.zeros(i * k * k))
        self.padding = k // 2

    def forward(self, x):
        return F.conv2d(x, self.weight(), self.bias, padding=self.padding)


def bn_stats(means: torch.Tensor, vars_: torch.Tensor, truncation: float):
    """The statistics row(s) for ``truncation``, interpolated as pytorch-pretrained-biggan
    does (``m[i]·coef + m[i+1]·(1 − coef)``, coef the fractional part of t·(n−1))."""
    coef, i = math.modf(truncation / (1.0 / (means.shape[0] - 1)))
    i = int(i)
    if coef != 0.0:
        return means[i] * coef + means[i + 1] * (1 - coef), vars_[i] * coef + vars_[i + 1] * (1 - coef)
    return means[i], vars_[i]


class CondBatchNorm(nn.Module):
    def __init__(self, c, cond_dim, n_stats, eps):
        super().__init__()
        self.eps = eps
        self.register_buffer("running_means", torch.zeros(n_stats, c))
        self.register_buffer("running_vars", torch.ones(n_stats, c))
        self.scale = SNLinear(cond_dim, c, bias=False)
        self.offset = SNLinear(cond_dim, c, bias=False)

    def forward(self, x, t, cond):
        m, v = bn_stats(self.running_means, self.running_vars, t)
        x = (x - m.reshape(1, -1, 1, 1)) / torch.sqrt(v.reshape(1, -1, 1, 1) + self.eps)
        return x * (1 + self.scale(cond)[:, :, None, None]) + self.offset(cond)[:, :, None, None]


class BatchNorm(nn.Module):
    def __init__(self, c, n_stats, eps):
        super().__init__()
        self.eps = eps
        self.register_buffer("running_means", torch.zeros(n_stats, c))
        self.register_buffer("running_vars", torch.ones(n_stats, c))
        self.weight = nn.Parameter(torch.ones(c))
        self.bias = nn.Parameter(torch.zeros(c))

    def forward(self, x, t):
        m, v = bn_stats(self.running_means, self.running_vars, t)
        return F.batch_norm(x, m, v, self.weight, self.bias, training=False, eps=self.eps)


class SelfAttn(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.snconv1x1_theta = SNConv(c, c // 8, 1, bias=False)
        self.snconv1x1_phi = SNConv(c, c // 8, 1, bias=False)
        self.snconv1x1_g = SNConv(c, c // 2, 1, bias=False)
        self.snconv1x1_o_conv = SNConv(c // 2, c, 1, bias=False)
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        n, c, h, w = x.shape
        theta = self.snconv1x1_theta(x).reshape(n, c // 8, h * w)
        phi = F.max_pool2d(self.snconv1x1_phi(x), 2).reshape(n, c // 8, h * w // 4)
        attn = torch.softmax(theta.transpose(1, 2) @ phi, dim=-1)          # [n, hw, hw/4]
        g = F.max_pool2d(self.snconv1x1_g(x), 2).reshape(n, c // 2, h * w // 4)
        o = (g @ attn.transpose(1, 2)).reshape(n, c // 2, h, w)
        return x + self.gamma * self.snconv1x1_o_conv(o)


class GenBlock(nn.Module):
    def __init__(self, i, o, cond_dim, up, n_stats, eps):
        super().__init__()
        mid = i // 4
        self.up, self.drop = up, i != o
        self.bn_0, self.conv_0 = CondBatchNorm(i, cond_dim, n_stats, eps), SNConv(i, mid, 1)
        self.bn_1, self.conv_1 = CondBatchNorm(mid, cond_dim, n_stats, eps), SNConv(mid, mid, 3)
        self.bn_2, self.conv_2 = CondBatchNorm(mid, cond_dim, n_stats, eps), SNConv(mid, mid, 3)
        self.bn_3, self.conv_3 = CondBatchNorm(mid, cond_dim, n_stats, eps), SNConv(mid, o, 1)

    def forward(self, x, cond, t):
        x0 = x
        x = self.conv_0(F.relu(self.bn_0(x, t, cond)))
        x = F.relu(self.bn_1(x, t, cond))
        if self.up:
            x = F.interpolate(x, scale_factor=2, mode="nearest")
        x = self.conv_1(x)
        x = self.conv_2(F.relu(self.bn_2(x, t, cond)))
        x = self.conv_3(F.relu(self.bn_3(x, t, cond)))
        if self.drop:
            x0 = x0[:, : x0.shape[1] // 2]
        if self.up:
            x0 = F.interpolate(x0, scale_factor=2, mode="nearest")
        return x + x0


class _Trunk(nn.Module):
    def __init__(self, cfg: BigGANConfig):
        super().__init__()
        ch, cond = cfg.channel_width, 2 * cfg.z_dim
        self.gen_z = SNLinear(cond, 16 * 16 * ch)
        layers = []
        for i, (up, a, b) in enumerate(cfg.layers):
            if i == cfg.attention_layer_position:
                layers.append(SelfAttn(ch * a))
            layers.append(GenBlock(ch * a, ch * b, cond, up, cfg.n_stats, cfg.eps))
        self.layers = nn.ModuleList(layers)
        self.bn = BatchNorm(ch, cfg.n_stats, cfg.eps)
        self.conv_to_rgb = SNConv(ch, ch, 3)


class BigGANGenerator(nn.Module):
    """``forward(z, c, truncation)``: z [N, z_dim] (already truncated), c [N, num_classes]
    one-hot or soft, truncation in (0, 1] selects the batch-norm statistics."""

    def __init__(self, cfg: BigGANConfig):
        super().__init__()
        self.cfg = cfg
        self.z_dim, self.c_dim = cfg.z_dim, cfg.num_classes
        self.embeddings = nn.Linear(cfg.num_classes, cfg.z_dim, bias=False)
        self.generator = _Trunk(cfg)
        self.truncation = 1.0
        self.stage_names = ["gen_z"] + [f"layer{i}" for i in range(len(self.generator.layers))]

    def run(self, x, c, t, *, start=None, stop=None):
        g = self.generator
        if start is None:
            cond = torch.cat([x, self.embeddings(c)], dim=1)
            h = g.gen_z(cond).reshape(-1, 4, 4, 16 * self.cfg.channel_width).permute(0, 3, 1, 2)
            i0 = 0
            if stop == "gen_z":
                return h, cond
        else:
            h, cond = x
            i0 = self.stage_names.index(start)
        for i in range(i0, len(g.layers)):
            layer = g.layers[i]
            h = layer(h, cond, t) if isinstance(layer, GenBlock) else layer(h)
            if stop == f"layer{i}":
                return h, cond
        h = g.conv_to_rgb(F.relu(g.bn(h, t)))
        return torch.tanh(h[:, :3])

    def forward(self, z, c, truncation: float | None = None):
        t = self.truncation if truncation is None else float(truncation)
        if not 0 < t <= 1:
            raise ValueError(f"BigGAN truncation must be in (0, 1], got {t}")
        return self.run(z, c, t)
