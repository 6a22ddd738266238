"""StyleSpace channels (Wu et al. 2021): the per-layer style vectors of a style-based generator —
each synthesis layer's affine output ``s = A(w)`` — as edit handles, one channel at a time.

:func:`top_channels` ranks every style channel of every layer (to-RGB layers included) by how
differently it is set in samples that have an attribute and samples that do not: the samples the
attribute estimator (the user's labels probe, or the bundled classifier) scores highest and
lowest (the top and bottom 10% of ``n``, as for InterFaceGAN's boundaries), the channel's
standardised mean difference (mean over the positives minus over the negatives, over the pooled
standard deviation). :func:`channel_edit` moves one channel by a multiple of its standard deviation
over the model's samples while the synthesis runs; nothing else changes.
"""
from __future__ import annotations

import contextlib

import torch

from ..errors import LatentAtlasError
from .directions import _attribute_probs


def style_modules(model, net=None) -> dict:
    """Layer name -> its style affine, in synthesis order (StyleGAN 1/2/3), of ``net`` (default
    the model's fp32 generator)."""
    if not getattr(model, "has_mapping", False) or not hasattr(model.G, "synthesis"):
        raise LatentAtlasError(f"StyleSpace edits need a style-based generator (StyleGAN 1/2/3); model "
                               f"'{model.name}' has no style layers")
    mods = {name: mod.affine for name, mod in (net or model.G).synthesis.named_modules()
            if name and isinstance(getattr(mod, "affine", None), torch.nn.Module)}
    if not mods:
        raise LatentAtlasError(f"model '{model.name}' has no style affine layers")
    return mods


@torch.no_grad()
def style_activations(model, ws: torch.Tensor, batch: int = 250) -> dict:
    """Every style layer's channels for the codes ``ws`` (W or W+): layer -> [N, C] on the CPU."""
    mods = style_modules(model)
    out = {k: [] for k in mods}
    hooks = [m.register_forward_hook(lambda _m, _i, o, k=k: out[k].append(o.detach().float().cpu()))
             for k, m in mods.items()]
    try:
        with model.fp32("StyleSpace statistics"):
            for i in range(0, ws.shape[0], batch):
                model.synthesis(ws[i:i + batch].to(model.device))
    finally:
        for h in hooks:
            h.remove()
    return {k: torch.cat(v) for k, v in out.items()}


@torch.no_grad()
def top_channels(model, attributes, attribute: str, *, n: int = 5000, seed: int = 0, top: int = 10,
                 extreme: float = 0.1) -> dict:
    """The style channels that most separate samples with ``attribute`` from samples without it:
    ``{"attribute", "channels": [{"layer", "channel", "score", "std"} ...], ...}``, best first;
    ``score`` is the standardised mean difference (positive: the channel is higher with the
    attribute), ``std`` the channel's spread over the n samples (the unit of :func:`channel_edit`)."""
    names = list(attributes.names)
    if attribute not in names:
        raise LatentAtlasError(f"attribute {attribute!r} is not among {', '.join(names)}")
    w, p = _attribute_probs(model, n, seed, "w", attributes)
    p = p[:, names.index(attribute)]
    m = max(int(n * extreme), 10)
    order = torch.logit(p.clamp(1e-6, 1 - 1e-6)).argsort()
    pos, neg = order[-m:], order[:m]
    acts = style_activations(model, w)
    rows = []
    for layer, a in acts.items():
        sd = a.std(0).clamp_min(1e-8)
        pooled = ((a[pos].var(0) + a[neg].var(0)) / 2).sqrt().clamp_min(1e-8)
        score = (a[pos].mean(0) - a[neg].mean(0)) / pooled
        for c in range(a.shape[1]):
            rows.append((float(score[c]), layer, c, float(sd[c])))
    rows.sort(key=lambda r: -abs(r[0]))
    return {"attribute": attribute, "n": n, "per_side": m, "seed": seed, "weights_hash": model.weights_hash(),
            "channels": [{"layer": layer, "channel": c, "score": round(s, 4), "std": sd}
                         for s, layer, c, sd in rows[:top]]}


def channel_std(model, layer: str, channel: int, *, n: int = 2000, seed: int = 0) -> float:
    """A style channel's standard deviation over ``n`` of the model's samples."""
    mods = style_modules(model)
    if layer not in mods:
        raise LatentAtlasError(f"no style layer {layer!r} (layers: {', '.join(mods)})")
    with torch.no_grad():
        w = model.mapping(model.sample_z(n, seed))
    a = style_activations(model, w)[layer]
    if not 0 <= channel < a.shape[1]:
        raise LatentAtlasError(f"style layer {layer} has channels 0..{a.shape[1] - 1}, not {channel}")
    return float(a[:, channel].std())


@contextlib.contextmanager
def channel_edit(model, layer: str, channel: int, delta: float):
    """Inside the block the synthesis runs with style channel ``channel`` of ``layer`` moved by
    ``delta`` (in the style's own units), at the model's precision (the hook sits on the network
    that runs)."""
    mods = style_modules(model, model._net("G"))
    if layer not in mods:
        raise LatentAtlasError(f"no style layer {layer!r} (layers: {', '.join(mods)})")

    def hook(_m, _i, out):
        if not 0 <= channel < out.shape[-1]:
            raise LatentAtlasError(f"style layer {layer} has channels 0..{out.shape[-1] - 1}, not {channel}")
        out = out.clone()
        out[..., channel] = out[..., channel] + delta
        return out
    h = mods[layer].register_forward_hook(hook)
    try:
        yield
    finally:
        h.remove()
