"""Images per second at batch 1/64/256 for each bundled model and a tiny config, both
modulation paths for StyleGAN2, and the achieved FLOP rate as a share of the GEMM peak
measured in the same run."""
from __future__ import annotations

import torch
from _common import flops_of, gemm_peak, timeit

from latentatlas.errors import LatentAtlasError
from latentatlas.models.registry import load_generator


def main():
    torch.set_num_threads(torch.get_num_threads())
    peak = gemm_peak()
    print(f"GEMM peak (float32 2048^3, {torch.get_num_threads()} threads): {peak / 1e9:.1f} GFLOP/s")
    from conftest import tiny_stylegan2
    models = [("tiny-sg2 16x16", tiny_stylegan2())]
    for name in ("fashion-stylegan2", "fashion-wgangp", "faces-dcgan"):
        try:
            models.append((name, load_generator(name)))
        except LatentAtlasError as e:
            print(f"{name}: skipped ({e})")
    print(f"{'model':<22}{'path':<9}{'batch':>6}{'img/s':>10}{'GFLOP/img':>11}{'GFLOP/s':>9}{'of peak':>9}")
    for name, m in models:
        paths = ["scale-act", "grouped"] if m.has_mapping else ["-"]
        for path in paths:
            if m.has_mapping:
                m.grouped = path == "grouped"
            for b in (1, 64, 256):
                z = m.sample_z(b)
                with torch.no_grad():
                    f = flops_of(lambda: m(z))
                    t = timeit(lambda: m(z), min_time=1.0)
                rate = f / t
                print(f"{name:<22}{path:<9}{b:>6}{b / t:>10.1f}{f / b / 1e9:>11.4f}{rate / 1e9:>9.2f}{rate / peak:>9.1%}")
        if m.has_mapping:
            m.grouped = False


if __name__ == "__main__":
    main()
