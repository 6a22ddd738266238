"""How much memory an inversion holds per image, measured before it starts, and the batch that fits.

An inversion step keeps, for its backward pass, every tensor autograd saves in the forward pass
(synthesis of the codes, the perceptual network on the images). :func:`probe` counts exactly
those — with ``torch.autograd.graph.saved_tensors_hooks``, each storage once, the model's own
weights left out — for one forward pass at batch 1 and at batch 2: their difference is the cost
of one more image, the rest the batch-independent part. Nothing is modelled from layer sizes, so
the figure holds for any architecture. :func:`fit_batch` turns it into the largest batch that
fits a memory limit (``invert --max-memory``, default half of what is free).
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import LatentAtlasError
from ..metrics.perceptual import perceptual_fn


@dataclass
class MemoryProbe:
    per_image: int         # bytes one more image adds (saved activations of its forward pass)
    fixed: int             # bytes a batch holds whatever its size (saved tensors that do not grow with it)

    def batch_bytes(self, n: int) -> int:
        return self.fixed + n * self.per_image


def _saved_bytes(model, n: int, cfg, per_block: dict | None = None) -> int:
    weights = {p.untyped_storage().data_ptr() for p in list(model.G.parameters()) + list(model.G.buffers())}
    if model.D is not None:
        weights |= {p.untyped_storage().data_ptr() for p in list(model.D.parameters()) + list(model.D.buffers())}
    seen: dict = {}
    current = [None]
    hooks = []
    if per_block is not None:          # which synthesis block each saved tensor belongs to
        for name, blk in model.G.synthesis.named_children():
            hooks.append(blk.register_forward_pre_hook(lambda _m, _a, k=name: current.__setitem__(0, k)))
            hooks.append(blk.register_forward_hook(lambda _m, _a, _o: current.__setitem__(0, None)))

    def pack(t):
        s = t.untyped_storage()
        if s.data_ptr() not in weights:
            seen[s.data_ptr()] = s.nbytes()
            if per_block is not None and current[0] is not None:
                per_block[current[0]] = per_block.get(current[0], 0) + s.nbytes()
        return t
    z = model.sample_z(n, 0)
    perc = perceptual_fn(cfg.perceptual, model) if cfg.perceptual != "none" and cfg.perceptual_weight > 0 else None
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        if model.has_mapping and cfg.space != "z":
            with torch.no_grad():
                ws = model.broadcast(model.mapping(z))
            img = model.synthesis(ws.requires_grad_(True))
        else:
            img = model(z.requires_grad_(True))
        if perc is not None:
            perc(img, img.detach())
    for h in hooks:
        h.remove()
    return sum(seen.values())


def probe(model, cfg) -> MemoryProbe:
    """The memory an inversion under ``cfg`` holds per image and per batch (one forward pass at
    batch 1 and 2 with autograd's saved tensors counted). With activation checkpointing on, the
    block inputs it keeps plus the largest block's activations, which its backward pass
    recomputes and holds while it runs."""
    syn = getattr(model.G, "synthesis", None)
    if getattr(syn, "checkpoint_blocks", False):
        model.set_checkpointing(False)
        b1, b2 = {}, {}
        _saved_bytes(model, 1, cfg, b1)
        _saved_bytes(model, 2, cfg, b2)
        model.set_checkpointing(True)
        block = max(((b2.get(k, 0) - v, v) for k, v in b1.items()), default=(0, 0))
    else:
        block = (0, 0)
    one, two = _saved_bytes(model, 1, cfg), _saved_bytes(model, 2, cfg)
    per = max(two - one, 1)
    return MemoryProbe(per_image=per + block[0], fixed=max(one - per, 0) + max(block[1] - block[0], 0))


def available_bytes(device) -> int:
    """Memory free for a new allocation on ``device``: the GPU's free memory, else the machine's
    MemAvailable (/proc/meminfo), else the total RAM."""
    device = torch.device(device)
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    try:
        text = Path("/proc/meminfo").read_text()
        m = re.search(r"^MemAvailable:\s+(\d+) kB", text, re.M)
        if m:
            return int(m.group(1)) * 1024
    except OSError:
        pass
    return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))


_UNITS = {"": 1, "B": 1, "K": 2 ** 10, "M": 2 ** 20, "G": 2 ** 30, "T": 2 ** 40}


def parse_size(text: str) -> int:
    """'8G', '500M', '1.5G', '123456' (bytes) -> bytes."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(?:i?B)?\s*", str(text), re.I)
    if not m:
        raise LatentAtlasError(f"--max-memory {text!r}: expected a size like 8G, 500M or 1.5G")
    value = float(m.group(1)) * _UNITS[m.group(2).upper()]
    if not 0 < value < 2 ** 50:
        raise LatentAtlasError(f"--max-memory {text!r}: must be more than 0 and less than 1 PiB")
    return int(value)


def fit_batch(mem: MemoryProbe, limit: int, requested: int) -> int:
    """The largest batch up to ``requested`` whose saved tensors fit ``limit`` bytes; refused in one
    line when not even one image fits."""
    if mem.batch_bytes(1) > limit:
        raise LatentAtlasError(f"one image needs ~{human(mem.batch_bytes(1))} for its backward pass, more than the "
                               f"{human(limit)} allowed (--max-memory; activation checkpointing is not implemented)")
    return max(1, min(requested, (limit - mem.fixed) // mem.per_image))


def human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"
