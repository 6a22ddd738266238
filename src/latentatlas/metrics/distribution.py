"""Distribution metrics on feature arrays: Fréchet distance, KID, precision/recall,
density/coverage. Pure functions of ``[N, D]`` arrays (numpy or torch), float64 inside.

* FID: Heusel et al. 2017. ``‖μ1−μ2‖² + tr(Σ1 + Σ2 − 2 (Σ1 Σ2)^{1/2})``; the matrix square root
  enters only through its trace, taken from the eigenvalues of the symmetric Σ1^½ Σ2 Σ1^½
  (exact also for singular covariances, where ``scipy.linalg.sqrtm`` warns).
* KID: Bińkowski et al. 2018, unbiased MMD² with the cubic polynomial kernel
  ``k(x,y) = (xᵀy/D + 1)³`` averaged over random subsets.
* Precision/recall: Kynkäänniemi et al. 2019, k-NN radius manifolds (k = 3). Precision = share
  of *generated* samples inside the *real* manifold; recall = share of *real* samples inside
  the *generated* manifold (the order some tools swap).
* Density/coverage: Naeem et al. 2020, same k-NN radii of the real set.
"""
from __future__ import annotations

import zlib

import numpy as np
import torch

from .uncertainty import bootstrap, half_sample


def _np64(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"features must be [N, D], got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError("features contain NaN or infinite values")
    return x


def feature_stats(feats) -> tuple[np.ndarray, np.ndarray]:
    """Mean [D] and (unbiased) covariance [D, D] in float64."""
    f = _np64(feats)
    if f.shape[0] < 2:
        raise ValueError("need at least 2 feature vectors for a covariance")
    return f.mean(0), np.cov(f, rowvar=False)


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    """‖μ1 − μ2‖² + tr Σ1 + tr Σ2 − 2 tr (Σ1 Σ2)^½ (FID of Heusel et al. on given statistics).

    The trace term is computed as Σ_i √λ_i of the symmetric PSD matrix Σ1^½ Σ2 Σ1^½, whose
    eigenvalues are those of Σ1 Σ2: the same number as the trace of ``scipy.linalg.sqrtm(Σ1 @ Σ2)``
    where that is well conditioned, and still exact where a covariance is singular (a strongly
    truncated sample set has almost no spread in some directions), where sqrtm warns and returns
    complex rounding noise."""
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    s1, s2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape or s1.shape != s2.shape:
        raise ValueError(f"statistics disagree in shape: {mu1.shape}/{s1.shape} vs {mu2.shape}/{s2.shape}")
    if not (np.isfinite(s1).all() and np.isfinite(s2).all() and np.isfinite(mu1).all() and np.isfinite(mu2).all()):
        raise ValueError("feature statistics are not finite")
    diff = mu1 - mu2
    lam, vec = np.linalg.eigh((s1 + s1.T) / 2)
    root = (vec * np.sqrt(np.clip(lam, 0, None))) @ vec.T                  # Σ1^½
    m = root @ s2 @ root
    tr_covmean = np.sqrt(np.clip(np.linalg.eigvalsh((m + m.T) / 2), 0, None)).sum()
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2 * tr_covmean)


def fid_from_features(real, fake) -> float:
    return frechet_distance(*feature_stats(real), *feature_stats(fake))


def _array_key(x: np.ndarray) -> tuple:
    """A key for a (reference) feature array's contents, for the caches below."""
    import hashlib
    return hashlib.blake2b(np.ascontiguousarray(x).tobytes(), digest_size=16).hexdigest(), x.shape


def _memo(store: dict, limit: int, key, compute):
    """``store[key]``, computed on first use; the oldest entry goes when ``limit`` is reached."""
    if key not in store:
        if len(store) >= limit:
            store.pop(next(iter(store)))
        store[key] = compute()
    return store[key]


def _poly_kernel_sum(a: np.ndarray, b: np.ndarray | None = None) -> float:
    """Σ of the cubic polynomial kernel (a·b/d + 1)³ over all pairs; with ``b`` None, over the
    pairs of ``a`` with itself less the diagonal. In place, cube by multiplication (``** 3`` goes
    through the slow general power)."""
    d = a.shape[1]
    k = a @ (a if b is None else b).T
    k /= d
    k += 1
    t = k * k
    t *= k
    return float(t.sum() - (np.trace(t) if b is None else 0.0))


_KID_REAL_CACHE: dict = {}


def kid(real, fake, *, num_subsets: int = 100, subset_size: int = 1000, seed: int = 0) -> tuple[float, float]:
    """Kernel inception distance: (mean, std) of unbiased MMD² over random subsets. The real
    set's within-subset sums depend only on the real set and the draws (the seed and the two set
    sizes), so a sweep that scores many fake sets against one reference computes them once."""
    x, y = _np64(real), _np64(fake)
    m = min(subset_size, x.shape[0], y.shape[0])
    if m < 2:
        raise ValueError("KID needs at least 2 samples per set")
    rng = np.random.RandomState(seed)
    draws = [(rng.choice(x.shape[0], m, replace=False), rng.choice(y.shape[0], m, replace=False))
             for _ in range(num_subsets)]
    sxx = _memo(_KID_REAL_CACHE, 8, (_array_key(x), y.shape[0], m, num_subsets, seed),
                lambda: np.array([_poly_kernel_sum(x[ia]) for ia, _ in draws]))
    vals = np.empty(num_subsets)
    for i, (ia, ib) in enumerate(draws):
        a, b = x[ia], y[ib]
        vals[i] = (sxx[i] / (m * (m - 1)) + _poly_kernel_sum(b) / (m * (m - 1))
                   - 2 * _poly_kernel_sum(a, b) / (m * m))
    return float(vals.mean()), float(vals.std())


def _dist_chunks(a: np.ndarray, b: np.ndarray, chunk: int = 1024):
    """Yield (start, Euclidean distances [chunk, len(b)]) in float64, rows of ``a`` in chunks,
    so no full [len(a), len(b)] matrix is ever held."""
    ta, tb = torch.from_numpy(a), torch.from_numpy(b)
    bb = (tb * tb).sum(1)
    for i in range(0, ta.shape[0], chunk):
        ac = ta[i: i + chunk]
        d2 = (ac * ac).sum(1)[:, None] + bb[None] - 2 * ac @ tb.T
        yield i, d2.clamp_min_(0).sqrt_()


def knn_radii(x: np.ndarray, k: int) -> np.ndarray:
    """Distance of each row to its k-th nearest other row."""
    out = np.empty(x.shape[0])
    for i, d in _dist_chunks(x, x):
        out[i: i + d.shape[0]] = d.topk(k + 1, dim=1, largest=False).values[:, k].numpy()   # [:, 0] is itself
    return out


_RADII_CACHE: dict = {}


def _cached_radii(x: np.ndarray, k: int) -> np.ndarray:
    return _memo(_RADII_CACHE, 4, (_array_key(x), k), lambda: knn_radii(x, k))


def prdc(real, fake, *, k: int = 3, equalize: bool = True, seed: int = 0) -> dict:
    """Precision, recall, density, coverage with k-NN manifolds. With ``equalize`` the larger
    set is randomly subsampled to the size of the smaller one first (k-NN radii depend on the
    sample size: with unequal sets, precision and recall of two samples of one distribution
    come out skewed in opposite directions)."""
    x, y = _np64(real), _np64(fake)
    if equalize and x.shape[0] != y.shape[0]:
        rng = np.random.RandomState(seed)
        m = min(x.shape[0], y.shape[0])
        x = x[rng.choice(x.shape[0], m, replace=False)] if x.shape[0] > m else x
        y = y[rng.choice(y.shape[0], m, replace=False)] if y.shape[0] > m else y
    if x.shape[0] <= k or y.shape[0] <= k:
        raise ValueError(f"precision/recall with k={k} needs more than {k} samples per set")
    r_real = _cached_radii(x, k)        # the reference set is the same across a sweep
    r_fake = knn_radii(y, k)
    rr, rf = torch.from_numpy(r_real), torch.from_numpy(r_fake)
    inside_count = torch.zeros(y.shape[0], dtype=torch.long)  # real balls holding fake j
    recalled, covered = torch.zeros(x.shape[0], dtype=torch.bool), torch.zeros(x.shape[0], dtype=torch.bool)
    for i, d in _dist_chunks(x, y):                           # d: [real chunk, fake]
        r = rr[i: i + d.shape[0], None]
        inside_count += (d < r).sum(0)
        recalled[i: i + d.shape[0]] = (d < rf[None]).any(1)
        covered[i: i + d.shape[0]] = d.min(1).values < r[:, 0]
    precision = float((inside_count > 0).double().mean())
    recall = float(recalled.double().mean())
    density = float(inside_count.double().mean() / k)
    coverage = float(covered.double().mean())
    return {"precision": precision, "recall": recall, "density": density, "coverage": coverage}


def realism(real, fake, *, k: int = 3) -> np.ndarray:
    """Per-sample realism score of Kynkäänniemi et al. (2019, eq. 3):
    R(f) = max_i NND_k(r_i) / ‖f − r_i‖ over the real samples r_i, after discarding the half of the
    real k-NN balls with the largest radii (their outlier pruning). R ≥ 1: the sample lies inside
    the pruned real manifold; larger is more typical. Unlike precision it is per sample, so it
    moves with truncation even where the precision of a set is saturated. Returns [len(fake)]."""
    x, y = _np64(real), _np64(fake)
    r = _cached_radii(x, k)
    keep = r <= np.median(r)
    x, r = x[keep], torch.from_numpy(r[keep])
    best = torch.zeros(y.shape[0], dtype=torch.float64)
    for i, d in _dist_chunks(x, y):
        ratio = r[i: i + d.shape[0], None] / d.clamp_min(1e-12)
        best = torch.maximum(best, ratio.max(0).values)
    return best.numpy()


def realism_summary(real, fake, *, k: int = 3) -> dict:
    """The set-level figures of the realism score: its median, and the share of samples below 1
    (outside the pruned real manifold)."""
    rs = realism(real, fake, k=k)
    return {"realism": float(np.median(rs)), "share_unrealistic": float((rs < 1).mean())}


def paired_fid_difference(real_mu, real_sigma, fa, fb, *, resamples: int = 200, seed: int = 0) -> dict:
    """FID(b) − FID(a) against one real set, with a bootstrap interval over the generated samples
    resampled *paired*: row i of ``fa`` and of ``fb`` came from the same latent (two sampling
    strategies applied to the same seeds), so both are resampled with the same indices and the
    latents' own spread cancels. An ``uncertainty.interval`` dict (diff on all samples)."""
    fa, fb = _np64(fa), _np64(fb)
    if fa.shape != fb.shape:
        raise ValueError(f"paired features must have one shape, got {fa.shape} and {fb.shape}")

    def fid(x):
        mu, sig = feature_stats(x)
        return frechet_distance(real_mu, real_sigma, mu, sig)

    def diff(idx):
        return fid(fb) - fid(fa) if idx is None else fid(fb[idx]) - fid(fa[idx])
    return bootstrap(diff, fa.shape[0], resamples=resamples, seed=seed, how="paired bootstrap over the shared seeds")


def paired_prdc_difference(real, fa, fb, key: str, *, k: int = 3, resamples: int = 60, seed: int = 0) -> dict:
    """``key`` (precision, recall, density or coverage) of ``fb`` minus that of ``fa``, paired by
    seed as in ``paired_fid_difference`` but by half-sampling (``uncertainty.half_sample``): a
    bootstrap's repeated samples would shrink the k-NN radii. Each half-sample also draws its own
    reference subset of the same size (``prdc``'s equalising), so the reference's noise is in."""
    fa, fb = _np64(fa), _np64(fb)
    if fa.shape != fb.shape:
        raise ValueError(f"paired features must have one shape, got {fa.shape} and {fb.shape}")

    def diff(idx):
        s = seed if idx is None else zlib.crc32(idx.tobytes())
        xa, xb = (fa, fb) if idx is None else (fa[idx], fb[idx])
        return prdc(real, xb, k=k, seed=s)[key] - prdc(real, xa, k=k, seed=s)[key]
    return half_sample(diff, fa.shape[0], resamples=resamples, seed=seed, how=f"paired {key} difference")
