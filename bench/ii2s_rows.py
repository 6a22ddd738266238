"""The rows an `evaluate-inversion --resume DIR` run has finished so far, as a Markdown table
(the command prints the whole table only when every row is there).

usage: python bench/ii2s_rows.py [DIR]   (default bench/results/ii2s-n100/rows)"""
from __future__ import annotations

import sys
from pathlib import Path

import torch

from latentatlas.evaluation.inversion import protocol_table


def main():
    d = Path(sys.argv[1] if len(sys.argv) > 1 else "bench/results/ii2s-n100/rows")
    rows = [torch.load(p, map_location="cpu", weights_only=True) for p in sorted(d.glob("row-*.pt"))]
    rows.sort(key=lambda r: (r["targets"] != "test images", r["targets"], r["method"]))
    print(f"{len(rows)} rows in {d}")
    print(protocol_table(rows, markdown=True))


if __name__ == "__main__":
    main()
