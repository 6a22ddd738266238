"""Scale-out on Ray: the work of one command split into tasks that run on workers, each holding
the model once.

A *pool* runs task functions ``task(worker, *args)`` on ``Worker``s: ``LocalPool`` in this
process (what every command does without ``--ray``), ``RayPool`` on Ray actors (``--ray`` starts
a local Ray instance, ``--ray auto`` joins the running cluster, ``--ray ADDRESS`` a given one).
Both run the same function, so a task's result does not depend on where it ran. The tasks are
module-level functions owned by their domain (``spaces.moments_task``, ``inversion.files.
invert_task``, ``sampling.generate.sample_batch_task``, the evaluation protocols' row tasks);
the pool knows none of them, and adding one never touches this module. Tasks return results to the
driver; the driver alone writes outputs, each atomically, so a run killed at any point (a worker
``kill -9``, the driver's Ctrl-C, a node lost) and started again writes every output exactly once.
A worker that dies is replaced and its unfinished tasks run again (at most ``RETRIES`` times).

What the workers need travels with the tasks: image tensors, the model file's bytes (when the
model is a file), the atlas's bytes. Only ``--reference DIR`` is read by the workers
themselves, at the same path (a shared file system on a multi-machine cluster).
"""
from __future__ import annotations

import logging
import os
import tempfile
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import torch

from .atlas import Atlas
from .errors import LatentAtlasError
from .models.registry import bundled_models, load_generator
from .runtime import tune_allocator

log = logging.getLogger("latentatlas.parallel")

INSTALL = "pip install 'latentatlas[ray]'"
RETRIES = 3
IN_FLIGHT = 2          # tasks queued per worker: one running, one ready


def require_ray():
    """The ``ray`` module, or a one-line error saying how to install it."""
    try:
        import ray
    except ImportError:
        raise LatentAtlasError(f"--ray needs Ray, which is not installed here: {INSTALL}") from None
    return ray


def _token_auth_for(address: str | None) -> bool:
    """Ray >= 2.59 starts local clusters (`ray start --head`) with token authentication, but a
    driver joining by HOST:PORT connects without a token unless RAY_AUTH_MODE=token is set (and
    then fails after ~30 s of retries). When the user has not chosen a mode and a token is at hand
    (RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token), join in token mode: a cluster
    without authentication accepts such a driver as well. True if the mode was set here."""
    if address is None or address == "auto" or os.environ.get("RAY_AUTH_MODE"):
        return False
    have = bool(os.environ.get("RAY_AUTH_TOKEN")) or bool(os.environ.get("RAY_AUTH_TOKEN_PATH")) \
        or (Path.home() / ".ray" / "auth_token").is_file()
    if have:
        os.environ["RAY_AUTH_MODE"] = "token"
        _refresh_ray_config()
    return have


def _refresh_ray_config() -> None:
    """Ray (>= 2.52) caches its configuration, RAY_AUTH_MODE included, when it is imported."""
    try:
        from ray._raylet import Config
        Config.initialize("")
    except (ImportError, AttributeError):      # older Ray: no token authentication, nothing cached
        pass


TOKEN_HINT = "put the cluster's token (`ray get-auth-token` on its head node) in ~/.ray/auth_token or RAY_AUTH_TOKEN"


def _join_error(where: str, e: Exception, joining: bool = False) -> LatentAtlasError:
    """One line for a failed ray.init. Ray reports a refused token as a bare connection failure
    (the reason is only in its log), so a failed join by address names the token as a possible cause."""
    first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    if "authenticat" in str(e).lower() or "authtoken" in str(e).lower():
        return LatentAtlasError(f"could not join {where}: it asks for an authentication token and none was "
                                f"accepted; {TOKEN_HINT}")
    hint = f" (if the cluster uses token authentication: {TOKEN_HINT})" if joining else ""
    return LatentAtlasError(f"could not start or join {where}: {first}{hint}")


@dataclass(frozen=True)
class ModelSpec:
    """How a worker loads the driver's model: the bundled name or the file (its bytes travel
    with the spec when the file is not at the same path on the worker), the device and the
    options every command shares."""
    name: str
    device: str = "cpu"
    class_label: int | str | None = None
    truncation: float | None = None
    file_bytes: object = None        # a Ray object reference to the file's bytes, or None
    precision: str = "fp32"          # the driver model's requested precision (resolved on the worker's device)
    compiled: bool = False           # the driver model's synthesis through torch.compile

    def load(self):
        name = self.name
        tmp = None
        if self.file_bytes is not None and not Path(name).is_file():
            import ray
            tmp = tempfile.mkdtemp(prefix="latentatlas-model-")
            name = str(Path(tmp) / Path(self.name).name)
            Path(name).write_bytes(ray.get(self.file_bytes))
        try:
            model = load_generator(name, device=self.device)
        finally:
            if tmp is not None:                   # the weights are in memory now; no copy left on the node
                import shutil
                shutil.rmtree(tmp, ignore_errors=True)
        if self.class_label is not None:
            model.set_class(self.class_label)
        if self.truncation is not None:
            model.set_truncation(self.truncation)
        return model.set_precision(self.precision, compile=self.compiled)


class Worker:
    """One model (and atlas) per worker, loaded once; runs task functions ``task(worker, ...)``.
    ``cache`` keeps what a task builds once per worker (feature networks, evaluation set-ups);
    it is emptied when the atlas changes."""

    def __init__(self, spec: ModelSpec | None = None, atlas_bytes=None, *, model=None, atlas=None, threads: int = 0):
        tune_allocator()
        if threads:
            torch.set_num_threads(threads)
        self.model = model if model is not None else spec.load()
        self.cache: dict = {}
        self.atlas = atlas
        if atlas is None and atlas_bytes is not None:
            self.set_atlas(atlas_bytes)

    def set_atlas(self, atlas_bytes: bytes):
        with tempfile.TemporaryDirectory() as d:
            path = Path(d) / "atlas.npz"
            path.write_bytes(atlas_bytes)
            self.atlas = Atlas.load(path, self.model)
        self.cache.clear()

    def cached(self, key, build):
        """``cache[key]``, built by ``build()`` the first time."""
        if key not in self.cache:
            self.cache[key] = build()
        return self.cache[key]

    def pid(self) -> int:
        return os.getpid()

    def run(self, task, *args, **kwargs):
        return task(self, *args, **kwargs)


class LocalPool:
    """Runs the tasks one after another in this process, on the caller's model and atlas."""

    def __init__(self, model, atlas=None):
        self.worker = Worker(model=model, atlas=atlas)

    size = 1

    def describe(self) -> str:
        return "this process"

    def imap(self, fn, tasks):
        """Runs ``fn(worker, *args, **kwargs)`` for each (meta, args, kwargs) of ``tasks``;
        yields (meta, result) in task order."""
        for meta, args, kwargs in tasks:
            yield meta, fn(self.worker, *args, **kwargs)

    def share_atlas(self, atlas):
        """Give every worker ``atlas`` (fitted after the pool started)."""
        self.worker.atlas = atlas
        self.worker.cache.clear()

    def close(self):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class RayPool(LocalPool):
    """Runs tasks on ``workers`` Ray actors (each one model, ``threads`` torch threads, one CPU or
    ``gpus_per_worker`` GPUs). ``address``: None starts a local Ray instance for this run; 'auto'
    or 'HOST:PORT' joins a running cluster."""

    def __init__(self, model, atlas=None, *, model_name: str, device: str = "cpu", address: str | None = None,
                 workers: int | None = None, gpus_per_worker: float = 0.0, threads: int = 1,
                 class_label=None, truncation: float | None = None):
        ray = require_ray()
        self.ray = ray
        self.started = False
        self.token_mode = False              # RAY_AUTH_MODE set here for this run (unset on close)
        if not ray.is_initialized():
            kw = dict(include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
            try:
                if address is None:
                    ray.init(num_cpus=max(os.cpu_count() or 1, workers or 1), **kw)
                else:
                    self.token_mode = _token_auth_for(address)
                    if self.token_mode:
                        log.info("joining %s with the Ray token found here (RAY_AUTH_MODE=token)", address)
                    ray.init(address=address, **kw)
            except Exception as e:      # ConnectionError, RuntimeError, ValueError, AuthenticationError
                self._unset_token_mode()
                where = "a local Ray instance" if address is None else f"the Ray cluster at {address!r}"
                raise _join_error(where, e, joining=address not in (None, "auto")) from None
            self.started = True
        res = ray.cluster_resources()
        cpus, gpus = int(res.get("CPU", 0)), int(res.get("GPU", 0))
        if gpus_per_worker:
            if gpus < gpus_per_worker:
                self.close()
                raise LatentAtlasError(f"--ray-gpus-per-worker {gpus_per_worker:g}: the cluster has {gpus} GPU(s)")
            workers = workers or max(1, int(gpus // gpus_per_worker))
        workers = workers or max(1, cpus // max(threads, 1))
        if workers * max(threads, 1) > cpus:
            self.close()
            raise LatentAtlasError(f"--ray-workers {workers} needs {workers * max(threads, 1)} CPUs; "
                                   f"the cluster has {cpus}")
        file_bytes = None
        if model_name not in _bundled() and Path(model_name).is_file():
            file_bytes = ray.put(Path(model_name).read_bytes())
            model_name = str(Path(model_name).resolve())
        self.spec = ModelSpec(model_name, "cuda" if gpus_per_worker else device, class_label, truncation, file_bytes,
                              model.precision.requested, model.compiled)
        self.atlas_bytes = None if atlas is None else self._put_atlas(atlas)
        self.actor_cls = ray.remote(Worker).options(num_cpus=max(threads, 1), num_gpus=gpus_per_worker,
                                                    max_restarts=0)
        self.threads = threads
        self.gpus = gpus_per_worker
        self.actors = [self._new_actor() for _ in range(workers)]
        self.restarts = 0

    def _put_atlas(self, atlas):
        with tempfile.TemporaryDirectory() as d:
            return self.ray.put(Path(atlas.save(Path(d) / "atlas.npz")).read_bytes())

    def share_atlas(self, atlas):
        self.atlas_bytes = self._put_atlas(atlas)
        self.ray.get([a.set_atlas.remote(self.atlas_bytes) for a in self.actors])

    @property
    def size(self) -> int:
        return len(self.actors)

    def _new_actor(self):
        return self.actor_cls.remote(self.spec, self.atlas_bytes, threads=self.threads)

    def describe(self) -> str:
        per = f"{self.gpus:g} GPU" if self.gpus else f"{self.threads} CPU"
        return f"{len(self.actors)} Ray worker(s), {per} each"

    def pids(self) -> list[int]:
        return self.ray.get([a.pid.remote() for a in self.actors])

    def imap(self, fn, tasks):
        """Runs ``fn(worker, *args, **kwargs)`` on the workers for each (meta, args, kwargs);
        yields (meta, result) as tasks finish (not in task order). A task whose worker dies
        runs again on a fresh worker; an error raised by the task itself stops the run."""
        ray = self.ray
        tasks = iter(tasks)
        pending: dict = {}                       # object ref -> (actor index, task)
        queued = {i: deque() for i in range(len(self.actors))}
        retry: deque = deque()
        tries: dict = {}

        def submit(i, task):
            meta, args, kwargs = task
            ref = self.actors[i].run.remote(fn, *args, **kwargs)
            pending[ref] = (i, task)
            queued[i].append(ref)

        def fill():
            for i in range(len(self.actors)):
                while len(queued[i]) < IN_FLIGHT:
                    task = retry.popleft() if retry else next(tasks, None)
                    if task is None:
                        return
                    submit(i, task)

        fill()
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1, timeout=0.5)   # short: Ctrl-C is seen at once
            if not done:
                continue
            ref = done[0]
            i, task = pending.pop(ref)
            queued[i].remove(ref)
            try:
                result = ray.get(ref)
            except ray.exceptions.RayActorError as e:
                tries[id(task)] = tries.get(id(task), 0) + 1
                if tries[id(task)] > RETRIES:
                    raise LatentAtlasError(f"a task failed on {RETRIES + 1} workers in turn; the last one: "
                                           f"{str(e).splitlines()[0]}") from None
                lost = [task] + [pending.pop(r)[1] for r in list(queued[i])]
                queued[i].clear()
                log.warning("Ray worker %d died (%s); starting a new one and running its %d unfinished task(s) "
                            "again", i, type(e).__name__, len(lost))
                self.actors[i] = self._new_actor()
                self.restarts += 1
                retry.extend(lost)
                fill()
                continue
            except ray.exceptions.RayTaskError as e:
                cause = e.cause if isinstance(getattr(e, "cause", None), BaseException) else None
                if isinstance(cause, LatentAtlasError):
                    raise LatentAtlasError(str(cause)) from None
                raise LatentAtlasError(f"a Ray task failed: {str(cause or e).splitlines()[0]}") from None
            fill()
            yield task[0], result

    def _unset_token_mode(self):
        if self.token_mode:
            os.environ.pop("RAY_AUTH_MODE", None)
            _refresh_ray_config()
            self.token_mode = False

    def close(self):
        if self.started and self.ray.is_initialized():
            self.ray.shutdown()
            self.started = False
        self._unset_token_mode()


def _bundled() -> set:
    return {m.name for m in bundled_models()}


def make_pool(model, atlas=None, *, ray: str | None = None, use_ray: bool = False, model_name: str | None = None,
              device: str = "cpu", workers: int | None = None, gpus_per_worker: float = 0.0, class_label=None,
              truncation: float | None = None):
    """The pool a command runs its tasks on: a ``RayPool`` when ``use_ray`` (``ray``: None = a local
    instance, 'auto' or an address = join), else a ``LocalPool``."""
    if not use_ray:
        if workers is not None or gpus_per_worker:
            raise LatentAtlasError("--ray-workers / --ray-gpus-per-worker apply only with --ray")
        return LocalPool(model, atlas)
    return RayPool(model, atlas, model_name=model_name or model.name, device=device, address=ray, workers=workers,
                   gpus_per_worker=gpus_per_worker, class_label=class_label, truncation=truncation)
