import dataclasses
import math

import pytest
import torch

from latentatlas.atlas import fit_atlas
from latentatlas.errors import LatentAtlasError
from latentatlas.inversion import InversionConfig, invert, invert_many
from latentatlas.metrics.reconstruction import psnr, rmse, ssim


@pytest.fixture
def atlas(tiny_sg2):
    return fit_atlas(tiny_sg2, n=4000, clusters={})


@pytest.fixture
def targets(tiny_sg2):
    with torch.no_grad():
        return tiny_sg2(tiny_sg2.sample_z(6, seed=77)).clamp(-1, 1)


def test_reconstruction_metrics_reference():
    a = torch.rand(2, 1, 16, 16) * 2 - 1
    assert torch.allclose(psnr(a, a.clone() + 0.2), torch.full((2,), 10 * math.log10(1 / 0.01)), atol=1e-4)
    assert torch.allclose(rmse(a, a + 0.2), torch.full((2,), 0.1), atol=1e-6)
    assert torch.allclose(ssim(a, a), torch.ones(2), atol=1e-6)
    assert (ssim(a, torch.rand_like(a) * 2 - 1) < 0.5).all()
    # scikit-image style reference on a constant shift: luminance term only
    b = a[:1] * 0 + 0.5
    assert ssim(b, b * 0).item() == pytest.approx(((2 * .75 * .5 + 1e-4) / (.75 ** 2 + .25 + 1e-4)), rel=1e-4)


@pytest.mark.parametrize("space,reg", [("w", "none"), ("wplus", "none"), ("pnorm+", "none"), ("wplus", "pnorm-clip:2"),
                                       ("wplus", "pnorm-project:5"), ("wplus", "pnorm-l2:0.001"),
                                       ("wplus", "mahalanobis:0.001"), ("z", "sphere:1"), ("w", "pnorm-clip:1"),
                                       ("pnorm+", "pnorm-project:3")])
def test_every_space_and_regulariser_improves(tiny_sg2, targets, atlas, space, reg):
    name, val = InversionConfig.parse_regularizer(reg)
    cfg = InversionConfig(space=space, regularizer=name, reg_value=val, steps=60, lr=0.05, perceptual_weight=0.05,
                          init="mean")
    res = invert(tiny_sg2, targets, cfg, atlas=atlas)
    assert res.images.shape == targets.shape and res.ws.shape == (6, 6, 8)
    start = invert(tiny_sg2, targets, InversionConfig(space=space, regularizer=name, reg_value=val, steps=1,
                                                      init="mean"), atlas=atlas)
    assert (res.final_loss < start.final_loss).float().mean() >= 0.8
    v = atlas.pnorm_plus.transform(res.ws)
    if name == "pnorm-clip":
        assert v.abs().max() <= val + 1e-3
    if name == "pnorm-project":
        assert torch.allclose(v.norm(dim=1), torch.full_like(v.norm(dim=1), val), atol=1e-3)
    if space == "z":
        assert res.z.shape == (6, 8)


def test_batch_independence_and_early_stop(tiny_sg2, targets, atlas):
    cfg = InversionConfig(space="wplus", steps=40, lr=0.05, early_stop_patience=5, early_stop_tol=0.5)
    full = invert(tiny_sg2, targets, cfg, atlas=atlas)
    part = invert(tiny_sg2, targets[2:4], cfg, atlas=atlas)
    assert torch.allclose(full.codes[2:4], part.codes, atol=1e-5)
    assert (full.steps_used < 40).all()           # a huge tolerance stops every image early


def test_generated_images_are_recovered(tiny_sg2, targets, atlas):
    cfg = InversionConfig(space="wplus", steps=300, lr=0.05, perceptual_weight=0.0, early_stop_patience=300, init="mean")
    res = invert(tiny_sg2, targets, cfg, atlas=atlas)
    start = invert(tiny_sg2, targets, InversionConfig(space="wplus", steps=1, init="mean"), atlas=atlas)
    # a random network's images are clamped to [-1, 1] as targets, so exact recovery is impossible;
    # the embedding must still gain a lot over the mean-w start
    assert psnr(res.images, targets).mean() > psnr(start.images, targets).mean() + 6


def test_bad_inputs(tiny_sg2, atlas):
    with pytest.raises(LatentAtlasError, match="targets must be"):
        invert(tiny_sg2, torch.zeros(2, 3, 16, 16), atlas=atlas)
    with pytest.raises(LatentAtlasError, match="NaN"):
        invert(tiny_sg2, torch.full((1, 1, 16, 16), float("nan")), atlas=atlas)
    with pytest.raises(LatentAtlasError, match="unknown space"):
        InversionConfig(space="q")
    with pytest.raises(LatentAtlasError, match="sphere regulariser"):
        InversionConfig(space="wplus", regularizer="sphere", reg_value=1)
    with pytest.raises(LatentAtlasError, match="unknown regularizer"):
        InversionConfig.parse_regularizer("fancy:1")


def test_best_of_n_init(tiny_sg2, targets, atlas):
    a = invert(tiny_sg2, targets, InversionConfig(space="w", steps=1, init="best-of-64"), atlas=atlas)
    b = invert(tiny_sg2, targets, InversionConfig(space="w", steps=1, init="mean"), atlas=atlas)
    assert a.final_loss.mean() < b.final_loss.mean()


@pytest.mark.parametrize("space", ["z", "w", "wplus", "pnorm+"])
def test_best_of_start_is_the_pool_member_nearest_each_target(tiny_sg2, targets, atlas, space):
    """best-of:N picks, per target, the candidate the brute-force image distance ranks first."""
    from latentatlas.inversion import ImageDistance, _Space
    from latentatlas.metrics.perceptual import perceptual_fn
    from latentatlas.inversion.inits import _pool, make_starts
    cfg = InversionConfig(space=space, init="best-of:32", perceptual="none")
    sp = _Space(tiny_sg2, cfg, atlas)
    dist = ImageDistance(cfg, perceptual_fn("none", tiny_sg2))
    st = make_starts(sp, targets, dist)
    codes, _ = _pool(sp, 32)
    with torch.no_grad():
        imgs = sp.images(codes)
        brute = torch.stack([(imgs - t).square().flatten(1).mean(1) for t in targets])    # [T, 32]
    assert torch.allclose(st.codes[:, 0], codes[brute.argmin(1)])
    assert st.labels[0][0].startswith("pool draw")


def test_pool_includes_the_atlas_cluster_centres(tiny_sg2):
    from latentatlas.inversion import _Space
    from latentatlas.inversion.inits import _pool
    atl = fit_atlas(tiny_sg2, n=3000, clusters={"coarse": 3, "medium": 0, "fine": 0}, learned_steps=0)
    codes, labels = _pool(_Space(tiny_sg2, InversionConfig(space="w"), atl), 16)
    assert codes.shape[0] == 19 and labels[-1] == "coarse cluster 2"
    assert torch.allclose(codes[16:], atl.em.centres("coarse"), atol=1e-5)


def test_multi_start_keeps_each_targets_best_start_and_is_batch_independent(tiny_sg2, targets, atlas):
    cfg = InversionConfig(space="wplus", steps=30, warmup_steps=10, lr=0.05, init="multi-start:3:32")
    full = invert(tiny_sg2, targets, cfg, atlas=atlas)
    part = invert(tiny_sg2, targets[1:3], cfg, atlas=atlas)
    assert torch.allclose(full.codes[1:3], part.codes, atol=1e-5)
    assert full.init_labels[1:3] == part.init_labels
    # one start: the warm-up/selection/continue path carries the optimiser state exactly
    single = invert(tiny_sg2, targets, InversionConfig(space="wplus", steps=30, lr=0.05, init="best-of:32"), atlas=atlas)
    one = invert(tiny_sg2, targets, dataclasses.replace(cfg, init="multi-start:1:32"), atlas=atlas)
    assert torch.allclose(one.codes, single.codes, atol=1e-6)
    assert len(full.init_labels) == 6 and all(lbl.startswith("pool draw") for lbl in full.init_labels)


@pytest.mark.parametrize("init", ["best-of:32", "multi-start:2:32"])
def test_invert_many_equals_one_inversion_per_config(tiny_sg2, targets, atlas, init):
    # configurations that differ only in the regulariser run as one batch, each row with its own
    # regulariser, optimiser state and early stop: every result is invert's for its configuration
    base = dict(space="wplus", steps=12, warmup_steps=4, lr=0.05, perceptual_weight=0.05, init=init,
                early_stop_patience=3, early_stop_tol=0.02)
    regs = [("none", 0.0), ("pnorm-clip", 1.0), ("pnorm-project", 3.0), ("pnorm-l2", 0.01), ("mahalanobis", 0.001)]
    cfgs = [InversionConfig(regularizer=r, reg_value=v, **base) for r, v in regs]
    cfgs.insert(2, InversionConfig(**{**base, "space": "w"}))           # another space: its own batch
    many = invert_many(tiny_sg2, targets, cfgs, atlas=atlas)
    for cfg, got in zip(cfgs, many):
        one = invert(tiny_sg2, targets, cfg, atlas=atlas)
        assert got.config == cfg and got.codes.shape == one.codes.shape
        assert torch.allclose(got.codes, one.codes, atol=1e-6), cfg.regularizer
        assert torch.equal(got.steps_used, one.steps_used) and got.stop_reasons == one.stop_reasons
        assert got.init_labels == one.init_labels
        assert got.history == pytest.approx(one.history, rel=1e-5)
    assert any(r.steps_used.min() < 12 for r in many)          # the early stop was exercised
    with pytest.raises(LatentAtlasError, match="differ only in regularizer"):
        from latentatlas.inversion import _engine
        _engine(tiny_sg2, targets, [cfgs[0], cfgs[2]], atlas=atlas)


def test_stop_psnr_and_stop_reasons(tiny_sg2, atlas):
    with torch.no_grad():
        x = tiny_sg2.synthesis(tiny_sg2.broadcast(tiny_sg2.mapping(tiny_sg2.sample_z(4, seed=5)))).clamp(-1, 1)
    res = invert(tiny_sg2, x, InversionConfig(space="wplus", steps=200, lr=0.05, stop_psnr=12.0, init="mean"), atlas=atlas)
    assert set(res.stop_reasons) <= {"budget", "plateau", "target"}
    hit = [i for i, r in enumerate(res.stop_reasons) if r == "target"]
    assert hit and all(res.steps_used[i] < 200 for i in hit)
    assert all(psnr(res.images[i:i + 1], x[i:i + 1]).item() >= 11.5 for i in hit)
    assert res.converged == [r != "budget" for r in res.stop_reasons]


@pytest.mark.parametrize("spec", ["best-of:0", "multi-start:5:3", "multi-start:x", "nearest", "mean:3"])
def test_bad_init_specs(spec):
    with pytest.raises(LatentAtlasError, match="init"):
        InversionConfig(init=spec)


def test_embedding_metrics_tiny(tiny_sg2, atlas, tmp_path):
    pytest.importorskip("latentatlas.metrics.features")
    from latentatlas.evaluation.inversion import embedding_metrics
    from latentatlas.metrics.features import FashionFeatures
    from latentatlas.walks.directions import ganspace
    try:
        ext = FashionFeatures()
    except LatentAtlasError:
        pytest.skip("feature network weights not built")
    ws = tiny_sg2.broadcast(tiny_sg2.mapping(tiny_sg2.sample_z(20)))
    out = embedding_metrics(tiny_sg2, ws, atlas, ext, directions=ganspace(tiny_sg2, k=3, n=1000))
    # 20 embeddings: KID with its std instead of a FID (that would come from a singular covariance)
    for k in ("edit_prob_range", "ppl", "style_mixing_kid", "style_mixing_kid_std", "interp_wplus_kid",
              "interp_pnorm+_kid", "share_pnorm+_beyond_2", "share_pnorm+_beyond_3", "share_beyond_3_first10"):
        assert k in out and math.isfinite(out[k])
    assert not any(k.endswith("_fid") for k in out) and out["style_mixing_split"] >= 1
    assert 0 <= out["edit_prob_range"] <= 1 and len(out["edit_classes"]) == 3
    from latentatlas.evaluation.inversion import plot_pnorm
    rows = [{"targets": "generated", "method": "W+", **out}]
    assert [p.name for p in plot_pnorm(rows, tmp_path)] == ["pnorm-hist-generated.png"]


def test_stored_rows_get_the_current_figures_from_their_pnorm_codes(tiny_sg2, atlas, monkeypatch):
    """A row kept before the PPL pairing was raised, or before the edit range had its bootstrap
    std, is recomputed from its stored P-norm+ codes: the same figures as from the embeddings
    themselves (the edit range itself unchanged); a current row is left alone."""
    import types

    import latentatlas.evaluation.inversion as ev
    from latentatlas.metrics import ppl
    from latentatlas.metrics.attributes import FunctionAttributes
    from latentatlas.walks.directions import ganspace
    monkeypatch.setattr(ppl, "EMBEDDING_PAIRS", 40)
    monkeypatch.setattr(ppl, "default_distance", lambda model: "discriminator")
    m = tiny_sg2
    attrs = FunctionAttributes(lambda x: torch.softmax(torch.stack([x.mean((1, 2, 3)), x.std((1, 2, 3))], 1) * 20, 1),
                               ["bright", "busy"])
    built = []
    evaluation = lambda: built.append(1) or types.SimpleNamespace(dirs=ganspace(m, k=3, n=1000), attrs=attrs)  # noqa: E731
    with torch.no_grad():
        ws = m.broadcast(m.mapping(m.sample_z(6, 4))) + 0.3 * torch.randn(6, m.num_ws, m.w_dim)
        direct = {**ev._ppl(m, ws, seed=3), **ev.edit_ranges(m, ws, ganspace(m, k=3, n=1000), attrs, seed=3)}
    assert direct["edit_prob_range_std"] > 0 and len(direct["edit_classes"]) == 3
    old = {"ppl": 1.0, "edit_prob_range": direct["edit_prob_range"], "_pnorm+": atlas.pnorm_plus.transform(ws)}
    assert ev.refresh_row(m, atlas, old, seed=3, evaluation=evaluation) and built == [1]
    assert old["ppl_pairs"] == 40 and old["ppl"] == pytest.approx(direct["ppl"], rel=1e-3)
    for k in ("edit_prob_range", "edit_prob_range_std"):
        assert old[k] == pytest.approx(direct[k], rel=1e-3)
    assert not ev.refresh_row(m, atlas, old, seed=3, evaluation=evaluation) and built == [1]


def test_supplement_grid_and_its_table():
    from latentatlas.evaluation.inversion import SUPPLEMENT_GRID, grid_table
    regs = [(k["regularizer"], k["reg_value"]) for k in SUPPLEMENT_GRID.values() if "regularizer" in k]
    assert [v for r, v in regs if r == "pnorm-clip"] == [1, 2, 5, 7, 10]
    assert [v for r, v in regs if r == "pnorm-project"] == [1, 3, 5, 10]
    assert [v for r, v in regs if r == "pnorm-l2"] == [1e-8, 1e-7, 1e-6, 1e-5]
    for kw in SUPPLEMENT_GRID.values():
        InversionConfig(**kw)                               # every point is a valid configuration
    row = {"targets": "generated", "method": "W+ clip 2", "psnr": 23.4, "ssim": 0.86, "perceptual": 0.05,
           "style_mixing_kid": 0.01, "style_mixing_kid_std": 0.02, "interp_wplus_fid": 3.5,
           "interp_pnorm+_kid": 0.03, "interp_pnorm+_kid_std": 0.01, "edit_prob_range": 0.31}
    out = grid_table([row]).splitlines()
    assert "style mixing" in out[0] and "KID 0.0100±0.0200" in out[1] and "FID 3.500" in out[1]
    assert out[1].rstrip().endswith("0.310")
    from latentatlas.evaluation.inversion import protocol_table
    row.update(ppl=24.04, ppl_sem=1.83, flip_rate=0.5455, flip_n=22, seconds=12.3)
    text, md = protocol_table([row]).splitlines(), protocol_table([row], markdown=True).splitlines()
    assert len(text) == 2 and len(text[0]) == len(text[1])            # aligned columns
    for cell in ("W+ clip 2", "24.0±1.8", "0.55±0.11 (n 22)", "0.0100±0.0200", "0.310"):
        assert cell in text[1] and f" {cell} |" in md[2]
    assert md[0].startswith("| targets | method | PSNR |") and " - |" in md[2]   # a missing column says so


def test_the_supplement_grid_embeds_the_real_images_only(monkeypatch, capsys):
    # II2S's supplement ran its regulariser tables on real images; the protocol table adds generated ones
    import json

    import latentatlas.evaluation.inversion as ev
    from latentatlas.cli.main import main
    seen = []

    def fake(model, targets, *, methods, **kw):
        seen.append((list(targets), list(methods)))
        return [{"targets": t, "method": m} for t in targets for m in methods]
    monkeypatch.setattr(ev, "evaluate_inversion", fake)
    for extra, sets, n_methods in (([], ["test images", "generated"], len(ev.METHODS)),
                                   (["--grid", "supplement"], ["test images"], len(ev.SUPPLEMENT_GRID))):
        assert main(["evaluate-inversion", "--model", "fashion-stylegan2", "--n", "3", "--json", *extra]) == 0
        assert seen[-1][0] == sets and len(seen[-1][1]) == n_methods
        assert len(json.loads(capsys.readouterr().out)) == len(sets) * n_methods


def test_time_estimate_probes_at_the_jobs_batch(tiny_sg2, atlas, monkeypatch):
    # the probe runs the jobs' batch (capped at 32) so the per-image cost it extrapolates is the
    # jobs' own; a 4-image probe had put the n = 100 protocol at 2.8x its measured time
    import time

    from latentatlas.evaluation import inversion as ev
    clock, seen = [0.0], []

    def fake_invert(model, x, cfg, atlas=None):
        seen.append((x.shape[0], cfg.steps))
        clock[0] += 0.25 * x.shape[0] * cfg.steps      # 0.25 s per image and step
    monkeypatch.setattr(ev, "invert", fake_invert)
    monkeypatch.setattr(time, "perf_counter", lambda: clock[0])
    assert ev.estimate_seconds(tiny_sg2, 200, 8, 1200, atlas, batch=100) == pytest.approx(0.25 * 200 * 8 * 1200)
    assert ev.estimate_seconds(tiny_sg2, 12, 1, 10, atlas, batch=6) == pytest.approx(0.25 * 12 * 10)
    assert seen == [(32, 5), (6, 5)]


def test_the_prior_and_l2_at_the_same_weight_are_one_stored_row(tiny_sg2, atlas, tmp_path):
    """Wulff & Torralba's Mahalanobis prior in P is II2S's L2 in P-norm+ (whitened P): one penalty,
    so the protocol's prior row and the grid's L2 row of the same weight share a file."""
    from latentatlas.evaluation.inversion import METHODS, SUPPLEMENT_GRID, RowStore
    store = RowStore(tmp_path, tiny_sg2, atlas, 0, 5, 0.01, {})
    x = torch.zeros(2, 1, 8, 8)
    prior = store.path("t", x, "W+ Gaussian prior 1e-5", METHODS["W+ Gaussian prior 1e-5"])
    assert prior == store.path("t", x, "W+ L2 1e-05", SUPPLEMENT_GRID["W+ L2 1e-05"])
    assert prior != store.path("t", x, "W+ L2 1e-06", SUPPLEMENT_GRID["W+ L2 1e-06"])
    cfgs = [InversionConfig(steps=3, seed=0, space="wplus", regularizer=r, reg_value=1e-3) for r in ("mahalanobis", "pnorm-l2")]
    with torch.no_grad():
        y = tiny_sg2(tiny_sg2.sample_z(2, seed=5)).clamp(-1, 1)
    a, b = (invert(tiny_sg2, y, c, atlas=atlas).ws for c in cfgs)
    assert torch.allclose(a, b, atol=1e-6)
