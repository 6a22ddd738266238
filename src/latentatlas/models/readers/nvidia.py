"""NVIDIA network pickles (stylegan2-ada-pytorch and stylegan3 ``network-snapshot-*.pkl``).

Their networks are "persistent" objects that carry their own source text and rebuild
themselves by executing it. We read them with a restricted unpickler that resolves only an
allow-list of globals (tensor rebuilding, ``OrderedDict``, numeric numpy scalars/arrays/dtypes,
``EasyDict`` as a plain dict) and turns each persistent object into a :class:`PersistentRecord`
(class name, constructor arguments, parameters, buffers, children, and the instance's plain
attributes) *without* importing ``torch_utils``/``dnnlib`` or executing the embedded source.
Anything else the pickle asks for is refused, by name.

Configuration comes from the instance attributes each module pickled (``conv_clamp``,
``architecture``, ``activation``, StyleGAN3's per-layer sizes, padding and filters): they are
what the network actually ran with, including defaults its training script never wrote into
``init_kwargs`` (the stylegan3 repository's ``conv_clamp=256``). Where an attribute is absent,
the default is read from the *text* of the embedded source (never executed), then from a
table of known defaults.

Key mapping: NVIDIA names equal ours (``mapping.fc{i}``, ``mapping.embed``, ``mapping.w_avg``,
``synthesis.b{R}.{const,conv0,conv1,torgb,skip}.*``, D ``b{R}.{fromrgb,conv0,conv1,skip}``,
``b4.{fromrgb,conv,fc,out}``, ``mapping.*`` of a conditional D; StyleGAN3
``synthesis.input.*`` and ``synthesis.L{i}_{size}_{ch}.*``); the ``resample_filter`` buffers
of StyleGAN2 are dropped (we rebuild the filter from its taps).
"""
from __future__ import annotations

import collections
import io
import math
import pickle
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ...errors import LatentAtlasError
from ...validate import number
from ..interface import ModelInfo, StyleGANModel
from ..state import build_checked
from ..stylegan2 import StyleGAN2Config, StyleGAN2Discriminator, StyleGAN2Generator
from ..stylegan3 import StyleGAN3Config, StyleGAN3Generator, StyleGAN3LayerSpec

FAMILY = "NVIDIA network pickle (stylegan2-ada-pytorch / stylegan3)"


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
        for k, v in list(self.params.items()) + list(self.buffers.items()):
            if v is not None:
                if not isinstance(v, torch.Tensor):
                    raise LatentAtlasError(f"tensor {prefix + k} is a {type(v).__name__}, not a tensor")
                out[prefix + k] = v
        for name, child in self.children.items():
            if isinstance(child, PersistentRecord):
                out.update(child.state_dict(prefix + name + "."))
            elif child is not None:
                raise LatentAtlasError(f"module {prefix + name} is not a persistent object ({type(child).__name__})")
        return out

    def child(self, *path) -> "PersistentRecord | None":
        rec = self
        for p in path:
            rec = rec.children.get(p) if isinstance(rec, PersistentRecord) else None
        return rec if isinstance(rec, PersistentRecord) else None

    def attr(self, name, default=None):
        """An instance attribute; else the default written in the class's source text;
        else ``default``."""
        if name in self.attrs:
            return _plain(self.attrs[name])
        src = _source_default(self.module_src, self.class_name, name)
        return src if src is not _MISSING else default


_MISSING = object()


def _source_default(src: str, class_name: str, param: str):
    """The literal default of ``param`` in ``class_name.__init__`` of the embedded source
    text (None, a number or a quoted string); never executed."""
    m = re.search(rf"^class {re.escape(class_name)}\b.*?def __init__\((.*?)\):", src, re.S | re.M)
    if not m:
        return _MISSING
    d = re.search(rf"\b{re.escape(param)}\s*=\s*([^,#\n]+)", m.group(1))
    if not d:
        return _MISSING
    lit = d.group(1).strip()
    if lit == "None":
        return None
    if re.fullmatch(r"[-+0-9.e]+", lit):
        return float(lit) if any(ch in lit for ch in ".e") else int(lit)
    if re.fullmatch(r"'[^']*'|\"[^\"]*\"", lit):
        return lit[1:-1]
    return _MISSING


class NDArrayRecord:
    """A numeric numpy array rebuilt from a pickle (``ndarray.__reduce__``'s state) without
    numpy's own unpickling hooks; object arrays are refused."""

    def __init__(self, *args):
        self.array = None

    def __setstate__(self, state):
        if not isinstance(state, tuple) or len(state) != 5:
            raise LatentAtlasError("pickle holds a numpy array with an unexpected state")
        _, shape, dtype, fortran, raw = state
        if not isinstance(dtype, np.dtype) or dtype.kind not in "biuf":
            raise LatentAtlasError("pickle holds a numpy array of a non-numeric type")
        if not isinstance(raw, (bytes, bytearray)) or not all(isinstance(s, int) and 0 <= s < 2 ** 31 for s in shape):
            raise LatentAtlasError("pickle holds a numpy array with bad data")
        if len(raw) != int(np.prod(shape)) * dtype.itemsize:
            raise LatentAtlasError("pickle holds a numpy array whose data does not match its shape")
        self.array = np.frombuffer(bytes(raw), dtype=dtype).reshape(shape, order="F" if fortran else "C")


def _plain(v):
    if isinstance(v, NDArrayRecord):
        return v.array
    if isinstance(v, np.generic):
        return v.item()
    return v


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


# a storage pickled inside a network pickle: torch's legacy serialisation of one storage
_LEGACY_MAGIC, _LEGACY_PROTOCOL = 0x1950A86A20F9469CFC6C, 1001
_STORAGE_DTYPES = {"FloatStorage": torch.float32, "HalfStorage": torch.float16, "BFloat16Storage": torch.bfloat16,
                   "DoubleStorage": torch.float64, "LongStorage": torch.int64, "IntStorage": torch.int32,
                   "ShortStorage": torch.int16, "CharStorage": torch.int8, "ByteStorage": torch.uint8,
                   "BoolStorage": torch.bool, "UntypedStorage": torch.uint8}


class _StorageHeader(pickle.Unpickler):
    """The small pickles before a legacy storage's raw bytes: only storage type names resolve (to
    their names), the storage itself is a persistent id recorded here."""
    pid = None

    def find_class(self, module, name):
        if module in ("torch", "torch.storage") and name in _STORAGE_DTYPES:
            return name
        raise pickle.UnpicklingError(f"{module}.{name}")

    def persistent_load(self, pid):
        self.pid = pid


def _load_storage_bytes(b: bytes):
    """One storage from the bytes NVIDIA's pickles carry (``torch.save`` of one storage, legacy
    format: magic, protocol, system info, the storage as a persistent id, its key list, then per
    key an int64 element count and the raw little-endian data). Read directly: the headers through
    a restricted unpickler, the data copied once into the tensor — ~2x faster than the general
    weights-only loader, which reads anything this does not recognise."""
    try:
        f = io.BytesIO(b)
        u = _StorageHeader(f)
        if u.load() != _LEGACY_MAGIC or u.load() != _LEGACY_PROTOCOL:
            raise ValueError("not a legacy storage")
        info = u.load()
        if not isinstance(info, dict) or info.get("little_endian") is not True:
            raise ValueError("not little-endian")
        u.load()
        keys = u.load()
        pid = u.pid
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage" and keys == [pid[2]]
                and pid[3] == "cpu" and pid[1] in _STORAGE_DTYPES):
            raise ValueError("unexpected storage record")
        dtype = _STORAGE_DTYPES[pid[1]]
        pos = f.tell()
        numel = int.from_bytes(b[pos:pos + 8], "little")
        item = 1 if pid[1] == "UntypedStorage" else torch.empty((), dtype=dtype).element_size()
        if numel != pid[4] or pos + 8 + numel * item != len(b):
            raise ValueError("storage size does not match its data")
        with warnings.catch_warnings():            # bytes are read-only; the clone owns writable memory
            warnings.simplefilter("ignore", UserWarning)
            t = torch.frombuffer(b, dtype=dtype, count=numel, offset=pos + 8).clone() if numel else \
                torch.empty(0, dtype=dtype)
        return torch.storage.TypedStorage(wrap_storage=t.untyped_storage(), dtype=dtype, _internal=True)
    except (ValueError, pickle.UnpicklingError, EOFError, TypeError):
        # anything else goes through the general (and safe) weights-only loader
        return torch.load(io.BytesIO(b), map_location="cpu", weights_only=True)


MAX_TENSOR_ELEMENTS = 2 ** 31


def _rebuild_tensor_checked(storage, storage_offset, size, stride, *args, **kwargs):
    """torch's tensor rebuild, after checking what the pickle declares against the storage it has:
    every element inside the storage, no more elements than the storage holds (a stride-0 view
    that would materialise far more), and at most ``MAX_TENSOR_ELEMENTS``. Checked before the
    tensor is viewed, scanned for NaN or copied."""
    size, stride = tuple(int(s) for s in size), tuple(int(s) for s in stride)
    with warnings.catch_warnings():              # the unpickler hands over a TypedStorage, deprecated in torch
        warnings.simplefilter("ignore", UserWarning)
        have = storage.size() if hasattr(storage, "size") else len(storage)
    numel = math.prod(size)
    if len(size) != len(stride) or any(s < 0 for s in size) or any(s < 0 for s in stride) or storage_offset < 0:
        raise LatentAtlasError(f"pickle declares a tensor of size {list(size)} with stride {list(stride)}: not a "
                               f"tensor view")
    if numel > MAX_TENSOR_ELEMENTS:
        raise LatentAtlasError(f"pickle declares a tensor of {numel:,} elements (limit {MAX_TENSOR_ELEMENTS:,})")
    if numel and (storage_offset + sum((s - 1) * st for s, st in zip(size, stride)) >= have or numel > have):
        raise LatentAtlasError(f"pickle declares a tensor of size {list(size)} (stride {list(stride)}, offset "
                               f"{storage_offset}) over a storage of {have:,} elements")
    return torch._utils._rebuild_tensor_v2(storage, storage_offset, size, stride, *args, **kwargs)


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


def _numpy_reconstruct(cls, shape=(0,), typecode=b"b"):
    if cls is not NDArrayRecord:
        raise LatentAtlasError("pickle asks numpy to reconstruct something other than an ndarray")
    return NDArrayRecord()


_ALLOWED = {
    ("torch_utils.persistence", "_reconstruct_persistent_obj"): _reconstruct_persistent,
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_parameter"): torch._utils._rebuild_parameter,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_checked,
    ("torch.storage", "_load_from_bytes"): _load_storage_bytes,
    ("numpy._core.multiarray", "scalar"): _numpy_scalar,
    ("numpy.core.multiarray", "scalar"): _numpy_scalar,
    ("numpy._core.multiarray", "_reconstruct"): _numpy_reconstruct,
    ("numpy.core.multiarray", "_reconstruct"): _numpy_reconstruct,
    ("numpy", "ndarray"): NDArrayRecord,
    ("numpy", "dtype"): _numpy_dtype,
    ("dnnlib.util", "EasyDict"): EasyDictRecord,
    ("dnnlib", "EasyDict"): EasyDictRecord,
}


class RestrictedUnpickler(pickle.Unpickler):
    """Resolves only the allow-listed globals above; every other global is refused by name."""

    def __init__(self, fh, source: str, extra: dict | None = None):
        super().__init__(fh)
        self.source = source
        self.allowed = {**_ALLOWED, **(extra or {})}

    def find_class(self, module, name):
        fn = self.allowed.get((module, name))
        if fn is None:
            raise LatentAtlasError(f"{self.source}: refused: the pickle asks for the disallowed global "
                                   f"{module}.{name}")
        return fn

    def persistent_load(self, pid):
        raise LatentAtlasError(f"{self.source}: refused: unexpected persistent id in a network pickle")


def read_network_pickle(path_or_bytes, source: str | None = None, *, extra: dict | None = None):
    """Whatever a network pickle holds, read through the restricted unpickler (plus ``extra``
    allowed globals: the TF-era ``Network`` record); networks as records, nothing executed."""
    source = source or (str(path_or_bytes) if not isinstance(path_or_bytes, bytes) else "<bytes>")
    try:
        if isinstance(path_or_bytes, bytes):
            return RestrictedUnpickler(io.BytesIO(path_or_bytes), source, extra).load()
        with open(path_or_bytes, "rb") as fh:        # streamed: the file is never held whole in memory
            return RestrictedUnpickler(fh, source, extra).load()
    except LatentAtlasError:
        raise
    except RecursionError:
        raise LatentAtlasError(f"{source}: refused: the pickle is nested too deeply") from None
    except MemoryError:
        raise LatentAtlasError(f"{source}: refused: the pickle declares more data than fits in memory") from None
    except Exception as e:   # pickle raises many types on corrupt data
        raise LatentAtlasError(f"{source}: truncated or corrupt pickle ({type(e).__name__}: {e})") from None


def read_nvidia_pickle(path_or_bytes, source: str | None = None, *, allow_int: bool = False) -> dict:
    """The snapshot dict of an NVIDIA network pickle with networks as PersistentRecords."""
    source = source or (str(path_or_bytes) if not isinstance(path_or_bytes, bytes) else "<bytes>")
    obj = read_network_pickle(path_or_bytes, source)
    if allow_int and isinstance(obj, int):
        return obj
    if not isinstance(obj, dict):
        raise LatentAtlasError(f"{source}: not a network snapshot (top level is {type(obj).__name__})")
    return obj


# ----------------------------------------------------------------------------- configuration


# the generator's constructor arguments: a 1024-px config-f (512/512, 3 channels) and 1000-class
# models are well inside; anything outside is not a StyleGAN a file can hold
INIT_LIMITS = {"z_dim": (1, 8192), "w_dim": (1, 8192), "img_resolution": (4, 8192), "img_channels": (1, 16),
               "c_dim": (0, 100_000)}


def _refuse_unknown_family(G: PersistentRecord, source: str):
    src = G.module_src
    if "pg_modules" in src or "StyleGAN-XL" in src or "stylegan_xl" in src.lower():
        raise LatentAtlasError(f"{source}: StyleGAN-XL pickles are not supported yet")
    if G.class_name != "Generator":
        raise LatentAtlasError(f"{source}: G_ema is a {G.class_name}, not a StyleGAN2/StyleGAN3 Generator")
    missing = [k for k in ("z_dim", "w_dim", "img_resolution", "img_channels") if G.init_kwargs.get(k) is None]
    if missing:
        raise LatentAtlasError(f"{source}: generator constructor arguments missing: {missing}")
    for key, (lo, hi) in INIT_LIMITS.items():        # before anything is sized from them
        if G.init_kwargs.get(key) is not None:
            G.init_kwargs[key] = number(G.init_kwargs[key], f"generator argument {key!r}", lo, hi, where=source,
                                        integer=True)
    res = G.init_kwargs["img_resolution"]
    if res & (res - 1):
        raise LatentAtlasError(f"{source}: generator argument 'img_resolution' = {res} is not a power of two")


def _mapping_fields(M: PersistentRecord, source: str) -> dict:
    sd = M.state_dict()
    n = 0
    while f"fc{n}.weight" in sd:
        n += 1
    if n == 0:
        raise LatentAtlasError(f"{source}: the mapping network has no layers (fc0)")
    acts = {M.child(f"fc{i}").attr("activation", "lrelu") for i in range(n)}
    if len(acts) != 1 or next(iter(acts)) not in ("lrelu", "linear"):
        raise LatentAtlasError(f"{source}: mapping activation {sorted(acts)} is not supported (lrelu or linear)")
    lr = M.child("fc0").attr("bias_gain", 0.01)
    return dict(mapping_layers=n, mapping_lr_mul=float(lr), mapping_activation=next(iter(acts)),
                embed_features=int(sd["embed.weight"].shape[0]) if "embed.weight" in sd else None,
                layer_features=int(sd["fc0.weight"].shape[0]) if n > 1 else None,
                w_avg_beta=float(M.attr("w_avg_beta", 0.995) or 0.995))


def _d_fields(D: PersistentRecord, resolutions: list[int], source: str) -> dict:
    dsd = D.state_dict()
    blocks = {r: D.child(f"b{r}") for r in resolutions if r > 4}
    if any(b is None for b in blocks.values()) or D.child("b4") is None:
        raise LatentAtlasError(f"{source}: discriminator blocks do not match the generator's resolutions")
    archs = {b.attr("architecture", "resnet") for b in blocks.values()}
    if len(archs) != 1 or next(iter(archs)) not in ("orig", "skip", "resnet"):
        raise LatentAtlasError(f"{source}: discriminator architecture {sorted(archs)} is not supported")
    d_channels = {r: int(dsd[f"b{r}.conv0.weight"].shape[0]) for r in blocks}
    d_channels[4] = int(dsd["b4.conv.weight"].shape[0])
    first = blocks[max(blocks)] if blocks else None
    clamp = first.child("conv0").attr("conv_clamp") if first is not None else D.child("b4", "conv").attr("conv_clamp")
    mb = D.child("b4", "mbstd")
    cmap = int(D.child("b4").attr("cmap_dim", 0) or 0)
    out = dict(d_channels=d_channels, d_architecture=next(iter(archs)),
               d_conv_clamp=float(clamp) if clamp is not None else None,
               mbstd_group=int(mb.attr("group_size", 4) or 0) if mb is not None else 4,
               mbstd_channels=int(mb.attr("num_channels", 1)) if mb is not None else 0,
               d_cmap_dim=cmap)
    if cmap:
        dm = D.child("mapping")
        if dm is None:
            raise LatentAtlasError(f"{source}: conditional discriminator without its label mapping")
        out["d_mapping_layers"] = _mapping_fields(dm, source)["mapping_layers"]
    return out


def _sg2_config(G: PersistentRecord, D: PersistentRecord | None, source: str) -> StyleGAN2Config:
    sd = G.state_dict()
    res = int(G.init_kwargs["img_resolution"])
    resolutions = [2 ** i for i in range(2, int(math.log2(res)) + 1)]
    syn = G.child("synthesis")
    blocks = {r: syn.child(f"b{r}") if syn is not None else None for r in resolutions}
    if any(b is None for b in blocks.values()):
        raise LatentAtlasError(f"{source}: synthesis blocks b4..b{res} not found")
    archs = {b.attr("architecture", "skip") for b in blocks.values()}
    if len(archs) != 1 or next(iter(archs)) not in ("orig", "skip", "resnet"):
        raise LatentAtlasError(f"{source}: synthesis architecture {sorted(archs)} is not supported")
    clamp = blocks[res].child("conv1").attr("conv_clamp")
    channels = {r: int(sd[f"synthesis.b{r}.conv1.weight"].shape[0]) for r in resolutions}
    fir = ((G.init_kwargs.get("synthesis_kwargs") or {}).get("resample_filter")
           or G.init_kwargs.get("resample_filter") or (1, 3, 3, 1))
    kw = dict(z_dim=int(G.init_kwargs["z_dim"]), w_dim=int(G.init_kwargs["w_dim"]), img_resolution=res,
              img_channels=int(G.init_kwargs["img_channels"]), channels=channels,
              c_dim=int(G.init_kwargs.get("c_dim", 0) or 0), architecture=next(iter(archs)),
              conv_clamp=float(clamp) if clamp is not None else None,
              fir=tuple(fir),
              **_mapping_fields(G.child("mapping"), source))
    if D is not None:
        kw.update(_d_fields(D, resolutions, source))
    else:
        kw["d_conv_clamp"] = kw["conv_clamp"]
    return StyleGAN2Config(**kw)


def _sg3_config(G: PersistentRecord, D: PersistentRecord | None, source: str) -> StyleGAN3Config:
    syn = G.child("synthesis")
    sd = G.state_dict()
    names = syn.attr("layer_names")
    if not isinstance(names, list) or not names:
        raise LatentAtlasError(f"{source}: StyleGAN3 synthesis without its layer list")
    specs = []
    for name in names:
        L = syn.child(name)
        if L is None:
            raise LatentAtlasError(f"{source}: StyleGAN3 layer {name} missing")
        pad = L.attr("padding")
        fu, fd = sd.get(f"synthesis.{name}.up_filter"), sd.get(f"synthesis.{name}.down_filter")
        clamp = L.attr("conv_clamp", 256)
        specs.append(StyleGAN3LayerSpec(
            name=name, in_channels=int(L.attr("in_channels")), out_channels=int(L.attr("out_channels")),
            in_size=tuple(int(v) for v in np.asarray(L.attr("in_size")).reshape(-1)),
            out_size=tuple(int(v) for v in np.asarray(L.attr("out_size")).reshape(-1)),
            conv_kernel=int(L.attr("conv_kernel")), up=int(L.attr("up_factor")), down=int(L.attr("down_factor")),
            padding=tuple(int(p) for p in pad), is_torgb=bool(L.attr("is_torgb")),
            conv_clamp=float(clamp) if clamp is not None else None,
            up_taps=int(fu.shape[0]) if fu is not None else 1, down_taps=int(fd.shape[0]) if fd is not None else 1,
            down_radial=bool(fd is not None and fd.ndim == 2)))
    inp = syn.child("input")
    radial = any(s.down_radial for s in specs)
    d_cfg = None
    res = int(G.init_kwargs["img_resolution"])
    if D is not None:
        resolutions = [2 ** i for i in range(2, int(math.log2(res)) + 1)]
        dk = _d_fields(D, resolutions, source)
        d_cfg = StyleGAN2Config(z_dim=1, w_dim=1, img_resolution=res, img_channels=int(G.init_kwargs["img_channels"]),
                                channels=dk["d_channels"], conv_clamp=dk["d_conv_clamp"],
                                c_dim=int(G.init_kwargs.get("c_dim", 0) or 0), **dk).to_dict()
    return StyleGAN3Config(
        z_dim=int(G.init_kwargs["z_dim"]), w_dim=int(G.init_kwargs["w_dim"]), img_resolution=res,
        img_channels=int(G.init_kwargs["img_channels"]), c_dim=int(G.init_kwargs.get("c_dim", 0) or 0),
        input_channels=int(inp.attr("channels")),
        input_size=tuple(int(v) for v in np.asarray(inp.attr("size")).reshape(-1)),
        input_sampling_rate=float(inp.attr("sampling_rate")), input_bandwidth=float(inp.attr("bandwidth")),
        layers=tuple(specs), output_scale=float(syn.attr("output_scale", 0.25)),
        variant="R" if radial else "T", d_config=d_cfg,
        **{k: v for k, v in _mapping_fields(G.child("mapping"), source).items()})


def _strip_filters(sd: dict) -> dict:
    return {k: v for k, v in sd.items() if not k.endswith("resample_filter")}


def is_stylegan3(G: PersistentRecord) -> bool:
    syn = G.child("synthesis")
    return syn is not None and syn.child("input") is not None


def _config(build, G: PersistentRecord, D: PersistentRecord | None, source: str, warnings: list):
    """(config, D) from the records; a discriminator we cannot read never blocks the generator
    (it is dropped with a warning)."""
    try:
        return build(G, D, source), D
    except LatentAtlasError as e:
        if D is None:
            raise
        warnings.append(f"discriminator not loaded: {e}")
        return build(G, None, source), None


def load(path, *, which: str = "G_ema", snap: dict | None = None) -> StyleGANModel:
    snap = snap if snap is not None else read_nvidia_pickle(path)
    if which not in snap:
        raise LatentAtlasError(f"{path}: snapshot has no {which!r} (keys: {sorted(map(str, snap))})")
    Grec, Drec = snap[which], snap.get("D")
    if not isinstance(Grec, PersistentRecord):
        raise LatentAtlasError(f"{path}: {which} is not a network")
    _refuse_unknown_family(Grec, str(path))
    Drec = Drec if isinstance(Drec, PersistentRecord) else None
    warnings = []
    if is_stylegan3(Grec):
        cfg, Drec = _config(_sg3_config, Grec, Drec, str(path), warnings)
        G = build_checked(lambda: StyleGAN3Generator(cfg), Grec.state_dict(), f"{path} ({which})")
        d_cfg = StyleGAN2Config.from_dict(cfg.d_config) if cfg.d_config else None
        arch = f"stylegan3-{cfg.variant.lower()}"
    else:
        cfg, Drec = _config(_sg2_config, Grec, Drec, str(path), warnings)
        G = build_checked(lambda: StyleGAN2Generator(cfg), _strip_filters(Grec.state_dict()), f"{path} ({which})")
        d_cfg = cfg if Drec is not None else None
        arch = "stylegan2"
    D = None
    if Drec is not None and d_cfg is not None:
        try:
            D = build_checked(lambda: StyleGAN2Discriminator(d_cfg), _strip_filters(Drec.state_dict()), f"{path} (D)")
        except LatentAtlasError as e:
            warnings.append(f"discriminator not loaded: {e}")
            D = None
    info = ModelInfo(name=Path(path).stem, arch=arch, source=f"{path} ({FAMILY}, {which})",
                     extra={"format": "nvidia-pkl", "family": arch, **({"warnings": warnings} if warnings else {})})
    return StyleGANModel(info, G, D)


def inspect(path) -> dict:
    snap = read_nvidia_pickle(path)
    out = {"format": FAMILY, "keys": [str(k) for k in snap]}
    for k, v in snap.items():
        if isinstance(v, PersistentRecord):
            n = sum(t.numel() for t in v.state_dict().values() if t.is_floating_point())
            kw = {a: b for a, b in v.init_kwargs.items() if not isinstance(b, dict)}
            out[str(k)] = f"{v.class_name} ({n:,} values) {kw}"
        elif v is None:
            out[str(k)] = "None"
        else:
            out[str(k)] = type(v).__name__
    return out


def detect(data: bytes) -> bool:
    return data[:1] == b"\x80" and b"torch_utils.persistence" in data[:4096]
