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
from ..stylegan2 import StyleGAN2Config, StyleGAN2Discriminator, StyleGAN2Generator

FAMILY = "rosinality stylegan2-pytorch .pt"


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

    def styled(src, dst, noise_key):
        w = _need(g, f"{src}.conv.weight", source)[0]                    # [O, I, k, k]
        out[f"{dst}.weight"] = w / math.sqrt(w.shape[1] * w.shape[2] * w.shape[3])
        out[f"{dst}.affine.weight"] = g[f"{src}.conv.modulation.weight"]
        out[f"{dst}.affine.bias"] = g[f"{src}.conv.modulation.bias"]
        out[f"{dst}.noise_strength"] = _need(g, f"{src}.noise.weight", source).reshape([])
        out[f"{dst}.bias"] = _need(g, f"{src}.activate.bias", source)
        out[f"{dst}.noise_const"] = _need(g, noise_key, source).reshape(g[noise_key].shape[-2:])

    def torgb(src, dst):
        out[f"{dst}.weight"] = _need(g, f"{src}.conv.weight", source)[0]
        out[f"{dst}.affine.weight"] = g[f"{src}.conv.modulation.weight"]
        out[f"{dst}.affine.bias"] = g[f"{src}.conv.modulation.bias"]
        out[f"{dst}.bias"] = _need(g, f"{src}.bias", source).reshape(-1)

    styled("conv1", "synthesis.b4.conv1", "noises.noise_0")
    torgb("to_rgb1", "synthesis.b4.torgb")
    for j in range(n_convs // 2):
        r = 8 * 2 ** j
        styled(f"convs.{2 * j}", f"synthesis.b{r}.conv0", f"noises.noise_{2 * j + 1}")
        styled(f"convs.{2 * j + 1}", f"synthesis.b{r}.conv1", f"noises.noise_{2 * j + 2}")
        torgb(f"to_rgbs.{j}", f"synthesis.b{r}.torgb")
    channels = {4: int(const.shape[1])}
    for j in range(n_convs // 2):
        channels[8 * 2 ** j] = int(g[f"convs.{2 * j + 1}.conv.weight"].shape[1])
    cfg = dict(z_dim=z_dim, w_dim=w_dim, img_resolution=res, img_channels=img_c, channels=channels,
               mapping_layers=n_mlp, mapping_lr_mul=lr_mul)
    return cfg, out, resolutions


def rosinality_discriminator_state(d: dict, resolutions: list[int], source: str):
    res = resolutions[-1]
    out = {"b%d.fromrgb.weight" % res: _need(d, "convs.0.0.weight", source),
           "b%d.fromrgb.bias" % res: _need(d, "convs.0.1.bias", source)}
    d_channels = {}
    for i, r in enumerate(reversed(resolutions[1:]), start=1):
        p = f"convs.{i}"
        out[f"b{r}.conv0.weight"] = _need(d, f"{p}.conv1.0.weight", source)
        out[f"b{r}.conv0.bias"] = _need(d, f"{p}.conv1.1.bias", source)
        out[f"b{r}.conv1.weight"] = _need(d, f"{p}.conv2.1.weight", source)
        out[f"b{r}.conv1.bias"] = _need(d, f"{p}.conv2.2.bias", source)
        out[f"b{r}.skip.weight"] = _need(d, f"{p}.skip.1.weight", source)
        d_channels[r] = int(d[f"{p}.conv1.0.weight"].shape[0])
    out["b4.conv.weight"] = _need(d, "final_conv.0.weight", source)
    out["b4.conv.bias"] = _need(d, "final_conv.1.bias", source)
    out["b4.fc.weight"] = _need(d, "final_linear.0.weight", source)
    out["b4.fc.bias"] = _need(d, "final_linear.0.bias", source)
    out["b4.out.weight"] = _need(d, "final_linear.1.weight", source)
    out["b4.out.bias"] = _need(d, "final_linear.1.bias", source)
    d_channels[4] = int(out["b4.conv.weight"].shape[0])
    mbstd = int(out["b4.conv.weight"].shape[1]) - d_channels[4]
    return out, d_channels, mbstd


def load(path, ckpt, *, which: str = "g_ema", lr_mul: float = 0.01) -> StyleGANModel:
    from ..registry import load_state
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
