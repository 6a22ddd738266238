"""The sampling evaluation harness: every strategy over its parameter sweep on the same seeds,
scored by FID, KID, precision, recall, density, coverage (vs the Fashion-MNIST test split) and
faithfulness to the unmodified sample: mean pixel L2 distance, mean feature distance, and the
share of samples whose predicted class is preserved."""
from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from .. import diamond as dm
from ..errors import LatentAtlasError
from ..imageio import atomic_path
from ..metrics.distribution import paired_fid_difference
from ..metrics.reference import classifier, resolve
from ..sampling import (
    SIGMA_GRID,
    Context,
    apply_strategy,
    atlas_need,
    default_sweep,
    initial_latents,
    render,
)

FEATURES = "_sample_features"          # a row's per-sample features while it travels from its task
SAMPLE_FEATURES = "sample_features"     # the result's {(strategy, params): features [N, D]}


def _fmt_params(p: dict) -> str:
    return ",".join(f"{k}={v}" for k, v in p.items()) or "-"


def rank_key(r: dict) -> float:
    """Rows are ranked by FID, or by KID where FID was left out (fewer samples than dimensions)."""
    return r["fid"] if r["fid"] is not None else r["kid"]


def _primary(r: dict) -> str:
    return f"FID {r['fid']:.3f}" if r["fid"] is not None else f"KID {r['kid']:.4f}"


def _same_latents(a, b) -> bool:
    if a is b:
        return True
    if not torch.equal(a.z, b.z):
        return False
    return (a.ws is None and b.ws is None) or (a.ws is not None and b.ws is not None and torch.equal(a.ws, b.ws))


class SamplingSetup:
    """What every point of a sampling evaluation shares: the reference and feature network, the
    ``n`` original latents (seeds ``seed..``) with their images, features and classes. ``row``
    scores one strategy at one parameter point against them; the same call runs here and on a
    Ray worker."""

    def __init__(self, model, *, n: int, seed: int, batch_size: int, features, reference, inception, kid_subsets: int):
        self.model, self.n, self.seed, self.kid_subsets = model, n, seed, kid_subsets
        self.ref, self.ext = resolve(model, folder=reference, features=features, device=model.device,
                                     inception=inception, what="evaluate-sampling")
        head = self.ext.net.head if classifier(self.ext) is not None else None
        self.head = head
        self.base = []                  # (latents, images, features, classes) per batch
        with torch.no_grad():
            for i in range(0, n, batch_size):
                lat = initial_latents(model, model.sample_z(min(batch_size, n - i), seed + i))
                imgs = render(model, lat)
                f = self.ext(imgs)
                self.base.append((lat, imgs, f.cpu(), head(f).argmax(1).cpu() if head is not None else None))

    def row(self, name: str, params: dict, ctx, progress: bool = False, keep_features: bool = False) -> dict:
        """The row of strategy ``name`` at ``params``: distribution metrics, faithfulness, seconds;
        ``{"error": ...}`` when the strategy refuses the point."""
        model, ext, head = self.model, self.ext, self.head
        t0 = time.perf_counter()
        feats, pix, fdist, same, classes, sigmas_seen = [], [], [], [], [], []
        settings, proto = None, None
        try:
            for lat, imgs0, f0, c0 in tqdm(self.base, disable=not progress, desc=f"{name} {_fmt_params(params)}",
                                           leave=False):
                new = apply_strategy(model, name, lat, ctx, **params)
                settings = new.info.get("diamond", settings)
                proto = new.info.get("mean_proto", proto)
                if "sigma" in new.info:
                    sigmas_seen.append(torch.as_tensor(new.info["sigma"]).flatten().cpu())
                if _same_latents(new, lat):          # identity point (psi=1, tau=inf): reuse
                    imgs, f = imgs0, f0
                else:
                    with torch.no_grad():
                        imgs = render(model, new)
                        f = ext(imgs).cpu()
                feats.append(f)
                pix.append((imgs - imgs0).flatten(1).norm(dim=1))
                fdist.append((f - f0).norm(dim=1))
                if head is not None:
                    c = head(f).argmax(1)
                    same.append((c == c0).float())
                    classes.append(c)
        except LatentAtlasError as e:
            return {"strategy": name, "params": _fmt_params(params), "error": str(e)}
        fk = torch.cat(feats).numpy().astype(np.float64)
        sc = self.ref.scores(fk, kid_subsets=self.kid_subsets, seed=self.seed)
        sc.pop("kid_std")
        row = {"strategy": name, "params": _fmt_params(params), **sc,
               "pixel_dist": float(torch.cat(pix).mean()), "feature_dist": float(torch.cat(fdist).mean()),
               "class_preserved": float(torch.cat(same).mean()) if same else None,
               # the share of the most frequent predicted class: a collapse that k-NN recall can miss
               "top_class_share": (float(torch.cat(classes).bincount().max()) / sum(len(c) for c in classes)
                                   if classes else None),
               "seconds": round(time.perf_counter() - t0, 2)}
        if settings:
            row["settings"] = settings
        if proto:
            row["mean_proto"] = proto
        if sigmas_seen:
            s_all = torch.cat(sigmas_seen)
            row["sigma_mean"], row["sigma_min"], row["sigma_max"] = (float(s_all.mean()), float(s_all.min()),
                                                                     float(s_all.max()))
        if keep_features:              # per sample, in seed order: the paired comparisons of the claims
            row[FEATURES] = fk.astype(np.float32)
        return row


def _leaves_samples_alone(row: dict) -> bool:
    """The untruncated baseline: the point that changed no sample (ψ = 1 in W, t = ∞ in Z, τ = ∞
    — whatever the strategy calls it; Diamond's σ = 0 still projects onto the sphere and is not)."""
    return row.get("pixel_dist") == 0.0


def evaluate_sampling(model, strategies: list[str], *, n: int = 10000, seed: int = 0, batch_size: int = 500,
                      sweeps: dict | None = None, features: str | None = None, ctx: Context | None = None,
                      progress: bool = True, kid_subsets: int = 20, reference=None, inception: str | None = None,
                      pool=None) -> dict:
    """Returns ``{"rows": [...], "best": {strategy: row}, "baseline": row}``; each row holds the
    strategy, its parameters, the distribution metrics, faithfulness and the seconds it took.
    The reference follows ``metrics.reference.resolve`` (Fashion-MNIST test split for Fashion-MNIST
    models, else the image folder ``reference``); class preservation is measured only when the
    features come from the Fashion-MNIST classifier (None otherwise). ``pool``
    (``latentatlas.parallel``) scores the parameter points on its workers, one task each; the rows
    are the ones this process would compute, in the same order."""
    ctx = ctx or Context(model)
    for name in strategies:
        if not (sweeps or {}).get(name, default_sweep(model, name)):
            raise LatentAtlasError(f"strategy '{name}' has no parameter sweep to evaluate (it samples chosen "
                                   f"clusters, not a quality-diversity trade-off)")
    setup = dict(n=n, seed=seed, batch_size=batch_size, features=features, reference=reference, inception=inception,
                 kid_subsets=kid_subsets)
    points = [(name, params) for name in strategies for params in (sweeps or {}).get(name, default_sweep(model, name))]
    if pool is None:
        st = SamplingSetup(model, **setup)
        rows = []
        for name, params in points:
            if any(r["strategy"] == name and "error" in r for r in rows):
                continue                           # a strategy that refused one point is not swept further
            rows.append(st.row(name, params, ctx, progress=progress, keep_features=True))
        ref = st.ref
    else:
        need = atlas_need(strategies)
        if need:
            pool.share_atlas(ctx.get_atlas(need))  # fitted (or read from the cache) once, here, for every worker
        ref, _ = resolve(model, folder=reference, features=features, device=model.device, inception=inception,
                         what="evaluate-sampling")
        got = {}
        with tqdm(total=len(points), disable=not progress, desc="points", leave=False) as bar:
            for i, row in pool.imap(sampling_row_task, ((i, (name, params, setup), {"keep_features": True})
                                                         for i, (name, params) in enumerate(points))):
                got[i] = row
                bar.update(1)
        rows = []
        for i, (name, _) in enumerate(points):
            if not any(r["strategy"] == name and "error" in r for r in rows):
                rows.append(got[i])
    ok = [r for r in rows if "fid" in r]
    best = {}
    for r in ok:
        if r["strategy"] not in best or rank_key(r) < rank_key(best[r["strategy"]]):
            best[r["strategy"]] = r
    baseline = next((r for r in ok if _leaves_samples_alone(r)), None)
    # each row's per-sample features, kept beside the rows (not in them: rows stay plain numbers)
    feats = {(r["strategy"], r["params"]): r.pop(FEATURES) for r in rows if FEATURES in r}
    return {"model": model.name, "n": n, "seed": seed, "reference": ref.name, "features": ref.features, "rows": rows,
            "best": best, "baseline": baseline, SAMPLE_FEATURES: feats}


PROTOCOLS = ("diamond-table1",)


def diamond_table1(model, *, n: int = 10000, seed: int = 0, ctx: Context | None = None, progress: bool = True,
                   diamond: dict | None = None, pool=None, **reference) -> dict:
    """Diamond in the rough's Table 1 protocol on a model: FID of n images for the unmodified
    baseline, the best truncation over the model's sweep (BigGAN-style resampling t ∈ [0.1, 1] in Z
    for Z-only models, ψ for StyleGAN), the best σ of the realism step on a fine grid (0.01 … 0.7)
    and σ = auto (per-sample σ by the critic midpoint), each with its faithfulness (mean pixel
    distance to the unmodified image). Models without a minibatch-std critic use the fixed-σ
    walk and have no σ = auto. ``diamond`` overrides strategy parameters (preset, lam, n_proto, ...);
    ``reference``/``features``/``inception`` choose the real set as in ``evaluate_sampling``."""
    d = dict(diamond or {})
    if not model.has_minibatch_std:
        d.setdefault("variant", "walk")
    sigmas = [{"sigma": s, **d} for s in SIGMA_GRID]
    if model.has_minibatch_std:
        sigmas.append({"sigma": "auto", **d})
    res = evaluate_sampling(model, ["truncation", "diamond"], n=n, seed=seed, ctx=ctx, progress=progress,
                            sweeps={"diamond": sigmas}, pool=pool, **reference)
    ref, _ = resolve(model, folder=reference.get("reference"), features=reference.get("features"), device=model.device,
                     inception=reference.get("inception"), what="evaluate-sampling")
    return {**res, "protocol": "diamond-table1", "table1": table1_summary(res, model, d, ref=ref),
            "precision": model.precision.record()}


def table1_record(result: dict) -> dict:
    """What a Table 1 run keeps for later reports on the same weights (``evaluation.stored``):
    the summary with its paired intervals, no per-sample data."""
    return {"n": result["n"], "seed": result["seed"], "reference": result["reference"], "features": result["features"],
            "precision": result.get("precision"), "table1": result["table1"]}


def compare(d: dict | None) -> str:
    """A paired interval of (Diamond − other) FID in words: lower / higher / not resolved."""
    if d is None:
        return "no interval"
    return "lower" if d["hi"] < 0 else "higher" if d["lo"] > 0 else "not resolved at this N"


def _sigma_of(row: dict) -> float | str:
    """The σ of a Diamond row from its params ('sigma=0.05,n_proto=256' -> 0.05)."""
    v = next(p.split("=", 1)[1] for p in row["params"].split(",") if p.startswith("sigma="))
    return v if v == "auto" else float(v)


def table1_summary(res: dict, model, d: dict | None = None, ref=None) -> dict:
    """Table 1's rows from an evaluation that swept truncation and Diamond's σ (the protocol's
    own run, or the report's sweep). With ``ref`` (the real set's ``Reference``) and the sweep's
    per-sample features, ``intervals`` holds the best Diamond row's FID minus the baseline's and
    the best truncation's, paired over the shared seeds (``paired_fid_difference``), and
    ``diamond_vs_baseline``/``diamond_vs_truncation`` read them (``compare``)."""
    d = d or {}
    ok = [r for r in res["rows"] if "fid" in r]
    base = next((r for r in ok if r["strategy"] == "truncation" and _leaves_samples_alone(r)), None)
    if base is None:
        raise LatentAtlasError("Table 1 needs the sweep's untruncated truncation point (psi = 1) as its baseline")
    trunc = min((r for r in ok if r["strategy"] == "truncation" and r is not base), key=rank_key, default=None)
    grid = [r for r in ok if r["strategy"] == "diamond" and "sigma=auto" not in r["params"]]
    best_sigma = min((r for r in grid if _sigma_of(r) != 0.0), key=rank_key, default=None)
    auto = next((r for r in ok if "sigma=auto" in r["params"]), None)

    def pick(r):
        return None if r is None else {k: r.get(k) for k in ("params", "fid", "kid", "precision", "recall", "coverage",
                                                              "pixel_dist", "class_preserved", "top_class_share",
                                                              "sigma_mean")}
    t1 = {"baseline": pick(base), "best_truncation": pick(trunc), "best_sigma": pick(best_sigma), "sigma_auto": pick(auto),
          "sigma_curve": [(r["params"].split(",")[0].split("=")[1], r["fid"], r["pixel_dist"]) for r in grid],
          "settings": next((r["settings"] for r in ok if r.get("settings")), dm.resolve_settings(model, d.get("preset", "auto")))}
    t1["mean_proto"] = next((r["mean_proto"] for r in grid + [auto] if r and r.get("mean_proto")), None)
    best_d = min((x for x in (best_sigma, auto) if x), key=rank_key, default=None)
    t1["diamond_beats_baseline"] = bool(best_d and rank_key(best_d) < rank_key(base))
    t1["diamond_beats_truncation"] = bool(best_d and trunc and rank_key(best_d) < rank_key(trunc))
    feats = res.get(SAMPLE_FEATURES) or {}
    if ref is not None and best_d is not None and best_d.get("fid") is not None:
        key = ("diamond", best_d["params"])
        t1["intervals"] = {name: paired_fid_difference(ref.mu, ref.sigma, feats[("truncation", r["params"])], feats[key],
                                                       seed=res.get("seed", 0))
                           for name, r in (("baseline", base), ("best_truncation", trunc))
                           if r is not None and key in feats and ("truncation", r["params"]) in feats}
        t1["intervals_of"] = best_d["params"]
        t1["diamond_vs_baseline"] = compare(t1["intervals"].get("baseline"))
        t1["diamond_vs_truncation"] = compare(t1["intervals"].get("best_truncation"))
    return t1


TABLE1_ROWS = (("baseline (no truncation)", "baseline"), ("best truncation", "best_truncation"),
               ("Diamond, best sigma", "best_sigma"), ("Diamond, sigma = auto", "sigma_auto"))


def format_table1(result: dict) -> str:
    t = result["table1"]
    lines = [f"Diamond in the rough, Table 1 protocol on {result['model']} (N = {result['n']}, seed {result['seed']}; "
             f"settings: {', '.join(f'{k} {v}' for k, v in t['settings'].items())})",
             f"{'':<28}{'params':>22}{'FID (or KID)':>14}{'precision':>11}{'recall':>8}{'pixel dist':>12}"]
    for label, key in TABLE1_ROWS:
        r = t[key]
        if r is None:
            lines.append(f"{label:<28}{'not applicable':>22}")
            continue
        extra = f"  (mean sigma {r['sigma_mean']:.3f})" if r.get("sigma_mean") is not None and "auto" in r["params"] else ""
        lines.append(f"{label:<28}{r['params'].split(',')[0]:>22}{_primary(r):>14}{r['precision']:>11.3f}{r['recall']:>8.3f}"
                     f"{r['pixel_dist']:>12.3f}{extra}")
    lines.append("FID along sigma: " + ", ".join(f"{s}: {f:.2f}" if f is not None else f"{s}: -" for s, f, _ in t["sigma_curve"]))
    if t.get("intervals"):
        lines.append(f"best Diamond ({t['intervals_of'].split(',')[0]}) − " + "; − ".join(
            f"{name.replace('_', ' ')}: FID {d['diff']:+.3f} [{d['lo']:+.3f}, {d['hi']:+.3f}] ({compare(d)})"
            for name, d in t["intervals"].items()) + f" — 95% paired bootstrap over the N = {result['n']} shared seeds")
    else:
        lines.append(f"Diamond's point estimate below the baseline: {'yes' if t['diamond_beats_baseline'] else 'no'}; "
                     f"below the best truncation: {'yes' if t['diamond_beats_truncation'] else 'no'} (no interval)")
    if t.get("mean_proto"):
        lines.append(mean_proto_text(t["mean_proto"]))
    return "\n".join(lines)


def mean_proto_text(info: dict) -> str:
    """One sentence on how well the mean protoimage is determined (``Context.mean_proto_info``)."""
    c = info["split_half_cosine"]
    verdict = ("settled" if c >= 0.8 else "partly determined" if c >= 0.4 else
               "not determined: mostly its samples' own noise; a larger n_proto (the paper: ~1000) would settle it")
    return (f"Mean protoimage of {info['n']} samples: split-half cosine {c:.2f} ({verdict}); each sample's "
            f"protoimage lies at cosine {info['cos_to_samples']:.2f} to the sample.")


COLUMNS = ("strategy", "params", "fid", "kid", "precision", "recall", "density", "coverage", "realism",
           "share_unrealistic", "pixel_dist", "feature_dist", "class_preserved", "top_class_share", "seconds")


def format_table(result: dict) -> str:
    lines = ["  ".join(f"{c:>12}" for c in COLUMNS)]
    for r in result["rows"]:
        if "error" in r:
            lines.append(f"{r['strategy']:>12}  {r['params']:>12}  not applicable: {r['error']}")
            continue
        lines.append("  ".join(f"{r[c]:>12.4f}" if isinstance(r[c], float) else f"{str(r[c]):>12}" for c in COLUMNS))
    lines.append("best per strategy: " + ", ".join(f"{k} ({v['params']}): {_primary(v)}" for k, v in result["best"].items()))
    return "\n".join(lines)


def plot_sampling(result: dict, out_dir) -> list[Path]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    by = {}
    for r in result["rows"]:
        if r.get("fid") is not None:   # one curve per strategy (per mixture for the cluster strategy)
            mix = next((p.split("=")[1] for p in r["params"].split(",") if p.strip().startswith("mixture=")), None)
            by.setdefault(r["strategy"] + (f" ({mix})" if mix else ""), []).append(r)
    for fname, (xk, yk, xl, yl) in {"precision_recall.png": ("recall", "precision", "recall", "precision"),
                                    "fid_faithfulness.png": ("feature_dist", "fid", "mean feature distance to original", "FID"),
                                    "realism_recall.png": ("recall", "realism", "recall",
                                                           "median realism score (Kynkäänniemi et al.)")}.items():
        if any(r.get(yk) is None or r.get(xk) is None for rs in by.values() for r in rs):
            continue
        fig, ax = plt.subplots(figsize=(5, 4))
        for name, rs in by.items():
            ax.plot([r[xk] for r in rs], [r[yk] for r in rs], "o-", label=name, ms=4)
            for r in rs:
                ax.annotate(r["params"].split(",")[0].split("=")[-1], (r[xk], r[yk]), fontsize=6)
        ax.set_xlabel(xl)
        ax.set_ylabel(yl)
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
        fig.tight_layout()
        with atomic_path(out_dir / fname) as tmp:
            fig.savefig(tmp, dpi=100, format="png")
        plt.close(fig)
        paths.append(out_dir / fname)
    return paths


def save_json(result: dict, path):
    with atomic_path(path) as tmp:
        Path(tmp).write_text(json.dumps(public(result), indent=2,
                                        default=lambda o: None if isinstance(o, float) and math.isinf(o) else str(o)))


def public(result: dict) -> dict:
    """The result without the per-sample features (what JSON outputs hold)."""
    return {k: v for k, v in result.items() if k != SAMPLE_FEATURES}


def sampling_row_task(worker, name: str, params: dict, setup: dict, progress: bool = False,
                      keep_features: bool = False) -> dict:
    """Pool task: one strategy at one parameter point, on the worker's model and atlas (the
    evaluation set-up and the strategies' context built once per worker and set-up)."""
    st, ctx = worker.cached(("sampling", repr(sorted(setup.items()))),
                            lambda: (SamplingSetup(worker.model, **setup), Context(worker.model, atlas=worker.atlas)))
    return st.row(name, params, ctx, progress=progress, keep_features=keep_features)
