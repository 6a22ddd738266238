"""The report page: every registered section in order, the summary at the top, written to a
temporary sibling folder and moved into place only when complete."""
from __future__ import annotations

import html
import json
import logging
import shutil
import tempfile
import time
from pathlib import Path

from ..atlas import Atlas
from ..errors import LatentAtlasError
from ..evaluation import stored
from . import budget as bg
from .claims import fid_interval, summary_line
from .context import PROFILES, SECTIONS, TITLES, ReportContext, Section, sizes_text
from .sections import ORDER

log = logging.getLogger("latentatlas.report")


CSS = """
body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
h1{font-size:1.6em} h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;margin:.5em 0;display:block;max-width:100%;overflow-x:auto} td,th{border:1px solid #ccc;padding:.25em .6em;text-align:left}
th{background:#f3f3f3} img{image-rendering:pixelated;max-width:100%} nav a{margin-right:1em}
pre{white-space:pre-wrap;background:#f8f8f8;padding:.6em} .note{color:#666}
figure{margin:.6em 0} figcaption{color:#555;font-size:.9em;margin-top:.2em;max-width:60em}
.card{border-left:3px solid #ddd;padding-left:1em}
"""


def _summary(ctx) -> str:
    """The block at the top: what helped on this model and the claims' verdicts, one line each."""
    lines = []
    res = ctx.figures.get("sampling")
    if res and res.get("baseline") and res.get("best"):
        base = res["baseline"]
        key = "fid" if base.get("fid") is not None else "kid"
        better, noise = [], []
        for k, v in res["best"].items():
            if v.get(key) is None or v[key] >= base[key] or v is base:
                continue
            d = fid_interval(ctx, (base["strategy"], base["params"]), (k, v["params"])) if key == "fid" else None
            text = f"{k} ({v['params']}: {key.upper()} {v[key]:.3g}" + (
                f", {d['diff']:+.3f} [{d['lo']:+.3f}, {d['hi']:+.3f}])" if d else ")")
            if d is None and key == "kid":     # KID's subset std where kept: a drop within two of them is noise
                sds = (base.get("kid_std"), v.get("kid_std"))
                clear = None not in sds and base[key] - v[key] > 2 * (sds[0] ** 2 + sds[1] ** 2) ** 0.5
            else:
                clear = d is None or d["hi"] < 0
            (better if clear else noise).append(text)
        lines.append(f"Sampling: untruncated {key.upper()} {base[key]:.3g}; "
                     + (f"improved by {', '.join(better)}" if better else "no strategy improved it measurably")
                     + (f"; lower within the sampling noise ({'paired 95% interval includes 0' if key == 'fid' else 'no interval for KID at this N'}): {', '.join(noise)}"
                        if noise else "") + ".")
    claims = ctx.figures.get("claims")
    if lines or claims:
        lines.append(f"Profile {ctx.profile}"
                     + ((f", within a time budget of {bg.minutes(ctx.budget.budget)} at its own sizes"
                         if ctx.budget.scale >= 1.0 and not any(p.dropped for p in ctx.budget.sections.values())
                         else f", fitted to a time budget of {bg.minutes(ctx.budget.budget)} (see Budget and plan)")
                        if ctx.budget is not None else "") + f": {sizes_text(ctx)}; compare "
                     "figures with a report of the same profile (FID falls with N, drift magnitudes depend on "
                     "the density model's training)."
                     + (" The quick profile is a preview: its models are trained briefly and its sets are small, so "
                        "some verdicts differ from the full profile's; build the full report before quoting them."
                        if ctx.profile == "quick" else ""))
    if claims:
        lines.append(f"Claims of the papers on this model: {summary_line(claims)}.")
        lines += [f"{c.paper}: {c.claim} — <b>{c.verdict}</b>" for c in claims]
    if not lines:
        return ""
    return ("<section id='summary'><h2>Summary</h2><ul>" + "".join(f"<li>{html.escape(x).replace('&lt;b&gt;', '<b>').replace('&lt;/b&gt;', '</b>')}</li>" for x in lines)
            + "</ul></section>")


def _plan(ctx, keys, budget: float, started: float):
    """Probe the model's costs (after the reference set's features, which the metrics need anyway),
    fit the sizes to the budget and log the plan with its ETA."""
    ext = None
    if any(k in keys for k in ("quality", "sampling", "overview")):
        try:
            ext = ctx.metrics_reference()[1]
        except LatentAtlasError:
            pass
    units = bg.probe(ctx.model, ext)
    plan = bg.make_plan(ctx, keys, budget, units, time.time() - started, started)
    log.info("%s", bg.plan_text(ctx, plan))
    return plan


def section_names() -> list[str]:
    return list(ORDER)


def _stored_runs(ctx) -> dict:
    """The stored protocol runs of the model's weights (``evaluation.stored``) that measured against
    the real set this report uses (a record made against another reference set or feature network
    would compare other FIDs)."""
    out = {}
    for name, rec in stored.load_records(ctx.model).items():
        if "reference" in rec:
            try:
                ref = ctx.real_set()
            except LatentAtlasError:
                continue
            if (rec["reference"], rec.get("features")) != (ref.name, ref.features):
                log.info("report: the stored %s run measured against %s (%s), not this report's real set", name,
                         rec["reference"], rec.get("features"))
                continue
        out[name] = rec
        log.info("report: the stored %s run (%s) decides its claims' verdicts", name, rec["path"])
    return out


def build_report(model, out_dir, *, n: int = 64, seed: int = 0,
                 sections: list[str] | None = None, profile: str = "full", atlas=None, reference=None,
                 features: str | None = None, inception: str | None = None, pool=None,
                 budget: float | None = None) -> Path:
    """Write ``out_dir/index.html`` and its figures for ``model`` (a loaded ``GANModel``, with its
    class and truncation already set: ``load_generator`` and ``set_class``). Metrics compare with the Fashion-MNIST test
    split for Fashion-MNIST models, else with the image folder ``reference`` (see
    ``metrics.reference``); without one their sections say so. The directory is assembled in a
    temporary sibling and moved into place at the end, so a failure leaves nothing half-written.
    ``pool`` (``latentatlas.parallel``) runs the heavy sections' work on its workers. ``budget``
    (seconds): fit every section's sizes to it (``report.budget``: a probe of the model's cost, the
    plan logged before the work and written into the page, re-fitted after each section)."""
    started = time.time()
    known = section_names()
    if sections is not None:
        bad = [s for s in sections if s not in known]
        if bad:
            raise LatentAtlasError(f"unknown report section(s) {bad}; sections: {', '.join(known)}")
    if profile not in PROFILES:
        raise LatentAtlasError(f"unknown report profile {profile!r} ({', '.join(PROFILES)})")
    out = Path(out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix="." + out.name + "."))
    try:
        if isinstance(atlas, (str, Path)):
            atlas = Atlas.load(atlas, model)
        ctx = ReportContext(model=model, out=tmp, n=n, seed=seed, atlas=atlas, profile=profile, **PROFILES[profile],
                            reference=dict(reference=reference, features=features, inception=inception), pool=pool)
        ctx.figures["protocols"] = _stored_runs(ctx)
        keys = [k for k in ORDER if sections is None or k in sections]
        plan = _plan(ctx, keys, budget, started) if budget is not None else None
        built = []
        for key in keys:
            fn = SECTIONS[key]
            t0 = time.time()
            log.info("report: building section %s%s", key,
                     f" ({bg.sizes_line(ctx, key)}; ~{bg.minutes(plan.sections[key].estimate)})"
                     if plan is not None and bg.sizes_line(ctx, key) else "")
            if plan is not None and plan.sections[key].dropped:
                built.append((Section(key, TITLES.get(key, key), f"<p class='note'>{html.escape(plan.sections[key].dropped)}"
                                                                  "</p>"), 0.0))
                continue
            with model.counting() as counted:
                try:
                    sec = fn(ctx)
                except LatentAtlasError as e:
                    sec = Section(key, TITLES.get(key, key), f"<p class='note'>section not available: {html.escape(str(e))}</p>")
            if plan is not None:
                p = plan.sections[key]
                p.actual, p.counted = time.time() - t0, dict(counted)
                log.info("report: %s took %s (estimated %s); %s of the budget used", key, bg.minutes(p.actual),
                         bg.minutes(p.estimate), bg.minutes(plan.elapsed()))
                bg.replan(ctx, plan, key)
            if sec is not None:
                built.append((sec, time.time() - t0))
        summary = _summary(ctx)
        nav = "".join(f'<a href="#{s.key}">{html.escape(s.title)}</a>' for s, _ in built)
        parts = [f'<section id="{s.key}"><h2>{html.escape(s.title)}</h2>{s.body}'
                 f'<p class="note">section built in {dt:.1f} s</p></section>' for s, dt in built]
        doc = (f"<!doctype html><html lang='en'><head><meta charset='utf-8'>"
               f"<title>latentatlas report: {html.escape(model.name)}</title><style>{CSS}</style></head>"
               f"<body><h1>latentatlas report: {html.escape(model.name)}</h1>"
               f"<p class='note'>computed at {html.escape(model.precision.name)} "
               f"({html.escape(model.precision.reason)})</p><nav>{nav}</nav>{summary}"
               + (bg.plan_html(ctx, plan) if plan is not None else "")
               + "".join(parts) + "</body></html>")
        (tmp / "index.html").write_text(doc, encoding="utf-8")
        if plan is not None:
            (tmp / "budget.json").write_text(json.dumps(bg.plan_record(ctx, plan), indent=1), encoding="utf-8")
        if out.exists():
            if not (out / "index.html").exists() and any(out.iterdir()):
                raise LatentAtlasError(f"{out}: exists, is not empty and is not a latentatlas report; not overwriting")
            shutil.rmtree(out)
        tmp.rename(out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return out / "index.html"
