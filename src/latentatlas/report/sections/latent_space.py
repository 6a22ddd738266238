"""Latent space: W, P and P-norm normality, the P-norm marginals and the multi-level clusters."""
from __future__ import annotations

import html

import torch

from ...atlas import DEFAULT_CLUSTERS, atlas_cache_paths, get_atlas
from ...defaults import LEARNED_STEPS
from ...errors import LatentAtlasError
from ...imageio import save_grid
from ...priors.levels import fig1_grid
from ...spaces.diagnostics import (
    normality_noise,
    normality_table,
    plot_marginals,
    space_samples,
)
from ..budget import Work
from ..context import ReportContext, Section, note, report_section, table, tile_scale

FIG1_IMAGES = 64          # the Fig. 1-style grid's cluster centres (4 x 4 x 4 at the default clusters)


def _atlas_sizes(ctx) -> tuple[int, int]:
    """(N, learned steps) of the atlas the section uses: a cached one at these sizes, or at the full or
    quick profile's (a budget's smaller sizes never refit what is already cached), else these sizes."""
    for n, steps in ((ctx.atlas_n, ctx.learned_steps), (100_000, LEARNED_STEPS), (20_000, 75)):
        if atlas_cache_paths(ctx.model, n=n, learned_steps=steps)[0].is_file():
            return n, steps
    return ctx.atlas_n, ctx.learned_steps


def atlas_seconds(model, n: int, learned_steps: int) -> float:
    """Rough seconds to fit an atlas on a CPU core: EM mixtures linear in N, the learned mixture in its
    steps, both in the width of W (a paper256-config model, w 512: 8 s for EM on 20,000 latents,
    0.22 s per learned step)."""
    width = max(model.w_dim or 64, 64) / 512
    return 2.0 + width * (4e-4 * n + 0.22 * learned_steps)


def _cost(ctx) -> Work:
    m = ctx.model
    if not m.has_mapping:
        return Work()
    k = sum(DEFAULT_CLUSTERS.values())
    w = Work(generate=2 * (k * ctx.cluster_cols + FIG1_IMAGES))
    # the normality diagnostics of 20,000 mapped latents and the mixtures' quality tables: ~30 s at w 512
    w.seconds = 30.0 * max(m.w_dim or 64, 64) / 512
    n, steps = _atlas_sizes(ctx)
    if ctx.atlas is None and not atlas_cache_paths(m, n=n, learned_steps=steps)[0].is_file():
        w.seconds += atlas_seconds(m, n, steps)
    return w


@report_section("latent-space", "Latent space", cost=_cost, knobs=("atlas_n", "learned_steps", "cluster_cols"))
def _latent_space(ctx: ReportContext) -> Section:
    m = ctx.model
    if not m.has_mapping:
        return Section("latent-space", "Latent space", note(f"'{m.name}' has only a Gaussian Z space: there is "
                                                              "no W/P/P-norm to map (Wulff & Torralba / II2S need a mapping network)."))
    n, steps = _atlas_sizes(ctx)
    atlas = ctx.atlas or get_atlas(m, n=n, learned_steps=steps)
    ctx.figures["atlas"] = atlas
    s = space_samples(m, atlas.pnorm, n=20000, seed=1)
    ctx.figures["normality"] = normality_table(s)
    ctx.figures["normality_noise"] = normality_noise(s, seed=ctx.seed)
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
            parts.append(note(str(e)))
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
                w = mix.sample(level, k, ctx.cluster_cols, seed=k)
                ws = base.expand(ctx.cluster_cols, -1, -1).clone()
                ws[:, a:b] = w[:, None]
                rows.append(m.synthesis(ws).clamp(-1, 1).cpu())
            name = f"clusters-{kind}-{level}.png"
            save_grid(torch.cat(rows), ctx.out / name, nrow=ctx.cluster_cols, scale=tile_scale(m))
            parts.append(f"<p>{level} (W+ rows {a}–{b - 1}): one cluster per row, its rows replaced by {ctx.cluster_cols} "
                         f"cluster samples on a fixed base code.</p>" + ctx.image(name, f"{kind} {level} clusters",
                                   f"Each row should share one {level} trait (coarse: shape and class, fine: "
                                   "texture and shading) while the columns vary within it."))
        if all(mix.n_clusters.get(lv) for lv in ("coarse", "medium", "fine")):
            grid, nrow, shown = fig1_grid(m, mix, base)
            kc, km, kf = (len(shown[lv]) for lv in ("coarse", "medium", "fine"))
            name = f"multilevel-{kind}.png"
            save_grid(grid, ctx.out / name, nrow=nrow, scale=tile_scale(m))
            parts.append(f"<p>Katzir et al. Fig. 1-style grid: {kc} blocks (side by side) of {km} rows × {kf} columns; "
                         "one coarse cluster per block, one medium cluster per row, one fine cluster per column "
                         "(cluster centres).</p>" + ctx.image(name, "multi-level grid",
                                                  "Within a block the coarse trait stays fixed; down a row the "
                                                  "medium trait changes, across a row only the fine details."))
    return Section("latent-space", "Latent space", "".join(parts))
