"""Issue 41 (item 1, started): InterFaceGAN-style boundary directions from any attribute estimator
(a probe trained on the user's labelled images), named, conditional, and used by name."""
import json

import numpy as np
import pytest
import torch

from latentatlas.cli.main import main
from latentatlas.metrics.attributes import FunctionAttributes
from latentatlas.walks.directions import Directions, boundary

from conftest import model_and_images


def _bright(m):
    """An estimator reading 'bright' from the images' mean (a known, monotone attribute)."""
    def fn(imgs):
        s = torch.sigmoid(imgs.mean(dim=(1, 2, 3)) * 20)
        return torch.stack([s, 1 - s], 1)
    return FunctionAttributes(fn, ["bright", "dark"])


def test_the_boundary_separates_the_attribute_and_moving_along_it_changes_the_reading(tiny_sg2):
    attrs = _bright(tiny_sg2)
    d = boundary(tiny_sg2, attributes=attrs, n=2000, steps=100)
    assert d.meta["names"] == ["bright", "dark"] and d.method == "boundary" and d.space == "w"
    assert all(a > 0.7 for a in d.meta["heldout_accuracy"])
    k = d.index("bright")
    with torch.no_grad():
        w = tiny_sg2.mapping(tiny_sg2.sample_z(64, 9))
        step = d.vectors[k] * float(d.sigmas[k]) * 3
        before = attrs.probs(tiny_sg2.synthesis(tiny_sg2.broadcast(w)))[:, 0]
        after = attrs.probs(tiny_sg2.synthesis(tiny_sg2.broadcast(w + step)))[:, 0]
    assert (after > before).float().mean() > 0.8


def test_conditional_directions_are_orthogonal_to_the_conditions(tiny_sg2):
    def fn(imgs):
        a = torch.sigmoid(imgs.mean(dim=(1, 2, 3)) * 20)
        b = torch.sigmoid(imgs[:, :, :8].mean(dim=(1, 2, 3)) * 20 - imgs[:, :, 8:].mean(dim=(1, 2, 3)) * 20)
        return torch.stack([a, b, 1 - a], 1)
    attrs = FunctionAttributes(fn, ["bright", "top-heavy", "dark"])
    d = boundary(tiny_sg2, attributes=attrs, n=2000, steps=100, condition_on=["bright"])
    v = d.vectors
    assert abs(float(v[1] @ v[0])) < 1e-5 and abs(float(v[2] @ v[0])) < 1e-5
    assert d.meta["condition_on"] == ["bright"]
    with pytest.raises(Exception, match="not among the attributes"):
        boundary(tiny_sg2, attributes=attrs, n=500, steps=10, condition_on=["smiling"])


def test_directions_from_a_labels_csv_and_used_by_name(tiny_sg2, tmp_path, capsys):
    f, src = model_and_images(tiny_sg2, tmp_path, seed=3, n=24)
    rows = []
    for i, p in enumerate(sorted(src.glob("*.png"))):
        rows.append(f"{p},{'a' if i % 2 else 'b'}")
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
    out = tmp_path / "b.npz"
    assert main(["directions", "--method", "boundary", "--model", str(f), "--labels", str(tmp_path / "labels.csv"),
                 "--n", "1000", "--steps", "50", "--out", str(out), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["names"] == ["a", "b"] and info["method"] == "boundary" and len(info["heldout_accuracy"]) == 2
    assert Directions.load(out).index("b") == 1
    assert main(["walk", "--model", str(f), "--direction", f"{out}:b", "--n", "2", "--steps", "3",
                 "--out", str(tmp_path / "w.png")]) == 0
    capsys.readouterr()
    assert main(["walk", "--model", str(f), "--direction", f"{out}:smiling", "--out", str(tmp_path / "x.png")]) == 2
    assert "no direction named 'smiling'" in capsys.readouterr().err
    # options that do not apply to a method are refused
    assert main(["directions", "--method", "ganspace", "--model", str(f), "--labels", str(tmp_path / "labels.csv"),
                 "--out", str(tmp_path / "g.npz")]) == 2
    assert main(["directions", "--method", "mean-diff", "--model", str(f), "--condition-on", "a",
                 "--labels", str(tmp_path / "labels.csv"), "--out", str(tmp_path / "g.npz")]) == 2
    assert np.isfinite(Directions.load(out).vectors.numpy()).all()


def test_directions_from_the_labelled_images_inverted(tiny_sg2, tmp_path, capsys):
    """--label-source images: the labelled images are inverted and the directions fitted on their
    codes; the mean-difference of two groups of the model's own samples points from one to the other."""
    from latentatlas.imageio import save_png
    from latentatlas.models.registry import save_model
    from latentatlas.walks.directions import from_labelled_codes
    f = save_model(tmp_path / "tiny.pt", arch="stylegan2", config=tiny_sg2.cfg.to_dict(), G=tiny_sg2.G, D=tiny_sg2.D)
    with torch.no_grad():
        w = tiny_sg2.mapping(tiny_sg2.sample_z(40, 1))
    d = from_labelled_codes(tiny_sg2, w, ["x"] * 20 + ["y"] * 20, method="mean-diff")
    expect = w[:20].mean(0) - w[20:].mean(0)
    assert d.meta["names"] == ["x", "y"] and torch.allclose(d.vectors[0], (expect / expect.norm()).cpu(), atol=1e-5)
    b = from_labelled_codes(tiny_sg2, w, ["x"] * 20 + ["y"] * 20, method="boundary", steps=50)
    assert b.method == "boundary" and len(b.meta["heldout_accuracy"]) == 2 and b.meta["l2"] in (1e-3, 1e-2, 1e-1, 1.0)
    with pytest.raises(Exception, match="fewer than 5 images"):
        from_labelled_codes(tiny_sg2, w[:6], ["x"] * 5 + ["y"], method="mean-diff")
    src = tmp_path / "imgs"
    src.mkdir()
    with torch.no_grad():
        imgs = tiny_sg2(tiny_sg2.sample_z(12, 4)).clamp(-1, 1)
    rows = []
    for i in range(12):
        save_png(imgs[i], src / f"i{i}.png")
        rows.append(f"{src / f'i{i}.png'},{'x' if i < 6 else 'y'}")
    (tmp_path / "l.csv").write_text("\n".join(rows) + "\n")
    assert main(["directions", "--method", "mean-diff", "--model", str(f), "--labels", str(tmp_path / "l.csv"),
                 "--label-source", "images", "--steps", "3", "--out", str(tmp_path / "m.npz"), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["names"] == ["x", "y"] and info["source"] == "inverted labelled images" and info["images"] == 12
    assert main(["directions", "--method", "ganspace", "--model", str(f), "--labels", str(tmp_path / "l.csv"),
                 "--label-source", "images", "--out", str(tmp_path / "g.npz")]) == 2


def test_labels_as_class_sub_folders(tiny_sg2, tmp_path):
    from latentatlas.imageio import save_png
    from latentatlas.metrics.attributes import read_labelled_images
    with torch.no_grad():
        imgs = tiny_sg2(tiny_sg2.sample_z(6, 3)).clamp(-1, 1)
    for i, img in enumerate(imgs):
        d = tmp_path / ("light" if i < 3 else "dark")
        d.mkdir(exist_ok=True)
        save_png(img, d / f"{i}.png")
    (tmp_path / "light" / "notes.txt").write_text("not an image")
    rows, loaded = read_labelled_images(tmp_path, tiny_sg2)
    assert sorted(lab for _, lab in rows) == ["dark"] * 3 + ["light"] * 3 and len(loaded) == 6
    with pytest.raises(Exception, match="at least two sub-folders"):
        read_labelled_images(tmp_path / "light", tiny_sg2)
