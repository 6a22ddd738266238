import json
import subprocess
from pathlib import Path
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import tiny_stylegan2
from latentatlas.cli.main import main
from latentatlas.models.registry import load_generator, save_model


@pytest.fixture
def tiny_file(tmp_path):
    m = tiny_stylegan2()
    return save_model(tmp_path / "tiny.pt", arch="stylegan2", config=m.cfg.to_dict(), G=m.G, D=m.D,
                      meta={"note": "test"})


def run(args, capsys):
    code = main(args)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_models_lists_bundled(capsys):
    code, out, _ = run(["models", "--json"], capsys)
    assert code == 0
    names = {r["name"] for r in json.loads(out)}
    assert {"faces-dcgan", "fashion-stylegan2", "fashion-wgangp"} <= names


def test_sample_grid_and_dir(tiny_file, tmp_path, capsys):
    code, _, err = run(["sample", "--model", str(tiny_file), "--n", "6", "--seed", "4",
                        "--out", str(tmp_path / "g.png"), "--out-dir", str(tmp_path / "d")], capsys)
    assert code == 0, err
    assert Image.open(tmp_path / "g.png").size[0] > 16
    lat = np.load(tmp_path / "d" / "latents.npz")
    assert lat["z"].shape == (6, 8) and list(lat["seeds"]) == [4, 5, 6, 7, 8, 9]
    assert lat["ws"].shape == (6, 6, 8)
    # seed 6 alone gives the same image as the third of the batch
    code, _, _ = run(["sample", "--model", str(tiny_file), "--n", "1", "--seed", "6",
                      "--out-dir", str(tmp_path / "e")], capsys)
    a = np.asarray(Image.open(tmp_path / "d" / "seed000006.png"))
    b = np.asarray(Image.open(tmp_path / "e" / "seed000006.png"))
    assert np.array_equal(a, b)


def test_faces_grid_same_on_any_batch_size(tmp_path, capsys):
    pytest.importorskip("gan_face_generate")
    for bs in ("16", "5"):
        code, _, err = run(["sample", "--model", "faces-dcgan", "--n", "16", "--batch-size", bs,
                            "--out", str(tmp_path / f"f{bs}.png")], capsys)
        assert code == 0, err
    a, b = (np.asarray(Image.open(tmp_path / f"f{bs}.png")) for bs in ("16", "5"))
    assert a.shape == (2 + 4 * 66, 2 + 4 * 66, 3) and np.array_equal(a, b)
    assert a.std() > 20   # real faces, not a blank canvas


@pytest.mark.parametrize("args,msg", [
    (["sample", "--model", "no-such-model", "--out", "x.png"], "unknown model 'no-such-model'"),
    (["sample", "--model", "/nonexistent/m.pt", "--out", "x.png"], "no such file"),
    (["sample", "--model", "faces-dcgan", "--truncation-psi", "0.5", "--out", "x.png"], "needs a W space"),
    (["sample", "--model", "faces-dcgan", "--out", "x.jpg"], "only .png"),
])
def test_errors_are_one_line(args, msg, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, _, err = run(args, capsys)
    assert code == 2
    assert msg in err and err.count("\n") == 1 and "Traceback" not in err
    assert not list(tmp_path.iterdir())          # nothing half-written


def test_bad_numbers_rejected(capsys):
    for bad in (["--n", "0"], ["--n", "abc"], ["--seed", "-1"], ["--truncation-psi", "nan"]):
        assert main(["sample", "--model", "faces-dcgan", "--out", "x.png", *bad]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("latentatlas: error:") and "\n" not in err


def test_corrupt_and_truncated_files(tiny_file, tmp_path, capsys):
    data = tiny_file.read_bytes()
    (tmp_path / "trunc.pt").write_bytes(data[: len(data) // 2])
    (tmp_path / "junk.pt").write_bytes(b"hello world")
    (tmp_path / "empty.pt").write_bytes(b"")
    for name, msg in [("trunc.pt", "corrupt"), ("junk.pt", "unknown format"), ("empty.pt", "empty file")]:
        code, _, err = run(["sample", "--model", str(tmp_path / name), "--out", str(tmp_path / "o.png")], capsys)
        assert code == 2 and msg in err and str(tmp_path / name) in err
    assert not (tmp_path / "o.png").exists()


def test_wrong_architecture_keys(tiny_file, tmp_path, capsys):
    ck = torch.load(tiny_file, weights_only=True)
    del ck["G"]["mapping.fc0.weight"]
    ck["G"]["synthesis.b8.conv0.weight"] = torch.zeros(3, 3, 3, 3)
    torch.save(ck, tmp_path / "bad.pt")
    code, _, err = run(["sample", "--model", str(tmp_path / "bad.pt"), "--out", str(tmp_path / "o.png")], capsys)
    assert code == 2 and "missing keys ['mapping.fc0.weight']" in err
    ck = torch.load(tiny_file, weights_only=True)
    ck["G"]["synthesis.b8.conv0.weight"] = torch.zeros(3, 3, 3, 3)
    torch.save(ck, tmp_path / "bad2.pt")
    code, _, err = run(["sample", "--model", str(tmp_path / "bad2.pt"), "--out", str(tmp_path / "o.png")], capsys)
    assert code == 2 and "shape mismatch for synthesis.b8.conv0.weight" in err and "[3, 3, 3, 3]" in err


def test_nan_latent_rejected(tiny_file):
    from latentatlas.errors import LatentAtlasError
    m = load_generator(str(tiny_file))
    with pytest.raises(LatentAtlasError, match="NaN"):
        m(torch.full((1, 8), float("nan")))


def test_console_script_help():
    out = subprocess.run([sys.executable, "-m", "latentatlas.cli", "sample", "--help"],
                         capture_output=True, text=True)
    assert out.returncode == 0 and "--truncation-psi" in out.stdout


def test_report_writes_html(tiny_file, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    code, _, err = run(["report", "--model", str(tiny_file), "--out", str(tmp_path / "rep"), "--n", "8",
                        "--profile", "quick"], capsys)
    assert code == 0, err
    html = (tmp_path / "rep" / "index.html").read_text()
    assert "samples.png" in html and "weights hash" in html
    for sec in ("latent-space", "sampling", "inversion", "walks"):
        assert f'id="{sec}"' in html
    assert "section not available" not in html and "not available:" not in html
    assert 'id="overview"' in html and "early: b4.conv1" in html    # early-vs-late directions ran
    for f in ("samples.png", "marginals.png", "multilevel-em.png", "multilevel-learned.png", "inversion.png",
              "pnorm_hist.png"):
        assert (tmp_path / "rep" / f).exists(), f
    # a rerun replaces the report; an unrelated non-empty directory is refused
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "keep.txt").write_text("x")
    code, _, err = run(["report", "--model", str(tiny_file), "--out", str(tmp_path / "other"),
                        "--sections", "model"], capsys)
    assert code == 2 and "not overwriting" in err and (tmp_path / "other" / "keep.txt").exists()


def test_fit_command(tiny_file, tmp_path, capsys):
    code, out, err = run(["fit", "--model", str(tiny_file), "--n", "3000", "--out", str(tmp_path / "a.npz"),
                          "--clusters", "coarse=2,medium=2,fine=2", "--plots", str(tmp_path / "m.png"), "--json"], capsys)
    assert code == 0, err
    d = json.loads(out)
    assert {r["space"] for r in d["normality"]} == {"W", "P", "P-norm"}
    assert (tmp_path / "a.npz").exists() and (tmp_path / "m.png").exists()
    code, _, err = run(["fit", "--model", "faces-dcgan", "--out", str(tmp_path / "b.npz")], capsys)
    assert code == 2 and "needs a mapping network" in err and not (tmp_path / "b.npz").exists()


def test_invert_command_resumable(tiny_file, tmp_path, capsys):
    from latentatlas.imageio import save_png
    m = load_generator(str(tiny_file))
    imgs = m(m.sample_z(3, 9)).clamp(-1, 1).detach()
    src = tmp_path / "in"
    for i in range(3):
        save_png(imgs[i], src / f"im{i}.png")
    Image.open(src / "im0.png").convert("RGB").resize((24, 24)).save(src / "big.png")   # wrong size and mode
    (src / "broken.png").write_bytes(b"not a png")
    args = ["invert", str(src), "--model", str(tiny_file), "--steps", "5", "--out", str(tmp_path / "out"),
            "--regularizer", "pnorm-clip:2", "--json", "--min-psnr", "0"]
    code, out, err = run(args, capsys)
    d = json.loads(out)
    # an unreadable file is reported and makes the exit code 1; the readable ones are inverted
    assert code == 1 and d["done"] == 4 and len(d["failed"]) == 1 and "broken.png" in d["failed"][0]["file"]
    assert d["verdict"]["n"] == 4 and d["verdict"]["below"] == [] and d["verdict"]["min_psnr"] == 0
    assert "resized 24x24->16x16" in d["notes"]["big.png"] and "converted RGB->L" in d["notes"]["big.png"]
    rec = json.loads((tmp_path / "out" / "im1.json").read_text())
    assert {"psnr", "ssim", "rmse", "perceptual"} <= set(rec)
    z = np.load(tmp_path / "out" / "im1.npz")
    assert z["ws"].shape == (6, 8) and str(z["space"]) == "wplus" and "pnorm-clip" in str(z["config"])
    assert {"init", "stop_reason", "converged", "ok", "steps"} <= set(rec) and rec["ok"] is True
    (src / "broken.png").unlink()
    code, out, _ = run(args, capsys)
    assert code == 0 and json.loads(out)["skipped_finished"] == 4 and json.loads(out)["done"] == 0
    # the verdict covers the finished images too; a threshold above them all gives exit code 3
    code, out, _ = run(args[:-1] + ["99"], capsys)
    assert code == 3 and len(json.loads(out)["verdict"]["below"]) == 4
    # another configuration into the same directory is refused, never silently skipped
    code, _, err = run([a if a != "5" else "6" for a in args], capsys)
    assert code == 2 and "another model or configuration" in err and "steps 5 -> 6" in err


def test_every_option_of_every_command_has_help():
    import argparse

    from latentatlas.cli.main import build_parser
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    missing = [f"{name} {'/'.join(a.option_strings) or a.dest}"
               for name, sp in sub.choices.items() for a in sp._actions
               if not a.help and not isinstance(a, argparse._HelpAction)]
    assert not missing, missing
    for name, sp in sub.choices.items():
        assert sp.description, name
        sp.format_help()   # every %(default)s expands


def test_help_tables_come_from_the_registries():
    import argparse

    from latentatlas.cli.main import build_parser
    from latentatlas.inversion import REGULARIZER_TABLE
    from latentatlas.inversion.inits import INIT_TABLE
    from latentatlas.sampling import strategy_names
    from latentatlas.walks.directions import METHODS
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    helps = {k: sub.choices[k].format_help() for k in ("sample", "invert", "directions")}
    for name in strategy_names():
        assert f"  {name}:" in helps["sample"], name
    for name, (v, what, _) in REGULARIZER_TABLE.items():
        assert f"  {name}" in helps["invert"] and (what == "-" or f"default {what}={v:g}" in helps["invert"]), name
    for spec in INIT_TABLE:
        assert f"  {spec}:" in helps["invert"], spec
    for name in METHODS:
        assert f"  {name}:" in helps["directions"], name
    assert "k=10, n=20000" in helps["directions"]          # ganspace's own defaults, read from its signature


def test_global_options_before_or_after_the_subcommand(capsys):
    """--json/--device/--debug mean the same before and after the subcommand, on every one."""
    import json as _json

    from latentatlas.cli.main import build_parser
    p = build_parser()
    sub = next(a for a in p._actions if isinstance(a, __import__("argparse")._SubParsersAction))
    for name, sp in sub.choices.items():
        for opt in ("--json", "--debug", "--device"):
            assert any(opt in a.option_strings for a in sp._actions), f"{name} lacks {opt}"
    a = p.parse_args(["--json", "--device", "cpu", "models"])
    b = p.parse_args(["models", "--json", "--device", "cpu"])
    assert (a.json, a.device) == (b.json, b.device) == (True, "cpu")
    assert p.parse_args(["models"]).device == "auto"
    assert main(["--json", "models"]) == 0
    assert isinstance(_json.loads(capsys.readouterr().out), list)
    assert main(["--device", "nonsense", "sample", "--model", "fashion-stylegan2", "--n", "1"]) == 2
    assert "unknown device" in capsys.readouterr().err


def test_top_level_api():
    import latentatlas
    from latentatlas import Atlas, invert, load_generator, save_grid  # noqa: F401
    assert callable(load_generator) and "load_generator" in latentatlas.__all__
    # every top-level name and every public method of its classes says what it takes and returns
    import inspect

    from latentatlas.models.interface import GANModel, StyleGANModel
    missing = []
    for name in latentatlas.__all__:
        obj = getattr(latentatlas, name)
        members = [(name, obj)] + ([(f"{name}.{k}", v) for k, v in vars(obj).items() if not k.startswith("_")]
                                   if inspect.isclass(obj) else [])
        members += [(f"{c.__name__}.{k}", v) for c in (GANModel, StyleGANModel) if name == "load_generator"
                    for k, v in vars(c).items() if not k.startswith("_")]
        for label, v in members:
            f = v.fget if isinstance(v, property) else getattr(v, "__func__", v)
            if callable(f) and not (f.__doc__ or "").strip():
                missing.append(label)
    assert not missing, missing


def test_readme_python_section_runs(tmp_path, monkeypatch):
    """The README's Python tour runs as written."""
    import re
    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = text.split("## Tour: Python", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "README.md (Tour: Python)", "exec"), {})
    assert (tmp_path / "grid.png").is_file()


def test_peer_conveniences_seeds_noise_scale_mix(tmp_path, capsys):
    """--seeds ranges name the same latents as --seed/--n; --noise-mode is a real switch; mix
    takes coarse rows from the row codes."""
    a, b = tmp_path / "a", tmp_path / "b"
    assert main(["sample", "--model", "fashion-stylegan2", "--seeds", "3-5,9", "--out-dir", str(a)]) == 0
    assert main(["sample", "--model", "fashion-stylegan2", "--seed", "3", "--n", "3", "--out-dir", str(b)]) == 0
    assert sorted(p.name for p in a.glob("*.png")) == ["seed000003.png", "seed000004.png", "seed000005.png", "seed000009.png"]
    assert (a / "seed000004.png").read_bytes() == (b / "seed000004.png").read_bytes()
    assert main(["sample", "--model", "fashion-stylegan2", "--seeds", "1-2", "--n", "3", "--out", str(tmp_path / "x.png")]) == 2
    imgs = {}
    for mode in ("const", "random", "none"):
        assert main(["sample", "--model", "fashion-stylegan2", "--n", "2", "--noise-mode", mode, "--scale", "1",
                     "--out", str(tmp_path / f"{mode}.png")]) == 0
        imgs[mode] = np.asarray(Image.open(tmp_path / f"{mode}.png"), dtype=np.int16)
    assert imgs["const"].shape == (36, 70) and np.abs(imgs["const"] - imgs["none"]).max() > 0
    assert main(["sample", "--model", "fashion-wgangp", "--n", "2", "--noise-mode", "random", "--out", str(tmp_path / "y.png")]) == 2
    assert main(["mix", "0-2", "10-11", "--model", "fashion-stylegan2", "--split", "coarse", "--scale", "1",
                 "--out", str(tmp_path / "mix.png")]) == 0
    grid = np.asarray(Image.open(tmp_path / "mix.png"))
    assert grid.shape == (2 + 4 * 34, 2 + 3 * 34)
    assert main(["mix", "0", "1", "--model", "fashion-wgangp", "--out", str(tmp_path / "m2.png")]) == 2
    assert main(["mix", "0", "1", "--model", "fashion-stylegan2", "--split", "99", "--out", str(tmp_path / "m3.png")]) == 2


def test_directions_options_that_do_not_apply_are_refused(capsys, tmp_path):
    for argv, msg in ((["--method", "mean-diff", "--k", "3"], "--k does not apply to the mean-diff"),
                      (["--method", "ganspace", "--steps", "5"], "--steps does not apply to the ganspace"),
                      (["--method", "sefa", "--n", "100"], "--n does not apply to the sefa")):
        code = main(["directions", "--model", "fashion-stylegan2", "--out", str(tmp_path / "d.npz"), *argv])
        err = capsys.readouterr().err.strip().splitlines()[-1]
        assert code == 2 and msg in err and not (tmp_path / "d.npz").exists()


def test_model_card_markdown_renders_as_escaped_html():
    from latentatlas.report.markdown import to_html
    md = ("# name\n\nText with `code <b>` and **bold** <script>alert(1)</script>.\n\n* one\n* two `x`\n\n"
          "| metric | value |\n|---|---|\n| fid | <1> |\n")
    out = to_html(md)
    assert "<h3>name</h3>" in out and "<code>code &lt;b&gt;</code>" in out and "<strong>bold</strong>" in out
    assert "<script>" not in out and "&lt;script&gt;" in out
    assert "<ul><li>one</li><li>two <code>x</code></li></ul>" in out
    assert "<th>metric</th>" in out and "<td>&lt;1&gt;</td>" in out


def test_allocator_policy_applies_and_can_be_declined():
    # glibc here: the policy is in force; LATENTATLAS_MALLOC=default leaves the allocator alone
    import os
    code = "from latentatlas.runtime import tune_allocator as t; print(t(), t())"
    on = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                        env={**os.environ, "LATENTATLAS_MALLOC": ""})
    off = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "LATENTATLAS_MALLOC": "default"})
    assert off.stdout.split() == ["False", "False"]
    try:
        glibc = sys.platform.startswith("linux") and bool(os.confstr("CS_GNU_LIBC_VERSION"))
    except (ValueError, OSError):
        glibc = False
    assert on.stdout.split() == (["True", "True"] if glibc else ["False", "False"])


def test_plots_names_a_folder_for_evaluate_inversion_and_a_file_for_atlas(tmp_path):
    """The two commands' --plots differ: evaluate-inversion writes histograms into a folder that may
    already exist; atlas writes one PNG, and a folder there is refused before any work."""
    import argparse

    from latentatlas.cli.main import _check_outputs
    from latentatlas.errors import LatentAtlasError
    _check_outputs(argparse.Namespace(command="evaluate-inversion", plots=str(tmp_path)))
    with pytest.raises(LatentAtlasError, match="is a directory, expected a file name"):
        _check_outputs(argparse.Namespace(command="atlas", plots=str(tmp_path)))
    with pytest.raises(LatentAtlasError, match="is a file, expected a directory"):
        (tmp_path / "f").write_text("x")
        _check_outputs(argparse.Namespace(command="evaluate-inversion", plots=str(tmp_path / "f")))
