"""models: list the bundled models, inspect a checkpoint; convert: write a checkpoint in another layout."""
from __future__ import annotations

import logging
from pathlib import Path

from ...models.inspect import inspect_checkpoint
from ...models.onnx_export import export_onnx
from ...models.registry import EXPORT_LAYOUTS, bundled_models, export_model, family_of
from ..options import emit, load_model

log = logging.getLogger("latentatlas")


def add_models(sub, common):
    s = sub.add_parser("models", parents=[common], help="list bundled models or inspect a checkpoint",
                       description="List the bundled models (resolution, latent spaces, whether a "
                                   "discriminator is present, where the weights come from), or with "
                                   "--inspect describe what a checkpoint file holds.")
    s.add_argument("--inspect", metavar="PATH", help="describe the contents of a checkpoint file")
    s.set_defaults(fn=run_models)


def add_convert(sub, common):
    s = sub.add_parser("convert", parents=[common],
                       help="convert a checkpoint (latentatlas, safetensors, rosinality, onnx)",
                       description="Read any supported checkpoint (NVIDIA pickles, TF-era pickles, rosinality .pt, "
                                   "PGAN, BigGAN, latentatlas .pt/.safetensors) and write it as --to: latentatlas "
                                   "(.pt, tensors and plain config that torch.load(weights_only=True) reads), "
                                   "safetensors (no pickle at all), rosinality (a stylegan2-pytorch .pt with g_ema, d, "
                                   "latent_avg, args, for e4e/pSp/GANSpace-style tools; StyleGAN2 only), or onnx "
                                   "(OUT.onnx: z [and one-hot c] -> image with a dynamic batch; for models with a "
                                   "mapping network also OUT.mapping.onnx, z -> w, and OUT.synthesis.onnx, "
                                   "ws -> image; constant noise, fp32; each graph checked against PyTorch with "
                                   "onnxruntime when it is installed; needs the onnx extra).")
    s.add_argument("input", help="checkpoint to read")
    s.add_argument("output", help="file to write (.pt; .safetensors for --to safetensors; .onnx for --to onnx)")
    s.add_argument("--to", default=None, choices=EXPORT_LAYOUTS + ("onnx",),
                   help="output layout (default: from the suffix: .safetensors -> safetensors, .onnx -> onnx, "
                        ".pt -> latentatlas)")
    s.set_defaults(fn=run_convert)


def run_models(args):
    if args.inspect:
        info = inspect_checkpoint(args.inspect)
        emit(args, info, lambda d: "\n".join(f"{k}: {v}" for k, v in d.items()))
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
    emit(args, rows, table)
    return 0


def run_convert(args):
    model = load_model(args, args.input)
    if args.to == "onnx" or (args.to is None and str(args.output).endswith(".onnx")):
        res = export_onnx(model, args.output, family=family_of(model))
        emit(args, {"input": args.input, "to": "onnx", "weights_hash": model.weights_hash(), **res},
             lambda d: "\n".join(f"wrote {f}" + (f" (onnxruntime vs PyTorch: max |diff| {d['max_abs_diff'][Path(f).name]:.1e})"
                                                   if d["max_abs_diff"].get(Path(f).name) is not None else "")
                                 for f in d["files"]))
        return 0
    path, warnings = export_model(model, args.output, to=args.to)
    for w in warnings:
        log.warning("%s", w)
    emit(args, {"input": args.input, "output": str(path), "to": args.to, "weights_hash": model.weights_hash(),
                 "warnings": warnings},
          lambda d: f"wrote {d['output']} (weights hash {d['weights_hash']})")
    return 0
