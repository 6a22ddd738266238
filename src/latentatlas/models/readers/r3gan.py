"""R3GAN network pickles (brownvc/R3GAN ``network-snapshot-*.pkl``).

R3GAN's training loop pickles its snapshot dict (``G``, ``D``, ``G_ema``, ``augment_pipe``,
``training_set_kwargs``) with plain ``pickle``: the networks are ordinary ``nn.Module`` objects
named by their classes (``training.networks.Generator`` wrapping ``R3GAN.Networks.Generator``,
its stages, residual blocks, ``torch.nn`` convolutions and linear layers). The restricted
unpickler of :mod:`.nvidia` resolves exactly those class names to :class:`ModuleRecord` (class
name, parameters, buffers, children, plain attributes), never to the classes themselves:
nothing of R3GAN's or any other code is imported or run. The configuration is read from the
records' structure (widths, groups, blocks per stage, kernel sizes) and checked against the
wrapper's ``z_dim``/``c_dim``/``img_resolution``.
"""
from __future__ import annotations

from pathlib import Path

import torch

from ...errors import LatentAtlasError
from ..interface import ModelInfo, ZOnlyModel
from ..r3gan import R3GANConfig, R3GANDiscriminator, R3GANGenerator
from ..state import build_checked

FAMILY = "R3GAN network pickle"


class ModuleRecord:
    """A pickled ``nn.Module`` of an allowed class, as data."""
    qualname = "?"

    def __setstate__(self, state):
        if not isinstance(state, dict):
            raise LatentAtlasError(f"R3GAN pickle: {self.qualname} has a {type(state).__name__} state, not a dict")
        self.params = {k: v for k, v in (state.get("_parameters") or {}).items() if v is not None}
        self.buffers = {k: v for k, v in (state.get("_buffers") or {}).items() if v is not None}
        self.children = dict(state.get("_modules") or {})
        self.attrs = {k: v for k, v in state.items() if not k.startswith("_") and k != "training"}
        for k, v in list(self.params.items()) + list(self.buffers.items()):
            if not isinstance(v, torch.Tensor):
                raise LatentAtlasError(f"R3GAN pickle: {self.qualname}.{k} is a {type(v).__name__}, not a tensor")
        for k, v in self.children.items():
            if v is not None and not isinstance(v, ModuleRecord):
                raise LatentAtlasError(f"R3GAN pickle: {self.qualname}.{k} is a {type(v).__name__}, not a module")

    def state_dict(self, prefix: str = "") -> dict:
        out = {prefix + k: v for k, v in list(self.params.items()) + list(self.buffers.items())}
        for name, child in self.children.items():
            if child is not None:
                out.update(child.state_dict(f"{prefix}{name}."))
        return out

    def child(self, *path):
        rec = self
        for p in path:
            rec = rec.children.get(str(p)) if isinstance(rec, ModuleRecord) else None
        return rec

    @property
    def kind(self) -> str:
        return self.qualname.rsplit(".", 1)[-1]


_CLASSES = {
    "training.networks": ("Generator", "Discriminator"),
    "R3GAN.Networks": ("Generator", "Discriminator", "GeneratorStage", "DiscriminatorStage", "ResidualBlock",
                       "Convolution", "UpsampleLayer", "DownsampleLayer", "GenerativeBasis", "DiscriminativeBasis"),
    "R3GAN.FusedOperators": ("BiasedActivationCUDA", "BiasedActivationReference"),
    "R3GAN.Resamplers": ("InterpolativeUpsamplerCUDA", "InterpolativeDownsamplerCUDA",
                         "InterpolativeUpsamplerReference", "InterpolativeDownsamplerReference",
                         "InplaceUpsamplerCUDA", "InplaceDownsamplerCUDA",
                         "InplaceUpsamplerReference", "InplaceDownsamplerReference"),
    "torch.nn.modules.conv": ("Conv2d",),
    "torch.nn.modules.linear": ("Linear",),
    "torch.nn.modules.container": ("ModuleList",),
}


def _record_class(module: str, name: str) -> type:
    return type(name, (ModuleRecord,), {"qualname": f"{module}.{name}"})


ALLOWED = {(m, n): _record_class(m, n) for m, names in _CLASSES.items() for n in names}
ALLOWED.update({("torch", dt): dt for dt in ("float32", "float16", "bfloat16")})   # a stage's DataType, as a name


def detect(obj) -> bool:
    return isinstance(obj, dict) and isinstance(obj.get("G_ema", obj.get("G")), ModuleRecord)


def _int(v, what, source, lo=0, hi=1 << 20) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
        raise LatentAtlasError(f"{source}: R3GAN {what} = {v!r} is not an integer in [{lo}, {hi}]")
    return v


def _conv(rec, source, what) -> torch.Tensor:
    layer = rec.child("Layer") if rec is not None else None
    w = layer.params.get("weight") if layer is not None else None
    if w is None or w.ndim != 4:
        raise LatentAtlasError(f"{source}: R3GAN {what}: convolution weight missing")
    return w


def _stages(net: ModuleRecord, source: str, generator: bool):
    """Per stage: (width, cardinality, blocks, kernel, expansion, transition record)."""
    main = net.child("MainLayers")
    if main is None or not main.children:
        raise LatentAtlasError(f"{source}: R3GAN network without MainLayers")
    out = []
    for i in range(len(main.children)):
        layers = main.child(i, "Layers")
        if layers is None or not layers.children:
            raise LatentAtlasError(f"{source}: R3GAN stage {i} has no layers")
        recs = [layers.child(j) for j in range(len(layers.children))]
        blocks = [r for r in recs if r is not None and r.kind == "ResidualBlock"]
        trans = [r for r in recs if r is not None and r.kind != "ResidualBlock"]
        if len(trans) != 1 or (generator and recs[0] is not trans[0]) or (not generator and recs[-1] is not trans[0]):
            raise LatentAtlasError(f"{source}: R3GAN stage {i}: unexpected layer order")
        if any(k.startswith("Inplace") for r in trans for k in [getattr(r.child("Resampler"), "kind", "")]):
            raise LatentAtlasError(f"{source}: R3GAN in-place (pixel-shuffle) resamplers are not supported")
        card = kern = exp = None
        width = None
        for b in blocks:
            w1, w2 = _conv(b.child("LinearLayer1"), source, "block"), _conv(b.child("LinearLayer2"), source, "block")
            width, e = int(w1.shape[1]), int(w1.shape[0])
            card = _int(b.child("LinearLayer2", "Layer").attrs.get("groups"), "groups", source, 1)
            kern, exp = int(w2.shape[-1]), e // width if width else 0
        out.append(dict(width=width, cardinality=card or 1, blocks=len(blocks), kernel=kern, expansion=exp,
                        transition=trans[0]))
    return out


def _d_width(stage: dict, source: str) -> int:
    """A discriminator stage's width: its blocks' channels, else its transition's input."""
    if stage["width"]:
        return stage["width"]
    t = stage["transition"]
    if t.kind == "DiscriminativeBasis":
        return int(t.child("Basis").params["weight"].shape[0])
    return int(_conv(t.child("LinearLayer"), source, "down-sampling layer").shape[1])


def _config(G: ModuleRecord, D: ModuleRecord | None, wrapper: ModuleRecord, source: str) -> R3GANConfig:
    st = _stages(G, source, generator=True)
    basis = st[0]["transition"]
    if basis.kind != "GenerativeBasis":
        raise LatentAtlasError(f"{source}: R3GAN generator does not start with its generative basis")
    widths = []
    for i, s in enumerate(st):
        if s["transition"].kind == "GenerativeBasis":
            widths.append(int(s["transition"].params["Basis"].shape[0]))
        else:
            lin = s["transition"].child("LinearLayer")
            widths.append(int(_conv(lin, source, "up-sampling layer").shape[0]) if lin is not None else widths[-1])
    kernels = {s["kernel"] for s in st if s["kernel"]}
    exps = {s["expansion"] for s in st if s["expansion"]}
    if len(kernels) > 1 or len(exps) > 1:
        raise LatentAtlasError(f"{source}: R3GAN stages with different kernel sizes or expansion factors")
    emb = G.child("EmbeddingLayer")
    c_dim = int(emb.params["weight"].shape[1]) if emb is not None else 0
    embed = int(emb.params["weight"].shape[0]) if emb is not None else 0
    in_dim = int(basis.child("LinearLayer").params["weight"].shape[1])
    z_dim, res = in_dim - embed, 4 * 2 ** (len(st) - 1)
    for key, have in (("z_dim", z_dim), ("c_dim", c_dim), ("img_resolution", res)):
        declared = wrapper.attrs.get(key)
        if declared is not None and _int(declared, key, source) != have:
            raise LatentAtlasError(f"{source}: R3GAN {key} = {declared}, but its layers say {have}")
    taps = next((int(s["transition"].child("Resampler").buffers["Kernel"].shape[-1]) for s in st[1:]), 4)
    kw = dict(z_dim=z_dim, img_resolution=res, widths=tuple(widths), cardinalities=tuple(s["cardinality"] for s in st),
              blocks=tuple(s["blocks"] for s in st), expansion=exps.pop() if exps else 1,
              kernel_size=kernels.pop() if kernels else 3, c_dim=c_dim, embed_dim=embed, filter_taps=taps,
              img_channels=int(_conv(G.child("AggregationLayer"), source, "aggregation layer").shape[0]))
    if D is not None:
        ds = _stages(D, source, generator=False)
        demb = D.child("EmbeddingLayer")
        kw.update(d_widths=tuple(_d_width(s, source) for s in ds), d_cardinalities=tuple(s["cardinality"] for s in ds),
                  d_blocks=tuple(s["blocks"] for s in ds),
                  d_embed_dim=int(demb.params["weight"].shape[0]) if demb is not None else 0)
    return R3GANConfig(**kw)


def load(path, snap: dict, *, which: str = "G_ema") -> ZOnlyModel:
    source = str(path)
    wrapper = snap.get(which) if isinstance(snap.get(which), ModuleRecord) else snap.get("G")
    if not isinstance(wrapper, ModuleRecord) or wrapper.child("Model") is None:
        raise LatentAtlasError(f"{source}: R3GAN snapshot without a generator")
    G = wrapper.child("Model")
    d_wrap = snap.get("D")
    D = d_wrap.child("Model") if isinstance(d_wrap, ModuleRecord) else None
    warnings = []
    try:
        cfg = _config(G, D, wrapper, source)
    except (LatentAtlasError, KeyError, IndexError, AttributeError) as e:
        if D is None:
            raise LatentAtlasError(f"{source}: not a readable R3GAN generator ({e})") from None
        warnings.append(f"discriminator not loaded: {e}")
        D, cfg = None, _config(G, None, wrapper, source)
    try:
        cfg = R3GANConfig(**{k: v for k, v in cfg.to_dict().items()})
    except ValueError as e:
        raise LatentAtlasError(f"{source}: R3GAN config: {e}") from None
    Gm = build_checked(lambda: R3GANGenerator(cfg), G.state_dict(), f"{path} ({which})")
    Dm = None
    if D is not None:
        try:
            Dm = build_checked(lambda: R3GANDiscriminator(cfg), D.state_dict(), f"{path} (D)")
        except LatentAtlasError as e:
            warnings.append(f"discriminator not loaded: {e}")
    bf16 = [i for i, s in enumerate(G.children["MainLayers"].children.values())
            if isinstance(s, ModuleRecord) and s.attrs.get("DataType") in ("bfloat16", "float16")]
    extra = {"format": "r3gan-pkl", "family": "r3gan", **({"file_low_precision_stages": bf16} if bf16 else {}),
             **({"warnings": warnings} if warnings else {})}
    info = ModelInfo(name=Path(path).stem, arch="r3gan", source=f"{path} ({FAMILY}, {which})", extra=extra)
    return ZOnlyModel(info, z_dim=cfg.z_dim, img_resolution=cfg.img_resolution, img_channels=cfg.img_channels,
                      generator=Gm, discriminator=Dm)


def inspect(path, snap: dict) -> dict:
    out = {"format": FAMILY, "keys": [str(k) for k in snap]}
    for k, v in snap.items():
        if isinstance(v, ModuleRecord):
            n = sum(t.numel() for t in v.state_dict().values() if t.is_floating_point())
            out[str(k)] = f"{v.qualname} ({n:,} values) {({a: b for a, b in v.attrs.items() if isinstance(b, int)})}"
    return out

