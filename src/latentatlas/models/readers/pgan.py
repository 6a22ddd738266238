"""pytorch_GAN_zoo Progressive GAN checkpoints (``.pth``: ``config``, ``netG``, ``netD``,
``avgG``), the layout its torch.hub entry point ``PGAN(pretrained=True)`` loads.

``config`` is an instance of upstream's ``models.utils.config.BaseConfig`` (a plain attribute
bag); ``torch.load(weights_only=True)`` refuses that global, so we map that one name to our
own attribute holder (never importing upstream's class). A plain dict config is accepted too.
The EMA copy ``avgG`` is the generator (``netG`` only when ``avgG`` is absent).
"""
from __future__ import annotations

from pathlib import Path

from ...errors import LatentAtlasError
from ...validate import number
from ..interface import ModelInfo, ZOnlyModel
from ..pgan import PGANConfig, PGANDiscriminator, PGANGenerator
from ..state import build_checked

FAMILY = "PGAN (pytorch_GAN_zoo .pth)"


class ConfigBag:
    """Stand-in for ``models.utils.config.BaseConfig``: only its attributes are kept."""

    def __setstate__(self, state):
        if not isinstance(state, dict):
            raise LatentAtlasError("PGAN config object with a non-dict state")
        self.__dict__.update(state)


SAFE_GLOBALS = [(ConfigBag, "models.utils.config.BaseConfig")]


def _config_dict(cfg) -> dict:
    if isinstance(cfg, ConfigBag):
        return dict(vars(cfg))
    if isinstance(cfg, dict):
        return dict(cfg)
    raise LatentAtlasError(f"PGAN checkpoint 'config' is a {type(cfg).__name__}, not a config object or dict")


def detect(ckpt) -> bool:
    return isinstance(ckpt, dict) and "config" in ckpt and isinstance(ckpt.get("netG"), dict) and \
        any(k.startswith("formatLayer.") for k in ckpt["netG"])


def _count(sd: dict, prefix: str) -> int:
    n = 0
    while f"{prefix}.{n}.module.weight" in sd or f"{prefix}.{n}.0.module.weight" in sd:
        n += 1
    return n


def build_config(ckpt: dict, source: str) -> PGANConfig:
    c = _config_dict(ckpt["config"])
    g = ckpt.get("avgG") if isinstance(ckpt.get("avgG"), dict) else ckpt["netG"]
    if number(c.get("categoryVectorDim", 0) or 0, "config field 'categoryVectorDim'", 0, 100_000, where=source,
              integer=True) > 0:
        raise LatentAtlasError(f"{source}: attribute-conditioned PGAN (categoryVectorDim="
                               f"{c.get('categoryVectorDim')}) is not supported yet")
    try:
        fmt = g["formatLayer.module.weight"]
        n_scales = _count(g, "scaleLayers")
        others = tuple(int(g[f"scaleLayers.{i}.0.module.weight"].shape[0]) for i in range(n_scales))
        img_c = int(g["toRGBLayers.0.module.weight"].shape[0])
    except KeyError as e:
        raise LatentAtlasError(f"{source}: PGAN generator is missing {e.args[0]!r}") from None
    loss = str(c.get("lossCriterion", "WGANGP"))
    if loss not in ("WGANGP", "Logistic", "DCGAN", "MSE"):
        raise LatentAtlasError(f"{source}: unknown PGAN lossCriterion {loss!r}")
    kw = dict(latent_dim=int(fmt.shape[1]), depth_scale0=int(fmt.shape[0]) // 16, depth_other_scales=others,
              img_channels=img_c, alpha=number(c.get("alpha", 0) or 0, "config field 'alpha'", 0, 1, where=source),
              leaky=number(c.get("leakyReluLeak", 0.2), "config field 'leakyReluLeak'", 0, 1, where=source),
              pixel_norm=bool(c.get("perChannelNormalization", True)), equalized=bool(c.get("equalizedlR", True)),
              output_activation="tanh" if loss in ("DCGAN", "MSE") else "none",
              mbstd=bool(c.get("miniBatchStdDev", False)))
    d = ckpt.get("netD")
    if isinstance(d, dict) and "decisionLayer.module.weight" in d:
        nd = _count(d, "scaleLayers")
        kw.update(d_depth_scale0=int(d["decisionLayer.module.weight"].shape[1]),
                  d_depth_other_scales=tuple(int(d[f"scaleLayers.{i}.0.module.weight"].shape[0]) for i in range(nd)),
                  d_decision_dim=int(d["decisionLayer.module.weight"].shape[0]))
    try:
        return PGANConfig(**kw)
    except ValueError as e:
        raise LatentAtlasError(f"{source}: bad PGAN config: {e}") from None


def build(ckpt: dict, source: str, cfg: PGANConfig | None = None) -> ZOnlyModel:
    cfg = cfg or build_config(ckpt, source)
    which = "avgG" if isinstance(ckpt.get("avgG"), dict) else "netG"
    G = build_checked(lambda: PGANGenerator(cfg), ckpt[which], f"{source} ({which})")
    D, warnings = None, []
    if isinstance(ckpt.get("netD"), dict):
        try:
            D = build_checked(lambda: PGANDiscriminator(cfg), ckpt["netD"], f"{source} (netD)")
        except LatentAtlasError as e:
            D, warnings = None, [f"discriminator not loaded: {e}"]
    info = ModelInfo(name=Path(source).stem, arch="pgan", source=f"{source} ({FAMILY}, {which})",
                     extra={"format": "pgan-pth", "family": "pgan", **({"warnings": warnings} if warnings else {})})
    return ZOnlyModel(info, z_dim=cfg.latent_dim, img_resolution=cfg.img_resolution,
                      img_channels=cfg.img_channels, generator=G, discriminator=D)
