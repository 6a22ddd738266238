"""DP-LaSE training on fashion-stylegan2: the loss curve (every 100 steps) and the time,
for direction discovery at split layer b8 (k = 5)."""
from __future__ import annotations

import sys

from latentatlas.models.registry import load_generator
from latentatlas.walks.density import DPConfig, train_dp_lase


def main():
    m = load_generator(sys.argv[1] if len(sys.argv) > 1 else "fashion-stylegan2")
    steps = int(sys.argv[2]) if len(sys.argv) > 2 else 1500
    dp, log = train_dp_lase(m, DPConfig(steps=steps, n_directions=5, layer="b8"), space="w")
    print(f"{m.name}: {steps} steps in {log.seconds:.1f} s ({log.seconds / steps * 1000:.0f} ms/step)")
    print(f"{'step':>6}{'l_mon':>10}{'l_lik':>10}{'l_den':>10}{'l_var':>10}{'l_reg':>10}")
    for row in log.losses:
        if row[0] % 100 == 0 or row[0] == steps - 1:
            print(f"{row[0]:>6}" + "".join(f"{v:>10.4f}" for v in row[1:]))


if __name__ == "__main__":
    main()
