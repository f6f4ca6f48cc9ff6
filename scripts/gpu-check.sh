#!/usr/bin/env bash
# The GPU check of issue #15 on a machine with an NVIDIA GPU, with the directory `make cuda`
# builds (dist/clarifycoder-cuda-smNN, or the one named by CLARIFYCODER_CUDA_DIR):
#
#   scripts/gpu-check.sh [MODEL.gguf [ADAPTER.gguf]]    # default: the model cache's default
#                                                        # model and its ClarifyCoder adapter
#
#  (a) next-token logits, all layers on the GPU against the CPU, on tiny random models of each
#      architecture and on MODEL, without and with an adapter (bin/gpu_check logits)
#  (b) LoRA training steps on the GPU and on the CPU from the same start: losses and gradients
#      (bin/gpu_check train)
#  (c) decide latency and decode tokens/s, engine and raw llama.cpp (bin/bench_engine), and a
#      50-function `clarifycoder check --no-cache`, GPU against this machine's CPU
#  (d) `clarifycoder-trainer finetune` tokens/s on the GPU
#
# and prints one table (stdout; the programs' own output goes to $WORK/log). It takes a few
# minutes, most of them the CPU side. Without a GPU it says so and exits 0.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"

if ! command -v nvidia-smi >/dev/null || ! nvidia-smi -L 2>/dev/null | grep -q '^GPU '; then
    echo "gpu-check: no NVIDIA GPU here (nvidia-smi is missing or lists no device); nothing to check"
    exit 0
fi

DIST="${CLARIFYCODER_CUDA_DIR:-}"
if [ -z "$DIST" ]; then
    for d in "$HERE"/../dist/clarifycoder-cuda-sm*; do
        [ -x "$d/bin/clarifycoder" ] && DIST="$d"
    done
fi
[ -n "$DIST" ] && [ -x "$DIST/bin/clarifycoder" ] || {
    echo "gpu-check: no CUDA build found; run \`make cuda\` (or set CLARIFYCODER_CUDA_DIR to its directory)" >&2
    exit 1
}
BIN="$(cd "$DIST/bin" && pwd)"
WORK="${WORK:-$(mktemp -d "${TMPDIR:-/tmp}/clarifycoder-gpu-check.XXXXXX")}"
mkdir -p "$WORK"
LOG="$WORK/log"
: > "$LOG"

# A path from `clarifycoder info` (pretty JSON): the "path" inside the block of KEY.
info_path() {
    "$BIN/clarifycoder" info 2>>"$LOG" | awk -v key="\"$1\": {" '
        index($0, key) { inside = 1 }
        inside && /"path":/ { sub(/.*"path": "/, ""); sub(/",?[[:space:]]*$/, ""); print; exit }
        inside && /^  }/ { exit }'
}
# A model named on the command line comes with the adapter named after it, if any.
if [ $# -ge 1 ]; then
    MODEL="$1"
    ADAPTER="${2:-}"
else
    MODEL="$(info_path model)"
    ADAPTER="$(info_path adapter)"
fi
[ -f "$MODEL" ] || {
    echo "gpu-check: model '$MODEL' not found; install it with \`$BIN/clarifycoder model install\` or pass a GGUF file" >&2
    exit 1
}
[ -z "$ADAPTER" ] || [ -f "$ADAPTER" ] || ADAPTER=""
GPU="$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)"
CPUS="$(nproc)"

ROWS=()
row() { ROWS+=("$(printf '%-44s %-22s %-22s %s' "$@")"); }
# A value from one line of JSON: field NAME, a string (without its quotes) or a number.
field() {
    local line
    line="$(cat)"
    case "$line" in
        *"\"$1\":\""*|*"\"$1\": \""*) sed -nE "s/.*\"$1\": ?\"([^\"]*)\".*/\1/p" <<< "$line" ;;
        *) sed -nE "s/.*\"$1\": ?([^,}]*).*/\1/p" <<< "$line" ;;
    esac
}
fmt() { awk -v x="$1" -v f="${2:-%.3g}" 'BEGIN { printf f, x }'; }
step() { echo "gpu-check: $*" >&2; }

step "GPU: $GPU; CPU: $CPUS cores; model: $MODEL${ADAPTER:+; adapter: $ADAPTER}; logs in $LOG"
"$BIN/clarifycoder" info > "$WORK/info.json" 2>>"$LOG"
row "engine device (clarifycoder info)" "$(field device < <(tr -d '\n' < "$WORK/info.json"))" "" ""

# (a) logits
step "(a) logits, GPU against CPU"
{
    "$BIN/gpu_check" logits 2>>"$LOG" || echo "gpu-check: gpu_check logits (tiny) failed" >> "$LOG"
    "$BIN/gpu_check" logits "$MODEL" ${ADAPTER:+"$ADAPTER"} 2>>"$LOG" \
        || echo "gpu-check: gpu_check logits failed" >> "$LOG"
} > "$WORK/logits.jsonl"
while read -r line; do
    name="$(field model <<< "$line")"
    [ "$(field adapter <<< "$line")" = true ] && name="$name + adapter"
    row "(a) logits: $name" \
        "rel.err $(fmt "$(field rel_err <<< "$line")")" \
        "max|d| $(fmt "$(field max_abs <<< "$line")")" \
        "top-1 same: $(fmt "$(field top1 <<< "$line")" %.3f) of $(field positions <<< "$line") positions"
done < "$WORK/logits.jsonl"

# (b) training steps
step "(b) LoRA steps, GPU against CPU"
{
    "$BIN/gpu_check" train "" 4 2>>"$LOG" || echo "gpu-check: gpu_check train (tiny) failed" >> "$LOG"
    "$BIN/gpu_check" train "$MODEL" 3 2>>"$LOG" || echo "gpu-check: gpu_check train failed" >> "$LOG"
} > "$WORK/train.jsonl"
while read -r line; do
    gl="$(field loss_gpu <<< "$line")"
    cl="$(field loss_cpu <<< "$line")"
    row "(b) train $(field model <<< "$line"), step $(field step <<< "$line")" \
        "loss $(fmt "$gl" %.6f)" "loss $(fmt "$cl" %.6f)" \
        "|loss diff| $(awk -v a="$gl" -v b="$cl" 'BEGIN { d = a - b; printf "%.2g", d < 0 ? -d : d }'); grad rel.err $(fmt "$(field grad_rel_err <<< "$line")") (worst tensor $(fmt "$(field grad_rel_err_worst_tensor <<< "$line")"))"
done < "$WORK/train.jsonl"

# (c) engine timings: bench_engine with everything on the GPU, then on the CPU (GPU_LAYERS 0).
step "(c) decide latency and decoding, GPU then CPU"
"$BIN/bench_engine" "$MODEL" 11 128 > "$WORK/bench-gpu.txt" 2>>"$LOG" \
    || echo "gpu-check: bench_engine (GPU) failed" >> "$LOG"
"$BIN/bench_engine" "$MODEL" 3 64 0 > "$WORK/bench-cpu.txt" 2>>"$LOG" \
    || echo "gpu-check: bench_engine (CPU) failed" >> "$LOG"
bench() { sed -nE "$2" "$WORK/bench-$1.txt" | head -1; }
row "(c) decide, engine (ms)" \
    "$(bench gpu 's/^engine decide +([0-9.]+) ms.*/\1/p')" "$(bench cpu 's/^engine decide +([0-9.]+) ms.*/\1/p')" \
    "raw llama.cpp: $(bench gpu 's/^raw .*decide +([0-9.]+) ms.*/\1/p') / $(bench cpu 's/^raw .*decide +([0-9.]+) ms.*/\1/p') ms"
row "(c) prefill, raw llama.cpp (tok/s)" \
    "$(bench gpu 's/^raw +prefill +([0-9.]+) tok.*/\1/p')" "$(bench cpu 's/^raw +prefill +([0-9.]+) tok.*/\1/p')" ""
row "(c) decode 1 sequence, engine (tok/s)" \
    "$(bench gpu 's/^engine .*decode +([0-9.]+) tok.*/\1/p')" "$(bench cpu 's/^engine .*decode +([0-9.]+) tok.*/\1/p')" \
    "raw: $(bench gpu 's/^raw +prefill.*decode +([0-9.]+) tok.*/\1/p') / $(bench cpu 's/^raw +prefill.*decode +([0-9.]+) tok.*/\1/p')"
row "(c) engine/raw time: decide, decode" \
    "$(bench gpu 's/^ratio.*decide time ([0-9.]+) +decode time ([0-9.]+).*/\1, \2/p')" \
    "$(bench cpu 's/^ratio.*decide time ([0-9.]+) +decode time ([0-9.]+).*/\1, \2/p')" "target: at most 1.1 on the GPU"
row "(c) tokenize the prompt, raw (ms); engine/raw decide with it" \
    "$(bench gpu 's/^raw +tokenize +([0-9.]+) ms.*decide time ([0-9.]+).*/\1; \2/p')" \
    "$(bench cpu 's/^raw +tokenize +([0-9.]+) ms.*decide time ([0-9.]+).*/\1; \2/p')" \
    "the engine's decide tokenizes, the raw loop's does not"
row "(c) decode 8 sequences, raw (tok/s)" \
    "$(bench gpu 's/^raw +decode with 8 sequences per step: +([0-9.]+) tok.*/\1/p')" \
    "$(bench cpu 's/^raw +decode with 8 sequences per step: +([0-9.]+) tok.*/\1/p')" ""

# 50 functions: 25 with precise docstrings, 25 vague ones, in one file.
mkdir -p "$WORK/fifty"
for i in $(seq 1 25); do
    cat <<EOF
def clamp_$i(value: float, low: float, high: float) -> float:
    """Return value limited to the closed interval [low, high]; low <= high is required.

    >>> clamp_$i(5.0, 0.0, 1.0)
    1.0
    """
    return max(low, min(high, value))


def tidy_$i(records, limit=$i):
    """Clean up the records and keep the good ones, up to some limit."""
    return records[:limit]


EOF
done > "$WORK/fifty/functions.py"
check() {
    local out="$WORK/check-$1.json"
    shift
    "$BIN/clarifycoder" check --no-cache --format json --model "$MODEL" \
        ${ADAPTER:+--adapter "$ADAPTER"} "$@" "$WORK/fifty" > "$out" 2>>"$LOG" || true
    tr -d '\n ' < "$out" | sed -nE 's/.*"elapsed_ms":([0-9]+).*/\1/p'
}
step "(c) 50-function check, GPU then CPU"
gpu_ms="$(check gpu)"
cpu_ms="$(check cpu --gpu-layers 0)"
flagged() { tr -d '\n ' < "$WORK/check-$1.json" | sed -nE 's/.*"flagged":([0-9]+).*/\1/p'; }
row "(c) check of 50 functions, wall (ms)" "$gpu_ms ($(flagged gpu) flagged)" "$cpu_ms ($(flagged cpu) flagged)" "includes loading the model"

# (d) finetune throughput on the GPU: 64 rows of about 256 tokens (the reference's length), the
# loss on every token like the reference's.
step "(d) finetune on the GPU"
rules=""
for r in $(seq 1 7); do
    rules="$rules\\n    Rule $r: the record is rejected when its field number $r is empty or longer than $((r * 10)) characters."
done
for i in $(seq 1 32); do
    printf '{"id":"c%d","problem":"def validate_%d(record: dict) -> bool:\\n    \\"\\"\\"Return whether the record passes every rule.\\n%s\\n    \\"\\"\\"\\n","answer":"```python\\ndef validate_%d(record: dict) -> bool:\\n    return all(record.values())\\n```","type":"Original","category":"original","source":"gpu-check","source_id":"s%d","method":"gpu-check"}\n' "$i" "$i" "$rules" "$i" "$i"
    printf '{"id":"u%d","problem":"def score_%d(items):\\n    \\"\\"\\"Score the items somehow.\\n%s\\n    \\"\\"\\"\\n","answer":"How should an item be scored, and should the result be a total or one score per item?","type":"Ambiguous","category":"1a","source":"gpu-check","source_id":"s%d","method":"gpu-check"}\n' "$i" "$i" "$rules" "$i"
done > "$WORK/train.jsonl.data"
finetune() {
    local name="$1"
    shift
    "$BIN/clarifycoder-trainer" finetune --model "$MODEL" --train "$WORK/train.jsonl.data" \
        --output "$WORK/run-$name" --max-len 320 --loss full --quiet "$@" > "$WORK/finetune-$name.log" 2>&1 \
        || echo "gpu-check: finetune $name failed" >> "$LOG"
    cat "$WORK/finetune-$name.log" >> "$LOG"
    sed -nE 's/.*finetune: .* steps in .*\(([0-9.]+) tokens\/s\).*/\1/p' "$WORK/finetune-$name.log" | tail -1
}
# One sequence per forward pass (the default) and eight; bf16 halves the frozen weights; dropout
# 0 shows what the dropout masks (drawn on the CPU) cost.
row "(d) finetune tokens/s, f32, 8 steps x 8 seq, 1 per pass" \
    "$(finetune f32 --device cuda --max-steps 8 --accum 8)" "" \
    "issue reference (PyTorch+PEFT bf16, H200): 12,900 at 8 x 256"
row "(d) finetune tokens/s, f32, 8 steps x 8 seq, 8 per pass" \
    "$(finetune f32-8 --device cuda --max-steps 8 --accum 8 --micro-batch 8)" "" ""
row "(d) finetune tokens/s, bf16, 8 steps x 8 seq, 1 per pass" \
    "$(finetune bf16 --device cuda --dtype bf16 --max-steps 8 --accum 8)" "" ""
row "(d) finetune tokens/s, bf16, 8 steps x 8 seq, 8 per pass" \
    "$(finetune bf16-8 --device cuda --dtype bf16 --max-steps 8 --accum 8 --micro-batch 8)" "" ""
row "(d) finetune tokens/s, bf16, 8 x 8, 1 per pass, no dropout" \
    "$(finetune bf16-d0 --device cuda --dtype bf16 --max-steps 8 --accum 8 --dropout 0)" "" ""

echo
echo "ClarifyCoder GPU check, $(date -u +%Y-%m-%d), GPU: $GPU, CPU: $CPUS cores, $(basename "$DIST")"
echo "model: $MODEL${ADAPTER:+, adapter: $ADAPTER}"
printf '%-44s %-22s %-22s %s\n' "check" "GPU" "CPU" "notes"
printf '%s\n' "${ROWS[@]}"
echo "(programs' output: $LOG)"
