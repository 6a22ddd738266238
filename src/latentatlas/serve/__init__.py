"""``latentatlas serve``: the latent space explored in the browser.

One page from the package (``index.html``, no external script, font or request: the server
sends a Content-Security-Policy that forbids them) talks to a small JSON/PNG API:

* ``GET /api/info`` — the model, its direction sets, sampling strategies with their parameters,
  walks, inversion spaces and regularisers, report link;
* ``GET /api/sample?seed=S&n=N`` — a sample grid (PNG); ``POST /api/class {"class": K}`` — the class
  of a conditional model for everything after;
* ``POST /api/render`` ``{"latent": {"seed": S} | {"job": ID}, "set": NAME, "amounts": [..]}`` —
  one image edited along the set's first directions by the slider amounts (σ units), PNG;
* ``POST /api/strategies`` ``{"seed": S, "strategies": {NAME: {param: value}}}`` — the same seed
  under each strategy side by side (base64 PNGs, or the reason one does not apply);
* ``GET /api/walk?seed=S&set=NAME&index=K&kind=linear|dp|great-circle&steps=9`` — frames;
* ``POST /api/invert?space=&regularizer=&steps=`` (body: a PNG/JPEG) — an inversion job;
  ``GET /api/job/ID`` its progress and result; ``GET /api/job/ID/latent.npz`` the latent;
  ``POST /api/latent`` (body: such an .npz) — a latent back in;
* ``GET /report/NAME`` — the files of a report directory given at start (listed then; a request
  never names a path on disk).

Built on the standard library's threaded HTTP server: no web framework to install or keep in
step with, and every byte that crosses the socket is in this file. Bounded everywhere: request
bodies (``MAX_UPLOAD``), decoded pixels (the image reader's limits), the job queue (429 when
full), the render cache; uploads live only in a temporary directory removed at exit.
"""
from __future__ import annotations

import base64
import importlib.resources
import io
import json
import logging
import queue
import secrets
import tempfile
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import numpy as np
import torch

from ..errors import LatentAtlasError
from ..imageio import make_grid

log = logging.getLogger("latentatlas.serve")

MAX_UPLOAD = 8 * 2 ** 20            # bytes of one request body
MAX_JOBS = 8                         # inversion jobs queued or running; more get 429
MAX_SAMPLES = 64
CACHE_ITEMS = 512
CSP = ("default-src 'none'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
       "img-src 'self' data: blob:; connect-src 'self'; form-action 'none'; base-uri 'none'; frame-ancestors 'none'")


class HTTPError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


def _png(images: torch.Tensor, nrow: int | None = None, scale: int = 1) -> bytes:
    buf = io.BytesIO()
    make_grid(images, nrow=nrow, pad=0 if images.shape[0] == 1 else 2, scale=scale).save(buf, format="PNG")
    return buf.getvalue()


def _b64(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode()


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
    created: float = field(default_factory=time.time)

    def public(self) -> dict:
        d = {"id": self.id, "status": self.status, "progress": round(self.progress, 3), "message": self.message,
             "space": self.space, "psnr": self.psnr}
        if self.status == "done":
            d.update(target=_b64(self.target_png) if self.target_png else None, result=_b64(self.result_png))
        return d


class Explorer:
    """The state behind the page: one model, its atlas (when cached or given), direction sets,
    the render cache and the inversion job queue."""

    def __init__(self, model, *, atlas=None, directions: list[str] | None = None, report_dir=None,
                 max_jobs: int = MAX_JOBS, invert_steps: int = 300):
        from ..sampling import Context
        self.model = model
        self.ctx = Context(model, atlas=atlas)
        self.sets: dict = {}
        self._set_specs = self._default_sets()
        for path in directions or []:
            from ..walks.directions import Directions
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
        self.worker = threading.Thread(target=self._work, name="invert-worker", daemon=True)
        self.worker.start()

    def set_class(self, k) -> dict:
        """Switch the class of a conditional model for every later request (refused while inversions
        are queued or running: they would switch class half-way)."""
        if not self.model.conditional:
            raise HTTPError(400, f"model '{self.model.name}' is not class-conditional")
        k = _int(k, "class", 0, self.model.c_dim - 1)
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
                from ..walks.directions import compute_directions
                method, kw = self._set_specs[name]
                t0 = time.perf_counter()
                self.sets[name] = compute_directions(self.model, method, **kw)
                log.info("direction set %s computed in %.1f s", name, time.perf_counter() - t0)
            return self.sets[name]

    def set_names(self) -> list[str]:
        return list(dict.fromkeys([*self._set_specs, *self.sets]))

    # -- latents ----------------------------------------------------------------------------------
    def base_latent(self, spec: dict):
        """(code [1, ...], kind) for {"seed": S} or {"job": ID}: W+ for mapped models, else z."""
        if not isinstance(spec, dict):
            raise HTTPError(400, "latent must be {\"seed\": S} or {\"job\": ID}")
        m = self.model
        if "job" in spec:
            job = self.jobs.get(str(spec["job"]))
            if job is None or job.status != "done":
                raise HTTPError(404, "no finished inversion with that id")
            return (job.ws, "wplus") if job.ws is not None else (job.z, "z")
        seed = _int(spec.get("seed", 0), "seed", 0, 2 ** 31 - 1)
        z = m.sample_z(1, seed)
        with torch.no_grad():
            return (m.broadcast(m.mapping(z)), "wplus") if m.has_mapping else (z, "z")

    def _image(self, code, kind) -> torch.Tensor:
        with torch.no_grad():
            return (self.model.synthesis(code) if kind == "wplus" else self.model(code)).clamp(-1, 1).cpu()

    def render(self, body: dict) -> bytes:
        amounts = body.get("amounts") or []
        if not isinstance(amounts, list) or len(amounts) > 32:
            raise HTTPError(400, "amounts must be a list of at most 32 numbers")
        amounts = [_float(a, "amount", -20, 20) for a in amounts]
        key = ("render", json.dumps(body.get("latent"), sort_keys=True), body.get("set"), tuple(amounts))
        hit = self._cached(key)
        if hit is not None:
            return hit
        code, kind = self.base_latent(body.get("latent", {"seed": 0}))
        code = code.clone()
        if any(amounts):
            d = self.direction_set(str(body.get("set")))
            want = "w" if kind == "wplus" else "z"
            if d.space != want:
                raise HTTPError(400, f"set {body.get('set')!r} holds {d.space} directions; this latent needs {want}")
            for i, a in enumerate(amounts[:len(d)]):
                step = d.vectors[i].to(code.device) * float(d.sigmas[i]) * a
                code = code + (step if kind == "z" else step[None, None])
        png = _png(self._image(code, kind), scale=max(1, 256 // self.model.img_resolution))
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
        return self._store(key, _png(imgs, nrow=nrow, scale=max(1, 512 // (nrow * (m.img_resolution + 2)))))

    def strategies(self, body: dict) -> list[dict]:
        from ..sampling import apply_strategy, get_strategy, initial_latents, render
        seed = _int(body.get("seed", 0), "seed", 0, 2 ** 31 - 1)
        wanted = body.get("strategies") or {}
        if not isinstance(wanted, dict) or len(wanted) > 12:
            raise HTTPError(400, "strategies must be an object NAME -> {param: value} (at most 12)")
        m = self.model
        lat = initial_latents(m, m.sample_z(1, seed))
        out = []
        for name, params in wanted.items():
            label = f"{name} " + ",".join(f"{k}={v}" for k, v in (params or {}).items())
            try:
                get_strategy(str(name))
                if not isinstance(params, dict):
                    raise LatentAtlasError("parameters must be an object")
                params = {str(k): _param(v) for k, v in params.items()}
                key = ("strategy", seed, name, json.dumps(params, sort_keys=True))
                png = self._cached(key)
                if png is None:
                    new = apply_strategy(m, str(name), lat, self.ctx, **params)
                    png = self._store(key, _png(render(m, new), scale=max(1, 128 // m.img_resolution)))
                out.append({"label": label.strip(), "image": _b64(png)})
            except LatentAtlasError as e:
                out.append({"label": label.strip(), "error": str(e)})
        return out

    def walk(self, q: dict) -> dict:
        from ..walks.edit import walk_latents
        seed = _int(q.get("seed", 0), "seed", 0, 2 ** 31 - 1)
        index = _int(q.get("index", 0), "index", 0, 1000)
        steps = _int(q.get("steps", 9), "steps", 2, 33)
        kind = str(q.get("kind", "linear"))
        extent = _float(q.get("extent", 2.0), "extent", 0.1, 10)
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
        scale = max(1, 128 // m.img_resolution)
        return {"frames": [_b64(_png(imgs[i:i + 1], scale=scale)) for i in range(steps)],
                "strip": _b64(_png(imgs, nrow=steps, scale=max(1, scale // 2)))}

    # -- inversion jobs -------------------------------------------------------------------------
    def submit(self, data: bytes, q: dict) -> Job:
        from ..data.folder import load_image
        from ..inversion import InversionConfig
        m = self.model
        space = str(q.get("space", "wplus" if m.has_mapping else "z"))
        if space not in self.spaces():
            raise HTTPError(400, f"space {space!r} does not apply to this model ({', '.join(self.spaces())})")
        name, value = InversionConfig.parse_regularizer(str(q.get("regularizer", "none")))   # unknown: 400
        steps = _int(q.get("steps", self.invert_steps), "steps", 1, 2000)
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
        job = Job(secrets.token_hex(6), space=space, message=li.note)
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

    def _work(self):
        from ..inversion import invert
        from ..metrics.reconstruction import psnr
        while not self.stop.is_set():
            try:
                job, x, cfg = self.queue.get(timeout=0.2)
            except queue.Empty:
                continue
            job.status = "running"
            try:
                def cb(step, loss, active):
                    job.progress = (step + 1) / cfg.steps
                    if self.stop.is_set():
                        raise KeyboardInterrupt
                res = invert(self.model, x, cfg, atlas=self.ctx.atlas, callback=cb)
                job.code = res.codes
                job.ws = res.ws if self.model.has_mapping else None
                job.z = res.z
                if job.ws is None and job.z is None:
                    raise LatentAtlasError("this inversion has no code to edit")
                job.psnr = round(float(psnr(res.images, x)[0]), 2)
                scale = max(1, 256 // self.model.img_resolution)
                job.target_png, job.result_png = _png(x, scale=scale), _png(res.images, scale=scale)
                job.progress, job.status = 1.0, "done"
            except KeyboardInterrupt:
                job.status, job.message = "failed", "server stopping"
            except Exception as e:   # noqa: BLE001 - a failed job reports why; the server goes on
                log.exception("inversion job %s failed", job.id)
                job.status, job.message = "failed", f"{type(e).__name__}: {e}"
            finally:
                self.queue.task_done()

    def latent_npz(self, job_id: str) -> bytes:
        job = self.jobs.get(job_id)
        if job is None or job.status != "done":
            raise HTTPError(404, "no finished inversion with that id")
        buf = io.BytesIO()
        arrays = {"code": job.code[0].numpy(), "space": np.asarray(job.space),
                  "weights_hash": np.asarray(self.model.weights_hash()), "model": np.asarray(self.model.name)}
        if job.ws is not None:
            arrays["ws"] = job.ws[0].numpy()
        if job.z is not None:
            arrays["z"] = job.z[0].numpy()
        np.savez(buf, **arrays)
        return buf.getvalue()

    def upload_latent(self, data: bytes) -> Job:
        """An .npz written by ``/api/job/ID/latent.npz`` or ``invert`` (``ws`` [L, D] or ``z``)."""
        m = self.model
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as f:
                arrays = {k: f[k] for k in f.files}
        except Exception as e:  # noqa: BLE001 - any unreadable upload is the user's input error
            raise HTTPError(400, f"not a readable latents .npz ({type(e).__name__})") from None
        wh = str(arrays.get("weights_hash", ""))
        if wh and wh != m.weights_hash():
            raise HTTPError(400, f"the latent was made for weights {wh}, not this model's {m.weights_hash()}")
        job = Job(secrets.token_hex(6), status="done", progress=1.0, message="uploaded latent")
        if m.has_mapping:
            ws = arrays.get("ws")
            if ws is None or ws.dtype.kind != "f" or ws.shape != (m.num_ws, m.w_dim) or not np.isfinite(ws).all():
                raise HTTPError(400, f"the .npz needs a finite 'ws' array of shape [{m.num_ws}, {m.w_dim}]")
            job.ws = torch.from_numpy(ws.astype(np.float32))[None]
            job.code, job.space = job.ws, "wplus"
            job.result_png = _png(self._image(job.ws, "wplus"), scale=max(1, 256 // m.img_resolution))
        else:
            z = arrays.get("z", arrays.get("code"))
            if z is None or z.dtype.kind != "f" or z.shape != (m.z_dim,) or not np.isfinite(z).all():
                raise HTTPError(400, f"the .npz needs a finite 'z' array of shape [{m.z_dim}]")
            job.z = torch.from_numpy(z.astype(np.float32))[None]
            job.code, job.space = job.z, "z"
            job.result_png = _png(self._image(job.z, "z"), scale=max(1, 256 // m.img_resolution))
        with self.lock:
            self.jobs[job.id] = job
        return job

    # -- info, cache, report --------------------------------------------------------------------
    def spaces(self) -> list[str]:
        return ["wplus", "w", "pnorm+"] if self.model.has_mapping else ["z"]

    def info(self) -> dict:
        from ..inversion import REGULARIZER_TABLE
        from ..sampling import get_strategy, strategy_names
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
        import shutil
        self.stop.set()
        self.worker.join(timeout=5)
        shutil.rmtree(self.tmp, ignore_errors=True)


def _int(v, name, lo, hi) -> int:
    try:
        i = int(v)
    except (TypeError, ValueError):
        raise HTTPError(400, f"{name} must be an integer") from None
    if not lo <= i <= hi:
        raise HTTPError(400, f"{name} must be in {lo}..{hi}")
    return i


def _float(v, name, lo, hi) -> float:
    try:
        f = float(v)
    except (TypeError, ValueError):
        raise HTTPError(400, f"{name} must be a number") from None
    if not lo <= f <= hi:          # also refuses NaN
        raise HTTPError(400, f"{name} must be in [{lo}, {hi}]")
    return f


def _param(v):
    if v is None or isinstance(v, bool):
        return v
    if isinstance(v, (int, float)):
        if v != v:
            raise LatentAtlasError("parameter values must not be NaN")
        return v
    from ..sample import parse_params
    return parse_params([f"x={v}"])["x"]


def _page() -> bytes:
    return importlib.resources.files("latentatlas.serve").joinpath("index.html").read_bytes()


def make_handler(ex: Explorer):
    page = _page()

    class Handler(BaseHTTPRequestHandler):
        server_version = "latentatlas"
        sys_version = ""

        def log_message(self, fmt, *args):        # through logging, not stderr
            log.debug("%s - %s", self.address_string(), fmt % args)

        def _send(self, status: int, body: bytes, ctype: str, extra: dict | None = None):
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Content-Security-Policy", CSP)
            self.send_header("X-Content-Type-Options", "nosniff")
            self.send_header("Cache-Control", "no-store")
            for k, v in (extra or {}).items():
                self.send_header(k, v)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _json(self, obj, status: int = 200):
            self._send(status, json.dumps(obj).encode(), "application/json")

        def _body(self) -> bytes:
            try:
                n = int(self.headers.get("Content-Length", "0"))
            except ValueError:
                raise HTTPError(400, "bad Content-Length") from None
            if n > MAX_UPLOAD:
                self.close_connection = True
                if n <= 4 * MAX_UPLOAD:        # read and drop it, so the client sees the answer
                    left = n
                    while left > 0:
                        chunk = self.rfile.read(min(left, 2 ** 20))
                        if not chunk:
                            break
                        left -= len(chunk)
                raise HTTPError(413, f"request body of {n} bytes exceeds the {MAX_UPLOAD // 2 ** 20} MiB limit")
            if n < 0:
                raise HTTPError(400, "bad Content-Length")
            return self.rfile.read(n)

        def _json_body(self) -> dict:
            try:
                obj = json.loads(self._body() or b"{}")
            except ValueError:
                raise HTTPError(400, "body is not valid JSON") from None
            if not isinstance(obj, dict):
                raise HTTPError(400, "body must be a JSON object")
            return obj

        def _dispatch(self, method: str):
            u = urlparse(self.path)
            q = {k: v[-1] for k, v in parse_qs(u.query).items()}
            p = u.path
            try:
                if method == "GET" and p in ("/", "/index.html"):
                    return self._send(200, page, "text/html; charset=utf-8")
                if method == "GET" and p == "/api/info":
                    return self._json(ex.info())
                if method == "GET" and p == "/api/sample":
                    png = ex.sample(_int(q.get("seed", 0), "seed", 0, 2 ** 31 - 1),
                                    _int(q.get("n", 16), "n", 1, MAX_SAMPLES))
                    return self._send(200, png, "image/png")
                if method == "POST" and p == "/api/class":
                    return self._json(ex.set_class(self._json_body().get("class")))
                if method == "POST" and p == "/api/render":
                    return self._send(200, ex.render(self._json_body()), "image/png")
                if method == "POST" and p == "/api/strategies":
                    return self._json(ex.strategies(self._json_body()))
                if method == "GET" and p == "/api/walk":
                    return self._json(ex.walk(q))
                if method == "POST" and p == "/api/invert":
                    return self._json(ex.submit(self._body(), q).public(), 202)
                if method == "POST" and p == "/api/latent":
                    return self._json(ex.upload_latent(self._body()).public())
                if method == "GET" and p.startswith("/api/job/"):
                    rest = p[len("/api/job/"):]
                    if rest.endswith("/latent.npz"):
                        return self._send(200, ex.latent_npz(rest[:-len("/latent.npz")]), "application/octet-stream",
                                          {"Content-Disposition": "attachment; filename=latent.npz"})
                    job = ex.jobs.get(rest)
                    if job is None:
                        raise HTTPError(404, "no such job")
                    return self._json(job.public())
                if method == "GET" and p.startswith("/report/"):
                    f = ex.report_files.get(p[len("/report/"):])      # a listed name, never a path
                    if f is None:
                        raise HTTPError(404, "not a file of the report")
                    ctype = {".html": "text/html; charset=utf-8", ".png": "image/png", ".gif": "image/gif",
                             ".json": "application/json"}[f.suffix.lower()]
                    return self._send(200, f.read_bytes(), ctype)
                raise HTTPError(404, f"no such page: {p}")
            except HTTPError as e:
                return self._json({"error": e.message}, e.status)
            except LatentAtlasError as e:
                return self._json({"error": str(e)}, 400)
            except Exception as e:  # noqa: BLE001 - one bad request never takes the server down
                log.exception("request %s %s failed", method, p)
                return self._json({"error": f"internal error ({type(e).__name__})"}, 500)

        def do_GET(self):
            self._dispatch("GET")

        def do_HEAD(self):
            self._dispatch("GET")

        def do_POST(self):
            self._dispatch("POST")

    return Handler


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 64


def start(ex: Explorer, host: str = "127.0.0.1", port: int = 8000) -> Server:
    """Bind the server (port 0: any free port); call ``serve_forever`` on the result."""
    try:
        return Server((host, port), make_handler(ex))
    except OSError as e:
        raise LatentAtlasError(f"cannot listen on {host}:{port}: {e.strerror}") from None


def serve(model, *, host: str = "127.0.0.1", port: int = 8000, atlas=None, directions=None, report_dir=None,
          max_jobs: int = MAX_JOBS, on_ready=None):
    """Run until Ctrl-C (or SIGTERM); everything temporary is removed on the way out."""
    import signal
    ex = Explorer(model, atlas=atlas, directions=directions, report_dir=report_dir, max_jobs=max_jobs)
    srv = start(ex, host, port)
    def _term(signum, frame):
        raise KeyboardInterrupt
    old = signal.signal(signal.SIGTERM, _term)
    try:
        if on_ready:
            on_ready(f"http://{srv.server_address[0]}:{srv.server_address[1]}/")
        srv.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        log.info("stopping")
    finally:
        signal.signal(signal.SIGTERM, old)
        srv.server_close()
        ex.close()
