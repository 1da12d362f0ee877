#!/usr/bin/env bash
# Issue 33, item 4: the gpu-marked tests and the model benchmark at real depth on one GPU.
#
#   bash benchmarks/gpu_issue33.sh            # on the lent H100/H200: writes benchmarks/results,
#                                             # the README's GPU table, and copies under $OUT
#   DRY=1 bash benchmarks/gpu_issue33.sh      # CPU dry run at depth/32 (checks that it runs)
#   ONLY='compiled b1$' bash benchmarks/gpu_issue33.sh   # only the steps whose name matches
#
# Runs from the repository checkout (PYTHONPATH=src: the device machine has no registry;
# torch, transformers, torchvision, pytest, tqdm are in its image). Steps run most important
# first, each under its own `timeout`, and a step that cannot finish before BUDGET seconds
# (default 540: a command may run 9-10 minutes) is skipped and logged, never half-started
# below MIN_STEP seconds. Sizing (an estimate, logged at the start from the batch-1 CUDA
# JSONs in benchmarks/results: their unpruned prefill and decode-step medians; batch B
# multiplies the prefill about B-fold and barely moves a decode step): an eager run of one
# config at batch 8 and 32, keep 0.10/0.25, 8 new tokens, 3 repeats + 1 warm-up pair, is
# well under its 100 s step with the build; a compiled run compiles one graph per prefill
# bucket and one for decode (unmeasured at real depth: hence keep 0.10 only, two warm-up
# pairs, and the step timeouts). Steps that do not fit are logged as SKIPPED.
# the whole script is one function: bash parses it before running, so an edit to this
# file while it runs cannot change what runs
main() {
set -u
cd "$(dirname "$0")/.."
export PYTHONPATH="src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
# the compiled runs log every recompilation and why a graph skips CUDA graphs (or re-records)
export TORCH_LOGS="${TORCH_LOGS:-recompiles,perf_hints}"
PY=${PYTHON:-python3}
DRY=${DRY:-0}
OUT=${OUT:-/tmp/gpu_issue33}
mkdir -p "$OUT"
LOG="$OUT/log.txt"
: >"$LOG"

if [ "$DRY" = 1 ]; then  # tiny CPU settings: the same commands, results kept out of the repo
    PY=${PYTHON:-.venv/bin/python}
    COMMON=(--device cpu --dtype float32 --depth-scale 32 --new-tokens 2 --repeats 1
            --out "$OUT/results")
    BIG=2 HUGE=3 BUDGET=${BUDGET:-900} MIN_STEP=${MIN_STEP:-20} LIMIT=${LIMIT:-300}
    CONFIGS=(llava-1.5-7b qwen2-vl-7b)
else
    COMMON=(--device cuda --dtype bfloat16 --depth-scale 1 --new-tokens 8 --repeats 3
            --out benchmarks/results --readme README.md)
    BIG=8 HUGE=32 BUDGET=${BUDGET:-540} MIN_STEP=${MIN_STEP:-30} LIMIT=0
    CONFIGS=(llava-1.5-7b qwen2-vl-7b llava-onevision-7b qwen3-vl-8b)
fi
FULL_KEEP=(0.05 0.1 0.25 0.5 1.0)

log() { echo "[$(date -u +%H:%M:%S) +${SECONDS}s] $*" | tee -a "$LOG"; }

# step LIMIT_S NAME COMMAND...: run under `timeout`, cut to the time left; skip if too little
step() {
    local limit=$1 name=$2
    shift 2
    [ "$LIMIT" -gt 0 ] && limit=$LIMIT
    if [ -n "${ONLY:-}" ] && ! [[ "$name" =~ $ONLY ]]; then  # ONLY=regex: a subset of steps
        log "SKIPPED $name (not in ONLY=$ONLY)"
        return
    fi
    local left=$((BUDGET - SECONDS - 15))  # 15 s kept for the final render and copies
    [ "$left" -lt "$limit" ] && limit=$left
    if [ "$limit" -lt "$MIN_STEP" ]; then
        log "SKIPPED $name (${left}s left)"
        return
    fi
    log "START $name (timeout ${limit}s): $*"
    timeout --kill-after=10 "$limit" "$@" >>"$LOG" 2>&1
    local rc=$?
    log "END $name rc=$rc$([ $rc = 124 ] && echo ' (timed out)')"
}

# bench LIMIT_S CONFIG MODE KEEP... -- BATCH...: one model_benchmark.py run as a step
# (it writes its JSON after each row, so a run cut short keeps its finished rows)
bench() {
    local limit=$1 name=$2 mode=$3 keep=() batches=()
    shift 3
    while [ "$1" != "--" ]; do keep+=("$1"); shift; done
    shift
    for b in "$@"; do batches+=(--batch-size "$b"); done
    step "$limit" "$name $mode b$*" "$PY" benchmarks/model_benchmark.py --configs "$name" \
        --modes "$mode" --keep "${keep[@]}" "${batches[@]}" "${COMMON[@]}"
}

log "DRY=$DRY python=$PY budget=${BUDGET}s"
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 || true
  "$PY" -c "import torch, transformers; print('torch', torch.__version__, 'transformers',
transformers.__version__, 'cuda', torch.cuda.is_available())"; } >>"$LOG" 2>&1

# the estimate's inputs: each config's recorded batch-1 CUDA times (ms), before this run
"$PY" - "${CONFIGS[@]}" >>"$LOG" 2>&1 <<'PYEOF' || true
import json, sys
from pathlib import Path
for name in sys.argv[1:]:
    path = Path(f"benchmarks/results/{name}_cuda_bfloat16_d1.json")
    if path.exists():
        rows = json.loads(path.read_text())["results"]
        base = rows[0]["baseline"]
        print(f"recorded {name} batch 1: prefill {base['prefill_ms']['median']:.1f} ms, decode "
              f"{base['decode_ms_per_token']['median']:.1f} ms/token ({path.name})")
PYEOF

# (a) the gpu-marked tests (they skip without CUDA), collected from the files that hold
# them only: a test module needing a package the GPU image lacks cannot stop them
mapfile -t gpu_files < <(grep -rlE "mark\.gpu\b" tests --include="test_*.py" | sort)
step 120 "pytest -m gpu" "$PY" -m pytest -m gpu -q -rs -p no:cacheprovider "${gpu_files[@]}" \
    --junitxml="$OUT/pytest_gpu.xml"

# (b) most important first: the targets name llava-1.5-7b and qwen2-vl-7b at batch 8/32
L=${CONFIGS[0]} Q=${CONFIGS[1]}
bench 100 "$L" eager 0.1 0.25 -- "$BIG" "$HUGE"
bench 100 "$Q" eager 0.1 0.25 -- "$BIG" "$HUGE"
bench 120 "$L" compiled 0.1 -- 1
bench 120 "$Q" compiled 0.1 -- 1
bench 100 "$L" compiled 0.1 -- "$BIG"
bench 100 "$Q" compiled 0.1 -- "$BIG"
bench 60 "$L" eager "${FULL_KEEP[@]}" -- 1
bench 60 "$Q" eager "${FULL_KEEP[@]}" -- 1
for name in "${CONFIGS[@]:2}"; do
    bench 100 "$name" eager 0.1 0.25 -- 1 "$BIG" "$HUGE"
done
bench 100 "$L" compiled 0.1 -- "$HUGE"
bench 100 "$Q" compiled 0.1 -- "$HUGE"
for name in "${CONFIGS[@]:2}"; do
    bench 120 "$name" compiled 0.1 -- 1 "$BIG"
done

# every table again from the JSONs (also those of runs cut short), then the copies under $OUT
render=(--modes eager compiled --batch-size 1 --batch-size "$BIG" --batch-size "$HUGE"
        --keep 0.1 0.25 "${COMMON[@]}")
by="bash benchmarks/gpu_issue33.sh"
[ "$DRY" = 1 ] && by="DRY=1 $by"
"$PY" benchmarks/model_benchmark.py --render-only --produced-by "$by" "${render[@]}" >>"$LOG" 2>&1 \
    || log "render failed"
if [ "$DRY" = 1 ]; then
    results=("$OUT"/results/*.json)
    tables=("$OUT"/results/model_cpu.md)
else
    results=(benchmarks/results/*_cuda_*.json)
    tables=(benchmarks/results/model_cuda.md README.md)
fi
tar -czf "$OUT/results.tgz" "${results[@]}" 2>>"$LOG" || log "tar failed"
cp "${tables[@]}" "$OUT/" 2>>"$LOG" || log "copy failed"
log "done: $(grep -c '^\[.*END .* rc=0' "$LOG") steps ok, $(grep -c '\] SKIPPED ' "$LOG") skipped"
}

main "$@"; exit $?  # one line: bash has read it all before main runs
