"""Trainer for the bundled ``fashion-stylegan2``: non-saturating logistic loss, lazy R1 on
reals, style mixing, EMA generator, tracked mean w. Equalised learning rate everywhere (the
design notes record that D without it, or R1 with gamma >= 0.1, diverged at 32x32).

``precision='bf16'`` runs the forward passes of G and D under ``torch.autocast`` (bf16 has
fp32's exponent range, so no loss scaling); the master weights, Adam state, EMA generator, the
losses and R1's gradient penalty stay fp32."""
from __future__ import annotations

import contextlib
import copy

import torch
import torch.nn.functional as F

from ..models.stylegan2 import StyleGAN2Config, StyleGAN2Discriminator, StyleGAN2Generator
from ..precision import resolve
from .loop import EMA, TrainerState


class StyleGAN2Trainer(TrainerState):
    def __init__(self, cfg: StyleGAN2Config, *, lr: float = 0.0025, r1_gamma: float = 0.05,
                 r1_every: int = 16, mixing_prob: float = 0.9, ema_kimg: float = 10.0, seed: int = 0,
                 precision: str = "fp32"):
        torch.manual_seed(seed)
        self.cfg = cfg
        self.z_dim = cfg.z_dim
        self.G = StyleGAN2Generator(cfg)
        self.D = StyleGAN2Discriminator(cfg)
        self.G_ema = copy.deepcopy(self.G).eval().requires_grad_(False)
        self.r1_gamma, self.r1_every, self.mixing_prob = r1_gamma, r1_every, mixing_prob
        ratio = r1_every / (r1_every + 1)  # lazy-regularisation correction of lr and betas
        self.opt_G = torch.optim.Adam(self.G.parameters(), lr=lr, betas=(0.0, 0.99), eps=1e-8)
        self.opt_D = torch.optim.Adam(self.D.parameters(), lr=lr * ratio,
                                      betas=(0.0, 0.99 ** ratio), eps=1e-8)
        self.ema = EMA(ema_kimg)
        self.precision = resolve(precision, "cpu")
        self.hparams = dict(lr=lr, r1_gamma=r1_gamma, r1_every=r1_every,
                            mixing_prob=mixing_prob, ema_kimg=ema_kimg, seed=seed, precision=precision)

    def _amp(self):
        """The forward passes' precision (fp32: nothing to do)."""
        if not self.precision.low:
            return contextlib.nullcontext()
        return torch.autocast("cpu", dtype=self.precision.dtype)

    def _ws(self, n: int, update_w_avg: bool):
        z = torch.randn(n, self.cfg.z_dim)
        w = self.G.mapping(z, update_w_avg=update_w_avg)
        ws = w.unsqueeze(1).repeat(1, self.cfg.num_ws, 1)
        if self.mixing_prob > 0 and torch.rand(()) < self.mixing_prob:
            cut = int(torch.randint(1, self.cfg.num_ws, ()))
            w2 = self.G.mapping(torch.randn(n, self.cfg.z_dim))
            ws[:, cut:] = w2.unsqueeze(1)
        return ws

    def step(self, real: torch.Tensor, step: int, nimg: int) -> dict:
        n = real.shape[0]
        # Discriminator: logistic loss on reals and fakes.
        with torch.no_grad(), self._amp():
            fake = self.G.synthesis(self._ws(n, False), noise_mode="random")
        with self._amp():
            d_fake, d_real = self.D(fake), self.D(real)
        d_loss = F.softplus(d_fake.float()).mean() + F.softplus(-d_real.float()).mean()
        self.opt_D.zero_grad(set_to_none=True)
        d_loss.backward()
        self.opt_D.step()
        r1 = torch.zeros(())
        if step % self.r1_every == 0:
            x = real.detach().requires_grad_(True)
            (g,) = torch.autograd.grad(self.D(x).sum(), x, create_graph=True)
            r1 = g.square().sum(dim=[1, 2, 3]).mean()
            self.opt_D.zero_grad(set_to_none=True)
            (r1 * (self.r1_gamma / 2) * self.r1_every).backward()
            self.opt_D.step()
        # Generator: non-saturating loss; the mapping's mean w is tracked here.
        with self._amp():
            d_gen = self.D(self.G.synthesis(self._ws(n, True), noise_mode="random"))
        g_loss = F.softplus(-d_gen.float()).mean()
        self.opt_G.zero_grad(set_to_none=True)
        g_loss.backward()
        self.opt_G.step()
        self.ema.update(self.G_ema, self.G, n, nimg + n)
        return {"d_loss": d_loss.item(), "g_loss": g_loss.item(), "r1": r1.item()}

    @torch.no_grad()
    def sample(self, z):
        return self.G_ema(z, noise_mode="const")
