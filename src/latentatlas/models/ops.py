"""Low-level ops shared by the StyleGAN2 modules: FIR resampling, resampling convolutions,
bias + activation, and the two equivalent modulated-convolution paths.

All ops are plain PyTorch (no custom kernels) so they run on any device. The numerics follow
the StyleGAN2 papers' definitions closely enough that weights trained by the NVIDIA and
rosinality code reproduce their images (see ``tests/test_formats.py``).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

SQRT2 = math.sqrt(2.0)


def make_fir(taps=(1, 3, 3, 1)) -> torch.Tensor:
    """Separable low-pass FIR kernel as a normalised 2-D tensor ``[k, k]`` (sums to 1)."""
    f = torch.as_tensor(taps, dtype=torch.float32)
    f = torch.outer(f, f)
    return f / f.sum()


def fir_filter(x: torch.Tensor, f: torch.Tensor, *, up: int = 1, down: int = 1,
               pad: tuple[int, int, int, int] = (0, 0, 0, 0), gain: float = 1.0) -> torch.Tensor:
    """Zero-insert upsample by ``up``, pad (x0, x1, y0, y1; negative crops), filter depthwise
    with ``f`` ([k, k], symmetric), then keep every ``down``-th pixel. ``x``: [N, C, H, W]."""
    n, c, h, w = x.shape
    if up > 1:
        x = x.reshape(n, c, h, 1, w, 1)
        x = F.pad(x, [0, up - 1, 0, 0, 0, up - 1])
        x = x.reshape(n, c, h * up, w * up)
    x0, x1, y0, y1 = pad
    x = F.pad(x, [max(x0, 0), max(x1, 0), max(y0, 0), max(y1, 0)])
    x = x[:, :, max(-y0, 0): x.shape[2] - max(-y1, 0), max(-x0, 0): x.shape[3] - max(-x1, 0)]
    k = (f * gain).to(x.dtype).flip([0, 1])
    return F.conv2d(x, k[None, None].expand(c, 1, *k.shape), stride=down, groups=c)


def _fir_axis(x: torch.Tensor, f: torch.Tensor, axis: int, up: int, down: int, p0: int, p1: int) -> torch.Tensor:
    """One separable pass of upfirdn along ``axis`` (2 = rows, 3 = columns) with the 1-D
    filter ``f``: zero insertion, padding (negative crops), a depthwise correlation with the
    flipped filter, and decimation folded into the convolution's stride (no multiply-add on
    discarded outputs)."""
    n, c = x.shape[:2]
    if up > 1:
        if axis == 2:
            x = F.pad(x.unsqueeze(3), [0, 0, 0, up - 1]).reshape(n, c, -1, x.shape[3])
        else:
            x = F.pad(x.unsqueeze(4), [0, up - 1]).reshape(n, c, x.shape[2], -1)
    pads = [0, 0, p0, p1] if axis == 2 else [p0, p1, 0, 0]
    if any(pads):
        x = F.pad(x, pads)
    k = f.flip(0).reshape((1, 1, -1, 1) if axis == 2 else (1, 1, 1, -1)).expand(c, -1, -1, -1)
    return F.conv2d(x, k, stride=(down, 1) if axis == 2 else (1, down), groups=c)


def upfirdn(x: torch.Tensor, f: torch.Tensor | None, *, up: int = 1, down: int = 1,
            pad: tuple[int, int, int, int] = (0, 0, 0, 0), gain: float = 1.0) -> torch.Tensor:
    """``fir_filter`` for any filter: ``None`` (identity), a 1-D filter applied separably
    (columns, then rows, ``gain`` split evenly between the passes) or a 2-D filter."""
    if f is None:
        f = torch.ones(1, 1, device=x.device)
    if f.ndim == 2:
        return fir_filter(x, f, up=up, down=down, pad=pad, gain=gain)
    k = (f * math.sqrt(gain)).to(x.dtype)
    x0, x1, y0, y1 = pad
    x = _fir_axis(x, k, 3, up, down, x0, x1)
    return _fir_axis(x, k, 2, up, down, y0, y1)


def upsample2x(x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    """2x FIR upsampling (the skip-architecture image path): [N,C,H,W] -> [N,C,2H,2W]."""
    k = f.shape[-1]
    return fir_filter(x, f, up=2, pad=((k + 1) // 2, (k - 2) // 2, (k + 1) // 2, (k - 2) // 2), gain=4.0)


def downsample2x(x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    """2x FIR downsampling (the 'skip' discriminator's image path): [N,C,H,W] -> [N,C,H/2,W/2]."""
    k = f.shape[-1]
    p0, p1 = (k - 2 + 1) // 2, (k - 2) // 2
    return fir_filter(x, f, down=2, pad=(p0, p1, p0, p1))


def conv_resample(x: torch.Tensor, w: torch.Tensor, f: torch.Tensor | None = None, *,
                  up: int = 1, down: int = 1, padding: int = 0, groups: int = 1) -> torch.Tensor:
    """Convolution fused with 2x FIR up- or downsampling (correlation as ``F.conv2d``, except
    that upsampling applies the kernel as a true convolution, see below).

    ``w``: [O, I/groups, k, k]. Upsampling: transposed stride-2 convolution followed by the FIR
    filter; downsampling: FIR filter followed by a stride-2 convolution. Output size is
    ``H*up/down`` for ``padding = k // 2``.
    """
    out_c, in_per_group, kh, kw = w.shape
    if up == 1 and down == 1:
        return F.conv2d(x, w, padding=padding, groups=groups)
    fk = f.shape[-1]
    if down > 1:
        p0 = padding + (fk - down + 1) // 2
        p1 = padding + (fk - down) // 2
        if kw == 1:  # filter+subsample first: cheaper and identical for 1x1 kernels
            x = fir_filter(x, f, down=down, pad=(p0, p1, p0, p1))
            return F.conv2d(x, w, groups=groups)
        x = fir_filter(x, f, pad=(p0, p1, p0, p1))
        return F.conv2d(x, w, stride=down, groups=groups)
    # up > 1
    p0 = padding + (fk + up - 1) // 2
    p1 = padding + (fk - up) // 2
    if kw == 1:
        x = F.conv2d(x, w, groups=groups)
        return fir_filter(x, f, up=up, pad=(p0, p1, p0, p1), gain=up * up)
    # The transposed convolution wants [I, O/groups, k, k]. The weight is used unflipped: an
    # upsampling layer applies its kernel as a true convolution, the convention under which the
    # NVIDIA and rosinality checkpoints store their upsampling weights.
    if groups == 1:
        wt = w.transpose(0, 1)
    else:
        wt = w.reshape(groups, out_c // groups, in_per_group, kh, kw).transpose(1, 2)
        wt = wt.reshape(groups * in_per_group, out_c // groups, kh, kw)
    p0 -= kw - 1
    p1 -= kw - up
    pt = max(min(-p0, -p1), 0)
    x = F.conv_transpose2d(x, wt, stride=up, padding=pt, groups=groups)
    return fir_filter(x, f, pad=(p0 + pt, p1 + pt, p0 + pt, p1 + pt), gain=up * up)


def bias_lrelu(x: torch.Tensor, b: torch.Tensor | None, *, act: bool = True, gain: float = 1.0,
               clamp: float | None = None) -> torch.Tensor:
    """``x + b`` (b broadcast over dim 1), LeakyReLU(0.2)·√2 when ``act``, times ``gain``,
    optionally clamped to ±clamp."""
    if b is not None:
        x = x + b.reshape(1, -1, *([1] * (x.ndim - 2)))
    if act:
        x = F.leaky_relu(x, 0.2) * (SQRT2 * gain)
    elif gain != 1.0:
        x = x * gain
    if clamp is not None:
        x = x.clamp(-clamp, clamp)
    return x


def modulated_conv(x: torch.Tensor, weight: torch.Tensor, styles: torch.Tensor, *,
                   demodulate: bool = True, up: int = 1, padding: int = 0,
                   f: torch.Tensor | None = None, noise: torch.Tensor | None = None,
                   grouped: bool = False) -> torch.Tensor:
    """StyleGAN2 modulated convolution.

    x: [N, I, H, W]; weight: [O, I, k, k]; styles: [N, I]. Returns [N, O, H*up, W*up].

    ``grouped=False`` (default) scales the activations by the style, convolves with the shared
    weight, then scales the output by the demodulation coefficients; this is algebraically
    identical to building one weight per sample and running a grouped convolution
    (``grouped=True``), and markedly faster on CPU.
    """
    n = x.shape[0]
    out_c, in_c, kh, kw = weight.shape
    dcoefs = None
    if demodulate:
        # sum_{i,k} (W_oik * s_ni)^2 = sum_i s_ni^2 * sum_k W_oik^2
        wsq = weight.square().sum(dim=[2, 3])                       # [O, I]
        dcoefs = (styles.square() @ wsq.t() + 1e-8).rsqrt()          # [N, O]
    if not grouped:
        x = x * styles.reshape(n, -1, 1, 1)
        x = conv_resample(x, weight, f, up=up, padding=padding)
        if dcoefs is not None:
            x = x * dcoefs.reshape(n, -1, 1, 1)
    else:
        w = weight.unsqueeze(0) * styles.reshape(n, 1, -1, 1, 1)    # [N, O, I, k, k]
        if dcoefs is not None:
            w = w * dcoefs.reshape(n, -1, 1, 1, 1)
        x = x.reshape(1, -1, *x.shape[2:])
        x = conv_resample(x, w.reshape(-1, in_c, kh, kw), f, up=up, padding=padding, groups=n)
        x = x.reshape(n, -1, *x.shape[2:])
    if noise is not None:
        x = x + noise
    return x


def minibatch_std(x: torch.Tensor, group_size: int = 4, num_channels: int = 1) -> torch.Tensor:
    """Append the minibatch standard-deviation feature(s): [N, C, H, W] -> [N, C+F, H, W].

    Samples ``i, i + N/G, i + 2N/G, ...`` form a group. G = min(group_size, N) when that
    divides N (the upstream rule); otherwise G = gcd(group_size, N), so any batch size works.
    This is the layer that lets a critic see a batch's diversity (Diamond in the rough).
    """
    n, c, h, w = x.shape
    g = min(group_size, n) if group_size else n
    if n % g:
        g = math.gcd(group_size, n)
    fch = num_channels
    y = x.reshape(g, -1, fch, c // fch, h, w)
    y = y - y.mean(dim=0)
    y = (y.square().mean(dim=0) + 1e-8).sqrt()
    y = y.mean(dim=[2, 3, 4]).reshape(-1, fch, 1, 1)
    y = y.repeat(g, 1, h, w)
    return torch.cat([x, y], dim=1)
