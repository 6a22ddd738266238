import os

import pytest
import torch

from latentatlas.models.interface import ModelInfo, StyleGANModel
from latentatlas.models.stylegan2 import StyleGAN2Config, StyleGAN2Discriminator, StyleGAN2Generator
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
