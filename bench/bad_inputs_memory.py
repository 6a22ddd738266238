"""Every hostile-input case of tests/test_bad_inputs.py in a fresh process under the test's
address-space limit: exit code, peak RSS and seconds per case (issue 42's table). The peak
includes the interpreter, torch and the case's model; the bare import of the CLI is printed first.

usage: python bench/bad_inputs_memory.py [SUBSTRING]   (only the cases whose name contains it)"""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import test_bad_inputs as T  # noqa: E402


def main():
    only = sys.argv[1] if len(sys.argv) > 1 else ""
    with tempfile.TemporaryDirectory() as d:
        _, base = T.run_limited(["models"], Path(d) / "base.json")
        print(f"baseline (latentatlas models): peak RSS {base['peak_mb']:.0f} MB, {base['seconds']:.1f} s")
        print(f"{'case':<52}{'exit':>5}{'peak MB':>9}{'s':>7}")
        worst = 0.0
        for name in sorted(T.CASES):
            if only not in name:
                continue
            work = Path(tempfile.mkdtemp(dir=d))
            argv = T.CASES[name](work, work / "marker")
            p, st = T.run_limited(argv, work / "stats.json")
            worst = max(worst, st.get("peak_mb", 0))
            print(f"{name:<52}{p.returncode:>5}{st.get('peak_mb', float('nan')):>9.0f}{st.get('seconds', float('nan')):>7.1f}")
        print(f"largest peak RSS {worst:.0f} MB (limit in the slow test: {T.PEAK_RSS_MB} MB)")


if __name__ == "__main__":
    main()
