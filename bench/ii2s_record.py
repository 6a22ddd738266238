"""Write the II2S protocol record of the bundled fashion-stylegan2 (``evaluation.stored``) from the
n = 100 rows kept in bench/results/ii2s-n100: the figures a report on the same weights shows as the
protocol's verdict beside its own quick measurement (issue 43). Recomputes each compared method's
per-image PSNR and edit readings from the rows' P-norm+ codes (checked against the rows' means).

usage: python bench/ii2s_record.py [ROWS_DIR] [ATLAS] [OUT_DIR]
       (defaults: bench/results/ii2s-n100/{rows,atlas.npz}, src/latentatlas/weights/protocols)"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

from latentatlas import load_generator
from latentatlas.atlas import Atlas
from latentatlas.data.fashion import load_fashion_mnist
from latentatlas.evaluation.inversion import ii2s_record
from latentatlas.evaluation.stored import SHIPPED, save_record


def main():
    base = Path("bench/results/ii2s-n100")
    rows_dir = Path(sys.argv[1]) if len(sys.argv) > 1 else base / "rows"
    atlas = Atlas.load(Path(sys.argv[2]) if len(sys.argv) > 2 else base / "atlas.npz")
    out = Path(sys.argv[3]) if len(sys.argv) > 3 else SHIPPED
    model = load_generator("fashion-stylegan2")
    rows = [torch.load(p, map_location="cpu", weights_only=True) for p in sorted(rows_dir.glob("row-*.pt"))]
    rows = [r for r in rows if r["targets"] == "test images"]
    n, seed = rows[0]["_pnorm+"].shape[0], 0
    x, _ = load_fashion_mnist("test")       # evaluate-inversion's targets: the test split permuted by --seed
    targets = x[torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(seed))[:n]]
    rec = ii2s_record(model, atlas, rows, targets, seed=seed)
    rec.update(steps=rows[0]["steps"], targets="held-out Fashion-MNIST test images", source=str(rows_dir))
    path = save_record(model, "ii2s", rec, directory=out)
    print(json.dumps({k: v for k, v in rec.items() if k != "methods"}, indent=1, default=float))
    print("written", path)


if __name__ == "__main__":
    main()
