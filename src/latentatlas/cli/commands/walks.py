"""directions: compute a direction set; edit: move saved latents along one; walk: render walks (strip, GIF, MP4)."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from ... import diamond as dm
from ...atlas import get_atlas
from ...data.folder import load_image
from ...errors import LatentAtlasError
from ...imageio import atomic_path
from ...inversion.refine import load_refined
from ...metrics.attributes import probe_from_csv
from ...metrics.reference import extractor_for
from ...priors.levels import default_level_ranges
from ...walks.directions import (
    METHODS,
    Directions,
    bundled_attributes,
    compute_directions,
    effects_table,
    from_labelled_codes,
    name_directions,
    parse_direction_ref,
)
from ...walks.edit import render_walk, walk_latents
from ...walks.keyframes import SPACES as KEYFRAME_SPACES
from ...walks.keyframes import keyframe_walk
from ...walks.stylespace import channel_edit, channel_std, style_modules, top_channels
from ..options import (
    add_atlas,
    add_model_options,
    add_video,
    atlas_option,
    check_walk_outputs,
    emit,
    finite_float,
    help_table,
    latents_of,
    load_model,
    positive_int,
    save_walk,
    seed_int,
)


def add_edit(sub, common):
    s = sub.add_parser("edit", parents=[common], help="edit saved latents along a direction (strip)",
                       description="Move latents saved by 'invert' or 'sample --out-dir' along one direction by "
                                   "the given amounts (in units of the direction's sigma) and render a strip: "
                                   "rows = latents, columns = amounts (.png) or an animation over amounts (.gif). "
                                   "W+ latents move in every row unless --rows picks some (GANSpace's layer-wise "
                                   "edits).")
    s.add_argument("latents", help="latents .npz (from invert or sample --out-dir)")
    s.add_argument("--model", required=True)
    s.add_argument("--direction", default=None, help="FILE.npz:INDEX or FILE.npz:NAME (from 'directions')")
    s.add_argument("--channel", default=None, metavar="LAYER:C",
                   help="instead of a direction, one StyleSpace channel: style channel C of synthesis layer LAYER "
                        "(e.g. b16.conv0:37, from 'stylespace'), amounts in units of its spread over the model's "
                        "samples (StyleGAN 1/2/3)")
    s.add_argument("--amounts", default="-2,-1,0,1,2", help="comma-separated amounts in sigma (default %(default)s)")
    s.add_argument("--rows", default=None, help="W+ rows edited: A:B (rows A..B-1) or one index (default: all)")
    s.add_argument("--layers", default=None,
                   help="W+ rows edited by level name: coarse, medium, fine or a comma-separated union (the thirds "
                        "'mix --split' names; e.g. fine keeps shape and changes texture)")
    s.add_argument("--scale", type=positive_int, default=2, help="pixel scale of the strip (default %(default)s)")
    s.add_argument("--refined", default=None, metavar="NAME.refine.safetensors",
                   help="edit with the generator refined for this image ('refine' / 'invert --refine')")
    s.add_argument("--out", required=True, help="strip .png, or animation .gif / .mp4")
    add_video(s)
    add_model_options(s)
    s.set_defaults(fn=run_edit)


def add_directions(sub, common):
    s = sub.add_parser("directions", parents=[common], help="compute latent directions (GANSpace, SeFa, DP-LaSE, ...)",
                       description="Compute a set of latent directions and save them (.npz, unit vectors, "
                                   "per-direction sigma, metadata). ganspace: PCA of w (or of --layer's "
                                   "activations); sefa: closed form from style affine weights (--layer: "
                                   "comma-separated style layers); dplase: learned with the density model at "
                                   "split --layer; mean-diff / linear-classifier: per Fashion-MNIST class from "
                                   "the feature network's predictions; diamond: toward the mean protoimage (Z).",
                       epilog=_directions_help(), formatter_class=argparse.RawDescriptionHelpFormatter)
    s.add_argument("--method", default=None, choices=_direction_methods())
    s.add_argument("--model", default=None)
    s.add_argument("--k", type=positive_int, default=None,
                   help="number of directions (ganspace, sefa: 10; dplase: 5 by default)")
    s.add_argument("--n", type=positive_int, default=None,
                   help="samples the directions are fitted on (ganspace, mean-diff, linear-classifier; default 20000)")
    s.add_argument("--layer", default=None, help="named layer (see 'models --inspect'); e.g. b8")
    s.add_argument("--labels", default=None, metavar="CSV|DIR",
                   help="boundary, mean-diff: labelled images (a CSV of rows path,label, or a folder of class "
                        "sub-folders) that train a linear probe on the metric features; the model's samples are "
                        "labelled by it (default: the Fashion-MNIST classifier, Fashion-MNIST models only)")
    s.add_argument("--label-source", default="samples", choices=["samples", "images"],
                   help="with --labels: samples (default: a probe trained on the labelled images labels the "
                        "model's samples) or images (the labelled images are inverted in W+ and the directions "
                        "fitted on their codes; --steps sets the inversion steps, default 150)")
    s.add_argument("--condition-on", default=None, metavar="A,B",
                   help="boundary: make every other direction orthogonal to these attributes' boundaries "
                        "(InterFaceGAN's conditional manipulation)")
    s.add_argument("--steps", type=positive_int, default=None,
                   help="training steps: dplase discovery (default 1500), linear-classifier fitting (default 300)")
    s.add_argument("--name-with", default=None, metavar="probe|CSV",
                   help="name each direction by what it does: samples moved to +-2 sigma and read by the bundled "
                        "classifier (probe; Fashion-MNIST-format models) or by a probe trained on a labels CSV "
                        "(path,label); the name (e.g. 'Sandal+ Sneaker-') and the measured effects are saved with "
                        "the set and shown by the explorer's sliders")
    s.add_argument("--show", default=None, metavar="FILE.npz",
                   help="print a saved set's directions, names and measured effects, and exit")
    s.add_argument("--seed", type=seed_int, default=0)
    s.add_argument("--out", default=None, help="directions file (.npz)")
    add_model_options(s)
    s.set_defaults(fn=run_directions)


def add_walk(sub, common):
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
    s.add_argument("--steps", type=positive_int, default=9, help="frames along the walk, endpoints included (default %(default)s)")
    s.add_argument("--extent", type=finite_float, default=None, help="walk to +-extent sigma (default 2)")
    s.add_argument("--n", type=positive_int, default=None, help="samples (rows, default 4)")
    s.add_argument("--seed", type=seed_int, default=None, help="first seed (default 0)")
    s.add_argument("--between", nargs="+", default=None, metavar="KEY",
                   help="keyframe video through two or more keyframes instead of a direction: each a seed (7), a "
                        "saved latent (FILE.npz, or FILE.npz:ROW) or an image to invert (.png/.jpg); --steps "
                        "frames per segment")
    s.add_argument("--space", default=None, choices=list(KEYFRAME_SPACES),
                   help="keyframe interpolation: z (slerp; default when every keyframe is a seed), w, wplus (lerp; "
                        "default otherwise), pnorm+ (lerp in P-norm+ coordinates, needs the atlas), pnorm+sphere "
                        "(the density-preserving option: slerp of each row in P-norm+ coordinates, norms "
                        "interpolated, so every frame stays on the Gaussian's typical shell)")
    s.add_argument("--invert-steps", type=positive_int, default=None,
                   help="inversion steps for image keyframes (default 300; W+ with the discriminator's perceptual "
                        "loss, Z for Z-only models)")
    s.add_argument("--refined", default=None, metavar="NAME.refine.safetensors",
                   help="walk with the generator refined for one image ('refine' / 'invert --refine')")
    s.add_argument("--out", required=True, help="strip .png, or animation .gif / .mp4")
    add_video(s)
    add_atlas(s)
    add_model_options(s)
    s.set_defaults(fn=run_walk)


def _load(args):
    """The model, refined for one image when --refined names a delta."""
    model = load_model(args)
    return load_refined(model, args.refined) if getattr(args, "refined", None) else model


def run_edit(args):
    """Edit saved latents along one direction: rows = latents, columns = amounts."""
    import torch

    check_walk_outputs(args)
    model = _load(args)
    if (args.direction is None) == (args.channel is None):
        raise LatentAtlasError("edit needs one of --direction FILE.npz:INDEX or --channel LAYER:C")
    if args.channel is not None:
        return _channel_edit(args, model)
    path, idx = parse_direction_ref(args.direction)
    dirs = Directions.load(path)
    dirs.check_model(model)
    idx = dirs.index(idx)
    amounts = _amounts(args.amounts)
    codes, _ = latents_of(model, args.latents)
    want = "w" if model.has_mapping else "z"
    if dirs.space != want:
        raise LatentAtlasError(f"{path} holds {dirs.space} directions; latents of model '{model.name}' are edited "
                               f"with {want} directions")
    g = dirs.vectors[idx].to(model.device) * float(dirs.sigmas[idx])
    rows = None
    if args.rows and args.layers:
        raise LatentAtlasError("--rows and --layers both choose W+ rows: give one")
    if args.layers:
        if not model.has_mapping:
            raise LatentAtlasError("--layers applies to W+ latents (models with a mapping network)")
        levels = default_level_ranges(model.num_ws)
        names = [x.strip() for x in args.layers.split(",") if x.strip()]
        unknown = [x for x in names if x not in levels]
        if unknown or not names:
            raise LatentAtlasError(f"--layers {args.layers!r}: level names are {', '.join(levels)}")
        rows = sorted({r for x in names for r in range(*levels[x])})
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
        rows = list(range(*rows))
    frames = []
    with torch.no_grad():
        for a in amounts:
            if model.has_mapping:
                mask = torch.zeros(model.num_ws, 1, device=model.device)
                mask[rows if rows else slice(None)] = 1
                frames.append(model.synthesis(codes + a * mask * g).clamp(-1, 1).cpu())
            else:
                frames.append(model(codes + a * g).clamp(-1, 1).cpu())
    outs = save_walk(args, torch.stack(frames), scale=args.scale)
    info = {"out": outs[0], "video": outs[1] if len(outs) > 1 else None, "latents": codes.shape[0], "amounts": amounts, "direction": args.direction,
            "rows": rows, "layers": args.layers}
    emit(args, info, lambda d: f"wrote {', '.join(outs)}: {d['latents']} latents x {len(amounts)} amounts")
    return 0


def _amounts(text):
    try:
        amounts = [float(a) for a in text.split(",") if a.strip()]
    except ValueError:
        raise LatentAtlasError(f"--amounts {text!r}: expected numbers like -2,-1,0,1,2") from None
    if not amounts or not all(abs(a) < 1e3 for a in amounts):
        raise LatentAtlasError("--amounts needs at least one finite amount (in sigma units, |a| < 1000)")
    return amounts


def _channel_edit(args, model):
    """``edit --channel LAYER:C``: one StyleSpace channel moved by amounts x its spread."""
    import torch

    for opt, val in (("--rows", args.rows), ("--layers", args.layers)):
        if val is not None:
            raise LatentAtlasError(f"{opt} chooses W+ rows; a --channel edit acts on one layer's style")
    layer, sep, c = args.channel.rpartition(":")
    if not sep or not c.strip().isdigit():
        raise LatentAtlasError(f"--channel {args.channel!r}: expected LAYER:C, e.g. b16.conv0:37")
    channel, amounts = int(c), _amounts(args.amounts)
    sd = channel_std(model, layer, channel)
    codes, _ = latents_of(model, args.latents)
    frames = []
    with torch.no_grad():
        for a in amounts:
            with channel_edit(model, layer, channel, a * sd):
                frames.append(model.synthesis(codes).clamp(-1, 1).cpu())
    outs = save_walk(args, torch.stack(frames), scale=args.scale)
    info = {"out": outs[0], "video": outs[1] if len(outs) > 1 else None, "latents": codes.shape[0], "amounts": amounts,
            "channel": args.channel, "channel_std": sd}
    emit(args, info, lambda d: f"wrote {', '.join(outs)}: {d['latents']} latents x {len(amounts)} amounts of "
                               f"{args.channel} (1 sigma = {sd:.4g})")
    return 0


def add_stylespace(sub, common):
    s = sub.add_parser("stylespace", parents=[common], help="StyleSpace: the style channels that carry an attribute",
                       description="Rank every style channel (each synthesis layer's affine output, to-RGB layers "
                                   "included; Wu et al. 2021) by how differently it is set in samples with and "
                                   "without an attribute: the top and bottom 10% of --n samples by the attribute "
                                   "estimator (a probe on --labels CSV, or the bundled Fashion-MNIST classifier), "
                                   "the channel's standardised mean difference. Edit one with 'edit --channel "
                                   "LAYER:C'. StyleGAN 1/2/3 only.")
    s.add_argument("--model", required=True)
    s.add_argument("--attribute", required=True, help="the attribute (a label of the CSV, or a Fashion-MNIST class)")
    s.add_argument("--labels", default=None, metavar="CSV|DIR",
                   help="labelled images for the probe (a CSV of rows path,label, or a folder of class sub-folders)")
    s.add_argument("--top", type=positive_int, default=10, help="channels listed (default %(default)s)")
    s.add_argument("--n", type=positive_int, default=5000, help="samples read (default %(default)s)")
    s.add_argument("--seed", type=seed_int, default=0)
    s.add_argument("--out", default=None, help="also write the ranking as JSON")
    add_model_options(s)
    s.set_defaults(fn=run_stylespace)


def run_stylespace(args):
    model = _load(args)
    style_modules(model)                          # a Z-only model is refused before any work
    attrs = _estimator(model, args.labels, "--labels")
    res = top_channels(model, attrs, args.attribute, n=args.n, seed=args.seed, top=args.top)
    if args.out:
        with atomic_path(args.out) as tmp:
            Path(tmp).write_text(json.dumps(res, indent=2))

    def table(d):
        lines = [f"style channels for {d['attribute']} ({d['per_side']} samples each side of {d['n']}):"]
        lines += [f"  {r['layer']}:{r['channel']:<5} score {r['score']:+.3f}  (1 sigma = {r['std']:.4g})"
                  for r in d["channels"]]
        return "\n".join(lines)
    emit(args, res, table)
    return 0


def run_directions(args):
    """Options go to the method only where its signature takes them; one it does not take is an
    error, never silently dropped."""
    import inspect

    if args.show:
        given = [o for o, v in (("--method", args.method), ("--model", args.model), ("--out", args.out),
                                ("--name-with", args.name_with)) if v is not None]
        if given:
            raise LatentAtlasError(f"--show prints a saved set; {given[0]} does not apply")
        d = Directions.load(args.show)
        emit(args, {"file": args.show, "method": d.method, "space": d.space, "sigmas": d.sigmas.tolist(),
                    "names": d.meta.get("names"), "effects": d.meta.get("effects")}, lambda _: effects_table(d))
        return 0
    for opt in ("method", "model", "out"):
        if getattr(args, opt) is None:
            raise LatentAtlasError(f"directions needs --{opt} (or --show FILE.npz)")
    model = _load(args)
    if args.label_source == "images":
        return _directions_from_images(args, model)
    takes = inspect.signature(METHODS[args.method]).parameters
    given = {"k": args.k, "n": args.n, "steps": args.steps, "layer": args.layer}
    if args.labels is not None:
        if "attributes" not in takes:
            raise LatentAtlasError(f"--labels applies to the boundary and mean-diff methods, not {args.method}")
        kw_attr = {"attributes": _estimator(model, args.labels, "--labels")}
    else:
        kw_attr = {}
    if args.condition_on is not None:
        if "condition_on" not in takes:
            raise LatentAtlasError(f"--condition-on applies to the boundary method, not {args.method}")
        kw_attr["condition_on"] = [x.strip() for x in args.condition_on.split(",") if x.strip()]
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
    d = compute_directions(model, args.method, **kw, **kw_attr)
    if args.name_with:
        d = _named(args, model, d)
    d.save(args.out)
    info = {"out": args.out, "method": d.method, "space": d.space, "k": len(d), "sigmas": d.sigmas.tolist(),
            **{k: v for k, v in d.meta.items() if k not in ("weights_hash",)}}
    emit(args, info, lambda x: f"wrote {len(d)} {d.method} directions in {d.space} to {args.out}"
         + ("\n" + effects_table(d) if args.name_with else ""))
    return 0


def _estimator(model, labels, option: str):
    """The attribute estimator of a command: a probe on the labelled images ``labels`` (CSV or class
    sub-folders), else the bundled Fashion-MNIST classifier where it fits the model."""
    if labels is not None:
        return probe_from_csv(labels, model, extractor_for(model))
    attrs = bundled_attributes(model)
    if attrs is None:
        raise LatentAtlasError(f"model '{model.name}' has no built-in attribute estimator (the bundled Fashion-MNIST "
                               f"classifier does not fit it): give labelled images ({option} labels.csv)")
    return attrs


def _named(args, model, d):
    """``--name-with probe|CSV``: the set named by its measured effects."""
    probe = args.name_with != "probe"
    attrs = _estimator(model, args.name_with if probe else None, "--name-with")
    return name_directions(model, d, attrs, seed=args.seed,
                           source=f"probe on {args.name_with}" if probe else "bundled Fashion-MNIST classifier")


def _directions_from_images(args, model):
    """``directions --labels CSV --label-source images``: the labelled images inverted (W+, averaged
    over rows; Z for Z-only models) and the directions fitted on their codes."""
    import torch

    from ...inversion import InversionConfig, invert
    from ...metrics.attributes import read_labelled_images

    if args.labels is None:
        raise LatentAtlasError("--label-source images needs --labels labels.csv")
    if args.method not in ("mean-diff", "boundary"):
        raise LatentAtlasError(f"--label-source images fits mean-diff or boundary directions, not {args.method}")
    for opt, val in (("--k", args.k), ("--n", args.n), ("--layer", args.layer), ("--condition-on", args.condition_on)):
        if val is not None:
            raise LatentAtlasError(f"{opt} does not apply to directions from labelled images")
    rows, imgs = read_labelled_images(args.labels, model)
    paths = list(imgs)
    cfg = InversionConfig(space="wplus" if model.has_mapping else "z", steps=args.steps or 150,
                          perceptual="discriminator" if model.has_discriminator else "none")
    x = torch.stack([imgs[p] for p in paths])
    codes = []
    for i in range(0, len(x), 250):              # batches of 250 images
        res = invert(model, x[i:i + 250].to(model.device), cfg, progress=not args.json)
        codes.append((res.ws.mean(1) if model.has_mapping else res.z).cpu())
    by_path = dict(zip(paths, torch.cat(codes)))
    d = from_labelled_codes(model, torch.stack([by_path[p] for p, _ in rows]), [lab for _, lab in rows],
                            method=args.method, seed=args.seed)
    d.save(args.out)
    info = {"out": args.out, "method": d.method, "space": d.space, "k": len(d), "sigmas": d.sigmas.tolist(),
            "inversion_steps": cfg.steps, **{k: v for k, v in d.meta.items() if k not in ("weights_hash",)}}
    emit(args, info, lambda x_: f"wrote {len(d)} {d.method} directions from {len(paths)} inverted images to {args.out}")
    return 0


def _directions_help() -> str:
    """The --method table for 'directions --help': each method's first docstring line and its
    keyword defaults, from the registry."""
    import inspect

    rows = []
    for name, fn in METHODS.items():
        doc = (inspect.getdoc(fn) or "").split("\n\n")[0].replace("\n", " ")
        kw = {k: p.default for k, p in inspect.signature(fn).parameters.items()
              if p.kind is p.KEYWORD_ONLY and k not in ("progress", "seed")}
        rows.append((name, doc + (" [" + ", ".join(f"{k}={v}" for k, v in kw.items()) + "]" if kw else "")))
    return help_table("methods (--method NAME; options that a method takes, with its defaults, in brackets):", rows)


def _direction_methods():
    return list(METHODS)


def run_walk(args):
    check_walk_outputs(args)
    if args.between is not None:
        return _keyframe_walk(args)
    for opt, val in (("--space", args.space), ("--invert-steps", args.invert_steps), ("--atlas", args.atlas)):
        if val is not None:
            raise LatentAtlasError(f"{opt} applies to keyframe walks (--between)")
    args.n = 4 if args.n is None else args.n
    args.seed = 0 if args.seed is None else args.seed
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
    idx = dirs.index(idx)
    z = model.sample_z(args.n, args.seed)
    base = model.mapping(z).detach() if dirs.space == "w" else z
    lat = walk_latents(model, dirs, idx, base, kind=args.kind, steps=args.steps, extent=args.extent)
    outs = save_walk(args, render_walk(model, dirs, lat))
    emit(args, {"out": outs[0], "video": outs[1] if len(outs) > 1 else None}, lambda d: f"wrote {', '.join(outs)}")
    return 0


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")


def _keyframe_walk(args):
    """``walk --between A B ...``: frames through keyframes (seeds, saved latents, inverted images)."""
    import torch

    from ...inversion import InversionConfig, invert

    for opt, val in (("--direction", args.direction), ("--extent", args.extent), ("--n", args.n),
                     ("--seed", args.seed)):
        if val is not None:
            raise LatentAtlasError(f"{opt} does not apply to keyframe walks (--between names the keyframes)")
    if args.kind != "linear":
        raise LatentAtlasError("--kind chooses a walk along a direction; --between interpolates keyframes (--space)")
    if len(args.between) < 2:
        raise LatentAtlasError(f"--between needs at least two keyframes, got {len(args.between)}")
    model = _load(args)
    kinds = [_keyframe_kind(k) for k in args.between]
    space = args.space or ("z" if all(k == "seed" for k in kinds) or not model.has_mapping else "wplus")
    if space != "z" and not model.has_mapping:
        raise LatentAtlasError(f"model '{model.name}' has only a Z space: --space z")
    if space == "z" and "latent" in kinds and model.has_mapping:
        raise LatentAtlasError("saved latents of a mapped model are W+ codes: interpolate them with --space wplus "
                               "(or pnorm+)")
    if space == "w" and any(k != "seed" for k in kinds):
        raise LatentAtlasError("--space w interpolates mapped seeds only; saved latents and images are W+ codes "
                               "(--space wplus)")
    if args.invert_steps is not None and "image" not in kinds:
        raise LatentAtlasError("--invert-steps applies to image keyframes; none of the keyframes is an image")
    atlas = atlas_option(args, model, space.startswith("pnorm+") or "image" in kinds,
                         "--atlas serves --space pnorm+ / pnorm+sphere and image keyframes' inversion")
    if space.startswith("pnorm+") and atlas is None:
        atlas = get_atlas(model, need="pnorm", progress=not args.json)      # the cached one (fitted once)
    images = {}
    keys = []
    for spec, kind in zip(args.between, kinds):
        if kind == "seed":
            z = model.latents_for([int(spec)])
            with torch.no_grad():
                keys.append(z if space == "z" else model.mapping(z) if space == "w" else model.broadcast(model.mapping(z)))
        elif kind == "latent":
            path, _, row = spec.partition(".npz:")
            path = path if path.endswith(".npz") else path + ".npz"
            codes, _ = latents_of(model, path)
            r = int(row) if row else 0
            if not 0 <= r < codes.shape[0]:
                raise LatentAtlasError(f"{spec}: row {r} out of range ({path} holds {codes.shape[0]})")
            keys.append(codes[r:r + 1])
        else:
            img = load_image(spec, size=model.img_resolution, channels=model.img_channels)
            if img.tensor is None:
                raise LatentAtlasError(f"{spec}: {img.note}")
            images[spec] = img.tensor
    if images:        # every image keyframe inverted in one batch
        cfg = InversionConfig(space="wplus" if model.has_mapping else "z", steps=args.invert_steps or 300,
                              perceptual="discriminator" if model.has_discriminator else "none")
        res = invert(model, torch.stack(list(images.values())).to(model.device), cfg, atlas=atlas,
                     progress=not args.json)
        codes = res.ws if model.has_mapping else res.z
        inverted, others = dict(zip(images, codes)), iter(keys)
        keys = [inverted[spec][None] if kind == "image" else next(others) for spec, kind in zip(args.between, kinds)]
    frames = keyframe_walk(model, torch.cat(keys), steps=args.steps, space=space, atlas=atlas)
    outs = save_walk(args, frames)
    info = {"out": outs[0], "video": outs[1] if len(outs) > 1 else None, "space": space, "frames": int(frames.shape[0]),
            "keyframes": [{"key": k, "kind": kd} for k, kd in zip(args.between, kinds)]}
    emit(args, info, lambda d: f"wrote {', '.join(outs)} ({d['frames']} frames through {len(kinds)} keyframes, "
                               f"{space})")
    return 0


def _keyframe_kind(spec: str) -> str:
    if spec.isdigit():
        return "seed"
    if spec.endswith(".npz") or ".npz:" in spec:
        return "latent"
    if spec.lower().endswith(IMAGE_SUFFIXES):
        return "image"
    raise LatentAtlasError(f"keyframe {spec!r}: not a seed (an integer), a latents file (.npz[:ROW]) or an image "
                           f"({', '.join(IMAGE_SUFFIXES)})")


def _protoimage_walk(args, model):
    """``walk --kind great-circle`` without a direction: Diamond in the rough's great-circle walk
    from each sample through its protoimage (framed in red) and beyond."""
    import torch

    model.require_discriminator("the Diamond great-circle walk (its recovery uses the critic's features)")
    z0 = model.sample_z(args.n, args.seed)
    path, mid = dm.protoimage_walk(model, z0, frames=args.steps)
    with torch.no_grad():
        imgs = torch.stack([model(p).clamp(-1, 1).cpu() for p in path])
    outs = save_walk(args, imgs, mark=[mid] * args.n if mid is not None else None)
    info = {"out": outs[0], "video": outs[1] if len(outs) > 1 else None, "protoimage_frame": mid, "settings": dm.resolve_settings(model)}
    emit(args, info, lambda d: f"wrote {', '.join(outs)}" + (f" (protoimage at frame {mid}, framed in red)" if mid is not None
                                                      else " (no minibatch-std critic: no protoimage; frames run to 90 degrees)"))
    return 0
