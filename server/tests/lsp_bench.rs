//! Language-server benchmarks (not tests: ignored by default, numbers go to BENCHMARKS.md).
//!
//! cargo test --release -p clarifycoder --test lsp_bench -- --ignored --nocapture

mod common;

use std::time::Instant;

use common::Client;
use serde_json::{json, Value};

/// 20 functions (`LSP_BENCH_FUNCTIONS` for another count), half clear and half vague.
fn bench_functions(tag: &str) -> String {
    let mut s = String::new();
    let n: usize = std::env::var("LSP_BENCH_FUNCTIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    for i in 0..n {
        if i % 2 == 0 {
            s.push_str(&format!(
                "def clamp_{tag}_{i}(x: int, lo: int, hi: int) -> int:\n    \"\"\"Return x limited to the closed range [lo, hi].\"\"\"\n    return max(lo, min(x, hi))\n\n\n"
            ));
        } else {
            s.push_str(&format!("def handle_{tag}_{i}(items, limit):\n    \"\"\"Return the good items.\"\"\"\n    return items\n\n\n"));
        }
    }
    s
}

/// The server with the shipped default model and adapter, as a user gets them.
fn default_client() -> Client {
    let default = clarifycoder_core::models::QWEN25_CODER_05B;
    let model = default.installed_path().unwrap_or_else(|e| panic!("{e}"));
    let adapter = default.adapter_path().expect("the default model's adapter");
    Client::start_with(&model, |command| {
        command.env("CLARIFYCODER_ADAPTER", adapter);
    })
}

/// The server's counters once its worker is done with what it was sent.
fn stats(c: &mut Client) -> Value {
    c.request(
        "workspace/executeCommand",
        json!({"command": "clarifycoder.stats"}),
    )["result"]
        .clone()
}

fn decided(c: &mut Client) -> u64 {
    stats(c)["decided"].as_u64().unwrap()
}

/// Prompt tokens the engine has evaluated so far.
fn prompt_tokens(c: &mut Client) -> u64 {
    stats(c)["inference"]["prompt_tokens"].as_u64().unwrap_or(0)
}

fn rss_kib(c: &Client) -> u64 {
    let status =
        std::fs::read_to_string(format!("/proc/{}/status", c.child.id())).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

#[test]
#[ignore = "benchmark"]
fn lsp_latencies_and_memory() {
    let mut c = default_client();
    c.initialize(json!({}), json!({"debounceMs": 0}));
    // Wait for the engine: the first publish of a trivial file.
    c.notify("textDocument/didOpen", json!({"textDocument": {"uri": "file:///bench/warmup.py", "languageId": "python", "version": 1, "text": "x = 1\n"}}));
    c.wait("textDocument/publishDiagnostics", |p| {
        p["uri"] == "file:///bench/warmup.py"
    });

    let uri = "file:///bench/twenty.py";
    let text = bench_functions("a");
    let count = text.matches("def ").count();
    let t = Instant::now();
    c.notify(
        "textDocument/didOpen",
        json!({"textDocument": {"uri": uri, "languageId": "python", "version": 1, "text": text}}),
    );
    let p = c.wait("textDocument/publishDiagnostics", |p| {
        p["uri"] == uri && p["version"] == 1
    });
    let first = t.elapsed();
    let first_flagged = p["diagnostics"].as_array().unwrap().len();
    // `clarifycoder.stats` answers once the worker is done with the file.
    let before = decided(&mut c);
    let cold = t.elapsed();
    let tokens = prompt_tokens(&mut c);
    let flagged = c
        .last_publish(uri, 1, std::time::Duration::from_secs(1))
        .unwrap_or(p)["diagnostics"]
        .as_array()
        .unwrap()
        .len();

    // A one-line edit inside one docstring (function 1, line 6).
    let t = Instant::now();
    c.notify("textDocument/didChange", json!({"textDocument": {"uri": uri, "version": 2}, "contentChanges": [
        {"range": {"start": {"line": 6, "character": 11}, "end": {"line": 6, "character": 15}}, "text": "fine"}]}));
    c.wait("textDocument/publishDiagnostics", |p| {
        p["uri"] == uri && p["version"] == 2
    });
    // The first publish of the new version is what was known (the edited function's last
    // result at its place); the re-analysed one follows once the worker is done with it.
    let known = t.elapsed();
    let rerun = decided(&mut c) - before;
    let edit = t.elapsed();

    // Warm reopen of an unchanged file.
    c.notify(
        "textDocument/didClose",
        json!({"textDocument": {"uri": uri}}),
    );
    let t = Instant::now();
    c.notify(
        "textDocument/didOpen",
        json!({"textDocument": {"uri": uri, "languageId": "python", "version": 3, "text": text}}),
    );
    c.wait("textDocument/publishDiagnostics", |p| {
        p["uri"] == uri && p["version"] == 3
    });
    let reopen = t.elapsed();

    // 100 open files (the same functions each, so the model is not the bottleneck).
    let rss_before = rss_kib(&c);
    for i in 0..100 {
        let u = format!("file:///bench/many_{i}.py");
        c.notify(
            "textDocument/didOpen",
            json!({"textDocument": {"uri": u, "languageId": "python", "version": 1, "text": text}}),
        );
    }
    c.wait("textDocument/publishDiagnostics", |p| {
        p["uri"] == "file:///bench/many_99.py"
    });
    let rss_after = rss_kib(&c);

    println!(
        "didOpen -> first diagnostics, {count} functions, cold: {:.2} s ({first_flagged} flagged)",
        first.as_secs_f64()
    );
    println!(
        "didOpen -> every function analysed: {:.2} s ({flagged} flagged, {tokens} prompt tokens evaluated)",
        cold.as_secs_f64()
    );
    println!(
        "one-line edit -> known results: {:.3} s, re-analysed diagnostics: {:.2} s, functions re-run: {rerun}",
        known.as_secs_f64(),
        edit.as_secs_f64()
    );
    println!(
        "warm reopen -> diagnostics: {:.1} ms",
        reopen.as_secs_f64() * 1e3
    );
    println!(
        "RSS: {} MiB with 2 files, {} MiB with 102 open files",
        rss_before / 1024,
        rss_after / 1024
    );
    let _: Value = c.request("shutdown", Value::Null);
}

/// With `runExamples` on, a file that imports a slow module (two seconds to import): the model's
/// results should not wait for Python.
#[test]
#[ignore = "benchmark"]
fn examples_and_the_first_diagnostics() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("settings_store.py"),
        "import time\n\ntime.sleep(2)\nRATE = 0.2\n",
    )
    .unwrap();
    let path = dir.path().join("billing.py");
    let uri = format!("file://{}", path.display());
    let text = "from settings_store import RATE\n\n\ndef tax(amount: float) -> float:\n    \"\"\"Return the tax on an amount at the stored rate.\n\n    >>> tax(10.0)\n    2.0\n    \"\"\"\n    return amount * RATE\n\n\ndef handle(items, limit):\n    \"\"\"Return the good items.\"\"\"\n    return items\n";
    std::fs::write(&path, text).unwrap();
    let mut c = default_client();
    c.initialize(json!({}), json!({"debounceMs": 0, "runExamples": true}));
    c.notify("textDocument/didOpen", json!({"textDocument": {"uri": "file:///bench/warmup.py", "languageId": "python", "version": 1, "text": "x = 1\n"}}));
    c.wait("textDocument/publishDiagnostics", |p| {
        p["uri"] == "file:///bench/warmup.py"
    });
    let has = |p: &Value, name: &str| {
        p["diagnostics"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["data"]["function"] == name)
    };
    let t = Instant::now();
    c.notify(
        "textDocument/didOpen",
        json!({"textDocument": {"uri": uri, "languageId": "python", "version": 1, "text": text}}),
    );
    c.wait("textDocument/publishDiagnostics", |p| {
        p["uri"] == uri.as_str() && has(p, "handle")
    });
    let open = t.elapsed();
    // Edit the vague docstring: its new result is shown.
    let t = Instant::now();
    c.notify("textDocument/didChange", json!({"textDocument": {"uri": uri, "version": 2}, "contentChanges": [
        {"range": {"start": {"line": 13, "character": 18}, "end": {"line": 13, "character": 22}}, "text": "nice"}]}));
    c.wait("textDocument/publishDiagnostics", |p| {
        p["uri"] == uri.as_str() && p["version"] == 2 && has(p, "handle")
    });
    // That may be the known results, first (the edited function's last finding): the new one is
    // in once the worker is done.
    decided(&mut c);
    let edit = t.elapsed();
    println!(
        "slow import (2 s), didOpen -> the model's finding: {:.2} s",
        open.as_secs_f64()
    );
    println!(
        "slow import (2 s), docstring edit -> the model's finding: {:.2} s",
        edit.as_secs_f64()
    );
}

/// A docstring being written: three edits to the last paragraph of a vague, flagged docstring,
/// each waited for (diagnostics and questions) before the next.
#[test]
#[ignore = "benchmark"]
fn editing_one_long_docstring() {
    let mut c = default_client();
    c.initialize(json!({}), json!({"debounceMs": 0}));
    let uri = "file:///bench/report.py";
    let mut text = String::from(
        "def monthly_report(orders, month):\n    \"\"\"Summarise the orders for the finance team.\n\n    Only the relevant orders are counted, and the totals are converted as\n    needed. The result has the usual figures.\n\n    Returns:\n        The report, with the biggest customers.\n    \"\"\"\n    return {}\n",
    );
    c.notify(
        "textDocument/didOpen",
        json!({"textDocument": {"uri": uri, "languageId": "python", "version": 1, "text": text}}),
    );
    c.wait("textDocument/publishDiagnostics", |p| {
        p["uri"] == uri && p["version"] == 1
    });
    decided(&mut c);
    let mut times = Vec::new();
    let mut last = Value::Null;
    for (version, words) in [
        (2, " (top five)"),
        (3, " by revenue"),
        (4, " in that month"),
    ] {
        // Insert before the docstring's final period.
        let at = text.find(".\n    \"\"\"").unwrap();
        let (line, col) = {
            let before = &text[..at];
            let line = before.matches('\n').count();
            (line, at - before.rfind('\n').map_or(0, |i| i + 1))
        };
        text.insert_str(at, words);
        let t = Instant::now();
        c.notify("textDocument/didChange", json!({"textDocument": {"uri": uri, "version": version}, "contentChanges": [
            {"range": {"start": {"line": line, "character": col}, "end": {"line": line, "character": col}}, "text": words}]}));
        let p = c.wait("textDocument/publishDiagnostics", |p| {
            p["uri"] == uri && p["version"] == version
        });
        decided(&mut c);
        times.push(t.elapsed().as_secs_f64());
        last = c
            .last_publish(uri, version, std::time::Duration::from_secs(1))
            .unwrap_or(p);
    }
    let flagged = last["diagnostics"].as_array().unwrap().len();
    println!(
        "edit of a long docstring -> diagnostics and questions: {} s (flagged: {flagged})",
        times
            .iter()
            .map(|t| format!("{t:.2}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
}
