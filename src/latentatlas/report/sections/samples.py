"""The sample grid."""
from __future__ import annotations

from ...imageio import preview_scale, save_grid
from ...sampling.generate import sample_images
from ..budget import Work
from ..context import ReportContext, Section, report_section


@report_section("samples", cost=lambda ctx: Work(generate=ctx.n), knobs=("n",))
def _samples(ctx: ReportContext) -> Section:
    res = sample_images(ctx.model, n=ctx.n, seed=ctx.seed)
    scale = preview_scale(ctx.model.img_resolution)
    save_grid(res.images, ctx.out / "samples.png", nrow=8, scale=scale)
    ctx.figures["samples"] = res
    body = (f"<p>{ctx.n} samples, seeds {ctx.seed}–{ctx.seed + ctx.n - 1}, no truncation "
            f"(constant noise).</p>" + ctx.image("samples.png", "sample grid", "Look for the variety of classes and for broken samples (smears, "
                                         "mixed garments): those are what the truncation methods below remove."))
    return Section("samples", "Samples", body)
