"""Image grids and atomic file writes."""
from __future__ import annotations

import contextlib
import math
import os
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .errors import LatentAtlasError

PARTIAL = ".partial-"


def clean_partial(folder) -> int:
    """Remove the temporary files of ``atomic_path`` that a killed process left in ``folder``
    (call it only when no other process writes there); returns how many."""
    folder = Path(folder)
    n = 0
    if folder.is_dir():
        for p in folder.glob(f".*{PARTIAL}*"):
            p.unlink(missing_ok=True)
            n += 1
    return n


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike):
    """Yield a temporary path beside ``path``; move it into place only if the block succeeds,
    so an interrupted or failed write never leaves a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix="." + path.name + PARTIAL, suffix=path.suffix)
    os.close(fd)
    try:
        yield Path(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)     # mkstemp creates 0600; give the usual file mode
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """[N, C, H, W] in [-1, 1] -> uint8 [N, H, W, C]."""
    x = images.detach().float().cpu().clamp(-1, 1)
    x = ((x + 1) * 127.5).round().to(torch.uint8)
    return x.permute(0, 2, 3, 1).numpy()


def make_grid(images: torch.Tensor, nrow: int | None = None, pad: int = 2, scale: int = 1,
              mark=()) -> Image.Image:
    """Tile [N, C, H, W] images in [-1, 1] into one PIL image (``nrow`` images per row); the cells
    whose indices are in ``mark`` get a red frame (the grid is then RGB)."""
    arr = to_uint8(images)
    n, h, w, c = arr.shape
    mark = set(int(i) for i in mark)
    if mark and c == 1:
        arr, c = np.repeat(arr, 3, axis=-1), 3
    nrow = nrow or max(1, int(math.ceil(math.sqrt(n))))
    rows = int(math.ceil(n / nrow))
    canvas = np.full((rows * (h + pad) + pad, nrow * (w + pad) + pad, c), 255, np.uint8)
    for i in range(n):
        r, col = divmod(i, nrow)
        y0, x0 = pad + r * (h + pad), pad + col * (w + pad)
        if i in mark:
            canvas[max(0, y0 - pad):y0 + h + pad, max(0, x0 - pad):x0 + w + pad] = (220, 30, 30)
        canvas[y0:y0 + h, x0:x0 + w] = arr[i]
    img = Image.fromarray(canvas[..., 0] if c == 1 else canvas)
    if scale != 1:
        img = img.resize((img.width * scale, img.height * scale), Image.NEAREST)
    return img


def save_grid(images: torch.Tensor, path, nrow: int | None = None, scale: int = 1) -> Path:
    """Save images [N, C, H, W] (values clamped to [-1, 1]) as one PNG grid, ``nrow`` per row
    (default about square), each pixel ``scale`` x ``scale``; written atomically."""
    img = make_grid(images, nrow=nrow, scale=scale)
    with atomic_path(path) as tmp:
        img.save(tmp, format="PNG")
    return Path(path)


def save_png(image: torch.Tensor, path) -> Path:
    """Save one [C, H, W] image in [-1, 1]."""
    arr = to_uint8(image[None])[0]
    img = Image.fromarray(arr[..., 0] if arr.shape[-1] == 1 else arr)
    with atomic_path(path) as tmp:
        img.save(tmp, format="PNG")
    return Path(path)


ANIMATION_SUFFIXES = (".gif", ".mp4")


def ffmpeg_exe() -> str | None:
    """An ffmpeg binary: the one on PATH, else the one the optional imageio-ffmpeg package ships."""
    import shutil
    exe = shutil.which("ffmpeg")
    if exe:
        return exe
    try:
        import imageio_ffmpeg
        return imageio_ffmpeg.get_ffmpeg_exe()
    except Exception:   # noqa: BLE001 - not installed, or its binary is missing
        return None


def animation_format(out, fallback: bool = False) -> str:
    """'gif' or 'mp4' from ``out``'s suffix. MP4 needs ffmpeg; with ``fallback`` a missing ffmpeg
    gives 'gif' instead of an error."""
    suffix = Path(out).suffix.lower()
    if suffix not in ANIMATION_SUFFIXES:
        raise LatentAtlasError(f"animation {out}: use .gif or .mp4")
    if suffix == ".mp4" and ffmpeg_exe() is None:
        if fallback:
            return "gif"
        raise LatentAtlasError(f"{out}: MP4 needs ffmpeg (apt install ffmpeg, or pip install imageio-ffmpeg); "
                               "write a .gif instead")
    return suffix[1:]


def save_animation(frames: list, out, *, fps: float = 8.0, bounce: bool = False) -> Path:
    """Write PIL frames (one size) as a looping GIF (Pillow) or an H.264 MP4 (ffmpeg, frames padded
    to even sizes), atomically. ``bounce`` plays the frames forward then back."""
    import subprocess

    out = Path(out)
    fmt = animation_format(out)
    if not frames:
        raise LatentAtlasError(f"{out}: no frames to write")
    if bounce and len(frames) > 2:
        frames = list(frames) + list(frames[-2:0:-1])
    if fmt == "gif":
        pal = [f.convert("P") if f.mode != "P" else f for f in frames]
        with atomic_path(out) as tmp:
            pal[0].save(tmp, format="GIF", save_all=True, append_images=pal[1:], duration=int(1000 / fps), loop=0)
        return out
    w, h = frames[0].size
    W, H = w + (w & 1), h + (h & 1)
    with atomic_path(out) as tmp:
        cmd = [ffmpeg_exe(), "-y", "-loglevel", "error", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{W}x{H}",
               "-r", f"{fps:g}", "-i", "-", "-an", "-c:v", "libx264", "-pix_fmt", "yuv420p", "-crf", "18",
               "-f", "mp4", str(tmp)]
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            for f in frames:
                canvas = Image.new("RGB", (W, H), (255, 255, 255))
                canvas.paste(f.convert("RGB"), (0, 0))
                proc.stdin.write(canvas.tobytes())
            proc.stdin.close()
        except BrokenPipeError:
            pass
        err = proc.stderr.read().decode(errors="replace").strip()
        if proc.wait() != 0:
            raise LatentAtlasError(f"{out}: ffmpeg failed ({err.splitlines()[-1] if err else 'exit ' + str(proc.returncode)})")
    return out


PREVIEW_PX = 128      # an image shown alone (a strip's cell, a reconstruction) is scaled up to about this width


def preview_scale(resolution: int, px: int = PREVIEW_PX) -> int:
    """Nearest-neighbour scale that shows a ``resolution``-px image about ``px`` wide (at least 1)."""
    return max(1, px // resolution)


def grid_scale(n: int, resolution: int, nrow: int | None = None, target_px: int = 512) -> int:
    """Nearest-neighbour scale that makes a grid about ``target_px`` wide (1..8)."""
    cols = nrow or max(1, int(math.ceil(math.sqrt(n))))
    return max(1, min(8, target_px // max(1, cols * (resolution + 2))))
