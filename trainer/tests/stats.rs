//! `clarifycoder-trainer stats`, run as the built binary; Table 6 with the real installed model.

use std::path::Path;
use std::process::{Command, Output};

use clarifycoder_core::dataset::{write_jsonl, Category, Row};
use serde_json::Value;

fn row(id: &str, category: Category, method: &str, problem: &str, answer: &str) -> Row {
    Row {
        id: id.into(),
        problem: problem.into(),
        answer: answer.into(),
        kind: category.kind(),
        category,
        source: format!("lib/{id}.py:1"),
        source_id: id.into(),
        method: method.into(),
        mutations: Vec::new(),
        original_problem: String::new(),
    }
}

fn stats(args: &[&str], files: &[&Path]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_clarifycoder-trainer"))
        .arg("stats")
        .args(files)
        .args(args)
        .output()
        .unwrap()
}

fn ok(output: &Output) -> String {
    assert!(
        output.status.success(),
        "stats failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout.clone()).unwrap()
}

/// Six rows with lengths that are easy to count by hand.
fn small_file(dir: &Path) -> std::path::PathBuf {
    let rows = vec![
        row("r1", Category::Original, "harvest", "aa bb", "x"),
        row("r2", Category::A, "rules", "one two three", "why?"),
        row("r3", Category::A, "rules", "a b c d e", "what is x"),
        // "é" is one character (two bytes).
        row("r4", Category::A, "llm", "héllo", "q1 q2 q3 q4"),
        row("r5", Category::CP, "rules", "p", ""),
        row(
            "r6",
            Category::Original,
            "harvest",
            "abc def ghij klm",
            "```python\npass\n```",
        ),
    ];
    let path = dir.join("rows.jsonl");
    write_jsonl(&path, &rows).unwrap();
    path
}

fn dist(v: &Value) -> (u64, f64, f64, u64, u64) {
    (
        v["min"].as_u64().unwrap(),
        v["mean"].as_f64().unwrap(),
        v["median"].as_f64().unwrap(),
        v["p90"].as_u64().unwrap(),
        v["max"].as_u64().unwrap(),
    )
}

#[test]
fn counts_and_lengths_are_exact() {
    let dir = tempfile::tempdir().unwrap();
    let path = small_file(dir.path());
    let json: Value = serde_json::from_str(&ok(&stats(&["--format", "json"], &[&path]))).unwrap();
    assert_eq!(json["rows"], 6);
    assert_eq!(json["skipped_lines"], 0);
    assert_eq!(
        json["by_category"],
        serde_json::json!({"original": 2, "1a": 3, "2cp": 1})
    );
    assert_eq!(
        json["by_type"],
        serde_json::json!({"Original": 2, "Ambiguous": 3, "Inconsistent": 1})
    );
    assert_eq!(
        json["by_method"],
        serde_json::json!({"harvest": 2, "rules": 3, "llm": 1})
    );
    assert!(json["table6"].is_null());

    let l = &json["lengths"];
    // 1a problems: 13, 9, 5 characters; 3, 5, 1 words.
    assert_eq!(l["1a"]["rows"], 3);
    assert_eq!(dist(&l["1a"]["problem_chars"]), (5, 9.0, 9.0, 13, 13));
    assert_eq!(dist(&l["1a"]["problem_words"]), (1, 3.0, 3.0, 5, 5));
    // 1a answers: 4, 9, 11 characters; 1, 3, 4 words.
    assert_eq!(dist(&l["1a"]["answer_chars"]), (4, 8.0, 9.0, 11, 11));
    let (min, mean, median, p90, max) = dist(&l["1a"]["answer_words"]);
    assert_eq!((min, median, p90, max), (1, 3.0, 4, 4));
    assert!((mean - 8.0 / 3.0).abs() < 1e-12);
    // Two originals: the median is the mean of both, p90 the larger.
    assert_eq!(
        dist(&l["original"]["problem_chars"]),
        (5, 10.5, 10.5, 16, 16)
    );
    assert_eq!(dist(&l["original"]["problem_words"]), (2, 3.0, 3.0, 4, 4));
    // An empty answer has 0 characters and 0 words.
    assert_eq!(dist(&l["2cp"]["answer_chars"]), (0, 0.0, 0.0, 0, 0));
    assert_eq!(dist(&l["2cp"]["answer_words"]), (0, 0.0, 0.0, 0, 0));
    // All six problems: 1, 5, 5, 9, 13, 16 characters.
    assert_eq!(l["all"]["rows"], 6);
    let (min, mean, median, p90, max) = dist(&l["all"]["problem_chars"]);
    assert_eq!((min, median, p90, max), (1, 7.0, 16, 16));
    assert!((mean - 49.0 / 6.0).abs() < 1e-12);
}

#[test]
fn text_output_is_aligned_tables() {
    let dir = tempfile::tempdir().unwrap();
    let path = small_file(dir.path());
    let text = ok(&stats(&[], &[&path]));
    assert!(text.starts_with("6 rows from 1 file(s)\n"), "{text}");
    // The category table: header and rows end in the same column.
    let table: Vec<&str> = text
        .split("\n\n")
        .find(|t| t.starts_with("category"))
        .unwrap()
        .lines()
        .collect();
    assert_eq!(table.len(), 4, "{text}");
    assert!(
        table.iter().all(|l| l.len() == table[0].len()),
        "{table:#?}"
    );
    assert!(
        table
            .iter()
            .any(|l| l.starts_with("1a") && l.ends_with(" 3")),
        "{table:#?}"
    );
    let lengths = text
        .split("\n\n")
        .find(|t| t.starts_with("problem chars"))
        .unwrap();
    let all = lengths.lines().find(|l| l.starts_with("all")).unwrap();
    let cells: Vec<&str> = all.split_whitespace().collect();
    assert_eq!(cells, ["all", "6", "1", "8.2", "7.0", "16", "16"]);
}

#[test]
fn malformed_lines_and_missing_files() {
    let dir = tempfile::tempdir().unwrap();
    let path = small_file(dir.path());
    let mut text = std::fs::read_to_string(&path).unwrap();
    text.push_str("not json\n");
    let bad = dir.path().join("bad.jsonl");
    std::fs::write(&bad, text).unwrap();

    let failed = stats(&[], &[&bad]);
    assert!(!failed.status.success());
    let stderr = String::from_utf8_lossy(&failed.stderr);
    assert!(stderr.contains("bad.jsonl:7:"), "{stderr}");

    let json: Value = serde_json::from_str(&ok(&stats(
        &["--format", "json", "--skip-bad"],
        &[&bad, &path],
    )))
    .unwrap();
    assert_eq!(json["rows"], 12);
    assert_eq!(json["skipped_lines"], 1);

    let missing = dir.path().join("missing.jsonl");
    let failed = stats(&[], &[&missing]);
    assert!(!failed.status.success());
    assert!(String::from_utf8_lossy(&failed.stderr).contains("missing.jsonl does not exist"));

    let failed = stats(&["--model", "/nonexistent/model.gguf"], &[&path]);
    assert!(!failed.status.success());
    assert!(String::from_utf8_lossy(&failed.stderr).contains("/nonexistent/model.gguf"));
}

/// Letters in words, from a fixed linear congruential generator.
fn random_letters(seed: u64, words: usize) -> String {
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let mut next = |n: u64| {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (state >> 33) % n
    };
    (0..words)
        .map(|_| {
            let len = 3 + next(6);
            (0..len)
                .map(|_| (b'a' + next(26) as u8) as char)
                .collect::<String>()
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
fn table6_with_the_real_model() {
    let model = clarifycoder_core::models::GEMMA3_270M
        .installed_path()
        .unwrap_or_else(|e| panic!("{e}"));
    let problems = [
        "def add(a: int, b: int) -> int:\n    \"\"\"Return the sum of a and b.\n\n    >>> add(2, 3)\n    5\n    \"\"\"",
        "def is_palindrome(text: str) -> bool:\n    \"\"\"Return True if text reads the same backwards, ignoring case.\"\"\"",
        "def count_vowels(word: str) -> int:\n    \"\"\"Count the vowels (a, e, i, o, u) in word.\"\"\"",
    ];
    let codes = [
        "return a + b",
        "return text.lower() == text.lower()[::-1]",
        "return sum(c in 'aeiou' for c in word)",
    ];
    let mut rows = Vec::new();
    for (i, (p, code)) in problems.iter().zip(codes).enumerate() {
        rows.push(row(
            &format!("og{i}"),
            Category::Original,
            "harvest",
            p,
            &format!("```python\n{p}\n    {code}\n```"),
        ));
        // An answer that repeats the problem word for word is easy to predict...
        rows.push(row(&format!("copy{i}"), Category::A, "rules", p, p));
        // ...random letters are not.
        rows.push(row(
            &format!("rand{i}"),
            Category::P,
            "rules",
            p,
            &random_letters(i as u64, 25),
        ));
    }
    // An answer far beyond the context window is counted, not scored.
    rows.push(row(
        "long",
        Category::AC,
        "llm",
        problems[0],
        &random_letters(9, 6000),
    ));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rows.jsonl");
    write_jsonl(&path, &rows).unwrap();

    let model_arg = model.display().to_string();
    let out = stats(
        &["--format", "json", "--limit", "2", "--model", &model_arg],
        &[&path],
    );
    let json: Value = serde_json::from_str(&ok(&out)).unwrap();
    let t = &json["table6"];
    assert_eq!(t["limit"], 2);
    let metrics = [
        "problem_perplexity",
        "problem_entropy",
        "answer_perplexity",
        "answer_entropy",
    ];
    for cat in ["original", "1a", "1p"] {
        let s = &t["by_category"][cat];
        assert_eq!(s["scored"], 2, "{cat}: {s}");
        assert_eq!(s["too_long"], 0, "{cat}: {s}");
        for m in metrics {
            let v = s[m].as_f64().unwrap_or_else(|| panic!("{cat} {m}: {s}"));
            assert!(v.is_finite() && v > 0.0, "{cat} {m} = {v}");
        }
        // Perplexity is at least 1.
        assert!(s["problem_perplexity"].as_f64().unwrap() >= 1.0);
    }
    assert_eq!(t["by_category"]["2ac"]["scored"], 0);
    assert_eq!(t["by_category"]["2ac"]["too_long"], 1);
    assert!(t["by_category"]["2ac"]["answer_perplexity"].is_null());
    assert!(String::from_utf8_lossy(&out.stderr).contains("did not fit"));
    assert_eq!(t["all"]["scored"], 6);
    assert_eq!(t["all"]["too_long"], 1);
    let copy = t["by_category"]["1a"]["answer_perplexity"]
        .as_f64()
        .unwrap();
    let random = t["by_category"]["1p"]["answer_perplexity"]
        .as_f64()
        .unwrap();
    assert!(
        copy < random,
        "copied answers ppl {copy} should be below random letters ppl {random}"
    );
    // Same problems in every category: the problem columns agree (the two rows picked differ
    // only when the categories hold different problems).
    let p = |c: &str| t["by_category"][c]["problem_perplexity"].as_f64().unwrap();
    assert!(
        (p("1a") - p("1p")).abs() < 1e-3 * p("1a"),
        "{} vs {}",
        p("1a"),
        p("1p")
    );

    // The text format shows the same table; the model may be given by its name.
    let text = ok(&stats(
        &["--limit", "1", "--model", "gemma3-270m"],
        &[&path],
    ));
    let header = text
        .lines()
        .find(|l| l.starts_with("category") && l.contains("problem ppl"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(header.contains("answer entropy"), "{header}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("all ") && l.split_whitespace().nth(1) == Some("3")),
        "{text}"
    );
}
