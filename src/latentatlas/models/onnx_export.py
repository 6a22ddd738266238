"""ONNX out: any loaded generator as ONNX graphs with a dynamic batch (``convert FILE OUT.onnx``).

* ``OUT.onnx``: the generator, ``z`` [N, z_dim] (and ``c`` [N, c_dim], one-hot, for conditional
  models) -> ``img`` [N, C, H, W], the raw output (about [-1, 1]) at ψ = 1;
* for models with a mapping network also ``OUT.mapping.onnx`` (``z`` [, ``c``] -> ``w``
  [N, w_dim]) and ``OUT.synthesis.onnx`` (``ws`` [N, num_ws, w_dim] -> ``img``), for W/W+ use.

The noise inputs are the stored constant ones (``noise_mode='const'``); BigGAN's truncation is the
model's (``set_truncation``) and is baked in. Each file's metadata records the family, the sizes,
the weights hash, ``w_avg`` (the truncation centre) and that the graph is fp32. Written through
torch's ONNX exporter (the ``onnx`` extra: onnx, onnxscript); when onnxruntime is installed every
graph is run once against PyTorch and the largest difference is returned (the export is refused
above ``MAX_DIFF``). All files are written to temporaries first: none is left behind half-written.
"""
from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import warnings
from pathlib import Path

import torch

from ..errors import LatentAtlasError
from ..imageio import atomic_path
from .interface import BigGANModel, GANModel, StyleGANModel

log = logging.getLogger("latentatlas")

OPSET = 18
MAX_DIFF = 1e-3          # PyTorch vs onnxruntime, raw image units (tests hold every family to 1e-4)


class _Generator(torch.nn.Module):
    def __init__(self, model: GANModel):
        super().__init__()
        self.G, self.kind = model.G, ("stylegan" if isinstance(model, StyleGANModel) else
                                      "biggan" if isinstance(model, BigGANModel) else "z-only")
        self.conditional, self.num_ws = model.conditional, getattr(model, "num_ws", None)
        self.truncation = float(getattr(model, "truncation", 1.0))
        lo, hi = getattr(model, "output_range", (-1.0, 1.0))
        self.rescale = None if (lo, hi) == (-1.0, 1.0) else (float(lo), float(hi))

    def forward(self, z, c=None):
        if self.kind == "stylegan":
            w = self.G.mapping(z, c)
            return self.G.synthesis(w.unsqueeze(1).expand(-1, self.num_ws, -1), noise_mode="const")
        x = self.G(z, c, self.truncation) if self.kind == "biggan" else self.G(z, c) if self.conditional else self.G(z)
        if self.rescale is not None:
            lo, hi = self.rescale
            x = (x - lo) / (hi - lo) * 2 - 1
        return x


class _Mapping(torch.nn.Module):
    def __init__(self, G):
        super().__init__()
        self.G = G

    def forward(self, z, c=None):
        return self.G.mapping(z, c)


class _Synthesis(torch.nn.Module):
    def __init__(self, G):
        super().__init__()
        self.G = G

    def forward(self, ws):
        return self.G.synthesis(ws, noise_mode="const")


def _graphs(model: GANModel) -> list[tuple[str, torch.nn.Module, tuple, list[str], str]]:
    """(file suffix, module, example inputs, input names, output name) per graph."""
    n = 3
    z = torch.randn(n, model.z_dim, generator=torch.Generator().manual_seed(0))
    c = (torch.nn.functional.one_hot(torch.arange(n) % model.c_dim, model.c_dim).float()
         if model.conditional else None)
    zin, names = ((z, c), ["z", "c"]) if c is not None else ((z,), ["z"])
    out = [("", _Generator(model), zin, names, "img")]
    if isinstance(model, StyleGANModel):
        ws = torch.randn(n, model.num_ws, model.w_dim, generator=torch.Generator().manual_seed(1))
        out += [(".mapping", _Mapping(model.G), zin, names, "w"), (".synthesis", _Synthesis(model.G), (ws,), ["ws"], "img")]
    return out


def _metadata(model: GANModel, suffix: str, family: str) -> dict:
    meta = {"producer": "latentatlas", "family": family, "graph": suffix.lstrip(".") or "generator",
            "z_dim": model.z_dim, "c_dim": model.c_dim, "img_resolution": model.img_resolution,
            "img_channels": model.img_channels, "weights_hash": model.weights_hash(), "precision": "fp32",
            "noise": "const", "source": str(model.info.source)}
    if isinstance(model, StyleGANModel):
        meta.update(w_dim=model.w_dim, num_ws=model.num_ws, w_avg=json.dumps([round(float(v), 7) for v in model.w_avg]))
    if isinstance(model, BigGANModel):
        meta["truncation"] = float(model.truncation)
    return {k: str(v) for k, v in meta.items()}


@contextlib.contextmanager
def _quiet():
    """The exporter's own chatter (progress prints, optimiser INFO logs, its warnings) kept off the
    user's terminal: our log says what is exported."""
    names = ("torch.onnx", "torch.export", "torch._dynamo", "onnxscript", "onnx_ir", "torch.fx")
    saved = {n: logging.getLogger(n).level for n in names}
    try:
        for n in names:
            logging.getLogger(n).setLevel(logging.ERROR)
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for n, lvl in saved.items():
            logging.getLogger(n).setLevel(lvl)


def _check(path: Path, module, args, names) -> float | None:
    try:
        import onnxruntime as ort
    except ImportError:
        return None
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    # another batch size than the export's: the batch axis must be dynamic
    feeds = {name: torch.cat([a, a[:1]]).numpy() for name, a in zip(names, args)}
    got = sess.run(None, feeds)[0]
    with torch.no_grad():
        want = module(*[torch.from_numpy(v) for v in feeds.values()]).numpy()
    return float(abs(got - want).max())


def export_onnx(model: GANModel, path, *, family: str, check: bool = True) -> dict:
    """Write the model's graphs beside ``path`` (``.onnx``); returns the files and, per graph,
    the largest |onnxruntime − PyTorch| difference (None without onnxruntime)."""
    try:
        import onnx
    except ImportError:
        raise LatentAtlasError("ONNX export needs the onnx extra: pip install 'latentatlas[onnx]' "
                               "(onnx, onnxscript; onnxruntime to check the graphs)") from None
    path = Path(path)
    if path.suffix != ".onnx":
        raise LatentAtlasError(f"output {path}: an ONNX file is written as .onnx")
    if model.precision.name != "fp32":
        raise LatentAtlasError("ONNX export writes the fp32 graph: load the model at --precision fp32")
    files, diffs = [], {}
    model.G.eval()
    with contextlib.ExitStack() as stack:
        for suffix, module, args, names, out_name in _graphs(model):
            target = path.with_name(path.stem + suffix + ".onnx")
            log.info("exporting %s ...", target.name)
            tmp = Path(stack.enter_context(atomic_path(target)))
            batch = torch.export.Dim("batch")
            try:
                with _quiet(), torch.no_grad():
                    prog = torch.onnx.export(module.eval(), args, dynamo=True, input_names=names,
                                             output_names=[out_name], dynamic_shapes=tuple({0: batch} for _ in args),
                                             opset_version=OPSET, external_data=False)
            except Exception as e:          # the exporter raises many kinds on a graph it cannot trace
                raise LatentAtlasError(f"ONNX export of {target.name} failed: {type(e).__name__}: "
                                       f"{str(e).splitlines()[0][:300]}") from None
            proto = prog.model_proto
            for k, v in _metadata(model, suffix, family).items():
                proto.metadata_props.add(key=k, value=v)
            onnx.save(proto, str(tmp))
            if check:
                diffs[target.name] = _check(tmp, module, args, names)
                if diffs[target.name] is not None and diffs[target.name] > MAX_DIFF:
                    raise LatentAtlasError(f"{target.name}: onnxruntime differs from PyTorch by "
                                           f"{diffs[target.name]:.2e} (limit {MAX_DIFF}); not written")
            files.append(str(target))
    return {"files": files, "max_abs_diff": diffs, "opset": OPSET,
            "bytes": sum(os.path.getsize(f) for f in files)}
