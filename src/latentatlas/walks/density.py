"""DP-LaSE's learned density model, correction module and direction discovery (DP-LaSE,
METHODS.md §4). The public DP-LaSE code has none of these; this is our implementation.

* :class:`MonotoneCDF` ``F`` — one monotone network per dimension (the paper assumes i.i.d.
  dimensions with one shared F; W of a StyleGAN is not identically distributed, so each
  dimension gets its own). Monotone by construction (positive weights through softplus, sigmoid
  units, a sigmoid output), trained with ``l_mon + l_lik`` on the finite-difference density
  ``F'(x) ≈ (F(x + ε) − F(x)) / ε`` exactly as written in the paper.
* :class:`Correction` ``C(z0, ε, γ)`` — an MLP; its output is made orthogonal to γ so the walk
  keeps moving along γ (without that, ``C = −εγ`` satisfies ``l_den`` by not moving at all),
  trained with ``l_den`` plus a small ‖C‖² term. ``l_den`` does not update F (a flat F would
  minimise it trivially); F learns the density from ``l_mon + l_lik`` alone.
* :class:`DPWalkModel` joins them; :func:`train_dp_lase` optimises
  ``E[l_mon + l_lik + l_den + l_var] + ζ l_reg`` jointly over F, C and Γ, with G split at a
  named layer, each term reaching only the module it is meant to train: F from l_mon + l_lik,
  C from l_den, Γ from l_var + ζ l_reg. ``l_var`` is computed on the G1 features with Δ in
  units of their total standard deviation over the batch (METHODS.md leaves Δ's scale open;
  unnormalised and with all terms reaching Γ, l_var was ~1e-4 at layer b8 of
  fashion-stylegan2 next to l_den ~1e3, and Γ followed the density terms, not G1's variation).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

# Rows of [rows, D, H] evaluated at a time: the monotone net's hidden tensor is D·H floats per row
# (8192 for W of a 512-d model), so a 1280-row batch is a 42 MB tensor per elementwise op and the
# evaluation is bound by memory traffic; blocks of ~2 MB stay in the CPU's cache (the density's
# forward + backward on 1280 x 512 rows: 524 -> 197 ms on a 2-core CPU). With gradients each block's
# intermediates are kept for the backward pass (~130 B per hidden unit: 170 MB for 1280 x 512 rows);
# recomputing them instead (torch.utils.checkpoint) cost 30-50 % more time: the frozen density's
# forward + backward on 1280 rows, 25.0 -> 16.3 ms at D = 128, 83 -> 60 ms at D = 512.
_BLOCK_ELEMENTS = 1 << 19


def _cdf_block(x, loc, scale, a1, b1, s2, c2):
    u = (x - loc) / scale                                                      # [n, D]
    h = torch.sigmoid(torch.addcmul(b1, u[..., None], a1))                     # [n, D, H]
    return torch.sigmoid((h * s2).sum(-1) * 4 + c2)


def _density_block(x, eps, loc, scale, a1, b1, s2, c2):
    return (_cdf_block(x + eps, loc, scale, a1, b1, s2, c2) - _cdf_block(x, loc, scale, a1, b1, s2, c2)) / eps


class MonotoneCDF(nn.Module):
    """Per-dimension monotone map R -> (0, 1): x [N, D] -> F(x) [N, D]."""

    def __init__(self, dim: int, hidden: int = 16, loc=None, scale=None):
        super().__init__()
        self.register_buffer("loc", torch.zeros(dim) if loc is None else torch.as_tensor(loc, dtype=torch.float32))
        self.register_buffer("scale", torch.ones(dim) if scale is None else torch.as_tensor(scale, dtype=torch.float32))
        self.w1 = nn.Parameter(torch.randn(dim, hidden) * 0.5)
        self.b1 = nn.Parameter(torch.randn(dim, hidden) * 0.5)
        self.w2 = nn.Parameter(torch.randn(dim, hidden) * 0.1)
        self.b2 = nn.Parameter(torch.zeros(dim))

    def _blocks(self, fn, x, frozen: bool, *extra):
        """``fn(rows, *extra, loc, scale, a1, b1, s2, c2)`` over row blocks of ``x``, concatenated.
        F(u) = σ(4 Σ_h s2_h σ(3 a_h u + b1_h) + b2 − 2 Σ_h s2_h) with a = softplus(w1), s2 = softplus(w2):
        positive weights through softplus make it increasing in u."""
        w1, b1, w2, b2 = (p.detach() if frozen else p for p in (self.w1, self.b1, self.w2, self.b2))
        s2 = F.softplus(w2)
        params = (self.loc, self.scale, F.softplus(w1) * 3, b1, s2, b2 - 2 * s2.sum(-1))
        rows = max(1, _BLOCK_ELEMENTS // w1.numel())
        if x.shape[0] <= rows:
            return fn(x, *extra, *params)
        return torch.cat([fn(x[i:i + rows], *extra, *params) for i in range(0, x.shape[0], rows)])

    def forward(self, x, frozen: bool = False):
        """``frozen=True`` uses detached parameters: gradients reach ``x`` but not F."""
        return self._blocks(_cdf_block, x, frozen)

    def density(self, x, eps: float = 1e-3, frozen: bool = False):
        """F'(x) ≈ (F(x + ε) − F(x)) / ε (DP-LaSE eq. 3), [N, D]."""
        return self._blocks(_density_block, x, frozen, eps)

    def log_density(self, x, eps: float = 1e-3, frozen: bool = False):
        """Σ_i log F'(x_i) [N] (the independence assumption of eq. 7)."""
        return self.density(x, eps, frozen).clamp_min(1e-12).log().sum(-1)


def l_mon(dens: torch.Tensor, v: float = 1e-4) -> torch.Tensor:
    return F.relu(v - dens).sum(-1).mean()


def l_lik(dens: torch.Tensor) -> torch.Tensor:
    return -dens.clamp_min(1e-12).log().sum(-1).mean()


def _per_row(eps, like: torch.Tensor) -> torch.Tensor:
    """A stride as a column [N, 1] (a number is repeated for every row)."""
    if isinstance(eps, torch.Tensor) and eps.numel() > 1:
        return eps.reshape(-1, 1).to(like)
    if isinstance(eps, torch.Tensor):
        eps = eps.item()
    return torch.full_like(like[:, :1], float(eps))


class Correction(nn.Module):
    """C(z0, ε, γ) -> correction [N, D], orthogonal to γ."""

    def __init__(self, dim: int, hidden: int = 256):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(2 * dim + 1, hidden), nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU(),
                                 nn.Linear(hidden, dim))
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def forward(self, z0, eps, gamma):
        """``eps``: one stride for all rows, or one per row ([N] or [N, 1])."""
        e = _per_row(eps, z0)
        c = self.net(torch.cat([z0, e * gamma, e], 1)) * e.abs()
        u = gamma / gamma.norm(dim=1, keepdim=True).clamp_min(1e-12)
        return c - (c * u).sum(1, keepdim=True) * u


class DPWalkModel(nn.Module):
    def __init__(self, dim: int, n_directions: int = 0, loc=None, scale=None, hidden: int = 256):
        super().__init__()
        self.F = MonotoneCDF(dim, loc=loc, scale=scale)
        self.C = Correction(dim, hidden)
        self.Gamma = nn.Parameter(torch.linalg.qr(torch.randn(dim, max(n_directions, 1)))[0]) if n_directions else None

    def walk(self, z0, gamma, eps):
        """z_dp = z0 + ε γ + C(z0, ε, γ) (DP-LaSE eq. 6); ``eps`` a number or one per row."""
        return z0 + _per_row(eps, z0) * gamma + self.C(z0, eps, gamma)

    def l_den(self, z0, gamma, eps: float, base: torch.Tensor | None = None):
        """DP-LaSE eq. 7 per sample. F is frozen here: minimising l_den through F has the
        degenerate solution of a flat density, so F learns from l_mon + l_lik only and l_den
        trains C (Γ enters it detached; see :func:`train_dp_lase`). ``base``: log F'(z0) when the
        caller has it already (it does not depend on the walk)."""
        if base is None:
            base = self.F.log_density(z0, frozen=True)
        return (base - self.F.log_density(self.walk(z0, gamma, eps), frozen=True)).square()


@dataclass(frozen=True)
class DPConfig:
    steps: int = 1500
    batch: int = 256
    lr: float = 2e-3
    eps_range: tuple = (0.25, 2.5)     # strides per step, in units of the data std (or of each direction sigma)
    n_directions: int = 0              # > 0: also discover Γ (needs a split layer)
    layer: str | None = None           # G1/G2 split for l_var
    lam: float = 0.1                   # weight of the cross-direction similarity in l_var
    zeta: float = 100.0                # weight of l_reg
    var_weight: float = 1.0            # scale of l_var relative to the density terms
    c_weight: float = 1e-2             # ‖C‖² penalty
    # samples of the batch that enter l_var: the G1 passes (k × var_batch rows, forward and backward)
    # are ~80% of a discovery step. 16 instead of 64: 2.6-3.0x faster per step on fashion-stylegan2
    # (k 5, b8, 1500 steps) with directions as good on two seeds (G1 variation 55.1 vs 47.4 and 49.7
    # vs 47.7, DP drift 10.3 vs 10.7 and 11.5 vs 11.2, classes moved 1.90 vs 1.78 and 1.88 vs 1.82;
    # bench/bench_dplase.py compare / variants, issue 16's note)
    var_batch: int = 16
    # samples of the batch (per direction) that enter l_den, the K walks through C and the frozen F.
    # 128 made a step 1.2x faster but the DP walks drift more on seed 0 (9.0 -> 12.5 at 1500 steps;
    # seed 1 10.8 -> 10.6): kept at the whole batch
    den_batch: int = 256
    # l_var's starting points z0 come from a pool of this many samples whose G1 features are
    # computed once (capped at 256 MB of features); 0: fresh samples and a G1 pass on them per step.
    # On fashion-stylegan2 (k 5, b8, 1500 steps, seeds 0/1) the pool makes a step 1.12x faster;
    # G1 variation 51.7/47.7 vs 52.8/52.9 fresh, DP drift 10.3/10.7 vs 9.0/10.8, classes moved
    # 1.91/1.87 vs 1.92/1.90 (bench/bench_dplase.py variants var_pool=0 / compare, issue 16's note)
    var_pool: int = 4096
    seed: int = 0


@dataclass
class DPTrainLog:
    losses: list = field(default_factory=list)     # (step, l_mon, l_lik, l_den, l_var, l_reg)
    seconds: float = 0.0


def train_dp_lase(model, cfg: DPConfig = DPConfig(), *, space: str = "w", directions: torch.Tensor | None = None,
                  sigmas: torch.Tensor | None = None, progress: bool = False,
                  on_step=None) -> tuple[DPWalkModel, DPTrainLog]:
    """Train F (+ C on walks along ``directions`` or along Γ) on samples of ``space`` ('w' for
    mapped models, 'z' otherwise). With ``cfg.n_directions > 0`` Γ is learned from l_var at
    ``cfg.layer`` (G1 = synthesis up to that layer). With fixed ``directions`` and their
    ``sigmas``, strides are drawn in ``eps_range`` units of each direction's σ, so C is trained
    on the strides the walks will take (±2σ walks need ε up to 2σ_k). ``on_step(step, dp)`` is
    called after each optimiser step (the learning rate is constant, so the model after step s of
    a longer run is the model of an s-step run)."""
    from tqdm import trange
    dev = model.device
    # a random stream of its own, seeded by cfg.seed (on CPU the numbers torch.manual_seed(cfg.seed)
    # gave the global generator before): the caller's global generator is neither reseeded nor used
    gen = torch.Generator().manual_seed(cfg.seed)

    def draw(n):
        z = torch.randn(n, model.z_dim, generator=gen).to(dev)
        return model.mapping(z).detach() if space == "w" else z

    with torch.no_grad():
        ref = draw(20000)
    dim = ref.shape[1]
    std = ref.std(0).mean().item()
    saved = torch.get_rng_state()          # the modules' initialisation draws from the global generator:
    torch.set_rng_state(gen.get_state())   # let it continue gen's stream, then give it back
    try:
        dp = DPWalkModel(dim, cfg.n_directions, loc=ref.mean(0), scale=ref.std(0)).to(dev)
        gen.set_state(torch.get_rng_state())
    finally:
        torch.set_rng_state(saved)
    opt = torch.optim.Adam(dp.parameters(), lr=cfg.lr)
    log = DPTrainLog()
    t0 = time.perf_counter()
    g1 = None
    if cfg.n_directions:
        if cfg.layer is None:
            raise ValueError("direction discovery needs a split layer (cfg.layer)")
        g1 = lambda v: model.features_at(cfg.layer, v)          # v: w (space 'w') or z
    n_pool = 0
    if g1 is not None and cfg.var_pool > 0:
        # the pool of l_var's starting points (the first rows of ref) and their G1 features, once
        with torch.no_grad():
            per_row = g1(ref[:1]).numel()
            n_pool = max(cfg.var_batch, min(cfg.var_pool, ref.shape[0], int(256e6 // (4 * per_row))))
            pool_x = ref[:n_pool]
            pool_h = model.features_flat(cfg.layer, pool_x)
        pick = torch.Generator().manual_seed(cfg.seed + 1)      # own stream: gen's draws stay as they were
    fixed, sig = None, None
    if directions is not None:
        fixed = directions.to(dev)
        fixed = fixed / fixed.norm(dim=1, keepdim=True)
        sig = sigmas.to(dev) if sigmas is not None else None
    flags = [p.requires_grad for p in model.G.parameters()]
    model.G.requires_grad_(False)            # gradients reach Γ through G1's input, never G's weights
    try:
        for step in trange(cfg.steps, disable=not progress, desc="DP-LaSE", leave=False):
            with torch.no_grad():
                x = draw(cfg.batch)
            dens = dp.F.density(x)
            lm, ll = l_mon(dens), l_lik(dens)
            unit = float(torch.empty(()).uniform_(*cfg.eps_range, generator=gen)) * (
                1 if torch.rand((), generator=gen) < 0.5 else -1)
            if dp.Gamma is not None:
                gammas = (dp.Gamma / dp.Gamma.norm(dim=0, keepdim=True)).t()      # [K, D]
                # strides in units of each direction's own σ on this batch, as the ±kσ walks of the
                # evaluation and the report take them (C then learns those strides)
                eps = unit * (x @ gammas.detach().t()).std(0)                    # [K]
            elif fixed is not None:
                gammas = fixed
                eps = unit * (sig if sig is not None else torch.full((len(fixed),), std, device=dev))
            else:
                gammas = F.normalize(torch.randn(4, dim, generator=gen).to(dev), dim=1)
                eps = torch.full((4,), unit * std, device=dev)
            xd = x[:cfg.den_batch]
            K, B = gammas.shape[0], xd.shape[0]
            # all K directions in one batch: rows k*B .. (k+1)*B-1 walk along direction k
            # The terms are split by what they train: l_den trains C (Γ enters detached — through
            # l_den, Γ would turn toward whatever directions C corrects most easily, and at 1e2-1e3
            # it drowns l_var), l_var steers Γ (C's output enters detached — with C trainable there,
            # l_var is maximised by large corrections, not by the directions).
            x_all = xd.repeat(K, 1)
            g_all = gammas.detach().repeat_interleave(B, 0)
            e_all = eps.detach().repeat_interleave(B)
            # log F'(x) is the same for every direction and is what l_mon/l_lik already evaluated
            base = dens[:B].detach().clamp_min(1e-12).log().sum(-1).repeat(K)
            lden = dp.l_den(x_all, g_all, e_all, base=base).mean()      # = mean over k of each one's mean
            lvar = torch.zeros((), device=dev)
            lreg = torch.zeros((), device=dev)
            if g1 is not None:
                if n_pool:
                    idx = torch.randperm(n_pool, generator=pick)[:cfg.var_batch].to(dev)
                    xv, h0 = pool_x[idx], pool_h[idx]
                else:
                    xv = x[:cfg.var_batch]
                    with torch.no_grad():
                        h0 = g1(xv).flatten(1)
                nv = xv.shape[0]
                with torch.no_grad():
                    # Δ in units of the G1 features' spread on this batch: ‖Δ‖² is the share of the
                    # total variance of G1 that one walk moves, O(1) whatever the layer's activation
                    # scale, so l_var competes with the density terms instead of vanishing next to them
                    h_scale = h0.var(0).sum().clamp_min(1e-12).sqrt()
                    xv_all = xv.repeat(K, 1)
                    e_v = eps.detach().repeat_interleave(nv)
                    corr = dp.C(xv_all, e_v, gammas.detach().repeat_interleave(nv, 0))
                gv = gammas.repeat_interleave(nv, 0)                     # with grad: Γ learns from l_var
                zw = xv_all + e_v[:, None] * gv + corr
                deltas = ((h0.repeat(K, 1) - g1(zw).flatten(1)) / h_scale).reshape(K, nv, -1)
                grams = deltas @ deltas.transpose(1, 2)                  # [K, nv, nv]
                own = -deltas.square().sum() / nv
                tot = grams.sum(0)
                cross = (tot.square().sum() - grams.square().sum()) if K > 1 else torch.zeros((), device=dev)
                lvar = cfg.var_weight * (own + cfg.lam * cross / nv ** 2)
                lreg = (dp.Gamma.t() @ dp.Gamma - torch.eye(dp.Gamma.shape[1], device=dev)).square().sum()
            cpen = dp.C(x, eps[0].detach(), gammas[0].detach().expand_as(x)).square().sum(1).mean() / (std ** 2)
            loss = lm + ll + lden + lvar + cfg.zeta * lreg + cfg.c_weight * cpen
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if step % 10 == 0 or step == cfg.steps - 1:
                log.losses.append((step, lm.item(), ll.item(), lden.item(), lvar.item(), lreg.item()))
            if on_step is not None:
                on_step(step + 1, dp)
    finally:
        for p, f in zip(model.G.parameters(), flags):
            p.requires_grad_(f)
    log.seconds = time.perf_counter() - t0
    return dp.eval(), log
