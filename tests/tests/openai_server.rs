//! `check` and the evaluator through a real OpenAI-compatible server (llama-cpp-python serving
//! the default model and its adapter; `make test-server` installs and starts it and sets
//! `CLARIFYCODER_TEST_ENDPOINT`). Both must answer as they do with the embedded engine, within
//! what the top-20 log-probabilities of an HTTP answer allow.

use std::collections::BTreeMap;

use clarifycoder_tests::{command, repo_root};
use serde_json::Value;

const THRESHOLD: f64 = clarifycoder_core::settings::DEFAULT_THRESHOLD as f64;

fn endpoint() -> String {
    std::env::var("CLARIFYCODER_TEST_ENDPOINT")
        .expect("CLARIFYCODER_TEST_ENDPOINT is not set; run `make test-server`")
}

/// `check --format json` of the examples; `(path, function) → score`.
fn scores(extra: &[&str]) -> BTreeMap<(String, String), f64> {
    let out = command("clarifycoder")
        .args(["check", "examples/", "--format", "json", "--threshold", "0"])
        .args(["--max-questions", "1", "--max-tokens", "24", "--no-cache"])
        .args(extra)
        .current_dir(repo_root())
        .env_remove("CLARIFYCODER_MODEL")
        .env_remove("CLARIFYCODER_ADAPTER")
        .output()
        .unwrap();
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}); stderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    report["diagnostics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                (
                    d["path"].as_str().unwrap().to_string(),
                    d["function"].as_str().unwrap().to_string(),
                ),
                d["score"].as_f64().unwrap(),
            )
        })
        .collect()
}

#[test]
#[ignore = "needs a running server: make test-server"]
fn check_through_the_server_decides_like_the_embedded_engine() {
    let url = endpoint();
    // The default model (from the model cache, the file the server serves) and its adapter.
    let embedded = scores(&[]);
    let remote = scores(&[
        "--backend",
        "openai",
        "--endpoint",
        &url,
        "--concurrency",
        "4",
    ]);
    assert!(embedded.len() >= 5, "{embedded:?}");
    assert_eq!(
        embedded.keys().collect::<Vec<_>>(),
        remote.keys().collect::<Vec<_>>()
    );
    for (key, e) in &embedded {
        let r = remote[key];
        assert!((e - r).abs() < 0.03, "{key:?}: embedded {e}, server {r}");
        assert_eq!(
            *e >= THRESHOLD,
            r >= THRESHOLD,
            "{key:?}: embedded {e}, server {r}"
        );
    }
}

#[test]
#[ignore = "needs a running server: make test-server"]
fn the_evaluator_through_the_server_asks_where_the_embedded_engine_asks() {
    let url = endpoint();
    let run = |extra: &[&str]| {
        let out_dir = tempfile::tempdir().unwrap();
        let out = command("clarifycoder-evaluator")
            .args(["humaneval", "--limit", "6", "--max-tokens", "48"])
            .arg("--out-dir")
            .arg(out_dir.path())
            .args(extra)
            .current_dir(repo_root())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let samples = std::fs::read_to_string(out_dir.path().join("samples.jsonl")).unwrap();
        samples
            .lines()
            .map(|l| {
                let s: Value = serde_json::from_str(l).unwrap();
                let text = s["completion"].as_str().unwrap().to_string();
                (
                    s["task_id"].as_str().unwrap().to_string(),
                    text.trim_start().starts_with("```"),
                )
            })
            .collect::<Vec<_>>()
    };
    // The server serves base + adapter as one model, so the embedded run lets the adapter code.
    let embedded = run(&["--code-from", "adapter"]);
    let remote = run(&["--endpoint", &url, "--parallel", "4"]);
    assert_eq!(embedded, remote);
}
