"""Trainer for the bundled ``fashion-wgangp``: a DCGAN-style generator (z in R^128) against a
WGAN-GP critic with a minibatch-std layer (Gulrajani et al. 2017; the "low-complexity GAN"
that Diamond in the rough's realism path targets). n_critic critic steps per generator step,
gradient penalty weight 10, Adam(1e-4, betas (0.5, 0.9))."""
from __future__ import annotations

import copy

import torch

from ..models.dcgan import DCGANConfig, DCGANCritic, DCGANGenerator
from .loop import EMA, TrainerState

FASHION_WGANGP = dict(z_dim=128, channels=(256, 128, 64), img_channels=1,
                      critic_channels=(32, 64, 128), mbstd_group=4)


class WGANGPTrainer(TrainerState):
    def __init__(self, *, lr: float = 1e-4, gp_weight: float = 10.0, n_critic: int = 5,
                 ema_kimg: float = 5.0, seed: int = 0):
        torch.manual_seed(seed)
        self.cfg = DCGANConfig(**FASHION_WGANGP)
        self.z_dim = self.cfg.z_dim
        self.G = DCGANGenerator(self.cfg)
        self.D = DCGANCritic(self.cfg)
        self.G_ema = copy.deepcopy(self.G).eval().requires_grad_(False)
        self.gp_weight, self.n_critic = gp_weight, n_critic
        self.opt_G = torch.optim.Adam(self.G.parameters(), lr=lr, betas=(0.5, 0.9))
        self.opt_D = torch.optim.Adam(self.D.parameters(), lr=lr, betas=(0.5, 0.9))
        self.ema = EMA(ema_kimg)
        self.hparams = dict(lr=lr, gp_weight=gp_weight, n_critic=n_critic, ema_kimg=ema_kimg, seed=seed)

    def step(self, real, step, nimg):
        n = real.shape[0]
        self.G.train()
        with torch.no_grad():
            fake = self.G(torch.randn(n, self.z_dim))
        eps = torch.rand(n, 1, 1, 1)
        mix = (eps * real + (1 - eps) * fake).requires_grad_(True)
        (g,) = torch.autograd.grad(self.D(mix).sum(), mix, create_graph=True)
        gp = (g.flatten(1).norm(dim=1) - 1).square().mean()
        wdist = self.D(real).mean() - self.D(fake).mean()
        d_loss = -wdist + self.gp_weight * gp
        self.opt_D.zero_grad(set_to_none=True)
        d_loss.backward()
        self.opt_D.step()
        g_loss = torch.zeros(())
        if step % self.n_critic == 0:
            g_loss = -self.D(self.G(torch.randn(n, self.z_dim))).mean()
            self.opt_G.zero_grad(set_to_none=True)
            g_loss.backward()
            self.opt_G.step()
            self.ema.update(self.G_ema, self.G, n * self.n_critic, nimg + n)
        return {"wdist": wdist.item(), "gp": gp.item(), "g_loss": g_loss.item()}

    @torch.no_grad()
    def sample(self, z):
        return self.G_ema.eval()(z)
