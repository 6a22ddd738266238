"""evaluate: the distribution metrics of a model; evaluate-sampling: strategies over their sweeps; evaluate-directions: a direction set measured."""
from __future__ import annotations

from pathlib import Path

from ...data.fashion import CLASSES
from ...errors import LatentAtlasError
from ...evaluation.sampling import (
    diamond_table1,
    evaluate_sampling,
    format_table,
    format_table1,
    plot_sampling,
    public,
    save_json,
    table1_record,
)
from ...evaluation import stored
from ...metrics.suite import CHUNK, evaluate_model
from ...sampling import Context
from ...sampling.generate import check_count, parse_params
from ...validate import check_fits
from ...walks.directions import Directions
from ...walks.edit import evaluate_directions
from ..options import (
    add_atlas,
    add_model_options,
    add_ray,
    add_reference,
    atlas_option,
    emit,
    kv_line,
    load_model,
    pool_for,
    positive_int,
    reference_kw,
    seed_int,
)


def add_evaluate(sub, common):
    s = sub.add_parser("evaluate", parents=[common], help="FID, KID, precision/recall, density/coverage of a model",
                       description="Generate N samples and compare them with a real image set in a feature space: "
                                   "FID, KID, precision, recall (k=3), density, coverage, and the predicted class "
                                   "histogram with the Fashion-MNIST classifier. The real set is the Fashion-MNIST "
                                   "test split for models trained on it, else --reference DIR. Streams: seeds go "
                                   "in chunks of 2000, FID reads float64 moments summed over all N (memory set by a "
                                   "chunk, not by N); KID and the k-NN metrics read the first 10000 samples.")
    s.add_argument("--model", required=True)
    s.add_argument("--n", type=positive_int, default=10000)
    add_reference(s)
    s.add_argument("--seed", type=seed_int, default=0)
    add_ray(s, "one task per chunk of 2000 seeds; the moments are reduced exactly, the same result as here")
    add_model_options(s)
    s.set_defaults(fn=run_evaluate)


def add_evaluate_sampling(sub, common):
    s = sub.add_parser("evaluate-sampling", parents=[common], help="compare sampling strategies over sweeps",
                       description="Run each strategy over its parameter sweep on the same N seeds and report "
                                   "FID, KID, precision, recall, density, coverage and faithfulness (pixel and "
                                   "feature distance to the original sample, class preservation). --out-dir "
                                   "also writes sampling.json and the precision-recall and FID-faithfulness plots.")
    s.add_argument("--model", required=True)
    s.add_argument("--strategies", default=None,
                   help="comma-separated strategies, each over its sweep (default truncation,pca-log,cluster,diamond)")
    s.add_argument("--protocol", default=None, choices=["diamond-table1"],
                   help="diamond-table1: Diamond in the rough's Table 1 (baseline, best truncation, best sigma on "
                        "0.01..0.7, sigma=auto, with faithfulness)")
    s.add_argument("--param", action="append", default=None,
                   help="diamond setting for --protocol, NAME=VALUE (preset=wgan-gp|pgan-celeba|lsun|celeba-hq|biggan, "
                        "lam, gamma, delta, alpha, beta, n_proto, recovery_steps, proto_iter); repeatable")
    s.add_argument("--n", type=positive_int, default=10000)
    s.add_argument("--seed", type=seed_int, default=0)
    s.add_argument("--out-dir", default=None)
    add_reference(s)
    add_ray(s, "one task per strategy and parameter point")
    add_atlas(s)
    add_model_options(s)
    s.set_defaults(fn=run_evaluate_sampling)


def add_evaluate_directions(sub, common):
    s = sub.add_parser("evaluate-directions", parents=[common], help="measure a direction set",
                       description="Density drift along linear vs density-preserving walks (log-density under "
                                   "the learned CDF model), orthogonality of the set, G1 feature variation per "
                                   "direction, number of class probabilities each direction moves, class flips, "
                                   "and perceptual path length.")
    s.add_argument("--model", required=True)
    s.add_argument("--directions", required=True, help="directions file (.npz)")
    s.add_argument("--n", type=positive_int, default=64)
    s.add_argument("--layer", default=None)
    add_model_options(s)
    s.set_defaults(fn=run_evaluate_directions)


def run_evaluate(args):
    model = load_model(args)
    check_count(args.n, "evaluate")
    check_fits(min(args.n, CHUNK), model.img_channels, model.img_resolution, "evaluate")   # a chunk at a time
    with pool_for(args, model) as pool:
        res = evaluate_model(model, n=args.n, seed=args.seed, device=model.device, progress=not args.json,
                             pool=pool, **reference_kw(args))

    def fmt(d):
        lines = [f"{k:>16}: {v:.4f}" if isinstance(v, float) else f"{k:>16}: {v}" for k, v in d.items()
                 if k != "class_histogram"]
        if d.get("class_histogram"):
            lines.append("  class histogram: " + ", ".join(f"{c} {h:.3f}" for c, h in zip(CLASSES, d["class_histogram"])))
        return "\n".join(lines)
    emit(args, res, fmt)
    return 0


def run_evaluate_sampling(args):
    model = load_model(args)
    check_fits(args.n, model.img_channels, model.img_resolution, "evaluate-sampling", copies=6)
    args.strategies_given = args.strategies is not None
    names = [s.strip() for s in (args.strategies or "truncation,pca-log,cluster,diamond").split(",") if s.strip()]
    atlas = atlas_option(args, model, model.has_mapping, "the model has no W space")
    if args.protocol and args.strategies_given:
        raise LatentAtlasError("--protocol diamond-table1 fixes the strategies; leave out --strategies")
    if args.param and not args.protocol:
        raise LatentAtlasError("--param applies to --protocol diamond-table1 (diamond settings such as lam=0.2)")
    with pool_for(args, model, atlas) as pool:
        kw = dict(n=args.n, seed=args.seed, progress=not args.json, ctx=Context(model, atlas=atlas),
                  pool=pool, **reference_kw(args))
        if args.protocol:
            res = diamond_table1(model, diamond=parse_params(args.param), **kw)
            stored.save_record(model, args.protocol, table1_record(res))   # later reports on these weights show it
            fmt = format_table1
        else:
            res = evaluate_sampling(model, names, **kw)
            fmt = format_table
    if args.out_dir:
        plot_sampling(res, args.out_dir)
        save_json(res, Path(args.out_dir) / "sampling.json")
    emit(args, public(res), fmt)
    return 0


def run_evaluate_directions(args):
    model = load_model(args)
    res = evaluate_directions(model, Directions.load(args.directions), n=args.n, layer=args.layer)

    def fmt(d):
        head = f"{d['method']} directions in {d['space']}: orthogonality error {d['orthogonality_error']:.4f}"
        return "\n".join([head] + [kv_line(r, ".4g") for r in d["rows"]])
    emit(args, res, fmt)
    return 0
