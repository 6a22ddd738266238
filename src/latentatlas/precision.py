"""The precision policy: the one place that decides in which number format latentatlas computes.

``resolve(requested, device)`` turns ``auto | fp32 | bf16 | fp16`` into a :class:`Precision`:

* ``auto``: bf16 where the device runs it natively — a CPU with AMX-BF16 or AVX512-BF16 (read
  from ``/proc/cpuinfo``), a CUDA GPU of compute capability 8.0 or newer —, fp16 (with fp32
  accumulation, which autocast gives) on older CUDA GPUs and on Apple's MPS, fp32 elsewhere.
* ``fp32`` / ``bf16`` / ``fp16``: as asked (fp16 on a CPU is allowed but slow; said in ``reason``).

How it is applied (``models.interface.GANModel``): the generator's synthesis and the
discriminator run from a copy of their weights cast once to the low precision (channels-last on
the CPU, as the fp32 weights are). On a ``paper256``-config StyleGAN2, one core, batch 8
(``bench/bench_precision.py``), sampling ran 2.4x and a W+ inversion step 2.3x faster than fp32;
``torch.autocast`` over the fp32 weights had given 1.35x (1.95x channels-last) in a first
prototype -- autocast casts every weight on every call, and the elementwise ops between the
convolutions dominate once the convolutions are fast (``--compile`` fuses them: 3.4x). The fp32
weights stay the model's weights (``weights_hash`` is theirs); every tensor handed back to the
rest of the library is fp32. What must stay fp32 is named in ``FP32_ISLANDS``, each with where it
is kept; every output records ``Precision.record()``.
"""
from __future__ import annotations

import functools
import platform
from dataclasses import dataclass
from pathlib import Path

import torch

from .errors import LatentAtlasError

CHOICES = ("auto", "fp32", "bf16", "fp16")
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}

# What never runs in low precision, and where that is kept (tests/test_precision.py checks each).
FP32_ISLANDS = {
    "optimised latents and their Adam state": "inversion and walks keep their leaf tensors and optimisers fp32; "
                                              "GANModel casts a copy of the input for the low-precision network",
    "the mapping network and every statistic of W/P": "GANModel.mapping runs on the fp32 weights: w_avg, "
                                                      "P-space moments (float64), atlas fits and mixtures see fp32 w",
    "images and features handed back": "GANModel casts synthesis, score and feature outputs to fp32, so losses, "
                                       "metrics' feature accumulation, FID's covariance and sqrtm are fp32/float64",
    "StyleGAN3's Fourier-feature input": "models.stylegan3 computes the input's geometry, phases and sin() in "
                                          "fp32 (phases grow with frequency x position; bf16 would lose them)",
    "StyleSpace statistics": "walks.stylespace reads the style channels of the fp32 network (their means and "
                             "spreads rank the channels and set the unit of a channel edit)",
    "pivotal tuning": "inversion.refine tunes per-image deltas of the fp32 synthesis weights (refused at another "
                      "precision)",
    "PPL's epsilon-differences": "metrics.ppl renders its t and t+eps images with the model in fp32 (a 1e-4 step is "
                                 "below bf16's resolution of the latent)",
}


@dataclass(frozen=True)
class Precision:
    name: str                 # fp32 | bf16 | fp16: what computation runs in
    requested: str            # what was asked (auto | fp32 | bf16 | fp16)
    device_type: str          # cpu | cuda | mps
    reason: str               # why this choice, in words

    @property
    def dtype(self) -> torch.dtype:
        return DTYPES[self.name]

    @property
    def low(self) -> bool:
        return self.name != "fp32"

    def record(self) -> dict:
        """What every output records."""
        return {"precision": self.name, "requested": self.requested, "reason": self.reason}


@functools.lru_cache(maxsize=1)
def cpu_flags() -> frozenset:
    """The CPU's feature flags (Linux ``/proc/cpuinfo``; empty elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def native_bf16(device: torch.device | str) -> tuple[bool, str]:
    """Whether ``device`` computes bf16 natively, and what says so."""
    dev = torch.device(device)
    if dev.type == "cuda":
        major, minor = torch.cuda.get_device_capability(dev)
        return major >= 8, f"CUDA compute capability {major}.{minor}"
    if dev.type == "cpu":
        have = sorted(cpu_flags() & {"amx_bf16", "avx512_bf16"})
        return bool(have), (f"CPU with {', '.join(have)}" if have else f"CPU ({platform.machine()}) without "
                            "AMX-BF16 or AVX512-BF16")
    return False, f"{dev.type} device"


def resolve(requested: str, device: torch.device | str) -> Precision:
    """The precision a computation on ``device`` runs at for the ``requested`` policy."""
    if requested not in CHOICES:
        raise LatentAtlasError(f"unknown precision {requested!r}; choose from {', '.join(CHOICES)}")
    dev = torch.device(device)
    native, why = native_bf16(dev)
    if requested == "auto":
        if native:
            return Precision("bf16", requested, dev.type, f"auto: bf16 is native here ({why})")
        if dev.type in ("cuda", "mps"):
            return Precision("fp16", requested, dev.type, f"auto: fp16 with fp32 accumulation ({why}, no native bf16)")
        return Precision("fp32", requested, dev.type, f"auto: fp32 ({why})")
    if requested == "fp32":
        return Precision("fp32", requested, dev.type, "fp32 as asked")
    if dev.type == "mps" and requested == "bf16":
        raise LatentAtlasError("--precision bf16 is not available on MPS; use fp16 or auto")
    note = "" if requested == "fp16" or native else f" (not native here: {why}; it runs, more slowly)"
    if requested == "fp16" and dev.type == "cpu":
        note = " (fp16 on a CPU is emulated and slow; bf16 or fp32 is faster)"
    return Precision(requested, requested, dev.type, f"{requested} as asked{note}")


def cast_in(precision: Precision, t):
    """A floating tensor (or a tuple/list of them) in ``precision``'s compute dtype; anything
    else unchanged. What a model does to its inputs before a low-precision network."""
    if isinstance(t, (tuple, list)):
        return type(t)(cast_in(precision, x) for x in t)
    if isinstance(t, torch.Tensor) and t.is_floating_point() and precision.low:
        return t.to(precision.dtype)
    return t


def cast_out(t):
    """Back to fp32: what every caller of a model receives."""
    if isinstance(t, (tuple, list)):
        return type(t)(cast_out(x) for x in t)
    if isinstance(t, torch.Tensor) and t.is_floating_point() and t.dtype != torch.float32:
        return t.float()
    return t
