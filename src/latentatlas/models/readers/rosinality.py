"""rosinality stylegan2-pytorch ``.pt`` checkpoints (``g_ema``/``g``/``d``/``latent_avg``, the
interchange format of e4e, pSp, II2S and GANSpace): a plain torch zip read with
``weights_only=True`` (only ``argparse.Namespace`` added to the allow-list); widths, depth of
the mapping network and resolution are read from tensor shapes, not from a channel table. The
mapping is a fixed LeakyReLU(0.2) stack, so the P spaces apply.

Key mapping (the one place it is written down), rosinality -> ours (G):
  ``style.{i}`` (i = 1..n_mlp)             -> ``mapping.fc{i-1}``
  ``input.input`` [1,C,4,4]               -> ``synthesis.b4.const`` [C,4,4]
  ``conv1``, ``to_rgb1``                  -> ``synthesis.b4.conv1``, ``synthesis.b4.torgb``
  ``convs.{2j}``, ``convs.{2j+1}``        -> ``synthesis.b{8*2^j}.conv0``, ``.conv1``
  ``to_rgbs.{j}``                         -> ``synthesis.b{8*2^j}.torgb``
  ``*.conv.weight`` [1,O,I,k,k]           -> ``*.weight`` [O,I,k,k] x 1/sqrt(I k k) for the 3x3
                                              convs (rosinality scales before demodulating; pre-
                                              scaling keeps its demodulation epsilon exact)
  ``*.conv.modulation.{weight,bias}``     -> ``*.affine.{weight,bias}``
  ``*.noise.weight`` [1]                  -> ``*.noise_strength`` []
  ``*.activate.bias``, ``to_rgb*.bias``   -> ``*.bias``
  ``noises.noise_0`` / ``noise_{2j+1}`` / ``noise_{2j+2}`` [1,1,R,R] -> ``noise_const`` [R,R] of
                                              b4.conv1 / b{8*2^j}.conv0 / .conv1
  ``latent_avg``                          -> ``mapping.w_avg``
rosinality -> ours (D): ``convs.0`` -> ``b{R}.fromrgb``; ``convs.{i}.conv1`` / ``conv2`` /
  ``skip`` -> ``b{R/2^(i-1)}.conv0`` / ``conv1`` / ``skip``; ``final_conv`` -> ``b4.conv``;
  ``final_linear.0`` / ``.1`` -> ``b4.fc`` / ``b4.out``; blur kernels dropped.
"""
from __future__ import annotations

import math
from pathlib import Path

import torch

from ...errors import LatentAtlasError
from ..interface import ModelInfo, StyleGANModel
from ..state import load_state
from ..stylegan2 import StyleGAN2Config, StyleGAN2Discriminator, StyleGAN2Generator

FAMILY = "rosinality stylegan2-pytorch .pt"


ROS_LR_MUL = 0.01          # rosinality's mapping learning-rate multiplier (weights are stored / lr_mul)


def g_layout(n_blocks: int):
    """The synthesis layers, rosinality prefix -> our prefix, with their kind ('styled', 'styled-up',
    'torgb', 'torgb-up') and noise buffer: the one list the reader and the writer both follow."""
    yield "conv1", "synthesis.b4.conv1", "styled", "noises.noise_0"
    yield "to_rgb1", "synthesis.b4.torgb", "torgb", None
    for j in range(n_blocks):
        r = 8 * 2 ** j
        yield f"convs.{2 * j}", f"synthesis.b{r}.conv0", "styled-up", f"noises.noise_{2 * j + 1}"
        yield f"convs.{2 * j + 1}", f"synthesis.b{r}.conv1", "styled", f"noises.noise_{2 * j + 2}"
        yield f"to_rgbs.{j}", f"synthesis.b{r}.torgb", "torgb-up", None


def d_layout(resolutions: list[int]):
    """Discriminator parameters, rosinality key -> our key ('' for rosinality's blur kernels)."""
    res = resolutions[-1]
    yield "convs.0.0.weight", f"b{res}.fromrgb.weight"
    yield "convs.0.1.bias", f"b{res}.fromrgb.bias"
    for i, r in enumerate(reversed(resolutions[1:]), start=1):
        p = f"convs.{i}"
        yield f"{p}.conv1.0.weight", f"b{r}.conv0.weight"
        yield f"{p}.conv1.1.bias", f"b{r}.conv0.bias"
        yield f"{p}.conv2.0.kernel", ""
        yield f"{p}.conv2.1.weight", f"b{r}.conv1.weight"
        yield f"{p}.conv2.2.bias", f"b{r}.conv1.bias"
        yield f"{p}.skip.0.kernel", ""
        yield f"{p}.skip.1.weight", f"b{r}.skip.weight"
    for a, b in (("final_conv.0.weight", "b4.conv.weight"), ("final_conv.1.bias", "b4.conv.bias"),
                 ("final_linear.0.weight", "b4.fc.weight"), ("final_linear.0.bias", "b4.fc.bias"),
                 ("final_linear.1.weight", "b4.out.weight"), ("final_linear.1.bias", "b4.out.bias")):
        yield a, b


def _fir_kernel(taps=(1, 3, 3, 1), gain: float = 1.0) -> torch.Tensor:
    k = torch.tensor(taps, dtype=torch.float32)
    k = k[None, :] * k[:, None]
    return k / k.sum() * gain


def detect(ckpt) -> bool:
    return isinstance(ckpt, dict) and any(k in ckpt for k in ("g_ema", "g")) and \
        isinstance(ckpt.get("g_ema", ckpt.get("g")), dict) and \
        any(k.startswith("style.") for k in ckpt.get("g_ema", ckpt.get("g")))


def _need(sd: dict, key: str, source: str):
    if key not in sd:
        raise LatentAtlasError(f"{source}: missing key {key!r} for a rosinality StyleGAN2 generator")
    return sd[key]


def rosinality_generator_state(g: dict, source: str, lr_mul: float = 0.01):
    """Returns (config kwargs, our state dict) for a rosinality ``Generator`` state dict."""
    n_mlp = 0
    while f"style.{n_mlp + 1}.weight" in g:
        n_mlp += 1
    if n_mlp == 0:
        raise LatentAtlasError(f"{source}: no mapping layers (style.1.weight) found")
    const = _need(g, "input.input", source)
    n_convs = 0
    while f"convs.{n_convs}.conv.weight" in g:
        n_convs += 1
    if n_convs % 2:
        raise LatentAtlasError(f"{source}: odd number of synthesis convs ({n_convs})")
    res = 4 * 2 ** (n_convs // 2)
    resolutions = [4 * 2 ** j for j in range(n_convs // 2 + 1)]
    w_dim = int(g["style.1.weight"].shape[1])
    z_dim = w_dim
    img_c = int(_need(g, "to_rgb1.conv.weight", source).shape[1])
    out = {}
    for i in range(1, n_mlp + 1):
        out[f"mapping.fc{i - 1}.weight"] = g[f"style.{i}.weight"]
        out[f"mapping.fc{i - 1}.bias"] = g[f"style.{i}.bias"]
    out["synthesis.b4.const"] = const[0]

    def styled(src, dst, kind, noise_key):
        w = _need(g, f"{src}.conv.weight", source)[0]                    # [O, I, k, k]
        out[f"{dst}.weight"] = w / math.sqrt(w.shape[1] * w.shape[2] * w.shape[3])
        out[f"{dst}.affine.weight"] = g[f"{src}.conv.modulation.weight"]
        out[f"{dst}.affine.bias"] = g[f"{src}.conv.modulation.bias"]
        out[f"{dst}.noise_strength"] = _need(g, f"{src}.noise.weight", source).reshape([])
        out[f"{dst}.bias"] = _need(g, f"{src}.activate.bias", source)
        out[f"{dst}.noise_const"] = _need(g, noise_key, source).reshape(g[noise_key].shape[-2:])

    def torgb(src, dst, kind, noise_key):
        out[f"{dst}.weight"] = _need(g, f"{src}.conv.weight", source)[0]
        out[f"{dst}.affine.weight"] = g[f"{src}.conv.modulation.weight"]
        out[f"{dst}.affine.bias"] = g[f"{src}.conv.modulation.bias"]
        out[f"{dst}.bias"] = _need(g, f"{src}.bias", source).reshape(-1)

    for src, dst, kind, noise_key in g_layout(n_convs // 2):
        (styled if kind.startswith("styled") else torgb)(src, dst, kind, noise_key)
    channels = {4: int(const.shape[1])}
    for j in range(n_convs // 2):
        channels[8 * 2 ** j] = int(g[f"convs.{2 * j + 1}.conv.weight"].shape[1])
    cfg = dict(z_dim=z_dim, w_dim=w_dim, img_resolution=res, img_channels=img_c, channels=channels,
               mapping_layers=n_mlp, mapping_lr_mul=lr_mul)
    return cfg, out, resolutions


def rosinality_discriminator_state(d: dict, resolutions: list[int], source: str):
    out = {ours: _need(d, ros, source) for ros, ours in d_layout(resolutions) if ours}
    d_channels = {r: int(out[f"b{r}.conv0.weight"].shape[0]) for r in resolutions[1:]}
    d_channels[4] = int(out["b4.conv.weight"].shape[0])
    mbstd = int(out["b4.conv.weight"].shape[1]) - d_channels[4]
    return out, d_channels, mbstd


def load(path, ckpt, *, which: str = "g_ema", lr_mul: float = 0.01) -> StyleGANModel:
    source = str(path)
    if which not in ckpt:
        which = "g" if "g" in ckpt else which
        if which not in ckpt:
            raise LatentAtlasError(f"{source}: no generator ('g_ema' or 'g') in the checkpoint")
    cfg_kw, gsd, resolutions = rosinality_generator_state(ckpt[which], source, lr_mul)
    dsd = None
    if isinstance(ckpt.get("d"), dict):
        dsd, d_channels, mbstd = rosinality_discriminator_state(ckpt["d"], resolutions, source)
        cfg_kw.update(d_channels=d_channels, mbstd_channels=mbstd, mbstd_group=4)
    cfg = StyleGAN2Config(**cfg_kw)
    G = StyleGAN2Generator(cfg)
    avg = ckpt.get("latent_avg")
    note = "latent_avg from the checkpoint"
    if avg is None:
        note = "latent_avg absent: mean of 4096 mapped z (seed 123)"
        with torch.no_grad():
            gsd["mapping.w_avg"] = torch.zeros(cfg.w_dim)
            load_state(G, gsd, f"{source} ({which})")
            avg = G.mapping(torch.randn(4096, cfg.z_dim, generator=torch.Generator().manual_seed(123))).mean(0)
    gsd["mapping.w_avg"] = torch.as_tensor(avg).reshape(-1).float()
    load_state(G, gsd, f"{source} ({which})")
    D = None
    if dsd is not None:
        D = StyleGAN2Discriminator(cfg)
        load_state(D, dsd, f"{source} (d)")
    info = ModelInfo(name=Path(path).stem, arch="stylegan2",
                     source=f"{source} (rosinality stylegan2-pytorch, {which})",
                     extra={"format": "rosinality-pt", "family": "stylegan2", "w_avg": note})
    return StyleGANModel(info, G, D)


ROS_CHANNELS = {4: 512, 8: 512, 16: 512, 32: 512, 64: 256, 128: 128, 256: 64, 512: 32, 1024: 16}


def _ros_args(cfg):
    """rosinality's training arguments for this config, and what keeps its ``Generator`` class from
    being built for it (empty when ``Generator(size, style_dim, n_mlp, channel_multiplier)`` fits)."""
    from argparse import Namespace
    problems = []
    cm = None
    for mult in (1, 2, 4):
        if all(cfg.channels[r] == (ROS_CHANNELS[r] * mult if r >= 64 else ROS_CHANNELS[r])
               for r in cfg.resolutions if r in ROS_CHANNELS):
            cm = mult
            break
    if cm is None:
        problems.append(f"widths {dict(cfg.channels)} are not rosinality's table for any channel_multiplier")
    if cfg.img_channels != 3:
        problems.append(f"{cfg.img_channels} image channel(s) (rosinality's Generator writes RGB)")
    return Namespace(size=cfg.img_resolution, latent=cfg.w_dim, n_mlp=cfg.mapping_layers,
                     channel_multiplier=cm or 2), problems


def to_rosinality(model) -> tuple[dict, list[str]]:
    """A rosinality stylegan2-pytorch checkpoint dict (``g_ema``, ``d`` when the discriminator
    fits, ``latent_avg``, ``args``) for a StyleGAN2 model, and the warnings for the user. Models
    rosinality's layout cannot express (another synthesis architecture, z_dim != w_dim, class
    labels, other filter taps, a non-LeakyReLU mapping) are refused."""
    import logging
    G, cfg = model.G, getattr(model.G, "cfg", None)
    if not isinstance(cfg, StyleGAN2Config) or not isinstance(G, StyleGAN2Generator):
        raise LatentAtlasError(f"model '{model.name}' is not a StyleGAN2 generator; rosinality's layout holds only "
                               "StyleGAN2")
    bad = [why for cond, why in (
        (cfg.architecture != "skip", f"synthesis architecture '{cfg.architecture}' (rosinality: skip)"),
        (cfg.z_dim != cfg.w_dim, f"z_dim {cfg.z_dim} != w_dim {cfg.w_dim}"),
        (cfg.layer_features not in (None, cfg.w_dim), f"mapping width {cfg.layer_features} != w_dim"),
        (cfg.c_dim, "class labels"), (tuple(cfg.fir) != (1, 3, 3, 1), f"filter taps {cfg.fir}"),
        (cfg.mapping_activation != "lrelu", f"mapping activation {cfg.mapping_activation}")) if cond]
    if bad:
        raise LatentAtlasError(f"model '{model.name}' cannot be written in rosinality's layout: {'; '.join(bad)}")
    sd = {k: v.detach().cpu().float() for k, v in G.state_dict().items()}
    g: dict = {}
    scale = cfg.mapping_lr_mul / ROS_LR_MUL              # same effective weights under rosinality's lr_mul
    for i in range(cfg.mapping_layers):
        g[f"style.{i + 1}.weight"] = sd[f"mapping.fc{i}.weight"] * scale
        g[f"style.{i + 1}.bias"] = sd[f"mapping.fc{i}.bias"] * scale
    g["input.input"] = sd["synthesis.b4.const"][None].clone()
    up = _fir_kernel(cfg.fir, 4.0)
    n_blocks = len(cfg.resolutions) - 1
    for src, dst, kind, noise_key in g_layout(n_blocks):
        w = sd[f"{dst}.weight"]
        if kind.startswith("styled"):
            w = w * math.sqrt(w.shape[1] * w.shape[2] * w.shape[3])
            g[f"{src}.noise.weight"] = sd[f"{dst}.noise_strength"].reshape(1)
            g[f"{src}.activate.bias"] = sd[f"{dst}.bias"]
            g[noise_key] = sd[f"{dst}.noise_const"][None, None].clone()
            if kind == "styled-up":
                g[f"{src}.conv.blur.kernel"] = up.clone()
        else:
            g[f"{src}.bias"] = sd[f"{dst}.bias"].reshape(1, -1, 1, 1)
            if kind == "torgb-up":
                g[f"{src}.upsample.kernel"] = up.clone()
        g[f"{src}.conv.weight"] = w[None].clone()
        g[f"{src}.conv.modulation.weight"] = sd[f"{dst}.affine.weight"]
        g[f"{src}.conv.modulation.bias"] = sd[f"{dst}.affine.bias"]
    args, problems = _ros_args(cfg)
    warnings = [f"rosinality's Generator class cannot be built for this model ({'; '.join(problems)}); readers "
                "that take widths from tensor shapes (latentatlas among them) can load it"] if problems else []
    if cfg.conv_clamp is not None:
        warnings.append(f"conv_clamp {cfg.conv_clamp} is dropped (rosinality has none; outputs may differ where "
                        "activations exceeded it)")
    ck = {"g_ema": g, "latent_avg": sd["mapping.w_avg"].clone(), "args": args}
    D, dcfg_ok = model.D, (cfg.d_architecture == "resnet" and cfg.mbstd_channels == 1 and cfg.mbstd_group == 4
                           and cfg.d_cmap_dim == 0)
    if D is not None and dcfg_ok:
        dsd = {k: v.detach().cpu().float() for k, v in D.state_dict().items()}
        down = _fir_kernel(cfg.fir)
        ck["d"] = {ros: (dsd[ours] if ours else down.clone()) for ros, ours in d_layout(cfg.resolutions)}
    elif D is not None:
        warnings.append("the discriminator is left out (rosinality's is a resnet with minibatch-std group 4, 1 "
                        f"channel; this one: {cfg.d_architecture}, group {cfg.mbstd_group}, {cfg.mbstd_channels} "
                        "channel(s))")
    logging.getLogger("latentatlas").debug("rosinality export: %d G tensors", len(g))
    return ck, warnings
