#!/usr/bin/env bash
# Trains the default ClarifyCoder adapter for Gemma 3 270M on this CPU and writes it, with its
# manifest, under models/ (`make adapter`). Every step resumes or is cheap to repeat: harvest and
# synthesis take seconds, and the fine-tuning run continues from its last checkpoint.
#
#   DATA=dir      where the data and the run go (default: data)
#   STEPS1=n      optimizer steps of stage 1 (default: 160; 8 sequences each)
#   STEPS2=n      optimizer steps of stage 2 (default: 400)
set -euo pipefail
cd "$(dirname "$0")/.."

DATA="${DATA:-data}"
STEPS1="${STEPS1:-160}"
STEPS2="${STEPS2:-400}"
T=./target/release/clarifycoder-trainer
[ -x "$T" ] || bash scripts/setup.sh

# 1. Clear problems: documented functions of the standard library and the venv's packages,
#    decontaminated against HumanEval (entry points and 13-word overlaps are dropped).
[ -s "$DATA/original.jsonl" ] || "$T" harvest --out-dir "$DATA"
# 2. Their ambiguous / incomplete / inconsistent versions with the questions that resolve them.
[ -s "$DATA/clarify.jsonl" ] || "$T" synthesize --method rules --seed 0 \
    --input "$DATA/harvested.jsonl" --output "$DATA/clarify.jsonl"
# 3. Half clarify, half original; 10% of source functions held out for validation.
[ -s "$DATA/mix/train.jsonl" ] || "$T" mix --clarify "$DATA/clarify.jsonl" \
    --original "$DATA/original.jsonl" --ratio 0.5 --seed 0 --val-fraction 0.1 --out-dir "$DATA/mix"

# 4. LoRA on every projection, loss on the answer only. Stage 1 learns the two answer forms
#    (questions, code) on answers up to --max-len; stage 2 continues from it on the first 8 answer
#    tokens only, which is where ask-or-code is decided, at a third of the cost per sequence.
finetune() {
    local out="$1"; shift
    if [ -f "$out/adapter.lora.gguf" ]; then return 0; fi
    if [ -f "$out/run.json" ]; then set -- "$@" --resume; fi
    "$T" finetune --train "$DATA/mix/train.jsonl" --val "$DATA/mix/val.jsonl" --output "$out" \
        --accum 8 --max-len 256 --rank 8 --alpha 16 --warmup 5 "$@"
}
finetune "$DATA/run-1" --max-steps "$STEPS1" --lr 5e-4 --seed 0 --val-rows 24 --eval-every 20 \
    --save-every 5
finetune "$DATA/run-2" --max-steps "$STEPS2" --lr 1e-3 --seed 1 --val-rows 48 --eval-every 25 \
    --save-every 10 --max-answer-tokens 8 --init-adapter "$DATA/run-1/adapter.safetensors"
RUN="$DATA/run-2"

# 5. Decision accuracy on the validation split, before and after.
[ -s "$DATA/validate-base.json" ] || "$T" validate "$DATA/mix/val.jsonl" --limit 120 \
    --examples 3 --json "$DATA/validate-base.json"
"$T" validate "$DATA/mix/val.jsonl" --limit 120 --examples 6 \
    --adapter "$RUN/adapter.lora.gguf" --json "$DATA/validate-adapter.json"

# 6. The adapter and its manifest.
mkdir -p models
cp "$RUN/adapter.lora.gguf" models/clarifycoder-gemma3-270m.lora.gguf
python3 scripts/adapter-manifest.py "$DATA" > models/clarifycoder-gemma3-270m.json
echo "wrote models/clarifycoder-gemma3-270m.lora.gguf and models/clarifycoder-gemma3-270m.json"
