"""Bundled models by name, and loading of model files of every supported family.

Loading a file is detect -> read tensors + config -> build: the *readers* (``readers/``, one
module per file format) detect their format from the content and return tensors and
configuration; the *architectures* (one module per family, ``_ARCHS`` below) build the
networks; the adapters in ``interface.py`` give every family the one generator interface.
The next family is one architecture module, one reader and a line in each table here.
Nothing executes code from a file.
"""
from __future__ import annotations

import importlib.resources
import io
import json
import logging
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from ..errors import LatentAtlasError
from ..imageio import atomic_path
from ..validate import check_fields
from .biggan import BigGANConfig, BigGANGenerator
from .dcgan import DCGANConfig, DCGANCritic, DCGANGenerator
from .interface import BigGANModel, GANModel, ModelInfo, StyleGANModel, ZOnlyModel
from .pgan import PGANConfig, PGANDiscriminator, PGANGenerator
from .readers import biggan as biggan_reader
from .readers import native, nvidia, rosinality, tf_pickle
from .readers import pgan as pgan_reader
from .readers import r3gan as r3gan_reader
from .readers import rosinality_v1
from .readers.rosinality import to_rosinality
from .state import build_checked, load_state
from .stylegan2 import StyleGAN2Config, StyleGAN2Discriminator, StyleGAN2Generator
from .r3gan import R3GANConfig, R3GANDiscriminator, R3GANGenerator
from .stylegan1 import StyleGAN1Config, StyleGAN1Discriminator, StyleGAN1Generator
from .stylegan3 import StyleGAN3Config, StyleGAN3Generator

FORMAT = native.FORMAT
MAX_FILE_BYTES = 8 * 2 ** 30        # refuse larger checkpoints before reading them
WEIGHTS_PACKAGE = "latentatlas.weights"


log = logging.getLogger("latentatlas")


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


# -- architectures ----------------------------------------------------------------------------

def _d_sg3(cfg):
    return StyleGAN2Discriminator(StyleGAN2Config.from_dict(cfg.d_config)) if cfg.d_config else None


def _d_r3gan(cfg):
    return R3GANDiscriminator(cfg) if cfg.d_widths else None


def _d_sg1(cfg):
    return StyleGAN1Discriminator(cfg) if cfg.d_channels else None


# family -> (config class, generator, discriminator builder, adapter)
_ARCHS = {
    "stylegan2": (StyleGAN2Config, StyleGAN2Generator, StyleGAN2Discriminator,
                  lambda info, G, D, cfg: StyleGANModel(info, G, D)),
    "stylegan3": (StyleGAN3Config, StyleGAN3Generator, _d_sg3, lambda info, G, D, cfg: StyleGANModel(info, G, D)),
    "r3gan": (R3GANConfig, R3GANGenerator, _d_r3gan,
              lambda info, G, D, cfg: ZOnlyModel(info, z_dim=cfg.z_dim, img_resolution=cfg.img_resolution,
                                                 img_channels=cfg.img_channels, generator=G, discriminator=D)),
    "stylegan1": (StyleGAN1Config, StyleGAN1Generator, _d_sg1, lambda info, G, D, cfg: StyleGANModel(info, G, D)),
    "dcgan": (DCGANConfig, DCGANGenerator, DCGANCritic,
              lambda info, G, D, cfg: ZOnlyModel(info, z_dim=cfg.z_dim, img_resolution=cfg.img_resolution,
                                                 img_channels=cfg.img_channels, generator=G, discriminator=D)),
    "pgan": (PGANConfig, PGANGenerator, PGANDiscriminator,
             lambda info, G, D, cfg: ZOnlyModel(info, z_dim=cfg.latent_dim, img_resolution=cfg.img_resolution,
                                                img_channels=cfg.img_channels, generator=G, discriminator=D)),
    "biggan": (BigGANConfig, BigGANGenerator, None, lambda info, G, D, cfg: BigGANModel(info, G)),
}


def family_of(model: GANModel) -> str:
    """The architecture family of a loaded model (a key of ``_ARCHS``)."""
    for fam, (cfg_cls, g_cls, *_rest) in _ARCHS.items():
        if isinstance(model.G, g_cls):
            return fam
    return "user-module"


def build_model(ckpt: dict, info: ModelInfo) -> GANModel:
    """Our own format (``.pt`` or ``.safetensors``) -> model."""
    arch = ckpt.get("arch")
    if arch not in _ARCHS:
        raise LatentAtlasError(f"{info.source}: unknown architecture {arch!r} (known: {', '.join(_ARCHS)})")
    cfg_cls, g_cls, d_cls, adapt = _ARCHS[arch]
    if not isinstance(ckpt.get("G"), dict) or not isinstance(ckpt.get("config", {}), dict):
        raise LatentAtlasError(f"{info.source}: malformed latentatlas checkpoint (G or config missing)")
    try:
        d = check_fields(cfg_cls, ckpt.get("config", {}), f"{info.source} ({arch} config)",
                         getattr(cfg_cls, "LIMITS", None))
        cfg = cfg_cls.from_dict(d)
    except (TypeError, ValueError) as e:
        raise LatentAtlasError(f"{info.source}: bad {arch} config: {e}") from None
    except LatentAtlasError as e:
        msg = str(e)
        raise LatentAtlasError(msg if msg.startswith(str(info.source)) else f"{info.source}: bad {arch} config: {msg}") from None
    # each network probed on the meta device first: an absurd config is refused before it is built
    G = build_checked(lambda: g_cls(cfg), ckpt["G"], f"{info.source} (generator)")
    D = None
    if d_cls is not None and ckpt.get("D") is not None:
        if not isinstance(ckpt["D"], dict):
            raise LatentAtlasError(f"{info.source}: malformed latentatlas checkpoint (D is not a state dict)")
        D = build_checked(lambda: d_cls(cfg), ckpt["D"], f"{info.source} (discriminator)")
    return adapt(info, G, D, cfg)


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


EXPORT_LAYOUTS = ("latentatlas", "safetensors", "rosinality")


def export_model(model: GANModel, path, to: str | None = None) -> tuple[Path, list[str]]:
    """Write any loaded model (the ``convert`` command) as ``to``: 'latentatlas' (``.pt``, torch
    ``weights_only`` loadable), 'safetensors' (no pickle at all) or 'rosinality' (a stylegan2-pytorch
    ``.pt``; StyleGAN2 only). Default from the suffix. Returns the path and warnings for the user."""
    path = Path(path)
    to = to or ("safetensors" if path.suffix == ".safetensors" else "latentatlas")
    if to not in EXPORT_LAYOUTS:
        raise LatentAtlasError(f"unknown output layout {to!r}; choose from {', '.join(EXPORT_LAYOUTS)}")
    want = ".safetensors" if to == "safetensors" else ".pt"
    if path.suffix != want:
        raise LatentAtlasError(f"output {path}: a {to} file is written as {want}")
    if to == "rosinality":
        ck, warnings = to_rosinality(model)
        with atomic_path(path) as tmp:
            torch.save(ck, tmp)
        return path, warnings
    arch = family_of(model)
    cfg = getattr(model.G, "cfg", None)
    if arch == "user-module" or cfg is None:
        raise LatentAtlasError(f"model '{model.name}' is a user module without a config; it cannot be exported")
    meta = {"converted_from": model.info.source, "family": arch,
            **{k: v for k, v in (model.info.extra or {}).items() if k not in ("warnings",)}}
    if to == "latentatlas":
        return save_model(path, arch=arch, config=cfg.to_dict(), G=model.G, D=model.D, meta=meta), []
    with atomic_path(path) as tmp:
        native.write_safetensors(tmp, arch=arch, config=cfg.to_dict(), G=model.G.state_dict(),
                                 D=model.D.state_dict() if model.D is not None else None,
                                 meta=json.loads(json.dumps(meta, default=str)), weights_hash=model.weights_hash())
    return path, []


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
    import re
    if tuple(int(v) for v in re.findall(r"\d+", torch.__version__)[:2]) < (2, 6):
        raise LatentAtlasError(f"{path}: loading torch checkpoints safely (weights_only with an allow-list) "
                               f"needs torch >= 2.6; this is torch {torch.__version__}")
    try:
        with torch.serialization.safe_globals([argparse.Namespace, *pgan_reader.SAFE_GLOBALS]):
            if data is None:            # a zip archive on disk: mapped, not read
                return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
            return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises several types for refused globals / corrupt data
        text = re.sub(r"\x1b\[[0-9;]*m", "", str(e))
        m = re.search(r"Unsupported global: GLOBAL ([\w.]+)", text)
        if m:
            raise LatentAtlasError(f"{path}: refused: the checkpoint asks for the global {m.group(1)}, "
                                   f"which latentatlas never loads") from None
        first = text.strip().splitlines()[0] if text.strip() else type(e).__name__
        raise LatentAtlasError(f"{path}: truncated or corrupt checkpoint ({first[:200]})") from None


def _dispatch_dict(ckpt, path: Path) -> GANModel:
    if native.detect(ckpt):
        return build_model(ckpt, ModelInfo(name=path.stem, arch=ckpt.get("arch"), source=str(path),
                                           extra=ckpt.get("meta", {}) or {}))
    if rosinality.detect(ckpt):
        return rosinality.load(path, ckpt)
    if rosinality_v1.detect(ckpt):
        return rosinality_v1.load(path, ckpt)
    if pgan_reader.detect(ckpt):
        return pgan_reader.build(ckpt, str(path))
    if isinstance(ckpt, dict) and "generator.gen_z.weight_orig" in ckpt:
        if biggan_reader.files(path) is None:
            raise LatentAtlasError(f"{path}: a BigGAN state dict; its config.json must lie beside it")
        return biggan_reader.build(biggan_reader.read_config(biggan_reader.files(path)[0]), ckpt, str(path))
    keys = sorted(map(str, ckpt))[:8] if isinstance(ckpt, dict) else type(ckpt).__name__
    raise LatentAtlasError(f"{path}: unknown checkpoint format (top-level keys: {keys})")


def _read_checked(path: Path, head: int | None = None) -> bytes:
    """The file's bytes (its first ``head`` bytes when given) after the size checks."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise LatentAtlasError(f"{path}: no such file") from None
    except OSError as e:
        raise LatentAtlasError(f"{path}: cannot read: {e.strerror}") from None
    if size > MAX_FILE_BYTES:
        raise LatentAtlasError(f"{path}: {size / 2 ** 30:.1f} GiB is larger than any supported checkpoint "
                               f"({MAX_FILE_BYTES // 2 ** 30} GiB limit)")
    if size == 0:
        raise LatentAtlasError(f"{path}: empty file")
    if head is not None:
        try:
            with open(path, "rb") as fh:
                return fh.read(head)
        except IsADirectoryError:
            raise LatentAtlasError(f"{path}: is a directory, not a checkpoint file") from None
        except OSError as e:
            raise LatentAtlasError(f"{path}: cannot read: {e.strerror}") from None
    data = _read_bytes(path)
    if len(data) == 0:
        raise LatentAtlasError(f"{path}: empty file")
    return data


def _torch_zip_file(path: Path):
    """A torch zip checkpoint read from its path, memory-mapped: the archive checked (every member's
    CRC) and its tensors' storages mapped from the file, not copied — one copy of the weights
    (the file's pages), which ``build_checked`` then assigns as the module's parameters."""
    try:
        with zipfile.ZipFile(path) as z:
            if z.testzip() is not None:
                raise zipfile.BadZipFile
    except (zipfile.BadZipFile, EOFError, ValueError):
        raise LatentAtlasError(f"{path}: truncated or corrupt checkpoint (bad zip archive)") from None
    except OSError as e:
        raise LatentAtlasError(f"{path}: cannot read: {e.strerror}") from None
    return _safe_torch_load(None, path)


def _torch_bytes(data: bytes, path: Path):
    if data[:2] == b"PK":
        try:
            zipfile.ZipFile(io.BytesIO(data)).testzip()
        except (zipfile.BadZipFile, EOFError, ValueError):
            raise LatentAtlasError(f"{path}: truncated or corrupt checkpoint (bad zip archive)") from None
    return _safe_torch_load(data, path)


HASH_OVERRIDE = "LATENTATLAS_ALLOW_HASH_MISMATCH"


def _verify_hash(model: GANModel, recorded: str | None, path) -> GANModel:
    """A file that records its weights hash must hold those weights: a mismatch (tensors edited
    after export, or a damaged file whose values stayed finite) is refused, unless
    ``$LATENTATLAS_ALLOW_HASH_MISMATCH=1`` says to load it anyway (with a warning)."""
    if not recorded or recorded == model.weights_hash():
        return model
    what = (f"{path}: its tensors hash to {model.weights_hash()}, but the file records {recorded} "
            f"(the weights changed after it was written)")
    if os.environ.get(HASH_OVERRIDE) == "1":
        log.warning("%s; loading it anyway (%s=1)", what, HASH_OVERRIDE)
        return model
    raise LatentAtlasError(f"{what}; set {HASH_OVERRIDE}=1 to load it anyway")


def _network_pickle(path, obj) -> GANModel:
    """A network pickle's networks, by what the pickle holds."""
    if tf_pickle.detect(obj):  # TensorFlow-era (G, D, Gs)
        return tf_pickle.load(path, obj)
    if r3gan_reader.detect(obj):  # R3GAN: plain nn.Module pickles, read as records
        return r3gan_reader.load(path, obj)
    if not isinstance(obj, dict):
        raise LatentAtlasError(f"{path}: not a network snapshot (top level is {type(obj).__name__})")
    return nvidia.load(path, snap=obj)


def read_pickle(data, source: str):
    """A network pickle's top-level object (from its bytes, or streamed from its path) through the
    restricted unpickler, with every reader's allowed globals (NVIDIA persistent objects, TF-era
    Network records, R3GAN module records)."""
    return nvidia.read_network_pickle(data, source, extra={**tf_pickle.ALLOWED, **r3gan_reader.ALLOWED})


def load_checkpoint_file(path) -> GANModel:
    """Load a model file or folder, detecting the format from its content (not its
    extension): our own ``.safetensors``/``.pt``, rosinality ``.pt``, pytorch_GAN_zoo PGAN
    ``.pth``, a pytorch-pretrained-biggan folder (or its ``.bin``), or an NVIDIA network
    pickle (StyleGAN2-ADA / StyleGAN3; restricted unpickler)."""
    path = Path(path)
    if path.is_dir():
        if biggan_reader.files(path) is not None:
            return biggan_reader.load(path, lambda p: _torch_bytes(_read_checked(p), p))
        raise LatentAtlasError(f"{path}: is a directory, not a checkpoint file nor a BigGAN model folder "
                               f"(config.json + pytorch_model.bin)")
    head = _read_checked(path, head=16)
    if head[:2] == b"PK":     # torch zip serialisation: memory-mapped
        return _dispatch_dict(_torch_zip_file(path), path)
    # a pickle (protocol 2-5), streamed from the file: NVIDIA / TF-era / R3GAN networks (a safetensors
    # header length can start with the same byte: its 9th byte is '{')
    if len(head) > 2 and head[:1] == b"\x80" and 2 <= head[1] <= 5 and head[8:9] != b"{":
        obj = read_pickle(path, str(path))
        if isinstance(obj, int):   # legacy torch.save starts with its magic number
            return _dispatch_dict(_safe_torch_load(_read_checked(path), path), path)
        return _network_pickle(path, obj)
    data = _read_checked(path)
    if native.is_safetensors(data):
        ckpt = native.read_safetensors(data, str(path))
        model = build_model(ckpt, ModelInfo(name=path.stem, arch=ckpt["arch"], source=str(path), extra=ckpt["meta"]))
        return _verify_hash(model, ckpt.get("weights_hash"), path)
    if data[:2] == b"PK":  # torch zip serialisation
        return _dispatch_dict(_torch_bytes(data, path), path)
    if data[:1] == b"\x80":  # a pickle that grew between the two reads
        obj = read_pickle(data, str(path))
        if isinstance(obj, int):
            return _dispatch_dict(_safe_torch_load(data, path), path)
        return _network_pickle(path, obj)
    raise LatentAtlasError(f"{path}: unknown format (not a torch checkpoint, safetensors file or network pickle)")


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
    elif Path(name_or_path).exists() or "/" in name_or_path or \
            name_or_path.endswith((".pt", ".pkl", ".pth", ".safetensors", ".bin")):
        model = load_checkpoint_file(name_or_path)
    else:
        raise LatentAtlasError(f"unknown model {name_or_path!r}: not a bundled name "
                               f"({', '.join(_REGISTRY)}) nor an existing file")
    return model.to(resolve_device(device))


def resolve_device(device) -> torch.device:
    """'auto' = CUDA, then MPS, then CPU; an explicit device must exist."""
    if str(device) == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        return torch.device("mps" if mps is not None and mps.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise LatentAtlasError(f"unknown device {device!r} (auto, cpu, cuda, cuda:N or mps)") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise LatentAtlasError("device 'cuda' requested but no CUDA device is available")
    return dev
