"""Inverting image files: batching, resumable output directory, atomic per-image results.

For each input ``NAME.png`` the output directory gets ``NAME.npz`` (the code, W+ codes, the
config as JSON and the model's weights hash), ``NAME.png`` (the reconstruction) and
``NAME.json`` (metrics). ``NAME.json`` is written last, so an image counts as finished only
when all three exist; a rerun skips finished images.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import torch

from ..data.folder import list_images, load_image
from ..errors import LatentAtlasError
from ..imageio import atomic_path, save_png
from ..metrics.reconstruction import reconstruction_metrics
from . import InversionConfig, config_json, invert, perceptual_fn

log = logging.getLogger("latentatlas.invert")


def invert_files(model, inputs, out_dir, cfg: InversionConfig, *, batch_size: int = 32,
                 resample: str = "lanczos", atlas=None, progress: bool = True) -> dict:
    out = Path(out_dir)
    paths = list_images(inputs)
    stems = [p.stem for p in paths]
    if len(set(stems)) != len(stems):
        raise LatentAtlasError("two input images share a file name stem; outputs would collide")
    todo = [p for p in paths if not (out / f"{p.stem}.json").exists()]
    summary = {"total": len(paths), "skipped_finished": len(paths) - len(todo), "done": 0, "failed": [], "notes": {}}
    loaded = []
    for p in todo:
        li = load_image(p, size=model.img_resolution, channels=model.img_channels, resample=resample)
        if li.tensor is None:
            log.error("%s: %s (skipped)", p, li.note)
            summary["failed"].append({"file": str(p), "error": li.note})
            continue
        if li.note:
            log.info("%s: %s", p.name, li.note)
            summary["notes"][p.name] = li.note
        loaded.append(li)
    if todo and not loaded and not summary["skipped_finished"]:
        f = summary["failed"][0]
        raise LatentAtlasError(f"none of the {len(todo)} images could be read ({f['file']}: {f['error']})")
    out.mkdir(parents=True, exist_ok=True)
    perc = perceptual_fn(cfg.perceptual, model) if cfg.perceptual != "none" else None
    wh = model.weights_hash()
    for i in range(0, len(loaded), batch_size):
        chunk = loaded[i:i + batch_size]
        x = torch.stack([li.tensor for li in chunk])
        res = invert(model, x, cfg, atlas=atlas, progress=progress)
        mets = reconstruction_metrics(x, res.images, perc)
        for j, li in enumerate(chunk):
            stem = li.path.stem
            arrays = {"code": res.codes[j].numpy(), "space": np.asarray(cfg.space),
                      "config": np.asarray(config_json(cfg)), "weights_hash": np.asarray(wh),
                      "model": np.asarray(model.name)}
            if res.ws is not None:
                arrays["ws"] = res.ws[j].numpy()
            with atomic_path(out / f"{stem}.npz") as tmp:
                with open(tmp, "wb") as fh:
                    np.savez(fh, **arrays)
            save_png(res.images[j], out / f"{stem}.png")
            rec = {"file": str(li.path), "note": li.note, "steps": int(res.steps_used[j]),
                   "final_loss": float(res.final_loss[j]),
                   **{k: float(v[j]) for k, v in mets.items()}}
            with atomic_path(out / f"{stem}.json") as tmp:
                Path(tmp).write_text(json.dumps(rec, indent=2))
            summary["done"] += 1
    return summary
