"""The one generator interface every method above ``models/`` talks to.

``GANModel`` wraps a generator (and, when there is one, its discriminator) and exposes:

* ``z_dim``, ``w_dim`` (None without a mapping network), ``num_ws``, ``img_resolution``,
  ``img_channels``;
* ``sample_z(n, seed)``: latents named by seed, independent of device and batch size;
* ``c_dim`` (0 unconditional) and ``set_class(k)`` / ``set_label(c)``: the label every call
  uses when none is passed (conditional models refuse to run without one);
* ``mapping(z, c=None)`` -> w [N, w_dim]; ``synthesis(ws)`` -> images [N, C, H, W] in [-1, 1]
  (``ws`` is [N, w_dim] or W+ [N, num_ws, w_dim]); ``__call__(z)`` = synthesis(mapping(z));
* ``truncate(ws, psi, cutoff)`` toward the tracked mean w;
* ``score(images)`` [N] and ``features(images)`` [N, F] when a discriminator is present;
* ``layer_names`` and ``forward_to(layer, latent)`` / ``forward_from(layer, state, latent)``
  so a method can split ``G = G2 o G1`` at a named layer;
* ``set_precision(auto|fp32|bf16|fp16)``: the precision synthesis and discriminator run at
  (``latentatlas.precision``); the mapping and every returned tensor stay fp32.
"""
from __future__ import annotations

import contextlib
import copy
import hashlib
from dataclasses import dataclass, field

import torch

from ..errors import LatentAtlasError
from ..precision import FP32_ISLANDS, Precision, cast_in, cast_out, resolve
from ..validate import number

MAX_ABS_PSI = 100.0        # |psi| beyond this moves w far outside anything the generator has seen


@dataclass
class ModelInfo:
    name: str
    arch: str
    source: str                      # where the weights came from
    description: str = ""
    extra: dict = field(default_factory=dict)


MAX_BATCH_PIXELS = 32 * 256 * 256   # images x pixels a pass without a graph takes at once (GANModel.max_batch)
MBSTD_PIECE = 4                     # pieces of a critic's batch are multiples of the minibatch-std group (4)


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
    c_dim: int = 0
    label: torch.Tensor | None = None     # [c_dim] default label of a conditional model

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
        self.precision: Precision = resolve("fp32", self.device)
        self._lowp: dict = {}          # network name -> its copy at the low precision, cast once
        self.compiled = False          # the generator's synthesis through torch.compile

    # -- bookkeeping -------------------------------------------------------------------------
    @property
    def name(self) -> str:
        """The model's name (bundled name or the checkpoint's file stem)."""
        return self.info.name

    @property
    def has_discriminator(self) -> bool:
        """Whether the checkpoint carried a discriminator (Diamond, D perceptual loss, realism)."""
        return self.D is not None

    @property
    def has_minibatch_std(self) -> bool:
        """Whether the discriminator has a minibatch-std layer (Diamond's sigma = auto needs it)."""
        return bool(self.D is not None and getattr(self.D, "has_minibatch_std", False))

    @property
    def p_space_ok(self) -> bool:
        """P = LeakyReLU(0.2)^-1(W) (II2S) exists only when the mapping's last activation is
        LeakyReLU(0.2), as read from the checkpoint."""
        return self.has_mapping and getattr(self.G.mapping, "activation", "lrelu") == "lrelu"

    @property
    def spaces(self) -> list[str]:
        """Latent spaces this model has: ['z'], or z, w, wplus and (LeakyReLU mapping) p, pnorm."""
        if not self.has_mapping:
            return ["z"]
        return ["z", "w", "w+"] + (["p", "p-norm", "p-norm+"] if self.p_space_ok else [])

    def require_p_space(self, method: str):
        """Raise LatentAtlasError naming ``method`` unless the model has the P spaces."""
        self.require_mapping(method)
        if not self.p_space_ok:
            raise LatentAtlasError(f"{method} needs the P space, which exists only when the mapping network "
                                   f"ends in LeakyReLU(0.2); model '{self.name}' ends in "
                                   f"{getattr(self.G.mapping, 'activation', '?')}")

    # -- class labels ------------------------------------------------------------------------
    @property
    def conditional(self) -> bool:
        """True for class-conditional models (``c_dim`` > 0): every call then needs a label."""
        return self.c_dim > 0

    def set_class(self, k: int | str | None) -> "GANModel":
        """Use class ``k`` (one-hot) whenever no label is passed; ``"all"``: row i of every
        call gets class i mod c_dim (an atlas fitted so covers every class equally); None
        clears it."""
        if k is None:
            self.label = None
            return self
        if not self.conditional:
            raise LatentAtlasError(f"model '{self.name}' is not class-conditional; --class does not apply")
        if k == "all":
            self.label = "all"
            return self
        try:
            k = int(k)
        except (TypeError, ValueError):
            raise LatentAtlasError(f"class must be an integer or 'all', got {k!r}") from None
        if not 0 <= int(k) < self.c_dim:
            raise LatentAtlasError(f"class {k} out of range: model '{self.name}' has {self.c_dim} classes (0..{self.c_dim - 1})")
        self.label = torch.nn.functional.one_hot(torch.tensor(int(k)), self.c_dim).float()
        return self

    def set_label(self, c) -> "GANModel":
        """A one-hot or soft label vector [c_dim] used whenever no label is passed."""
        c = torch.as_tensor(c, dtype=torch.float32).reshape(-1)
        if not self.conditional or c.numel() != self.c_dim:
            raise LatentAtlasError(f"label must have {self.c_dim} entries for model '{self.name}', got {c.numel()}")
        _check_finite(c, "label")
        self.label = c
        return self

    def labels(self, n: int, c=None) -> torch.Tensor | None:
        """[n, c_dim] float labels on the model's device (None for unconditional models).
        ``c``: class indices [n] (or one int), one-hot/soft vectors [n, c_dim], or None for the
        default label."""
        if not self.conditional:
            if c is not None:
                raise LatentAtlasError(f"model '{self.name}' is not class-conditional; a label does not apply")
            return None
        if c is None:
            if self.label is None:
                raise LatentAtlasError(f"model '{self.name}' is class-conditional ({self.c_dim} classes): "
                                       f"give a class (--class K, or c=... / set_class(k) in Python)")
            if isinstance(self.label, str):     # "all": cycle through the classes
                return torch.nn.functional.one_hot(torch.arange(n, device=self.device) % self.c_dim, self.c_dim).float()
            return self.label.to(self.device).expand(n, -1)
        c = torch.as_tensor(c, device=self.device)
        if c.ndim == 0 or (c.ndim == 1 and not c.is_floating_point()):
            idx = c.long().reshape(-1).expand(n) if c.numel() == 1 else c.long()
            if idx.numel() != n or idx.min() < 0 or idx.max() >= self.c_dim:
                raise LatentAtlasError(f"class labels must be {n} integers in 0..{self.c_dim - 1}")
            return torch.nn.functional.one_hot(idx, self.c_dim).float()
        c = c.float()
        if c.ndim == 1:
            c = c.expand(n, -1)
        if c.shape != (n, self.c_dim):
            raise LatentAtlasError(f"labels must have shape [{n}, {self.c_dim}], got {list(c.shape)}")
        _check_finite(c, "label")
        return c

    def to(self, device) -> "GANModel":
        """Move generator and discriminator to ``device`` (in place); returns the model. On the
        CPU the 4-d weights are stored channels-last, so every convolution runs on NHWC
        activations, which oneDNN convolves about 1.4x faster (fashion-stylegan2, 250 images;
        ``bench/bench_layout.py``); values agree to float rounding and ``weights_hash`` reads
        the logical layout, so it does not change."""
        self.device = torch.device(device)
        fmt = {"memory_format": torch.channels_last} if self.device.type == "cpu" else {}
        self.G.to(self.device, **fmt)
        if self.D is not None:
            self.D.to(self.device, **fmt)
        return self.set_precision(self.precision.requested)

    # -- precision -----------------------------------------------------------------------------
    def set_precision(self, requested: str = "auto", *, compile: bool | None = None) -> "GANModel":
        """Run synthesis and the discriminator at ``requested`` (auto, fp32, bf16, fp16; see
        ``latentatlas.precision``) from now on; returns the model. The low-precision copy of a
        network is made once, on first use; the fp32 weights stay the model's weights.
        ``compile=True`` also runs the generator's synthesis through ``torch.compile``, which fuses
        the elementwise work between convolutions: a one-time cost per batch shape (10-40 s on a
        CPU at 256 px); a paper256-config model then sampled 3.4x faster than eager fp32 at bf16
        (eager bf16: 2.4x; one core, batch 8, ``bench/bench_precision.py --compile``)."""
        new = resolve(requested, self.device)
        if new.name != self.precision.name or (compile is not None and compile != self.compiled):
            self._lowp.clear()
        self.precision = new
        if compile is not None:
            self.compiled = bool(compile)
        return self

    @contextlib.contextmanager
    def fp32(self, island: str):
        """Inside the block the model computes at fp32, whatever its precision: one of the fp32
        islands named in ``precision.FP32_ISLANDS`` (``island`` says which)."""
        if island not in FP32_ISLANDS:
            raise ValueError(f"{island!r} is not one of the named fp32 islands {list(FP32_ISLANDS)}")
        old, old_compiled = self.precision, self.compiled
        self.precision, self.compiled = resolve("fp32", self.device), False
        try:
            yield self
        finally:
            self.precision, self.compiled = old, old_compiled

    @contextlib.contextmanager
    def counting(self):
        """Inside the block, count the images the networks process: a dict with ``generator`` and
        ``critic`` (images through the synthesis network / the discriminator, ``score`` or
        ``features``, without a graph for a backward pass) and ``generator_grad`` /
        ``critic_grad`` (with one: inversion steps, protoimage searches, refinement). At any
        precision and whoever calls the synthesis network (one global forward hook on it, gone
        after the block). What the report's time budget is checked against."""
        counts = {"generator": 0, "generator_grad": 0, "critic": 0, "critic_grad": 0}
        cache = {}

        def generators():
            key = tuple(id(v) for v in self._lowp.values())
            if key not in cache:
                nets = [self.G] + [v for k, v in self._lowp.items() if k == "G"]
                cache[key] = {id(getattr(n, "synthesis", None)) if isinstance(getattr(n, "synthesis", None),
                                                                             torch.nn.Module) else id(n)
                              for n in nets}
            return cache[key]

        def hook(module, args, output):
            if args and torch.is_tensor(args[0]) and id(module) in generators():
                self._count("generator", args[0].shape[0], output)

        handle = torch.nn.modules.module.register_module_forward_hook(hook)
        self._counts = counts
        try:
            yield counts
        finally:
            handle.remove()
            self._counts = None

    _counts = None

    def max_batch(self) -> int:
        """Images one pass without a graph takes at once: ``MAX_BATCH_PIXELS`` over the image
        size (2048 at 32 px, 32 at 256 px, 2 at 1024 px). Callers batch as they like (250 for the
        metrics); the networks cut larger batches into pieces this big, so memory stays bounded
        at any resolution (a 250-image pass at 256 px held ~24 GB)."""
        return max(1, MAX_BATCH_PIXELS // (self.img_resolution ** 2))

    def _pieces(self, fn, x: torch.Tensor, *more, multiple: int = 1) -> torch.Tensor:
        """``fn(x, *more)`` on pieces of at most ``max_batch`` rows (a multiple of ``multiple``:
        the minibatch-std group, so a critic sees the same groups) when no graph is being
        recorded; otherwise in one call."""
        n, b = x.shape[0], self.max_batch()
        if torch.is_grad_enabled() or n <= b:
            return fn(x, *more)
        b = max(multiple, b // multiple * multiple)
        return torch.cat([fn(x[i:i + b], *(t[i:i + b] if torch.is_tensor(t) else t for t in more))
                          for i in range(0, n, b)])

    def _count(self, role: str, n: int, output):
        if self._counts is not None:
            grad = torch.is_tensor(output) and output.requires_grad
            self._counts[role + ("_grad" if grad else "")] += int(n)

    def _net(self, name: str) -> torch.nn.Module:
        """``G`` or ``D`` at the model's precision (a copy cast once), the generator's synthesis
        compiled when asked (``set_precision(..., compile=True)``)."""
        mod = getattr(self, name)
        compiled = self.compiled and name == "G"
        if not self.precision.low and not compiled:
            return mod
        if name not in self._lowp:
            net = copy.deepcopy(mod).to(self.precision.dtype)
            if compiled:
                if isinstance(getattr(net, "synthesis", None), torch.nn.Module):
                    net.synthesis = torch.compile(net.synthesis)
                else:
                    net = torch.compile(net)
            self._lowp[name] = net
        return self._lowp[name]


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
        """Raise LatentAtlasError naming ``method`` when the model has no discriminator."""
        if self.D is None:
            raise LatentAtlasError(f"{method} needs a discriminator, and model '{self.name}' has none")

    def require_mapping(self, method: str):
        """Raise LatentAtlasError naming ``method`` when the model has no mapping network."""
        if not self.has_mapping:
            raise LatentAtlasError(f"{method} needs a mapping network (W space), and model "
                                   f"'{self.name}' has none (it has only Z)")

    # -- latents -----------------------------------------------------------------------------
    def sample_z(self, n: int, seed: int = 0) -> torch.Tensor:
        """[n, z_dim] on the model's device; latent i is named by seed ``seed + i``."""
        return self.latents_for(range(seed, seed + n))

    def latents_for(self, seeds) -> torch.Tensor:
        """[len(seeds), z_dim]: the latent each seed names (any list of seeds)."""
        return seeded_normal(list(seeds), self.z_dim).to(self.device)

    def mapping(self, z: torch.Tensor, c=None) -> torch.Tensor:
        """The mapping network: z [N, z_dim] (and labels ``c`` of a conditional model) -> w
        [N, w_dim], unbounded. Models without a mapping network (DCGAN, PGAN, BigGAN) raise
        LatentAtlasError."""
        self.require_mapping("mapping")
        raise NotImplementedError

    def broadcast(self, w: torch.Tensor) -> torch.Tensor:
        """[N, w_dim] -> [N, num_ws, w_dim]; W+ input passes through."""
        return w.unsqueeze(1).expand(-1, self.num_ws, -1) if w.ndim == 2 else w

    @property
    def w_avg(self) -> torch.Tensor:
        """The tracked mean w [w_dim] (the truncation centre)."""
        self.require_mapping("w_avg")
        raise NotImplementedError

    def truncate(self, ws: torch.Tensor, psi: float = 1.0, cutoff: int | None = None) -> torch.Tensor:
        """ψ-truncation toward the tracked mean w, ``w' = w̄ + ψ (w − w̄)``, on the first
        ``cutoff`` layers (all when None). Accepts [N, w_dim] or [N, num_ws, w_dim]."""
        self.require_mapping("truncation in W")
        psi = number(psi, "psi", -MAX_ABS_PSI, MAX_ABS_PSI)
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
        """The synthesis network: w [N, w_dim] or W+ [N, num_ws, w_dim] (z [N, z_dim] for models
        without a mapping) -> images [N, C, H, W]. The output is the generator's raw output, in
        [-1, 1] only approximately (trained generators overshoot slightly, e.g. -1.3 .. 1.7):
        ``.clamp(-1, 1)`` before showing or saving (``save_grid`` does)."""
        raise NotImplementedError

    def __call__(self, z: torch.Tensor, c=None, **kw) -> torch.Tensor:
        """Images [N, C, H, W] for latents z (and labels ``c`` of a conditional model)."""
        _check_finite(z, "latent z")
        if self.has_mapping:
            return self.synthesis(self.mapping(z, c), **kw)
        return self.synthesis(z, c=c, **kw) if self.conditional else self.synthesis(z, **kw)

    @torch.no_grad()
    def generate(self, latents: torch.Tensor, *, batch_size: int = 64, space: str = "z",
                 **kw) -> torch.Tensor:
        """Images for many latents in batches (no grad), returned on the CPU."""
        fn = self.__call__ if space == "z" else self.synthesis
        outs = [fn(latents[i: i + batch_size].to(self.device), **kw).cpu()
                for i in range(0, latents.shape[0], batch_size)]
        return torch.cat(outs) if outs else torch.empty(0, self.img_channels, self.img_resolution, self.img_resolution)

    # -- discriminator -----------------------------------------------------------------------
    def score(self, images: torch.Tensor, c=None) -> torch.Tensor:
        """Raw discriminator/critic output [N] (higher = judged more real); a conditional
        discriminator judges the images against labels ``c`` (default: the model's label)."""
        self.require_discriminator("score")
        D, x = self._net("D"), cast_in(self.precision, images)
        if getattr(self.D, "conditional", False):
            out = self._pieces(D, x, cast_in(self.precision, self.labels(images.shape[0], c)), multiple=MBSTD_PIECE)
        else:
            out = self._pieces(D, x, multiple=MBSTD_PIECE)
        self._count("critic", images.shape[0], out)
        return cast_out(out.reshape(-1))

    def features(self, images: torch.Tensor, independent: bool = False) -> torch.Tensor:
        """Intermediate discriminator features [N, F] (the D_f of Diamond in the rough). With
        ``independent=True`` the minibatch-std layer sees each image alone, so an image's
        features do not depend on the other images of the batch."""
        self.require_discriminator("features")
        D, x = self._net("D"), cast_in(self.precision, images)
        if independent:
            try:
                out = D.features(x, mbstd_group=1).flatten(1)
            except TypeError:   # a user's discriminator without the option
                out = torch.cat([D.features(x[i:i + 1]).flatten(1) for i in range(x.shape[0])])
        else:
            out = self._pieces(lambda a: D.features(a).flatten(1), x, multiple=MBSTD_PIECE)
        self._count("critic", images.shape[0], out)
        return cast_out(out)

    # -- named layers ------------------------------------------------------------------------
    @property
    def layer_names(self) -> list[str]:
        """Names of the synthesis layers ``forward_to`` / ``--layer`` accept (e.g. 'b8', 'b8.conv0')."""
        return []

    def _check_layer(self, layer: str):
        if layer not in self.layer_names:
            raise LatentAtlasError(f"model '{self.name}' has no layer {layer!r}; layers: "
                                   f"{', '.join(self.layer_names)}")

    def forward_to(self, layer: str, latent: torch.Tensor):
        """G1: run from the latent (w [N, w_dim] or W+ for mapped models, z [N, z_dim] otherwise)
        to the output of ``layer`` (one of ``layer_names``); returns an opaque state whose
        ``activation(state)`` is the feature map [N, C_l, H_l, W_l] and that ``forward_from``
        continues from."""
        raise NotImplementedError

    def forward_from(self, layer: str, state, latent: torch.Tensor) -> torch.Tensor:
        """G2: continue from the state after ``layer`` to the image."""
        raise NotImplementedError

    @staticmethod
    def activation(state) -> torch.Tensor:
        """The feature map [N, C, H, W] held in a ``forward_to`` state."""
        return state[0] if isinstance(state, tuple) else state

    def features_at(self, layer: str, latent: torch.Tensor) -> torch.Tensor:
        """G1's feature map [N, C, H, W] after ``layer``, when nothing continues from it
        (``activation(forward_to(...))``; an architecture may skip work only G2 needs)."""
        return self.activation(self.forward_to(layer, latent))

    @torch.no_grad()
    def features_flat(self, layer: str, latents: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
        """``features_at`` of many latents, ``batch_size`` at a time, flattened to [N, C*H*W]."""
        return torch.cat([self.features_at(layer, latents[i:i + batch_size]).flatten(1)
                          for i in range(0, latents.shape[0], batch_size)])


class StyleGANModel(GANModel):
    """Adapter for our StyleGAN2 and StyleGAN3 (targets of the NVIDIA, rosinality and
    safetensors loaders). Both have a mapping network, W/W+ and, with a LeakyReLU(0.2) final
    mapping activation, the P spaces."""

    has_mapping = True

    def __init__(self, info, G, D=None, *, noise_mode: str = "const"):
        cfg = G.cfg
        super().__init__(info, z_dim=cfg.z_dim, img_resolution=cfg.img_resolution,
                         img_channels=cfg.img_channels, generator=G, discriminator=D)
        self.w_dim = cfg.w_dim
        self.num_ws = cfg.num_ws
        self.c_dim = int(getattr(cfg, "c_dim", 0) or 0)
        self.noise_mode = noise_mode
        self.grouped = False

    @property
    def cfg(self):
        """The generator's architecture config (StyleGAN2Config / StyleGAN3Config)."""
        return self.G.cfg

    def set_checkpointing(self, on: bool) -> bool:
        """Activation checkpointing of the synthesis blocks (StyleGAN2: ``Synthesis.checkpoint_blocks``)
        on the network that runs and its fp32 original; False when this architecture has none."""
        nets = [self.G.synthesis] + [n.synthesis for n in self._lowp.values() if hasattr(n, "synthesis")]
        if not all(hasattr(type(n), "checkpoint_blocks") for n in nets):
            return False
        for n in nets:
            n.checkpoint_blocks = bool(on)
        return True

    @property
    def w_avg(self) -> torch.Tensor:
        """The tracked mean w [w_dim] stored with the weights (the truncation centre)."""
        return self.G.mapping.w_avg

    def mapping(self, z: torch.Tensor, c=None) -> torch.Tensor:
        """z [N, z_dim] (labels ``c`` for conditional models) -> w [N, w_dim]."""
        if z.ndim != 2 or z.shape[1] != self.z_dim:
            raise LatentAtlasError(f"z must have shape [N, {self.z_dim}], got {list(z.shape)}")
        return self.G.mapping(z, self.labels(z.shape[0], c))

    def _ws(self, ws):
        if ws.ndim == 2 and ws.shape[1] == self.w_dim:
            return self.broadcast(ws)
        if ws.ndim == 3 and ws.shape[1:] == (self.num_ws, self.w_dim):
            return ws
        raise LatentAtlasError(f"w must have shape [N, {self.w_dim}] or [N, {self.num_ws}, "
                               f"{self.w_dim}], got {list(ws.shape)}")

    def synthesis(self, ws, *, noise_mode: str | None = None, generator=None) -> torch.Tensor:
        """ws [N, w_dim] or W+ [N, num_ws, w_dim] -> raw images [N, C, H, W] (about [-1, 1];
        values are not clamped). ``noise_mode``: 'const' (default), 'random' or 'none'."""
        ws, mode = cast_in(self.precision, self._ws(ws)), noise_mode or self.noise_mode
        G = self._net("G")

        def run(w):
            return G.synthesis(w, noise_mode=mode, grouped=self.grouped, generator=generator)
        # random noise is drawn per call: one call keeps a seeded generator's draws as they were
        return cast_out(run(ws) if mode == "random" else self._pieces(run, ws))

    def mix(self, ws_a: torch.Tensor, ws_b: torch.Tensor, cutoff: int) -> torch.Tensor:
        """Style mixing: rows [0, cutoff) from ``ws_a`` (coarse), the rest from ``ws_b``."""
        a, b = self._ws(ws_a).clone(), self._ws(ws_b)
        a[:, cutoff:] = b[:, cutoff:]
        return a

    @property
    def layer_names(self):
        """Synthesis blocks and layers, coarse to fine (e.g. 'b4', 'b4.conv1', 'b8', 'b8.conv0')."""
        return list(self.G.synthesis.layer_names)

    def style_affines(self, rows: tuple[int, int]) -> list:
        """The affine (style) layers that read W+ rows [a, b): StyleGAN2 convolutions and
        to-RGBs by block, StyleGAN3's Fourier-feature input (row 0) and layer i (row i + 1)."""
        a, b = rows
        syn = self.G.synthesis
        if hasattr(syn, "input"):                                   # StyleGAN3
            mods = [syn.input.affine] if a <= 0 < b else []
            return mods + [getattr(syn, n).affine for i, n in enumerate(syn.layer_names) if a <= i + 1 < b]
        mods, idx = [], 0
        for res in syn.resolutions:
            blk = getattr(syn, f"b{res}")
            convs = (blk.style_layers if hasattr(blk, "style_layers")            # StyleGAN (v1): 2 per block
                     else [blk.conv1] if blk.in_c == 0 else [blk.conv0, blk.conv1])
            mods += [layer.affine for j, layer in enumerate(convs) if a <= idx + j < b]
            if blk.has_torgb and a <= idx + blk.num_conv < b:
                mods.append(blk.torgb.affine)
            idx += blk.num_conv
        return mods

    def forward_to(self, layer, latent):
        """G1: W/W+ latent -> the state after ``layer``."""
        self._check_layer(layer)
        latent = cast_in(self.precision, self._ws(latent))
        return cast_out(self._net("G").synthesis(latent, stop=layer, noise_mode=self.noise_mode))

    def forward_from(self, layer, state, latent):
        """G2: the state after ``layer`` -> image."""
        self._check_layer(layer)
        latent, state = cast_in(self.precision, (self._ws(latent), state))
        return cast_out(self._net("G").synthesis(latent, start=layer, state=state,
                                                 noise_mode=self.noise_mode))

    def features_at(self, layer, latent):
        """G1's features without the image path (to-RGB layers and image upsampling) that only G2
        continues: ~5% of a DP-LaSE discovery step at b8."""
        self._check_layer(layer)
        return cast_out(self.activation(self._net("G").synthesis(cast_in(self.precision, self._ws(latent)), stop=layer,
                                                                 noise_mode=self.noise_mode, image=False)))




class ZOnlyModel(GANModel):
    """Adapter for generators without a mapping network (DCGAN-style, or any user module).

    ``generator`` maps z [N, z_dim] to images; ``layers`` optionally names its sequential
    stages (``generator.stages`` as an ``nn.ModuleDict``-like ordered mapping)."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.c_dim = int(getattr(self.G, "c_dim", 0) or 0)

    def synthesis(self, z, c=None, **kw):
        """z [N, z_dim] -> images [N, C, H, W] in about [-1, 1]."""
        if z.ndim != 2 or z.shape[1] != self.z_dim:
            raise LatentAtlasError(f"z must have shape [N, {self.z_dim}], got {list(z.shape)}")
        G = self._net("G")
        lz = cast_in(self.precision, z)
        x = cast_out(self._pieces(lambda a, b: G(a, b, **kw), lz, cast_in(self.precision, self.labels(z.shape[0], c)))
                     if self.conditional else self._pieces(G, lz))
        lo, hi = self.output_range
        if (lo, hi) != (-1.0, 1.0):
            x = (x - lo) / (hi - lo) * 2 - 1
        return x

    @property
    def layer_names(self):
        """The generator's stages, coarse to fine."""
        return list(getattr(self.G, "stage_names", []))

    def forward_to(self, layer, latent):
        self._check_layer(layer)
        x = cast_in(self.precision, latent)
        if self.conditional:        # a conditional Z-only generator embeds the label with z
            return cast_out(self._net("G").run(x, cast_in(self.precision, self.labels(x.shape[0])), stop=layer))
        return cast_out(self._net("G").run(x, stop=layer))

    def forward_from(self, layer, state, latent):
        self._check_layer(layer)
        return cast_out(self._net("G").run(cast_in(self.precision, state), start=layer))


class BigGANModel(ZOnlyModel):
    """BigGAN: class-conditional Z model whose prior is the truncated normal N(0, I) on
    [-2, 2], scaled by the truncation t; t also selects the generator's batch-norm statistics
    (``set_truncation`` / ``synthesis(z, truncation=t)``). Every Z-space method moves z with
    the class held fixed."""

    def __init__(self, info, G):
        super().__init__(info, z_dim=G.cfg.z_dim, img_resolution=G.cfg.img_resolution, img_channels=3,
                         generator=G)
        self.truncation = 1.0

    def set_truncation(self, t: float) -> "BigGANModel":
        if not 0 < float(t) <= 1:
            raise LatentAtlasError(f"BigGAN truncation must be in (0, 1], got {t}")
        self.truncation = float(t)
        return self

    def latents_for(self, seeds) -> torch.Tensor:
        """[len(seeds), z_dim]: truncated normal on [-2, 2] times the truncation, one per seed
        (out-of-range entries redrawn from the same seeded stream)."""
        seeds = list(seeds)
        out = torch.empty(len(seeds), self.z_dim)
        g = torch.Generator()
        for i, s in enumerate(seeds):
            g.manual_seed(int(s))
            v = torch.randn(self.z_dim, generator=g)
            bad = v.abs() > 2
            while bad.any():
                v[bad] = torch.randn(int(bad.sum()), generator=g)
                bad = v.abs() > 2
            out[i] = v
        return (out * self.truncation).to(self.device)

    def synthesis(self, z, c=None, truncation: float | None = None, **kw):
        """z [N, z_dim] (already truncated) -> images [N, 3, R, R] in (-1, 1)."""
        if z.ndim != 2 or z.shape[1] != self.z_dim:
            raise LatentAtlasError(f"z must have shape [N, {self.z_dim}], got {list(z.shape)}")
        t = self.truncation if truncation is None else truncation
        if not 0 < float(t) <= 1:
            raise LatentAtlasError(f"BigGAN truncation must be in (0, 1], got {t}")
        z, labels = cast_in(self.precision, (z, self.labels(z.shape[0], c)))
        G = self._net("G")
        return cast_out(self._pieces(lambda a, b: G(a, b, float(t)), z, labels))

    def forward_to(self, layer, latent):
        self._check_layer(layer)
        latent, labels = cast_in(self.precision, (latent, self.labels(latent.shape[0])))
        return cast_out(self._net("G").run(latent, labels, self.truncation, stop=layer))

    def forward_from(self, layer, state, latent):
        self._check_layer(layer)
        return cast_out(self._net("G").run(cast_in(self.precision, state), None, self.truncation, start=layer))


def wrap_generator(module: torch.nn.Module, *, z_dim: int, output_range=(-1.0, 1.0), name: str = "user-generator",
                   discriminator: torch.nn.Module | None = None):
    """Wrap a user's ``nn.Module`` mapping z [N, z_dim] to images so every Z-space method works
    with it. Resolution and channels are read off one forward pass; ``output_range`` is the
    range of its outputs (rescaled to [-1, 1])."""
    with torch.no_grad():
        out = module.eval()(torch.zeros(2, z_dim))
    if out.ndim != 4 or out.shape[-1] != out.shape[-2]:
        raise LatentAtlasError(f"{name}: generator output must be square images [N, C, H, W], got {list(out.shape)}")
    info = ModelInfo(name=name, arch=type(module).__name__, source="user module")
    return ZOnlyModel(info, z_dim=z_dim, img_resolution=int(out.shape[-1]), img_channels=int(out.shape[1]),
                      generator=module, discriminator=discriminator, output_range=tuple(output_range))
