"""Analysis sections of the HTML report. Each calls public library functions only and says
plainly when a method does not apply to the model."""
from __future__ import annotations

import html

import torch

from ..errors import LatentAtlasError
from ..imageio import save_grid
from .html import ReportContext, Section, report_section, table


def _note(text: str) -> str:
    return f"<p class='note'>{html.escape(text)}</p>"


def _is_fashion(m) -> bool:
    return m.img_channels == 1 and m.img_resolution == 32


def _scale(m) -> int:
    return max(1, 96 // m.img_resolution)


@report_section("quality", "Quality")
def _quality(ctx: ReportContext) -> Section:
    m = ctx.model
    from ..data.fashion import CLASSES
    from ..metrics.suite import evaluate_model
    from ..metrics.reference import fits_fashion
    if not fits_fashion(m) and not ctx.reference.get("reference"):
        return Section("quality", "Quality", _note(
            "Quality metrics compare samples with real images like the model's training data: the Fashion-MNIST "
            "test split fits only Fashion-MNIST models; for this one, build the report with --reference DIR "
            "(a folder of real images)."))
    res = evaluate_model(m, n=ctx.eval_n, progress=False, device=m.device, **ctx.reference)
    ctx.figures["quality"] = res
    rows = [{"metric": k, "value": v} for k, v in res.items()
            if k not in ("class_histogram", "model", "features", "reference")]
    hist = ([{"class": c, "share of samples": h} for c, h in zip(CLASSES, res["class_histogram"])]
            if res.get("class_histogram") else None)
    body = (f"<p>{ctx.eval_n} samples vs {html.escape(res['reference'])} in the {html.escape(res['features'])} "
            f"space (k = 3 for precision/recall/density/coverage).</p>" + table(rows) + (table(hist) if hist else ""))
    return Section("quality", "Quality", body)


@report_section("latent-space", "Latent space")
def _latent_space(ctx: ReportContext) -> Section:
    m = ctx.model
    if not m.has_mapping:
        return Section("latent-space", "Latent space", _note(f"'{m.name}' has only a Gaussian Z space: there is "
                                                              "no W/P/P-norm to map (Wulff & Torralba / II2S need a mapping network)."))
    from ..atlas import get_atlas
    from ..spaces.diagnostics import normality_table, plot_marginals, space_samples
    atlas = ctx.atlas or get_atlas(m, n=ctx.atlas_n, learned_steps=ctx.learned_steps)
    ctx.figures["atlas"] = atlas
    s = space_samples(m, atlas.pnorm, n=20000, seed=1)
    ctx.figures["normality"] = normality_table(s)
    plot_marginals(s, ctx.out / "marginals.png")
    parts = [f"<p>Atlas: N = {atlas.meta['n']} mapped latents, timings {html.escape(str(atlas.meta['timings']))}. "
             "W is skewed and heavy-tailed, P (W through the inverse LeakyReLU) is close to Gaussian, "
             "P-norm is whitened (II2S, Fig. 1).</p>", table(ctx.figures["normality"]),
             ctx.image("marginals.png", "marginal histograms of W, P and P-norm",
                       "W's marginals are skewed with a hard edge near zero; P's should look Gaussian and P-norm's "
                       "like N(0, 1) in every coordinate.")]
    # per-level cluster grids and the Fig. 1-style grid
    base = m.broadcast(m.mapping(m.sample_z(1, ctx.seed)))
    for kind in ("em", "learned"):
        try:
            mix = atlas.mixture(kind)
        except LatentAtlasError as e:
            parts.append(_note(str(e)))
            continue
        parts.append(f"<h3>{'EM baseline' if kind == 'em' else 'Learned multi-level'} mixture</h3>")
        q = mix.quality(n=1000) if kind == "learned" else mix.quality(m, n=1000)
        parts.append(table([{"level": lv, **{k: (v if not isinstance(v, list) else " ".join(map(str, v)))
                                                   for k, v in r.items()}} for lv, r in q.items()]))
        for level, (a, b) in atlas.level_ranges.items():
            K = mix.n_clusters.get(level, 0)
            if not K:
                continue
            rows = []
            for k in range(K):
                w = mix.sample(level, k, 8, seed=k)
                ws = base.expand(8, -1, -1).clone()
                ws[:, a:b] = w[:, None]
                rows.append(m.synthesis(ws).clamp(-1, 1).cpu())
            name = f"clusters-{kind}-{level}.png"
            save_grid(torch.cat(rows), ctx.out / name, nrow=8, scale=_scale(m))
            parts.append(f"<p>{level} (W+ rows {a}–{b - 1}): one cluster per row, its rows replaced by 8 "
                         f"cluster samples on a fixed base code.</p>" + ctx.image(name, f"{kind} {level} clusters",
                                   f"Each row should share one {level} trait (coarse: shape and class, fine: "
                                   "texture and shading) while the columns vary within it."))
        if all(mix.n_clusters.get(lv) for lv in ("coarse", "medium", "fine")):
            from ..priors import fig1_grid
            grid, nrow, shown = fig1_grid(m, mix, base)
            kc, km, kf = (len(shown[lv]) for lv in ("coarse", "medium", "fine"))
            name = f"multilevel-{kind}.png"
            save_grid(grid, ctx.out / name, nrow=nrow, scale=_scale(m))
            parts.append(f"<p>Katzir et al. Fig. 1-style grid: {kc} blocks (side by side) of {km} rows × {kf} columns; "
                         "one coarse cluster per block, one medium cluster per row, one fine cluster per column "
                         "(cluster centres).</p>" + ctx.image(name, "multi-level grid",
                                                  "Within a block the coarse trait stays fixed; down a row the "
                                                  "medium trait changes, across a row only the fine details."))
    return Section("latent-space", "Latent space", "".join(parts))


SHOWCASE = [("none", {}), ("truncation", {"psi": 0.7}), ("pca-log", {"tau": 1.5}), ("cluster", {"psi": 0.7}),
            ("cluster", {"psi": 0.7, "mixture": "learned"}), ("diamond", {"sigma": 0.3})]


@report_section("sampling", "Sampling strategies")
def _sampling(ctx: ReportContext) -> Section:
    from ..sample import sample_with_strategy
    from ..sampling import Context
    m = ctx.model
    sctx = Context(m, atlas=ctx.figures.get("atlas") or ctx.atlas)
    ctx.figures["sampling_ctx"] = sctx
    parts = ["<p>The same 16 seeds under each strategy.</p>"]
    for name, params in SHOWCASE:
        if not m.has_mapping and name == "truncation":
            params = {"t": 1.0}
        if name == "diamond":
            params = {**params, **ctx.diamond}
            if not m.has_minibatch_std:
                params = {"sigma": 0.3, "variant": "walk", "recovery_steps": ctx.diamond.get("recovery_steps", 100)}
        label = f"{name} {', '.join(f'{k}={v}' for k, v in params.items())}".strip()
        try:
            res = sample_with_strategy(m, n=16, seed=ctx.seed, strategy=name, params=params, ctx=sctx)
        except LatentAtlasError as e:
            parts.append(f"<h3>{html.escape(label)}</h3>" + _note(f"not applicable: {e}"))
            continue
        fname = f"sampling-{name}-{len(parts)}.png"
        save_grid(res.images, ctx.out / fname, nrow=16, scale=_scale(m))
        parts.append(f"<h3>{html.escape(label)}</h3>" + ctx.image(fname, label, "The same 16 seeds as the other rows: compare "
                                                                   "column by column to see what this strategy changes."))
    if not m.has_mapping and m.has_discriminator:
        try:
            parts.append(_diamond_figures(ctx, m, sctx))
        except LatentAtlasError as e:
            parts.append(_note(f"Diamond figures not available: {e}"))
    if _is_fashion(m) or ctx.reference.get("reference"):
        try:
            parts.append(_sampling_sweep(ctx, m, sctx))
        except LatentAtlasError as e:
            parts.append(_note(f"sweep not available: {e}"))
    return Section("sampling", "Sampling strategies", "".join(parts))


def _sampling_sweep(ctx, m, sctx) -> str:
    from ..sampling.evaluate import evaluate_sampling, plot_sampling
    strategies = ["truncation", "pca-log", "cluster", "diamond"] if m.has_mapping else ["truncation", "diamond"]
    from ..sampling import default_sweep
    from ..sampling.evaluate import TABLE1_ROWS, mean_proto_text, table1_summary

    def kept(p):        # the profile's sweep_values thin each strategy's sweep to the values it names
        return all(v in ctx.sweep_values.get(k, (v,)) for k, v in p.items())
    sweeps = {name: [p for p in default_sweep(m, name) if kept(p)] for name in strategies}
    sweeps["diamond"] = [{**p, **ctx.diamond} for p in sweeps["diamond"]]
    res = evaluate_sampling(m, strategies, n=ctx.sweep_n, seed=ctx.seed, progress=False, ctx=sctx, sweeps=sweeps,
                            pool=ctx.pool, **ctx.reference)
    ctx.figures["sampling"] = res
    plot_sampling(res, ctx.out)
    from ..sampling.evaluate import COLUMNS
    cols = tuple(c for c in COLUMNS if c != "seconds")
    out = (f"<h3>Sweep ({ctx.sweep_n} samples per point; Diamond with the mean protoimage at fixed sigma and with per-sample sigma = auto)</h3>"
           + table([{c: r.get(c, r.get("error", "")) for c in cols} for r in res["rows"]])
           + ctx.image("precision_recall.png", "precision vs recall",
                       "Each strategy traces a curve as its parameter tightens: up-left is more realism bought with "
                       "diversity; a curve above another is the better trade-off. k-NN recall is inflated by a set "
                       "collapsed on one mode with a few scattered samples: check coverage and top_class_share in "
                       "the table before trusting a point far to the right.")
           + ctx.image("fid_faithfulness.png", "FID vs faithfulness",
                       "Lower-left is better: lower FID for a smaller change to the untruncated image.")
           + (ctx.image("realism_recall.png", "realism vs recall",
                        "The per-sample realism score should rise as each strategy tightens (and recall falls); a "
                        "flat curve means the measure does not see what the strategy removes.")
              if (ctx.out / "realism_recall.png").is_file() else ""))
    if any(r.get("strategy") == "diamond" and "fid" in r for r in res["rows"]):
        t1 = table1_summary(res, m, ctx.diamond)
        ctx.figures["table1"] = t1
        rows = [{"row": label, **{k: (t1[key] or {}).get(k, "not applicable") for k in
                                  ("params", "fid", "precision", "recall", "pixel_dist", "sigma_mean")}}
                for label, key in TABLE1_ROWS]
        verdict = (f"Diamond {'beats' if t1['diamond_beats_baseline'] else 'does not beat'} the untruncated baseline and "
                   f"{'beats' if t1['diamond_beats_truncation'] else 'does not beat'} the best truncation on this model.")
        out += ("<h3>Diamond in the rough, Table 1 protocol (same samples as the sweep)</h3>"
                f"<p>Settings: {html.escape(', '.join(f'{k} {v}' for k, v in t1['settings'].items()))}. "
                "Faithfulness = mean pixel distance to the unmodified sample. " + html.escape(verdict)
                + (" " + html.escape(mean_proto_text(t1["mean_proto"])) if t1.get("mean_proto") else "") + "</p>"
                + table(rows))
    return out


def _diamond_figures(ctx, m, sctx) -> str:
    """The great-circle walk through each sample's protoimage (Diamond in the rough §3.2) and attribute control
    (appendix E: attribute vector first, realism step second), for Z models with a critic."""
    from .. import diamond as dm
    from ..sample import sample_with_strategy
    from ..walks.edit import save_strip
    parts = []
    d = ctx.diamond
    z0 = m.sample_z(4, ctx.seed + 500)
    path, mid = dm.protoimage_walk(m, z0, frames=9, recovery_steps=d.get("recovery_steps", 200),
                                   proto_iter=d.get("proto_iter", 100), n_init=d.get("n_init", 1000))
    with torch.no_grad():
        imgs = torch.stack([m(p).clamp(-1, 1).cpu() for p in path])
    save_strip(imgs, ctx.out / "diamond-great-circle.png", scale=_scale(m), mark=[mid] * 4 if mid is not None else None)
    parts.append("<h3>Great-circle walk through the protoimage (Diamond in the rough §3.2)</h3><p>Each row: a sample (left), "
                 "then points on the great circle through it and its recovered z1"
                 + (", the protoimage found by Algorithm 1 framed in red, and as far again beyond it. Look for the image "
                    "turning sample-mean-like toward the frame and a new identity after it."
                    if mid is not None else " up to 90 degrees (no minibatch-std critic: no protoimage to detect).")
                 + "</p>" + ctx.image("diamond-great-circle.png", "great-circle walk",
                                 "Read each row left to right: the garment should grow cleaner toward the red "
                                 "frame and turn into another garment after it."))
    if not m.has_mapping and _is_fashion(m):
        dirs = ctx.mean_diff()
        dirs.save(ctx.out / "diamond-attribute-dirs.npz")
        names = dirs.meta.get("names", [])
        k = next((i for i, nm in enumerate(names) if nm.startswith("Ankle boot")), 0)
        ref = f"{ctx.out / 'diamond-attribute-dirs.npz'}:{k}"
        sig = {"sigma": 0.3, **d} if m.has_minibatch_std else {"sigma": 0.3, "variant": "walk", **d}
        cols = [("original", "none", {}), ("attribute +2σ", "diamond", {**sig, "sigma": 0.0, "attribute": ref, "amount": 2}),
                ("attribute +2σ, then realism σ=0.3", "diamond", {**sig, "attribute": ref, "amount": 2}),
                ("realism σ=0.3 only", "diamond", sig)]
        grids = [sample_with_strategy(m, n=8, seed=ctx.seed + 600, strategy=s, params=p, ctx=sctx).images
                 for _, s, p in cols]
        save_grid(torch.stack(grids, 1).reshape(-1, *grids[0].shape[1:]), ctx.out / "diamond-attribute.png",
                  nrow=len(cols), scale=_scale(m))
        parts.append(f"<h3>Attribute control (appendix E): {html.escape(names[k] if names else 'direction ' + str(k))}</h3>"
                     f"<p>Columns: {', '.join(c for c, _, _ in cols)}. The attribute (a mean-difference direction in Z "
                     "from the feature network's labels) is applied first, the realism step toward the mean protoimage "
                     "second; look for the attribute surviving the realism step.</p>"
                     + ctx.image("diamond-attribute.png", "attribute control",
                               "Compare the third column with the second: the attribute should stay while "
                               "artifacts go."))
    return "".join(parts)


def _embedding_quality(ctx, m, ws, label: str) -> dict:
    """What makes an embedding useful beyond its reconstruction: Karras et al.'s PPL between
    ``ctx.ppl_pairs`` random pairs of embeddings (with its standard error), and for Fashion-MNIST
    models the attribute estimator's reading of GANSpace edits (its per-image probabilities kept in
    ``ctx.figures["edit_probs"][label]`` for the claims' paired comparison)."""
    from ..metrics.ppl import embedding_ppl
    from .claims import SEM
    r = embedding_ppl(m, ws, pairs=ctx.ppl_pairs, seed=ctx.seed)
    out = {"ppl": r["ppl"], SEM: r["sem"]}
    if _is_fashion(m):
        from ..inversion.evaluate import edit_probs, edit_range_of
        from ..metrics.attributes import estimator_for
        from ..metrics.features import FashionFeatures
        from ..walks.directions import ganspace
        if "inv_dirs" not in ctx.figures:
            ctx.figures["inv_dirs"] = ganspace(m, k=3)
            ctx.figures["inv_attrs"] = estimator_for(m, FashionFeatures(m.device))
        p = edit_probs(m, ws.to(m.device), ctx.figures["inv_dirs"], ctx.figures["inv_attrs"])
        out["edit range"] = float(edit_range_of(p).values.mean())
        ctx.figures.setdefault("edit_probs", {})[label] = p
    return out


def _directions_by_layer(m) -> list[dict]:
    """Top-3 directions of one method at an early and a late layer, measured the same way:
    SeFa on the style weights of the first vs the last synthesis conv for mapped models, GANSpace
    on the activations of the second vs the second-to-last stage for Z-only models."""
    from ..walks.directions import compute_directions, style_layers
    from ..walks.edit import evaluate_directions
    names = m.layer_names
    if m.has_mapping:
        convs = style_layers(m)
        if len(convs) < 2:
            raise LatentAtlasError(f"fewer than two synthesis layers with a style affine ({convs})")
        picks = [("sefa", {"k": 3, "layers": [convs[0]]}, convs[0]), ("sefa", {"k": 3, "layers": [convs[-1]]}, convs[-1])]
    else:
        if len(names) < 2:
            raise LatentAtlasError("fewer than two named stages")
        early, late = (names[1], names[-2]) if len(names) >= 4 else (names[0], names[-1])
        picks = [("ganspace", {"k": 3, "layer": early}, early), ("ganspace", {"k": 3, "layer": late}, late)]
    rows = []
    for (method, kw, layer), when in zip(picks, ("early", "late")):
        ev = evaluate_directions(m, compute_directions(m, method, **kw), n=32, drift=False, ppl=False)
        r = ev["rows"]
        row = {"layer": f"{when}: {layer}", "method": method}
        for key in ("classes_moved", "g1_variation", "roughness"):
            if all(key in x for x in r):
                row[key] = sum(x[key] for x in r) / len(r)
        rows.append(row)
    return rows


def _inversion_methods(model):
    from ..inversion.evaluate import METHODS, method_kwargs
    return [(k, method_kwargs(model, v)) for k, v in METHODS.items()]


def _diamond_recovery(m, targets, steps):
    """Diamond in the rough's z recovery, as an InversionResult-like record for the table."""
    import time
    from types import SimpleNamespace

    from .. import diamond as dm
    st = dm.resolve_settings(m)
    t0 = time.perf_counter()
    z = dm.recover_z(m, targets.to(m.device), dm.recovery_config(st, steps))
    with torch.no_grad():
        images = m(z).clamp(-1, 1).cpu()
        ws = m.broadcast(m.mapping(z)).cpu() if m.has_mapping else None
    return SimpleNamespace(images=images, ws=ws, steps_used=torch.full((z.shape[0],), steps),
                           seconds=time.perf_counter() - t0)


@report_section("inversion", "Inversion")
def _inversion(ctx: ReportContext) -> Section:
    from ..inversion import InversionConfig, invert_many, perceptual_fn
    from ..metrics.reconstruction import reconstruction_metrics
    m = ctx.model
    if _is_fashion(m):
        from ..data.fashion import load_fashion_mnist
        x, _ = load_fashion_mnist("test")
        targets = x[torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(7))[:ctx.invert_n]]
        what = f"{ctx.invert_n} held-out Fashion-MNIST test images"
    else:
        with torch.no_grad():
            targets = m(m.sample_z(ctx.invert_n, 10_000)).clamp(-1, 1).cpu()
        what = f"{ctx.invert_n} generated images (seeds 10000+)"
    # Z inversion with Diamond in the rough's recovery exactly as its §3.1 (L1 + α·L1 of D features +
    # β·|‖z‖ − √n|, Adam lr 0.01, best-of-1000 start; α, β from the model's preset)
    diamond_row = ("Z (Diamond recovery §3.1)", {"diamond": True})
    methods = _inversion_methods(m) if m.has_mapping else [diamond_row]
    if m.has_mapping and m.has_discriminator:
        methods = methods + [diamond_row]
    perc_name = "discriminator" if m.has_discriminator else "none"
    try:
        perc = perceptual_fn("fashion-features", m) if _is_fashion(m) else None
    except LatentAtlasError:
        perc = None
    atlas = ctx.figures.get("atlas")
    rows, grids = [], [targets]
    hist_data = {}
    outputs = {}
    # the methods that differ only in their regulariser are optimised as one batch (invert_many)
    cfgs = {label: InversionConfig(steps=ctx.invert_steps, lr=0.05, perceptual=perc_name,
                                   perceptual_weight=0.05 if perc_name != "none" else 0.0, **kw)
            for label, kw in methods if not kw.get("diamond")}
    results = dict(zip(cfgs, invert_many(m, targets, list(cfgs.values()), atlas=atlas)))
    for label, kw in methods:
        res = _diamond_recovery(m, targets, ctx.invert_steps) if kw.get("diamond") else results[label]
        met = reconstruction_metrics(targets, res.images, perc)
        row = {"method": label, **{k: float(v.mean()) for k, v in met.items()},
               "steps (mean)": float(res.steps_used.float().mean()), "seconds": round(res.seconds, 1)}
        if atlas is not None and res.ws is not None:
            from ..inversion.evaluate import pnorm_outliers
            v = atlas.pnorm_plus.transform(res.ws.to(m.device)).cpu()
            row["share |P-norm+| > 3"] = float((v.abs() > 3).float().mean())
            split = pnorm_outliers(v)
            row["> 3, first 10 dims"], row["> 3, later dims"] = split["share_beyond_3_first10"], split["share_beyond_3_after10"]
            hist_data[label] = v.flatten().numpy()
        if res.ws is not None and len(targets) > 1:
            row.update(_embedding_quality(ctx, m, res.ws, label))
        rows.append(row)
        grids.append(res.images)
        outputs[label] = res.images.clamp(-1, 1).cpu()
    save_grid(torch.cat(grids), ctx.out / "inversion.png", nrow=targets.shape[0], scale=_scale(m))
    parts = [f"<p>{what}, {ctx.invert_steps} steps, all images of a batch optimised together (the methods that "
             "differ only in their regulariser share one batch, each row with its own regulariser and optimiser "
             "state; their seconds are shares of that batch's time). Rows: targets, "
             + ", ".join(l for l, _ in methods) + ". Perceptual column: fashion-features distance.</p>",
             ctx.image("inversion.png", "reconstructions",
                       "Each row against the first: a method that loses the target's class or shape has found "
                       "the wrong basin, whatever its PSNR."), table(rows)]
    if hist_data:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        fig, ax = plt.subplots(figsize=(6, 3.5))
        for label, v in hist_data.items():
            ax.hist(v, bins=120, range=(-8, 8), histtype="step", density=True, label=label)
        ax.set_yscale("log")
        ax.set_xlabel("P-norm+ coordinate of the embeddings")
        ax.legend(fontsize=6)
        fig.tight_layout()
        fig.savefig(ctx.out / "pnorm_hist.png", dpi=100)
        plt.close(fig)
        parts.append("<p>P-norm+ histograms of the embeddings (II2S §4: mass far outside the Gaussian "
                     "range = overfitting).</p>" + ctx.image("pnorm_hist.png", "P-norm+ histograms",
                                 "Curves with heavy tails beyond ±3 are embeddings that left the generator's "
                                 "distribution; the regularised methods should hug the Gaussian."))
    ctx.figures["inversion"] = rows
    ctx.figures["inversion_images"] = (targets, outputs)
    return Section("inversion", "Inversion", "".join(parts))


@report_section("walks", "Walks and directions")
def _walks(ctx: ReportContext) -> Section:
    from ..walks.density import DPConfig, train_dp_lase
    from ..walks.directions import compute_directions
    from ..walks.edit import evaluate_directions, render_walk, save_strip, walk_latents
    m = ctx.model
    plans = []
    if m.has_mapping:
        plans = [("ganspace", dict(k=3)), ("sefa", dict(k=3)), ("dplase", dict(k=3, steps=ctx.dp_steps))]
        if _is_fashion(m):
            plans.append(("mean-diff", {}))
    else:
        plans = [("ganspace", dict(k=3, layer=m.layer_names[1]))]
        if _is_fashion(m):
            plans.append(("mean-diff", {}))
    parts = []
    drift_rows = []
    for method, kw in plans:
        try:
            d = ctx.mean_diff() if method == "mean-diff" else compute_directions(m, method, **kw)
        except LatentAtlasError as e:
            parts.append(f"<h3>{method}</h3>" + _note(str(e)))
            continue
        kinds = ["linear", "dp"] + (["great-circle"] if d.space == "z" else [])
        base = m.sample_z(4, ctx.seed)
        base = m.mapping(base).detach() if d.space == "w" else base
        dp_model = getattr(d, "dp_model", None)
        if dp_model is None:   # one density model + correction per direction set, shared below
            dp_model, _ = train_dp_lase(m, DPConfig(steps=ctx.dp_steps), space=d.space, directions=d.vectors,
                                            sigmas=d.sigmas)
        ctx.figures.setdefault("direction_sets", []).append((method, d, dp_model))
        parts.append(f"<h3>{method} ({d.space})</h3>")
        for i in range(min(3, len(d))):
            for kind in kinds:
                lat = walk_latents(m, d, i, base, kind=kind, steps=9, extent=2.0, dp_model=dp_model)
                fname = f"walk-{method}-{i}-{kind}.png"
                save_strip(render_walk(m, d, lat), ctx.out / fname, scale=_scale(m))
                name = (d.meta.get("names") or [f"direction {i}"] * len(d))[i]
                parts.append(f"<p>{html.escape(str(name))}, {kind} walk, −2σ … +2σ</p>" + ctx.image(fname, fname,
                                            "The middle image is the sample itself; a good direction changes "
                                            "one thing steadily and keeps the garment realistic at both ends."))
        try:
            ev = evaluate_directions(m, d, n=32, dp_model=dp_model, first=3)
        except LatentAtlasError as e:
            parts.append(_note(f"measurements not available: {e}"))
            continue
        for r in ev["rows"]:
            drift_rows.append({"method": method, "orthogonality error": ev["orthogonality_error"], **r})
    ctx.figures["walks"] = drift_rows
    try:
        layer_rows = _directions_by_layer(m)
        ctx.figures["layers"] = layer_rows
        parts.append("<h3>Early vs late layers</h3><p>The same method's top directions found at an early and at a "
                     "late layer (DP-LaSE §4: earlier layers control more global attributes); classes moved = class "
                     "probabilities changed by more than 0.1 at +2σ, averaged over the directions.</p>"
                     + table(layer_rows))
    except LatentAtlasError as e:
        parts.append(_note(f"early-vs-late comparison not available: {e}"))
    if drift_rows:
        parts.append("<h3>Measurements</h3><p>Density drift: mean |log F(z_t) − log F(z_0)| along the walk under "
                     "the learned DP-LaSE density (linear vs density-preserving walk); classes moved: class "
                     "probabilities changed by > 0.1 at +2σ.</p>" + table(drift_rows))
    return Section("walks", "Walks and directions", "".join(parts))


@report_section("overview", "Every method on one table")
def _overview(ctx: ReportContext) -> Section:
    from .overview import overview_rows
    rows, notes = overview_rows(ctx)
    ctx.figures["overview"] = rows
    if not rows:
        return Section("overview", "Every method on one table", _note("; ".join(notes)))
    body = ("<p>Every sampling strategy at its best setting (by the sweep's FID, among the settings that change the "
            "samples), every inversion method and every "
            "direction method, scored by one function on the same metrics against the report's reference set. "
            "Within a family the rows share their starting images: the sweep's seeds for sampling, the same "
            f"targets for inversion, the same {ctx.overview_n} samples walked to ±2σ along each method's first "
            "direction for directions. <b>pixel_dist</b> is how far each image moved from its start (for inversion: "
            "from its target, i.e. the reconstruction error); <b>class_kept</b> the share that kept the start's "
            "predicted class. FID is blank where the images are fewer than the feature dimensions; read KID ± std "
            "there.</p>" + table(rows) + "".join(_note(x) for x in notes))
    return Section("overview", "Every method on one table", body)


@report_section("claims", "What the papers claim, and what this model shows")
def _claims(ctx: ReportContext) -> Section:
    from .claims import evaluate_claims, render, summary_line
    claims = evaluate_claims(ctx)
    ctx.figures["claims"] = claims
    body = ("<p>Each claim of the five papers, the figure this report measured for it on this model, and a verdict "
            "computed from that figure (holds / does not hold / mixed; not applicable says why). The thresholds are "
            "in <code>report/claims.py</code>; the figures come from the sections above, on this report's samples "
            f"(verdicts: {html.escape(summary_line(claims))}).</p>" + render(claims))
    return Section("claims", "What the papers claim, and what this model shows", body)
