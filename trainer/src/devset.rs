//! `devset`: how well a model (with or without an adapter) tells unclear docstrings from clear
//! ones on the labelled dev set (`devset/*.jsonl`: realistic functions written for this project,
//! never trained on), in the server's exact flow: P(ask) from the first-token distribution, then
//! questions for every flagged function.
//!
//! Reports the AUC of P(ask) (unclear vs clear), balanced accuracy at the threshold, recall per
//! unclear label, the false-alarm rate on clear functions, the threshold with the best balanced
//! accuracy, the share of distinct questions, and the time per function.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clarifycoder_core::analysis::{self, Analyzer, Options};
use clarifycoder_core::backend::Plan;
use clarifycoder_core::engine::llama::{LlamaConfig, LlamaEngine};
use clarifycoder_core::engine::CancelToken;
use clarifycoder_core::{dataset, examples, python, settings};
use serde::{Deserialize, Serialize};

#[derive(clap::Args, Debug)]
pub struct DevsetArgs {
    /// Labelled functions (JSON Lines: `id`, `label`, `reason`, `source`).
    #[arg(value_name = "FILE", required = true, num_args = 1..)]
    pub data: Vec<PathBuf>,
    /// A GGUF model file or a known model name [default: the default model].
    #[arg(long, value_name = "MODEL")]
    pub model: Option<PathBuf>,
    /// A LoRA adapter GGUF, or `none` [default: ClarifyCoder's adapter for a known model].
    #[arg(long, value_name = "FILE")]
    pub adapter: Option<PathBuf>,
    /// P(ask) at or above which a function is flagged [default: the shipped default].
    #[arg(long)]
    pub threshold: Option<f32>,
    /// Most tokens generated for one function's questions (the server's default).
    #[arg(long, default_value_t = 96)]
    pub max_tokens: usize,
    /// The model alone: skip the docstring-against-signature checks that flag a function without
    /// it (`core::consistency`).
    #[arg(long)]
    pub model_only: bool,
    /// Weight of the summary's vote in the score (`core::analysis::summary_problem`); 0 scores
    /// the whole docstring only [default: the shipped default].
    #[arg(long, value_name = "W")]
    pub summary_weight: Option<f32>,
    /// Scale of the adapter's LoRA weights (1 as trained; 0 is the base model).
    #[arg(long, default_value_t = 1.0, value_name = "S")]
    pub adapter_scale: f32,
    /// Skip generating questions (scores only).
    #[arg(long)]
    pub no_questions: bool,
    /// Run each function's docstring examples against its code, as `check --run-examples` does
    /// (`core::examples`).
    #[arg(long)]
    pub run_examples: bool,
    /// Python interpreter for --run-examples.
    #[arg(long, default_value = settings::DEFAULT_PYTHON)]
    pub python: String,
    /// Inference threads (0 = all cores).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Write the report, with every function's score and questions, as JSON here.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
}

/// One labelled function of the dev set.
#[derive(Debug, Clone, Deserialize)]
pub struct DevRow {
    pub id: String,
    /// `clear`, `ambiguous`, `incomplete` or `inconsistent`.
    pub label: String,
    /// Why it has that label.
    #[serde(default)]
    pub reason: String,
    /// The function's source.
    pub source: String,
    /// The file it came from (set by [`read`]).
    #[serde(skip)]
    pub file: String,
}

#[derive(Debug, Serialize)]
pub struct Scored {
    pub id: String,
    pub label: String,
    pub p_ask: f32,
    /// The analyzer's score (model, docstring checks, examples) before the findings that
    /// need no model (`analysis::certain`) are applied.
    pub p_decided: f32,
    pub flagged: bool,
    pub questions: Vec<String>,
    /// What running the docstring's examples showed (`agree`, `disagree`), with --run-examples.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub examples: Option<&'static str>,
}

/// How well the scores of a set of functions separate unclear from clear ones.
#[derive(Debug, Serialize)]
pub struct Quality {
    pub functions: usize,
    pub clear: usize,
    pub unclear: usize,
    /// Probability that a random unclear function scores above a random clear one.
    pub auc: f64,
    /// Mean of the unclear recall and the clear specificity at the threshold.
    pub balanced_accuracy: f64,
    /// Flagged share of each unclear label.
    pub recall: BTreeMap<String, f64>,
    /// Flagged share of the clear functions.
    pub false_alarm_rate: f64,
    pub best_threshold: f32,
    pub best_balanced_accuracy: f64,
}

impl Quality {
    fn of(results: &[&Scored]) -> Quality {
        let scored: Vec<(f32, bool)> = results
            .iter()
            .map(|r| (r.p_ask, r.label != "clear"))
            .collect();
        let clear = scored.iter().filter(|s| !s.1).count();
        let unclear = scored.len() - clear;
        let ratio = |a: usize, b: usize| if b == 0 { 0.0 } else { a as f64 / b as f64 };
        let mut recall = BTreeMap::new();
        for label in UNCLEAR_LABELS {
            let of: Vec<&&Scored> = results.iter().filter(|r| r.label == label).collect();
            if !of.is_empty() {
                let flagged = of.iter().filter(|r| r.flagged).count();
                recall.insert(label.to_string(), ratio(flagged, of.len()));
            }
        }
        let flagged = |clear: bool| {
            results
                .iter()
                .filter(|r| (r.label == "clear") == clear && r.flagged)
                .count()
        };
        let (false_alarms, caught) = (flagged(true), flagged(false));
        let (best_threshold, best_balanced_accuracy) = crate::validate::best_threshold(&scored);
        Quality {
            functions: results.len(),
            clear,
            unclear,
            auc: auc(&scored),
            balanced_accuracy: (ratio(caught, unclear) + 1.0 - ratio(false_alarms, clear)) / 2.0,
            recall,
            false_alarm_rate: ratio(false_alarms, clear),
            best_threshold,
            best_balanced_accuracy,
        }
    }
}

/// One file's share of a run over several: the model's scale can differ from file to file
/// (BENCHMARKS.md), which the pooled numbers hide.
#[derive(Debug, Serialize)]
pub struct FileQuality {
    pub file: String,
    #[serde(flatten)]
    pub quality: Quality,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub model: String,
    pub adapter: Option<String>,
    /// `--adapter-scale`.
    pub adapter_scale: f32,
    pub threshold: f32,
    #[serde(flatten)]
    pub quality: Quality,
    /// Each file on its own, when the run read more than one (files with clear and unclear rows).
    pub by_file: Vec<FileQuality>,
    /// Distinct question texts / questions, over every flagged function.
    pub distinct_questions: f64,
    pub questions: usize,
    /// Mean milliseconds per function to decide (batched), and per flagged function to generate.
    pub decide_ms: f64,
    pub questions_ms: f64,
    pub results: Vec<Scored>,
}

/// The labels that mean "the model should ask".
pub const UNCLEAR_LABELS: [&str; 3] = ["ambiguous", "incomplete", "inconsistent"];

/// Reads dev-set files; every row's label must be known and its source must hold a documented
/// function. Returns each row with the problem text the model sees.
pub fn read(files: &[PathBuf]) -> Result<Vec<(DevRow, String)>> {
    let mut out = Vec::new();
    for file in files {
        let (rows, _) = dataset::read_jsonl::<DevRow>(file, false)
            .with_context(|| format!("cannot read the dev set {}", file.display()))?;
        for mut row in rows {
            row.file = file.display().to_string();
            if row.label != "clear" && !UNCLEAR_LABELS.contains(&row.label.as_str()) {
                bail!(
                    "{}: row {} has label '{}'; use clear, ambiguous, incomplete or inconsistent",
                    file.display(),
                    row.id,
                    row.label
                );
            }
            let parsed = python::extract(&row.source);
            let Some(f) = parsed.functions.iter().find(|f| f.docstring.is_some()) else {
                bail!(
                    "{}: row {} has no documented function",
                    file.display(),
                    row.id
                );
            };
            let problem = f.problem();
            out.push((row, problem));
        }
    }
    Ok(out)
}

pub fn run(args: DevsetArgs) -> Result<()> {
    let rows = read(&args.data)?;
    if rows.is_empty() {
        bail!("the dev set is empty");
    }
    // Resolved as `check` resolves them (a known model gets its adapter unless `none`).
    let plan = Plan::new(
        settings::Settings {
            model: args.model.clone(),
            adapter: args.adapter.clone(),
            ..settings::Settings::default()
        },
        settings::Settings::default(),
    );
    let model = &plan.model;
    if !model.path.is_file() {
        bail!(
            "model not found at {}; {}",
            model.path.display(),
            plan.missing_model_hint()
        );
    }
    let adapter = plan.adapter.as_ref().map(|r| r.path.clone());
    if adapter.is_none() && args.adapter_scale != 1.0 {
        bail!("--adapter-scale needs an adapter; this model runs without one");
    }
    let threshold = args.threshold.unwrap_or(settings::DEFAULT_THRESHOLD);
    if let Some(w) = args.summary_weight.filter(|w| !(0.0..=1.0).contains(w)) {
        bail!("--summary-weight must be between 0 and 1, got {w}");
    }
    let mut config = LlamaConfig::new(&model.path);
    config.adapter = adapter.clone();
    config.adapter_scale = args.adapter_scale;
    config.threads = args.threads;
    let engine = LlamaEngine::load(config).context("cannot load the model")?;
    // The server's flow and options, with this run's threshold and question length.
    let analyzer = Analyzer::new(
        Arc::new(engine),
        Options {
            threshold,
            max_tokens: args.max_tokens,
            consistency: !args.model_only,
            summary_weight: args
                .summary_weight
                .unwrap_or(clarifycoder_core::analysis::SUMMARY_WEIGHT),
            ..Options::default()
        },
    );
    let cancel = CancelToken::new();

    let started = Instant::now();
    // Each function, and what its examples showed.
    let functions: Vec<python::Function> = rows
        .iter()
        .map(|(row, _)| {
            let parsed = python::extract(&row.source);
            // `read` made sure that there is one.
            parsed.functions.into_iter().find(|f| f.docstring.is_some())
        })
        .collect::<Option<_>>()
        .context("a dev-set row lost its documented function")?;
    let verdicts: Vec<Option<examples::Verdict>> = rows
        .iter()
        .zip(&functions)
        .map(|((row, _), f)| {
            if !args.run_examples {
                return None;
            }
            match examples::run(&args.python, &row.source, None, &[f]) {
                Ok(mut ran) => {
                    for why in &ran.stopped {
                        eprintln!("{}: examples stopped: {why}", row.id);
                    }
                    ran.verdicts.pop()?
                }
                Err(why) => {
                    eprintln!("{}: examples not run: {why}", row.id);
                    None
                }
            }
        })
        .collect();
    let problems: Vec<&str> = rows.iter().map(|(_, p)| p.as_str()).collect();
    let mut p_ask = Vec::with_capacity(problems.len());
    for chunk in problems.chunks(8) {
        p_ask.extend(analyzer.decide(chunk, &cancel)?);
        eprint!("\rdecided {}/{}", p_ask.len(), problems.len());
    }
    eprintln!();
    for (p, verdict) in p_ask.iter_mut().zip(&verdicts) {
        *p = analysis::with_examples(*p, verdict.as_ref());
    }
    let decide_ms = started.elapsed().as_secs_f64() * 1000.0 / rows.len() as f64;

    let started = Instant::now();
    let mut results = Vec::with_capacity(rows.len());
    let mut generated = 0usize;
    for ((((row, problem), &p), verdict), f) in
        rows.iter().zip(&p_ask).zip(&verdicts).zip(&functions)
    {
        let options = analyzer.options();
        let found = analysis::certain(
            f,
            verdict.as_ref(),
            options.consistency,
            options.max_questions,
        );
        let p_decided = p;
        let (p, flagged) = match &found {
            Some(o) => (o.p_ask.max(p), true),
            None => (p, p >= threshold),
        };
        let mut questions = Vec::new();
        if let Some(found) = found {
            questions = found.questions.unwrap_or_default();
        } else if flagged && !args.no_questions {
            questions = analyzer.questions(problem, &cancel)?;
            generated += 1;
            eprint!("\rquestions for {generated} flagged functions");
        }
        results.push(Scored {
            id: row.id.clone(),
            label: row.label.clone(),
            p_ask: p,
            p_decided,
            flagged,
            questions,
            examples: verdict.as_ref().map(|v| match v {
                examples::Verdict::Agree { .. } => "agree",
                examples::Verdict::Disagree(_) => "disagree",
            }),
        });
    }
    eprintln!();
    let questions_ms = if generated > 0 {
        started.elapsed().as_secs_f64() * 1000.0 / generated as f64
    } else {
        0.0
    };

    let mut report = summarize(
        &rows,
        results,
        threshold,
        model.path.display().to_string(),
        adapter.map(|a| a.display().to_string()),
        decide_ms,
        questions_ms,
    );
    report.adapter_scale = args.adapter_scale;
    print_report(&report);
    if let Some(path) = &args.json {
        clarifycoder_core::fsutil::write_atomic(
            path,
            serde_json::to_string_pretty(&report)?.as_bytes(),
        )
        .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

fn summarize(
    rows: &[(DevRow, String)],
    results: Vec<Scored>,
    threshold: f32,
    model: String,
    adapter: Option<String>,
    decide_ms: f64,
    questions_ms: f64,
) -> Report {
    let all: Vec<&Scored> = results.iter().collect();
    let mut files: Vec<&str> = Vec::new();
    for (row, _) in rows {
        if !files.contains(&row.file.as_str()) {
            files.push(&row.file);
        }
    }
    // A file of one class has no AUC or balanced accuracy of its own.
    let by_file = if files.len() > 1 {
        files
            .iter()
            .map(|file| FileQuality {
                file: file.to_string(),
                quality: Quality::of(
                    &rows
                        .iter()
                        .zip(&results)
                        .filter(|((row, _), _)| row.file == *file)
                        .map(|(_, r)| r)
                        .collect::<Vec<_>>(),
                ),
            })
            .filter(|f| f.quality.clear > 0 && f.quality.unclear > 0)
            .collect()
    } else {
        Vec::new()
    };
    let all_questions: Vec<String> = results
        .iter()
        .flat_map(|r| r.questions.iter().map(|q| q.trim().to_lowercase()))
        .collect();
    let distinct: HashSet<&String> = all_questions.iter().collect();
    Report {
        model,
        adapter,
        adapter_scale: 1.0,
        threshold,
        quality: Quality::of(&all),
        by_file,
        distinct_questions: if all_questions.is_empty() {
            0.0
        } else {
            distinct.len() as f64 / all_questions.len() as f64
        },
        questions: all_questions.len(),
        decide_ms,
        questions_ms,
        results,
    }
}

/// Area under the ROC curve: the share of (unclear, clear) pairs ordered correctly, ties half.
pub fn auc(scored: &[(f32, bool)]) -> f64 {
    let pos: Vec<f32> = scored.iter().filter(|s| s.1).map(|s| s.0).collect();
    let neg: Vec<f32> = scored.iter().filter(|s| !s.1).map(|s| s.0).collect();
    if pos.is_empty() || neg.is_empty() {
        return 0.0;
    }
    let mut wins = 0.0;
    for &p in &pos {
        for &n in &neg {
            wins += if p > n {
                1.0
            } else if p == n {
                0.5
            } else {
                0.0
            };
        }
    }
    wins / (pos.len() * neg.len()) as f64
}

fn print_report(report: &Report) {
    let r = &report.quality;
    println!(
        "dev set: {} functions ({} clear, {} unclear); model {}{}{}",
        r.functions,
        r.clear,
        r.unclear,
        report.model,
        report
            .adapter
            .as_ref()
            .map(|a| format!(" + {a}"))
            .unwrap_or_else(|| " (no adapter)".into()),
        match report.adapter_scale {
            1.0 => String::new(),
            scale => format!(" at LoRA scale {scale}"),
        }
    );
    println!("AUC of P(ask): {:.3}", r.auc);
    println!(
        "at threshold {:.2}: balanced accuracy {:.1}%, false alarms {:.1}%, recall {}",
        report.threshold,
        r.balanced_accuracy * 100.0,
        r.false_alarm_rate * 100.0,
        recall_line(&r.recall)
    );
    println!(
        "best threshold {:.3}: balanced accuracy {:.1}%",
        r.best_threshold,
        r.best_balanced_accuracy * 100.0
    );
    for f in &report.by_file {
        let q = &f.quality;
        println!(
            "  {} ({} functions): AUC {:.3}, balanced accuracy {:.1}% (best {:.1}% at {:.3}), false alarms {:.1}%, recall {}",
            f.file,
            q.functions,
            q.auc,
            q.balanced_accuracy * 100.0,
            q.best_balanced_accuracy * 100.0,
            q.best_threshold,
            q.false_alarm_rate * 100.0,
            recall_line(&q.recall)
        );
    }
    println!(
        "questions: {} from flagged functions, {:.1}% distinct",
        report.questions,
        report.distinct_questions * 100.0
    );
    println!(
        "time: {:.0} ms per function to decide, {:.0} ms per flagged function for questions",
        report.decide_ms, report.questions_ms
    );
}

fn recall_line(recall: &BTreeMap<String, f64>) -> String {
    recall
        .iter()
        .map(|(k, v)| format!("{k} {:.1}%", v * 100.0))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    #[test]
    fn auc_counts_ordered_pairs_and_ties() {
        assert_eq!(super::auc(&[(0.9, true), (0.1, false)]), 1.0);
        assert_eq!(super::auc(&[(0.1, true), (0.9, false)]), 0.0);
        assert_eq!(super::auc(&[(0.5, true), (0.5, false)]), 0.5);
        let s = [(0.8, true), (0.4, true), (0.6, false), (0.2, false)];
        assert_eq!(super::auc(&s), 0.75);
    }
}
