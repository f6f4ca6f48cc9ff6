//! The evaluator through a real OpenAI-compatible server (llama-cpp-python serving the default
//! model and its adapter; `make test-server` installs and starts it and sets
//! `CLARIFYCODER_TEST_ENDPOINT`): it must answer as the embedded engine does.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

fn endpoint() -> String {
    std::env::var("CLARIFYCODER_TEST_ENDPOINT")
        .expect("CLARIFYCODER_TEST_ENDPOINT is not set; run `make test-server`")
}

#[test]
#[ignore = "needs a running server: make test-server"]
fn the_evaluator_through_the_server_asks_where_the_embedded_engine_asks() {
    let url = endpoint();
    let run = |extra: &[&str]| {
        let out_dir = tempfile::tempdir().unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_clarifycoder-evaluator"))
            .args(["humaneval", "--limit", "6", "--max-tokens", "48"])
            .arg("--out-dir")
            .arg(out_dir.path())
            .args(extra)
            .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join(".."))
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
