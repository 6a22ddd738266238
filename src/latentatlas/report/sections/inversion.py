"""Inversion: every method on held-out images, with reconstruction, editing and embedding figures."""
from __future__ import annotations

import torch

from ...data.fashion import fashion_format, load_fashion_mnist
from ...errors import LatentAtlasError
from ...evaluation.inversion import (
    METHODS,
    edit_probs,
    edit_range_of,
    invert_methods,
    method_kwargs,
    pnorm_outliers,
)
from ...imageio import save_grid
from ...metrics.attributes import estimator_for
from ...metrics.features import FashionFeatures
from ...metrics.perceptual import perceptual_fn
from ...metrics.ppl import embedding_ppl
from ...metrics.reconstruction import reconstruction_metrics
from ...walks.directions import ganspace
from ..claims import SEM
from ..budget import Work
from ..context import ReportContext, Section, note, report_section, table, tile_scale


def _embedding_quality(ctx, m, ws, label: str) -> dict:
    """What makes an embedding useful beyond its reconstruction: Karras et al.'s PPL between
    ``ctx.ppl_pairs`` random pairs of embeddings (with its standard error), and for Fashion-MNIST
    models the attribute estimator's reading of GANSpace edits (its per-image probabilities kept in
    ``ctx.figures["edit_probs"][label]`` for the claims' paired comparison)."""
    out = {}
    if not ctx.omits("inversion", "ppl"):
        r = embedding_ppl(m, ws, pairs=ctx.ppl_pairs, seed=ctx.seed)
        out = {"ppl": r["ppl"], SEM: r["sem"]}
    if fashion_format(m):
        if "inv_dirs" not in ctx.figures:
            ctx.figures["inv_dirs"] = ganspace(m, k=3)
            ctx.figures["inv_attrs"] = estimator_for(m, FashionFeatures(m.device))
        p = edit_probs(m, ws.to(m.device), ctx.figures["inv_dirs"], ctx.figures["inv_attrs"])
        out["edit range"] = float(edit_range_of(p).values.mean())
        ctx.figures.setdefault("edit_probs", {})[label] = p
    return out


def _inversion_methods(model):
    return [(k, method_kwargs(model, v)) for k, v in METHODS.items()]


def _cost(ctx) -> Work:
    """Every method's steps on every image, each start pool (one per latent space, Diamond's best-of
    its n_init), a rendering every 10 steps for the stopping rule, the PPL pairs and the metrics."""
    m = ctx.model
    mapped = len(METHODS) if m.has_mapping else 0
    rows = mapped + (1 if m.has_discriminator else 0)
    n_init = ctx.diamond.get("n_init", 1000) if m.has_discriminator else 0
    pools = (3 if m.has_mapping else 0) * ctx.init_pool + n_init
    steps = rows * ctx.invert_n * ctx.invert_steps
    ppl = 0 if ctx.omits("inversion", "ppl") or ctx.invert_n < 2 else 2 * mapped * ctx.ppl_pairs
    return Work(generate=pools + steps / 10 + rows * ctx.invert_n + ppl, steps=steps,
                critic=(pools + ppl) if m.has_discriminator else 0, features=2 * (rows + 1) * ctx.invert_n)


@report_section("inversion", "Inversion", cost=_cost,
                knobs=("invert_n", "invert_steps", "ppl_pairs", "init_pool"))
def _inversion(ctx: ReportContext) -> Section:
    m = ctx.model
    if fashion_format(m):
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
        perc = perceptual_fn("fashion-features", m) if fashion_format(m) else None
    except LatentAtlasError:
        perc = None
    atlas = ctx.figures.get("atlas")
    rows, grids = [], [targets]
    hist_data = {}
    outputs = {}
    # the methods that differ only in their regulariser are optimised as one batch (invert_many); with --ray
    # each latent space's batch and Diamond's recovery run on the pool's workers
    results = invert_methods(m, targets, methods, steps=ctx.invert_steps, perceptual=perc_name,
                             init=f"best-of:{ctx.init_pool}", atlas=atlas, pool=ctx.pool,
                             n_init=ctx.diamond.get("n_init", 1000))
    for label, kw in methods:
        res = results[label]
        met = reconstruction_metrics(targets, res.images, perc)
        ctx.figures.setdefault("inversion_psnr", {})[label] = met["psnr"].cpu()   # per image: the claims' pairs
        row = {"method": label, **{k: float(v.mean()) for k, v in met.items()},
               "steps (mean)": float(res.steps_used.float().mean()), "seconds": round(res.seconds, 1)}
        if atlas is not None and res.ws is not None:
            v = atlas.pnorm_plus.transform(res.ws.to(m.device)).cpu()
            row["share |P-norm+| > 3"] = float((v.abs() > 3).float().mean())
            ctx.figures.setdefault("pnorm_codes", {})[label] = v    # per image: the outlier claim's bootstrap
            split = pnorm_outliers(v)
            row["> 3, first 10 dims"], row["> 3, later dims"] = split["share_beyond_3_first10"], split["share_beyond_3_after10"]
            hist_data[label] = v.flatten().numpy()
        if res.ws is not None and len(targets) > 1:
            row.update(_embedding_quality(ctx, m, res.ws, label))
        rows.append(row)
        grids.append(res.images)
        outputs[label] = res.images.clamp(-1, 1).cpu()
    save_grid(torch.cat(grids), ctx.out / "inversion.png", nrow=targets.shape[0], scale=tile_scale(m))
    parts = [f"<p>{what}, {ctx.invert_steps} steps, all images of a batch optimised together (the methods that "
             "differ only in their regulariser share one batch, each row with its own regulariser and optimiser "
             "state; their seconds are shares of that batch's time). Rows: targets, "
             + ", ".join(l for l, _ in methods) + ". Perceptual column: fashion-features distance.</p>",
             "".join(note(why) for _, why in ctx.omitted.get("inversion", ())),
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
