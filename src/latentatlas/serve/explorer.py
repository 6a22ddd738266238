"""The state behind the explorer's page: one model, its atlas (when cached or given), direction
sets, the render cache, the report's files and the inversion job queue (``jobs``)."""
from __future__ import annotations

import json
import logging
import queue
import secrets
import shutil
import tempfile
import threading
import time
from collections import OrderedDict
from pathlib import Path

import torch

from ..data.folder import load_image
from ..errors import LatentAtlasError
from ..imageio import preview_scale
from ..inversion import REGULARIZER_TABLE, InversionConfig
from ..inversion.refine import render_refined
from ..sampling import (
    Context,
    apply_strategy,
    get_strategy,
    initial_latents,
    render,
    strategy_names,
)
from ..walks.directions import (
    Directions,
    bundled_attributes,
    compute_directions,
    name_directions,
)
from ..walks.edit import walk_latents
from .jobs import Job, job_from_latent, latent_npz, run_jobs
from .wire import (
    CACHE_ITEMS,
    EXPLORER_PX,
    MAX_JOBS,
    HTTPError,
    b64,
    float_param,
    int_param,
    png_bytes,
    strategy_param,
)

log = logging.getLogger("latentatlas.serve")


class Explorer:
    """The state behind the page: one model, its atlas (when cached or given), direction sets,
    the render cache and the inversion job queue."""

    def __init__(self, model, *, atlas=None, directions: list[str] | None = None, report_dir=None,
                 max_jobs: int = MAX_JOBS, invert_steps: int = 300):
        self.model = model
        self.ctx = Context(model, atlas=atlas)
        self.sets: dict = {}
        self._set_specs = self._default_sets()
        for path in directions or []:
            d = Directions.load(path)
            d.check_model(model)
            self.sets[f"{d.method} ({Path(path).name})"] = d
        self.report_files = self._report_files(report_dir)
        self.tmp = Path(tempfile.mkdtemp(prefix="latentatlas-serve-"))
        self.jobs: OrderedDict[str, Job] = OrderedDict()
        self.queue: queue.Queue = queue.Queue(maxsize=max_jobs)
        self.max_jobs = max_jobs
        self.invert_steps = invert_steps
        self.cache: OrderedDict = OrderedDict()
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.cls = None
        if model.conditional:                        # every call then uses this class (the page's picker)
            self.cls = 0 if model.label is None or isinstance(model.label, str) else int(model.label.argmax())
            model.set_class(self.cls)
        self.worker = threading.Thread(target=run_jobs, args=(model, self.queue, self.stop, lambda: self.ctx.atlas),
                                       name="invert-worker", daemon=True)
        self.worker.start()

    def set_class(self, k) -> dict:
        """Switch the class of a conditional model for every later request (refused while inversions
        are queued or running: they would switch class half-way)."""
        if not self.model.conditional:
            raise HTTPError(400, f"model '{self.model.name}' is not class-conditional")
        k = int_param(k, "class", 0, self.model.c_dim - 1)
        with self.lock:
            if any(j.status in ("queued", "running") for j in self.jobs.values()):
                raise HTTPError(409, "inversions are queued or running; change the class when they are done")
            self.model.set_class(k)
            self.cls = k
            self.cache.clear()
        return {"class": k}

    # -- direction sets --------------------------------------------------------------------------
    def _default_sets(self) -> dict:
        m = self.model
        if m.has_mapping:
            specs = {"ganspace": ("ganspace", {"k": 10, "n": 20000})}
            if hasattr(m.G, "synthesis") and m.layer_names:
                specs["sefa"] = ("sefa", {"k": 10})
            return specs
        layer = m.layer_names[1] if len(m.layer_names) > 1 else None
        return {"ganspace": ("ganspace", {"k": 10, "layer": layer})} if layer else {}

    def direction_set(self, name: str):
        with self.lock:
            if name not in self.sets:
                if name not in self._set_specs:
                    raise HTTPError(404, f"no direction set {name!r}")
                method, kw = self._set_specs[name]
                t0 = time.perf_counter()
                d = compute_directions(self.model, method, **kw)
                attrs = bundled_attributes(self.model)
                if attrs is not None:                 # the sliders named by what they do (the bundled classifier)
                    d = name_directions(self.model, d, attrs, source="bundled Fashion-MNIST classifier")
                self.sets[name] = d
                log.info("direction set %s computed in %.1f s", name, time.perf_counter() - t0)
            return self.sets[name]

    def set_info(self, name: str) -> dict:
        """A set's slider labels: the directions' names (from ``directions --name-with`` or, for the
        default sets of a Fashion-MNIST-format model, measured here) and their measured effects."""
        d = self.direction_set(str(name))
        names = d.meta.get("names") or [f"{d.method} {i}" for i in range(len(d))]
        return {"set": name, "method": d.method, "names": [str(x) for x in names],
                "effects": d.meta.get("effects"), "named_with": d.meta.get("named_with")}

    def set_names(self) -> list[str]:
        return list(dict.fromkeys([*self._set_specs, *self.sets]))

    # -- latents ----------------------------------------------------------------------------------
    def base_latent(self, spec: dict):
        """(code [1, ...], kind, delta) for {"seed": S} or {"job": ID}: W+ for mapped models, else z;
        ``delta`` the job's refined weights (pivotal tuning), else None."""
        if not isinstance(spec, dict):
            raise HTTPError(400, "latent must be {\"seed\": S} or {\"job\": ID}")
        m = self.model
        if "job" in spec:
            job = self.jobs.get(str(spec["job"]))
            if job is None or job.status != "done":
                raise HTTPError(404, "no finished inversion with that id")
            return (job.ws, "wplus", job.delta) if job.ws is not None else (job.z, "z", None)
        seed = int_param(spec.get("seed", 0), "seed", 0, 2 ** 31 - 1)
        z = m.sample_z(1, seed)
        with torch.no_grad():
            return (m.broadcast(m.mapping(z)), "wplus", None) if m.has_mapping else (z, "z", None)

    def _image(self, code, kind, delta=None) -> torch.Tensor:
        if delta is not None:         # the job's own refined generator
            return render_refined(self.model, {k: v[None] for k, v in delta.items()}, code).clamp(-1, 1).cpu()
        with torch.no_grad():
            return (self.model.synthesis(code) if kind == "wplus" else self.model(code)).clamp(-1, 1).cpu()

    def render(self, body: dict) -> bytes:
        amounts = body.get("amounts") or []
        if not isinstance(amounts, list) or len(amounts) > 32:
            raise HTTPError(400, "amounts must be a list of at most 32 numbers")
        amounts = [float_param(a, "amount", -20, 20) for a in amounts]
        key = ("render", json.dumps(body.get("latent"), sort_keys=True), body.get("set"), tuple(amounts))
        hit = self._cached(key)
        if hit is not None:
            return hit
        code, kind, delta = self.base_latent(body.get("latent", {"seed": 0}))
        code = code.clone()
        if any(amounts):
            d = self.direction_set(str(body.get("set")))
            want = "w" if kind == "wplus" else "z"
            if d.space != want:
                raise HTTPError(400, f"set {body.get('set')!r} holds {d.space} directions; this latent needs {want}")
            for i, a in enumerate(amounts[:len(d)]):
                step = d.vectors[i].to(code.device) * float(d.sigmas[i]) * a
                code = code + (step if kind == "z" else step[None, None])
        png = png_bytes(self._image(code, kind, delta), scale=preview_scale(self.model.img_resolution, EXPLORER_PX))
        return self._store(key, png)

    def sample(self, seed: int, n: int) -> bytes:
        key = ("sample", seed, n)
        hit = self._cached(key)
        if hit is not None:
            return hit
        m = self.model
        with torch.no_grad():
            imgs = m.generate(m.sample_z(n, seed)).clamp(-1, 1)
        nrow = min(8, n)
        return self._store(key, png_bytes(imgs, nrow=nrow, scale=max(1, 512 // (nrow * (m.img_resolution + 2)))))

    def strategies(self, body: dict) -> list[dict]:
        seed = int_param(body.get("seed", 0), "seed", 0, 2 ** 31 - 1)
        wanted = body.get("strategies") or {}
        if not isinstance(wanted, dict) or len(wanted) > 12:
            raise HTTPError(400, "strategies must be an object NAME -> {param: value} (at most 12)")
        m = self.model
        lat = initial_latents(m, m.sample_z(1, seed))
        out = []
        for name, params in wanted.items():
            shown = params.items() if isinstance(params, dict) else []
            label = f"{name} " + ",".join(f"{k}={v}" for k, v in shown)
            try:
                get_strategy(str(name))
                if not isinstance(params, dict):
                    raise LatentAtlasError("parameters must be an object")
                params = {str(k): strategy_param(v) for k, v in params.items()}
                key = ("strategy", seed, name, json.dumps(params, sort_keys=True))
                png = self._cached(key)
                if png is None:
                    new = apply_strategy(m, str(name), lat, self.ctx, **params)
                    png = self._store(key, png_bytes(render(m, new), scale=preview_scale(m.img_resolution)))
                out.append({"label": label.strip(), "image": b64(png)})
            except LatentAtlasError as e:
                out.append({"label": label.strip(), "error": str(e)})
        return out

    def walk(self, q: dict) -> dict:
        seed = int_param(q.get("seed", 0), "seed", 0, 2 ** 31 - 1)
        index = int_param(q.get("index", 0), "index", 0, 1000)
        steps = int_param(q.get("steps", 9), "steps", 2, 33)
        kind = str(q.get("kind", "linear"))
        extent = float_param(q.get("extent", 2.0), "extent", 0.1, 10)
        d = self.direction_set(str(q.get("set", "ganspace")))
        m = self.model
        z = m.sample_z(1, seed)
        try:
            with torch.no_grad():
                base = m.mapping(z) if d.space == "w" else z
            path = walk_latents(m, d, index, base, kind=kind, steps=steps, extent=extent,
                                dp_model=getattr(d, "dp_model", None))
        except LatentAtlasError as e:
            raise HTTPError(400, str(e)) from None
        with torch.no_grad():
            flat = path.reshape(steps, -1)
            imgs = (m.synthesis(flat) if d.space == "w" else m(flat)).clamp(-1, 1).cpu()
        scale = preview_scale(m.img_resolution)
        return {"frames": [b64(png_bytes(imgs[i:i + 1], scale=scale)) for i in range(steps)],
                "strip": b64(png_bytes(imgs, nrow=steps, scale=max(1, scale // 2)))}

    # -- inversion jobs -------------------------------------------------------------------------
    def submit(self, data: bytes, q: dict) -> Job:
        m = self.model
        space = str(q.get("space", "wplus" if m.has_mapping else "z"))
        if space not in self.spaces():
            raise HTTPError(400, f"space {space!r} does not apply to this model ({', '.join(self.spaces())})")
        name, value = InversionConfig.parse_regularizer(str(q.get("regularizer", "none")))   # unknown: 400
        steps = int_param(q.get("steps", self.invert_steps), "steps", 1, 2000)
        refine_steps = int_param(q.get("refine", 0), "refine", 0, 2000)
        if refine_steps and not (m.has_mapping and space in ("w", "wplus", "pnorm+")):
            raise HTTPError(400, "refinement (pivotal tuning) needs a W/W+ inversion of a model with a mapping network")
        # the bytes go to a server-named file in the private temp dir, then through the same
        # reader as the CLI (size, pixel-count and format checks)
        tmp = self.tmp / f"upload-{secrets.token_hex(8)}"
        tmp.write_bytes(data)
        try:
            li = load_image(tmp, size=m.img_resolution, channels=m.img_channels)
        finally:
            tmp.unlink(missing_ok=True)
        if li.tensor is None:
            raise HTTPError(400, f"not an accepted image: {li.note}")
        try:
            cfg = InversionConfig(space=space, steps=steps, regularizer=name, reg_value=value,
                                  perceptual="discriminator" if m.has_discriminator else "none",
                                  init="best-of:64")
        except LatentAtlasError as e:
            raise HTTPError(400, str(e)) from None
        job = Job(secrets.token_hex(6), space=space, message=li.note, refine_steps=refine_steps)
        try:
            self.queue.put_nowait((job, li.tensor[None], cfg))
        except queue.Full:
            raise HTTPError(429, f"{self.max_jobs} inversions are queued or running; try again later") from None
        with self.lock:
            self.jobs[job.id] = job
            while len(self.jobs) > 4 * self.max_jobs:             # forget the oldest finished ones
                old = next((k for k, j in self.jobs.items() if j.status in ("done", "failed")), None)
                if old is None:
                    break
                self.jobs.pop(old)
        return job

    def latent_npz(self, job_id: str) -> bytes:
        job = self.jobs.get(job_id)
        if job is None or job.status != "done":
            raise HTTPError(404, "no finished inversion with that id")
        return latent_npz(job, self.model)

    def upload_latent(self, data: bytes) -> Job:
        """A latent back in (``jobs.job_from_latent``), kept as a finished job."""
        job = job_from_latent(data, self.model, self._image)
        with self.lock:
            self.jobs[job.id] = job
        return job

    # -- info, cache, report --------------------------------------------------------------------
    def spaces(self) -> list[str]:
        return ["wplus", "w", "pnorm+"] if self.model.has_mapping else ["z"]

    def info(self) -> dict:
        m = self.model
        strategies = []
        for name in strategy_names():
            s = get_strategy(name)
            if name == "none" or ("mapping" in s.needs and not m.has_mapping):
                continue
            strategies.append({"name": name, "doc": s.doc, "defaults": {k: v for k, v in s.defaults.items()
                                                                       if v is None or isinstance(v, (int, float, str))}})
        return {"model": m.name, "resolution": m.img_resolution, "channels": m.img_channels,
                "classes": m.c_dim if m.conditional else 0, "class": self.cls,
                "mapping": m.has_mapping, "discriminator": m.has_discriminator, "sets": self.set_names(),
                "strategies": strategies, "walks": ["linear", "dp", "great-circle"] if not m.has_mapping else ["linear", "dp"],
                "spaces": self.spaces(),
                "regularizers": list(REGULARIZER_TABLE), "report": "/report/index.html" if self.report_files else None,
                "max_jobs": self.max_jobs}

    def _cached(self, key):
        with self.lock:
            if key in self.cache:
                self.cache.move_to_end(key)
                return self.cache[key]
        return None

    def _store(self, key, value):
        with self.lock:
            self.cache[key] = value
            while len(self.cache) > CACHE_ITEMS:
                self.cache.popitem(last=False)
        return value

    @staticmethod
    def _report_files(report_dir) -> dict:
        """Name -> path for the report's files, listed once at start (HTML, PNG, GIF, JSON)."""
        if report_dir is None:
            return {}
        d = Path(report_dir)
        if not (d / "index.html").is_file():
            raise LatentAtlasError(f"{d}: not a report directory (no index.html); build one with 'latentatlas report'")
        return {p.name: p for p in d.iterdir() if p.is_file() and p.suffix.lower() in (".html", ".png", ".gif", ".json")}

    def close(self):
        self.stop.set()
        self.worker.join(timeout=5)
        shutil.rmtree(self.tmp, ignore_errors=True)
