#!/usr/bin/env bash
# LoRA training speed and peak memory: our trainer (candle) against PyTorch + PEFT, side by side in
# one run, on the same model (Gemma 3 270M from the same GGUF, fp32), the same token sequences (our
# tokenizer's output is handed to PyTorch), one sequence per step, loss on the answer, AdamW,
# LoRA rank 8 on q,k,v,o,gate,up,down, dropout 0, the same thread count.
#
#   scripts/bench-train.sh [ROWS.jsonl] [STEPS]
#
# ROWS defaults to data/mix/train.jsonl (from `make adapter` or the README's trainer commands);
# STEPS (default 12) timed steps after one untimed warm-up step on each side.
set -euo pipefail
cd "$(dirname "$0")/.."
ROWS="${1:-data/mix/train.jsonl}"
STEPS="${2:-12}"
THREADS="${THREADS:-$(nproc)}"
T=./target/release/clarifycoder-trainer
[ -x "$T" ] || bash scripts/setup.sh
bash scripts/bench-train-torch.sh   # sets up .venv-bench once

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
head -n "$((STEPS + 1))" "$ROWS" > "$work/rows.jsonl"

# Ours: every row once, one per step (its log has each step's wall time).
RAYON_NUM_THREADS="$THREADS" /usr/bin/time -v "$T" finetune --train "$work/rows.jsonl" --output "$work/run" --quiet \
    --accum 1 --max-steps "$((STEPS + 1))" --rank 8 --alpha 16 --dropout 0 --lr 1e-4 \
    --weight-decay 0.01 --warmup 0 --schedule constant --max-len 512 --save-every 100000 \
    --dump-tokens "$work/tokens.jsonl" 2> "$work/ours.err" > /dev/null
ours_rss=$(grep "Maximum resident" "$work/ours.err" | awk '{print $NF}')
ours=$(python3 - "$work/run/log.jsonl" <<'PY'
import json, sys
log = [json.loads(l) for l in open(sys.argv[1])]
timed = log[1:]  # step 1 is the warm-up
tok = sum(l["tokens"] for l in timed)
sec = sum(l["seconds"] for l in timed)
print(f"{tok / sec:.1f} {tok} {sec:.1f} {log[-1]['loss']:.4f}")
PY
)

# PyTorch + PEFT on the same sequences.
/usr/bin/time -v .venv-bench/bin/python scripts/bench_train_torch.py \
    --tokens "$work/tokens.jsonl" --steps "$STEPS" --rank 8 --alpha 16 \
    --targets q,k,v,o,gate,up,down --lr 1e-4 --threads "$THREADS" \
    > "$work/torch.json" 2> "$work/torch.err"
torch_rss=$(grep "Maximum resident" "$work/torch.err" | awk '{print $NF}')

python3 - "$ours" "$ours_rss" "$work/torch.json" "$torch_rss" "$THREADS" <<'PY'
import json, sys
o_tps, o_tok, o_sec, o_loss = sys.argv[1].split()
t = json.loads(open(sys.argv[3]).read().strip().splitlines()[-1])
o_rss, t_rss = int(sys.argv[2]) / 1024, int(sys.argv[4]) / 1024
print(f"threads {sys.argv[5]}")
print(f"ours (candle):    {float(o_tps):7.1f} tokens/s  ({o_tok} tokens in {o_sec} s)  peak RSS {o_rss:6.0f} MiB  last loss {o_loss}")
print(f"PyTorch + PEFT:   {t['tokens_per_s']:7.1f} tokens/s  ({t['steps']} steps in {t['seconds']:.1f} s)  peak RSS {t_rss:6.0f} MiB  last loss {t['final_loss']:.4f}")
print(f"ratio ours / PyTorch: {float(o_tps) / t['tokens_per_s']:.2f}x speed, {o_rss / t_rss:.2f}x memory")
PY
