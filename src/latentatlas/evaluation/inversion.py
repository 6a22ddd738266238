"""The II2S evaluation framework (II2S §4, METHODS.md §5) for any set of inversion methods.

Per method and target set:

* reconstruction — PSNR, SSIM, RMSE, perceptual (fashion-features) distance;
* editing — the embeddings moved along the top GANSpace directions at −2σ…2σ (all W+ rows), read
  by the attribute estimator (the feature network's class probabilities: the range of the class
  that moves most), and the flip test of one named attribute (Sneaker ↔ Sandal at ±σ);
* PPL of the embeddings — Karras et al.'s perceptual path length (``metrics.ppl``) of W+
  interpolations between pairs of embeddings;
* style-mixing FID — coarse rows from one embedding, the rest from another;
* interpolation FID — 5 points between an embedding and a random sample, in W+ and in P-norm+;
* P-norm+ statistics — the share of coordinates beyond ±2 and ±3 (outliers = overfitting), in the
  first 10 P-norm dimensions and after them; histograms with ``plot_pnorm``.

Distribution figures compare with the Fashion-MNIST test split: FID where a set has at least
1000 images, KID with its standard deviation below that (a FID of 128-d features from a few
hundred images is mostly estimation error, and singular below 129).
"""
from __future__ import annotations

import hashlib

import numpy as np
import torch

from ..atlas import get_atlas
from ..data.fashion import fashion_format
from ..diamond import recover_z, recovery_config, resolve_settings
from ..errors import LatentAtlasError
from ..imageio import atomic_path
from ..inversion import InversionConfig, invert, invert_many
from ..metrics import ppl
from ..metrics.attributes import estimator_for
from ..metrics.distribution import feature_stats, frechet_distance, kid
from ..metrics.features import FashionFeatures
from ..metrics.perceptual import FeatureDistance
from ..metrics.reconstruction import reconstruction_metrics
from ..metrics.reference import fashion_reference, resolve
from ..metrics.uncertainty import bootstrap, interval, paired_mean_difference
from ..walks.directions import ganspace, mean_diff

METHODS = {
    "W (projector-like)": dict(space="w"),
    "W+ (I2S)": dict(space="wplus"),
    "P-norm+ (II2S)": dict(space="pnorm+"),
    "W+ clip 2": dict(space="wplus", regularizer="pnorm-clip", reg_value=2.0),
    "W+ project 5": dict(space="wplus", regularizer="pnorm-project", reg_value=5.0),
    # II2S's r = 5 is for 18 W+ rows (a typical 18-vector of N(0, 1) has norm ~4.2); the same
    # relative radius for a model with L rows is 5·sqrt(L/18), filled in per model.
    "W+ project 5·√(L/18)": dict(space="wplus", regularizer="pnorm-project", reg_value="scaled"),
    # The II2S L2 term and Wulff & Torralba's Mahalanobis prior are the same quantity (‖v‖² in P-norm,
    # summed over rows; METHODS.md §1); the table shows them at two weights of the trade-off.
    "W+ L2 1e-6": dict(space="wplus", regularizer="pnorm-l2", reg_value=1e-6),
    "W+ Gaussian prior 1e-5": dict(space="wplus", regularizer="mahalanobis", reg_value=1e-5),
}


# II2S supplement, Tables 6-7: the regularisers' strengths (W+ with no regulariser as the reference)
SUPPLEMENT_GRID = {"W+ (I2S)": dict(space="wplus"),
                   **{f"W+ clip {c:g}": dict(space="wplus", regularizer="pnorm-clip", reg_value=float(c))
                      for c in (1, 2, 5, 7, 10)},
                   **{f"W+ project {r:g}": dict(space="wplus", regularizer="pnorm-project", reg_value=float(r))
                      for r in (1, 3, 5, 10)},
                   **{f"W+ L2 {w:g}": dict(space="wplus", regularizer="pnorm-l2", reg_value=w)
                      for w in (1e-8, 1e-7, 1e-6, 1e-5)}}
GRIDS = {"supplement": SUPPLEMENT_GRID}


def grid_table(rows: list[dict]) -> str:
    """Tables 6-7's layout as text: reconstruction, then style mixing and interpolation (FID, or
    KID ± its std where a set is too small for a FID), then the edit range (± its bootstrap std)."""
    def dist(r, pre):
        if f"{pre}fid" in r:
            return f"FID {r[pre + 'fid']:.3f}"
        return f"KID {r[pre + 'kid']:.4f}±{r[pre + 'kid_std']:.4f}" if f"{pre}kid" in r else "-"
    head = ("targets", "method", "PSNR", "SSIM", "perc.", "style mixing", "interp. W+", "interp. P-norm+", "edit range")
    lines = [f"{head[0]:<12}{head[1]:<16}{head[2]:>7}{head[3]:>7}{head[4]:>7}  {head[5]:<22}{head[6]:<22}{head[7]:<22}"
             f"{head[8]:>12}"]
    for r in rows:
        lines.append(f"{r['targets']:<12}{r['method']:<16}{r['psnr']:>7.2f}{r['ssim']:>7.3f}{r['perceptual']:>7.3f}  "
                     f"{dist(r, 'style_mixing_'):<22}{dist(r, 'interp_wplus_'):<22}{dist(r, 'interp_pnorm+_'):<22}"
                     f"{_cell(r, 'edit_prob_range', '{:.3f}'):>12}")
    return "\n".join(lines)


# the protocol table's columns: (header, row key, format); KIDs carry their std, the edit range its
# bootstrap std, PPL its standard error, the flip rate its binomial standard error and its count of
# images of the two attributes
TABLE_COLUMNS = (("PSNR", "psnr", "{:.2f}"), ("SSIM", "ssim", "{:.3f}"), ("perceptual", "perceptual", "{:.3f}"),
                 ("edit range", "edit_prob_range", "{:.3f}"), ("flip", "flip_rate", "{:.2f}"), ("PPL", "ppl", "{:.1f}"),
                 ("style-mix KID", "style_mixing_kid", "{:.4f}"), ("interp. W+ KID", "interp_wplus_kid", "{:.4f}"),
                 ("interp. P-norm+ KID", "interp_pnorm+_kid", "{:.4f}"),
                 ("beyond ±3 first 10", "share_beyond_3_first10", "{:.3f}"),
                 ("beyond ±3 later", "share_beyond_3_after10", "{:.3f}"), ("seconds", "seconds", "{:.0f}"))


def _cell(r: dict, key: str, fmt: str) -> str:
    v = r.get(key)
    if v is None:
        return "-"
    cell = fmt.format(v)
    if key.endswith("_kid") and r.get(key + "_std") is not None:
        cell += f"±{r[key + '_std']:.4f}"
    if key == "edit_prob_range" and r.get("edit_prob_range_std") is not None:
        cell += f"±{r['edit_prob_range_std']:.3f}"
    if key == "ppl" and r.get("ppl_sem") is not None:
        cell += f"±{r['ppl_sem']:.1f}"
    if key == "flip_rate" and r.get("flip_n"):
        n = r["flip_n"]                     # binomial standard error of a share of n images
        cell += f"±{(v * (1 - v) / n) ** 0.5:.2f} (n {n})"
    return cell


def protocol_table(rows: list[dict], markdown: bool = False) -> str:
    """The evaluation's table (one row per target set and method, the columns of TABLE_COLUMNS) as
    aligned text, or as a Markdown table."""
    head = ["targets", "method"] + [c for c, _, _ in TABLE_COLUMNS]
    body = [[r["targets"], r["method"]] + [_cell(r, k, f) for _, k, f in TABLE_COLUMNS] for r in rows]
    if markdown:
        return "\n".join(["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
                         + ["| " + " | ".join(b) + " |" for b in body])
    width = [max(len(x[i]) for x in [head] + body) for i in range(len(head))]
    return "\n".join("  ".join(x[i].ljust(width[i]) if i < 2 else x[i].rjust(width[i]) for i in range(len(head)))
                     for x in [head] + body)


def method_kwargs(model, kw: dict) -> dict:
    if kw.get("reg_value") == "scaled":
        return {**kw, "reg_value": round(5.0 * (model.num_ws / 18) ** 0.5, 3)}
    return kw


MIN_FID_IMAGES = 1000      # below this a FID of 128-d features is dominated by its estimation error


@torch.no_grad()
def _distribution(ext, images: torch.Tensor, name: str, ref=None) -> dict:
    """``{name}_fid`` on >= MIN_FID_IMAGES images, else ``{name}_kid`` and ``{name}_kid_std`` (never a
    FID from a near-singular covariance), against ``ref`` (default: the Fashion-MNIST test split)."""
    f = torch.cat([ext(images[i:i + 500]) for i in range(0, images.shape[0], 500)]).double().cpu().numpy()
    ref = ref if ref is not None else fashion_reference()
    if f.shape[0] >= MIN_FID_IMAGES:
        mu, sig = feature_stats(f)
        return {f"{name}_fid": frechet_distance(ref.mu, ref.sigma, mu, sig)}
    k_mean, k_std = kid(ref.feats, f, num_subsets=50, subset_size=min(1000, f.shape[0]))
    return {f"{name}_kid": k_mean, f"{name}_kid_std": k_std}


EDIT_BOOTSTRAP = 200      # resamples of the embeddings for the edit range's standard deviation


@torch.no_grad()
def edit_ranges(model, ws: torch.Tensor, directions, attrs, *, seed: int = 0, boot: int = EDIT_BOOTSTRAP) -> dict:
    """II2S Table 4 reads a pose estimator; here the attribute estimator (the feature network's
    class probabilities, or the user's probe) is read per GANSpace direction (the first three): the
    range of each attribute's mean probability over the edits at -2σ, -σ, 0, σ, 2σ, its largest
    value averaged over the directions (``edit_prob_range``), the attribute that moves most per
    direction, and the standard deviation of ``edit_prob_range`` over ``boot`` resamples of the
    embeddings (``edit_prob_range_std``: how far apart two methods must be to differ)."""
    p = edit_probs(model, ws, directions, attrs)
    full = edit_range_of(p)
    g = torch.Generator().manual_seed(seed + 5_557)
    n = p.shape[2]
    boots = [float(edit_range_of(p, torch.randint(n, (n,), generator=g)).values.mean()) for _ in range(boot)]
    return {"edit_prob_range": float(full.values.double().mean()), "edit_prob_range_std": float(np.std(boots, ddof=1)),
            "edit_classes": [attrs.names[int(k)] for k in full.indices]}


@torch.no_grad()
def edit_probs(model, ws: torch.Tensor, directions, attrs, k: int = 3) -> torch.Tensor:
    """The estimator's probabilities of every embedding edited along the first ``k`` directions at
    -2σ, -σ, 0, σ, 2σ: [directions, 5, N, attributes] on the CPU."""
    probs = []
    for i in range(min(k, len(directions))):
        u, s = directions.vectors[i].to(model.device), float(directions.sigmas[i])
        probs.append(torch.stack([attrs.probs(model.synthesis(ws + a * s * u)).float().cpu()
                                  for a in (-2, -1, 0, 1, 2)]))
    return torch.stack(probs)


def edit_range_of(p: torch.Tensor, idx: torch.Tensor | None = None):
    """Per direction, the largest range over the five edits of an attribute's mean probability
    (over the embeddings ``idx``, default all) and that attribute: a (values, indices) pair."""
    mean = (p if idx is None else p[:, :, idx]).mean(2)                         # [dirs, 5, attributes]
    return (mean.max(1).values - mean.min(1).values).max(1)


def paired_edit_difference(p: torch.Tensor, base: torch.Tensor, *, boot: int = 2000, seed: int = 0) -> dict:
    """The edit range of ``p`` minus that of ``base`` (``edit_probs`` of two methods' embeddings of
    the same images, in the same order), with a 95% interval from resampling the images once for
    both, so the images' own spread cancels: an ``uncertainty.interval`` dict plus ``share_above``."""
    if p.shape[2] != base.shape[2]:
        raise LatentAtlasError(f"a paired comparison needs the same images: {p.shape[2]} vs {base.shape[2]} embeddings")
    g = torch.Generator().manual_seed(seed + 8_191)
    n = p.shape[2]
    d = np.empty(boot)
    for b in range(boot):
        idx = torch.randint(n, (n,), generator=g)
        d[b] = float(edit_range_of(p, idx).values.mean() - edit_range_of(base, idx).values.mean())
    lo, hi = np.percentile(d, [2.5, 97.5])
    diff = float(edit_range_of(p).values.mean() - edit_range_of(base).values.mean())
    return {**interval(diff, d.std(ddof=1), n, f"paired bootstrap over the {n} images ({boot} resamples)", lo=lo, hi=hi),
            "share_above": float((d > 0).mean())}


def _ppl(model, ws: torch.Tensor, seed: int) -> dict:
    """Karras et al.'s PPL (ε = 1e-4, lerp in W+) between random pairs of the embeddings."""
    r = ppl.embedding_ppl(model, ws, pairs=ppl.EMBEDDING_PAIRS, seed=seed)
    return {"ppl": r["ppl"], "ppl_sem": r["sem"], "ppl_pairs": r["pairs"]}


def refresh_row(model, atlas, row: dict, seed: int, evaluation=None) -> bool:
    """Bring a stored row to the current figures where they can be recomputed from its stored
    P-norm+ codes (the P-norm+ map is inverted exactly): the PPL at the current pairing
    (``metrics.ppl.EMBEDDING_PAIRS``; rows kept before it was raised paired the N embeddings once)
    and the edit range's bootstrap std (rows kept before it existed). ``evaluation``: a callable
    returning the ``InversionEval`` (its directions and attribute estimator), built only when
    needed. True if the row changed."""
    if row.get("_pnorm+") is None or atlas is None:
        return False
    stale_ppl = "ppl" in row and row.get("ppl_pairs") != ppl.EMBEDDING_PAIRS
    stale_edit = "edit_prob_range" in row and "edit_prob_range_std" not in row and evaluation is not None
    if not (stale_ppl or stale_edit):
        return False
    with torch.no_grad():
        ws = atlas.pnorm_plus.to(model.device).inverse_transform(row["_pnorm+"].to(model.device))
        if stale_ppl:
            row.update(_ppl(model, ws, seed))
        if stale_edit:
            ev = evaluation()
            row.update(edit_ranges(model, ws, ev.dirs, ev.attrs, seed=seed))
    return True


@torch.no_grad()
def embedding_metrics(model, ws: torch.Tensor, atlas, ext, *, directions=None, supervised=None,
                      seed: int = 0, attributes=None, reference=None) -> dict:
    """Editing, PPL, style-mixing and interpolation metrics of W+ embeddings [N, L, D].
    ``attributes`` (``metrics.attributes``) reads the edits (default: the feature network's
    classes); ``reference`` is the real set of the distribution metrics (default: Fashion-MNIST)."""
    m = model
    attrs = attributes if attributes is not None else estimator_for(m, ext)
    ws = ws.to(m.device)
    N, L = ws.shape[:2]
    g = torch.Generator().manual_seed(seed)
    out = {}
    if directions is not None:
        out.update(edit_ranges(m, ws, directions, attrs, seed=seed))
    if supervised is not None:
        # one named attribute, as II2S's gender test: A images moved by -σ along (A - B) (Sneaker -
        # Sandal for Fashion-MNIST) and B images by +σ; the share that the estimator then reads as
        # the other attribute
        u, s = supervised.vectors[0].to(m.device), float(supervised.sigmas[0])
        c0 = attrs.classify(m.synthesis(ws))
        a_cls, b_cls = supervised.meta.get("classes", (7, 5))
        out["flip_pair"] = f"{attrs.names[a_cls]} <-> {attrs.names[b_cls]}"
        flips, n_ab = 0, 0
        for cls, sign, other in ((a_cls, -1.0, b_cls), (b_cls, 1.0, a_cls)):
            sel = c0 == cls
            if sel.any():
                c1 = attrs.classify(m.synthesis(ws[sel] + sign * s * u))
                flips += int((c1 == other).sum())
                n_ab += int(sel.sum())
        out["flip_rate"] = flips / n_ab if n_ab else float("nan")
        out["flip_n"] = n_ab
    perm = torch.randperm(N, generator=g)
    out.update(_ppl(m, ws, seed))
    # style mixing: coarse rows (first third) from one embedding, the rest from another
    cut = max(1, L // 3)
    mixed = ws[perm].clone()
    mixed[:, :cut] = ws[:, :cut]
    out.update(_distribution(ext, m.synthesis(mixed), "style_mixing", reference))
    out["style_mixing_split"] = cut
    # interpolation to random samples: 5 inner points, in W+ and in P-norm+
    rnd = m.broadcast(m.mapping(m.sample_z(N, 424_242 + seed)))
    ts = torch.linspace(0, 1, 7, device=m.device)[1:-1]
    imgs_w = torch.cat([m.synthesis(ws.lerp(rnd, float(tt))) for tt in ts])
    out.update(_distribution(ext, imgs_w, "interp_wplus", reference))
    if atlas is not None:
        plus = atlas.pnorm_plus.to(m.device)
        va, vb = plus.transform(ws), plus.transform(rnd)
        imgs_p = torch.cat([m.synthesis(plus.inverse_transform(va.lerp(vb, float(tt)))) for tt in ts])
        out.update(_distribution(ext, imgs_p, "interp_pnorm+", reference))
        out.update(pnorm_outliers(va))
        out["_pnorm+"] = va.cpu()            # for the histograms (--plots); not a table column
    return out


PAPER_LR, PAPER_STEPS = 0.01, 1200          # II2S §4: Adam, lr 0.01, 1200 iterations


def estimate_seconds(model, n_images: int, n_methods: int, steps: int, atlas=None, batch: int = 4) -> float:
    """Time the run will take, from a 5-step probe of the same engine on ``min(batch, 32)`` images
    (the jobs run a whole target set as one batch, and the cost per image falls with the batch:
    on fashion-stylegan2 a 4-image probe put the n = 100 protocol at 611 min where batch 100 runs
    at 6.9 ms per image and step, 221 min). An upper bound: early stopping usually ends images
    sooner, and the probe's batch is at most the jobs'."""
    import time
    b = max(1, min(batch, 32))
    x = model(model.sample_z(b, 123)).detach().clamp(-1, 1)
    cfg = InversionConfig(steps=5, init="mean", perceptual="discriminator" if model.has_discriminator else "none")
    t0 = time.perf_counter()
    invert(model, x, cfg, atlas=atlas)
    per_image_step = (time.perf_counter() - t0) / (5 * b)
    return per_image_step * n_images * n_methods * steps


def pnorm_outliers(v: torch.Tensor, first: int = 10) -> dict:
    """Shares of P-norm+ coordinates [N, L, k] beyond ±2 and ±3 (a standard normal has 4.6% and
    0.27%), overall and split into the first ``first`` (highest-variance) P-norm dimensions and the
    rest: II2S finds unregularised embeddings' outliers in the later dimensions."""
    a = v.abs()
    return {"share_pnorm+_beyond_2": float((a > 2).float().mean()), "share_pnorm+_beyond_3": float((a > 3).float().mean()),
            f"share_beyond_3_first{first}": float((a[..., :first] > 3).float().mean()),
            f"share_beyond_3_after{first}": float((a[..., first:] > 3).float().mean())}


GAUSS_BEYOND_3 = 0.0027     # the share of N(0, 1) beyond ±3


def outlier_excess(v: torch.Tensor, *, first: int = 10, seed: int = 0, resamples: int = 1000) -> dict:
    """II2S §3's outliers as one interval: the share of P-norm+ coordinates [N, L, k] beyond ±3 in
    the later dimensions minus twice the larger of the first ``first`` dimensions' share and
    N(0, 1)'s, bootstrapped over the N embeddings (the claim holds when it is above zero)."""
    a = (v.abs() > 3).double().cpu()

    def excess(idx):
        x = a if idx is None else a[torch.as_tensor(idx)]
        return float(x[..., first:].mean() - 2 * max(float(x[..., :first].mean()), GAUSS_BEYOND_3))
    return bootstrap(excess, len(a), resamples=resamples, seed=seed, how=f"bootstrap over the {len(a)} embeddings")


II2S_BASE = "W+ (I2S)"
II2S_COMPARED = ("W+ Gaussian prior 1e-5", "W+ clip 2", "W+ project 5", "W+ L2 1e-6")


def ii2s_record(model, atlas, rows: list[dict], targets: torch.Tensor, *, seed: int = 0) -> dict:
    """The II2S protocol's figures for later reports on the same weights (``evaluation.stored``):
    per method its mean PSNR, PPL (± s.e.) and edit range, and against unregularised W+ the paired
    intervals the claims read (edit range; per-image PSNR) and the outlier interval — recomputed
    from the rows' stored P-norm+ codes (the map is inverted exactly; the mean PSNR and edit range
    are checked against the rows' own). ``rows``: one target set's rows (``evaluate_inversion``)."""
    by = {r["method"]: r for r in rows}
    missing = [m for m in (II2S_BASE, *II2S_COMPARED) if m not in by or by[m].get("_pnorm+") is None]
    if missing:
        raise LatentAtlasError(f"the II2S record needs the rows (with P-norm+ codes) of {', '.join(missing)}")
    ev = InversionEval(model, atlas, seed)
    plus = atlas.pnorm_plus.to(model.device)
    probs, psnrs = {}, {}
    with torch.no_grad():
        for name in (II2S_BASE, *II2S_COMPARED):
            r = by[name]
            ws = plus.inverse_transform(r["_pnorm+"].to(model.device))
            probs[name] = edit_probs(model, ws, ev.dirs, ev.attrs)
            imgs = torch.cat([model.synthesis(ws[i:i + 50]).clamp(-1, 1).cpu() for i in range(0, len(ws), 50)])
            psnrs[name] = reconstruction_metrics(targets.cpu(), imgs)["psnr"]
            for what, again, stored, tol in (("PSNR", float(psnrs[name].mean()), r["psnr"], 0.05),
                                             ("edit range", float(edit_range_of(probs[name]).values.mean()),
                                              r.get("edit_prob_range", float("nan")), 1e-4)):
                if not abs(again - stored) < tol:
                    raise LatentAtlasError(f"{name}: the {what} recomputed from the stored codes ({again:.4f}) is not "
                                           f"the row's ({stored:.4f}): other targets or other weights")
    return {"n": int(len(targets)), "seed": seed,
            "methods": {m: {"psnr": by[m]["psnr"], "ppl": by[m]["ppl"], "ppl_sem": by[m].get("ppl_sem"),
                            "ppl_pairs": by[m].get("ppl_pairs"), "edit range": by[m]["edit_prob_range"]}
                        for m in (II2S_BASE, *II2S_COMPARED)},
            "versus_base": {m: {"edit": paired_edit_difference(probs[m], probs[II2S_BASE], seed=seed),
                                "psnr": paired_mean_difference(psnrs[II2S_BASE], psnrs[m])} for m in II2S_COMPARED},
            "outliers": {"> 3, first 10 dims": by[II2S_BASE]["share_beyond_3_first10"],
                         "> 3, later dims": by[II2S_BASE]["share_beyond_3_after10"],
                         "excess": outlier_excess(by[II2S_BASE]["_pnorm+"], seed=seed)}}


def plot_pnorm(rows: list[dict], out_dir, first: int = 10) -> list:
    """One figure per target set: histograms of the P-norm+ coordinates of every method's
    embeddings, first ``first`` dimensions and the rest, against the standard normal."""
    import matplotlib
    matplotlib.use("Agg")
    from pathlib import Path

    import matplotlib.pyplot as plt
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for tset in dict.fromkeys(r["targets"] for r in rows):
        rs = [r for r in rows if r["targets"] == tset and r.get("_pnorm+") is not None]
        if not rs:
            continue
        fig, axes = plt.subplots(1, 2, figsize=(10, 3.6), sharey=True)
        bins = np.linspace(-8, 8, 81)
        gauss = np.exp(-bins ** 2 / 2) / np.sqrt(2 * np.pi)
        for ax, part, title in ((axes[0], slice(None, first), f"first {first} P-norm dimensions"),
                                (axes[1], slice(first, None), f"dimensions after {first}")):
            for r in rs:
                vals = r["_pnorm+"][..., part].flatten().numpy()
                if not vals.size:           # a space of at most `first` dimensions has no later ones
                    continue
                ax.hist(np.clip(vals, -8, 8), bins=bins, density=True, histtype="step", label=r["method"])
            ax.plot(bins, gauss, "k--", lw=1, label="N(0, 1)")
            ax.set_yscale("log")
            ax.set_ylim(1e-4, 2)
            ax.set_title(title)
            ax.set_xlabel("P-norm+ coordinate")
        axes[0].legend(fontsize=6)
        fig.suptitle(f"P-norm+ coordinates of the embeddings ({tset})")
        fig.tight_layout()
        path = out_dir / f"pnorm-hist-{tset.replace(' ', '-')}.png"
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=100, format="png")
        plt.close(fig)
        paths.append(path)
    return paths


FASHION_FLIP = ("Sneaker", "Sandal")      # the flip test's attribute pair on Fashion-MNIST models


def _log_every(steps: int, what: str, parts: int = 10):
    """An ``invert`` callback that logs a line every tenth of the run (progress in a log file, where
    no bar is drawn)."""
    import logging
    import time
    log, t0, every = logging.getLogger("latentatlas"), time.perf_counter(), max(1, steps // parts)

    def cb(step, loss, active):
        if (step + 1) % every == 0 or step + 1 == steps:
            el = time.perf_counter() - t0
            log.info("evaluate-inversion: %s: step %d/%d, mean loss %.4g, %d images still optimised, %.0f s "
                     "(about %.0f s left)", what, step + 1, steps, float(loss.mean()), int(active.sum()), el,
                     el / (step + 1) * (steps - step - 1))
    return cb


class InversionEval:
    """What every row of the evaluation shares (the atlas, the reference set and feature network,
    the attribute estimator, the GANSpace directions and the flip test's A - B direction); ``row``
    runs one method on one target set. The same call runs here and on a Ray worker
    (``latentatlas.parallel``). ``reference``/``features``/``inception`` choose the real set as in
    ``metrics.reference.resolve``; ``probe`` is an attribute estimator (``metrics.attributes``, or
    a probe's ``state()``), required for models other than Fashion-MNIST ones; ``flip`` names the
    flip test's two attributes (default Sneaker, Sandal; with a probe: its first two labels)."""

    def __init__(self, model, atlas, seed: int = 0, *, reference=None, features=None, inception=None, probe=None,
                 flip: tuple[str, str] | None = None):
        self.model, self.atlas, self.seed = model, atlas, seed
        self.ref, self.ext = resolve(model, folder=reference, features=features, device=model.device,
                                     inception=inception, what="evaluate-inversion")
        self.attrs = estimator_for(model, self.ext, probe)
        flip = flip or (FASHION_FLIP if FASHION_FLIP[0] in self.attrs.names and FASHION_FLIP[1] in self.attrs.names
                        else tuple(self.attrs.names[:2]))
        a, b = (self.attrs.index(f) for f in flip)
        if a == b:
            raise LatentAtlasError(f"the flip test needs two different attributes, got {flip[0]!r} twice")
        self.dirs = ganspace(model, k=3)
        self.sup = mean_diff(model, class_a=a, class_b=b, attributes=self.attrs)

    def row(self, set_name: str, x: torch.Tensor, label: str, kw: dict, steps: int, lr: float,
            progress: bool = False) -> dict:
        model = self.model
        x = x.to(model.device)
        cfg = InversionConfig(steps=steps, lr=lr, perceptual="discriminator" if model.has_discriminator else "none",
                              perceptual_weight=0.05, seed=self.seed, **method_kwargs(model, kw))
        res = invert(model, x, cfg, atlas=self.atlas, progress=progress,
                     callback=None if progress else _log_every(steps, f"{label} on {set_name}"))
        rec = reconstruction_metrics(x, res.images, FeatureDistance(self.ext))
        row = {"targets": set_name, "method": label, **{k: float(v.mean()) for k, v in rec.items()},
               "lr": lr, "steps": steps, "seconds": round(res.seconds, 1)}
        row.update(embedding_metrics(model, res.ws, self.atlas, self.ext, directions=self.dirs, supervised=self.sup,
                                     seed=self.seed, attributes=self.attrs, reference=self.ref))
        return row


class RowStore:
    """Finished rows of an evaluation kept on disk, one file per (target set, method), so that a
    long run (the n = 100 protocol is hours on a CPU) survives an interruption: the same call with
    the same directory skips the rows already there. A row's file name is a digest of everything
    that decides it (the weights, the target images, the method's settings, steps, lr, seed, the
    atlas's statistics and the metrics' setup; a reference folder by its path); rows are written
    atomically and read back with ``torch.load(weights_only=True)``."""

    def __init__(self, directory, model, atlas, seed: int, steps: int, lr: float, setup: dict):
        from pathlib import Path
        self.dir = Path(directory)
        if self.dir.exists() and not self.dir.is_dir():
            raise LatentAtlasError(f"the evaluation's row store {self.dir} exists and is not a directory")
        probe = setup.get("probe")
        if probe is not None and not hasattr(probe, "state"):
            raise LatentAtlasError("a resumable evaluation keys its rows on the attribute estimator, and a function "
                                   "estimator cannot be keyed; give a probe (LinearProbe) or no row store")
        h = hashlib.sha256()
        _digest(h, {"weights": model.weights_hash(), "seed": seed, "steps": steps, "lr": lr,
                    "atlas": None if atlas is None else {"pnorm": atlas.pnorm.state(),
                                                         "em": atlas.em.state() if atlas.em is not None else None},
                    "setup": {k: (v.state() if hasattr(v, "state") else v) for k, v in sorted(setup.items())}})
        self._base = h.copy()

    def path(self, set_name: str, x: torch.Tensor, label: str, kw: dict):
        # the label is not part of the key: the same settings under two names (the protocol's
        # "W+ clip 2" and the supplement grid's) are one row, and so are the same penalty under two
        # names (Wulff & Torralba's Mahalanobis prior is II2S's L2 in P-norm+: "W+ Gaussian prior
        # 1e-5" is the grid's "W+ L2 1e-05")
        if kw.get("regularizer") == "mahalanobis":
            kw = {**kw, "regularizer": "pnorm-l2"}
        h = self._base.copy()
        _digest(h, {"targets": set_name, "kw": kw, "x": x})
        return self.dir / f"row-{h.hexdigest()[:24]}.pt"

    def get(self, *job) -> dict | None:
        p = self.path(*job)
        if not p.is_file():
            return None
        try:
            row = torch.load(p, map_location="cpu", weights_only=True)
        except Exception:      # noqa: BLE001 - an unreadable row is computed again
            return None
        return {**row, "method": job[2]}

    def put(self, job, row: dict) -> None:
        with atomic_path(self.path(*job)) as tmp:
            torch.save(row, tmp)


def _digest(h, obj) -> None:
    """Feed ``obj`` (dicts, lists, tensors, arrays, plain values) into the hash ``h`` unambiguously."""
    if isinstance(obj, dict):
        for k in sorted(obj, key=str):
            h.update(f"<{k}>".encode())
            _digest(h, obj[k])
    elif isinstance(obj, (list, tuple)):
        h.update(f"[{len(obj)}".encode())
        for v in obj:
            _digest(h, v)
    elif isinstance(obj, torch.Tensor):
        t = obj.detach().cpu().contiguous()
        h.update(f"T{tuple(t.shape)}{t.dtype}".encode())
        h.update(t.numpy().tobytes() if t.dtype != torch.bfloat16 else t.float().numpy().tobytes())
    elif isinstance(obj, np.ndarray):
        h.update(f"A{obj.shape}{obj.dtype}".encode())
        h.update(np.ascontiguousarray(obj).tobytes())
    else:
        h.update(repr(obj).encode())


def evaluate_inversion(model, targets: dict[str, torch.Tensor], *, methods: dict | None = None,
                       steps: int = PAPER_STEPS, lr: float = PAPER_LR, atlas=None, progress: bool = False,
                       seed: int = 0, pool=None, store=None, **setup) -> list[dict]:
    """Rows of II2S's evaluation table: one per (target set, method), at the paper's protocol
    (Adam lr 0.01 x 1200 steps) unless told otherwise; each row records lr and steps. ``pool``
    (``latentatlas.parallel``) runs one (set, method) per task on its workers; the rows come back in
    the same order. ``store``: a directory where each finished row is kept (``RowStore``); rows
    already there are not computed again, so an interrupted run resumes. ``setup``: reference,
    features, inception, probe, flip (see ``InversionEval``; a probe travels to workers as its
    ``state()``, a reference folder is read at the same path)."""
    import logging

    log = logging.getLogger("latentatlas")
    model.require_mapping("the II2S evaluation")
    atlas = atlas or get_atlas(model)
    methods = methods or METHODS
    jobs = [(set_name, x, label, kw) for set_name, x in targets.items() for label, kw in methods.items()]
    kept = RowStore(store, model, atlas, seed, steps, lr, setup) if store is not None else None
    got = {j: r for j, job in enumerate(jobs) if kept is not None and (r := kept.get(*job)) is not None}
    todo = [j for j in range(len(jobs)) if j not in got]
    built = {}

    def evaluation():
        if "ev" not in built:
            built["ev"] = InversionEval(model, atlas, seed, **setup)
        return built["ev"]

    refreshed = [j for j, r in got.items() if refresh_row(model, atlas, r, seed, evaluation)]
    for j in refreshed:
        kept.put(jobs[j], got[j])
    if refreshed:
        log.info("evaluate-inversion: %d stored rows brought to the current figures (PPL pairing, edit range std) "
                 "from their embeddings", len(refreshed))
    if got:
        log.info("evaluate-inversion: %d of %d rows already in %s; computing the other %d", len(got), len(jobs),
                 store, len(todo))
    if todo:
        n_img = sum(jobs[j][1].shape[0] for j in todo)
        est = estimate_seconds(model, n_img, 1, steps, atlas, batch=max(x.shape[0] for x in targets.values()))
        log.info("evaluate-inversion: %d rows (%s images each), lr %g x %d steps: about %.0f min at most%s",
                 len(todo), "/".join(str(x.shape[0]) for x in targets.values()), lr, steps,
                 est / 60 / (pool.size if pool is not None else 1), f" on {pool.describe()}" if pool is not None else "")

    def keep(j, row):
        got[j] = row
        if kept is not None:
            kept.put(jobs[j], row)

    if pool is None and todo:
        ev = evaluation()
        for j in todo:
            set_name, x, label, kw = jobs[j]
            log.info("evaluate-inversion: %s, method %d/%d: %s", set_name, j % len(methods) + 1, len(methods), label)
            keep(j, ev.row(set_name, x, label, kw, steps, lr, progress=progress))
    elif todo:
        pool.share_atlas(atlas)
        if hasattr(setup.get("probe"), "state"):
            setup = {**setup, "probe": setup["probe"].state()}
        for j, row in pool.imap(inversion_row_task, ((j, (jobs[j][0], jobs[j][1].cpu(), jobs[j][2], jobs[j][3], steps,
                                                            lr, seed), {"setup": setup}) for j in todo)):
            log.info("evaluate-inversion: %s / %s done (%d of %d)", row["targets"], row["method"], len(got) + 1,
                     len(jobs))
            keep(j, row)
    return [got[j] for j in range(len(jobs))]


def diamond_z_inversion(model, x: torch.Tensor, *, steps: int = 300, seed: int = 0) -> dict:
    """Z inversion with Diamond in the rough's recovery loss exactly as its §3.1 (L1 + α·L1 of D features
    + β·|‖z‖ − √n|, Adam lr 0.01, best-of-1000 start) with α, β from the model's preset."""
    ext = FashionFeatures(model.device) if fashion_format(model) else None
    st = resolve_settings(model)
    z = recover_z(model, x, recovery_config(st, steps, seed))
    with torch.no_grad():
        y = model(z).clamp(-1, 1).cpu()
    rec = reconstruction_metrics(x, y, FeatureDistance(ext) if ext else None)
    return {"method": "Z (Diamond recovery §3.1)", **{k: float(v.mean()) for k, v in rec.items()},
            "alpha": st["alpha"], "beta": st["beta"], "mean |z| / sqrt(n)": float(z.norm(dim=1).mean() / model.z_dim ** 0.5)}


def inversion_row_task(worker, set_name, x, label, kw, steps, lr, seed, progress: bool = False,
                       setup: dict | None = None) -> dict:
    """Pool task: one method on one target set, on the worker's model and atlas (the evaluation
    built once per worker and set-up)."""
    setup = setup or {}
    key = ("inversion", seed, repr(sorted((k, str(v)) for k, v in setup.items())))
    ev = worker.cached(key, lambda: InversionEval(worker.model, worker.atlas, seed, **setup))
    return ev.row(set_name, x, label, kw, steps, lr, progress=progress)


def diamond_recovery(model, targets: torch.Tensor, steps: int, n_init: int = 1000):
    """Diamond in the rough's z recovery (§3.1: L1 + α·L1 of the critic's features + β·|‖z‖ − √n|,
    Adam lr 0.01, best of ``n_init`` starts; α, β from the model's preset) as an
    ``InversionResult``-like record: images, W+ codes of the recovered z (None without a mapping),
    steps and seconds."""
    import time
    from types import SimpleNamespace
    st = resolve_settings(model)
    t0 = time.perf_counter()
    z = recover_z(model, targets.to(model.device), recovery_config(st, steps, n_init=n_init))
    with torch.no_grad():
        images = model(z).clamp(-1, 1).cpu()
        ws = model.broadcast(model.mapping(z)).cpu() if model.has_mapping else None
    return SimpleNamespace(images=images, ws=ws, steps_used=torch.full((z.shape[0],), steps),
                           seconds=time.perf_counter() - t0)


def invert_methods(model, targets: torch.Tensor, methods: list, *, steps: int, perceptual: str, init: str,
                   atlas=None, pool=None, n_init: int = 1000) -> dict:
    """Every (label, kwargs) method of ``methods`` on the same targets, the way the report's inversion
    section runs them: the methods that differ only in their regulariser as one batch
    (``invert_many``), Diamond's recovery for a ``{"diamond": True}`` entry. ``pool``
    (``latentatlas.parallel``) runs one task per latent space (and the recovery) on its workers;
    the results do not depend on where they ran. Returns {label: result}."""
    cfgs = {label: InversionConfig(steps=steps, lr=0.05, perceptual=perceptual, init=init,
                                   perceptual_weight=0.05 if perceptual != "none" else 0.0, **kw)
            for label, kw in methods if not kw.get("diamond")}
    groups: dict = {}
    for label, c in cfgs.items():
        groups.setdefault(c.space, []).append(label)
    tasks = [(labels, (targets, [cfgs[k] for k in labels]), {}) for labels in groups.values()]
    diamond = [label for label, kw in methods if kw.get("diamond")]
    out = {}
    if pool is None:
        out.update(zip(cfgs, invert_many(model, targets, list(cfgs.values()), atlas=atlas)))
        for label in diamond:
            out[label] = diamond_recovery(model, targets, steps, n_init)
        return {label: out[label] for label, _ in methods}
    if atlas is not None:
        pool.share_atlas(atlas)
    jobs = [("many", labels, a, kw) for labels, a, kw in tasks] + [("diamond", [label], (targets, steps, n_init), {})
                                                                  for label in diamond]
    for (kind, labels), res in pool.imap(methods_task, (((k, labels), (k, a), kw) for k, labels, a, kw in jobs)):
        out.update(zip(labels, res if kind == "many" else [res]))
    return {label: out[label] for label, _ in methods}


def methods_task(worker, kind: str, args: tuple):
    """Pool task: one group of ``invert_methods`` (``invert_many`` on the worker's model and atlas)
    or Diamond's recovery."""
    if kind == "diamond":
        return diamond_recovery(worker.model, *args)
    x, cfgs = args
    return invert_many(worker.model, x, cfgs, atlas=worker.atlas)
