//! `clarifycoder-trainer mix`, run as the built binary on JSONL files in a temporary directory.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use clarifycoder_core::dataset::{read_jsonl, write_jsonl, Category, Row};

fn row(id: &str, source_id: &str, category: Category) -> Row {
    Row {
        id: id.into(),
        problem: format!("def {source_id}(x):\n    \"\"\"Problem of {source_id}.\"\"\""),
        answer: if category == Category::Original {
            format!("```python\ndef {source_id}(x):\n    return x\n```")
        } else {
            "What should happen when x is negative?".into()
        },
        kind: category.kind(),
        category,
        source: format!("lib/{source_id}.py:1"),
        source_id: source_id.into(),
        method: if category == Category::Original {
            "harvest".into()
        } else {
            "rules".into()
        },
        mutations: Vec::new(),
        original_problem: String::new(),
    }
}

/// 70 functions with an original row each; the first 10 also have three clarify variants
/// (1a, 1c, 1p): 30 clarify rows and 70 original rows.
fn write_inputs(dir: &Path) -> (PathBuf, PathBuf) {
    let original: Vec<Row> = (0..70)
        .map(|i| row(&format!("f{i}-og"), &format!("f{i}"), Category::Original))
        .collect();
    let clarify: Vec<Row> = (0..10)
        .flat_map(|i| {
            [Category::A, Category::C, Category::P]
                .map(|c| row(&format!("f{i}-{}", c.code()), &format!("f{i}"), c))
        })
        .collect();
    let c = dir.join("clarify.jsonl");
    let o = dir.join("original.jsonl");
    write_jsonl(&c, &clarify).unwrap();
    write_jsonl(&o, &original).unwrap();
    (c, o)
}

fn mix(clarify: &Path, original: &Path, out: &Path, extra: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_clarifycoder-trainer"))
        .arg("mix")
        .arg("--clarify")
        .arg(clarify)
        .arg("--original")
        .arg(original)
        .arg("--out-dir")
        .arg(out)
        .args(extra)
        .output()
        .unwrap()
}

fn ok(output: &Output) -> serde_json::Value {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "mix failed: {stderr}");
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {stderr}"))
}

fn read(path: &Path) -> Vec<Row> {
    read_jsonl::<Row>(path, false).unwrap().0
}

/// (clarify rows, original rows, occurrences per id) of a file.
fn census(rows: &[Row]) -> (usize, usize, BTreeMap<String, usize>) {
    let clarify = rows
        .iter()
        .filter(|r| r.category != Category::Original)
        .count();
    let mut ids = BTreeMap::new();
    for r in rows {
        *ids.entry(r.id.clone()).or_insert(0) += 1;
    }
    (clarify, rows.len() - clarify, ids)
}

#[test]
fn downsample_keeps_the_small_side_and_drops_from_the_large_one() {
    let dir = tempfile::tempdir().unwrap();
    let (c, o) = write_inputs(dir.path());
    let out = dir.path().join("out");
    let report = ok(&mix(
        &c,
        &o,
        &out,
        &[
            "--ratio",
            "0.5",
            "--val-fraction",
            "0",
            "--strategy",
            "downsample",
        ],
    ));
    let train = read(&out.join("train.jsonl"));
    let (nc, no, ids) = census(&train);
    assert_eq!((nc, no), (30, 30));
    assert!(
        ids.values().all(|&n| n == 1),
        "downsampling repeats nothing"
    );
    assert_eq!(read(&out.join("val.jsonl")).len(), 0);
    assert_eq!(report["train"]["clarify"], 30);
    assert_eq!(report["train"]["original"], 30);
    assert_eq!(report["ratio_achieved"], 0.5);
    assert_eq!(report["strategy"], "downsample");
    // mix.json holds what stdout printed.
    let file: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("mix.json")).unwrap()).unwrap();
    assert_eq!(file, report);

    // The default strategy is downsample; the clarify side is the large one at r = 0.2.
    let out = dir.path().join("out2");
    ok(&mix(
        &c,
        &o,
        &out,
        &["--ratio", "0.2", "--val-fraction", "0"],
    ));
    let (nc, no, _) = census(&read(&out.join("train.jsonl")));
    // 70 originals kept; 0.2 * 70 / 0.8 = 17.5 rounds to 18.
    assert_eq!((nc, no), (18, 70));
}

#[test]
fn oversample_really_duplicates_rows() {
    let dir = tempfile::tempdir().unwrap();
    let (c, o) = write_inputs(dir.path());
    let out = dir.path().join("out");
    let report = ok(&mix(
        &c,
        &o,
        &out,
        &[
            "--ratio",
            "0.5",
            "--val-fraction",
            "0",
            "--strategy",
            "oversample",
        ],
    ));
    let train = read(&out.join("train.jsonl"));
    let (nc, no, ids) = census(&train);
    assert_eq!((nc, no), (70, 70));
    let clarify_ids: Vec<usize> = ids
        .iter()
        .filter(|(id, _)| !id.ends_with("-og"))
        .map(|(_, n)| *n)
        .collect();
    let original_ids: Vec<usize> = ids
        .iter()
        .filter(|(id, _)| id.ends_with("-og"))
        .map(|(_, n)| *n)
        .collect();
    // Every clarify row twice (two whole copies), ten of them a third time.
    assert_eq!(clarify_ids.len(), 30);
    assert!(
        clarify_ids.iter().all(|&n| n == 2 || n == 3),
        "{clarify_ids:?}"
    );
    assert_eq!(clarify_ids.iter().filter(|&&n| n == 3).count(), 10);
    assert_eq!(original_ids.len(), 70);
    assert!(original_ids.iter().all(|&n| n == 1));
    assert_eq!(report["train"]["duplicates"], 40);
    assert_eq!(report["ratio_achieved"], 0.5);
}

#[test]
fn uniform_keeps_the_total_and_draws_with_replacement_only_when_needed() {
    let dir = tempfile::tempdir().unwrap();
    let (c, o) = write_inputs(dir.path());
    let out = dir.path().join("out");
    let report = ok(&mix(
        &c,
        &o,
        &out,
        &[
            "--ratio",
            "0.5",
            "--val-fraction",
            "0",
            "--strategy",
            "uniform",
        ],
    ));
    let train = read(&out.join("train.jsonl"));
    let (nc, no, ids) = census(&train);
    assert_eq!((nc, no), (50, 50));
    assert_eq!(train.len(), 100);
    // All 30 clarify rows drawn before any is drawn again; 50 distinct originals out of 70.
    let clarify_distinct = ids.keys().filter(|id| !id.ends_with("-og")).count();
    let original: Vec<usize> = ids
        .iter()
        .filter(|(id, _)| id.ends_with("-og"))
        .map(|(_, n)| *n)
        .collect();
    assert_eq!(clarify_distinct, 30);
    assert_eq!(original.len(), 50);
    assert!(original.iter().all(|&n| n == 1));
    assert_eq!(report["train"]["total"], 100);

    // r = 0.3 matches the input: uniform then draws every row once (a permutation).
    let out = dir.path().join("out2");
    ok(&mix(
        &c,
        &o,
        &out,
        &[
            "--ratio",
            "0.3",
            "--val-fraction",
            "0",
            "--strategy",
            "uniform",
        ],
    ));
    let (nc, no, ids) = census(&read(&out.join("train.jsonl")));
    assert_eq!((nc, no), (30, 70));
    assert!(ids.values().all(|&n| n == 1));
}

#[test]
fn split_is_by_source_function_and_validation_is_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let (c, o) = write_inputs(dir.path());
    let inputs: Vec<Row> = read(&c).into_iter().chain(read(&o)).collect();
    for strategy in ["downsample", "oversample", "uniform"] {
        let out = dir.path().join(strategy);
        let report = ok(&mix(
            &c,
            &o,
            &out,
            &[
                "--ratio",
                "0.4",
                "--val-fraction",
                "0.2",
                "--strategy",
                strategy,
                "--seed",
                "7",
            ],
        ));
        let train = read(&out.join("train.jsonl"));
        let val = read(&out.join("val.jsonl"));
        let train_groups: BTreeSet<&str> = train.iter().map(|r| r.source_id.as_str()).collect();
        let val_groups: BTreeSet<&str> = val.iter().map(|r| r.source_id.as_str()).collect();
        assert!(
            train_groups.is_disjoint(&val_groups),
            "{strategy}: a function on both sides"
        );
        // 20% of 70 functions.
        assert_eq!(val_groups.len(), 14, "{strategy}");
        assert_eq!(report["groups"]["val"], 14);
        // Validation holds every row of its functions, once, as read.
        let expected: Vec<&Row> = inputs
            .iter()
            .filter(|r| val_groups.contains(r.source_id.as_str()))
            .collect();
        assert_eq!(val.len(), expected.len(), "{strategy}");
        for r in &expected {
            assert_eq!(
                val.iter().filter(|v| v == r).count(),
                1,
                "{strategy}: {}",
                r.id
            );
        }
        // The training side reaches the ratio exactly (as integers allow).
        let (nc, no, _) = census(&train);
        let before_c = report["train_before"]["clarify"].as_u64().unwrap() as usize;
        let before_o = report["train_before"]["original"].as_u64().unwrap() as usize;
        assert_eq!(before_c + before_o + val.len(), 100);
        let expected = match strategy {
            "downsample" => (before_c, (before_c as f64 * 0.6 / 0.4).round() as usize),
            "oversample" => (((before_o as f64) * 0.4 / 0.6).round() as usize, before_o),
            _ => {
                let n = before_c + before_o;
                let tc = (0.4 * n as f64).round() as usize;
                (tc, n - tc)
            }
        };
        assert_eq!(
            (nc, no),
            expected,
            "{strategy}: before {before_c}/{before_o}"
        );
        assert_eq!(report["train"]["clarify"].as_u64().unwrap() as usize, nc);
    }
    // The split does not depend on the strategy.
    let val_of = |s: &str| std::fs::read(dir.path().join(s).join("val.jsonl")).unwrap();
    assert_eq!(val_of("downsample"), val_of("oversample"));
    assert_eq!(val_of("downsample"), val_of("uniform"));
}

#[test]
fn same_inputs_and_seed_give_identical_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let (c, o) = write_inputs(dir.path());
    let args = [
        "--ratio",
        "0.45",
        "--strategy",
        "oversample",
        "--seed",
        "42",
    ];
    let a = dir.path().join("a");
    let b = dir.path().join("b");
    let out_a = mix(&c, &o, &a, &args);
    let out_b = mix(&c, &o, &b, &args);
    ok(&out_a);
    assert_eq!(out_a.stdout, out_b.stdout);
    for file in ["train.jsonl", "val.jsonl", "mix.json"] {
        let x = std::fs::read(a.join(file)).unwrap();
        assert!(!x.is_empty());
        assert_eq!(x, std::fs::read(b.join(file)).unwrap(), "{file} differs");
    }
    // Another seed shuffles differently.
    let d = dir.path().join("d");
    ok(&mix(
        &c,
        &o,
        &d,
        &[
            "--ratio",
            "0.45",
            "--strategy",
            "oversample",
            "--seed",
            "43",
        ],
    ));
    assert_ne!(
        std::fs::read(a.join("train.jsonl")).unwrap(),
        std::fs::read(d.join("train.jsonl")).unwrap()
    );
}

#[test]
fn malformed_lines_stop_with_file_and_line_unless_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let (c, o) = write_inputs(dir.path());
    let text = std::fs::read_to_string(&c).unwrap();
    let mut lines: Vec<&str> = text.lines().collect();
    lines.insert(2, "{\"id\": \"broken\", ");
    let bad = dir.path().join("bad.jsonl");
    std::fs::write(&bad, lines.join("\n") + "\n").unwrap();

    let out = dir.path().join("out");
    let failed = mix(&bad, &o, &out, &["--ratio", "0.5"]);
    assert!(!failed.status.success());
    let stderr = String::from_utf8_lossy(&failed.stderr);
    assert!(stderr.contains("bad.jsonl:3:"), "{stderr}");
    assert!(stderr.contains("--skip-bad"), "{stderr}");
    assert!(!out.join("train.jsonl").exists());

    let report = ok(&mix(
        &bad,
        &o,
        &out,
        &["--ratio", "0.5", "--val-fraction", "0", "--skip-bad"],
    ));
    assert_eq!(report["inputs"]["skipped_lines"], 1);
    assert_eq!(report["inputs"]["clarify_rows"], 30);
    let (nc, no, _) = census(&read(&out.join("train.jsonl")));
    assert_eq!((nc, no), (30, 30));
}

/// A ratio far from the data's own is refused when it would repeat a side's rows more than
/// 10 times on average (1e-12 aborted allocating petabytes; 0.0001 repeated rows 20,000 times).
#[test]
fn oversampling_more_than_ten_times_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (c, o) = write_inputs(dir.path());
    // Three clarify rows (one function's) against 70 originals.
    let few = dir.path().join("few.jsonl");
    write_jsonl(&few, &read(&c)[..3]).unwrap();
    let out = dir.path().join("out");
    for (clarify, strategy, ratio) in [
        (&c, "oversample", "1e-12"),
        (&c, "oversample", "0.0001"),
        (&c, "oversample", "0.999"),
        (&few, "uniform", "0.5"),
    ] {
        let output = mix(
            clarify,
            &o,
            &out,
            &[
                "--ratio",
                ratio,
                "--strategy",
                strategy,
                "--val-fraction",
                "0",
            ],
        );
        let err = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{strategy} {ratio}: {err}");
        for needle in ["times on average", "at most 10", "--strategy downsample"] {
            assert!(
                err.contains(needle),
                "{strategy} {ratio}: no `{needle}` in {err}"
            );
        }
        assert!(!out.join("train.jsonl").exists());
    }
    // 70 originals against 30 clarify rows: 0.7 repeats the clarify rows 5.4 times, allowed.
    let report = ok(&mix(
        &c,
        &o,
        &out,
        &[
            "--ratio",
            "0.7",
            "--strategy",
            "oversample",
            "--val-fraction",
            "0",
        ],
    ));
    assert_eq!(report["train"]["clarify"], 163, "{report:#}");
}

#[test]
fn bad_arguments_and_inputs_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let (c, o) = write_inputs(dir.path());
    let out = dir.path().join("out");
    let stderr_of = |clarify: &Path, original: &Path, extra: &[&str]| {
        let output = mix(clarify, original, &out, extra);
        assert!(!output.status.success(), "{extra:?} should fail");
        String::from_utf8_lossy(&output.stderr).into_owned()
    };
    for ratio in ["0", "1", "1.5", "-0.2", "NaN"] {
        let e = stderr_of(&c, &o, &[&format!("--ratio={ratio}")]);
        assert!(
            e.contains("--ratio must be strictly between 0 and 1"),
            "{ratio}: {e}"
        );
    }
    let e = stderr_of(&c, &o, &["--ratio", "0.5", "--val-fraction", "1"]);
    assert!(e.contains("--val-fraction"), "{e}");

    let missing = dir.path().join("missing.jsonl");
    let e = stderr_of(&missing, &o, &["--ratio", "0.5"]);
    assert!(
        e.contains("missing.jsonl") && e.contains("does not exist"),
        "{e}"
    );

    let empty = dir.path().join("empty.jsonl");
    std::fs::write(&empty, "").unwrap();
    let e = stderr_of(&empty, &o, &["--ratio", "0.5"]);
    assert!(e.contains("no clarify rows"), "{e}");
    let e = stderr_of(&c, &empty, &["--ratio", "0.5"]);
    assert!(e.contains("no original rows"), "{e}");

    // Rows of the wrong side.
    let e = stderr_of(&o, &c, &["--ratio", "0.5"]);
    assert!(
        e.contains("category original") && e.contains("--original"),
        "{e}"
    );
}
