"""invert: embed images in a latent space; refine: pivotal tuning around inversions; train-encoder:
the per-model encoder that starts inversions."""
from __future__ import annotations

import argparse
from pathlib import Path

from ...errors import LatentAtlasError
from ...inversion import REGULARIZER_TABLE, InversionConfig
from ...inversion.encoder import EncoderConfig, default_path, train_encoder
from ...inversion.files import invert_files
from ...inversion.inits import INIT_TABLE, parse_init
from ...inversion.memory import parse_size
from ...inversion.refine import RefineConfig, refine_files
from ..options import (
    add_atlas,
    add_model_options,
    add_ray,
    atlas_option,
    emit,
    finite_float,
    help_table,
    load_model,
    pool_for,
    positive_int,
    seed_int,
    video_format,
)


def add_invert(sub, common):
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
    s.add_argument("--steps", type=positive_int, default=1200,
                   help="Adam optimisation steps per image (default %(default)s)")
    s.add_argument("--lr", type=finite_float, default=0.01)
    s.add_argument("--pixel-loss", default="mse", choices=["mse", "l1"])
    s.add_argument("--perceptual", default="discriminator", choices=["discriminator", "fashion-features", "lpips", "none"])
    s.add_argument("--perceptual-weight", type=finite_float, default=0.1)
    s.add_argument("--init", default="best-of:256",
                   help="where each image starts: mean (mean w), best-of:N (nearest of N samples and the atlas's "
                        "cluster centres by the inversion's own distance), multi-start:K[:N] (K nearest optimised "
                        "together for --warmup-steps, best kept), encoder[:PATH] (see train-encoder) "
                        "(default %(default)s)")
    s.add_argument("--warmup-steps", type=positive_int, default=None,
                   help="multi-start: steps all K starts run before each image keeps its best (default 100)")
    s.add_argument("--stop-psnr", type=finite_float, default=None,
                   help="also stop an image once its reconstruction reaches this PSNR (dB)")
    s.add_argument("--min-psnr", type=finite_float, default=None,
                   help="an image below this PSNR is reported as not found (default: 25 dB up to 64 px, "
                        "22 dB up to 256 px, 20 dB above); exit code 3 when any is below")
    s.add_argument("--save-video", nargs="?", const="auto", default=None, choices=["auto", "gif", "mp4"],
                   help="also write NAME.mp4 / NAME.gif: the target beside the reconstruction over the optimisation "
                        "(~60 frames; bare --save-video: MP4 when ffmpeg is found, else GIF)")
    s.add_argument("--working-resolution", type=positive_int, default=None)
    s.add_argument("--resample", default="lanczos", help="filter for resizing inputs: lanczos, bicubic, bilinear, box, nearest")
    s.add_argument("--batch-size", type=positive_int, default=32,
                   help="images optimised together (default %(default)s), cut to what --max-memory holds")
    s.add_argument("--max-memory", default=None, metavar="SIZE",
                   help="memory the batch may hold for its backward pass, e.g. 8G or 500M (default: half of the "
                        "memory free); measured per image before the work starts and logged")
    s.add_argument("--seed", type=seed_int, default=0)
    s.add_argument("--out", required=True, help="output directory")
    s.add_argument("--refine", type=positive_int, default=None, metavar="STEPS",
                   help="then refine each inversion for STEPS steps of pivotal tuning (PTI; see 'refine --help'): "
                        "NAME.refine.safetensors (a weight delta), NAME.refined.png, the before/after metrics in NAME.json")
    add_ray(s, "the batches")
    add_atlas(s)
    add_model_options(s)
    s.set_defaults(fn=run_invert)


def add_refine(sub, common):
    s = sub.add_parser("refine", parents=[common], help="pivotal tuning (PTI) of the generator around inversions",
                       description="Refine the inversions of an 'invert' output folder (Roich et al. 2022, pivotal "
                                   "tuning): each image's code stays fixed as the pivot and the synthesis weights are "
                                   "tuned, per image, so it reproduces the image (pixel L2 + the perceptual distance), "
                                   "with a locality regulariser keeping the generator unchanged away from the pivot so "
                                   "edits stay on the manifold. Per image: NAME.refine.safetensors (the weight delta, "
                                   "never a model copy), NAME.refined.png and a 'refine' record (PSNR/SSIM/perceptual "
                                   "before and after) in NAME.json. Use the delta with 'edit --refined' / 'walk "
                                   "--refined' or latentatlas.inversion.refine.load_refined. Memory: per image 3x the "
                                   "synthesis weights (delta + Adam moments; fashion-stylegan2 ~16 MB) plus the "
                                   "batch's activations for the backward pass. Images already refined are skipped.")
    s.add_argument("folder", help="an 'invert' output folder (NAME.npz + NAME.json per image)")
    s.add_argument("--model", required=True)
    s.add_argument("--steps", type=positive_int, default=RefineConfig.steps, help="tuning steps (default %(default)s)")
    s.add_argument("--lr", type=finite_float, default=RefineConfig.lr, help="Adam learning rate (default %(default)s)")
    s.add_argument("--perceptual", default="discriminator", choices=["discriminator", "fashion-features", "lpips", "none"])
    s.add_argument("--locality", type=finite_float, default=RefineConfig.locality,
                   help="weight of the locality regulariser, 0 = off (default %(default)s, PTI's)")
    s.add_argument("--batch-size", type=positive_int, default=8, help="images tuned together (default %(default)s)")
    s.add_argument("--seed", type=seed_int, default=0)
    add_model_options(s)
    s.set_defaults(fn=run_refine)


def _refine_summary(d):
    if not d["refined"]:
        return f"nothing to refine ({d['skipped']} already refined)"
    return (f"refined {d['refined']} images ({d['skipped']} already refined): median PSNR "
            f"{d['psnr_median_before']:.2f} -> {d['psnr_median_after']:.2f} dB, {d['seconds_per_image']:.1f} s per image")


def run_refine(args):
    model = load_model(args)
    cfg = RefineConfig(steps=args.steps, lr=args.lr, perceptual=args.perceptual, locality=args.locality, seed=args.seed)
    summary = refine_files(model, args.folder, cfg, batch_size=args.batch_size, progress=not args.json)
    emit(args, summary, _refine_summary)
    return 0


def add_train_encoder(sub, common):
    s = sub.add_parser("train-encoder", parents=[common], help="train a per-model encoder that starts inversions",
                       description="Train a small encoder (image -> P-norm+ coordinates of W+, or z for models without "
                                   "a mapping) on the model's own samples: latent regression, then also the "
                                   "reconstruction through the frozen generator. Resumable (rerun the same command), "
                                   "checkpoints on SIGTERM. Stored next to the cached atlas unless --out is given; "
                                   "use it with 'invert --init encoder' (or encoder:PATH).")
    s.add_argument("--model", required=True)
    s.add_argument("--steps", type=positive_int, default=EncoderConfig.steps, help="training steps (default %(default)s)")
    s.add_argument("--batch", type=positive_int, default=EncoderConfig.batch, help="batch size (default %(default)s)")
    s.add_argument("--lr", type=finite_float, default=EncoderConfig.lr, help="Adam learning rate (default %(default)s)")
    s.add_argument("--rec-weight", type=finite_float, default=EncoderConfig.rec_weight,
                   help=f"weight of the image reconstruction term, on after {EncoderConfig.rec_from * 100:.0f}%% of the steps "
                        "(default %(default)s)")
    s.add_argument("--seed", type=seed_int, default=0)
    s.add_argument("--out", default=None, help="encoder file .pt (default: next to the model's cached atlas)")
    add_model_options(s)
    s.set_defaults(fn=run_train_encoder)


def run_invert(args):
    reg, val = InversionConfig.parse_regularizer(args.regularizer)
    model = load_model(args)
    space = args.space or ("wplus" if model.has_mapping else "z")
    init_name, _ = parse_init(args.init)
    if args.warmup_steps is not None and init_name != "multi-start":
        raise LatentAtlasError("--warmup-steps applies to --init multi-start:K only")
    if args.refine and not model.has_mapping:
        raise LatentAtlasError(f"--refine tunes the synthesis around a W/W+ pivot; model '{model.name}' has no "
                               f"mapping network")
    if args.refine and space not in ("w", "wplus", "pnorm+"):
        raise LatentAtlasError(f"--refine needs a W/W+ pivot, not a {space} inversion")
    cfg = InversionConfig(space=space, steps=args.steps, lr=args.lr, pixel_loss=args.pixel_loss,
                          perceptual=args.perceptual, perceptual_weight=args.perceptual_weight,
                          regularizer=reg, reg_value=val, init=args.init,
                          warmup_steps=args.warmup_steps or 100, stop_psnr=args.stop_psnr,
                          working_resolution=args.working_resolution, seed=args.seed)
    atlas = atlas_option(args, model, cfg.reads_atlas(), "only the pnorm+ space, the pnorm/mahalanobis "
                                                          "regularisers and multi-start (cluster centres) read an atlas")
    video = video_format(args.save_video)
    with pool_for(args, model, atlas) as pool:
        summary = invert_files(model, args.inputs, args.out, cfg, batch_size=args.batch_size,
                               resample=args.resample, progress=not args.json, atlas=atlas, min_psnr=args.min_psnr,
                               video=video, pool=pool,
                               max_memory=parse_size(args.max_memory) if args.max_memory is not None else None)

    def fmt(d):
        v = d["verdict"]
        lines = [f"inverted {d['done']} of {d['total']} images ({d['skipped_finished']} already done) into {args.out}"]
        if v["n"]:
            lines.append(f"PSNR over {v['n']} images: mean {v['psnr_mean']:.2f} dB, median {v['psnr_median']:.2f} dB, "
                         f"worst {v['psnr_worst']:.2f} dB ({Path(v['worst_file']).name}); "
                         f"{v['share_ok']:.0%} at >= {v['min_psnr']:g} dB")
            lines += [f"below {v['min_psnr']:g} dB: {b['file']} {b['psnr']:.2f} dB (start: {b['init']})" for b in v["below"]]
        lines += [f"failed: {f['file']}: {f['error']}" for f in d["failed"]]
        if d.get("refine"):
            lines.append(_refine_summary(d["refine"]))
        return "\n".join(lines)
    if args.refine:
        summary["refine"] = refine_files(model, args.out, RefineConfig(steps=args.refine, perceptual=args.perceptual,
                                                                        seed=args.seed),
                                         batch_size=min(args.batch_size, 8), progress=not args.json)
    emit(args, summary, fmt)
    if summary["failed"]:
        return 1
    return 3 if summary["verdict"]["below"] else 0


def run_train_encoder(args):
    model = load_model(args)
    cfg = EncoderConfig(steps=args.steps, batch=args.batch, lr=args.lr, rec_weight=args.rec_weight, seed=args.seed)
    out = args.out or default_path(model)
    meta = train_encoder(model, out, cfg, progress=not args.json)
    info = {"out": str(out), "steps": meta["step"], "of": cfg.steps, "seconds": round(meta["seconds"], 1),
            "target": meta["target"], "last": meta["log"][-1] if meta["log"] else None}
    emit(args, info, lambda d: f"encoder ({d['target']}) trained {d['steps']} of {d['of']} steps "
                                f"({d['seconds']:.0f} s) -> {d['out']}")
    return 0


def _invert_help() -> str:
    """The --regularizer and --init tables for 'invert --help', from the registries."""
    regs = [(name + (f":{what}" if what != "-" else ""), f"{doc}" + (f" (default {what}={v:g})" if what != "-" else ""))
            for name, (v, what, doc) in REGULARIZER_TABLE.items()]
    return (help_table("regularizers (--regularizer NAME[:VALUE]):", regs) + "\n\n"
            + help_table("inits (--init SPEC):", INIT_TABLE.items()))
