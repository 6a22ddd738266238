"""The atlas: everything fitted about one model's latent space, in one ``.npz`` file.

Holds the P-norm PCA (mean, components, variances, covariance of P), the EM mixture per level,
the level ranges and metadata (weights hash, N, seed, versions, timings). Loading an atlas for a
model with another weights hash is refused. Fitted atlases are cached per model under
``$XDG_CACHE_HOME/latentatlas`` (default ``~/.cache/latentatlas``).
"""
from __future__ import annotations

import json
import logging
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from . import __version__
from .cache import cache_dir
from .defaults import LEARNED_STEPS
from .errors import LatentAtlasError
from .imageio import atomic_path
from .priors import EMMixture, GaussianPrior
from .priors.learned import LearnedMixture
from .priors.levels import default_level_ranges
from .spaces import PNormPlusSpace, PNormSpace, check_p_space, mapped_moments
from .validate import read_npz

log = logging.getLogger("latentatlas")


@dataclass
class Atlas:
    pnorm: PNormSpace
    meta: dict
    level_ranges: dict
    em: EMMixture | None = None
    extra: dict = field(default_factory=dict)
    learned: object = None                  # LearnedMixture, when fitted
    learned_state: dict | None = None       # raw state when loaded without a model

    def mixture(self, kind: str):
        """The per-level mixture of W: 'em' (the EM baseline) or 'learned' (Katzir et al.'s
        multi-level mixture); LatentAtlasError when this atlas was fitted without it."""
        if kind == "em":
            mix = self.em
        elif kind == "learned":
            mix = self.learned
        else:
            raise LatentAtlasError(f"unknown mixture {kind!r} (em or learned)")
        if mix is None:
            raise LatentAtlasError(f"the atlas has no '{kind}' mixture (fit it with clusters"
                                   f"{' and --learned-steps > 0' if kind == 'learned' else ''})")
        return mix

    @property
    def pnorm_plus(self) -> PNormPlusSpace:
        """The P-norm+ space (II2S): W+ rows through the P-norm whitening, [N, num_ws, k]."""
        return PNormPlusSpace.from_state(self.pnorm.state())

    @property
    def prior(self) -> GaussianPrior:
        """The Gaussian of P space (Wulff & Torralba) as a sampling/density prior."""
        return GaussianPrior(self.pnorm)

    def to(self, device):
        """Move the fitted statistics to ``device`` (in place); returns the atlas."""
        self.pnorm.to(device)
        return self

    def check_model(self, model):
        """Raise LatentAtlasError unless the atlas was fitted on this model's weights."""
        if self.meta.get("weights_hash") != model.weights_hash():
            raise LatentAtlasError(f"atlas was fitted for weights {self.meta.get('weights_hash')} "
                                   f"({self.meta.get('model')}), not for model '{model.name}' "
                                   f"({model.weights_hash()})")

    def save(self, path) -> Path:
        """Write the atlas as one .npz (arrays + JSON metadata; no pickle), atomically."""
        arrays = {f"pnorm.{k}": (v.numpy() if isinstance(v, torch.Tensor) else np.asarray(v))
                  for k, v in self.pnorm.state().items()}
        if self.em is not None:
            arrays.update({f"em.{k}": v.numpy() for k, v in self.em.state().items()})
        lst = self.learned.state() if self.learned is not None else self.learned_state
        if lst:
            arrays.update({f"learned.{k}": v.numpy() for k, v in lst.items()})
        for k, v in self.extra.items():
            arrays[f"extra.{k}"] = np.asarray(v)
        meta = {**self.meta, "level_ranges": self.level_ranges,
                "em_clusters": self.em.n_clusters if self.em is not None else None,
                "learned_clusters": (self.learned.n_clusters if self.learned is not None
                                     else self.meta.get("learned_clusters"))}
        arrays["meta_json"] = np.asarray(json.dumps(meta))
        path = Path(path)
        if path.suffix != ".npz":
            raise LatentAtlasError(f"atlas file {path}: use a .npz name")
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as fh:
                np.savez(fh, **arrays)
        return path

    @classmethod
    def load(cls, path, model=None) -> "Atlas":
        """Read an atlas .npz (validated; no pickle); with ``model``, check it was fitted on it."""
        path = Path(path)
        arrays = read_npz(path, "atlas", {"meta_json": ("U", 0)})
        try:
            meta = json.loads(str(arrays["meta_json"]))
            if not isinstance(meta, dict) or "level_ranges" not in meta:
                raise ValueError("no level_ranges")
        except ValueError as e:
            raise LatentAtlasError(f"{path}: atlas metadata is not valid ({e})") from None
        pn = PNormSpace.from_state({k[6:]: torch.from_numpy(np.asarray(v)) if np.asarray(v).ndim else v.item()
                                    for k, v in arrays.items() if k.startswith("pnorm.")})
        level_ranges = {k: tuple(v) for k, v in meta.pop("level_ranges").items()}
        em_clusters = meta.pop("em_clusters", None)
        em = None
        if em_clusters:
            em = EMMixture.from_state(pn, {k[3:]: torch.from_numpy(v) for k, v in arrays.items() if k.startswith("em.")},
                                      em_clusters, level_ranges)
        extra = {k[6:]: v for k, v in arrays.items() if k.startswith("extra.")}
        lstate = {k[8:]: torch.from_numpy(v) for k, v in arrays.items() if k.startswith("learned.")} or None
        meta["learned_clusters"] = meta.get("learned_clusters")
        atlas = cls(pn, meta, level_ranges, em, extra, learned_state=lstate)
        if model is not None:
            atlas.check_model(model)
            atlas.to(model.device)
            if lstate:
                atlas.learned = LearnedMixture.from_state(model, pn, lstate, meta["learned_clusters"], level_ranges)
        return atlas


def parse_clusters(spec: str | None, levels=("coarse", "medium", "fine")) -> dict[str, int]:
    """'coarse=8,medium=8,fine=8' -> dict; None -> 8 per level."""
    if not spec:
        return {lvl: 8 for lvl in levels}
    out = {}
    for part in spec.split(","):
        name, _, k = part.partition("=")
        name = name.strip()
        if name not in levels:
            raise LatentAtlasError(f"unknown level {name!r} in --clusters; levels: {', '.join(levels)}")
        try:
            out[name] = int(k)
        except ValueError:
            raise LatentAtlasError(f"--clusters: {part!r} is not LEVEL=INT") from None
        if out[name] < 0:
            raise LatentAtlasError(f"--clusters: {name} needs at least 1 cluster (0 for every level: no mixture)")
    if any(out.values()) and not all(out.values()):
        raise LatentAtlasError("--clusters: give every level at least 1 cluster, or 0 for every level (no mixture)")
    return out


def parse_level_ranges(spec: str | None, num_ws: int) -> dict:
    """'coarse=0:3,medium=3:6,fine=6:8' -> {level: (a, b)}; None -> default thirds."""
    if not spec:
        return default_level_ranges(num_ws)
    out = {}
    for part in spec.split(","):
        name, _, r = part.partition("=")
        a, _, b = r.partition(":")
        try:
            a, b = int(a), int(b)
        except ValueError:
            raise LatentAtlasError(f"--levels: {part!r} is not LEVEL=A:B") from None
        if not 0 <= a < b <= num_ws:
            raise LatentAtlasError(f"--levels: rows {a}:{b} out of range for {num_ws} W+ rows")
        out[name.strip()] = (a, b)
    return out


def fit_atlas(model, *, n: int = 100_000, seed: int = 0, clusters: dict | None = None,
              level_ranges: dict | None = None, em_samples: int = 20000, learned_steps: int = 0,
              progress: bool = False, pool=None) -> Atlas:
    """Fit the atlas of a model with a LeakyReLU mapping: map ``n`` latents (seeds ``seed..``),
    fit P's Gaussian and the P-norm PCA whitening, the EM mixture per level (``clusters``, e.g.
    {'coarse': 8, 'medium': 8, 'fine': 8}, on ``em_samples`` codes) and, with ``learned_steps`` > 0,
    the learned multi-level mixture. ``level_ranges`` overrides the W+ rows of each level.
    ``pool`` (``latentatlas.parallel``) maps the latents and sums their moments on its workers (the
    same moments to float64 round-off); the mixtures are fitted here."""
    check_p_space(model)
    t0 = time.perf_counter()
    timings: dict = {}
    mom = mapped_moments(model, n, seed=seed, progress=progress, timings=timings, pool=pool)
    pn = PNormSpace().fit(moments=mom)
    timings["pca_s"] = time.perf_counter() - t0 - timings["mapping_s"] - timings["statistics_s"]
    level_ranges = level_ranges or default_level_ranges(model.num_ws)
    clusters = clusters if clusters is not None else {lvl: 8 for lvl in level_ranges}
    em = None
    if any(clusters.values()):
        t1 = time.perf_counter()
        with torch.no_grad():
            w = model.mapping(model.sample_z(em_samples, seed=10_000_000 + seed))
        em = EMMixture(pn, clusters, level_ranges, seed=seed).fit(w)
        timings["em_s"] = time.perf_counter() - t1
    learned = None
    if learned_steps and any(clusters.values()):
        t2 = time.perf_counter()
        with torch.enable_grad():
            learned = LearnedMixture(model, pn.to(model.device), clusters, level_ranges, steps=learned_steps,
                                     seed=seed).fit(progress=progress)
        timings["learned_s"] = time.perf_counter() - t2
    meta = {"model": model.name, "weights_hash": model.weights_hash(), "n": n, "seed": seed,
            "em_samples": em_samples, "learned_steps": learned_steps, "latentatlas": __version__,
            "torch": torch.__version__, "python": platform.python_version(),
            "timings": {k: round(v, 3) for k, v in timings.items()}}
    return Atlas(pn.to(model.device), meta, level_ranges, em, learned=learned)


NEEDS = ("pnorm", "mixture")


DEFAULT_CLUSTERS = {"coarse": 8, "medium": 8, "fine": 8}


def atlas_cache_paths(model, *, n: int = 100_000, seed: int = 0, clusters: dict | None = None,
                      learned_steps: int = LEARNED_STEPS):
    """(the full atlas's cache file, the P-norm-only one's) for these settings."""
    cl = clusters if clusters is not None else DEFAULT_CLUSTERS
    tag = "-".join(f"{k}{v}" for k, v in sorted(cl.items()))
    return (cache_dir() / f"{model.weights_hash()}-n{n}-s{seed}-{tag}-l{learned_steps}.npz",
            cache_dir() / f"{model.weights_hash()}-n{n}-s{seed}-pnorm.npz")


def get_atlas(model, *, need: str = "mixture", n: int = 100_000, seed: int = 0, clusters: dict | None = None,
              learned_steps: int = LEARNED_STEPS, progress: bool = False) -> Atlas:
    """The cached atlas for this model's weights that has what ``need`` asks for ('pnorm': the
    P-norm statistics; 'mixture': also the EM and learned mixtures). Without one, says in one
    line what it fits now and about how long it takes, fits only what is needed, and caches
    it. Commands take ``--atlas FILE`` (``Atlas.load``) to use a chosen atlas instead."""
    if need not in NEEDS:
        raise ValueError(f"need must be one of {NEEDS}")
    cl = clusters if clusters is not None else DEFAULT_CLUSTERS
    tag = "-".join(f"{k}{v}" for k, v in sorted(cl.items()))
    full, pnorm_only = atlas_cache_paths(model, n=n, seed=seed, clusters=cl, learned_steps=learned_steps)
    for path in ([full, pnorm_only] if need == "pnorm" else [full]):
        if path.is_file():
            try:
                return Atlas.load(path, model)
            except LatentAtlasError:
                path.unlink()
    t0 = time.perf_counter()
    with torch.no_grad():
        model.mapping(model.sample_z(1000, seed=123_456_789))
    est = (time.perf_counter() - t0) * n / 1000 * 2
    what = f"the P-norm statistics of N={n:,} mapped latents (about {max(est, 1):.0f} s)"
    if need == "mixture":
        what += f", then EM mixtures {tag} and {learned_steps} learned-mixture steps (about a minute or more)"
    log.warning("no --atlas given and none cached for model '%s': fitting %s now, cached in %s "
                "(latentatlas fit --out A.npz, then --atlas A.npz, to choose your own)", model.name, what, cache_dir())
    if need == "pnorm":
        atlas = fit_atlas(model, n=n, seed=seed, clusters={lvl: 0 for lvl in cl}, learned_steps=0, progress=progress)
        atlas.save(pnorm_only)
    else:
        atlas = fit_atlas(model, n=n, seed=seed, clusters=cl, learned_steps=learned_steps, progress=progress)
        atlas.save(full)
    return atlas


def describe(atlas: Atlas) -> dict:
    """What an atlas records (``fit --inspect``)."""
    m = dict(atlas.meta)
    return {"model": m.get("model"), "weights_hash": m.get("weights_hash"), "n": m.get("n"), "seed": m.get("seed"),
            "levels": {k: list(v) for k, v in atlas.level_ranges.items()},
            "em_clusters": atlas.em.n_clusters if atlas.em is not None else None,
            "learned_clusters": m.get("learned_clusters"), "learned_steps": m.get("learned_steps"),
            "versions": {k: m.get(k) for k in ("latentatlas", "torch", "python")}, "timings": m.get("timings")}
