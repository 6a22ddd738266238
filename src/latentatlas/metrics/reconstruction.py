"""Per-image reconstruction metrics on images in [-1, 1]: PSNR (peak-to-peak 2), RMSE (on the
[0, 1] scale), SSIM (Wang et al. 2004: 11x11 Gaussian window, σ = 1.5, K1 = 0.01, K2 = 0.03,
data range 1, mean over channels), all [N]."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def rmse(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return ((a - b) / 2).square().flatten(1).mean(1).sqrt()


def psnr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    mse = ((a - b) / 2).square().flatten(1).mean(1).clamp_min(1e-12)
    return 10 * torch.log10(1.0 / mse)


def _gauss(size=11, sigma=1.5):
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-x ** 2 / (2 * sigma ** 2))
    g = g / g.sum()
    return torch.outer(g, g)


def ssim(a: torch.Tensor, b: torch.Tensor, window: int = 11, sigma: float = 1.5) -> torch.Tensor:
    x, y = ((a.double() + 1) / 2), ((b.double() + 1) / 2)
    c = x.shape[1]
    win = min(window, x.shape[-1])
    k = _gauss(win, sigma).to(x.device)[None, None].expand(c, 1, win, win)
    f = lambda t: F.conv2d(t, k, groups=c)
    mx, my = f(x), f(y)
    sxx, syy, sxy = f(x * x) - mx ** 2, f(y * y) - my ** 2, f(x * y) - mx * my
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    m = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx ** 2 + my ** 2 + c1) * (sxx + syy + c2))
    return m.flatten(1).mean(1).float()


def reconstruction_metrics(target: torch.Tensor, recon: torch.Tensor, perceptual=None) -> dict[str, torch.Tensor]:
    out = {"psnr": psnr(recon, target), "ssim": ssim(recon, target), "rmse": rmse(recon, target)}
    if perceptual is not None:
        with torch.no_grad():
            out["perceptual"] = perceptual(recon, target)
    return out
