"""The HTML report: one self-contained directory (index.html + PNGs) per model.

Sections are registered functions ``section(ctx) -> Section | None``; a section that has nothing
to show for a model (e.g. needs a W space the model lacks) returns a ``Section`` whose body says
why, so the reader sees what was skipped rather than a silent gap.
"""
from __future__ import annotations

import html
import json
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ..defaults import LEARNED_STEPS
from ..errors import LatentAtlasError
from ..imageio import save_grid


@dataclass
class Section:
    key: str
    title: str
    body: str                         # HTML fragment


@dataclass
class ReportContext:
    model: object                     # GANModel
    out: Path                         # directory being written (temporary until complete)
    n: int = 64
    seed: int = 0
    eval_n: int = 5000               # samples for the quality metrics
    sweep_n: int = 2000              # samples per point of the sampling sweep
    invert_n: int = 16               # images inverted per method
    invert_steps: int = 300
    ppl_pairs: int = 1000            # pairs of embeddings per inversion method's PPL
    dp_steps: int = 600              # DP-LaSE training steps
    atlas_n: int = 100_000           # mapped latents for the atlas
    atlas: object = None             # a given atlas (--atlas); None = the cached one
    learned_steps: int = LEARNED_STEPS   # learned multi-level mixture steps per level
    overview_n: int = 256            # base samples walked along each direction in the method table
    diamond: dict = field(default_factory=dict)   # protoimage search settings (n_proto, recovery_steps, proto_iter)
    reference: dict = field(default_factory=dict)  # reference/features/inception for the metrics (metrics.reference)
    figures: dict = field(default_factory=dict)   # figures other sections can reuse
    pool: object = None              # latentatlas.scale pool for the sampling sweep (--ray); None = here
    mean_diff_n: int = 5000          # samples classified for the mean-difference directions
    sweep_values: dict = field(default_factory=dict)   # per parameter, the values the sampling sweep keeps (empty: all)
    profile: str = "full"            # the PROFILES entry these sizes came from (named in the summary)

    def mean_diff(self):
        """The model's per-class mean-difference directions, computed once per report (the sampling
        section's attribute control and the walks section use the same set)."""
        if "mean_diff" not in self.figures:
            from ..walks.directions import mean_diff
            self.figures["mean_diff"] = mean_diff(self.model, n=self.mean_diff_n, seed=self.seed)
        return self.figures["mean_diff"]

    def image(self, name: str, alt: str, caption: str, width: int | None = None) -> str:
        """A figure with its one-sentence caption: what to look for in it."""
        w = f' width="{width}"' if width else ""
        return (f'<figure><img src="{html.escape(name)}" alt="{html.escape(alt)}"{w}>'
                f'<figcaption>{html.escape(caption)}</figcaption></figure>')


_SECTIONS: list[tuple[str, Callable[[ReportContext], Section | None]]] = []
_TITLES: dict[str, str] = {}


def report_section(key: str, title: str | None = None):
    def deco(fn):
        if any(k == key for k, _ in _SECTIONS):
            raise ValueError(f"report section {key!r} registered twice")
        _SECTIONS.append((key, fn))
        _TITLES[key] = title or key
        return fn
    return deco


def table(rows: list[dict], floatfmt: str = "{:.4g}") -> str:
    if not rows:
        return "<p>(no rows)</p>"
    cols = list(rows[0])

    def cell(v):
        if v is None:
            return "—"
        return floatfmt.format(v) if isinstance(v, float) else html.escape(str(v))
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in cols)
    body = "".join("<tr>" + "".join(f"<td>{cell(r.get(c, ''))}</td>" for c in cols) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


@report_section("model")
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
    from .markdown import to_html
    body = (f"<details open><summary>Model card</summary><div class='card'>{to_html(card)}</div></details>" if card
            else "") + "<details><summary>Properties</summary>" + table(rows) + "</details>"
    return Section("model", "Model", body)


def _model_card_text(name: str) -> str:
    import importlib.resources
    res = importlib.resources.files("latentatlas.weights").joinpath(f"{name}.md")
    return res.read_text() if res.is_file() else ""


@report_section("samples")
def _samples(ctx: ReportContext) -> Section:
    from ..sample import sample_images
    res = sample_images(ctx.model, n=ctx.n, seed=ctx.seed)
    scale = max(1, 128 // ctx.model.img_resolution)
    save_grid(res.images, ctx.out / "samples.png", nrow=8, scale=scale)
    ctx.figures["samples"] = res
    body = (f"<p>{ctx.n} samples, seeds {ctx.seed}–{ctx.seed + ctx.n - 1}, no truncation "
            f"(constant noise).</p>" + ctx.image("samples.png", "sample grid", "Look for the variety of classes and for broken samples (smears, "
                                         "mixed garments): those are what the truncation methods below remove."))
    return Section("samples", "Samples", body)


CSS = """
body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
h1{font-size:1.6em} h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;margin:.5em 0;display:block;max-width:100%;overflow-x:auto} td,th{border:1px solid #ccc;padding:.25em .6em;text-align:left}
th{background:#f3f3f3} img{image-rendering:pixelated;max-width:100%} nav a{margin-right:1em}
pre{white-space:pre-wrap;background:#f8f8f8;padding:.6em} .note{color:#666}
figure{margin:.6em 0} figcaption{color:#555;font-size:.9em;margin-top:.2em;max-width:60em}
.card{border-left:3px solid #ddd;padding-left:1em}
"""


# the report's mean protoimage comes from 64 samples (the strategy's own default, 1000, costs
# ~1000 recoveries on the first build; `evaluate-sampling --protocol diamond-table1` runs it), each
# recovered in 50 steps and searched for 50 iterations: against 200 and 100, per-sample protoimages at
# cosine 0.93 and 0.98, FIDs along sigma unchanged on 5000 paired samples (issue 17's notes); at 64
# samples the mean itself is not determined (split-half cosine ~0.05, printed with Table 1).
# "full" (the default, `make demo`): with an empty cache on a 2-core CPU 559, 509 and 405 s for the
# report in session 13 (the machine's speed varied by ~25 % between runs; 588-648 s in session 12
# before the learned mixture went to 200 steps); a fresh clone's set-up adds ~50 s; "thorough" is the earlier full
# build (ReportContext's defaults: 1165 s fresh). Both gave the same verdict on all ten claims in one session; "full" carries more
# sampling noise (FID on 1000 samples is biased upward) and its DP-LaSE density model is trained half
# as long, so drift magnitudes compare only within one profile.
# "quick": 117-180 s with an empty cache (session 13, three runs; 266 s before the sweep was thinned to 13 points and
# the DP-LaSE, inversion, mixture and protoimage sizes were cut) -- a preview of the page's structure
# on a model, its figures noisier than full's.
PROFILES = {"full": dict(sweep_n=1000, invert_steps=150, dp_steps=300,
                         diamond=dict(n_proto=64, recovery_steps=50, proto_iter=50)),
            "thorough": dict(diamond=dict(n_proto=64)),
            "quick": dict(eval_n=1000, sweep_n=400, invert_n=8, invert_steps=40, ppl_pairs=200, dp_steps=60, overview_n=48,
                          atlas_n=20000, learned_steps=75, mean_diff_n=2000,
                          # 13 sweep points instead of 31 (the untruncated point is shared, σ = auto kept)
                          sweep_values=dict(psi=(1.0, 0.6, 0.2), tau=(float("inf"), 2.0, 1.0, 0.0),
                                            sigma=(0.0, 0.02, 0.1, 0.3, "auto")),
                          diamond=dict(n_proto=8, recovery_steps=50, proto_iter=30))}


def sizes_text(ctx: ReportContext) -> str:
    """The sizes that set a build's figures, in one line (the summary and ``--profile`` help)."""
    thin = ("; sweep at " + "; ".join(f"{k} {', '.join(f'{v:g}' if isinstance(v, float) else str(v) for v in vs)}"
                                      for k, vs in ctx.sweep_values.items())) if ctx.sweep_values else ""
    return (f"{ctx.sweep_n} samples per sampling-sweep point, {ctx.invert_steps} inversion steps, {ctx.dp_steps} "
            "DP-LaSE steps" + thin)


def profile_sizes(name: str) -> str:
    """The sizes a profile builds with (ReportContext's defaults overridden by PROFILES[name])."""
    return sizes_text(ReportContext(model=None, out=Path("."), **PROFILES[name]))


def _summary(ctx) -> str:
    """The block at the top: what helped on this model and the claims' verdicts, one line each."""
    from .claims import summary_line
    lines = []
    res = ctx.figures.get("sampling")
    if res and res.get("baseline") and res.get("best"):
        base = res["baseline"]
        key = "fid" if base.get("fid") is not None else "kid"
        better = [f"{k} ({v['params']}: {key.upper()} {v[key]:.3g})" for k, v in res["best"].items()
                  if v.get(key) is not None and v[key] < base[key] and v is not base]
        lines.append(f"Sampling: untruncated {key.upper()} {base[key]:.3g}; "
                     + (f"improved by {', '.join(better)}." if better else "no strategy improved it on this model."))
    claims = ctx.figures.get("claims")
    if lines or claims:
        lines.append(f"Profile {ctx.profile}: {sizes_text(ctx)}; compare "
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


def section_names() -> list[str]:
    from . import sections  # noqa: F401  (registers the analysis sections)
    return [k for k, _ in _SECTIONS]


def build_report(model_or_name, out_dir, *, device="cpu", n: int = 64, seed: int = 0,
                 sections: list[str] | None = None, profile: str = "full", atlas=None, reference=None,
                 features: str | None = None, inception: str | None = None, pool=None) -> Path:
    """Write ``out_dir/index.html`` and its figures. Metrics compare with the Fashion-MNIST test
    split for Fashion-MNIST models, else with the image folder ``reference`` (see
    ``metrics.reference``); without one their sections say so. The directory is assembled in a
    temporary sibling and moved into place at the end, so a failure leaves nothing half-written.
    ``pool`` (``latentatlas.scale``) runs the sampling sweep's points on its workers."""
    import logging

    from ..models.registry import load_generator
    log = logging.getLogger("latentatlas.report")
    known = section_names()
    if sections is not None:
        bad = [s for s in sections if s not in known]
        if bad:
            raise LatentAtlasError(f"unknown report section(s) {bad}; sections: {', '.join(known)}")
    if profile not in PROFILES:
        raise LatentAtlasError(f"unknown report profile {profile!r} ({', '.join(PROFILES)})")
    model = load_generator(model_or_name, device=device) if isinstance(model_or_name, str) else model_or_name
    out = Path(out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix="." + out.name + "."))
    try:
        if isinstance(atlas, (str, Path)):
            from ..atlas import Atlas
            atlas = Atlas.load(atlas, model)
        ctx = ReportContext(model=model, out=tmp, n=n, seed=seed, atlas=atlas, profile=profile, **PROFILES[profile],
                            reference=dict(reference=reference, features=features, inception=inception), pool=pool)
        built = []
        for key, fn in _SECTIONS:
            if sections is not None and key not in sections:
                continue
            t0 = time.time()
            log.info("report: building section %s", key)
            try:
                sec = fn(ctx)
            except LatentAtlasError as e:
                sec = Section(key, _TITLES.get(key, key), f"<p class='note'>section not available: {html.escape(str(e))}</p>")
            if sec is not None:
                built.append((sec, time.time() - t0))
        summary = _summary(ctx)
        nav = "".join(f'<a href="#{s.key}">{html.escape(s.title)}</a>' for s, _ in built)
        parts = [f'<section id="{s.key}"><h2>{html.escape(s.title)}</h2>{s.body}'
                 f'<p class="note">section built in {dt:.1f} s</p></section>' for s, dt in built]
        doc = (f"<!doctype html><html lang='en'><head><meta charset='utf-8'>"
               f"<title>latentatlas report: {html.escape(model.name)}</title><style>{CSS}</style></head>"
               f"<body><h1>latentatlas report: {html.escape(model.name)}</h1><nav>{nav}</nav>{summary}"
               + "".join(parts) + "</body></html>")
        (tmp / "index.html").write_text(doc, encoding="utf-8")
        if out.exists():
            if not (out / "index.html").exists() and any(out.iterdir()):
                raise LatentAtlasError(f"{out}: exists, is not empty and is not a latentatlas report; not overwriting")
            shutil.rmtree(out)
        tmp.rename(out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return out / "index.html"
