"""pytorch-pretrained-biggan model folders (``config.json`` + ``pytorch_model.bin``, what
``BigGAN.from_pretrained(folder)`` reads). The ``.bin`` is a plain state dict (loaded with
``weights_only=True``); the folder's ``config.json`` gives the block layout. Unlike upstream
(``load_state_dict(strict=False)``) every key must be there and match."""
from __future__ import annotations

from pathlib import Path

from ...errors import LatentAtlasError
from ...validate import load_json, number
from ..biggan import BigGANConfig, BigGANGenerator
from ..interface import BigGANModel, ModelInfo
from ..state import build_checked

FAMILY = "BigGAN (pytorch-pretrained-biggan folder)"
MAX_CONFIG_BYTES = 1_000_000
_CONFIG_KEYS = {"z_dim", "num_classes", "channel_width", "layers", "attention_layer_position", "eps", "n_stats"}
# sane ranges for the config's fields (BigGAN-deep 512 and the 1000 ImageNet classes are well inside)
_CONFIG_LIMITS = {"z_dim": (1, 4096), "num_classes": (1, 100_000), "channel_width": (1, 4096), "layers": (1, 64),
                  "attention_layer_position": (-1, 64), "eps": (1e-12, 1.0), "n_stats": (1, 1000)}


def files(path: Path) -> tuple[Path, Path] | None:
    """(config.json, pytorch_model.bin) for a model folder or its .bin, or None."""
    if path.is_dir():
        cfg, binf = path / "config.json", path / "pytorch_model.bin"
    else:
        cfg, binf = path.parent / "config.json", path
    if cfg.is_file() and binf.is_file():
        if cfg.stat().st_size > MAX_CONFIG_BYTES:
            raise LatentAtlasError(f"{cfg}: {cfg.stat().st_size:,} bytes, more than any BigGAN config.json "
                                   f"({MAX_CONFIG_BYTES:,}); its block list cannot be a BigGAN's")
        try:
            d = load_json(cfg.read_bytes(), str(cfg), "the BigGAN config")
        except LatentAtlasError:
            return None
        if isinstance(d, dict) and {"layers", "channel_width", "z_dim"} <= set(d):
            return cfg, binf
    return None


def read_config(cfg_path: Path) -> BigGANConfig:
    d = load_json(cfg_path.read_bytes(), str(cfg_path), "the BigGAN config")
    if not isinstance(d, dict):
        raise LatentAtlasError(f"{cfg_path}: the BigGAN config is a {type(d).__name__}, not an object")
    missing = _CONFIG_KEYS - set(d)
    if missing:
        raise LatentAtlasError(f"{cfg_path}: BigGAN config lacks {sorted(missing)}")
    if not isinstance(d["layers"], list):
        raise LatentAtlasError(f"{cfg_path}: BigGAN config field 'layers' is not a list of blocks")
    for key, (lo, hi) in _CONFIG_LIMITS.items():      # before anything is built from them
        value = len(d[key]) if key == "layers" else d[key]
        number(value, f"BigGAN config field {key!r}" + (" (blocks)" if key == "layers" else ""), lo, hi,
               where=str(cfg_path), integer=key != "eps")
    try:
        return BigGANConfig(**{k: d[k] for k in _CONFIG_KEYS})
    except (TypeError, ValueError) as e:
        raise LatentAtlasError(f"{cfg_path}: bad BigGAN config: {e}") from None


def build(cfg: BigGANConfig, sd: dict, source: str) -> BigGANModel:
    G = build_checked(lambda: BigGANGenerator(cfg), sd, f"{source} (BigGAN generator)")
    info = ModelInfo(name=Path(source).stem if not Path(source).is_dir() else Path(source).name, arch="biggan",
                     source=f"{source} ({FAMILY})", extra={"format": "biggan-folder", "family": "biggan"})
    return BigGANModel(info, G)


def load(path: Path, read_state) -> BigGANModel:
    found = files(path)
    if found is None:
        raise LatentAtlasError(f"{path}: not a BigGAN model folder (needs config.json and pytorch_model.bin)")
    cfg = read_config(found[0])
    sd = read_state(found[1])
    if not isinstance(sd, dict):
        raise LatentAtlasError(f"{found[1]}: not a state dict")
    return build(cfg, sd, str(path))
