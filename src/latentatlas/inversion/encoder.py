"""A small per-model encoder: image -> latent, trained on the model's own samples.

In the spirit of the encoder-then-optimise inversions II2S compares against (StyleGAN2Encoder,
PIE, idinvert): pairs are free — draw z, map to W (half of the batch style-mixed at a random
row, so the encoder sees W+ codes whose rows differ), render, and regress the code. The target
is the P-norm+ coordinate of the W+ code (whitened, so every output is on the same scale; Z for
models without a mapping). In the second part of training a reconstruction term through the
frozen generator is added (the image of the predicted code against the input). The prediction is
then the start of the optimisation (``invert --init encoder``).

The file holds the network, the P-norm+ statistics it predicts in (so prediction needs no atlas),
the generator's weights hash and the training state; training resumes from it, and a SIGTERM
checkpoints on the way out. Read back with ``torch.load(weights_only=True)``: no code runs.
"""
from __future__ import annotations

import json
import logging
import math
import signal
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..atlas import get_atlas
from ..cache import cache_dir
from ..errors import LatentAtlasError
from ..imageio import atomic_path
from ..spaces import PNormPlusSpace

log = logging.getLogger("latentatlas.encoder")


@dataclass(frozen=True)
class EncoderConfig:
    steps: int = 1500                 # ~13 min on 2 CPU cores for a 32x32 StyleGAN2
    batch: int = 32
    lr: float = 1e-3
    rec_weight: float = 1.0           # weight of the image reconstruction term
    rec_from: float = 0.5             # share of the steps after which the reconstruction term is on
    mix_prob: float = 0.5             # share of training codes that are style-mixed W+ codes
    width: int = 32
    seed: int = 0


class Encoder(nn.Module):
    """Strided 3x3 convolutions down to 4x4, then two linear layers to ``out_dim`` numbers."""

    def __init__(self, channels: int, resolution: int, out_dim: int, width: int = 32):
        super().__init__()
        if resolution < 4 or resolution & (resolution - 1):
            raise LatentAtlasError(f"the encoder needs a power-of-two resolution >= 4, got {resolution}")
        layers, c, r = [nn.Conv2d(channels, width, 3, padding=1), nn.LeakyReLU(0.2)], width, resolution
        while r > 4:
            c2 = min(c * 2, 256)
            layers += [nn.Conv2d(c, c2, 3, stride=2, padding=1), nn.LeakyReLU(0.2),
                       nn.Conv2d(c2, c2, 3, padding=1), nn.LeakyReLU(0.2)]
            c, r = c2, r // 2
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(c * 16, 512), nn.LeakyReLU(0.2), nn.Linear(512, out_dim))

    def forward(self, x):
        return self.head(self.features(x))


class TrainedEncoder:
    """An encoder bound to its model: ``predict(images, space=...)`` gives start codes."""

    def __init__(self, net: Encoder, model, target: str, plus, source: str):
        self.net, self.model, self.target, self.plus, self.source = net.eval(), model, target, plus, source

    def raw(self, images):
        """Differentiable prediction in the encoder's target space: W+ [N, L, D] or z [N, z]."""
        return self.decode(self.net(images))

    def decode(self, out: torch.Tensor) -> torch.Tensor:
        """The network's raw output [N, out_dim] as a code: z, or W+ from P-norm+ coordinates."""
        if self.target == "z":
            return out
        return self.plus.inverse_transform(out.reshape(out.shape[0], self.model.num_ws, -1))

    @torch.no_grad()
    def predict(self, images: torch.Tensor, *, space: str, plus=None) -> torch.Tensor:
        x = images.to(self.model.device).float()
        code = torch.cat([self.raw(x[i:i + 256]) for i in range(0, x.shape[0], 256)])
        if self.target == "z":
            if space != "z":
                raise LatentAtlasError(f"this encoder predicts z; it cannot start an inversion in {space}")
            return code / code.norm(dim=1, keepdim=True).clamp_min(1e-8) * math.sqrt(code.shape[1])
        if space == "z":
            raise LatentAtlasError("this encoder predicts W+ codes; a z-space inversion cannot start from it")
        if space == "w":
            return code.mean(1)
        if space == "wplus":
            return code
        return (plus or self.plus).transform(code)


def default_path(model) -> Path:
    """Where ``train-encoder`` stores a model's encoder by default: next to its cached atlas."""
    return cache_dir() / f"{model.weights_hash()}-encoder.pt"


def _read(path: Path) -> dict:
    try:
        st = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise LatentAtlasError(f"encoder file {path} does not exist") from None
    except Exception as e:   # noqa: BLE001 - any unreadable file is the user's input error
        raise LatentAtlasError(f"{path} is not a latentatlas encoder file ({type(e).__name__}: {e})") from None
    if not isinstance(st, dict) or "net" not in st or "meta_json" not in st:
        raise LatentAtlasError(f"{path} is not a latentatlas encoder file (no network or metadata)")
    return st


def _build(model, meta: dict) -> Encoder:
    return Encoder(model.img_channels, model.img_resolution, int(meta["out_dim"]), int(meta["config"]["width"]))


def load_encoder(path, model) -> TrainedEncoder:
    path = Path(path) if path else default_path(model)
    if not path.is_file():
        raise LatentAtlasError(f"no encoder at {path}: train one with 'latentatlas train-encoder --model "
                               f"{model.name}' (or give --init encoder:PATH)")
    st = _read(path)
    meta = json.loads(st["meta_json"])
    if meta.get("weights_hash") != model.weights_hash():
        raise LatentAtlasError(f"encoder {path} was trained for weights {meta.get('weights_hash')}, "
                               f"not for model '{model.name}' ({model.weights_hash()})")
    if meta.get("step", 0) < meta["config"]["steps"]:
        log.warning("encoder %s is only partly trained (%d of %d steps)", path, meta["step"], meta["config"]["steps"])
    net = _build(model, meta)
    try:
        net.load_state_dict(st["net"])
    except RuntimeError as e:
        raise LatentAtlasError(f"encoder {path} does not fit model '{model.name}': {str(e).splitlines()[0]}") from None
    plus = PNormPlusSpace.from_state(st["plus"]).to(model.device) if "plus" in st else None
    return TrainedEncoder(net.to(model.device), model, meta["target"], plus, str(path))


@torch.no_grad()
def _batch(model, n: int, g: torch.Generator, mix_prob: float):
    """Training pairs: codes (W+ [n, L, D] or z [n, z]) and their images."""
    z = torch.randn(n, model.z_dim, generator=g).to(model.device)
    if not model.has_mapping:
        return z, model(z).clamp(-1, 1)
    ws = model.broadcast(model.mapping(z))
    z2 = torch.randn(n, model.z_dim, generator=g).to(model.device)
    ws2 = model.broadcast(model.mapping(z2))
    cut = torch.randint(1, model.num_ws, (n,), generator=g).to(model.device)
    mixed = torch.rand(n, generator=g).to(model.device) < mix_prob
    rows = torch.arange(model.num_ws, device=model.device)[None]
    take2 = (mixed[:, None] & (rows >= cut[:, None]))[..., None]
    ws = torch.where(take2, ws2, ws)
    return ws, model.synthesis(ws).clamp(-1, 1)


def train_encoder(model, out=None, cfg: EncoderConfig = EncoderConfig(), *, progress: bool = False) -> dict:
    """Train (or resume) the encoder for ``model`` into ``out`` (default: next to the cached
    atlas). Returns the training record (steps, seconds, losses)."""
    from tqdm import tqdm

    out = Path(out) if out else default_path(model)
    if out.suffix != ".pt":
        raise LatentAtlasError(f"encoder file {out}: use a .pt name")
    target = "wplus" if model.has_mapping else "z"
    if target == "wplus":
        plus = get_atlas(model, need="pnorm").pnorm_plus.to(model.device)
        out_dim = model.num_ws * plus.components_.shape[1]
    else:
        plus, out_dim = None, model.z_dim
    meta = {"model": model.name, "weights_hash": model.weights_hash(), "target": target, "out_dim": out_dim,
            "config": asdict(cfg), "step": 0, "seconds": 0.0, "log": []}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)                  # the same initial network for the same seed
        net = Encoder(model.img_channels, model.img_resolution, out_dim, cfg.width).to(model.device)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr, betas=(0.9, 0.99))
    g = torch.Generator().manual_seed(cfg.seed)
    if out.is_file():
        st = _read(out)
        old = json.loads(st["meta_json"])
        if old.get("weights_hash") != meta["weights_hash"] or old.get("config") != meta["config"]:
            raise LatentAtlasError(f"{out} holds an encoder trained with another model or configuration; "
                                   f"choose another --out or remove it")
        meta = old
        net.load_state_dict(st["net"])
        opt.load_state_dict(st["opt"])
        g.set_state(st["rng"])
        if "plus" in st:
            plus = PNormPlusSpace.from_state(st["plus"]).to(model.device)
        if meta["step"] >= cfg.steps:
            log.info("encoder %s is already trained (%d steps)", out, meta["step"])
            return meta
        log.info("resuming encoder training at step %d of %d", meta["step"], cfg.steps)
    def save(final: bool = False):
        st = {"net": net.state_dict(), "meta_json": json.dumps(meta)}
        if not final:            # the optimiser and data stream are kept only while training can resume
            st.update(opt=opt.state_dict(), rng=g.get_state())
        if plus is not None:
            st["plus"] = plus.state()
        out.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(out) as tmp:
            torch.save(st, tmp)

    stop = {"now": False}

    def _term(signum, frame):
        stop["now"] = True
    old_handler = signal.signal(signal.SIGTERM, _term) if threading.current_thread() is threading.main_thread() else None
    enc = TrainedEncoder(net, model, target, plus, str(out))
    t0, start_step = time.perf_counter(), meta["step"]
    bar = tqdm(total=cfg.steps, initial=start_step, disable=not progress, desc="train-encoder")
    try:
        net.train()
        for step in range(start_step, cfg.steps):
            code, img = _batch(model, cfg.batch, g, cfg.mix_prob)
            lr = cfg.lr * (0.5 - 0.5 * math.cos(math.pi * (1 - step / cfg.steps)) if step > 0.8 * cfg.steps else 1.0)
            for group in opt.param_groups:
                group["lr"] = lr
            pred = net(img)
            tgt = code if target == "z" else plus.transform(code).flatten(1)
            loss_lat = F.mse_loss(pred, tgt)
            loss = loss_lat
            loss_rec = torch.zeros(())
            if cfg.rec_weight > 0 and step >= cfg.rec_from * cfg.steps:
                rec = model(pred) if target == "z" else model.synthesis(enc.decode(pred))
                loss_rec = F.mse_loss(rec, img)
                loss = loss + cfg.rec_weight * loss_rec
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            meta["step"] = step + 1
            if step % 100 == 0 or step + 1 == cfg.steps:
                meta["log"].append({"step": step, "latent": round(loss_lat.item(), 5), "rec": round(loss_rec.item(), 5)})
                bar.set_postfix(latent=f"{loss_lat.item():.4f}", rec=f"{loss_rec.item():.4f}")
            bar.update(1)
            if (step + 1) % 500 == 0 or stop["now"]:
                meta["seconds"] += time.perf_counter() - t0
                t0 = time.perf_counter()
                save()
                if stop["now"]:
                    log.warning("SIGTERM: encoder checkpointed at step %d of %d", step + 1, cfg.steps)
                    return meta
        meta["seconds"] += time.perf_counter() - t0
        net.eval()
        save(final=True)
        return meta
    finally:
        bar.close()
        if old_handler is not None:
            signal.signal(signal.SIGTERM, old_handler)
