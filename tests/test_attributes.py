"""Attribute estimators for the II2S evaluation on models other than Fashion-MNIST ones: a linear
probe on the user's labelled images (--attribute-probe labels.csv) or a user function."""
import json

import pytest
import torch

from latentatlas.cli.main import main
from latentatlas.errors import LatentAtlasError
from latentatlas.imageio import save_png
from latentatlas.metrics.attributes import FunctionAttributes, LinearProbe, probe_from_csv, read_labels_csv
from latentatlas.metrics.features import DiscriminatorFeatures

from conftest import model_and_images, tiny_stylegan2


def _brightness(x):
    return x.flatten(1).mean(1)


def _labelled(model, folder, n=60, seed=0):
    """n samples of the model saved as PNGs and labelled bright/dark by their mean brightness."""
    folder.mkdir(exist_ok=True)
    with torch.no_grad():
        x = model(model.sample_z(n, seed)).clamp(-1, 1)
    b = _brightness(x)
    lines = ["path,label"]
    for i in range(n):
        save_png(x[i], folder / f"s{i:03d}.png")
        lines.append(f"s{i:03d}.png,{'bright' if b[i] > b.median() else 'dark'}")
    (folder / "labels.csv").write_text("\n".join(lines) + "\n")
    return folder / "labels.csv"


def test_probe_reads_the_attribute_it_was_fitted_on(tmp_path):
    m = tiny_stylegan2()
    csv = _labelled(m, tmp_path / "lab", n=80)
    probe = probe_from_csv(csv, m, DiscriminatorFeatures(m))
    assert probe.names == ["bright", "dark"]
    assert probe.heldout_accuracy is not None and probe.heldout_accuracy >= 0.75
    with torch.no_grad():
        x = m(m.sample_z(200, 99)).clamp(-1, 1)
    p = probe.probs(x)
    assert p.shape == (200, 2) and torch.allclose(p.sum(1), torch.ones(200))
    truth = (_brightness(x) <= _brightness(x).median()).long()     # 1 = dark
    assert float((p.argmax(1) == truth).float().mean()) >= 0.75
    # a shuffled labelling is not readable: held-out accuracy near chance
    labels = [lab for _, lab in read_labels_csv(csv)]
    g = torch.Generator().manual_seed(0)
    shuffled = [labels[i] for i in torch.randperm(len(labels), generator=g)]
    from latentatlas.data.folder import load_image
    imgs = torch.stack([load_image(p, size=16, channels=1).tensor for p, _ in read_labels_csv(csv)])
    assert LinearProbe.fit(DiscriminatorFeatures(m), imgs, shuffled).heldout_accuracy < probe.heldout_accuracy


@pytest.mark.parametrize("text,msg", [
    ("path,label\na.png\n", "line 2: expected 'path,label'"),
    ("path,label\n", "no 'path,label' rows"),
    ("a.png,x\nb.png,y\n", "does not exist"),
])
def test_labels_file_errors(tmp_path, text, msg):
    m = tiny_stylegan2()
    (tmp_path / "l.csv").write_text(text)
    with pytest.raises(LatentAtlasError, match=msg):
        probe_from_csv(tmp_path / "l.csv", m, DiscriminatorFeatures(m))


def test_probe_needs_enough_images_per_label(tmp_path):
    m = tiny_stylegan2()
    with pytest.raises(LatentAtlasError, match="at least 5 images per label; too few for \\['b'\\]"):
        LinearProbe.fit(DiscriminatorFeatures(m), torch.zeros(8, 1, 16, 16), ["a"] * 5 + ["b"] * 3)


def test_user_function_is_checked():
    fa = FunctionAttributes(lambda x: torch.ones(len(x), 3), ["a", "b"])
    with pytest.raises(LatentAtlasError, match="expected \\[4, 2\\]"):
        fa.probs(torch.zeros(4, 1, 16, 16))


def test_evaluate_inversion_on_a_non_fashion_model(tmp_path, capsys):
    m = tiny_stylegan2()
    f, src = model_and_images(m, tmp_path, seed=5, n=4)
    csv = _labelled(m, tmp_path / "ref", n=60)
    base = ["evaluate-inversion", "--model", str(f), "--n", "4", "--steps", "2", "--methods", "W+ (I2S)"]
    # what is missing is named, exit 2
    assert main(base) == 2
    assert "--targets DIR" in capsys.readouterr().err
    assert main(base + ["--targets", str(src), "--reference", str(tmp_path / "ref")]) == 2
    assert "--attribute-probe labels.csv" in capsys.readouterr().err
    assert main(base + ["--targets", str(src), "--reference", str(tmp_path / "ref"), "--attribute-probe", str(csv),
                        "--flip", "bright,blue"]) == 2
    assert "'blue' not known" in capsys.readouterr().err
    code = main(base + ["--targets", str(src), "--reference", str(tmp_path / "ref"), "--attribute-probe", str(csv),
                        "--flip", "dark,bright", "--json"])
    out = capsys.readouterr()
    assert code == 0, out.err
    rows = json.loads(out.out)
    assert [r["targets"] for r in rows] == [f"images of {src}", "generated"]
    for r in rows:
        assert r["flip_pair"] == "dark <-> bright" and set(r["edit_classes"]) <= {"bright", "dark"}
        assert 0 <= r["edit_prob_range"] <= 1 and "style_mixing_kid" in r
