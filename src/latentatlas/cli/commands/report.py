"""report: the HTML report for a model."""
from __future__ import annotations

from ...report.budget import DEFAULT_BUDGETS, parse_budget
from ...report.build import build_report
from ...report.context import PROFILES, profile_sizes
from ..options import (
    add_atlas,
    add_model_options,
    add_ray,
    add_reference,
    emit,
    load_model,
    pool_for,
    positive_int,
    reference_kw,
    seed_int,
)


def add_report(sub, common):
    s = sub.add_parser("report", parents=[common], help="write the HTML report for a model",
                       description="Write a self-contained HTML report (model card, samples, and "
                                   "every analysis section available for the model) to OUT/index.html.")
    s.add_argument("--model", default="fashion-stylegan2", help="bundled model name or checkpoint path")
    s.add_argument("--out", required=True, help="output directory")
    s.add_argument("--n", type=positive_int, default=64, help="samples in the grid")
    s.add_argument("--seed", type=seed_int, default=0, help="first seed")
    s.add_argument("--sections", default=None,
                   help="comma-separated subset: model, samples, quality, latent-space, sampling, inversion, walks")
    s.add_argument("--profile", default="full", choices=list(PROFILES),
                   help=f"full: every section at report size ({profile_sizes('full')}; on a 2-core CPU about 10 min "
                        "the first time, when the model's atlas and mean protoimage are computed and cached, less "
                        "afterwards); thorough: "
                        f"{profile_sizes('thorough')} (~2x the time, less sampling noise); quick: small n and a "
                        f"thinned sweep for a fast look ({profile_sizes('quick')}; about 3 min the first time)")
    s.add_argument("--budget", default=None, metavar="TIME",
                   help="fit the report to a time budget (30m, 1h30m, 90s; a plain number is minutes; 'off' for the "
                        "profile's sizes whatever they cost): a short probe measures the model's cost per image and "
                        "per inversion step at the chosen precision, every size of the profile is scaled to fit (never "
                        "above the profile's own), the plan with its ETA is printed before the work and written into "
                        "the page, and the sections still to run are fitted again after each one; figures too noisy at "
                        "the counts that fit are left out, and the page says which (default per profile: "
                        + ", ".join(f"{k} {v}" for k, v in DEFAULT_BUDGETS.items()) + ")")
    add_reference(s)
    add_ray(s, "the heavy sections' work (sampling sweep, quality, inversion, directions, method table)")
    add_atlas(s)
    add_model_options(s)
    s.set_defaults(fn=run_report)


def run_report(args):
    secs = [x.strip() for x in args.sections.split(",")] if args.sections else None
    text = args.budget if args.budget is not None else DEFAULT_BUDGETS[args.profile]
    budget = None if text.strip().lower() == "off" else parse_budget(text)
    model = load_model(args)           # with --class / --truncation, as every command loads it
    with pool_for(args, model) as pool:
        path = build_report(model, args.out, n=args.n, seed=args.seed, sections=secs, profile=args.profile,
                            atlas=args.atlas, pool=pool, budget=budget,
                            **reference_kw(args))
    emit(args, {"report": str(path)}, lambda d: f"report written to {d['report']}")
    return 0
