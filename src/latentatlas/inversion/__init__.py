"""Batched, regularised GAN inversion (seeds 000, 002, 003; METHODS.md §1, §3.1, §5).

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

from ..errors import LatentAtlasError

SPACES = ("z", "w", "wplus", "pnorm+")
REGULARIZERS = ("none", "pnorm-clip", "pnorm-project", "pnorm-l2", "mahalanobis", "sphere")
PERCEPTUAL = ("discriminator", "fashion-features", "lpips", "none")


log = logging.getLogger("latentatlas")


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
    init: str = "mean"                    # mean | best-of-N (e.g. best-of-256)
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
        if not (self.init == "mean" or (self.init.startswith("best-of-") and self.init[8:].isdigit())):
            raise LatentAtlasError(f"init must be 'mean' or 'best-of-N', got {self.init!r}")
        if self.regularizer == "pnorm-clip" and self.reg_value <= 0:
            raise LatentAtlasError("pnorm-clip needs a positive clip value c (e.g. 2)")
        if self.regularizer == "pnorm-project" and self.reg_value <= 0:
            raise LatentAtlasError("pnorm-project needs a positive radius r (e.g. 5)")
        if self.regularizer == "sphere" and self.space != "z":
            raise LatentAtlasError("the sphere regulariser applies to the z space only")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def parse_regularizer(cls, spec: str) -> tuple[str, float]:
        """'pnorm-clip:2' -> ('pnorm-clip', 2.0); 'none' -> ('none', 0.0)."""
        name, _, val = spec.partition(":")
        defaults = {"pnorm-clip": 2.0, "pnorm-project": 5.0, "pnorm-l2": 1e-5, "mahalanobis": 1e-5, "sphere": 1.0, "none": 0.0}
        if name not in defaults:
            raise LatentAtlasError(f"unknown regularizer {name!r}; choose from {', '.join(defaults)}")
        try:
            return name, float(val) if val else defaults[name]
        except ValueError:
            raise LatentAtlasError(f"regularizer value in {spec!r} is not a number") from None


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


# -- helpers ------------------------------------------------------------------------------------

def resize_to(x: torch.Tensor, size: int | None, mode: str) -> torch.Tensor:
    if size is None or x.shape[-1] == size:
        return x
    if mode == "area":
        return F.interpolate(x, size=(size, size), mode="area")
    return F.interpolate(x, size=(size, size), mode=mode, align_corners=False, antialias=True)


class FeatureDistance:
    """d(a, b) = mean squared feature difference [N]; ``against(b)`` fixes the targets so their
    features are computed once per inversion instead of once per step."""

    def __init__(self, feat):
        self.feat = feat

    def __call__(self, a, b):
        return (self.feat(a) - self.feat(b)).square().mean(1)

    def against(self, b):
        with torch.no_grad():
            fb = self.feat(b)
        return lambda a: (self.feat(a) - fb).square().mean(1)


def perceptual_fn(name: str, model):
    """Per-image perceptual distance d(a, b) -> [N]."""
    if name == "none":
        return None
    if name == "discriminator" and not model.has_discriminator:
        # the default must work on every model: fall back to the feature network where it fits
        # the model's images (1-channel 32x32), else to pixels only, and say so
        fallback = "fashion-features" if (model.img_channels, model.img_resolution) == (1, 32) else "none"
        log.warning("model '%s' has no discriminator: perceptual distance '%s' used instead of 'discriminator'",
                    model.name, fallback)
        return perceptual_fn(fallback, model)
    if name == "discriminator":
        return FeatureDistance(lambda x: model.features(x, independent=True))
    if name == "fashion-features":
        from ..metrics.features import FashionFeatures
        return FeatureDistance(FashionFeatures(model.device))
    if name == "lpips":
        try:
            import lpips  # noqa: F401
        except ImportError:
            raise LatentAtlasError("perceptual 'lpips' needs the lpips package with its backbone weights "
                                   "already present locally; latentatlas never downloads weights") from None
        net = lpips.LPIPS(net="vgg", verbose=False).to(model.device).eval()   # fails offline without cached weights
        return lambda a, b: net(a.expand(-1, 3, -1, -1) if a.shape[1] == 1 else a,
                                b.expand(-1, 3, -1, -1) if b.shape[1] == 1 else b).flatten()
    raise LatentAtlasError(f"unknown perceptual distance {name!r}")


class _Space:
    """The optimised variable and its map to images."""

    def __init__(self, model, cfg: InversionConfig, atlas):
        self.model, self.cfg, self.atlas = model, cfg, atlas
        if cfg.space != "z":
            model.require_mapping(f"inversion in {cfg.space}")
        needs_atlas = cfg.space == "pnorm+" or cfg.regularizer.startswith("pnorm") or cfg.regularizer == "mahalanobis"
        if needs_atlas and atlas is None:
            from ..atlas import get_atlas
            self.atlas = get_atlas(model, need="pnorm")
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

    @torch.no_grad()
    def init(self, targets, dist_fn, n_targets):
        m, cfg = self.model, self.cfg
        if cfg.init == "mean":
            if cfg.space == "z":   # Z has no mean code (z = 0 is off the sphere): a seeded draw
                return torch.randn(n_targets, m.z_dim, generator=torch.Generator().manual_seed(cfg.seed)).to(m.device)
            w = m.w_avg.expand(n_targets, -1).clone()
        else:
            n = int(cfg.init[8:])
            z = torch.randn(n, m.z_dim, generator=torch.Generator().manual_seed(cfg.seed)).to(m.device)
            best_d = torch.full((n_targets,), float("inf"), device=m.device)
            best = torch.zeros(n_targets, m.z_dim, device=m.device)
            for i in range(0, n, 256):
                imgs = m(z[i:i + 256])
                d = torch.stack([dist_fn(targets, im.expand_as(targets)) for im in imgs.unbind(0)], 1)   # [T, b]
                dmin, arg = d.min(1)
                upd = dmin < best_d
                best_d = torch.where(upd, dmin, best_d)
                best[upd] = z[i:i + 256][arg[upd]]
            if cfg.space == "z":
                return best
            w = m.mapping(best)
        if cfg.space == "w":
            return w
        ws = m.broadcast(w).clone()
        return ws if cfg.space == "wplus" else self.plus.transform(ws)


def _schedule(t: torch.Tensor, total: int, rampup: float, rampdown: float) -> torch.Tensor:
    """Per-image learning-rate factor at step t ([N] ints)."""
    frac = t.float() / max(total, 1)
    down = torch.where(frac > 1 - rampdown, 0.5 - 0.5 * torch.cos(math.pi * (1 - frac) / max(rampdown, 1e-8)),
                       torch.ones_like(frac))
    up = torch.clamp(frac / max(rampup, 1e-8), max=1.0) if rampup > 0 else torch.ones_like(frac)
    return torch.minimum(down, up).clamp_min(0.0)


# -- the engine ---------------------------------------------------------------------------------

def invert(model, targets: torch.Tensor, cfg: InversionConfig = InversionConfig(), *, atlas=None,
           progress: bool = False, callback=None) -> InversionResult:
    """Embed ``targets`` [N, C, H, W] in [-1, 1] (the model's channels and resolution)."""
    from tqdm import trange
    if targets.ndim != 4 or targets.shape[1] != model.img_channels or targets.shape[-1] != model.img_resolution:
        raise LatentAtlasError(f"targets must be [N, {model.img_channels}, {model.img_resolution}, "
                               f"{model.img_resolution}], got {list(targets.shape)}")
    if not torch.isfinite(targets).all():
        raise LatentAtlasError("target images contain NaN or infinite values")
    t0 = time.perf_counter()
    x = targets.to(model.device).float()
    N = x.shape[0]
    sp = _Space(model, cfg, atlas)
    perc = perceptual_fn(cfg.perceptual, model) if cfg.perceptual_weight > 0 else None
    if perc is not None:
        perc_to_target = perc.against(x) if isinstance(perc, FeatureDistance) else (lambda a: perc(a, x))
    xr = resize_to(x, cfg.working_resolution, cfg.resample_filter)

    def per_image_loss(var):
        y = sp.images(var)
        yr = resize_to(y, cfg.working_resolution, cfg.resample_filter)
        diff = (yr - xr).flatten(1)
        loss = cfg.pixel_weight * (diff.square().mean(1) if cfg.pixel_loss == "mse" else diff.abs().mean(1))
        if perc is not None:
            loss = loss + cfg.perceptual_weight * perc_to_target(y)
        if cfg.regularizer in ("pnorm-l2", "mahalanobis"):
            v = sp.pnorm_coords(var)
            loss = loss + cfg.reg_value * v.square().flatten(1).sum(1)
        elif cfg.regularizer == "sphere":
            loss = loss + cfg.reg_value * (var.norm(dim=1) - math.sqrt(model.z_dim)).abs()
        return loss, y

    def pix_dist(a, b):
        return (resize_to(a, cfg.working_resolution, cfg.resample_filter)
                - resize_to(b, cfg.working_resolution, cfg.resample_filter)).square().flatten(1).mean(1)

    var = sp.init(x, pix_dist, N).detach().clone()
    var = _apply_constraint(sp, var)
    var.requires_grad_(True)
    # vectorised Adam with per-image step counters and learning rates
    m_ = torch.zeros_like(var)
    v_ = torch.zeros_like(var)
    t = torch.zeros(N, dtype=torch.long, device=var.device)
    active = torch.ones(N, dtype=torch.bool, device=var.device)
    best = torch.full((N,), float("inf"), device=var.device)
    since = torch.zeros(N, dtype=torch.long, device=var.device)
    b1, b2, eps = 0.9, 0.999, 1e-8
    shape = (-1,) + (1,) * (var.ndim - 1)
    history = []
    final = torch.zeros(N, device=var.device)
    for step in trange(cfg.steps, disable=not progress, desc="invert", leave=False):
        if not active.any():
            break
        loss, _ = per_image_loss(var)
        grad, = torch.autograd.grad(loss.sum(), var)
        with torch.no_grad():
            final = torch.where(active, loss.detach(), final)
            t = t + active.long()
            a = active.reshape(shape).float()
            m_.mul_(1 - a * (1 - b1)).add_(a * (1 - b1) * grad)
            v_.mul_(1 - a * (1 - b2)).add_(a * (1 - b2) * grad.square())
            tt = t.clamp_min(1).float().reshape(shape)
            mhat = m_ / (1 - b1 ** tt)
            vhat = v_ / (1 - b2 ** tt)
            lr = cfg.lr * _schedule(t, cfg.steps, cfg.lr_rampup, cfg.lr_rampdown).reshape(shape) * a
            var -= lr * mhat / (vhat.sqrt() + eps)
            var.copy_(_apply_constraint(sp, var))
            # early stop per image
            improved = loss.detach() < best * (1 - cfg.early_stop_tol)
            best = torch.where(improved, loss.detach(), torch.minimum(best, loss.detach()))
            since = torch.where(improved, torch.zeros_like(since), since + 1)
            active &= since < cfg.early_stop_patience
        if step % 10 == 0:
            history.append(float(loss.detach().mean()))
        if callback is not None:
            callback(step, loss.detach(), active)
    with torch.no_grad():
        var_d = var.detach()
        images = sp.images(var_d).clamp(-1, 1)
        ws = sp.to_ws(var_d)
        final_loss, _ = per_image_loss(var_d)
    return InversionResult(cfg, var_d.cpu(), ws.cpu() if ws is not None else None,
                           var_d.cpu() if cfg.space == "z" else None, images.cpu(), t.cpu(),
                           final_loss.cpu(), time.perf_counter() - t0, history)


def _apply_constraint(sp: _Space, var: torch.Tensor) -> torch.Tensor:
    """Projection regularisers applied after every step (II2S): clip P-norm+ coordinates to
    [−c, c]; or project each P-norm dimension's num_ws-vector onto the sphere of radius r."""
    cfg = sp.cfg
    if cfg.regularizer == "pnorm-clip":
        v = sp.pnorm_coords(var).clamp(-cfg.reg_value, cfg.reg_value)
        return sp.from_pnorm(v, var)
    if cfg.regularizer == "pnorm-project":
        v = sp.pnorm_coords(var)                                  # [N, L, k]
        v = v / v.norm(dim=1, keepdim=True).clamp_min(1e-8) * cfg.reg_value
        return sp.from_pnorm(v, var)
    return var


def config_json(cfg: InversionConfig) -> str:
    return json.dumps(cfg.to_dict(), sort_keys=True)
