"""DCGAN-style generator (Radford et al. 2016) and a WGAN-GP critic with a minibatch-std layer.

The generator is a stack of stride-2 transposed convolutions: z [N, z_dim] -> 4x4 -> ... ->
image [N, C, R, R] with R = 4 * 2**len(channels). The module layout (``main`` as a flat
``nn.Sequential`` of ConvT/BatchNorm/ReLU triples, a final ConvT + Tanh, no biases) is the
common DCGAN layout, so the face DCGAN weights of ``gan-face-generate`` load without renaming.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

from torch import nn

from .ops import minibatch_std


@dataclass(frozen=True)
class DCGANConfig:
    z_dim: int = 100                          # latent size, z ~ N(0, I)
    channels: tuple = (512, 256, 128, 64)     # widths at 4x4, 8x8, ... before the output layer
    img_channels: int = 3
    critic_channels: tuple = (64, 128, 256)   # critic widths after each stride-2 conv
    mbstd_group: int = 4                      # critic minibatch-std group (0 = no layer)

    def __post_init__(self):
        object.__setattr__(self, "channels", tuple(int(c) for c in self.channels))
        object.__setattr__(self, "critic_channels", tuple(int(c) for c in self.critic_channels))

    @property
    def img_resolution(self) -> int:
        return 4 * 2 ** len(self.channels)

    def to_dict(self):
        d = asdict(self)
        d["channels"], d["critic_channels"] = list(self.channels), list(self.critic_channels)
        return d

    @classmethod
    def from_dict(cls, d):
        return cls(**d)


class DCGANGenerator(nn.Module):
    def __init__(self, cfg: DCGANConfig):
        super().__init__()
        self.cfg = cfg
        layers: list[nn.Module] = []
        prev = cfg.z_dim
        for i, c in enumerate(cfg.channels):
            stride, pad = (1, 0) if i == 0 else (2, 1)
            layers += [nn.ConvTranspose2d(prev, c, 4, stride, pad, bias=False),
                       nn.BatchNorm2d(c), nn.ReLU(True)]
            prev = c
        layers += [nn.ConvTranspose2d(prev, cfg.img_channels, 4, 2, 1, bias=False), nn.Tanh()]
        self.main = nn.Sequential(*layers)
        # stage k ends after main[3k + 2]; stage names give the resolution reached
        self.stage_names = [f"s{4 * 2 ** i}" for i in range(len(cfg.channels))]

    def forward(self, z):
        return self.main(z.reshape(z.shape[0], -1, 1, 1))

    def run(self, x, *, start: str | None = None, stop: str | None = None):
        """Run from after stage ``start`` (x is that stage's output) or from z, until after
        stage ``stop`` (returning activations) or to the image."""
        if start is None:
            x = x.reshape(x.shape[0], -1, 1, 1)
            i0 = 0
        else:
            i0 = 3 * (self.stage_names.index(start) + 1)
        i1 = len(self.main) if stop is None else 3 * (self.stage_names.index(stop) + 1)
        for layer in self.main[i0:i1]:
            x = layer(x)
        return x


class DCGANCritic(nn.Module):
    """WGAN-GP critic: stride-2 4x4 convolutions with LeakyReLU (no batch norm, which the
    gradient penalty forbids), minibatch-std, a 3x3 conv and two linear layers.
    ``features`` is the penultimate linear output."""

    def __init__(self, cfg: DCGANConfig):
        super().__init__()
        self.cfg = cfg
        layers: list[nn.Module] = []
        prev = cfg.img_channels
        for c in cfg.critic_channels:
            layers += [nn.Conv2d(prev, c, 4, 2, 1), nn.LeakyReLU(0.2)]
            prev = c
        self.trunk = nn.Sequential(*layers)
        res = cfg.img_resolution // 2 ** len(cfg.critic_channels)
        extra = 1 if cfg.mbstd_group else 0
        self.conv = nn.Conv2d(prev + extra, prev, 3, 1, 1)
        self.fc = nn.Linear(prev * res * res, prev)
        self.out = nn.Linear(prev, 1)

    @property
    def has_minibatch_std(self) -> bool:
        return bool(self.cfg.mbstd_group)

    def features(self, img, mbstd_group: int | None = None):
        """``mbstd_group=1`` makes each image's features independent of the rest of the batch."""
        x = self.trunk(img)
        if self.cfg.mbstd_group:
            x = minibatch_std(x, mbstd_group or self.cfg.mbstd_group)
        x = nn.functional.leaky_relu(self.conv(x), 0.2)
        return nn.functional.leaky_relu(self.fc(x.flatten(1)), 0.2)

    def forward(self, img):
        return self.out(self.features(img))
