"""Interpolations and walks (DP-LaSE, Diamond in the rough, II2S; METHODS.md §3.2, §4, §5).

All functions are batched: ``a``, ``b``, ``z0`` are [N, D] (or [N, L, D] for W+), ``steps`` the
number of points, results [steps, N, ...].

* :func:`linear` and :func:`slerp` interpolations;
* :func:`norm_preserving_walk` — DP-LaSE's Gaussian case, ``z_dp = ‖z0‖/‖z0 + εγ‖ (z0 + εγ)``;
* :func:`great_circle` — Diamond in the rough's walk on the √n-sphere (``diamond.great_circle_walk``);
* :func:`pnorm_plus_interp` — linear interpolation of two W+ codes in P-norm+ coordinates;
* :func:`learned_dp_walk` — DP-LaSE's learned walk ``z0 + εγ + C(z0, ε, γ)`` with a trained
  :class:`~latentatlas.walks.density.DPWalkModel`.
"""
from __future__ import annotations

import torch

from ..diamond import great_circle_walk, sphere_proj


def _ts(steps: int, device) -> torch.Tensor:
    return torch.linspace(0, 1, steps, device=device)


def linear(a: torch.Tensor, b: torch.Tensor, steps: int) -> torch.Tensor:
    t = _ts(steps, a.device).reshape(-1, *([1] * a.ndim))
    return a[None] + t * (b - a)[None]


def slerp(a: torch.Tensor, b: torch.Tensor, steps: int) -> torch.Tensor:
    """Spherical interpolation of the directions with linearly interpolated norms."""
    na, nb = a.norm(dim=-1, keepdim=True), b.norm(dim=-1, keepdim=True)
    ua, ub = a / na, b / nb
    cos = (ua * ub).sum(-1, keepdim=True).clamp(-1 + 1e-7, 1 - 1e-7)
    om = torch.acos(cos)
    t = _ts(steps, a.device).reshape(-1, *([1] * a.ndim))
    so = torch.sin(om)
    u = (torch.sin((1 - t) * om) * ua + torch.sin(t * om) * ub) / so
    return u * ((1 - t) * na + t * nb)


def linear_walk(z0: torch.Tensor, gamma: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """z0 + ε γ for each ε in ``eps`` [S] -> [S, N, D]; γ [D] or [N, D]."""
    return z0[None] + eps.reshape(-1, *([1] * z0.ndim)) * gamma


def norm_preserving_walk(z0: torch.Tensor, gamma: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """DP-LaSE eq. 2: every point keeps ‖z0‖."""
    z = linear_walk(z0, gamma, eps)
    return z * (z0.norm(dim=-1, keepdim=True)[None] / z.norm(dim=-1, keepdim=True).clamp_min(1e-12))


def great_circle(z0: torch.Tensor, gamma: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """Walk on the √n-sphere through z0 in the plane of (z0, γ): the point at angle
    ε·|γ|/√n from proj(z0), so small ε matches the linear step (Diamond in the rough's great circle)."""
    n = z0.shape[-1]
    a = sphere_proj(z0)
    u = a / a.norm(dim=-1, keepdim=True)
    g = gamma.expand_as(z0)
    b = g - (g * u).sum(-1, keepdim=True) * u
    gnorm = b.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    b = b / gnorm
    ang = eps.reshape(-1, *([1] * z0.ndim)) * gnorm[None] / (n ** 0.5)
    return (n ** 0.5) * (torch.cos(ang) * u[None] + torch.sin(ang) * b[None])


def pnorm_plus_interp(ws_a: torch.Tensor, ws_b: torch.Tensor, steps: int, plus_space,
                      spherical: bool = False) -> torch.Tensor:
    """Interpolate W+ codes in P-norm+ coordinates, map back to W+: linearly, or (``spherical``)
    along great circles of each row's Gaussianized vector with its norm interpolated — the
    density-preserving path: a row of a Gaussian sample lies near the shell of radius √d, which a
    straight line between two of them leaves (its midpoint's norm is ~√(d/2))."""
    va, vb = plus_space.transform(ws_a), plus_space.transform(ws_b)
    path = slerp(va, vb, steps) if spherical else linear(va, vb, steps)
    return plus_space.inverse_transform(path.reshape(-1, *va.shape[1:])).reshape(steps, *ws_a.shape)


def learned_dp_walk(dp_model, z0: torch.Tensor, gamma: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """DP-LaSE eq. 6 with the learned correction; [S, N, D]."""
    return torch.stack([dp_model.walk(z0, gamma.expand_as(z0), float(e)) for e in eps])


KINDS = {"linear": linear_walk, "norm-preserving": norm_preserving_walk, "great-circle": great_circle}

__all__ = ["linear", "slerp", "linear_walk", "norm_preserving_walk", "great_circle", "great_circle_walk",
           "pnorm_plus_interp", "learned_dp_walk", "KINDS"]
