#!/usr/bin/env bash
# The prepared accelerator check (issue 38), one script for the device machine, under 10 minutes:
#   1. the default test suite with the device the tests use set to CUDA (LATENTATLAS_TEST_DEVICE);
#   2. throughput at 256 and 1024 px, fp32 / TF32 / bf16 (bench/bench_precision.py --device cuda);
#   3. the headline: 1,000 images x 1,000 steps of W+ inversion at 256 px (target <= 5 min on one
#      H100-class GPU).
# Results go to $OUT (or ./gpu-check-results). Without CUDA it says so and runs the CPU-skippable
# parts only (the speed table on the CPU, at a short timing window), so the script itself is tested.
#
# usage: bash bench/gpu_check.sh            (PYTHON=path/to/python to pick the interpreter)
set -uo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}"
OUT="${OUT:-gpu-check-results}"
mkdir -p "$OUT"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
cuda=$("$PY" -c "import torch; print(int(torch.cuda.is_available()))" 2>/dev/null || echo 0)
"$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(),
      torch.cuda.get_device_name(0) if torch.cuda.is_available() else '')" | tee "$OUT/device.txt"

if [ "$cuda" != "1" ]; then
    echo "no CUDA device: running the CPU-skippable part only (speed table, short window)" | tee -a "$OUT/device.txt"
    (cd bench && timeout 900 "$PY" bench_precision.py --min-time 0.5) 2>&1 | tee "$OUT/precision-cpu.txt"
    exit "${PIPESTATUS[0]}"
fi

status=0
# 1. the default suite on CUDA (4 minutes at most here; the suite is CPU-sized)
LATENTATLAS_TEST_DEVICE=cuda timeout 240 "$PY" -m pytest -q -x -p no:cacheprovider 2>&1 | tail -30 \
    | tee "$OUT/tests-cuda.txt" || status=1
# 2. throughput: fp32 with TF32 off, then on, both against bf16 (ratios in one run each)
(cd bench && timeout 120 "$PY" bench_precision.py --device cuda --sizes 256,1024 --min-time 1) 2>&1 \
    | tee "$OUT/precision-fp32-vs-bf16.txt" || status=1
(cd bench && timeout 120 "$PY" bench_precision.py --device cuda --sizes 256,1024 --min-time 1 --tf32) 2>&1 \
    | tee "$OUT/precision-tf32-vs-bf16.txt" || status=1
# 3. the headline
(cd bench && timeout 330 "$PY" bench_precision.py --device cuda --skip-speed --headline 1000) 2>&1 \
    | tee "$OUT/headline.txt" || status=1
exit $status
