"""Paired comparison of the II2S rows' edit range against unregularised W+ on the same images:
the edit range of a method minus W+'s, with a 95% interval from resampling the images (the same
resample for both methods, so the images' own spread cancels). Recomputed from the rows' stored
P-norm+ codes; the rows' edit ranges are reproduced to the last digit first.

usage: python bench/ii2s_paired.py [ROWS_DIR] [ATLAS]   (defaults: bench/results/ii2s-n100/{rows,atlas.npz})"""
from __future__ import annotations

import sys
from pathlib import Path

import torch

from latentatlas import load_generator
from latentatlas.atlas import Atlas
from latentatlas.evaluation.inversion import InversionEval, edit_probs, edit_range_of, paired_edit_difference

BOOT = 2000


def main():
    base_dir = Path("bench/results/ii2s-n100")
    rows_dir = Path(sys.argv[1]) if len(sys.argv) > 1 else base_dir / "rows"
    atlas_path = Path(sys.argv[2]) if len(sys.argv) > 2 else base_dir / "atlas.npz"
    model = load_generator("fashion-stylegan2")
    atlas = Atlas.load(atlas_path)
    ev = InversionEval(model, atlas, 0)
    plus = atlas.pnorm_plus.to(model.device)
    rows = [torch.load(p, map_location="cpu", weights_only=True) for p in sorted(rows_dir.glob("row-*.pt"))]
    probs = {}
    for r in rows:
        ws = plus.inverse_transform(r["_pnorm+"].to(model.device))
        p = edit_probs(model, ws, ev.dirs, ev.attrs)
        again = float(edit_range_of(p).values.double().mean())
        assert abs(again - r["edit_prob_range"]) < 1e-5, (r["method"], again, r["edit_prob_range"])
        probs[(r["targets"], r["method"])] = p
    print(f"edit range minus W+ (I2S)'s on the same images; 95% interval over {BOOT} paired resamples")
    print("| targets | method | edit range | minus W+ | 95% interval | share of resamples above W+ |")
    print("|---|---|---|---|---|---|")
    for (tset, method), p in sorted(probs.items(), key=lambda kv: (kv[0][0] != "test images", kv[0])):
        if method == "W+ (I2S)":
            continue
        c = paired_edit_difference(p, probs[(tset, "W+ (I2S)")], boot=BOOT)
        print(f"| {tset} | {method} | {float(edit_range_of(p).values.mean()):.3f} | {c['diff']:+.3f} | "
              f"[{c['lo']:+.3f}, {c['hi']:+.3f}] | {c['share_above']:.2f} |")

if __name__ == "__main__":
    main()
