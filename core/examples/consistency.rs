//! The checks that need no model (`core::consistency`: the docstring against its signature, and
//! the values the code returns against its annotation) over JSON Lines of functions, the dev set
//! (`source`, `label`) or the trainer's harvest (`code`), or over Python files (every documented
//! function; a directory is walked).
//!
//! cargo run --release -p clarifycoder-core --example consistency -- devset/*.jsonl
//! cargo run --release -p clarifycoder-core --example consistency -- data/<model>/harvested.jsonl
//! cargo run --release -p clarifycoder-core --example consistency -- /usr/lib/python3.11
//!
//! Prints every finding with its question, then the functions and findings per label.

use std::collections::BTreeMap;
use std::io::BufRead;
use std::path::{Path, PathBuf};

use clarifycoder_core::{consistency, python};

fn main() {
    let mut counts = BTreeMap::<String, (usize, usize)>::new();
    let mut report = |label: &str, id: &str, f: &python::Function| {
        let found: Vec<_> = consistency::contradictions(&f.problem())
            .into_iter()
            .map(|c| ("docstring", c))
            .chain(
                consistency::returned_contradictions(f)
                    .into_iter()
                    .map(|c| ("returns", c)),
            )
            .collect();
        let entry = counts.entry(label.to_string()).or_default();
        entry.0 += 1;
        if !found.is_empty() {
            entry.1 += 1;
            for (check, c) in found {
                println!("{label} {id} [{check}]: {}", c.question);
            }
        }
    };
    for arg in std::env::args().skip(1) {
        let path = PathBuf::from(&arg);
        if path.extension().is_some_and(|e| e == "jsonl") {
            let file = std::fs::File::open(&path).unwrap_or_else(|e| panic!("{arg}: {e}"));
            for line in std::io::BufReader::new(file).lines() {
                let row: serde_json::Value = serde_json::from_str(&line.unwrap()).unwrap();
                let Some(source) = row["source"]
                    .as_str()
                    .filter(|s| s.contains("def "))
                    .or_else(|| row["code"].as_str())
                else {
                    continue;
                };
                let parsed = python::extract(source);
                let Some(f) = parsed.functions.first() else {
                    continue;
                };
                let label = row["label"].as_str().unwrap_or("harvested");
                let id = row["id"].as_str().or(row["source"].as_str()).unwrap_or("?");
                report(label, id, f);
            }
        } else {
            let mut files = Vec::new();
            python_files(&path, &mut files);
            for file in files {
                let Ok(source) = std::fs::read_to_string(&file) else {
                    continue;
                };
                let parsed = python::extract(&source);
                for f in parsed.functions.iter().filter(|f| f.docstring.is_some()) {
                    let id = format!("{}:{}", file.display(), f.name_span.start.line + 1);
                    report("python file", &id, f);
                }
            }
        }
    }
    for (label, (functions, flagged)) in counts {
        println!("{label}: {flagged} of {functions} flagged");
    }
}

fn python_files(path: &Path, out: &mut Vec<PathBuf>) {
    if path.is_dir() {
        let Ok(entries) = std::fs::read_dir(path) else {
            return;
        };
        let mut entries: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
        entries.sort();
        for entry in entries {
            python_files(&entry, out);
        }
    } else if path.extension().is_some_and(|e| e == "py") {
        out.push(path.to_path_buf());
    }
}
