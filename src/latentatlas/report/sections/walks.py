"""Walks and directions: linear vs density-preserving walks, and early- vs late-layer directions."""
from __future__ import annotations

import html

from ...errors import LatentAtlasError
from ...walks.density import DPConfig, train_dp_lase
from ...walks.directions import compute_directions, direction_set, direction_sets, style_layers
from ...walks.edit import evaluate_directions, render_walk, save_strip, walk_latents
from ..budget import Work
from ..context import ReportContext, Section, direction_plans, note, report_section, table, tile_scale

DRIFT_KEYS = ("density_drift_linear", "density_drift_dp")


def _cost(ctx) -> Work:
    """Per direction set: its density model's training (DP-LaSE's discovery is one of them), the strips,
    the measurements (walks of 9 frames, linear and density-preserving, plus their path lengths); then
    the early-vs-late comparison (two sets, linear walks only)."""
    sets = len(direction_plans(ctx))
    kinds = 2 if ctx.model.has_mapping else 3
    dirs = min(3, ctx.walk_dirs)
    return Work(generate=sets * (dirs * kinds * ctx.walk_frames * ctx.walk_bases + dirs * 28.5 * ctx.direction_eval_n)
                + 2 * dirs * 9 * ctx.direction_eval_n,
                partial=sets * 16 * ctx.dp_steps, critic=18 * ctx.direction_eval_n)


def _directions_by_layer(m, k: int = 3, n: int = 32) -> tuple[list[dict], dict]:
    """Top-3 directions of one method at an early and a late layer, measured the same way:
    SeFa on the style weights of the first vs the last synthesis conv for mapped models, GANSpace
    on the activations of the second vs the second-to-last stage for Z-only models."""
    names = m.layer_names
    if m.has_mapping:
        convs = style_layers(m)
        if len(convs) < 2:
            raise LatentAtlasError(f"fewer than two synthesis layers with a style affine ({convs})")
        picks = [("sefa", {"k": k, "layers": [convs[0]]}, convs[0]), ("sefa", {"k": k, "layers": [convs[-1]]}, convs[-1])]
    else:
        if len(names) < 2:
            raise LatentAtlasError("fewer than two named stages")
        early, late = (names[1], names[-2]) if len(names) >= 4 else (names[0], names[-1])
        picks = [("ganspace", {"k": k, "layer": early}, early), ("ganspace", {"k": k, "layer": late}, late)]
    rows, values = [], {}       # values: per key, [early, late] per-direction lists (the claim's interval)
    for (method, kw, layer), when in zip(picks, ("early", "late")):
        ev = evaluate_directions(m, compute_directions(m, method, **kw), n=n, drift=False, ppl=False)
        r = ev["rows"]
        row = {"layer": f"{when}: {layer}", "method": method}
        for key in ("classes_moved", "g1_variation", "roughness"):
            if all(key in x for x in r):
                row[key] = sum(x[key] for x in r) / len(r)
                values.setdefault(key, []).append([x[key] for x in r])
        rows.append(row)
    return rows, values


@report_section("walks", "Walks and directions", cost=_cost,
                knobs=("dp_steps", "walk_dirs", "walk_frames", "walk_bases", "direction_eval_n", "mean_diff_n"))
def _walks(ctx: ReportContext) -> Section:
    m = ctx.model
    plans = direction_plans(ctx)
    dirs_shown = min(3, ctx.walk_dirs)
    parts = []
    drift_rows = []
    # with --ray the direction sets and their density models are computed on the pool's workers
    sets = direction_sets(m, [p for p in plans if p[0] != "mean-diff"], ctx.dp_steps, pool=ctx.pool) \
        if ctx.pool is not None else {}
    for method, kw in plans:
        try:
            if method in sets:
                if isinstance(sets[method], LatentAtlasError):
                    raise sets[method]
                d, dp_model = sets[method]
            elif method == "mean-diff":          # shared with the sampling section's attribute control
                d = ctx.mean_diff()
                dp_model = None
            else:
                d, dp_model = direction_set(m, method, kw, ctx.dp_steps)
        except LatentAtlasError as e:
            parts.append(f"<h3>{method}</h3>" + note(str(e)))
            continue
        kinds = ["linear", "dp"] + (["great-circle"] if d.space == "z" else [])
        base = m.sample_z(ctx.walk_bases, ctx.seed)
        base = m.mapping(base).detach() if d.space == "w" else base
        if dp_model is None:   # one density model + correction per direction set, shared below
            dp_model, _ = train_dp_lase(m, DPConfig(steps=ctx.dp_steps), space=d.space, directions=d.vectors,
                                            sigmas=d.sigmas)
        ctx.figures.setdefault("direction_sets", []).append((method, d, dp_model))
        parts.append(f"<h3>{method} ({d.space})</h3>")
        for i in range(min(dirs_shown, len(d))):
            for kind in kinds:
                lat = walk_latents(m, d, i, base, kind=kind, steps=ctx.walk_frames, extent=2.0, dp_model=dp_model)
                fname = f"walk-{method}-{i}-{kind}.png"
                save_strip(render_walk(m, d, lat), ctx.out / fname, scale=tile_scale(m))
                name = (d.meta.get("names") or [f"direction {i}"] * len(d))[i]
                parts.append(f"<p>{html.escape(str(name))}, {kind} walk, −2σ … +2σ</p>" + ctx.image(fname, fname,
                                            "The middle image is the sample itself; a good direction changes "
                                            "one thing steadily and keeps the garment realistic at both ends."))
        try:
            ev = evaluate_directions(m, d, n=ctx.direction_eval_n, dp_model=dp_model, first=dirs_shown)
        except LatentAtlasError as e:
            parts.append(note(f"measurements not available: {e}"))
            continue
        for r in ev["rows"]:
            drift_rows.append({"method": method, "orthogonality error": ev["orthogonality_error"],
                               **{k: v for k, v in r.items() if not (k in DRIFT_KEYS and ctx.omits("walks", "drift"))}})
    ctx.figures["walks"] = drift_rows
    try:
        layer_rows, ctx.figures["layers_values"] = _directions_by_layer(m, dirs_shown, ctx.direction_eval_n)
        ctx.figures["layers"] = layer_rows
        parts.append("<h3>Early vs late layers</h3><p>The same method's top directions found at an early and at a "
                     "late layer (DP-LaSE §4: earlier layers control more global attributes); classes moved = class "
                     "probabilities changed by more than 0.1 at +2σ, averaged over the directions.</p>"
                     + table(layer_rows))
    except LatentAtlasError as e:
        parts.append(note(f"early-vs-late comparison not available: {e}"))
    if drift_rows:
        parts.append("<h3>Measurements</h3><p>Density drift: mean |log F(z_t) − log F(z_0)| along the walk under "
                     "the learned DP-LaSE density (linear vs density-preserving walk); classes moved: class "
                     "probabilities changed by > 0.1 at +2σ.</p>"
                     + "".join(note(why) for _, why in ctx.omitted.get("walks", ())) + table(drift_rows))
    return Section("walks", "Walks and directions", "".join(parts))
