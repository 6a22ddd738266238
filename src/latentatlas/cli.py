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


def _load(args, name: str | None = None):
    """The model named by ``--model`` (or ``name``) with the options every command shares:
    ``--class`` for conditional models, ``--truncation`` for BigGAN."""
    from .models.registry import load_generator
    model = load_generator(name or args.model, device=args.device)
    for w in (model.info.extra or {}).get("warnings", []):
        log.warning("%s: %s", model.name, w)
    if args.device == "auto":
        log.info("device: %s (--device auto)", model.device)
    if getattr(args, "class_label", None) is not None:
        model.set_class(args.class_label)
    if getattr(args, "truncation", None) is not None:
        if not hasattr(model, "set_truncation"):
            raise LatentAtlasError(f"--truncation applies to BigGAN models (it selects their batch-norm "
                                   f"statistics); model '{model.name}' is not one: use --truncation-psi or "
                                   f"--strategy truncation")
        model.set_truncation(args.truncation)
    return model


def _atlas(args, model, applies: bool = True, why: str = ""):
    """The atlas named by ``--atlas`` (checked against the model's weights), or None for the
    cached one. An atlas given where nothing uses it is an error, never ignored."""
    path = getattr(args, "atlas", None)
    if path is None:
        return None
    if not applies:
        raise LatentAtlasError(f"--atlas does not apply here: {why}")
    from .atlas import Atlas
    return Atlas.load(path, model)


def _add_ray(s, what: str):
    s.add_argument("--ray", nargs="?", const="local", default=None, metavar="ADDRESS",
                   help=f"run {what} on Ray workers, each holding the model once: bare --ray starts a local Ray "
                        f"instance, --ray auto joins the running cluster, --ray HOST:PORT a given one "
                        f"(needs the ray extra: pip install 'latentatlas[ray]')")
    s.add_argument("--ray-workers", type=_positive_int, default=None, metavar="N",
                   help="Ray workers (default: one per CPU of the cluster, or per --ray-gpus-per-worker GPUs)")
    s.add_argument("--ray-gpus-per-worker", type=_finite_float, default=0.0, metavar="G",
                   help="GPUs per Ray worker (fractions share a GPU); workers then run on CUDA")


def _pool(args, model, atlas=None):
    """A context with the Ray pool the command's tasks run on (--ray), or None: run them here."""
    import contextlib

    from .scale import make_pool
    addr = getattr(args, "ray", None)
    if addr is not None and addr != "local" and addr != "auto" and ":" not in addr:
        raise LatentAtlasError(f"--ray {addr!r}: an address is 'auto' or HOST:PORT (put a bare --ray after "
                               f"the command's other arguments)")
    if getattr(args, "ray_gpus_per_worker", 0) < 0:
        raise LatentAtlasError("--ray-gpus-per-worker must be >= 0")
    if addr is None:
        if getattr(args, "ray_workers", None) is not None or getattr(args, "ray_gpus_per_worker", 0.0):
            raise LatentAtlasError("--ray-workers / --ray-gpus-per-worker apply only with --ray")
        return contextlib.nullcontext()
    return make_pool(model, atlas, use_ray=True, ray=None if addr == "local" else addr,
                     model_name=args.model, device=args.device, workers=getattr(args, "ray_workers", None),
                     gpus_per_worker=getattr(args, "ray_gpus_per_worker", 0.0),
                     class_label=getattr(args, "class_label", None), truncation=getattr(args, "truncation", None))


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
        lines = [f"{'name':<19}{'res':>4}  {'spaces':<26}{'discriminator':<37}weights"]
        for r in rows:
            lines.append(f"{r['name']:<19}{r['resolution']:>4}  {','.join(r['spaces']):<26}"
                         f"{r['discriminator']:<37}{r['weights']}")
        return "\n".join(lines)
    _emit(args, rows, table)
    return 0


def cmd_sample(args):
    from .sample import _concat, iter_samples, parse_params, parse_seeds, stream_samples, write_samples
    from .validate import check_fits
    model = _load(args)
    if args.seeds is not None and (args.n is not None or args.seed != 0):
        raise LatentAtlasError("--seeds names the latents itself: give either --seeds or --n/--seed")
    seeds = parse_seeds(args.seeds) if args.seeds is not None else list(range(args.seed, args.seed + (args.n or 64)))
    args.n = len(seeds)
    if args.noise_mode is not None:
        if not hasattr(model, "noise_mode") or getattr(model.cfg, "layers", None) is not None:
            raise LatentAtlasError(f"--noise-mode applies to StyleGAN2 models (per-pixel noise); "
                                   f"model '{model.name}' has no noise inputs")
        model.noise_mode = args.noise_mode
    if args.out and not args.out.lower().endswith(".png"):
        raise LatentAtlasError(f"output {args.out}: only .png is supported")
    if not args.out and not args.out_dir:
        raise LatentAtlasError("nothing to write: give --out GRID.png and/or --out-dir DIR")
    if args.strategy and (args.truncation_psi != 1.0 or args.truncation_cutoff is not None):
        raise LatentAtlasError("--truncation-psi/--truncation-cutoff do not apply together with --strategy; "
                               "use --strategy truncation --param psi=...")
    if args.out:     # a grid holds every image; --out-dir alone streams them to disk
        check_fits(args.n, model.img_channels, model.img_resolution, "sample --out (a grid holds every image)",
                   hint="; --out-dir alone writes the images as they are made")
    lat_dim = model.z_dim + (model.num_ws * model.w_dim if model.has_mapping else 0)
    check_fits(args.n, 1, 1, "sample (latents kept for latents.npz)", copies=lat_dim,
               unit=f"latents of {lat_dim} values")
    from .sampling import Context
    atlas = _atlas(args, model, args.strategy in ("pca-log", "cluster", "multilevel"),
                   "only the pca-log, cluster and multilevel strategies read an atlas")
    if args.grid:
        return _fig1_grid(args, model, atlas, parse_params(args.param))
    kw = dict(seeds=seeds, psi=args.truncation_psi, cutoff=args.truncation_cutoff, strategy=args.strategy,
              params=parse_params(args.param) if args.strategy else None, batch_size=args.batch_size,
              ctx=Context(model, atlas=atlas) if args.strategy else None)
    if args.ray is not None and (args.out or not args.out_dir):
        raise LatentAtlasError("--ray applies to sample --out-dir alone (a grid holds every image in one process)")
    with _pool(args, model, atlas) as pool:
        if args.ray is not None:
            from .sample import pooled_samples
            written = stream_samples(pooled_samples(pool, model, **kw), args.out_dir)
        elif args.out:
            written = write_samples(_concat(list(iter_samples(model, **kw))), out=args.out, out_dir=args.out_dir,
                                    nrow=args.nrow, scale=args.scale)
        else:
            written = stream_samples(iter_samples(model, **kw), args.out_dir)
    _emit(args, {"model": model.name, "n": args.n, "seed": args.seed, "written": [str(p) for p in written]},
          lambda d: "\n".join(d["written"]))
    return 0


def _fig1_grid(args, model, atlas, params):
    """sample --strategy multilevel --grid: Katzir et al.'s Fig. 1 block for the chosen clusters
    (levels fixed with --param show that cluster only; the others their first four)."""
    from .imageio import save_grid
    from .priors import fig1_grid
    from .sample import grid_scale
    from .sampling import Context
    if args.strategy != "multilevel" or not args.out or args.out_dir:
        raise LatentAtlasError("--grid renders the multi-level (Fig. 1) block: use it with --strategy multilevel "
                               "and --out GRID.png (no --out-dir)")
    mix = Context(model, atlas=atlas).get_atlas().mixture(params.pop("mixture", "learned"))
    unknown = set(params) - {"coarse", "medium", "fine"}
    if unknown:
        raise LatentAtlasError(f"--grid: unknown parameter(s) {sorted(unknown)} (coarse, medium, fine, mixture)")
    base = model.broadcast(model.mapping(model.sample_z(1, args.seed)))
    grid, nrow, _ = fig1_grid(model, mix, base, {lv: [int(k)] for lv, k in params.items() if k is not None})
    path = save_grid(grid, args.out, nrow=nrow, scale=args.scale or grid_scale(grid.shape[0], model.img_resolution, nrow))
    _emit(args, {"written": [str(path)]}, lambda d: "\n".join(d["written"]))
    return 0


def _codes(model, spec: str) -> tuple:
    """W+ codes [N, num_ws, w_dim] and labels from seeds ('0-3,7') or a latents file (.npz from
    'sample --out-dir' or 'invert', key 'ws')."""
    import numpy as np
    import torch

    from .sample import parse_seeds
    if spec.endswith(".npz"):
        from .validate import read_npz
        ws = read_npz(spec, "latents", {"ws": ("f", None)})["ws"]
        ws = torch.from_numpy(np.asarray(ws, dtype=np.float32))
        ws = ws[None] if ws.ndim == 2 else ws
        if ws.ndim != 3 or tuple(ws.shape[1:]) != (model.num_ws, model.w_dim):
            raise LatentAtlasError(f"{spec}: ws has shape {list(ws.shape)}, model '{model.name}' needs "
                                   f"[N, {model.num_ws}, {model.w_dim}]")
        return ws.to(model.device), [f"{Path(spec).stem}[{i}]" for i in range(ws.shape[0])]
    seeds = parse_seeds(spec)
    with torch.no_grad():
        return model.broadcast(model.mapping(model.latents_for(seeds))), [f"seed {s}" for s in seeds]


def cmd_mix(args):
    """Style mixing: coarse rows from the row codes, the rest from the column codes."""
    import torch

    from .imageio import save_grid
    from .priors import default_level_ranges
    from .sample import grid_scale
    model = _load(args)
    model.require_mapping("style mixing")
    levels = default_level_ranges(model.num_ws)
    if args.split in levels:
        cutoff = levels[args.split][1]
    else:
        try:
            cutoff = int(args.split)
        except ValueError:
            raise LatentAtlasError(f"--split must be coarse, medium, fine or a W+ row in 1..{model.num_ws - 1}") from None
    if not 0 < cutoff < model.num_ws:
        raise LatentAtlasError(f"--split {args.split}: W+ row {cutoff} is not inside 1..{model.num_ws - 1}")
    a, _ = _codes(model, args.rows)
    b, _ = _codes(model, args.cols)
    if a.shape[0] * b.shape[0] > 4096:
        raise LatentAtlasError(f"{a.shape[0]} x {b.shape[0]} mixes is too many for one grid (limit 4096)")
    blank = torch.ones(1, model.img_channels, model.img_resolution, model.img_resolution)
    with torch.no_grad():
        ia, ib = model.synthesis(a).clamp(-1, 1).cpu(), model.synthesis(b).clamp(-1, 1).cpu()
        cells = [blank] + [ib[j:j + 1] for j in range(b.shape[0])]
        for i in range(a.shape[0]):
            mixed = model.mix(a[i:i + 1].expand(b.shape[0], -1, -1), b, cutoff)
            cells += [ia[i:i + 1], model.synthesis(mixed).clamp(-1, 1).cpu()]
    grid = torch.cat(cells)
    nrow = b.shape[0] + 1
    path = save_grid(grid, args.out, nrow=nrow, scale=args.scale or grid_scale(grid.shape[0], model.img_resolution, nrow))
    _emit(args, {"out": str(path), "cutoff": cutoff, "rows": a.shape[0], "cols": b.shape[0]},
          lambda d: f"wrote {d['out']}: W+ rows 0..{cutoff - 1} from each row's code, the rest from each column's")
    return 0


def cmd_report(args):
    from .report.html import build_report
    secs = [x.strip() for x in args.sections.split(",")] if args.sections else None
    if args.ray is None:
        path = build_report(args.model, args.out, device=args.device, n=args.n, seed=args.seed,
                            sections=secs, profile=args.profile, atlas=args.atlas, **_reference_kw(args))
    else:
        model = _load(args)
        with _pool(args, model) as pool:
            path = build_report(model, args.out, device=args.device, n=args.n, seed=args.seed, sections=secs,
                                profile=args.profile, atlas=args.atlas, pool=pool, **_reference_kw(args))
    _emit(args, {"report": str(path)}, lambda d: f"report written to {d['report']}")
    return 0


def cmd_convert(args):
    from .models.registry import export_model
    model = _load(args, args.input)
    path, warnings = export_model(model, args.output, to=args.to)
    for w in warnings:
        log.warning("%s", w)
    _emit(args, {"input": args.input, "output": str(path), "to": args.to, "weights_hash": model.weights_hash(),
                 "warnings": warnings},
          lambda d: f"wrote {d['output']} (weights hash {d['weights_hash']})")
    return 0


def cmd_fit(args):
    from .atlas import Atlas, describe, fit_atlas, parse_clusters, parse_level_ranges
    from .spaces.diagnostics import normality_table, plot_marginals, space_samples
    if args.inspect:
        info = describe(Atlas.load(args.inspect))
        _emit(args, info, lambda d: "\n".join(f"{k}: {v}" for k, v in d.items()))
        return 0
    if not args.model or not args.out:
        raise LatentAtlasError("fit needs --model and --out (or --inspect ATLAS.npz)")
    model = _load(args)
    model.require_mapping("fit")
    clusters = parse_clusters(args.clusters)
    levels = parse_level_ranges(args.levels, model.num_ws)
    with _pool(args, model) as pool:
        atlas = fit_atlas(model, n=args.n, seed=args.seed, clusters=clusters, level_ranges=levels,
                          learned_steps=args.learned_steps, progress=not args.json,
                          pool=pool)
    path = atlas.save(args.out)
    table = normality_table(space_samples(model, atlas.pnorm, n=min(args.n, 20000), seed=args.seed + 1))
    res = {"atlas": str(path), "meta": atlas.meta, "level_ranges": atlas.level_ranges, "normality": table}
    if atlas.em is not None:
        res["em_mixture_quality"] = atlas.em.quality(model)
    if atlas.learned is not None:
        res["learned_mixture_quality"] = atlas.learned.quality()
    if args.plots:
        res["plot"] = str(plot_marginals(space_samples(model, atlas.pnorm, n=10000, seed=args.seed + 1), args.plots))

    def fmt(d):
        head = f"atlas written to {d['atlas']} (N={d['meta']['n']}, timings {d['meta']['timings']})"
        lines = [head] + [_kv_line(r, ".3f") for r in d["normality"]]
        for kind in ("em", "learned"):
            for level, q in (d.get(f"{kind}_mixture_quality") or {}).items():
                pi = f"  pi={','.join(f'{v:.2f}' for v in q['pi'])}" if "pi" in q else ""
                lines.append(f"{kind} {level}: MMD2={q['mmd2']:.4f} (floor {q['mmd2_floor']:.4f})  "
                             f"classifier accuracy={q['classifier_accuracy']:.3f}  "
                             f"real w per cluster={q['real_w_cluster_sizes']}{pi}")
        return "\n".join(lines)
    _emit(args, res, fmt)
    return 0


def cmd_train(args):
    from .train.run import export_trained, train
    if args.export:
        path = export_trained(args.arch, args.out, args.export)
        _emit(args, {"exported": str(path)}, lambda d: f"exported {d['exported']}")
        return 0
    from .sample import parse_params
    from .train.run import HPARAMS
    hp = parse_params(args.set)
    bad = sorted(set(hp) - set(HPARAMS[args.arch]))
    if bad:
        raise LatentAtlasError(f"--set: unknown hyper-parameter(s) {bad} for {args.arch} "
                               f"({', '.join(HPARAMS[args.arch])})")
    state = train(args.arch, args.out, data_dir=args.data_dir, batch=args.batch,
                  total_kimg=args.kimg, max_minutes=args.minutes, ckpt_minutes=args.ckpt_minutes,
                  seed=args.seed, threads=args.threads, init_from=args.init_from, **hp)
    done = state["nimg"] >= args.kimg * 1000
    _emit(args, state, lambda d: f"stopped at step {d['step']} ({d['nimg'] / 1000:.1f} kimg, "
                                 f"{d['wall_s'] / 3600:.2f} h of training)"
                                 + (f": the run has reached --kimg {args.kimg:g}" if done else ""))
    return 0


def _reference_kw(args) -> dict:
    """--reference / --features / --inception as keyword arguments of the metric functions."""
    return {"reference": getattr(args, "reference", None), "features": getattr(args, "features", None),
            "inception": getattr(args, "inception", None)}


def _add_reference(s):
    s.add_argument("--reference", default=None, metavar="DIR",
                   help="folder of real images to compare with (PNG/JPEG, >= 50, converted to the model's format; "
                        "features cached by content hash). Default: the Fashion-MNIST test split, which only "
                        "Fashion-MNIST models accept")
    s.add_argument("--features", default=None, choices=_extractor_names(),
                   help="feature network for the metrics (default: fashion-features for Fashion-MNIST models; with "
                        "--reference: inception if $LATENTATLAS_INCEPTION is set, else the model's discriminator)")
    s.add_argument("--inception", default=None, metavar="PATH",
                   help="local Inception TorchScript file for --features inception (never downloaded)")


def cmd_serve(args):
    from .serve import serve
    model = _load(args)
    atlas = _atlas(args, model, model.has_mapping, "the model has no W space")   # None: the cached one, when needed
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        log.warning("serving on %s: anyone who can reach this address can use the explorer (no authentication)",
                    args.host)
    serve(model, host=args.host, port=args.port, atlas=atlas, directions=args.directions, report_dir=args.report,
          max_jobs=args.max_jobs, on_ready=lambda url: print(f"latentatlas explorer on {url} (Ctrl-C stops)",
                                                              flush=True))
    return 0


def cmd_evaluate(args):
    from .metrics.suite import evaluate_model
    from .validate import check_fits
    model = _load(args)
    check_fits(args.n, model.img_channels, model.img_resolution, "evaluate")
    res = evaluate_model(model, n=args.n, seed=args.seed, device=model.device, progress=not args.json,
                         **_reference_kw(args))

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
    from .sampling.evaluate import evaluate_sampling, format_table, plot_sampling, save_json
    from .validate import check_fits
    model = _load(args)
    check_fits(args.n, model.img_channels, model.img_resolution, "evaluate-sampling", copies=6)
    args.strategies_given = args.strategies is not None
    names = [s.strip() for s in (args.strategies or "truncation,pca-log,cluster,diamond").split(",") if s.strip()]
    from .sampling import Context
    atlas = _atlas(args, model, model.has_mapping, "the model has no W space")
    if args.protocol and args.strategies_given:
        raise LatentAtlasError("--protocol diamond-table1 fixes the strategies; leave out --strategies")
    if args.param and not args.protocol:
        raise LatentAtlasError("--param applies to --protocol diamond-table1 (diamond settings such as lam=0.2)")
    with _pool(args, model, atlas) as pool:
        kw = dict(n=args.n, seed=args.seed, progress=not args.json, ctx=Context(model, atlas=atlas),
                  pool=pool, **_reference_kw(args))
        if args.protocol:
            from .sample import parse_params
            from .sampling.evaluate import diamond_table1, format_table1
            res = diamond_table1(model, diamond=parse_params(args.param), **kw)
            fmt = format_table1
        else:
            res = evaluate_sampling(model, names, **kw)
            fmt = format_table
    if args.out_dir:
        plot_sampling(res, args.out_dir)
        save_json(res, Path(args.out_dir) / "sampling.json")
    _emit(args, res, fmt)
    return 0


def cmd_invert(args):
    from .inversion import InversionConfig
    from .inversion.files import invert_files
    from .inversion.inits import parse_init
    reg, val = InversionConfig.parse_regularizer(args.regularizer)
    model = _load(args)
    space = args.space or ("wplus" if model.has_mapping else "z")
    init_name, _ = parse_init(args.init)
    if args.warmup_steps is not None and init_name != "multi-start":
        raise LatentAtlasError("--warmup-steps applies to --init multi-start:K only")
    cfg = InversionConfig(space=space, steps=args.steps, lr=args.lr, pixel_loss=args.pixel_loss,
                          perceptual=args.perceptual, perceptual_weight=args.perceptual_weight,
                          regularizer=reg, reg_value=val, init=args.init,
                          warmup_steps=args.warmup_steps or 100, stop_psnr=args.stop_psnr,
                          working_resolution=args.working_resolution, seed=args.seed)
    uses = space == "pnorm+" or reg.startswith("pnorm") or reg == "mahalanobis" or init_name == "multi-start"
    atlas = _atlas(args, model, uses, "only the pnorm+ space, the pnorm/mahalanobis regularisers and "
                                      "multi-start (cluster centres) read an atlas")
    video = _video_format(args.save_video)
    if args.ray is not None and uses and atlas is None:
        from .atlas import get_atlas
        atlas = get_atlas(model, need="mixture" if init_name == "multi-start" else "pnorm", progress=not args.json)
    with _pool(args, model, atlas) as pool:
        summary = invert_files(model, args.inputs, args.out, cfg, batch_size=args.batch_size,
                               resample=args.resample, progress=not args.json, atlas=atlas, min_psnr=args.min_psnr,
                               video=video, pool=pool)

    def fmt(d):
        v = d["verdict"]
        lines = [f"inverted {d['done']} of {d['total']} images ({d['skipped_finished']} already done) into {args.out}"]
        if v["n"]:
            lines.append(f"PSNR over {v['n']} images: mean {v['psnr_mean']:.2f} dB, median {v['psnr_median']:.2f} dB, "
                         f"worst {v['psnr_worst']:.2f} dB ({Path(v['worst_file']).name}); "
                         f"{v['share_ok']:.0%} at >= {v['min_psnr']:g} dB")
            lines += [f"below {v['min_psnr']:g} dB: {b['file']} {b['psnr']:.2f} dB (start: {b['init']})" for b in v["below"]]
        lines += [f"failed: {f['file']}: {f['error']}" for f in d["failed"]]
        return "\n".join(lines)
    _emit(args, summary, fmt)
    if summary["failed"]:
        return 1
    return 3 if summary["verdict"]["below"] else 0


def cmd_train_encoder(args):
    from .inversion.encoder import EncoderConfig, default_path, train_encoder
    model = _load(args)
    cfg = EncoderConfig(steps=args.steps, batch=args.batch, lr=args.lr, rec_weight=args.rec_weight, seed=args.seed)
    out = args.out or default_path(model)
    meta = train_encoder(model, out, cfg, progress=not args.json)
    info = {"out": str(out), "steps": meta["step"], "of": cfg.steps, "seconds": round(meta["seconds"], 1),
            "target": meta["target"], "last": meta["log"][-1] if meta["log"] else None}
    _emit(args, info, lambda d: f"encoder ({d['target']}) trained {d['steps']} of {d['of']} steps "
                                f"({d['seconds']:.0f} s) -> {d['out']}")
    return 0


def _latents(model, spec: str):
    """Codes of a latents .npz (from 'invert' or 'sample --out-dir'): W+ [N, L, D] ('ws') for models
    with a mapping, else z [N, z] (a z-space inversion's 'code'), and row labels."""
    import numpy as np
    import torch

    from .validate import read_npz
    if model.has_mapping:
        return _codes(model, spec)
    z = read_npz(spec, "latents", {"code": ("f", None)})["code"]
    z = torch.from_numpy(np.asarray(z, dtype=np.float32))
    z = z[None] if z.ndim == 1 else z
    if z.ndim != 2 or z.shape[1] != model.z_dim:
        raise LatentAtlasError(f"{spec}: code has shape {list(z.shape)}, model '{model.name}' needs z [N, {model.z_dim}]")
    return z.to(model.device), [f"{Path(spec).stem}[{i}]" for i in range(z.shape[0])]


def _video_format(choice: str | None) -> str | None:
    """--save-video: 'gif', 'mp4', or 'auto' (MP4 when ffmpeg is found, else GIF with a note)."""
    if choice != "auto":
        return choice
    from .imageio import animation_format
    fmt = animation_format("x.mp4", fallback=True)
    if fmt == "gif":
        log.info("no ffmpeg found (apt install ffmpeg, or pip install imageio-ffmpeg): videos are GIFs")
    return fmt


def _check_walk_outputs(args):
    """--out (strip .png or animation) and --video (animation) suffixes, before any work."""
    from .imageio import ANIMATION_SUFFIXES, animation_format
    if Path(args.out).suffix.lower() not in (".png", *ANIMATION_SUFFIXES):
        raise LatentAtlasError(f"--out {args.out}: use .png (strip), .gif or .mp4 (animation)")
    if getattr(args, "video", None):
        animation_format(args.video)     # .gif/.mp4 only; .mp4 without ffmpeg is refused here, not after the work
    if Path(args.out).suffix.lower() in ANIMATION_SUFFIXES:
        animation_format(args.out)


def _save_walk(args, images, mark=None, scale: int = 2) -> list[str]:
    """Write the walk frames [steps, N, C, H, W] to --out and, when given, --video."""
    from .walks.edit import save_strip
    outs = [save_strip(images, args.out, mark=mark, scale=scale)]
    if getattr(args, "video", None):
        outs.append(save_strip(images, args.video, mark=mark, scale=scale))
    return [str(o) for o in outs]


def _add_video(s):
    s.add_argument("--video", default=None, metavar="PATH",
                   help="also write the walk as an animation: .gif (Pillow) or .mp4 (ffmpeg from PATH or the "
                        "imageio-ffmpeg package)")


def cmd_edit(args):
    """Edit saved latents along one direction: rows = latents, columns = amounts."""
    import torch

    from .walks.directions import Directions, parse_direction_ref
    _check_walk_outputs(args)
    model = _load(args)
    path, idx = parse_direction_ref(args.direction)
    dirs = Directions.load(path)
    dirs.check_model(model)
    if not 0 <= idx < len(dirs):
        raise LatentAtlasError(f"direction index {idx} out of range ({path} has {len(dirs)})")
    try:
        amounts = [float(a) for a in args.amounts.split(",") if a.strip()]
    except ValueError:
        raise LatentAtlasError(f"--amounts {args.amounts!r}: expected numbers like -2,-1,0,1,2") from None
    if not amounts or not all(abs(a) < 1e3 for a in amounts):
        raise LatentAtlasError("--amounts needs at least one finite amount (in sigma units, |a| < 1000)")
    codes, _ = _latents(model, args.latents)
    want = "w" if model.has_mapping else "z"
    if dirs.space != want:
        raise LatentAtlasError(f"{path} holds {dirs.space} directions; latents of model '{model.name}' are edited "
                               f"with {want} directions")
    g = dirs.vectors[idx].to(model.device) * float(dirs.sigmas[idx])
    rows = None
    if args.rows:
        if not model.has_mapping:
            raise LatentAtlasError("--rows applies to W+ latents (models with a mapping network)")
        a, sep, b = args.rows.partition(":")
        try:
            rows = (int(a or 0), int(b) if b else model.num_ws) if sep else (int(a), int(a) + 1)
        except ValueError:
            raise LatentAtlasError(f"--rows {args.rows!r}: expected A:B (W+ rows A..B-1) or one row index") from None
        if not 0 <= rows[0] < rows[1] <= model.num_ws:
            raise LatentAtlasError(f"--rows {args.rows}: rows must lie in 0..{model.num_ws - 1}")
    frames = []
    with torch.no_grad():
        for a in amounts:
            if model.has_mapping:
                mask = torch.zeros(model.num_ws, 1, device=model.device)
                mask[slice(*rows) if rows else slice(None)] = 1
                frames.append(model.synthesis(codes + a * mask * g).clamp(-1, 1).cpu())
            else:
                frames.append(model(codes + a * g).clamp(-1, 1).cpu())
    outs = _save_walk(args, torch.stack(frames), scale=args.scale)
    info = {"out": outs[0], "video": outs[1] if len(outs) > 1 else None, "latents": codes.shape[0], "amounts": amounts, "direction": args.direction,
            "rows": list(rows) if rows else None}
    _emit(args, info, lambda d: f"wrote {', '.join(outs)}: {d['latents']} latents x {len(amounts)} amounts")
    return 0


def cmd_directions(args):
    """Options go to the method only where its signature takes them; one it does not take is an
    error, never silently dropped."""
    import inspect

    from .walks.directions import METHODS, compute_directions
    model = _load(args)
    takes = inspect.signature(METHODS[args.method]).parameters
    given = {"k": args.k, "n": args.n, "steps": args.steps, "layer": args.layer}
    kw = {}
    for opt, val in given.items():
        if val is None:
            continue
        name = "layers" if opt == "layer" and "layers" in takes else opt
        if name not in takes:
            raise LatentAtlasError(f"--{opt} does not apply to the {args.method} method (it takes: "
                                   f"{', '.join('--' + p for p in takes if p in ('k', 'n', 'steps', 'layer', 'layers'))})")
        kw[name] = val.split(",") if name == "layers" else val
    if "seed" in takes:
        kw["seed"] = args.seed
    if "progress" in takes:
        kw["progress"] = not args.json
    d = compute_directions(model, args.method, **kw)
    d.save(args.out)
    info = {"out": args.out, "method": d.method, "space": d.space, "k": len(d), "sigmas": d.sigmas.tolist(),
            **{k: v for k, v in d.meta.items() if k not in ("weights_hash",)}}
    _emit(args, info, lambda x: f"wrote {len(d)} {d.method} directions in {d.space} to {args.out}")
    return 0


def cmd_walk(args):
    from .walks.directions import Directions, parse_direction_ref
    from .walks.edit import render_walk, walk_latents
    _check_walk_outputs(args)
    model = _load(args)
    if args.direction is None:
        if args.kind != "great-circle":
            raise LatentAtlasError(f"--kind {args.kind} walks along a direction: give --direction FILE.npz:INDEX "
                                   f"(only --kind great-circle runs without one: Diamond in the rough's walk)")
        if args.extent is not None:
            raise LatentAtlasError("--extent applies to walks along a direction; the great-circle walk without "
                                   "one runs to the protoimage and as far beyond")
        return _protoimage_walk(args, model)
    args.extent = 2.0 if args.extent is None else args.extent
    path, idx = parse_direction_ref(args.direction)
    dirs = Directions.load(path)
    dirs.check_model(model)
    z = model.sample_z(args.n, args.seed)
    base = model.mapping(z).detach() if dirs.space == "w" else z
    lat = walk_latents(model, dirs, idx, base, kind=args.kind, steps=args.steps, extent=args.extent)
    outs = _save_walk(args, render_walk(model, dirs, lat))
    _emit(args, {"out": outs[0], "video": outs[1] if len(outs) > 1 else None}, lambda d: f"wrote {', '.join(outs)}")
    return 0


def _protoimage_walk(args, model):
    """``walk --kind great-circle`` without a direction: Diamond in the rough's great-circle walk
    from each sample through its protoimage (framed in red) and beyond."""
    import torch

    from . import diamond as dm
    model.require_discriminator("the Diamond great-circle walk (its recovery uses the critic's features)")
    z0 = model.sample_z(args.n, args.seed)
    path, mid = dm.protoimage_walk(model, z0, frames=args.steps)
    with torch.no_grad():
        imgs = torch.stack([model(p).clamp(-1, 1).cpu() for p in path])
    outs = _save_walk(args, imgs, mark=[mid] * args.n if mid is not None else None)
    info = {"out": outs[0], "video": outs[1] if len(outs) > 1 else None, "protoimage_frame": mid, "settings": dm.resolve_settings(model)}
    _emit(args, info, lambda d: f"wrote {', '.join(outs)}" + (f" (protoimage at frame {mid}, framed in red)" if mid is not None
                                                      else " (no minibatch-std critic: no protoimage; frames run to 90 degrees)"))
    return 0


def cmd_evaluate_directions(args):
    from .walks.directions import Directions
    from .walks.edit import evaluate_directions
    model = _load(args)
    res = evaluate_directions(model, Directions.load(args.directions), n=args.n, layer=args.layer)

    def fmt(d):
        head = f"{d['method']} directions in {d['space']}: orthogonality error {d['orthogonality_error']:.4f}"
        return "\n".join([head] + [_kv_line(r, ".4g") for r in d["rows"]])
    _emit(args, res, fmt)
    return 0


def cmd_evaluate_inversion(args):
    import torch

    from .data.fashion import load_fashion_mnist
    from .inversion.evaluate import METHODS, diamond_z_inversion, evaluate_inversion
    from .metrics.reference import fits_fashion
    model = _load(args)
    atlas = _atlas(args, model, model.has_mapping, "the model has no W space")
    fashion = fits_fashion(model)
    if args.targets:
        from .data.folder import load_folder
        x, paths, bad = load_folder(args.targets, size=model.img_resolution, channels=model.img_channels)
        for b in bad:
            log.warning("targets: skipped %s (%s)", b.path, b.note)
        real, real_name = x[:args.n], f"images of {args.targets}"
        if len(real) < args.n:
            log.warning("targets: %d readable images in %s, fewer than --n %d", len(real), args.targets, args.n)
    elif fashion:
        x, _ = load_fashion_mnist("test", path=args.data_dir)
        real = x[torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(args.seed))[:args.n]]
        real_name = "test images"
    else:
        raise LatentAtlasError(f"model '{model.name}' is not a Fashion-MNIST model: give the real images to invert with "
                               "--targets DIR (and --reference DIR, --attribute-probe labels.csv for the metrics)")
    setup = {**_reference_kw(args)}
    if args.flip:
        pair = tuple(p.strip() for p in args.flip.split(","))
        if len(pair) != 2 or not all(pair):
            raise LatentAtlasError(f"--flip takes two attribute names A,B; got {args.flip!r}")
        setup["flip"] = pair
    if args.attribute_probe:
        from .metrics.attributes import probe_from_csv
        from .metrics.reference import resolve
        _, ext = resolve(model, folder=args.reference, features=args.features, inception=args.inception,
                         what="evaluate-inversion")
        setup["probe"] = probe_from_csv(args.attribute_probe, model, ext)
    with torch.no_grad():
        gen = model(model.sample_z(args.n, 900_000 + args.seed)).clamp(-1, 1).cpu()
    if not model.has_mapping:
        if args.plots:
            raise LatentAtlasError("--plots shows P-norm+ coordinates, which a Z-only model does not have")
        if args.ray is not None:
            raise LatentAtlasError("--ray splits the W/W+/P-norm+ methods; a Z-only model has one Z recovery per set")
        if args.grid or args.methods:
            raise LatentAtlasError("--grid/--methods choose W/W+/P-norm+ methods; a Z-only model has Diamond's Z "
                                   "recovery only")
        if args.lr != 0.01:
            raise LatentAtlasError("--lr applies to W/W+/P-norm+ inversion; Diamond in the rough's Z recovery "
                                   "runs at its own lr 0.01")
        if args.resume:
            raise LatentAtlasError("--resume keeps the rows of the W/W+/P-norm+ methods; a Z-only model has one Z "
                                   "recovery per set")
        if args.attribute_probe or args.flip or args.reference or args.features:
            raise LatentAtlasError("--attribute-probe/--flip/--reference/--features serve the editing and "
                                   "distribution metrics of W+ embeddings; a Z-only model has Diamond's Z recovery "
                                   "only (reconstruction metrics)")
        rows = [{"targets": name, **diamond_z_inversion(model, t, steps=args.steps, seed=args.seed)}
                for name, t in ((real_name, real), ("generated", gen))]
    else:
        methods = METHODS
        if args.grid and args.methods:
            raise LatentAtlasError("--grid names its own methods; leave out --methods")
        if args.grid:
            from .inversion.evaluate import GRIDS
            methods = GRIDS[args.grid]
        if args.methods:
            want = [m.strip() for m in args.methods.split(",")]
            bad = [m for m in want if m not in METHODS]
            if bad:
                raise LatentAtlasError(f"unknown method(s) {bad}; methods: {', '.join(METHODS)}")
            methods = {k: METHODS[k] for k in want}
        # the supplement's regulariser tables embed real images only (II2S supplement §3: a set of 10
        # representative real images); the protocol table also inverts generated ones
        sets = {real_name: real} if args.grid else {real_name: real, "generated": gen}
        with _pool(args, model, atlas) as pool:
            rows = evaluate_inversion(model, sets, methods=methods,
                                      atlas=atlas, steps=args.steps, lr=args.lr,
                                      progress=sys.stderr.isatty() and not args.json, seed=args.seed,
                                      pool=pool, store=args.resume, **setup)
        if args.plots:
            from .inversion.evaluate import plot_pnorm
            for p in plot_pnorm(rows, args.plots):
                log.info("wrote %s", p)
        rows = [{k: v for k, v in r.items() if not k.startswith("_")} for r in rows]

    def fmt(rows):
        if getattr(args, "grid", None):
            from .inversion.evaluate import grid_table
            return grid_table(rows)
        if "edit_prob_range" in rows[0]:
            from .inversion.evaluate import protocol_table
            return protocol_table(rows)
        cols = list(rows[0])
        return "\n".join(["  ".join(f"{c:>14.14}" for c in cols)] + [
            "  ".join(f"{r[c]:>14.4f}" if isinstance(r[c], float) else f"{str(r[c]):>14.14}" for c in cols) for r in rows])
    _emit(args, rows, fmt)
    return 0


# -- plumbing ---------------------------------------------------------------------------------


def _strategy_names():
    from .sampling import strategy_names
    return strategy_names()


def _strategy_help() -> str:
    """The --strategy table for 'sample --help', generated from the registry."""
    from .sampling import get_strategy, strategy_names
    lines = ["strategies (--strategy NAME, parameters as --param NAME=VALUE, defaults shown):"]
    for name in strategy_names():
        st = get_strategy(name)
        needs = f" [needs: {', '.join(st.needs)}]" if st.needs else ""
        lines.append(f"  {name}: {st.doc}{needs}")
        if st.defaults:
            lines.append("      " + ", ".join(f"{k}={v}" for k, v in st.defaults.items()))
    return "\n".join(lines)


def _table(title: str, rows) -> str:
    """A help epilog: a title line, then '  name: meaning' per row (two-column rows)."""
    return "\n".join([title] + [f"  {a}: {b}" for a, b in rows])


def _invert_help() -> str:
    """The --regularizer and --init tables for 'invert --help', from the registries."""
    from .inversion import REGULARIZER_TABLE
    from .inversion.inits import INIT_TABLE
    regs = [(name + (f":{what}" if what != "-" else ""), f"{doc}" + (f" (default {what}={v:g})" if what != "-" else ""))
            for name, (v, what, doc) in REGULARIZER_TABLE.items()]
    return (_table("regularizers (--regularizer NAME[:VALUE]):", regs) + "\n\n"
            + _table("inits (--init SPEC):", INIT_TABLE.items()))


def _directions_help() -> str:
    """The --method table for 'directions --help': each method's first docstring line and its
    keyword defaults, from the registry."""
    import inspect

    from .walks.directions import METHODS
    rows = []
    for name, fn in METHODS.items():
        doc = (inspect.getdoc(fn) or "").split("\n\n")[0].replace("\n", " ")
        kw = {k: p.default for k, p in inspect.signature(fn).parameters.items()
              if p.kind is p.KEYWORD_ONLY and k not in ("progress", "seed")}
        rows.append((name, doc + (" [" + ", ".join(f"{k}={v}" for k, v in kw.items()) + "]" if kw else "")))
    return _table("methods (--method NAME; options that a method takes, with its defaults, in brackets):", rows)


def _direction_methods():
    from .walks.directions import METHODS
    return list(METHODS)


def _extractor_names():
    from .metrics.features import extractor_names
    return extractor_names()

def _kv_line(row: dict, spec: str) -> str:
    return "  ".join(f"{k}={v:{spec}}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items())


def _emit(args, data, fmt):
    if args.json:
        print(json.dumps(data, indent=2, default=str))
    else:
        print(fmt(data))


# Help for options that several commands share or that read the same everywhere; an option
# given its own help= keeps it. Every option ends up with help text (tested).
_OPTION_HELP = {
    "model": "bundled model name (see 'latentatlas models') or checkpoint path",
    "n": "number of samples / images (default %(default)s)",
    "seed": "first seed; latent i is named by seed SEED+i (default %(default)s)",
    "features": "feature extractor for the metrics (default %(default)s)",
    "strategies": "comma-separated strategies to sweep (default %(default)s)",
    "out_dir": "directory for the JSON results and plots",
    "space": "latent space optimised: z (on the sqrt(n)-sphere), w, wplus, pnorm+ (default %(default)s)",
    "steps": "optimisation / walk steps (default %(default)s)",
    "lr": "Adam learning rate (default %(default)s)",
    "pixel_loss": "pixel loss at the working resolution (default %(default)s)",
    "perceptual": "perceptual distance: the model's discriminator features, fashion-features, "
                  "or lpips (only with local weights) (default %(default)s)",
    "perceptual_weight": "weight of the perceptual term (default %(default)s)",
    "working_resolution": "resolution at which losses are computed (default: the model's)",
    "batch_size": "images optimised together (default %(default)s)",
    "method": "direction discovery method",
    "kind": "walk kind (default %(default)s)",
    "layer": "named layer (see 'models --inspect'): split layer for G1 features / DP-LaSE",
    "data_dir": "directory with the Fashion-MNIST idx files (default: Debian path or "
                "$LATENTATLAS_FASHION_MNIST)",
    "batch": "training batch size (default %(default)s)",
    "ckpt_minutes": "minutes between checkpoints (default %(default)s)",
}


def _fill_help(parser: argparse.ArgumentParser):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sp in action.choices.values():
                _fill_help(sp)
        elif action.help is None and action.dest in _OPTION_HELP:
            action.help = _OPTION_HELP[action.dest]


class _Parser(argparse.ArgumentParser):
    """Usage errors in one line, like every other error (exit code 2)."""

    def error(self, message):
        print(f"latentatlas: error: {self.prog}: {message} (see --help)", file=sys.stderr)
        raise SystemExit(2)


def build_parser() -> argparse.ArgumentParser:
    def global_options(defaults: bool) -> argparse.ArgumentParser:
        # The same options before or after the subcommand; after it they default to SUPPRESS so
        # that a value given before the subcommand is not overwritten by the default.
        g = argparse.ArgumentParser(add_help=False)
        d = (lambda v: v) if defaults else (lambda v: argparse.SUPPRESS)
        g.add_argument("--device", default=d("auto"), help="auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N or mps "
                                                         "(default: auto)")
        g.add_argument("--json", action="store_true", default=d(False), help="machine-readable output on stdout")
        g.add_argument("--debug", action="store_true", default=d(False), help="show tracebacks and debug logging")
        return g

    common = global_options(False)
    p = _Parser(prog="latentatlas", parents=[global_options(True)],
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
                       epilog=_strategy_help(), formatter_class=argparse.RawDescriptionHelpFormatter,
                       description="Generate images. Latent i is named by seed SEED+i, so the same "
                                   "seed gives the same images on any device and batch size.")
    s.add_argument("--model", required=True, help="bundled model name or checkpoint path")
    s.add_argument("--n", type=_positive_int, default=None, help="number of images (default 64)")
    s.add_argument("--seed", type=_seed, default=0, help="first seed (default 0)")
    s.add_argument("--seeds", default=None, metavar="LIST",
                   help="explicit seeds instead of --n/--seed, e.g. 0-7,42")
    s.add_argument("--noise-mode", default=None, choices=["const", "random", "none"],
                   help="StyleGAN2 per-pixel noise: const (stored buffers, default), random, none")
    s.add_argument("--scale", type=_positive_int, default=None,
                   help="grid pixel scale (default: about 512 px wide, at most 8x)")
    s.add_argument("--grid", action="store_true",
                   help="with --strategy multilevel: render the multi-level (Katzir et al. Fig. 1) block of "
                        "cluster centres on the base code of --seed; levels fixed with --param show only that cluster")
    s.add_argument("--truncation-psi", type=_finite_float, default=1.0,
                   help="psi-truncation toward the mean w (W-space models only; default 1 = off)")
    s.add_argument("--truncation-cutoff", type=_positive_int, default=None,
                   help="truncate only the first K layers of W+ (default: all)")
    s.add_argument("--strategy", default=None, help="sampling strategy (parameters and defaults below)")
    s.add_argument("--param", action="append", metavar="NAME=VALUE",
                   help="strategy parameter, repeatable (e.g. --param psi=0.7, --param tau=2, --param sigma=auto)")
    s.add_argument("--batch-size", type=_positive_int, default=64, help="images per forward pass")
    s.add_argument("--out", help="grid PNG to write")
    s.add_argument("--out-dir", help="directory for one PNG per image plus latents.npz")
    s.add_argument("--nrow", type=_positive_int, default=None, help="images per grid row")
    _add_ray(s, "the batches of --out-dir")
    s.set_defaults(fn=cmd_sample)

    s = sub.add_parser("report", parents=[common], help="write the HTML report for a model",
                       description="Write a self-contained HTML report (model card, samples, and "
                                   "every analysis section available for the model) to OUT/index.html.")
    s.add_argument("--model", default="fashion-stylegan2", help="bundled model name or checkpoint path")
    s.add_argument("--out", required=True, help="output directory")
    s.add_argument("--n", type=_positive_int, default=64, help="samples in the grid")
    s.add_argument("--seed", type=_seed, default=0, help="first seed")
    s.add_argument("--sections", default=None,
                   help="comma-separated subset: model, samples, quality, latent-space, sampling, inversion, walks")
    from .report.html import PROFILES, profile_sizes
    s.add_argument("--profile", default="full", choices=list(PROFILES),
                   help=f"full: every section at report size ({profile_sizes('full')}; on a 2-core CPU about 10 min "
                        "the first time, when the model's atlas and mean protoimage are computed and cached, less "
                        "afterwards); thorough: "
                        f"{profile_sizes('thorough')} (~2x the time, less sampling noise); quick: small n and a "
                        f"thinned sweep for a fast look ({profile_sizes('quick')}; about 3 min the first time)")
    _add_reference(s)
    _add_ray(s, "the sampling sweep's points")
    s.set_defaults(fn=cmd_report)

    s = sub.add_parser("evaluate", parents=[common], help="FID, KID, precision/recall, density/coverage of a model",
                       description="Generate N samples and compare them with a real image set in a feature space: "
                                   "FID, KID, precision, recall (k=3), density, coverage, and the predicted class "
                                   "histogram with the Fashion-MNIST classifier. The real set is the Fashion-MNIST "
                                   "test split for models trained on it, else --reference DIR.")
    s.add_argument("--model", required=True)
    s.add_argument("--n", type=_positive_int, default=10000)
    _add_reference(s)
    s.add_argument("--seed", type=_seed, default=0)
    s.set_defaults(fn=cmd_evaluate)

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
    s.add_argument("--n", type=_positive_int, default=10000)
    s.add_argument("--seed", type=_seed, default=0)
    s.add_argument("--out-dir", default=None)
    _add_reference(s)
    _add_ray(s, "one task per strategy and parameter point")
    s.set_defaults(fn=cmd_evaluate_sampling)

    s = sub.add_parser("invert", parents=[common], help="embed images into a latent space (batched)",
                       description="Embed images (files or a directory) into Z, W, W+ or P-norm+ with the chosen "
                                   "losses and regulariser, all images of a batch optimised together with "
                                   "per-image schedules and early stopping. Writes per image NAME.npz (code, "
                                   "config, weights hash), NAME.png (reconstruction) and NAME.json (PSNR, "
                                   "SSIM, RMSE, perceptual distance). Rerunning skips finished images. Images "
                                   "of another size or channel count are converted (noted); unreadable files "
                                   "are reported and skipped.",
                       epilog=_invert_help(), formatter_class=argparse.RawDescriptionHelpFormatter)
    s.add_argument("inputs", nargs="+", help="image files or directories")
    s.add_argument("--model", required=True)
    s.add_argument("--space", default=None, choices=["z", "w", "wplus", "pnorm+"],
                   help="latent space optimised: z (on the sqrt(n)-sphere), w, wplus, pnorm+ "
                        "(default: wplus for models with a mapping network, z otherwise)")
    s.add_argument("--regularizer", default="none",
                   help="none | pnorm-clip[:c] | pnorm-project[:r] | pnorm-l2[:weight] | mahalanobis[:weight] | sphere[:beta]")
    s.add_argument("--steps", type=_positive_int, default=1200,
                   help="Adam optimisation steps per image (default %(default)s)")
    s.add_argument("--lr", type=_finite_float, default=0.01)
    s.add_argument("--pixel-loss", default="mse", choices=["mse", "l1"])
    s.add_argument("--perceptual", default="discriminator", choices=["discriminator", "fashion-features", "lpips", "none"])
    s.add_argument("--perceptual-weight", type=_finite_float, default=0.1)
    s.add_argument("--init", default="best-of:256",
                   help="where each image starts: mean (mean w), best-of:N (nearest of N samples and the atlas's "
                        "cluster centres by the inversion's own distance), multi-start:K[:N] (K nearest optimised "
                        "together for --warmup-steps, best kept), encoder[:PATH] (see train-encoder) "
                        "(default %(default)s)")
    s.add_argument("--warmup-steps", type=_positive_int, default=None,
                   help="multi-start: steps all K starts run before each image keeps its best (default 100)")
    s.add_argument("--stop-psnr", type=_finite_float, default=None,
                   help="also stop an image once its reconstruction reaches this PSNR (dB)")
    s.add_argument("--min-psnr", type=_finite_float, default=None,
                   help="an image below this PSNR is reported as not found (default: 25 dB up to 64 px, "
                        "22 dB up to 256 px, 20 dB above); exit code 3 when any is below")
    s.add_argument("--save-video", nargs="?", const="auto", default=None, choices=["auto", "gif", "mp4"],
                   help="also write NAME.mp4 / NAME.gif: the target beside the reconstruction over the optimisation "
                        "(~60 frames; bare --save-video: MP4 when ffmpeg is found, else GIF)")
    s.add_argument("--working-resolution", type=_positive_int, default=None)
    s.add_argument("--resample", default="lanczos", help="filter for resizing inputs: lanczos, bicubic, bilinear, box, nearest")
    s.add_argument("--batch-size", type=_positive_int, default=32)
    s.add_argument("--seed", type=_seed, default=0)
    s.add_argument("--out", required=True, help="output directory")
    _add_ray(s, "the batches")
    s.set_defaults(fn=cmd_invert)

    s = sub.add_parser("train-encoder", parents=[common], help="train a per-model encoder that starts inversions",
                       description="Train a small encoder (image -> P-norm+ coordinates of W+, or z for models without "
                                   "a mapping) on the model's own samples: latent regression, then also the "
                                   "reconstruction through the frozen generator. Resumable (rerun the same command), "
                                   "checkpoints on SIGTERM. Stored next to the cached atlas unless --out is given; "
                                   "use it with 'invert --init encoder' (or encoder:PATH).")
    from .inversion.encoder import EncoderConfig
    s.add_argument("--model", required=True)
    s.add_argument("--steps", type=_positive_int, default=EncoderConfig.steps, help="training steps (default %(default)s)")
    s.add_argument("--batch", type=_positive_int, default=EncoderConfig.batch, help="batch size (default %(default)s)")
    s.add_argument("--lr", type=_finite_float, default=EncoderConfig.lr, help="Adam learning rate (default %(default)s)")
    s.add_argument("--rec-weight", type=_finite_float, default=EncoderConfig.rec_weight,
                   help=f"weight of the image reconstruction term, on after {EncoderConfig.rec_from * 100:.0f}%% of the steps "
                        "(default %(default)s)")
    s.add_argument("--seed", type=_seed, default=0)
    s.add_argument("--out", default=None, help="encoder file .pt (default: next to the model's cached atlas)")
    s.set_defaults(fn=cmd_train_encoder)

    s = sub.add_parser("edit", parents=[common], help="edit saved latents along a direction (strip)",
                       description="Move latents saved by 'invert' or 'sample --out-dir' along one direction by "
                                   "the given amounts (in units of the direction's sigma) and render a strip: "
                                   "rows = latents, columns = amounts (.png) or an animation over amounts (.gif). "
                                   "W+ latents move in every row unless --rows picks some (GANSpace's layer-wise "
                                   "edits).")
    s.add_argument("latents", help="latents .npz (from invert or sample --out-dir)")
    s.add_argument("--model", required=True)
    s.add_argument("--direction", required=True, help="FILE.npz:INDEX (from 'directions')")
    s.add_argument("--amounts", default="-2,-1,0,1,2", help="comma-separated amounts in sigma (default %(default)s)")
    s.add_argument("--rows", default=None, help="W+ rows edited: A:B (rows A..B-1) or one index (default: all)")
    s.add_argument("--scale", type=_positive_int, default=2, help="pixel scale of the strip (default %(default)s)")
    s.add_argument("--out", required=True, help="strip .png, or animation .gif / .mp4")
    _add_video(s)
    s.set_defaults(fn=cmd_edit)

    s = sub.add_parser("directions", parents=[common], help="compute latent directions (GANSpace, SeFa, DP-LaSE, ...)",
                       description="Compute a set of latent directions and save them (.npz, unit vectors, "
                                   "per-direction sigma, metadata). ganspace: PCA of w (or of --layer's "
                                   "activations); sefa: closed form from style affine weights (--layer: "
                                   "comma-separated style layers); dplase: learned with the density model at "
                                   "split --layer; mean-diff / linear-classifier: per Fashion-MNIST class from "
                                   "the feature network's predictions; diamond: toward the mean protoimage (Z).",
                       epilog=_directions_help(), formatter_class=argparse.RawDescriptionHelpFormatter)
    s.add_argument("--method", required=True, choices=_direction_methods())
    s.add_argument("--model", required=True)
    s.add_argument("--k", type=_positive_int, default=None,
                   help="number of directions (ganspace, sefa: 10; dplase: 5 by default)")
    s.add_argument("--n", type=_positive_int, default=None,
                   help="samples the directions are fitted on (ganspace, mean-diff, linear-classifier; default 20000)")
    s.add_argument("--layer", default=None, help="named layer (see 'models --inspect'); e.g. b8")
    s.add_argument("--steps", type=_positive_int, default=None,
                   help="training steps: dplase discovery (default 1500), linear-classifier fitting (default 300)")
    s.add_argument("--seed", type=_seed, default=0)
    s.add_argument("--out", required=True, help="directions file (.npz)")
    s.set_defaults(fn=cmd_directions)

    s = sub.add_parser("mix", parents=[common], help="style mixing of seeds or saved latents by level",
                       description="Style mixing: a grid whose first row holds the column codes and first "
                                   "column the row codes; cell (i, j) takes W+ rows 0..split-1 from row code i "
                                   "and the rest from column code j. Codes are seeds (0-3,7) or a latents .npz "
                                   "(from 'sample --out-dir' or 'invert').")
    s.add_argument("rows", help="row codes: seeds like 0-3,7 or a latents .npz")
    s.add_argument("cols", help="column codes: seeds like 10-13 or a latents .npz")
    s.add_argument("--model", required=True)
    s.add_argument("--split", default="coarse",
                   help="rows taken from the row codes: coarse, medium (coarse+medium), fine or a W+ row index "
                        "(default %(default)s)")
    s.add_argument("--out", required=True, help="grid .png")
    s.add_argument("--scale", type=_positive_int, default=None, help="grid pixel scale (default: about 512 px wide)")
    s.set_defaults(fn=cmd_mix)

    s = sub.add_parser("walk", parents=[common], help="render a walk along a direction (strip, GIF or MP4)",
                       description="Walk N samples along one direction from -extent to +extent sigma. linear: "
                                   "straight line; dp: density-preserving (norm-preserving in Z, the learned "
                                   "DP-LaSE walk in W); great-circle: on the sqrt(n)-sphere (Z directions), or "
                                   "without --direction Diamond in the rough's walk: recover z1, run Algorithm 1 to "
                                   "the protoimage, lay the frames along that great circle through it (framed "
                                   "in red, centre) to the same angle beyond.")
    s.add_argument("--model", required=True)
    s.add_argument("--direction", default=None,
                   help="FILE.npz:INDEX (required except for --kind great-circle, which without it walks "
                        "Diamond in the rough's great circle from each sample through its protoimage)")
    s.add_argument("--kind", default="linear", choices=["linear", "dp", "great-circle"])
    s.add_argument("--steps", type=_positive_int, default=9, help="frames along the walk, endpoints included (default %(default)s)")
    s.add_argument("--extent", type=_finite_float, default=None, help="walk to +-extent sigma (default 2)")
    s.add_argument("--n", type=_positive_int, default=4, help="samples (rows)")
    s.add_argument("--seed", type=_seed, default=0)
    s.add_argument("--out", required=True, help="strip .png, or animation .gif / .mp4")
    _add_video(s)
    s.set_defaults(fn=cmd_walk)

    s = sub.add_parser("evaluate-directions", parents=[common], help="measure a direction set",
                       description="Density drift along linear vs density-preserving walks (log-density under "
                                   "the learned CDF model), orthogonality of the set, G1 feature variation per "
                                   "direction, number of class probabilities each direction moves, class flips, "
                                   "and perceptual path length.")
    s.add_argument("--model", required=True)
    s.add_argument("--directions", required=True, help="directions file (.npz)")
    s.add_argument("--n", type=_positive_int, default=64)
    s.add_argument("--layer", default=None)
    s.set_defaults(fn=cmd_evaluate_directions)

    s = sub.add_parser("evaluate-inversion", parents=[common], help="the II2S evaluation table for inversion methods",
                       description="Invert N real images (held-out Fashion-MNIST test images, or --targets DIR) and N "
                                   "generated images with W, W+, "
                                   "P-norm+ and the regularised variants, and report reconstruction (PSNR, SSIM, "
                                   "RMSE, perceptual), editing strength along GANSpace directions read by an "
                                   "attribute estimator (the feature network's classes, or --attribute-probe), the "
                                   "flip rate of one named attribute, PPL of the embeddings, style-mixing FID, "
                                   "interpolation FID (W+ and P-norm+) and P-norm+ outlier share. On a Z-only "
                                   "model (fashion-wgangp) it runs Z inversion with Diamond in the rough's recovery (§3.1).")
    s.add_argument("--model", required=True)
    s.add_argument("--n", type=_positive_int, default=100, help="images per target set (default %(default)s)")
    s.add_argument("--steps", type=_positive_int, default=1200,
                   help="optimisation steps per image (default %(default)s, II2S's protocol)")
    s.add_argument("--lr", type=_finite_float, default=0.01, help="Adam learning rate (default %(default)s, II2S's protocol)")
    s.add_argument("--methods", default=None, help="comma-separated subset of the method names")
    s.add_argument("--grid", default=None, choices=["supplement"],
                   help="supplement: II2S's Tables 6-7 grid (clip 1/2/5/7/10, project 1/3/5/10, L2 1e-8..1e-5 and "
                        "plain W+) on the real images only, as the supplement did, printed as reconstruction + style mixing + "
                        "interpolation + edit range")
    s.add_argument("--plots", default=None, metavar="DIR",
                   help="write histograms of the embeddings' P-norm+ coordinates (first 10 dimensions and the rest)")
    s.add_argument("--data-dir", default=None)
    s.add_argument("--targets", default=None, metavar="DIR",
                   help="real images to invert (the first N, sorted by name); default: N random images of the "
                        "Fashion-MNIST test split, for Fashion-MNIST models only")
    _add_reference(s)
    s.add_argument("--attribute-probe", default=None, metavar="CSV",
                   help="labelled images ('path,label' rows, paths relative to the CSV) to fit a linear probe on the "
                        "metric features: the attribute estimator that reads the edits and the flip test (required "
                        "for models other than Fashion-MNIST ones, which default to the feature network's classes)")
    s.add_argument("--flip", default=None, metavar="A,B",
                   help="the flip test's two attributes (default Sneaker,Sandal; with a probe: its first two labels)")
    s.add_argument("--resume", default=None, metavar="DIR",
                   help="keep each finished (target set, method) row in DIR; the same command with the same DIR "
                        "again skips the rows already there, so an interrupted run (the n = 100 protocol takes "
                        "hours on a CPU) continues where it stopped")
    s.add_argument("--seed", type=_seed, default=0)
    _add_ray(s, "one task per method and target set")
    s.set_defaults(fn=cmd_evaluate_inversion)

    s = sub.add_parser("serve", parents=[common], help="explore the latent space in the browser",
                       description="Serve the explorer page on http://127.0.0.1:PORT/: sample grids, sliders along "
                                   "direction sets (GANSpace, SeFa, and any --directions file such as DP-LaSE), "
                                   "sampling strategies side by side, walks with playback, and upload-and-edit "
                                   "(inversion as a background job, latent download and re-upload). Nothing is "
                                   "fetched from outside the machine; uploads are size- and pixel-limited and kept "
                                   "in a temporary directory removed at exit.")
    s.add_argument("--model", required=True, help="bundled model name or checkpoint path")
    s.add_argument("--atlas", default=None, help="atlas .npz for the strategies that need one (default: the cached one)")
    s.add_argument("--directions", action="append", default=None, metavar="FILE.npz",
                   help="extra direction set for the sliders and walks (repeatable)")
    s.add_argument("--report", default=None, metavar="DIR", help="a report directory to link (its files are served)")
    s.add_argument("--host", default="127.0.0.1", help="address to bind (default %(default)s: this machine only)")
    s.add_argument("--port", type=int, default=8000, help="port (default %(default)s; 0 = any free port)")
    s.add_argument("--max-jobs", type=_positive_int, default=8,
                   help="inversions queued or running at once; more are answered 429 (default %(default)s)")
    s.set_defaults(fn=cmd_serve)

    s = sub.add_parser("convert", parents=[common], help="convert a checkpoint (latentatlas, safetensors, rosinality)",
                       description="Read any supported checkpoint (NVIDIA pickles, rosinality .pt, PGAN, BigGAN, "
                                   "latentatlas .pt/.safetensors) and write it as --to: latentatlas (.pt, tensors "
                                   "and plain config that torch.load(weights_only=True) reads), safetensors (no "
                                   "pickle at all), or rosinality (a stylegan2-pytorch .pt with g_ema, d, "
                                   "latent_avg, args, for e4e/pSp/GANSpace-style tools; StyleGAN2 only).")
    s.add_argument("input", help="checkpoint to read")
    s.add_argument("output", help="file to write (.pt, or .safetensors for --to safetensors)")
    from .models.registry import EXPORT_LAYOUTS
    s.add_argument("--to", default=None, choices=EXPORT_LAYOUTS,
                   help="output layout (default: from the suffix: .safetensors -> safetensors, .pt -> latentatlas)")
    s.set_defaults(fn=cmd_convert)

    s = sub.add_parser("fit", parents=[common], help="fit the latent-space atlas (P-norm PCA, mixtures)",
                       description="Map N latents, fit the Gaussian of P space and its PCA whitening "
                                   "(P-norm), the EM mixture per level, and save everything with the "
                                   "model's weights hash to an .npz atlas. Prints W/P/P-norm normality "
                                   "diagnostics.")
    s.add_argument("--model", help="bundled model name or checkpoint path")
    s.add_argument("--n", type=_positive_int, default=100_000, help="latents to map (default 100000)")
    s.add_argument("--seed", type=_seed, default=0)
    s.add_argument("--out", help="atlas file (.npz)")
    s.add_argument("--inspect", metavar="ATLAS", help="print what an atlas file records (N, seed, levels, "
                                                       "clusters, steps, versions, timings) and exit")
    s.add_argument("--clusters", default=None, help="clusters per level, e.g. coarse=8,medium=8,fine=8 (all 0: the P-norm statistics only, no mixture)")
    s.add_argument("--levels", default=None, help="W+ rows per level, e.g. coarse=0:3,medium=3:6,fine=6:8")
    s.add_argument("--plots", default=None, metavar="PNG", help="also write marginal histograms / joint plots")
    from .defaults import LEARNED_STEPS
    s.add_argument("--learned-steps", type=int, default=LEARNED_STEPS,
                   help="training steps of the learned multi-level mixture per level (default %(default)s; 0 = EM "
                        "baseline only)")
    _add_ray(s, "the mapping and moments (shards summed exactly; the mixtures are fitted here)")
    s.set_defaults(fn=cmd_fit)

    s = sub.add_parser("train", parents=[common], help="train a bundled architecture on Fashion-MNIST",
                       description="Train (or resume) stylegan2 or wgangp on Fashion-MNIST. Checkpoints "
                                   "go to OUT/checkpoint.pt every --ckpt-minutes with a sample grid; "
                                   "running the same command again resumes. --export FILE writes the "
                                   "EMA generator + discriminator from OUT in latentatlas format.")
    s.add_argument("arch", choices=["stylegan2", "wgangp"], help="architecture to train")
    s.add_argument("--data", default="fashion-mnist", choices=["fashion-mnist"], help="training set")
    s.add_argument("--data-dir", help="directory with the idx files (default: Debian path or $LATENTATLAS_FASHION_MNIST)")
    s.add_argument("--out", required=True, help="run directory (checkpoints, grids, log)")
    s.add_argument("--batch", type=_positive_int, default=32)
    s.add_argument("--kimg", type=_finite_float, default=1000,
                   help="stop once the run (all sessions together) has seen this many thousand images "
                        "(default 1000; raise it to resume a run that reached it)")
    s.add_argument("--minutes", type=_finite_float, default=None, help="stop after this many minutes")
    s.add_argument("--ckpt-minutes", type=_finite_float, default=5.0)
    s.add_argument("--seed", type=_seed, default=0)
    s.add_argument("--threads", type=_positive_int, default=None, help="torch CPU threads")
    s.add_argument("--export", metavar="FILE", help="export the run in OUT to FILE and exit")
    s.add_argument("--init-from", metavar="FILE", default=None,
                   help="without a checkpoint in OUT, warm-start from an exported model (fresh optimisers)")
    s.add_argument("--set", action="append", default=None, metavar="NAME=VALUE",
                   help="hyper-parameter of the recipe (stylegan2: lr, r1_gamma, r1_every, mixing_prob, ema_kimg; "
                        "wgangp: lr, gp_weight, n_critic, ema_kimg); a resumed run keeps its own unless set, and "
                        "says what changed (branch a run by copying its checkpoint to a new --out first)")
    s.set_defaults(fn=cmd_train)
    for name in ("sample", "invert", "evaluate-sampling", "evaluate-inversion", "report"):
        sub.choices[name].add_argument("--atlas", metavar="FILE", default=None,
                                       help="atlas from 'latentatlas fit' (default: the cached one for the model; "
                                            "fitted, with a notice, when there is none)")
    for name, sp in sub.choices.items():
        if any(a.dest == "model" for a in sp._actions):
            sp.add_argument("--class", dest="class_label", default=None, metavar="K",
                            help="class label for class-conditional models (NVIDIA conditional, BigGAN); "
                                 "'all' cycles through the classes (e.g. an atlas over all classes)")
            sp.add_argument("--truncation", type=_finite_float, default=None, metavar="T",
                            help="BigGAN truncation in (0, 1]: scales z and selects the batch-norm statistics")
    _fill_help(p)
    return p


# options whose value may start with a minus sign (a list of signed numbers like -2,-1,0,1,2)
_SIGNED_LISTS = ("--amounts",)


def _join_signed(argv: list[str]) -> list[str]:
    """``--amounts -2,0,2`` -> ``--amounts=-2,0,2`` so argparse does not read the value as an option."""
    out, i = [], 0
    while i < len(argv):
        a = argv[i]
        if a in _SIGNED_LISTS and i + 1 < len(argv) and argv[i + 1][:1] == "-" and argv[i + 1][1:2].isdigit():
            out.append(f"{a}={argv[i + 1]}")
            i += 2
            continue
        out.append(a)
        i += 1
    return out


def main(argv=None) -> int:
    from .runtime import tune_allocator
    tune_allocator()
    parser = build_parser()
    try:
        args = parser.parse_args(_join_signed(list(sys.argv[1:] if argv is None else argv)))
    except SystemExit as e:      # --help (0) or a usage error (2, already printed in one line)
        return int(e.code or 0)
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    if not getattr(args, "fn", None):
        parser.print_help()
        return 2
    try:
        _check_outputs(args)
        return args.fn(args) or 0
    except LatentAtlasError as e:
        if args.debug:
            raise
        print(f"latentatlas: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("latentatlas: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:      # output piped into e.g. `head`
        return 0
    except MemoryError:
        if args.debug:
            raise
        print(f"latentatlas: error: {args.command}: out of memory (use a smaller --n or --batch-size)", file=sys.stderr)
        return 2
    except Exception as e:   # errors from dependencies (PIL, torch, numpy, zipfile): one line, no traceback
        if args.debug:
            raise
        what = str(e).strip().splitlines()[0][:300] if str(e).strip() else ""
        print(f"latentatlas: error: {args.command}: {type(e).__name__}: {what} (--debug shows the traceback)",
              file=sys.stderr)
        return 2


# Output options and what they name: checked before any work starts. A command whose option of
# the same name means something else says so in _OUTPUTS_OF.
_OUTPUTS = {"out": None, "out_dir": "dir", "output": "file", "plots": "file"}
_OUTPUTS_OF = {"evaluate-inversion": {"plots": "dir"}}


def _check_outputs(args):
    from .validate import check_output
    for dest, kind in {**_OUTPUTS, **_OUTPUTS_OF.get(args.command, {})}.items():
        value = getattr(args, dest, None)
        if isinstance(value, str) and value:
            check_output(value, kind)


if __name__ == "__main__":
    sys.exit(main())
