"""Batched, regularised GAN inversion (Wulff & Torralba, Diamond in the rough, II2S; METHODS.md §1, §3.1, §5).

One engine embeds a batch of target images into a chosen space:

* ``z`` — the Gaussian input (on the √n-sphere with the ``sphere`` regulariser: Diamond's
  recovery), for any model;
* ``w`` — one w per image (StyleGAN2-projector-like); ``wplus`` — one w per layer (I2S);
* ``pnorm+`` — optimise P-norm+ coordinates directly (II2S's P_N+ optimisation).

Losses and regularisers are registered by name and weighted in the frozen
:class:`InversionConfig`. Every image of the batch carries its own optimiser state (a
vectorised Adam with a per-image learning rate), its own schedule and its own early stop: a
converged image is frozen while the rest continue. Losses are per image and the
discriminator's minibatch-std sees each image alone, so a result does not depend on which other
images share the batch.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from ..atlas import get_atlas
from ..errors import LatentAtlasError
from ..metrics.perceptual import FeatureDistance, perceptual_fn
from ..metrics.reconstruction import psnr
from .inits import make_starts, parse_init
from .memory import available_bytes, fit_batch
from .memory import probe as memory_probe

SPACES = ("z", "w", "wplus", "pnorm+")
# name -> (default value, what the value means, what the regulariser does): the one table the
# parser, the CLI help and the docs read
REGULARIZER_TABLE = {
    "none": (0.0, "-", "no regulariser"),
    "pnorm-clip": (2.0, "c", "II2S: clip every P-norm+ coordinate to [-c, c] after each step"),
    "pnorm-project": (5.0, "r", "II2S: after each step, project each P-norm dimension's vector over the W+ "
                                "rows onto the sphere of radius r"),
    "pnorm-l2": (1e-5, "weight", "II2S: add weight x squared norm of the P-norm+ coordinates to the loss"),
    "mahalanobis": (1e-5, "weight", "add weight x squared Mahalanobis distance in P (the same penalty as pnorm-l2)"),
    "sphere": (1.0, "weight", "Diamond in the rough (z only): add weight x | |z| - sqrt(dim z) |"),
}
REGULARIZERS = tuple(REGULARIZER_TABLE)
PERCEPTUAL = ("discriminator", "fashion-features", "lpips", "none")


log = logging.getLogger("latentatlas")


def _reads_pnorm(space: str, regularizer: str) -> bool:
    """The P-norm+ space and the P-norm / Mahalanobis regularisers read the atlas's P-norm statistics."""
    return space == "pnorm+" or regularizer.startswith("pnorm") or regularizer == "mahalanobis"


@dataclass(frozen=True)
class InversionConfig:
    space: str = "wplus"                  # z | w | wplus | pnorm+
    steps: int = 1200                     # maximum optimisation steps per image
    lr: float = 0.01                      # Adam learning rate (II2S, Diamond in the rough: 0.01)
    lr_rampup: float = 0.05               # linear warm-up over this share of the steps
    lr_rampdown: float = 0.25             # cosine ramp-down over this final share
    pixel_loss: str = "mse"               # mse | l1
    pixel_weight: float = 1.0
    working_resolution: int | None = None  # compare images at this size (None = model size)
    resample_filter: str = "bicubic"      # bicubic | bilinear | area (antialiased downsampling)
    perceptual: str = "discriminator"     # discriminator | fashion-features | lpips | none
    perceptual_weight: float = 0.1
    regularizer: str = "none"             # none | pnorm-clip | pnorm-project | pnorm-l2 | mahalanobis | sphere
    reg_value: float = 0.0                # c for clip (2), r for project (5), weight for l2/mahalanobis/sphere
    init: str = "best-of:256"             # mean | best-of:N | multi-start:K[:N] | encoder[:PATH] (inversion.inits)
    warmup_steps: int = 100               # multi-start: steps all K starts run before the best is kept
    stop_psnr: float | None = None        # an image also stops once its reconstruction reaches this PSNR (dB)
    early_stop_patience: int = 100        # steps without relative improvement > tol before an image stops
    early_stop_tol: float = 1e-3
    seed: int = 0

    def __post_init__(self):
        if self.space not in SPACES:
            raise LatentAtlasError(f"unknown space {self.space!r}; choose from {', '.join(SPACES)}")
        if self.regularizer not in REGULARIZERS:
            raise LatentAtlasError(f"unknown regularizer {self.regularizer!r}; choose from {', '.join(REGULARIZERS)}")
        if self.perceptual not in PERCEPTUAL:
            raise LatentAtlasError(f"unknown perceptual distance {self.perceptual!r}; choose from {', '.join(PERCEPTUAL)}")
        if self.pixel_loss not in ("mse", "l1"):
            raise LatentAtlasError(f"unknown pixel loss {self.pixel_loss!r} (mse or l1)")
        if self.steps < 1 or self.lr <= 0:
            raise LatentAtlasError("steps must be >= 1 and lr > 0")
        parse_init(self.init)
        if self.warmup_steps < 1:
            raise LatentAtlasError("warmup_steps must be >= 1")
        if self.regularizer == "pnorm-clip" and self.reg_value <= 0:
            raise LatentAtlasError("pnorm-clip needs a positive clip value c (e.g. 2)")
        if self.regularizer == "pnorm-project" and self.reg_value <= 0:
            raise LatentAtlasError("pnorm-project needs a positive radius r (e.g. 5)")
        if self.regularizer == "sphere" and self.space != "z":
            raise LatentAtlasError("the sphere regulariser applies to the z space only")

    def needs_atlas(self) -> str | None:
        """What this inversion cannot run without: 'pnorm' (the P-norm+ space, or a P-norm /
        Mahalanobis regulariser, reads the atlas's P-norm statistics), else None."""
        return "pnorm" if _reads_pnorm(self.space, self.regularizer) else None

    def reads_atlas(self) -> bool:
        """Whether an atlas changes this inversion: it needs one, or multi-start starts from the
        atlas's cluster centres when one is given."""
        return self.needs_atlas() is not None or parse_init(self.init)[0] == "multi-start"

    def to_dict(self) -> dict:
        """Every setting as a plain dict (recorded with each result and in the resume key)."""
        return dataclasses.asdict(self)

    @classmethod
    def parse_regularizer(cls, spec: str) -> tuple[str, float]:
        """'pnorm-clip:2' -> ('pnorm-clip', 2.0); 'none' -> ('none', 0.0)."""
        name, _, val = spec.partition(":")
        defaults = {k: v[0] for k, v in REGULARIZER_TABLE.items()}
        if name not in defaults:
            raise LatentAtlasError(f"unknown regularizer {name!r}; choose from {', '.join(defaults)}")
        try:
            value = float(val) if val else defaults[name]
        except ValueError:
            raise LatentAtlasError(f"regularizer value in {spec!r} is not a number") from None
        if not math.isfinite(value) or value < 0:
            raise LatentAtlasError(f"regularizer value in {spec!r} must be a finite number >= 0")
        return name, value


@dataclass
class InversionResult:
    config: InversionConfig
    codes: torch.Tensor                   # in the optimised space: [N, z], [N, D], [N, L, D] or [N, L, k]
    ws: torch.Tensor | None               # [N, L, D] W+ codes (None for z-only models)
    z: torch.Tensor | None                # [N, z_dim] for the z space
    images: torch.Tensor                  # reconstructions [N, C, H, W] in [-1, 1]
    steps_used: torch.Tensor              # [N]
    final_loss: torch.Tensor              # [N]
    seconds: float
    history: list = field(default_factory=list)   # mean loss every 10 steps
    init_labels: list = field(default_factory=list)   # [N] the start each result came from
    stop_reasons: list = field(default_factory=list)  # [N] budget | plateau | target
    frames: list = field(default_factory=list)        # [(step, images [N, C, H, W])] when asked (frames_every)

    @property
    def converged(self) -> list:
        """Per image: the optimisation stopped on its own (loss plateau or target PSNR reached)
        rather than running out of steps."""
        return [r != "budget" for r in self.stop_reasons]


# -- helpers ------------------------------------------------------------------------------------

def resize_to(x: torch.Tensor, size: int | None, mode: str) -> torch.Tensor:
    if size is None or x.shape[-1] == size:
        return x
    if mode == "area":
        return F.interpolate(x, size=(size, size), mode="area")
    return F.interpolate(x, size=(size, size), mode=mode, align_corners=False, antialias=True)


class ImageDistance:
    """The inversion's image term: pixel loss (MSE or L1 at the working resolution) plus the
    weighted perceptual distance, per image against fixed targets (``against``) or as a
    candidates-by-targets matrix (``matrix``, for choosing starts)."""

    def __init__(self, cfg: "InversionConfig", perc):
        self.cfg, self.perc = cfg, perc

    def _pix(self, x):
        return resize_to(x, self.cfg.working_resolution, self.cfg.resample_filter)

    def against(self, x):
        """d(y, idx=None): the image term of y against the targets x (or x[idx]) [len(y)]."""
        cfg, xr = self.cfg, self._pix(x)
        perc_to = None
        if self.perc is not None:
            perc_to = (self.perc.against(x) if isinstance(self.perc, FeatureDistance)
                       else (lambda a, idx=None: self.perc(a, x if idx is None else x[idx])))

        def d(y, idx=None):
            diff = (self._pix(y) - (xr if idx is None else xr[idx])).flatten(1)
            loss = cfg.pixel_weight * (diff.square().mean(1) if cfg.pixel_loss == "mse" else diff.abs().mean(1))
            return loss if perc_to is None else loss + cfg.perceptual_weight * perc_to(y, idx)
        return d

    @torch.no_grad()
    def matrix(self, cands, targets):
        cfg = self.cfg
        a, b = self._pix(cands).flatten(1).double(), self._pix(targets).flatten(1).double()
        p = 2 if cfg.pixel_loss == "mse" else 1
        d = cfg.pixel_weight * torch.cdist(b, a, p=p).pow(p) / a.shape[1]
        if self.perc is not None:
            if isinstance(self.perc, FeatureDistance):
                d = d + cfg.perceptual_weight * self.perc.matrix(cands, targets).double()
            else:
                d = d + cfg.perceptual_weight * torch.stack(
                    [self.perc(c.expand_as(targets), targets) for c in cands.unbind(0)], 1).double()
        return d.float()


class _Space:
    """The optimised variable and its map to images."""

    def __init__(self, model, cfg: InversionConfig, atlas, regularizers=None):
        self.model, self.cfg, self.atlas = model, cfg, atlas
        if cfg.space != "z":
            model.require_mapping(f"inversion in {cfg.space}")
        regs = regularizers or {cfg.regularizer}
        if atlas is None and any(_reads_pnorm(cfg.space, r) for r in regs):
            raise LatentAtlasError("this inversion reads the atlas's P-norm statistics: resolve it first "
                                   "(inversion.resolve_atlas) and pass atlas=")
        self.plus = self.atlas.pnorm_plus.to(model.device) if self.atlas is not None else None

    def to_ws(self, var):
        s = self.cfg.space
        if s == "z":
            return self.model.broadcast(self.model.mapping(var)) if self.model.has_mapping else None
        if s == "w":
            return self.model.broadcast(var)
        if s == "wplus":
            return var
        return self.plus.inverse_transform(var)

    def images(self, var):
        if self.cfg.space == "z":
            return self.model(var)
        return self.model.synthesis(self.to_ws(var))

    def pnorm_coords(self, var):
        """P-norm+ coordinates [N, L, k] of the current code (for regularisers)."""
        if self.cfg.space == "pnorm+":
            return var
        ws = self.to_ws(var)
        return self.plus.transform(ws)

    def from_pnorm(self, v, var):
        """Write P-norm+ coordinates back into the variable's space (after clip/project)."""
        s = self.cfg.space
        if s == "pnorm+":
            return v
        ws = self.plus.inverse_transform(v)
        if s == "wplus":
            return ws
        if s == "w":
            return ws.mean(1)        # rows are identical for a W code; averaging keeps it exact
        raise LatentAtlasError("P-norm+ constraints apply to w, wplus and pnorm+ spaces")


def _schedule(t: torch.Tensor, total: int, rampup: float, rampdown: float) -> torch.Tensor:
    """Per-image learning-rate factor at step t ([N] ints)."""
    frac = t.float() / max(total, 1)
    down = torch.where(frac > 1 - rampdown, 0.5 - 0.5 * torch.cos(math.pi * (1 - frac) / max(rampdown, 1e-8)),
                       torch.ones_like(frac))
    up = torch.clamp(frac / max(rampup, 1e-8), max=1.0) if rampup > 0 else torch.ones_like(frac)
    return torch.minimum(down, up).clamp_min(0.0)


# -- the engine ---------------------------------------------------------------------------------

class _Adam:
    """Vectorised Adam with a per-image step counter, learning-rate schedule and early stop; rows
    can be selected (multi-start keeps each target's winning start with its optimiser state)."""

    B1, B2, EPS = 0.9, 0.999, 1e-8

    def __init__(self, var: torch.Tensor):
        n = var.shape[0]
        self.m, self.v = torch.zeros_like(var), torch.zeros_like(var)
        dev = var.device
        self.t = torch.zeros(n, dtype=torch.long, device=dev)
        self.active = torch.ones(n, dtype=torch.bool, device=dev)
        self.best = torch.full((n,), float("inf"), device=dev)
        self.since = torch.zeros(n, dtype=torch.long, device=dev)
        self.final = torch.zeros(n, device=dev)
        self.reason = torch.zeros(n, dtype=torch.long, device=dev)     # 0 budget, 1 plateau, 2 target
        self.shape = (-1,) + (1,) * (var.ndim - 1)

    def select(self, idx: torch.Tensor):
        for k in ("m", "v", "t", "active", "best", "since", "final", "reason"):
            setattr(self, k, getattr(self, k)[idx])

    @torch.no_grad()
    def step(self, var, grad, loss, cfg: "InversionConfig", reached=None):
        a_mask = self.active
        self.final = torch.where(a_mask, loss, self.final)
        self.t = self.t + a_mask.long()
        a = a_mask.reshape(self.shape).float()
        self.m.mul_(1 - a * (1 - self.B1)).add_(a * (1 - self.B1) * grad)
        self.v.mul_(1 - a * (1 - self.B2)).add_(a * (1 - self.B2) * grad.square())
        tt = self.t.clamp_min(1).float().reshape(self.shape)
        mhat = self.m / (1 - self.B1 ** tt)
        vhat = self.v / (1 - self.B2 ** tt)
        lr = cfg.lr * _schedule(self.t, cfg.steps, cfg.lr_rampup, cfg.lr_rampdown).reshape(self.shape) * a
        var -= lr * mhat / (vhat.sqrt() + self.EPS)
        improved = loss < self.best * (1 - cfg.early_stop_tol)
        self.best = torch.where(improved, loss, torch.minimum(self.best, loss))
        self.since = torch.where(improved, torch.zeros_like(self.since), self.since + 1)
        plateau = a_mask & (self.since >= cfg.early_stop_patience)
        self.reason = torch.where(plateau, torch.ones_like(self.reason), self.reason)
        self.active = a_mask & ~plateau
        if reached is not None:
            hit = self.active & reached
            self.reason = torch.where(hit, torch.full_like(self.reason, 2), self.reason)
            self.active &= ~reached


STOP_REASONS = ("budget", "plateau", "target")


class _RowRegs:
    """The regulariser of every optimised row, for a group of configurations that differ only in
    it (``invert_many``): per group, the weight of the additive P-norm term (pnorm-l2,
    mahalanobis), of the sphere term, the clip value (inf: none) and the projection radius (0:
    none); indexed by each row's group."""

    def __init__(self, cfgs, device):
        def per(fn):
            return torch.tensor([fn(c) for c in cfgs], dtype=torch.float32, device=device)
        self.add = per(lambda c: c.reg_value if c.regularizer in ("pnorm-l2", "mahalanobis") else 0.0)
        self.sphere = per(lambda c: c.reg_value if c.regularizer == "sphere" else 0.0)
        self.clip = per(lambda c: c.reg_value if c.regularizer == "pnorm-clip" else float("inf"))
        self.proj = per(lambda c: c.reg_value if c.regularizer == "pnorm-project" else 0.0)
        self.any_add, self.any_sphere = bool(self.add.any()), bool(self.sphere.any())
        self.any_clip, self.any_proj = bool(torch.isfinite(self.clip).any()), bool(self.proj.any())

    def penalty(self, sp: "_Space", v: torch.Tensor, group: torch.Tensor) -> torch.Tensor | None:
        """The additive regulariser of rows ``v`` (in groups ``group``) [len(v)], or None."""
        out = None
        if self.any_add:
            out = self.add[group] * sp.pnorm_coords(v).square().flatten(1).sum(1)
        if self.any_sphere:
            t = self.sphere[group] * (v.norm(dim=1) - math.sqrt(sp.model.z_dim)).abs()
            out = t if out is None else out + t
        return out

    def constrain(self, sp: "_Space", var: torch.Tensor, group: torch.Tensor) -> torch.Tensor:
        """Projection regularisers applied after every step (II2S): clip P-norm+ coordinates to
        [−c, c]; or project each P-norm dimension's num_ws-vector onto the sphere of radius r."""
        if self.any_clip:
            c = self.clip[group]
            rows = torch.isfinite(c).nonzero().flatten()
            v = sp.pnorm_coords(var[rows])
            cc = c[rows].reshape(-1, *(1,) * (v.ndim - 1))
            v = torch.maximum(torch.minimum(v, cc), -cc)
            var = var.index_copy(0, rows, sp.from_pnorm(v, var[rows]).to(var.dtype))
        if self.any_proj:
            r = self.proj[group]
            rows = (r > 0).nonzero().flatten()
            v = sp.pnorm_coords(var[rows])                                         # [n, L, k]
            v = v / v.norm(dim=1, keepdim=True).clamp_min(1e-8) * r[rows].reshape(-1, 1, 1)
            var = var.index_copy(0, rows, sp.from_pnorm(v, var[rows]).to(var.dtype))
        return var


def _shared_settings(cfg: InversionConfig) -> dict:
    """Every setting but the regulariser: configurations equal here can share one batch."""
    return {k: v for k, v in cfg.to_dict().items() if k not in ("regularizer", "reg_value")}


def resolve_atlas(model, cfgs, atlas=None, *, progress: bool = False):
    """The atlas for inverting under ``cfgs``, resolved once at an entry point and handed down:
    the given one, else the cached one (fitted once, with a notice) when a configuration needs it,
    else None. The engine itself never fits one."""
    if atlas is not None or not any(c.needs_atlas() for c in cfgs):
        return atlas
    return get_atlas(model, need="pnorm", progress=progress)


def invert(model, targets: torch.Tensor, cfg: InversionConfig = InversionConfig(), *, atlas=None,
           progress: bool = False, callback=None, frames_every: int = 0) -> InversionResult:
    """Embed ``targets`` [N, C, H, W] in [-1, 1] (the model's channels and resolution).

    ``callback(step, loss [N], active [N])`` runs after every step. ``frames_every`` > 0 records the
    reconstruction of every image every that many steps (an image that stopped keeps its last
    one; during a multi-start warm-up the start with the lowest loss so far) in
    ``result.frames``, for a video of the optimisation; it does not change the result."""
    atlas = resolve_atlas(model, [cfg], atlas)
    return _engine(model, targets, [cfg], atlas=atlas, progress=progress, callback=callback,
                   frames_every=frames_every)[0]


def invert_many(model, targets: torch.Tensor, cfgs: list, *, atlas=None, progress: bool = False) -> list:
    """``invert`` of the same targets under several configurations, in their order. Those that
    differ only in their regulariser (name and value) run as one batch: the starts are chosen
    once, and every row keeps its own regulariser, optimiser state and early stop, so each result
    is the one ``invert`` gives for its configuration with the same ``atlas`` (bit for bit on
    CPU) — at a larger batch, which a 2-core CPU runs ~1.5x faster per image and step at 16
    targets. When one configuration of a batch needs the atlas, the others' best-of starts also
    draw on its cluster centres, as ``invert(..., atlas=...)`` does. Each result's ``seconds`` is
    its share of its batch's wall time."""
    atlas = resolve_atlas(model, cfgs, atlas)
    groups: dict = {}
    for i, c in enumerate(cfgs):
        key = json.dumps(_shared_settings(c), sort_keys=True, default=str)
        groups.setdefault(key, []).append(i)
    out = [None] * len(cfgs)
    for idx in groups.values():
        group = [cfgs[i] for i in idx]
        per = _targets_per_batch(model, group, targets.shape[0])
        parts = [_engine(model, targets[a:a + per], group, atlas=atlas, progress=progress)
                 for a in range(0, targets.shape[0], per)]
        for j, i in enumerate(idx):
            out[i] = parts[0][j] if len(parts) == 1 else _joined([p[j] for p in parts])
    return out


BACKWARD_FACTOR = 8      # an image with its graph for a backward pass holds ~8x a plain pass's memory (inversion.memory)


def _targets_per_batch(model, group: list, n: int) -> int:
    """How many targets one batch of ``group`` (len(group) rows per target) takes: all of them
    unless the rows' backward pass would hold more than half the free memory (measured by
    ``inversion.memory.probe`` only when the rows exceed ``max_batch / BACKWARD_FACTOR``: a 256-px
    model's report inverted 6 x 5 W+ rows at once and peaked at 19 GB). The perceptual features of
    a minibatch-std critic see their batch, so a cut batch's results differ in the last digits."""
    rows = len(group) * n
    if rows <= max(1, model.max_batch() // BACKWARD_FACTOR):
        return n
    fits = fit_batch(memory_probe(model, group[0]), available_bytes(model.device) // 2, rows)
    per = max(1, fits // len(group))
    if per < n:
        log.info("inverting %d targets x %d configurations in batches of %d targets (the memory of their backward "
                 "pass)", n, len(group), per)
    return min(n, per)


def _joined(parts: list) -> "InversionResult":
    """One configuration's results of consecutive target batches as one result."""
    cat = (lambda xs: None if xs[0] is None else torch.cat(xs))
    first = parts[0]
    return dataclasses.replace(
        first, codes=cat([p.codes for p in parts]), ws=cat([p.ws for p in parts]), z=cat([p.z for p in parts]),
        images=cat([p.images for p in parts]), steps_used=cat([p.steps_used for p in parts]),
        final_loss=cat([p.final_loss for p in parts]), seconds=sum(p.seconds for p in parts),
        history=[h for p in parts for h in p.history], init_labels=[x for p in parts for x in p.init_labels],
        stop_reasons=[x for p in parts for x in p.stop_reasons], frames=[])


def _engine(model, targets, cfgs, *, atlas=None, progress=False, callback=None, frames_every=0) -> list:
    from tqdm import tqdm

    if not cfgs:
        raise LatentAtlasError("no inversion configuration given")
    cfg = cfgs[0]
    shared = _shared_settings(cfg)
    for c in cfgs[1:]:
        if _shared_settings(c) != shared:
            raise LatentAtlasError("inverting as one group needs configurations that differ only in "
                                   "regularizer and reg_value")
    if targets.ndim != 4 or targets.shape[1] != model.img_channels or targets.shape[-1] != model.img_resolution:
        raise LatentAtlasError(f"targets must be [N, {model.img_channels}, {model.img_resolution}, "
                               f"{model.img_resolution}], got {list(targets.shape)}")
    if not torch.isfinite(targets).all():
        raise LatentAtlasError("target images contain NaN or infinite values")
    t0 = time.perf_counter()
    G = len(cfgs)
    x0 = targets.to(model.device).float()
    N0 = x0.shape[0]
    sp = _Space(model, cfg, atlas, {c.regularizer for c in cfgs})
    regs = _RowRegs(cfgs, model.device)
    perc = perceptual_fn(cfg.perceptual, model) if cfg.perceptual_weight > 0 else None
    dist = ImageDistance(cfg, perc)
    starts = make_starts(sp, x0, dist)                 # the same for every configuration of the group
    K = starts.codes.shape[1]
    # rows: group-major, then target, then start: row (g * N0 + i) * K + k
    x = x0.repeat(G, *(1,) * (x0.ndim - 1))
    N = x.shape[0]
    group = torch.arange(G, device=model.device).repeat_interleave(N0 * K)
    history: list = []
    frames: list = []
    shown: dict = {}             # the latest rendering per optimised row, for frames
    bar = tqdm(total=cfg.steps, disable=not progress, desc="invert", leave=False)

    def snap(step, y, idx, loss, k):
        """Record a frame: per image, the latest rendering (of its best start when k > 1)."""
        if "rows" not in shown:
            shown["rows"] = torch.zeros(loss.shape[0], *y.shape[1:])
        shown["rows"][idx.cpu()] = y.detach().clamp(-1, 1).cpu()
        if step % frames_every == 0:
            best = loss.reshape(-1, k).argmin(1).cpu() + torch.arange(loss.shape[0] // k) * k
            frames.append((step, shown["rows"][best].clone()))

    def run(var, opt, xs, first, last):
        """Optimise ``var`` against ``xs`` from step ``first`` to ``last`` (exclusive)."""
        image_loss = dist.against(xs)

        def per_image_loss(v, idx=None):
            y = sp.images(v)
            loss = image_loss(y, idx)
            pen = regs.penalty(sp, v, group if idx is None else group[idx])
            return (loss if pen is None else loss + pen), y

        for step in range(first, last):
            if not opt.active.any():
                break
            # only the images still optimised are rendered (losses are per image, so this is exact)
            idx = opt.active.nonzero().flatten()
            sub = var[idx].detach().requires_grad_(True)
            loss_a, y = per_image_loss(sub, idx)
            grad_a, = torch.autograd.grad(loss_a.sum(), sub)
            grad = torch.zeros_like(var).index_copy_(0, idx, grad_a)
            loss = opt.final.clone().index_copy_(0, idx, loss_a.detach())
            reached = None
            if cfg.stop_psnr is not None:
                reached = torch.zeros_like(opt.active).index_copy_(
                    0, idx, psnr(y.detach().clamp(-1, 1), xs[idx]) >= cfg.stop_psnr)
            var = var.detach()
            opt.step(var, grad, loss, cfg, reached)
            var = regs.constrain(sp, var, group)
            if step % 10 == 0:
                history.append((loss.detach().cpu(), group.cpu()))
            if callback is not None:
                callback(step, loss.detach(), opt.active)
            if frames_every:
                snap(step, y, idx, loss.detach(), loss.shape[0] // N)
            bar.update(1)
        return var.detach(), per_image_loss

    var = regs.constrain(sp, starts.codes.repeat(G, *(1,) * (starts.codes.ndim - 1)).flatten(0, 1).detach().clone(),
                         group)
    opt = _Adam(var)
    labels = [row[0] for row in starts.labels] * G
    first = 0
    if parse_init(cfg.init)[0] == "multi-start":
        warm = min(cfg.warmup_steps, cfg.steps)
        var, loss_fn = run(var, opt, x.repeat_interleave(K, 0), 0, warm)
        with torch.no_grad():
            cur = loss_fn(var)[0].reshape(N, K)
        win = cur.argmin(1)
        idx = torch.arange(N, device=var.device) * K + win
        var = var[idx].clone()
        opt.select(idx)
        group = group[idx]
        if "rows" in shown:
            shown["rows"] = shown["rows"][idx.cpu()]
        labels = [starts.labels[i % N0][k] for i, k in enumerate(win.tolist())]
        first = warm
    var, loss_fn = run(var, opt, x, first, cfg.steps)
    bar.close()
    with torch.no_grad():
        images = sp.images(var).clamp(-1, 1).cpu()
        ws = sp.to_ws(var)
        ws = ws.cpu() if ws is not None else None
        final_loss, _ = loss_fn(var)
    var, final_loss, steps_used = var.cpu(), final_loss.cpu(), opt.t.cpu()
    reasons = [STOP_REASONS[r] for r in opt.reason.tolist()]
    if frames_every:
        frames.append((int(opt.t.max()), images))
    seconds = (time.perf_counter() - t0) / G
    out = []
    for g, c in enumerate(cfgs):
        sl = slice(g * N0, (g + 1) * N0)
        out.append(InversionResult(c, var[sl], ws[sl] if ws is not None else None, var[sl] if c.space == "z" else None,
                                   images[sl], steps_used[sl], final_loss[sl], seconds,
                                   [float(h[hg == g].mean()) for h, hg in history], labels[sl],
                                   reasons[sl], frames if G == 1 else []))
    return out


def config_json(cfg: InversionConfig) -> str:
    return json.dumps(cfg.to_dict(), sort_keys=True)
