"""Time of each report section (and the whole build) for a model and profile, from the build
itself (each section records its own time in the page).

usage: python bench/bench_report.py [MODEL] [quick|full]"""
from __future__ import annotations

import re
import sys
import tempfile
import time
from pathlib import Path

import _common  # noqa: F401  (the allocator policy the CLI applies)
from latentatlas.report.build import build_report


def main():
    model = sys.argv[1] if len(sys.argv) > 1 else "fashion-stylegan2"
    profile = sys.argv[2] if len(sys.argv) > 2 else "full"
    with tempfile.TemporaryDirectory() as d:
        t0 = time.perf_counter()
        path = build_report(model, Path(d) / "rep", profile=profile)
        total = time.perf_counter() - t0
        page = path.read_text()
    ids = re.findall(r'<section id="([^"]+)">', page)
    secs = [float(x) for x in re.findall(r"section built in ([0-9.]+) s", page)]
    print(f"report on {model}, profile {profile}: {total:.0f} s in all (model loading and page writing included)")
    for key, s in sorted(zip(ids, secs), key=lambda t: -t[1]):
        print(f"  {key:<14}{s:>8.1f} s{100 * s / total:>7.1f}%")


if __name__ == "__main__":
    main()
