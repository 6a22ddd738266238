import math

import pytest
import torch
import torch.nn.functional as F

from latentatlas.models import ops
from latentatlas.models.stylegan2 import StyleGAN2Config


def test_shapes_and_determinism(tiny_sg2):
    m = tiny_sg2
    z = m.sample_z(5, seed=3)
    img = m(z)
    assert img.shape == (5, 1, 16, 16)
    assert torch.isfinite(img).all()
    assert torch.equal(img, m(z))                      # const noise: deterministic
    ws = m.broadcast(m.mapping(z))
    assert ws.shape == (5, m.num_ws, 8)
    assert m.num_ws == 6


def test_seed_names_latent_independent_of_batch(tiny_sg2):
    a = tiny_sg2.sample_z(10, seed=100)
    b = torch.cat([tiny_sg2.sample_z(3, seed=100), tiny_sg2.sample_z(7, seed=103)])
    assert torch.equal(a, b)
    imgs_a = tiny_sg2.generate(a, batch_size=10)
    imgs_b = tiny_sg2.generate(a, batch_size=3)
    assert torch.allclose(imgs_a, imgs_b, atol=1e-5)


def test_grouped_and_fused_modulation_agree(tiny_sg2):
    z = tiny_sg2.sample_z(4, seed=0)
    tiny_sg2.grouped = False
    a = tiny_sg2(z)
    tiny_sg2.grouped = True
    b = tiny_sg2(z)
    tiny_sg2.grouped = False
    assert (a - b).abs().max() <= 1e-5


@pytest.mark.parametrize("up", [1, 2])
def test_modulated_conv_paths_agree_direct(up):
    torch.manual_seed(0)
    x, w, s = torch.randn(3, 5, 6, 6), torch.randn(7, 5, 3, 3), torch.randn(3, 5)
    f = ops.make_fir()
    a = ops.modulated_conv(x, w, s, up=up, padding=1, f=f)
    b = ops.modulated_conv(x, w, s, up=up, padding=1, f=f, grouped=True)
    assert a.shape == (3, 7, 6 * up, 6 * up)
    assert torch.allclose(a, b, atol=1e-5)
    # demodulated output has unit-norm effective weights: check against explicit per-sample conv
    if up == 1:
        for i in range(3):
            wi = w * s[i].reshape(1, -1, 1, 1)
            wi = wi / wi.square().sum(dim=[1, 2, 3], keepdim=True).add(1e-8).sqrt()
            ref = F.conv2d(x[i:i + 1], wi, padding=1)
            assert torch.allclose(a[i:i + 1], ref, atol=1e-5)


def test_fir_resampling_preserves_constant():
    f = ops.make_fir()
    x = torch.full((1, 2, 8, 8), 3.0)
    up = ops.upsample2x(x, f)
    assert up.shape == (1, 2, 16, 16)
    assert torch.allclose(up[:, :, 2:-2, 2:-2], torch.full_like(up[:, :, 2:-2, 2:-2], 3.0))
    down = ops.fir_filter(x, f, down=2, pad=(1, 1, 1, 1))
    assert down.shape == (1, 2, 4, 4)
    assert torch.allclose(down[:, :, 1:-1, 1:-1], torch.full((1, 2, 2, 2), 3.0))


def test_truncation_psi0_is_w_avg(tiny_sg2):
    m = tiny_sg2
    ws = m.broadcast(m.mapping(m.sample_z(4)))
    t = m.truncate(ws, 0.0)
    assert torch.allclose(t, m.w_avg.expand_as(t))
    assert torch.equal(m.truncate(ws, 1.0), ws)
    part = m.truncate(ws, 0.0, cutoff=2)
    assert torch.allclose(part[:, :2], m.w_avg.expand(4, 2, -1))
    assert torch.equal(part[:, 2:], ws[:, 2:])


def test_style_mixing_and_wplus(tiny_sg2):
    m = tiny_sg2
    wa = m.broadcast(m.mapping(m.sample_z(2, 0)))
    wb = m.broadcast(m.mapping(m.sample_z(2, 10)))
    mixed = m.mix(wa, wb, cutoff=3)
    assert torch.equal(mixed[:, :3], wa[:, :3]) and torch.equal(mixed[:, 3:], wb[:, 3:])
    img = m.synthesis(mixed)
    assert not torch.allclose(img, m.synthesis(wa)) and not torch.allclose(img, m.synthesis(wb))
    # W+ with identical rows equals W input
    assert torch.allclose(m.synthesis(wa), m.synthesis(wa[:, 0]))


def test_split_at_named_layer(tiny_sg2):
    m = tiny_sg2
    ws = m.broadcast(m.mapping(m.sample_z(3)))
    full = m.synthesis(ws)
    for layer in m.layer_names[:-1]:
        state = m.forward_to(layer, ws)
        assert m.activation(state).ndim == 4
        assert torch.allclose(m.forward_from(layer, state, ws), full, atol=1e-6)


def test_random_noise_mode_uses_generator(tiny_sg2):
    m = tiny_sg2
    ws = m.mapping(m.sample_z(2))
    a = m.synthesis(ws, noise_mode="random", generator=torch.Generator().manual_seed(1))
    b = m.synthesis(ws, noise_mode="random", generator=torch.Generator().manual_seed(1))
    c = m.synthesis(ws, noise_mode="random", generator=torch.Generator().manual_seed(2))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_discriminator_scores_and_features(tiny_sg2):
    imgs = tiny_sg2(tiny_sg2.sample_z(8))
    assert tiny_sg2.score(imgs).shape == (8,)
    assert tiny_sg2.features(imgs).shape == (8, 16)
    assert tiny_sg2.has_minibatch_std
    # any batch size works (group falls back to gcd)
    assert tiny_sg2.score(imgs[:6]).shape == (6,)


def test_config_validation_and_roundtrip():
    with pytest.raises(ValueError, match="power of two"):
        StyleGAN2Config(img_resolution=24)
    cfg = StyleGAN2Config(img_resolution=16, channels={4: 8, 8: 8, 16: 4})
    assert StyleGAN2Config.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="resolution 32"):
        StyleGAN2Config(img_resolution=32, channels={4: 8, 8: 8, 16: 4})


def test_mapping_ends_in_lrelu(tiny_sg2):
    z = tiny_sg2.sample_z(16)
    pre = tiny_sg2.G.mapping.pre_activation(z)
    assert torch.allclose(tiny_sg2.mapping(z), F.leaky_relu(pre, 0.2) * math.sqrt(2), atol=1e-6)
