"""Prints the manifest of a trained adapter (JSON) from the files of `scripts/train-adapter.sh`.

Usage: python3 scripts/adapter-manifest.py DATA_DIR MODEL_NAME
"""

import hashlib
import json
import os
import sys


def load(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def devset(report):
    """The dev-set numbers without the per-function rows (a few examples are kept apart)."""
    keys = (
        "functions", "clear", "unclear", "threshold", "auc", "balanced_accuracy", "recall",
        "false_alarm_rate", "best_threshold", "best_balanced_accuracy", "distinct_questions",
        "questions", "decide_ms", "questions_ms",
    )
    return {k: (round(report[k], 4) if isinstance(report[k], float) else report[k]) for k in keys}


def main():
    data, model = sys.argv[1], sys.argv[2]
    stages = [d for d in ("run-1", "run-2", "run-3") if os.path.exists(os.path.join(data, d, "run.json"))]
    runs = [load(os.path.join(data, d, "run.json")) for d in stages]
    meta = load(os.path.join(data, stages[-1], "adapter.json"))
    base = load(os.path.join(data, "devset-base.json"))
    after = load(os.path.join(data, "devset-adapter.json"))
    stage1 = load(os.path.join(data, "devset-adapter-1.json"))
    logs = [
        [json.loads(line) for line in open(os.path.join(data, d, "log.jsonl"), encoding="utf-8")]
        for d in stages
    ]
    adapter = os.path.join(data, f"clarifycoder-{model}.lora.gguf")
    examples = [r for r in after["results"] if r["flagged"] and r["label"] != "clear"][:8]

    manifest = {
        "adapter": f"clarifycoder-{model}.lora.gguf",
        "adapter_sha256": sha256(adapter),
        "base_model": {
            "name": model,
            "file": meta["base_model"],
            "sha256": meta["base_sha256"],
            "architecture": meta["arch"],
            "install": f"clarifycoder model install {model}",
        },
        "data": {
            "recipe": [
                "clarifycoder-trainer specs --exclude devset/*.jsonl on trainer/data/app-specs-a "
                "and -b (hand-written clear application functions and their ambiguous/incomplete/"
                "inconsistent variants with specific questions), for stage 2 app-specs-c (short "
                "precise one-liners as hard negatives, contradictions in prose), for stage 3 "
                "app-specs-f, -g and -h (minimal-edit pairs, one unclear variant per spec, seed 7); "
                "HumanEval and dev-set overlaps dropped",
                "clarifycoder-trainer harvest (standard library + .venv), keeping functions whose "
                "docstring has doctest examples, at most 6 per module, as further clear problems",
                "stage 1: mix --ratio 0.58 --strategy downsample --seed 0 (specs a, b); stage 2: "
                "mix --ratio 0.45 --strategy downsample --seed 1 (specs a, b, c); stage 3: mix "
                "--ratio 0.5 --strategy downsample --seed 3 (specs a, b, c, f, g, h)",
            ],
            **{
                f"mix_stage{i + 1}": {
                    k: m[k] for k in ("train", "val", "train_by_category", "groups") if k in m
                }
                for i, m in enumerate(
                    load(os.path.join(data, f"mix-{i + 1}", "mix.json")) for i in range(len(stages))
                )
            },
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
                    "base_val": next((l["val_loss"] for l in log if l["step"] == 0 and "val_loss" in l), None),
                    "final_train": next(l["loss"] for l in reversed(log) if "loss" in l),
                    "final_val": next((l["val_loss"] for l in reversed(log) if "val_loss" in l), None),
                    "val_curve": [(l["step"], round(l["val_loss"], 4)) for l in log if "val_loss" in l],
                },
                "train_seconds": round(sum(l["seconds"] for l in log if "seconds" in l)),
            }
            for r, log in zip(runs, logs)
        ],
        "devset": {
            "data": f"devset/*.jsonl ({after['functions'] if after else '?'} labelled functions written for "
            "this project, never trained on; scores include core::consistency's checks, which add "
            "no false alarm there)",
            "base_without_adapter": devset(base),
            "after_stage_1": devset(stage1),
            "adapter": devset(after),
            "examples": [
                {"id": r["id"], "label": r["label"], "p_ask": round(r["p_ask"], 3), "questions": r["questions"]}
                for r in examples
            ],
        },
    }
    json.dump(manifest, sys.stdout, indent=2, ensure_ascii=False)
    print()


if __name__ == "__main__":
    main()
