"""DP-LaSE training on fashion-stylegan2: the loss curve (every 100 steps) and the time,
for direction discovery at split layer b8 (k = 5)."""
from __future__ import annotations

import sys

from _common import print_dp_curve
from latentatlas.models.registry import load_generator
from latentatlas.walks.density import DPConfig, train_dp_lase


def main():
    m = load_generator(sys.argv[1] if len(sys.argv) > 1 else "fashion-stylegan2")
    steps = int(sys.argv[2]) if len(sys.argv) > 2 else 1500
    dp, log = train_dp_lase(m, DPConfig(steps=steps, n_directions=5, layer="b8"), space="w")
    print(f"{m.name}: {steps} steps in {log.seconds:.1f} s ({log.seconds / steps * 1000:.0f} ms/step)")
    print_dp_curve(log)


if __name__ == "__main__":
    main()
