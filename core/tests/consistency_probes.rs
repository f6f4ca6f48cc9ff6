//! Docstrings written to trip the docstring-against-signature checks (`core::consistency`), from
//! a review of their third round: realistic functions on which a check could raise a false alarm
//! (`"label": "clear"`), and a few real contradictions (`"inconsistent"`).
//!
//! A finding flags the function with certainty, so no clear probe may produce one. Of the
//! inconsistent probes, the ones listed in `FOUND` must be found; the others are known misses.

use clarifycoder_core::{consistency, python};

const PROBES: &str = include_str!("fixtures/consistency-probes.jsonl");

/// Inconsistent probes the checks find today.
const FOUND: [&str; 6] = ["r-014", "r-033", "r-045", "r-048", "r-058", "r-064"];

fn findings(source: &str) -> Vec<String> {
    let parsed = python::extract(source);
    parsed
        .functions
        .first()
        .map(|f| {
            consistency::contradictions(&f.problem())
                .into_iter()
                .chain(consistency::returned_contradictions(f))
                .map(|c| c.question)
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn no_clear_probe_is_flagged_and_the_known_contradictions_are() {
    let mut false_alarms = Vec::new();
    let mut missed = Vec::new();
    for line in PROBES.lines() {
        let probe: serde_json::Value = serde_json::from_str(line).unwrap();
        let id = probe["id"].as_str().unwrap();
        let found = findings(probe["source"].as_str().unwrap());
        match probe["label"].as_str().unwrap() {
            "clear" if !found.is_empty() => false_alarms.push(format!("{id}: {found:?}")),
            "inconsistent" if FOUND.contains(&id) && found.is_empty() => {
                missed.push(id.to_string())
            }
            _ => {}
        }
    }
    assert!(false_alarms.is_empty(), "false alarms: {false_alarms:#?}");
    assert!(missed.is_empty(), "no longer found: {missed:?}");
}
