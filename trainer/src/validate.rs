//! `validate`: does a model (with or without an adapter) ask on unclear problems and code on
//! clear ones? Decision accuracy on the validation split, split by clear and unclear rows, plus a
//! few generated questions, in the server's exact flow (`decide`, then questions with the code
//! fence barred as the first token).

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use clarifycoder_core::analysis::{Analyzer, Options};
use clarifycoder_core::dataset::{read_jsonl, Category, Row};
use clarifycoder_core::engine::llama::{LlamaConfig, LlamaEngine};
use clarifycoder_core::engine::CancelToken;
use clarifycoder_core::settings;
use serde::Serialize;

#[derive(clap::Args, Debug)]
pub struct ValidateArgs {
    /// Rows to check (e.g. `val.jsonl` from `mix`).
    #[arg(value_name = "FILE")]
    pub data: PathBuf,
    /// A GGUF model file or a known model name [default: the default model].
    #[arg(long, value_name = "FILE")]
    pub model: Option<PathBuf>,
    /// A LoRA adapter GGUF applied to the model, or `none` [env: CLARIFYCODER_ADAPTER; default:
    /// ClarifyCoder's adapter for a known model], resolved as `check` and `devset` resolve it.
    #[arg(long, value_name = "FILE")]
    pub adapter: Option<PathBuf>,
    /// Rows checked at most (evenly spaced through the file).
    #[arg(long, default_value_t = 200)]
    pub limit: usize,
    /// Questions generated for this many unclear rows (shown as examples).
    #[arg(long, default_value_t = 4)]
    pub examples: usize,
    /// P(ask) at or above which the model is counted as asking (the server's default).
    #[arg(long, default_value_t = 0.5)]
    pub threshold: f32,
    /// Write the report as JSON here (it is also printed).
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub model: String,
    pub adapter: Option<String>,
    pub rows: usize,
    pub threshold: f32,
    /// Clear rows answered with code / clear rows.
    pub clear_accuracy: f64,
    pub clear_rows: usize,
    /// Unclear rows answered with questions / unclear rows.
    pub unclear_accuracy: f64,
    pub unclear_rows: usize,
    /// Mean P(ask) on clear and unclear rows.
    pub mean_p_ask_clear: f64,
    pub mean_p_ask_unclear: f64,
    /// The threshold with the best balanced accuracy on these rows, and that accuracy: how well
    /// P(ask) separates clear from unclear whatever the threshold (0.5 = chance).
    pub best_threshold: f32,
    pub best_balanced_accuracy: f64,
    pub examples: Vec<ExampleQuestions>,
}

#[derive(Debug, Serialize)]
pub struct ExampleQuestions {
    pub category: String,
    pub problem: String,
    pub reference: String,
    /// The questions the model asks, one per line (parsed as the server parses them).
    pub generated: String,
    pub p_ask: f32,
}

pub fn run(args: ValidateArgs) -> Result<()> {
    let resolved = settings::resolve_model(args.model.as_deref(), None);
    if args.model.is_none() {
        // The default model (or CLARIFYCODER_MODEL's) is installed, or the hint says how.
        settings::installed_model().context("no --model given")?;
    }
    let model = resolved.path.clone();
    // As `check` and `devset` resolve it: the flag, CLARIFYCODER_ADAPTER, else ClarifyCoder's
    // adapter for a known model; `none` at any level is no adapter.
    let adapter = settings::resolve_adapter(args.adapter.as_deref(), None, &resolved).file();
    if let Some(a) = adapter.as_ref().filter(|a| !a.path.is_file()) {
        let set_by = match a.origin {
            settings::Origin::Env => format!(" (set by {})", settings::ADAPTER_ENV),
            _ => String::new(),
        };
        bail!(
            "adapter not found at '{}'{set_by}; pass --adapter none to run without it",
            a.path.display()
        );
    }
    let adapter = adapter.map(|a| a.path);
    if !args.data.is_file() {
        bail!("{} does not exist", args.data.display());
    }
    let (rows, _) = read_jsonl::<Row>(&args.data, false)
        .with_context(|| format!("cannot read {}", args.data.display()))?;
    if rows.is_empty() {
        bail!("{} has no rows", args.data.display());
    }
    let step = (rows.len() as f64 / args.limit.max(1) as f64).max(1.0);
    let picked: Vec<&Row> = (0..args.limit.min(rows.len()))
        .map(|i| &rows[((i as f64 * step) as usize).min(rows.len() - 1)])
        .collect();
    let mut config = LlamaConfig::new(&model);
    config.adapter = adapter.clone();
    // The server's flow (decide in batches, then questions) with its default options.
    let analyzer = Analyzer::new(Arc::new(LlamaEngine::load(config)?), Options::default());
    let cancel = CancelToken::new();
    let problems: Vec<&str> = picked.iter().map(|r| r.problem.as_str()).collect();
    let mut decisions = Vec::with_capacity(problems.len());
    for chunk in problems.chunks(8) {
        decisions.extend(analyzer.decide(chunk, &cancel)?);
    }
    let (mut clear, mut clear_ok, mut unclear, mut unclear_ok) = (0, 0, 0, 0);
    let (mut p_clear, mut p_unclear) = (0.0f64, 0.0f64);
    let mut scored: Vec<(f32, bool)> = Vec::new();
    for (row, &p_ask) in picked.iter().zip(&decisions) {
        let asks = p_ask >= args.threshold;
        scored.push((p_ask, row.category != Category::Original));
        if row.category == Category::Original {
            clear += 1;
            clear_ok += usize::from(!asks);
            p_clear += p_ask as f64;
        } else {
            unclear += 1;
            unclear_ok += usize::from(asks);
            p_unclear += p_ask as f64;
        }
    }
    // Example questions from as many categories as possible: each category's first unclear row,
    // then the next ones in file order.
    let unclear_rows: Vec<usize> = (0..picked.len())
        .filter(|&i| picked[i].category != Category::Original)
        .collect();
    let mut firsts = std::collections::BTreeMap::new();
    for &i in &unclear_rows {
        firsts.entry(picked[i].category).or_insert(i);
    }
    let mut chosen: Vec<usize> = firsts.into_values().collect();
    chosen.extend(
        unclear_rows
            .iter()
            .filter(|i| !chosen.contains(i))
            .copied()
            .collect::<Vec<_>>(),
    );
    chosen.truncate(args.examples);
    chosen.sort_unstable();
    let mut examples = Vec::new();
    for i in chosen {
        let row = picked[i];
        let questions = analyzer.questions(&row.problem, &cancel)?;
        examples.push(ExampleQuestions {
            category: row.category.code().to_string(),
            problem: row.problem.clone(),
            reference: row.answer.clone(),
            generated: questions.join("\n"),
            p_ask: scored[i].0,
        });
    }
    let ratio = |a: usize, b: usize| if b == 0 { 0.0 } else { a as f64 / b as f64 };
    let (best_threshold, best_balanced_accuracy) = best_threshold(&scored);
    let report = Report {
        model: model
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        adapter: adapter
            .as_ref()
            .and_then(|a| a.file_name())
            .map(|n| n.to_string_lossy().into_owned()),
        rows: picked.len(),
        threshold: args.threshold,
        clear_accuracy: ratio(clear_ok, clear),
        clear_rows: clear,
        unclear_accuracy: ratio(unclear_ok, unclear),
        unclear_rows: unclear,
        mean_p_ask_clear: if clear > 0 {
            p_clear / clear as f64
        } else {
            0.0
        },
        mean_p_ask_unclear: if unclear > 0 {
            p_unclear / unclear as f64
        } else {
            0.0
        },
        best_threshold,
        best_balanced_accuracy,
        examples,
    };
    let json = serde_json::to_string_pretty(&report)?;
    if let Some(path) = &args.json {
        std::fs::write(path, &json).with_context(|| format!("cannot write {}", path.display()))?;
    }
    println!(
        "decision accuracy: clear {:.1}% ({} rows, mean P(ask) {:.3}), unclear {:.1}% ({} rows, \
         mean P(ask) {:.3})",
        report.clear_accuracy * 100.0,
        clear,
        report.mean_p_ask_clear,
        report.unclear_accuracy * 100.0,
        unclear,
        report.mean_p_ask_unclear
    );
    println!(
        "best threshold {:.3}: balanced accuracy {:.1}%",
        report.best_threshold,
        report.best_balanced_accuracy * 100.0
    );
    for e in &report.examples {
        println!(
            "--- {} (P(ask) {:.2})\n{}\n>>> {}",
            e.category, e.p_ask, e.problem, e.generated
        );
    }
    Ok(())
}

/// The threshold (one of the scores) maximising the mean of the two per-class accuracies.
pub fn best_threshold(scored: &[(f32, bool)]) -> (f32, f64) {
    let unclear = scored.iter().filter(|s| s.1).count();
    let clear = scored.len() - unclear;
    if unclear == 0 || clear == 0 {
        return (0.5, 0.0);
    }
    let mut best = (0.5f32, 0.0f64);
    for &(t, _) in scored {
        let asks_ok = scored.iter().filter(|s| s.1 && s.0 >= t).count();
        let codes_ok = scored.iter().filter(|s| !s.1 && s.0 < t).count();
        let balanced = (asks_ok as f64 / unclear as f64 + codes_ok as f64 / clear as f64) / 2.0;
        if balanced > best.1 {
            best = (t, balanced);
        }
    }
    best
}

#[cfg(test)]
mod tests {
    #[test]
    fn best_threshold_separates() {
        let scored = [
            (0.2, false),
            (0.3, false),
            (0.6, true),
            (0.9, true),
            (0.7, false),
        ];
        let (t, acc) = super::best_threshold(&scored);
        assert_eq!(t, 0.6);
        assert!((acc - (1.0 + 2.0 / 3.0) / 2.0).abs() < 1e-9);
    }
}
