"""Scale-out overhead: `invert FOLDER` on N Fashion-MNIST test images, single process vs Ray with
1 and 2 workers (one torch thread each; the single process also one thread), in one run.

Prints images/min for each, Ray's start-up (local instance + workers loading the model), the
overhead per task (the same run at 1 step from the mean, where compute is nearly nil: Ray 1 worker
minus single process, per batch: scheduling and moving images and results), the driver's own cost
per task (reading the images, writing the outputs), and the speed-up projected for M machines of
one worker each from those measured figures: M·c / (c + o) workers' worth of compute, capped by
the driver at c / d tasks in parallel (c = compute per task, o = overhead, d = driver cost).

usage: python bench/bench_ray.py [N=128] [STEPS=50] [BATCH=16]"""
from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import torch


def main(n=128, steps=50, batch=16):
    from latentatlas.data.fashion import load_fashion_mnist
    from latentatlas.imageio import save_png
    from latentatlas.inversion import InversionConfig
    from latentatlas.inversion.files import invert_files
    from latentatlas.models.registry import load_generator
    from latentatlas.parallel import RayPool, require_ray
    ray = require_ray()
    torch.set_num_threads(1)
    model = load_generator("fashion-stylegan2")
    cfg = InversionConfig(space="wplus", steps=steps, init="best-of:64")
    tasks = -(-n // batch)
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        x, _ = load_fashion_mnist("test")
        src = d / "in"
        for i in range(n):
            save_png(x[i], src / f"t{i:05d}.png")
        kw = dict(batch_size=batch, progress=False, min_psnr=0)
        t0 = time.perf_counter()
        invert_files(model, src, d / "single", cfg, **kw)
        t_single = time.perf_counter() - t0
        # the driver's own work per task: read the images and write the outputs again
        from latentatlas.inversion import config_json
        from latentatlas.inversion.files import _load_chunk, invert_batch, write_item
        paths = sorted(src.glob("*.png"))[:batch]
        items = invert_batch(model, torch.stack([li.tensor for li in _load_chunk(paths, model, "lanczos",
                                                                                 {"failed": [], "notes": {}})]),
                             InversionConfig(space="wplus", steps=1, init="mean"))
        t0 = time.perf_counter()
        loaded = _load_chunk(paths, model, "lanczos", {"failed": [], "notes": {}})
        for li, it in zip(loaded, items):
            write_item(d / "drv", li.path, li.note, it, cfg_json=config_json(cfg), model_name=model.name,
                       weights_hash=model.weights_hash(), min_psnr=0)
        t_driver = time.perf_counter() - t0
        tiny = InversionConfig(space="wplus", steps=1, init="mean")
        t0 = time.perf_counter()
        invert_files(model, src, d / "single-tiny", tiny, **kw)
        t_tiny = time.perf_counter() - t0
        res = {}
        for workers in (1, 2):
            t0 = time.perf_counter()
            with RayPool(model, model_name="fashion-stylegan2", workers=workers, device="cpu") as pool:
                pool.pids()                      # the workers have loaded the model
                t_start = time.perf_counter() - t0
                t1 = time.perf_counter()
                invert_files(model, src, d / f"ray{workers}", cfg, pool=pool, **kw)
                res[workers] = (t_start, time.perf_counter() - t1, pool.restarts)
                if workers == 1:
                    t1 = time.perf_counter()
                    invert_files(model, src, d / "ray-tiny", tiny, pool=pool, **kw)
                    t_tiny_ray = time.perf_counter() - t1
            if ray.is_initialized():
                ray.shutdown()
    c = t_single / tasks
    o = max(t_tiny_ray - t_tiny, 0.0) / tasks
    print(f"invert {n} Fashion-MNIST test images, {steps} steps, batch {batch} ({tasks} tasks), 1 thread per process")
    print(f"{'run':>22} | {'seconds':>8} | {'images/min':>10} | {'start-up s':>10}")
    print(f"{'single process':>22} | {t_single:8.1f} | {n / t_single * 60:10.1f} | {'-':>10}")
    for w, (ts, tr, _) in res.items():
        print(f"{f'Ray, {w} worker(s)':>22} | {tr:8.1f} | {n / tr * 60:10.1f} | {ts:10.1f}")
    print(f"1-step run (overhead only): single process {t_tiny:.2f} s, Ray 1 worker {t_tiny_ray:.2f} s")
    print(f"compute per task c = {c:.2f} s; Ray overhead per task o = {o:.3f} s ({o / c:.1%} of c); "
          f"driver cost per task d = {t_driver:.3f} s")
    cap = c / max(t_driver, 1e-9)
    for m in (1, 2, 4, 8, 16, 64, 256):
        s = min(m * c / (c + o), cap)
        print(f"projected speed-up on {m:>2} machine(s) x 1 worker: {s:6.1f}x" + ("  (driver-bound)" if s == cap else ""))


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:]))
