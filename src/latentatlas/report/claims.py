"""The report's claims section: what the five papers claim, what this model's report measured,
and a verdict computed from those figures' intervals — *holds*, *does not hold*, *mixed*, *not
resolved at this N* (with the N that would resolve it) or *not applicable* (with the reason).
Each claim names its test and thresholds where it is defined (``metrics.uncertainty`` computes
the intervals; ``verdict_from_intervals`` reads every claim's verdict the same way). Every verdict reads figures the other sections stored in
``ctx.figures`` (or computes the one figure no section has: Diamond's σ against the critic);
nothing here is typed in. Where a figure is missing because its section did not run or does not
apply, the claim says so.
"""
from __future__ import annotations

import html
from dataclasses import dataclass

import numpy as np
import torch

from ..errors import LatentAtlasError
from ..evaluation.inversion import (
    GAUSS_BEYOND_3,
    II2S_BASE,
    outlier_excess,
    paired_edit_difference,
)
from ..evaluation.sampling import SAMPLE_FEATURES
from ..metrics.distribution import paired_fid_difference, paired_prdc_difference
from ..metrics.uncertainty import (
    correlation,
    interval,
    mean_difference,
    paired_mean_difference,
    proportion,
    samples_to_resolve,
    shifted,
)
from ..sampling import Context, apply_strategy, initial_latents

HOLDS, NOT, MIXED, NA = "holds", "does not hold", "mixed", "not applicable"
UNRESOLVED = "not resolved at this N"    # an interval that straddles zero: the counts cannot tell
SEM = "ppl ± (s.e.)"                 # the inversion rows' standard error of the PPL


@dataclass
class Claim:
    paper: str
    claim: str
    measured: str
    verdict: str
    figure: tuple | None = None      # (file name in the report, caption) of the plot behind the figure
    page_verdict: str | None = None  # where a stored protocol run decides: the page's own verdict beside it
    page_measured: str | None = None  # ... and what the page measured (``measured`` is then the protocol's)


def _na(paper, claim, why) -> Claim:
    return Claim(paper, claim, why, NA)


def _rows(ctx, strategy):
    res = ctx.figures.get("sampling")
    return [r for r in (res or {}).get("rows", []) if r.get("strategy") == strategy and r.get("fid") is not None]


def _param(r, name):
    for p in r["params"].split(","):
        k, _, v = p.partition("=")
        if k == name:
            try:
                return float(v)
            except ValueError:
                return v
    return None


def _iv(d: dict, fmt: str = "+.3f") -> str:
    """A figure with its interval, for the measured column: ``+0.012 [−0.004, +0.031]``."""
    return f"{d['diff']:{fmt}} [{d['lo']:{fmt}}, {d['hi']:{fmt}}]"


def higher(d: dict) -> dict:
    """Mark an interval whose claimed direction is *above* zero (the default is below)."""
    return {**d, "higher": True}


def _key(r: dict) -> tuple[str, str]:
    return r["strategy"], r["params"]


def _sample_features(ctx) -> dict:
    return (ctx.figures.get("sampling") or {}).get(SAMPLE_FEATURES) or {}


def faithfulness_interval(ctx, a: dict, b: dict) -> dict | None:
    """Per-sample feature distance to the untruncated sample under row ``b`` minus under row ``a``
    (the sweep's ``feature_dist``, paired by seed); None without per-sample features."""
    feats, base = _sample_features(ctx), (ctx.figures.get("sampling") or {}).get("baseline")
    if base is None or any(_key(r) not in feats for r in (a, b, base)):
        return None
    f0 = feats[_key(base)]
    da, db = (np.linalg.norm(feats[_key(r)] - f0, axis=1) for r in (a, b))
    return paired_mean_difference(da, db)


def prdc_interval(ctx, a: dict, b: dict, key: str) -> dict | None:
    """``key`` (precision/recall/density/coverage) of row ``b`` minus row ``a``, paired by seed
    (``metrics.distribution.paired_prdc_difference``); None without per-sample features."""
    feats = _sample_features(ctx)
    if _key(a) not in feats or _key(b) not in feats:
        return None
    return paired_prdc_difference(ctx.real_set().feats, feats[_key(a)], feats[_key(b)], key, seed=ctx.seed)


ISOTROPY_MAX_CORR = 0.05     # "isotropic": no pair of P-norm coordinates correlated beyond this


def normality(ctx) -> Claim:
    c = "W is skewed and heavy-tailed; P (W through the inverse LeakyReLU) is close to Gaussian; P-norm is isotropic"
    paper = "Wulff & Torralba; II2S"
    rows = {r["space"]: r for r in ctx.figures.get("normality") or []}
    if not rows:
        return _na(paper, c, "the model has no mapping network (no W space)" if not ctx.model.has_mapping
                   else "the latent-space section did not run")
    w, p, pn = (rows.get(k) for k in ("W", "P", "P-norm"))
    if not (w and p and pn):
        return _na(paper, c, f"spaces measured: {', '.join(rows)}")
    noise = ctx.figures.get("normality_noise")
    if noise is None:
        return Claim(paper, c, "no sampling noise measured for the normality figures", UNRESOLVED)

    def contrast(f, how):
        vals = np.array([f(d) for d in noise["draws"]])
        return interval(f(noise["values"]), vals.std(ddof=1), noise["n"], how)
    hs = f"half-sampling over the {noise['n']:,} latents"
    skew = contrast(lambda v: v["P mean |skew|"] - v["W mean |skew|"], hs)
    kurt = contrast(lambda v: v["P mean |excess kurtosis|"] - v["W mean |excess kurtosis|"], hs)
    iso = shifted(contrast(lambda v: v["P-norm max |corr|"], hs), ISOTROPY_MAX_CORR)
    meas = (f"mean |skew| W {w['mean |skew|']:.2f} → P {p['mean |skew|']:.2f} (Δ {_iv(skew, '+.3f')}); mean |excess "
            f"kurtosis| W {w['mean |excess kurtosis|']:.2f} → P {p['mean |excess kurtosis|']:.2f} (Δ {_iv(kurt, '+.3f')}); "
            f"max |corr| P-norm {pn['max |corr|']:.3f} (W {w['max |corr|']:.2f}; isotropic below "
            f"{ISOTROPY_MAX_CORR}: margin {_iv(iso, '+.3f')}); 95% intervals, {hs}")
    return Claim(paper, c, *verdict_from_intervals(meas, [skew, kurt, iso]))


def pca_log(ctx) -> Claim:
    c = "PCA log-compression removes artifacts as truncation does but changes content much less (faithfulness at matched quality)"
    paper = "Wulff & Torralba"
    # the points that change the samples (ψ = 1 and τ = ∞ leave them alone)
    tr = [r for r in _rows(ctx, "truncation") if r.get("pixel_dist") != 0]
    pl = [r for r in _rows(ctx, "pca-log") if r.get("pixel_dist") != 0]
    if not tr or not pl:
        return _na(paper, c, "needs the sampling sweep of truncation and pca-log (a mapping network and a reference set)")
    key = "realism" if all(r.get("realism") is not None for r in tr + pl) else "fid"
    pairs = []
    for p in pl:                              # the truncation point of closest quality
        t = min(tr, key=lambda r: abs(r[key] - p[key]))
        pairs.append((p, t))
    ivs = [faithfulness_interval(ctx, t, p) for p, t in pairs]
    better = sum(p["feature_dist"] < t["feature_dist"] for p, t in pairs)
    sign = proportion(better, len(pairs))
    p, t = min(pairs, key=lambda pt: abs(pt[0][key] - pt[1][key]))
    meas = (f"at matched {key} ({p[key]:.3f} vs {t[key]:.3f}): pca-log {p['params']} moves the features by "
            f"{p['feature_dist']:.2f}, truncation {t['params']} by {t['feature_dist']:.2f}; pca-log is more faithful at "
            f"{better} of {len(pairs)} matched points (sign test p = {sign['p']:.2g})")
    if any(d is None for d in ivs):
        return Claim(paper, c, meas + "; no per-sample features kept, so no interval per point", UNRESOLVED)
    meas += ("; pca-log − truncation feature distance per point: "
             + ", ".join(f"{pp['params']}: {_iv(d, '+.2f')}" for (pp, _), d in zip(pairs, ivs))
             + f" (95%, paired by seed over N = {ivs[0]['n']:,}; quality matched on the point estimates)")
    return Claim(paper, c, *verdict_from_intervals(meas, ivs))


@dataclass
class InversionFigures:
    """What the II2S / Wulff & Torralba claims read, from this page's inversion section or from a
    stored II2S protocol run: rows by method (psnr, ppl, SEM, edit range) and, against
    unregularised W+, the paired intervals of the edit range and of the per-image PSNR, and the
    outlier interval."""
    rows: dict
    n: int
    ppl_pairs: int
    edit: dict          # method -> interval of its edit range minus W+'s
    psnr: dict          # method -> interval of its per-image PSNR minus W+'s
    outliers: dict | None = None     # the outlier excess interval of W+ (evaluation.inversion.outlier_excess)


def _page_inversion(ctx) -> InversionFigures:
    """This page's ``InversionFigures``: the ones ``evaluate_claims`` computed once for the three
    claims that read them (the paired intervals are bootstraps), else computed now."""
    return ctx.figures.get(_INVERSION_VIEW) or _inversion_figures(ctx)


_INVERSION_VIEW = "_inversion_claims"     # set by evaluate_claims for the length of one evaluation


def _inversion_figures(ctx) -> InversionFigures:
    rows = {r["method"]: r for r in ctx.figures.get("inversion") or []}
    base = rows.get(II2S_BASE)
    probs, psnr = ctx.figures.get("edit_probs") or {}, ctx.figures.get("inversion_psnr") or {}
    edit, loss = {}, {}
    for name, r in rows.items():
        if base is None or name == II2S_BASE:
            continue
        if name in probs and II2S_BASE in probs and "edit range" in r:
            edit[name] = paired_edit_difference(probs[name], probs[II2S_BASE], seed=ctx.seed)
        if name in psnr and II2S_BASE in psnr:
            loss[name] = paired_mean_difference(psnr[II2S_BASE], psnr[name])
    codes = (ctx.figures.get("pnorm_codes") or {}).get(II2S_BASE)
    out = outlier_excess(codes, seed=ctx.seed) if codes is not None and len(codes) > 1 else None
    return InversionFigures(rows, ctx.invert_n, ctx.ppl_pairs, edit, loss, out)


def _stored_inversion(rec: dict) -> InversionFigures:
    rows = {m: {"method": m, "psnr": r["psnr"], "ppl": r["ppl"], SEM: r.get("ppl_sem"), "edit range": r["edit range"]}
            for m, r in rec["methods"].items()}
    rows[II2S_BASE].update({k: rec["outliers"][k] for k in ("> 3, first 10 dims", "> 3, later dims")})
    vs = rec["versus_base"]
    return InversionFigures(rows, rec["n"], rec["methods"][II2S_BASE].get("ppl_pairs") or 1,
                            {m: v["edit"] for m, v in vs.items()}, {m: v["psnr"] for m, v in vs.items()},
                            rec["outliers"]["excess"])


def _with_protocol(ctx, claim_fn, protocol: str, stored_view, page_view) -> Claim:
    """A claim measured on this page, and — where a stored protocol run of these weights exists
    (``evaluation.stored``) — measured on that run too: the protocol's verdict decides, the page's
    is shown beside it."""
    page = claim_fn(page_view)
    rec = (ctx.figures.get("protocols") or {}).get(protocol)
    if rec is None:
        return page
    try:
        proto = claim_fn(stored_view(rec))
    except (KeyError, TypeError) as e:          # a record of an older layout: the page decides
        return Claim(page.paper, page.claim, page.measured + f" (stored {protocol} run not readable: {e})",
                     page.verdict, page.figure)
    if proto.verdict == NA:
        return page
    return Claim(page.paper, page.claim, f"({proto_label(rec)}): {proto.measured}", proto.verdict,
                 page.figure or proto.figure, page_verdict=page.verdict, page_measured=page.measured)


def proto_label(rec: dict) -> str:
    return f"{rec['protocol']}, N = {rec['n']:,}, stored for weights {rec['weights_hash']}"


def gaussian_prior(ctx) -> Claim:
    return _with_protocol(ctx, _gaussian_prior, "ii2s", _stored_inversion, _page_inversion(ctx))


def _gaussian_prior(f: InversionFigures) -> Claim:
    c = "the Gaussian prior (Mahalanobis in P) keeps W+ inversions where interpolation and editing work better"
    paper = "Wulff & Torralba"
    a, b = f.rows.get(II2S_BASE), f.rows.get("W+ Gaussian prior 1e-5")
    if a and b and "ppl" not in a:
        return _na(paper, c, "the PPL between embeddings was left out at these counts (time budget)")
    if not (a and b):
        return _na(paper, c, "needs W+ inversions with and without the prior (a mapping network)")
    # smoother: the PPL drop's interval from the two PPLs' standard errors (independent pairs);
    # better editing: the paired interval of the edit range over the images
    sem = ((a.get(SEM) or 0.0) ** 2 + (b.get(SEM) or 0.0) ** 2) ** 0.5
    ppl_iv = interval(b["ppl"] - a["ppl"], sem, f.ppl_pairs, "PPL difference ± 1.96 of the two standard errors")
    edit = f.edit.get(b["method"])
    meas = (f"PPL between embeddings {a['ppl']:.3g} → {b['ppl']:.3g} with the prior (Δ {_iv(ppl_iv, '+.3g')})"
            + f"; PSNR {a['psnr']:.2f} → {b['psnr']:.2f} dB"
            + (f"; edit range {a['edit range']:.3f} → {b['edit range']:.3f}" if "edit range" in a else "")
            + (f" (Δ {_iv(edit)}, paired over the {edit['n']} images)" if edit else ""))
    if not sem:
        return Claim(paper, c, meas + "; no standard error of the PPL kept", UNRESOLVED)
    return Claim(paper, c, *verdict_from_intervals(meas, [ppl_iv] + ([higher(edit)] if edit else [])))


def diamond_table1(ctx) -> Claim:
    return _with_protocol(ctx, _diamond_table1, "diamond-table1", lambda rec: rec, {"table1": ctx.figures.get("table1"),
                                                                                   "n": ctx.sweep_n})


def _diamond_table1(run: dict) -> Claim:
    """Table 1's claim on a run (this page's sweep or a stored protocol run): ``table1`` (the
    summary with its paired intervals, ``evaluation.sampling.table1_summary``) and ``n``."""
    c = "the realism step toward protoimages improves FID over the untruncated baseline and beats the best truncation"
    paper = "Diamond in the rough (Table 1)"
    t1 = run.get("table1")
    if not t1:
        return _na(paper, c, "needs Diamond's sweep: a Z-space model with a critic and a reference set")
    if any(r and r.get("fid") is None for r in (t1["baseline"], t1["best_truncation"], t1["best_sigma"],
                                                t1["sigma_auto"])):
        return Claim(paper, c, "FID was not measured at this N (the sweep's samples per point are fewer than the "
                     "feature dimensions): the claim is about FID", UNRESOLVED)
    base, tr, best = t1["baseline"], t1["best_truncation"], min(
        (x for x in (t1["best_sigma"], t1["sigma_auto"]) if x), key=lambda r: r["fid"], default=None)
    if best is None:
        return _na(paper, c, "no Diamond row was measured")
    meas = (f"FID baseline {base['fid']:.2f}, best truncation {tr['fid']:.2f} ({tr['params']}), best Diamond "
            f"{best['fid']:.2f} ({best['params'].split(',')[0]})") if tr else f"FID baseline {base['fid']:.2f}, Diamond {best['fid']:.2f}"
    ivs = t1.get("intervals") or {}
    parts = [(name, ivs.get(key)) for name, key in (("baseline", "baseline"), ("best truncation", "best_truncation"))
             if key == "baseline" or tr]
    if not parts or any(d is None for _, d in parts):
        # an evaluation without per-sample features: point estimates, which cannot carry a verdict
        return Claim(paper, c, meas + "; no per-sample features kept, so no interval: the difference cannot be "
                     "told from sampling noise", UNRESOLVED)
    meas += "; " + "; ".join(f"Diamond − {name} {_iv(d)}" for name, d in parts)
    meas += f" (FID, 95% paired bootstrap over the N = {parts[0][1]['n']:,} shared seeds)"
    return Claim(paper, c, *verdict_from_intervals(meas, [d for _, d in parts], lower_is_claimed=True))


def fid_interval(ctx, a: tuple[str, str], b: tuple[str, str]) -> dict | None:
    """FID(b) − FID(a) for two rows of the report's sampling sweep, given as (strategy, params),
    with its paired-bootstrap interval over the sweep's shared seeds; None when the sweep kept no
    per-sample features for one of them."""
    feats = _sample_features(ctx)
    if a not in feats or b not in feats:
        return None
    ref = ctx.real_set()
    return paired_fid_difference(ref.mu, ref.sigma, feats[a], feats[b], seed=ctx.seed)


def verdict_from_intervals(measured: str, parts: list[dict], *, lower_is_claimed: bool = True) -> tuple[str, str]:
    """The verdict of a claim whose parts are intervals (``metrics.uncertainty.interval`` dicts:
    ``diff``, ``lo``, ``hi``, ``se``, ``n``; a part marked ``higher`` claims a value above zero,
    the others below unless ``lower_is_claimed`` is False): *holds* only when every interval
    excludes zero in the claimed direction; *does not hold* when parts exclude it the other way
    and none supports the claim; *mixed* when parts disagree with confidence; *not resolved at
    this N* when an interval straddles zero and none contradicts the claim — with the N that
    would resolve it beside it. Returns (measured text, verdict)."""
    def side(d):
        up = d.get("higher", not lower_is_claimed)
        claimed, other = (d["lo"] > 0, d["hi"] < 0) if up else (d["hi"] < 0, d["lo"] > 0)
        return "for" if claimed else "against" if other else "open"
    if not parts:
        return measured + "; nothing measured with an interval", UNRESOLVED
    sides = [side(d) for d in parts]
    if "against" in sides:
        return measured, MIXED if "for" in sides else NOT
    if "open" in sides:
        need = [samples_to_resolve(d["diff"], d["se"], d["n"]) for d, s in zip(parts, sides) if s == "open"]
        need = [x for x in need if x]
        return measured + (f"; about N = {max(need):,} would resolve it" if need else ""), UNRESOLVED
    return measured, HOLDS


SIGMA_CRITIC_N = 64     # samples whose σ = auto is optimised for the σ-vs-critic correlation


def diamond_sigma(ctx) -> Claim:
    c = "the optimised σ is small for good samples and large for bad ones"
    paper = "Diamond in the rough (§3.3)"
    m = ctx.model
    if not m.has_minibatch_std:
        return _na(paper, c, "σ = auto needs a minibatch-std critic (the per-sample σ is set by the critic midpoint)")
    sctx = ctx.figures.get("sampling_ctx") or Context(m, atlas=ctx.atlas)
    n = SIGMA_CRITIC_N
    lat = initial_latents(m, m.sample_z(n, ctx.seed + 31_000))
    try:
        new = apply_strategy(m, "diamond", lat, sctx, sigma="auto", **ctx.diamond)
    except LatentAtlasError as e:
        return _na(paper, c, f"σ = auto could not run: {e}")
    sig = torch.as_tensor(new.info["sigma"]).flatten().cpu().numpy()
    with torch.no_grad():
        score = m.score(m(lat.z).clamp(-1, 1)).cpu().numpy()
    corr = correlation(sig, score, seed=ctx.seed)
    rho = corr["diff"]
    meas = (f"Spearman correlation of σ_i with the critic's score of the original sample: {_iv(corr, '+.2f')} "
            f"({corr['how']})")
    fig = None
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        f, ax = plt.subplots(figsize=(4.5, 3.2))
        ax.scatter(score, sig, s=12)
        ax.set_xlabel("critic score of the original sample")
        ax.set_ylabel("optimised σ_i")
        ax.set_title(f"Spearman ρ = {rho:.2f}", fontsize=9)
        f.tight_layout()
        f.savefig(ctx.out / "diamond-sigma-critic.png", dpi=100)
        plt.close(f)
        fig = ("diamond-sigma-critic.png", "The claim holds when the points fall from upper left to lower right: "
               "samples the critic rates worse are moved further (larger σ).")
    except ImportError:
        pass
    return Claim(paper, c, *verdict_from_intervals(meas, [corr]), fig)


RECONSTRUCTION_LOSS_DB = 3.0     # "a little reconstruction": a regulariser may cost up to this much PSNR


def regularisers(ctx) -> Claim:
    return _with_protocol(ctx, _regularisers, "ii2s", _stored_inversion, _page_inversion(ctx))


def _regularisers(f: InversionFigures) -> Claim:
    c = "clip / project / L2 regularisers trade a little reconstruction for better editing"
    paper = "II2S (§4, Tables 6–7)"
    base = f.rows.get(II2S_BASE)
    regs = [f.rows[k] for k in ("W+ clip 2", "W+ project 5", "W+ L2 1e-6") if k in f.rows]
    if base and regs and "ppl" not in base:
        return _na(paper, c, "the PPL between embeddings was left out at these counts (time budget)")
    if not base or not regs:
        return _na(paper, c, "needs the W+ inversions with and without regularisers (a mapping network)")
    if "edit range" not in base:
        return _na(paper, c, "needs an attribute estimator to read the edits (the feature network of a Fashion-MNIST model)")
    # better editing as II2S reads it (Tables 4-5): the attribute moves further under the same edit
    # (the paired interval of the edit range above zero); "a little reconstruction": the paired
    # per-image PSNR loss below RECONSTRUCTION_LOSS_DB. PPL is shown, not judged on: II2S reads a
    # short PPL as embeddings outside the semantic range, Wulff & Torralba a long one as rough
    # interpolation
    parts, ivs = [], []
    for r in regs:
        edit = f.edit.get(r["method"])
        loss = shifted(f.psnr[r["method"]], -RECONSTRUCTION_LOSS_DB) if r["method"] in f.psnr else None
        ivs += [higher(x) for x in (edit, loss) if x]
        parts.append(f"{r['method']}: {r['psnr'] - base['psnr']:+.2f} dB"
                     + (f" (margin to −{RECONSTRUCTION_LOSS_DB:g} dB {_iv(loss, '+.2f')})" if loss else "")
                     + f", PPL {r['ppl']:.3g}, edit range {r['edit range']:.3f}" + (f" (Δ {_iv(edit)})" if edit else ""))
    meas = (f"unregularised W+: {base['psnr']:.2f} dB, PPL {base['ppl']:.3g}, edit range {base['edit range']:.3f}; "
            + "; ".join(parts) + f"; 95% intervals paired over the {f.n} images")
    return Claim(paper, c, *verdict_from_intervals(meas, ivs))


def outliers(ctx) -> Claim:
    return _with_protocol(ctx, _outliers, "ii2s", _stored_inversion, _page_inversion(ctx))


def _outliers(f: InversionFigures) -> Claim:
    c = "unregularised W+ embeddings have outliers in the later P-norm+ dimensions"
    paper = "II2S (§3)"
    base = f.rows.get(II2S_BASE)
    if not base or "> 3, later dims" not in base:
        return _na(paper, c, "needs W+ inversions and the atlas (a mapping network)")
    first, later = base["> 3, first 10 dims"], base["> 3, later dims"]
    meas = f"share beyond ±3: first 10 P-norm dimensions {first:.4f}, later dimensions {later:.4f} (N(0,1): {GAUSS_BEYOND_3})"
    if f.outliers is None:
        return Claim(paper, c, meas + "; too few embeddings for an interval", UNRESOLVED)
    meas += f"; later share − 2 × max(first, N(0,1)) {_iv(f.outliers, '+.4f')} ({f.outliers['how']})"
    return Claim(paper, c, *verdict_from_intervals(meas, [higher(f.outliers)]))


def dp_walks(ctx) -> Claim:
    c = "density-preserving walks keep the log-density where linear walks drift"
    paper = "DP-LaSE"
    rows = [r for r in ctx.figures.get("walks") or [] if "density_drift_dp" in r]
    if not rows:
        if ctx.omits("walks", "drift"):
            return _na(paper, c, "the time budget left the density model too briefly trained to read drift from "
                                 f"(DP-LaSE steps {ctx.dp_steps})")
        return _na(paper, c, "the walks section measured no direction set")
    lin = np.array([r["density_drift_linear"] for r in rows])
    dp = np.array([r["density_drift_dp"] for r in rows])
    k = int((dp < lin).sum())
    sign = proportion(k, len(rows))
    meas = (f"mean |Δ log-density| along ±2σ walks: linear {lin.mean():.3g}, density-preserving {dp.mean():.3g}; lower "
            f"for the DP walk on {k} of {len(rows)} directions (share − ½ {_iv(sign, '+.2f')}, {sign['how']})")
    return Claim(paper, c, *verdict_from_intervals(meas, [higher(sign)]))


def layers(ctx) -> Claim:
    c = "directions found at earlier layers change more global attributes than directions at later layers"
    paper = "DP-LaSE (§4)"
    rows = ctx.figures.get("layers")
    if not rows or len(rows) != 2:
        return _na(paper, c, "the early-vs-late comparison did not run")
    key = "classes_moved" if "classes_moved" in rows[0] else "g1_variation" if "g1_variation" in rows[0] else None
    if key is None:
        return _na(paper, c, "no attribute estimator or G1 features for this model")
    e, l_ = rows[0][key], rows[1][key]
    meas = f"{key.replace('_', ' ')} per direction: {rows[0]['layer']} {e:.2f}, {rows[1]['layer']} {l_:.2f}"
    values = (ctx.figures.get("layers_values") or {}).get(key)
    if not values or min(len(values[0]), len(values[1])) < 2:
        return Claim(paper, c, meas + "; too few directions for an interval", UNRESOLVED)
    iv = mean_difference(values[1], values[0])          # early − late
    meas += f"; early − late {_iv(iv, '+.2f')} ({iv['how']} over directions)"
    return Claim(paper, c, *verdict_from_intervals(meas, [higher(iv)]))


def cluster(ctx) -> Claim:
    c = "cluster (multi-level) truncation is more faithful to the untruncated samples and has a better quality–diversity trade-off than global truncation"
    paper = "Katzir et al."
    tr = {_param(r, "psi"): r for r in _rows(ctx, "truncation") if _param(r, "psi") is not None}
    best = None
    for mix in ("learned", "em"):
        cl = {_param(r, "psi"): r for r in _rows(ctx, "cluster") if _param(r, "mixture") == mix}
        common = [p for p in cl if p in tr and p != 1.0]
        if common:
            best = (mix, cl, common)
            break
    if best is None:
        return _na(paper, c, "needs the sampling sweep of truncation and cluster truncation (a mapping network and an atlas)")
    mix, cl, common = best
    q = "realism" if all(cl[p].get("realism") is not None and tr[p].get("realism") is not None for p in common) else "precision"
    faithful = sum(cl[p]["feature_dist"] < tr[p]["feature_dist"] for p in common)
    tradeoff = sum(cl[p]["recall"] >= tr[p]["recall"] and cl[p]["fid"] <= tr[p]["fid"] for p in common)
    meas = (f"{mix} mixture vs ψ-truncation at ψ ∈ {{{', '.join(f'{p:g}' for p in sorted(common))}}}: more faithful "
            f"(smaller feature change) at {faithful}, better FID and recall at {tradeoff} of {len(common)}")
    # each part at each ψ, paired by seed: faithfulness (feature change, lower), FID (lower), recall (higher)
    parts, text = [], []
    for p in sorted(common):
        f_iv = faithfulness_interval(ctx, tr[p], cl[p])
        fid_iv = fid_interval(ctx, _key(tr[p]), _key(cl[p]))
        rec_iv = prdc_interval(ctx, tr[p], cl[p], "recall")
        if None in (f_iv, fid_iv, rec_iv):
            return Claim(paper, c, meas + "; no per-sample features kept, so no intervals", UNRESOLVED)
        parts += [f_iv, fid_iv, higher(rec_iv)]
        text.append(f"ψ {p:g}: feature change {_iv(f_iv, '+.2f')}, FID {cl[p]['fid']:.2f} vs {tr[p]['fid']:.2f} "
                    f"({_iv(fid_iv, '+.2f')}), recall {cl[p]['recall']:.2f} vs {tr[p]['recall']:.2f} "
                    f"({_iv(rec_iv, '+.3f')}), {q} {cl[p][q]:.2f} vs {tr[p][q]:.2f}")
    meas += "; cluster − truncation, 95% paired over the shared seeds: " + "; ".join(text)
    return Claim(paper, c, *verdict_from_intervals(meas, parts))


CLAIMS = (normality, pca_log, gaussian_prior, diamond_table1, diamond_sigma, regularisers, outliers, dp_walks,
          layers, cluster)


def evaluate_claims(ctx) -> list[Claim]:
    out = []
    try:
        ctx.figures[_INVERSION_VIEW] = _inversion_figures(ctx)
    except LatentAtlasError:
        pass                              # each claim that reads them says why, below
    try:
        for fn in CLAIMS:
            try:
                out.append(fn(ctx))
            except LatentAtlasError as e:
                out.append(Claim("", fn.__name__, f"could not be measured: {e}", NA))
    finally:
        ctx.figures.pop(_INVERSION_VIEW, None)
    return out


def render(claims: list[Claim]) -> str:
    colour = {HOLDS: "#1a7f37", NOT: "#b42318", MIXED: "#b26b00", NA: "#666", UNRESOLVED: "#555"}
    def measured(c):
        if c.page_verdict is None:
            return html.escape(c.measured)
        return (f"<b>Protocol run</b> {html.escape(c.measured)}.<br><b>This page</b>: {html.escape(c.page_measured)} "
                f"(page verdict: {html.escape(c.page_verdict)})")

    def verdict(c):
        v = f"<span style='color:{colour[c.verdict]};font-weight:600'>{html.escape(c.verdict)}</span>"
        if c.page_verdict is not None:
            v += f"<br><small>protocol run; this page: {html.escape(c.page_verdict)}</small>"
        return v
    rows = "".join(f"<tr><td>{html.escape(c.paper)}</td><td>{html.escape(c.claim)}</td><td>{measured(c)}</td>"
                   f"<td>{verdict(c)}</td></tr>" for c in claims)
    figs = "".join(f'<figure><img src="{html.escape(c.figure[0])}" alt="{html.escape(c.claim)}">'
                   f"<figcaption>{html.escape(c.paper)}: {html.escape(c.figure[1])}</figcaption></figure>"
                   for c in claims if c.figure)
    return ("<table><tr><th>paper</th><th>claim</th><th>measured on this model</th><th>verdict</th></tr>"
            + rows + "</table>" + figs)


def summary_line(claims: list[Claim]) -> str:
    counts = {v: sum(c.verdict == v for c in claims) for v in (HOLDS, MIXED, NOT, UNRESOLVED, NA)}
    return ", ".join(f"{n} {v}" for v, n in counts.items() if n)
