"""Loading cost (issue 39): time and peak memory of `load_generator` on real-size files in fresh
processes — a paper256-config StyleGAN2 (256 px) and a config-f (1024 px) generator with random
weights, each written by the bench as our .pt and .safetensors. Peak memory is VmHWM minus the
process's after `import latentatlas.models.registry`; the file size is beside it (one copy of the
weights is the floor).

usage: python bench/bench_loading.py [--sizes 256,1024] [--repeat 3]"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

CHILD = """
import json, sys, time
def hwm():
    return next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:")) / 1024
t0 = time.perf_counter()
from latentatlas.models.registry import load_generator
t1 = time.perf_counter(); base = hwm()
m = load_generator(sys.argv[1])
t2 = time.perf_counter()
print(json.dumps({"import_s": t1 - t0, "load_s": t2 - t1, "peak_mb": hwm() - base}))
"""


def build(resolution: int, out: Path) -> list[Path]:
    from bench_precision import paper256
    from latentatlas.cli.main import main
    from latentatlas.models.registry import save_model
    from latentatlas.models.stylegan2 import StyleGAN2Config, StyleGAN2Generator
    if resolution == 1024:       # config-f: 512 channels throughout, 8 mapping layers, z = w = 512
        cfg = StyleGAN2Config(z_dim=512, w_dim=512, img_resolution=1024, img_channels=3,
                              channels={r: min(512, 32768 // r) for r in [2 ** i for i in range(2, 11)]})
        g = StyleGAN2Generator(cfg)
    else:
        m = paper256(resolution)
        cfg, g = m.cfg, m.G
    pt = save_model(out / f"g{resolution}.pt", arch="stylegan2", config=cfg.to_dict(), G=g, D=None)
    st = out / f"g{resolution}.safetensors"
    assert main(["convert", str(pt), str(st)]) == 0
    return [Path(pt), st]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="256,1024")
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}   # as users run it: .pyc cached
    with tempfile.TemporaryDirectory() as d:
        print(f"{'file':<24}{'MB':>8}{'load s (best)':>15}{'peak MB over import':>22}")
        for r in (int(x) for x in a.sizes.split(",")):
            for f in build(r, Path(d)):
                runs = [json.loads(subprocess.run([sys.executable, "-c", CHILD, str(f)], capture_output=True, text=True,
                                                  env=env, check=True).stdout.strip().splitlines()[-1])
                        for _ in range(a.repeat)]
                print(f"{f.name:<24}{f.stat().st_size / 2 ** 20:>8.0f}{min(x['load_s'] for x in runs):>15.3f}"
                      f"{min(x['peak_mb'] for x in runs):>22.0f}")


if __name__ == "__main__":
    main()
