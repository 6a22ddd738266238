"""Sampling strategies, registered by name (Wulff & Torralba, Diamond in the rough, Katzir et al.; METHODS.md §2–3).

A strategy maps a batch of latents to modified latents; the original is kept by the caller for
comparison (faithfulness). ``apply_strategy(model, name, latents, **params) -> Latents``.

* ``none`` — identity.
* ``truncation`` — W: ``w' = w̄ + ψ (w − w̄)`` on rows [start, stop); Z-only models: entries with
  ``|z_i| > t`` are resampled (BigGAN), from a generator seeded by the latent's own bytes so the
  result does not depend on the batch.
* ``pca-log`` — Wulff & Torralba: in P-norm coordinates, components with ``|v_i| > τ`` become
  ``sign(v_i)(τ + log(1 + |v_i| − τ))``, optionally only the first K components.
* ``cluster`` — Katzir et al.: per level, ``k = C_ℓ(w)``, the level's rows become
  ``c_{ℓ,k} + ψ_ℓ (w − c_{ℓ,k})`` (``mixture=em`` or ``learned`` from the atlas).
* ``diamond`` — Diamond in the rough: realism path toward protoimages in Z (see ``latentatlas.diamond``).
"""
from __future__ import annotations

import contextlib
import hashlib
import math
from dataclasses import dataclass, field, replace
from typing import Callable

import torch

from .. import diamond as dm
from ..atlas import get_atlas
from ..data.fashion import fashion_format, load_fashion_mnist
from ..errors import LatentAtlasError
from ..models.interface import MAX_ABS_PSI
from ..priors.levels import sample_levels
from ..validate import number
from ..walks.directions import Directions, parse_direction_ref


@dataclass
class Latents:
    z: torch.Tensor                         # [N, z_dim]
    ws: torch.Tensor | None = None          # [N, num_ws, w_dim]; None for Z-space latents
    info: dict = field(default_factory=dict)

    def __len__(self):
        return self.z.shape[0]


def initial_latents(model, z: torch.Tensor) -> Latents:
    z = z.to(model.device)
    ws = model.broadcast(model.mapping(z)) if model.has_mapping else None
    return Latents(z, ws)


def default_batch(model) -> int:
    """Forward-pass batch: 64 is the CPU throughput optimum of the bundled models
    (bench_generators: 438 img/s at 64 vs 326 at 256 for fashion-stylegan2); 250 elsewhere."""
    return 64 if torch.device(model.device).type == "cpu" else 250


def render(model, lat: Latents, *, batch_size: int | None = None) -> torch.Tensor:
    batch_size = batch_size or default_batch(model)
    out = []
    with torch.no_grad():
        for i in range(0, len(lat), batch_size):
            if lat.ws is not None:
                out.append(model.synthesis(lat.ws[i:i + batch_size]).cpu())
            else:
                out.append(model(lat.z[i:i + batch_size]).cpu())
    return torch.cat(out).clamp(-1, 1)


@dataclass(frozen=True)
class Strategy:
    name: str
    fn: Callable                 # fn(model, lat, ctx, **params) -> Latents
    defaults: dict
    sweep: list                  # parameter dicts for the evaluation harness
    needs: tuple = ()            # "mapping", "atlas", "discriminator", "minibatch-std"
    doc: str = ""


_STRATEGIES: dict[str, Strategy] = {}


def register(s: Strategy):
    if s.name in _STRATEGIES:
        raise ValueError(f"sampling strategy {s.name!r} registered twice")
    _STRATEGIES[s.name] = s


def strategy_names() -> list[str]:
    return list(_STRATEGIES)


def get_strategy(name: str) -> Strategy:
    if name not in _STRATEGIES:
        raise LatentAtlasError(f"unknown sampling strategy {name!r}; choose from {', '.join(_STRATEGIES)}")
    return _STRATEGIES[name]


def check_applicable(model, s: Strategy, params: dict | None = None):
    params = params or {}
    if "mapping" in s.needs:
        model.require_mapping(f"strategy '{s.name}'")
    if "discriminator" in s.needs:
        model.require_discriminator(f"strategy '{s.name}'")
    if "minibatch-std" in s.needs and not model.has_minibatch_std and (
            params.get("sigma") in (None, "auto") or params.get("variant") != "walk"):
        raise LatentAtlasError(f"strategy '{s.name}' needs a minibatch-std discriminator for protoimage "
                               f"search and automatic sigma, and model '{model.name}' has none; use "
                               f"variant=walk with a fixed sigma (the user-controlled walk)")


def atlas_need(strategies) -> str | None:
    """What the strategies read of the atlas: 'mixture', 'pnorm' or None."""
    needs = [n for n in strategies if "atlas" in get_strategy(n).needs]
    return None if not needs else "pnorm" if set(needs) == {"pca-log"} else "mixture"


@dataclass
class Context:
    """Fitted state shared by strategies for one model (filled lazily)."""
    model: object
    atlas: object = None
    diamond: dict = field(default_factory=dict)

    def mean_proto(self, n_proto=1000, recovery_steps=200, settings=None, proto_iter=100, seed=0, n_init=1000) -> torch.Tensor:
        """The mean protoimage latent (Diamond in the rough appendix D: from ~1000 samples), searched
        once per setting and cached on disk per model weights."""
        return self._proto(n_proto, recovery_steps, settings, proto_iter, seed, n_init)[0]

    def mean_proto_info(self, n_proto=1000, recovery_steps=200, settings=None, proto_iter=100, seed=0,
                        n_init=1000) -> dict:
        """How well that mean protoimage is determined: ``split_half_cosine`` between the means of
        the two halves of its samples (near 1: the mean direction is settled; near 0: it is mostly
        the samples' own noise and a larger ``n_proto`` is needed) and ``cos_to_samples``, the
        mean cosine of each sample's protoimage to the sample itself."""
        return self._proto(n_proto, recovery_steps, settings, proto_iter, seed, n_init)[1]

    def _proto(self, n_proto, recovery_steps, settings, proto_iter, seed, n_init):
        st = settings or dm.resolve_settings(self.model)
        key = ("proto", int(n_proto), int(recovery_steps), tuple(sorted(st.items())), int(proto_iter), int(seed), int(n_init))
        if key not in self.diamond:
            self.diamond[key] = dm.cached_mean_protoimage(self.model, n_proto, recovery_steps, st, proto_iter, seed, n_init,
                                                          with_info=True)
        return self.diamond[key]

    def __post_init__(self):
        self.given = self.atlas is not None          # a user's atlas is never replaced

    def get_atlas(self, need: str = "mixture"):
        """The atlas given to this context, else the cached one (fitting only what ``need``
        asks for, announced; a P-norm-only atlas fetched earlier is upgraded when a mixture is
        needed)."""
        if self.atlas is None or (need == "mixture" and self.atlas.em is None):
            if self.given:
                raise LatentAtlasError("the given atlas has no mixtures (fitted with zero clusters); "
                                       "fit one with --clusters for the cluster strategies")
            self.atlas = get_atlas(self.model, need=need)
        return self.atlas


def apply_strategy(model, name: str, lat: Latents, ctx: Context | None = None, **params) -> Latents:
    s = get_strategy(name)
    unknown = set(params) - set(s.defaults)
    if unknown:
        raise LatentAtlasError(f"strategy '{name}' has no parameter(s) {sorted(unknown)}; "
                               f"parameters: {', '.join(s.defaults) or '(none)'}")
    p = {**s.defaults, **params}
    check_applicable(model, s, p)
    ctx = ctx or Context(model)
    # Diamond optimises (σ, recovery); everything else is pure inference
    with torch.no_grad() if name != "diamond" else contextlib.nullcontext():
        return s.fn(model, lat, ctx, **p)


# -- none / truncation ---------------------------------------------------------------------------

def _none(model, lat, ctx):
    return lat


def _rowwise_seed(z: torch.Tensor) -> list[int]:
    """A seed per latent derived from its own bytes (batch-independent)."""
    a = z.detach().cpu().contiguous().numpy()
    return [int.from_bytes(hashlib.blake2b(row.tobytes(), digest_size=8).digest(), "little") & (2 ** 63 - 1) for row in a]


def resample_truncate_z(z: torch.Tensor, t: float) -> torch.Tensor:
    """Entries with |z_i| > t redrawn from N(0,1) until inside (BigGAN's truncation)."""
    if t <= 0:
        raise LatentAtlasError(f"Z truncation threshold must be > 0, got {t}")
    out = z.clone()
    for i, s in enumerate(_rowwise_seed(z)):
        g = torch.Generator().manual_seed(s)
        row = out[i].cpu()
        for _ in range(1000):
            bad = row.abs() > t
            if not bad.any():
                break
            row[bad] = torch.randn(int(bad.sum()), generator=g)
        out[i] = row.to(out.device)
    return out


def _truncation(model, lat, ctx, psi=1.0, start=0, stop=None, t=None):
    if model.has_mapping and t is not None:
        raise LatentAtlasError(f"truncation: t (resampling threshold in Z) applies to Z-only models; model "
                               f"'{model.name}' truncates in W with psi")
    if not model.has_mapping and (psi != 1.0 or start != 0 or stop is not None):
        raise LatentAtlasError(f"truncation: psi/start/stop need a W space; model '{model.name}' is Z-only: "
                               f"use t (entries with |z_i| > t resampled, BigGAN-style)")
    if model.has_mapping:
        psi = number(psi, "truncation: psi", -MAX_ABS_PSI, MAX_ABS_PSI)
        if psi == 1.0:
            return lat
        ws = lat.ws.clone()
        stop = model.num_ws if stop is None else int(stop)
        ws[:, int(start):stop] = model.w_avg.lerp(ws[:, int(start):stop], float(psi))
        return replace(lat, ws=ws)
    if t is None or math.isinf(float(t)):
        return lat
    return replace(lat, z=resample_truncate_z(lat.z, float(t)))


# -- PCA log-compression -------------------------------------------------------------------------

def log_compress(v: torch.Tensor, tau: float, k: int | None = None) -> torch.Tensor:
    """Wulff & Torralba: |v_i| > τ -> sign(v_i)(τ + log(1 + |v_i| − τ)) on the first k components."""
    if math.isinf(tau):
        return v
    out = v.clone()
    sl = out[..., :k] if k else out
    a = sl.abs()
    comp = torch.sign(sl) * (tau + torch.log1p(a - tau))
    sl.copy_(torch.where(a > tau, comp, sl))
    return out


def _pca_log(model, lat, ctx, tau=2.0, k=None):
    tau = float(tau)
    if math.isinf(tau):
        return lat
    if tau < 0:
        raise LatentAtlasError(f"pca-log: tau must be >= 0, got {tau}")
    sp = ctx.get_atlas("pnorm").pnorm
    v = sp.transform(lat.ws)
    return replace(lat, ws=sp.inverse_transform(log_compress(v, tau, int(k) if k else None)))


# -- multi-level cluster truncation --------------------------------------------------------------

def _cluster(model, lat, ctx, psi=1.0, psi_coarse=None, psi_medium=None, psi_fine=None, mixture="em"):
    atlas = ctx.get_atlas()
    mix = atlas.mixture(mixture)
    per = {"coarse": psi_coarse, "medium": psi_medium, "fine": psi_fine}
    ws = lat.ws.clone()
    cl = {}
    for level, (a, b) in atlas.level_ranges.items():
        p = float(per.get(level) if per.get(level) is not None else psi)
        if level not in mix.params_:
            continue
        k = mix.cluster_of(lat.ws, level)
        c = mix.centres(level).to(ws.device)[k]                  # [N, D]
        ws[:, a:b] = c[:, None].lerp(ws[:, a:b], p)
        cl[level] = k.cpu()
    return Latents(lat.z, ws, {**lat.info, "clusters": cl})


def _multilevel(model, lat, ctx, coarse=None, medium=None, fine=None, mixture="learned"):
    """Rows of the fixed levels drawn from the chosen clusters, free levels keep the sample's own w."""
    fixed = {lvl: int(k) for lvl, k in (("coarse", coarse), ("medium", medium), ("fine", fine)) if k is not None}
    if not fixed:
        raise LatentAtlasError("multilevel: fix at least one level, e.g. --param coarse=3 --param fine=5")
    mix = ctx.get_atlas().mixture(mixture)
    # free levels keep the sample's own (possibly modified) rows: each row is its own base code
    ws = torch.cat([sample_levels(mix, model, fixed, 1, seed=s, base=lat.ws[i:i + 1])
                    for i, s in enumerate(_rowwise_seed(lat.z))])
    return Latents(lat.z, ws, {**lat.info, "fixed_clusters": fixed})


# -- Diamond in the rough ------------------------------------------------------------------------

def _diamond(model, lat, ctx, sigma="auto", variant="mean", m="auto", sigma_min=0.0, sigma_max=1.0,
             n_proto=1000, recovery_steps=200, preset="auto", alpha=None, beta=None, lam=None, gamma=None, delta=None,
             proto_iter=100, sigma_steps=100, sigma_solver="bracket", seed=0, n_init=1000, attribute=None, amount=None):
    z0 = lat.z
    if attribute is not None:
        # appendix E: move along the attribute vector first, then take the realism step from there
        path, k = parse_direction_ref(str(attribute))
        dirs = Directions.load(path)
        dirs.check_model(model)
        if dirs.space != "z":
            raise LatentAtlasError(f"diamond attribute control moves z: {path} holds {dirs.space} directions "
                                   f"(use Z directions, e.g. mean-diff on a model without a mapping network)")
        k = dirs.index(k)
        a = 1.0 if amount is None else float(amount)
        z0 = dm.sphere_proj(z0 + a * float(dirs.sigmas[k]) * dirs.vectors[k].to(z0.device))
    elif amount is not None:
        raise LatentAtlasError("diamond: amount applies together with attribute=DIRS.npz:K")
    st = dm.resolve_settings(model, preset, alpha=alpha, beta=beta, lam=lam, gamma=gamma, delta=delta)
    proto_info = None
    rec_cfg = dm.recovery_config(st, recovery_steps, seed, n_init)
    proto_cfg = dm.proto_config(st, proto_iter)
    if variant == "mean":
        z_p, proto_info = ctx._proto(n_proto, recovery_steps, st, proto_iter, seed, n_init)
        z_p = z_p.expand_as(z0)
    elif variant == "per-sample":
        with torch.enable_grad():
            x = model(z0).detach()
            z1 = dm.recover_z(model, x, rec_cfg)
            z_p = dm.find_protoimages(model, z0, z1, proto_cfg)
    elif variant == "walk":
        # user-controlled walk (no minibatch-std critic needed): recover z1, head along the
        # great circle z0 -> z1; sigma says how far toward the point 90 degrees away
        with torch.enable_grad():
            x = model(z0).detach()
            z1 = dm.recover_z(model, x, rec_cfg)
        z_p = dm.great_circle_point(z0, z1, 90.0)
    else:
        raise LatentAtlasError(f"diamond: variant must be 'mean', 'per-sample' or 'walk', got {variant!r}")
    if sigma == "auto":
        if m == "auto":
            if "m" not in ctx.diamond:
                real = _reals_for(model)
                ctx.diamond["m"] = dm.midpoint_score(model, real, seed=seed)
            m = ctx.diamond["m"]
        with torch.enable_grad():
            s = dm.optimise_sigma(model, z0, z_p, dm.SigmaConfig(m=float(m), steps=int(sigma_steps), solver=str(sigma_solver),
                                                                  sigma_min=float(sigma_min), sigma_max=float(sigma_max)),
                                  batch=default_batch(model))
    else:
        s = torch.full((z0.shape[0],), float(sigma), device=z0.device)
        if not 0 <= float(sigma) <= 1:
            raise LatentAtlasError(f"diamond: sigma must be in [0, 1], got {sigma}")
    z_hat = dm.realism_step(z0, z_p, s)
    ws = model.broadcast(model.mapping(z_hat)) if model.has_mapping else None
    extra = {"mean_proto": proto_info} if proto_info else {}
    return Latents(z_hat, ws, {**lat.info, "sigma": s.detach().cpu(), "diamond": st, **extra})


def _reals_for(model):
    """Real images for the critic midpoint: the Fashion-MNIST test split for 32x32 grayscale
    models; other models need an explicit m."""
    if fashion_format(model):
        return load_fashion_mnist("test")[0][:1000]
    raise LatentAtlasError(f"diamond: automatic m needs real images for model '{model.name}'; pass m=VALUE")


INF = float("inf")
# one ψ grid for global and cluster truncation (both mixtures), so their sweeps compare point by point
PSI_GRID = (1.0, 0.8, 0.6, 0.4, 0.2, 0.1)
# Z-only models: BigGAN-style resampling thresholds (Diamond in the rough's truncation baseline)
T_GRID = (INF, 1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1)
# Diamond's σ grid: fine near 0, where our models gain (if at all), then coarse to 0.7
SIGMA_GRID = (0.0, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7)


def default_sweep(model, name: str) -> list[dict]:
    """The parameter points a strategy is evaluated at on this model."""
    if name == "truncation" and not model.has_mapping:
        return [{"t": t} for t in T_GRID]
    return get_strategy(name).sweep
register(Strategy("none", _none, {}, [{}], doc="no change"))
register(Strategy("truncation", _truncation, {"psi": 1.0, "start": 0, "stop": None, "t": None},
                  [{"psi": p} for p in PSI_GRID],
                  doc="psi-truncation toward the mean w (rows [start, stop)); Z-only models: resample |z_i| > t"))
register(Strategy("pca-log", _pca_log, {"tau": 2.0, "k": None},
                  [{"tau": t} for t in (INF, 3.0, 2.5, 2.0, 1.5, 1.0, 0.5, 0.0)], needs=("mapping",),
                  doc="PCA log-compression in P-norm (Wulff & Torralba): |v_i| > tau compressed logarithmically "
                      "(default tau=2: mild; tau=inf is off)"))
register(Strategy("cluster", _cluster, {"psi": 1.0, "psi_coarse": None, "psi_medium": None, "psi_fine": None,
                                        "mixture": "em"},
                  [{"psi": 1.0, "mixture": "em"}] + [{"psi": p, "mixture": mix} for mix in ("em", "learned")
                                                      for p in PSI_GRID[1:]], needs=("mapping",),
                  doc="multi-level cluster truncation (Katzir et al.) toward each level's cluster centre"))
register(Strategy("multilevel", _multilevel, {"coarse": None, "medium": None, "fine": None, "mixture": "learned"},
                  [], needs=("mapping",),
                  doc="multi-level sampling (Katzir et al., Fig. 1): chosen cluster per fixed level, the others free"))
register(Strategy("diamond", _diamond, {"sigma": "auto", "variant": "mean", "m": "auto", "sigma_min": 0.0,
                                        "sigma_max": 1.0, "n_proto": 1000, "recovery_steps": 200, "preset": "auto",
                                        "alpha": None, "beta": None, "lam": None, "gamma": None, "delta": None,
                                        "proto_iter": 100, "sigma_steps": 100, "sigma_solver": "bracket",
                                        "seed": 0, "n_init": 1000, "attribute": None, "amount": None},
                  [{"sigma": s} for s in SIGMA_GRID] + [{"sigma": "auto"}],
                  needs=("minibatch-std",),
                  doc="realism path toward protoimages (Diamond in the rough) on the sqrt(n)-sphere in Z"))
