"""latentatlas's own formats.

* ``.safetensors`` (the export format, ``latentatlas convert``): tensors named ``G.<key>`` /
  ``D.<key>``, and in the header's metadata ``format`` = "latentatlas", ``arch`` (family),
  ``config`` (JSON), ``meta`` (JSON) and ``weights_hash``. Reading it involves no unpickling
  at all.
* ``.pt`` (the bundled models, round 1): a plain dict loadable with
  ``torch.load(weights_only=True)``: ``{"format": "latentatlas", "version": 1, "arch": ...,
  "config": {...}, "G": state_dict, "D": state_dict | None, "meta": {...}}``.
"""
from __future__ import annotations

import json
import struct

from ...errors import LatentAtlasError
from ...validate import load_json

FORMAT = "latentatlas"
MAX_HEADER = 100_000_000


def is_safetensors(data: bytes) -> bool:
    if len(data) < 10:
        return False
    n = struct.unpack("<Q", data[:8])[0]
    return 2 <= n <= min(MAX_HEADER, len(data) - 8) and data[8:9] == b"{"


def safetensors_header(data: bytes, source: str) -> dict:
    n = struct.unpack("<Q", data[:8])[0]
    header = load_json(data[8: 8 + n], source, "the safetensors header")
    if not isinstance(header, dict):
        raise LatentAtlasError(f"{source}: the safetensors header is a {type(header).__name__}, not an object")
    return header


def read_safetensors(data: bytes, source: str) -> dict:
    """The checkpoint dict (as our .pt holds it) from a latentatlas .safetensors file."""
    header = safetensors_header(data, source)
    meta = header.get("__metadata__") or {}
    if meta.get("format") != FORMAT:
        raise LatentAtlasError(f"{source}: a safetensors file without latentatlas metadata (format, arch, "
                               f"config); only files written by 'latentatlas convert' can be loaded")
    try:
        from safetensors.torch import load as st_load
    except ImportError:
        raise LatentAtlasError("reading .safetensors needs the package safetensors: pip install safetensors") from None
    try:
        tensors = st_load(data)
    except Exception as e:   # the Rust reader raises its own error types
        raise LatentAtlasError(f"{source}: corrupt safetensors data ({str(e).splitlines()[0] if str(e) else type(e).__name__})") from None
    if not isinstance(meta.get("config"), str):
        raise LatentAtlasError(f"{source}: latentatlas metadata without its config")
    config = load_json(meta["config"], source, "the metadata's config")
    info = load_json(meta.get("meta", "{}"), source, "the metadata's meta")
    G = {k[2:]: v for k, v in tensors.items() if k.startswith("G.")}
    D = {k[2:]: v for k, v in tensors.items() if k.startswith("D.")}
    return {"format": FORMAT, "version": 2, "arch": meta.get("arch"), "config": config, "G": G,
            "D": D or None, "meta": info, "weights_hash": meta.get("weights_hash")}


def write_safetensors(path, *, arch: str, config: dict, G: dict, D: dict | None, meta: dict, weights_hash: str):
    from safetensors.torch import save_file
    tensors = {f"G.{k}": v.detach().cpu().contiguous() for k, v in G.items()}
    tensors.update({f"D.{k}": v.detach().cpu().contiguous() for k, v in (D or {}).items()})
    save_file(tensors, str(path), metadata={"format": FORMAT, "arch": arch, "config": json.dumps(config),
                                            "meta": json.dumps(meta), "weights_hash": weights_hash})


def detect(ckpt) -> bool:
    return isinstance(ckpt, dict) and ckpt.get("format") == FORMAT

