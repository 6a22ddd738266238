import os

import pytest
import torch

from latentatlas.cli.main import main
from latentatlas.errors import LatentAtlasError
from latentatlas.models.inspect import capabilities
from latentatlas.models.interface import ModelInfo, StyleGANModel
from latentatlas.models.registry import load_generator
from latentatlas.models.stylegan2 import (
    StyleGAN2Config,
    StyleGAN2Discriminator,
    StyleGAN2Generator,
)
from latentatlas.runtime import tune_allocator

torch.set_num_threads(1)
tune_allocator()

# bench/gpu_check.sh runs the suite with LATENTATLAS_TEST_DEVICE=cuda: every model the tests load
# by name or file (load_generator's default device) is then on that device, as are the tiny ones
TEST_DEVICE = os.environ.get("LATENTATLAS_TEST_DEVICE", "cpu")
if TEST_DEVICE != "cpu":
    from latentatlas.models import registry as _registry
    _registry.load_generator.__defaults__ = (TEST_DEVICE,)


def tiny_stylegan2(seed=0, **over):
    """A 16x16 StyleGAN2 with z_dim 8 and random, perturbed weights (non-zero biases, noise
    strengths and w_avg so that mistakes in those paths are visible)."""
    torch.manual_seed(seed)
    kw = dict(z_dim=8, w_dim=8, img_resolution=16, img_channels=1, channels={4: 16, 8: 16, 16: 8},
              mapping_layers=2)
    kw.update(over)
    cfg = StyleGAN2Config(**kw)
    G, D = StyleGAN2Generator(cfg), StyleGAN2Discriminator(cfg)
    with torch.no_grad():
        for p in list(G.parameters()) + list(D.parameters()):
            p.add_(torch.randn_like(p) * 0.1)
        c = (torch.nn.functional.one_hot(torch.arange(256) % cfg.c_dim, cfg.c_dim).float() if cfg.c_dim else None)
        G.mapping.w_avg.copy_(G.mapping(torch.randn(256, cfg.z_dim), c).mean(0))
    model = StyleGANModel(ModelInfo("tiny-sg2", "stylegan2", "test fixture"), G, D)
    return model.to(TEST_DEVICE) if TEST_DEVICE != "cpu" else model


def model_and_images(model, tmp_path, seed, n: int = 2):
    """The model saved as a checkpoint file and a folder of ``n`` of its own samples (im0.png ...)."""
    from latentatlas.imageio import save_png
    from latentatlas.models.registry import save_model
    f = save_model(tmp_path / "tiny.pt", arch="stylegan2", config=model.cfg.to_dict(), G=model.G, D=model.D)
    src = tmp_path / "in"
    src.mkdir()
    with torch.no_grad():
        imgs = model(model.sample_z(n, seed=seed)).clamp(-1, 1)
    for i in range(n):
        save_png(imgs[i], src / f"im{i}.png")
    return f, src


@pytest.fixture
def tiny_sg2():
    return tiny_stylegan2()


@pytest.fixture(autouse=True, scope="session")
def _test_cache_dir(tmp_path_factory):
    """Fitted atlases go to a cache of the test session, never to the user's ~/.cache."""
    import os
    old = os.environ.get("XDG_CACHE_HOME")
    os.environ["XDG_CACHE_HOME"] = str(tmp_path_factory.mktemp("xdg-cache"))
    yield
    if old is None:
        os.environ.pop("XDG_CACHE_HOME", None)
    else:
        os.environ["XDG_CACHE_HOME"] = old


# -- every method on one model file (test_families, test_tf_pickles) -------------------------------

def _cli(args, cls):
    return main(args + (["--class", str(cls)] if cls is not None else []))


def every_method(path, cls, tmp_path, capsys, monkeypatch, family=""):
    """Runs each applicable method at tiny sizes, and checks each inapplicable one is refused
    with exit 2 and one line."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    path = str(path)
    m = load_generator(path)
    if cls is not None:
        m.set_class(cls)
    caps = capabilities(m)
    ran, refused = [], []

    def expect(method, rc):
        err = capsys.readouterr().err
        if caps[method] is None:
            assert rc == 0, f"{family}: {method} should run: {err}"
            ran.append(method)
        else:
            assert rc == 2 and "Traceback" not in err and err.strip(), f"{family}: {method} should be refused: {err}"
            refused.append(method)

    expect("sample", _cli(["sample", "--model", path, "--n", "4", "--out-dir", str(tmp_path / "s")], cls))
    trunc = (["--truncation-psi", "0.7"] if m.has_mapping else ["--strategy", "truncation", "--param", "t=1.0"])
    expect("truncation", _cli(["sample", "--model", path, "--n", "4", "--out", str(tmp_path / "t.png")] + trunc, cls))
    rc = _cli(["fit", "--model", path, "--n", "3000", "--clusters", "coarse=2,medium=2,fine=2",
               "--learned-steps", "3", "--out", str(tmp_path / "a.npz")], cls)
    expect("p-norm atlas", rc)
    expect("pca-log", _cli(["sample", "--model", path, "--n", "4", "--strategy", "pca-log", "--param", "tau=2",
                            "--out", str(tmp_path / "p.png")], cls) if caps["pca-log"] else _api_strategy(m, tmp_path, "pca-log", tau=2.0))
    expect("clusters", _api_strategy(m, tmp_path, "cluster", psi=0.7) + _api_strategy(m, tmp_path, "cluster", psi=0.7,
                                                                                       mixture="learned")
           if caps["clusters"] is None else
           _cli(["sample", "--model", path, "--n", "4", "--strategy", "cluster", "--out", str(tmp_path / "c.png")], cls))
    dia = ["--strategy", "diamond", "--param", "sigma=0.2", "--param", "n_proto=4", "--param", "recovery_steps=3",
           "--param", "proto_iter=3", "--param", "n_init=8"]
    expect("diamond", _cli(["sample", "--model", path, "--n", "4", "--out", str(tmp_path / "d.png")] + dia, cls))
    expect("diamond walk", _cli(["sample", "--model", path, "--n", "2", "--out", str(tmp_path / "dw.png")] + dia +
                                ["--param", "variant=walk"], cls))
    inv = ["invert", str(tmp_path / "s"), "--model", path, "--steps", "3", "--batch-size", "4", "--min-psnr", "0"]
    expect("invert z", _cli(inv + ["--space", "z", "--out", str(tmp_path / "iz")], cls))
    expect("invert w/w+", _cli(inv + ["--space", "wplus", "--out", str(tmp_path / "iw")], cls))
    expect("invert p-norm+", _api_invert_pnorm(m, tmp_path) if caps["invert p-norm+"] is None else
           _cli(inv + ["--space", "pnorm+", "--out", str(tmp_path / "ip")], cls))
    layer = [] if m.has_mapping else ["--layer", m.layer_names[1]]
    expect("ganspace", _cli(["directions", "--method", "ganspace", "--model", path, "--k", "3", "--n", "64",
                             "--out", str(tmp_path / "g.npz")] + layer, cls))
    expect("sefa", _cli(["directions", "--method", "sefa", "--model", path, "--k", "3",
                         "--out", str(tmp_path / "sf.npz")], cls))
    expect("dp-lase", _cli(["directions", "--method", "dplase", "--model", path, "--k", "2", "--steps", "3",
                            "--layer", m.layer_names[1], "--out", str(tmp_path / "dp.npz")], cls))
    expect("walks", _cli(["walk", "--model", path, "--direction", f"{tmp_path / 'g.npz'}:0", "--steps", "3",
                          "--n", "2", "--out", str(tmp_path / "w.png")], cls))
    assert set(ran) | set(refused) == set(caps)


def _api_strategy(m, tmp_path, name, **params):
    """Atlas-dependent strategies through the API with the atlas the 'fit' step wrote."""
    from latentatlas.atlas import Atlas
    from latentatlas.sampling import Context, apply_strategy, initial_latents, render
    try:
        atlas = Atlas.load(tmp_path / "a.npz", m)
        lat = apply_strategy(m, name, initial_latents(m, m.sample_z(4, 0)), Context(m, atlas=atlas), **params)
        assert torch.isfinite(render(m, lat)).all()
        return 0
    except (LatentAtlasError, FileNotFoundError):
        return 2


def _api_invert_pnorm(m, tmp_path):
    from latentatlas.atlas import Atlas
    from latentatlas.inversion import InversionConfig, invert
    atlas = Atlas.load(tmp_path / "a.npz", m)
    with torch.no_grad():
        target = m(m.sample_z(2, 0))
    res = invert(m, target, InversionConfig(space="pnorm+", steps=3), atlas=atlas)
    assert torch.isfinite(res.images).all() if hasattr(res, "images") else True
    return 0
