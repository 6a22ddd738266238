"""Resumable training harness shared by the bundled models' trainers.

A trainer supplies the networks, optimisers and one ``step(real_batch)``; this harness owns the
data stream, the clock, periodic atomic checkpoints (everything needed to resume bit-for-bit
up to RNG state), sample grids and a JSON-lines log. A session that is killed loses at most one
checkpoint interval.
"""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import torch

from ..imageio import atomic_path, save_grid

log = logging.getLogger("latentatlas.train")


class EMA:
    """Exponential moving average of a generator's parameters (buffers copied), with the
    usual ramp-up: half-life ``half_life_kimg``, limited to ``rampup`` x images seen so far."""

    def __init__(self, half_life_kimg: float = 10.0, rampup: float | None = 0.05):
        self.half_life_kimg, self.rampup = half_life_kimg, rampup

    @torch.no_grad()
    def update(self, ema: torch.nn.Module, src: torch.nn.Module, batch: int, nimg: int):
        half = self.half_life_kimg * 1000
        if self.rampup is not None:
            half = min(half, nimg * self.rampup)
        beta = 0.5 ** (batch / max(half, 1e-8))
        for pe, p in zip(ema.parameters(), src.parameters()):
            pe.copy_(p.detach().lerp(pe, beta))
        for be, b in zip(ema.buffers(), src.buffers()):
            be.copy_(b)


class TrainerState:
    """Checkpointing shared by the trainers: networks G, D, G_ema and optimisers opt_G, opt_D."""

    def state_dict(self):
        return {"cfg": self.cfg.to_dict(), "hparams": self.hparams, "G": self.G.state_dict(),
                "D": self.D.state_dict(), "G_ema": self.G_ema.state_dict(),
                "opt_G": self.opt_G.state_dict(), "opt_D": self.opt_D.state_dict()}

    def load_state_dict(self, sd):
        for k in ("G", "D", "G_ema"):
            getattr(self, k).load_state_dict(sd[k])
        self.opt_G.load_state_dict(sd["opt_G"])
        self.opt_D.load_state_dict(sd["opt_D"])


def run_training(trainer, data: torch.Tensor, out_dir: str | Path, *, batch: int,
                 total_kimg: float, max_minutes: float | None = None,
                 ckpt_minutes: float = 5.0, seed: int = 0, grid_z: torch.Tensor | None = None,
                 initial_state: dict | None = None):
    """Train until ``total_kimg`` thousand real images have been shown or ``max_minutes`` of
    this call's wall time have passed; resume from ``out_dir/checkpoint.pt`` when present."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ckpt_path = out / "checkpoint.pt"
    state = dict(initial_state or {"step": 0, "nimg": 0, "wall_s": 0.0})
    gen = torch.Generator().manual_seed(seed + state["step"])
    if ckpt_path.exists():
        ck = torch.load(ckpt_path, map_location="cpu", weights_only=False)
        trainer.load_state_dict(ck["trainer"])
        state = ck["state"]
        gen.set_state(ck["data_rng"])
        torch.set_rng_state(ck["torch_rng"])
        log.info("resumed at step %d (%.1f kimg, %.1f h)", state["step"], state["nimg"] / 1e3,
                 state["wall_s"] / 3600)
    if grid_z is None:
        grid_z = torch.randn(64, trainer.z_dim, generator=torch.Generator().manual_seed(123))

    def checkpoint():
        with atomic_path(ckpt_path) as tmp:
            torch.save({"trainer": trainer.state_dict(), "state": state,
                        "data_rng": gen.get_state(), "torch_rng": torch.get_rng_state()}, tmp)
        with torch.no_grad():
            imgs = trainer.sample(grid_z)
        save_grid(imgs, out / "samples.png", nrow=8, scale=2)
        save_grid(imgs, out / f"samples-{state['nimg'] // 1000:06d}k.png", nrow=8)

    import signal

    def _stop(signum, frame):   # a session ending sends SIGTERM: checkpoint on the way out
        raise KeyboardInterrupt
    old = signal.signal(signal.SIGTERM, _stop) if threading_main() else None
    t_call = time.time()
    t_last = time.time()
    t_ckpt = time.time()
    avg_dt = None
    last_r1 = None
    logf = open(out / "log.jsonl", "a")
    try:
        while state["nimg"] < total_kimg * 1000:
            if max_minutes is not None and time.time() - t_call > max_minutes * 60:
                break
            idx = torch.randint(0, data.shape[0], (batch,), generator=gen)
            stats = trainer.step(data[idx], state["step"], state["nimg"])
            if stats.get("r1"):            # lazy R1 runs every few steps: log its latest value, not the 0 between
                last_r1 = stats["r1"]
            elif "r1" in stats and last_r1 is not None:
                stats = {**stats, "r1": last_r1}
            now = time.time()
            dt = now - t_last
            # A step far slower than the running average means the process was paused
            # (SIGSTOP while benchmarks use the machine): count it as an average step.
            if avg_dt is not None and dt > 20 * avg_dt:
                dt = avg_dt
            avg_dt = dt if avg_dt is None else 0.98 * avg_dt + 0.02 * dt
            state["wall_s"] += dt
            t_last = now
            state["step"] += 1
            state["nimg"] += batch
            if state["step"] % 50 == 0:
                rec = {"step": state["step"], "kimg": state["nimg"] / 1e3,
                       "wall_h": round(state["wall_s"] / 3600, 4), **{k: round(float(v), 4) for k, v in stats.items()}}
                logf.write(json.dumps(rec) + "\n")
                logf.flush()
                log.info("%s", rec)
            if now - t_ckpt > ckpt_minutes * 60:
                checkpoint()
                t_ckpt = time.time()
                t_last = t_ckpt  # checkpoint time is not training time
    except KeyboardInterrupt:
        log.info("interrupted: checkpointing at step %d", state["step"])
    finally:
        checkpoint()
        logf.close()
        if old is not None:
            signal.signal(signal.SIGTERM, old)
    return state


def threading_main() -> bool:
    import threading
    return threading.current_thread() is threading.main_thread()
