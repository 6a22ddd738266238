"""Bundled models by name, and loading of model files.

Our own file format (``.pt``) is a plain dict loadable with ``torch.load(weights_only=True)``:
``{"format": "latentatlas", "version": 1, "arch": "stylegan2" | "dcgan", "config": {...},
"G": state_dict, "D": state_dict | None, "meta": {...}}``. Nothing in it can execute code.
"""
from __future__ import annotations

import importlib.resources
import io
import json
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from ..errors import LatentAtlasError
from ..imageio import atomic_path
from .dcgan import DCGANConfig, DCGANCritic, DCGANGenerator
from .interface import GANModel, ModelInfo, StyleGAN2Model, ZOnlyModel
from .stylegan2 import StyleGAN2Config, StyleGAN2Discriminator, StyleGAN2Generator

FORMAT = "latentatlas"
WEIGHTS_PACKAGE = "latentatlas.weights"


@dataclass(frozen=True)
class BundledModel:
    name: str
    description: str
    source: str
    loader: Callable[[], GANModel]
    resolution: int
    spaces: tuple
    discriminator: str   # "yes (minibatch-std)", "no", ...


_REGISTRY: dict[str, BundledModel] = {}


def register(entry: BundledModel):
    if entry.name in _REGISTRY:
        raise ValueError(f"model {entry.name!r} is already registered")
    _REGISTRY[entry.name] = entry


def bundled_models() -> list[BundledModel]:
    return list(_REGISTRY.values())


# -- our own format ---------------------------------------------------------------------------

def build_model(ckpt: dict, info: ModelInfo) -> GANModel:
    arch = ckpt.get("arch")
    cfgd = ckpt.get("config", {})
    try:
        if arch == "stylegan2":
            cfg = StyleGAN2Config.from_dict(cfgd)
            G, D = StyleGAN2Generator(cfg), (StyleGAN2Discriminator(cfg) if ckpt.get("D") is not None else None)
        elif arch == "dcgan":
            cfg = DCGANConfig.from_dict(cfgd)
            G, D = DCGANGenerator(cfg), (DCGANCritic(cfg) if ckpt.get("D") is not None else None)
        else:
            raise LatentAtlasError(f"{info.source}: unknown architecture {arch!r}")
    except (TypeError, ValueError) as e:
        raise LatentAtlasError(f"{info.source}: bad {arch} config: {e}") from None
    load_state(G, ckpt["G"], f"{info.source} (generator)")
    if D is not None:
        load_state(D, ckpt["D"], f"{info.source} (discriminator)")
    if arch == "stylegan2":
        return StyleGAN2Model(info, G, D)
    return ZOnlyModel(info, z_dim=cfg.z_dim, img_resolution=cfg.img_resolution,
                      img_channels=cfg.img_channels, generator=G, discriminator=D)


def load_state(module: torch.nn.Module, sd: dict, what: str):
    """Strict state-dict load with an error that names missing/unexpected keys and shape
    mismatches (both shapes)."""
    own = module.state_dict()
    missing = [k for k in own if k not in sd]
    unexpected = [k for k in sd if k not in own]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing keys {missing[:5]}{' ...' if len(missing) > 5 else ''}")
        if unexpected:
            parts.append(f"unexpected keys {unexpected[:5]}{' ...' if len(unexpected) > 5 else ''}")
        raise LatentAtlasError(f"{what}: wrong architecture: {'; '.join(parts)}")
    for k, v in own.items():
        if tuple(sd[k].shape) != tuple(v.shape):
            raise LatentAtlasError(f"{what}: shape mismatch for {k}: file has {list(sd[k].shape)}, "
                                   f"model expects {list(v.shape)}")
    module.load_state_dict(sd)


def save_model(path, *, arch: str, config: dict, G: torch.nn.Module, D: torch.nn.Module | None,
               meta: dict | None = None):
    """Write our format atomically."""
    ckpt = {"format": FORMAT, "version": 1, "arch": arch, "config": config,
            "G": {k: v.detach().cpu().clone() for k, v in G.state_dict().items()},
            "D": {k: v.detach().cpu().clone() for k, v in D.state_dict().items()} if D is not None else None,
            "meta": json.loads(json.dumps(meta or {}))}
    with atomic_path(path) as tmp:
        torch.save(ckpt, tmp)
    return Path(path)


def export_model(model: GANModel, path) -> Path:
    """Write any loaded model in our format (the ``convert`` command)."""
    if Path(path).suffix != ".pt":
        raise LatentAtlasError(f"output {path}: use a .pt file name")
    arch = "stylegan2" if model.has_mapping else "dcgan"
    cfg = getattr(model.G, "cfg", None)
    if cfg is None:
        raise LatentAtlasError(f"model '{model.name}' is a user module without a config; it cannot be exported")
    meta = {"converted_from": model.info.source, **{k: v for k, v in (model.info.extra or {}).items()}}
    return save_model(path, arch=arch, config=cfg.to_dict(), G=model.G, D=model.D, meta=meta)


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise LatentAtlasError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise LatentAtlasError(f"{path}: is a directory, not a checkpoint file") from None
    except OSError as e:
        raise LatentAtlasError(f"{path}: cannot read: {e.strerror}") from None


def _safe_torch_load(data: bytes, path: Path):
    import argparse
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises several types for refused globals / corrupt data
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise LatentAtlasError(f"{path}: could not be loaded safely: {msg}") from None


def _dispatch_dict(ckpt, path: Path) -> GANModel:
    from .formats import is_rosinality, load_rosinality
    if isinstance(ckpt, dict) and ckpt.get("format") == FORMAT:
        return build_model(ckpt, ModelInfo(name=path.stem, arch=ckpt["arch"], source=str(path),
                                           extra=ckpt.get("meta", {})))
    if is_rosinality(ckpt):
        return load_rosinality(path, ckpt)
    keys = sorted(map(str, ckpt))[:8] if isinstance(ckpt, dict) else type(ckpt).__name__
    raise LatentAtlasError(f"{path}: unknown checkpoint format (top-level keys: {keys})")


def load_checkpoint_file(path) -> GANModel:
    """Load a model file, detecting the format from its content (not its extension): our own
    format, rosinality ``.pt`` (torch zip) or an NVIDIA network pickle (restricted unpickler)."""
    from .formats import load_nvidia_pickle
    path = Path(path)
    data = _read_bytes(path)
    if len(data) == 0:
        raise LatentAtlasError(f"{path}: empty file")
    if data[:2] == b"PK":  # torch zip serialisation
        try:
            zipfile.ZipFile(io.BytesIO(data)).testzip()
        except zipfile.BadZipFile:
            raise LatentAtlasError(f"{path}: truncated or corrupt checkpoint (bad zip archive)") from None
        return _dispatch_dict(_safe_torch_load(data, path), path)
    if data[:1] == b"\x80":  # a pickle: NVIDIA snapshot, or a legacy (non-zip) torch.save
        from .formats import read_nvidia_pickle
        snap = read_nvidia_pickle(data, str(path), allow_int=True)
        if isinstance(snap, int):   # legacy torch.save starts with its magic number
            return _dispatch_dict(_safe_torch_load(data, path), path)
        return load_nvidia_pickle(path, snap=snap)
    raise LatentAtlasError(f"{path}: unknown format (not a torch checkpoint or network pickle)")


# -- bundled models ---------------------------------------------------------------------------

def _weights_file(name: str) -> Path:
    res = importlib.resources.files(WEIGHTS_PACKAGE).joinpath(f"{name}.pt")
    if not res.is_file():
        raise LatentAtlasError(f"bundled model '{name}' has no weights in this installation "
                               f"(expected {res}); train it with 'latentatlas train'")
    return Path(str(res))


def _load_own(name: str) -> Callable[[], GANModel]:
    def load():
        m = load_checkpoint_file(_weights_file(name))
        m.info = ModelInfo(name=name, arch=m.info.arch, source=f"bundled: latentatlas/weights/{name}.pt",
                           extra=m.info.extra)
        return m
    return load


FACES_CFG = DCGANConfig(z_dim=100, channels=(512, 256, 128, 64), img_channels=3, mbstd_group=0)


def _load_faces() -> GANModel:
    try:
        res = importlib.resources.files("gan_face_generate").joinpath("weights.tar")
    except ModuleNotFoundError:
        raise LatentAtlasError("model 'faces-dcgan' needs the package gan-face-generate: "
                               "pip install --no-deps gan-face-generate") from None
    if not res.is_file():
        raise LatentAtlasError(f"gan-face-generate is installed but has no weights.tar at {res}")
    ckpt = torch.load(str(res), map_location="cpu", weights_only=True)
    if "netG_state_dict" not in ckpt:
        raise LatentAtlasError(f"{res}: no 'netG_state_dict' key")
    G = DCGANGenerator(FACES_CFG)
    load_state(G, ckpt["netG_state_dict"], str(res))
    info = ModelInfo(name="faces-dcgan", arch="dcgan", source="PyPI gan-face-generate (MIT): gan_face_generate/weights.tar",
                     description="64x64 face DCGAN, z in R^100 ~ N(0, I); no discriminator")
    return ZOnlyModel(info, z_dim=100, img_resolution=64, img_channels=3, generator=G)


register(BundledModel("fashion-stylegan2", "StyleGAN2 trained by latentatlas on Fashion-MNIST 32x32",
                      "bundled: latentatlas/weights/fashion-stylegan2.pt", _load_own("fashion-stylegan2"),
                      32, ("z", "w", "w+", "p", "p-norm", "p-norm+"), "yes (residual, minibatch-std)"))
register(BundledModel("fashion-wgangp", "DCGAN generator + WGAN-GP critic trained by latentatlas on Fashion-MNIST 32x32",
                      "bundled: latentatlas/weights/fashion-wgangp.pt", _load_own("fashion-wgangp"),
                      32, ("z",), "yes (WGAN-GP critic, minibatch-std)"))
register(BundledModel("faces-dcgan", "pretrained 64x64 face DCGAN (z in R^100)",
                      "PyPI gan-face-generate (MIT), weights.tar", _load_faces,
                      64, ("z",), "no"))


def load_generator(name_or_path: str, device: str | torch.device = "cpu") -> GANModel:
    """A bundled model by name, or a model file by path."""
    if name_or_path in _REGISTRY:
        model = _REGISTRY[name_or_path].loader()
    elif Path(name_or_path).exists() or "/" in name_or_path or name_or_path.endswith((".pt", ".pkl", ".pth")):
        model = load_checkpoint_file(name_or_path)
    else:
        raise LatentAtlasError(f"unknown model {name_or_path!r}: not a bundled name "
                               f"({', '.join(_REGISTRY)}) nor an existing file")
    return model.to(resolve_device(device))


def resolve_device(device) -> torch.device:
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise LatentAtlasError("device 'cuda' requested but no CUDA device is available")
    return dev
