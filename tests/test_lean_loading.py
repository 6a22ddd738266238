"""Issue 39 (lean loading) and 42 (sizes before memory): a module is first built as a shape probe
(every tensor a zero-stride view: no memory, no RNG), checked against the file, then built without
random initialisation with the file's tensors assigned as its parameters."""
import resource

import pytest
import torch

from latentatlas.models.registry import load_generator
from latentatlas.models.state import ShapeProbe, build_checked
from latentatlas.models.stylegan2 import StyleGAN2Config, StyleGAN2Generator

from pathlib import Path

R1 = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures"
R2 = R1 / "round2"
FILES = ["fashion-stylegan2", "fashion-wgangp", R2 / "c4t-sg3-T-32.pkl", R2 / "c4r-sg3-R-32.pkl", R2 / "s-biggan-32",
         R2 / "s-pgan-32.pth", R2 / "c1-sg2ada-64-cond.pkl", R1 / "rosinality-sg2-32.pt"]


@pytest.mark.parametrize("src", FILES, ids=lambda p: getattr(p, "name", str(p)))
def test_the_probe_has_every_architectures_names_and_shapes(src, tmp_path):
    """Each family converted to our format: its generator and discriminator probed from the config
    have exactly the file's names and shapes, with no op the probe does not know."""
    from latentatlas.cli.main import main
    from latentatlas.models import registry
    if not isinstance(src, str) and not src.exists():
        pytest.skip(f"{src} not present")
    assert main(["convert", str(src), str(tmp_path / "c.pt")]) == 0
    ckpt = torch.load(tmp_path / "c.pt", weights_only=True)
    cfg_cls, g_cls, d_cls, _ = registry._ARCHS[ckpt["arch"]]
    cfg = cfg_cls.from_dict(ckpt["config"])
    for cls, sd in ((g_cls, ckpt["G"]), (d_cls, ckpt.get("D"))):
        if cls is None or sd is None:
            continue
        mode = ShapeProbe()
        with mode:
            probe = cls(cfg)
        assert mode.fallbacks == [], mode.fallbacks
        assert {k: tuple(v.shape) for k, v in probe.state_dict().items()} == {k: tuple(v.shape) for k, v in sd.items()}


def test_an_absurd_configuration_is_probed_in_no_memory_and_refused():
    cfg = StyleGAN2Config(z_dim=8192, w_dim=8192, img_resolution=8192, channels={2 ** i: 65536 for i in range(2, 14)})
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    mode = ShapeProbe()
    with mode:
        g = StyleGAN2Generator(cfg)
    n = sum(t.numel() for t in g.state_dict().values())
    assert n > 10 ** 11 and mode.fallbacks == []
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 200 * 1024      # KiB: < 200 MB
    from latentatlas.errors import LatentAtlasError
    with pytest.raises(LatentAtlasError, match="describes .* values"):
        build_checked(lambda: StyleGAN2Generator(cfg), {}, "absurd")


def test_a_loaded_generator_uses_the_files_tensors_and_computes_as_before(tiny_sg2, tmp_path):
    from latentatlas.models.registry import save_model
    f = save_model(tmp_path / "t.pt", arch="stylegan2", config=tiny_sg2.cfg.to_dict(), G=tiny_sg2.G, D=tiny_sg2.D)
    m = load_generator(str(f))
    z = tiny_sg2.sample_z(3, 5)
    with torch.no_grad():
        assert torch.allclose(m(z), tiny_sg2(z), atol=1e-5)    # the fixture's weights are channels-last in memory
    for k, v in tiny_sg2.G.state_dict().items():
        assert torch.equal(m.G.state_dict()[k], v), k


def test_shape_broadcast_matches_torch():
    from latentatlas.models.state import _broadcast
    for shapes in [((3, 1, 5), (4, 5)), ((1,), (2, 3)), ((), (7,)), ((2, 1), (1, 3), (2, 3))]:
        assert _broadcast(*shapes) == tuple(torch.broadcast_shapes(*shapes))
    with pytest.raises(ValueError):
        _broadcast((2, 3), (4, 3))


def test_nvidia_storage_reader_equals_torch_load():
    """The direct reader of the storages in NVIDIA pickles gives what torch's loader gives."""
    import io

    from latentatlas.models.readers.nvidia import _load_storage_bytes
    for t in (torch.randn(7, 3), torch.arange(5, dtype=torch.int64), torch.randn(4).half(), torch.zeros(0)):
        buf = io.BytesIO()
        torch.save(t.storage(), buf, _use_new_zipfile_serialization=False)
        got = _load_storage_bytes(buf.getvalue())
        want = torch.load(io.BytesIO(buf.getvalue()), weights_only=True)
        assert got.dtype == want.dtype and got.size() == want.size() and list(got) == list(want)
