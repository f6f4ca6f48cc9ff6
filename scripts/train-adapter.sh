#!/usr/bin/env bash
# Trains ClarifyCoder's adapter for a base model on this CPU, measures it on the dev set and
# writes it, with its manifest, into the data directory (`make adapter`). Shipping it (copying
# both under models/, which the server serves by default) is a decision made on those numbers
# against the shipped adapter's manifest: SHIP=1 does it. Every step resumes or is cheap to
# repeat: the data takes seconds, and the fine-tuning run continues from its last checkpoint
# after a kill.
#
#   MODEL=name    base model (default: qwen2.5-coder-0.5b; `clarifycoder model list`)
#   DATA=dir      where the data and the run go (default: data/<model>)
#   STEPS1=n     optimizer steps of stage 1 (default: 160; 8 sequences each)
#   STEPS2=n     optimizer steps of stage 2 (default: 70)
#   STEPS3=n     optimizer steps of stage 3 (default: 100)
#   SHIP=1        copy the adapter and its manifest under models/
#
# The data (see ARCHITECTURE.md, "Training data"):
#  - hand-written specs of application functions (trainer/data/app-specs-*.jsonl): each a clear
#    version with its code and unclear versions with the specific questions that resolve them;
#  - real functions whose docstrings carry doctest examples (standard library and .venv), as
#    further clear problems: an example pins the behaviour down, a terse summary alone does not.
# The labelled dev set (devset/) is never trained on; it measures the result. Specs that overlap
# any dev file (the sealed one included) are dropped, so a dev file added after an adapter (dev-e
# ... dev-i, the sealed dev-j) changes the next run's data a little: the shipped adapter was
# trained before any of them existed (BENCHMARKS.md).
set -euo pipefail
cd "$(dirname "$0")/.."

MODEL="${MODEL:-qwen2.5-coder-0.5b}"
DATA="${DATA:-data/$MODEL}"
STEPS1="${STEPS1:-160}"
STEPS2="${STEPS2:-70}"
STEPS3="${STEPS3:-100}"
T=./target/release/clarifycoder-trainer
C=./target/release/clarifycoder
[ -x "$T" ] || bash scripts/setup.sh
"$C" model install "$MODEL"
mkdir -p "$DATA"
# Every step reuses the files it finds in $DATA, so a directory holds one recipe's files.
RECIPE=5
if [ -e "$DATA/run-1" ] && [ "$(cat "$DATA/recipe" 2>/dev/null)" != "$RECIPE" ]; then
    echo "train-adapter: $DATA holds the runs of another recipe; move it away or set DATA to a new directory" >&2
    exit 1
fi
echo "$RECIPE" > "$DATA/recipe"

# 1. Clear and unclear application functions from the specs (HumanEval and dev-set overlaps
#    dropped). Specs a and b: application functions with clear and unclear versions (stage 1);
#    c: short precise one-liners (hard negatives) and contradictions written in prose (stage 2);
#    f, g, h: minimal-edit pairs (stage 3). Specs d and e (structured docstrings whose unclear
#    versions contradict themselves or their signature) are not in the recipe: they did not
#    help (BENCHMARKS.md, "A second recipe").
spec_rows() {  # DIR FILES...
    local dir="$1"; shift
    [ -s "$dir/specs-clarify.jsonl" ] || "$T" specs --input "$@" \
        --exclude devset/*.jsonl devset/sealed/*.jsonl \
        --out-dir "$dir"
}
spec_rows "$DATA" trainer/data/app-specs-a.jsonl trainer/data/app-specs-b.jsonl
# 2. Real documented functions (decontaminated against HumanEval) from the standard library and
#    .venv; keep those with doctests.
doctest_rows() {  # IN OUT: at most 6 per file, so that no one module (decimal has dozens) sets the style
    [ -s "$2" ] || python3 - "$1" "$2" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1], encoding="utf-8")]
per_file, kept = {}, []
for r in rows:
    if ">>>" not in r["problem"] or len(r["problem"]) > 1200:
        continue
    module = r["source"].rsplit(":", 1)[0]
    per_file[module] = per_file.get(module, 0) + 1
    if per_file[module] <= 6:
        kept.append(r)
with open(sys.argv[2], "w", encoding="utf-8") as f:
    for r in kept:
        f.write(json.dumps(r) + "\n")
print(f"doctest originals: {len(kept)} of {len(rows)}", file=sys.stderr)
PY
}
[ -s "$DATA/original.jsonl" ] || "$T" harvest --out-dir "$DATA"
doctest_rows "$DATA/original.jsonl" "$DATA/doctest-original.jsonl"
# 3. Stage 1: specs a and b, clarify rows 58% of the training rows (about all of them); stage 2
#    adds specs c, 45% clarify rows; stage 3 adds specs f-h, half. 10% of functions held out for the
#    validation loss (the dev set, not this split, is what the adapter is judged on).
[ -s "$DATA/mix-1/train.jsonl" ] || "$T" mix --clarify "$DATA/specs-clarify.jsonl" \
    --original "$DATA/specs-original.jsonl" "$DATA/doctest-original.jsonl" \
    --ratio 0.58 --strategy downsample --seed 0 --val-fraction 0.1 --out-dir "$DATA/mix-1"

# 4. LoRA on every projection, loss on the answer's first 80 tokens: all of a question list, the
#    opening of code (ask-or-code is decided at the first token). Each stage resumes after a kill.
finetune() {  # RUN MIX ARGS...
    local run="$1" mix="$2"; shift 2
    if [ -f "$run/adapter.lora.gguf" ]; then return 0; fi
    local resume=()
    [ -f "$run/run.json" ] && resume=(--resume)
    "$T" finetune --model "$MODEL" --train "$mix/train.jsonl" --val "$mix/val.jsonl" \
        --output "$run" --accum 8 --max-len 384 --max-answer-tokens 80 --rank 16 --alpha 32 \
        --val-rows 32 --eval-every 25 --save-every 5 "${resume[@]}" "$@"
}
finetune "$DATA/run-1" "$DATA/mix-1" --lr 5e-4 --warmup 8 --max-steps "$STEPS1" --seed 0
spec_rows "$DATA/c" trainer/data/app-specs-c.jsonl
[ -s "$DATA/mix-2/train.jsonl" ] || "$T" mix \
    --clarify "$DATA/specs-clarify.jsonl" "$DATA/c/specs-clarify.jsonl" \
    --original "$DATA/specs-original.jsonl" "$DATA/c/specs-original.jsonl" \
    "$DATA/doctest-original.jsonl" \
    --ratio 0.45 --strategy downsample --seed 1 --val-fraction 0.1 --out-dir "$DATA/mix-2"
finetune "$DATA/run-2" "$DATA/mix-2" --lr 3e-4 --warmup 4 --max-steps "$STEPS2" --seed 1 \
    --init-adapter "$DATA/run-1/adapter.safetensors"
# Stage 3 adds specs f, g and h: each unclear version is one phrase away from its clear docstring,
# as long and as polished, to wean the model off "short means unclear". Only one unclear version
# per spec (seed 7), so that their style is as often clear as unclear: with all of them (2.4 per
# spec) the model learned that long structured docstrings are unclear (BENCHMARKS.md, "A fourth
# recipe").
spec_rows "$DATA/fgh" trainer/data/app-specs-f.jsonl trainer/data/app-specs-g.jsonl \
    trainer/data/app-specs-h.jsonl
[ -s "$DATA/fgh/specs-clarify-one.jsonl" ] || python3 - "$DATA/fgh" <<'PY'
import json, random, sys
random.seed(7)
by_spec = {}
for line in open(f"{sys.argv[1]}/specs-clarify.jsonl", encoding="utf-8"):
    row = json.loads(line)
    by_spec.setdefault(row["source_id"], []).append(row)
with open(f"{sys.argv[1]}/specs-clarify-one.jsonl", "w", encoding="utf-8") as f:
    for rows in by_spec.values():
        f.write(json.dumps(random.choice(rows)) + "\n")
PY
[ -s "$DATA/mix-3/train.jsonl" ] || "$T" mix \
    --clarify "$DATA/specs-clarify.jsonl" "$DATA/c/specs-clarify.jsonl" \
    "$DATA/fgh/specs-clarify-one.jsonl" \
    --original "$DATA/specs-original.jsonl" "$DATA/c/specs-original.jsonl" \
    "$DATA/fgh/specs-original.jsonl" "$DATA/doctest-original.jsonl" \
    --ratio 0.5 --strategy downsample --seed 3 --val-fraction 0.1 --out-dir "$DATA/mix-3"
finetune "$DATA/run-3" "$DATA/mix-3" --lr 1.5e-4 --warmup 4 --max-steps "$STEPS3" --seed 3 \
    --init-adapter "$DATA/run-2/adapter.safetensors"
RUN="$DATA/run-3"

# 5. The adapter.
ADAPTER="clarifycoder-$MODEL.lora.gguf"
MANIFEST="clarifycoder-$MODEL.json"
# F16 matrices: half the size of the run's F32 export, for the repository (dev-set numbers are
# measured on this file). A file over the repository's 30 MiB limit (the 1.5B model's, 37 MB) is
# written again with Q8_0 A matrices (`--q8`, 28 MiB; BENCHMARKS.md, "Adapter storage").
if [ ! -s "$DATA/$ADAPTER" ]; then
  "$T" export "$RUN" --format gguf --f16 -o "$DATA/$ADAPTER"
  if [ "$(stat -c %s "$DATA/$ADAPTER")" -gt $((30 * 1024 * 1024)) ]; then
    "$T" export "$RUN" --format gguf --q8 -o "$DATA/$ADAPTER"
  fi
fi
# 6. Decision quality on the labelled dev set: the adapter first (the number the decision is
#    made on), then the base model and stage 1 for the manifest (each a long run on a CPU: stop
#    the script there if only the adapter's number is wanted; it resumes).
[ -s "$DATA/devset-adapter.json" ] || "$T" devset devset/*.jsonl --model "$MODEL" \
    --adapter "$DATA/$ADAPTER" --json "$DATA/devset-adapter.json"
[ -s "$DATA/devset-base.json" ] || "$T" devset devset/*.jsonl --model "$MODEL" --adapter none \
    --json "$DATA/devset-base.json"
[ -s "$DATA/devset-adapter-1.json" ] || "$T" devset devset/*.jsonl --model "$MODEL" \
    --adapter "$DATA/run-1/adapter.lora.gguf" --json "$DATA/devset-adapter-1.json"

# 7. The manifest, this adapter beside the shipped one, and SHIP=1.
python3 scripts/adapter-manifest.py "$DATA" "$MODEL" > "$DATA/$MANIFEST"
python3 - "$DATA/$MANIFEST" "models/$MANIFEST" <<'PY'
import json, os, sys
def row(path):
    d = json.load(open(path))["devset"]["adapter"] if os.path.exists(path) else None
    if not d:
        return "none"
    r = d["recall"]
    return (f"AUC {d['auc']:.3f}, balanced accuracy {100 * d['balanced_accuracy']:.1f}%, "
            f"false alarms {100 * d['false_alarm_rate']:.1f}%, recall "
            + " / ".join(f"{100 * r[k]:.0f}" for k in ("ambiguous", "incomplete", "inconsistent")))
print(f"dev set, this adapter:    {row(sys.argv[1])}")
print(f"dev set, shipped adapter: {row(sys.argv[2])}")
PY
if [ "${SHIP:-0}" = 1 ]; then
    mkdir -p models
    cp "$DATA/$ADAPTER" "$DATA/$MANIFEST" models/
    echo "shipped: models/$ADAPTER and models/$MANIFEST"
else
    echo "wrote $DATA/$ADAPTER and $DATA/$MANIFEST; SHIP=1 copies them under models/"
fi

# 8. Real functions from a pinned list of PyPI packages (only their sources are read), not
#    trained on: `cargo run -p clarifycoder-core --example consistency` counts the consistency
#    checks' false alarms on them (BENCHMARKS.md). Optional: without the network it is skipped.
if [ ! -s "$DATA/pypi/original.jsonl" ]; then
    if python3 -m pip install --quiet --no-deps --require-hashes --only-binary=:all: \
        --target "$DATA/pypi/site" -r trainer/data/pypi-harvest.txt; then
        "$T" harvest --from "$DATA/pypi/site" --out-dir "$DATA/pypi"
    else
        echo "train-adapter: could not install the pinned PyPI packages; skipped their harvest" >&2
    fi
fi
