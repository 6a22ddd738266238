"""Fashion-MNIST from the standard idx files (Debian package ``dataset-fashion-mnist``).

Images are padded from 28x28 to 32x32 with background (-1) and scaled to [-1, 1]; labels kept.
"""
from __future__ import annotations

import gzip
import os
import struct
from pathlib import Path

import numpy as np
import torch

from ..errors import LatentAtlasError

DEFAULT_DIR = "/usr/share/datasets/fashion-mnist"
ENV_VAR = "LATENTATLAS_FASHION_MNIST"
CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
           "Sneaker", "Bag", "Ankle boot")
_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
          "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}


def fashion_dir(path: str | os.PathLike | None = None) -> Path:
    """Where the idx files are: ``path``, else $LATENTATLAS_FASHION_MNIST, else the Debian path."""
    return Path(path or os.environ.get(ENV_VAR) or DEFAULT_DIR)


def _open_idx(base: Path, name: str):
    for cand in (base / (name + ".gz"), base / name):
        if cand.exists():
            return cand, (gzip.open(cand, "rb") if cand.suffix == ".gz" else open(cand, "rb"))
    raise LatentAtlasError(
        f"Fashion-MNIST file {name}(.gz) not found in {base}: install the Debian package "
        f"'dataset-fashion-mnist' or point --data-dir / ${ENV_VAR} at a copy")


def read_idx(base: Path, name: str) -> np.ndarray:
    path, fh = _open_idx(base, name)
    with fh:
        raw = fh.read()
    if len(raw) < 4:
        raise LatentAtlasError(f"{path}: truncated idx file")
    zero, dtype_code, ndim = struct.unpack(">HBB", raw[:4])
    if zero != 0 or dtype_code != 0x08:
        raise LatentAtlasError(f"{path}: not an unsigned-byte idx file")
    dims = struct.unpack(">" + "I" * ndim, raw[4: 4 + 4 * ndim])
    count = int(np.prod(dims))
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != count:
        raise LatentAtlasError(f"{path}: expected {count} values for shape {dims}, found {data.size}")
    return data.reshape(dims)


def load_fashion_mnist(split: str = "train", *, path=None, pad_to: int = 32):
    """Returns ``(images, labels)``: float32 tensor [N, 1, pad_to, pad_to] in [-1, 1] and int64 [N]."""
    if split not in _FILES:
        raise LatentAtlasError(f"unknown Fashion-MNIST split {split!r} (train or test)")
    base = fashion_dir(path)
    img_name, lab_name = _FILES[split]
    imgs = read_idx(base, img_name)
    labels = read_idx(base, lab_name)
    if imgs.shape[0] != labels.shape[0]:
        raise LatentAtlasError(f"{base}: {imgs.shape[0]} images but {labels.shape[0]} labels")
    x = torch.from_numpy(imgs.astype(np.float32) / 127.5 - 1.0).unsqueeze(1)
    p = (pad_to - x.shape[-1]) // 2
    if p > 0:
        x = torch.nn.functional.pad(x, [p, pad_to - x.shape[-1] - p] * 2, value=-1.0)
    return x.contiguous(), torch.from_numpy(labels.astype(np.int64))


def fashion_format(model) -> bool:
    """Whether the model's images are in Fashion-MNIST's format as this project pads it (1
    channel, 32x32): what the Fashion-MNIST feature network and classifier read."""
    return (model.img_channels, model.img_resolution) == (1, 32)


def is_fashion_model(model) -> bool:
    """Whether the model was trained on Fashion-MNIST (its format, and its checkpoint says so):
    the test split is then its reference set and its held-out images."""
    return fashion_format(model) and str((model.info.extra or {}).get("data", "")).startswith("Fashion-MNIST")
