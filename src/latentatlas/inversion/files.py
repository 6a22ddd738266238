"""Inverting image files: batching, a resumable output directory, atomic per-image results and a
verdict per image.

For each input ``NAME.png`` the output directory gets ``NAME.npz`` (the code, W+ codes, the
config as JSON and the model's weights hash), ``NAME.png`` (the reconstruction) and
``NAME.json`` (metrics and verdict). ``NAME.json`` is written last, so an image counts as
finished only when it exists. ``latentatlas-invert.json`` records the model's weights and the
configuration the directory was made with: a rerun with the same ones skips finished images; a
rerun with another configuration (steps, space, init, ...) or model is refused, never skipped.

Every image gets a verdict: PSNR / SSIM / perceptual distance, the steps used, the start that won,
why it stopped and ``ok`` = PSNR ≥ the threshold (``default_min_psnr``).
"""
from __future__ import annotations

import json
import logging
import statistics
from pathlib import Path

import numpy as np
import torch

from ..data.folder import list_images, load_image
from ..errors import LatentAtlasError
from ..imageio import atomic_path, save_png
from ..metrics.reconstruction import reconstruction_metrics
from . import InversionConfig, config_json, invert, perceptual_fn

log = logging.getLogger("latentatlas.invert")

MANIFEST = "latentatlas-invert.json"


def default_min_psnr(resolution: int) -> float:
    """The PSNR an inversion must reach to count as found: 25 dB up to 64 px (the model's own
    samples come back far above it; a wrong basin stays far below), 22 dB up to 256 px, 20 dB
    above (fine texture at high resolution costs a few dB even when the content is right)."""
    return 25.0 if resolution <= 64 else 22.0 if resolution <= 256 else 20.0


def _check_manifest(out: Path, key: dict):
    path = out / MANIFEST
    if not path.is_file():
        if out.is_dir() and any(out.glob("*.json")):
            raise LatentAtlasError(f"{out} holds files but no {MANIFEST}: it was not written by this "
                                   f"version of 'invert'; choose another --out")
        out.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            Path(tmp).write_text(json.dumps(key, indent=2, sort_keys=True))
        return
    try:
        old = json.loads(path.read_text())
    except ValueError:
        raise LatentAtlasError(f"{path} is not valid JSON; choose another --out") from None
    if old != key:
        diff = [k for k in sorted(set(old) | set(key)) if old.get(k) != key.get(k)]
        if "config" in diff:
            oc, nc = old.get("config") or {}, key["config"]
            diff = [f"{k} {oc.get(k)!r} -> {nc.get(k)!r}" for k in sorted(set(oc) | set(nc)) if oc.get(k) != nc.get(k)]
        raise LatentAtlasError(f"{out} holds an inversion made with another model or configuration "
                               f"({'; '.join(diff)}); choose another --out to keep both")


def summarize(records: list[dict], min_psnr: float) -> dict:
    """Mean / median / worst PSNR over finished images and the ones below the threshold."""
    ps = [r["psnr"] for r in records]
    if not ps:
        return {"min_psnr": min_psnr, "n": 0, "below": []}
    worst = min(records, key=lambda r: r["psnr"])
    below = sorted((r for r in records if r["psnr"] < min_psnr), key=lambda r: r["psnr"])
    return {"min_psnr": min_psnr, "n": len(ps), "psnr_mean": statistics.fmean(ps), "psnr_median": statistics.median(ps),
            "psnr_worst": worst["psnr"], "worst_file": worst["file"], "share_ok": 1 - len(below) / len(ps),
            "converged": sum(bool(r.get("converged")) for r in records),
            "below": [{"file": r["file"], "psnr": round(r["psnr"], 2), "init": r.get("init")} for r in below]}


def _save_trajectory(target: torch.Tensor, frames: list, path: Path):
    """Target | reconstruction at each recorded step, as an animation (the last frame held)."""
    from ..imageio import make_grid, save_animation
    scale = max(1, 128 // target.shape[-1])
    pics = [make_grid(torch.stack([target.cpu(), f]), nrow=2, scale=scale) for _, f in frames]
    save_animation(pics + [pics[-1]] * 8, path, fps=12)


def invert_files(model, inputs, out_dir, cfg: InversionConfig, *, batch_size: int = 32,
                 resample: str = "lanczos", atlas=None, progress: bool = True, min_psnr: float | None = None,
                 video: str | None = None) -> dict:
    """Invert the images in ``inputs`` into ``out_dir`` (per image NAME.npz, .png, .json; resumable
    under one configuration) and return the summary with the verdict. ``video`` ('gif' or 'mp4')
    also writes NAME.gif / NAME.mp4: target beside the reconstruction over the optimisation."""
    out = Path(out_dir)
    if video is not None:
        from ..imageio import animation_format
        animation_format(f"x.{video}")          # mp4 without ffmpeg is refused before any work
    min_psnr = default_min_psnr(model.img_resolution) if min_psnr is None else min_psnr
    paths = list_images(inputs)
    stems = [p.stem for p in paths]
    if len(set(stems)) != len(stems):
        raise LatentAtlasError("two input images share a file name stem; outputs would collide")
    key = {"model": model.name, "weights_hash": model.weights_hash(), "config": json.loads(config_json(cfg)),
           "resample": resample}
    _check_manifest(out, key)
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
    perc = perceptual_fn(cfg.perceptual, model) if cfg.perceptual != "none" else None
    wh = model.weights_hash()
    if loaded:
        log.info("inverting %d images in batches of %d (%s, %d steps, init %s)", len(loaded), batch_size,
                 cfg.space, cfg.steps, cfg.init)
    for i in range(0, len(loaded), batch_size):
        chunk = loaded[i:i + batch_size]
        x = torch.stack([li.tensor for li in chunk])
        every = max(1, cfg.steps // 60) if video else 0
        res = invert(model, x, cfg, atlas=atlas, progress=progress, frames_every=every)
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
            if video:
                _save_trajectory(x[j], [(t, f[j]) for t, f in res.frames], out / f"{stem}.{video}")
            rec = {"file": str(li.path), "note": li.note, "steps": int(res.steps_used[j]),
                   "final_loss": float(res.final_loss[j]), "init": res.init_labels[j],
                   "stop_reason": res.stop_reasons[j], "converged": res.converged[j],
                   **{k: float(v[j]) for k, v in mets.items()}}
            rec["ok"] = rec["psnr"] >= min_psnr
            with atomic_path(out / f"{stem}.json") as tmp:
                Path(tmp).write_text(json.dumps(rec, indent=2))
            summary["done"] += 1
    records = []
    for p in paths:
        f = out / f"{p.stem}.json"
        if f.is_file():
            try:
                records.append(json.loads(f.read_text()))
            except ValueError:
                log.warning("%s is not valid JSON; left out of the verdict", f)
    summary["verdict"] = summarize(records, min_psnr)
    return summary
