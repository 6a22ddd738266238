"""Putting a checkpoint's tensors into a module: one strict load that every reader uses, with
errors that name the file, the key and what is wrong, and ``build_checked``: the module a
file's config describes is first built as a shape probe (no memory), its size checked
against ``MAX_PARAMETERS`` and its tensors' names and shapes against the file's, and only then
built for real — a config that declares absurd sizes is refused before memory is touched —
without random initialisation, the file's tensors assigned as its parameters (one copy)."""
from __future__ import annotations

import torch

from ..errors import LatentAtlasError

# The largest generator or discriminator a file may describe: 2^31 values (8 GiB at fp32). The
# largest common models are far below (StyleGAN2 config-f 1024 px: 30M in G; BigGAN-deep 512: 56M).
MAX_PARAMETERS = 2 ** 31


def build_checked(factory, sd: dict, what: str, *, max_parameters: int | None = None) -> torch.nn.Module:
    """``factory()`` built and loaded with ``sd`` — after a shape probe (``ShapeProbe``) has shown
    that its size is sane and that its tensors are the file's (names and shapes)."""
    limit = MAX_PARAMETERS if max_parameters is None else max_parameters
    try:
        with ShapeProbe():
            probe = factory()
    except (TypeError, ValueError, RuntimeError, NotImplementedError, OverflowError) as e:
        raise LatentAtlasError(f"{what}: the file's configuration does not describe a buildable network "
                               f"({type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''})") from None
    own = probe.state_dict()
    n = sum(t.numel() for t in own.values())
    if n > limit:
        raise LatentAtlasError(f"{what}: its configuration describes {n:,} values (limit {limit:,}); not built")
    _check_names_and_shapes(own, sd, what)
    with _NoRandomInit():             # every persistent tensor comes from the file: no RNG, no pages touched
        module = factory()
    load_state(module, sd, what, assign=True)
    return module


_FACTORIES = {torch.randn, torch.rand, torch.empty, torch.zeros, torch.ones, torch.full}
_ELEMENTWISE = {torch.Tensor.__truediv__, torch.Tensor.__rtruediv__, torch.Tensor.__mul__, torch.Tensor.__rmul__,
                torch.Tensor.__add__, torch.Tensor.__radd__, torch.Tensor.__sub__, torch.Tensor.__rsub__,
                torch.Tensor.__neg__, torch.div, torch.mul, torch.add, torch.sub, torch.Tensor.div, torch.Tensor.mul,
                torch.Tensor.add, torch.Tensor.sub, torch.Tensor.float, torch.Tensor.clone, torch.Tensor.contiguous}
_IN_PLACE = {torch.Tensor.normal_, torch.Tensor.uniform_, torch.Tensor.zero_, torch.Tensor.fill_,
             torch.Tensor.mul_, torch.Tensor.div_, torch.Tensor.add_, torch.Tensor.sub_, torch.Tensor.copy_,
             torch.Tensor.__imul__, torch.Tensor.__itruediv__, torch.Tensor.__iadd__, torch.Tensor.__isub__,
             torch.Tensor.requires_grad_}


def _is_probe(t) -> bool:
    return isinstance(t, torch.Tensor) and t.dim() > 0 and t.numel() > 1 and all(st == 0 for st in t.stride())


class ShapeProbe(torch.overrides.TorchFunctionMode):
    """While a module is built only to learn its tensors' names and shapes: ``torch.randn``,
    ``rand``, ``empty``, ``zeros``, ``ones`` and ``full`` give a zero-stride view of one element
    with the asked shape, and elementwise arithmetic or in-place initialisation on such views gives
    views again — so a configuration declaring 10^12 values builds in no memory. Cheaper than the
    ``meta`` device, whose first arithmetic imports torch's Python meta kernels (seconds). Ops it
    does not know run as usual (``fallbacks`` lists them; the tests keep it empty for every
    architecture)."""

    def __init__(self):
        super().__init__()
        self.fallbacks = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in _FACTORIES:
            size = kwargs.get("size", args[0] if args else ())
            if func is not torch.full and not (len(args) == 1 and isinstance(args[0], (tuple, list, torch.Size))) \
                    and "size" not in kwargs:
                size = args
            size = tuple(int(x) for x in size)
            if any(x < 0 for x in size):
                raise ValueError(f"negative dimension in {list(size)}")
            dtype = kwargs.get("dtype") or torch.get_default_dtype()
            return torch.zeros((), dtype=dtype).expand(size)
        if func in (torch.empty_like, torch.zeros_like, torch.ones_like, torch.randn_like, torch.rand_like) \
                and _is_probe(args[0] if args else None):
            return torch.zeros((), dtype=kwargs.get("dtype") or args[0].dtype).expand(args[0].shape)
        probes = [a for a in list(args) + list(kwargs.values()) if _is_probe(a)]
        if probes:
            name = getattr(func, "__name__", "")
            first = args[0] if args else kwargs.get("tensor", kwargs.get("input"))
            if _is_probe(first) and (func in _IN_PLACE or (name.endswith("_") and not name.startswith("__"))):
                return first              # in-place initialisation (Tensor.*_, nn.init.*_) of a probe: a no-op
            if func in _ELEMENTWISE:
                shapes = [a.shape for a in list(args) + list(kwargs.values()) if isinstance(a, torch.Tensor)]
                return torch.zeros((), dtype=probes[0].dtype).expand(_broadcast(*shapes))
            out = func(*args, **kwargs)
            if isinstance(out, torch.Tensor) and not _is_probe(out) and out.numel() > 4096:
                self.fallbacks.append(getattr(func, "__name__", str(func)))    # materialised a probe-sized tensor
            return out
        return func(*args, **kwargs)


def _broadcast(*shapes) -> tuple:
    """NumPy broadcasting of shapes in plain Python (``torch.broadcast_shapes`` imports sympy on its
    first call: ~0.3 s of a fresh process's first load)."""
    n = max(len(s) for s in shapes)
    out = []
    for dims in zip(*[(1,) * (n - len(s)) + tuple(s) for s in shapes]):
        big = {int(d) for d in dims if d != 1}
        if len(big) > 1:
            raise ValueError(f"shapes {[list(s) for s in shapes]} do not broadcast")
        out.append(big.pop() if big else 1)
    return tuple(out)


class _NoRandomInit(torch.overrides.TorchFunctionMode):
    """While a module whose every parameter and persistent buffer the file provides is built:
    ``torch.randn``/``rand`` (and their ``_like``) give uninitialised tensors (``torch.empty``), so
    building a large generator costs neither random-number time nor touched memory pages (the
    file's tensors are then assigned in their place). Thread-local, like every torch function mode."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in (torch.randn, torch.rand):
            size = args[0] if len(args) == 1 and isinstance(args[0], (tuple, list, torch.Size)) else args
            return torch.empty(*size, **{k: v for k, v in kwargs.items() if k in ("dtype", "device", "requires_grad")})
        if func in (torch.randn_like, torch.rand_like):
            return torch.empty_like(args[0])
        return func(*args, **kwargs)


def _check_names_and_shapes(own: dict, sd: dict, what: str):
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
        t = sd[k]
        if not isinstance(t, torch.Tensor):
            raise LatentAtlasError(f"{what}: entry {k} is a {type(t).__name__}, not a tensor")
        if tuple(t.shape) != tuple(v.shape):
            raise LatentAtlasError(f"{what}: shape mismatch for {k}: file has {list(t.shape)}, "
                                   f"model expects {list(v.shape)}")


def load_state(module: torch.nn.Module, sd: dict, what: str, assign: bool = False):
    """Strict state-dict load with an error that names missing/unexpected keys, shape mismatches
    (both shapes) and non-finite tensors. ``assign``: the file's tensors become the module's
    (no second copy) where their dtypes and devices all match; else they are copied."""
    own = module.state_dict()
    _check_names_and_shapes(own, sd, what)
    for k in own:
        t = sd[k]
        # one pass without a mask: a NaN or infinity anywhere makes the float64 sum non-finite (a
        # finite float32 tensor cannot overflow a float64 sum); the exact check only then
        if t.is_floating_point() and not torch.isfinite(t.sum(dtype=torch.float64)) and not torch.isfinite(t).all():
            raise LatentAtlasError(f"{what}: tensor {k} holds NaN or infinite values")
    if assign and all(sd[k].dtype == v.dtype and sd[k].device == v.device for k, v in own.items()):
        # the file's tensor itself where its layout is the module's; a copy in the module's layout
        # (e.g. channels-last convolution weights) where it is not
        module.load_state_dict({k: sd[k] if sd[k].stride() == v.stride() or v.numel() <= 1 else
                                torch.empty_strided(v.shape, v.stride(), dtype=v.dtype).copy_(sd[k])
                                for k, v in own.items()}, assign=True)
    else:
        module.load_state_dict(sd)
