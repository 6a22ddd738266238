"""Validation at the edges: one place per kind of input, each ending in one line that names the
file and the problem (``LatentAtlasError``, exit code 2 at the CLI).

* ``read_npz``: every ``.npz`` latentatlas reads (atlases, directions, latents): no pickle,
  required keys with their kinds and ranks, finite floats, a size limit;
* ``check_output``: output paths checked before the work starts (a directory where a file is
  expected or the reverse, a parent that is a regular file, an unwritable parent);
* ``check_fits``: a batch, grid or N whose images cannot fit in memory is refused up front with
  the estimate.
Images are checked where they are decoded (``data/folder.py``: pixel-count and file-size
limits before decoding), checkpoints in ``models/registry.py`` (non-finite tensors, sizes).
"""
from __future__ import annotations

import os
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from .errors import LatentAtlasError

MAX_NPZ_BYTES = 4 * 2 ** 30
MAX_NPZ_INFLATED = 4 * 2 ** 30          # arrays an .npz may declare, summed (checked before any is read)
MEMORY_BUDGET_BYTES = 8 * 2 ** 30      # images one command may hold at once
FILE_SUFFIXES = (".png", ".gif", ".mp4", ".npz", ".json", ".pt", ".safetensors", ".html", ".csv")


def read_npz(path, what: str, required: dict[str, tuple[str, int | None]]) -> dict[str, np.ndarray]:
    """Arrays of ``path`` (no pickle). ``required``: key -> (kind, ndim) with kind 'f' (finite
    float), 'i' (integer), 'U' (string) and ndim None for any rank. Other float arrays of the
    file must be finite too."""
    path = Path(path)
    if not path.is_file():
        raise LatentAtlasError(f"{path}: no such {what} file")
    if path.stat().st_size > MAX_NPZ_BYTES:
        raise LatentAtlasError(f"{path}: larger than any {what} file ({path.stat().st_size / 2 ** 30:.1f} GiB)")
    with open(path, "rb") as fh:
        if fh.read(4) != b"PK\x03\x04":
            raise LatentAtlasError(f"{path}: not a readable {what} file (not an .npz archive)")
        fh.seek(0)
        check_npz_sizes(fh, f"{path}", what)
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except ValueError as e:
        if "pickle" in str(e):
            raise LatentAtlasError(f"{path}: refused: the {what} file holds Python objects "
                                   f"(pickled arrays are never loaded)") from None
        raise LatentAtlasError(f"{path}: not a readable {what} file ({e})") from None
    except (OSError, EOFError, zipfile.BadZipFile, KeyError) as e:
        raise LatentAtlasError(f"{path}: not a readable {what} file ({type(e).__name__})") from None
    for key, (kind, ndim) in required.items():
        if key not in arrays:
            raise LatentAtlasError(f"{path}: not a {what} file (no '{key}' array)")
        a = arrays[key]
        ok_kind = {"f": a.dtype.kind in "fiu", "i": a.dtype.kind in "iu", "U": a.dtype.kind in "US"}[kind]
        if not ok_kind or (ndim is not None and a.ndim != ndim):
            raise LatentAtlasError(f"{path}: '{key}' has dtype {a.dtype} and shape {list(a.shape)}, "
                                   f"expected {'a number' if kind == 'f' else 'a string' if kind == 'U' else 'an integer'} "
                                   f"array{f' of rank {ndim}' if ndim is not None else ''}")
    for key, a in arrays.items():
        if a.dtype.kind == "f" and not np.isfinite(a).all():
            raise LatentAtlasError(f"{path}: array '{key}' holds NaN or infinite values")
    return arrays


def number(value, field: str, lo: float, hi: float, *, where: str = "", integer: bool = False):
    """``value`` as a finite number in [lo, hi] (an int when ``integer``), else one line naming
    ``where`` (the file) and the field. The one check behind config fields and the explorer's
    parameters (NaN, infinities, overflow, booleans, strings and out-of-range values refused)."""
    prefix = f"{where}: " if where else ""
    name = f"{field} = {str(value)[:40]!s}" if field else repr(str(value)[:40])
    ok = not isinstance(value, bool) and isinstance(value, (int, float, str))
    exact = None
    if ok and integer and isinstance(value, (int, str)):
        try:
            exact = int(value)          # integers exactly (a seed near 2^63 must not pass through a float)
        except ValueError:
            pass
    try:
        v = float(value) if ok and exact is None else exact
    except (ValueError, OverflowError):
        v = None
    if v is None or v != v or v in (float("inf"), float("-inf")):
        raise LatentAtlasError(f"{prefix}{name} is not a finite number")
    if integer:
        if v != int(v):
            raise LatentAtlasError(f"{prefix}{name} is not an integer")
        v = int(v)
    if not lo <= v <= hi:
        bounds = f"[{int(lo)}, {int(hi)}]" if integer and max(abs(lo), abs(hi)) < 1e15 else f"[{lo:g}, {hi:g}]"
        raise LatentAtlasError(f"{prefix}{name} is outside {bounds}")
    return v


MAX_JSON_DEPTH = 64          # nesting a configuration or metadata object may have


def load_json(text, where: str, what: str = "JSON"):
    """``text`` (str or bytes) parsed as JSON, or one line naming ``where`` and what is wrong —
    including nesting deeper than ``MAX_JSON_DEPTH`` (measured before parsing: no recursion)."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as e:
            raise LatentAtlasError(f"{where}: {what} is not UTF-8 ({e.reason})") from None
    depth = 0
    in_str = esc = False
    for ch in text:                 # brackets outside strings
        if in_str:
            esc, in_str = (False, True) if esc else (ch == "\\", ch != '"')
        elif ch == '"':
            in_str = True
        elif ch in "[{":
            depth += 1
            if depth > MAX_JSON_DEPTH:
                raise LatentAtlasError(f"{where}: {what} is nested deeper than {MAX_JSON_DEPTH} levels")
        elif ch in "]}":
            depth -= 1
    try:
        import json
        return json.loads(text)
    except (ValueError, RecursionError) as e:
        raise LatentAtlasError(f"{where}: {what} is not valid JSON ({str(e)[:120]})") from None


_DEFAULT_LIMITS = {"int": (0, 1 << 20), "float": (-1e9, 1e9)}


def check_fields(cls, d: dict, where: str, limits: dict | None = None) -> dict:
    """The numeric fields of a configuration dict ``d`` for the dataclass ``cls``, checked by their
    annotations before anything is built from them: ``int``/``float`` fields (``| None`` allowed)
    finite and within ``limits[field]`` (else a generous default), ``dict`` fields of numbers (a
    channel map) value by value, ``tuple`` fields item by item. Returns ``d`` with the numbers
    normalised; one line naming ``where`` and the field otherwise."""
    import dataclasses
    if not isinstance(d, dict):
        raise LatentAtlasError(f"{where}: the configuration is a {type(d).__name__}, not an object")
    limits = limits or {}
    out = dict(d)
    for f in dataclasses.fields(cls):
        if f.name not in d or d[f.name] is None:
            continue
        kinds = {k.strip() for k in str(f.type).split("|")}
        v = d[f.name]
        num = "int" if "int" in kinds else "float" if "float" in kinds else None
        if num and not (isinstance(v, str) and "str" in kinds):
            lo, hi = limits.get(f.name, _DEFAULT_LIMITS[num])
            out[f.name] = number(v, f"config field {f.name!r}", lo, hi, where=where, integer=num == "int")
        elif "dict" in kinds and f.name in limits:
            if not isinstance(v, dict):
                raise LatentAtlasError(f"{where}: config field {f.name!r} is a {type(v).__name__}, not an object")
            lo, hi = limits[f.name]
            out[f.name] = {number(k, f"config field {f.name!r} key", 1, 1 << 20, where=where, integer=True):
                           number(x, f"config field {f.name!r}[{k}]", lo, hi, where=where, integer=True)
                           for k, x in list(v.items())[:64]}
            if len(v) > 64:
                raise LatentAtlasError(f"{where}: config field {f.name!r} has {len(v)} entries (at most 64)")
        elif "tuple" in kinds and f.name in limits:
            if not isinstance(v, (list, tuple)) or len(v) > 64:
                raise LatentAtlasError(f"{where}: config field {f.name!r} is not a short list")
            lo, hi = limits[f.name]
            out[f.name] = tuple(number(x, f"config field {f.name!r}", lo, hi, where=where) for x in v)
    return out


def check_npz_sizes(fileobj, name: str, what: str, limit: int | None = None) -> int:
    """Measure an .npz before anything is inflated: every member's declared array size (shape and
    dtype from its .npy header) must fit in the member's uncompressed size from the zip header,
    and their sum in ``limit`` (default ``MAX_NPZ_INFLATED``). Returns that sum in bytes."""
    limit = MAX_NPZ_INFLATED if limit is None else limit
    total = 0
    try:
        with zipfile.ZipFile(fileobj) as zf:
            members = zf.infolist()
            if len(members) > 4096:
                raise LatentAtlasError(f"{name}: {len(members)} arrays; no {what} file holds that many")
            declared = sum(m.file_size for m in members)
            if declared > limit:
                raise LatentAtlasError(f"{name}: its arrays would inflate to {declared / 2 ** 20:,.0f} MiB "
                                       f"(limit {limit / 2 ** 20:,.0f} MiB for a {what} file); not read")
            for m in members:
                if not m.filename.endswith(".npy"):
                    continue
                with zf.open(m) as f:
                    version = np.lib.format.read_magic(f)
                    read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                                   else np.lib.format.read_array_header_2_0)
                    shape, _, dtype = read_header(f, max_header_size=10000)
                    if dtype.hasobject:
                        continue                    # refused by np.load(allow_pickle=False) with its own line
                    nbytes = int(np.prod(shape, dtype=object)) * dtype.itemsize
                    if nbytes > m.file_size:
                        raise LatentAtlasError(f"{name}: array '{m.filename[:-4]}' declares {list(shape)} "
                                               f"({nbytes:,} bytes) but holds {m.file_size:,}; not read")
                    total += nbytes
    except LatentAtlasError:
        raise
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, KeyError, SyntaxError) as e:
        raise LatentAtlasError(f"{name}: not a readable {what} file ({type(e).__name__})") from None
    return total


def check_output(path, kind: str | None = None) -> Path:
    """Fail now, not at the end of a long run, if ``path`` cannot be written. ``kind``:
    'file', 'dir', or None to infer from the suffix."""
    path = Path(path)
    kind = kind or ("file" if path.suffix.lower() in FILE_SUFFIXES else "dir")
    if kind == "file" and path.is_dir():
        raise LatentAtlasError(f"output {path}: is a directory, expected a file name")
    if kind == "dir" and path.exists() and not path.is_dir():
        raise LatentAtlasError(f"output {path}: is a file, expected a directory")
    anc = path.parent if kind == "file" or not path.exists() else path
    while not anc.exists():
        anc = anc.parent
    if not anc.is_dir():
        raise LatentAtlasError(f"output {path}: {anc} is a regular file, not a directory")
    if not os.access(anc, os.W_OK | os.X_OK):
        raise LatentAtlasError(f"output {path}: {anc} is not writable")
    try:        # a real write: permissions alone do not show a read-only or special file system (/sys, /proc)
        with tempfile.NamedTemporaryFile(dir=anc, prefix=".latentatlas-probe-"):
            pass
    except OSError as e:
        raise LatentAtlasError(f"output {path}: cannot write in {anc} ({e.strerror or type(e).__name__})") from None
    return path


def check_fits(n: int, channels: int, resolution: int, what: str, *, copies: int = 3, hint: str = "",
               unit: str | None = None):
    """Refuse up front when ``n`` float images (``copies`` of them alive at once) exceed the
    memory budget; ``unit`` names the items when they are not images."""
    need = int(n) * channels * resolution * resolution * 4 * copies
    if need > MEMORY_BUDGET_BYTES:
        unit = unit or f"images of {channels}x{resolution}x{resolution}"
        raise LatentAtlasError(f"{what}: {n:,} {unit} need about "
                               f"{need / 2 ** 30:.1f} GiB (limit {MEMORY_BUDGET_BYTES // 2 ** 30} GiB){hint}")
