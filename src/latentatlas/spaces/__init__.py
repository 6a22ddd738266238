"""Invertible latent transforms (Wulff & Torralba and II2S, METHODS.md §1), scikit-learn style:
``__init__`` stores hyper-parameters, ``fit`` returns ``self``, learned state ends in ``_``,
``transform``/``inverse_transform`` are exact inverses. All work on torch tensors on any
device and are differentiable (usable inside inversion losses).

* :class:`PSpace`: ``p = lrelu_5(w)`` undoes the mapping's final LeakyReLU(0.2) (its √2 gain is a
  positive scale and commutes). Refused for generators whose mapping does not end in it.
* :class:`PNormSpace`: PCA whitening of P, ``v = Λ^{-1/2} Cᵀ (p − μ)``, optionally top-k.
* :class:`PNormPlusSpace`: the same transform applied to every row of a W+ code.
* :class:`StreamingMoments`: float64 mean/covariance accumulated in chunks (1M samples in a few
  hundred MB).
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import LatentAtlasError


class NotFittedError(LatentAtlasError):
    pass


def _check_fitted(est, attr: str):
    if getattr(est, attr, None) is None:
        raise NotFittedError(f"{type(est).__name__} is not fitted yet: call fit() first")


class StreamingMoments:
    """Running float64 sum and outer-product sum; ``mean``/``cov`` at any point."""

    def __init__(self, dim: int, device="cpu"):
        self.n = 0
        self.s = torch.zeros(dim, dtype=torch.float64, device=device)
        self.ss = torch.zeros(dim, dim, dtype=torch.float64, device=device)

    def update(self, x: torch.Tensor):
        x = x.reshape(-1, x.shape[-1]).to(self.s.device, torch.float64)
        self.n += x.shape[0]
        self.s += x.sum(0)
        self.ss += x.t() @ x

    @property
    def mean(self) -> torch.Tensor:
        return self.s / self.n

    @property
    def cov(self) -> torch.Tensor:
        mu = self.mean
        return (self.ss - self.n * torch.outer(mu, mu)) / (self.n - 1)


def lrelu_inverse(w: torch.Tensor) -> torch.Tensor:
    """p = lrelu_5(w): exact inverse of LeakyReLU with negative slope 0.2."""
    return F.leaky_relu(w, 5.0)


def lrelu_forward(p: torch.Tensor) -> torch.Tensor:
    return F.leaky_relu(p, 0.2)


def check_p_space(model):
    """A P space exists only when the mapping ends in LeakyReLU(0.2) (METHODS §1)."""
    model.require_p_space("the P space")


class PSpace:
    """W <-> P. Stateless, but fitted like the others for a uniform interface."""

    def fit(self, w=None):
        self.fitted_ = True
        return self

    def transform(self, w: torch.Tensor) -> torch.Tensor:
        return lrelu_inverse(w)

    def inverse_transform(self, p: torch.Tensor) -> torch.Tensor:
        return lrelu_forward(p)


class PNormSpace:
    """PCA-whitened P space (II2S's P_N). ``n_components`` keeps the top-k (None = all).

    Learned: ``mean_`` [D], ``components_`` [D, k] (columns = principal axes, descending
    variance), ``explained_variance_`` [k], ``n_samples_``. Dtype float32 for use; fitted in
    float64."""

    def __init__(self, n_components: int | None = None, eps: float = 1e-8):
        self.n_components = n_components
        self.eps = eps

    def fit(self, w: torch.Tensor | None = None, *, moments: StreamingMoments | None = None):
        """Fit from W samples [N, D] (mapped to P here) or from precomputed P moments."""
        if moments is None:
            if w is None:
                raise ValueError("fit needs W samples or moments")
            moments = StreamingMoments(w.shape[-1], device=w.device)
            moments.update(lrelu_inverse(w.detach()))
        return self._fit_moments(moments.mean, moments.cov, moments.n)

    def _fit_moments(self, mean: torch.Tensor, cov: torch.Tensor, n: int):
        cov = (cov + cov.t()) / 2
        evals, evecs = torch.linalg.eigh(cov)
        order = torch.argsort(evals, descending=True)
        evals, evecs = evals[order].clamp_min(self.eps), evecs[:, order]
        k = self.n_components or evals.shape[0]
        if not 1 <= k <= evals.shape[0]:
            raise LatentAtlasError(f"n_components must be in [1, {evals.shape[0]}], got {k}")
        self.mean_ = mean.float()
        self.components_ = evecs[:, :k].float().contiguous()
        self.explained_variance_ = evals[:k].float()
        self.n_samples_ = int(n)
        self.cov_ = cov.float()
        return self

    def p_to_v(self, p: torch.Tensor) -> torch.Tensor:
        _check_fitted(self, "components_")
        return ((p - self.mean_) @ self.components_) / self.explained_variance_.sqrt()

    def v_to_p(self, v: torch.Tensor) -> torch.Tensor:
        _check_fitted(self, "components_")
        return (v * self.explained_variance_.sqrt()) @ self.components_.t() + self.mean_

    def transform(self, w: torch.Tensor) -> torch.Tensor:
        """W [..., D] -> P-norm [..., k]."""
        return self.p_to_v(lrelu_inverse(w))

    def inverse_transform(self, v: torch.Tensor) -> torch.Tensor:
        """P-norm [..., k] -> W [..., D] (exact for k = D)."""
        return lrelu_forward(self.v_to_p(v))

    def to(self, device):
        for k in ("mean_", "components_", "explained_variance_", "cov_"):
            if getattr(self, k, None) is not None:
                setattr(self, k, getattr(self, k).to(device))
        return self

    def state(self) -> dict:
        _check_fitted(self, "components_")
        return {"mean": self.mean_.cpu(), "components": self.components_.cpu(),
                "explained_variance": self.explained_variance_.cpu(), "cov": self.cov_.cpu(),
                "n_samples": self.n_samples_}

    @classmethod
    def from_state(cls, st: dict, n_components=None) -> "PNormSpace":
        sp = cls(n_components)
        sp.mean_, sp.components_ = torch.as_tensor(st["mean"]).float(), torch.as_tensor(st["components"]).float()
        sp.explained_variance_ = torch.as_tensor(st["explained_variance"]).float()
        sp.cov_ = torch.as_tensor(st["cov"]).float()
        sp.n_samples_ = int(st["n_samples"])
        if n_components:
            sp.components_ = sp.components_[:, :n_components]
            sp.explained_variance_ = sp.explained_variance_[:n_components]
        return sp


class PNormPlusSpace(PNormSpace):
    """P-norm applied to each row of W+ [N, L, D] -> [N, L, k]. Fitted like PNormSpace (one
    μ, C, Λ for all rows, estimated from single w samples)."""

    def transform(self, ws: torch.Tensor) -> torch.Tensor:
        if ws.ndim != 3:
            raise LatentAtlasError(f"P-norm+ expects W+ codes [N, L, D], got {list(ws.shape)}")
        return super().transform(ws)

    def inverse_transform(self, v: torch.Tensor) -> torch.Tensor:
        if v.ndim != 3:
            raise LatentAtlasError(f"P-norm+ expects codes [N, L, k], got {list(v.shape)}")
        return super().inverse_transform(v)


def mapped_moments(model, n: int, *, seed: int = 0, batch_size: int = 10000, space: str = "p",
                   progress: bool = False, timings: dict | None = None, pool=None) -> StreamingMoments:
    """Stream ``n`` mapped latents (seeds seed..seed+n-1 drawn in one generator per chunk for
    speed: chunk c uses seed ``seed * 1_000_003 + c``) into float64 moments of W or P. With a
    ``pool`` (``latentatlas.parallel``) the chunks are mapped on its workers, a share each, and the
    shards' sums are added in chunk order: the same moments to float64 round-off."""
    import time
    check_p_space(model) if space == "p" else model.require_mapping("W statistics")
    chunks = list(range(-(-n // batch_size)))
    if pool is None:
        return moments_of_chunks(model, chunks, n, seed=seed, batch_size=batch_size, space=space,
                                 progress=progress, timings=timings)
    t0 = time.perf_counter()
    per = max(1, -(-len(chunks) // (4 * pool.size)))
    shards = [chunks[i:i + per] for i in range(0, len(chunks), per)]
    from tqdm import tqdm
    parts = dict(tqdm(pool.imap(moments_task, ((sh[0], (sh, n, seed, batch_size, space), {}) for sh in shards)),
                      total=len(shards), disable=not progress, desc="mapping (shards)", leave=False))
    mom = merge_moments([parts[k] for k in sorted(parts)], model.w_dim, device=model.device)
    if timings is not None:
        timings.update(mapping_s=time.perf_counter() - t0, statistics_s=0.0)
    return mom


@torch.no_grad()
def moments_of_chunks(model, chunks, n: int, *, seed: int = 0, batch_size: int = 10000, space: str = "p",
                      progress: bool = False, timings: dict | None = None) -> StreamingMoments:
    """The float64 moments of the given chunks of ``mapped_moments``'s stream (chunk c: latents
    c·batch_size .. min(n, (c+1)·batch_size), its own generator seed)."""
    import time

    from tqdm import tqdm
    mom = StreamingMoments(model.w_dim, device=model.device)
    t_map = t_stat = 0.0
    g = torch.Generator()
    for c in tqdm(chunks, disable=not progress, desc="mapping", leave=False):
        b = min(batch_size, n - c * batch_size)
        t0 = time.perf_counter()
        g.manual_seed(seed * 1_000_003 + c)
        z = torch.randn(b, model.z_dim, generator=g).to(model.device)
        w = model.mapping(z)
        t1 = time.perf_counter()
        mom.update(lrelu_inverse(w) if space == "p" else w)
        t2 = time.perf_counter()
        t_map += t1 - t0
        t_stat += t2 - t1
    if timings is not None:
        timings.update(mapping_s=t_map, statistics_s=t_stat)
    return mom


def moments_task(worker, chunks: list[int], n: int, seed: int, batch_size: int, space: str) -> tuple:
    """Pool task: the mapped moments of ``chunks`` on the worker's model, as (n, Σx, Σxxᵀ) arrays."""
    mom = moments_of_chunks(worker.model, chunks, n, seed=seed, batch_size=batch_size, space=space)
    return mom.n, mom.s.cpu().numpy(), mom.ss.cpu().numpy()


def merge_moments(parts, dim: int, device="cpu") -> StreamingMoments:
    """Sum shard moments (n, Σx, Σxxᵀ in float64) into one ``StreamingMoments``."""
    mom = StreamingMoments(dim, device="cpu")
    for n, s, ss in parts:
        mom.n += int(n)
        mom.s += torch.from_numpy(np.array(s, dtype=np.float64))
        mom.ss += torch.from_numpy(np.array(ss, dtype=np.float64))
    mom.s, mom.ss = mom.s.to(device), mom.ss.to(device)
    return mom
