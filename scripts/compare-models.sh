#!/usr/bin/env bash
# The base-model comparison of BENCHMARKS.md ("Choosing the default base model"): every known
# model with and without its ClarifyCoder adapter on the labelled dev set, and on HumanEval's
# original prompts (pass@1, and how often it asks instead of coding). Results go to data/compare/.
#
#   MODELS="qwen2.5-coder-0.5b gemma3-270m"   which models
#   HE_LIMIT=n                                  HumanEval problems (default: all 164)
#   HE_TOKENS=n                                 tokens per HumanEval answer (default: 320)
set -euo pipefail
cd "$(dirname "$0")/.."

MODELS="${MODELS:-qwen2.5-coder-0.5b gemma3-270m}"
HE_TOKENS="${HE_TOKENS:-320}"
OUT=data/compare
T=./target/release/clarifycoder-trainer
E=./target/release/clarifycoder-evaluator
mkdir -p "$OUT"
limit=()
[ -n "${HE_LIMIT:-}" ] && limit=(--limit "$HE_LIMIT")

for model in $MODELS; do
    adapter="models/clarifycoder-$model.lora.gguf"
    for variant in base adapter; do
        if [ "$variant" = base ]; then a=none; else a="$adapter"; fi
        [ "$variant" = adapter ] && [ ! -f "$adapter" ] && continue
        name="$model-$variant"
        [ -s "$OUT/$name.devset.json" ] || "$T" devset devset/*.jsonl --model "$model" \
            --adapter "$a" --json "$OUT/$name.devset.json" > "$OUT/$name.devset.txt"
        [ -s "$OUT/$name.humaneval/humaneval.json" ] || "$E" humaneval -n 1 -k 1 "${limit[@]}" \
            --max-tokens "$HE_TOKENS" --model "$model" --adapter "$a" \
            --out-dir "$OUT/$name.humaneval" > /dev/null
    done
done

python3 - "$OUT" $MODELS <<'PY'
import json, os, sys
out, models = sys.argv[1], sys.argv[2:]
print("| model | AUC | balanced acc. @ threshold | false alarms | recall a / i / c | distinct questions "
      "| decide ms | questions ms | HumanEval pass@1 | HumanEval asks |")
print("|---|---|---|---|---|---|---|---|---|---|")
for m in models:
    for v in ("base", "adapter"):
        d = os.path.join(out, f"{m}-{v}.devset.json")
        if not os.path.exists(d):
            continue
        r = json.load(open(d))
        h = os.path.join(out, f"{m}-{v}.humaneval", "humaneval.json")
        he = json.load(open(h)) if os.path.exists(h) else {}
        rec = r["recall"]
        print(f"| {m} {'+ adapter' if v == 'adapter' else '(no adapter)'} | {r['auc']:.3f} "
              f"| {100*r['balanced_accuracy']:.1f}% @ {r['threshold']:.2f} | {100*r['false_alarm_rate']:.1f}% "
              f"| {100*rec.get('ambiguous',0):.0f} / {100*rec.get('incomplete',0):.0f} / {100*rec.get('inconsistent',0):.0f}% "
              f"| {100*r['distinct_questions']:.0f}% of {r['questions']} | {r['decide_ms']:.0f} | {r['questions_ms']:.0f} "
              f"| {he.get('pass_at_k_percent', {}).get('pass@1', float('nan')):.1f}% of {he.get('problems', 0)} "
              f"| {he.get('asked_percent', float('nan')):.1f}% |")
PY
