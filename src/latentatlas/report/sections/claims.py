"""What the papers claim, and what this model shows."""
from __future__ import annotations

import html

from ..claims import evaluate_claims, render, summary_line
from ..context import ReportContext, Section, report_section


@report_section("claims", "What the papers claim, and what this model shows")
def _claims(ctx: ReportContext) -> Section:
    claims = evaluate_claims(ctx)
    ctx.figures["claims"] = claims
    body = ("<p>Each claim of the five papers, the figure this report measured for it on this model, and a verdict "
            "computed from that figure (holds / does not hold / mixed; not applicable says why). The thresholds are "
            "in <code>report/claims.py</code>; the figures come from the sections above, on this report's samples "
            f"(verdicts: {html.escape(summary_line(claims))}).</p>" + render(claims))
    return Section("claims", "What the papers claim, and what this model shows", body)
