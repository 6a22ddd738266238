"""Refinement after inversion: pivotal tuning (PTI, Roich et al. 2022).

The inversion's code stays fixed as the *pivot*; the synthesis network's weights are tuned, per
image, so the pivot reproduces the image (pixel L2 + the perceptual distance of the inversion),
while a *locality* term keeps the generator unchanged away from the pivot: at each step a code
``w_r = w_p + α (w_z − w_p) / ‖w_z − w_p‖`` toward a random sample ``w_z`` must render as it did
before tuning (L2 + perceptual, weight ``locality``), so edits near the pivot stay on the
generator's manifold. α defaults to the median distance of the model's samples from the mean w
(PTI's α = 30 on FFHQ's W is of that order).

Batched: each image of a batch has its own weights (the base plus a *delta*), all tuned together
in one ``torch.func.vmap`` over the synthesis network. Memory: the deltas and their two Adam
moments are 3 × the synthesis weights per image in fp32 (fashion-stylegan2: ~16 MB per image),
plus the batch's activations ×3 for the backward pass.

A refinement is stored as that delta — only the synthesis tensors, as safetensors, with the base
model's weights hash, the steps and the losses in its metadata — never a full model copy;
:func:`apply_delta` gives the refined model for ``edit``, ``walk`` and the API.
"""
from __future__ import annotations

import copy
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch.func import functional_call, vmap
from tqdm import tqdm

from ..data.folder import load_image
from ..errors import LatentAtlasError
from ..imageio import atomic_path, save_png
from ..metrics.perceptual import perceptual_fn
from ..metrics.reconstruction import reconstruction_metrics

FORMAT = "latentatlas-refine-delta"


@dataclass
class RefineConfig:
    steps: int = 350                  # PTI's max_pti_steps
    lr: float = 3e-4                  # PTI's learning rate
    l2: float = 1.0                   # weight of the pixel L2 (mean squared error)
    perceptual: str = "discriminator"  # the inversion's perceptual distance (discriminator|fashion-features|lpips|none)
    perceptual_weight: float = 1.0
    locality: float = 0.1             # weight of the locality regulariser (0 = off); PTI's lambda_R
    alpha: float | None = None        # distance of the locality code from the pivot (None = median sample distance)
    seed: int = 0


@dataclass
class RefineResult:
    deltas: dict                      # parameter name -> [B, ...] (the change of each synthesis tensor)
    before: torch.Tensor              # [B, C, H, W] the pivot through the base generator
    images: torch.Tensor              # [B, C, H, W] the pivot through the refined generator
    losses: list                      # per step, the batch's mean reconstruction loss
    seconds: float


def _require(model):
    if not getattr(model, "has_mapping", False):
        raise LatentAtlasError(f"refinement (pivotal tuning) tunes the synthesis around a W/W+ pivot; model "
                               f"'{model.name}' has no mapping network")


def _alpha(model, cfg: RefineConfig) -> float:
    if cfg.alpha is not None:
        return float(cfg.alpha)
    with torch.no_grad():
        w = model.mapping(model.sample_z(2000, cfg.seed + 1))
        return float((w - model.w_avg).norm(dim=1).median())


def _renderer(model):
    """``f(deltas, ws)``: each code of ``ws`` [B, num_ws, w_dim] rendered by the synthesis network
    with its own weights, base + ``deltas[name][b]`` (one ``vmap`` over the batch)."""
    syn = model.G.synthesis
    params = {k: v.detach() for k, v in syn.named_parameters()}
    buffers = dict(syn.named_buffers())
    noise = model.noise_mode

    def render(delta, w):
        p = {k: params[k] + delta[k] for k in params}
        return functional_call(syn, {**p, **buffers}, (w.unsqueeze(0),), {"noise_mode": noise})[0]
    return vmap(render)


@torch.no_grad()
def render_refined(model, deltas: dict, ws: torch.Tensor) -> torch.Tensor:
    """Images of ``ws`` [B, num_ws, w_dim], code b through the generator refined with
    ``deltas[...][b]`` (e.g. edits of each image on its own refined generator)."""
    return _renderer(model)({k: v.to(model.device) for k, v in deltas.items()}, model._ws(ws.to(model.device)))


def refine(model, targets: torch.Tensor, ws: torch.Tensor, cfg: RefineConfig = RefineConfig(), *,
           progress: bool = False, callback=None) -> RefineResult:
    """Tune the synthesis weights per image so ``ws`` [B, num_ws, w_dim] (the pivots) reproduce
    ``targets`` [B, C, H, W]; returns the per-image deltas and the images before and after.
    ``callback(step, loss)`` after each step (the explorer's progress)."""
    _require(model)
    if model.precision.name != "fp32":
        raise LatentAtlasError("refinement tunes fp32 weights: run it at --precision fp32")
    syn = model.G.synthesis
    dev = model.device
    ws = model._ws(ws.to(dev)).detach()
    targets = targets.to(dev)
    B = ws.shape[0]
    deltas = {k: torch.zeros(B, *v.shape, device=dev, requires_grad=True) for k, v in syn.named_parameters()}
    opt = torch.optim.Adam(list(deltas.values()), lr=cfg.lr)
    perc = perceptual_fn(cfg.perceptual, model) if cfg.perceptual_weight > 0 and cfg.perceptual != "none" else None
    batched = _renderer(model)

    def distance(a, b):
        d = cfg.l2 * (a - b).square().flatten(1).mean(1)
        if perc is not None:
            d = d + cfg.perceptual_weight * perc(a, b)
        return d

    alpha = _alpha(model, cfg) if cfg.locality > 0 else 0.0
    g = torch.Generator(device="cpu").manual_seed(cfg.seed)
    with torch.no_grad():
        before = model.synthesis(ws)
    losses, t0 = [], time.perf_counter()
    for _ in tqdm(range(cfg.steps), disable=not progress, desc="refine", unit="step"):
        opt.zero_grad(set_to_none=True)
        img = batched(deltas, ws)
        rec = distance(img, targets)
        loss = rec.sum()
        if cfg.locality > 0:
            with torch.no_grad():
                wz = model.mapping(model.sample_z(B, int(torch.randint(0, 2 ** 31 - 1, (1,), generator=g))))
                d = model.broadcast(wz) - ws
                wr = ws + alpha * d / d.flatten(1).norm(dim=1).clamp_min(1e-8)[:, None, None]
                ref = model.synthesis(wr)
            loss = loss + cfg.locality * distance(batched(deltas, wr), ref).sum()
        loss.backward()
        opt.step()
        losses.append(float(rec.detach().mean()))
        if callback is not None:
            callback(len(losses) - 1, losses[-1])
    with torch.no_grad():
        after = batched({k: v.detach() for k, v in deltas.items()}, ws)
    return RefineResult({k: v.detach() for k, v in deltas.items()}, before, after, losses, time.perf_counter() - t0)


def delta_of(result: RefineResult, i: int) -> dict:
    """Image ``i``'s delta."""
    return {k: v[i].detach().cpu().contiguous() for k, v in result.deltas.items()}


def save_delta(path, delta: dict, *, model, cfg: RefineConfig, extra: dict | None = None) -> Path:
    """One image's delta as safetensors (no pickle), atomically; its metadata names the base
    weights hash, the configuration and ``extra`` (e.g. the PSNR before and after)."""
    from safetensors.torch import save_file
    meta = {"format": FORMAT, "base_weights_hash": model.weights_hash(), "base_model": model.name,
            "config": json.dumps(asdict(cfg)), "extra": json.dumps(extra or {})}
    path = Path(path)
    with atomic_path(path) as tmp:
        save_file(delta, str(tmp), metadata=meta)
    return path


def load_delta(path, model) -> dict:
    """A delta file for ``model``: refused in one line when it was made for other weights or
    does not match the synthesis network's tensors."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file, safe_open
    path = Path(path)
    if not path.is_file():
        raise LatentAtlasError(f"{path}: no such refinement file")
    try:
        with safe_open(str(path), "pt") as fh:
            meta = fh.metadata() or {}
        delta = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise LatentAtlasError(f"{path}: not a readable refinement file ({e})") from None
    if meta.get("format") != FORMAT:
        raise LatentAtlasError(f"{path}: not a latentatlas refinement delta")
    if meta.get("base_weights_hash") != model.weights_hash():
        raise LatentAtlasError(f"{path}: made for weights {meta.get('base_weights_hash')}, not for model "
                               f"'{model.name}' ({model.weights_hash()})")
    own = dict(model.G.synthesis.named_parameters())
    bad = [k for k, v in delta.items() if k not in own or own[k].shape != v.shape]
    if bad or set(delta) != set(own):
        raise LatentAtlasError(f"{path}: its tensors do not match the synthesis network ({(bad or ['missing'])[0]})")
    if not all(torch.isfinite(v).all() for v in delta.values()):
        raise LatentAtlasError(f"{path}: the delta holds NaN or infinite values")
    return delta


def apply_delta(model, delta: dict):
    """A copy of ``model`` whose synthesis weights are the base plus ``delta`` (the base model is
    untouched); its info records the refinement."""
    new = copy.copy(model)
    new.G = copy.deepcopy(model.G)
    with torch.no_grad():
        for k, p in new.G.synthesis.named_parameters():
            p.add_(delta[k].to(p.device, p.dtype))
    new.info = copy.copy(model.info)
    new.info.extra = {**(model.info.extra or {}), "refined": True, "base_weights_hash": model.weights_hash()}
    new._hash, new._lowp = None, {}            # its own weights hash; low-precision copies made afresh
    return new


def load_refined(model, path):
    """``model`` with the refinement file at ``path`` applied."""
    return apply_delta(model, load_delta(path, model))


# ----------------------------------------------------------------------------- inversion folders

def refine_files(model, out_dir, cfg: RefineConfig = RefineConfig(), *, batch_size: int = 8, progress: bool = True,
                 perc=None) -> dict:
    """Refine every finished inversion of an ``invert`` output folder: per image NAME.npz (the
    pivot) and the target named in NAME.json give NAME.refine.safetensors (the delta),
    NAME.refined.png and a ``refine`` record (PSNR / SSIM / perceptual before and after, seconds)
    added to NAME.json. Images refined before (their delta exists) are skipped."""
    _require(model)
    out = Path(out_dir)
    recs = sorted(out.glob("*.json"))
    items = []
    for f in recs:
        if f.name.startswith("latentatlas-"):
            continue
        stem = f.stem
        if (out / f"{stem}.refine.safetensors").exists():
            continue
        try:
            rec = json.loads(f.read_text())
            z = np.load(out / f"{stem}.npz")
        except (ValueError, OSError) as e:
            raise LatentAtlasError(f"{f}: not a finished inversion ({e})") from None
        if "ws" not in z.files:
            raise LatentAtlasError(f"{out / (stem + '.npz')}: no W+ codes (the inversion's space has none)")
        if str(z["weights_hash"]) != model.weights_hash():
            raise LatentAtlasError(f"{out}: inverted with weights {z['weights_hash']}, not model '{model.name}'")
        li = load_image(Path(rec["file"]), size=model.img_resolution, channels=model.img_channels)
        if li.tensor is None:
            raise LatentAtlasError(f"{rec['file']}: the inverted image cannot be read any more ({li.note})")
        items.append((stem, rec, torch.from_numpy(z["ws"]), li.tensor))
    if not items and not recs:
        raise LatentAtlasError(f"{out}: no inversions (NAME.json + NAME.npz from 'invert') to refine")
    perc = perc if perc is not None else (perceptual_fn(cfg.perceptual, model) if cfg.perceptual != "none" else None)
    done = []
    for i in range(0, len(items), batch_size):
        chunk = items[i:i + batch_size]
        x = torch.stack([t for *_, t in chunk]).to(model.device)
        res = refine(model, x, torch.stack([w for _, _, w, _ in chunk]), cfg, progress=progress)
        m0 = reconstruction_metrics(x, res.before, perc)
        m1 = reconstruction_metrics(x, res.images, perc)
        for j, (stem, rec, _, _) in enumerate(chunk):
            r = {"steps": cfg.steps, "seconds_per_image": res.seconds / len(chunk),
                 **{f"{k}_before": float(v[j]) for k, v in m0.items()},
                 **{f"{k}_after": float(v[j]) for k, v in m1.items()}}
            save_delta(out / f"{stem}.refine.safetensors", delta_of(res, j), model=model, cfg=cfg, extra=r)
            save_png(res.images[j].cpu(), out / f"{stem}.refined.png")
            rec["refine"] = r
            with atomic_path(out / f"{stem}.json") as tmp:
                Path(tmp).write_text(json.dumps(rec, indent=2))
            done.append(r)
    own = sum(1 for f in recs if f.name.startswith("latentatlas-"))
    summary = {"refined": len(done), "skipped": len(recs) - len(done) - own}
    if done:
        b = sorted(r["psnr_before"] for r in done)
        a = sorted(r["psnr_after"] for r in done)
        summary.update(psnr_median_before=b[len(b) // 2], psnr_median_after=a[len(a) // 2],
                       seconds_per_image=sum(r["seconds_per_image"] for r in done) / len(done))
    return summary
