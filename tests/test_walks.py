
import numpy as np

import pytest
import torch

from latentatlas.errors import LatentAtlasError
from latentatlas.walks import (great_circle, linear, norm_preserving_walk, pnorm_plus_interp, slerp)
from latentatlas.walks.density import DPConfig, MonotoneCDF, train_dp_lase
from latentatlas.walks.directions import Directions, compute_directions, ganspace, sefa
from latentatlas.walks.edit import render_walk, save_strip, walk_latents


def test_interpolation_endpoints():
    a, b = torch.randn(3, 8), torch.randn(3, 8)
    for fn in (linear, slerp):
        p = fn(a, b, 5)
        assert p.shape == (5, 3, 8)
        assert torch.allclose(p[0], a, atol=1e-5) and torch.allclose(p[-1], b, atol=1e-5)


def test_norm_preserving_and_great_circle():
    z0, g = torch.randn(4, 16), torch.randn(16)
    eps = torch.linspace(-3, 3, 7)
    np_walk = norm_preserving_walk(z0, g, eps)
    assert torch.allclose(np_walk.norm(dim=-1), z0.norm(dim=-1).expand(7, -1), atol=1e-5)
    gc = great_circle(z0, g, eps)
    assert torch.allclose(gc.norm(dim=-1), torch.full((7, 4), 4.0), atol=1e-4)
    # small steps agree with the linear direction
    d = great_circle(z0, g, torch.tensor([1e-3]))[0] - great_circle(z0, g, torch.tensor([0.0]))[0]
    u = z0 / z0.norm(dim=1, keepdim=True)
    gp = g - (u @ g)[:, None] * u
    assert (torch.nn.functional.cosine_similarity(d, gp, dim=1) > 0.99).all()


def test_pnorm_plus_interp(tiny_sg2):
    from latentatlas.atlas import fit_atlas
    plus = fit_atlas(tiny_sg2, n=3000, clusters={}).pnorm_plus
    a = tiny_sg2.broadcast(tiny_sg2.mapping(tiny_sg2.sample_z(2, 0)))
    b = tiny_sg2.broadcast(tiny_sg2.mapping(tiny_sg2.sample_z(2, 9)))
    p = pnorm_plus_interp(a, b, 5, plus)
    assert p.shape == (5, 2, 6, 8)
    assert torch.allclose(p[0], a, atol=1e-4) and torch.allclose(p[-1], b, atol=1e-4)


def test_monotone_cdf_and_training(tiny_sg2):
    dp, log = train_dp_lase(tiny_sg2, DPConfig(steps=120, batch=128), space="w")
    x = torch.linspace(-5, 5, 400)[:, None].expand(-1, 8)
    f = dp.F(x)
    assert (f[1:] >= f[:-1] - 1e-7).all() and f.min() >= 0 and f.max() <= 1
    assert (dp.F.density(x) >= 0).all()
    first, last = log.losses[0], log.losses[-1]
    assert last[2] < first[2]                      # likelihood loss decreased
    # correction is orthogonal to the walk direction
    z0 = tiny_sg2.mapping(tiny_sg2.sample_z(5)).detach()
    g = torch.nn.functional.normalize(torch.randn(5, 8), dim=1)
    c = dp.C(z0, 1.0, g)
    assert (c * g).sum(1).abs().max() < 1e-4


def test_monotone_cdf_blocks_match_one_pass(monkeypatch):
    """Row blocks give the values and gradients of one pass (in float64: in float32 the
    finite-difference density's log-gradient is rounding noise where F' is tiny)."""
    import latentatlas.walks.density as dens
    torch.manual_seed(0)
    f = MonotoneCDF(6, loc=torch.randn(6), scale=torch.rand(6) + 0.5).double()
    x = torch.randn(50, 6, dtype=torch.float64) * 2

    def run(frozen):
        xx = x.clone().requires_grad_(True)
        d = f.density(xx, frozen=frozen)
        y = (d.clamp_min(1e-12).log() * torch.linspace(0.5, 2, 6, dtype=torch.float64)).sum() + f(xx, frozen=frozen).sum()
        params = [] if frozen else list(f.parameters())
        return (d.detach(), *torch.autograd.grad(y, [xx, *params]))

    one = {fr: run(fr) for fr in (True, False)}
    monkeypatch.setattr(dens, "_BLOCK_ELEMENTS", 6 * 16 * 7)      # 7 rows per block: 8 blocks, a short last one
    for fr in (True, False):
        blocks = run(fr)
        assert len(blocks) == len(one[fr])
        for a, b in zip(one[fr], blocks):
            assert torch.allclose(a, b, rtol=1e-9, atol=1e-9), (a - b).abs().max()
    with torch.no_grad():
        assert torch.allclose(f.density(x), one[False][0], rtol=1e-9, atol=1e-9)


def test_dplase_model_after_s_steps_is_the_s_step_model(tiny_sg2):
    # bench_dplase.py's curve reads an s-step discovery off a longer run: that holds only while
    # nothing in the loop depends on the total step count
    import copy
    kept = {}
    cfg = dict(n_directions=2, layer="b8", batch=32, var_batch=8)
    train_dp_lase(tiny_sg2, DPConfig(steps=5, **cfg), space="w",
                  on_step=lambda s, dp: kept.__setitem__(s, copy.deepcopy(dp.state_dict())) if s == 3 else None)
    short, _ = train_dp_lase(tiny_sg2, DPConfig(steps=3, **cfg), space="w")
    for k, v in short.state_dict().items():
        assert torch.equal(v, kept[3][k]), k


def test_dplase_directions_orthonormal(tiny_sg2):
    d = compute_directions(tiny_sg2, "dplase", k=3, layer="b8", steps=150)
    G = d.dp_model.Gamma.detach()
    assert (G.t() @ G - torch.eye(3)).norm() < 0.1
    assert d.vectors.shape == (3, 8) and d.meta["layer"] == "b8"


def test_dplase_file_carries_its_density_and_correction(tiny_sg2, tmp_path, monkeypatch):
    """The saved set holds F and C; a walk from the file uses them (no retraining) and matches
    the walk with the in-memory model exactly."""
    from latentatlas.walks import density
    d = compute_directions(tiny_sg2, "dplase", k=2, layer="b8", steps=40)
    d.save(tmp_path / "dp.npz")
    back = Directions.load(tmp_path / "dp.npz")
    assert back.meta["lam"] == 0.1 and back.meta["zeta"] == 100.0 and back.meta["steps"] == 40
    assert back.dp_state and set(back.dp_state) == set(d.dp_state)
    monkeypatch.setattr(density, "train_dp_lase", lambda *a, **k: (_ for _ in ()).throw(AssertionError("retrained")))
    base = tiny_sg2.mapping(tiny_sg2.sample_z(3)).detach()
    a = walk_latents(tiny_sg2, back, 1, base, kind="dp", steps=5)
    b = walk_latents(tiny_sg2, d, 1, base, kind="dp", steps=5, dp_model=d.dp_model)
    assert torch.allclose(a, b, atol=1e-6)
    # a tampered model part is refused in one line
    bad = dict(np.load(tmp_path / "dp.npz"))
    bad["dp.C.net.0.weight"] = bad["dp.C.net.0.weight"][:, :3]
    np.savez(tmp_path / "bad.npz", **bad)
    with pytest.raises(LatentAtlasError, match="DP-LaSE model does not fit"):
        walk_latents(tiny_sg2, Directions.load(tmp_path / "bad.npz"), 1, base, kind="dp", steps=5)


def _g1_move(model, dirs, w):
    """Mean squared change of the b8 features over one σ-step along each direction (σ: the
    spread of the samples along it), as the walks take them."""
    h0 = model.activation(model.forward_to("b8", w)).flatten(1)
    return torch.stack([(model.activation(model.forward_to("b8", w + (w @ d).std() * d)).flatten(1) - h0)
                        .square().sum(1).mean() for d in dirs]).mean()


@torch.no_grad()
def test_g1_features_skip_the_image_path_and_the_pool_skips_g1_on_fresh_samples(tiny_sg2, monkeypatch):
    """features_at is activation(forward_to) without the to-RGB path; with the pool, a discovery
    step runs G1 once (the walked rows), with var_pool=0 twice (also the fresh starting points)."""
    w = tiny_sg2.mapping(torch.randn(4, tiny_sg2.z_dim))
    for layer in tiny_sg2.layer_names:
        assert torch.equal(tiny_sg2.features_at(layer, w), tiny_sg2.activation(tiny_sg2.forward_to(layer, w)))
    with pytest.raises(ValueError, match="stop layer"):
        tiny_sg2.G.synthesis(tiny_sg2.broadcast(w), image=False)
    calls = []
    real = type(tiny_sg2).features_at
    monkeypatch.setattr(type(tiny_sg2), "features_at", lambda self, l, v: calls.append(v.shape[0]) or real(self, l, v))
    for pool, per_step in ((64, 1), (0, 2)):
        calls.clear()
        with torch.enable_grad():
            train_dp_lase(tiny_sg2, DPConfig(steps=4, n_directions=2, layer="b8", batch=32, var_batch=8,
                                                    var_pool=pool), space="w")
        setup = 1 + (1 if pool else 0)          # the size probe and the pool's one chunk
        assert len(calls) == (setup if pool else 0) + 4 * per_step, calls
        assert calls[-1] == 2 * 8                 # the k x var_batch walked rows


def test_dplase_directions_maximise_g1_variation(tiny_sg2):
    """l_var must steer Γ: the learned set moves G1 more than random orthonormal sets do."""
    with torch.enable_grad():
        d = compute_directions(tiny_sg2, "dplase", k=3, layer="b8", steps=600)
    w = tiny_sg2.mapping(torch.randn(256, tiny_sg2.z_dim, generator=torch.Generator().manual_seed(1)))
    rand = torch.stack([_g1_move(tiny_sg2, torch.linalg.qr(torch.randn(
        8, 3, generator=torch.Generator().manual_seed(s)))[0].t(), w) for s in range(8)])
    learned = _g1_move(tiny_sg2, d.vectors / d.vectors.norm(dim=1, keepdim=True), w)
    assert learned > rand.max(), (learned, rand)


def test_sefa_are_eigenvectors(tiny_sg2):
    d = sefa(tiny_sg2, k=4)
    A = tiny_sg2.G.synthesis.b4.conv1.affine.weight.detach()
    A = A / A.norm(dim=1, keepdim=True)
    M = A.t() @ A
    for v, lam in zip(d.vectors, d.meta["eigenvalues"]):
        assert torch.allclose(M @ v, lam * v, atol=1e-4)
    assert torch.allclose(d.vectors @ d.vectors.t(), torch.eye(4), atol=1e-5)


def test_ganspace_w_and_layer(tiny_sg2, tmp_path):
    d = ganspace(tiny_sg2, k=3, n=2000)
    assert torch.allclose(d.vectors @ d.vectors.t(), torch.eye(3), atol=1e-4)
    ev = d.meta["explained_variance"]
    assert ev[0] >= ev[1] >= ev[2]
    dl = ganspace(tiny_sg2, k=2, n=1000, layer="b8")
    assert dl.vectors.shape == (2, 8)
    p = d.save(tmp_path / "g.npz")
    back = Directions.load(p)
    assert torch.equal(back.vectors, d.vectors) and back.method == "ganspace"
    back.check_model(tiny_sg2)
    from conftest import tiny_stylegan2
    with pytest.raises(LatentAtlasError, match="computed for weights"):
        back.check_model(tiny_stylegan2(seed=3))


def test_walk_render_strip_gif(tiny_sg2, tmp_path):
    d = ganspace(tiny_sg2, k=2, n=1000)
    base = tiny_sg2.mapping(tiny_sg2.sample_z(3)).detach()
    for kind in ("linear", "dp"):
        lat = walk_latents(tiny_sg2, d, 1, base, kind=kind, steps=5)
        assert lat.shape == (5, 3, 8)
        assert torch.allclose(lat[2], base, atol=1e-5)            # the middle step is the start
    with pytest.raises(LatentAtlasError, match="great-circle"):
        walk_latents(tiny_sg2, d, 0, base, kind="great-circle")
    imgs = render_walk(tiny_sg2, d, walk_latents(tiny_sg2, d, 0, base, steps=5))
    assert save_strip(imgs, tmp_path / "s.png").exists() and save_strip(imgs, tmp_path / "s.gif").exists()
    with pytest.raises(LatentAtlasError, match="out of range"):
        walk_latents(tiny_sg2, d, 5, base)


def test_evaluate_directions_on_a_z_model_uses_the_exact_gaussian():
    from latentatlas.models.dcgan import DCGANConfig, DCGANCritic, DCGANGenerator
    from latentatlas.models.interface import ModelInfo, ZOnlyModel
    from latentatlas.walks.edit import evaluate_directions
    torch.manual_seed(0)
    cfg = DCGANConfig(z_dim=16, channels=(32, 16), img_channels=1, critic_channels=(8, 16), mbstd_group=4)
    m = ZOnlyModel(ModelInfo("tiny-dcgan", "dcgan", "test fixture"), z_dim=16, img_resolution=16, img_channels=1,
                   generator=DCGANGenerator(cfg).eval(), discriminator=DCGANCritic(cfg))
    d = Directions(torch.eye(16)[:2], "z", "test", torch.ones(2))
    res = evaluate_directions(m, d, n=8, steps=5, layer="s4")
    for r in res["rows"]:
        assert r["density_drift_dp"] < 1e-4 < r["density_drift_linear"]      # the norm-preserving walk keeps log p
        assert r["g1_variation"] > 0 and r["ppl"] > 0
    assert res["orthogonality_error"] < 1e-6


def test_dp_training_has_its_own_random_stream(tiny_sg2):
    # train_dp_lase is reproducible from cfg.seed and leaves the caller's global generator alone
    from latentatlas.walks.density import DPConfig, train_dp_lase
    dirs = torch.nn.functional.normalize(torch.randn(2, tiny_sg2.w_dim, generator=torch.Generator().manual_seed(3)), dim=1)

    def train(seed):
        return train_dp_lase(tiny_sg2, DPConfig(steps=6, batch=32, seed=seed), space="w", directions=dirs)[0]
    torch.manual_seed(123)
    expect = torch.rand(3)
    torch.manual_seed(123)
    a, b, c = train(0), train(0), train(1)
    assert torch.equal(torch.rand(3), expect)
    assert all(torch.equal(a.state_dict()[k], b.state_dict()[k]) for k in a.state_dict())
    assert not torch.equal(a.C.net[0].weight, c.C.net[0].weight)


def test_mean_diff_names_fashion_classes_by_default():
    """Without an attribute estimator, mean-diff reads the Fashion-MNIST classifier and names each
    direction by its class (this path broke once when an import was moved: tested now)."""
    from latentatlas.models.registry import load_generator
    d = compute_directions(load_generator("fashion-stylegan2"), "mean-diff", n=2000)
    assert len(d) >= 8 and d.meta["names"][0].endswith(" - rest") and "Trouser - rest" in d.meta["names"]
    pair = compute_directions(load_generator("fashion-stylegan2"), "mean-diff", n=2000, class_a=7, class_b=5)
    assert pair.meta["names"] == ["Sneaker - Sandal"]
