"""sample: generate images with a sampling strategy; mix: style mixing of seeds or saved latents."""
from __future__ import annotations

import argparse

from ...errors import LatentAtlasError
from ...imageio import grid_scale, save_grid
from ...priors.levels import default_level_ranges, fig1_grid
from ...sampling import Context, get_strategy, strategy_names
from ...sampling.generate import (
    check_count,
    concat_samples,
    iter_samples,
    parse_params,
    parse_seeds,
    pooled_samples,
    stream_samples,
    write_samples,
)
from ...validate import check_fits
from ..options import (
    add_atlas,
    add_model_options,
    add_ray,
    atlas_option,
    codes_of,
    emit,
    finite_float,
    load_model,
    pool_for,
    positive_int,
    seed_int,
)


def add_sample(sub, common):
    s = sub.add_parser("sample", parents=[common], help="generate images (grid and/or files)",
                       epilog=_strategy_help(), formatter_class=argparse.RawDescriptionHelpFormatter,
                       description="Generate images. Latent i is named by seed SEED+i, so the same "
                                   "seed gives the same images on any device and batch size.")
    s.add_argument("--model", required=True, help="bundled model name or checkpoint path")
    s.add_argument("--n", type=positive_int, default=None, help="number of images (default 64)")
    s.add_argument("--seed", type=seed_int, default=0, help="first seed (default 0)")
    s.add_argument("--seeds", default=None, metavar="LIST",
                   help="explicit seeds instead of --n/--seed, e.g. 0-7,42")
    s.add_argument("--noise-mode", default=None, choices=["const", "random", "none"],
                   help="StyleGAN2 per-pixel noise: const (stored buffers, default), random, none")
    s.add_argument("--scale", type=positive_int, default=None,
                   help="grid pixel scale (default: about 512 px wide, at most 8x)")
    s.add_argument("--grid", action="store_true",
                   help="with --strategy multilevel: render the multi-level (Katzir et al. Fig. 1) block of "
                        "cluster centres on the base code of --seed; levels fixed with --param show only that cluster")
    s.add_argument("--truncation-psi", type=finite_float, default=1.0,
                   help="psi-truncation toward the mean w (W-space models only; default 1 = off)")
    s.add_argument("--truncation-cutoff", type=positive_int, default=None,
                   help="truncate only the first K layers of W+ (default: all)")
    s.add_argument("--strategy", default=None, help="sampling strategy (parameters and defaults below)")
    s.add_argument("--param", action="append", metavar="NAME=VALUE",
                   help="strategy parameter, repeatable (e.g. --param psi=0.7, --param tau=2, --param sigma=auto)")
    s.add_argument("--batch-size", type=positive_int, default=64, help="images per forward pass")
    s.add_argument("--out", help="grid PNG to write")
    s.add_argument("--out-dir", help="directory for one PNG per image plus latents.npz")
    s.add_argument("--nrow", type=positive_int, default=None, help="images per grid row")
    add_ray(s, "the batches of --out-dir")
    add_atlas(s)
    add_model_options(s)
    s.set_defaults(fn=run_sample)


def add_mix(sub, common):
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
    s.add_argument("--scale", type=positive_int, default=None, help="grid pixel scale (default: about 512 px wide)")
    add_model_options(s)
    s.set_defaults(fn=run_mix)


def run_sample(args):
    model = load_model(args)
    if args.seeds is not None and (args.n is not None or args.seed != 0):
        raise LatentAtlasError("--seeds names the latents itself: give either --seeds or --n/--seed")
    seeds = parse_seeds(args.seeds) if args.seeds is not None else \
        list(range(args.seed, args.seed + check_count(args.n or 64, "--n")))
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
    atlas = atlas_option(args, model, args.strategy in ("pca-log", "cluster", "multilevel"),
                   "only the pca-log, cluster and multilevel strategies read an atlas")
    if args.grid:
        return _fig1_grid(args, model, atlas, parse_params(args.param))
    kw = dict(seeds=seeds, psi=args.truncation_psi, cutoff=args.truncation_cutoff, strategy=args.strategy,
              params=parse_params(args.param) if args.strategy else None, batch_size=args.batch_size,
              ctx=Context(model, atlas=atlas) if args.strategy else None)
    if args.ray is not None and (args.out or not args.out_dir):
        raise LatentAtlasError("--ray applies to sample --out-dir alone (a grid holds every image in one process)")
    with pool_for(args, model, atlas) as pool:
        if args.ray is not None:
            written = stream_samples(pooled_samples(pool, model, **kw), args.out_dir)
        elif args.out:
            written = write_samples(concat_samples(list(iter_samples(model, **kw))), out=args.out, out_dir=args.out_dir,
                                    nrow=args.nrow, scale=args.scale)
        else:
            written = stream_samples(iter_samples(model, **kw), args.out_dir)
    emit(args, {"model": model.name, "n": args.n, "seed": args.seed, "written": [str(p) for p in written]},
          lambda d: "\n".join(d["written"]))
    return 0


def _fig1_grid(args, model, atlas, params):
    """sample --strategy multilevel --grid: Katzir et al.'s Fig. 1 block for the chosen clusters
    (levels fixed with --param show that cluster only; the others their first four)."""
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
    emit(args, {"written": [str(path)]}, lambda d: "\n".join(d["written"]))
    return 0


def run_mix(args):
    """Style mixing: coarse rows from the row codes, the rest from the column codes."""
    import torch

    model = load_model(args)
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
    a, _ = codes_of(model, args.rows)
    b, _ = codes_of(model, args.cols)
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
    emit(args, {"out": str(path), "cutoff": cutoff, "rows": a.shape[0], "cols": b.shape[0]},
          lambda d: f"wrote {d['out']}: W+ rows 0..{cutoff - 1} from each row's code, the rest from each column's")
    return 0


def _strategy_help() -> str:
    """The --strategy table for 'sample --help', generated from the registry."""
    lines = ["strategies (--strategy NAME, parameters as --param NAME=VALUE, defaults shown):"]
    for name in strategy_names():
        st = get_strategy(name)
        needs = f" [needs: {', '.join(st.needs)}]" if st.needs else ""
        lines.append(f"  {name}: {st.doc}{needs}")
        if st.defaults:
            lines.append("      " + ", ".join(f"{k}={v}" for k, v in st.defaults.items()))
    return "\n".join(lines)
