"""The II2S evaluation framework (II2S §4, METHODS.md §5) for any set of inversion methods.

Per method and target set:

* reconstruction — PSNR, SSIM, RMSE, perceptual (fashion-features) distance;
* editing — the embeddings moved along the top GANSpace directions at ±2σ (all W+ rows): how far
  the feature-network embedding moves (a weak edit is a bad sign), and the class-flip rate of a
  supervised (mean-difference) direction at +3σ;
* PPL of the embeddings — perceptual path length of W+ interpolations between embeddings;
* style-mixing FID — coarse rows from one embedding, the rest from another;
* interpolation FID — 5 points between an embedding and a random sample, in W+ and in P-norm+;
* P-norm+ statistics — the share of coordinates beyond ±3 (outliers = overfitting).

FIDs here are computed on small sets (a few hundred images) against the Fashion-MNIST test
reference; they are comparable between methods of one run, not with 10k-sample FIDs.
"""
from __future__ import annotations

import numpy as np
import torch

from ..metrics.distribution import feature_stats, frechet_distance
from ..metrics.features import FashionFeatures, reference_stats
from ..metrics.reconstruction import reconstruction_metrics
from . import FeatureDistance, InversionConfig, invert

METHODS = {
    "W (projector-like)": dict(space="w"),
    "W+ (I2S)": dict(space="wplus"),
    "P-norm+ (II2S)": dict(space="pnorm+"),
    "W+ clip 2": dict(space="wplus", regularizer="pnorm-clip", reg_value=2.0),
    "W+ project 5": dict(space="wplus", regularizer="pnorm-project", reg_value=5.0),
    # II2S's r = 5 is for 18 W+ rows (a typical 18-vector of N(0, 1) has norm ~4.2); the same
    # relative radius for a model with L rows is 5·sqrt(L/18), filled in per model.
    "W+ project 5·√(L/18)": dict(space="wplus", regularizer="pnorm-project", reg_value="scaled"),
    # The II2S L2 term and Wulff & Torralba's Mahalanobis prior are the same quantity (‖v‖² in P-norm,
    # summed over rows; METHODS.md §1); the table shows them at two weights of the trade-off.
    "W+ L2 1e-6": dict(space="wplus", regularizer="pnorm-l2", reg_value=1e-6),
    "W+ Gaussian prior 1e-5": dict(space="wplus", regularizer="mahalanobis", reg_value=1e-5),
}


def method_kwargs(model, kw: dict) -> dict:
    if kw.get("reg_value") == "scaled":
        return {**kw, "reg_value": round(5.0 * (model.num_ws / 18) ** 0.5, 3)}
    return kw


@torch.no_grad()
def _fid(ext, images: torch.Tensor) -> float:
    ref = reference_stats()
    f = torch.cat([ext(images[i:i + 500]) for i in range(0, images.shape[0], 500)]).double().cpu().numpy()
    mu, sig = feature_stats(f)
    return frechet_distance(ref["mu"], ref["sigma"], mu, sig)


@torch.no_grad()
def embedding_metrics(model, ws: torch.Tensor, atlas, ext: FashionFeatures, *, directions=None, supervised=None,
                      seed: int = 0) -> dict:
    """Editing, PPL, style-mixing and interpolation metrics of W+ embeddings [N, L, D]."""
    m = model
    ws = ws.to(m.device)
    N, L = ws.shape[:2]
    g = torch.Generator().manual_seed(seed)
    out = {}
    base_f = ext(m.synthesis(ws))
    if directions is not None:
        moves = []
        for i in range(min(3, len(directions))):
            u, s = directions.vectors[i].to(m.device), float(directions.sigmas[i])
            fp = ext(m.synthesis(ws + 2 * s * u))
            fm = ext(m.synthesis(ws - 2 * s * u))
            moves.append(((fp - base_f).norm(dim=1) + (fm - base_f).norm(dim=1)).mean().item() / 2)
        out["edit_strength"] = float(np.mean(moves))
    if supervised is not None:
        u, s = supervised.vectors[0].to(m.device), float(supervised.sigmas[0])
        c0 = ext.net.head(base_f).argmax(1)
        c1 = ext.classify(m.synthesis(ws + 3 * s * u))
        out["class_flip_rate"] = float((c1 != c0).float().mean())
    # PPL: interpolate between random pairs of embeddings in W+ (eps = 1e-2)
    perm = torch.randperm(N, generator=g)
    t = torch.rand(N, generator=g).to(m.device)[:, None, None]
    a, b = ws, ws[perm]
    eps = 1e-2
    p0 = ext(m.synthesis(a.lerp(b, t)))
    p1 = ext(m.synthesis(a.lerp(b, (t + eps).clamp(max=1))))
    out["ppl"] = float(((p1 - p0).square().sum(1) / eps ** 2).mean())
    # style mixing: coarse rows (first third) from one embedding, the rest from another
    cut = max(1, L // 3)
    mixed = ws[perm].clone()
    mixed[:, :cut] = ws[:, :cut]
    out["style_mixing_fid"] = _fid(ext, m.synthesis(mixed))
    # interpolation to random samples: 5 inner points, in W+ and in P-norm+
    rnd = m.broadcast(m.mapping(m.sample_z(N, 424_242 + seed)))
    ts = torch.linspace(0, 1, 7, device=m.device)[1:-1]
    imgs_w = torch.cat([m.synthesis(ws.lerp(rnd, float(tt))) for tt in ts])
    out["interp_fid_wplus"] = _fid(ext, imgs_w)
    if atlas is not None:
        plus = atlas.pnorm_plus.to(m.device)
        va, vb = plus.transform(ws), plus.transform(rnd)
        imgs_p = torch.cat([m.synthesis(plus.inverse_transform(va.lerp(vb, float(tt)))) for tt in ts])
        out["interp_fid_pnorm+"] = _fid(ext, imgs_p)
        out["share_pnorm+_beyond_3"] = float((va.abs() > 3).float().mean())
    return out


def evaluate_inversion(model, targets: dict[str, torch.Tensor], *, methods: dict | None = None, steps: int = 300,
                       lr: float = 0.05, atlas=None, progress: bool = False, seed: int = 0) -> list[dict]:
    """Rows of the seed-003-style table: one per (target set, method)."""
    from ..atlas import get_atlas
    from ..walks.directions import ganspace, mean_diff
    model.require_mapping("the II2S evaluation")
    atlas = atlas or get_atlas(model)
    ext = FashionFeatures(model.device)
    dirs = ganspace(model, k=3)
    sup = mean_diff(model, class_a=7, class_b=5)     # Sneaker - Sandal
    rows = []
    for set_name, x in targets.items():
        for label, kw in (methods or METHODS).items():
            cfg = InversionConfig(steps=steps, lr=lr, perceptual="discriminator" if model.has_discriminator else "none",
                                  perceptual_weight=0.05, seed=seed, **method_kwargs(model, kw))
            res = invert(model, x, cfg, atlas=atlas, progress=progress)
            rec = reconstruction_metrics(x, res.images, FeatureDistance(ext))
            row = {"targets": set_name, "method": label, **{k: float(v.mean()) for k, v in rec.items()},
                   "seconds": round(res.seconds, 1)}
            row.update(embedding_metrics(model, res.ws, atlas, ext, directions=dirs, supervised=sup, seed=seed))
            rows.append(row)
    return rows


def diamond_z_inversion(model, x: torch.Tensor, *, steps: int = 300, seed: int = 0) -> dict:
    """Z inversion with Diamond in the rough's recovery loss exactly as its §3.1 (L1 + α·L1 of D features
    + β·|‖z‖ − √n|, Adam lr 0.01, best-of-1000 start) with α, β from the model's preset."""
    from ..diamond import recover_z, recovery_config, resolve_settings
    ext = FashionFeatures(model.device) if model.img_channels == 1 and model.img_resolution == 32 else None
    st = resolve_settings(model)
    z = recover_z(model, x, recovery_config(st, steps, seed))
    with torch.no_grad():
        y = model(z).clamp(-1, 1).cpu()
    rec = reconstruction_metrics(x, y, FeatureDistance(ext) if ext else None)
    return {"method": "Z (Diamond recovery §3.1)", **{k: float(v.mean()) for k, v in rec.items()},
            "alpha": st["alpha"], "beta": st["beta"], "mean |z| / sqrt(n)": float(z.norm(dim=1).mean() / model.z_dim ** 0.5)}
