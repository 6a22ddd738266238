"""Fitting the report to a time budget (``report --budget 30m``).

1. **Probe**: the model's cost per image at the chosen precision, on this machine: generating
   (mapping + synthesis, no graph), one inversion step (synthesis forward and backward, with the
   discriminator's perceptual features when the model has a discriminator), a critic pass and a
   pass of the metrics' feature network (``probe``; a few seconds, counted against the budget).
2. **Work per section**: each section registers ``cost(ctx)``, the images it will generate, the
   inversion-like steps, the critic and feature passes at ``ctx``'s sizes (``Work``), plus the
   seconds of fits that are not per image (the atlas when it is not cached).
   ``GANModel.counting`` counts the same quantities while a section runs; the page shows both.
3. **Fit**: every size of the profile is scaled by one factor ``s`` (counts linearly, steps and
   inverted images by √s, each with a floor below which a figure means nothing: ``scaled``), and
   ``s`` is the largest that fits what is left of the budget. A budget larger than the profile's
   own cost leaves the profile's sizes (the profile is the most the report computes).
4. **Re-plan**: after each section the sections still to run are fitted again to the time that
   is left, their estimates multiplied by the ratio of measured to estimated seconds so far
   (sizes a finished section has already used are kept, so the page describes what ran).
5. **Too noisy**: at counts below a figure's floor (``NOISE``) the section leaves the figure out
   and says why, rather than printing a number its noise swamps.
"""
from __future__ import annotations

import dataclasses
import html
import logging
import math
import re
import time
from dataclasses import dataclass, field

import torch

from ..errors import LatentAtlasError
from .context import COSTS, KNOBS, PROFILES, TITLES, ReportContext

log = logging.getLogger("latentatlas.report")

MARGIN = 0.95            # the plan aims at this share of the time left (the rest absorbs estimate errors)
CORRECTION = (0.5, 3.0)  # bounds of the measured/estimated ratio applied when re-planning
CORRECTION_FROM = 30.0   # only sections estimated at this many seconds or more inform that ratio
PARTIAL_SHARE = 0.25     # a pass to an early synthesis layer, priced as this share of a whole image
SECTION_OVERHEAD = 3.0   # seconds a section with generator work spends besides it (first use of a batch size's
                         # memory, PNG writing: 3-15 s measured on a 256-px model)


@dataclass
class Work:
    """What a section computes, in units the probe prices."""
    generate: float = 0.0        # images generated without a graph
    steps: float = 0.0           # image-steps with a backward pass (inversion, protoimage search, refinement)
    critic: float = 0.0          # discriminator passes without a graph (perceptual distances, scores)
    features: float = 0.0        # images through the metrics' feature network
    seconds: float = 0.0         # fits that are not per image (atlas, mixtures), already in seconds
    partial: float = 0.0         # passes through the synthesis up to an early layer (DP-LaSE's G1 features)

    def __add__(self, o: "Work") -> "Work":
        return Work(*(a + b for a, b in zip(dataclasses.astuple(self), dataclasses.astuple(o))))

    def images(self) -> int:
        return int(self.generate + self.partial + self.steps)


@dataclass
class Units:
    """Seconds per image on this machine at the model's precision (``probe``)."""
    generate: float
    step: float
    critic: float
    features: float
    probe_seconds: float = 0.0
    batch: int = 8

    def seconds(self, w: Work) -> float:
        return (w.generate * self.generate + w.partial * self.generate * PARTIAL_SHARE + w.steps * self.step
                + w.critic * self.critic + w.features * self.features + w.seconds
                + (SECTION_OVERHEAD if w.images() else 0.0))


# what `report` fits to without --budget: a 32-px model's report fits well inside (its sizes are the
# profile's own), a 256-px model's is cut to finish in about this time instead of running for days
DEFAULT_BUDGETS = {"quick": "10m", "full": "30m", "thorough": "2h"}


def parse_budget(text: str) -> float:
    """'20m', '1h30m', '90s', '1.5h' or a plain number of minutes -> seconds; a one-line error otherwise."""
    t = str(text).strip().lower()
    if re.fullmatch(r"\d+(\.\d+)?", t):
        sec = float(t) * 60
    else:
        parts = re.findall(r"(\d+(?:\.\d+)?)\s*([hms])", t)
        if not parts or re.sub(r"(\d+(?:\.\d+)?)\s*([hms])", "", t).strip():
            raise LatentAtlasError(f"--budget {text!r}: use minutes (30), or 20m, 1h30m, 90s")
        sec = sum(float(v) * {"h": 3600, "m": 60, "s": 1}[u] for v, u in parts)
    if not math.isfinite(sec) or sec < 60 or sec > 7 * 24 * 3600:
        raise LatentAtlasError(f"--budget {text!r}: between 1 minute and 7 days")
    return sec


def _timed(fn, reps: int = 1) -> float:
    """The fastest of ``reps`` timed calls after a warm-up call."""
    fn()
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def probe(model, extractor=None, batch: int | None = None) -> Units:
    """Seconds per image for the four kinds of work, measured on ``batch`` images at the model's
    precision (default a quarter of ``max_batch``, at most 64: 64 at 32 px, where small batches cost
    18x more per image, 8 at 256 px, 1 at 1024 px): one warm-up pass, then one timed (two for the inversion step,
    the faster kept; the re-plans correct the rest)."""
    t0 = time.perf_counter()
    m = model
    b = batch or max(1, min(64, m.max_batch() // 4))
    z = m.sample_z(b, 123_456)
    with torch.no_grad():
        gen = _timed(lambda: m(z)) / b
        x = m(z).float().clamp(-1, 1)
    start = m.broadcast(m.mapping(z)).detach() if m.has_mapping else z.detach()

    def step():
        code = start.clone().requires_grad_(True)
        img = m.synthesis(code)
        loss = (img.float() - x).square().mean()
        if m.has_discriminator:
            loss = loss + m.features(img).float().square().mean()
        loss.backward()
    step_s = _timed(step, reps=2) / b      # a backward pass's timing varies most: the faster of two
    critic = 0.0
    if m.has_discriminator:
        with torch.no_grad():
            critic = _timed(lambda: m.features(x)) / b
    feats = critic
    if extractor is not None:
        with torch.no_grad():
            feats = _timed(lambda: extractor(x)) / b
    return Units(generate=gen, step=step_s, critic=critic, features=feats,
                 probe_seconds=time.perf_counter() - t0, batch=b)


# -- sizes ----------------------------------------------------------------------------------------

# (size, how it scales with s: "lin" or "root", its floor)
SCALING = (("eval_n", "lin", 200), ("sweep_n", "lin", 50), ("invert_n", "root", 2), ("invert_steps", "root", 20),
           ("ppl_pairs", "lin", 20), ("dp_steps", "lin", 20), ("atlas_n", "lin", 5000), ("learned_steps", "lin", 15),
           ("overview_n", "lin", 8), ("mean_diff_n", "lin", 300), ("showcase_n", "root", 4), ("cluster_cols", "root", 2),
           ("walk_bases", "root", 1), ("walk_dirs", "root", 1), ("walk_frames", "root", 5),
           ("direction_eval_n", "lin", 8), ("name_n", "lin", 50), ("refine_n", "root", 1), ("init_pool", "lin", 16))
DIAMOND_SCALING = (("n_proto", "lin", 2), ("recovery_steps", "root", 10), ("proto_iter", "root", 5), ("n_init", "lin", 32))
DIAMOND_DEFAULTS = {"n_proto": 64, "recovery_steps": 200, "proto_iter": 100, "n_init": 1000}   # the strategy's own
# below these scales the sampling sweep keeps fewer points: quick's 13, then one per strategy (plus the untruncated one)
THIN_SWEEPS = ((0.5, PROFILES["quick"]["sweep_values"]),
               (0.1, dict(psi=(1.0, 0.6), tau=(1.0,), sigma=(0.1,), t=(0.7,))))    # ψ = 1: Table 1's baseline row
# when even the smallest sizes do not fit, sections are left out in this order (each says so on the page)
DROP_ORDER = ("overview", "editing", "walks", "latent-space", "inversion", "sampling", "quality")


def profile_values(profile: str) -> dict:
    """Every size a profile builds with (ReportContext's defaults overridden by PROFILES[profile])."""
    base = {f.name: getattr(ReportContext(model=None, out=None), f.name) for f in dataclasses.fields(ReportContext)}
    base.update(PROFILES[profile])
    return base


def _scale(v, how: str, floor: int, s: float) -> int:
    x = v * (s if how == "lin" else math.sqrt(s))
    return int(min(v, max(floor, round(x))))


def scaled(profile: str, s: float, fill: float | None = None) -> dict:
    """The profile's sizes at scale ``s`` ∈ (0, 1] (1 = the profile itself); ``fill`` ≥ s: the
    counts that scale linearly at this larger scale instead (the budget's second pass: the steps
    and the numbers of images, which move the cost in large jumps, stay at ``s``)."""
    base = profile_values(profile)
    out = {k: _scale(base[k], how, lo, (fill or s) if how == "lin" else s) for k, how, lo in SCALING}
    dia = dict(base["diamond"])
    for k, how, lo in DIAMOND_SCALING:
        if k in dia:
            dia[k] = _scale(dia[k], how, lo, s)
        elif _scale(DIAMOND_DEFAULTS[k], how, lo, s) != DIAMOND_DEFAULTS[k]:     # named only when it differs
            dia[k] = _scale(DIAMOND_DEFAULTS[k], how, lo, s)
    out["diamond"] = dia
    sweep = base["sweep_values"]
    for below, values in THIN_SWEEPS:
        if s < below:
            sweep = values
    out["sweep_values"] = sweep
    return out


# -- noise: below these counts a figure is left out (and the section says why) -------------------

NOISE = {
    "quality": [("fid", "eval_n", 1000, "FID is biased upward and varies by more than its differences below ~1,000 "
                 "samples; KID (unbiased) and precision/recall are shown")],
    "sampling": [("fid", "sweep_n", 500, "the sweep's per-point FID at these counts is dominated by its small-sample "
                  "bias; the points are ranked by KID")],
    "inversion": [("ppl", "ppl_pairs", 100, "PPL from so few pairs has a standard error as large as the differences "
                   "between methods")],
    "walks": [("drift", "dp_steps", 100, "the density model behind the drift figures is trained too briefly to "
               "read density from")],
}


def omissions(ctx: ReportContext) -> dict:
    out = {}
    for sec, rules in NOISE.items():
        for fig, size, floor, why in rules:
            v = getattr(ctx, size)
            if v < floor:
                out.setdefault(sec, []).append((fig, f"{fig.upper() if fig != 'drift' else 'density drift'} left out "
                                                     f"({size} = {v} < {floor}): {why}"))
    return out


# -- the plan -------------------------------------------------------------------------------------

@dataclass
class SectionPlan:
    key: str
    estimate: float                  # seconds
    work: Work
    actual: float | None = None
    counted: dict | None = None      # GANModel.counting's figures while it ran
    scale: float = 1.0
    dropped: str | None = None       # why the section is left out (even its smallest sizes do not fit)


@dataclass
class Plan:
    budget: float                    # seconds
    units: Units
    profile: str
    scale: float = 1.0
    sections: dict = field(default_factory=dict)    # key -> SectionPlan
    setup_seconds: float = 0.0       # probe, reference features, before the first section
    started: float = field(default_factory=time.time)
    history: list = field(default_factory=list)     # re-plans: (after section, scale, eta, correction)

    def elapsed(self) -> float:
        return time.time() - self.started

    def remaining_estimate(self) -> float:
        return sum(p.estimate for p in self.sections.values() if p.actual is None)

    def correction(self) -> float:
        done = [p for p in self.sections.values()
                if p.actual is not None and p.dropped is None and p.estimate >= CORRECTION_FROM]
        if not done:
            return 1.0
        r = sum(p.actual for p in done) / max(1e-9, sum(p.estimate for p in done))
        return min(CORRECTION[1], max(CORRECTION[0], r))


def _apply(ctx: ReportContext, sizes: dict, frozen: set):
    for k, v in sizes.items():
        if k not in frozen:
            setattr(ctx, k, v)


def _estimate(ctx, keys, units: Units, factor: float = 1.0) -> dict:
    """{section: (estimated seconds, its Work)} at ``ctx``'s sizes."""
    work = {k: COSTS[k](ctx) for k in keys if k in COSTS}
    return {k: (units.seconds(w) * factor, w) for k, w in work.items()}


def fit(ctx: ReportContext, keys: list[str], seconds: float, units: Units, *, profile: str,
        frozen: set = frozenset(), factor: float = 1.0) -> tuple[float, dict]:
    """Set ``ctx``'s sizes (those not ``frozen``) to the largest scale whose estimated cost of the
    sections ``keys`` fits ``seconds``; returns (scale, {section: (seconds, Work)})."""
    def total(s, fill=None):
        _apply(ctx, scaled(profile, s, fill), frozen)
        ctx.omitted = omissions(ctx)          # a figure left out is work not done: part of the cost
        return sum(v for v, _ in _estimate(ctx, keys, units, factor).values())

    def largest(cost, lo):
        """The largest x in [lo, 1] with cost(x) within the budget (lo assumed to fit)."""
        hi = 1.0
        if cost(hi) <= seconds:
            return hi
        for _ in range(40):
            mid = math.sqrt(lo * hi)
            lo, hi = (mid, hi) if cost(mid) <= seconds else (lo, mid)
        return lo
    s = largest(total, 1e-4)
    # the inverted images and steps change the cost in jumps: the linear counts take up what is left
    fill = largest(lambda f: total(s, f), s) if s < 1.0 else None
    total(s, fill)
    return s, _estimate(ctx, keys, units, factor)


def make_plan(ctx: ReportContext, keys: list[str], budget: float, units: Units, setup_seconds: float,
              started: float) -> Plan:
    plan = Plan(budget=budget, units=units, profile=ctx.profile, setup_seconds=setup_seconds, started=started)
    left = MARGIN * (budget - (time.time() - started))
    dropped = {}
    while True:
        run = [k for k in keys if k not in dropped]
        s, est = fit(ctx, run, left, units, profile=ctx.profile)
        total = sum(v for v, _ in est.values())
        victims = [k for k in DROP_ORDER if k in run and est.get(k, (0,))[0] > 0]
        if total <= left or not victims:
            break
        k = victims[0]
        dropped[k] = (f"left out: even at its smallest sizes it needs about {minutes(est[k][0])}, more than the budget "
                      f"leaves (raise --budget to include it)")
    plan.scale = s
    plan.sections = {k: SectionPlan(k, est[k][0] if k in est else 0.0, est[k][1] if k in est else Work(), scale=s)
                     for k in keys}
    for k, why in dropped.items():
        plan.sections[k].estimate, plan.sections[k].dropped, plan.sections[k].actual = 0.0, why, 0.0
    ctx.budget = plan
    return plan


def replan(ctx: ReportContext, plan: Plan, done_key: str):
    """After ``done_key`` ran: fit the sections still to run to the time left, with the
    measured/estimated correction; sizes already used by a finished section stay."""
    todo = [k for k, p in plan.sections.items() if p.actual is None and p.dropped is None]
    if not todo:
        return
    frozen = {k for key, p in plan.sections.items() if p.actual is not None for k in KNOBS.get(key, ())}
    left = plan.budget - plan.elapsed()
    factor = plan.correction()
    s, est = fit(ctx, todo, MARGIN * max(left, 0.0), plan.units, profile=plan.profile, frozen=frozen, factor=factor)
    for k in todo:
        if k in est:
            plan.sections[k].estimate, plan.sections[k].work = est[k]
        plan.sections[k].scale = s
    eta = plan.remaining_estimate()
    plan.history.append((done_key, s, eta, factor))
    log.info("report budget: after %s, %.0f s left; the %d sections to go re-fitted at scale %.3g (estimates x%.2f "
             "from the sections so far): about %s more", done_key, left, len(todo), s, factor, minutes(eta))


def minutes(sec: float) -> str:
    return f"{sec / 60:.1f} min" if sec >= 60 else f"{sec:.0f} s"


def sizes_line(ctx: ReportContext, key: str) -> str:
    """The sizes a section reads, as 'name value' pairs."""
    def fmt(v):
        if isinstance(v, dict):
            return "{" + "; ".join(f"{a} {fmt(b)}" for a, b in v.items()) + "}" if v else "all"
        if isinstance(v, (tuple, list)):
            return ", ".join(f"{x:g}" if isinstance(x, float) else str(x) for x in v)
        return str(v)
    return ", ".join(f"{k} {fmt(getattr(ctx, k))}" for k in KNOBS.get(key, ()))


def plan_text(ctx: ReportContext, plan: Plan) -> str:
    """The plan as printed before the work starts."""
    u = plan.units
    lines = [f"report budget {minutes(plan.budget)} at {ctx.model.precision.name}: probe {u.probe_seconds:.1f} s "
             f"(per image: generate {u.generate:.3g} s, inversion step {u.step:.3g} s, critic {u.critic:.3g} s, "
             f"features {u.features:.3g} s; batch {u.batch}); set-up so far {plan.setup_seconds:.0f} s",
             f"sizes at scale {plan.scale:.3g} of profile '{plan.profile}'" + (
                 " (the profile fits: its own sizes)" if plan.scale >= 1.0 else "")]
    t = plan.setup_seconds
    for k, p in plan.sections.items():
        t += p.estimate
        if p.dropped:
            lines.append(f"  {TITLES.get(k, k):<44} {p.dropped}")
            continue
        lines.append(f"  {TITLES.get(k, k):<44} ~{minutes(p.estimate):>9}  (ETA +{minutes(t)})  {sizes_line(ctx, k)}")
        for _, why in ctx.omitted.get(k, ()):
            lines.append(f"      {why}")
    lines.append(f"estimated total {minutes(t)} of {minutes(plan.budget)}")
    return "\n".join(lines)


def plan_record(ctx: ReportContext, plan: Plan) -> dict:
    """The plan as budget.json beside the page: the probe, and per section its sizes, estimated and
    measured seconds, the work estimated and the work counted."""
    return {"budget_s": plan.budget, "elapsed_s": round(plan.elapsed(), 2), "setup_s": round(plan.setup_seconds, 2),
            "precision": ctx.model.precision.name, "profile": plan.profile, "scale": plan.scale,
            "units": dataclasses.asdict(plan.units),
            "replans": [{"after": k, "scale": s, "eta_s": round(e, 1), "correction": round(f, 3)}
                        for k, s, e, f in plan.history],
            "sections": {k: {"sizes": sizes_line(ctx, k), "estimate_s": round(p.estimate, 2),
                             "actual_s": None if p.actual is None else round(p.actual, 2), "dropped": p.dropped,
                             "work": dataclasses.asdict(p.work), "counted": p.counted or {},
                             "left_out": [why for _, why in ctx.omitted.get(k, ())]}
                         for k, p in plan.sections.items()}}


def plan_html(ctx: ReportContext, plan: Plan) -> str:
    """The plan and what each section measured at which counts, for the page."""
    u = plan.units
    rows = []
    for k, p in plan.sections.items():
        c = p.counted or {}
        rows.append("<tr>" + "".join(f"<td>{html.escape(str(x))}</td>" for x in (
            TITLES.get(k, k), p.dropped or sizes_line(ctx, k) or "—", minutes(p.estimate),
            "left out" if p.dropped else minutes(p.actual) if p.actual is not None else "not run",
            f"{c.get('generator', 0):,} / {c.get('generator_grad', 0):,} / "
            f"{c.get('critic', 0) + c.get('critic_grad', 0):,}" if c else "—",
            "; ".join(why for _, why in ctx.omitted.get(k, ())) or "—")) + "</tr>")
    total = plan.elapsed()
    head = ("<p>Built to a time budget of <b>" + minutes(plan.budget) + f"</b> at {html.escape(ctx.model.precision.name)}: "
            f"a {u.probe_seconds:.1f} s probe measured, per image, generating {u.generate:.3g} s, an inversion step "
            f"{u.step:.3g} s, a critic pass {u.critic:.3g} s, a feature pass {u.features:.3g} s (batch {u.batch}); every "
            f"size of the '{html.escape(plan.profile)}' profile was scaled by {plan.scale:.3g} (counts by the factor, "
            "steps and inverted images by its square root, each with a floor) to fit, and the sections still to run "
            "were fitted again after each section to the time left. The page took "
            f"{minutes(total)} in all (set-up {plan.setup_seconds:.0f} s). Figures at these counts are noisier "
            "than the profile's; each section's sizes are listed here.</p>")
    table = ("<table><thead><tr><th>section</th><th>sizes</th><th>estimated</th><th>took</th>"
             "<th>images generated / with a backward pass / critic passes (counted)</th><th>left out as too noisy</th>"
             "</tr></thead><tbody>" + "".join(rows) + "</tbody></table>")
    return "<section id='budget'><h2>Budget and plan</h2>" + head + table + "</section>"
