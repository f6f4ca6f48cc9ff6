//! `clarifycoder-trainer devset` and `specs` end to end: the real binary and the real (small) model.

use std::process::Command;

use serde_json::Value;

fn rows() -> String {
    let rows = [
        ("t-1", "clear", "def c_to_f(c: float) -> float:\n    \"\"\"Convert degrees Celsius to Fahrenheit.\"\"\"\n    return c * 9 / 5 + 32\n"),
        ("t-2", "ambiguous", "def big(items, limit):\n    \"\"\"Return the items that are big enough.\"\"\"\n    return [i for i in items if i > limit]\n"),
        ("t-3", "incomplete", "def handle(event):\n    \"\"\"Handle the event.\"\"\"\n    return None\n"),
        ("t-4", "clear", "def count_errors(lines: list[str]) -> int:\n    \"\"\"Return how many lines start with 'ERROR'.\"\"\"\n    return sum(l.startswith('ERROR') for l in lines)\n"),
    ];
    rows.iter()
        .map(|(id, label, source)| {
            serde_json::json!({"id": id, "label": label, "reason": "test", "source": source})
                .to_string()
                + "\n"
        })
        .collect()
}

#[test]
fn devset_reports_ranking_recall_and_false_alarms() {
    let model = clarifycoder_core::models::GEMMA3_270M
        .installed_path()
        .unwrap_or_else(|e| panic!("{e}"));
    let dir = tempfile::tempdir().unwrap();
    // Two files: the report covers both, and each on its own.
    let lines: Vec<String> = rows().lines().map(|l| format!("{l}\n")).collect();
    let (first, second) = (
        dir.path().join("dev-1.jsonl"),
        dir.path().join("dev-2.jsonl"),
    );
    std::fs::write(&first, lines[..2].concat()).unwrap();
    std::fs::write(&second, lines[2..].concat()).unwrap();
    let report = dir.path().join("report.json");
    let out = Command::new(env!("CARGO_BIN_EXE_clarifycoder-trainer"))
        .arg("devset")
        .arg(&first)
        .arg(&second)
        .arg("--model")
        .arg(&model)
        .args([
            "--adapter",
            "none",
            "--threshold",
            "0",
            "--max-tokens",
            "16",
            "--json",
        ])
        .arg(&report)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("AUC of P(ask)"), "{stdout}");
    let r: Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    assert_eq!(r["functions"], 4);
    assert_eq!(
        (r["clear"].as_u64(), r["unclear"].as_u64()),
        (Some(2), Some(2))
    );
    let auc = r["auc"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&auc), "{r}");
    // Threshold 0 flags everything: every unclear label is recalled, every clear one a false alarm.
    assert_eq!(r["false_alarm_rate"], 1.0);
    assert_eq!(r["recall"]["ambiguous"], 1.0);
    assert_eq!(r["recall"]["incomplete"], 1.0);
    assert_eq!(r["results"].as_array().unwrap().len(), 4);
    assert!(r["results"][1]["questions"].is_array());
    let by_file = r["by_file"].as_array().unwrap();
    assert_eq!(by_file.len(), 2, "{r}");
    assert!(by_file[0]["file"]
        .as_str()
        .unwrap()
        .ends_with("dev-1.jsonl"));
    assert_eq!(
        (by_file[0]["clear"].as_u64(), by_file[0]["unclear"].as_u64()),
        (Some(1), Some(1))
    );
    assert_eq!(by_file[1]["recall"]["incomplete"], 1.0);
    assert!(
        stdout.contains("dev-2.jsonl (2 functions): AUC"),
        "{stdout}"
    );
}

#[test]
fn devset_rejects_unknown_labels_with_the_row() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("dev.jsonl");
    std::fs::write(
        &data,
        "{\"id\": \"x-9\", \"label\": \"vague\", \"source\": \"def f():\\n    \\\"\\\"\\\"Do it.\\\"\\\"\\\"\\n\"}\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_clarifycoder-trainer"))
        .arg("devset")
        .arg(&data)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(
            "row x-9 has label 'vague'; use clear, ambiguous, incomplete or inconsistent"
        ),
        "{stderr}"
    );
}

#[test]
fn specs_drop_what_overlaps_the_held_out_functions() {
    let dir = tempfile::tempdir().unwrap();
    let specs = dir.path().join("specs.jsonl");
    let spec = |id: &str, name: &str, doc: &str| {
        serde_json::json!({
            "id": id,
            "source": format!("def {name}(x):\n    \"\"\"{doc}\"\"\"\n    return x\n"),
            "variants": [{"category": "1p", "docstring": "Do it.", "questions": [format!("What should {name} do?")]}],
        })
        .to_string()
            + "\n"
    };
    std::fs::write(
        &specs,
        spec("s-1", "c_to_f", "Return x unchanged.")
            + &spec("s-2", "identity", "Return x unchanged.")
            + &spec(
                "s-3",
                "same_text",
                // Eight words of t-4's docstring and body ("... with error return sum l
                // startswith error for l").
                "Return how many lines start with 'ERROR'.\"\"\"\n    return sum(l.startswith('ERROR') for l in x)\n    \"\"\"More.",
            ),
    )
    .unwrap();
    let dev = dir.path().join("dev.jsonl");
    std::fs::write(&dev, rows()).unwrap();
    let humaneval = dir.path().join("HumanEval.jsonl");
    std::fs::write(&humaneval, "{\"entry_point\": \"has_close_elements\", \"prompt\": \"\", \"canonical_solution\": \"\"}\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_clarifycoder-trainer"))
        .arg("specs")
        .arg("--input")
        .arg(&specs)
        .arg("--exclude")
        .arg(&dev)
        .arg("--humaneval")
        .arg(&humaneval)
        .arg("--out-dir")
        .arg(dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let read = |name: &str| -> Vec<Value> {
        std::fs::read_to_string(dir.path().join(name))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    // s-1 shares its name with a dev-set function, s-3 eight words of one.
    let originals = read("specs-original.jsonl");
    assert_eq!(originals.len(), 1, "{stderr}");
    assert_eq!(originals[0]["source"], "specs:s-2");
    assert_eq!(read("specs-clarify.jsonl").len(), 1);
    assert!(
        stderr.contains("2 as overlapping the held-out functions"),
        "{stderr}"
    );
}
