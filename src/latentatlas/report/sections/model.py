"""The model card and the model's properties."""
from __future__ import annotations

import json

from ..budget import Work
from ..context import ReportContext, Section, report_section, table
from ..markdown import to_html


@report_section("model", cost=lambda ctx: Work())
def _model_card(ctx: ReportContext) -> Section:
    m = ctx.model
    rows = [{"property": k, "value": v} for k, v in [
        ("name", m.name), ("architecture", m.info.arch), ("weights", m.info.source),
        ("weights hash", m.weights_hash()), ("z dim", m.z_dim), ("w dim", m.w_dim or "— (no mapping network)"),
        ("num ws", m.num_ws if m.has_mapping else "—"), ("resolution", m.img_resolution),
        ("channels", m.img_channels), ("latent spaces", ", ".join(m.spaces)),
        ("discriminator", ("yes" + (", minibatch-std" if m.has_minibatch_std else "")) if m.has_discriminator else "none"),
    ]]
    extra = m.info.extra or {}
    if extra:
        rows += [{"property": k, "value": json.dumps(v) if isinstance(v, (dict, list)) else v}
                 for k, v in extra.items()]
    card = _model_card_text(m.name)
    body = (f"<details open><summary>Model card</summary><div class='card'>{to_html(card)}</div></details>" if card
            else "") + "<details><summary>Properties</summary>" + table(rows) + "</details>"
    return Section("model", "Model", body)


def _model_card_text(name: str) -> str:
    import importlib.resources
    res = importlib.resources.files("latentatlas.weights").joinpath(f"{name}.md")
    return res.read_text() if res.is_file() else ""
