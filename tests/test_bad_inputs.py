"""Hostile and broken input: every case ends with exit code 2, exactly one error line and no
traceback on stderr, no file written by code from the input (a marker), and no partial output.
The fast part runs in-process; the slow part runs the same cases as subprocesses under an
address-space and a time limit, plus byte-flip fuzzing of real checkpoints."""
import io
import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from latentatlas.cli.main import main

ROOT = Path(__file__).resolve().parents[1]
R1 = ROOT.parent / "shared" / "fixtures"
R2 = R1 / "round2"
if not R1.is_dir():
    if os.environ.get("CI"):
        raise RuntimeError(f"{R1} is missing: the bad-input suite needs ../shared/fixtures in CI")
    pytest.skip("../shared/fixtures not present (outside CI)", allow_module_level=True)


class Evil:
    """Unpickling this runs a shell command that writes the marker file."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class EvalEvil(Evil):
    def __reduce__(self):
        return (eval, (f"open({str(self.marker)!r}, 'w')",))


class ExecEvil(Evil):
    def __reduce__(self):
        return (exec, (f"open({str(self.marker)!r}, 'w')",))


def _write(path, data: bytes):
    path.write_bytes(data)
    return str(path)


def _sample(model, out):
    return ["sample", "--model", model, "--n", "2", "--out", str(out)]


def _dirs_file(path, vectors, sigmas=None, **extra):
    arrays = dict(vectors=vectors, space=np.array("w"), method=np.array("ganspace"),
                  sigmas=np.ones(len(vectors), np.float32) if sigmas is None else sigmas,
                  meta_json=np.array(json.dumps({})))
    arrays.update(extra)
    np.savez(path, **arrays)
    return str(path)


def _tiny_png(path, data=None):
    from PIL import Image
    Image.new("L", (32, 32), 128).save(path)
    if data is not None:
        path.write_bytes(data(path.read_bytes()))
    return path


def _patch_pickle_values(data: bytes, key: str, value) -> bytes:
    """The pickle ``data`` with the value pushed right after every string ``key`` replaced by
    ``value``'s opcode (frames dropped: an unframed protocol-4 stream is valid)."""
    import pickletools
    ops = list(pickletools.genops(data))
    out, n = [], 0
    new = pickle.dumps(value, protocol=4)
    new = new[new.index(b"\x95") + 9:] if new[2:3] == b"\x95" else new[2:]       # strip PROTO (+FRAME)
    new = new.rstrip(b".")
    new = new.replace(b"\x94", b"")                                             # no MEMOIZE for the new value
    memo, last, pending = {}, None, False    # memo: index -> string (keys repeat as BINGETs of the first)
    for i, (op, arg, pos) in enumerate(ops):
        end = ops[i + 1][2] if i + 1 < len(ops) else len(data)
        if op.name == "FRAME":
            continue
        if op.name == "MEMOIZE":
            memo[len(memo)] = last
        elif op.name in ("BINPUT", "LONG_BINPUT"):
            memo[arg] = last
        if pending and op.name in ("BININT1", "BININT2", "BININT", "LONG1", "BINFLOAT", "NONE"):
            out.append(new)
            n += 1
            pending = False
            last = None
            continue
        out.append(data[pos:end])
        if op.name in ("SHORT_BINUNICODE", "BINUNICODE"):
            last = arg
        elif op.name in ("BINGET", "LONG_BINGET"):
            last = memo.get(arg)
        elif op.name not in ("MEMOIZE", "BINPUT", "LONG_BINPUT"):
            last = None
        pending = last == key and op.name not in ("MEMOIZE", "BINPUT", "LONG_BINPUT") or (pending and op.name in (
            "MEMOIZE", "BINPUT", "LONG_BINPUT"))
    assert n, f"no {key!r} value in the pickle"
    return b"".join(out)


# id -> builder(tmp_path, marker) -> argv. Every case expects exit 2.
def _cases():
    nv = R1 / "nvidia-sg2ada-16-gray.pkl"
    ros = R1 / "rosinality-sg2-32.pt"
    c = {}
    # -- checkpoint files ----------------------------------------------------------------------
    c["ckpt-empty"] = lambda t, m: _sample(_write(t / "e.pt", b""), t / "o.png")
    c["ckpt-random-bytes"] = lambda t, m: _sample(_write(t / "r.pt", os.urandom(4096)), t / "o.png")
    c["ckpt-random-pickle-magic"] = lambda t, m: _sample(_write(t / "r.pkl", b"\x80\x04" + os.urandom(4096)), t / "o.png")
    c["ckpt-truncated-nvidia"] = lambda t, m: _sample(_write(t / "t.pkl", nv.read_bytes()[:50000]), t / "o.png")
    c["ckpt-truncated-zip"] = lambda t, m: _sample(_write(t / "t.pt", ros.read_bytes()[:30000]), t / "o.png")
    c["ckpt-directory"] = lambda t, m: _sample(str(t), t / "o.png")
    c["ckpt-missing"] = lambda t, m: _sample(str(t / "nope.pt"), t / "o.png")
    c["pickle-os-system"] = lambda t, m: _sample(_write(t / "a.pkl", pickle.dumps(Evil(m))), t / "o.png")
    c["pickle-eval"] = lambda t, m: _sample(_write(t / "b.pkl", pickle.dumps(EvalEvil(m))), t / "o.png")
    c["pickle-exec"] = lambda t, m: _sample(_write(t / "c.pkl", pickle.dumps(ExecEvil(m))), t / "o.png")
    c["pickle-nested-in-ordereddict"] = lambda t, m: _sample(_write(
        t / "d.pkl", pickle.dumps(__import__("collections").OrderedDict(G_ema=[1, {"x": Evil(m)}]), protocol=4)), t / "o.png")

    # constructor arguments of an NVIDIA pickle rewritten opcode by opcode (the rest of the file is real)
    for name, key, value in (("nvidia-w-dim-1e9", "w_dim", 10 ** 9), ("nvidia-z-dim-nan", "z_dim", float("nan")),
                             ("nvidia-resolution-a-string", "img_resolution", "abc"),
                             ("nvidia-resolution-not-a-power-of-two", "img_resolution", 24),
                             ("nvidia-channels-negative", "img_channels", -3)):
        c[name] = (lambda key, value: lambda t, m: _sample(
            _write(t / "k.pkl", _patch_pickle_values(nv.read_bytes(), key, value)), t / "o.png"))(key, value)

    def torch_zip(t, m):
        torch.save({"g_ema": {"style.1.weight": Evil(m)}}, t / "z.pt")
        return _sample(str(t / "z.pt"), t / "o.png")
    c["torch-zip-os-system"] = torch_zip

    def pgan_config(t, m):
        ck = torch.load(R2 / "s-pgan-32.pth", weights_only=False) if False else None  # never unpickled unsafely
        from latentatlas.models.readers.pgan import SAFE_GLOBALS
        with torch.serialization.safe_globals(SAFE_GLOBALS):
            ck = torch.load(R2 / "s-pgan-32.pth", weights_only=True)
        ck["config"] = Evil(m)
        torch.save(ck, t / "p.pth")
        return _sample(str(t / "p.pth"), t / "o.png")
    c["pgan-config-os-system"] = pgan_config

    def nan_weights(t, m):
        from latentatlas.models.registry import export_model, load_generator
        g = load_generator("fashion-wgangp")
        with torch.no_grad():
            p = next(g.G.parameters())               # channels-last on the CPU: no .view(-1)
            p[(0,) * p.dim()] = float("inf")
        export_model(g, t / "inf.safetensors")
        return _sample(str(t / "inf.safetensors"), t / "o.png")
    c["ckpt-inf-weights"] = nan_weights

    def st_bad_header(t, m):
        import struct
        return _sample(_write(t / "h.safetensors", struct.pack("<Q", 20) + b"{not json at all....." + b"x" * 64), t / "o.png")
    c["safetensors-bad-header"] = st_bad_header

    def st_foreign(t, m):
        from safetensors.torch import save_file
        save_file({"w": torch.zeros(3)}, str(t / "f.safetensors"))
        return _sample(str(t / "f.safetensors"), t / "o.png")
    c["safetensors-no-metadata"] = st_foreign

    def st_huge_header(t, m):
        import struct
        return _sample(_write(t / "g.safetensors", struct.pack("<Q", 2 ** 60) + b"{}" + b"0" * 64), t / "o.png")
    c["safetensors-absurd-header-size"] = st_huge_header

    def biggan_bad(t, m):
        d = t / "bg"
        d.mkdir()
        (d / "pytorch_model.bin").write_bytes((R2 / "s-biggan-32" / "pytorch_model.bin").read_bytes())
        cfg = json.loads((R2 / "s-biggan-32" / "config.json").read_text())
        cfg["channel_width"] = 16
        (d / "config.json").write_text(json.dumps(cfg))
        return _sample(str(d), t / "o.png") + ["--class", "1"]
    c["biggan-config-mismatch"] = biggan_bad

    def biggan_no_cfg(t, m):
        (t / "pytorch_model.bin").write_bytes((R2 / "s-biggan-32" / "pytorch_model.bin").read_bytes())
        return _sample(str(t / "pytorch_model.bin"), t / "o.png")
    c["biggan-bin-without-config"] = biggan_no_cfg

    def biggan_garbage_cfg(t, m):
        d = t / "bg2"
        d.mkdir()
        (d / "pytorch_model.bin").write_bytes(b"junk")
        (d / "config.json").write_text('{"layers": [], "channel_width": 8, "z_dim": 4}')
        return _sample(str(d), t / "o.png")
    c["biggan-garbage"] = biggan_garbage_cfg

    def byte_flip(t, m, seed=0):
        rng = np.random.default_rng(seed)
        data = bytearray(nv.read_bytes())
        for i in rng.integers(0, len(data), 64):
            data[i] ^= 0xFF
        return _sample(_write(t / "flip.pkl", bytes(data)), t / "o.png")
    c["ckpt-byte-flipped"] = byte_flip
    # -- directions, latents ----------------------------------------------------------------------
    walk = lambda f, t: ["walk", "--model", "fashion-stylegan2", "--direction", f, "--steps", "3", "--n", "1",
                         "--out", str(t / "w.png")]
    c["dirs-nan"] = lambda t, m: walk(_dirs_file(t / "d.npz", np.full((2, 128), np.nan, np.float32)) + ":0", t)
    c["dirs-missing-keys"] = lambda t, m: walk((np.savez(t / "d.npz", vectors=np.ones((2, 128))), str(t / "d.npz"))[1] + ":0", t)
    c["dirs-wrong-dim"] = lambda t, m: walk(_dirs_file(t / "d.npz", np.ones((2, 7), np.float32)) + ":0", t)
    c["dirs-object-array"] = lambda t, m: walk((np.savez(t / "d.npz", vectors=np.array([Evil(m)], dtype=object)),
                                                str(t / "d.npz"))[1] + ":0", t)
    c["dirs-bad-index"] = lambda t, m: walk(_dirs_file(t / "d.npz", np.ones((2, 128), np.float32)) + ":9", t)
    c["dirs-no-index"] = lambda t, m: walk(_dirs_file(t / "d.npz", np.ones((2, 128), np.float32)), t)
    c["dirs-random-bytes"] = lambda t, m: walk(_write(t / "d.npz", os.urandom(999)) + ":0", t)
    c["dirs-sigmas-mismatch"] = lambda t, m: walk(_dirs_file(t / "d.npz", np.ones((2, 128), np.float32),
                                                             sigmas=np.ones(5, np.float32)) + ":0", t)
    # -- atlases --------------------------------------------------------------------------------------
    def atlas_other_model(t, m):
        assert main(["fit", "--model", "fashion-stylegan2", "--n", "500", "--clusters", "coarse=2,medium=2,fine=2",
                     "--learned-steps", "0", "--out", str(t / "a.npz")]) == 0
        return ["sample", "--model", str(R1 / "rosinality-sg2-32.pt"), "--n", "2", "--strategy", "pca-log",
                "--atlas", str(t / "a.npz"), "--out", str(t / "o.png")]
    c["atlas-of-another-model"] = atlas_other_model
    c["atlas-random-bytes"] = lambda t, m: ["sample", "--model", "fashion-stylegan2", "--n", "2", "--strategy", "pca-log",
                                            "--atlas", _write(t / "a.npz", os.urandom(3000)), "--out", str(t / "o.png")]
    c["atlas-nan"] = lambda t, m: ["sample", "--model", "fashion-stylegan2", "--n", "2", "--strategy", "pca-log",
                                   "--atlas", (np.savez(t / "a.npz", meta_json=np.array("{}"), **{"pnorm.mean": np.full(4, np.nan)}),
                                               str(t / "a.npz"))[1], "--out", str(t / "o.png")]
    # -- images -----------------------------------------------------------------------------------
    inv = lambda d, t: ["invert", str(d), "--model", "fashion-wgangp", "--steps", "2", "--out", str(t / "inv")]

    def bomb(t, m):
        from PIL import Image
        (t / "in").mkdir()
        Image.new("1", (40000, 40000)).save(t / "in" / "bomb.png")
        return inv(t / "in", t)
    c["image-decompression-bomb"] = bomb

    def one(name, data):
        def f(t, m):
            (t / "in").mkdir()
            (t / "in" / name).write_bytes(data(t) if callable(data) else data)
            return inv(t / "in", t)
        return f
    c["image-truncated-png"] = one("a.png", lambda t: _tiny_png(t / "x.png").read_bytes()[:40])
    c["image-random-bytes"] = one("a.png", os.urandom(2048))
    c["image-empty"] = one("a.png", b"")
    c["image-text-as-jpg"] = one("a.jpg", b"hello, not a jpeg\n" * 10)
    c["image-folder-empty"] = lambda t, m: ((t / "in").mkdir(), inv(t / "in", t))[1]
    # -- outputs ----------------------------------------------------------------------------------
    c["out-is-directory"] = lambda t, m: ((t / "o.png").mkdir(), _sample("fashion-wgangp", t / "o.png"))[1]
    c["out-under-regular-file"] = lambda t, m: ((t / "f").write_text("x"), _sample("fashion-wgangp", t / "f" / "o.png"))[1]
    c["out-dir-is-file"] = lambda t, m: ((t / "f").write_text("x"),
                                         ["sample", "--model", "fashion-wgangp", "--n", "2", "--out-dir", str(t / "f")])[1]
    c["out-unsupported-suffix"] = lambda t, m: _sample("fashion-wgangp", t / "o.jpg")
    # -- sizes and numbers ------------------------------------------------------------------------
    c["n-absurd"] = lambda t, m: ["sample", "--model", "fashion-wgangp", "--n", "100000000", "--out", str(t / "o.png")]
    c["evaluate-n-absurd"] = lambda t, m: ["evaluate", "--model", "fashion-wgangp", "--n", "100000000"]
    c["evaluate-sampling-n-absurd"] = lambda t, m: ["evaluate-sampling", "--model", "fashion-wgangp", "--n", "90000000",
                                                    "--strategies", "truncation"]
    c["n-zero"] = lambda t, m: ["sample", "--model", "fashion-wgangp", "--n", "0", "--out", str(t / "o.png")]
    c["seed-negative"] = lambda t, m: _sample("fashion-wgangp", t / "o.png") + ["--seed", "-1"]
    c["psi-nan"] = lambda t, m: _sample("fashion-stylegan2", t / "o.png") + ["--truncation-psi", "nan"]
    c["biggan-truncation-out-of-range"] = lambda t, m: _sample(str(R2 / "s-biggan-32"), t / "o.png") + ["--class", "1", "--truncation", "1.5"]
    c["class-out-of-range"] = lambda t, m: _sample(str(R2 / "c1-sg2ada-64-cond.pkl"), t / "o.png") + ["--class", "10"]
    c["class-on-unconditional"] = lambda t, m: _sample("fashion-stylegan2", t / "o.png") + ["--class", "1"]
    c["class-not-a-number"] = lambda t, m: _sample(str(R2 / "c1-sg2ada-64-cond.pkl"), t / "o.png") + ["--class", "cat"]
    c["truncation-on-non-biggan"] = lambda t, m: _sample("fashion-stylegan2", t / "o.png") + ["--truncation", "0.5"]
    c["model-unknown-name"] = lambda t, m: _sample("no-such-model", t / "o.png")
    c["strategy-unknown"] = lambda t, m: _sample("fashion-wgangp", t / "o.png") + ["--strategy", "magic"]
    c["strategy-param-unknown"] = lambda t, m: _sample("fashion-wgangp", t / "o.png") + ["--strategy", "truncation", "--param", "zzz=1"]
    c["diamond-sigma-out-of-range"] = lambda t, m: _sample("fashion-wgangp", t / "o.png") + [
        "--strategy", "diamond", "--param", "sigma=2", "--param", "n_proto=2", "--param", "recovery_steps=1",
        "--param", "proto_iter=1", "--param", "n_init=2"]
    c["device-unknown"] = lambda t, m: ["--device", "quantum"] + _sample("fashion-wgangp", t / "o.png")
    c["convert-bad-suffix"] = lambda t, m: ["convert", "fashion-wgangp", str(t / "m.xyz")]

    # -- round two (issue 42): declared sizes, special files, non-finite values -----------------------
    def npz_lying_header(t, m):
        # a directions file whose vectors.npy declares 2^31 floats (8 GiB) over 80 bytes of data
        import zipfile
        with zipfile.ZipFile(t / "d.npz", "w") as zf:
            hdr = io.BytesIO()
            np.lib.format.write_array_header_1_0(hdr, {"descr": "<f4", "fortran_order": False, "shape": (2 ** 31,)})
            zf.writestr("vectors.npy", hdr.getvalue() + b"\0" * 80)
        return ["walk", "--model", "fashion-stylegan2", "--direction", f"{t / 'd.npz'}:0", "--out", str(t / "o.png")]
    c["npz-declares-more-than-it-holds"] = npz_lying_header

    def fifo_only(t, m):
        d = t / "imgs"
        d.mkdir()
        os.mkfifo(d / "x.png")                 # opening it would block forever
        return ["invert", str(d), "--model", "fashion-stylegan2", "--steps", "2", "--out", str(t / "inv")]
    c["fifo-named-png-in-a-folder"] = fifo_only
    c["video-is-a-directory"] = lambda t, m: ["walk", "--model", "fashion-stylegan2", "--direction",
                                              _dirs_file(t / "d.npz", np.eye(128, dtype=np.float32)[:2]) + ":0",
                                              "--out", str(t / "o.png"), "--video", str(t)]
    c["output-on-a-special-file-system"] = lambda t, m: _sample("fashion-wgangp", Path("/sys/kernel/o.png"))
    c["seeds-range-too-long"] = lambda t, m: ["sample", "--model", "fashion-wgangp", "--seeds", "0-999999999",
                                              "--out-dir", str(t / "inv")]
    c["n-too-large"] = lambda t, m: ["sample", "--model", "fashion-wgangp", "--n", "400000000", "--out-dir", str(t / "inv")]
    def biggan_with(**over):
        def build(t, m):
            import shutil
            d = t / "bg"
            shutil.copytree(R2 / "s-biggan-32", d)
            cfg = json.loads((d / "config.json").read_text())
            cfg.update({k: (v(cfg) if callable(v) else v) for k, v in over.items()})
            (d / "config.json").chmod(0o644)
            (d / "config.json").write_text(json.dumps(cfg))
            return _sample(str(d), t / "o.png") + ["--class", "1"]
        return build
    c["biggan-70000-blocks"] = biggan_with(layers=lambda cfg: [[False, 16, 16]] * 70_000)
    c["biggan-num-classes-25M"] = biggan_with(num_classes=25_000_000)
    c["biggan-num-classes-not-the-files"] = biggan_with(num_classes=50_000)
    c["biggan-z-dim-1e9"] = biggan_with(z_dim=10 ** 9)
    c["biggan-eps-nan"] = biggan_with(eps=float("nan"))

    def safetensors_absurd(t, m):
        # a latentatlas .safetensors whose metadata config declares a 10^9-wide mapping
        from safetensors import safe_open
        from safetensors.torch import load_file, save_file
        f = t / "m.safetensors"
        assert main(["convert", "fashion-stylegan2", str(f)]) == 0
        with safe_open(str(f), "pt") as h:
            meta = dict(h.metadata())
        cfg = json.loads(meta["config"])
        cfg["w_dim"] = cfg["z_dim"] = 10 ** 9
        meta["config"] = json.dumps(cfg)
        save_file(load_file(str(f)), str(t / "absurd.safetensors"), metadata=meta)
        f.unlink()
        return _sample(str(t / "absurd.safetensors"), t / "o.png")
    c["safetensors-config-w-dim-1e9"] = safetensors_absurd

    def safetensors_with(model, edit, raw=None):
        """A latentatlas .safetensors of ``model`` whose metadata config is ``edit(cfg)`` (or whose
        metadata "config" string is ``raw``)."""
        def build(t, m):
            from safetensors import safe_open
            from safetensors.torch import load_file, save_file
            f = t / "m.safetensors"
            assert main(["convert", str(model), str(f)]) == 0
            with safe_open(str(f), "pt") as h:
                meta = dict(h.metadata())
            if raw is not None:
                meta["config"] = raw
            else:
                cfg = json.loads(meta["config"])
                edit(cfg)
                meta["config"] = json.dumps(cfg)
            save_file(load_file(str(f)), str(t / "x.safetensors"), metadata=meta)
            f.unlink()
            return _sample(str(t / "x.safetensors"), t / "o.png")
        return build

    def _set(**kw):
        return lambda cfg: cfg.update(kw)

    def _negative_width(cfg):
        cfg["channels"] = {k: -abs(int(v)) for k, v in cfg["channels"].items()}
    c["safetensors-negative-widths"] = safetensors_with("fashion-stylegan2", _negative_width)
    c["safetensors-resolution-0"] = safetensors_with("fashion-stylegan2", _set(img_resolution=0))
    c["safetensors-z-dim-a-string"] = safetensors_with("fashion-stylegan2", _set(z_dim="abc"))
    c["safetensors-config-not-an-object"] = safetensors_with("fashion-stylegan2", None, raw="[1, 2, 3]")
    c["safetensors-config-deeply-nested"] = safetensors_with("fashion-stylegan2", None, raw="[" * 100_000 + "]" * 100_000)
    c["safetensors-sg3-bogus-layer-list"] = safetensors_with(R2 / "c4t-sg3-T-32.pkl", _set(layers=[["L0", "x", None]]))
    c["safetensors-sg3-layers-not-a-list"] = safetensors_with(R2 / "c4t-sg3-T-32.pkl", _set(layers=7))

    def st_header_list(t, m):
        import struct
        head = b"[" + b" " * 30 + b"]"
        return _sample(_write(t / "l.safetensors", struct.pack("<Q", len(head)) + head + b"0" * 64), t / "o.png")
    c["safetensors-header-not-an-object"] = st_header_list

    def probe_field(t, m):
        (t / "img").mkdir()
        _tiny_png(t / "img" / "a.png")
        (t / "labels.csv").write_text("a.png," + "x" * 200_000 + "\n")
        return ["evaluate-inversion", "--model", "fashion-stylegan2", "--n", "2", "--steps", "1",
                "--attribute-probe", str(t / "labels.csv"), "--targets", str(t / "img")]
    c["labels-csv-field-200-KiB"] = probe_field
    def pgan_leak(value):
        def build(t, m):
            from latentatlas.models.readers.pgan import SAFE_GLOBALS
            with torch.serialization.safe_globals(SAFE_GLOBALS):
                ck = torch.load(R2 / "s-pgan-32.pth", weights_only=True)
            ck["config"] = dict(vars(ck["config"]), leakyReluLeak=value)     # a dict config is read the same way
            torch.save(ck, t / "p.pth")
            return _sample(str(t / "p.pth"), t / "o.png")
        return build
    c["pgan-leaky-relu-leak-nan"] = pgan_leak(float("nan"))
    c["pgan-leaky-relu-leak-string"] = pgan_leak("abc")

    def pgan_category(t, m):
        from latentatlas.models.readers.pgan import SAFE_GLOBALS
        with torch.serialization.safe_globals(SAFE_GLOBALS):
            ck = torch.load(R2 / "s-pgan-32.pth", weights_only=True)
        ck["config"] = dict(vars(ck["config"]), categoryVectorDim="abc")
        torch.save(ck, t / "p.pth")
        return _sample(str(t / "p.pth"), t / "o.png")
    c["pgan-category-dim-a-string"] = pgan_category
    c["truncation-psi-1e308"] = lambda t, m: _sample("fashion-stylegan2", t / "o.png") + ["--truncation-psi", "1e308"]
    c["strategy-psi-1e308"] = lambda t, m: _sample("fashion-stylegan2", t / "o.png") + [
        "--strategy", "truncation", "--param", "psi=1e308"]
    for v in ("nan", "inf", "-1"):
        c[f"regularizer-value-{v}"] = lambda t, m, v=v: ["invert", str(_tiny_png(t / "x.png")), "--model", "fashion-stylegan2",
                                                         "--regularizer", f"pnorm-clip:{v}", "--out", str(t / "inv")]
    return c


CASES = _cases()


def _outputs(t):
    """Files a case could have written (outputs and markers), not its own inputs."""
    names = {"o.png", "o.jpg", "w.png", "m.onnx", "marker", "inv"}
    return [p for p in t.rglob("*") if p.name in names and not p.is_dir()] + \
        [p for p in (t / "inv").rglob("*.png")] if (t / "inv").exists() else \
        [p for p in t.rglob("*") if p.name in names and not p.is_dir()]


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input(case, tmp_path, capsys):
    marker = tmp_path / "marker"
    work = tmp_path / "w"
    work.mkdir()
    argv = CASES[case](work, marker)
    capsys.readouterr()
    rc = main(argv)
    err = capsys.readouterr().err
    assert rc == 2, f"{case}: exit {rc}; stderr: {err}"
    errors = [line for line in err.splitlines() if line.startswith("latentatlas: error:")]
    assert len(errors) == 1 and "Traceback" not in err, f"{case}: {err}"
    assert not marker.exists(), f"{case}: code from the input ran"
    assert not _outputs(work), f"{case}: left {_outputs(work)}"


def test_suite_size():
    assert len(CASES) >= 40


LIMIT_AS = 4 * 2 ** 30          # address space of a case's process: a runaway allocation fails fast
PEAK_RSS_MB = 1280              # imports (~250 MB) + at most ~1 GiB for the model and the work (measured: <= 380 MB)

# runs one CLI command in this process and writes its exit code, peak RSS (MB) and seconds to argv[1]
_WRAPPER = """
import json, sys, time
t0 = time.perf_counter()
from latentatlas.cli.main import main
rc = main(sys.argv[2:])
# VmHWM, not ru_maxrss: Linux keeps ru_maxrss across fork + exec (the parent's peak would count)
hwm = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
json.dump({"rc": rc, "peak_mb": hwm / 1024, "seconds": time.perf_counter() - t0}, open(sys.argv[1], "w"))
sys.exit(rc)
"""


def _limited():
    import resource
    resource.setrlimit(resource.RLIMIT_AS, (LIMIT_AS, LIMIT_AS))


def run_limited(argv, stats_path, timeout=120):
    """One case in a fresh process under the address-space limit: (completed process, stats)."""
    p = subprocess.run([sys.executable, "-c", _WRAPPER, str(stats_path), *argv], capture_output=True, text=True,
                       timeout=timeout, preexec_fn=_limited)
    stats = json.loads(Path(stats_path).read_text()) if Path(stats_path).is_file() else {}
    return p, stats


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_in_a_limited_process(case, tmp_path):
    """Issue 42: each case ends with exit 2 in a fresh process under a 4 GiB address-space limit,
    within the timeout (seconds, not minutes) and with its peak RSS under PEAK_RSS_MB
    (``bench/bad_inputs_memory.py`` prints every case's figures)."""
    marker = tmp_path / "marker"
    work = tmp_path / "w"
    work.mkdir()
    argv = CASES[case](work, marker)
    p, stats = run_limited(argv, tmp_path / "stats.json")
    assert p.returncode == 2 and "Traceback" not in p.stderr, f"{case}: {p.returncode} {p.stderr[-500:]}"
    assert stats.get("rc") == 2 and stats["peak_mb"] < PEAK_RSS_MB, f"{case}: {stats}"
    assert not marker.exists()


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(40))
def test_fuzz_byte_flipped_checkpoints(seed, tmp_path, capsys):
    """Byte-flipped copies of real checkpoints of every format: loads (flips in tensor data that
    stay finite) or one-line refusal; never a traceback, never code execution."""
    srcs = [R1 / "nvidia-sg2ada-16-gray.pkl", R1 / "rosinality-sg2-32.pt", R2 / "s-pgan-32.pth",
            R2 / "c4t-sg3-T-32.pkl"]
    src = srcs[seed % len(srcs)]
    rng = np.random.default_rng(seed)
    data = bytearray(src.read_bytes())
    for i in rng.integers(0, len(data), int(rng.integers(1, 200))):
        data[i] = int(rng.integers(0, 256))
    f = tmp_path / ("x" + src.suffix)
    f.write_bytes(bytes(data))
    rc = main(["models", "--inspect", str(f)])
    err = capsys.readouterr().err
    assert rc in (0, 2) and "Traceback" not in err
    if rc == 2:
        assert len([line for line in err.splitlines() if line.startswith("latentatlas: error:")]) == 1


def test_an_npz_is_measured_before_it_is_inflated(tmp_path, monkeypatch, capsys):
    """A small .npz whose arrays inflate beyond the limit is refused from its zip headers, before
    any array is read (the limit lowered here so the bomb stays small to build)."""
    import zipfile

    from latentatlas import validate
    monkeypatch.setattr(validate, "MAX_NPZ_INFLATED", 32 * 2 ** 20)
    path = tmp_path / "bomb.npz"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        with zf.open("vectors.npy", "w", force_zip64=True) as f:
            np.lib.format.write_array_header_1_0(f, {"descr": "<f4", "fortran_order": False, "shape": (2 ** 24, 1)})
            for _ in range(16):
                f.write(b"\0" * 2 ** 22)                 # 64 MiB of zeros, a few hundred KB on disk
    assert path.stat().st_size < 2 ** 20
    assert main(["walk", "--model", "fashion-stylegan2", "--direction", f"{path}:0", "--out", str(tmp_path / "o.png")]) == 2
    assert "would inflate to 64 MiB" in capsys.readouterr().err


def test_a_fifo_beside_real_images_is_skipped_with_a_line(tmp_path):
    """invert on a folder holding a FIFO named like an image returns (it never opens it) and names it."""
    d = tmp_path / "imgs"
    d.mkdir()
    _tiny_png(d / "a.png")
    os.mkfifo(d / "b.png")
    p = subprocess.run([sys.executable, "-m", "latentatlas.cli", "invert", str(d), "--model", "fashion-stylegan2",
                        "--steps", "2", "--init", "mean", "--out", str(tmp_path / "inv")],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 1 and "b.png: not a regular file (a FIFO)" in p.stderr, p.stderr[-800:]
    assert (tmp_path / "inv" / "a.json").exists() and "Traceback" not in p.stderr


def test_a_safetensors_file_whose_weights_changed_is_refused(tmp_path, capsys, monkeypatch):
    """The weights hash a .safetensors file records is checked on load: an edited tensor (still
    finite) is refused in one line; LATENTATLAS_ALLOW_HASH_MISMATCH=1 loads it with a warning."""
    from safetensors.torch import load_file, save_file
    from safetensors import safe_open
    f = tmp_path / "m.safetensors"
    assert main(["convert", "fashion-wgangp", str(f)]) == 0
    with safe_open(str(f), "pt") as h:
        meta = h.metadata()
    t = load_file(str(f))
    key = next(k for k in t if k.startswith("G.") and t[k].is_floating_point())
    t[key] = t[key] + 0.01
    save_file(t, str(tmp_path / "edited.safetensors"), metadata=meta)
    capsys.readouterr()
    assert main(["sample", "--model", str(tmp_path / "edited.safetensors"), "--n", "1", "--out", str(tmp_path / "o.png")]) == 2
    err = capsys.readouterr().err
    assert "the file records" in err and "LATENTATLAS_ALLOW_HASH_MISMATCH" in err and not (tmp_path / "o.png").exists()
    monkeypatch.setenv("LATENTATLAS_ALLOW_HASH_MISMATCH", "1")
    assert main(["sample", "--model", str(tmp_path / "edited.safetensors"), "--n", "1", "--out", str(tmp_path / "o.png")]) == 0
    assert main(["sample", "--model", str(f), "--n", "1", "--out", str(tmp_path / "p.png")]) == 0   # the untouched file


def test_a_labels_csv_is_bounded_as_it_is_parsed(tmp_path, monkeypatch):
    """A field beyond csv's limit and a row count beyond MAX_LABEL_ROWS end in one line naming the
    file (and line); an image listed many times is read once."""
    from latentatlas.errors import LatentAtlasError
    from latentatlas.metrics import attributes as attr
    big = tmp_path / "big.csv"
    big.write_text("a.png," + "x" * 200_000 + "\n")
    with pytest.raises(LatentAtlasError, match=r"big.csv, line 1: not a 'path,label' CSV row"):
        attr.read_labels_csv(big)
    monkeypatch.setattr(attr, "MAX_LABEL_ROWS", 1000)
    many = tmp_path / "many.csv"
    many.write_text("".join(f"a.png,{i % 2}\n" for i in range(1001)))
    with pytest.raises(LatentAtlasError, match="more than 1,000 labelled images"):
        attr.read_labels_csv(many)
    _tiny_png(tmp_path / "a.png")
    reads = []
    real = attr.load_image
    monkeypatch.setattr(attr, "load_image", lambda *a, **k: reads.append(a[0]) or real(*a, **k))
    ok = tmp_path / "ok.csv"
    ok.write_text("".join(f"a.png,{'yes' if i % 2 else 'no'}\n" for i in range(500)))
    from latentatlas.metrics.features import FashionFeatures
    from latentatlas.models.registry import load_generator
    attr.probe_from_csv(ok, load_generator("fashion-stylegan2"), FashionFeatures())
    assert len(reads) == 1


def test_a_pickled_tensor_is_checked_against_its_storage_before_it_is_viewed():
    """NVIDIA pickles rebuild tensors from (storage, offset, size, stride): a stride-0 view declaring
    2^31 elements over one float, or a view past the storage's end, is refused before anything
    reads it (the real fixtures load, tests/test_families.py)."""
    from latentatlas.errors import LatentAtlasError
    from latentatlas.models.readers.nvidia import _rebuild_tensor_checked
    import warnings
    warnings.simplefilter("ignore", UserWarning)          # TypedStorage, what the unpickler hands over
    with pytest.raises(LatentAtlasError, match="4,294,967,296 elements"):
        _rebuild_tensor_checked(torch.zeros(1).storage(), 0, (2 ** 32,), (0,), False, None)
    with pytest.raises(LatentAtlasError, match="over a storage of 1 elements"):
        _rebuild_tensor_checked(torch.zeros(1).storage(), 0, (2 ** 31,), (0,), False, None)
    with pytest.raises(LatentAtlasError, match="over a storage of 4 elements"):
        _rebuild_tensor_checked(torch.zeros(4).storage(), 0, (8,), (1,), False, None)
    t = _rebuild_tensor_checked(torch.arange(6.).storage(), 0, (2, 3), (3, 1), False, None)
    assert t.tolist() == [[0, 1, 2], [3, 4, 5]]
