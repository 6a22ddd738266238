"""Learned multi-level mixture of Gaussians (Katzir et al., Katzir et al.; METHODS.md §2).

No reference code exists; the structure follows the paper's abstract and Fig. 1. For each level
ℓ (a group of W+ rows: coarse / medium / fine):

* a learnable mixture ``{π_k, μ_k, σ_k}`` over an input latent u ∈ R^{z_dim};
* a mapping network ``M_ℓ`` initialised from the pretrained mapping and fine-tuned so that
  ``M_ℓ(u)`` re-generates the distribution of W — distribution matching by the squared MMD
  (Gaussian kernels at several bandwidths) in P-norm coordinates;
* a classifier ``C_ℓ`` trained jointly (cross-entropy on which component produced each w, the
  same loss also pushing ``M_ℓ`` to keep components distinct). Its input is the *style vectors
  of the level's own synthesis layers* (the affine maps of w that those layers see), so each
  level clusters by what it controls — our concrete choice where the paper gives no detail.

API as :class:`~latentatlas.priors.EMMixture`: ``cluster_of(w, level)``, ``centre(level, k)``
(``M_ℓ(μ_k)``), ``centres(level)``, ``sample(level, k, n)``; ``quality()`` reports per level
the MMD of re-generated vs held-out W (next to the MMD between two held-out W sets) and the
classifier's accuracy on held-out generated samples.
"""
from __future__ import annotations

import copy
import math
import time

import torch
import torch.nn.functional as F
from torch import nn

from ..defaults import LEARNED_STEPS
from ..errors import LatentAtlasError
from .levels import sample_levels


def mmd2(x: torch.Tensor, y: torch.Tensor, bandwidths=(0.5, 1.0, 2.0, 4.0),
         x_weights: torch.Tensor | None = None) -> torch.Tensor:
    """Biased squared MMD with a sum of Gaussian kernels; bandwidths relative to √dim.
    ``x_weights`` [n] (summing to 1) make x a weighted sample, e.g. a mixture with weights π
    estimated from equally many draws per component."""
    d = x.shape[1]
    xy = torch.cat([x, y])
    d2 = torch.cdist(xy, xy).square()
    k = sum(torch.exp(-d2 / (2 * (b * math.sqrt(d)) ** 2)) for b in bandwidths)
    n = x.shape[0]
    if x_weights is None:
        return k[:n, :n].mean() + k[n:, n:].mean() - 2 * k[:n, n:].mean()
    a = x_weights
    return a @ k[:n, :n] @ a + k[n:, n:].mean() - 2 * (a @ k[:n, n:]).mean()


def _rows(table: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """``table[k]`` as a one-hot product: indexing's backward accumulates into the table in an
    order that depends on the CPU's threads, which made two fits with one seed differ (weights by
    up to 0.05 after 200 steps); the product's backward is the same every run."""
    return F.one_hot(k, table.shape[0]).to(table.dtype) @ table


def style_modules(model, rows: tuple[int, int]) -> list[nn.Module]:
    """The affine (style) layers that read W+ rows [a, b) (StyleGAN2 or StyleGAN3)."""
    return model.style_affines(rows)


class _Level(nn.Module):
    def __init__(self, mapping: nn.Module, z_dim: int, K: int, style_dim: int, seed: int):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.mapping = mapping
        self.means = nn.Parameter(torch.randn(K, z_dim, generator=g) * 0.8)
        self.log_std = nn.Parameter(torch.zeros(K, z_dim))
        self.logits = nn.Parameter(torch.zeros(K))
        self.clf = nn.Sequential(nn.Linear(style_dim, 128), nn.SiLU(), nn.Linear(128, K))
        self.label = None             # [1, c_dim] label of a class-conditional model
        self.register_buffer("style_mu", torch.zeros(style_dim))
        self.register_buffer("style_sd", torch.ones(style_dim))

    def forward_map(self, u):
        """M_ℓ(u), with the model's default label for class-conditional mappings."""
        return self.mapping(u, self.label.expand(u.shape[0], -1) if self.label is not None else None)

    def draw(self, n: int, k: torch.Tensor | None = None, generator=None):
        if k is None:
            k = torch.multinomial(torch.softmax(self.logits, 0), n, replacement=True, generator=generator)
        eps = torch.randn(n, self.means.shape[1], generator=generator, device=self.means.device)
        u = _rows(self.means, k) + _rows(self.log_std, k).exp() * eps
        return self.forward_map(u), k


class LearnedMixture:
    kind = "learned"

    def __init__(self, model, pnorm, n_clusters: dict, level_ranges: dict, *, steps: int = LEARNED_STEPS,
                 batch: int = 256, lr: float = 3e-3, info_weight: float = 1.0, seed: int = 0):
        model.require_mapping("the learned multi-level mixture")
        self.model, self.space = model, pnorm
        self.n_clusters, self.level_ranges = dict(n_clusters), dict(level_ranges)
        self.steps, self.batch, self.lr, self.info_weight, self.seed = steps, batch, lr, info_weight, seed

    def _styles(self, level, w):
        mods = style_modules(self.model, self.level_ranges[level])
        s = torch.cat([m(w) for m in mods], 1)
        lv = self.levels_[level]
        return (s - lv.style_mu) / lv.style_sd

    def fit(self, progress: bool = False):
        from tqdm import trange
        m = self.model
        self.levels_: dict[str, _Level] = {}
        self.log_ = {}
        t0 = time.perf_counter()
        for li, (level, rows) in enumerate(self.level_ranges.items()):
            K = self.n_clusters.get(level)
            if not K:
                continue
            torch.manual_seed(self.seed + 7919 * li)
            mapping = copy.deepcopy(m.G.mapping).train().requires_grad_(True)
            mods = style_modules(m, rows)
            if not mods:
                raise LatentAtlasError(f"level {level!r} rows {rows} select no synthesis layers")
            with torch.no_grad():
                wr = m.mapping(torch.randn(4096, m.z_dim, device=m.device))
                s = torch.cat([md(wr) for md in mods], 1)
            lv = _Level(mapping, m.z_dim, K, s.shape[1], self.seed + li).to(m.device)
            lv.label = m.labels(1) if m.conditional else None
            lv.style_mu.copy_(s.mean(0))
            lv.style_sd.copy_(s.std(0) + 1e-6)
            self.levels_[level] = lv
            # the mapping's stored weights are scaled by 1/lr_mul: give them a matching step size
            lr_mul = getattr(m.cfg, "mapping_lr_mul", 1.0) if hasattr(m, "cfg") else 1.0
            opt = torch.optim.Adam([{"params": [lv.means, lv.log_std, lv.logits], "lr": self.lr},
                                    {"params": lv.clf.parameters(), "lr": self.lr},
                                    {"params": lv.mapping.parameters(), "lr": self.lr * 0.1 / lr_mul}])
            hist = []
            for step in trange(self.steps, disable=not progress, desc=f"mixture {level}", leave=False):
                with torch.no_grad():
                    real = self.space.transform(m.mapping(torch.randn(self.batch, m.z_dim, device=m.device)))
                k = torch.arange(self.batch, device=m.device) % K          # balanced components
                w, _ = lv.draw(self.batch, k)
                # the mixture Σ π_k p_k from equally many draws per component: weight each draw by
                # π_k / (draws of k), so the MMD's gradient reaches the mixture weights π
                pi = torch.softmax(lv.logits, 0)
                counts = torch.bincount(k, minlength=K).clamp(min=1).to(pi.dtype)
                match = mmd2(self.space.transform(w), real, x_weights=_rows((pi / counts)[:, None], k)[:, 0])
                logits = lv.clf(self._styles(level, w))
                ce = F.cross_entropy(logits, k)
                loss = match * 100 + self.info_weight * ce
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                if step % 20 == 0 or step == self.steps - 1:
                    hist.append((step, match.item(), ce.item()))
            lv.eval().requires_grad_(False)
            self.log_[level] = hist
        self.seconds_ = time.perf_counter() - t0
        return self

    def _level(self, level) -> _Level:
        if not hasattr(self, "levels_"):
            raise LatentAtlasError("LearnedMixture is not fitted yet: call fit() first")
        if level not in self.levels_:
            raise LatentAtlasError(f"no clusters for level {level!r}; levels: {', '.join(self.levels_)}")
        return self.levels_[level]

    @property
    def params_(self):     # same membership test as EMMixture
        return self.levels_

    @torch.no_grad()
    def posterior(self, w, level):
        lv = self._level(level)
        return torch.softmax(lv.clf(self._styles(level, w)), 1)

    @torch.no_grad()
    def cluster_of(self, w, level):
        if w.ndim == 3:
            a, b = self.level_ranges[level]
            w = w[:, a:b].mean(1)
        return self.posterior(w, level).argmax(1)

    @torch.no_grad()
    def centres(self, level):
        lv = self._level(level)
        return lv.forward_map(lv.means)

    def centre(self, level, k):
        return self.centres(level)[k]

    def sample_levels(self, fixed: dict, n: int, seed: int = 0, *, model=None) -> torch.Tensor:
        """W+ codes with the given levels fixed to learned clusters (Katzir et al., Fig. 1)."""
        return sample_levels(self, model or self.model, fixed, n, seed)

    @torch.no_grad()
    def sample(self, level, k, n, seed=0):
        lv = self._level(level)
        g = torch.Generator(device=lv.means.device).manual_seed(seed)
        w, _ = lv.draw(n, torch.full((n,), int(k), dtype=torch.long, device=lv.means.device), generator=g)
        return w

    @torch.no_grad()
    def quality(self, n: int = 2000, seed: int = 123) -> dict:
        """Per level: MMD²(re-generated, held-out W), the MMD² between two held-out W sets of
        the same size (the noise floor), and the classifier's accuracy on held-out samples."""
        m = self.model
        g = torch.Generator().manual_seed(seed)
        h1 = self.space.transform(m.mapping(torch.randn(n, m.z_dim, generator=g).to(m.device)))
        h2 = self.space.transform(m.mapping(torch.randn(n, m.z_dim, generator=g).to(m.device)))
        floor = mmd2(h1, h2).item()
        out = {}
        for level, lv in self.levels_.items():
            K = lv.means.shape[0]
            k = torch.arange(n, device=lv.means.device) % K
            w, _ = lv.draw(n, k, generator=torch.Generator(device=lv.means.device).manual_seed(seed + 1))
            acc = (self.posterior(w, level).argmax(1) == k).float().mean().item()
            sizes = torch.bincount(self.cluster_of(m.mapping(torch.randn(n, m.z_dim, generator=g).to(m.device)), level),
                                   minlength=K).tolist()
            pi = torch.softmax(lv.logits, 0)
            counts = torch.bincount(k, minlength=K).clamp(min=1).to(pi.dtype)
            out[level] = {"mmd2": mmd2(self.space.transform(w), h1, x_weights=pi[k] / counts[k]).item(),
                          "mmd2_floor": floor, "classifier_accuracy": acc, "real_w_cluster_sizes": sizes,
                          "pi": [round(v, 4) for v in pi.tolist()]}
        return out

    def state(self) -> dict:
        out = {}
        for level, lv in self.levels_.items():
            for k, v in lv.state_dict().items():
                out[f"{level}.{k}"] = v.detach().cpu()
        return out

    @classmethod
    def from_state(cls, model, pnorm, st: dict, n_clusters: dict, level_ranges: dict) -> "LearnedMixture":
        lm = cls(model, pnorm, n_clusters, level_ranges)
        lm.levels_ = {}
        for li, (level, rows) in enumerate(level_ranges.items()):
            K = n_clusters.get(level)
            if not K or f"{level}.means" not in st:
                continue
            style_dim = st[f"{level}.style_mu"].shape[0]
            lv = _Level(copy.deepcopy(model.G.mapping), model.z_dim, K, style_dim, 0)
            lv.load_state_dict({k[len(level) + 1:]: torch.as_tensor(v) for k, v in st.items() if k.startswith(level + ".")})
            lv.label = model.labels(1) if model.conditional else None
            lm.levels_[level] = lv.to(model.device).eval().requires_grad_(False)
        return lm
