//! ClarifyCoder end to end: the real binaries (`clarifycoder`, `clarifycoder-trainer`,
//! `clarifycoder-evaluator`) driven the way the README drives them, one after another where one's
//! output is the next one's input, on data the tests write, with tiny random models
//! (`clarifycoder_testkit::tiny`) where the real model is not needed, and a real editor.
//!
//! - `tests/pipeline.rs`: the training pipeline, harvest → synthesize → mix → finetune → export,
//!   then the exported adapter in `clarifycoder check` and in the evaluator.
//! - `tests/bad_inputs.rs`: the bad inputs a user meets, through `clarifycoder check`: a message
//!   that says what to do, the exit code, nothing half-written.
//! - `tests/nvim.rs`: headless Neovim and the language server (the Lua scripts are in
//!   `tests/nvim/` and `editors/nvim/test/`; needs `nvim` and the installed Gemma 3 270M).
//! - `tests/openai_server.rs`: `check` and the evaluator through a real OpenAI-compatible server;
//!   ignored unless `make test-server` starts one.
//!
//! A test of one binary's or one crate's behaviour stays in that crate's `tests/`.
//!
//! # Finding the binaries
//!
//! Cargo tells a test where a binary is (`env!("CARGO_BIN_EXE_<name>")`) only in the package that
//! owns the binary, and stable Cargo does not build a dependency's binaries. So:
//!
//! - [`bin`] finds a binary where Cargo puts it: the profile directory (`target/release`), the
//!   parent of the `deps/` directory that holds the running test executable.
//! - `cargo test --workspace` (what `make test` runs) builds every member's binaries before it
//!   runs any test. `cargo test -p clarifycoder-tests` alone does not: build them first in the
//!   same profile (`cargo build --release -p clarifycoder -p clarifycoder-trainer -p
//!   clarifycoder-evaluator`); a missing binary stops the test with that command.
//! - This package has the binaries' packages as dev-dependencies, so a change to their libraries
//!   (or to core) rebuilds the test executables. [`bin`] reads Cargo's dep-info of the binary
//!   (`<name>.d` beside it, the sources it was built from): a source that changed after the binary
//!   was built but before this test executable was means the binary is stale, and the test stops
//!   with the command that rebuilds it. A source changed after both (an edit during the run) is
//!   not an error: the run tests what was built. A change to a binary's `main.rs` alone does not
//!   rebuild the tests and is not noticed.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::SystemTime;

use serde_json::Value;

/// The three binaries and the package each comes from.
const PACKAGES: [(&str, &str); 3] = [
    ("clarifycoder", "clarifycoder"),
    ("clarifycoder-trainer", "clarifycoder-trainer"),
    ("clarifycoder-evaluator", "clarifycoder-evaluator"),
];

/// The path of the built binary `name` (`clarifycoder`, `clarifycoder-trainer`,
/// `clarifycoder-evaluator`), checked to exist and to be at least as new as its sources were when
/// this test was built (see the crate documentation). Panics with the command to run otherwise.
pub fn bin(name: &str) -> PathBuf {
    let package = PACKAGES
        .iter()
        .find(|(b, _)| *b == name)
        .unwrap_or_else(|| panic!("{name} is not one of ClarifyCoder's binaries"))
        .1;
    let exe = std::env::current_exe().expect("the test executable's path");
    // target/<profile>/deps/<test>-<hash> → target/<profile>
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("the test executable is in target/<profile>/deps");
    let path = profile_dir.join(name);
    let build = format!(
        "cargo build{} -p {package}",
        if profile_dir.ends_with("release") {
            " --release"
        } else {
            ""
        }
    );
    assert!(
        path.is_file(),
        "{} not found; build it first with `{build}` (`cargo test --workspace` builds every binary)",
        path.display()
    );
    if let Some(source) = stale_source(&path, &exe) {
        panic!(
            "{} is older than {}, which this test was built with; rebuild it with `{build}`",
            path.display(),
            source.display()
        );
    }
    path
}

/// A source of `binary` (from its dep-info file) modified after the binary was built and before
/// `test_exe` was.
fn stale_source(binary: &Path, test_exe: &Path) -> Option<PathBuf> {
    let mtime = |p: &Path| -> Option<SystemTime> { std::fs::metadata(p).ok()?.modified().ok() };
    let (built, tested) = (mtime(binary)?, mtime(test_exe)?);
    let dep_info = std::fs::read_to_string(binary.with_extension("d")).ok()?;
    // `target: source source ...`, spaces in paths escaped with a backslash.
    let (_, sources) = dep_info.split_once(": ")?;
    let sources = sources.replace("\\ ", "\0");
    sources
        .split_whitespace()
        .map(|s| PathBuf::from(s.replace('\0', " ")))
        .find(|s| mtime(s).is_some_and(|m| m > built && m <= tested))
}

/// A command running the built binary `name` (see [`bin`]).
pub fn command(name: &str) -> Command {
    Command::new(bin(name))
}

/// The repository root (for `examples/`, `editors/` and the fixtures of these tests).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate is in the repository root")
        .to_path_buf()
}

/// The command's standard error, as text.
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The command's standard output parsed as JSON; panics with both streams when it is not.
pub fn stdout_json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}): {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            stderr(out)
        )
    })
}

/// Asserts that the command exited with `code`, showing both streams when it did not.
pub fn assert_exit(out: &Output, code: i32) {
    assert_eq!(
        out.status.code(),
        Some(code),
        "stdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        stderr(out)
    );
}

/// Files and directories under `dir` that an interrupted or failed write would leave: the
/// temporary files of `core::fsutil` (`.<name>.<pid>.<n>.tmp`), the trainer's `checkpoint.tmp`,
/// a model install's `.partial`.
pub fn leftovers(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with(".tmp") || name.ends_with(".partial") {
                found.push(path.clone());
            }
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(path);
            }
        }
    }
    found
}

/// Reads a JSON Lines file into values; panics naming the file and line.
pub fn read_jsonl(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    text.lines()
        .enumerate()
        .map(|(i, l)| {
            serde_json::from_str(l).unwrap_or_else(|e| panic!("{}:{}: {e}", path.display(), i + 1))
        })
        .collect()
}
