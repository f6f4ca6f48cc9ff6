//! The evaluator end to end: a HumanEvalComm-format fixture written here, the real HumanEval file,
//! the real model, real Python in the sandbox, and a local HTTP server speaking the OpenAI API
//! when a scripted model is needed.

use std::path::Path;
use std::process::{Command, Output};

use clarifycoder_testkit::{MockServer, Reply};
use serde_json::{json, Value};

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_clarifycoder-evaluator"));
    c.current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join(".."));
    c
}

fn ok(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Two problems in the benchmark's schema (prompts renamed to `candidate` in some variants).
fn fixture(dir: &Path) -> std::path::PathBuf {
    let add = json!({
        "name": "Fixture/0", "entry_point": "add",
        "prompt": "def add(a, b):\n    \"\"\"Return the sum of a and b.\n    >>> add(1, 2)\n    3\n    \"\"\"\n",
        "solution": "    return a + b\n",
        "test_case": [{"input": "1, 2", "output": "3", "relation": "=="}, {"input": "-1, 1", "output": "0", "relation": "=="},
                      {"input": "2.5, 0.5", "output": "3.0", "relation": "=="}],
        "prompt1a": "def add(a, b):\n    \"\"\"Return the combination of a and b.\n    \"\"\"\n",
        "prompt1p": "def candidate(a, b):\n    \"\"\"Do it.\"\"\"\n",
        "prompt1c": "def add(a, b):\n    \"\"\"Return the sum of a and b.\n    >>> add(1, 2)\n    5\n    \"\"\"\n"
    });
    let rev = json!({
        "name": "Fixture/1", "entry_point": "rev",
        "prompt": "def rev(s):\n    \"\"\"Return s reversed.\"\"\"\n",
        "solution": "    return s[::-1]\n",
        "test_case": [{"input": "'abc'", "output": "'cba'", "relation": "=="},
                      {"input": "'x'", "output": "'x'", "relation": "len(output) == len(inputs[0])"}],
        "prompt1a": "def rev(s):\n    \"\"\"Return s rearranged.\"\"\"\n"
    });
    let path = dir.join("comm.jsonl");
    std::fs::write(&path, format!("{add}\n{rev}\n")).unwrap();
    path
}

/// A scripted model: answers by the prompt's content. Round 1 of a `1a` prompt asks; everything
/// else gets the reference code.
fn scripted_model() -> MockServer {
    MockServer::start(|request| {
        let prompt = request.prompt();
        let second_round = prompt.contains("Given above conversations");
        Reply::completion(
            if !second_round && (prompt.contains("combination") || prompt.contains("rearranged")) {
                "Should the values be added, or combined some other way? Is it reversed?"
            } else if prompt.contains("def rev") {
                "```python\ndef rev(s):\n    return s[::-1]\n```"
            } else {
                "```python\ndef add(a, b):\n    return a + b\n```"
            },
        )
    })
}

#[test]
fn humanevalcomm_protocol_metrics_and_resume() {
    let dir = tempfile::tempdir().unwrap();
    let data = fixture(dir.path());
    let out = dir.path().join("out");
    let model = scripted_model();
    let run = || {
        bin()
            .args(["humanevalcomm", "--data"])
            .arg(&data)
            .arg("--out-dir")
            .arg(&out)
            .args(["--endpoint", model.url(), "--variants", "1a,1c,1p,original"])
            .output()
            .unwrap()
    };
    let summary = ok(&run());
    let cats: std::collections::HashMap<String, Value> = summary["categories"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c[0].as_str().unwrap().to_string(), c[1].clone()))
        .collect();
    // 1a: both problems ask, the judge answers, round 2 writes the right code.
    assert_eq!(cats["1a"]["instances"], 2);
    assert_eq!(cats["1a"]["communication_rate"], 100.0);
    assert_eq!(cats["1a"]["good_question_rate"], 100.0, "{summary:#}");
    assert_eq!(cats["1a"]["pass_at_1"], 100.0);
    // 1p renames the function to `candidate`; the code defines `add`: still tested and passing.
    assert_eq!(cats["1p"]["instances"], 1);
    assert_eq!(cats["1p"]["communication_rate"], 0.0);
    assert_eq!(cats["1p"]["pass_at_1"], 100.0);
    assert_eq!(cats["original"]["instances"], 2);
    assert_eq!(summary["false_alarm_rate"], 0.0);
    assert_eq!(summary["overall"]["instances"], 4);
    for file in ["instances.jsonl", "summary.json", "summary.md", "chart.svg"] {
        assert!(out.join(file).is_file(), "{file}");
    }
    let md = std::fs::read_to_string(out.join("summary.md")).unwrap();
    assert!(
        md.contains("| 1a | 2 | 100.00% | 100.00% | 100.00% | 100.00% |"),
        "{md}"
    );
    assert!(std::fs::read_to_string(out.join("chart.svg"))
        .unwrap()
        .starts_with("<svg"));
    let records: Vec<Value> = std::fs::read_to_string(out.join("instances.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let asked = records.iter().find(|r| r["key"] == "Fixture/0#1a").unwrap();
    assert!(asked["round2"]["prompt"]
        .as_str()
        .unwrap()
        .contains("Here is the full problem description"));
    assert_eq!(asked["cases"].as_array().unwrap().len(), 3);

    // A rerun resumes: nothing new is appended.
    let again = ok(&run());
    assert_eq!(again["overall"], summary["overall"]);
    let lines = std::fs::read_to_string(out.join("instances.jsonl"))
        .unwrap()
        .lines()
        .count();
    assert_eq!(lines, records.len());
}

/// A rerun into an output directory is refused when a setting that decides the results
/// differs (its instances would be summarized under the new model's label), and a rerun that
/// asks for fewer instances summarizes only those.
#[test]
fn humanevalcomm_resumes_only_the_same_settings_and_summarizes_what_it_asked() {
    let dir = tempfile::tempdir().unwrap();
    let data = fixture(dir.path());
    let out = dir.path().join("out");
    let model = scripted_model();
    let run = |extra: &[&str]| {
        bin()
            .args(["humanevalcomm", "--data"])
            .arg(&data)
            .arg("--out-dir")
            .arg(&out)
            .args(["--endpoint", model.url()])
            .args(extra)
            .output()
            .unwrap()
    };
    let all = ["--variants", "1a,original", "--api-model"];
    let first = ok(&run(&[&all[..], &["first"]].concat()));
    assert_eq!(first["overall"]["instances"], 2);
    let recorded: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("run.json")).unwrap()).unwrap();
    assert_eq!(recorded["api_model"], "first", "{recorded:#}");
    let instances = std::fs::read_to_string(out.join("instances.jsonl")).unwrap();
    assert_eq!(instances.lines().count(), 4);

    let refused = |extra: &[&str], needles: &[&str]| {
        let output = run(extra);
        let err = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{extra:?}: {err}");
        for needle in needles.iter().chain(&["another --out-dir", "delete"]) {
            assert!(err.contains(needle), "{extra:?}: no `{needle}` in {err}");
        }
        // Nothing was added or summarized.
        assert_eq!(
            std::fs::read_to_string(out.join("instances.jsonl")).unwrap(),
            instances
        );
    };
    refused(
        &[&all[..], &["second"]].concat(),
        &["--api-model was 'first', now 'second'"],
    );
    refused(
        &[&all[..], &["first", "--shots", "2", "--max-tokens", "64"]].concat(),
        &["--shots was 0, now 2", "--max-tokens was 512, now 64"],
    );
    refused(
        &["--api-model", "first", "--cot"],
        &["--cot was false, now true"],
    );
    let recorded_after: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("run.json")).unwrap()).unwrap();
    assert_eq!(
        recorded_after, recorded,
        "a refused run leaves run.json alone"
    );

    // The same settings resume; fewer problems and categories summarize only those.
    let fewer = ok(&run(&[
        "--api-model",
        "first",
        "--variants",
        "1a",
        "--limit",
        "1",
    ]));
    assert_eq!(fewer["overall"]["instances"], 1, "{fewer:#}");
    assert_eq!(
        fewer["categories"].as_array().unwrap().len(),
        1,
        "{fewer:#}"
    );
    assert_eq!(fewer["false_alarm_rate"], Value::Null);
    assert_eq!(
        std::fs::read_to_string(out.join("instances.jsonl")).unwrap(),
        instances
    );

    // An output directory with instances but no record of their settings is not resumed.
    std::fs::remove_file(out.join("run.json")).unwrap();
    refused(
        &[&all[..], &["first"]].concat(),
        &["did not record its settings"],
    );

    // A run that fails before it starts (a bad benchmark line) leaves no output directory.
    let bad = dir.path().join("bad.jsonl");
    std::fs::write(&bad, "{\"name\": 1}\n").unwrap();
    let fresh = dir.path().join("fresh");
    let output = bin()
        .args(["humanevalcomm", "--data"])
        .arg(&bad)
        .arg("--out-dir")
        .arg(&fresh)
        .args(["--endpoint", model.url()])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(!fresh.exists(), "a failed run left {}", fresh.display());
}

/// With the embedded engine, run.json records --ctx-size (it decides which prompts fit) and,
/// without --batch-invariant, --parallel (an answer depends on the batch it was decoded in):
/// a rerun with another is refused (it resumed). A model file replaced or touched is refused
/// with what happened and how to resume when it is the same model. A tiny random model.
#[test]
fn humanevalcomm_records_the_embedded_engine_settings_that_change_answers() {
    let dir = tempfile::tempdir().unwrap();
    let data = fixture(dir.path());
    let model = dir.path().join("tiny.gguf");
    clarifycoder_testkit::tiny::write_model(&model, &clarifycoder_testkit::tiny::Tiny::llama());
    let run = |out: &Path, extra: &[&str]| {
        bin()
            .args(["humanevalcomm", "--data"])
            .arg(&data)
            .arg("--out-dir")
            .arg(out)
            .arg("--model")
            .arg(&model)
            .args([
                "--adapter",
                "none",
                "--variants",
                "original",
                "--limit",
                "1",
            ])
            .args(["--max-tokens", "8"])
            .args(extra)
            .output()
            .unwrap()
    };
    // --ctx-size 2048 unless another is given.
    let run = |out: &Path, extra: &[&str]| {
        let ctx: &[&str] = if extra.contains(&"--ctx-size") {
            &[]
        } else {
            &["--ctx-size", "2048"]
        };
        run(out, &[ctx, extra].concat())
    };
    let recorded = |out: &Path| -> Value {
        serde_json::from_str(&std::fs::read_to_string(out.join("run.json")).unwrap()).unwrap()
    };
    let refused = |out: &Path, extra: &[&str], needles: &[&str]| {
        let instances = std::fs::read_to_string(out.join("instances.jsonl")).unwrap();
        let output = run(out, extra);
        let err = String::from_utf8_lossy(&output.stderr).into_owned();
        assert_eq!(output.status.code(), Some(2), "{extra:?}: {err}");
        for needle in needles {
            assert!(err.contains(needle), "{extra:?}: no `{needle}` in {err}");
        }
        assert_eq!(
            std::fs::read_to_string(out.join("instances.jsonl")).unwrap(),
            instances
        );
        err
    };

    let out = dir.path().join("out");
    ok(&run(&out, &["--parallel", "2"]));
    let settings = recorded(&out);
    assert_eq!(settings["ctx_size"], 2048, "{settings:#}");
    assert_eq!(settings["parallel"], 2, "{settings:#}");
    refused(
        &out,
        &["--parallel", "2", "--ctx-size", "4096"],
        &["--ctx-size was 2048, now 4096"],
    );
    refused(&out, &["--parallel", "3"], &["--parallel was 2, now 3"]);
    // The same settings resume.
    ok(&run(&out, &["--parallel", "2"]));

    // The model touched: refused, saying so and how to resume if it is the same model.
    std::fs::File::options()
        .write(true)
        .open(&model)
        .unwrap()
        .set_modified(std::time::SystemTime::now() + std::time::Duration::from_secs(60))
        .unwrap();
    let err = refused(
        &out,
        &["--parallel", "2"],
        &[
            "the model or adapter file was replaced or touched",
            "another size or modification time",
            "to resume",
            "another --out-dir",
        ],
    );
    assert!(!err.contains("--model was"), "{err}");
    // As told: the new value in run.json resumes.
    let new_files = err
        .split("set \"model_files\" to \"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_else(|| panic!("no value to set in {err}"));
    let mut settings = recorded(&out);
    assert_ne!(settings["model_files"], new_files);
    settings["model_files"] = new_files.into();
    std::fs::write(out.join("run.json"), settings.to_string()).unwrap();
    ok(&run(&out, &["--parallel", "2"]));

    // With --batch-invariant, --parallel does not change the answers and is not recorded.
    let invariant = dir.path().join("invariant");
    ok(&run(&invariant, &["--batch-invariant", "--parallel", "2"]));
    let settings = recorded(&invariant);
    assert_eq!(settings["batch_invariant"], true, "{settings:#}");
    assert_eq!(settings.get("parallel"), None, "{settings:#}");
    let lines = std::fs::read_to_string(invariant.join("instances.jsonl")).unwrap();
    ok(&run(&invariant, &["--batch-invariant", "--parallel", "3"]));
    assert_eq!(
        std::fs::read_to_string(invariant.join("instances.jsonl")).unwrap(),
        lines
    );
}

/// One HumanEval-format problem.
fn humaneval_fixture(dir: &Path) -> std::path::PathBuf {
    let problem = json!({
        "task_id": "Fixture/0", "entry_point": "inc",
        "prompt": "def inc(x):\n    \"\"\"Add one.\"\"\"\n",
        "canonical_solution": "    return x + 1\n",
        "test": "def check(candidate):\n    assert candidate(1) == 2\n"
    });
    let path = dir.join("he.jsonl");
    std::fs::write(&path, format!("{problem}\n")).unwrap();
    path
}

/// An interpreter that cannot run the harness stops the run before anything is generated or
/// tested (every test would fail and report pass@1 0).
#[test]
fn an_interpreter_that_cannot_run_stops_the_run_up_front() {
    let dir = tempfile::tempdir().unwrap();
    let he = humaneval_fixture(dir.path());
    let comm = fixture(dir.path());
    let model = scripted_model();
    for (python, reason) in [
        ("/nonexistent/python3", "No such file"),
        ("/bin/false", "exited with code 1"),
    ] {
        let out_dir = dir.path().join("he");
        let out = bin()
            .args(["humaneval", "--reference", "--data"])
            .arg(&he)
            .args(["--python", python, "--out-dir"])
            .arg(&out_dir)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{python}: {err}");
        for needle in [python, reason, "--python"] {
            assert!(err.contains(needle), "{python}: no `{needle}` in {err}");
        }
        assert!(!out_dir.join("humaneval.json").exists());

        let out = bin()
            .args(["humanevalcomm", "--data"])
            .arg(&comm)
            .args(["--endpoint", model.url(), "--python", python, "--out-dir"])
            .arg(dir.path().join("comm"))
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{python}: {err}");
        assert!(err.contains(python) && err.contains("--python"), "{err}");
        assert_eq!(model.request_count(), 0, "nothing is generated");
    }
    // The same run with a working interpreter passes.
    let summary = ok(&bin()
        .args(["humaneval", "--reference", "--data"])
        .arg(&he)
        .arg("--out-dir")
        .arg(dir.path().join("he"))
        .output()
        .unwrap());
    assert_eq!(summary["pass_at_k_percent"]["pass@1"], 100.0, "{summary:#}");
}

/// A per-case timeout no timer can hold is refused by name (it panicked), and one in range runs.
#[test]
fn case_timeouts_out_of_range_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let he = humaneval_fixture(dir.path());
    for value in ["1e20", "inf", "NaN", "-1", "0", "0.01", "3601", "soon"] {
        let out = bin()
            .args(["humaneval", "--reference", "--data"])
            .arg(&he)
            .arg(format!("--case-timeout={value}"))
            .arg("--out-dir")
            .arg(dir.path().join("he"))
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{value}: {err}");
        assert!(
            err.contains("--case-timeout") && err.contains("from 0.1 to 3600"),
            "{value}: {err}"
        );
        assert!(!err.contains("panicked"), "{value}: {err}");
    }
    let summary = ok(&bin()
        .args([
            "humaneval",
            "--reference",
            "--case-timeout",
            "0.5",
            "--data",
        ])
        .arg(&he)
        .arg("--out-dir")
        .arg(dir.path().join("he"))
        .output()
        .unwrap());
    assert_eq!(summary["pass_at_k_percent"]["pass@1"], 100.0, "{summary:#}");
}

/// pass@k for a k above the samples per problem is refused up front (it was dropped from the
/// report without a word), and the canonical solutions report no asking rate (they have no
/// code fence, so every one counted as asking).
#[test]
fn humaneval_refuses_k_above_n_and_reference_reports_no_asking() {
    let dir = tempfile::tempdir().unwrap();
    let he = humaneval_fixture(dir.path());
    let model = scripted_model();
    let out_dir = dir.path().join("he");
    let run = |extra: &[&str]| {
        bin()
            .arg("humaneval")
            .args(extra)
            .arg("--data")
            .arg(&he)
            .arg("--out-dir")
            .arg(&out_dir)
            .output()
            .unwrap()
    };
    for (extra, needles) in [
        (
            &["--endpoint", model.url(), "-k", "1,10"][..],
            &["-k 10", "-n 1", "raise -n"][..],
        ),
        (
            &["--endpoint", model.url(), "-n", "5", "-k", "0"],
            &["-k 0"],
        ),
        (&["--reference", "-k", "1,2"], &["-k 2", "--reference"]),
    ] {
        let out = run(extra);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{extra:?}: {err}");
        for needle in needles {
            assert!(err.contains(needle), "{extra:?}: no `{needle}` in {err}");
        }
    }
    assert_eq!(model.request_count(), 0, "refused before any sample");

    let reference = ok(&run(&["--reference"]));
    assert_eq!(reference["asked_percent"], Value::Null, "{reference:#}");
    assert_eq!(reference["pass_at_k_percent"]["pass@1"], 100.0);
    // A model's completions do report it (the scripted model answers with a fence).
    let modelled = ok(&run(&["--endpoint", model.url(), "-n", "2", "-k", "1,2"]));
    assert_eq!(modelled["asked_percent"], 0.0, "{modelled:#}");
    assert!(
        modelled["pass_at_k_percent"]["pass@2"].is_f64(),
        "{modelled:#}"
    );
}

#[test]
fn bad_benchmark_lines_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("bad.jsonl");
    let good = std::fs::read_to_string(fixture(dir.path())).unwrap();
    std::fs::write(&data, format!("{}{{\"name\": 1}}\n", good)).unwrap();
    let out = bin()
        .args(["humanevalcomm", "--data"])
        .arg(&data)
        .args(["--endpoint", "http://127.0.0.1:9"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.jsonl:3:"), "{err}");
    let out = bin()
        .args(["humanevalcomm", "--data"])
        .arg(&data)
        .args(["--variants", "9z"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown category `9z`"));
}

#[test]
fn real_model_on_real_humaneval_and_the_fixture() {
    let dir = tempfile::tempdir().unwrap();
    // The embedded default model (a base model: the numbers are low, the pipeline is real).
    let summary = ok(&bin()
        .args([
            "humaneval",
            "--limit",
            "2",
            "--max-tokens",
            "48",
            "--adapter",
            "none",
            "--out-dir",
        ])
        .arg(dir.path().join("he"))
        .output()
        .unwrap());
    assert_eq!(summary["problems"], 2);
    let p1 = summary["pass_at_k_percent"]["pass@1"].as_f64().unwrap();
    assert!((0.0..=100.0).contains(&p1));
    let samples = std::fs::read_to_string(dir.path().join("he/samples.jsonl")).unwrap();
    assert_eq!(samples.lines().count(), 2);

    let data = fixture(dir.path());
    let summary = ok(&bin()
        .args(["humanevalcomm", "--data"])
        .arg(&data)
        .args([
            "--variants",
            "1a",
            "--max-tokens",
            "32",
            "--adapter",
            "none",
            "--shots",
            "2",
            "--out-dir",
        ])
        .arg(dir.path().join("comm"))
        .output()
        .unwrap());
    assert_eq!(summary["overall"]["instances"], 2);
    let rate = summary["overall"]["communication_rate"].as_f64().unwrap();
    assert!((0.0..=100.0).contains(&rate));
}

#[test]
fn canonical_humaneval_solutions_all_pass_in_the_sandbox() {
    let dir = tempfile::tempdir().unwrap();
    let summary = ok(&bin()
        .args(["humaneval", "--reference", "--out-dir"])
        .arg(dir.path())
        .output()
        .unwrap());
    assert_eq!(summary["problems"], 164);
    assert_eq!(summary["pass_at_k_percent"]["pass@1"], 100.0, "{summary:#}");
}
