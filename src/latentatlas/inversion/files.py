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
from ..imageio import animation_format, atomic_path, clean_partial, make_grid, preview_scale, save_animation, save_png
from ..metrics.perceptual import perceptual_fn
from ..metrics.reconstruction import reconstruction_metrics
from . import InversionConfig, config_json, invert, resolve_atlas
from .memory import MemoryProbe, available_bytes, fit_batch, human, probe

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
    scale = preview_scale(target.shape[-1])
    pics = [make_grid(torch.stack([target.cpu(), f]), nrow=2, scale=scale) for f in frames]
    save_animation(pics + [pics[-1]] * 8, path, fps=12)


def invert_batch(model, x: torch.Tensor, cfg: InversionConfig, *, atlas=None, perc=None, progress: bool = False,
                 video: str | None = None) -> list[dict]:
    """Invert one batch of targets ``x`` [N, C, H, W]; per image a dict of what ``write_item``
    saves: the code (and W+ codes), the reconstruction, the metrics and, with ``video``, the
    frames. The same call runs in this process and in a Ray worker (``latentatlas.parallel``)."""
    every = max(1, cfg.steps // 60) if video else 0
    res = invert(model, x, cfg, atlas=atlas, progress=progress, frames_every=every)
    mets = reconstruction_metrics(x, res.images, perc)
    items = []
    for j in range(x.shape[0]):
        items.append({"code": res.codes[j].cpu().numpy(), "ws": None if res.ws is None else res.ws[j].cpu().numpy(),
                      "image": res.images[j].cpu(), "target": x[j].cpu(),
                      "frames": [f[j].cpu() for _, f in res.frames] if video else None,
                      "rec": {"steps": int(res.steps_used[j]), "final_loss": float(res.final_loss[j]),
                              "init": res.init_labels[j], "stop_reason": res.stop_reasons[j],
                              "converged": res.converged[j], **{k: float(v[j]) for k, v in mets.items()}}})
    return items


def invert_task(worker, x: torch.Tensor, cfg: InversionConfig, video: str | None = None,
                progress: bool = False) -> list[dict]:
    """Pool task: ``invert_batch`` on the worker's model and atlas (the perceptual distance built
    once per worker)."""
    perc = worker.cached(("perceptual", cfg.perceptual),
                         lambda: perceptual_fn(cfg.perceptual, worker.model) if cfg.perceptual != "none" else None)
    return invert_batch(worker.model, x, cfg, atlas=worker.atlas, perc=perc, progress=progress, video=video)


def write_item(out: Path, path: Path, note: str, item: dict, *, cfg_json: str, model_name: str, weights_hash: str,
               precision: str = "fp32",
               min_psnr: float, video: str | None = None) -> dict:
    """Write one image's outputs atomically: NAME.npz, NAME.png (and NAME.gif/.mp4), then
    NAME.json last: an image is finished exactly when its JSON exists."""
    stem = path.stem
    arrays = {"code": item["code"], "space": np.asarray(json.loads(cfg_json)["space"]), "config": np.asarray(cfg_json),
              "weights_hash": np.asarray(weights_hash), "model": np.asarray(model_name)}
    if item["ws"] is not None:
        arrays["ws"] = item["ws"]
    with atomic_path(out / f"{stem}.npz") as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)
    save_png(item["image"], out / f"{stem}.png")
    if video:
        _save_trajectory(item["target"], item["frames"], out / f"{stem}.{video}")
    rec = {"file": str(path), "note": note, **item["rec"], "precision": precision}
    rec["ok"] = rec["psnr"] >= min_psnr
    with atomic_path(out / f"{stem}.json") as tmp:
        Path(tmp).write_text(json.dumps(rec, indent=2))
    return rec


def _load_chunk(paths, model, resample, summary) -> list:
    """Read a chunk of images; unreadable ones are logged and listed in ``summary['failed']``."""
    loaded = []
    for p in paths:
        li = load_image(p, size=model.img_resolution, channels=model.img_channels, resample=resample)
        if li.tensor is None:
            log.error("%s: %s (skipped)", p, li.note)
            summary["failed"].append({"file": str(p), "error": li.note})
            continue
        if li.note:
            log.info("%s: %s", p.name, li.note)
            summary["notes"][p.name] = li.note
        loaded.append(li)
    return loaded


def invert_files(model, inputs, out_dir, cfg: InversionConfig, *, batch_size: int = 32,
                 resample: str = "lanczos", atlas=None, progress: bool = True, min_psnr: float | None = None,
                 video: str | None = None, pool=None, max_memory: int | None = None) -> dict:
    """Invert the images in ``inputs`` into ``out_dir`` (per image NAME.npz, .png, .json; resumable
    under one configuration) and return the summary with the verdict. ``video`` ('gif' or 'mp4')
    also writes NAME.gif / NAME.mp4: target beside the reconstruction over the optimisation.
    ``pool`` (a ``latentatlas.parallel`` pool) runs the batches on its workers; the outputs are the
    ones this process would write, each written once, by this process, atomically. The memory an
    image holds for its backward pass is measured first (``inversion.memory``) and the batch cut
    to what fits ``max_memory`` bytes (default half of what is free)."""
    from tqdm import tqdm

    out = Path(out_dir)
    if video is not None:
        animation_format(f"x.{video}")          # mp4 without ffmpeg is refused before any work
    min_psnr = default_min_psnr(model.img_resolution) if min_psnr is None else min_psnr
    paths = list_images(inputs)
    stems = [p.stem for p in paths]
    if len(set(stems)) != len(stems):
        raise LatentAtlasError("two input images share a file name stem; outputs would collide")
    cfg_json = config_json(cfg)
    key = {"model": model.name, "weights_hash": model.weights_hash(), "config": json.loads(cfg_json),
           "resample": resample}
    # the memory an image holds for its backward pass, measured before anything is written (only
    # when an image is left to invert: a rerun of a finished folder costs nothing)
    pending = any(not (out / f"{p.stem}.json").exists() for p in paths)
    mem = probe(model, cfg) if pending else MemoryProbe(per_image=1, fixed=0)
    limit = max_memory if max_memory is not None else available_bytes(model.device) // 2
    checkpointing = False
    if pending and mem.batch_bytes(1) > limit and getattr(model, "set_checkpointing", lambda on: False)(True):
        checkpointing = True                  # one image does not fit: keep block inputs only, recompute the rest
        mem = probe(model, cfg)
        log.info("one image's activations exceed %s: activation checkpointing on (the synthesis blocks are "
                 "recomputed in the backward pass)", human(limit))
    try:
        fitted = fit_batch(mem, limit, batch_size)
    except LatentAtlasError:
        if checkpointing:
            model.set_checkpointing(False)
        raise
    try:
        _check_manifest(out, key)
        removed = clean_partial(out)
        if removed:
            log.info("removed %d partial file(s) left by an interrupted run", removed)
        todo = [p for p in paths if not (out / f"{p.stem}.json").exists()]
        summary = {"total": len(paths), "skipped_finished": len(paths) - len(todo), "done": 0, "failed": [], "notes": {}}
        wh = model.weights_hash()
        if todo:
            resolved = resolve_atlas(model, [cfg], atlas, progress=progress)   # once, here, for every batch and worker
            if pool is not None and resolved is not atlas:
                pool.share_atlas(resolved)
            atlas = resolved
            log.info("inversion holds ~%s per image (+%s per batch) for its backward pass: batches of %d fit in %s%s",
                     human(mem.per_image), human(mem.fixed), fitted, human(limit),
                     "" if max_memory is not None else " (half of the memory free; --max-memory to change)")
            summary["memory"] = {"per_image_bytes": mem.per_image, "per_batch_bytes": mem.fixed, "limit_bytes": limit,
                                 "batch_size": fitted, "requested_batch_size": batch_size,
                                 "activation_checkpointing": checkpointing}
            batch_size = fitted
            log.info("inverting %d images in batches of %d (%s, %d steps, init %s)%s", len(todo), batch_size,
                     cfg.space, cfg.steps, cfg.init, f" on {pool.describe()}" if pool is not None else "")
        chunks = [todo[i:i + batch_size] for i in range(0, len(todo), batch_size)]

        def tasks():
            for paths_c in chunks:
                loaded = _load_chunk(paths_c, model, resample, summary)
                if loaded:
                    yield loaded, torch.stack([li.tensor for li in loaded])

        write = dict(cfg_json=cfg_json, model_name=model.name, weights_hash=wh, min_psnr=min_psnr, video=video,
                     precision=model.precision.name)
        bar = tqdm(total=len(todo), disable=not progress or pool is None, desc="images", unit="img")
        if pool is None:
            perc = perceptual_fn(cfg.perceptual, model) if cfg.perceptual != "none" else None
            for loaded, x in tasks():
                for li, item in zip(loaded, invert_batch(model, x, cfg, atlas=atlas, perc=perc, progress=progress,
                                                         video=video)):
                    write_item(out, li.path, li.note, item, **write)
                    summary["done"] += 1
        else:
            for loaded, items in pool.imap(invert_task, ((loaded, (x, cfg, video), {}) for loaded, x in tasks())):
                for li, item in zip(loaded, items):
                    write_item(out, li.path, li.note, item, **write)
                    summary["done"] += 1
                bar.update(len(loaded))
        bar.close()
        if todo and not summary["done"] and not summary["skipped_finished"] and summary["failed"]:
            f = summary["failed"][0]
            raise LatentAtlasError(f"none of the {len(todo)} images could be read ({f['file']}: {f['error']})")
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
    finally:
        if checkpointing:
            model.set_checkpointing(False)
