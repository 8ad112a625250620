#!/usr/bin/env bash
# Issue 21's checks and figures on one GPU machine in one call: tests/gpu, then the benchmarks,
# each step under its own time limit so that one hang does not take the rest of the call.
# Logs and JSON go under $OUT (the device tool brings that folder back).
#
#   bash benchmarks/gpu_issue21.sh [tests] [memory] [kv] [long]      (default: all, in this order)
#
#   tests   pytest tests/gpu (full tracebacks, every test's outcome)    -> tests.log
#   memory  tests/gpu/test_memory.py alone in a fresh process            -> memory.log
#   kv      benchmarks/gpu_kv.py --no-variants (peaks, tokens/s, budget)  -> gpu_kv.json, gpu_kv.log
#   long    benchmarks/gpu_long_workload.py --recalls 300 (compiles)      -> gpu_long_workload.json, long.log
#
# CALL_S (default 570) is the whole call's time; a step that cannot get its minimum is skipped.
set -u -o pipefail
OUT=${OUT:-out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
CALL_S=${CALL_S:-570}
steps=("$@")
[ ${#steps[@]} -eq 0 ] && steps=(tests memory kv long)

left() { echo $((CALL_S - SECONDS)); }

run_step() {  # name, minimum seconds, most seconds, command...
    local name=$1 least=$2 most=$3
    shift 3
    local budget
    budget=$(left)
    budget=$((budget - 10 < most ? budget - 10 : most))
    if ((budget < least)); then
        echo "$name: skipped, $(left) s left" | tee -a "$OUT/steps.txt"
        return
    fi
    local t0=$SECONDS
    timeout --kill-after=10 "$budget" "$@"
    echo "$name: rc=$? in $((SECONDS - t0)) s (limit $budget s)" | tee -a "$OUT/steps.txt"
}

{
    date -u
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
    python3 -c 'import sys, torch, transformers, triton; print(sys.version.split()[0], torch.__version__, "transformers", transformers.__version__, "triton", triton.__version__)'
} 2>&1 | tee -a "$OUT/steps.txt"

for s in "${steps[@]}"; do
    case $s in
    tests)
        run_step tests 120 420 bash -c "python3 -m pytest tests/gpu -s -rA --tb=long -p no:cacheprovider --timeout=300 2>&1 | tee '$OUT/tests.log'"
        ;;
    memory)  # only where the suite's memory test failed (or the suite did not run)
        grep -q "FAILED tests/gpu/test_memory\|ERROR tests/gpu/test_memory" "$OUT/tests.log" 2>/dev/null ||
            [ ! -s "$OUT/tests.log" ] || continue
        run_step memory 60 150 bash -c "python3 -m pytest tests/gpu/test_memory.py -s -rA --tb=long -p no:cacheprovider --timeout=140 2>&1 | tee '$OUT/memory.log'"
        ;;
    kv)
        run_step kv 100 240 bash -c "python3 benchmarks/gpu_kv.py --no-variants --json '$OUT/gpu_kv.json' > '$OUT/gpu_kv.log' 2>&1"
        ;;
    long)
        run_step long 150 240 bash -c "TORCH_LOGS=recompiles python3 benchmarks/gpu_long_workload.py --recalls 300 --json '$OUT/gpu_long_workload.json' > '$OUT/long.log' 2>&1"
        ;;
    *) echo "unknown step $s" | tee -a "$OUT/steps.txt" ;;
    esac
done
tail -n 3 "$OUT/tests.log" "$OUT/memory.log" 2>/dev/null
tail -n 12 "$OUT/gpu_kv.log" "$OUT/long.log" 2>/dev/null
cat "$OUT/steps.txt"
