"""Every method on one table."""
from __future__ import annotations

from ..budget import Work
from ..context import ReportContext, Section, direction_plans, kid_text, note, report_section, table


def _cost(ctx) -> Work:
    """Each direction set walked to ±2σ (3 frames, two kinds) on overview_n samples, and the feature
    passes of those images and of the inversion rows."""
    if not ctx.has_reference():
        return Work()
    walked = 2 * 3 * ctx.overview_n * len(direction_plans(ctx))
    return Work(generate=walked, features=walked + 2 * 9 * ctx.invert_n)
from ..overview import overview_rows


@report_section("overview", "Every method on one table", cost=_cost, knobs=("overview_n",))
def _overview(ctx: ReportContext) -> Section:
    rows, notes = overview_rows(ctx)
    ctx.figures["overview"] = rows
    if not rows:
        return Section("overview", "Every method on one table", note("; ".join(notes)))
    body = ("<p>Every sampling strategy at its best setting (by the sweep's FID, among the settings that change the "
            "samples), every inversion method and every "
            "direction method, scored by one function on the same metrics against the report's reference set. "
            "Within a family the rows share their starting images: the sweep's seeds for sampling, the same "
            f"targets for inversion, the same {ctx.overview_n} samples walked to ±2σ along each method's first "
            "direction for directions. <b>pixel_dist</b> is how far each image moved from its start (for inversion: "
            "from its target, i.e. the reconstruction error); <b>class_kept</b> the share that kept the start's "
            "predicted class. FID is blank where the images are fewer than the feature dimensions; read KID ± std "
            "there. KID is unbiased, so on few images its estimate scatters around zero: a negative estimate is "
            "shown as ≈ 0 with the value and its std beside it; <b>n</b> is the number of images each row "
            "measured.</p>" + table(_shown(rows)) + "".join(note(x) for x in notes))
    return Section("overview", "Every method on one table", body)


def _shown(rows: list[dict]) -> list[dict]:
    """The rows as the table prints them: KID and its std in one readable cell."""
    out = []
    for r in rows:
        shown = {}
        for k, v in r.items():
            if k == "kid":
                shown["KID ± std"] = kid_text(v, r.get("kid_std"))
            elif k != "kid_std":
                shown[k] = v
        out.append(shown)
    return out
