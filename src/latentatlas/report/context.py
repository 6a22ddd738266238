"""What every report section works with: the context (the model, the output folder, the sizes
of a profile, figures sections share), the section registry, and small HTML helpers."""
from __future__ import annotations

import html
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ..defaults import LEARNED_STEPS
from ..data.fashion import fashion_format, is_fashion_model
from ..imageio import preview_scale
from ..metrics.reference import resolve
from ..walks.directions import mean_diff

REPORT_TILE_PX = 96     # the report's grids and strips hold many images: each about this wide


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
    pool: object = None              # latentatlas.parallel pool for the sampling sweep (--ray); None = here
    mean_diff_n: int = 5000          # samples classified for the mean-difference directions
    sweep_values: dict = field(default_factory=dict)   # per parameter, the values the sampling sweep keeps (empty: all)
    profile: str = "full"            # the PROFILES entry these sizes came from (named in the summary)
    # the sizes of the figures (a time budget shrinks them with the counts above: report.budget)
    showcase_n: int = 16             # seeds per strategy in the sampling showcase
    cluster_cols: int = 8            # samples per cluster in the latent-space cluster grids
    walk_bases: int = 4              # samples walked in each walk strip
    walk_dirs: int = 3               # directions per method shown and measured in the walks section
    walk_frames: int = 9             # frames per walk strip (-2σ … +2σ)
    direction_eval_n: int = 32       # samples per direction for the walks' measurements
    name_n: int = 500                # samples moved along each component to name it (editing section)
    refine_n: int = 4                # images inverted and refined in the editing section
    init_pool: int = 256             # best-of-N starts of the report's inversions
    budget: object = None            # the report.budget.Plan the sizes were fitted by, or None
    omitted: dict = field(default_factory=dict)   # section -> [(figure, reason)]: too noisy at these counts

    def omits(self, section: str, figure: str) -> bool:
        """Whether the budget's plan left ``figure`` out of ``section`` (too noisy at its counts)."""
        return any(f == figure for f, _ in self.omitted.get(section, ()))

    def mean_diff(self):
        """The model's per-class mean-difference directions, computed once per report (the sampling
        section's attribute control and the walks section use the same set)."""
        if "mean_diff" not in self.figures:
            self.figures["mean_diff"] = mean_diff(self.model, n=self.mean_diff_n, seed=self.seed)
        return self.figures["mean_diff"]

    def metrics_reference(self):
        """(the real set the metrics compare with, its feature extractor): ``metrics.reference.resolve``
        once per report (the budget's probe, the sampling section's intervals, the method table and
        the claims read it)."""
        if "metrics_reference" not in self.figures:
            self.figures["metrics_reference"] = resolve(
                self.model, folder=self.reference.get("reference"), features=self.reference.get("features"),
                device=self.model.device, inception=self.reference.get("inception"), what="the report")
        return self.figures["metrics_reference"]

    def has_reference(self) -> bool:
        """Whether the metrics have a real set to compare with: ``metrics.reference.resolve``'s rule
        (a Fashion-MNIST model's test split, else a --reference folder)."""
        return is_fashion_model(self.model) or bool(self.reference.get("reference"))

    def real_set(self):
        """The real set the metrics compare with (``metrics_reference``)."""
        return self.metrics_reference()[0]

    def image(self, name: str, alt: str, caption: str, width: int | None = None) -> str:
        """A figure with its one-sentence caption: what to look for in it."""
        w = f' width="{width}"' if width else ""
        return (f'<figure><img src="{html.escape(name)}" alt="{html.escape(alt)}"{w}>'
                f'<figcaption>{html.escape(caption)}</figcaption></figure>')


SECTIONS: dict[str, Callable[[ReportContext], Section | None]] = {}


TITLES: dict[str, str] = {}


COSTS: dict[str, Callable] = {}     # section -> cost(ctx) -> report.budget.Work at ctx's sizes
KNOBS: dict[str, tuple] = {}        # section -> the ReportContext sizes it reads


def report_section(key: str, title: str | None = None, *, cost: Callable | None = None, knobs: tuple = ()):
    """Register a section. ``cost(ctx)`` returns the work it will do at ``ctx``'s sizes (images
    generated, inversion steps, critic and feature passes: ``report.budget.Work``), ``knobs`` the
    sizes it reads; the time budget fits those sizes (``report.budget``)."""
    def deco(fn):
        if key in SECTIONS:
            raise ValueError(f"report section {key!r} registered twice")
        SECTIONS[key] = fn
        TITLES[key] = title or key
        if cost is not None:
            COSTS[key] = cost
        KNOBS[key] = tuple(knobs)
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

def direction_plans(ctx: ReportContext) -> list:
    """The direction sets the walks section computes (and the method table walks): (method, kwargs)."""
    m = ctx.model
    if m.has_mapping:
        plans = [("ganspace", dict(k=3)), ("sefa", dict(k=3)), ("dplase", dict(k=3, steps=ctx.dp_steps))]
    else:
        plans = [("ganspace", dict(k=3, layer=m.layer_names[1]))] if len(m.layer_names) > 1 else []
    if fashion_format(m):
        plans.append(("mean-diff", {}))
    return plans


def note(text: str) -> str:
    return f"<p class='note'>{html.escape(text)}</p>"


def tile_scale(m) -> int:
    return preview_scale(m.img_resolution, REPORT_TILE_PX)


def kid_text(kid: float | None, std: float | None) -> str:
    """KID as a table shows it: ``0.0123 ± 0.0050``; a negative estimate (KID is unbiased, so small
    sets scatter it around zero) as ``≈ 0 (unbiased; −0.040 ± 0.090)`` rather than a negative
    distance; blank when not measured."""
    if kid is None:
        return ""
    pm = f" ± {std:.4f}" if std is not None else ""
    if kid < 0:
        return f"≈ 0 (unbiased; {kid:.4f}{pm})".replace("-", "−")
    return f"{kid:.4f}{pm}"
