"""Editing on this model: GANSpace's components named by what they do, a real image inverted and
then refined (pivotal tuning) with an edit on both generators, and a keyframe walk."""
from __future__ import annotations

import torch

from ...data.fashion import fashion_format, load_fashion_mnist
from ...errors import LatentAtlasError
from ...imageio import save_grid
from ...inversion import InversionConfig, invert
from ...inversion.refine import RefineConfig, refine, render_refined
from ...metrics.reconstruction import psnr
from ...walks.directions import bundled_attributes, compute_directions, name_directions
from ...walks.keyframes import keyframe_walk
from ..budget import Work
from ..context import ReportContext, Section, note, report_section, table, tile_scale

KEYFRAME_STEPS = 8


def _cost(ctx) -> Work:
    """Naming (each of 10 components read at ±2σ on name_n samples), the refinement's inversion and
    tuning (a start pool, then steps per image), the edits and the keyframe walk."""
    m = ctx.model
    w = Work(generate=2 * KEYFRAME_STEPS + 1)
    if bundled_attributes(m) is not None:
        w += Work(generate=2 * 10 * ctx.name_n)
    if m.has_mapping:
        steps = ctx.refine_n * (ctx.invert_steps + max(20, ctx.invert_steps // 2))
        w += Work(generate=ctx.init_pool + steps / 10 + 2 * ctx.refine_n, steps=steps,
                  critic=ctx.init_pool if m.has_discriminator else 0)
    return w



def _named(ctx, m):
    """GANSpace's first 10 components, named with the bundled classifier where it fits."""
    d = compute_directions(m, "ganspace", **({"k": 10} if m.has_mapping else {"k": 10, "layer": m.layer_names[1]}))
    attrs = bundled_attributes(m)
    if attrs is None:
        return d, note("The components are not named: this model has no built-in attribute estimator (name them with "
                       "'directions --method ganspace --name-with labels.csv').")
    d = name_directions(m, d, attrs, n=ctx.name_n, seed=ctx.seed, source="bundled Fashion-MNIST classifier")
    rows = [{"component": i, "name": d.meta["names"][i],
             "largest effects at ±2σ": ", ".join(f"{a} {v:+.2f}" for a, v in
                                                sorted(d.meta["effects"][i].items(), key=lambda kv: -abs(kv[1]))[:3])}
            for i in range(len(d))]
    return d, (f"<p>GANSpace's first 10 components, each named by what it does: {ctx.name_n} samples moved to ±2σ along it "
               "and read by the bundled classifier (the effect is a class probability at +2σ minus at −2σ).</p>"
               + table(rows))


def _refinement(ctx, m, d):
    if fashion_format(m):
        x, _ = load_fashion_mnist("test")
        targets = x[torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(7))[:ctx.refine_n]]
        what = "held-out Fashion-MNIST test images"
    else:
        with torch.no_grad():
            targets = m(m.sample_z(ctx.refine_n, 10_000)).clamp(-1, 1).cpu()
        what = "generated images (seeds 10000+)"
    perc = "discriminator" if m.has_discriminator else "none"
    inv = invert(m, targets.to(m.device), InversionConfig(space="wplus", steps=ctx.invert_steps, perceptual=perc,
                                                          init=f"best-of:{ctx.init_pool}"))
    steps = max(20, ctx.invert_steps // 2)
    r = refine(m, targets, inv.ws, RefineConfig(steps=steps, perceptual=perc, seed=ctx.seed))
    u, s = d.vectors[0].to(m.device), float(d.sigmas[0])
    with torch.no_grad():
        edit_before = m.synthesis(inv.ws + 2 * s * u).clamp(-1, 1).cpu()
    edit_after = render_refined(m, r.deltas, inv.ws + 2 * s * u).clamp(-1, 1).cpu()
    rows_img = [targets.cpu(), r.before.clamp(-1, 1).cpu(), r.images.clamp(-1, 1).cpu(), edit_before, edit_after]
    save_grid(torch.cat(rows_img), ctx.out / "editing-refine.png", nrow=ctx.refine_n, scale=tile_scale(m))
    p0, p1 = psnr(r.before.clamp(-1, 1).cpu(), targets), psnr(r.images.clamp(-1, 1).cpu(), targets)
    name = (d.meta.get("names") or ["component 0"])[0]
    rows = [{"image": i, "PSNR inverted (dB)": float(p0[i]), "PSNR refined (dB)": float(p1[i])} for i in range(ctx.refine_n)]
    return (f"<h3>Refinement (pivotal tuning)</h3><p>{ctx.refine_n} {what} inverted in W+ ({ctx.invert_steps} steps), "
            f"then the synthesis weights tuned per image around that code for {steps} steps (PTI: pixel L2 + "
            f"{perc} perceptual distance, locality regulariser 0.1; {r.seconds / ctx.refine_n:.1f} s per image). Median "
            f"PSNR {float(p0.median()):.2f} → {float(p1.median()):.2f} dB.</p>"
            + ctx.image("editing-refine.png", "refinement", f"Rows: targets; inverted; refined; the inversion edited "
                        f"+2σ along GANSpace 0 ({name}); the refined one edited the same. The refined row should be "
                        f"closer to the targets, and its edit should change the same thing as the unrefined edit.")
            + table(rows))


@report_section("editing", "Editing on this model", cost=_cost,
                knobs=("name_n", "refine_n", "invert_steps", "init_pool"))
def _editing(ctx: ReportContext) -> Section:
    m = ctx.model
    parts = []
    try:
        d, text = _named(ctx, m)
        parts.append("<h3>Named directions</h3>" + text)
    except LatentAtlasError as e:
        return Section("editing", "Editing on this model", note(f"not available: {e}"))
    if m.has_mapping:
        try:
            parts.append(_refinement(ctx, m, d))
        except LatentAtlasError as e:
            parts.append(note(f"refinement not available: {e}"))
    else:
        parts.append(note("Refinement (pivotal tuning) tunes the synthesis around a W/W+ code; this model has no "
                          "mapping network."))
    keys = m.sample_z(3, ctx.seed + 20_000)
    frames = keyframe_walk(m, keys, steps=KEYFRAME_STEPS, space="z")
    save_grid(frames[:, 0].cpu(), ctx.out / "editing-keyframes.png", nrow=frames.shape[0], scale=tile_scale(m))
    parts.append("<h3>Keyframe walk</h3><p>Three samples (seeds "
                 f"{ctx.seed + 20_000}…{ctx.seed + 20_002}) joined by great-circle interpolation in Z, {KEYFRAME_STEPS} frames per "
                 "segment ('walk --between'; saved latents and images to invert work as keyframes too).</p>"
                 + ctx.image("editing-keyframes.png", "keyframe walk",
                             "Each keyframe appears once; the frames between should change smoothly and stay "
                             "realistic."))
    return Section("editing", "Editing on this model", "".join(parts))
