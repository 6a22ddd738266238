"""One atlas that every command uses: --atlas FILE is the atlas used, a mismatched one is
refused, nothing is fitted silently, and no test touches the real user cache."""
import numpy as np
import pytest
from PIL import Image

from latentatlas.cli.main import main


@pytest.fixture(autouse=True)
def _own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


def _fit(tmp_path, name, seed, n):
    out = tmp_path / name
    assert main(["fit", "--model", "fashion-stylegan2", "--n", str(n), "--seed", str(seed),
                 "--clusters", "coarse=2,medium=2,fine=2", "--learned-steps", "0", "--out", str(out)]) == 0
    return out


def test_atlas_option_is_the_atlas_used(tmp_path, capsys):
    a1, a2 = _fit(tmp_path, "a1.npz", 0, 3000), _fit(tmp_path, "a2.npz", 7, 500)
    capsys.readouterr()
    outs = []
    for a in (a1, a2, a1):
        out = tmp_path / f"s{len(outs)}.png"
        assert main(["sample", "--model", "fashion-stylegan2", "--n", "8", "--strategy", "pca-log",
                     "--param", "tau=0.5", "--atlas", str(a), "--out", str(out)]) == 0
        outs.append(np.asarray(Image.open(out), dtype=np.int16))
    assert np.array_equal(outs[0], outs[2]) and np.abs(outs[0] - outs[1]).max() > 10
    assert not (tmp_path / "cache").exists()          # nothing fitted when an atlas is given
    # fit --inspect prints what the atlas records
    capsys.readouterr()
    assert main(["fit", "--inspect", str(a2), "--json"]) == 0
    info = __import__("json").loads(capsys.readouterr().out)
    assert info["n"] == 500 and info["seed"] == 7 and info["em_clusters"] and info["versions"]["torch"]


def test_atlas_refused_where_it_does_not_apply_or_mismatches(tmp_path, capsys):
    a = _fit(tmp_path, "a.npz", 0, 500)
    capsys.readouterr()
    assert main(["sample", "--model", "fashion-stylegan2", "--n", "2", "--atlas", str(a),
                 "--out", str(tmp_path / "x.png")]) == 2        # plain sampling reads no atlas
    assert "does not apply" in capsys.readouterr().err
    assert main(["sample", "--model", "fashion-wgangp", "--n", "2", "--strategy", "pca-log", "--atlas", str(a),
                 "--out", str(tmp_path / "x.png")]) == 2
    capsys.readouterr()
    assert main(["invert", str(tmp_path), "--model", "fashion-stylegan2", "--space", "wplus", "--atlas", str(a),
                 "--out", str(tmp_path / "inv")]) == 2
    assert not (tmp_path / "x.png").exists() and not (tmp_path / "inv").exists()


def test_without_an_atlas_the_fit_is_announced_and_minimal(tmp_path, caplog):
    """pca-log needs only the P-norm statistics: no mixture is fitted, and it says so first."""
    from latentatlas.atlas import get_atlas
    from latentatlas.cache import cache_dir
    from latentatlas.models.registry import load_generator
    m = load_generator("fashion-stylegan2")
    with caplog.at_level("WARNING"):
        atlas = get_atlas(m, need="pnorm", n=2000)
    assert atlas.em is None and "fitting the P-norm statistics of N=2,000" in caplog.text
    assert len(list(cache_dir().glob("*-pnorm.npz"))) == 1
    caplog.clear()
    with caplog.at_level("WARNING"):
        get_atlas(m, need="pnorm", n=2000)        # cached now: silent
    assert "fitting" not in caplog.text
