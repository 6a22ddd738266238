"""Tests that pin Diamond in the rough's method (seed 002, METHODS.md §3): the sign of each term of
the protoimage loss, α's meaning in the recovery, σ bounds for both solvers, the sphere, and the
per-recipe settings."""
import math
from types import SimpleNamespace

import pytest
import torch

from latentatlas import diamond as dm
from latentatlas.errors import LatentAtlasError
from latentatlas.sampling import Context, apply_strategy, initial_latents


class _Probe:
    """A transparent 'GAN': G(z) = z, D(x) = the score function given. Algorithm 1's loss is then
    a known function of z, so which way each term pushes can be checked exactly."""
    has_minibatch_std = True
    name = "probe"
    device = torch.device("cpu")

    def __init__(self, score):
        self._score = score

    def require_discriminator(self, what):
        pass

    def __call__(self, z):
        return z

    def score(self, x):
        return self._score(x)


def _start(n=16, dim=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    z0 = dm.sphere_proj(torch.randn(n, dim, generator=g))
    z1 = dm.sphere_proj(z0 + 0.3 * torch.randn(n, dim, generator=g))
    return z0, z1


def test_protoimage_search_lowers_the_critic_score():
    """L_p = D(G(z)) + λ cos: with λ = 0 the search must move toward lower critic scores (a sign
    flip of the D term would raise them)."""
    z0, z1 = _start()
    probe = _Probe(lambda x: x[:, 0])
    zp = dm.find_protoimages(probe, z0, z1, dm.ProtoConfig(lam=0.0, max_iter=40))
    assert zp[:, 0].mean() < z1[:, 0].mean() - 0.05


def test_protoimage_search_moves_away_from_the_original_with_lambda():
    """The +λ·cos(z, z0) term is minimised: with a flat critic the path leaves z0 (cosine falls)."""
    z0, z1 = _start()
    probe = _Probe(lambda x: torch.zeros(x.shape[0]))
    zp = dm.find_protoimages(probe, z0, z1, dm.ProtoConfig(lam=3.0, max_iter=40))
    cos = lambda a: torch.nn.functional.cosine_similarity(a, z0, dim=1).mean()
    assert cos(zp) < cos(z1) - 0.05
    assert torch.allclose(zp.norm(dim=1), torch.full((16,), math.sqrt(6)), atol=1e-4)   # on the sphere


def test_wgan_gp_terms_reduce_the_spread():
    """γ·std(D): with a critic that differs per sample, γ > 0 must leave a smaller spread of scores
    than γ = 0 (a sign flip would widen it)."""
    z0, z1 = _start(seed=3)
    probe = _Probe(lambda x: x[:, 0])
    a = dm.find_protoimages(probe, z0, z1, dm.ProtoConfig(lam=0.0, max_iter=30))
    b = dm.find_protoimages(probe, z0, z1, dm.ProtoConfig(lam=0.0, gamma=50.0, max_iter=30))
    assert b[:, 0].std() < a[:, 0].std()


def test_alpha_weights_the_discriminator_feature_term(tiny_sg2):
    m = tiny_sg2
    x = m(m.sample_z(6, 11)).detach()
    feat = lambda z: m.features(m(z), independent=True)
    fx = m.features(x, independent=True)
    res = {}
    for alpha in (0.0, 20.0):
        z = dm.recover_z(m, x, dm.RecoveryConfig(steps=60, n_init=32, alpha=alpha))
        with torch.no_grad():
            res[alpha] = ((feat(z) - fx).abs().sum(1).mean().item(), (m(z) - x).abs().flatten(1).sum(1).mean().item())
    assert res[20.0][0] < res[0.0][0]                 # the feature term is what α weights
    assert res[0.0][1] <= res[20.0][1] * 1.05         # and pixels are what it trades


@pytest.mark.parametrize("solver", ["adam", "bracket"])
def test_sigma_stays_in_bounds(tiny_sg2, solver):
    z0 = tiny_sg2.sample_z(10, 0)
    zp = dm.sphere_proj(torch.randn(8))
    s = dm.optimise_sigma(tiny_sg2, z0, zp, dm.SigmaConfig(steps=15, sigma_min=0.25, sigma_max=0.55, init=0.9,
                                                           solver=solver))
    assert (s >= 0.25 - 1e-6).all() and (s <= 0.55 + 1e-6).all()


def test_great_circle_walk_stays_on_the_sphere():
    z0, z1 = _start(n=5, dim=32)
    path = dm.great_circle_walk(z0, z1, 40)
    assert torch.allclose(path[1:].norm(dim=-1), torch.full((41, 5), math.sqrt(32)), atol=1e-4)
    # a great circle: every point stays in the plane of z0 and z1, and keeps moving the same way
    for i in range(5):
        q, _ = torch.linalg.qr(torch.stack([z0[i], z1[i]], 1))
        pts = path[:, i]
        assert (pts - (pts @ q) @ q.t()).norm(dim=1).max() < 1e-3
    ang = torch.acos(torch.nn.functional.cosine_similarity(path[1:], z0[None], dim=-1).clamp(-1, 1))
    assert (ang[1:6] > ang[:5]).all()


def _model(arch="dcgan", extra=None, res=32):
    return SimpleNamespace(info=SimpleNamespace(arch=arch, extra=extra or {}), img_resolution=res)


def test_presets_follow_the_model_and_can_be_overridden():
    assert dm.preset_for(_model(extra={"arch": "wgangp"})) == "wgan-gp"
    assert dm.preset_for(_model("biggan")) == "biggan"
    assert dm.preset_for(_model("pgan", res=1024)) == "celeba-hq"
    assert dm.preset_for(_model("pgan", res=128)) == "pgan-celeba"
    s = dm.resolve_settings(_model(extra={"arch": "wgangp"}))
    assert s == {"preset": "wgan-gp", "alpha": 2.0, "beta": 1.0, "lam": 0.2, "gamma": 1.0, "delta": 3.0}
    s = dm.resolve_settings(_model(), "biggan", lam=7)
    assert s["alpha"] == 15.0 and s["lam"] == 7.0
    with pytest.raises(LatentAtlasError, match="preset"):
        dm.resolve_settings(_model(), "celeba-lsun")
    with pytest.raises(LatentAtlasError, match="setting"):
        dm.resolve_settings(_model(), "auto", eta=1)


def test_strategy_records_the_settings_it_used(tiny_sg2):
    lat = initial_latents(tiny_sg2, tiny_sg2.sample_z(6))
    out = apply_strategy(tiny_sg2, "diamond", lat, Context(tiny_sg2), sigma=0.2, n_proto=4, recovery_steps=3,
                         proto_iter=3, lam=0.5)
    assert out.info["diamond"]["lam"] == 0.5 and out.info["diamond"]["preset"] == "pgan-celeba"


def test_protoimage_walk_passes_through_the_protoimage(tiny_sg2, monkeypatch):
    z0 = tiny_sg2.sample_z(3, 2)
    seen = {}
    real = dm.find_protoimages

    def spy(*a, **k):
        seen["zp"] = real(*a, **k)
        return seen["zp"]
    monkeypatch.setattr(dm, "find_protoimages", spy)
    path, mid = dm.protoimage_walk(tiny_sg2, z0, frames=7, recovery_steps=5, proto_iter=5, n_init=16)
    assert path.shape == (7, 3, 8) and mid == 3
    assert torch.allclose(path.norm(dim=-1), torch.full((7, 3), math.sqrt(8)), atol=1e-4)
    assert torch.allclose(path[0], dm.sphere_proj(z0), atol=1e-4)
    assert torch.allclose(path[mid], seen["zp"], atol=1e-3)           # the framed step is the protoimage


def test_walk_cli_great_circle_without_direction_and_misuse(tmp_path, capsys):
    from latentatlas.cli.main import main
    assert main(["walk", "--model", "fashion-wgangp", "--kind", "linear", "--out", str(tmp_path / "a.png")]) == 2
    assert "give --direction" in capsys.readouterr().err
    assert main(["walk", "--model", "fashion-wgangp", "--kind", "great-circle", "--extent", "3",
                 "--out", str(tmp_path / "a.png")]) == 2
    assert "--extent applies" in capsys.readouterr().err


def test_attribute_control_moves_first_then_realism(tiny_sg2, tmp_path):
    from latentatlas.walks.directions import Directions
    g = torch.nn.functional.normalize(torch.randn(2, 8), dim=1)
    Directions(g, "z", "test", torch.tensor([0.5, 1.0]), {"weights_hash": tiny_sg2.weights_hash()}).save(tmp_path / "z.npz")
    Directions(g, "w", "test", torch.tensor([0.5, 1.0]), {}).save(tmp_path / "w.npz")
    lat = initial_latents(tiny_sg2, tiny_sg2.sample_z(4, 1))
    kw = dict(n_proto=4, recovery_steps=3, proto_iter=3)
    out = apply_strategy(tiny_sg2, "diamond", lat, Context(tiny_sg2), sigma=0.0, attribute=f"{tmp_path / 'z.npz'}:1",
                         amount=-2, **kw)
    assert torch.allclose(out.z, dm.sphere_proj(lat.z - 2.0 * g[1]), atol=1e-5)
    with pytest.raises(LatentAtlasError, match="holds w directions"):
        apply_strategy(tiny_sg2, "diamond", lat, Context(tiny_sg2), sigma=0.0, attribute=f"{tmp_path / 'w.npz'}:0", **kw)
    with pytest.raises(LatentAtlasError, match="amount applies"):
        apply_strategy(tiny_sg2, "diamond", lat, Context(tiny_sg2), sigma=0.0, amount=1, **kw)


def test_table1_protocol_option_misuse(capsys):
    from latentatlas.cli.main import main
    assert main(["evaluate-sampling", "--model", "fashion-wgangp", "--protocol", "diamond-table1",
                 "--strategies", "truncation"]) == 2
    assert "fixes the strategies" in capsys.readouterr().err
    assert main(["evaluate-sampling", "--model", "fashion-wgangp", "--param", "lam=1"]) == 2
    assert "--param applies to --protocol" in capsys.readouterr().err


def test_table1_summary_picks_the_best_nonzero_sigma():
    from latentatlas.evaluation.sampling import table1_summary
    # the baseline is the point that changed no sample (pixel distance 0), whatever its name
    row = lambda strat, params, fid: {"strategy": strat, "params": params, "fid": fid,
                                      "pixel_dist": 0.0 if params == "t=inf" else 1.0}
    res = {"rows": [row("truncation", "t=inf", 7.0), row("truncation", "t=0.5", 9.0),
                    row("diamond", "sigma=0.0", 6.9), row("diamond", "sigma=0.01", 6.95),
                    row("diamond", "sigma=0.1", 8.0), row("diamond", "sigma=auto", 12.0)]}
    t = table1_summary(res, _model(extra={"arch": "wgangp"}))
    assert t["best_sigma"]["params"] == "sigma=0.01" and t["best_truncation"]["params"] == "t=0.5"
    assert t["diamond_beats_baseline"] is True and t["diamond_beats_truncation"] is True


def test_z_model_sweep_finds_its_untruncated_baseline():
    # a Z model's identity point is t = inf (no 'psi'): the summary and the method table start from it
    from latentatlas.models.registry import load_generator
    from latentatlas.evaluation.sampling import evaluate_sampling
    m = load_generator("fashion-wgangp")
    res = evaluate_sampling(m, ["truncation"], n=64, batch_size=64, progress=False,
                            sweeps={"truncation": [{"t": 0.5}, {"t": math.inf}]})
    assert res["baseline"]["params"] == "t=inf" and res["baseline"]["pixel_dist"] == 0.0


def test_mean_protoimage_reports_how_well_it_is_determined(tmp_path, monkeypatch):
    # the mean protoimage carries its split-half cosine and its samples' cosine to their protoimages;
    # the cached entry gives back the same vector and record, and the Latents of the mean variant carry it
    from latentatlas.models.registry import load_generator
    from latentatlas.diamond import cached_mean_protoimage as _mean_proto
    from latentatlas.evaluation.sampling import mean_proto_text
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    m = load_generator("fashion-wgangp")
    st = dm.resolve_settings(m)
    zp, info = _mean_proto(m, 6, 2, st, 2, 0, n_init=8, with_info=True)
    assert info["n"] == 6 and -1 <= info["split_half_cosine"] <= 1 and -1 <= info["cos_to_samples"] <= 1
    assert abs(float(zp.norm()) - math.sqrt(m.z_dim)) < 1e-3
    zp2, info2 = _mean_proto(m, 6, 2, st, 2, 0, n_init=8, with_info=True)          # from the cache
    assert torch.equal(zp.cpu(), zp2.cpu()) and info2 == info
    ctx = Context(m)
    lat = initial_latents(m, m.sample_z(3, seed=1))
    new = apply_strategy(m, "diamond", lat, ctx, sigma=0.1, n_proto=6, recovery_steps=2, proto_iter=2, n_init=8)
    assert new.info["mean_proto"] == info
    assert "not determined" in mean_proto_text({**info, "split_half_cosine": 0.05})
    assert "settled" in mean_proto_text({**info, "split_half_cosine": 0.95})
