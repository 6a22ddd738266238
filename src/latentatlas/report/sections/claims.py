"""What the papers claim, and what this model shows."""
from __future__ import annotations

import html

from ..claims import evaluate_claims, render, summary_line
from ..budget import Work
from ..context import ReportContext, Section, report_section


@report_section("claims", "What the papers claim, and what this model shows", cost=lambda ctx: Work())
def _claims(ctx: ReportContext) -> Section:
    claims = evaluate_claims(ctx)
    ctx.figures["claims"] = claims
    body = ("<p>Each claim of the five papers, the figures this report measured for it on this model with their 95% "
            "intervals, and a verdict read from the intervals: <b>holds</b> when every part of the claim is "
            "confirmed beyond the noise, <b>does not hold</b> when the figures contradict it beyond the noise, "
            "<b>mixed</b> when parts go both ways, <b>not resolved at this N</b> when an interval straddles zero "
            "(with about the N that would resolve it), <b>not applicable</b> with the reason. Where a protocol run "
            "of these weights is stored (Diamond's Table 1, the II2S protocol), its verdict decides and this page's "
            "own measurement is shown beside it. Each claim's test and thresholds are named with it in "
            "<code>report/claims.py</code> "
            f"(verdicts: {html.escape(summary_line(claims))}).</p>" + render(claims))
    return Section("claims", "What the papers claim, and what this model shows", body)
