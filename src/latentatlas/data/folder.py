"""Users' own images: a folder (or list) of PNG/JPEG files as tensors in [-1, 1].

Conversion is explicit: ``channels`` 1 converts to grayscale with ITU-R 601 luma (PIL "L"),
3 to RGB; ``size`` resizes with a named PIL filter (default "lanczos"; also "bicubic",
"bilinear", "box", "nearest"). Files that cannot be read are reported by name.
"""
from __future__ import annotations

import stat
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from ..errors import LatentAtlasError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
MAX_IMAGE_BYTES = 64 * 2 ** 20          # larger files are skipped before decoding
MAX_IMAGE_PIXELS = 8192 * 8192          # decoded size limit, checked from the header
MAX_FOLDER_ENTRIES = 1_000_000          # a folder walk stops (with an error) beyond this many entries
FILTERS = {"lanczos": Image.LANCZOS, "bicubic": Image.BICUBIC, "bilinear": Image.BILINEAR,
           "box": Image.BOX, "nearest": Image.NEAREST}


@dataclass
class LoadedImage:
    path: Path
    tensor: torch.Tensor | None     # [C, H, W] in [-1, 1], None when unreadable
    note: str = ""                  # what was converted, or why it failed


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISDIR, "a directory")):
        if test(mode):
            return name
    return "not a plain file"


def list_images(src) -> list[Path]:
    """Files of a directory (sorted, non-recursive), or the given file(s)."""
    paths = [Path(p) for p in (src if isinstance(src, (list, tuple)) else [src])]
    out: list[Path] = []
    for p in paths:
        if p.is_dir():
            found = []
            for i, q in enumerate(p.iterdir()):
                if i >= MAX_FOLDER_ENTRIES:
                    raise LatentAtlasError(f"{p}: more than {MAX_FOLDER_ENTRIES:,} entries; give a smaller folder")
                if q.suffix.lower() in IMAGE_SUFFIXES:
                    found.append(q)
            out += sorted(found)
        elif p.exists():
            out.append(p)
        else:
            raise LatentAtlasError(f"{p}: no such file or directory")
    if not out:
        raise LatentAtlasError(f"no PNG/JPEG images found in {', '.join(map(str, paths))}")
    return out


def load_image(path, *, size: int, channels: int, resample: str = "lanczos") -> LoadedImage:
    path = Path(path)
    if resample not in FILTERS:
        raise LatentAtlasError(f"unknown resampling filter {resample!r}; choose from {', '.join(FILTERS)}")
    try:
        st = path.stat()
    except OSError as e:
        return LoadedImage(path, None, f"unreadable: {e.strerror}")
    if not stat.S_ISREG(st.st_mode):            # a FIFO, socket or device is never opened (it could block)
        return LoadedImage(path, None, f"not a regular file ({_kind(st.st_mode)}); skipped")
    size_b = st.st_size
    if size_b > MAX_IMAGE_BYTES:
        return LoadedImage(path, None, f"file of {size_b / 2 ** 20:.0f} MiB exceeds the {MAX_IMAGE_BYTES // 2 ** 20} MiB limit")
    try:
        with Image.open(path) as im:
            if im.size[0] * im.size[1] > MAX_IMAGE_PIXELS:
                return LoadedImage(path, None, f"{im.size[0]}x{im.size[1]} pixels exceed the limit of "
                                               f"{MAX_IMAGE_PIXELS:,} (decompression bomb?)")
            im.load()
            notes = []
            mode = "L" if channels == 1 else "RGB"
            if im.mode != mode:
                notes.append(f"converted {im.mode}->{mode}")
                im = im.convert(mode)
            if im.size != (size, size):
                notes.append(f"resized {im.size[0]}x{im.size[1]}->{size}x{size} ({resample})")
                im = im.resize((size, size), FILTERS[resample])
            arr = np.asarray(im, dtype=np.float32)
    except Image.DecompressionBombError:
        return LoadedImage(path, None, "too many pixels to decode safely (decompression bomb)")
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as e:
        return LoadedImage(path, None, f"unreadable image: {e.__class__.__name__}")
    t = torch.from_numpy(arr / 127.5 - 1.0)
    t = t[None] if t.ndim == 2 else t.permute(2, 0, 1)
    return LoadedImage(path, t.contiguous(), "; ".join(notes))


def load_folder(src, *, size: int, channels: int, resample: str = "lanczos"):
    """All readable images as one tensor [N, C, size, size], their paths, and the failures."""
    loaded = [load_image(p, size=size, channels=channels, resample=resample) for p in list_images(src)]
    ok = [li for li in loaded if li.tensor is not None]
    bad = [li for li in loaded if li.tensor is None]
    if not ok:
        raise LatentAtlasError(f"none of the {len(loaded)} images could be read ({bad[0].path}: {bad[0].note})")
    return torch.stack([li.tensor for li in ok]), [li.path for li in ok], bad
