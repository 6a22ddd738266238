"""The report's one table of every method: identical columns for every family, each computed by
one function from the images a method produced and the images it started from."""
import torch

from latentatlas.models.interface import ModelInfo, StyleGANModel
from latentatlas.report.context import ReportContext
from latentatlas.report.overview import overview_rows
from latentatlas.walks.density import DPConfig, train_dp_lase
from latentatlas.walks.directions import compute_directions

from conftest import tiny_stylegan2


def _fashion_shaped(seed=0):
    m = tiny_stylegan2(seed, img_resolution=32, channels={4: 16, 8: 16, 16: 8, 32: 8})
    return StyleGANModel(ModelInfo("tiny-fashion", "stylegan2", "test fixture", extra={"data": "Fashion-MNIST train"}),
                         m.G, m.D)


def test_every_family_on_the_same_columns(tmp_path):
    m = _fashion_shaped()
    ctx = ReportContext(model=m, out=tmp_path, overview_n=16, invert_steps=7)
    base = {"strategy": "truncation", "params": "psi=1.0", "fid": 9.0, "kid": 0.1, "precision": 0.5, "recall": 0.4,
            "coverage": 0.3, "realism": 0.8, "share_unrealistic": 0.6, "pixel_dist": 0.0, "class_preserved": 1.0}
    best = {**base, "params": "psi=0.7", "fid": 7.0, "pixel_dist": 2.5, "class_preserved": 0.9}
    worse = {**base, "params": "psi=0.5", "fid": 8.0, "pixel_dist": 4.0, "class_preserved": 0.8}
    # psi=1.0 (identity, pixel_dist 0) is not a strategy's "best setting"; psi=0.7 beats psi=0.5
    ctx.figures["sampling"] = {"n": 500, "baseline": base, "rows": [base, worse, best, {"strategy": "x", "error": "n/a"}]}
    with torch.no_grad():
        targets = m(m.sample_z(12, 3)).clamp(-1, 1)
    noisy = (targets + 0.3 * torch.randn_like(targets)).clamp(-1, 1)
    ctx.figures["inversion_images"] = (targets, {"exact": targets.clone(), "noisy": noisy})
    d = compute_directions(m, "ganspace", k=2, n=500)
    dp, _ = train_dp_lase(m, DPConfig(steps=3, batch=32), space="w", directions=d.vectors, sigmas=d.sigmas)
    ctx.figures["direction_sets"] = [("ganspace", d, dp)]

    rows, notes = overview_rows(ctx)
    assert notes == []
    assert [r["family"] for r in rows] == ["sampling"] * 2 + ["inversion"] * 2 + ["directions"] * 2
    assert len({tuple(r) for r in rows}) == 1, "every row has the same columns"
    s0, s1, exact, noisy_row, lin, dpw = rows
    assert (s0["method"], s0["fid"], s1["setting"], s1["pixel_dist"], s1["class_kept"]) == \
        ("none (baseline)", 9.0, "psi=0.7", 2.5, 0.9)
    assert exact["pixel_dist"] == 0 and exact["class_kept"] == 1.0 and exact["n"] == 12
    expected = float((noisy - targets).flatten(1).norm(dim=1).mean())
    assert abs(noisy_row["pixel_dist"] - expected) < 1e-5 and noisy_row["pixel_dist"] > 1
    assert exact["kid"] is not None and exact["fid"] is None     # 12 images < feature dims: no singular FID
    for r in (lin, dpw):
        assert r["n"] == 32 and r["pixel_dist"] > 0 and 0 <= r["class_kept"] <= 1 and r["realism"] >= 0
    assert lin["method"] == "ganspace linear" and dpw["method"] == "ganspace dp"


def test_without_a_reference_the_table_says_why(tmp_path, tiny_sg2):
    rows, notes = overview_rows(ReportContext(model=tiny_sg2, out=tmp_path))
    assert rows == [] and "needs --reference DIR" in notes[0]


def test_summary_names_the_profile_and_its_sizes(tmp_path):
    from latentatlas.report.claims import Claim
    from latentatlas.report.build import _summary
    from latentatlas.report.context import PROFILES, ReportContext
    ctx = ReportContext(model=None, out=tmp_path, profile="quick", **PROFILES["quick"])
    assert _summary(ctx) == ""                      # nothing measured: no summary block
    fields = Claim.__dataclass_fields__
    ctx.figures["claims"] = [Claim(**{k: ("holds" if k == "verdict" else "x") for k in fields})]
    text = _summary(ctx)
    assert ("Profile quick: 400 samples per sampling-sweep point, 40 inversion steps, 60 DP-LaSE steps; sweep at "
            "psi 1, 0.6, 0.2; tau inf, 2, 1, 0; sigma 0, 0.02, 0.1, 0.3, auto") in text
    assert "build the full report before quoting them" in text
    full = ReportContext(model=None, out=tmp_path, profile="full", **PROFILES["full"])
    full.figures["claims"] = ctx.figures["claims"]
    assert "Profile full: 1000 samples per sampling-sweep point, 150 inversion steps, 300 DP-LaSE steps" in _summary(full)
    assert "preview" not in _summary(full)


def _readings(slope):                    # [directions, 5 edits, images, 2 attributes]
    t = torch.linspace(-1, 1, 5).reshape(1, 5, 1)
    a = (0.5 + slope * t).clamp(0, 1)
    return torch.stack([a, 1 - a], -1)


def test_the_regulariser_claim_reads_editing_by_the_edit_range_not_by_a_shorter_ppl(tmp_path):
    """II2S reads a short PPL as a sign of embeddings outside the semantic range, so a regulariser
    that lengthens PPL while the attribute moves further is better editing, not worse; each part
    is read from its paired interval over the images (edit range above zero, PSNR loss under 3 dB)."""
    from latentatlas.report.claims import HOLDS, MIXED, NA, NOT, UNRESOLVED, regularisers, render
    torch.manual_seed(0)
    n = 16
    slope = torch.rand(1, 1, n) * 0.3
    ctx = ReportContext(model=None, out=tmp_path)
    base = {"method": "W+ (I2S)", "psnr": 30.0, "ppl": 40.0, "edit range": 0.30}
    clip = {"method": "W+ clip 2", "psnr": 28.5, "ppl": 55.0, "edit range": 0.40}
    ctx.figures["inversion"] = [base, clip]
    assert regularisers(ctx).verdict == UNRESOLVED        # no per-image readings: no interval, no verdict
    psnr0 = 30 + torch.randn(n)
    ctx.figures["edit_probs"] = {"W+ (I2S)": _readings(slope), "W+ clip 2": _readings(slope + 0.1)}
    ctx.figures["inversion_psnr"] = {"W+ (I2S)": psnr0, "W+ clip 2": psnr0 - 1.5 + 0.1 * torch.randn(n)}
    claim = regularisers(ctx)
    assert claim.verdict == HOLDS and "(Δ +0.200 [+0.200, +0.200])" in claim.measured
    assert claim.claim.startswith("clip / project / L2") and render([claim]).count("<tr>") == 2     # header + the claim
    ctx.figures["edit_probs"]["W+ clip 2"] = _readings((slope - 0.1).clamp(min=0))
    assert regularisers(ctx).verdict == MIXED              # a little reconstruction lost, but worse editing
    ctx.figures["inversion_psnr"]["W+ clip 2"] = psnr0 - 6
    assert regularisers(ctx).verdict == NOT                # worse editing for 6 dB
    ctx.figures["edit_probs"]["W+ clip 2"] = _readings(slope + 0.1)
    assert regularisers(ctx).verdict == MIXED              # better editing, but 6 dB is not "a little"
    noisy = slope + 0.05 * torch.randn(1, 1, n)
    noisy = noisy - noisy.mean() + slope.mean()            # the same mean reading, images shuffled around it
    ctx.figures["edit_probs"]["W+ clip 2"] = _readings(noisy)
    ctx.figures["inversion_psnr"]["W+ clip 2"] = psnr0 - 1.5
    assert regularisers(ctx).verdict == UNRESOLVED         # the edit difference is inside the targets' spread
    ctx.figures["inversion"] = [{k: v for k, v in r.items() if k != "edit range"} for r in (base, clip)]
    assert regularisers(ctx).verdict == NA


def test_the_prior_claim_counts_a_ppl_drop_only_beyond_its_noise(tmp_path):
    from latentatlas.report.claims import HOLDS, SEM, UNRESOLVED, gaussian_prior
    ctx = ReportContext(model=None, out=tmp_path)
    a = {"method": "W+ (I2S)", "psnr": 30.0, "ppl": 40.0, SEM: 3.0, "edit range": 0.40}
    b = {"method": "W+ Gaussian prior 1e-5", "psnr": 24.0, "ppl": 35.0, SEM: 3.0, "edit range": 0.45}
    ctx.figures["inversion"] = [a, b]
    claim = gaussian_prior(ctx)
    assert claim.verdict == UNRESOLVED and "would resolve it" in claim.measured   # 5 below, within 1.96 x 4.2
    ctx.figures["inversion"] = [a, {**b, "ppl": 30.0}]
    claim = gaussian_prior(ctx)
    assert claim.verdict == HOLDS and "(Δ -10 [-18.3, -1.68])" in claim.measured


def test_the_method_table_shows_a_negative_kid_as_about_zero():
    from latentatlas.report.context import kid_text
    from latentatlas.report.sections.overview import _shown
    assert kid_text(-0.04, 0.09) == "≈ 0 (unbiased; −0.0400 ± 0.0900)"
    assert kid_text(0.0123, 0.005) == "0.0123 ± 0.0050" and kid_text(None, None) == ""
    row = _shown([{"family": "inversion", "method": "W+", "n": 16, "fid": None, "kid": -0.04, "kid_std": 0.09}])[0]
    assert row == {"family": "inversion", "method": "W+", "n": 16, "fid": None, "KID ± std": "≈ 0 (unbiased; −0.0400 ± 0.0900)"}


def test_verdicts_from_intervals_straddling_zero_are_not_resolved_and_more_samples_resolve_them():
    """Issue 43: a FID difference inside the sampling noise gives 'not resolved at this N' (with
    the N that would resolve it); the same difference measured on 100x the samples gives 'holds';
    two identical strategies give an interval containing zero."""
    import numpy as np

    from latentatlas.metrics.distribution import feature_stats, paired_fid_difference
    from latentatlas.report.claims import HOLDS, MIXED, NOT, UNRESOLVED, verdict_from_intervals
    rng = np.random.default_rng(0)
    real = rng.normal(size=(20_000, 8))
    mu, sig = feature_stats(real)

    def strategies(n):
        # both strategies move the same latents z; b adds a little less of its own noise, so its
        # FID is truly lower by ~0.024 — which 200 samples cannot tell and 20,000 can
        z = rng.normal(size=(n, 8))
        return z + 0.5 * rng.normal(size=(n, 8)), z + 0.47 * rng.normal(size=(n, 8))
    a, b = strategies(200)
    small = paired_fid_difference(mu, sig, a, b, seed=1)
    text, v = verdict_from_intervals("m", [small], lower_is_claimed=True)
    assert v == UNRESOLVED and small["lo"] < 0 < small["hi"] and "would resolve it" in text
    a, b = strategies(20_000)
    big = paired_fid_difference(mu, sig, a, b, seed=1)
    assert verdict_from_intervals("m", [big], lower_is_claimed=True)[1] == HOLDS and big["hi"] < 0
    same = paired_fid_difference(mu, sig, a, a.copy(), seed=1)
    assert same["lo"] <= 0 <= same["hi"]
    assert verdict_from_intervals("m", [big], lower_is_claimed=False)[1] == NOT
    assert verdict_from_intervals("m", [big, {**big, "lo": 0.01, "hi": 0.02}], lower_is_claimed=True)[1] == MIXED
