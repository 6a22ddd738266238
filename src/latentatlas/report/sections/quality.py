"""Quality: the distribution metrics against the model's reference set."""
from __future__ import annotations

import html

from ...data.fashion import CLASSES
from ...metrics.suite import evaluate_model
from ..budget import Work
from ..context import ReportContext, Section, note, report_section, table


def _cost(ctx) -> Work:
    return Work(generate=ctx.eval_n, features=ctx.eval_n) if ctx.has_reference() else Work()


@report_section("quality", "Quality", cost=_cost, knobs=("eval_n",))
def _quality(ctx: ReportContext) -> Section:
    m = ctx.model
    if not ctx.has_reference():
        return Section("quality", "Quality", note(
            "Quality metrics compare samples with real images like the model's training data: the Fashion-MNIST "
            "test split fits only Fashion-MNIST models; for this one, build the report with --reference DIR "
            "(a folder of real images)."))
    res = evaluate_model(m, n=ctx.eval_n, progress=False, device=m.device, pool=ctx.pool, **ctx.reference)
    ctx.figures["quality"] = res
    rows = [{"metric": k, "value": v} for k, v in res.items()
            if k not in ("class_histogram", "model", "features", "reference") and not ctx.omits("quality", k)]
    hist = ([{"class": c, "share of samples": h} for c, h in zip(CLASSES, res["class_histogram"])]
            if res.get("class_histogram") else None)
    body = (f"<p>{ctx.eval_n} samples vs {html.escape(res['reference'])} in the {html.escape(res['features'])} "
            f"space (k = 3 for precision/recall/density/coverage).</p>"
            + "".join(note(why) for _, why in ctx.omitted.get("quality", ())) + table(rows) + (table(hist) if hist else ""))
    return Section("quality", "Quality", body)
