//! `humanevalcomm`: the benchmark's two-round protocol, per instance (problem × category).
//!
//! Round 1 asks with core's round-1 prompt. A response with a fenced code block is final; any
//! other response is questions: the judge rates them and answers them from the original problem,
//! and round 2 (the conversation, the answers and the request for code) gets the code. Then the
//! tests run in the sandbox. Results are appended to `instances.jsonl` one by one, so an
//! interrupted run resumes without redoing finished instances. `run.json` records the settings
//! that decide the results ([`CommRun::settings`] and this module's own), and a rerun with other
//! settings is refused rather than mixed with the stored instances ([`check_out_dir`]).

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use clarifycoder_core::dataset::Category;
use clarifycoder_core::engine::{Backend, CancelToken, GenerateRequest};
use clarifycoder_core::prompt::{self, Markup, Response, Texts};
use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};

use crate::data::{self, CommProblem};
use crate::harness::{CaseStatus, Harness};
use crate::judge::{Judge, Verdict};
use crate::report;

/// Few-shot examples for the training-free baselines (`--shots`): alternately an unclear problem
/// with its questions and a clear one with its code.
pub const SHOTS: [(&str, &str); 5] = [
    (
        "def filter_items(items, limit):\n    \"\"\"Return the items that are big enough.\"\"\"\n",
        "1. What does \"big enough\" mean: greater than `limit`, or greater than or equal to it?\n2. Should the order of the items be kept?",
    ),
    (
        "def add(a: int, b: int) -> int:\n    \"\"\"Return the sum of a and b.\"\"\"\n",
        "```python\ndef add(a: int, b: int) -> int:\n    return a + b\n```",
    ),
    (
        "def candidate(s):\n    \"\"\"Process the string.\n    >>> candidate('abc')\n    'cba'\n    \"\"\"\n",
        "What should the function do with the string? The example suggests reversing it; is that the whole task?",
    ),
    (
        "def is_even(n: int) -> bool:\n    \"\"\"Return True if n is even, else False.\n    >>> is_even(4)\n    True\n    \"\"\"\n",
        "```python\ndef is_even(n: int) -> bool:\n    return n % 2 == 0\n```",
    ),
    (
        "def average(xs):\n    \"\"\"Return the average of xs, which is never empty.\n    >>> average([1, 2])\n    2\n    \"\"\"\n",
        "The description says average, but the example gives 2 for [1, 2], where the mean is 1.5. Should I return the mean, or something else (such as the maximum)?",
    ),
];

/// The chain-of-thought baseline's addition to the round-1 message (`--cot`).
pub const COT_SUFFIX: &str =
    "\nBefore answering, think step by step about whether the problem is clear enough to implement. If it is, respond with code only; if not, ask your clarifying questions.";

/// One model exchange.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Exchange {
    /// The prompt text.
    pub prompt: String,
    /// What the model answered.
    pub response: String,
}

/// The record of one instance.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Instance {
    /// `name#category`.
    pub key: String,
    /// Problem name ("HumanEval/0").
    pub name: String,
    /// Category.
    pub category: Category,
    /// Round 1.
    pub round1: Exchange,
    /// Whether round 1 asked instead of coding.
    pub asked: bool,
    /// The questions, when it asked.
    pub questions: Vec<String>,
    /// The judge's verdict, when it asked.
    pub judge: Option<Verdict>,
    /// Round 2, when it asked.
    pub round2: Option<Exchange>,
    /// The code that was tested.
    pub code: String,
    /// Why the program could not run, if it could not.
    pub program_error: Option<String>,
    /// Per test case.
    pub cases: Vec<CaseStatus>,
    /// All cases passed.
    pub passed: bool,
    /// Fraction of cases passed.
    pub pass_fraction: f64,
}

/// What `humanevalcomm` needs.
pub struct CommRun {
    /// The benchmark file.
    pub data: PathBuf,
    /// Categories to run.
    pub variants: Vec<Category>,
    /// Most problems.
    pub limit: Option<usize>,
    /// Few-shot examples (0..=5).
    pub shots: usize,
    /// Chain-of-thought suffix.
    pub cot: bool,
    /// Prompt texts.
    pub texts: Texts,
    /// Output directory.
    pub out_dir: PathBuf,
    /// Tokens per model answer.
    pub max_tokens: usize,
    /// Instances in flight at once.
    pub parallel: usize,
    /// What else decides the results (the model and adapter, the judge, the sandbox), by the
    /// name of its flag without dashes; recorded in `run.json` with this module's own settings
    /// (see [`check_out_dir`]). Not how fast the run goes (threads; `--parallel` only where it
    /// changes the answers: the embedded engine without `--batch-invariant`).
    pub settings: BTreeMap<String, serde_json::Value>,
}

/// The settings recorded in `run.json`: the caller's [`CommRun::settings`] and what this module
/// reads (the benchmark file's content, shots, chain of thought, prompt texts, answer length).
fn run_settings(run: &CommRun) -> anyhow::Result<BTreeMap<String, serde_json::Value>> {
    use sha2::Digest;
    let data = std::fs::read(&run.data)
        .with_context(|| format!("cannot read '{}'", run.data.display()))?;
    let mut settings = run.settings.clone();
    settings.insert(
        "data".into(),
        format!("sha256:{:x}", sha2::Sha256::digest(&data)).into(),
    );
    settings.insert("shots".into(), run.shots.into());
    settings.insert("cot".into(), run.cot.into());
    settings.insert("prompts".into(), serde_json::to_value(&run.texts)?);
    settings.insert("max_tokens".into(), run.max_tokens.into());
    Ok(settings)
}

/// Where a run's settings are recorded.
pub const SETTINGS_FILE: &str = "run.json";

/// Refuses `run.out_dir` when it holds instances of a run with other settings (they would be
/// summarized under this run's label), naming each setting that differs. Reads only: call it
/// before loading a model; [`run`] checks again and records this run's settings.
pub fn check_out_dir(run: &CommRun) -> anyhow::Result<()> {
    check_settings(&run.out_dir, &run_settings(run)?)
}

fn check_settings(
    dir: &std::path::Path,
    settings: &BTreeMap<String, serde_json::Value>,
) -> anyhow::Result<()> {
    let settings_path = dir.join(SETTINGS_FILE);
    let has_instances = std::fs::metadata(dir.join("instances.jsonl")).is_ok_and(|m| m.len() > 0);
    if !has_instances {
        return Ok(());
    }
    let start_over = format!(
        "use another --out-dir, or delete '{}' to start over",
        dir.display()
    );
    let recorded: BTreeMap<String, serde_json::Value> =
        match std::fs::read_to_string(&settings_path) {
            Ok(text) => serde_json::from_str(&text).with_context(|| {
                format!(
                    "'{}' is not a run's settings; {start_over}",
                    settings_path.display()
                )
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => anyhow::bail!(
            "'{}' holds instances of a run that did not record its settings (no {SETTINGS_FILE}), \
                 so they cannot be resumed safely; {start_over}",
            dir.display()
        ),
            Err(e) => {
                return Err(e).with_context(|| format!("cannot read '{}'", settings_path.display()))
            }
        };
    let differences = differences(&recorded, settings);
    if !differences.is_empty() {
        anyhow::bail!(
            "'{}' holds the instances of a run with other settings: {}; {start_over}",
            dir.display(),
            differences.join("; ")
        );
    }
    Ok(())
}

/// [`check_out_dir`], then records this run's settings in `run.json`.
fn claim_out_dir(run: &CommRun) -> anyhow::Result<()> {
    let dir = &run.out_dir;
    let settings = run_settings(run)?;
    check_settings(dir, &settings)?;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create '{}'", dir.display()))?;
    let settings_path = dir.join(SETTINGS_FILE);
    let json = serde_json::to_string_pretty(&settings)? + "\n";
    clarifycoder_core::fsutil::write_atomic(&settings_path, json.as_bytes())
        .with_context(|| format!("cannot write '{}'", settings_path.display()))
}

/// Each setting that differs, as its flag with the recorded and the new value.
fn differences(
    recorded: &BTreeMap<String, serde_json::Value>,
    now: &BTreeMap<String, serde_json::Value>,
) -> Vec<String> {
    let null = serde_json::Value::Null;
    let keys: std::collections::BTreeSet<&String> = recorded.keys().chain(now.keys()).collect();
    keys.into_iter()
        .filter_map(|key| {
            let (was, is) = (
                recorded.get(key).unwrap_or(&null),
                now.get(key).unwrap_or(&null),
            );
            // Files of another kind of model (an endpoint's run has none): the model or
            // endpoint settings differ too and say so.
            let one_side = key == "model_files" && (was.is_null() || is.is_null());
            (was != is && !one_side).then(|| {
                let shown = |v: &serde_json::Value| match v {
                    serde_json::Value::Null => "not set".to_string(),
                    serde_json::Value::String(s) => format!("'{s}'"),
                    other => other.to_string(),
                };
                let flag = format!("--{}", key.replace('_', "-"));
                match key.as_str() {
                    "data" => "--data: the benchmark file's content differs".to_string(),
                    "prompts" => "--prompts: the prompt texts differ".to_string(),
                    "model_files" => format!(
                        "the model or adapter file was replaced or touched since these \
                         instances were made (same path, another size or modification time; if \
                         it is the same model, only copied back or touched, set \"model_files\" \
                         to {is} in {SETTINGS_FILE} to resume)"
                    ),
                    _ => format!("{flag} was {}, now {}", shown(was), shown(is)),
                }
            })
        })
        .collect()
}

fn generate(
    backend: &Arc<dyn Backend>,
    markup: Markup,
    prompt: prompt::Prompt,
    max_tokens: usize,
) -> anyhow::Result<String> {
    let request = GenerateRequest::greedy(prompt, markup, max_tokens);
    Ok(backend.generate(&request, &CancelToken::new())?.text)
}

/// The code of a response: its first fenced block, else the whole text.
fn code_of(response: &str) -> String {
    prompt::first_code_block(response).unwrap_or_else(|| response.trim().to_string() + "\n")
}

/// Runs the benchmark; returns the summary.
pub fn run(
    run: &CommRun,
    backend: Arc<dyn Backend>,
    judge: &Judge,
    harness: &Harness,
    model_label: &str,
) -> anyhow::Result<report::Summary> {
    let started = Instant::now();
    let mut problems = data::read_comm(&run.data)?;
    if let Some(l) = run.limit {
        problems.truncate(l);
    }
    claim_out_dir(run)?;
    let records_path = run.out_dir.join("instances.jsonl");
    let mut done: Vec<Instance> = if records_path.exists() {
        clarifycoder_core::dataset::read_jsonl::<Instance>(&records_path, true)?.0
    } else {
        Vec::new()
    };
    let done_keys: HashSet<String> = done.iter().map(|i| i.key.clone()).collect();
    let mut file = clarifycoder_core::dataset::open_jsonl_for_append(&records_path)?;
    let markup = backend.info().markup;
    let shots: Vec<(String, String)> = SHOTS
        .iter()
        .take(run.shots)
        .map(|(p, a)| (p.to_string(), a.to_string()))
        .collect();
    let mut texts = run.texts.clone();
    if run.cot {
        texts.round1_suffix.push_str(COT_SUFFIX);
    }

    let wanted: Vec<(&CommProblem, Category, &str)> = problems
        .iter()
        .flat_map(|p| {
            run.variants
                .iter()
                .filter_map(move |c| p.variant(*c).map(|text| (p, *c, text)))
        })
        .collect();
    let wanted_keys: HashSet<String> = wanted
        .iter()
        .map(|(p, c, _)| format!("{}#{}", p.name, c.code()))
        .collect();
    // Stored instances this run did not ask for (another --limit or --variants) stay stored but
    // are not summarized.
    done.retain(|i| wanted_keys.contains(&i.key));
    let work: Vec<(&CommProblem, Category, &str)> = wanted
        .into_iter()
        .filter(|(p, c, _)| !done_keys.contains(&format!("{}#{}", p.name, c.code())))
        .collect();
    let bar = ProgressBar::new(work.len() as u64);
    bar.set_style(
        ProgressStyle::with_template(
            "{bar:30} {pos}/{len} instances {per_sec} [{elapsed_precise} < {eta}] {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let instance = |&(problem, category, text): &(&CommProblem, Category, &str)| {
        let key = format!("{}#{}", problem.name, category.code());
        let p1 = prompt::conversation(markup, &texts, &shots, text, None);
        let r1 = generate(&backend, markup, p1.clone(), run.max_tokens)?;
        let round1 = Exchange {
            prompt: p1.text,
            response: r1.clone(),
        };
        let (asked, questions, verdict, round2, code) = match prompt::parse_response(&r1) {
            Response::Code { code } => (false, Vec::new(), None, None, code),
            Response::Questions { questions } => {
                let verdict =
                    judge.judge(&problem.prompt, text, &problem.entry_point, &questions)?;
                let p2 = prompt::conversation(
                    markup,
                    &texts,
                    &shots,
                    text,
                    Some((&r1, &verdict.answers)),
                );
                let r2 = generate(&backend, markup, p2.clone(), run.max_tokens)?;
                let code = code_of(&r2);
                (
                    true,
                    questions,
                    Some(verdict),
                    Some(Exchange {
                        prompt: p2.text,
                        response: r2,
                    }),
                    code,
                )
            }
        };
        let result = harness.run_cases(&code, &problem.entry_point, &problem.test_case);
        anyhow::Ok(Instance {
            key,
            name: problem.name.clone(),
            category,
            round1,
            asked,
            questions,
            judge: verdict,
            round2,
            passed: result.all_passed(),
            pass_fraction: result.pass_fraction(),
            code,
            program_error: result.program_error,
            cases: result.cases,
        })
    };
    // Instances run `parallel` at a time; each is written as soon as it is done, so a rerun
    // resumes after an interruption.
    clarifycoder_core::parallel::for_each_unordered(
        &work,
        run.parallel,
        instance,
        |_, instance| {
            clarifycoder_core::dataset::append_jsonl(&mut file, &instance)?;
            bar.set_message(instance.key.clone());
            done.push(instance);
            bar.inc(1);
            Ok(())
        },
    )?;
    bar.finish_and_clear();
    let summary = summarize(
        &done,
        model_label,
        started.elapsed().as_secs_f64(),
        crate::harness::network_note(),
    );
    report::write(&run.out_dir, &summary)?;
    Ok(summary)
}

/// Metrics over instance records.
pub fn summarize(
    instances: &[Instance],
    model: &str,
    seconds: f64,
    network: &str,
) -> report::Summary {
    let mut by: BTreeMap<Category, Vec<&Instance>> = BTreeMap::new();
    for i in instances {
        by.entry(i.category).or_default().push(i);
    }
    let metrics = |xs: &[&Instance]| {
        let n = xs.len().max(1) as f64;
        report::Metrics {
            instances: xs.len(),
            communication_rate: 100.0 * xs.iter().filter(|i| i.asked).count() as f64 / n,
            good_question_rate: 100.0
                * xs.iter()
                    .filter(|i| i.judge.as_ref().is_some_and(|j| j.quality == 3))
                    .count() as f64
                / n,
            pass_at_1: 100.0 * xs.iter().filter(|i| i.passed).count() as f64 / n,
            test_pass_rate: 100.0 * xs.iter().map(|i| i.pass_fraction).sum::<f64>() / n,
        }
    };
    let mut categories = Vec::new();
    for c in Category::ALL {
        if let Some(xs) = by.get(&c) {
            categories.push((c.code().to_string(), metrics(xs)));
        }
    }
    let modified: Vec<&Instance> = instances
        .iter()
        .filter(|i| i.category != Category::Original)
        .collect();
    let false_alarm_rate = by
        .get(&Category::Original)
        .map(|xs| metrics(xs).communication_rate);
    report::Summary {
        model: model.to_string(),
        categories,
        overall: metrics(&modified),
        false_alarm_rate,
        seconds,
        instances_per_minute: instances.len() as f64 / (seconds / 60.0).max(1e-9),
        network: network.to_string(),
    }
}
