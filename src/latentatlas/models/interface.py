"""The one generator interface every method above ``models/`` talks to.

``GANModel`` wraps a generator (and, when there is one, its discriminator) and exposes:

* ``z_dim``, ``w_dim`` (None without a mapping network), ``num_ws``, ``img_resolution``,
  ``img_channels``;
* ``sample_z(n, seed)``: latents named by seed, independent of device and batch size;
* ``mapping(z)`` -> w [N, w_dim]; ``synthesis(ws)`` -> images [N, C, H, W] in [-1, 1]
  (``ws`` is [N, w_dim] or W+ [N, num_ws, w_dim]); ``__call__(z)`` = synthesis(mapping(z));
* ``truncate(ws, psi, cutoff)`` toward the tracked mean w;
* ``score(images)`` [N] and ``features(images)`` [N, F] when a discriminator is present;
* ``layer_names`` and ``forward_to(layer, latent)`` / ``forward_from(layer, state, latent)``
  so a method can split ``G = G2 o G1`` at a named layer.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import torch

from ..errors import LatentAtlasError


@dataclass
class ModelInfo:
    name: str
    arch: str
    source: str                      # where the weights came from
    description: str = ""
    extra: dict = field(default_factory=dict)


def seeded_normal(seeds, dim: int) -> torch.Tensor:
    """One N(0, I) vector per seed, drawn on the CPU so the latent a seed names does not
    depend on the device or on how many other latents are drawn with it. [len(seeds), dim]."""
    out = torch.empty(len(seeds), dim)
    g = torch.Generator()
    for i, s in enumerate(seeds):
        g.manual_seed(int(s))
        out[i] = torch.randn(dim, generator=g)
    return out


def _check_finite(t: torch.Tensor, what: str):
    if not torch.isfinite(t).all():
        raise LatentAtlasError(f"{what} contains NaN or infinite values")


class GANModel:
    """Base adapter; subclasses fill in the network-specific parts."""

    w_dim: int | None = None
    num_ws: int = 1
    has_mapping = False

    def __init__(self, info: ModelInfo, *, z_dim: int, img_resolution: int, img_channels: int,
                 generator: torch.nn.Module, discriminator: torch.nn.Module | None = None,
                 output_range: tuple[float, float] = (-1.0, 1.0)):
        self.info = info
        self.z_dim = z_dim
        self.img_resolution = img_resolution
        self.img_channels = img_channels
        self.G = generator.eval().requires_grad_(False)
        self.D = discriminator.eval().requires_grad_(False) if discriminator is not None else None
        self.output_range = output_range
        self.device = torch.device("cpu")
        self._hash = None

    # -- bookkeeping -------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.info.name

    @property
    def has_discriminator(self) -> bool:
        return self.D is not None

    @property
    def has_minibatch_std(self) -> bool:
        return bool(self.D is not None and getattr(self.D, "has_minibatch_std", False))

    @property
    def spaces(self) -> list[str]:
        return ["z", "w", "w+", "p", "p-norm", "p-norm+"] if self.has_mapping else ["z"]

    def to(self, device) -> "GANModel":
        self.device = torch.device(device)
        self.G.to(self.device)
        if self.D is not None:
            self.D.to(self.device)
        return self

    def weights_hash(self) -> str:
        """sha256 over the generator's (and discriminator's) tensors: identifies the weights
        for cached atlases, whatever file they were loaded from."""
        if self._hash is None:
            h = hashlib.sha256()
            for mod in (self.G, self.D):
                if mod is None:
                    continue
                for k, v in sorted(mod.state_dict().items()):
                    h.update(k.encode())
                    h.update(v.detach().cpu().contiguous().numpy().tobytes())
            self._hash = h.hexdigest()[:16]
        return self._hash

    def require_discriminator(self, method: str):
        if self.D is None:
            raise LatentAtlasError(f"{method} needs a discriminator, and model '{self.name}' has none")

    def require_mapping(self, method: str):
        if not self.has_mapping:
            raise LatentAtlasError(f"{method} needs a mapping network (W space), and model "
                                   f"'{self.name}' has none (it has only Z)")

    # -- latents -----------------------------------------------------------------------------
    def sample_z(self, n: int, seed: int = 0) -> torch.Tensor:
        """[n, z_dim] on the model's device; latent i is named by seed ``seed + i``."""
        return seeded_normal(range(seed, seed + n), self.z_dim).to(self.device)

    def mapping(self, z: torch.Tensor) -> torch.Tensor:
        self.require_mapping("mapping")
        raise NotImplementedError

    def broadcast(self, w: torch.Tensor) -> torch.Tensor:
        """[N, w_dim] -> [N, num_ws, w_dim]; W+ input passes through."""
        return w.unsqueeze(1).expand(-1, self.num_ws, -1) if w.ndim == 2 else w

    @property
    def w_avg(self) -> torch.Tensor:
        self.require_mapping("w_avg")
        raise NotImplementedError

    def truncate(self, ws: torch.Tensor, psi: float = 1.0, cutoff: int | None = None) -> torch.Tensor:
        """ψ-truncation toward the tracked mean w, ``w' = w̄ + ψ (w − w̄)``, on the first
        ``cutoff`` layers (all when None). Accepts [N, w_dim] or [N, num_ws, w_dim]."""
        self.require_mapping("truncation in W")
        if psi == 1.0:
            return ws
        avg = self.w_avg
        if ws.ndim == 2 and cutoff is None:
            return avg.lerp(ws, psi)
        ws = self.broadcast(ws).clone()
        c = self.num_ws if cutoff is None else cutoff
        ws[:, :c] = avg.lerp(ws[:, :c], psi)
        return ws

    def synthesis(self, ws: torch.Tensor, **kw) -> torch.Tensor:
        raise NotImplementedError

    def __call__(self, z: torch.Tensor, **kw) -> torch.Tensor:
        _check_finite(z, "latent z")
        if self.has_mapping:
            return self.synthesis(self.mapping(z), **kw)
        return self.synthesis(z, **kw)

    @torch.no_grad()
    def generate(self, latents: torch.Tensor, *, batch_size: int = 64, space: str = "z",
                 **kw) -> torch.Tensor:
        """Images for many latents in batches (no grad), returned on the CPU."""
        fn = self.__call__ if space == "z" else self.synthesis
        outs = [fn(latents[i: i + batch_size].to(self.device), **kw).cpu()
                for i in range(0, latents.shape[0], batch_size)]
        return torch.cat(outs) if outs else torch.empty(0, self.img_channels, self.img_resolution, self.img_resolution)

    # -- discriminator -----------------------------------------------------------------------
    def score(self, images: torch.Tensor) -> torch.Tensor:
        """Raw discriminator/critic output [N] (higher = judged more real)."""
        self.require_discriminator("score")
        return self.D(images).reshape(-1)

    def features(self, images: torch.Tensor, independent: bool = False) -> torch.Tensor:
        """Intermediate discriminator features [N, F] (the D_f of seed 002). With
        ``independent=True`` the minibatch-std layer sees each image alone, so an image's
        features do not depend on the other images of the batch."""
        self.require_discriminator("features")
        if independent:
            try:
                return self.D.features(images, mbstd_group=1).flatten(1)
            except TypeError:   # a user's discriminator without the option
                return torch.cat([self.D.features(images[i:i + 1]).flatten(1) for i in range(images.shape[0])])
        return self.D.features(images).flatten(1)

    # -- named layers ------------------------------------------------------------------------
    @property
    def layer_names(self) -> list[str]:
        return []

    def _check_layer(self, layer: str):
        if layer not in self.layer_names:
            raise LatentAtlasError(f"model '{self.name}' has no layer {layer!r}; layers: "
                                   f"{', '.join(self.layer_names)}")

    def forward_to(self, layer: str, latent: torch.Tensor):
        """G1: run from the latent (w/W+ for mapped models, z otherwise) to the output of
        ``layer``; returns an opaque state whose ``activation(state)`` is a tensor."""
        raise NotImplementedError

    def forward_from(self, layer: str, state, latent: torch.Tensor) -> torch.Tensor:
        """G2: continue from the state after ``layer`` to the image."""
        raise NotImplementedError

    @staticmethod
    def activation(state) -> torch.Tensor:
        return state[0] if isinstance(state, tuple) else state


class StyleGAN2Model(GANModel):
    """Adapter for our StyleGAN2 (also the target of the NVIDIA and rosinality loaders)."""

    has_mapping = True

    def __init__(self, info, G, D=None, *, noise_mode: str = "const"):
        cfg = G.cfg
        super().__init__(info, z_dim=cfg.z_dim, img_resolution=cfg.img_resolution,
                         img_channels=cfg.img_channels, generator=G, discriminator=D)
        self.w_dim = cfg.w_dim
        self.num_ws = cfg.num_ws
        self.noise_mode = noise_mode
        self.grouped = False

    @property
    def cfg(self):
        return self.G.cfg

    @property
    def w_avg(self) -> torch.Tensor:
        return self.G.mapping.w_avg

    def mapping(self, z: torch.Tensor) -> torch.Tensor:
        if z.ndim != 2 or z.shape[1] != self.z_dim:
            raise LatentAtlasError(f"z must have shape [N, {self.z_dim}], got {list(z.shape)}")
        return self.G.mapping(z)

    def _ws(self, ws):
        if ws.ndim == 2 and ws.shape[1] == self.w_dim:
            return self.broadcast(ws)
        if ws.ndim == 3 and ws.shape[1:] == (self.num_ws, self.w_dim):
            return ws
        raise LatentAtlasError(f"w must have shape [N, {self.w_dim}] or [N, {self.num_ws}, "
                               f"{self.w_dim}], got {list(ws.shape)}")

    def synthesis(self, ws, *, noise_mode: str | None = None, generator=None) -> torch.Tensor:
        return self.G.synthesis(self._ws(ws), noise_mode=noise_mode or self.noise_mode,
                                grouped=self.grouped, generator=generator)

    def mix(self, ws_a: torch.Tensor, ws_b: torch.Tensor, cutoff: int) -> torch.Tensor:
        """Style mixing: rows [0, cutoff) from ``ws_a`` (coarse), the rest from ``ws_b``."""
        a, b = self._ws(ws_a).clone(), self._ws(ws_b)
        a[:, cutoff:] = b[:, cutoff:]
        return a

    @property
    def layer_names(self):
        return self.G.synthesis.layer_names

    def forward_to(self, layer, latent):
        self._check_layer(layer)
        return self.G.synthesis(self._ws(latent), stop=layer, noise_mode=self.noise_mode)

    def forward_from(self, layer, state, latent):
        self._check_layer(layer)
        return self.G.synthesis(self._ws(latent), start=layer, state=state, noise_mode=self.noise_mode)


class ZOnlyModel(GANModel):
    """Adapter for generators without a mapping network (DCGAN-style, or any user module).

    ``generator`` maps z [N, z_dim] to images; ``layers`` optionally names its sequential
    stages (``generator.stages`` as an ``nn.ModuleDict``-like ordered mapping)."""

    def synthesis(self, z, **kw):
        if z.ndim != 2 or z.shape[1] != self.z_dim:
            raise LatentAtlasError(f"z must have shape [N, {self.z_dim}], got {list(z.shape)}")
        x = self.G(z)
        lo, hi = self.output_range
        if (lo, hi) != (-1.0, 1.0):
            x = (x - lo) / (hi - lo) * 2 - 1
        return x

    @property
    def layer_names(self):
        return list(getattr(self.G, "stage_names", []))

    def forward_to(self, layer, latent):
        self._check_layer(layer)
        return self.G.run(latent, stop=layer)

    def forward_from(self, layer, state, latent):
        self._check_layer(layer)
        return self.G.run(state, start=layer)
