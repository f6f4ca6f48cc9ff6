//! `check` through a real OpenAI-compatible server (llama-cpp-python serving the
//! default model and its adapter; `make test-server` installs and starts it and sets
//! `CLARIFYCODER_TEST_ENDPOINT`). It must decide as the embedded engine does, within what the
//! top-20 log-probabilities of an HTTP answer allow.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use serde_json::Value;

fn endpoint() -> String {
    std::env::var("CLARIFYCODER_TEST_ENDPOINT")
        .expect("CLARIFYCODER_TEST_ENDPOINT is not set; run `make test-server`")
}

/// `check --format json` of the examples; `(path, function) → score`.
fn scores(extra: &[&str]) -> BTreeMap<(String, String), f64> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = Command::new(env!("CARGO_BIN_EXE_clarifycoder"))
        .args(["check", "examples/", "--format", "json", "--threshold", "0"])
        .args(["--max-questions", "1", "--max-tokens", "24", "--no-cache"])
        .args(extra)
        .current_dir(&root)
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
        assert_eq!(*e >= 0.55, r >= 0.55, "{key:?}: embedded {e}, server {r}");
    }
}
