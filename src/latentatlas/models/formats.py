"""Third-party checkpoint formats, loaded into our own modules without running their code.

* **NVIDIA stylegan2-ada-pytorch pickles** (``network-snapshot-*.pkl``). Their networks are
  "persistent" objects that carry their own source text and rebuild themselves by executing
  it. We read them with a restricted unpickler that resolves only an allow-list of globals
  (tensor rebuilding, ``OrderedDict``, numpy scalars/dtypes, ``EasyDict`` as a plain dict) and
  turns each persistent object into a :class:`PersistentRecord` (class name, constructor
  arguments, parameters, buffers, children) *without* importing ``torch_utils``/``dnnlib`` or
  executing the embedded source. Anything else the pickle asks for is refused, by name.
* **rosinality stylegan2-pytorch** ``.pt`` (``g_ema``/``g``/``d``/``latent_avg``, the
  interchange format of e4e, pSp, II2S and GANSpace): ``torch.load(weights_only=True)`` with
  only ``argparse.Namespace`` added to the allow-list; widths, depth of the mapping network and
  resolution are read from tensor shapes, not from a channel table.

Key mapping (the one place it is written down)
----------------------------------------------
NVIDIA -> ours: identical names (``mapping.fc{i}``, ``mapping.w_avg``,
``synthesis.b{R}.{const,conv0,conv1,torgb}.{affine.weight,affine.bias,weight,bias,noise_const,
noise_strength}``, D ``b{R}.{fromrgb,conv0,conv1,skip}``, ``b4.{conv,fc,out}``); the
``resample_filter`` buffers are dropped (we rebuild the filter from its taps).

rosinality -> ours (G):
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

import argparse
import collections
import io
import math
import pickle
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..errors import LatentAtlasError
from .interface import ModelInfo, StyleGAN2Model
from .stylegan2 import StyleGAN2Config, StyleGAN2Discriminator, StyleGAN2Generator

# ----------------------------------------------------------------------------- NVIDIA pickles


class EasyDictRecord(dict):
    """Stand-in for ``dnnlib.util.EasyDict``: a plain dict (attribute access is not needed)."""


@dataclass
class PersistentRecord:
    """What a persistent object holds, without its class: name, source (never executed),
    constructor arguments and module state."""
    class_name: str
    module_src: str = field(repr=False, default="")
    init_args: tuple = ()
    init_kwargs: dict = field(default_factory=dict)
    params: dict = field(default_factory=dict)
    buffers: dict = field(default_factory=dict)
    children: dict = field(default_factory=dict)
    attrs: dict = field(default_factory=dict, repr=False)

    def state_dict(self, prefix: str = "") -> dict:
        out = {}
        for k, v in self.params.items():
            if v is not None:
                out[prefix + k] = v
        for k, v in self.buffers.items():
            if v is not None:
                out[prefix + k] = v
        for name, child in self.children.items():
            if isinstance(child, PersistentRecord):
                out.update(child.state_dict(prefix + name + "."))
            elif child is not None:
                raise LatentAtlasError(f"module {prefix + name} is not a persistent object ({type(child).__name__})")
        return out


def _reconstruct_persistent(meta):
    if not isinstance(meta, dict) or meta.get("type") != "class":
        raise LatentAtlasError(f"unsupported persistent object (type {meta.get('type') if isinstance(meta, dict) else type(meta).__name__})")
    state = meta.get("state") or {}
    if not isinstance(state, dict):
        raise LatentAtlasError(f"persistent object {meta.get('class_name')}: unexpected state type")
    attrs = {k: v for k, v in state.items() if not k.startswith("_")}
    return PersistentRecord(class_name=str(meta.get("class_name")), module_src=str(meta.get("module_src", "")),
                            init_args=tuple(state.get("_init_args", ())),
                            init_kwargs=dict(state.get("_init_kwargs", {})),
                            params=dict(state.get("_parameters", {})), buffers=dict(state.get("_buffers", {})),
                            children=dict(state.get("_modules", {})), attrs=attrs)


def _load_storage_bytes(b: bytes):
    # The upstream helper calls torch.load on these bytes with full unpickling; the bytes are a
    # legacy torch.save of one storage, which the weights-only loader reads safely.
    return torch.load(io.BytesIO(b), map_location="cpu", weights_only=True)


def _numpy_scalar(dtype, data=None):
    if not isinstance(dtype, np.dtype) or dtype.kind not in "biuf" or not isinstance(data, bytes):
        raise LatentAtlasError("pickle asks for a numpy scalar of a non-numeric type")
    return np.frombuffer(data, dtype=dtype, count=1)[0]


def _numpy_dtype(name, align=False, copy=False):
    if not isinstance(name, str):
        raise LatentAtlasError("pickle asks for a numpy dtype that is not named by a string")
    dt = np.dtype(name)
    if dt.kind not in "biufc":
        raise LatentAtlasError(f"pickle asks for numpy dtype {name!r}, which is not numeric")
    return dt


_ALLOWED = {
    ("torch_utils.persistence", "_reconstruct_persistent_obj"): _reconstruct_persistent,
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_parameter"): torch._utils._rebuild_parameter,
    ("torch._utils", "_rebuild_tensor_v2"): torch._utils._rebuild_tensor_v2,
    ("torch.storage", "_load_from_bytes"): _load_storage_bytes,
    ("numpy._core.multiarray", "scalar"): _numpy_scalar,
    ("numpy.core.multiarray", "scalar"): _numpy_scalar,
    ("numpy", "dtype"): _numpy_dtype,
    ("dnnlib.util", "EasyDict"): EasyDictRecord,
    ("dnnlib", "EasyDict"): EasyDictRecord,
}


class RestrictedUnpickler(pickle.Unpickler):
    """Resolves only the allow-listed globals above; every other global is refused by name."""

    def __init__(self, fh, source: str):
        super().__init__(fh)
        self.source = source

    def find_class(self, module, name):
        fn = _ALLOWED.get((module, name))
        if fn is None:
            raise LatentAtlasError(f"{self.source}: refused: the pickle asks for the disallowed global "
                                   f"{module}.{name}")
        return fn

    def persistent_load(self, pid):
        raise LatentAtlasError(f"{self.source}: refused: unexpected persistent id in a network pickle")


def read_nvidia_pickle(path_or_bytes, source: str | None = None, *, allow_int: bool = False) -> dict:
    """The snapshot dict of an NVIDIA network pickle with networks as PersistentRecords."""
    data = path_or_bytes if isinstance(path_or_bytes, bytes) else Path(path_or_bytes).read_bytes()
    source = source or (str(path_or_bytes) if not isinstance(path_or_bytes, bytes) else "<bytes>")
    try:
        obj = RestrictedUnpickler(io.BytesIO(data), source).load()
    except LatentAtlasError:
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError) as e:
        raise LatentAtlasError(f"{source}: truncated or corrupt pickle ({type(e).__name__}: {e})") from None
    if allow_int and isinstance(obj, int):
        return obj
    if not isinstance(obj, dict):
        raise LatentAtlasError(f"{source}: not a network snapshot (top level is {type(obj).__name__})")
    return obj


def _kw(rec: PersistentRecord, name: str, default=None):
    v = rec.init_kwargs.get(name, default)
    return v


def _nvidia_config(G: PersistentRecord, D: PersistentRecord | None, source: str) -> StyleGAN2Config:
    if not G.class_name.endswith("Generator"):
        raise LatentAtlasError(f"{source}: G_ema is a {G.class_name}, not a StyleGAN2 Generator")
    missing = [k for k in ("z_dim", "w_dim", "img_resolution", "img_channels") if G.init_kwargs.get(k) is None]
    if missing:
        raise LatentAtlasError(f"{source}: generator constructor arguments missing: {missing}")
    if int(_kw(G, "c_dim", 0) or 0) != 0:
        raise LatentAtlasError(f"{source}: conditional generators (c_dim={_kw(G, 'c_dim')}) are not supported")
    mk = dict(_kw(G, "mapping_kwargs", {}) or {})
    sk = dict(_kw(G, "synthesis_kwargs", {}) or {})
    if sk.get("architecture", "skip") != "skip":
        raise LatentAtlasError(f"{source}: synthesis architecture {sk.get('architecture')!r} is not supported (only 'skip')")
    sd = G.state_dict()
    res = int(_kw(G, "img_resolution"))
    resolutions = [2 ** i for i in range(2, int(math.log2(res)) + 1)]
    channels = {r: int(sd[f"synthesis.b{r}.conv1.weight"].shape[0]) for r in resolutions}
    d_channels, mbstd_group, mbstd_ch = None, 4, 1
    if D is not None:
        if D.init_kwargs.get("architecture", "resnet") != "resnet":
            raise LatentAtlasError(f"{source}: discriminator architecture {D.init_kwargs.get('architecture')!r} is not supported (only 'resnet')")
        dsd = D.state_dict()
        d_channels = {r: int(dsd[f"b{r}.conv0.weight"].shape[0]) for r in resolutions if r > 4}
        d_channels[4] = int(dsd["b4.conv.weight"].shape[0])
        ek = dict(D.init_kwargs.get("epilogue_kwargs", {}) or {})
        mbstd_group = int(ek.get("mbstd_group_size", 4) or 0)
        mbstd_ch = int(ek.get("mbstd_num_channels", 1))
    clamp = sk.get("conv_clamp")
    return StyleGAN2Config(
        z_dim=int(_kw(G, "z_dim")), w_dim=int(_kw(G, "w_dim")), img_resolution=res,
        img_channels=int(_kw(G, "img_channels")), channels=channels, d_channels=d_channels,
        mapping_layers=int(mk.get("num_layers", 8)), mapping_lr_mul=float(mk.get("lr_multiplier", 0.01)),
        w_avg_beta=float(mk.get("w_avg_beta", 0.995) or 0.995),
        conv_clamp=float(clamp) if clamp is not None else None, mbstd_group=mbstd_group,
        mbstd_channels=mbstd_ch, fir=tuple(sk.get("resample_filter", (1, 3, 3, 1))))


def _strip_filters(sd: dict) -> dict:
    return {k: v for k, v in sd.items() if not k.endswith("resample_filter")}


def load_nvidia_pickle(path, *, which: str = "G_ema", snap: dict | None = None) -> StyleGAN2Model:
    from .registry import load_state
    snap = snap if snap is not None else read_nvidia_pickle(path)
    if which not in snap:
        raise LatentAtlasError(f"{path}: snapshot has no {which!r} (keys: {sorted(snap)})")
    Grec = snap[which]
    Drec = snap.get("D")
    if not isinstance(Grec, PersistentRecord):
        raise LatentAtlasError(f"{path}: {which} is not a network")
    cfg = _nvidia_config(Grec, Drec if isinstance(Drec, PersistentRecord) else None, str(path))
    G = StyleGAN2Generator(cfg)
    load_state(G, _strip_filters(Grec.state_dict()), f"{path} ({which})")
    D = None
    if isinstance(Drec, PersistentRecord):
        D = StyleGAN2Discriminator(cfg)
        load_state(D, _strip_filters(Drec.state_dict()), f"{path} (D)")
    info = ModelInfo(name=Path(path).stem, arch="stylegan2", source=f"{path} (NVIDIA stylegan2-ada pickle, {which})",
                     extra={"format": "nvidia-pkl"})
    return StyleGAN2Model(info, G, D)


def inspect_nvidia_pickle(path) -> dict:
    snap = read_nvidia_pickle(path)
    out = {"file": str(path), "format": "NVIDIA stylegan2-ada-pytorch network pickle", "keys": list(snap)}
    for k, v in snap.items():
        if isinstance(v, PersistentRecord):
            n = sum(t.numel() for t in v.state_dict().values() if t.is_floating_point())
            kw = {a: b for a, b in v.init_kwargs.items() if not isinstance(b, dict)}
            out[k] = f"{v.class_name} ({n:,} values) {kw}"
        elif v is None:
            out[k] = "None"
        else:
            out[k] = type(v).__name__
    return out


# ----------------------------------------------------------------------------- rosinality


def _torch_load_rosinality(path):
    with torch.serialization.safe_globals([argparse.Namespace]):
        return torch.load(path, map_location="cpu", weights_only=True)


def is_rosinality(ckpt) -> bool:
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


def load_rosinality(path, ckpt=None, *, which: str = "g_ema", lr_mul: float = 0.01) -> StyleGAN2Model:
    from .registry import load_state
    source = str(path)
    ckpt = ckpt if ckpt is not None else _torch_load_rosinality(path)
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
                     extra={"format": "rosinality-pt", "w_avg": note})
    return StyleGAN2Model(info, G, D)


# ----------------------------------------------------------------------------- any module


def wrap_generator(module: torch.nn.Module, *, z_dim: int, output_range=(-1.0, 1.0), name: str = "user-generator",
                   discriminator: torch.nn.Module | None = None):
    """Wrap a user's ``nn.Module`` mapping z [N, z_dim] to images so every Z-space method works
    with it. Resolution and channels are read off one forward pass; ``output_range`` is the
    range of its outputs (rescaled to [-1, 1])."""
    from .interface import ZOnlyModel
    with torch.no_grad():
        out = module.eval()(torch.zeros(2, z_dim))
    if out.ndim != 4 or out.shape[-1] != out.shape[-2]:
        raise LatentAtlasError(f"{name}: generator output must be square images [N, C, H, W], got {list(out.shape)}")
    info = ModelInfo(name=name, arch=type(module).__name__, source="user module")
    return ZOnlyModel(info, z_dim=z_dim, img_resolution=int(out.shape[-1]), img_channels=int(out.shape[1]),
                      generator=module, discriminator=discriminator, output_range=tuple(output_range))
