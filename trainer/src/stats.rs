//! `stats`: what a data set holds, and (with a model) how surprising its problems and answers are.
//!
//! - Counts per category, per seed-schema `type` and per `method`.
//! - Lengths of problems and answers per category, in characters (Unicode scalar values) and in
//!   whitespace-separated words: min, mean, median (the mean of the two middle values for an even
//!   count), p90 (nearest rank: the smallest value with at least 90% of values at or below it) and
//!   max.
//! - With `--model`, the paper's Table 6: the average perplexity and mean token entropy of the
//!   problems and of the answers, per category and overall. A problem is scored after the fixed
//!   round-1 prefix (markup and instruction), an answer after the whole round-1 prompt, so each
//!   is measured where the model meets it in training and in use.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{bail, Context};
use clarifycoder_core::dataset::{Category, Kind, Row};
use clarifycoder_core::engine::llama::{LlamaConfig, LlamaEngine};
use clarifycoder_core::engine::{Backend, CancelToken, EngineError};
use clarifycoder_core::prompt;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

/// Arguments of `stats`.
#[derive(clap::Args)]
pub struct StatsArgs {
    /// JSONL files of rows (harvest's original.jsonl, or from `synthesize`, `specs` or `mix`).
    #[arg(required = true, value_name = "FILES")]
    pub files: Vec<PathBuf>,
    /// Skip malformed JSONL lines (and report how many) instead of stopping at the first.
    #[arg(long)]
    pub skip_bad: bool,
    /// `text` (aligned tables) or `json` (one document with every number).
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
    /// A GGUF model or a known model's name (`clarifycoder model list`): also compute perplexity
    /// and entropy of problems and answers (Table 6).
    #[arg(long, value_name = "MODEL")]
    pub model: Option<PathBuf>,
    /// A GGUF LoRA adapter applied to --model.
    #[arg(long, value_name = "FILE", requires = "model")]
    pub adapter: Option<PathBuf>,
    /// Rows scored per category with --model (evenly spaced through the category's rows);
    /// scoring is slow on a CPU.
    #[arg(long, default_value_t = 200, value_name = "N")]
    pub limit: usize,
}

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Aligned tables.
    Text,
    /// One JSON document.
    Json,
}

/// Distribution of a length.
#[derive(Debug, Clone, PartialEq, Serialize)]
struct Dist {
    min: usize,
    mean: f64,
    median: f64,
    p90: usize,
    max: usize,
}

impl Dist {
    fn of(mut values: Vec<usize>) -> Option<Dist> {
        if values.is_empty() {
            return None;
        }
        values.sort_unstable();
        let n = values.len();
        let median = if n % 2 == 1 {
            values[n / 2] as f64
        } else {
            (values[n / 2 - 1] + values[n / 2]) as f64 / 2.0
        };
        let rank = (n * 9).div_ceil(10).max(1);
        Some(Dist {
            min: values[0],
            mean: values.iter().sum::<usize>() as f64 / n as f64,
            median,
            p90: values[rank - 1],
            max: values[n - 1],
        })
    }
}

/// Length distributions of one group of rows.
#[derive(Debug, Serialize)]
struct Lengths {
    rows: usize,
    problem_chars: Dist,
    problem_words: Dist,
    answer_chars: Dist,
    answer_words: Dist,
}

impl Lengths {
    fn of(rows: &[&Row]) -> Option<Lengths> {
        let chars = |f: fn(&Row) -> &str| rows.iter().map(|r| f(r).chars().count()).collect();
        let words = |f: fn(&Row) -> &str| {
            rows.iter()
                .map(|r| f(r).split_whitespace().count())
                .collect()
        };
        Some(Lengths {
            rows: rows.len(),
            problem_chars: Dist::of(chars(problem_of))?,
            problem_words: Dist::of(words(problem_of))?,
            answer_chars: Dist::of(chars(answer_of))?,
            answer_words: Dist::of(words(answer_of))?,
        })
    }
}

fn problem_of(row: &Row) -> &str {
    &row.problem
}

fn answer_of(row: &Row) -> &str {
    &row.answer
}

/// Averages of one group of scored rows. A metric is `None` when no row had a finite value
/// for it (an empty text has no tokens to score).
#[derive(Debug, Serialize)]
struct Scores {
    /// Rows scored.
    scored: usize,
    /// Rows left out because prompt and text do not fit into the model's context.
    too_long: usize,
    problem_perplexity: Option<f64>,
    problem_entropy: Option<f64>,
    answer_perplexity: Option<f64>,
    answer_entropy: Option<f64>,
}

/// Sums for the averages.
#[derive(Debug, Default, Clone)]
struct Acc {
    scored: usize,
    too_long: usize,
    sums: [(f64, usize); 4],
}

impl Acc {
    fn add(&mut self, values: [f64; 4]) {
        self.scored += 1;
        for (sum, v) in self.sums.iter_mut().zip(values) {
            if v.is_finite() {
                sum.0 += v;
                sum.1 += 1;
            }
        }
    }

    fn merge(&mut self, other: &Acc) {
        self.scored += other.scored;
        self.too_long += other.too_long;
        for (a, b) in self.sums.iter_mut().zip(other.sums) {
            a.0 += b.0;
            a.1 += b.1;
        }
    }

    fn finish(&self) -> Scores {
        let avg = |(sum, n): (f64, usize)| (n > 0).then(|| sum / n as f64);
        Scores {
            scored: self.scored,
            too_long: self.too_long,
            problem_perplexity: avg(self.sums[0]),
            problem_entropy: avg(self.sums[1]),
            answer_perplexity: avg(self.sums[2]),
            answer_entropy: avg(self.sums[3]),
        }
    }
}

/// Table 6.
#[derive(Debug, Serialize)]
struct Table6 {
    model: String,
    adapter: Option<String>,
    limit: usize,
    by_category: BTreeMap<Category, Scores>,
    all: Scores,
}

/// Everything `stats` reports.
#[derive(Debug, Serialize)]
struct Report {
    files: Vec<String>,
    rows: usize,
    skipped_lines: usize,
    by_category: BTreeMap<Category, usize>,
    by_type: BTreeMap<String, usize>,
    by_method: BTreeMap<String, usize>,
    /// Per category code, and `all`.
    #[serde(serialize_with = "ordered_map")]
    lengths: Vec<(String, Lengths)>,
    table6: Option<Table6>,
}

/// Runs `stats`.
pub fn run(args: StatsArgs) -> anyhow::Result<()> {
    let mut rows: Vec<Row> = Vec::new();
    let mut skipped = 0;
    for path in &args.files {
        if !path.is_file() {
            bail!("{} does not exist; check the path", path.display());
        }
        let (read, n) = crate::input::read::<Row>(path, crate::input::ROWS, args.skip_bad)?;
        rows.extend(read);
        skipped += n;
    }
    if skipped > 0 {
        eprintln!("stats: skipped {skipped} malformed line(s)");
    }

    let mut groups: BTreeMap<Category, Vec<&Row>> = BTreeMap::new();
    let mut by_type = BTreeMap::new();
    let mut by_method = BTreeMap::new();
    for r in &rows {
        groups.entry(r.category).or_default().push(r);
        *by_type.entry(kind_name(r.kind)).or_default() += 1;
        *by_method.entry(r.method.clone()).or_default() += 1;
    }
    let by_category = groups.iter().map(|(c, v)| (*c, v.len())).collect();
    let mut lengths: Vec<(String, Lengths)> = groups
        .iter()
        .filter_map(|(c, v)| Some((c.code().to_string(), Lengths::of(v)?)))
        .collect();
    let all: Vec<&Row> = rows.iter().collect();
    if let Some(l) = Lengths::of(&all) {
        lengths.push(("all".into(), l));
    }

    let table6 = match &args.model {
        Some(model) => {
            let model = clarifycoder_core::settings::resolve_model(Some(model), None).path;
            Some(score(&args, &model, &groups)?)
        }
        None => None,
    };

    let report = Report {
        files: args.files.iter().map(|p| p.display().to_string()).collect(),
        rows: rows.len(),
        skipped_lines: skipped,
        by_category,
        by_type,
        by_method,
        lengths,
        table6,
    };
    match args.format {
        Format::Json => {
            let text =
                serde_json::to_string_pretty(&report).context("cannot serialize the statistics")?;
            println!("{text}");
        }
        Format::Text => print!("{}", text_report(&report)),
    }
    Ok(())
}

/// The seed schema's name of a type (`Original`, `Ambiguous`, ...).
fn kind_name(kind: Kind) -> String {
    match serde_json::to_value(kind) {
        Ok(serde_json::Value::String(s)) => s,
        _ => format!("{kind:?}"),
    }
}

/// Up to `limit` rows spread evenly through `rows` (all of them when there are fewer).
fn spread<'a>(rows: &[&'a Row], limit: usize) -> Vec<&'a Row> {
    if rows.len() <= limit {
        return rows.to_vec();
    }
    (0..limit).map(|i| rows[i * rows.len() / limit]).collect()
}

fn score(
    args: &StatsArgs,
    model: &std::path::Path,
    groups: &BTreeMap<Category, Vec<&Row>>,
) -> anyhow::Result<Table6> {
    let mut config = LlamaConfig::new(model);
    config.adapter = args.adapter.clone();
    eprintln!("stats: loading {}", model.display());
    let engine = LlamaEngine::load(config).with_context(|| {
        format!(
            "cannot load model {}; check that it is a GGUF model (and --adapter a LoRA for it)",
            model.display()
        )
    })?;
    let markup = engine.info().markup;
    let prefix = prompt::round1(markup, "").prefix().to_string();
    let cancel = CancelToken::new();

    let chosen: Vec<(Category, Vec<&Row>)> = groups
        .iter()
        .map(|(c, v)| (*c, spread(v, args.limit)))
        .collect();
    let total: usize = chosen.iter().map(|(_, v)| v.len()).sum();
    let bar = ProgressBar::new(total as u64);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} {pos}/{len} rows scored [{elapsed_precise} < {eta}] {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );

    let mut by_category = BTreeMap::new();
    let mut all = Acc::default();
    for (category, rows) in chosen {
        bar.set_message(category.code());
        let mut acc = Acc::default();
        for row in rows {
            let problem = engine.score(&prefix, &row.problem, &cancel);
            let answer = problem.and_then(|p| {
                let full = prompt::round1(markup, &row.problem).text;
                engine.score(&full, &row.answer, &cancel).map(|a| (p, a))
            });
            match answer {
                Ok((p, a)) => acc.add([
                    p.perplexity(),
                    p.mean_entropy(),
                    a.perplexity(),
                    a.mean_entropy(),
                ]),
                Err(EngineError::PromptTooLong { .. }) => acc.too_long += 1,
                Err(e) => {
                    bar.abandon();
                    return Err(e).with_context(|| {
                        format!("scoring row {} with {} failed", row.id, model.display())
                    });
                }
            }
            bar.inc(1);
        }
        all.merge(&acc);
        by_category.insert(category, acc.finish());
    }
    bar.finish_and_clear();
    if all.too_long > 0 {
        eprintln!(
            "stats: {} row(s) did not fit into the model's context and were not scored",
            all.too_long
        );
    }
    Ok(Table6 {
        model: model.display().to_string(),
        adapter: args.adapter.as_ref().map(|p| p.display().to_string()),
        limit: args.limit,
        by_category,
        all: all.finish(),
    })
}

/// `lengths` as a JSON object, keys in table order.
fn ordered_map<S: serde::Serializer>(
    entries: &[(String, Lengths)],
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.collect_map(entries.iter().map(|(k, v)| (k, v)))
}

/// Aligned columns: the first left-aligned, the rest right-aligned, two spaces apart.
fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut out = String::new();
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            if i == 0 {
                out.push_str(&format!("{cell:<w$}"));
            } else {
                out.push_str(&format!("  {cell:>w$}"));
            }
        }
        out.trim_end().to_string() + "\n"
    };
    let mut out = line(header.to_vec());
    for row in rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

fn fmt_opt(v: Option<f64>) -> String {
    v.map_or_else(|| "-".into(), |v| format!("{v:.3}"))
}

fn text_report(report: &Report) -> String {
    let mut out = format!(
        "{} rows from {} file(s){}\n\n",
        report.rows,
        report.files.len(),
        if report.skipped_lines > 0 {
            format!(", {} malformed line(s) skipped", report.skipped_lines)
        } else {
            String::new()
        }
    );
    let counts = |title: &str, map: Vec<(String, usize)>| {
        let rows: Vec<Vec<String>> = map
            .into_iter()
            .map(|(k, n)| vec![k, n.to_string()])
            .collect();
        table(&[title, "rows"], &rows)
    };
    out += &counts(
        "category",
        report
            .by_category
            .iter()
            .map(|(k, n)| (k.code().to_string(), *n))
            .collect(),
    );
    out += "\n";
    out += &counts(
        "type",
        report
            .by_type
            .iter()
            .map(|(k, n)| (k.clone(), *n))
            .collect(),
    );
    out += "\n";
    out += &counts(
        "method",
        report
            .by_method
            .iter()
            .map(|(k, n)| (k.clone(), *n))
            .collect(),
    );

    for (title, pick) in [
        (
            "problem chars",
            (|l: &Lengths| &l.problem_chars) as fn(&Lengths) -> &Dist,
        ),
        ("problem words", |l| &l.problem_words),
        ("answer chars", |l| &l.answer_chars),
        ("answer words", |l| &l.answer_words),
    ] {
        let rows: Vec<Vec<String>> = report
            .lengths
            .iter()
            .map(|(k, l)| {
                let d = pick(l);
                vec![
                    k.clone(),
                    l.rows.to_string(),
                    d.min.to_string(),
                    format!("{:.1}", d.mean),
                    format!("{:.1}", d.median),
                    d.p90.to_string(),
                    d.max.to_string(),
                ]
            })
            .collect();
        out += "\n";
        out += &table(
            &[title, "rows", "min", "mean", "median", "p90", "max"],
            &rows,
        );
    }

    if let Some(t) = &report.table6 {
        out += &format!(
            "\nperplexity and entropy (nats), {}{}, up to {} rows per category\n",
            t.model,
            t.adapter
                .as_ref()
                .map(|a| format!(" + {a}"))
                .unwrap_or_default(),
            t.limit
        );
        let row = |name: &str, s: &Scores| {
            vec![
                name.to_string(),
                s.scored.to_string(),
                fmt_opt(s.problem_perplexity),
                fmt_opt(s.problem_entropy),
                fmt_opt(s.answer_perplexity),
                fmt_opt(s.answer_entropy),
            ]
        };
        let mut rows: Vec<Vec<String>> = t
            .by_category
            .iter()
            .map(|(k, s)| row(k.code(), s))
            .collect();
        rows.push(row("all", &t.all));
        out += &table(
            &[
                "category",
                "scored",
                "problem ppl",
                "problem entropy",
                "answer ppl",
                "answer entropy",
            ],
            &rows,
        );
    }
    out
}
