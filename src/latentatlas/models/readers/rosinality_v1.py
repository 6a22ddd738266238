"""rosinality/style-based-gan-pytorch ``.model`` files (the PyTorch port of StyleGAN v1).

Two layouts: a training checkpoint ``train_step-N.model`` (``generator``, ``discriminator``,
``g_optimizer``, ``d_optimizer``, ``g_running``; ``g_running``, the moving average, is the
generator) and ``checkpoint/NNNNNN.model`` (``g_running``'s state dict alone). Read with torch's
``weights_only`` loader, mapped to :mod:`..stylegan1` with the port's own conventions:

* equalised learning rate by ``weight_orig × √(2/fan_in)`` everywhere (mapping, convolutions,
  styles, to-RGB, and the per-channel noise weights, whose fan-in is the channel count), no
  learning-rate multiplier in the mapping;
* AdaIN's scale is the style itself (its bias starts at 1), ``nn.InstanceNorm2d``'s ε = 1e-5;
* the up-sampling convolution's bias is added before the blur; the fused up-sampling kernel is
  the *average* of the 4 taps (NVlabs sums them);
* the file holds every block up to 1024 px whatever size was trained; the trained size is the
  highest block whose to-RGB bias or noise weights left their zero initialisation (the port's
  ``generate.py`` takes it as ``--size``); blocks above it are dropped;
* no noise constants are stored (the port draws noise per call): fixed ones are drawn from seed
  0; no mean w is stored: the mean of 4096 mapped z (seed 123).

The port's discriminator (a different design from NVlabs' ``D_basic``: a 4×4 valid convolution
and one linear layer, an optional activation after from-RGB that the file does not record) is
not read: methods that need a discriminator say so.
"""
from __future__ import annotations

import math
from pathlib import Path

import torch

from ...errors import LatentAtlasError
from ..interface import ModelInfo, StyleGANModel
from ..state import build_checked
from ..stylegan1 import StyleGAN1Config, StyleGAN1Generator

FAMILY = "rosinality style-based-gan-pytorch (StyleGAN v1)"
KEY = "generator.progression.0.conv1.input"


def _state(ckpt) -> tuple[dict | None, str]:
    if isinstance(ckpt, dict) and KEY in ckpt:
        return ckpt, "state dict"
    for which in ("g_running", "generator"):
        if isinstance(ckpt, dict) and isinstance(ckpt.get(which), dict) and KEY in ckpt[which]:
            return ckpt[which], which
    return None, ""


def detect(ckpt) -> bool:
    return _state(ckpt)[0] is not None


def _get(sd, key, source):
    if key not in sd or not isinstance(sd[key], torch.Tensor):
        raise LatentAtlasError(f"{source}: rosinality v1 tensor {key!r} missing")
    return sd[key].float()


def _trained_steps(sd) -> int:
    """The highest progression index whose zero-initialised tensors moved."""
    top = -1
    i = 0
    while f"generator.to_rgb.{i}.conv.bias" in sd:
        moved = [sd[f"generator.to_rgb.{i}.conv.bias"]] + [sd[k] for k in
                                                            (f"generator.progression.{i}.noise1.weight_orig",
                                                             f"generator.progression.{i}.noise2.weight_orig") if k in sd]
        if any(bool((t != 0).any()) for t in moved):
            top = i
        i += 1
    return top


def load(path, ckpt) -> StyleGANModel:
    source = str(path)
    sd, which = _state(ckpt)
    step = _trained_steps(sd)
    if step < 0:
        raise LatentAtlasError(f"{source}: no trained block found (every to-RGB bias and noise weight is still at "
                               f"its zero initialisation)")
    n = 0
    out = {}
    while f"style.{2 * n + 1}.linear.weight_orig" in sd:
        out[f"mapping.fc{n}.weight"] = _get(sd, f"style.{2 * n + 1}.linear.weight_orig", source)
        out[f"mapping.fc{n}.bias"] = _get(sd, f"style.{2 * n + 1}.linear.bias", source)
        n += 1
    if n == 0:
        raise LatentAtlasError(f"{source}: rosinality v1 mapping (style.1.linear) missing")
    w_dim = int(out[f"mapping.fc{n - 1}.weight"].shape[0])
    const = _get(sd, KEY, source)[0]
    channels, ng = {}, torch.Generator().manual_seed(0)
    fused_from = None
    for i in range(step + 1):
        res, p, b = 4 * 2 ** i, f"generator.progression.{i}", f"synthesis.b{4 * 2 ** i}"
        for j, ours in ((1, "conv0"), (2, "conv1")):
            nw = _get(sd, f"{p}.noise{j}.weight_orig", source).reshape(-1)
            out[f"{b}.{ours}.noise_weight"] = nw * math.sqrt(2.0 / nw.numel())
            out[f"{b}.{ours}.noise_const"] = torch.randn(res, res, generator=ng)
            aw, ab = _get(sd, f"{p}.adain{j}.style.linear.weight_orig", source), _get(
                sd, f"{p}.adain{j}.style.linear.bias", source)
            c = aw.shape[0] // 2
            out[f"{b}.{ours}.affine.weight"] = aw * math.sqrt(2.0)       # their gain √2 over ours 1
            out[f"{b}.{ours}.affine.bias"] = torch.cat([ab[:c] - 1, ab[c:]])   # their scale is s, ours s + 1
        if i == 0:
            out[f"{b}.const"] = const
            out[f"{b}.conv0.bias"] = torch.zeros(const.shape[0])
        elif f"{p}.conv1.0.weight" in sd:            # fused: FusedUpsample [in, out, k, k]
            out[f"{b}.conv0.weight"] = _get(sd, f"{p}.conv1.0.weight", source).transpose(0, 1).contiguous()
            out[f"{b}.conv0.conv_bias"] = _get(sd, f"{p}.conv1.0.bias", source)
            out[f"{b}.conv0.bias"] = torch.zeros(out[f"{b}.conv0.weight"].shape[0])
            fused_from = fused_from or res
        else:                                        # nearest x2, EqualConv2d, blur
            out[f"{b}.conv0.weight"] = _get(sd, f"{p}.conv1.1.conv.weight_orig", source)
            out[f"{b}.conv0.conv_bias"] = _get(sd, f"{p}.conv1.1.conv.bias", source)
            out[f"{b}.conv0.bias"] = torch.zeros(out[f"{b}.conv0.weight"].shape[0])
            if fused_from is not None:
                raise LatentAtlasError(f"{source}: a non-fused block above a fused one")
        out[f"{b}.conv1.weight"] = _get(sd, f"{p}.conv2.conv.weight_orig", source)
        out[f"{b}.conv1.bias"] = _get(sd, f"{p}.conv2.conv.bias", source)
        out[f"{b}.torgb.weight"] = _get(sd, f"generator.to_rgb.{i}.conv.weight_orig", source) * math.sqrt(2.0)
        out[f"{b}.torgb.bias"] = _get(sd, f"generator.to_rgb.{i}.conv.bias", source)
        channels[res] = int(out[f"{b}.conv1.weight"].shape[0])
    res = 4 * 2 ** step
    cfg = StyleGAN1Config(z_dim=int(out["mapping.fc0.weight"].shape[1]), w_dim=w_dim, img_resolution=res,
                          img_channels=int(out[f"synthesis.b{res}.torgb.weight"].shape[0]), channels=channels,
                          mapping_layers=n, layer_features=int(out["mapping.fc0.weight"].shape[0]) if n > 1 else None,
                          mapping_lr_mul=1.0, fused_min_res=fused_from or (1 << 20), instance_norm_eps=1e-5,
                          fused_up_gain=0.25, bias_before_blur=True)
    out["mapping.w_avg"] = torch.zeros(w_dim)
    G = build_checked(lambda: StyleGAN1Generator(cfg), out, f"{path} ({which})")
    with torch.no_grad():
        G.mapping.w_avg.copy_(G.mapping(torch.randn(4096, cfg.z_dim, generator=torch.Generator().manual_seed(123))).mean(0))
    info = ModelInfo(name=Path(path).stem, arch="stylegan1", source=f"{source} ({FAMILY}, {which})",
                     extra={"format": "rosinality-v1", "family": "stylegan1",
                            "trained_size": f"{res} px (blocks above are at their initialisation)",
                            "w_avg": "mean of 4096 mapped z (seed 123)",
                            "noise": "fixed noise drawn from seed 0 (the file stores none)",
                            **({"warnings": ["the port's discriminator is not read"]}
                               if isinstance(ckpt, dict) and "discriminator" in ckpt else {})})
    return StyleGANModel(info, G, None)
