"""Diamond in the rough (Wen et al., NeurIPS 2021; Diamond in the rough, METHODS.md §3): a realism path on
the √n-sphere of a Gaussian latent space toward "protoimages".

Building blocks, all batched over the first dimension:

* :func:`sphere_proj` — ``proj(z) = √n z / ‖z‖``.
* :func:`recover_z` — Z recovery of ``z1`` with ``X = G(z0)``: L1 pixels + α·L1 of
  discriminator features + β·|‖z1‖ − √n|, Adam(lr 0.01, betas 0.9/0.999), α=2, β=1, best-of-1000
  initialisation by discriminator-feature distance. (The public code hard-codes lr 0.1 and puts
  α on the wrong term; we keep the paper's meaning.)
* :func:`great_circle_walk` — ``z_{k+1} = proj(z_k + (z_k − z_{k−1}))``.
* :func:`find_protoimages` — Algorithm 1 with a learnable per-sample ``q``; the loss
  ``mean D(G(z_{k+1})) + λ mean cos(z_{k+1}, z0)`` is evaluated on the whole batch so the
  critic's minibatch-std layer sees it (optional WGAN-GP terms γ·std(D) + δ·std(cos)).
* :func:`optimise_sigma` — per-sample σ of ``ẑ = proj(σ z_p + (1 − σ) z0)`` minimising
  ``mean (D(G(ẑ)) − m)²``, Adam lr 0.01, init 0.7, σ projected into ``[σ_min, σ_max]``.
* :func:`mean_protoimage` — one protoimage vector from a subset (appendix D).
* :func:`realism_step` — fixed-σ move toward a protoimage: the user-controlled walk for models
  without a minibatch-std critic (``faces-dcgan``).
"""
from __future__ import annotations

import logging
import math
import sys
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from tqdm import tqdm

from .cache import cache_dir
from .errors import LatentAtlasError
from .imageio import atomic_path

log = logging.getLogger("latentatlas")


# Diamond in the rough's settings per recipe (§4 and appendix C): recovery α (D-feature weight),
# β (norm term), protoimage λ (cosine weight), and the WGAN-GP variant's γ·std(D) + δ·std(cos).
PRESETS = {
    "pgan-celeba": {"alpha": 2.0, "beta": 1.0, "lam": 3.0, "gamma": 0.0, "delta": 0.0},
    "lsun": {"alpha": 2.0, "beta": 1.0, "lam": 5.0, "gamma": 0.0, "delta": 0.0},
    "celeba-hq": {"alpha": 10.0, "beta": 1.0, "lam": 100.0, "gamma": 0.0, "delta": 0.0},
    "biggan": {"alpha": 15.0, "beta": 1.0, "lam": 100.0, "gamma": 0.0, "delta": 0.0},
    "wgan-gp": {"alpha": 2.0, "beta": 1.0, "lam": 0.2, "gamma": 1.0, "delta": 3.0},
}


def preset_for(model) -> str:
    """The recipe whose settings fit the model: a WGAN-GP critic (our fashion-wgangp, or a PGAN
    trained with the WGANGP criterion is *not* it: the paper ran PGAN with λ = 3) gets the WGAN-GP
    variant; BigGAN its own; PGAN at ≥ 512 px the CelebA-HQ setting; every other model the
    PGAN-CelebA setting the paper starts from."""
    extra = model.info.extra or {}
    if extra.get("arch") == "wgangp" or extra.get("loss") == "wgan-gp":
        return "wgan-gp"
    if model.info.arch == "biggan":
        return "biggan"
    if model.info.arch == "pgan" and model.img_resolution >= 512:
        return "celeba-hq"
    return "pgan-celeba"


def resolve_settings(model, preset: str = "auto", **over) -> dict:
    """The preset's values with the non-None overrides applied; records which preset it was."""
    name = preset_for(model) if preset == "auto" else preset
    if name not in PRESETS:
        raise LatentAtlasError(f"diamond preset {name!r}: choose from auto, {', '.join(PRESETS)}")
    out = dict(PRESETS[name])
    for k, v in over.items():
        if v is None:
            continue
        if k not in out:
            raise LatentAtlasError(f"diamond setting {k!r} is not one of {', '.join(out)}")
        out[k] = float(v)
    return {"preset": name, **out}


def recovery_config(settings: dict, steps: int = 300, seed: int = 0, n_init: int = 1000) -> "RecoveryConfig":
    """The §3.1 recovery with a recipe's α and β (``resolve_settings``)."""
    return RecoveryConfig(steps=int(steps), seed=seed, n_init=int(n_init), alpha=settings["alpha"], beta=settings["beta"])


def proto_config(settings: dict, max_iter: int = 200) -> "ProtoConfig":
    """Algorithm 1 with a recipe's λ, γ, δ."""
    return ProtoConfig(lam=settings["lam"], gamma=settings["gamma"], delta=settings["delta"], max_iter=int(max_iter))


def sphere_proj(z: torch.Tensor) -> torch.Tensor:
    n = z.shape[-1]
    return z * (math.sqrt(n) / z.norm(dim=-1, keepdim=True).clamp_min(1e-12))


@dataclass(frozen=True)
class RecoveryConfig:
    steps: int = 300            # Adam steps
    lr: float = 0.01            # paper: 0.01
    alpha: float = 2.0          # weight of the discriminator-feature L1 (paper: 2)
    beta: float = 1.0           # weight of | ||z|| - sqrt(n) | (paper: 1)
    n_init: int = 1000          # random candidates for the initialisation (paper: 1000)
    seed: int = 0


def _feature_distance_init(model, target_feats, n_init, seed, feats, batch=250):
    """Best of ``n_init`` random z per target by L2 distance in (discriminator-)feature space."""
    g = torch.Generator().manual_seed(seed)
    cand = torch.randn(n_init, model.z_dim, generator=g).to(model.device)
    best_d = torch.full((target_feats.shape[0],), float("inf"), device=model.device)
    best = torch.zeros(target_feats.shape[0], model.z_dim, device=model.device)
    with torch.no_grad():
        for i in range(0, n_init, batch):
            c = cand[i:i + batch]
            f = feats(model(c))
            d = torch.cdist(target_feats, f)                       # [T, b]
            dmin, arg = d.min(1)
            better = dmin < best_d
            best_d = torch.where(better, dmin, best_d)
            best[better] = c[arg[better]]
    return best


def recover_z(model, images: torch.Tensor, cfg: RecoveryConfig = RecoveryConfig(), *,
              progress: bool = False) -> torch.Tensor:
    """z1 [N, z_dim] with G(z1) ≈ images (Diamond in the rough eq. 5). Without a discriminator (e.g.
    ``faces-dcgan``) the feature term is dropped (α = 0) and the initialisation uses pixel
    distance instead; the result records nothing else differently."""
    from tqdm import trange
    x = images.to(model.device)
    feats = (lambda im: model.features(im, independent=True)) if model.has_discriminator else (lambda im: im.flatten(1))
    alpha = cfg.alpha if model.has_discriminator else 0.0
    with torch.no_grad():
        fx = feats(x)
    z = _feature_distance_init(model, fx, cfg.n_init, cfg.seed, feats).clone().requires_grad_(True)
    opt = torch.optim.Adam([z], lr=cfg.lr, betas=(0.9, 0.999))
    sqrt_n = math.sqrt(model.z_dim)
    for _ in trange(cfg.steps, disable=not progress, desc="z recovery", leave=False):
        y = model(z)
        per = ((x - y).abs().flatten(1).sum(1)
               + alpha * (fx - feats(y)).abs().sum(1)
               + cfg.beta * (z.norm(dim=1) - sqrt_n).abs())
        opt.zero_grad(set_to_none=True)
        per.sum().backward()      # per-sample losses are independent: sum keeps per-sample gradients
        opt.step()
    return z.detach()


def great_circle_walk(z0: torch.Tensor, z1: torch.Tensor, steps: int) -> torch.Tensor:
    """[steps + 2, N, n]: z0, z1, z2, ... with z_{k+1} = proj(z_k + (z_k − z_{k−1}))."""
    path = [z0, z1]
    for _ in range(steps):
        path.append(sphere_proj(path[-1] + (path[-1] - path[-2])))
    return torch.stack(path)


@dataclass(frozen=True)
class ProtoConfig:
    lam: float = 3.0            # weight of the cosine similarity to z0 (paper: 3 CelebA; 5; 100)
    lr: float = 0.1             # Adam on q (paper: 0.1)
    eps: float = 1e-3           # stop when every step is shorter than this
    max_iter: int = 200
    gamma: float = 0.0          # WGAN-GP variant: weight of std(D) (paper: 1)
    delta: float = 0.0          # WGAN-GP variant: weight of std(cos) (paper: 3)


def find_protoimages(model, z0: torch.Tensor, z1: torch.Tensor, cfg: ProtoConfig = ProtoConfig(), *,
                     return_path: bool = False, progress: bool = False):
    """Algorithm 1 on a batch. Returns z_p [N, n] (and the path [K, N, n] if asked)."""
    model.require_discriminator("protoimage search")
    if not model.has_minibatch_std:
        raise LatentAtlasError(f"protoimage search relies on a minibatch-std discriminator; model "
                               f"'{model.name}' has none: use the fixed-sigma walk (realism_step)")
    from tqdm import trange
    z0, z_prev, z = z0.to(model.device), z0.to(model.device), z1.to(model.device)
    q = torch.ones_like(z, requires_grad=True)
    opt = torch.optim.Adam([q], lr=cfg.lr)
    path = [z0, z] if return_path else None
    zbar = z - z_prev
    for _ in trange(cfg.max_iter, disable=not progress, desc="protoimages", leave=False):
        if zbar.norm(dim=1).max() <= cfg.eps:
            break
        u = zbar / zbar.norm(dim=1, keepdim=True).clamp_min(1e-12)
        z_next = sphere_proj(z + (q * u).sum(1, keepdim=True) * u)
        d = model.score(model(z_next))
        cos = F.cosine_similarity(z_next, z0, dim=1)
        loss = d.mean() + cfg.lam * cos.mean()
        if cfg.gamma:
            loss = loss + cfg.gamma * d.std()
        if cfg.delta:
            loss = loss + cfg.delta * cos.std()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        z_prev, z = z, z_next.detach()
        zbar = z - z_prev
        if return_path:
            path.append(z)
    return (z, torch.stack(path)) if return_path else z


def protoimage_walk(model, z0: torch.Tensor, *, frames: int = 9, settings: dict | None = None,
                    recovery_steps: int = 200, proto_iter: int = 100, n_init: int = 1000, seed: int = 0):
    """Diamond in the rough's core observation as a strip (§3.2): recover z1 from G(z0), run Algorithm 1
    (every step stays on the great circle through z0 and z1) to the protoimage z_p, then lay
    ``frames`` points along that great circle from z0 through z_p to the same angle beyond it.
    Returns latents [frames, N, n] and the frame index of the protoimage (the centre frame) —
    images should improve up to it and a new identity appear after it. Models without a
    minibatch-std critic have no detectable protoimage: the frames then run to 90° and the index
    is None."""
    st = settings or resolve_settings(model)
    z0 = sphere_proj(z0.to(model.device))
    with torch.enable_grad():
        z1 = recover_z(model, model(z0).detach(), recovery_config(st, recovery_steps, seed, n_init))
        if model.has_minibatch_std:
            zp = find_protoimages(model, z0, z1, proto_config(st, proto_iter))
        else:
            zp = None
    a = z0 / z0.norm(dim=1, keepdim=True)
    far = zp if zp is not None else great_circle_point(z0, z1, 90.0)
    b = far - (far * a).sum(1, keepdim=True) * a
    b = b / b.norm(dim=1, keepdim=True).clamp_min(1e-12)
    theta = torch.acos(F.cosine_similarity(far, z0, dim=1).clamp(-1, 1))           # [N]
    mid = max(1, (frames - 1) // 2) if zp is not None else frames - 1      # the frame that lands on z_p
    t = torch.arange(frames, device=z0.device, dtype=z0.dtype)[:, None] / mid * theta[None]    # [frames, N]
    path = math.sqrt(z0.shape[1]) * (torch.cos(t)[..., None] * a[None] + torch.sin(t)[..., None] * b[None])
    return path.detach(), (mid if zp is not None else None)


def great_circle_point(z0: torch.Tensor, z1: torch.Tensor, angle_deg: float = 90.0) -> torch.Tensor:
    """The point at ``angle_deg`` from z0 on the great circle through z0 and z1 (on the
    √n-sphere): the stand-in protoimage direction of the user-controlled walk for models without
    a minibatch-std critic, where Algorithm 1 cannot locate the protoimage (our choice; the
    paper only says the user picks how far to travel)."""
    n = z0.shape[-1]
    a = z0 / z0.norm(dim=-1, keepdim=True)
    b = z1 - (z1 * a).sum(-1, keepdim=True) * a
    b = b / b.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    t = math.radians(angle_deg)
    return math.sqrt(n) * (math.cos(t) * a + math.sin(t) * b)


def mean_protoimage(z_p: torch.Tensor) -> torch.Tensor:
    """One protoimage vector for all samples (appendix D): the projected mean of z_p. [n]."""
    return sphere_proj(z_p.mean(0, keepdim=True))[0]


def realism_step(z0: torch.Tensor, z_p: torch.Tensor, sigma) -> torch.Tensor:
    """ẑ = proj(σ z_p + (1 − σ) z0); ``z_p`` [N, n] or [n]; σ scalar or [N]."""
    s = torch.as_tensor(sigma, dtype=z0.dtype, device=z0.device)
    if s.ndim == 1:
        s = s[:, None]
    return sphere_proj(s * z_p + (1 - s) * z0)


def midpoint_score(model, real: torch.Tensor, n_fake: int = 1000, seed: int = 0, poor_quantile: float = 0.25,
                   batch: int = 250) -> float:
    """m = midpoint between the mean critic score of real images and of poor samples (the
    lowest-scoring ``poor_quantile`` of random samples) — our concrete reading of Diamond in the rough's
    'middle ground between scores given for real images and poorly generated images'."""
    with torch.no_grad():
        sr = torch.cat([model.score(real[i:i + batch].to(model.device)) for i in range(0, real.shape[0], batch)])
        sf = torch.cat([model.score(model(model.sample_z(min(batch, n_fake - i), seed + i))) for i in range(0, n_fake, batch)])
    poor = sf.sort().values[: max(1, int(poor_quantile * sf.numel()))]
    return float((sr.mean() + poor.mean()) / 2)


@dataclass(frozen=True)
class SigmaConfig:
    m: float = 0.0              # target critic score (0 for a WGAN critic)
    lr: float = 0.01
    init: float = 0.7
    steps: int = 100
    sigma_min: float = 0.0
    sigma_max: float = 1.0
    solver: str = "adam"        # "adam": Diamond in the rough as written; "bracket": the same argmin, forward passes only
    grid: int = 5               # bracket solver: σ grid points over [σ_min, σ_max]
    refine: int = 3             # bracket solver: Illinois regula-falsi steps inside the chosen bracket


def optimise_sigma(model, z0: torch.Tensor, z_p: torch.Tensor, cfg: SigmaConfig = SigmaConfig(), *,
                   batch: int | None = None) -> torch.Tensor:
    """σ* [N] in [σ_min, σ_max] (Diamond in the rough eq. 9), optimised on the batch as a whole (the
    critic's minibatch-std sees it); very large N is processed in chunks of ``batch``.

    ``solver="adam"`` runs the paper's Adam descent on mean (D(G(ẑ)) − m)² from σ = init.
    ``solver="bracket"`` minimises the same objective per sample without gradients: the score
    along the path is a function of one variable, so it is evaluated on a grid over the bounds,
    the sign change of D − m nearest ``init`` is refined by regula falsi, and a sample whose
    score never crosses m keeps the grid point closest to m. It needs grid + refine forward
    passes instead of ``steps`` forward+backward passes (~35x less work at the defaults)."""
    model.require_discriminator("sigma optimisation")
    if not 0 <= cfg.sigma_min <= cfg.sigma_max <= 1:
        raise LatentAtlasError(f"sigma bounds must satisfy 0 <= min <= max <= 1, got [{cfg.sigma_min}, {cfg.sigma_max}]")
    if cfg.solver not in ("adam", "bracket"):
        raise LatentAtlasError(f"sigma solver must be 'adam' or 'bracket', got {cfg.solver!r}")
    N = z0.shape[0]
    batch = batch or N
    out = []
    for i in range(0, N, batch):
        a = z0[i:i + batch].to(model.device)
        p = (z_p[i:i + batch] if z_p.ndim == 2 else z_p.expand_as(a)).to(model.device)
        out.append(_sigma_adam(model, a, p, cfg) if cfg.solver == "adam" else _sigma_bracket(model, a, p, cfg))
    return torch.cat(out)


def _sigma_adam(model, a, p, cfg):
    s = torch.full((a.shape[0],), cfg.init, device=a.device).clamp(cfg.sigma_min, cfg.sigma_max).requires_grad_(True)
    opt = torch.optim.Adam([s], lr=cfg.lr)
    for _ in range(cfg.steps):
        loss = (model.score(model(realism_step(a, p, s))) - cfg.m).square().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        with torch.no_grad():
            s.clamp_(cfg.sigma_min, cfg.sigma_max)
    return s.detach()


@torch.no_grad()
def _sigma_bracket(model, a, p, cfg):
    n = a.shape[0]
    g = lambda s: model.score(model(realism_step(a, p, s))).reshape(n) - cfg.m
    k = max(2, int(cfg.grid))
    grid = torch.linspace(cfg.sigma_min, cfg.sigma_max, k, device=a.device)
    vals = torch.stack([g(grid[j].expand(n)) for j in range(k)], 1)              # [n, k]
    best_s = grid[vals.abs().argmin(1)]
    best_v = vals.abs().min(1).values
    cross = (torch.sign(vals[:, :-1]) != torch.sign(vals[:, 1:])) | (vals[:, :-1] == 0)   # [n, k-1]
    mids = (grid[:-1] + grid[1:]) / 2
    dist = (mids - cfg.init).abs().expand(n, -1).masked_fill(~cross, float("inf"))
    j = dist.argmin(1)
    has = cross.any(1)
    lo, hi = grid[j], grid[j + 1]
    glo, ghi = vals.gather(1, j[:, None])[:, 0], vals.gather(1, j[:, None] + 1)[:, 0]
    side = torch.zeros(n, dtype=torch.long, device=a.device)                  # which end was kept last
    for _ in range(int(cfg.refine)):
        denom = torch.where((ghi - glo).abs() > 1e-12, ghi - glo, torch.ones_like(ghi))
        s_new = torch.where(has, (lo * ghi - hi * glo) / denom, best_s).clamp(cfg.sigma_min, cfg.sigma_max)
        v = g(s_new)
        better = has & (v.abs() < best_v)
        best_s, best_v = torch.where(better, s_new, best_s), torch.where(better, v.abs(), best_v)
        left = torch.sign(v) == torch.sign(glo)            # root lies in [s_new, hi]
        # Illinois: halve the value at an end that is kept twice in a row
        ghi = torch.where(left & (side == 1), ghi / 2, ghi)
        glo = torch.where(~left & (side == -1), glo / 2, glo)
        lo, glo = torch.where(left, s_new, lo), torch.where(left, v, glo)
        hi, ghi = torch.where(left, hi, s_new), torch.where(left, ghi, v)
        side = torch.where(left, torch.ones_like(side), -torch.ones_like(side))
    return best_s


def proto_cache_path(model, n, steps, settings, iters, seed, n_init=1000):
    """Where ``cached_mean_protoimage`` keeps the mean protoimage of these settings."""
    key = f"{model.weights_hash()}-proto-n{n}-r{steps}-i{iters}-s{seed}-init{n_init}-" + "-".join(
        f"{k}{v:g}" for k, v in sorted(settings.items()) if k != "preset")
    prec = getattr(getattr(model, "precision", None), "name", "fp32")
    key += "" if prec == "fp32" else f"-{prec}"       # a protoimage searched at bf16 is its own entry
    return cache_dir() / f"{key}.pt"


def cached_mean_protoimage(model, n, steps, settings, iters, seed, n_init=1000, batch=250, *, with_info=False):
    """Mean protoimage of n samples: recovery and Algorithm 1 in batches of ``batch`` (the
    critic's minibatch-std sees a batch, as in the paper), then the projected mean. With
    ``with_info``, also how well that mean is determined (``sampling.Context.mean_proto_info``).
    Cached on disk per model weights and settings."""
    path = proto_cache_path(model, n, steps, settings, iters, seed, n_init)
    if path.is_file():
        try:
            entry = torch.load(path, map_location="cpu", weights_only=True)
            zp, info = entry["zp"].to(model.device), dict(entry["info"])
            return (zp, info) if with_info else zp
        except Exception:   # noqa: BLE001 - a damaged (or older, vector-only) cache entry is recomputed
            path.unlink()
    log.info(
        "Diamond mean protoimage of %s: %d samples, %d recovery steps + %d search iterations each (once per model "
        "and settings; cached in %s)", model.name, int(n), steps, iters, path.parent)
    z0 = model.sample_z(int(n), seed=987_000 + seed)
    rec_cfg = recovery_config(settings, steps, seed, n_init)
    proto_cfg = proto_config(settings, iters)
    zps = []
    with torch.enable_grad():
        for i in tqdm(range(0, int(n), batch), desc="mean protoimage (batches)", leave=False,
                      disable=not sys.stderr.isatty()):
            a = z0[i:i + batch]
            x = model(a).detach()
            z1 = recover_z(model, x, rec_cfg)
            zps.append(find_protoimages(model, a, z1, proto_cfg))
    zps = torch.cat(zps)
    zp = mean_protoimage(zps)
    half = zps.shape[0] // 2
    info = {"n": int(zps.shape[0]),
            "split_half_cosine": float(torch.nn.functional.cosine_similarity(
                zps[:half].mean(0), zps[half:].mean(0), dim=0)) if half else float("nan"),
            "cos_to_samples": float(torch.nn.functional.cosine_similarity(zps, z0, dim=1).mean())}
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        torch.save({"zp": zp.cpu(), "info": info}, tmp)
    return (zp, info) if with_info else zp
