import math

import pytest
import torch

from latentatlas import diamond as dm
from latentatlas.atlas import fit_atlas
from latentatlas.errors import LatentAtlasError
from latentatlas.sampling import (Context, apply_strategy, initial_latents, log_compress, render,
                                  resample_truncate_z, strategy_names)


@pytest.fixture
def ctx(tiny_sg2):
    return Context(tiny_sg2, atlas=fit_atlas(tiny_sg2, n=4000, clusters={"coarse": 3, "medium": 3, "fine": 3},
                                             em_samples=2000))


@pytest.fixture
def lat(tiny_sg2):
    return initial_latents(tiny_sg2, tiny_sg2.sample_z(12, seed=5))


def test_registry():
    assert set(strategy_names()) >= {"none", "truncation", "pca-log", "cluster", "diamond"}
    with pytest.raises(LatentAtlasError, match="unknown sampling strategy"):
        apply_strategy(None, "nope", None)


def test_identities(tiny_sg2, lat, ctx):
    assert torch.equal(apply_strategy(tiny_sg2, "truncation", lat, ctx, psi=1.0).ws, lat.ws)
    assert torch.allclose(apply_strategy(tiny_sg2, "pca-log", lat, ctx, tau=math.inf).ws, lat.ws)
    assert torch.allclose(apply_strategy(tiny_sg2, "cluster", lat, ctx, psi=1.0).ws, lat.ws, atol=1e-5)
    # a very large tau changes nothing either (no |v| exceeds it)
    assert torch.allclose(apply_strategy(tiny_sg2, "pca-log", lat, ctx, tau=1e6).ws, lat.ws, atol=1e-4)


def test_truncation_layer_range(tiny_sg2, lat, ctx):
    out = apply_strategy(tiny_sg2, "truncation", lat, ctx, psi=0.0, start=1, stop=3)
    assert torch.allclose(out.ws[:, 1:3], tiny_sg2.w_avg.expand(12, 2, -1))
    assert torch.equal(out.ws[:, 0], lat.ws[:, 0]) and torch.equal(out.ws[:, 3:], lat.ws[:, 3:])


def test_log_compress_formula():
    v = torch.tensor([[-4.0, -1.0, 0.5, 3.0, 10.0]])
    out = log_compress(v, 2.0)
    expect = torch.tensor([[-(2 + math.log(3.0)), -1.0, 0.5, 2 + math.log(2.0), 2 + math.log(9.0)]])
    assert torch.allclose(out, expect)
    # monotone, continuous at tau, only first k touched
    assert torch.allclose(log_compress(torch.tensor([[2.0]]), 2.0), torch.tensor([[2.0]]))
    assert torch.equal(log_compress(v, 2.0, k=2)[0, 2:], v[0, 2:])


def test_pca_log_reduces_pnorm_magnitude(tiny_sg2, lat, ctx):
    sp = ctx.atlas.pnorm
    out = apply_strategy(tiny_sg2, "pca-log", lat, ctx, tau=1.0)
    v0, v1 = sp.transform(lat.ws), sp.transform(out.ws)
    assert (v1.abs() <= v0.abs() + 1e-4).all()
    assert v1.abs().max() < v0.abs().max()


def test_cluster_psi0_gives_centres(tiny_sg2, lat, ctx):
    out = apply_strategy(tiny_sg2, "cluster", lat, ctx, psi=0.0)
    em = ctx.atlas.em
    for level, (a, b) in ctx.atlas.level_ranges.items():
        k = out.info["clusters"][level]
        assert torch.allclose(out.ws[:, a:b], em.centres(level)[k][:, None].expand(-1, b - a, -1), atol=1e-5)
    # per-level psi: only the coarse rows move
    part = apply_strategy(tiny_sg2, "cluster", lat, ctx, psi=1.0, psi_coarse=0.5)
    a, b = ctx.atlas.level_ranges["coarse"]
    assert not torch.allclose(part.ws[:, a:b], lat.ws[:, a:b])
    assert torch.allclose(part.ws[:, b:], lat.ws[:, b:], atol=1e-5)


def test_z_truncation_resample_batch_independent():
    z = torch.randn(6, 16, generator=torch.Generator().manual_seed(0)) * 2
    t = resample_truncate_z(z, 1.0)
    assert t.abs().max() <= 1.0
    keep = z.abs() <= 1.0
    assert torch.equal(t[keep], z[keep])
    assert torch.equal(resample_truncate_z(z[2:4], 1.0), t[2:4])


def test_sphere_and_great_circle():
    z0 = torch.randn(5, 32)
    z1 = z0 + 0.3 * torch.randn(5, 32)
    path = dm.great_circle_walk(dm.sphere_proj(z0), dm.sphere_proj(z1), 20)
    norms = path[2:].norm(dim=-1)
    assert torch.allclose(norms, torch.full_like(norms, math.sqrt(32)), atol=1e-4)
    # it stays in the plane of z0, z1 (a great circle)
    basis, _ = torch.linalg.qr(torch.stack([dm.sphere_proj(z0[0]), dm.sphere_proj(z1[0])], 1))
    resid = path[:, 0] - path[:, 0] @ basis @ basis.t()
    assert resid.abs().max() < 1e-3
    p = dm.great_circle_point(z0, z1, 90.0)
    assert torch.allclose(torch.nn.functional.cosine_similarity(p, z0, dim=1), torch.zeros(5), atol=1e-5)


def test_diamond_pipeline_on_tiny(tiny_sg2):
    m = tiny_sg2
    z0 = m.sample_z(8, 0)
    x = m(z0).detach()
    z1 = dm.recover_z(m, x, dm.RecoveryConfig(steps=30, n_init=64))
    assert z1.shape == z0.shape
    err0 = (m(dm.sphere_proj(torch.randn(8, 8))) - x).abs().mean()
    assert (m(z1) - x).abs().mean() < err0                       # recovery is closer than random
    zp, path = dm.find_protoimages(m, z0, z1, dm.ProtoConfig(max_iter=15), return_path=True)
    assert torch.allclose(path[1:].norm(dim=-1)[1:], torch.full((path.shape[0] - 2, 8), math.sqrt(8)), atol=1e-4)
    s = dm.optimise_sigma(m, z0, zp, dm.SigmaConfig(steps=20, sigma_min=0.2, sigma_max=0.6, init=0.9))
    assert s.shape == (8,) and (s >= 0.2 - 1e-6).all() and (s <= 0.6 + 1e-6).all()
    zh = dm.realism_step(z0, zp, s)
    assert torch.allclose(zh.norm(dim=1), torch.full((8,), math.sqrt(8)), atol=1e-4)


def test_diamond_strategy_variants(tiny_sg2, lat):
    ctx = Context(tiny_sg2)
    out = apply_strategy(tiny_sg2, "diamond", lat, ctx, sigma=0.3, n_proto=8, recovery_steps=10, proto_iter=5)
    assert out.ws.shape == lat.ws.shape and torch.allclose(out.info["sigma"], torch.full((12,), 0.3))
    same = apply_strategy(tiny_sg2, "diamond", lat, ctx, sigma=0.0, n_proto=8, recovery_steps=10, proto_iter=5)
    assert torch.allclose(same.z, dm.sphere_proj(lat.z), atol=1e-5)
    auto = apply_strategy(tiny_sg2, "diamond", lat, ctx, sigma="auto", m=0.0, sigma_max=0.5, n_proto=8,
                          recovery_steps=10, proto_iter=5, sigma_steps=10)
    assert (auto.info["sigma"] <= 0.5 + 1e-6).all()


def test_diamond_refused_without_minibatch_std():
    from latentatlas.models.interface import wrap_generator
    net = torch.nn.Sequential(torch.nn.Linear(4, 48), torch.nn.Tanh(), torch.nn.Unflatten(1, (3, 4, 4)))
    m = wrap_generator(net, z_dim=4)
    lat = initial_latents(m, m.sample_z(4))
    with pytest.raises(LatentAtlasError, match="variant=walk"):
        apply_strategy(m, "diamond", lat, sigma="auto")
    out = apply_strategy(m, "diamond", lat, variant="walk", sigma=0.4, recovery_steps=5)
    assert torch.allclose(out.z.norm(dim=1), torch.full((4,), 2.0), atol=1e-4)
    with pytest.raises(LatentAtlasError, match="needs a mapping network"):
        apply_strategy(m, "pca-log", lat, tau=1.0)


def test_unknown_param(tiny_sg2, lat):
    with pytest.raises(LatentAtlasError, match="has no parameter"):
        apply_strategy(tiny_sg2, "truncation", lat, bogus=1)


def test_render(tiny_sg2, lat):
    assert render(tiny_sg2, lat, batch_size=5).shape == (12, 1, 16, 16)


def test_sigma_bracket_solver_matches_adam_objective(tiny_sg2):
    m = tiny_sg2
    z0 = m.sample_z(16, 3)
    zp = dm.sphere_proj(torch.randn(16, 8, generator=torch.Generator().manual_seed(4)))
    target = float(m.score(m(z0)).median())
    objective = lambda s: float((m.score(m(dm.realism_step(z0, zp, s))) - target).square().mean())
    cfg = dict(m=target, sigma_min=0.1, sigma_max=0.9)
    s_adam = dm.optimise_sigma(m, z0, zp, dm.SigmaConfig(steps=100, **cfg))
    s_br = dm.optimise_sigma(m, z0, zp, dm.SigmaConfig(solver="bracket", grid=9, refine=4, **cfg), batch=8)
    assert s_br.shape == (16,) and (s_br >= 0.1 - 1e-6).all() and (s_br <= 0.9 + 1e-6).all()
    with torch.no_grad():
        assert objective(s_br) <= objective(s_adam) * 1.05 + 1e-6
        assert objective(s_br) < objective(torch.full((16,), 0.7))
    with pytest.raises(LatentAtlasError, match="solver"):
        dm.optimise_sigma(m, z0, zp, dm.SigmaConfig(solver="newton"))


def test_multilevel_sampling_keeps_the_fixed_cluster(tiny_sg2, tmp_path):
    """Katzir et al.'s multi-level sampling: rows of a fixed level come from the chosen cluster
    (the mixture assigns them back to it), free levels keep the sample's own w, any batch size
    gives the same codes."""
    from latentatlas.atlas import fit_atlas
    from latentatlas.sampling import Context, apply_strategy, initial_latents
    atlas = fit_atlas(tiny_sg2, n=3000, clusters={"coarse": 3, "medium": 0, "fine": 2}, learned_steps=150)
    ctx = Context(tiny_sg2, atlas=atlas)
    lat = initial_latents(tiny_sg2, tiny_sg2.sample_z(24, 0))
    for kind in ("em", "learned"):
        new = apply_strategy(tiny_sg2, "multilevel", lat, ctx, coarse=1, mixture=kind)
        mix = atlas.mixture(kind)
        a, b = atlas.level_ranges["coarse"]
        # confusion of fixed cluster vs the mixture's assignment: each fixed cluster is where its
        # rows are assigned most often (a sampler ignoring the choice gives identical rows)
        conf = torch.stack([torch.bincount(mix.cluster_of(apply_strategy(
            tiny_sg2, "multilevel", lat, ctx, coarse=k, mixture=kind).ws[:, a:b], "coarse"), minlength=3)
            for k in range(3)]).float() / lat.z.shape[0]
        assert torch.equal(conf.argmax(1), torch.arange(3)) and conf.diag().min() >= 0.5, (kind, conf)
        fa, fb = atlas.level_ranges["fine"]
        assert torch.equal(new.ws[:, fa:fb], lat.ws[:, fa:fb])
        half = apply_strategy(tiny_sg2, "multilevel", initial_latents(tiny_sg2, tiny_sg2.sample_z(12, 0)), ctx,
                              coarse=1, mixture=kind)
        assert torch.allclose(half.ws, new.ws[:12])
    ws = atlas.mixture("learned").sample_levels({"coarse": 2, "fine": 1}, 5, seed=3)
    assert ws.shape == (5, tiny_sg2.num_ws, tiny_sg2.w_dim)


def test_the_learned_mixture_is_the_same_on_every_fit():
    """One seed, one mixture: indexing's backward (run on the CPU's threads) had made two fits
    differ run to run (fashion-stylegan2's weights by up to 0.05 after 200 steps)."""
    from latentatlas.atlas import fit_atlas
    from latentatlas.models.registry import load_generator
    m = load_generator("fashion-stylegan2")
    threads = torch.get_num_threads()
    torch.set_num_threads(2)                  # the suite runs on one thread, where the race cannot show
    try:
        fits = [fit_atlas(m, n=5000, clusters={"coarse": 8}, em_samples=2000, learned_steps=30)
                .learned.levels_["coarse"].state_dict() for _ in range(3)]
    finally:
        torch.set_num_threads(threads)
    for other in fits[1:]:
        assert all(torch.equal(fits[0][k], other[k]) for k in fits[0])


def test_truncation_parameters_must_fit_the_model(tiny_sg2):
    """ψ needs W; the resampling threshold t is for Z-only models; the sweep picks the right one."""
    from latentatlas.errors import LatentAtlasError
    from latentatlas.models.registry import load_generator
    from latentatlas.sampling import Context, apply_strategy, default_sweep, initial_latents
    z_model = load_generator("fashion-wgangp")
    with pytest.raises(LatentAtlasError, match="need a W space"):
        apply_strategy(z_model, "truncation", initial_latents(z_model, z_model.sample_z(2)), Context(z_model), psi=0.5)
    with pytest.raises(LatentAtlasError, match="Z-only models"):
        apply_strategy(tiny_sg2, "truncation", initial_latents(tiny_sg2, tiny_sg2.sample_z(2)), Context(tiny_sg2), t=0.5)
    assert [p["t"] for p in default_sweep(z_model, "truncation")][-1] == 0.1
    assert "psi" in default_sweep(tiny_sg2, "truncation")[1]
    lat = apply_strategy(z_model, "truncation", initial_latents(z_model, z_model.sample_z(4)), Context(z_model), t=0.5)
    assert lat.z.abs().max() <= 0.5
