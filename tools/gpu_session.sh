#!/usr/bin/env bash
# The GPU proof, as two unattended commands that fit the device budget (15 minutes in all,
# at most 10 a command, at most 8 files of 16 MiB coming back, two folders deep):
#
#   bash tools/gpu_session.sh tests      (~8 min) build _C for sm_90 with every core, then the
#                                        GPU test selection with a per-test timeout
#   bash tools/gpu_session.sh bench      (~5 min) every benchmark family's GPU grid, baselines
#                                        in the same run (do_bench medians)
#   bash tools/gpu_session.sh <cmd> --dry-run
#                                        on a CPU machine: check the logic, the paths, the test
#                                        selection and the output layout, without a GPU
#
# Results land in $OUT (default /tmp/mta-gpu): tests -> env.log, build.log, tests.log,
# summary.md; bench -> env.log, bench.log, results.json, results.md, plots.tar.gz (the PNGs,
# packed so the file count stays under the limit). Commit bench results under
# benchmarks/results/<gpu>-<date>/ (untar the plots there).
#
# The GPU machine has Python 3.12, torch 2.11+cu130, triton 3.6, transformers, pytest, scipy,
# hypothesis, matplotlib, rich and tqdm, and no package registry: the selection needs nothing
# else. The SmolLM2 GGUF cannot travel, so the generate benchmark times SmolLM2's
# architecture with random weights (speed does not depend on the weights) and says so, and
# the SmolLM2 / Gemma / vLLM tests are deselected. The SBT benchmark (CPU trace scoring) is
# not part of the GPU grid.
set -uo pipefail
cd "$(dirname "$0")/.."

usage() { echo "usage: bash tools/gpu_session.sh tests|bench [--dry-run]" >&2; exit 2; }
[ $# -ge 1 ] || usage
CMD="$1"; shift
DRY=0
for arg in "$@"; do
  case "$arg" in
    --dry-run) DRY=1 ;;
    *) usage ;;
  esac
done
case "$CMD" in tests|bench) ;; *) usage ;; esac

OUT="${OUT:-/tmp/mta-gpu}"
mkdir -p "$OUT"
PY="${PYTHON:-python3}"
export TORCH_CUDA_ARCH_LIST="${TORCH_CUDA_ARCH_LIST:-9.0}" MAX_JOBS="${MAX_JOBS:-16}" PYTHONUNBUFFERED=1
export PYTHONPATH=".:python${PYTHONPATH:+:$PYTHONPATH}"

# Every op family's kernel-vs-reference tests, the index-overflow case (B*V > 2^31, in
# test_sampling_backends), the decode step captured in a CUDA graph and compile=True greedy
# equal to eager (test_gpu_decode_step), the C++ ops' opcheck on CUDA.
TEST_FILES=(
  tests/test_sampling_backends.py tests/test_sampling_inputs.py tests/test_sampling_ops.py
  tests/test_sampling_split_row.py tests/test_sampling_statistics.py tests/test_sampling_vs_transformers.py
  tests/test_mixing_ops.py tests/test_mixing_triton.py tests/test_mixing_recipes.py tests/test_wsd_switch_point.py
  tests/test_braking.py tests/test_opcheck.py tests/test_logprobs.py tests/test_rl_ops.py
  tests/test_gpu_decode_step.py tests/test_generate.py tests/test_rl_compaction.py tests/test_properties.py
)
TEST_MARKERS="not smollm2 and not gemma and not vllm"
TEST_TIMEOUT_S="${MTA_TEST_TIMEOUT:-120}"   # per test
TESTS_BUDGET_S=330                           # the whole pytest run (the build comes before)
# Benchmark families and the seconds each may take (sum under 5 minutes with the start-up).
BENCH_FAMILIES=(sampling:60 mixing:35 braking:20 logprobs:25 rl:15 generate:40 overhead:10 inference:30 wsd:20 train:30)

run() {  # run CMD..., or only print it on a dry run
  if [ "$DRY" = 1 ]; then echo "[dry-run] $*"; else "$@"; fi
}

env_log() {
  {
    echo "command: tools/gpu_session.sh $CMD   date: $(date -u +%F' '%T) UTC   commit: $(git rev-parse --short HEAD 2>/dev/null)"
    if [ "$DRY" = 1 ]; then echo "[dry-run] nvidia-smi"; else nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv; fi
    $PY -c "import torch, triton; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'triton', triton.__version__)"
  } >"$OUT/env.log" 2>&1
  cat "$OUT/env.log"
}

check_layout() {  # what comes back: at most 8 files, 16 MiB each, two folders deep
  local n big deep
  n=$(find "$OUT" -type f | wc -l)
  big=$(find "$OUT" -type f -size +16M | wc -l)
  deep=$(find "$OUT" -mindepth 3 -type f | wc -l)
  echo "== \$OUT holds $n files ($big over 16 MiB, $deep deeper than two folders)"
  [ "$n" -le 8 ] && [ "$big" -eq 0 ] && [ "$deep" -eq 0 ]
}

if [ "$CMD" = tests ]; then
  env_log
  echo "== build _C for TORCH_CUDA_ARCH_LIST=$TORCH_CUDA_ARCH_LIST with MAX_JOBS=$MAX_JOBS" | tee "$OUT/build.log"
  if [ "$DRY" = 1 ]; then
    echo "[dry-run] $PY setup.py build_ext --inplace" | tee -a "$OUT/build.log"
  else
    rm -f mta_kernels/_C*.so
    $PY setup.py build_ext --inplace >>"$OUT/build.log" 2>&1 || { tail -40 "$OUT/build.log"; exit 1; }
    tail -3 "$OUT/build.log"
  fi
  $PY -c "import mta_kernels as mk; print('extension', mk.extension_loaded(), mk.extension_error()); \
print('backends on cuda:', mk.available_backends('cuda') if __import__('torch').cuda.is_available() else 'no GPU')" \
    2>&1 | tee -a "$OUT/build.log"

  echo "== tests on the GPU: ${#TEST_FILES[@]} files, -m '$TEST_MARKERS', ${TEST_TIMEOUT_S}s per test" | tee "$OUT/tests.log"
  PYTEST=($PY -m pytest -q -ra -p no:cacheprovider -m "$TEST_MARKERS" "${TEST_FILES[@]}")
  if [ "$DRY" = 1 ]; then
    echo "[dry-run] MTA_TEST_TIMEOUT=$TEST_TIMEOUT_S timeout $TESTS_BUDGET_S ${PYTEST[*]}" | tee -a "$OUT/tests.log"
    "${PYTEST[@]}" --collect-only -q >>"$OUT/tests.log" 2>&1
    status=$?
  else
    MTA_TEST_TIMEOUT="$TEST_TIMEOUT_S" timeout -k 10 "$TESTS_BUDGET_S" "${PYTEST[@]}" >>"$OUT/tests.log" 2>&1
    status=$?
  fi
  {
    echo "# GPU tests ($(head -1 "$OUT/env.log"))"
    echo
    sed -n '2,3p' "$OUT/env.log"
    echo
    echo "pytest exit status: $status$([ $status = 124 ] && echo ' (the run hit its time budget)')"
    echo
    echo '```'
    grep -E "^(FAILED|ERROR|SKIPPED)|passed|failed|error|^tests/.*: [0-9]+$" "$OUT/tests.log" | tail -60
    echo '```'
  } >"$OUT/summary.md"
  cat "$OUT/summary.md"
  check_layout || exit 3
  exit $status
fi

# bench
env_log
[ "$DRY" = 1 ] || ls mta_kernels/_C*.so >/dev/null 2>&1 || {
  echo "no compiled extension: run 'bash tools/gpu_session.sh tests' first (it builds _C)" >&2; exit 1; }
: >"$OUT/bench.log"
status=0
known=$($PY -c "from benchmarks.run import FAMILIES; print(' '.join(FAMILIES))")
for entry in "${BENCH_FAMILIES[@]}"; do
  family="${entry%%:*}" budget="${entry##*:}"
  case " $known " in *" $family "*) ;; *) echo "unknown benchmark family $family (benchmarks/run.py has: $known)" >&2; exit 2 ;; esac
  echo "== $family (at most ${budget}s)" | tee -a "$OUT/bench.log"
  run timeout -k 5 "$budget" $PY benchmarks/run.py --family "$family" --full --out "$OUT/parts/$family" \
    >>"$OUT/bench.log" 2>&1 || { echo "   $family: exit $? (see bench.log)" | tee -a "$OUT/bench.log"; status=1; }
done
if [ "$DRY" = 1 ]; then
  mkdir -p "$OUT/parts/dry" && echo '{"meta": {}, "rows": []}' >"$OUT/parts/dry/results.json" \
    && echo "# dry" >"$OUT/parts/dry/results.md" && : >"$OUT/parts/dry/dry.png"
fi
# One results.json / results.md over the families that finished, the plots in one archive.
$PY - "$OUT" <<'EOF' || status=1
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
parts = sorted(p for p in (out / "parts").glob("*") if (p / "results.json").is_file())
rows, meta, sections = [], {}, []
for part in parts:
    data = json.loads((part / "results.json").read_text())
    rows += data["rows"]
    meta = meta or data["meta"]
    sections.append((part / "results.md").read_text().split("\n", 3)[-1])
(out / "results.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1) + "\n")
header = f"# Benchmarks on the GPU (tools/gpu_session.sh bench)\n\nfamilies: {', '.join(p.name for p in parts)}\n"
(out / "results.md").write_text("\n".join([header, *sections]))
print(f"merged {len(parts)} families, {len(rows)} rows")
EOF
(cd "$OUT/parts" && find . -name '*.png' | tar -czf "$OUT/plots.tar.gz" -T -) || status=1
rm -rf "$OUT/parts"
check_layout || exit 3
exit $status
