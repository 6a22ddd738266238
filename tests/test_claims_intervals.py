"""Issue 43: every verdict is read from intervals computed the way its figure is — a difference
inside the noise is *not resolved at this N*, the same difference on more data resolves, and two
identical strategies give an interval holding zero. Synthetic figures, no model."""
import numpy as np
import pytest
import torch

from latentatlas.metrics.distribution import feature_stats, paired_prdc_difference
from latentatlas.metrics.reference import Reference
from latentatlas.metrics.uncertainty import correlation, mean_difference, paired_mean_difference, proportion
from latentatlas.report import claims as C
from latentatlas.report.context import ReportContext
from latentatlas.spaces.diagnostics import normality_noise, normality_table


def test_sign_test_and_its_exact_interval():
    p = proportion(9, 9)
    assert p["p"] == pytest.approx(2 / 2 ** 9) and p["lo"] > 0 and p["diff"] == 0.5
    q = proportion(6, 9)
    assert q["lo"] < 0 < q["hi"] and q["p"] > 0.05


def test_correlation_interval_and_paired_means():
    rng = np.random.default_rng(0)
    x = rng.normal(size=64)
    strong = correlation(x, -x + 0.5 * rng.normal(size=64))
    assert strong["hi"] < 0 and strong["p"] < 1e-6
    none = correlation(x, rng.normal(size=64))
    assert none["lo"] < 0 < none["hi"]
    d = paired_mean_difference(x, x + 0.1)
    assert d["diff"] == pytest.approx(0.1) and d["se"] < 1e-12
    w = mean_difference([1.0, 1.2, 0.9], [5.0, 6.0, 7.0])
    assert w["lo"] > 0 and "Welch" in w["how"]


def test_prdc_difference_of_identical_strategies_holds_zero_and_a_real_gap_is_found():
    rng = np.random.default_rng(1)
    real = rng.normal(size=(600, 6))
    a = rng.normal(size=(600, 6))
    same = paired_prdc_difference(real, a, a.copy(), "recall", resamples=30)
    assert same["diff"] == 0 and same["lo"] <= 0 <= same["hi"]
    collapsed = paired_prdc_difference(real, a, 0.3 * a, "recall", resamples=30)   # less diverse: recall falls
    assert collapsed["hi"] < 0


def _ctx(tmp_path):
    return ReportContext(model=None, out=tmp_path)


def test_dp_walk_claim_is_a_sign_test_over_directions(tmp_path):
    ctx = _ctx(tmp_path)
    ctx.figures["walks"] = [{"density_drift_linear": 1.0, "density_drift_dp": 0.5}] * 12
    assert C.dp_walks(ctx).verdict == C.HOLDS
    ctx.figures["walks"] = ([{"density_drift_linear": 1.0, "density_drift_dp": 0.5}] * 7
                            + [{"density_drift_linear": 0.5, "density_drift_dp": 1.0}] * 5)
    claim = C.dp_walks(ctx)
    assert claim.verdict == C.UNRESOLVED and "7 of 12" in claim.measured and "would resolve it" in claim.measured
    ctx.figures["walks"] = [{"density_drift_linear": 0.5, "density_drift_dp": 1.0}] * 12
    assert C.dp_walks(ctx).verdict == C.NOT


def test_layer_claim_compares_directions_with_a_welch_interval(tmp_path):
    ctx = _ctx(tmp_path)
    ctx.figures["layers"] = [{"layer": "early: a", "classes_moved": 6.0}, {"layer": "late: b", "classes_moved": 1.03}]
    ctx.figures["layers_values"] = {"classes_moved": [[5.0, 6.0, 7.0], [1.0, 1.2, 0.9]]}
    assert C.layers(ctx).verdict == C.HOLDS
    ctx.figures["layers_values"] = {"classes_moved": [[1.0, 3.0, 2.5], [2.0, 1.0, 3.0]]}
    assert C.layers(ctx).verdict == C.UNRESOLVED


def test_outlier_claim_bootstraps_over_the_embeddings(tmp_path):
    ctx = _ctx(tmp_path)
    torch.manual_seed(0)
    v = torch.randn(16, 4, 64)
    v[:, :, 10:] *= 1.6                                   # heavier later dimensions: ~6% beyond 3
    ctx.figures["inversion"] = [{"method": "W+ (I2S)", "> 3, first 10 dims": float((v[..., :10].abs() > 3).float().mean()),
                                 "> 3, later dims": float((v[..., 10:].abs() > 3).float().mean())}]
    ctx.figures["pnorm_codes"] = {"W+ (I2S)": v}
    assert C.outliers(ctx).verdict == C.HOLDS
    ctx.figures["pnorm_codes"] = {"W+ (I2S)": torch.randn(16, 4, 64)}
    assert C.outliers(ctx).verdict == C.NOT


def test_normality_claim_reads_half_sampling_intervals(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(20000, 16))
    s = {"W": np.abs(x) + 0.05 * x, "P": x, "P-norm": x}
    ctx = _ctx(tmp_path)
    ctx.figures["normality"] = normality_table(s)
    ctx.figures["normality_noise"] = normality_noise(s, resamples=6)
    claim = C.normality(ctx)
    assert claim.verdict == C.HOLDS and "half-sampling over the 20,000 latents" in claim.measured
    y = x @ (np.eye(16) + 0.3)                            # correlated "P-norm": not isotropic
    s2 = {"W": np.abs(x), "P": x, "P-norm": y}
    ctx.figures["normality"] = normality_table(s2)
    ctx.figures["normality_noise"] = normality_noise(s2, resamples=6)
    assert C.normality(ctx).verdict == C.MIXED


def _sweep(ctx, f0, rows):
    """A sampling result with per-sample features: rows = [(strategy, params, features, extra)]."""
    out, feats = [], {}
    for strategy, params, f, extra in rows:
        r = {"strategy": strategy, "params": params, "fid": 1.0, "recall": 0.5, "precision": 0.5,
             "feature_dist": float(np.linalg.norm(f - f0, axis=1).mean()), "pixel_dist": float(np.abs(f - f0).sum()),
             **extra}
        out.append(r)
        feats[(strategy, params)] = f
    ctx.figures["sampling"] = {"rows": out, "baseline": out[0], C.SAMPLE_FEATURES: feats}


def test_pca_log_faithfulness_is_paired_by_seed(tmp_path):
    rng = np.random.default_rng(0)
    n, dim = 400, 6
    f0 = rng.normal(size=(n, dim))
    noise = rng.normal(size=(n, dim))

    def case(pca_scale):
        ctx = _ctx(tmp_path)
        _sweep(ctx, f0, [("truncation", "psi=1.0", f0, {"realism": 1.0}),
                         ("truncation", "psi=0.7", f0 + 0.5 * noise, {"realism": 1.2}),
                         ("pca-log", "tau=2.0", f0 + pca_scale * noise, {"realism": 1.21})])
        return C.pca_log(ctx)
    assert case(0.3).verdict == C.HOLDS                 # the same latents moved less: more faithful
    assert case(0.7).verdict == C.NOT
    assert case(0.5).verdict == C.UNRESOLVED            # identical moves: zero difference, no verdict


def test_cluster_claim_reads_faithfulness_fid_and_recall_intervals(tmp_path):
    rng = np.random.default_rng(2)
    n, dim = 600, 4
    real = rng.normal(size=(3000, dim))
    mu, sig = feature_stats(real)
    f0 = rng.normal(size=(n, dim))
    noise = rng.normal(size=(n, dim))
    ctx = _ctx(tmp_path)
    ctx.figures["metrics_reference"] = (Reference("synthetic", "test", real, mu, sig), None)
    # psi-truncation shrinks every sample towards the mean; the cluster truncation barely moves them
    _sweep(ctx, f0, [("truncation", "psi=1.0", f0, {}),
                     ("truncation", "psi=0.5", 0.5 * f0, {"fid": 2.0, "recall": 0.1}),
                     ("cluster", "mixture=learned,psi=0.5", 0.97 * f0 + 0.03 * noise, {"fid": 0.1, "recall": 0.5})])
    claim = C.cluster(ctx)
    assert claim.verdict == C.HOLDS, claim.measured
    assert "ψ 0.5: feature change" in claim.measured


def test_a_stored_protocol_run_decides_and_the_page_is_shown_beside_it(tmp_path):
    """Issue 43: where a protocol run of these weights is stored, its verdict is the claim's and the
    page's quick measurement stays beside it."""
    from latentatlas.metrics.uncertainty import interval
    ctx = _ctx(tmp_path)
    ctx.invert_n = 8
    base = {"method": "W+ (I2S)", "psnr": 30.0, "ppl": 40.0, C.SEM: 6.0, "edit range": 0.40}
    prior = {"method": "W+ Gaussian prior 1e-5", "psnr": 25.0, "ppl": 36.0, C.SEM: 6.0, "edit range": 0.42}
    ctx.figures["inversion"] = [base, prior]
    page = C.gaussian_prior(ctx)
    assert page.verdict == C.UNRESOLVED and page.page_verdict is None
    methods = {m: {"psnr": r["psnr"], "ppl": p, "ppl_sem": 1.0, "ppl_pairs": 1000, "edit range": r["edit range"]}
               for (m, r), p in zip((("W+ (I2S)", base), ("W+ Gaussian prior 1e-5", prior)), (40.0, 30.0))}
    edit = interval(0.05, 0.01, 100, "paired bootstrap")
    rec = {"protocol": "ii2s", "n": 100, "weights_hash": "abc", "methods": methods,
           "versus_base": {"W+ Gaussian prior 1e-5": {"edit": edit, "psnr": interval(-5.0, 0.3, 100, "paired")}},
           "outliers": {"> 3, first 10 dims": 0.01, "> 3, later dims": 0.2, "excess": interval(0.18, 0.01, 100, "b")}}
    ctx.figures["protocols"] = {"ii2s": rec}
    claim = C.gaussian_prior(ctx)
    assert claim.verdict == C.HOLDS and claim.page_verdict == C.UNRESOLVED
    html = C.render([claim])
    assert "Protocol run" in html and "This page" in html and "this page: not resolved at this N" in html
    assert C.outliers(ctx).verdict == C.HOLDS           # the page measured no outliers; the stored run did


def test_stored_records_round_trip_and_a_broken_one_is_skipped(tmp_path, monkeypatch, tiny_sg2):
    from latentatlas.evaluation import stored
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(stored, "SHIPPED", tmp_path / "none")
    path = stored.save_record(tiny_sg2, "diamond-table1", {"n": 10, "table1": {"x": 1}})
    got = stored.load_records(tiny_sg2)
    assert got["diamond-table1"]["n"] == 10 and got["diamond-table1"]["weights_hash"] == tiny_sg2.weights_hash()
    path.write_text("{not json")
    assert stored.load_records(tiny_sg2) == {}
    path.write_text('{"protocol": "ii2s", "weights_hash": "other"}')
    assert stored.load_records(tiny_sg2) == {}


def test_the_shipped_protocol_runs_decide_the_bundled_models_claims(tmp_path, monkeypatch):
    """The stored runs shipped for fashion-stylegan2's weights: Table 1 at N = 10,000 reads *mixed*
    (Diamond is worse than the untruncated baseline beyond the noise and better than the best
    truncation) — no longer *holds* — and the II2S run at n = 100 leaves the prior's claim
    unresolved."""
    from latentatlas.evaluation import stored
    from latentatlas.models.registry import load_generator
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))       # the shipped records only
    m = load_generator("fashion-stylegan2")
    recs = stored.load_records(m)
    assert {"diamond-table1", "ii2s"} <= set(recs) and recs["diamond-table1"]["n"] == 10_000
    t1 = C._diamond_table1(recs["diamond-table1"])
    assert t1.verdict == C.MIXED and "+0.028 [+0.011, +0.043]" in t1.measured
    ctx = _ctx(tmp_path)
    ctx.figures["protocols"] = recs
    assert C.gaussian_prior(ctx).verdict == C.UNRESOLVED
    assert C.outliers(ctx).verdict == C.HOLDS
