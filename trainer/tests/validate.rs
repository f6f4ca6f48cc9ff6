//! `clarifycoder-trainer validate`, run as the built binary on a tiny random model (its numbers
//! are noise; what is tested is which model and adapter it runs).

use std::process::Command;

use clarifycoder_core::dataset::{write_jsonl, Category, Row};
use clarifycoder_testkit::tiny::{write_model, Tiny};

fn row(id: &str, problem: &str, category: Category) -> Row {
    Row {
        id: id.into(),
        problem: problem.into(),
        answer: "Which order?".into(),
        kind: category.kind(),
        category,
        source: "test".into(),
        source_id: id.into(),
        method: "test".into(),
        mutations: Vec::new(),
        original_problem: String::new(),
    }
}

/// `--adapter none` is no adapter, as with `check` and `devset` (it was taken for a file name).
#[test]
fn adapter_none_runs_the_model_alone() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("tiny.gguf");
    write_model(&model, &Tiny::llama());
    let rows = dir.path().join("val.jsonl");
    write_jsonl(
        &rows,
        &[
            row(
                "a",
                "def add(a, b):\n    \"\"\"Return a + b.\"\"\"\n",
                Category::Original,
            ),
            row(
                "b",
                "def big(xs):\n    \"\"\"Return the big ones.\"\"\"\n",
                Category::A,
            ),
        ],
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_clarifycoder-trainer"))
        .arg("validate")
        .arg(&rows)
        .arg("--model")
        .arg(&model)
        .args(["--adapter", "none", "--examples", "0", "--json"])
        .arg(dir.path().join("report.json"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("report.json")).unwrap()).unwrap();
    assert_eq!(report["adapter"], serde_json::Value::Null, "{report:#}");
    assert_eq!(report["rows"], 2, "{report:#}");
}

/// The adapter is resolved as `check` and `devset` resolve it: CLARIFYCODER_ADAPTER is
/// honoured (validate ignored it and ran the model alone), `--adapter none` beats it, and a
/// model that is not a known one has no default adapter.
#[test]
fn the_adapter_is_resolved_as_check_and_devset_resolve_it() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("tiny.gguf");
    write_model(&model, &Tiny::llama());
    let rows = dir.path().join("val.jsonl");
    write_jsonl(
        &rows,
        &[row(
            "a",
            "def add(a, b):\n    \"\"\"Return a + b.\"\"\"\n",
            Category::Original,
        )],
    )
    .unwrap();
    let report = dir.path().join("report.json");
    let missing = dir.path().join("missing.lora.gguf");
    let validate = |adapter_env: Option<&std::path::Path>, extra: &[&str]| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_clarifycoder-trainer"));
        c.arg("validate")
            .arg(&rows)
            .arg("--model")
            .arg(&model)
            .args(["--examples", "0", "--json"])
            .arg(&report)
            .args(extra);
        match adapter_env {
            Some(a) => c.env("CLARIFYCODER_ADAPTER", a),
            None => c.env_remove("CLARIFYCODER_ADAPTER"),
        };
        c.output().unwrap()
    };
    let o = validate(Some(&missing), &[]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    for needle in [
        &format!("adapter not found at '{}'", missing.display()),
        "set by CLARIFYCODER_ADAPTER",
        "--adapter none",
    ] {
        assert!(err.contains(needle), "no `{needle}` in {err}");
    }
    assert!(!report.exists());
    for (env, extra) in [
        (Some(missing.as_path()), &["--adapter", "none"][..]),
        (None, &[]),
    ] {
        let o = validate(env, extra);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let json: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
        assert_eq!(json["adapter"], serde_json::Value::Null, "{json:#}");
        std::fs::remove_file(&report).unwrap();
    }
}
