"""StyleGAN (v1; Karras et al. 2019) in pure PyTorch, as NVlabs/stylegan's TF graph defines it.

Mapping: pixel-normalised z through FC layers (equalised learning rate, gain √2, learning-rate
multiplier) each followed by LeakyReLU(0.2) — the last one too, so the P space of II2S is
defined. Synthesis: a learned 4×4 constant, then per resolution an up-sampling 3×3 convolution
(nearest ×2 then conv below 128 px; a fused transposed convolution with the 4-tap summed kernel
from 128 px up, NVlabs' ``fused_scale='auto'``) followed by the [1,2,1] blur, and a 3×3
convolution; every layer ends in the *epilogue*: per-pixel noise × a per-channel weight, bias,
LeakyReLU(0.2), instance normalisation and AdaIN from its own W+ row (``x·(s₀+1) + s₁``, the
style an affine of w). One to-RGB per resolution (the progressive-growing heads); the output
follows the recursive ``lod`` rule of the TF graph: at ``lod = 0`` the top head, at a
fractional ``lod`` (a snapshot taken mid fade-in) the blend of two heads, up-scaled (nearest)
to the full size.

W+ has ``2·log2(R) − 2`` rows (18 at 1024 px): row 2i and 2i+1 style the two layers of
resolution 4·2^i. Parameter names: ``mapping.fc{i}``, ``mapping.w_avg``,
``synthesis.b4.const``, ``synthesis.b{R}.conv0`` (the constant's epilogue at 4×4, the
up-sampling layer above), ``synthesis.b{R}.conv1``, ``synthesis.b{R}.torgb``; each layer's
``affine`` (the style), ``noise_weight``, ``noise_const``, ``bias``.

The discriminator (``D_basic``): per resolution a from-RGB head (``b{R}.fromrgb``), two 3×3
convolutions with LeakyReLU(0.2)·(gain in the weights), the second blurred and down-sampled
(box ×2 below 128 px, a fused strided convolution with the 4-tap averaged kernel above), and at
4×4 minibatch-std, a 3×3 convolution and two dense layers; at a fractional ``lod`` the input
image enters through the blend of two from-RGB heads, as the TF graph does.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from .ops import minibatch_std

SQRT2 = math.sqrt(2.0)


def _default_channels() -> dict[int, int]:
    return {4: 64, 8: 64, 16: 32, 32: 16}


@dataclass(frozen=True)
class StyleGAN1Config:
    z_dim: int = 512
    w_dim: int = 512
    img_resolution: int = 1024
    img_channels: int = 3
    channels: dict = field(default_factory=_default_channels)    # synthesis width per resolution
    mapping_layers: int = 8
    layer_features: int | None = None     # hidden width of the mapping (None = w_dim)
    mapping_lr_mul: float = 0.01
    w_avg_beta: float = 0.995
    blur: tuple = (1, 2, 1)               # low-pass taps after up-sampling / before down-sampling (() = none)
    fused_min_res: int = 128              # resolutions >= this up-/down-sample with the fused convolution
    lod: float = 0.0                      # progressive-growing level of detail of the snapshot
    use_noise: bool = True
    instance_norm_eps: float = 1e-8       # NVlabs 1e-8 (rosinality's port: torch's 1e-5)
    fused_up_gain: float = 1.0            # NVlabs 1 (rosinality's port averages the 4 taps: 0.25)
    bias_before_blur: bool = False        # rosinality's port adds the up-sampling conv's bias before the blur
    d_channels: dict | None = None        # discriminator width per resolution (None = no D)
    d_fc: int = 0                         # width of the discriminator's first dense layer (0 = d_channels[4])
    mbstd_group: int = 4                  # minibatch-std group (0 = the whole batch)
    mbstd_channels: int = 1               # minibatch-std features (0 = no layer)
    c_dim: int = 0                        # conditional v1 (LabelConcat) is not supported

    LIMITS = {"z_dim": (1, 8192), "w_dim": (1, 8192), "img_resolution": (4, 8192), "img_channels": (1, 16),
              "channels": (1, 65536), "d_channels": (1, 65536), "mapping_layers": (1, 64),
              "layer_features": (1, 8192), "mapping_lr_mul": (1e-6, 100.0), "w_avg_beta": (0.0, 1.0),
              "blur": (-1e3, 1e3), "fused_min_res": (4, 1 << 20), "lod": (0.0, 16.0),
              "instance_norm_eps": (0.0, 1.0), "fused_up_gain": (0.0, 16.0), "d_fc": (0, 65536),
              "mbstd_group": (0, 65536), "mbstd_channels": (0, 1024), "c_dim": (0, 0)}

    def __post_init__(self):
        r = self.img_resolution
        if r < 4 or r & (r - 1):
            raise ValueError(f"img_resolution must be a power of two >= 4, got {r}")
        object.__setattr__(self, "channels", {int(k): int(v) for k, v in self.channels.items()})
        if self.d_channels is not None:
            object.__setattr__(self, "d_channels", {int(k): int(v) for k, v in self.d_channels.items()})
        object.__setattr__(self, "blur", tuple(self.blur))
        for res in self.resolutions:
            if res not in self.channels:
                raise ValueError(f"channels has no entry for resolution {res}")
        if not 0 <= self.lod <= len(self.resolutions) - 1:
            raise ValueError(f"lod must lie in [0, {len(self.resolutions) - 1}], got {self.lod}")

    @property
    def resolutions(self) -> list[int]:
        return [2 ** i for i in range(2, int(math.log2(self.img_resolution)) + 1)]

    @property
    def num_ws(self) -> int:
        return 2 * len(self.resolutions)

    @property
    def mapping_activation(self) -> str:
        return "lrelu"

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["channels"] = {str(k): v for k, v in self.channels.items()}
        if self.d_channels is not None:
            d["d_channels"] = {str(k): v for k, v in self.d_channels.items()}
        d["blur"] = list(self.blur)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "StyleGAN1Config":
        unknown = set(d) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"unknown StyleGAN1 config keys: {sorted(unknown)}")
        return cls(**d)


class Dense(nn.Module):
    """Equalised learning rate: weight stored at N(0, 1/lr_mul²), used times gain·lr_mul/√fan_in;
    bias times lr_mul."""

    def __init__(self, in_f, out_f, *, gain=SQRT2, lr_mul=1.0, bias=True, bias_init=0.0):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_f, in_f) / lr_mul)
        self.bias = nn.Parameter(torch.full([out_f], float(bias_init))) if bias else None
        self.weight_gain = gain * lr_mul / math.sqrt(in_f)
        self.bias_gain = lr_mul

    def forward(self, x):
        x = x @ (self.weight * self.weight_gain).t()
        return x + self.bias * self.bias_gain if self.bias is not None else x


def _blur_kernel(taps) -> torch.Tensor:
    f = torch.tensor(taps, dtype=torch.float32)
    f = f[:, None] * f[None, :]
    return f / f.sum()


def _blur(x, k):
    c = x.shape[1]
    p = k.shape[-1] // 2
    return F.conv2d(F.pad(x, (p, p, p, p)), k[None, None].to(x.dtype).expand(c, 1, -1, -1), groups=c)


def _instance_norm(x, eps=1e-8):
    x = x - x.mean(dim=(2, 3), keepdim=True)
    return x * (x.square().mean(dim=(2, 3), keepdim=True) + eps).rsqrt()


class Epilogue(nn.Module):
    """A style layer without a convolution (the 4×4 constant's): noise·weight + bias,
    LeakyReLU(0.2), instance norm, AdaIN from one W+ row."""

    def __init__(self, channels, w_dim, resolution, use_noise=True, eps=1e-8):
        super().__init__()
        self.use_noise, self.eps = use_noise, eps
        if use_noise:
            self.noise_weight = nn.Parameter(torch.zeros(channels))
            self.register_buffer("noise_const", torch.randn(resolution, resolution))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.affine = Dense(w_dim, 2 * channels, gain=1.0)

    def epilogue(self, x, w, *, noise_mode="const", generator=None):
        if self.use_noise and noise_mode != "none":
            if noise_mode == "random":
                n = torch.randn(x.shape[0], 1, *x.shape[2:], device=x.device, dtype=x.dtype, generator=generator)
            else:
                n = self.noise_const.to(x.dtype)
            x = x + n * self.noise_weight.to(x.dtype).reshape(1, -1, 1, 1)
        x = F.leaky_relu(x + self.bias.to(x.dtype).reshape(1, -1, 1, 1), 0.2)
        x = _instance_norm(x, self.eps)
        s = self.affine(w).to(x.dtype).reshape(x.shape[0], 2, -1, 1, 1)
        return x * (s[:, 0] + 1) + s[:, 1]

    def forward(self, x, w, **kw):
        return self.epilogue(x, w, **kw)


class ConvLayer(Epilogue):
    """3×3 convolution (×2 up-sampling and blur when ``up``), then the epilogue."""

    def __init__(self, in_c, out_c, w_dim, resolution, *, up=False, fused=False, blur=(1, 2, 1), use_noise=True,
                 eps=1e-8, fused_gain=1.0, bias_before_blur=False):
        super().__init__(out_c, w_dim, resolution, use_noise, eps)
        self.up, self.fused, self.fused_gain = up, fused, fused_gain
        if up and bias_before_blur:
            self.conv_bias = nn.Parameter(torch.zeros(out_c))
        self.weight = nn.Parameter(torch.randn(out_c, in_c, 3, 3))
        self.weight_gain = SQRT2 / math.sqrt(in_c * 9)
        self.register_buffer("blur_kernel", _blur_kernel(blur) if (up and blur) else torch.ones(1, 1),
                             persistent=False)

    def convolve(self, x):
        w = (self.weight * self.weight_gain).to(x.dtype)
        if not self.up:
            return F.conv2d(x, w, padding=1)
        if self.fused:      # transposed stride-2 convolution with the 4-tap summed kernel
            wt = F.pad(w.transpose(0, 1), (1, 1, 1, 1))
            wt = wt[..., 1:, 1:] + wt[..., :-1, 1:] + wt[..., 1:, :-1] + wt[..., :-1, :-1]
            x = F.conv_transpose2d(x, wt * self.fused_gain if self.fused_gain != 1.0 else wt, stride=2, padding=1)
        else:
            x = F.conv2d(F.interpolate(x, scale_factor=2, mode="nearest"), w, padding=1)
        if hasattr(self, "conv_bias"):
            x = x + self.conv_bias.to(x.dtype).reshape(1, -1, 1, 1)
        return _blur(x, self.blur_kernel) if self.blur_kernel.numel() > 1 else x

    def forward(self, x, w, **kw):
        return self.epilogue(self.convolve(x), w, **kw)


class ToRGB(nn.Module):
    def __init__(self, in_c, img_channels):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(img_channels, in_c, 1, 1))
        self.bias = nn.Parameter(torch.zeros(img_channels))
        self.weight_gain = 1.0 / math.sqrt(in_c)

    def forward(self, x):
        return F.conv2d(x, (self.weight * self.weight_gain).to(x.dtype), self.bias.to(x.dtype))


class SynthesisBlock(nn.Module):
    def __init__(self, in_c, out_c, cfg: StyleGAN1Config, res):
        super().__init__()
        self.resolution, self.in_c = res, in_c
        if in_c == 0:
            self.const = nn.Parameter(torch.ones(out_c, 4, 4))
            self.conv0 = Epilogue(out_c, cfg.w_dim, res, cfg.use_noise, cfg.instance_norm_eps)
        else:
            self.conv0 = ConvLayer(in_c, out_c, cfg.w_dim, res, up=True, fused=res >= cfg.fused_min_res,
                                   blur=cfg.blur, use_noise=cfg.use_noise, eps=cfg.instance_norm_eps,
                                   fused_gain=cfg.fused_up_gain, bias_before_blur=cfg.bias_before_blur)
        self.conv1 = ConvLayer(out_c, out_c, cfg.w_dim, res, use_noise=cfg.use_noise, eps=cfg.instance_norm_eps)
        self.torgb = ToRGB(out_c, cfg.img_channels)
        self.num_conv = 2
        self.has_torgb = False          # the to-RGB heads read no W+ row

    @property
    def style_layers(self) -> list:
        return [self.conv0, self.conv1]

    def forward(self, x, ws, **kw):
        if self.in_c == 0:
            x = self.conv0(self.const.to(ws.dtype).unsqueeze(0).expand(ws.shape[0], -1, -1, -1), ws[:, 0], **kw)
        else:
            x = self.conv0(x, ws[:, 0], **kw)
        return self.conv1(x, ws[:, 1], **kw)


class Synthesis(nn.Module):
    def __init__(self, cfg: StyleGAN1Config):
        super().__init__()
        self.cfg, self.resolutions, self.num_ws = cfg, cfg.resolutions, cfg.num_ws
        for res in self.resolutions:
            in_c = cfg.channels[res // 2] if res > 4 else 0
            setattr(self, f"b{res}", SynthesisBlock(in_c, cfg.channels[res], cfg, res))
        top = len(self.resolutions) - 1                 # index of the top resolution
        lod = float(cfg.lod)
        self.head = top - min(math.floor(lod), top - 1) if lod > 0 else top   # the finest head that runs
        self.blend = lod - (top - self.head) if lod > (top - self.head) else 0.0

    @property
    def layer_names(self) -> list[str]:
        return [f"b{r}" for r in self.resolutions]

    def _image(self, x_prev, x):
        """The output image from the finest two feature maps that ran (the lod rule)."""
        top, h = len(self.resolutions) - 1, self.head
        rgb = getattr(self, f"b{self.resolutions[h]}").torgb(x)
        if self.blend:
            low = getattr(self, f"b{self.resolutions[h - 1]}").torgb(x_prev)
            rgb = torch.lerp(rgb, F.interpolate(low, scale_factor=2, mode="nearest"), self.blend)
        if h < top:
            rgb = F.interpolate(rgb, scale_factor=2 ** (top - h), mode="nearest")
        return rgb

    def forward(self, ws, *, start: str | None = None, stop: str | None = None, state=None,
                noise_mode: str = "const", generator=None, image: bool = True, **_):
        """As StyleGAN2's: ``stop`` returns the state (features, previous features) after that
        block; ``start`` continues from it. Blocks above the running head (``lod`` > 0) do not run."""
        if not image and stop is None:
            raise ValueError("image=False needs a stop layer: the image is the output")
        x, x_prev = state if state is not None else (None, None)
        running = start is None
        for i, res in enumerate(self.resolutions):
            name = f"b{res}"
            if running and i <= self.head:
                x_prev, x = x, getattr(self, name)(x, ws[:, 2 * i: 2 * i + 2], noise_mode=noise_mode,
                                                   generator=generator)
            if running and name == stop:
                return x, x_prev
            if name == start:
                running = True
        return self._image(x_prev, x)


class Mapping(nn.Module):
    def __init__(self, cfg: StyleGAN1Config):
        super().__init__()
        self.z_dim, self.c_dim, self.num_layers = cfg.z_dim, 0, cfg.mapping_layers
        self.activation = "lrelu"
        hidden = cfg.layer_features or cfg.w_dim
        dims = [cfg.z_dim] + [hidden] * (cfg.mapping_layers - 1) + [cfg.w_dim]
        for i in range(cfg.mapping_layers):
            setattr(self, f"fc{i}", Dense(dims[i], dims[i + 1], lr_mul=cfg.mapping_lr_mul))
        self.register_buffer("w_avg", torch.zeros(cfg.w_dim))

    def forward(self, z, c=None, **_):
        x = z * (z.square().mean(dim=1, keepdim=True) + 1e-8).rsqrt()
        for i in range(self.num_layers):
            x = F.leaky_relu(getattr(self, f"fc{i}")(x), 0.2)
        return x


class StyleGAN1Generator(nn.Module):
    def __init__(self, cfg: StyleGAN1Config):
        super().__init__()
        self.cfg = cfg
        self.z_dim, self.w_dim, self.num_ws = cfg.z_dim, cfg.w_dim, cfg.num_ws
        self.img_resolution, self.img_channels = cfg.img_resolution, cfg.img_channels
        self.mapping = Mapping(cfg)
        self.synthesis = Synthesis(cfg)

    def forward(self, z, c=None, *, psi: float = 1.0, noise_mode: str = "const", **kw):
        w = self.mapping(z)
        if psi != 1.0:
            w = self.mapping.w_avg.lerp(w, psi)
        return self.synthesis(w.unsqueeze(1).expand(-1, self.num_ws, -1), noise_mode=noise_mode, **kw)


# ----------------------------------------------------------------------------- discriminator

class DConv(nn.Module):
    """3×3 (or 1×1) convolution, bias, LeakyReLU(0.2); ``down``: blur, convolve, ×½ (box below
    ``fused_min_res``, else one stride-2 convolution with the 4-tap averaged kernel)."""

    def __init__(self, in_c, out_c, k=3, *, down=False, fused=False, blur=(1, 2, 1), act=True):
        super().__init__()
        self.k, self.down, self.fused, self.act = k, down, fused, act
        self.weight = nn.Parameter(torch.randn(out_c, in_c, k, k))
        self.bias = nn.Parameter(torch.zeros(out_c))
        self.weight_gain = SQRT2 / math.sqrt(in_c * k * k)
        self.register_buffer("blur_kernel", _blur_kernel(blur) if (down and blur) else torch.ones(1, 1),
                             persistent=False)

    def forward(self, x):
        w = (self.weight * self.weight_gain).to(x.dtype)
        if self.down and self.blur_kernel.numel() > 1:
            x = _blur(x, self.blur_kernel)
        if self.down and self.fused:
            wf = F.pad(w, (1, 1, 1, 1))
            wf = (wf[..., 1:, 1:] + wf[..., :-1, 1:] + wf[..., 1:, :-1] + wf[..., :-1, :-1]) * 0.25
            x = F.conv2d(F.pad(x, (1, 1, 1, 1)), wf, stride=2)
        else:
            x = F.conv2d(x, w, padding=self.k // 2)
            if self.down:
                x = F.avg_pool2d(x, 2)
        x = x + self.bias.to(x.dtype).reshape(1, -1, 1, 1)
        return F.leaky_relu(x, 0.2) if self.act else x


class DFromRGB(nn.Module):
    def __init__(self, img_channels, out_c):
        super().__init__()
        self.conv = DConv(img_channels, out_c, 1)

    def forward(self, img):
        return self.conv(img)


class StyleGAN1Discriminator(nn.Module):
    """``forward(img, c=None)`` -> scores [N, 1]; ``features(img)`` -> the penultimate dense
    layer's activations."""

    def __init__(self, cfg: StyleGAN1Config):
        super().__init__()
        self.cfg = cfg
        ch = cfg.d_channels
        res_list = list(reversed(cfg.resolutions))
        for res in res_list:
            # every resolution has its from-RGB head (progressive growing), as the TF graph builds them
            setattr(self, f"fromrgb{res}", DFromRGB(cfg.img_channels, ch[res]))
            if res > 4:
                blk = nn.Module()
                blk.conv0 = DConv(ch[res], ch[res], 3)
                blk.conv1 = DConv(ch[res], ch[res // 2], 3, down=True, fused=res >= cfg.fused_min_res, blur=cfg.blur)
                setattr(self, f"b{res}", blk)
        self.conv = DConv(ch[4] + cfg.mbstd_channels, ch[4], 3)
        self.fc = Dense(ch[4] * 16, cfg.d_fc or ch[4])
        self.out = Dense(self.fc.weight.shape[0], 1, gain=1.0)
        top = len(cfg.resolutions) - 1
        lod = float(cfg.lod)
        self.head = top - min(math.floor(lod), top - 1) if lod > 0 else top
        self.blend = lod - (top - self.head) if lod > (top - self.head) else 0.0

    has_minibatch_std = property(lambda self: self.cfg.mbstd_channels > 0)
    conditional = False

    def trunk(self, img, mbstd_group: int | None = None):
        res = self.cfg.resolutions
        h = self.head
        if h < len(res) - 1:                     # the snapshot sees the image at its head's size
            img = F.avg_pool2d(img, 2 ** (len(res) - 1 - h))
        x = getattr(self, f"fromrgb{res[h]}")(img)
        for i in range(h, 0, -1):
            r = res[i]
            blk = getattr(self, f"b{r}")
            x = blk.conv1(blk.conv0(x))
            if i == h and self.blend:            # the fade-in: the lower head on the down-scaled image
                low = getattr(self, f"fromrgb{res[i - 1]}")(F.avg_pool2d(img, 2))
                x = torch.lerp(x, low, self.blend)
        if self.cfg.mbstd_channels > 0:
            x = minibatch_std(x, mbstd_group or self.cfg.mbstd_group, self.cfg.mbstd_channels)
        x = self.conv(x)
        return F.leaky_relu(self.fc(x.flatten(1)), 0.2)

    def features(self, img, mbstd_group: int | None = None):
        return self.trunk(img, mbstd_group)

    def forward(self, img, c=None):
        return self.out(self.trunk(img))
