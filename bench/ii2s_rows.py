"""The rows an `evaluate-inversion --resume DIR` run has finished so far, as a Markdown table
(the command prints the whole table only when every row is there).

usage: python bench/ii2s_rows.py [DIR]   (default bench/results/ii2s-n100/rows)"""
from __future__ import annotations

import sys
from pathlib import Path

import torch

COLS = [("PSNR", "psnr", "{:.2f}"), ("SSIM", "ssim", "{:.3f}"), ("perceptual", "perceptual", "{:.3f}"),
        ("edit range", "edit_prob_range", "{:.3f}"), ("flip", "flip_rate", "{:.2f}"), ("PPL", "ppl", "{:.1f}"),
        ("style-mix KID", "style_mixing_kid", "{:.4f}"), ("interp. W+ KID", "interp_wplus_kid", "{:.4f}"),
        ("interp. P-norm+ KID", "interp_pnorm+_kid", "{:.4f}"),
        ("beyond ±3 first 10", "share_beyond_3_first10", "{:.3f}"),
        ("beyond ±3 later", "share_beyond_3_after10", "{:.3f}"), ("seconds", "seconds", "{:.0f}")]


def main():
    d = Path(sys.argv[1] if len(sys.argv) > 1 else "bench/results/ii2s-n100/rows")
    rows = [torch.load(p, map_location="cpu", weights_only=True) for p in sorted(d.glob("row-*.pt"))]
    rows.sort(key=lambda r: (r["targets"] != "test images", r["targets"], r["method"]))
    print(f"{len(rows)} rows in {d}")
    print("| targets | method | " + " | ".join(c for c, _, _ in COLS) + " |")
    print("|---|---|" + "---|" * len(COLS))
    for r in rows:
        cells = []
        for _, key, fmt in COLS:
            v = r.get(key)
            cell = "—" if v is None else fmt.format(v)
            if key.endswith("_kid") and r.get(key + "_std") is not None:
                cell += f"±{r[key + '_std']:.4f}"
            if key == "ppl" and r.get("ppl_sem") is not None:
                cell += f"±{r['ppl_sem']:.1f}"
            if key == "flip_rate" and r.get("flip_n") is not None:
                cell += f" (n {r['flip_n']})"
            cells.append(cell)
        print(f"| {r['targets']} | {r['method']} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
