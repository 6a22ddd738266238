import numpy as np
import pytest
import torch

from latentatlas.atlas import Atlas, fit_atlas, parse_clusters, parse_level_ranges
from latentatlas.errors import LatentAtlasError
from latentatlas.priors import EMMixture, GaussianPrior
from latentatlas.spaces import (PNormPlusSpace, PNormSpace, PSpace, StreamingMoments, check_p_space)
from latentatlas.spaces.diagnostics import normality_table, plot_marginals, space_samples


@pytest.fixture
def w_samples(tiny_sg2):
    with torch.no_grad():
        return tiny_sg2.mapping(tiny_sg2.sample_z(4000, 0))


def test_streaming_moments_match_numpy():
    x = torch.randn(1000, 5, dtype=torch.float64) * torch.tensor([1, 2, 3, 4, 5.0], dtype=torch.float64)
    m = StreamingMoments(5)
    for i in range(0, 1000, 170):
        m.update(x[i:i + 170])
    assert np.allclose(m.mean.numpy(), x.numpy().mean(0))
    assert np.allclose(m.cov.numpy(), np.cov(x.numpy(), rowvar=False))


def test_p_space_roundtrip(w_samples, tiny_sg2):
    p = PSpace().fit().transform(w_samples)
    assert torch.allclose(PSpace().inverse_transform(p), w_samples, atol=1e-6)
    # P is the mapping's last pre-activation times the sqrt(2) gain
    pre = tiny_sg2.G.mapping.pre_activation(tiny_sg2.sample_z(4000, 0))
    assert torch.allclose(p, pre * 2 ** 0.5, atol=1e-4)


def test_pnorm_roundtrip_and_whitening(w_samples):
    sp = PNormSpace().fit(w_samples)
    v = sp.transform(w_samples)
    assert torch.allclose(sp.inverse_transform(v), w_samples, atol=1e-4)
    cov = np.cov(v.double().numpy(), rowvar=False)
    assert np.abs(v.mean(0).numpy()).max() < 1e-3
    assert np.abs(cov - np.eye(cov.shape[0])).max() < 1e-3    # fitted on the same samples
    # held-out samples: identity within sampling error
    assert sp.components_.shape == (8, 8) and hasattr(sp, "explained_variance_")
    assert (sp.explained_variance_[:-1] >= sp.explained_variance_[1:]).all()


def test_pnorm_heldout_whitened(tiny_sg2, w_samples):
    sp = PNormSpace().fit(w_samples)
    with torch.no_grad():
        held = tiny_sg2.mapping(tiny_sg2.sample_z(4000, 10_000))
    cov = np.cov(sp.transform(held).double().numpy(), rowvar=False)
    # sampling error of a covariance entry with n=4000 is ~ 1/sqrt(n) = 0.016
    assert np.abs(cov - np.eye(8)).max() < 0.1


def test_pnorm_topk_and_plus(w_samples):
    sp = PNormSpace(n_components=3).fit(w_samples)
    assert sp.transform(w_samples).shape == (4000, 3)
    plus = PNormPlusSpace().fit(w_samples)
    ws = w_samples[:10].reshape(5, 2, 8)
    v = plus.transform(ws)
    assert v.shape == (5, 2, 8)
    assert torch.allclose(plus.inverse_transform(v), ws, atol=1e-4)
    with pytest.raises(LatentAtlasError, match="W\\+"):
        plus.transform(w_samples)


def test_not_fitted_error():
    with pytest.raises(LatentAtlasError, match="not fitted"):
        PNormSpace().transform(torch.zeros(2, 8))


def test_mahalanobis_equals_pnorm_norm(w_samples):
    sp = PNormSpace().fit(w_samples)
    prior = GaussianPrior(sp)
    w = w_samples[:7].clone().requires_grad_(True)
    m = prior.mahalanobis(w)
    v = sp.transform(w)
    assert torch.allclose(m, v.square().sum(1), rtol=1e-4)
    # direct formula (p - mu)^T Sigma^-1 (p - mu) with the fitted covariance
    p = torch.nn.functional.leaky_relu(w.detach(), 5.0).double()
    d = p - sp.mean_.double()
    direct = (d @ torch.linalg.inv(sp.cov_.double()) * d).sum(1)
    assert torch.allclose(m.detach().double(), direct, rtol=1e-3)
    m.sum().backward()
    assert w.grad is not None and torch.isfinite(w.grad).all()
    wp = w_samples[:6].reshape(3, 2, 8)
    assert torch.allclose(prior.mahalanobis(wp), prior.mahalanobis(wp.reshape(6, 8)).reshape(3, 2).sum(1))


def test_em_mixture_api(w_samples, tiny_sg2):
    sp = PNormSpace().fit(w_samples)
    ranges = {"coarse": (0, 2), "medium": (2, 4), "fine": (4, 6)}
    em = EMMixture(sp, {"coarse": 3, "medium": 2, "fine": 4}, ranges, seed=1).fit(w_samples)
    k = em.cluster_of(w_samples[:50], "coarse")
    assert k.shape == (50,) and k.max() < 3
    assert em.centre("fine", 2).shape == (8,)
    s = em.sample("coarse", 1, 200, seed=0)
    # samples of a component are mostly classified into it
    assert (em.cluster_of(s, "coarse") == 1).float().mean() > 0.6
    with pytest.raises(LatentAtlasError, match="no clusters for level"):
        em.centre("ultra", 0)
    q = em.quality(tiny_sg2, n=500)
    assert q["coarse"]["classifier_accuracy"] > 0.5 and sum(q["coarse"]["real_w_cluster_sizes"]) == 500


def test_atlas_fit_save_load_and_refusal(tiny_sg2, tmp_path):
    from conftest import tiny_stylegan2
    atlas = fit_atlas(tiny_sg2, n=5000, clusters={"coarse": 2, "medium": 2, "fine": 2}, em_samples=2000)
    path = atlas.save(tmp_path / "a.npz")
    back = Atlas.load(path, tiny_sg2)
    w = tiny_sg2.mapping(tiny_sg2.sample_z(5))
    assert torch.allclose(back.pnorm.transform(w), atlas.pnorm.transform(w), atol=1e-5)
    assert torch.equal(back.em.cluster_of(w, "fine"), atlas.em.cluster_of(w, "fine"))
    assert back.meta["n"] == 5000 and back.level_ranges == atlas.level_ranges
    other = tiny_stylegan2(seed=5)
    with pytest.raises(LatentAtlasError, match="atlas was fitted for weights"):
        Atlas.load(path, other)
    (tmp_path / "bad.npz").write_bytes(b"garbage")
    with pytest.raises(LatentAtlasError, match="not a readable atlas"):
        Atlas.load(tmp_path / "bad.npz")


def test_parse_specs():
    assert parse_clusters("coarse=4,fine=2") == {"coarse": 4, "fine": 2}
    with pytest.raises(LatentAtlasError, match="unknown level"):
        parse_clusters("tiny=3")
    assert parse_level_ranges("coarse=0:2,fine=2:6", 6) == {"coarse": (0, 2), "fine": (2, 6)}
    with pytest.raises(LatentAtlasError, match="out of range"):
        parse_level_ranges("coarse=0:9", 6)


def test_no_p_space_for_z_only_models():
    from latentatlas.models.interface import wrap_generator
    net = torch.nn.Sequential(torch.nn.Linear(4, 48), torch.nn.Tanh(), torch.nn.Unflatten(1, (3, 4, 4)))
    m = wrap_generator(net, z_dim=4)
    with pytest.raises(LatentAtlasError, match="needs a mapping network"):
        check_p_space(m)


def test_diagnostics_tiny(tiny_sg2, w_samples, tmp_path):
    sp = PNormSpace().fit(w_samples)
    s = space_samples(tiny_sg2, sp, n=3000)
    rows = {r["space"]: r for r in normality_table(s)}
    assert rows["P-norm"]["max |corr|"] < rows["W"]["max |corr|"] + 1e-9
    assert rows["P-norm"]["max |corr|"] < 0.1
    out = plot_marginals(s, tmp_path / "m.png")
    assert out.stat().st_size > 5000


def test_learned_mixture(tiny_sg2, tmp_path):
    atlas = fit_atlas(tiny_sg2, n=3000, clusters={"coarse": 3, "medium": 2, "fine": 2}, em_samples=2000,
                      learned_steps=60)
    lm = atlas.learned
    w = tiny_sg2.mapping(tiny_sg2.sample_z(40, 3))
    assert lm.cluster_of(w, "coarse").max() < 3 and lm.centres("medium").shape == (2, 8)
    s = lm.sample("coarse", 1, 100)
    assert (lm.cluster_of(s, "coarse") == 1).float().mean() > 0.5
    q = lm.quality(n=500)
    assert set(q) == {"coarse", "medium", "fine"} and q["coarse"]["classifier_accuracy"] > 0.5
    # the learned clusters live in each level's own style space: levels read different layers
    from latentatlas.priors.learned import style_modules
    assert len(style_modules(tiny_sg2, atlas.level_ranges["coarse"])) >= 2
    path = atlas.save(tmp_path / "l.npz")
    back = Atlas.load(path, tiny_sg2)
    assert torch.equal(back.learned.cluster_of(w, "fine"), lm.cluster_of(w, "fine"))
    from latentatlas.sampling import Context, apply_strategy, initial_latents
    lat = initial_latents(tiny_sg2, tiny_sg2.sample_z(6))
    out = apply_strategy(tiny_sg2, "cluster", lat, Context(tiny_sg2, atlas=back), psi=0.0, mixture="learned")
    k = out.info["clusters"]["coarse"]
    a, b = atlas.level_ranges["coarse"]
    assert torch.allclose(out.ws[:, a], back.learned.centres("coarse")[k], atol=1e-5)


def test_learned_mixture_weights_follow_unequal_clusters():
    """π gets the MMD's gradient: matching a 80/20 two-cluster W from equally many draws per
    component moves softmax(logits) to about 0.8/0.2 (Katzir et al.'s mixture weights)."""
    from latentatlas.priors.learned import mmd2
    g = torch.Generator().manual_seed(0)
    centres = torch.tensor([[3.0, 0, 0, 0], [-3.0, 0, 0, 0]])
    real = torch.cat([centres[0] + 0.3 * torch.randn(400, 4, generator=g),
                      centres[1] + 0.3 * torch.randn(100, 4, generator=g)])
    k = torch.arange(200) % 2
    gen = centres[k] + 0.3 * torch.randn(200, 4, generator=g)
    logits = torch.zeros(2, requires_grad=True)
    opt = torch.optim.Adam([logits], lr=0.05)
    for _ in range(300):
        pi = torch.softmax(logits, 0)
        loss = mmd2(gen, real, x_weights=pi[k] / torch.bincount(k).float()[k])
        opt.zero_grad()
        loss.backward()
        opt.step()
    pi = torch.softmax(logits, 0).detach()
    assert abs(pi[0].item() - 0.8) < 0.05, pi


def test_learned_mixture_trains_its_weights(tiny_sg2):
    from latentatlas.atlas import fit_atlas
    atlas = fit_atlas(tiny_sg2, n=2000, clusters={"coarse": 3, "medium": 0, "fine": 0}, learned_steps=40)
    pi = torch.softmax(atlas.learned.levels_["coarse"].logits, 0)
    assert (pi - 1 / 3).abs().max() > 1e-3          # π moved (it stayed exactly uniform before)


def test_learned_mixture_beats_an_untrained_one(tiny_sg2):
    """Training lowers the two-sample statistic (MMD² of the mixture's W vs held-out W)."""
    from latentatlas.atlas import fit_atlas
    trained = fit_atlas(tiny_sg2, n=2000, clusters={"coarse": 3, "medium": 0, "fine": 0}, learned_steps=80)
    untrained = fit_atlas(tiny_sg2, n=2000, clusters={"coarse": 3, "medium": 0, "fine": 0}, learned_steps=1)
    q1, q0 = trained.learned.quality()["coarse"], untrained.learned.quality()["coarse"]
    assert q1["mmd2"] < q0["mmd2"], (q1, q0)
    assert abs(sum(q1["pi"]) - 1) < 1e-4
