
import torch

from latentatlas.models.registry import load_generator
from latentatlas.train.loop import run_training
from latentatlas.train.run import build_trainer, export_trained


def test_stylegan2_and_wgangp_train_resume_export(tmp_path):
    data = torch.rand(64, 1, 32, 32) * 2 - 1
    for arch in ("stylegan2", "wgangp"):
        out = tmp_path / arch
        tr = build_trainer(arch)
        st = run_training(tr, data, out, batch=4, total_kimg=0.008, ckpt_minutes=100)
        assert st["step"] == 2 and (out / "checkpoint.pt").exists() and (out / "samples.png").exists()
        tr2 = build_trainer(arch)
        st2 = run_training(tr2, data, out, batch=4, total_kimg=0.024, ckpt_minutes=100)
        assert st2["step"] == 6                              # resumed, not restarted (step 5: a WGAN-GP G step)
        before, after = tr.G_ema.state_dict(), tr2.G_ema.state_dict()
        assert any(not torch.equal(v, after[k]) for k, v in before.items() if v.is_floating_point())  # kept training
        f = export_trained(arch, out, tmp_path / f"{arch}.pt")
        m = load_generator(str(f))
        assert m.info.extra["steps"] == 6 and m.info.extra["images_seen"] == 24
        assert m(m.sample_z(2)).shape == (2, 1, 32, 32)
        assert m.has_minibatch_std


def test_a_resumed_run_keeps_its_recipe_and_set_changes_it(tmp_path, capsys):
    from latentatlas.cli.main import main
    from latentatlas.train.run import train
    out = tmp_path / "w"
    hp = lambda: torch.load(out / "checkpoint.pt", weights_only=False)["trainer"]["hparams"]   # noqa: E731
    train("wgangp", out, batch=4, total_kimg=0.008, ckpt_minutes=100, lr=2e-4)
    assert hp()["lr"] == 2e-4
    train("wgangp", out, batch=4, total_kimg=0.016, ckpt_minutes=100)           # resumed without --set
    assert hp()["lr"] == 2e-4
    train("wgangp", out, batch=4, total_kimg=0.024, ckpt_minutes=100, gp_weight=5.0)   # a branch
    assert hp()["lr"] == 2e-4 and hp()["gp_weight"] == 5.0
    assert main(["train", "wgangp", "--out", str(out), "--set", "r1_gamma=1"]) == 2
    assert "unknown hyper-parameter" in capsys.readouterr().err


def test_a_warm_start_keeps_the_exported_recipe(tmp_path):
    # --init-from an exported model (e.g. the bundled weights) continues with the recipe its card
    # records, unless a --set changes it
    from latentatlas.train.run import export_trained, train
    first = tmp_path / "a"
    train("wgangp", first, batch=4, total_kimg=0.008, ckpt_minutes=100, lr=3e-4)
    hp = lambda out: torch.load(out / "checkpoint.pt", weights_only=False)["trainer"]["hparams"]   # noqa: E731
    export_trained("wgangp", first, tmp_path / "a.pt")
    train("wgangp", tmp_path / "b", batch=4, total_kimg=0.016, ckpt_minutes=100, init_from=str(tmp_path / "a.pt"))
    assert hp(tmp_path / "b")["lr"] == 3e-4
    train("wgangp", tmp_path / "c", batch=4, total_kimg=0.016, ckpt_minutes=100, init_from=str(tmp_path / "a.pt"),
          gp_weight=5.0)
    assert hp(tmp_path / "c")["lr"] == 3e-4 and hp(tmp_path / "c")["gp_weight"] == 5.0
