"""The noise of the figures a verdict reads, computed the way each figure is.

Every function returns one *interval* dict: ``diff`` (the measured value, or difference, on all
the data), ``lo``/``hi`` (a 95% interval), ``se`` (its standard error), ``n`` (the count the
error falls with as 1/sqrt(n)) and ``how`` (the test, in words, for the report). A claim reads
its verdict from these with ``report.claims.verdict_from_intervals``; ``samples_to_resolve``
turns one into the n that would exclude zero.
"""
from __future__ import annotations

import numpy as np

Z95 = 1.959964


def interval(diff: float, se: float, n: int, how: str, lo: float | None = None, hi: float | None = None) -> dict:
    """An interval dict; ``lo``/``hi`` default to the normal ``diff ± 1.96 se``."""
    return {"diff": float(diff), "se": float(se), "n": int(n), "how": how,
            "lo": float(diff - Z95 * se if lo is None else lo), "hi": float(diff + Z95 * se if hi is None else hi)}


def shifted(d: dict, by: float) -> dict:
    """``d`` measured against a threshold ``by`` instead of zero (``value − by``)."""
    return {**d, "diff": d["diff"] - by, "lo": d["lo"] - by, "hi": d["hi"] - by}


def samples_to_resolve(diff: float, se: float, n: int, z: float = Z95) -> int | None:
    """About how many samples would make a difference of ``diff`` measured with standard error
    ``se`` at ``n`` samples exclude zero at ~95% (the error falling as 1/sqrt(N)); None when the
    difference is zero."""
    if diff == 0 or not np.isfinite(se):
        return None
    return int(np.ceil(n * (z * se / abs(diff)) ** 2))


def paired_mean_difference(a, b) -> dict:
    """mean(b − a) for per-item values measured on the same items (same seeds, same images), with
    the normal interval of a paired mean (the items' own spread cancels)."""
    d = np.asarray(b, dtype=np.float64) - np.asarray(a, dtype=np.float64)
    n = d.size
    if n < 2:
        raise ValueError("a paired difference needs at least two items")
    return interval(d.mean(), d.std(ddof=1) / np.sqrt(n), n, "paired mean difference, normal interval")


def mean_difference(a, b) -> dict:
    """mean(b) − mean(a) for two independent groups (Welch), with a t interval."""
    from scipy.stats import t
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    va, vb = a.var(ddof=1) / a.size, b.var(ddof=1) / b.size
    se = float(np.sqrt(va + vb))
    df = (va + vb) ** 2 / max(va ** 2 / (a.size - 1) + vb ** 2 / (b.size - 1), 1e-300)
    q = float(t.ppf(0.975, df)) if se > 0 else 0.0
    diff = b.mean() - a.mean()
    return interval(diff, se, min(a.size, b.size), f"Welch t interval ({a.size} vs {b.size})",
                    lo=diff - q * se, hi=diff + q * se)


def proportion(k: int, n: int, against: float = 0.5) -> dict:
    """A count ``k of n`` as its share minus ``against`` (0.5: a sign test), with the exact
    Clopper–Pearson interval and the two-sided binomial p-value in ``p``."""
    from scipy.stats import binomtest
    if n < 1:
        raise ValueError("a proportion needs at least one trial")
    t = binomtest(int(k), int(n), against)
    ci = t.proportion_ci(0.95, method="exact")
    share = k / n
    return {**interval(share - against, np.sqrt(max(share * (1 - share), 0.25 / n) / n), n,
                       f"sign test (binomial, p = {t.pvalue:.2g}), exact 95% interval",
                       lo=ci.low - against, hi=ci.high - against), "p": float(t.pvalue)}


def correlation(x, y, *, resamples: int = 2000, seed: int = 0) -> dict:
    """Spearman's ρ of paired values with its p-value (``p``) and a 95% bootstrap interval over
    the pairs."""
    from scipy.stats import rankdata, spearmanr
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    n = x.size
    rho, p = spearmanr(x, y)
    rng = np.random.default_rng(seed)
    boots = np.empty(resamples)
    for i in range(resamples):
        idx = rng.integers(0, n, n)
        rx, ry = rankdata(x[idx]), rankdata(y[idx])
        c = np.corrcoef(rx, ry)[0, 1]
        boots[i] = 0.0 if not np.isfinite(c) else c
    lo, hi = np.percentile(boots, [2.5, 97.5])
    return {**interval(rho, boots.std(ddof=1), n, f"Spearman ρ, p = {p:.2g}, 95% bootstrap interval over the {n} pairs",
                       lo=lo, hi=hi), "p": float(p)}


def bootstrap(stat, n: int, *, resamples: int = 200, seed: int = 0, how: str = "bootstrap") -> dict:
    """A statistic of n items resampled with replacement: ``stat(idx)`` evaluated on all items
    (``idx`` = None) and on ``resamples`` index draws; percentile interval."""
    rng = np.random.default_rng(seed)
    value = stat(None)
    boots = np.array([stat(rng.integers(0, n, n)) for _ in range(resamples)])
    lo, hi = np.percentile(boots, [2.5, 97.5])
    return interval(value, boots.std(ddof=1), n, f"{how}, 95% percentile interval over {resamples} resamples",
                    lo=lo, hi=hi)


def half_sample(stat, n: int, *, resamples: int = 100, seed: int = 0, how: str = "half-sampling") -> dict:
    """For statistics a bootstrap's duplicated items would bias (k-NN radii shrink to zero at a
    repeated point: precision, recall, density, coverage): ``stat(idx)`` on ``resamples`` draws of
    n/2 items *without* replacement. Half-sampling's spread matches the full sample's standard
    error for smooth statistics (the finite-population factor (1 − m/n)·n/m is 1 at m = n/2); the
    interval is the full-sample value ± 1.96 of that spread."""
    rng = np.random.default_rng(seed)
    value = stat(None)
    m = n // 2
    boots = np.array([stat(np.sort(rng.choice(n, m, replace=False))) for _ in range(resamples)])
    return interval(value, boots.std(ddof=1), n, f"{how} ({resamples} half-samples without replacement), normal interval")
