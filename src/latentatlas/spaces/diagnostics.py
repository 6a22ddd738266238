"""Normality diagnostics of W, P and P-norm (reproduces II2S's Fig. 1: W is skewed and
heavy-tailed, P is Gaussian-like, P-norm is isotropic)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..imageio import atomic_path
from . import PNormSpace, lrelu_inverse


@torch.no_grad()
def space_samples(model, pnorm: PNormSpace, n: int = 20000, seed: int = 0) -> dict[str, np.ndarray]:
    w = model.mapping(model.sample_z(n, seed))
    return {"W": w.cpu().double().numpy(), "P": lrelu_inverse(w).cpu().double().numpy(),
            "P-norm": pnorm.transform(w).cpu().double().numpy()}


def normality_table(samples: dict[str, np.ndarray]) -> list[dict]:
    """Per space: mean |skewness|, mean |excess kurtosis| over dimensions, the share of
    dimensions where D'Agostino-Pearson's K² test rejects normality at 1%, and the largest
    off-diagonal |correlation|."""
    import scipy.stats  # 1.4 s to import: loaded when a table is made, not by every command's start
    rows = []
    for name, x in samples.items():
        sk = scipy.stats.skew(x, axis=0)
        ku = scipy.stats.kurtosis(x, axis=0)           # excess (0 for a Gaussian)
        _, p = scipy.stats.normaltest(x, axis=0)
        c = np.corrcoef(x, rowvar=False)
        np.fill_diagonal(c, 0)
        rows.append({"space": name, "mean |skew|": float(np.abs(sk).mean()), "max |skew|": float(np.abs(sk).max()),
                     "mean |excess kurtosis|": float(np.abs(ku).mean()),
                     "share non-normal (K² p<0.01)": float((p < 0.01).mean()),
                     "max |corr|": float(np.abs(c).max())})
    return rows


def _normality_stats(samples: dict[str, np.ndarray], idx=None) -> dict[str, float]:
    out = {}
    for name, x in samples.items():
        x = x if idx is None else x[idx]
        c = x - x.mean(0)
        m2 = (c * c).mean(0)
        m3, m4 = (c ** 3).mean(0), (c ** 4).mean(0)
        out[f"{name} mean |skew|"] = float(np.abs(m3 / m2 ** 1.5).mean())          # scipy's biased estimators
        out[f"{name} mean |excess kurtosis|"] = float(np.abs(m4 / m2 ** 2 - 3).mean())
        corr = (c.T @ c) / (len(c) * np.sqrt(np.outer(m2, m2)))
        np.fill_diagonal(corr, 0)
        out[f"{name} max |corr|"] = float(np.abs(corr).max())
    return out


def normality_noise(samples: dict[str, np.ndarray], *, resamples: int = 8, seed: int = 0) -> dict:
    """The noise of ``normality_table``'s mean |skew|, mean |excess kurtosis| and max |corr| per
    space and of their differences between spaces, by half-sampling (``resamples`` draws of n/2
    rows without replacement, whose spread matches the full sample's standard error; the spaces
    are the same latents mapped, so each draw takes the same rows of every space): ``{"n",
    "values": {stat: value}, "draws": [{stat: value}, ...]}``; a claim forms the contrast it needs
    from the draws."""
    n = next(iter(samples.values())).shape[0]
    rng = np.random.default_rng(seed)
    draws = [_normality_stats(samples, np.sort(rng.choice(n, n // 2, replace=False))) for _ in range(resamples)]
    return {"n": n, "values": _normality_stats(samples), "draws": draws}


def plot_marginals(samples: dict[str, np.ndarray], path, dims=(0, 1, 2, 3)) -> Path:
    """Histograms of a few dimensions per space (rows) + a pairwise joint plot of dims 0, 1."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import scipy.stats
    names = list(samples)
    fig, axes = plt.subplots(len(names), len(dims) + 1, figsize=(2.6 * (len(dims) + 1), 2.2 * len(names)))
    for r, name in enumerate(names):
        x = samples[name]
        for c, d in enumerate(dims):
            ax = axes[r, c]
            ax.hist(x[:, d], bins=80, density=True, color="#4070a0", histtype="stepfilled")
            g = np.linspace(x[:, d].min(), x[:, d].max(), 200)
            ax.plot(g, scipy.stats.norm.pdf(g, x[:, d].mean(), x[:, d].std()), "r-", lw=0.8)
            ax.set_title(f"{name} dim {d}", fontsize=8)
            ax.tick_params(labelsize=6)
        ax = axes[r, -1]
        ax.scatter(x[:3000, dims[0]], x[:3000, dims[1]], s=1, alpha=0.4, color="#204060")
        ax.set_title(f"{name}: dim {dims[0]} vs {dims[1]}", fontsize=8)
        ax.tick_params(labelsize=6)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=90, format="png")
    plt.close(fig)
    return Path(path)
