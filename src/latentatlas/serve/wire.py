"""The explorer's wire: request limits, the one error type a request can end in, parameter
checks (every value from a request is read through these), and image encoding for answers."""
from __future__ import annotations

import base64
import io

import torch

from ..errors import LatentAtlasError
from ..imageio import make_grid
from ..sampling.generate import parse_params
from ..validate import number

MAX_UPLOAD = 8 * 2 ** 20            # bytes of one request body
MAX_JOBS = 8                         # inversion jobs queued or running; more get 429
MAX_SAMPLES = 64
CACHE_ITEMS = 512
MAX_LATENT_INFLATED = 16 * 2 ** 20   # arrays an uploaded latent .npz may declare (a 1024-px W+ code is 37 KB)
CSP = ("default-src 'none'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
       "img-src 'self' data: blob:; connect-src 'self'; form-action 'none'; base-uri 'none'; frame-ancestors 'none'")
EXPLORER_PX = 256                    # a single image in the page is shown about this wide


class HTTPError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


def png_bytes(images: torch.Tensor, nrow: int | None = None, scale: int = 1) -> bytes:
    buf = io.BytesIO()
    make_grid(images, nrow=nrow, pad=0 if images.shape[0] == 1 else 2, scale=scale).save(buf, format="PNG")
    return buf.getvalue()


def b64(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode()


def int_param(v, name, lo, hi) -> int:
    """An integer request parameter in [lo, hi] (``validate.number``), else 400."""
    try:
        return number(v, name, lo, hi, integer=True)
    except LatentAtlasError as e:
        raise HTTPError(400, str(e)) from None


def float_param(v, name, lo, hi) -> float:
    """A finite number request parameter in [lo, hi] (``validate.number``), else 400."""
    try:
        return number(v, name, lo, hi)
    except LatentAtlasError as e:
        raise HTTPError(400, str(e)) from None


def strategy_param(v):
    if v is None or isinstance(v, bool):
        return v
    if isinstance(v, (int, float)):
        if v != v:
            raise LatentAtlasError("parameter values must not be NaN")
        return v
    return parse_params([f"x={v}"])["x"]
