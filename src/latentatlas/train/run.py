"""Entry points that build a trainer for a bundled architecture and run it resumably."""
from __future__ import annotations

import logging

import torch

from ..data.fashion import load_fashion_mnist
from ..errors import LatentAtlasError
from ..models.registry import save_model
from ..models.stylegan2 import StyleGAN2Config
from .loop import run_training
from .stylegan2 import StyleGAN2Trainer
from .wgangp import WGANGPTrainer

log = logging.getLogger("latentatlas.train")

# The bundled fashion-stylegan2 configuration. 256 channels at 4x4 cost nothing measurable on
# CPU (convolutions at 16/32 dominate), 0.56 s per G+D step at batch 32 on 2 cores.
FASHION_STYLEGAN2 = dict(z_dim=128, w_dim=128, img_resolution=32, img_channels=1,
                         channels={4: 256, 8: 128, 16: 64, 32: 32}, mapping_layers=8)


HPARAMS = {"stylegan2": ("lr", "r1_gamma", "r1_every", "mixing_prob", "ema_kimg", "precision"),
           "wgangp": ("lr", "gp_weight", "n_critic", "ema_kimg")}


def build_trainer(arch: str, seed: int = 0, **hp):
    if arch == "stylegan2":
        return StyleGAN2Trainer(StyleGAN2Config(**FASHION_STYLEGAN2), seed=seed, **hp)
    if arch == "wgangp":
        return WGANGPTrainer(seed=seed, **hp)
    raise ValueError(f"unknown architecture {arch!r} (stylegan2 or wgangp)")


def _keep_recipe(saved: dict, given: dict) -> dict:
    """The recipe a run continues with: the saved hyper-parameters (not the seed), overridden by
    the ones given now."""
    return {**{k: v for k, v in saved.items() if k != "seed"}, **given}


def train(arch: str, out_dir, *, data_dir=None, batch: int = 32, total_kimg: float = 1000,
          max_minutes: float | None = None, ckpt_minutes: float = 5.0, seed: int = 0,
          threads: int | None = None, init_from: str | None = None, **hp):
    """Train or resume. Without a checkpoint in ``out_dir`` but with ``init_from`` (an exported
    model file, e.g. the bundled weights), training warm-starts from its G_ema/D with fresh
    optimiser state and continues the step/image/time counters recorded in its metadata."""
    from pathlib import Path
    if threads:
        torch.set_num_threads(threads)
    data, _ = load_fashion_mnist("train", path=data_dir)
    ck_path = Path(out_dir) / "checkpoint.pt"
    warm = None
    if ck_path.exists():
        # a resumed run keeps its recipe; hyper-parameters given now change it (a branch), loudly
        saved = torch.load(ck_path, map_location="cpu", weights_only=False)["trainer"].get("hparams", {})
        changed = {k: (saved.get(k), v) for k, v in hp.items() if saved.get(k) != v}
        if changed:
            log.warning("resuming %s with changed hyper-parameters: %s", out_dir,
                        ", ".join(f"{k} {a} -> {b}" for k, (a, b) in changed.items()))
        hp = _keep_recipe(saved, hp)
    elif init_from:
        # a warm start keeps the recipe the weights were trained with (their card's
        # hyper-parameters) unless told otherwise, as a resumed run does
        warm = torch.load(init_from, map_location="cpu", weights_only=True)
        hp = _keep_recipe(warm.get("meta", {}).get("hparams", {}), hp)
    trainer = build_trainer(arch, seed=seed, **hp)
    initial = None
    if warm is not None:
        trainer.G.load_state_dict(warm["G"])
        trainer.G_ema.load_state_dict(warm["G"])
        trainer.D.load_state_dict(warm["D"])
        meta = warm.get("meta", {})
        initial = {"step": int(meta.get("steps", 0)), "nimg": int(meta.get("images_seen", 0)),
                   "wall_s": float(meta.get("train_wall_hours", 0.0)) * 3600}
        log.info("warm start from %s at step %d", init_from, initial["step"])
    return run_training(trainer, data, out_dir, batch=batch, total_kimg=total_kimg,
                        max_minutes=max_minutes, ckpt_minutes=ckpt_minutes, seed=seed, initial_state=initial)


def export_trained(arch: str, run_dir, out_file, *, meta: dict | None = None):
    """Write the EMA generator + discriminator of a training run in latentatlas format, with
    training figures (steps, images seen, wall time) in the metadata."""
    from pathlib import Path

    ck_path = Path(run_dir) / "checkpoint.pt"
    if not ck_path.exists():
        raise LatentAtlasError(f"{ck_path}: no training checkpoint to export")
    ck = torch.load(ck_path, map_location="cpu", weights_only=False)
    trainer = build_trainer(arch, seed=ck["trainer"]["hparams"].get("seed", 0))
    trainer.load_state_dict(ck["trainer"])
    st = ck["state"]
    info = {"arch": arch, "steps": st["step"], "images_seen": st["nimg"],
            "train_wall_hours": round(st["wall_s"] / 3600, 3), "hparams": ck["trainer"]["hparams"],
            "data": "Fashion-MNIST train split (60k), padded to 32x32, [-1, 1]", **(meta or {})}
    return save_model(out_file, arch="stylegan2" if arch == "stylegan2" else "dcgan",
                      config=trainer.cfg.to_dict(), G=trainer.G_ema, D=trainer.D, meta=info)
