//! The bad inputs a user meets, through the `clarifycoder check` binary: model and adapter files
//! that cannot be used, files among the inputs that cannot be checked, a result cache that cannot
//! be written. Each must give a message that says what to do, the documented exit code (2 for
//! errors; warnings keep the run's code) and leave nothing half-written: no temporary files, the
//! result cache as it was or whole. A tiny random model stands in for the real one.

use std::path::{Path, PathBuf};
use std::process::Output;

use clarifycoder_testkit::tiny::{write_model, Rng, Tiny};
use clarifycoder_tests::{assert_exit, command, leftovers, stderr, stdout_json};
use serde_json::Value;

const GOOD: &str =
    "def process(data):\n    \"\"\"Process the data properly.\"\"\"\n    return data\n";

/// A project directory with `good.py`, a tiny model, and its own result cache and configuration
/// directories (so nothing of the user's is read or written).
struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Fixture {
        let f = Fixture {
            dir: tempfile::tempdir().unwrap(),
        };
        f.write("good.py", GOOD.as_bytes());
        write_model(&f.model(), &Tiny::llama());
        f
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn write(&self, rel: &str, content: &[u8]) -> PathBuf {
        let path = self.path(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, content).unwrap();
        path
    }

    fn model(&self) -> PathBuf {
        self.path("tiny.gguf")
    }

    fn cache(&self) -> PathBuf {
        self.path("cache")
    }

    fn results(&self) -> PathBuf {
        self.cache().join("clarifycoder/results")
    }

    /// `clarifycoder check ARGS` in the fixture, with `env` set.
    fn check_env(&self, args: &[&str], env: &[(&str, &Path)]) -> Output {
        let mut cmd = command("clarifycoder");
        cmd.arg("check")
            .args(args)
            .current_dir(self.dir.path())
            .env("XDG_CACHE_HOME", self.cache())
            .env("XDG_CONFIG_HOME", self.path("config"))
            .env_remove("CLARIFYCODER_MODEL")
            .env_remove("CLARIFYCODER_ADAPTER");
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.output().unwrap()
    }

    /// `check ARGS` with the tiny model, no adapter, and threshold 0, which flags every analysed
    /// function whatever the tiny model thinks.
    fn check(&self, args: &[&str]) -> Output {
        let model = self.model();
        let mut all = vec!["--model", model.to_str().unwrap(), "--adapter", "none"];
        all.extend_from_slice(&["--threshold", "0", "--max-tokens", "4"]);
        all.extend_from_slice(args);
        self.check_env(&all, &[])
    }

    /// Every file of the result cache with its bytes (not the empty files that saves lock).
    fn cache_files(&self) -> Vec<(PathBuf, Vec<u8>)> {
        let mut files: Vec<_> = std::fs::read_dir(self.results())
            .map(|entries| {
                entries
                    .map(|e| e.unwrap().path())
                    .filter(|p| p.extension().is_none_or(|x| x != "lock"))
                    .map(|p| {
                        let bytes = std::fs::read(&p).unwrap();
                        (p, bytes)
                    })
                    .collect()
            })
            .unwrap_or_default();
        files.sort();
        files
    }

    /// No temporary file anywhere in the project or the cache.
    fn assert_nothing_half_written(&self) {
        let left = leftovers(self.dir.path());
        assert!(left.is_empty(), "left behind: {left:?}");
        // A corrupt file set aside (`.json.corrupt`) is kept as it was found.
        for (path, bytes) in self.cache_files() {
            if path.to_string_lossy().ends_with(".corrupt") {
                continue;
            }
            let parsed: Result<Value, _> = serde_json::from_slice(&bytes);
            assert!(
                parsed.is_ok_and(|v| v.is_object()),
                "{} is not a whole cache file",
                path.display()
            );
        }
    }
}

/// Asserts exit code 2, nothing on stdout (text format: no result), and every key phrase in the
/// error.
fn assert_refused(out: &Output, phrases: &[&str]) {
    assert_exit(out, 2);
    assert!(
        out.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let err = stderr(out);
    assert!(err.starts_with("error: "), "{err}");
    for phrase in phrases {
        assert!(err.contains(phrase), "{phrase:?} not in: {err}");
    }
}

/// Trains an adapter for `tiny` with the trainer (one step, as a user would) and returns its GGUF.
fn trained_adapter(f: &Fixture, name: &str, tiny: &Tiny) -> PathBuf {
    let model = f.path(&format!("{name}.gguf"));
    write_model(&model, tiny);
    let rows = f.path("rows.jsonl");
    let row = serde_json::json!({
        "id": "r0", "problem": "def f(xs):\n    \"\"\"Sort the list.\"\"\"", "answer": "Which order?",
        "type": "Ambiguous", "category": "1a", "source": "test", "source_id": "f",
        "method": "test", "mutations": [], "original_problem": ""
    });
    std::fs::write(&rows, format!("{row}\n")).unwrap();
    let run = f.path(&format!("run-{name}"));
    let out = command("clarifycoder-trainer")
        .args(["finetune", "--quiet", "--max-steps", "1", "--rank", "2"])
        .arg("--model")
        .arg(&model)
        .arg("--train")
        .arg(&rows)
        .arg("--output")
        .arg(&run)
        .output()
        .unwrap();
    assert_exit(&out, 0);
    run.join("adapter.lora.gguf")
}

#[test]
fn model_files_that_cannot_be_used_are_refused_with_what_to_do() {
    let f = Fixture::new();
    // A good run first: its cache must come through every failure untouched.
    assert_exit(&f.check(&["good.py"]), 1);
    let cache = f.cache_files();
    assert_eq!(cache.len(), 1);

    // Random bytes, a header cut inside the metadata, tensor data cut short.
    let model = std::fs::read(f.model()).unwrap();
    let noise: Vec<u8> = Rng::new(7)
        .vec(1024, 1.0)
        .iter()
        .flat_map(|x| x.to_le_bytes())
        .collect();
    f.write("random.gguf", &noise);
    f.write("header.gguf", &model[..24]);
    f.write("cut.gguf", &model[..model.len() - 1000]);
    let cases: [(&str, &[&str]); 4] = [
        (
            "missing.gguf",
            &[
                "model not found at 'missing.gguf'",
                "set by --model",
                "point it at a GGUF file",
            ],
        ),
        ("random.gguf", &["not a valid GGUF file: bad magic"]),
        ("header.gguf", &["not a valid GGUF file", "truncated"]),
        ("cut.gguf", &["not a valid GGUF file: file is truncated"]),
    ];
    for (name, phrases) in cases {
        let out = f.check_env(&["--model", name, "--adapter", "none", "good.py"], &[]);
        assert_refused(&out, phrases);
        if name != "missing.gguf" {
            let named = format!("'{name}'");
            assert_refused(&out, &[&named, "pass another GGUF file with --model"]);
        }
        assert_eq!(f.cache_files(), cache, "{name}");
        f.assert_nothing_half_written();
    }

    // Set by the environment: the message names the variable.
    let missing = f.path("elsewhere/model.gguf");
    let out = f.check_env(&["good.py"], &[("CLARIFYCODER_MODEL", &missing)]);
    assert_refused(&out, &["model not found at", "set by CLARIFYCODER_MODEL"]);

    // A directory, and an adapter where the model belongs.
    let out = f.check_env(&["--model", ".", "good.py"], &[]);
    assert_refused(&out, &["model '.' is not a file (a GGUF file is expected)"]);
    let adapter = trained_adapter(&f, "base", &Tiny::llama());
    let out = f.check_env(
        &[
            "--model",
            adapter.to_str().unwrap(),
            "--adapter",
            "none",
            "good.py",
        ],
        &[],
    );
    assert_refused(
        &out,
        &["this is a LoRA adapter, not a model; pass it as the adapter"],
    );

    // JSON output carries the error for editors and scripts.
    let out = f.check_env(
        &["--format", "json", "--model", "random.gguf", "good.py"],
        &[],
    );
    assert_exit(&out, 2);
    let report = stdout_json(&out);
    assert!(
        report["errors"][0]
            .as_str()
            .is_some_and(|e| e.contains("not a valid GGUF file")),
        "{report:#}"
    );
    assert_eq!(report["diagnostics"], serde_json::json!([]));
    assert_eq!(f.cache_files(), cache);
    f.assert_nothing_half_written();
}

#[test]
fn adapters_that_do_not_fit_the_model_are_refused_before_loading() {
    let f = Fixture::new();
    let model = f.model();
    let model = model.to_str().unwrap();
    let check_adapter = |adapter: &str| {
        let args = [
            "--model",
            model,
            "--adapter",
            adapter,
            "--threshold",
            "0",
            "good.py",
        ];
        f.check_env(&args, &[])
    };
    // The same architecture, other sizes: trained for another base model.
    let mut other = Tiny::llama();
    other.n_embd = 32;
    other.n_ff = 48;
    let for_other = trained_adapter(&f, "other", &other);
    let out = check_adapter(for_other.to_str().unwrap());
    assert_refused(
        &out,
        &[
            "was made for another base model than",
            "has shape [32, 2], which does not fit the model's",
            "pass --adapter none to run without it",
        ],
    );
    // Another architecture.
    let for_gemma = trained_adapter(&f, "gemma", &Tiny::gemma3());
    let out = check_adapter(for_gemma.to_str().unwrap());
    assert_refused(
        &out,
        &[
            "was trained for architecture 'gemma3' but the model is 'llama'",
            "pass --adapter none to run without it",
        ],
    );
    // A model where the adapter belongs, a missing file, random bytes.
    let out = check_adapter(model);
    assert_refused(&out, &["is not a LoRA adapter", "pass --adapter none"]);
    let out = check_adapter("gone.lora.gguf");
    assert_refused(
        &out,
        &["adapter not found at 'gone.lora.gguf'; pass --adapter none"],
    );
    f.write("noise.gguf", &[7u8; 512]);
    let out = check_adapter("noise.gguf");
    assert_refused(
        &out,
        &[
            "'noise.gguf' is not a valid GGUF file",
            "pass --adapter none",
        ],
    );
    // None of it wrote a cache.
    assert!(f.cache_files().is_empty());
    f.assert_nothing_half_written();
    // The adapter trained for this model is taken.
    let fits = trained_adapter(&f, "same", &Tiny::llama());
    assert_exit(&check_adapter(fits.to_str().unwrap()), 1);
}

#[test]
fn unreadable_oversized_and_broken_files_among_the_inputs_are_warnings() {
    let f = Fixture::new();
    let mut big = String::from("def f(x):\n    \"\"\"Double x.\"\"\"\n    return 2 * x\n");
    while big.len() < 2 << 20 {
        big.push_str("# padding padding padding padding padding padding padding padding\n");
    }
    f.write("big.py", big.as_bytes());
    f.write("latin1.py", b"def f():\n    \"\"\"Caf\xe9 au lait.\"\"\"\n");
    f.write(
        "broken.py",
        b"def broken(:\n    pass\n\ndef fine(x):\n    \"\"\"Return x unchanged.\"\"\"\n    return x\n",
    );
    // Indentation Python refuses (a dedent to no outer level), which tree-sitter parses.
    f.write(
        "dedent.py",
        b"def odd(x):\n        \"\"\"Return x unchanged.\"\"\"\n    return x\n",
    );
    let out = f.check(&["--format", "json", "."]);
    // The good functions are still checked (and flagged at threshold 0): exit 1, not 2.
    assert_exit(&out, 1);
    let report = stdout_json(&out);
    let warnings = report["warnings"].to_string();
    for phrase in [
        "latin1.py: skipped, not valid UTF-8 (save it as UTF-8 to check it)",
        "big.py: skipped",
        "raise --max-file-size to check it",
        "broken.py:1: has syntax errors; checking what could be parsed",
        "dedent.py:3: has indentation Python refuses (an IndentationError or TabError); checking its functions as written",
    ] {
        assert!(warnings.contains(phrase), "{phrase:?} not in {warnings}");
    }
    let mut flagged: Vec<&str> = report["diagnostics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["function"].as_str().unwrap())
        .collect();
    flagged.sort();
    assert_eq!(flagged, ["fine", "odd", "process"], "{report:#}");
    assert_eq!(report["stats"]["files"], 3, "{report:#}");
    assert_eq!(report["errors"], serde_json::json!([]));
    // The three results are cached, whole.
    let cache = f.cache_files();
    assert_eq!(cache.len(), 1);
    let entries: Value = serde_json::from_slice(&cache[0].1).unwrap();
    assert_eq!(entries.as_object().unwrap().len(), 3, "{entries}");
    f.assert_nothing_half_written();

    // Text format: warnings on stderr, results on stdout.
    let out = f.check(&["."]);
    assert_exit(&out, 1);
    let err = stderr(&out);
    assert!(
        err.contains("warning: ./latin1.py: skipped, not valid UTF-8"),
        "{err}"
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(stdout.lines().count(), 3, "{stdout}");
    assert!(
        stdout.lines().all(|l| l.contains(": clarify[score=")),
        "{stdout}"
    );
}

#[test]
fn a_cache_that_cannot_be_written_or_read_costs_time_not_results() {
    let f = Fixture::new();
    let first = f.check(&["--format", "json", "good.py"]);
    assert_exit(&first, 1);
    let cache = f.cache_files();
    assert_eq!(cache.len(), 1);

    // A corrupt cache file: a warning, the results, a whole cache again, and the old file kept.
    std::fs::write(&cache[0].0, b"{\"truncated").unwrap();
    let out = f.check(&["--format", "json", "good.py"]);
    assert_exit(&out, 1);
    assert!(
        stderr(&out).contains("is unreadable") && stderr(&out).contains("starting a new one"),
        "{}",
        stderr(&out)
    );
    assert_eq!(stdout_json(&out)["diagnostics"][0]["function"], "process");
    let cache = f.cache_files();
    assert_eq!(cache.len(), 2, "{cache:?}");
    let (kept, fresh): (Vec<_>, Vec<_>) = cache
        .iter()
        .partition(|(p, _)| p.to_string_lossy().ends_with(".json.corrupt"));
    assert_eq!(kept.len(), 1, "{cache:?}");
    assert_eq!(kept[0].1, b"{\"truncated");
    assert!(serde_json::from_slice::<serde_json::Value>(&fresh[0].1).is_ok());
    f.assert_nothing_half_written();

    // The cache directory's place taken by a file (unwritable even for root).
    let blocked = Fixture::new();
    blocked.write("cache/clarifycoder/results", b"not a directory");
    let out = blocked.check(&["--format", "json", "good.py"]);
    assert_cache_warning(&out, &blocked.results());
    assert_eq!(
        std::fs::read(blocked.results()).unwrap(),
        b"not a directory"
    );
    blocked.assert_nothing_half_written();

    // A read-only cache directory: new results cannot be saved, the old ones stay as they were.
    use std::os::unix::fs::PermissionsExt;
    let results = f.results();
    std::fs::set_permissions(&results, std::fs::Permissions::from_mode(0o555)).unwrap();
    let restore = || {
        std::fs::set_permissions(&results, std::fs::Permissions::from_mode(0o755)).unwrap();
    };
    let probe = results.join("probe");
    if std::fs::write(&probe, b"").is_ok() {
        // Root writes anyway: the case cannot be made here (the blocked cache above stands in).
        std::fs::remove_file(&probe).unwrap();
        restore();
        eprintln!("skipped the read-only cache directory: this user can write to it anyway");
        return;
    }
    f.write("good.py", GOOD.replace("properly", "carefully").as_bytes());
    let out = f.check(&["--format", "json", "good.py"]);
    restore();
    assert_cache_warning(&out, &results);
    assert_eq!(f.cache_files(), cache);
    f.assert_nothing_half_written();
}

/// The run succeeded (its results printed, exit 1 for the flagged function) and warned that the
/// cache in `dir` could not be written, saying what to do.
fn assert_cache_warning(out: &Output, dir: &Path) {
    assert_exit(out, 1);
    let report = stdout_json(out);
    assert_eq!(
        report["diagnostics"][0]["function"], "process",
        "{report:#}"
    );
    let warnings = report["warnings"].to_string();
    for phrase in [
        format!("cannot write the result cache in '{}'", dir.display()),
        "make that directory writable, set XDG_CACHE_HOME to another directory, or pass --no-cache"
            .to_string(),
    ] {
        assert!(warnings.contains(&phrase), "{phrase:?} not in {warnings}");
    }
}

#[test]
fn bad_paths_and_flag_values_exit_two_with_what_to_do() {
    let f = Fixture::new();
    let out = f.check(&["missing_dir"]);
    assert_refused(&out, &["missing_dir: no such file or directory"]);
    // A missing path among good ones: the good ones are checked, the run still fails.
    let out = f.check(&["--format", "json", "good.py", "missing.py"]);
    assert_exit(&out, 2);
    let report = stdout_json(&out);
    assert_eq!(
        report["diagnostics"][0]["function"], "process",
        "{report:#}"
    );
    assert!(
        report["errors"]
            .to_string()
            .contains("missing.py: no such file or directory"),
        "{report:#}"
    );
    let out = f.check_env(&["--threshold", "7", "good.py"], &[]);
    assert_refused(&out, &["threshold must be between 0 and 1"]);
    f.assert_nothing_half_written();
}
