"""Scale-out: sharding and merging (fast, no Ray), Ray pools on a local instance, and the
kill/resume exactly-once check (slow)."""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from conftest import model_and_images, tiny_stylegan2
from latentatlas.cli.main import main
from latentatlas.errors import LatentAtlasError
from latentatlas.imageio import PARTIAL, atomic_path, clean_partial
from latentatlas.inversion import InversionConfig
from latentatlas.inversion.files import invert_files
from latentatlas.parallel import LocalPool
from latentatlas.spaces import merge_moments
from latentatlas.spaces import mapped_moments


def _outputs(folder):
    """{stem: (ws, json without timings)} of an invert output folder."""
    out = {}
    for f in sorted(folder.glob("[!.]*.json")):
        if f.name.startswith("latentatlas"):
            continue
        out[f.stem] = (np.load(folder / f"{f.stem}.npz")["ws"], json.loads(f.read_text()))
    return out


def test_sharded_moments_equal_the_single_stream(tiny_sg2):
    one = mapped_moments(tiny_sg2, 5000, seed=3, batch_size=700)
    sharded = mapped_moments(tiny_sg2, 5000, seed=3, batch_size=700, pool=LocalPool(tiny_sg2))
    assert one.n == sharded.n == 5000
    torch.testing.assert_close(sharded.s, one.s, rtol=1e-12, atol=1e-10)
    torch.testing.assert_close(sharded.cov, one.cov, rtol=1e-12, atol=1e-12)
    # merging is a sum: shards in any grouping give the same moments
    parts = [(1, np.ones(8), np.eye(8)), (2, 2 * np.ones(8), 3 * np.eye(8))]
    m = merge_moments(parts, 8)
    assert m.n == 3 and torch.equal(m.s, torch.full((8,), 3.0, dtype=torch.float64))


def test_pooled_sampling_rows_equal_the_direct_ones():
    from latentatlas.evaluation.sampling import SamplingSetup
    model = tiny_stylegan2()
    from latentatlas.sampling import Context
    # the tiny model is not a Fashion-MNIST model: score against a folder of its own samples
    import tempfile
    from pathlib import Path

    from latentatlas.imageio import save_png
    with tempfile.TemporaryDirectory() as d:
        with torch.no_grad():
            imgs = model(model.sample_z(60, seed=99)).clamp(-1, 1)
        for i in range(60):
            save_png(imgs[i], Path(d) / f"r{i}.png")
        from latentatlas.evaluation.sampling import evaluate_sampling
        sweeps = {"truncation": [{"psi": 1.0}, {"psi": 0.5}]}
        kw = dict(n=64, seed=0, batch_size=32, sweeps=sweeps, reference=d, progress=False)
        direct = evaluate_sampling(model, ["truncation"], **kw)
        pooled = evaluate_sampling(model, ["truncation"], pool=LocalPool(model), **kw)
        st = SamplingSetup(model, n=64, seed=0, batch_size=32, features=None, reference=d, inception=None,
                           kid_subsets=20)
        one = st.row("truncation", {"psi": 0.5}, Context(model))

    def strip(rows):
        return [{k: v for k, v in r.items() if k != "seconds"} for r in rows]
    assert strip(direct["rows"]) == strip(pooled["rows"])
    assert strip([one]) == strip(direct["rows"][1:])
    assert direct["best"]["truncation"]["params"] == pooled["best"]["truncation"]["params"]
    assert direct["baseline"]["params"] == "psi=1.0" and direct["baseline"]["pixel_dist"] == 0.0


@pytest.mark.slow
def test_pooled_inversion_evaluation_rows_equal_the_direct_ones():
    from latentatlas.atlas import fit_atlas
    from latentatlas.evaluation.inversion import METHODS, evaluate_inversion
    tiny_sg2 = tiny_stylegan2(img_resolution=32, channels={4: 8, 8: 8, 16: 8, 32: 8})   # Fashion-MNIST's format
    tiny_sg2.info.extra = {**(tiny_sg2.info.extra or {}), "data": "Fashion-MNIST train split"}
    atlas = fit_atlas(tiny_sg2, n=2000, clusters={"coarse": 0, "medium": 0, "fine": 0})
    with torch.no_grad():
        x = tiny_sg2(tiny_sg2.sample_z(6, seed=11)).clamp(-1, 1)
    methods = {k: METHODS[k] for k in ("W+ (I2S)", "W+ clip 2")}
    kw = dict(methods=methods, steps=3, atlas=atlas, seed=0)
    direct = evaluate_inversion(tiny_sg2, {"g": x}, **kw)
    pooled = evaluate_inversion(tiny_sg2, {"g": x}, pool=LocalPool(tiny_sg2), **kw)
    strip = lambda rows: [{k: v for k, v in r.items() if k != "seconds"} for r in rows]   # noqa: E731
    assert [r["method"] for r in pooled] == list(methods)
    assert repr(strip(pooled)) == repr(strip(direct))


def test_partial_files_of_a_killed_write_are_removed_on_resume(tiny_sg2, tmp_path):
    f, src = model_and_images(tiny_sg2, tmp_path, seed=5, n=3)
    out = tmp_path / "o"
    cfg = InversionConfig(steps=3, init="mean")
    invert_files(tiny_sg2, src, out, cfg, progress=False, min_psnr=0)
    # a run killed after im1's npz and png, before its json: and a temp file of a write in flight
    (out / "im1.json").unlink()
    (out / f".im1.json{PARTIAL}abc.json").write_text("{half")
    with pytest.raises(RuntimeError):
        with atomic_path(out / "im2.png") as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("killed")
    assert not list(out.glob(f".im2.png{PARTIAL}*"))          # a failed block cleans up after itself
    before = _outputs(out)
    s = invert_files(tiny_sg2, src, out, cfg, progress=False, min_psnr=0)
    assert s["done"] == 1 and s["skipped_finished"] == 2
    assert not list(out.glob(f".*{PARTIAL}*"))
    after = _outputs(out)
    assert sorted(after) == ["im0", "im1", "im2"]
    assert np.array_equal(after["im0"][0], before["im0"][0])
    assert clean_partial(tmp_path / "missing") == 0


def test_pooled_inversion_writes_what_the_direct_one_writes(tiny_sg2, tmp_path):
    f, src = model_and_images(tiny_sg2, tmp_path, seed=6, n=5)
    cfg = InversionConfig(steps=4, init="best-of:16")
    a = invert_files(tiny_sg2, src, tmp_path / "a", cfg, batch_size=2, progress=False, min_psnr=0)
    b = invert_files(tiny_sg2, src, tmp_path / "b", cfg, batch_size=2, progress=False, min_psnr=0,
                     pool=LocalPool(tiny_sg2))
    assert a["done"] == b["done"] == 5
    oa, ob = _outputs(tmp_path / "a"), _outputs(tmp_path / "b")
    assert oa.keys() == ob.keys()
    for k in oa:
        assert np.array_equal(oa[k][0], ob[k][0]) and oa[k][1] == ob[k][1]


def test_ray_options_are_checked_before_any_work(tiny_sg2, tmp_path, capsys, monkeypatch):
    f, src = model_and_images(tiny_sg2, tmp_path, seed=1)
    base = ["invert", str(src), "--model", str(f), "--steps", "2", "--out", str(tmp_path / "o")]
    assert main(["invert", str(src), "--ray", str(src), "--model", str(f), "--out", str(tmp_path / "o")]) == 2
    assert "an address is 'auto' or HOST:PORT" in capsys.readouterr().err
    assert main(base + ["--ray-workers", "2"]) == 2
    assert "apply only with --ray" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "ray", None)               # Ray not installed
    assert main(base + ["--ray"]) == 2
    err = capsys.readouterr().err
    assert "pip install 'latentatlas[ray]'" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists() or not list((tmp_path / "o").glob("im*"))


# -- on a real local Ray instance -----------------------------------------------------------------

def _ray_or_skip():
    try:
        import ray
    except ImportError:
        pytest.skip("Ray is not installed (pip install 'latentatlas[ray]')")
    return ray


@pytest.mark.slow
def test_commands_join_a_cluster_started_with_ray_start(tmp_path, capsys):
    """`ray start --head` on loopback, then invert with --ray HOST:PORT and fit with --ray auto. (Defined
    before the tests that hold the module's local Ray, so none is running in this process.)"""
    _ray_or_skip()
    import shutil
    ray_cli = shutil.which("ray") or os.path.join(os.path.dirname(sys.executable), "ray")
    port = "6391"
    r = subprocess.run([ray_cli, "start", "--head", "--node-ip-address", "127.0.0.1", "--port", port,
                        "--num-cpus", "2", "--include-dashboard", "false", "--disable-usage-stats"],
                       capture_output=True, text=True, timeout=120)
    if r.returncode != 0:
        pytest.skip(f"ray start --head failed here: {r.stderr.strip().splitlines()[-1:]}")
    try:
        model = tiny_stylegan2()
        f, src = model_and_images(model, tmp_path, seed=4, n=4)
        assert main(["invert", str(src), "--model", str(f), "--steps", "3", "--batch-size", "2", "--min-psnr", "0",
                     "--out", str(tmp_path / "o"), "--json", "--ray", f"127.0.0.1:{port}", "--ray-workers", "2"]) == 0
        assert json.loads(capsys.readouterr().out)["done"] == 4
        assert main(["fit", "--model", str(f), "--n", "20000", "--clusters", "coarse=0,medium=0,fine=0",
                     "--out", str(tmp_path / "a.npz"), "--json", "--ray", "auto"]) == 0
        assert (tmp_path / "a.npz").is_file()
        import ray
        assert not ray.is_initialized()          # the command left the cluster, the cluster stays up
    finally:
        subprocess.run([ray_cli, "stop"], capture_output=True, timeout=120)


@pytest.fixture(scope="module")
def ray_local():
    ray = _ray_or_skip()
    try:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    except Exception as e:      # noqa: BLE001 - any failure to start is a skip with its reason
        pytest.skip(f"Ray could not start on this machine: {e}")
    yield ray
    ray.shutdown()


def test_ray_inversion_and_fit_equal_the_single_process_ones(ray_local, tiny_sg2, tmp_path, capsys):
    f, src = model_and_images(tiny_sg2, tmp_path, seed=7, n=5)
    common = ["--model", str(f), "--steps", "4", "--init", "best-of:16", "--batch-size", "2", "--min-psnr", "0",
              "--json"]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)            # the workers run one thread each: the same float order here
    try:
        assert main(["invert", str(src), "--out", str(tmp_path / "one")] + common) == 0
        assert main(["invert", str(src), "--out", str(tmp_path / "ray")] + common + ["--ray", "--ray-workers", "2"]) == 0
    finally:
        torch.set_num_threads(threads)
    capsys.readouterr()
    a, b = _outputs(tmp_path / "one"), _outputs(tmp_path / "ray")
    assert sorted(a) == sorted(b) == [f"im{i}" for i in range(5)]
    for k in a:
        assert np.array_equal(a[k][0], b[k][0]) and a[k][1] == b[k][1]
    # a second --ray run has nothing left to do
    assert main(["invert", str(src), "--out", str(tmp_path / "ray")] + common + ["--ray"]) == 0
    assert json.loads(capsys.readouterr().out)["skipped_finished"] == 5

    fit = ["fit", "--model", str(f), "--n", "30000", "--clusters", "coarse=0,medium=0,fine=0", "--learned-steps", "0",
           "--json"]
    assert main(fit + ["--out", str(tmp_path / "a.npz")]) == 0
    assert main(fit + ["--out", str(tmp_path / "b.npz"), "--ray", "--ray-workers", "2"]) == 0
    capsys.readouterr()
    za, zb = np.load(tmp_path / "a.npz"), np.load(tmp_path / "b.npz")
    for k in ("pnorm.mean", "pnorm.cov", "pnorm.components", "pnorm.explained_variance"):
        np.testing.assert_allclose(zb[k], za[k], rtol=1e-9, atol=1e-12, err_msg=k)


@pytest.mark.slow
def test_ray_evaluate_equals_the_single_process_one(ray_local, tiny_sg2, tmp_path, capsys):
    """Issue 39: evaluate --ray shards the seeds over the workers (chunks of CHUNK) and reduces
    the moments exactly: the figures equal this process's."""
    f, src = model_and_images(tiny_sg2, tmp_path, seed=3, n=60)
    common = ["evaluate", "--model", str(f), "--n", "4500", "--reference", str(src), "--json"]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)            # the workers run one thread each: the same float order here
    try:
        assert main(common) == 0
        one = json.loads(capsys.readouterr().out)
        assert main(common + ["--ray", "--ray-workers", "2"]) == 0
        ray = json.loads(capsys.readouterr().out)
    finally:
        torch.set_num_threads(threads)
    assert one == ray and one["n"] == 4500


def test_ray_sampling_points_equal_the_single_process_rows(ray_local, tmp_path):
    from latentatlas.imageio import save_png
    from latentatlas.evaluation.sampling import evaluate_sampling
    from latentatlas.parallel import RayPool
    model = tiny_stylegan2().to("cpu")   # the layout a loaded model has, as on the workers (bit-equal rows)
    f, _ = model_and_images(model, tmp_path, seed=0, n=1)
    ref = tmp_path / "ref"
    ref.mkdir()
    with torch.no_grad():
        imgs = model(model.sample_z(60, seed=99)).clamp(-1, 1)
    for i in range(60):
        save_png(imgs[i], ref / f"r{i}.png")
    sweeps = {"truncation": [{"psi": 1.0}, {"psi": 0.7}], "pca-log": [{"tau": 1.0}]}
    kw = dict(n=64, seed=0, batch_size=32, sweeps=sweeps, reference=str(ref), progress=False)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        direct = evaluate_sampling(model, ["truncation", "pca-log"], **kw)
        with RayPool(model, model_name=str(f), workers=2) as pool:
            pooled = evaluate_sampling(model, ["truncation", "pca-log"], pool=pool, **kw)
    finally:
        torch.set_num_threads(threads)
    strip = lambda rows: [{k: v for k, v in r.items() if k != "seconds"} for r in rows]   # noqa: E731
    assert strip(pooled["rows"]) == strip(direct["rows"])


def test_ray_sample_out_dir_equals_the_single_process_images(ray_local, tiny_sg2, tmp_path, capsys):
    from PIL import Image
    f, _ = model_and_images(tiny_sg2, tmp_path, seed=0, n=1)
    base = ["sample", "--model", str(f), "--n", "10", "--batch-size", "3", "--json"]
    assert main(base + ["--out-dir", str(tmp_path / "one")]) == 0
    assert main(base + ["--out-dir", str(tmp_path / "ray"), "--ray", "--ray-workers", "2"]) == 0
    assert main(base + ["--out", str(tmp_path / "g.png"), "--ray"]) == 2
    assert "--out-dir alone" in capsys.readouterr().err
    for i in range(10):
        a = np.asarray(Image.open(tmp_path / "one" / f"seed{i:06d}.png"))
        b = np.asarray(Image.open(tmp_path / "ray" / f"seed{i:06d}.png"))
        assert np.array_equal(a, b)
    la, lb = np.load(tmp_path / "one" / "latents.npz"), np.load(tmp_path / "ray" / "latents.npz")
    assert np.array_equal(la["seeds"], lb["seeds"]) and np.array_equal(la["z"], lb["z"])
    np.testing.assert_allclose(lb["ws"], la["ws"], atol=1e-6)


@pytest.mark.slow
def test_ray_invert_killed_twice_resumes_to_exactly_one_output_each(tmp_path):
    """A worker kill -9 mid-run (the task runs again on a new worker), then the driver killed
    (SIGINT), then a rerun: every image has exactly one output of each kind, no partial file,
    and the results equal an uninterrupted single-process run."""
    _ray_or_skip()
    model = tiny_stylegan2()
    f, src = model_and_images(model, tmp_path, seed=2, n=24)
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "latentatlas.cli", "invert", str(src), "--model", str(f), "--steps", "150",
           "--init", "best-of:16", "--batch-size", "2", "--min-psnr", "0", "--out", str(out), "--ray",
           "--ray-workers", "2"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}

    def done():
        return len([p for p in out.glob("im*.json")])

    def wait_for(pred, limit=300):
        t0 = time.time()
        while not pred():
            assert time.time() - t0 < limit, "timed out"
            time.sleep(0.2)

    log1 = tmp_path / "run1.log"
    # Ctrl-C reaches the driver however the suite was started: a shell's background job (`make
    # test-slow &`) inherits SIGINT ignored, and Python then never raises KeyboardInterrupt
    p = subprocess.Popen(cmd, env=env, stderr=open(log1, "w"), stdout=subprocess.DEVNULL,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    wait_for(lambda: done() >= 2)
    workers = subprocess.run(["pgrep", "-f", "ray::Worker"], capture_output=True, text=True).stdout.split()
    assert workers, "no Ray worker process found"
    os.kill(int(workers[0]), signal.SIGKILL)                   # a worker dies mid-task
    n_at_kill = done()
    wait_for(lambda: done() >= n_at_kill + 4)
    p.send_signal(signal.SIGINT)                                # the driver stopped (Ctrl-C)
    p.wait(timeout=120)
    assert "died" in log1.read_text()
    assert 0 < done() < 24
    r = subprocess.run(cmd + ["--json"], env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    summary = json.loads(r.stdout)
    assert summary["skipped_finished"] + summary["done"] == 24 and summary["verdict"]["n"] == 24
    for ext in ("json", "npz", "png"):
        assert len(list(out.glob(f"im*.{ext}"))) == 24
    assert not list(out.glob(f".*{PARTIAL}*"))
    single = tmp_path / "single"
    r = subprocess.run(cmd[:cmd.index("--out")] + ["--out", str(single)], env=env, capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    a, b = _outputs(out), _outputs(single)
    assert a.keys() == b.keys()
    for k in a:
        assert np.array_equal(a[k][0], b[k][0])


def test_a_worker_without_the_model_file_loads_the_shipped_bytes(ray_local, tiny_sg2, tmp_path):
    from latentatlas.parallel import ModelSpec
    f, _ = model_and_images(tiny_sg2, tmp_path, seed=0, n=1)
    spec = ModelSpec(str(tmp_path / "elsewhere" / f.name), "cpu", file_bytes=ray_local.put(f.read_bytes()))
    import glob
    import tempfile
    before = set(glob.glob(os.path.join(tempfile.gettempdir(), "latentatlas-model-*")))
    m = spec.load()                                   # the path does not exist here: the bytes are used
    assert m.weights_hash() == tiny_sg2.weights_hash() and m.name == f.stem
    assert set(glob.glob(os.path.join(tempfile.gettempdir(), "latentatlas-model-*"))) == before   # copy removed


def test_an_interrupted_inversion_evaluation_resumes_from_its_rows(tmp_path, monkeypatch, caplog):
    from latentatlas.atlas import fit_atlas
    from latentatlas.evaluation import inversion as ev
    m = tiny_stylegan2(img_resolution=32, channels={4: 8, 8: 8, 16: 8, 32: 8})   # Fashion-MNIST's format
    m.info.extra = {**(m.info.extra or {}), "data": "Fashion-MNIST train split"}
    atlas = fit_atlas(m, n=2000, clusters={"coarse": 0, "medium": 0, "fine": 0})
    with torch.no_grad():
        x = m(m.sample_z(4, seed=11)).clamp(-1, 1)
    methods = {k: ev.METHODS[k] for k in ("W+ (I2S)", "W+ clip 2")}
    kw = dict(methods=methods, steps=2, atlas=atlas, seed=0, store=tmp_path / "rows")
    computed = []
    real_row, real_init, shared = ev.InversionEval.row, ev.InversionEval.__init__, {}

    def init_once(self, *a, **k):     # the evaluation's setup (directions, reference) built once for all calls
        if not shared:
            real_init(self, *a, **k)
            shared.update(self.__dict__)
        self.__dict__.update(shared)
    monkeypatch.setattr(ev.InversionEval, "__init__", init_once)
    monkeypatch.setattr(ev.InversionEval, "row", lambda self, *a, **k: computed.append(a[2]) or real_row(self, *a, **k))
    with caplog.at_level("INFO", logger="latentatlas"):
        first = ev.evaluate_inversion(m, {"g": x}, **kw)
    # without a terminal, each row's progress goes to the log
    assert "W+ clip 2 on g: step 2/2" in caplog.text
    files = sorted((tmp_path / "rows").glob("row-*.pt"))
    assert computed == list(methods) and len(files) == 2
    # killed during the second row: its file never written; the first row is read back, not recomputed
    second_file = ev.RowStore(tmp_path / "rows", m, atlas, 0, 2, ev.PAPER_LR, {}).path("g", x, "W+ clip 2",
                                                                                     methods["W+ clip 2"])
    second_file.unlink()
    computed.clear()
    again = ev.evaluate_inversion(m, {"g": x}, **kw)
    assert computed == ["W+ clip 2"]
    strip = lambda rows: [{k: v for k, v in r.items() if k != "seconds"} for r in rows]   # noqa: E731
    assert repr(strip(again)) == repr(strip(first)) and again[0]["seconds"] == first[0]["seconds"]
    # a damaged row is computed again; other steps, other targets or another seed are other rows
    files[0].write_bytes(b"not a torch file")
    computed.clear()
    ev.evaluate_inversion(m, {"g": x}, **kw)
    assert len(computed) == 1
    computed.clear()
    ev.evaluate_inversion(m, {"g": x[:3]}, **{**kw, "steps": 3})
    assert computed == list(methods) and len(list((tmp_path / "rows").glob("row-*.pt"))) == 4
    # the same settings under another name (the supplement grid's rows that the protocol has) are that row
    computed.clear()
    renamed = ev.evaluate_inversion(m, {"g": x}, **{**kw, "methods": {"plain W+": ev.METHODS["W+ (I2S)"]}})
    assert computed == [] and renamed[0]["method"] == "plain W+" and renamed[0]["psnr"] == first[0]["psnr"]


def test_joining_by_address_uses_a_local_ray_token_unless_a_mode_is_chosen(tmp_path, monkeypatch):
    """Ray >= 2.59's `ray start --head` asks for a token; a driver joining by HOST:PORT sends one
    only in RAY_AUTH_MODE=token. The pool sets that mode when a token is at hand and the user chose
    none; an authentication failure says what to do."""
    from latentatlas.parallel import _join_error, _refresh_ray_config, _token_auth_for
    for k in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert not _token_auth_for("10.0.0.1:6379") and "RAY_AUTH_MODE" not in os.environ    # no token here
    (tmp_path / ".ray").mkdir()
    (tmp_path / ".ray" / "auth_token").write_text("x" * 64)
    assert not _token_auth_for(None) and not _token_auth_for("auto")      # a local instance / auto: Ray decides
    assert _token_auth_for("10.0.0.1:6379") and os.environ["RAY_AUTH_MODE"] == "token"
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    assert not _token_auth_for("10.0.0.1:6379") and os.environ["RAY_AUTH_MODE"] == "disabled"   # the user's choice
    err = _join_error("the Ray cluster at '10.0.0.1:6379'", RuntimeError("RPC error: InvalidAuthToken: missing"))
    assert "authentication token" in str(err) and "~/.ray/auth_token" in str(err)
    assert str(_join_error("x", ConnectionError("refused\nmore"))) == "could not start or join x: refused"
    assert "if the cluster uses token authentication" in str(_join_error("x", ConnectionError("refused"), joining=True))
    monkeypatch.undo()
    _refresh_ray_config()              # Ray's cached configuration back to this session's environment


class _ShufflingPool(LocalPool):
    """Finishes the tasks out of order, as Ray's workers do."""

    def imap(self, fn, tasks):
        done = [(meta, fn(self.worker, *args, **kwargs)) for meta, args, kwargs in tasks]
        yield from reversed(done)


def test_evaluate_streams_in_chunks_and_a_pool_gives_the_same_figures(monkeypatch, tmp_path):
    """Issue 39: evaluate's chunks (FID from float64 moments reduced in seed order, KID/PRDC on the
    first `keep` seeds) give the same figures on a pool finishing out of order as in this process,
    and the streamed FID equals the FID of all features held at once."""
    from latentatlas.imageio import save_png
    from latentatlas.metrics import suite
    from latentatlas.metrics.distribution import feature_stats, frechet_distance
    from latentatlas.metrics.reference import resolve
    model = tiny_stylegan2()
    with torch.no_grad():
        imgs = model(model.sample_z(60, seed=99)).clamp(-1, 1)
    for i in range(60):
        save_png(imgs[i], tmp_path / f"r{i}.png")
    monkeypatch.setattr(suite, "CHUNK", 48)
    kw = dict(n=200, seed=5, reference=str(tmp_path), progress=False, keep=100)
    direct = suite.evaluate_model(model, **kw)
    pooled = suite.evaluate_model(model, pool=_ShufflingPool(model), **kw)
    assert direct == pooled and direct["knn_n"] == 100 and direct["n"] == 200
    ref, ext = resolve(model, folder=str(tmp_path), what="test")
    every = suite.features_of_generator(model, ext, n=200, seed=5, batch_size=48)   # the chunks' batches
    if direct["fid"] is not None:
        assert abs(direct["fid"] - frechet_distance(ref.mu, ref.sigma, *feature_stats(every))) < 1e-6
    red = suite.reduce_chunks([suite.chunk_stats(model, ext, a, min(48, 200 - a), seed=5, keep=100)
                               for a in range(0, 200, 48)])
    mu, sig = feature_stats(every)
    assert np.allclose(red["mu"], mu, atol=1e-9) and np.allclose(red["sigma"], sig, atol=1e-9)
    assert np.array_equal(red["feats"], every[:100])


def test_the_reports_heavy_sections_give_the_same_results_on_a_pool(tmp_path):
    """Issue 39: report --ray sends the inversion (one task per latent space + Diamond's recovery),
    the direction sets with their density models and the method table's direction rows to the pool;
    on a pool finishing out of order the results equal this process's."""
    from latentatlas.atlas import get_atlas
    from latentatlas.evaluation.inversion import METHODS, invert_methods, method_kwargs
    from latentatlas.imageio import save_png
    from latentatlas.metrics.reference import resolve
    from latentatlas.report.overview import direction_row, direction_row_task
    from latentatlas.walks.directions import direction_sets
    model = tiny_stylegan2()
    atlas = get_atlas(model, n=5000, learned_steps=10)
    targets = model(model.sample_z(3, seed=77)).detach().clamp(-1, 1)
    methods = [(k, method_kwargs(model, v)) for k, v in METHODS.items()] + [("Z (Diamond)", {"diamond": True})]
    kw = dict(steps=6, perceptual="discriminator", init="best-of:16", atlas=atlas, n_init=32)
    here = invert_methods(model, targets, methods, **kw)
    pool = _ShufflingPool(model, atlas)
    there = invert_methods(model, targets, methods, pool=pool, **kw)
    assert list(here) == list(there) == [k for k, _ in methods]
    for k in here:
        assert torch.equal(here[k].images, there[k].images), k
    plans = [("ganspace", {"k": 2}), ("sefa", {"k": 2}), ("dplase", {"k": 2, "steps": 5}), ("nonsense", {})]
    torch.manual_seed(3)
    a = direction_sets(model, plans, 5)
    torch.manual_seed(3)
    b = direction_sets(model, plans[::-1], 5, pool=_ShufflingPool(model))
    assert isinstance(a["nonsense"], LatentAtlasError) and isinstance(b["nonsense"], LatentAtlasError)
    for k in ("ganspace", "sefa"):
        assert torch.allclose(a[k][0].vectors, b[k][0].vectors, atol=1e-5)
    for i in range(60):
        save_png(targets[i % 3], tmp_path / f"r{i}.png")
    reference = {"reference": str(tmp_path)}
    ref, ext = resolve(model, folder=str(tmp_path), what="test")
    d, dp = a["ganspace"]
    jobs = [(kind, (d, dp, kind, 12, 4, reference), {}) for kind in ("linear", "dp")]
    pooled = dict(_ShufflingPool(model).imap(direction_row_task, jobs))
    for kind in ("linear", "dp"):
        assert pooled[kind] == direction_row(model, ref, ext, d, dp, kind, 12, 4)


@pytest.mark.slow
def test_report_ray_sends_the_heavy_sections_to_the_workers(ray_local, tiny_sg2, tmp_path, capsys):
    """Issue 39: report --ray --budget on a cluster: the quality, inversion, walks and method-table
    sections run their work on the Ray workers and the page is complete, with its plan."""
    f, src = model_and_images(tiny_sg2, tmp_path, seed=5, n=60)
    out = tmp_path / "rep"
    assert main(["report", "--model", str(f), "--out", str(out), "--profile", "quick", "--reference", str(src),
                 "--sections", "model,quality,latent-space,inversion,walks,overview", "--budget", "10m",
                 "--ray", "--ray-workers", "2", "--json"]) == 0
    capsys.readouterr()
    html = (out / "index.html").read_text()
    for sec in ("quality", "inversion", "walks", "overview", "budget"):
        assert f"id='{sec}'" in html or f'id="{sec}"' in html, sec
    assert "section not available" not in html
    rec = json.loads((out / "budget.json").read_text())
    assert rec["sections"]["inversion"]["actual_s"] > 0
