"""evaluate-inversion: II2S's evaluation table for inversion methods."""
from __future__ import annotations

import logging
import sys

from ...data.fashion import is_fashion_model, load_fashion_mnist
from ...data.folder import load_folder
from ...errors import LatentAtlasError
from ...evaluation import inversion as protocol
from ...metrics.attributes import probe_from_csv
from ...metrics.reference import resolve
from ..options import (
    add_atlas,
    add_model_options,
    add_ray,
    add_reference,
    atlas_option,
    emit,
    finite_float,
    load_model,
    pool_for,
    positive_int,
    reference_kw,
    seed_int,
)

log = logging.getLogger("latentatlas")


def add_evaluate_inversion(sub, common):
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
    s.add_argument("--n", type=positive_int, default=100, help="images per target set (default %(default)s)")
    s.add_argument("--steps", type=positive_int, default=1200,
                   help="optimisation steps per image (default %(default)s, II2S's protocol)")
    s.add_argument("--lr", type=finite_float, default=0.01, help="Adam learning rate (default %(default)s, II2S's protocol)")
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
    add_reference(s)
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
    s.add_argument("--seed", type=seed_int, default=0)
    add_ray(s, "one task per method and target set")
    add_atlas(s)
    add_model_options(s)
    s.set_defaults(fn=run_evaluate_inversion)


def run_evaluate_inversion(args):
    import torch

    model = load_model(args)
    atlas = atlas_option(args, model, model.has_mapping, "the model has no W space")
    fashion = is_fashion_model(model)
    if args.targets:
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
    setup = {**reference_kw(args)}
    if args.flip:
        pair = tuple(p.strip() for p in args.flip.split(","))
        if len(pair) != 2 or not all(pair):
            raise LatentAtlasError(f"--flip takes two attribute names A,B; got {args.flip!r}")
        setup["flip"] = pair
    if args.attribute_probe:
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
        rows = [{"targets": name, **protocol.diamond_z_inversion(model, t, steps=args.steps, seed=args.seed)}
                for name, t in ((real_name, real), ("generated", gen))]
    else:
        methods = protocol.METHODS
        if args.grid and args.methods:
            raise LatentAtlasError("--grid names its own methods; leave out --methods")
        if args.grid:
            methods = protocol.GRIDS[args.grid]
        if args.methods:
            want = [m.strip() for m in args.methods.split(",")]
            bad = [m for m in want if m not in protocol.METHODS]
            if bad:
                raise LatentAtlasError(f"unknown method(s) {bad}; methods: {', '.join(protocol.METHODS)}")
            methods = {k: protocol.METHODS[k] for k in want}
        # the supplement's regulariser tables embed real images only (II2S supplement §3: a set of 10
        # representative real images); the protocol table also inverts generated ones
        sets = {real_name: real} if args.grid else {real_name: real, "generated": gen}
        with pool_for(args, model, atlas) as pool:
            rows = protocol.evaluate_inversion(model, sets, methods=methods, atlas=atlas, steps=args.steps,
                                               lr=args.lr, progress=sys.stderr.isatty() and not args.json,
                                               seed=args.seed, pool=pool, store=args.resume, **setup)
        if args.plots:
            for p in protocol.plot_pnorm(rows, args.plots):
                log.info("wrote %s", p)
        rows = [{k: v for k, v in r.items() if not k.startswith("_")} for r in rows]

    def fmt(rows):
        if getattr(args, "grid", None):
            return protocol.grid_table(rows)
        if "edit_prob_range" in rows[0]:
            return protocol.protocol_table(rows)
        cols = list(rows[0])
        return "\n".join(["  ".join(f"{c:>14.14}" for c in cols)] + [
            "  ".join(f"{r[c]:>14.4f}" if isinstance(r[c], float) else f"{str(r[c]):>14.14}" for c in cols) for r in rows])
    emit(args, rows, fmt)
    return 0
