"""Walks and directions: linear vs density-preserving walks, and early- vs late-layer directions."""
from __future__ import annotations

import html

from ...data.fashion import fashion_format
from ...errors import LatentAtlasError
from ...walks.density import DPConfig, train_dp_lase
from ...walks.directions import compute_directions, style_layers
from ...walks.edit import evaluate_directions, render_walk, save_strip, walk_latents
from ..context import ReportContext, Section, note, report_section, table, tile_scale


def _directions_by_layer(m) -> tuple[list[dict], dict]:
    """Top-3 directions of one method at an early and a late layer, measured the same way:
    SeFa on the style weights of the first vs the last synthesis conv for mapped models, GANSpace
    on the activations of the second vs the second-to-last stage for Z-only models."""
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
    rows, values = [], {}       # values: per key, [early, late] per-direction lists (the claim's interval)
    for (method, kw, layer), when in zip(picks, ("early", "late")):
        ev = evaluate_directions(m, compute_directions(m, method, **kw), n=32, drift=False, ppl=False)
        r = ev["rows"]
        row = {"layer": f"{when}: {layer}", "method": method}
        for key in ("classes_moved", "g1_variation", "roughness"):
            if all(key in x for x in r):
                row[key] = sum(x[key] for x in r) / len(r)
                values.setdefault(key, []).append([x[key] for x in r])
        rows.append(row)
    return rows, values


@report_section("walks", "Walks and directions")
def _walks(ctx: ReportContext) -> Section:
    m = ctx.model
    plans = []
    if m.has_mapping:
        plans = [("ganspace", dict(k=3)), ("sefa", dict(k=3)), ("dplase", dict(k=3, steps=ctx.dp_steps))]
        if fashion_format(m):
            plans.append(("mean-diff", {}))
    else:
        plans = [("ganspace", dict(k=3, layer=m.layer_names[1]))]
        if fashion_format(m):
            plans.append(("mean-diff", {}))
    parts = []
    drift_rows = []
    for method, kw in plans:
        try:
            d = ctx.mean_diff() if method == "mean-diff" else compute_directions(m, method, **kw)
        except LatentAtlasError as e:
            parts.append(f"<h3>{method}</h3>" + note(str(e)))
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
                save_strip(render_walk(m, d, lat), ctx.out / fname, scale=tile_scale(m))
                name = (d.meta.get("names") or [f"direction {i}"] * len(d))[i]
                parts.append(f"<p>{html.escape(str(name))}, {kind} walk, −2σ … +2σ</p>" + ctx.image(fname, fname,
                                            "The middle image is the sample itself; a good direction changes "
                                            "one thing steadily and keeps the garment realistic at both ends."))
        try:
            ev = evaluate_directions(m, d, n=32, dp_model=dp_model, first=3)
        except LatentAtlasError as e:
            parts.append(note(f"measurements not available: {e}"))
            continue
        for r in ev["rows"]:
            drift_rows.append({"method": method, "orthogonality error": ev["orthogonality_error"], **r})
    ctx.figures["walks"] = drift_rows
    try:
        layer_rows, ctx.figures["layers_values"] = _directions_by_layer(m)
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
                     "probabilities changed by > 0.1 at +2σ.</p>" + table(drift_rows))
    return Section("walks", "Walks and directions", "".join(parts))
