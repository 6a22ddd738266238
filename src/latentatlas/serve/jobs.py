"""The explorer's inversion jobs: one record per upload, the worker thread that inverts them one at
a time, and latents in and out as .npz."""
from __future__ import annotations

import io
import logging
import queue
import secrets
import threading
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from ..errors import LatentAtlasError
from ..imageio import preview_scale
from ..inversion import invert
from ..inversion.refine import RefineConfig, delta_of, refine
from ..metrics.reconstruction import psnr
from ..validate import check_npz_sizes
from .wire import EXPLORER_PX, MAX_LATENT_INFLATED, HTTPError, b64, png_bytes

log = logging.getLogger("latentatlas.serve")


@dataclass
class Job:
    id: str
    status: str = "queued"           # queued | running | done | failed
    progress: float = 0.0
    message: str = ""
    space: str = "wplus"
    code: torch.Tensor | None = None  # [1, ...] in ``space``
    ws: torch.Tensor | None = None    # [1, L, D] (mapped models) or None
    z: torch.Tensor | None = None     # [1, z_dim] (Z models)
    psnr: float | None = None
    target_png: bytes = b""
    result_png: bytes = b""
    refine_steps: int = 0             # pivotal tuning after the inversion (0 = none)
    delta: dict | None = None         # the refined synthesis weights' delta (edits of this job use it)
    refined_psnr: float | None = None
    refined_png: bytes = b""
    created: float = field(default_factory=time.time)

    def public(self) -> dict:
        d = {"id": self.id, "status": self.status, "progress": round(self.progress, 3), "message": self.message,
             "space": self.space, "psnr": self.psnr, "refine_steps": self.refine_steps,
             "refined_psnr": self.refined_psnr}
        if self.status == "done":
            d.update(target=b64(self.target_png) if self.target_png else None, result=b64(self.result_png),
                     refined=b64(self.refined_png) if self.refined_png else None)
        return d


def run_jobs(model, jobs: queue.Queue, stop: threading.Event, atlas_of):
    """The worker thread: inverts the queued jobs one at a time until ``stop`` is set (a running
    job then ends as failed). ``atlas_of()`` is the explorer's atlas at the time a job starts."""
    while not stop.is_set():
        try:
            job, x, cfg = jobs.get(timeout=0.2)
        except queue.Empty:
            continue
        job.status = "running"
        try:
            share = 0.5 if job.refine_steps else 1.0     # of the progress bar: the inversion, then the tuning

            def cb(step, loss, active):
                job.progress = share * (step + 1) / cfg.steps
                if stop.is_set():
                    raise KeyboardInterrupt
            res = invert(model, x, cfg, atlas=atlas_of(), callback=cb)
            job.code = res.codes
            job.ws = res.ws if model.has_mapping else None
            job.z = res.z
            if job.ws is None and job.z is None:
                raise LatentAtlasError("this inversion has no code to edit")
            job.psnr = round(float(psnr(res.images, x)[0]), 2)
            scale = preview_scale(model.img_resolution, EXPLORER_PX)
            job.target_png, job.result_png = png_bytes(x, scale=scale), png_bytes(res.images, scale=scale)
            if job.refine_steps and job.ws is not None:
                job.message = "refining (pivotal tuning)"

                def rcb(step, loss):
                    job.progress = share + (1 - share) * (step + 1) / job.refine_steps
                    if stop.is_set():
                        raise KeyboardInterrupt
                r = refine(model, x, job.ws, RefineConfig(steps=job.refine_steps, perceptual=cfg.perceptual),
                           callback=rcb)
                job.delta = delta_of(r, 0)
                job.refined_psnr = round(float(psnr(r.images, x)[0]), 2)
                job.refined_png = png_bytes(r.images, scale=scale)
                job.message = f"refined: {job.psnr} -> {job.refined_psnr} dB"
            job.progress, job.status = 1.0, "done"
        except KeyboardInterrupt:
            job.status, job.message = "failed", "server stopping"
        except Exception as e:   # noqa: BLE001 - a failed job reports why; the server goes on
            log.exception("inversion job %s failed", job.id)
            job.status, job.message = "failed", f"{type(e).__name__}: {e}"
        finally:
            jobs.task_done()

def latent_npz(job: Job, model) -> bytes:
    """A finished job's latent as the .npz that ``invert`` writes (code, space, ws or z, weights hash)."""
    buf = io.BytesIO()
    arrays = {"code": job.code[0].numpy(), "space": np.asarray(job.space),
              "weights_hash": np.asarray(model.weights_hash()), "model": np.asarray(model.name)}
    if job.ws is not None:
        arrays["ws"] = job.ws[0].numpy()
    if job.z is not None:
        arrays["z"] = job.z[0].numpy()
    np.savez(buf, **arrays)
    return buf.getvalue()

def job_from_latent(data: bytes, model, image_of) -> Job:
    """A finished job from an .npz written by ``/api/job/ID/latent.npz`` or ``invert`` (``ws`` [L, D]
    or ``z``), its picture drawn by ``image_of(code, kind)``."""
    m = model
    try:
        check_npz_sizes(io.BytesIO(data), "the uploaded latent", "latents", limit=MAX_LATENT_INFLATED)
        with np.load(io.BytesIO(data), allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except LatentAtlasError as e:
        raise HTTPError(400, str(e)) from None
    except Exception as e:  # noqa: BLE001 - any unreadable upload is the user's input error
        raise HTTPError(400, f"not a readable latents .npz ({type(e).__name__})") from None
    wh = str(arrays.get("weights_hash", ""))
    # a refined generator (serve --refined) takes the latents of its base model
    if wh and wh != m.weights_hash() and wh != (m.info.extra or {}).get("base_weights_hash"):
        raise HTTPError(400, f"the latent was made for weights {wh}, not this model's {m.weights_hash()}")
    job = Job(secrets.token_hex(6), status="done", progress=1.0, message="uploaded latent")
    if m.has_mapping:
        ws = arrays.get("ws")
        if ws is None or ws.dtype.kind != "f" or ws.shape != (m.num_ws, m.w_dim) or not np.isfinite(ws).all():
            raise HTTPError(400, f"the .npz needs a finite 'ws' array of shape [{m.num_ws}, {m.w_dim}]")
        job.ws = torch.from_numpy(ws.astype(np.float32))[None]
        job.code, job.space = job.ws, "wplus"
        job.result_png = png_bytes(image_of(job.ws, "wplus"), scale=preview_scale(m.img_resolution, EXPLORER_PX))
    else:
        z = arrays.get("z", arrays.get("code"))
        if z is None or z.dtype.kind != "f" or z.shape != (m.z_dim,) or not np.isfinite(z).all():
            raise HTTPError(400, f"the .npz needs a finite 'z' array of shape [{m.z_dim}]")
        job.z = torch.from_numpy(z.astype(np.float32))[None]
        job.code, job.space = job.z, "z"
        job.result_png = png_bytes(image_of(job.z, "z"), scale=preview_scale(m.img_resolution, EXPLORER_PX))
    return job
