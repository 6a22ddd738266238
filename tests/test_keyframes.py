"""Issue 41 (item 4): keyframe videos through seeds, saved latents and inverted images."""
from pathlib import Path

import pytest
import torch

from latentatlas.cli.main import main
from latentatlas.walks.keyframes import keyframe_path

from conftest import model_and_images

R2 = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures" / "round2"


@pytest.mark.parametrize("space", ["z", "wplus"])
def test_the_path_visits_every_keyframe_once(space):
    keys = torch.randn(3, 4, 8) if space == "wplus" else torch.randn(3, 8) * 3
    path = keyframe_path(keys, 5, space)
    assert path.shape[0] == (3 - 1) * (5 - 1) + 1
    for i, f in zip(range(3), (0, 4, 8)):
        assert torch.allclose(path[f, 0], keys[i], atol=1e-5)
    if space == "z":                      # slerp: the norm interpolates linearly, never through the origin
        t = 0.5
        assert torch.allclose(path[2, 0].norm(), (1 - t) * keys[0].norm() + t * keys[1].norm(), rtol=1e-4)


def test_walk_between_seeds_a_saved_latent_and_an_image(tiny_sg2, tmp_path, capsys):
    import json
    f, src = model_and_images(tiny_sg2, tmp_path, seed=3, n=1)
    assert main(["sample", "--model", str(f), "--seeds", "4,6", "--out-dir", str(tmp_path / "s")]) == 0
    out, gif = tmp_path / "k.png", tmp_path / "k.gif"
    capsys.readouterr()
    assert main(["walk", "--model", str(f), "--between", "1", str(tmp_path / "s" / "latents.npz:1"),
                 str(src / "im0.png"), "--invert-steps", "3", "--steps", "4", "--out", str(out), "--video", str(gif),
                 "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["space"] == "wplus" and info["frames"] == 7 and out.is_file() and gif.is_file()
    assert [k["kind"] for k in info["keyframes"]] == ["seed", "latent", "image"]
    assert main(["walk", "--model", str(f), "--between", "1", "2", "--steps", "3", "--out", str(tmp_path / "z.png")]) == 0


@pytest.mark.parametrize("argv,message", [
    (["--between", "1", "2", "--n", "3"], "--n does not apply to keyframe walks"),
    (["--between", "1"], "at least two keyframes"),
    (["--between", "1", "x.txt"], "not a seed"),
    (["--between", "1", "2", "--kind", "dp"], "--kind chooses a walk along a direction"),
    (["--space", "z", "--direction", "d.npz:0"], "--space applies to keyframe walks"),
])
def test_walk_between_refuses_what_does_not_apply(tiny_sg2, tmp_path, capsys, argv, message):
    f, _ = model_and_images(tiny_sg2, tmp_path, seed=3, n=1)
    assert main(["walk", "--model", str(f), "--out", str(tmp_path / "o.png")] + argv) == 2
    assert message in capsys.readouterr().err


def test_a_z_only_model_interpolates_in_z_and_refuses_wplus(tmp_path, capsys):
    assert main(["walk", "--model", "fashion-wgangp", "--between", "1", "2", "--space", "wplus",
                 "--out", str(tmp_path / "o.png")]) == 2
    assert "has only a Z space" in capsys.readouterr().err
    assert main(["walk", "--model", "fashion-wgangp", "--between", "1", "2", "3", "--steps", "3",
                 "--out", str(tmp_path / "o.png")]) == 0


@pytest.mark.parametrize("fixture,extra", [("c4t-sg3-T-32.pkl", []), ("c1-sg2ada-64-cond.pkl", ["--class", "1"])])
def test_keyframes_on_sg3_and_conditional_fixtures(fixture, extra, tmp_path):
    if not (R2 / fixture).is_file():
        pytest.skip(f"{fixture} not present")
    for space in ("z", "wplus"):
        assert main(["walk", "--model", str(R2 / fixture), "--between", "3", "8", "--space", space, "--steps", "3",
                     "--out", str(tmp_path / f"{space}.png")] + extra) == 0


def test_density_preserving_keyframes_stay_on_the_shell():
    """pnorm+sphere: each row's P-norm+ norm moves linearly between the keyframes' (lerp's dips)."""
    from types import SimpleNamespace

    from latentatlas.walks.keyframes import keyframe_path

    class Identity:                       # P-norm+ coordinates = the codes themselves
        def transform(self, x):
            return x

        def inverse_transform(self, x):
            return x

        def to(self, device):
            return self
    atlas = SimpleNamespace(pnorm_plus=Identity())
    g = torch.Generator().manual_seed(0)
    keys = torch.randn(2, 4, 256, generator=g)
    sph = keyframe_path(keys, 9, "pnorm+sphere", atlas=atlas)[:, 0]
    lin = keyframe_path(keys, 9, "pnorm+", atlas=atlas)[:, 0]
    na, nb = keys[0].norm(dim=-1), keys[1].norm(dim=-1)
    mid = (na + nb) / 2
    assert torch.allclose(sph[4].norm(dim=-1), mid, rtol=1e-4)          # the shell kept
    assert (lin[4].norm(dim=-1) < 0.8 * mid).all()                      # a straight line cuts inside it
    assert torch.allclose(sph[0], keys[0], atol=1e-4) and torch.allclose(sph[-1], keys[1], atol=1e-4)
