"""What the commands share: option types, the shared options (each added in one place), loading
the model with them, the atlas and pool options, latents files, and output."""
from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from sys import float_info

from .. import validate
from ..atlas import Atlas
from ..errors import LatentAtlasError
from ..imageio import ANIMATION_SUFFIXES, animation_format
from ..metrics.features import extractor_names
from ..models.registry import load_generator
from ..parallel import make_pool
from ..precision import CHOICES as PRECISIONS
from ..sampling.generate import parse_seeds
from ..validate import read_npz
from ..walks.edit import save_strip

log = logging.getLogger("latentatlas")


def number_option(lo: float, hi: float, *, integer: bool = False):
    """An argparse type for a numeric option: ``validate.number`` (the one parser config fields and
    the explorer's parameters go through: NaN, infinities, overflow and out-of-range refused)."""
    def parse(s: str):
        try:
            return validate.number(s, "", lo, hi, integer=integer)
        except LatentAtlasError as e:
            raise argparse.ArgumentTypeError(str(e)) from None
    return parse


positive_int = number_option(1, 2 ** 63 - 1, integer=True)
seed_int = number_option(0, 2 ** 63 - 1, integer=True)
finite_float = number_option(-float_info.max, float_info.max)


def load_model(args, name: str | None = None):
    """The model named by ``--model`` (or ``name``) with the options every command shares:
    ``--class`` for conditional models, ``--truncation`` for BigGAN, ``--precision``."""
    model = load_generator(name or args.model, device=args.device)
    if getattr(args, "precision", None) is not None:
        model.set_precision(args.precision, compile=getattr(args, "compile", False))
        args.precision_record = {**model.precision.record(), "compiled": model.compiled}
        (log.info if args.precision != "fp32" else log.debug)("precision: %s (%s)", model.precision.name,
                                                              model.precision.reason)
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


def atlas_option(args, model, applies: bool = True, why: str = ""):
    """The atlas named by ``--atlas`` (checked against the model's weights), or None for the
    cached one. An atlas given where nothing uses it is an error, never ignored."""
    path = getattr(args, "atlas", None)
    if path is None:
        return None
    if not applies:
        raise LatentAtlasError(f"--atlas does not apply here: {why}")
    return Atlas.load(path, model)


def add_ray(s, what: str):
    s.add_argument("--ray", nargs="?", const="local", default=None, metavar="ADDRESS",
                   help=f"run {what} on Ray workers, each holding the model once: bare --ray starts a local Ray "
                        f"instance, --ray auto joins the running cluster, --ray HOST:PORT a given one "
                        f"(needs the ray extra: pip install 'latentatlas[ray]')")
    s.add_argument("--ray-workers", type=positive_int, default=None, metavar="N",
                   help="Ray workers (default: one per CPU of the cluster, or per --ray-gpus-per-worker GPUs)")
    s.add_argument("--ray-gpus-per-worker", type=finite_float, default=0.0, metavar="G",
                   help="GPUs per Ray worker (fractions share a GPU); workers then run on CUDA")


def pool_for(args, model, atlas=None):
    """A context with the Ray pool the command's tasks run on (--ray), or None: run them here."""
    import contextlib

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


def reference_kw(args) -> dict:
    """--reference / --features / --inception as keyword arguments of the metric functions."""
    return {"reference": getattr(args, "reference", None), "features": getattr(args, "features", None),
            "inception": getattr(args, "inception", None)}


def add_reference(s):
    s.add_argument("--reference", default=None, metavar="DIR",
                   help="folder of real images to compare with (PNG/JPEG, >= 50, converted to the model's format; "
                        "features cached by content hash). Default: the Fashion-MNIST test split, which only "
                        "Fashion-MNIST models accept")
    s.add_argument("--features", default=None, choices=extractor_names(),
                   help="feature network for the metrics (default: fashion-features for Fashion-MNIST models; with "
                        "--reference: inception if $LATENTATLAS_INCEPTION is set, else the model's discriminator)")
    s.add_argument("--inception", default=None, metavar="PATH",
                   help="local Inception TorchScript file for --features inception (never downloaded)")


def video_format(choice: str | None) -> str | None:
    """--save-video: 'gif', 'mp4', or 'auto' (MP4 when ffmpeg is found, else GIF with a note)."""
    if choice != "auto":
        return choice
    fmt = animation_format("x.mp4", fallback=True)
    if fmt == "gif":
        log.info("no ffmpeg found (apt install ffmpeg, or pip install imageio-ffmpeg): videos are GIFs")
    return fmt


def check_walk_outputs(args):
    """--out (strip .png or animation) and --video (animation) suffixes, before any work."""
    if Path(args.out).suffix.lower() not in (".png", *ANIMATION_SUFFIXES):
        raise LatentAtlasError(f"--out {args.out}: use .png (strip), .gif or .mp4 (animation)")
    if getattr(args, "video", None):
        animation_format(args.video)     # .gif/.mp4 only; .mp4 without ffmpeg is refused here, not after the work
    if Path(args.out).suffix.lower() in ANIMATION_SUFFIXES:
        animation_format(args.out)


def save_walk(args, images, mark=None, scale: int = 2) -> list[str]:
    """Write the walk frames [steps, N, C, H, W] to --out and, when given, --video."""
    outs = [save_strip(images, args.out, mark=mark, scale=scale)]
    if getattr(args, "video", None):
        outs.append(save_strip(images, args.video, mark=mark, scale=scale))
    return [str(o) for o in outs]


def add_video(s):
    s.add_argument("--video", default=None, metavar="PATH",
                   help="also write the walk as an animation: .gif (Pillow) or .mp4 (ffmpeg from PATH or the "
                        "imageio-ffmpeg package)")


def codes_of(model, spec: str) -> tuple:
    """W+ codes [N, num_ws, w_dim] and labels from seeds ('0-3,7') or a latents file (.npz from
    'sample --out-dir' or 'invert', key 'ws')."""
    import numpy as np
    import torch

    if spec.endswith(".npz"):
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


def latents_of(model, spec: str):
    """Codes of a latents .npz (from 'invert' or 'sample --out-dir'): W+ [N, L, D] ('ws') for models
    with a mapping, else z [N, z] (a z-space inversion's 'code'), and row labels."""
    import numpy as np
    import torch

    if model.has_mapping:
        return codes_of(model, spec)
    z = read_npz(spec, "latents", {"code": ("f", None)})["code"]
    z = torch.from_numpy(np.asarray(z, dtype=np.float32))
    z = z[None] if z.ndim == 1 else z
    if z.ndim != 2 or z.shape[1] != model.z_dim:
        raise LatentAtlasError(f"{spec}: code has shape {list(z.shape)}, model '{model.name}' needs z [N, {model.z_dim}]")
    return z.to(model.device), [f"{Path(spec).stem}[{i}]" for i in range(z.shape[0])]


def help_table(title: str, rows) -> str:
    """A help epilog: a title line, then '  name: meaning' per row (two-column rows)."""
    return "\n".join([title] + [f"  {a}: {b}" for a, b in rows])


def kv_line(row: dict, spec: str) -> str:
    return "  ".join(f"{k}={v:{spec}}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items())


def emit(args, data, fmt):
    """Print a command's result: ``fmt(data)``, or with --json the data as JSON (a dict result
    also records the precision the model computed at)."""
    if args.json:
        if isinstance(data, dict) and getattr(args, "precision_record", None) and "precision" not in data:
            data = {**data, "precision": args.precision_record}
        print(json.dumps(data, indent=2, default=str))
    else:
        print(fmt(data))


# Help for options that several commands share or that read the same everywhere; an option
# given its own help= keeps it. Every option ends up with help text (tested).
OPTION_HELP = {
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


def fill_help(parser: argparse.ArgumentParser):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sp in action.choices.values():
                fill_help(sp)
        elif action.help is None and action.dest in OPTION_HELP:
            action.help = OPTION_HELP[action.dest]


def add_atlas(s):
    """--atlas, for the commands whose strategies or methods read an atlas."""
    s.add_argument("--atlas", metavar="FILE", default=None,
                   help="atlas from 'latentatlas fit' (default: the cached one for the model; "
                        "fitted, with a notice, when there is none)")


def add_model_options(s):
    """--class and --truncation, for every command that loads a model (read by ``load_model``)."""
    s.add_argument("--class", dest="class_label", default=None, metavar="K",
                   help="class label for class-conditional models (NVIDIA conditional, BigGAN); "
                        "'all' cycles through the classes (e.g. an atlas over all classes)")
    s.add_argument("--truncation", type=finite_float, default=None, metavar="T",
                   help="BigGAN truncation in (0, 1]: scales z and selects the batch-norm statistics")
    s.add_argument("--precision", default="fp32", choices=PRECISIONS,
                   help="number format of the generator's synthesis and the discriminator: auto (bf16 on CPUs with "
                        "AMX/AVX512-BF16 and CUDA sm80+, fp16 on older GPUs and MPS, else fp32), fp32, bf16, fp16; "
                        "the mapping, optimised latents and every statistic stay fp32 (default %(default)s)")
    s.add_argument("--compile", action="store_true",
                   help="run the synthesis network through torch.compile: a one-time cost per batch size (5-40 s on "
                        "a CPU at 256 px), then about 2x faster at bf16; worth it for long runs")
