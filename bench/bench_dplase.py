"""DP-LaSE training on fashion-stylegan2: the loss curve (every 100 steps) and the time, for
direction discovery at split layer b8 (k = 5).

``compare``: the current training loop against the one of an earlier commit (default: b95e9c7,
before the batched loop), same seed and steps, in one run: seconds per step, the final l_var,
and the measurements of ``evaluate_directions`` (G1 variation, density drift of linear vs DP
walks, classes moved) on the directions each one found. The earlier loop is read from git.

``variants``: the current loop under several DPConfig settings (e.g. var_batch=64 var_batch=32),
same seed and steps, in one run, with the same columns.

``curve``: quality against training length, over seeds: one run of STEPS steps per seed, the
model kept at each of AT steps (the learning rate is constant, so the model after s steps of a
long run is the model of an s-step run) and measured with the same columns, then the mean and
spread over the seeds at each length. The time of an s-step discovery is s × the s/step shown.

usage: python bench/bench_dplase.py [MODEL] [STEPS]
       python bench/bench_dplase.py compare [STEPS] [COMMIT]
       python bench/bench_dplase.py variants STEPS NAME=VALUE[,NAME=VALUE] ...
       python bench/bench_dplase.py curve STEPS AT[,AT..] SEED[,SEED..]"""
from __future__ import annotations

import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import torch

from _common import print_dp_curve
from latentatlas.models.registry import load_generator
from latentatlas.walks.density import DPConfig, train_dp_lase

ROOT = Path(__file__).resolve().parents[1]


def _module_at(commit: str, rel: str, name: str):
    src = subprocess.run(["git", "show", f"{commit}:{rel}"], cwd=ROOT, check=True, capture_output=True, text=True).stdout
    mod = types.ModuleType(name)
    sys.modules[name] = mod              # dataclasses look their module up while the class is built
    exec(compile(src, f"{commit}:{rel}", "exec"), mod.__dict__)
    return mod


def _measure(m, dp, x) -> dict:
    """The bench's quality columns for one trained model (its Γ as the directions)."""
    from latentatlas.walks.directions import _finish
    from latentatlas.walks.edit import evaluate_directions
    d = _finish(m, dp.Gamma.detach().t(), "w", "dplase", x)
    rows = evaluate_directions(m, d, n=64, dp_model=dp, ppl=False)["rows"]
    return {k: float(np.mean([r[k] for r in rows]))
            for k in ("g1_variation", "density_drift_linear", "density_drift_dp", "classes_moved")}


def curve(steps: int, at: list[int], seeds: list[int]):
    import copy

    from latentatlas.walks.directions import _samples
    m = load_generator("fashion-stylegan2")
    print(f"DP-LaSE discovery on {m.name}, k = 5, split b8: {steps} steps per seed, kept at {at}, seeds {seeds}")
    with torch.no_grad():
        x = _samples(m, 5000, 0, "w")
    cols = ("l_var", "g1_variation", "density_drift_linear", "density_drift_dp", "classes_moved")
    res = {s: [] for s in at}
    print(f"{'seed':>4}{'steps':>6}{'s/step':>8}" + "".join(f"{c[:12]:>14}" for c in cols))
    for seed in seeds:
        kept = {}
        dp, log = train_dp_lase(m, DPConfig(steps=steps, n_directions=5, layer="b8", seed=seed), space="w",
                                on_step=lambda s, dp: kept.__setitem__(s, copy.deepcopy(dp).eval()) if s in at else None)
        for s in at:
            lv = float(np.mean([l_[4] for l_ in log.losses if s - 100 <= l_[0] < s]))
            row = {"l_var": lv, **_measure(m, kept[s], x)}
            res[s].append(row)
            print(f"{seed:>4}{s:>6}{log.seconds / steps:>8.3f}" + "".join(f"{row[c]:>14.4f}" for c in cols), flush=True)
    print("mean ± std over seeds:")
    for s in at:
        print(f"{'':>4}{s:>6}{'':>8}" + "".join(
            f"{np.mean([r[c] for r in res[s]]):>8.3f}±{np.std([r[c] for r in res[s]]):<5.3f}" for c in cols))
    print("(l_var: the mean of the 100 steps before the length; negative, more G1 variation is lower)")


def _run_rows(m, steps, runs):
    """One table row per (label, density module, DPConfig overrides), same seed and samples."""
    from latentatlas.walks.directions import _samples
    print(f"{'run':<16}{'s/step':>8}{'steps/s':>9}{'l_var':>9}{'l_den':>9}{'g1 var.':>9}{'drift lin':>10}"
          f"{'drift dp':>9}{'classes':>8}")
    with torch.no_grad():
        x = _samples(m, 5000, 0, "w")
    times = {}
    for label, mod, over in runs:
        torch.manual_seed(0)
        dp, log = mod.train_dp_lase(m, mod.DPConfig(steps=steps, n_directions=5, layer="b8", **over), space="w")
        q = _measure(m, dp, x)
        last = log.losses[-10:]
        times[label] = log.seconds / steps
        print(f"{label:<16}{log.seconds / steps:>8.3f}{steps / log.seconds:>9.2f}{np.mean([l[4] for l in last]):>9.3f}"
              f"{np.mean([l[3] for l in last]):>9.3f}{q['g1_variation']:>9.4f}{q['density_drift_linear']:>10.3f}"
              f"{q['density_drift_dp']:>9.3f}{q['classes_moved']:>8.2f}", flush=True)
    first = next(iter(times))
    for label in list(times)[1:]:
        print(f"speed-up of {label} over {first}: {times[first] / times[label]:.2f}x")
    print("(l_var, l_den: the mean of the last 100 steps' losses; l_var is negative: more G1 variation is lower)")


def compare(steps: int = 600, commit: str = "b95e9c7"):
    m = load_generator("fashion-stylegan2")
    old = _module_at(commit, "src/latentatlas/walks/density.py", "density_ref")
    print(f"DP-LaSE discovery on {m.name}, k = 5, split b8, {steps} steps, seed 0: {commit} loop vs now")
    _run_rows(m, steps, [(commit, old, {}), ("now", sys.modules["latentatlas.walks.density"], {})])


def variants(steps: int, specs: list[str]):
    from latentatlas.sampling.generate import parse_params
    m = load_generator("fashion-stylegan2")
    mod = sys.modules["latentatlas.walks.density"]
    print(f"DP-LaSE discovery on {m.name}, k = 5, split b8, {steps} steps, seed 0: DPConfig variants")
    _run_rows(m, steps, [(spec, mod, parse_params(spec.split(","))) for spec in specs])


def main():
    if len(sys.argv) > 4 and sys.argv[1] == "curve":
        curve(int(sys.argv[2]), [int(a) for a in sys.argv[3].split(",")], [int(a) for a in sys.argv[4].split(",")])
        return
    if len(sys.argv) > 2 and sys.argv[1] == "variants":
        variants(int(sys.argv[2]), sys.argv[3:])
        return
    if len(sys.argv) > 1 and sys.argv[1] == "compare":
        compare(int(sys.argv[2]) if len(sys.argv) > 2 else 600, sys.argv[3] if len(sys.argv) > 3 else "b95e9c7")
        return
    m = load_generator(sys.argv[1] if len(sys.argv) > 1 else "fashion-stylegan2")
    steps = int(sys.argv[2]) if len(sys.argv) > 2 else 1500
    dp, log = train_dp_lase(m, DPConfig(steps=steps, n_directions=5, layer="b8"), space="w")
    print(f"{m.name}: {steps} steps in {log.seconds:.1f} s ({log.seconds / steps * 1000:.0f} ms/step)")
    print_dp_curve(log)


if __name__ == "__main__":
    main()
