#!/usr/bin/env bash
# The GPU check: on a machine with an NVIDIA GPU, CuPy and PyTorch but no network, install
# this checkout, run the GPU tests, the GPU benchmarks beside PyTorch CUDA and the whole
# suite on the cupy backend, and print a short table last. About 6 minutes at most: every
# phase has its own time limit, cut to what is left of the budget, and the table is printed
# whatever happened before.
#
#   bench/gpu_check.sh              # the real check (needs the GPU machine)
#   bench/gpu_check.sh --dry-run    # the same plumbing on the CPU, tiny sizes (CI runs it)
#
# Logs, the merged benchmark JSON and the table go to $OUT when set (6 files, no folders),
# else to a new temporary directory (printed). Environment: PYTHON (the interpreter; the
# GPU machine's is /opt/torch/.venv/bin/python3), GPU_CHECK_BUDGET_S (default 330),
# GPU_CHECK_SAMPLES, GPU_CHECK_ROUNDS, GPU_CHECK_PARTS (benchmark parts: b128 b1024 b8192
# start), GPU_CHECK_SUITE (pytest arguments of the suite phase).
set -u
cd "$(dirname "$0")/.."

DRY=0
case "${1:-}" in
  --dry-run) DRY=1 ;;
  "") ;;
  *) echo "usage: $0 [--dry-run]" >&2; exit 2 ;;
esac

START=$(date +%s)
BUDGET=${GPU_CHECK_BUDGET_S:-330}
DEADLINE=$((START + BUDGET))
RESERVE=15  # kept back for the table

if [ -n "${PYTHON:-}" ]; then
  PY=$PYTHON
elif [ "$DRY" = 0 ] && [ -x /opt/torch/.venv/bin/python3 ]; then
  PY=/opt/torch/.venv/bin/python3
else
  PY=python3
fi
DEST=${OUT:-}
if [ -z "$DEST" ]; then DEST=$(mktemp -d -t nnback-gpu-check.XXXXXX); fi
mkdir -p "$DEST"
WORK=$(mktemp -d -t nnback-gpu-work.XXXXXX)
LOG=$DEST/main.log
: >"$LOG"

if [ "$DRY" = 1 ]; then
  export NNBACK_BENCH_GPU_DRY_RUN=1
  SAMPLES=${GPU_CHECK_SAMPLES:-512}
  ROUNDS=${GPU_CHECK_ROUNDS:-1}
  PARTS=${GPU_CHECK_PARTS:-b128 start}
  SUITE=${GPU_CHECK_SUITE:-tests/bench/test_bench_report.py}
else
  SAMPLES=${GPU_CHECK_SAMPLES:-60000}
  ROUNDS=${GPU_CHECK_ROUNDS:-5}
  PARTS=${GPU_CHECK_PARTS:-b128 b1024 b8192 start}
  SUITE=${GPU_CHECK_SUITE:-tests}
fi

say() { echo "[gpu_check +$(($(date +%s) - START))s] $*" | tee -a "$LOG"; }

PHASES=()
# run_phase NAME MAX_SECONDS LOGFILE COMMAND...: run with the smaller of MAX_SECONDS and
# what is left of the budget; record the exit status (124 when the time ran out).
run_phase() {
  local name=$1 limit=$2 logfile=$3
  shift 3
  local left=$((DEADLINE - $(date +%s) - RESERVE))
  [ "$left" -lt "$limit" ] && limit=$left
  if [ "$limit" -lt 5 ]; then
    say "$name: skipped, no time left"
    PHASES+=("--phase" "$name=skipped")
    return
  fi
  say "$name: up to ${limit}s"
  timeout -k 5 "$limit" "$@" >>"$logfile" 2>&1
  local status=$?
  say "$name: exit $status"
  PHASES+=("--phase" "$name=$status")
}

say "python: $PY; output: $DEST; dry run: $DRY; samples: $SAMPLES; rounds: $ROUNDS"
"$PY" -c "import sys, numpy; print(sys.version.split()[0], 'numpy', numpy.__version__)" >>"$LOG" 2>&1
# What is installed, for the log: a missing test dependency explains collection errors.
"$PY" -c 'import importlib.util as u
for n in "cupy torch numba pytest xdist tqdm hypothesis threadpoolctl pytest_benchmark".split():
    print(n + ":", "yes" if u.find_spec(n) else "MISSING")' >>"$LOG" 2>&1
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv >>"$LOG" 2>&1 || true

# 1. Install, offline: everything nnback needs is already there; setuptools and wheel too.
if [ "$DRY" = 1 ]; then
  say "install: skipped in a dry run (the current environment is used)"
  PHASES+=("--phase" "install=skipped")
else
  "$PY" -c "import setuptools, wheel" >>"$LOG" 2>&1 || say "install: setuptools/wheel missing"
  run_phase install 60 "$LOG" "$PY" -m pip install --no-index --no-deps \
    --no-build-isolation -e .
fi

# 2. The gpu-marked tests.
run_phase "gpu tests" 90 "$DEST/gpu-tests.log" "$PY" -m pytest -m gpu tests/cuda -rs -q \
  -p no:cacheprovider --junitxml="$WORK/gpu-tests.xml"

# 3. The GPU benchmarks, one part per batch size (each part measures the ceiling again:
#    a part cut short loses only itself), then the cold and warm start-up.
BENCH_FILES=()
for part in $PARTS; do
  case "$part" in
    start) filter="gpu_start"; limit=70; rounds=$(( ROUNDS < 2 ? ROUNDS : 2 )) ;;
    b128) filter="gpu_train_epoch b128"; limit=70; rounds=$ROUNDS ;;
    *) filter="gpu_train_epoch $part"; limit=60; rounds=$ROUNDS ;;
  esac
  BENCH_FILES+=("$WORK/bench-$part.json")
  run_phase "bench $part" "$limit" "$DEST/bench.log" "$PY" -m nnback.bench --gpu \
    --filter "$filter" --samples "$SAMPLES" --rounds "$rounds" --json "$WORK/bench-$part.json"
done

# 4. The whole suite on the cupy backend (8 workers when pytest-xdist is there).
PARALLEL=()
if "$PY" -c "import xdist" >/dev/null 2>&1 && [ "$DRY" = 0 ]; then PARALLEL=(-n 8); fi
export NNBACK_TEST_BACKENDS=cupy
# shellcheck disable=SC2086  # SUITE is a list of pytest arguments
run_phase "suite on cupy" 150 "$DEST/suite.log" "$PY" -m pytest -q -rs -p no:cacheprovider \
  ${PARALLEL[@]+"${PARALLEL[@]}"} --junitxml="$WORK/suite.xml" $SUITE

# 5. The table, last.
say "total: $(($(date +%s) - START))s"
echo
timeout -k 2 20 "$PY" -m nnback.bench.gpu_report --out "$DEST" \
  --bench ${BENCH_FILES[@]+"${BENCH_FILES[@]}"} \
  --junit "gpu tests=$WORK/gpu-tests.xml" --junit "suite on cupy=$WORK/suite.xml" \
  ${PHASES[@]+"${PHASES[@]}"} || echo "gpu_check: the table could not be made (see $LOG)"
echo "logs and results: $DEST"
rm -rf "$WORK"
