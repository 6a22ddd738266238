"""``latentatlas``: command-line front end. Each command is a thin layer of I/O around library
functions; errors in the user's input end in one line on stderr and exit code 2."""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from .errors import LatentAtlasError

log = logging.getLogger("latentatlas")


def _positive_int(s: str) -> int:
    try:
        v = int(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {s!r}") from None
    if v <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {v}")
    return v


def _seed(s: str) -> int:
    try:
        v = int(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"seed must be an integer, got {s!r}") from None
    if not 0 <= v < 2 ** 63:
        raise argparse.ArgumentTypeError(f"seed must be in [0, 2^63), got {v}")
    return v


def _finite_float(s: str) -> float:
    try:
        v = float(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {s!r}") from None
    if v != v or v in (float("inf"), float("-inf")):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {s!r}")
    return v


# -- commands ---------------------------------------------------------------------------------

def cmd_models(args):
    from .models.registry import bundled_models
    from .models.inspect import inspect_checkpoint
    if args.inspect:
        info = inspect_checkpoint(args.inspect)
        _emit(args, info, lambda d: "\n".join(f"{k}: {v}" for k, v in d.items()))
        return 0
    rows = [{"name": m.name, "resolution": m.resolution, "spaces": list(m.spaces),
             "discriminator": m.discriminator, "weights": m.source, "description": m.description}
            for m in bundled_models()]

    def table(rows):
        lines = [f"{'name':<19}{'res':>4}  {'spaces':<28}{'discriminator':<32}weights"]
        for r in rows:
            lines.append(f"{r['name']:<19}{r['resolution']:>4}  {','.join(r['spaces']):<28}"
                         f"{r['discriminator']:<32}{r['weights']}")
        return "\n".join(lines)
    _emit(args, rows, table)
    return 0


def cmd_sample(args):
    from .models.registry import load_generator
    from .sample import parse_params, sample_images, sample_with_strategy, write_samples
    model = load_generator(args.model, device=args.device)
    if args.out and not args.out.lower().endswith(".png"):
        raise LatentAtlasError(f"output {args.out}: only .png is supported")
    if args.strategy:
        result = sample_with_strategy(model, n=args.n, seed=args.seed, strategy=args.strategy,
                                      params=parse_params(args.param), batch_size=args.batch_size)
    else:
        result = sample_images(model, n=args.n, seed=args.seed, psi=args.truncation_psi,
                               cutoff=args.truncation_cutoff, batch_size=args.batch_size)
    written = write_samples(result, out=args.out, out_dir=args.out_dir, nrow=args.nrow)
    _emit(args, {"model": model.name, "n": args.n, "seed": args.seed, "written": [str(p) for p in written]},
          lambda d: "\n".join(d["written"]))
    return 0


def cmd_report(args):
    from .report.html import build_report
    path = build_report(args.model, args.out, device=args.device, n=args.n, seed=args.seed)
    _emit(args, {"report": str(path)}, lambda d: f"report written to {d['report']}")
    return 0


def cmd_convert(args):
    from .models.registry import export_model, load_generator
    model = load_generator(args.input)
    path = export_model(model, args.output)
    _emit(args, {"input": args.input, "output": str(path), "weights_hash": model.weights_hash()},
          lambda d: f"wrote {d['output']} (weights hash {d['weights_hash']})")
    return 0


def cmd_fit(args):
    from .atlas import fit_atlas, parse_clusters, parse_level_ranges
    from .models.registry import load_generator
    from .spaces.diagnostics import normality_table, plot_marginals, space_samples
    model = load_generator(args.model, device=args.device)
    model.require_mapping("fit")
    clusters = parse_clusters(args.clusters)
    levels = parse_level_ranges(args.levels, model.num_ws)
    atlas = fit_atlas(model, n=args.n, seed=args.seed, clusters=clusters, level_ranges=levels,
                      progress=not args.json)
    path = atlas.save(args.out)
    table = normality_table(space_samples(model, atlas.pnorm, n=min(args.n, 20000), seed=args.seed + 1))
    res = {"atlas": str(path), "meta": atlas.meta, "level_ranges": atlas.level_ranges, "normality": table}
    if args.plots:
        res["plot"] = str(plot_marginals(space_samples(model, atlas.pnorm, n=10000, seed=args.seed + 1), args.plots))

    def fmt(d):
        lines = [f"atlas written to {d['atlas']} (N={d['meta']['n']}, timings {d['meta']['timings']})"]
        for r in d["normality"]:
            lines.append("  ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in r.items()))
        return "\n".join(lines)
    _emit(args, res, fmt)
    return 0


def cmd_train(args):
    from .train.run import export_trained, train
    if args.export:
        path = export_trained(args.arch, args.out, args.export)
        _emit(args, {"exported": str(path)}, lambda d: f"exported {d['exported']}")
        return 0
    state = train(args.arch, args.out, data_dir=args.data_dir, batch=args.batch,
                  total_kimg=args.kimg, max_minutes=args.minutes, ckpt_minutes=args.ckpt_minutes,
                  seed=args.seed, threads=args.threads)
    _emit(args, state, lambda d: f"stopped at step {d['step']} ({d['nimg'] / 1000:.1f} kimg, "
                                 f"{d['wall_s'] / 3600:.2f} h of training)")
    return 0


def cmd_evaluate(args):
    from .metrics.suite import evaluate_model
    from .models.registry import load_generator
    model = load_generator(args.model, device=args.device)
    res = evaluate_model(model, n=args.n, features=args.features, seed=args.seed, device=model.device,
                         progress=not args.json)

    def fmt(d):
        lines = [f"{k:>16}: {v:.4f}" if isinstance(v, float) else f"{k:>16}: {v}" for k, v in d.items()
                 if k != "class_histogram"]
        if d.get("class_histogram"):
            from .data.fashion import CLASSES
            lines.append("  class histogram: " + ", ".join(f"{c} {h:.3f}" for c, h in zip(CLASSES, d["class_histogram"])))
        return "\n".join(lines)
    _emit(args, res, fmt)
    return 0


def cmd_evaluate_sampling(args):
    from .models.registry import load_generator
    from .sampling.evaluate import evaluate_sampling, format_table, plot_sampling, save_json
    model = load_generator(args.model, device=args.device)
    names = [s.strip() for s in args.strategies.split(",") if s.strip()]
    res = evaluate_sampling(model, names, n=args.n, seed=args.seed, progress=not args.json)
    if args.out_dir:
        plot_sampling(res, args.out_dir)
        save_json(res, Path(args.out_dir) / "sampling.json")
    _emit(args, res, format_table)
    return 0


# -- plumbing ---------------------------------------------------------------------------------


def _strategy_names():
    from .sampling import strategy_names
    return strategy_names()


def _extractor_names():
    from .metrics.features import extractor_names
    return extractor_names()

def _emit(args, data, fmt):
    if args.json:
        print(json.dumps(data, indent=2, default=str))
    else:
        print(fmt(data))


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto (default: cpu)")
    common.add_argument("--json", action="store_true", help="machine-readable output on stdout")
    common.add_argument("--debug", action="store_true", help="show tracebacks and debug logging")

    p = argparse.ArgumentParser(prog="latentatlas", parents=[common],
                                description="Map the latent space of a pretrained GAN and sample, "
                                            "truncate, invert, walk and edit where the good latents are.")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    s = sub.add_parser("models", parents=[common], help="list bundled models or inspect a checkpoint",
                       description="List the bundled models (resolution, latent spaces, whether a "
                                   "discriminator is present, where the weights come from), or with "
                                   "--inspect describe what a checkpoint file holds.")
    s.add_argument("--inspect", metavar="PATH", help="describe the contents of a checkpoint file")
    s.set_defaults(fn=cmd_models)

    s = sub.add_parser("sample", parents=[common], help="generate images (grid and/or files)",
                       description="Generate images. Latent i is named by seed SEED+i, so the same "
                                   "seed gives the same images on any device and batch size.")
    s.add_argument("--model", required=True, help="bundled model name or checkpoint path")
    s.add_argument("--n", type=_positive_int, default=64, help="number of images (default 64)")
    s.add_argument("--seed", type=_seed, default=0, help="first seed (default 0)")
    s.add_argument("--truncation-psi", type=_finite_float, default=1.0,
                   help="psi-truncation toward the mean w (W-space models only; default 1 = off)")
    s.add_argument("--truncation-cutoff", type=_positive_int, default=None,
                   help="truncate only the first K layers of W+ (default: all)")
    s.add_argument("--strategy", default=None, help="sampling strategy: " + ", ".join(_strategy_names()))
    s.add_argument("--param", action="append", metavar="NAME=VALUE",
                   help="strategy parameter, repeatable (e.g. --param psi=0.7, --param tau=2, --param sigma=auto)")
    s.add_argument("--batch-size", type=_positive_int, default=64, help="images per forward pass")
    s.add_argument("--out", help="grid PNG to write")
    s.add_argument("--out-dir", help="directory for one PNG per image plus latents.npz")
    s.add_argument("--nrow", type=_positive_int, default=None, help="images per grid row")
    s.set_defaults(fn=cmd_sample)

    s = sub.add_parser("report", parents=[common], help="write the HTML report for a model",
                       description="Write a self-contained HTML report (model card, samples, and "
                                   "every analysis section available for the model) to OUT/index.html.")
    s.add_argument("--model", default="fashion-stylegan2", help="bundled model name or checkpoint path")
    s.add_argument("--out", required=True, help="output directory")
    s.add_argument("--n", type=_positive_int, default=64, help="samples in the grid")
    s.add_argument("--seed", type=_seed, default=0, help="first seed")
    s.set_defaults(fn=cmd_report)

    s = sub.add_parser("evaluate", parents=[common], help="FID, KID, precision/recall, density/coverage of a model",
                       description="Generate N samples and compare them with the Fashion-MNIST test split "
                                   "in the chosen feature space: FID, KID, precision, recall (k=3), density, "
                                   "coverage and the predicted class histogram.")
    s.add_argument("--model", required=True)
    s.add_argument("--n", type=_positive_int, default=10000)
    s.add_argument("--features", default="fashion-features", choices=_extractor_names())
    s.add_argument("--seed", type=_seed, default=0)
    s.set_defaults(fn=cmd_evaluate)

    s = sub.add_parser("evaluate-sampling", parents=[common], help="compare sampling strategies over sweeps",
                       description="Run each strategy over its parameter sweep on the same N seeds and report "
                                   "FID, KID, precision, recall, density, coverage and faithfulness (pixel and "
                                   "feature distance to the original sample, class preservation). --out-dir "
                                   "also writes sampling.json and the precision-recall and FID-faithfulness plots.")
    s.add_argument("--model", required=True)
    s.add_argument("--strategies", default="truncation,pca-log,cluster,diamond")
    s.add_argument("--n", type=_positive_int, default=10000)
    s.add_argument("--seed", type=_seed, default=0)
    s.add_argument("--out-dir", default=None)
    s.set_defaults(fn=cmd_evaluate_sampling)

    s = sub.add_parser("convert", parents=[common], help="convert a checkpoint to latentatlas format",
                       description="Read any supported checkpoint (NVIDIA stylegan2-ada pickle, rosinality "
                                   ".pt, latentatlas .pt) and write latentatlas format: a dict of tensors and "
                                   "plain config that torch.load(weights_only=True) reads.")
    s.add_argument("input", help="checkpoint to read")
    s.add_argument("output", help="file to write (.pt)")
    s.set_defaults(fn=cmd_convert)

    s = sub.add_parser("fit", parents=[common], help="fit the latent-space atlas (P-norm PCA, mixtures)",
                       description="Map N latents, fit the Gaussian of P space and its PCA whitening "
                                   "(P-norm), the EM mixture per level, and save everything with the "
                                   "model's weights hash to an .npz atlas. Prints W/P/P-norm normality "
                                   "diagnostics.")
    s.add_argument("--model", required=True, help="bundled model name or checkpoint path")
    s.add_argument("--n", type=_positive_int, default=100_000, help="latents to map (default 100000)")
    s.add_argument("--seed", type=_seed, default=0)
    s.add_argument("--out", required=True, help="atlas file (.npz)")
    s.add_argument("--clusters", default=None, help="clusters per level, e.g. coarse=8,medium=8,fine=8 (0 = none)")
    s.add_argument("--levels", default=None, help="W+ rows per level, e.g. coarse=0:3,medium=3:6,fine=6:8")
    s.add_argument("--plots", default=None, metavar="PNG", help="also write marginal histograms / joint plots")
    s.set_defaults(fn=cmd_fit)

    s = sub.add_parser("train", parents=[common], help="train a bundled architecture on Fashion-MNIST",
                       description="Train (or resume) stylegan2 or wgangp on Fashion-MNIST. Checkpoints "
                                   "go to OUT/checkpoint.pt every --ckpt-minutes with a sample grid; "
                                   "running the same command again resumes. --export FILE writes the "
                                   "EMA generator + discriminator from OUT in latentatlas format.")
    s.add_argument("arch", choices=["stylegan2", "wgangp"])
    s.add_argument("--data", default="fashion-mnist", choices=["fashion-mnist"], help="training set")
    s.add_argument("--data-dir", help="directory with the idx files (default: Debian path or $LATENTATLAS_FASHION_MNIST)")
    s.add_argument("--out", required=True, help="run directory (checkpoints, grids, log)")
    s.add_argument("--batch", type=_positive_int, default=32)
    s.add_argument("--kimg", type=_finite_float, default=1000, help="stop after this many thousand images")
    s.add_argument("--minutes", type=_finite_float, default=None, help="stop after this many minutes")
    s.add_argument("--ckpt-minutes", type=_finite_float, default=5.0)
    s.add_argument("--seed", type=_seed, default=0)
    s.add_argument("--threads", type=_positive_int, default=None, help="torch CPU threads")
    s.add_argument("--export", metavar="FILE", help="export the run in OUT to FILE and exit")
    s.set_defaults(fn=cmd_train)
    return p


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    if not getattr(args, "fn", None):
        parser.print_help()
        return 2
    try:
        return args.fn(args) or 0
    except LatentAtlasError as e:
        if args.debug:
            raise
        print(f"latentatlas: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("latentatlas: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
