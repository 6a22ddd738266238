"""Priors over a StyleGAN's W space.

* :class:`GaussianPrior`: the Gaussian fit in P (Wulff & Torralba). ``mahalanobis(w)`` =
  (p − μ)ᵀ Σ⁻¹ (p − μ) = ‖v‖² in P-norm coordinates; for W+ the rows' terms are summed
  (``reduce="mean"`` averages). ``log_density`` is the Gaussian log-density of p.
  Differentiable: usable as an inversion regulariser.
* :class:`EMMixture`: EM Gaussian mixture (diagonal covariances) fitted in P-norm space; the
  posterior is its classifier. Same cluster API as the learned multi-level mixture:
  ``cluster_of(w, level)``, ``centre(level, k)``, ``sample(level, k, n)``.
"""
from __future__ import annotations

import math

import torch

from ..errors import LatentAtlasError
from ..spaces import PNormSpace
from .learned import mmd2
from .levels import sample_levels


class GaussianPrior:
    def __init__(self, pnorm: PNormSpace):
        if pnorm.n_components is not None and pnorm.components_.shape[1] < pnorm.components_.shape[0]:
            raise LatentAtlasError("the Gaussian prior needs a full-rank P-norm space (n_components=None)")
        self.space = pnorm

    def mahalanobis(self, w: torch.Tensor, reduce: str = "sum") -> torch.Tensor:
        """[N, D] -> [N]; W+ [N, L, D] -> [N] (sum or mean over rows)."""
        v = self.space.transform(w)
        d = v.square().sum(-1)
        if d.ndim == 2:
            d = d.sum(1) if reduce == "sum" else d.mean(1)
        return d

    def log_density(self, w: torch.Tensor) -> torch.Tensor:
        """Gaussian log-density of p = lrelu_5(w) (rows summed for W+)."""
        ev = self.space.explained_variance_
        dim = ev.shape[0]
        const = -0.5 * (dim * math.log(2 * math.pi) + ev.log().sum())
        m = self.mahalanobis(w, reduce="sum")
        rows = w.shape[1] if w.ndim == 3 else 1
        return rows * const - 0.5 * m


class EMMixture:
    """Diagonal-covariance Gaussian mixture in P-norm space, one per level, by EM.

    Every level is fitted on the same single-w samples (W rows are identically distributed);
    levels differ in which W+ rows a cluster's centre is applied to and get independent
    initialisations (seeds), so their clusterings differ. Learned per level: ``weights_`` [K],
    ``means_`` [K, k], ``vars_`` [K, k] in P-norm coordinates."""

    kind = "em"

    def __init__(self, pnorm: PNormSpace, n_clusters: dict[str, int], level_ranges: dict,
                 n_iter: int = 100, tol: float = 1e-4, seed: int = 0):
        self.space, self.n_clusters, self.level_ranges = pnorm, dict(n_clusters), dict(level_ranges)
        self.n_iter, self.tol, self.seed = n_iter, tol, seed

    @staticmethod
    def _log_prob(v, weights, means, vars_):
        # [N, K] joint log p(v, k); the squared distance expanded into matrix products so no
        # [N, K, D] tensor is formed
        iv = 1.0 / vars_                                                      # [K, D]
        maha = v.square() @ iv.t() - 2 * v @ (means * iv).t() + (means.square() * iv).sum(1)[None]
        ll = -0.5 * (maha + vars_.log().sum(-1)[None] + v.shape[1] * math.log(2 * math.pi))
        return ll + weights.log()[None]

    def fit(self, w: torch.Tensor):
        v = self.space.transform(w.detach()).double()
        self.params_ = {}
        self.loglik_ = {}
        for li, level in enumerate(self.level_ranges):
            K = self.n_clusters.get(level)
            if not K:
                continue
            g = torch.Generator().manual_seed(self.seed + 1000 * li)
            means = v[torch.randperm(v.shape[0], generator=g)[:K]].clone()
            vars_ = torch.ones(K, v.shape[1], dtype=torch.float64)
            weights = torch.full((K,), 1.0 / K, dtype=torch.float64)
            prev = -float("inf")
            for _ in range(self.n_iter):
                lp = self._log_prob(v, weights, means, vars_)
                norm = torch.logsumexp(lp, 1, keepdim=True)
                ll = norm.mean().item()
                r = (lp - norm).exp()                     # responsibilities [N, K]
                nk = r.sum(0) + 1e-10
                weights = nk / nk.sum()
                means = (r.t() @ v) / nk[:, None]
                vars_ = (r.t() @ v.square()) / nk[:, None] - means.square()
                vars_ = vars_.clamp_min(1e-4)
                if abs(ll - prev) < self.tol:
                    break
                prev = ll
            self.params_[level] = (weights.float(), means.float(), vars_.float())
            self.loglik_[level] = ll
        return self

    def _params(self, level):
        if not hasattr(self, "params_"):
            raise LatentAtlasError("EMMixture is not fitted yet: call fit() first")
        if level not in self.params_:
            raise LatentAtlasError(f"no clusters for level {level!r}; levels: {', '.join(self.params_)}")
        return self.params_[level]

    def posterior(self, w: torch.Tensor, level: str) -> torch.Tensor:
        """[N, K] cluster probabilities of single w codes [N, D]."""
        weights, means, vars_ = self._params(level)
        lp = self._log_prob(self.space.transform(w), weights.to(w.device), means.to(w.device), vars_.to(w.device))
        return torch.softmax(lp, 1)

    def cluster_of(self, w: torch.Tensor, level: str) -> torch.Tensor:
        """Cluster index [N] of w [N, D], or of W+ [N, L, D] (mean of the level's rows)."""
        if w.ndim == 3:
            a, b = self.level_ranges[level]
            w = w[:, a:b].mean(1)
        return self.posterior(w, level).argmax(1)

    def centre(self, level: str, k: int) -> torch.Tensor:
        """The cluster centre as a w [D] (the component mean mapped back to W)."""
        _, means, _ = self._params(level)
        return self.space.inverse_transform(means[k])

    def centres(self, level: str) -> torch.Tensor:
        _, means, _ = self._params(level)
        return self.space.inverse_transform(means)

    def sample_levels(self, fixed: dict, n: int, seed: int = 0, *, model) -> torch.Tensor:
        """W+ codes with the given levels fixed to clusters (see :func:`sample_levels`)."""
        return sample_levels(self, model, fixed, n, seed)

    def sample(self, level: str, k: int, n: int, seed: int = 0) -> torch.Tensor:
        """n codes w [n, D] drawn from component k."""
        _, means, vars_ = self._params(level)
        g = torch.Generator().manual_seed(seed)
        v = means[k] + vars_[k].sqrt() * torch.randn(n, means.shape[1], generator=g)
        return self.space.inverse_transform(v)

    @torch.no_grad()
    def quality(self, model, n: int = 2000, seed: int = 123) -> dict:
        """Same figures as the learned mixture: per level, MMD² of mixture samples vs held-out W
        next to the two-sample floor, the posterior's accuracy on samples of known component,
        and how real w distribute over the clusters."""
        g = torch.Generator().manual_seed(seed)
        draw = lambda: model.mapping(torch.randn(n, model.z_dim, generator=g).to(model.device))
        h1, h2 = self.space.transform(draw()), self.space.transform(draw())
        floor = mmd2(h1, h2).item()
        out = {}
        for level, (weights, means, vars_) in self.params_.items():
            K = means.shape[0]
            k = torch.multinomial(weights, n, replacement=True, generator=g)
            v = means[k] + vars_[k].sqrt() * torch.randn(n, means.shape[1], generator=g)
            w = self.space.inverse_transform(v.to(model.device))
            acc = (self.cluster_of(w, level).cpu() == k).float().mean().item()
            sizes = torch.bincount(self.cluster_of(draw(), level).cpu(), minlength=K).tolist()
            out[level] = {"mmd2": mmd2(self.space.transform(w), h1).item(), "mmd2_floor": floor,
                          "classifier_accuracy": acc, "real_w_cluster_sizes": sizes}
        return out

    def state(self) -> dict:
        return {f"{lvl}.{name}": t for lvl, ps in self.params_.items()
                for name, t in zip(("weights", "means", "vars"), ps)}

    @classmethod
    def from_state(cls, pnorm, st: dict, n_clusters: dict, level_ranges: dict) -> "EMMixture":
        m = cls(pnorm, n_clusters, level_ranges)
        m.params_ = {lvl: tuple(torch.as_tensor(st[f"{lvl}.{n}"]) for n in ("weights", "means", "vars"))
                     for lvl in level_ranges if f"{lvl}.weights" in st}
        return m


__all__ = ["GaussianPrior", "EMMixture"]
