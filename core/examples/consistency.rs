//! The docstring-against-signature checks alone (`core::consistency`), without a model, over
//! JSON Lines of functions: the dev set (`source`, `label`) or the trainer's harvest (`code`).
//!
//! cargo run --release -p clarifycoder-core --example consistency -- devset/*.jsonl
//! cargo run --release -p clarifycoder-core --example consistency -- data/<model>/harvested.jsonl
//!
//! Prints every finding with its question, then the functions and findings per label.

use std::collections::BTreeMap;
use std::io::BufRead;

use clarifycoder_core::{consistency, python};

fn main() {
    let mut counts = BTreeMap::<String, (usize, usize)>::new();
    for path in std::env::args().skip(1) {
        let file = std::fs::File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
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
            let label = row["label"].as_str().unwrap_or("harvested").to_string();
            let found = consistency::contradictions(&f.problem());
            let entry = counts.entry(label.clone()).or_default();
            entry.0 += 1;
            if !found.is_empty() {
                entry.1 += 1;
                let id = row["id"].as_str().or(row["source"].as_str()).unwrap_or("?");
                for c in found {
                    println!("{label} {id}: {}", c.question);
                }
            }
        }
    }
    for (label, (functions, flagged)) in counts {
        println!("{label}: {flagged} of {functions} flagged");
    }
}
