"""StyleGAN2 (Karras et al. 2020) in pure PyTorch: mapping (optionally class-conditional),
synthesis with modulated/demodulated convolutions in each of the three architectures of
stylegan2-ada ('orig', 'skip', 'resnet'), and the discriminator in the same three
architectures with minibatch-std and, for conditional models, the projection output.

Parameter names follow the layout of the NVIDIA stylegan2-ada-pytorch networks (``mapping.fc0``,
``synthesis.b8.conv0.affine`` ...) so checkpoints in that format map one-to-one; the code is our
own and runs on any device without custom kernels. Channel widths are given per resolution, so
any channel table (including hand-edited ones in third-party checkpoints) can be represented.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from .ops import bias_lrelu, conv_resample, downsample2x, make_fir, minibatch_std, modulated_conv, upsample2x

ARCHITECTURES = ("orig", "skip", "resnet")


def _default_channels() -> dict[int, int]:
    return {4: 128, 8: 128, 16: 64, 32: 32}


@dataclass(frozen=True)
class StyleGAN2Config:
    z_dim: int = 128                      # input latent size
    w_dim: int = 128                      # intermediate latent size
    img_resolution: int = 32              # output side, a power of two >= 4
    img_channels: int = 1                 # 1 = grayscale, 3 = RGB
    channels: dict = field(default_factory=_default_channels)    # synthesis width per resolution
    d_channels: dict | None = None        # discriminator width per resolution (None = channels)
    mapping_layers: int = 8               # FC layers in the mapping network
    mapping_lr_mul: float = 0.01          # learning-rate multiplier of the mapping network
    w_avg_beta: float = 0.995             # decay of the tracked mean w (training only)
    conv_clamp: float | None = None       # clamp conv outputs to +-X (None = off)
    mbstd_group: int = 4                  # minibatch-std group size
    mbstd_channels: int = 1               # minibatch-std feature channels (0 = no layer)
    fir: tuple = (1, 3, 3, 1)             # resampling low-pass filter taps
    architecture: str = "skip"            # synthesis: 'orig', 'skip' or 'resnet'
    d_architecture: str = "resnet"        # discriminator: 'orig', 'skip' or 'resnet'
    d_conv_clamp: float | None | str = "same"   # discriminator clamp ('same' = conv_clamp)
    c_dim: int = 0                        # class-label size (0 = unconditional)
    embed_features: int | None = None     # label embedding size (None = w_dim)
    layer_features: int | None = None     # hidden width of the mapping network (None = w_dim)
    mapping_activation: str = "lrelu"     # activation of every mapping layer (P space needs lrelu)
    d_cmap_dim: int = 0                   # conditional D: size of the mapped label (0 = none)
    d_mapping_layers: int = 8             # conditional D: layers of its label mapping
    d_mapping_lr_mul: float | None = None  # conditional D: its mapping's lr multiplier (None = mapping_lr_mul)

    # sane ranges of the numeric fields, checked (validate.check_fields) before a file's config is used:
    # a 1024-px config-f and 1000-class conditional models are well inside
    LIMITS = {"z_dim": (1, 8192), "w_dim": (1, 8192), "img_resolution": (4, 8192), "img_channels": (1, 16),
              "channels": (1, 65536), "d_channels": (1, 65536), "mapping_layers": (1, 64),
              "mapping_lr_mul": (1e-6, 100.0), "w_avg_beta": (0.0, 1.0), "conv_clamp": (0.0, 1e6),
              "mbstd_group": (0, 65536), "mbstd_channels": (0, 1024), "fir": (-1e3, 1e3), "c_dim": (0, 100_000),
              "embed_features": (1, 8192), "layer_features": (1, 8192), "d_cmap_dim": (0, 8192),
              "d_mapping_layers": (0, 64), "d_conv_clamp": (0.0, 1e6),
              "d_mapping_lr_mul": (1e-6, 100.0)}

    def __post_init__(self):
        r = self.img_resolution
        if r < 4 or r & (r - 1):
            raise ValueError(f"img_resolution must be a power of two >= 4, got {r}")
        # JSON round trips turn int keys into strings; normalise here once.
        object.__setattr__(self, "channels", {int(k): int(v) for k, v in self.channels.items()})
        if self.d_channels is not None:
            object.__setattr__(self, "d_channels", {int(k): int(v) for k, v in self.d_channels.items()})
        object.__setattr__(self, "fir", tuple(self.fir))
        for res in self.resolutions:
            if res not in self.channels:
                raise ValueError(f"channels has no entry for resolution {res}")
        for name in ("architecture", "d_architecture"):
            if getattr(self, name) not in ARCHITECTURES:
                raise ValueError(f"{name} must be one of {ARCHITECTURES}, got {getattr(self, name)!r}")
        if self.mapping_activation not in ("lrelu", "linear"):
            raise ValueError(f"mapping_activation must be 'lrelu' or 'linear', got {self.mapping_activation!r}")

    @property
    def d_clamp(self) -> float | None:
        return self.conv_clamp if self.d_conv_clamp == "same" else self.d_conv_clamp

    @property
    def resolutions(self) -> list[int]:
        return [2 ** i for i in range(2, int(math.log2(self.img_resolution)) + 1)]

    @property
    def num_ws(self) -> int:
        return 2 * len(self.resolutions)   # 1 conv at 4x4, 2 per later block, +1 final to-RGB

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["channels"] = {str(k): v for k, v in self.channels.items()}
        if self.d_channels is not None:
            d["d_channels"] = {str(k): v for k, v in self.d_channels.items()}
        d["fir"] = list(self.fir)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "StyleGAN2Config":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"unknown StyleGAN2 config keys: {sorted(unknown)}")
        return cls(**d)


class FC(nn.Module):
    """Equalised-learning-rate fully connected layer (weights stored at N(0,1)/lr_mul)."""

    def __init__(self, in_f: int, out_f: int, *, act: bool = False, lr_mul: float = 1.0,
                 bias_init: float = 0.0):
        super().__init__()
        self.act = act
        self.weight = nn.Parameter(torch.randn(out_f, in_f) / lr_mul)
        self.bias = nn.Parameter(torch.full([out_f], float(bias_init)))
        self.weight_gain = lr_mul / math.sqrt(in_f)
        self.bias_gain = lr_mul

    def forward(self, x):
        x = x @ (self.weight * self.weight_gain).t()
        return bias_lrelu(x, self.bias * self.bias_gain, act=self.act)


class Conv(nn.Module):
    """Equalised-learning-rate convolution with optional 2x FIR down/upsampling."""

    def __init__(self, in_c: int, out_c: int, k: int, *, act: bool = True, bias: bool = True,
                 up: int = 1, down: int = 1, fir=(1, 3, 3, 1), clamp: float | None = None):
        super().__init__()
        self.act, self.up, self.down, self.clamp = act, up, down, clamp
        self.padding = k // 2
        self.weight = nn.Parameter(torch.randn(out_c, in_c, k, k))
        self.bias = nn.Parameter(torch.zeros(out_c)) if bias else None
        self.weight_gain = 1 / math.sqrt(in_c * k * k)
        self.register_buffer("fir", make_fir(fir), persistent=False)

    def forward(self, x, gain: float = 1.0):
        x = conv_resample(x, self.weight * self.weight_gain, self.fir, up=self.up,
                          down=self.down, padding=self.padding)
        clamp = self.clamp * gain if self.clamp is not None else None
        return bias_lrelu(x, self.bias, act=self.act, gain=gain, clamp=clamp)


def normalize_2nd_moment(x: torch.Tensor) -> torch.Tensor:
    return x * (x.square().mean(dim=1, keepdim=True) + 1e-8).rsqrt()


class Mapping(nn.Module):
    """z [N, z_dim] (and a label c [N, c_dim] for conditional models) -> w [N, w_dim]:
    2nd-moment normalisation of z and of the embedded label, concatenated, then FC layers
    with LeakyReLU(0.2)·√2. The last activation is what makes the P space of II2S well
    defined. ``z_dim = 0`` is the label-only mapping of a conditional discriminator."""

    def __init__(self, cfg: StyleGAN2Config | None = None, *, z_dim=None, c_dim=None, w_dim=None,
                 num_layers=None, lr_mul=None, embed_features=None, layer_features=None,
                 activation=None, track_avg: bool = True, w_avg_beta: float = 0.995):
        super().__init__()
        if cfg is not None:
            z_dim, c_dim, w_dim = cfg.z_dim, cfg.c_dim, cfg.w_dim
            num_layers, lr_mul = cfg.mapping_layers, cfg.mapping_lr_mul
            embed_features, layer_features = cfg.embed_features, cfg.layer_features
            activation, w_avg_beta = cfg.mapping_activation, cfg.w_avg_beta
        self.z_dim, self.c_dim, self.num_layers = z_dim, c_dim or 0, num_layers
        self.w_avg_beta = w_avg_beta
        embed = (embed_features or w_dim) if self.c_dim else 0
        hidden = layer_features or w_dim
        dims = [z_dim + embed] + [hidden] * (num_layers - 1) + [w_dim]
        self.activation = activation or "lrelu"
        if self.c_dim:
            self.embed = FC(self.c_dim, embed)
        for i in range(num_layers):
            setattr(self, f"fc{i}", FC(dims[i], dims[i + 1], act=self.activation == "lrelu", lr_mul=lr_mul))
        if track_avg:
            self.register_buffer("w_avg", torch.zeros(w_dim))

    def _input(self, z, c):
        x = normalize_2nd_moment(z) if self.z_dim else None
        if self.c_dim:
            if c is None:
                raise ValueError(f"this mapping is class-conditional (c_dim={self.c_dim}): a label is needed")
            y = normalize_2nd_moment(self.embed(c.to(torch.float32)))
            x = y if x is None else torch.cat([x, y], dim=1)
        return x

    def forward(self, z, c=None, *, update_w_avg: bool = False):
        x = self._input(z, c)
        for i in range(self.num_layers):
            x = getattr(self, f"fc{i}")(x)
        if update_w_avg:
            with torch.no_grad():
                self.w_avg.copy_(x.detach().mean(0).lerp(self.w_avg, self.w_avg_beta))
        return x

    def pre_activation(self, z, c=None):
        """The last layer's pre-activation output (for checks of the P-space inverse)."""
        x = self._input(z, c)
        for i in range(self.num_layers - 1):
            x = getattr(self, f"fc{i}")(x)
        last = getattr(self, f"fc{self.num_layers - 1}")
        return x @ (last.weight * last.weight_gain).t() + last.bias * last.bias_gain


class SynthesisLayer(nn.Module):
    """Modulated 3x3 convolution + per-pixel noise + bias + LeakyReLU."""

    def __init__(self, in_c, out_c, w_dim, resolution, *, up=1, fir=(1, 3, 3, 1), clamp=None):
        super().__init__()
        self.resolution, self.up, self.clamp = resolution, up, clamp
        self.affine = FC(w_dim, in_c, bias_init=1.0)
        self.weight = nn.Parameter(torch.randn(out_c, in_c, 3, 3))
        self.bias = nn.Parameter(torch.zeros(out_c))
        self.register_buffer("noise_const", torch.randn(resolution, resolution))
        self.noise_strength = nn.Parameter(torch.zeros([]))
        self.register_buffer("fir", make_fir(fir), persistent=False)

    def forward(self, x, w, *, noise_mode: str = "const", grouped: bool = False,
                generator: torch.Generator | None = None, gain: float = 1.0):
        styles = self.affine(w)
        noise = None
        if noise_mode == "random":
            noise = torch.randn(x.shape[0], 1, self.resolution, self.resolution,
                                generator=generator, device=x.device) * self.noise_strength
        elif noise_mode == "const":
            noise = self.noise_const * self.noise_strength
        x = modulated_conv(x, self.weight, styles, up=self.up, padding=1, f=self.fir,
                           noise=noise, grouped=grouped)
        return bias_lrelu(x, self.bias, act=True, gain=gain,
                          clamp=self.clamp * gain if self.clamp is not None else None)


class ToRGB(nn.Module):
    """Modulated 1x1 convolution without demodulation."""

    def __init__(self, in_c, out_c, w_dim, *, clamp=None):
        super().__init__()
        self.clamp = clamp
        self.affine = FC(w_dim, in_c, bias_init=1.0)
        self.weight = nn.Parameter(torch.randn(out_c, in_c, 1, 1))
        self.bias = nn.Parameter(torch.zeros(out_c))
        self.weight_gain = 1 / math.sqrt(in_c)

    def forward(self, x, w, *, grouped: bool = False):
        styles = self.affine(w) * self.weight_gain
        x = modulated_conv(x, self.weight, styles, demodulate=False, grouped=grouped)
        return bias_lrelu(x, self.bias, act=False, clamp=self.clamp)


class SynthesisBlock(nn.Module):
    """One resolution: (const | upsampling conv0), conv1, and the image path of the
    architecture: 'skip' adds a to-RGB of every block to the upsampled image, 'orig' and
    'resnet' have a to-RGB only in the last block ('resnet' adds a 1x1 upsampling skip
    connection around the two convolutions, both halves scaled by √½)."""

    def __init__(self, in_c, out_c, w_dim, resolution, img_channels, *, fir, clamp,
                 architecture: str = "skip", is_last: bool = False):
        super().__init__()
        self.in_c, self.resolution, self.architecture = in_c, resolution, architecture
        if in_c == 0:
            self.const = nn.Parameter(torch.randn(out_c, resolution, resolution))
        else:
            self.conv0 = SynthesisLayer(in_c, out_c, w_dim, resolution, up=2, fir=fir, clamp=clamp)
        self.conv1 = SynthesisLayer(out_c, out_c, w_dim, resolution, fir=fir, clamp=clamp)
        self.has_torgb = is_last or architecture == "skip"
        if self.has_torgb:
            self.torgb = ToRGB(out_c, img_channels, w_dim, clamp=clamp)
        if in_c != 0 and architecture == "resnet":
            self.skip = Conv(in_c, out_c, 1, act=False, bias=False, up=2, fir=fir)
        self.num_conv = 1 if in_c == 0 else 2
        self.register_buffer("fir", make_fir(fir), persistent=False)

    def forward(self, x, img, ws, *, image: bool = True, **kw):
        # ws: [N, num_conv + 1, w_dim] (the last row feeds the to-RGB, when there is one);
        # image=False: features only, no image path (img stays None)
        grouped = kw.get("grouped", False)
        if self.in_c == 0:
            x = self.const.unsqueeze(0).repeat(ws.shape[0], 1, 1, 1)
            x = self.conv1(x, ws[:, 0], **kw)
        elif self.architecture == "resnet":
            y = self.skip(x, gain=math.sqrt(0.5))
            x = self.conv0(x, ws[:, 0], **kw)
            x = self.conv1(x, ws[:, 1], gain=math.sqrt(0.5), **kw)
            x = y + x
        else:
            x = self.conv0(x, ws[:, 0], **kw)
            x = self.conv1(x, ws[:, 1], **kw)
        if not image:
            return x, None
        if img is not None:
            img = upsample2x(img, self.fir)
        if self.has_torgb:
            y = self.torgb(x, ws[:, self.num_conv], grouped=grouped)
            img = y if img is None else img + y
        return x, img


class Synthesis(nn.Module):
    """ws [N, num_ws, w_dim] -> image [N, C, R, R]. ``checkpoint_blocks``: recompute each block's
    activations in the backward pass instead of keeping them (less memory per image, ~1/3 more
    compute; constant noise only), for inversions that would not fit otherwise."""

    checkpoint_blocks = False

    def __init__(self, cfg: StyleGAN2Config):
        super().__init__()
        self.resolutions = cfg.resolutions
        self.num_ws = cfg.num_ws
        for res in self.resolutions:
            in_c = cfg.channels[res // 2] if res > 4 else 0
            setattr(self, f"b{res}", SynthesisBlock(in_c, cfg.channels[res], cfg.w_dim, res,
                                                    cfg.img_channels, fir=cfg.fir,
                                                    clamp=cfg.conv_clamp, architecture=cfg.architecture,
                                                    is_last=res == cfg.img_resolution))

    @property
    def layer_names(self) -> list[str]:
        return [f"b{r}" for r in self.resolutions]

    def _ws_slices(self):
        idx = 0
        for res in self.resolutions:
            block = getattr(self, f"b{res}")
            yield res, block, idx
            idx += block.num_conv

    def forward(self, ws, *, start: str | None = None, stop: str | None = None, state=None,
                **kw):
        """Run blocks from ``start`` (exclusive; None = from the input) to ``stop``
        (inclusive; None = to the end). With ``stop``, returns the state ``(x, img)`` after
        that block; with ``start``, ``state`` is the ``(x, img)`` after that block.
        ``image=False`` (with ``stop``): the features only, img None (nothing can continue)."""
        if not kw.get("image", True) and stop is None:
            raise ValueError("image=False needs a stop layer: the image is the output")
        x, img = state if state is not None else (None, None)
        running = start is None
        ckpt = self.checkpoint_blocks and torch.is_grad_enabled() and kw.get("noise_mode") != "random"
        for res, block, idx in self._ws_slices():
            name = f"b{res}"
            if running:
                wsl = ws[:, idx: idx + block.num_conv + 1]
                if ckpt:    # activation checkpointing: keep only each block's input, recompute in backward
                    x, img = checkpoint(lambda a, b, c, blk=block: blk(a, b, c, **kw), x, img, wsl, use_reentrant=False)
                else:
                    x, img = block(x, img, wsl, **kw)
                if name == stop:
                    return x, img
            elif name == start:
                running = True
        return img


class StyleGAN2Generator(nn.Module):
    def __init__(self, cfg: StyleGAN2Config):
        super().__init__()
        self.cfg = cfg
        self.z_dim, self.w_dim, self.num_ws = cfg.z_dim, cfg.w_dim, cfg.num_ws
        self.img_resolution, self.img_channels = cfg.img_resolution, cfg.img_channels
        self.mapping = Mapping(cfg)
        self.synthesis = Synthesis(cfg)

    def forward(self, z, c=None, *, psi: float = 1.0, noise_mode: str = "const", **kw):
        w = self.mapping(z, c)
        if psi != 1.0:
            w = self.mapping.w_avg.lerp(w, psi)
        return self.synthesis(w.unsqueeze(1).expand(-1, self.num_ws, -1), noise_mode=noise_mode, **kw)


class DiscriminatorBlock(nn.Module):
    """One resolution of the discriminator. 'resnet': fromRGB only in the first block and a
    1x1 downsampling skip (both halves √½); 'skip': a fromRGB of the downsampled image added in
    every block; 'orig': fromRGB in the first block, plain convolutions."""

    def __init__(self, in_c, tmp_c, out_c, img_channels, *, fir, clamp, architecture: str = "resnet"):
        super().__init__()
        self.in_c, self.architecture = in_c, architecture
        if in_c == 0 or architecture == "skip":
            self.fromrgb = Conv(img_channels, tmp_c, 1, fir=fir, clamp=clamp)
        self.conv0 = Conv(tmp_c, tmp_c, 3, fir=fir, clamp=clamp)
        self.conv1 = Conv(tmp_c, out_c, 3, down=2, fir=fir, clamp=clamp)
        if architecture == "resnet":
            self.skip = Conv(tmp_c, out_c, 1, down=2, act=False, bias=False, fir=fir)
        self.register_buffer("fir", make_fir(fir), persistent=False)

    def forward(self, x, img):
        if self.in_c == 0 or self.architecture == "skip":
            y = self.fromrgb(img)
            x = y if x is None else x + y
            img = downsample2x(img, self.fir) if self.architecture == "skip" else None
        if self.architecture == "resnet":
            y = self.skip(x, gain=math.sqrt(0.5))
            return y + self.conv1(self.conv0(x), gain=math.sqrt(0.5)), img
        return self.conv1(self.conv0(x)), img


class DiscriminatorEpilogue(nn.Module):
    def __init__(self, in_c, img_channels, *, mbstd_group, mbstd_channels, clamp, architecture="resnet",
                 cmap_dim: int = 0):
        super().__init__()
        self.mbstd_group, self.mbstd_channels = mbstd_group, mbstd_channels
        self.architecture, self.cmap_dim = architecture, cmap_dim
        if architecture == "skip":
            self.fromrgb = Conv(img_channels, in_c, 1)
        self.conv = Conv(in_c + mbstd_channels, in_c, 3, clamp=clamp)
        self.fc = FC(in_c * 16, in_c, act=True)
        self.out = FC(in_c, cmap_dim or 1)


class StyleGAN2Discriminator(nn.Module):
    """``forward(img, c=None)`` -> raw scores [N, 1]; ``features(img)`` -> the penultimate FC
    activations [N, C4] (used as D_f by Diamond in the rough). Conditional models project the
    output on the mapped label (Miyato & Koyama), as stylegan2-ada does."""

    def __init__(self, cfg: StyleGAN2Config):
        super().__init__()
        self.cfg = cfg
        ch = cfg.d_channels or cfg.channels
        self.resolutions = [r for r in reversed(cfg.resolutions) if r > 4]
        clamp = cfg.d_clamp
        for res in self.resolutions:
            in_c = ch[res] if res < cfg.img_resolution else 0
            setattr(self, f"b{res}", DiscriminatorBlock(in_c, ch[res], ch[res // 2], cfg.img_channels,
                                                        fir=cfg.fir, clamp=clamp,
                                                        architecture=cfg.d_architecture))
        if cfg.c_dim and cfg.d_cmap_dim:
            self.mapping = Mapping(z_dim=0, c_dim=cfg.c_dim, w_dim=cfg.d_cmap_dim, num_layers=cfg.d_mapping_layers,
                                   lr_mul=cfg.d_mapping_lr_mul or cfg.mapping_lr_mul, track_avg=False)
        self.b4 = DiscriminatorEpilogue(ch[4], cfg.img_channels, mbstd_group=cfg.mbstd_group,
                                        mbstd_channels=cfg.mbstd_channels, clamp=clamp,
                                        architecture=cfg.d_architecture,
                                        cmap_dim=cfg.d_cmap_dim if cfg.c_dim else 0)

    @property
    def has_minibatch_std(self) -> bool:
        return self.cfg.mbstd_channels > 0

    @property
    def conditional(self) -> bool:
        return self.b4.cmap_dim > 0

    def trunk(self, img, mbstd_group: int | None = None):
        x = None
        for res in self.resolutions:
            x, img = getattr(self, f"b{res}")(x, img)
        e = self.b4
        if e.architecture == "skip":
            x = x + e.fromrgb(img)
        if e.mbstd_channels > 0:
            x = minibatch_std(x, mbstd_group or e.mbstd_group, e.mbstd_channels)
        x = e.conv(x)
        return e.fc(x.flatten(1))

    def features(self, img, mbstd_group: int | None = None):
        """``mbstd_group=1`` makes each image's features independent of the rest of the batch."""
        return self.trunk(img, mbstd_group)

    def forward(self, img, c=None):
        x = self.b4.out(self.trunk(img))
        if self.conditional:
            if c is None:
                raise ValueError("this discriminator is class-conditional: a label is needed")
            cmap = self.mapping(None, c)
            x = (x * cmap).sum(dim=1, keepdim=True) / math.sqrt(self.b4.cmap_dim)
        return x
