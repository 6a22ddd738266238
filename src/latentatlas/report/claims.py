"""The report's claims section: what the five papers claim, what this model's report measured,
and a verdict computed from those figures — *holds*, *does not hold*, *mixed*, or *not
applicable* (with the reason). Every verdict reads figures the other sections stored in
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
from ..evaluation.inversion import paired_edit_difference
from ..evaluation.sampling import SAMPLE_FEATURES
from ..metrics.distribution import paired_fid_difference, samples_to_resolve
from ..metrics.reference import resolve
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
    meas = (f"mean |skew| W {w['mean |skew|']:.2f} → P {p['mean |skew|']:.2f}; mean |excess kurtosis| W "
            f"{w['mean |excess kurtosis|']:.2f} → P {p['mean |excess kurtosis|']:.2f}; max |corr| P-norm "
            f"{pn['max |corr|']:.3f} (W {w['max |corr|']:.2f})")
    gauss = p["mean |skew|"] < w["mean |skew|"] and p["mean |excess kurtosis|"] < w["mean |excess kurtosis|"]
    iso = pn["max |corr|"] < 0.05
    return Claim(paper, c, meas, HOLDS if gauss and iso else MIXED if gauss or iso else NOT)


def pca_log(ctx) -> Claim:
    c = "PCA log-compression removes artifacts as truncation does but changes content much less (faithfulness at matched quality)"
    paper = "Wulff & Torralba"
    tr = [r for r in _rows(ctx, "truncation") if _param(r, "psi") not in (None, 1.0)]
    pl = [r for r in _rows(ctx, "pca-log") if _param(r, "tau") not in (None, "inf")]
    if not tr or not pl:
        return _na(paper, c, "needs the sampling sweep of truncation and pca-log (a mapping network and a reference set)")
    key = "realism" if all(r.get("realism") is not None for r in tr + pl) else "fid"
    pairs = []
    for p in pl:                              # the truncation point of closest quality
        t = min(tr, key=lambda r: abs(r[key] - p[key]))
        pairs.append((p, t))
    better = sum(p["feature_dist"] < t["feature_dist"] for p, t in pairs)
    p, t = min(pairs, key=lambda pt: abs(pt[0][key] - pt[1][key]))
    meas = (f"at matched {key} ({p[key]:.3f} vs {t[key]:.3f}): pca-log {p['params']} moves the features by "
            f"{p['feature_dist']:.2f}, truncation {t['params']} by {t['feature_dist']:.2f}; pca-log is more faithful at "
            f"{better} of {len(pairs)} matched points")
    return Claim(paper, c, meas, HOLDS if better == len(pairs) else NOT if better == 0 else MIXED)


def gaussian_prior(ctx) -> Claim:
    c = "the Gaussian prior (Mahalanobis in P) keeps W+ inversions where interpolation and editing work better"
    paper = "Wulff & Torralba"
    rows = {r["method"]: r for r in ctx.figures.get("inversion") or []}
    a, b = rows.get("W+ (I2S)"), rows.get("W+ Gaussian prior 1e-5")
    if not (a and b) or "ppl" not in a:
        return _na(paper, c, "needs W+ inversions with and without the prior (a mapping network)")
    # smoother only where the drop is beyond twice the two PPLs' combined standard error
    noise = 2 * (a.get(SEM, 0.0) ** 2 + b.get(SEM, 0.0) ** 2) ** 0.5
    smoother = b["ppl"] < a["ppl"] - noise
    edits, interval = _edits_better(ctx, b, a)
    meas = (f"PPL between embeddings {a['ppl']:.3g} → {b['ppl']:.3g} with the prior"
            + (f" (±{noise:.2g} is noise)" if noise else "") + f"; PSNR {a['psnr']:.2f} → {b['psnr']:.2f} dB"
            + (f"; edit range {a['edit range']:.3f} → {b['edit range']:.3f}{interval}" if "edit range" in a else ""))
    edits = edits or "edit range" not in a
    return Claim(paper, c, meas, HOLDS if smoother and edits else MIXED if smoother or edits else NOT)


def diamond_table1(ctx) -> Claim:
    c = "the realism step toward protoimages improves FID over the untruncated baseline and beats the best truncation"
    paper = "Diamond in the rough (Table 1)"
    t1 = ctx.figures.get("table1")
    if not t1:
        return _na(paper, c, "needs Diamond's sweep: a Z-space model with a critic and a reference set")
    base, tr, best = t1["baseline"], t1["best_truncation"], min(
        (x for x in (t1["best_sigma"], t1["sigma_auto"]) if x), key=lambda r: r["fid"], default=None)
    if best is None:
        return _na(paper, c, "no Diamond row was measured")
    meas = (f"FID baseline {base['fid']:.2f}, best truncation {tr['fid']:.2f} ({tr['params']}), best Diamond "
            f"{best['fid']:.2f} ({best['params'].split(',')[0]})") if tr else f"FID baseline {base['fid']:.2f}, Diamond {best['fid']:.2f}"
    others = [("baseline", ("truncation", base["params"]))] + ([("best truncation", ("truncation", tr["params"]))]
                                                              if tr else [])
    parts = [(name, fid_interval(ctx, row, ("diamond", best["params"]))) for name, row in others]
    if any(d is None for _, d in parts):
        # an evaluation without per-sample features: point estimates, which cannot carry a verdict
        return Claim(paper, c, meas + "; no per-sample features kept, so no interval: the difference cannot be "
                     "told from sampling noise", UNRESOLVED)
    meas += "; " + "; ".join(f"Diamond − {name} {d['diff']:+.3f} [{d['lo']:+.3f}, {d['hi']:+.3f}]" for name, d in parts)
    meas += f" (FID, 95% paired bootstrap over the N = {parts[0][1]['n']} shared seeds)"
    return Claim(paper, c, *verdict_from_intervals(meas, [d for _, d in parts], lower_is_claimed=True))


def fid_interval(ctx, a: tuple[str, str], b: tuple[str, str]) -> dict | None:
    """FID(b) − FID(a) for two rows of the report's sampling sweep, given as (strategy, params),
    with its paired-bootstrap interval over the sweep's shared seeds; None when the sweep kept no
    per-sample features for one of them."""
    feats = (ctx.figures.get("sampling") or {}).get(SAMPLE_FEATURES) or {}
    if a not in feats or b not in feats:
        return None
    if "claims_reference" not in ctx.figures:     # resolved once per report, not once per comparison
        ctx.figures["claims_reference"] = resolve(
            ctx.model, folder=ctx.reference.get("reference"), features=ctx.reference.get("features"),
            device=ctx.model.device, inception=ctx.reference.get("inception"), what="the claims")[0]
    ref = ctx.figures["claims_reference"]
    return paired_fid_difference(ref.mu, ref.sigma, feats[a], feats[b], seed=ctx.seed)


def verdict_from_intervals(measured: str, parts: list[dict], *, lower_is_claimed: bool) -> tuple[str, str]:
    """The verdict of a claim whose parts are intervals (``diff``, ``lo``, ``hi``, ``se``, ``n``):
    *holds* only when every interval excludes zero in the claimed direction; *does not hold* when
    every part excludes it the other way (or some do and none supports the claim); *mixed* when
    parts disagree with confidence; *not resolved at this N* when an interval straddles zero and
    none contradicts the claim — with the N that would resolve it beside it. Returns
    (measured text, verdict)."""
    def side(d):
        claimed, other = (d["hi"] < 0, d["lo"] > 0) if lower_is_claimed else (d["lo"] > 0, d["hi"] < 0)
        return "for" if claimed else "against" if other else "open"
    sides = [side(d) for d in parts]
    if "against" in sides:
        return measured, MIXED if "for" in sides else NOT
    if "open" in sides:
        need = [samples_to_resolve(d["diff"], d["se"], d["n"]) for d, s in zip(parts, sides) if s == "open"]
        need = [x for x in need if x]
        return measured + (f"; about N = {max(need):,} samples would resolve it" if need else ""), UNRESOLVED
    return measured, HOLDS


def diamond_sigma(ctx) -> Claim:
    c = "the optimised σ is small for good samples and large for bad ones"
    paper = "Diamond in the rough (§3.3)"
    m = ctx.model
    if not m.has_minibatch_std:
        return _na(paper, c, "σ = auto needs a minibatch-std critic (the per-sample σ is set by the critic midpoint)")
    from scipy.stats import spearmanr
    sctx = ctx.figures.get("sampling_ctx") or Context(m, atlas=ctx.atlas)
    n = 64
    lat = initial_latents(m, m.sample_z(n, ctx.seed + 31_000))
    new = apply_strategy(m, "diamond", lat, sctx, sigma="auto", **ctx.diamond)
    sig = torch.as_tensor(new.info["sigma"]).flatten().cpu().numpy()
    with torch.no_grad():
        score = m.score(m(lat.z).clamp(-1, 1)).cpu().numpy()
    rho, p = spearmanr(sig, score)
    meas = f"Spearman correlation of σ_i with the critic's score of the original sample: {rho:.2f} (p = {p:.2g}, n = {n})"
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
    return Claim(paper, c, meas, HOLDS if rho < -0.2 and p < 0.05 else NOT if rho > 0 and p < 0.05 else MIXED, fig)


def _edits_better(ctx, r: dict, base: dict) -> tuple[bool, str]:
    """Whether the attribute moves further under ``r``'s embeddings than under ``base``'s: where the
    inversion section kept the per-image readings, only when the paired 95% interval lies above
    zero (the text quotes it); else by the edit ranges alone."""
    if "edit range" not in r or "edit range" not in base:
        return False, ""
    probs = ctx.figures.get("edit_probs") or {}
    if r["method"] in probs and base["method"] in probs:
        pair = paired_edit_difference(probs[r["method"]], probs[base["method"]], seed=ctx.seed)
        return pair["lo"] > 0, f" ({pair['diff']:+.3f}, 95% [{pair['lo']:+.3f}, {pair['hi']:+.3f}])"
    return r["edit range"] > base["edit range"], ""


def regularisers(ctx) -> Claim:
    c = "clip / project / L2 regularisers trade a little reconstruction for better editing"
    paper = "II2S (§4, Tables 6–7)"
    rows = {r["method"]: r for r in ctx.figures.get("inversion") or []}
    base = rows.get("W+ (I2S)")
    regs = [rows[k] for k in ("W+ clip 2", "W+ project 5", "W+ L2 1e-6") if k in rows]
    if not base or not regs or "ppl" not in base:
        return _na(paper, c, "needs the W+ inversions with and without regularisers (a mapping network)")
    if "edit range" not in base:
        return _na(paper, c, "needs an attribute estimator to read the edits (the feature network of a Fashion-MNIST model)")
    # better editing as II2S reads it (Tables 4-5): the attribute moves further under the same edit,
    # beyond the noise of the targets where the per-image readings are kept (a paired 95% interval
    # above zero); PPL is shown, not judged on: II2S reads a short PPL as embeddings outside the
    # semantic range, Wulff & Torralba a long one as rough interpolation
    parts, trade = [], 0
    for r in regs:
        loss = base["psnr"] - r["psnr"]
        better, interval = _edits_better(ctx, r, base)
        trade += bool(better and loss < 3)
        parts.append(f"{r['method']}: −{loss:.2f} dB, PPL {r['ppl']:.3g}"
                     + (f", edit range {r['edit range']:.3f}{interval}" if "edit range" in r else ""))
    meas = (f"unregularised W+: {base['psnr']:.2f} dB, PPL {base['ppl']:.3g}"
            + (f", edit range {base['edit range']:.3f}" if "edit range" in base else "") + "; " + "; ".join(parts))
    return Claim(paper, c, meas, HOLDS if trade == len(regs) else NOT if trade == 0 else MIXED)


def outliers(ctx) -> Claim:
    c = "unregularised W+ embeddings have outliers in the later P-norm+ dimensions"
    paper = "II2S (§3)"
    rows = {r["method"]: r for r in ctx.figures.get("inversion") or []}
    base = rows.get("W+ (I2S)")
    if not base or "> 3, later dims" not in base:
        return _na(paper, c, "needs W+ inversions and the atlas (a mapping network)")
    first, later = base["> 3, first 10 dims"], base["> 3, later dims"]
    meas = f"share beyond ±3: first 10 P-norm dimensions {first:.4f}, later dimensions {later:.4f} (N(0,1): 0.0027)"
    return Claim(paper, c, meas, HOLDS if later > max(first, 0.0027) * 2 else NOT if later <= 0.0054 else MIXED)


def dp_walks(ctx) -> Claim:
    c = "density-preserving walks keep the log-density where linear walks drift"
    paper = "DP-LaSE"
    rows = [r for r in ctx.figures.get("walks") or [] if "density_drift_dp" in r]
    if not rows:
        return _na(paper, c, "the walks section measured no direction set")
    lin = np.array([r["density_drift_linear"] for r in rows])
    dp = np.array([r["density_drift_dp"] for r in rows])
    share = float((dp < lin).mean())
    meas = (f"mean |Δ log-density| along ±2σ walks: linear {lin.mean():.3g}, density-preserving {dp.mean():.3g}; lower "
            f"for the DP walk on {int((dp < lin).sum())} of {len(rows)} directions")
    return Claim(paper, c, meas, HOLDS if share >= 0.8 else NOT if share <= 0.2 else MIXED)


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
    return Claim(paper, c, meas, HOLDS if e > 1.2 * l_ else NOT if e < l_ else MIXED)


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
            f"(smaller feature change) at {faithful}, better FID and recall at {tradeoff} of {len(common)}; "
            + "; ".join(f"ψ {p:g}: FID {cl[p]['fid']:.1f} vs {tr[p]['fid']:.1f}, recall {cl[p]['recall']:.2f} vs "
                        f"{tr[p]['recall']:.2f}, {q} {cl[p][q]:.2f} vs {tr[p][q]:.2f}" for p in sorted(common)[:3]))
    n = len(common)
    return Claim(paper, c, meas, HOLDS if faithful == n and tradeoff >= n / 2 else NOT if faithful == 0 and tradeoff == 0 else MIXED)


CLAIMS = (normality, pca_log, gaussian_prior, diamond_table1, diamond_sigma, regularisers, outliers, dp_walks,
          layers, cluster)


def evaluate_claims(ctx) -> list[Claim]:
    out = []
    for fn in CLAIMS:
        try:
            out.append(fn(ctx))
        except LatentAtlasError as e:
            out.append(Claim("", fn.__name__, f"could not be measured: {e}", NA))
    return out


def render(claims: list[Claim]) -> str:
    colour = {HOLDS: "#1a7f37", NOT: "#b42318", MIXED: "#b26b00", NA: "#666", UNRESOLVED: "#555"}
    rows = "".join(f"<tr><td>{html.escape(c.paper)}</td><td>{html.escape(c.claim)}</td><td>{html.escape(c.measured)}</td>"
                   f"<td style='color:{colour[c.verdict]};font-weight:600'>{html.escape(c.verdict)}</td></tr>" for c in claims)
    figs = "".join(f'<figure><img src="{html.escape(c.figure[0])}" alt="{html.escape(c.claim)}">'
                   f"<figcaption>{html.escape(c.paper)}: {html.escape(c.figure[1])}</figcaption></figure>"
                   for c in claims if c.figure)
    return ("<table><tr><th>paper</th><th>claim</th><th>measured on this model</th><th>verdict</th></tr>"
            + rows + "</table>" + figs)


def summary_line(claims: list[Claim]) -> str:
    counts = {v: sum(c.verdict == v for c in claims) for v in (HOLDS, MIXED, NOT, UNRESOLVED, NA)}
    return ", ".join(f"{n} {v}" for v, n in counts.items() if n)
