//! `synthesize --method llm`: the paper's method. A teacher model rewrites a clear problem into a
//! given category, then writes the clarifying questions for the rewritten problem (shown the
//! clear one only so its questions target what changed, and told never to mention it).
//!
//! The output file is the checkpoint: rows are appended one write each, and every
//! finished (function, variant) key, kept or rejected, is appended to `<output>.progress`. A run
//! that was killed resumes from both without redoing or duplicating anything.
//!
//! A request the teacher refuses for its row's sake ([`refused_row`]: an HTTP 4xx such as a
//! prompt too long for its context, an answer that is not the API's) rejects that row, which is
//! recorded as finished once a later row's request goes through in the same run: refused rows
//! that no answer follows are left for the rerun (a teacher that refuses everything is no
//! verdict on the rows), and a run whose every row was refused fails. [`REFUSED_IN_A_ROW`]
//! refusals in a row, and every other failure, stop the run, and a rerun resumes.

use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use clarifycoder_core::dataset::{self, Category, Harvested, Kind, Mutation, Row};
use clarifycoder_core::engine::llama::{LlamaConfig, LlamaEngine};
use clarifycoder_core::engine::openai::{OpenAiConfig, OpenAiEngine};
use clarifycoder_core::engine::{Backend, CancelToken, EngineError, GenerateRequest};
use clarifycoder_core::parallel;
use clarifycoder_core::prompt::{self, Markup, Prompt, Turn};
use indicatif::{ProgressBar, ProgressStyle};

use crate::rules::{parse_weights, Rng, RulesArgs};

/// `synthesize --method llm`'s default output: not the rules method's, which rewrites its
/// output whole.
pub const DEFAULT_OUTPUT: &str = "data/clarify-llm.jsonl";

/// Without `--output`, an LLM synthesis interrupted while the default output was the rules
/// method's ([`crate::rules::DEFAULT_OUTPUT`]) is not started over in [`DEFAULT_OUTPUT`] (the
/// teacher paid again, two partial files): its checkpoint stops the run with how to resume it.
fn check_no_older_default_run(output: Option<&Path>) -> anyhow::Result<()> {
    if output.is_some() {
        return Ok(());
    }
    let older = Path::new(crate::rules::DEFAULT_OUTPUT);
    let checkpoint = crate::rules::progress_path(older);
    if checkpoint.exists() {
        anyhow::bail!(
            "'{}' is the checkpoint of an LLM synthesis into '{}', this method's default output \
             before it became '{DEFAULT_OUTPUT}': pass --output {} to resume it, or delete '{}' \
             to start over in '{DEFAULT_OUTPUT}'",
            checkpoint.display(),
            older.display(),
            older.display(),
            checkpoint.display()
        );
    }
    Ok(())
}

/// Teacher settings of `synthesize --method llm`.
#[derive(clap::Args)]
pub struct LlmArgs {
    /// OpenAI-compatible endpoint of the teacher (`/v1/completions`: vLLM, llama-server).
    #[arg(long)]
    teacher_endpoint: Option<String>,
    /// Model name to request from the endpoint.
    #[arg(long, default_value = "teacher")]
    teacher_api_model: String,
    /// Environment variable holding the endpoint's API key.
    #[arg(long)]
    teacher_api_key_env: Option<String>,
    /// A local GGUF teacher instead of an endpoint.
    #[arg(long)]
    teacher_model: Option<PathBuf>,
    /// Turn markup of the teacher [default: detected from a GGUF; ChatML for endpoints].
    #[arg(long)]
    teacher_markup: Option<Markup>,
    /// Sampling temperature (low: faithful rewrites).
    #[arg(long, default_value_t = 0.2)]
    temperature: f32,
    /// Most tokens per teacher answer.
    #[arg(long, default_value_t = 512)]
    max_tokens: usize,
    /// Rewrites in flight at once: a local teacher decodes them as one batch, an endpoint
    /// serves them concurrently.
    #[arg(long, default_value_t = 4)]
    parallel: usize,
}

fn definition(kind: Kind) -> &'static str {
    match kind {
        Kind::Ambiguous => "ambiguous: some statement can reasonably be read in more than one way",
        Kind::Incomplete => "incomplete: some information needed to write a correct solution is missing",
        Kind::Inconsistent => "inconsistent: some parts contradict each other (for example the description and an example disagree)",
        Kind::Original => "clear",
    }
}

fn category_text(category: Category) -> String {
    category
        .kinds()
        .into_iter()
        .map(definition)
        .collect::<Vec<_>>()
        .join("; and ")
}

/// The rewrite request.
pub fn rewrite_message(category: Category, problem: &str) -> String {
    format!(
        "Modify the coding problem below so that it becomes {}. Keep the function signature. \
Answer with the modified problem only (signature and docstring) in a ```python block: no explanation, \
and do not say or hint that anything was changed.\n\nProblem:\n```python\n{}```",
        category_text(category),
        problem
    )
}

/// The questions request.
pub fn questions_message(category: Category, modified: &str, original: &str) -> String {
    format!(
        "This coding problem is {}:\n```python\n{}```\nFor your reference only, a clear version of it is:\n```python\n{}```\n\
Write the clarifying questions a careful engineer would ask before solving the first problem, so that it can be \
solved correctly. Ask only about what is unclear in it. Never mention or hint that another version exists. \
Answer with the questions only, one per line.",
        category_text(category),
        modified.trim_end(),
        original.trim_end()
    )
}

/// Words that give away the construction (a leak) in a rewritten problem or in questions.
const PROBLEM_LEAKS: &[&str] = &[
    "ambiguous",
    "ambiguity",
    "inconsistent",
    "inconsistency",
    "incomplete",
    "clarif",
    "modified",
    "note:",
];
const QUESTION_LEAKS: &[&str] = &[
    "original",
    "modified",
    "rewritten",
    "clear version",
    "other version",
    "the change",
];

/// Why a teacher output is rejected, if it is.
pub fn rejection(original: &str, modified: &str, questions: &[String]) -> Option<&'static str> {
    if modified.trim().is_empty() {
        return Some("empty_problem");
    }
    if questions.is_empty() {
        return Some("no_questions");
    }
    if modified.trim() == original.trim() {
        return Some("unchanged");
    }
    let lower = modified.to_lowercase();
    let original_lower = original.to_lowercase();
    if PROBLEM_LEAKS
        .iter()
        .any(|w| lower.contains(w) && !original_lower.contains(w))
    {
        return Some("problem_names_the_change");
    }
    if questions.iter().any(|q| {
        let q = q.to_lowercase();
        QUESTION_LEAKS.iter().any(|w| q.contains(w))
    }) {
        return Some("questions_leak");
    }
    None
}

fn open_teacher(args: &LlmArgs) -> anyhow::Result<(Arc<dyn Backend>, Markup)> {
    let forced = args.teacher_markup;
    match (&args.teacher_endpoint, &args.teacher_model) {
        (Some(url), None) => {
            let mut c = OpenAiConfig::new(url.clone(), args.teacher_api_model.clone());
            c.api_key_env = args.teacher_api_key_env.clone();
            c.markup = forced.unwrap_or(Markup::ChatMl);
            c.concurrency = args.parallel.max(1);
            let markup = c.markup;
            Ok((Arc::new(OpenAiEngine::new(c)?), markup))
        }
        (None, Some(path)) => {
            let mut config = LlamaConfig::new(path);
            config.batch_prompts = args.parallel.max(1);
            let engine = LlamaEngine::load(config).with_context(|| {
                format!("cannot load the teacher model '{}'", path.display())
            })?;
            let markup = forced.unwrap_or(engine.info().markup);
            Ok((Arc::new(engine), markup))
        }
        _ => anyhow::bail!("give the teacher with exactly one of --teacher-endpoint URL or --teacher-model FILE.gguf"),
    }
}

struct Teacher {
    backend: Arc<dyn Backend>,
    markup: Markup,
    temperature: f32,
    max_tokens: usize,
}

impl Teacher {
    fn ask(&self, message: &str, seed: u64) -> Result<String, EngineError> {
        let text = self.markup.render(&[Turn::user(message)]);
        let mut request = GenerateRequest::greedy(
            Prompt {
                text,
                prefix_len: 0,
            },
            self.markup,
            self.max_tokens,
        );
        request.temperature = self.temperature;
        request.seed = seed;
        let g = self.backend.generate(&request, &CancelToken::new())?;
        Ok(g.text)
    }

    /// Asks, and once more with a nudge if the answer is empty (the repair pass).
    fn ask_with_repair(&self, message: &str, seed: u64) -> Result<String, EngineError> {
        let first = self.ask(message, seed)?;
        if !first.trim().is_empty() {
            return Ok(first);
        }
        self.ask(&format!("{message}\n\nYour previous answer was empty. Answer now, following the instructions exactly."), seed ^ 1)
    }
}

/// HTTP 4xx statuses that are not about the request's content: authentication (401, 403), a
/// wrong address or model name (404), a timeout (408), a conflict (409), too early (425) and
/// rate limits (429). They stop the run; a later rerun may well get an answer.
pub const NOT_THE_ROWS_FAULT: [u16; 7] = [401, 403, 404, 408, 409, 425, 429];

/// Whether a teacher error concerns its row alone, so that the row is rejected and the run
/// goes on: the endpoint refused this request (an HTTP 4xx other than those of
/// [`NOT_THE_ROWS_FAULT`], such as a prompt too long for its context) or gave an answer that
/// is not the API's, or the prompt does not fit a local teacher's context. Anything else stops
/// the run: no connection, the statuses of [`NOT_THE_ROWS_FAULT`] and server errors (5xx)
/// after the client's retries, a failing engine.
pub fn refused_row(e: &EngineError) -> bool {
    match e {
        EngineError::Http {
            status: Some(status),
            ..
        } => {
            *status == 200 || ((400..500).contains(status) && !NOT_THE_ROWS_FAULT.contains(status))
        }
        EngineError::PromptTooLong { .. } => true,
        _ => false,
    }
}

/// Teacher requests refused in a row (see [`refused_row`]) that stop the run: then the teacher's
/// settings rather than the rows are at fault (a context too small for `--max-tokens`, say), and
/// these rows are not recorded as done, so a rerun asks for them again.
pub const REFUSED_IN_A_ROW: usize = 5;

/// What became of one (function, variant).
enum Outcome {
    Kept(Box<Row>),
    Rejected(&'static str),
    /// The teacher refused a request of this row: the error.
    Refused(String),
}

fn read_keys(path: &Path) -> HashSet<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

/// Runs `synthesize --method llm`.
pub fn run(common: RulesArgs, args: LlmArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    check_no_older_default_run(common.output.as_deref())?;
    let weights = parse_weights(&common.weights)?;
    let mut functions = crate::rules::read_functions(&common)?;
    if let Some(limit) = common.limit {
        functions.truncate(limit);
    }
    let (backend, markup) = open_teacher(&args)?;
    let teacher = Teacher {
        backend,
        markup,
        temperature: args.temperature,
        max_tokens: args.max_tokens,
    };

    // Resume: rows already in the output and keys already finished.
    let output_path = common
        .output
        .clone()
        .unwrap_or_else(|| PathBuf::from(DEFAULT_OUTPUT));
    if let Some(dir) = output_path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let progress_path = crate::rules::progress_path(&output_path);
    let mut done = read_keys(&progress_path);
    let existing: HashSet<String> = if output_path.exists() {
        // A kill can leave a half-written last line: keep the good rows.
        dataset::read_jsonl::<Row>(&output_path, true)?
            .0
            .into_iter()
            .map(|r| r.id)
            .collect()
    } else {
        HashSet::new()
    };
    done.extend(existing.iter().cloned());
    let mut output = dataset::open_jsonl_for_append(&output_path)
        .with_context(|| format!("cannot open '{}'", output_path.display()))?;
    let mut progress = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&progress_path)?;

    let work: Vec<(&Harvested, usize, Category, String)> = functions
        .iter()
        .flat_map(|h| {
            let mut rng = Rng::for_key(common.seed, &format!("llm:{}", h.id));
            (0..common.per_function)
                .map(|v| {
                    let c = crate::rules::draw_category(&weights, &mut rng);
                    (h, v, c, format!("{}-llm-{}-{v}", h.id, c.code()))
                })
                .collect::<Vec<_>>()
        })
        .filter(|(_, _, _, key)| !done.contains(key))
        .collect();
    let bar = ProgressBar::new(work.len() as u64);
    bar.set_style(
        ProgressStyle::with_template(
            "{bar:30} {pos}/{len} rewrites {per_sec} [{elapsed_precise} < {eta}] {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let rewrite = |(h, variant, category, key): &(&Harvested, usize, Category, String)| {
        let (variant, category) = (*variant, *category);
        let seed = common.seed ^ (variant as u64) << 32;
        let original = h.problem();
        // A request this row's content made the teacher refuse rejects the row; any other
        // failure stops the run.
        let ask = |message: &str, seed| match teacher.ask_with_repair(message, seed) {
            Ok(text) => Ok(Ok(text)),
            Err(e) if refused_row(&e) => Ok(Err(Outcome::Refused(e.to_string()))),
            Err(e) => Err(anyhow::Error::from(e)),
        };
        let rewritten = match ask(&rewrite_message(category, &original), seed)? {
            Ok(text) => text,
            Err(refused) => return Ok(refused),
        };
        let modified = prompt::first_code_block(&rewritten)
            .unwrap_or_else(|| rewritten.trim().to_string() + "\n");
        let answer = match ask(&questions_message(category, &modified, &original), seed ^ 2)? {
            Ok(text) => text,
            Err(refused) => return Ok(refused),
        };
        let questions = prompt::split_questions(&answer);
        if let Some(why) = rejection(&original, &modified, &questions) {
            bar.set_message(format!("rejected: {why}"));
            return Ok(Outcome::Rejected(why));
        }
        anyhow::Ok(Outcome::Kept(Box::new(Row {
            id: key.clone(),
            problem: modified,
            answer: crate::rules::render_questions(&questions, &mut Rng::for_key(seed, key)),
            kind: category.kind(),
            category,
            source: h.source.clone(),
            source_id: h.id.clone(),
            method: "llm".into(),
            mutations: vec![Mutation {
                name: "llm_rewrite".into(),
                detail: category_text(category),
            }],
            original_problem: original.clone(),
        })))
    };
    // `--parallel` rewrites in flight; each is saved as it finishes, so a rerun resumes.
    let (mut kept, mut rejected) = (0usize, 0usize);
    let mut reasons: std::collections::BTreeMap<&str, usize> = Default::default();
    // Rows whose request was refused since the last row whose requests went through: recorded
    // as rejected once a later one goes through, never when the refusals stop the run or end
    // it (then the teacher, not the rows, may be at fault, and a rerun asks for them again).
    let mut refused: Vec<usize> = Vec::new();
    let mut last_refusal = String::new();
    // Whether any row's requests went through in this run.
    let mut answered = false;
    let mut stopped = false;
    let record = |progress: &mut std::fs::File, i: usize| -> std::io::Result<()> {
        // One write: a kill leaves a whole key or none.
        progress.write_all(format!("{}\n", work[i].3).as_bytes())?;
        progress.flush()
    };
    let finished = parallel::for_each_unordered(&work, args.parallel, rewrite, |i, outcome| {
        bar.inc(1);
        match outcome {
            Outcome::Refused(error) => {
                bar.suspend(|| {
                    eprintln!(
                        "warning: the teacher refused a request for {}: {error}",
                        work[i].3
                    )
                });
                refused.push(i);
                last_refusal = error.clone();
                if refused.len() >= REFUSED_IN_A_ROW && !stopped {
                    stopped = true;
                    anyhow::bail!(
                        "the teacher refused {REFUSED_IN_A_ROW} requests in a row (the last: \
                         {error}), so its settings rather than these rows look wrong (a context \
                         too small for --max-tokens, the model name); they are not recorded as \
                         done"
                    );
                }
                return Ok(());
            }
            Outcome::Kept(row) => {
                dataset::append_jsonl(&mut output, &row)?;
                kept += 1;
                answered = true;
            }
            Outcome::Rejected(why) => {
                rejected += 1;
                *reasons.entry(why).or_default() += 1;
                answered = true;
            }
        }
        if !stopped {
            for j in refused.drain(..) {
                record(&mut progress, j)?;
                rejected += 1;
                *reasons.entry("teacher_refused_the_request").or_default() += 1;
            }
        }
        record(&mut progress, i)?;
        Ok(())
    });
    if let Err(e) = finished {
        bar.abandon();
        return Err(e.context(format!(
            "the teacher failed; {kept} new rows are saved in '{}' and a rerun resumes from there",
            output_path.display()
        )));
    }
    // Refusals that no answer followed are not recorded: a rerun asks for these rows again.
    let unrecorded = refused.len();
    if unrecorded > 0 && !answered {
        bar.abandon();
        anyhow::bail!(
            "the teacher refused every request of this run ({unrecorded} rows; the last: \
             {last_refusal}), so its settings rather than these rows look wrong (a context too \
             small for --max-tokens, the model name); they are not recorded as done, and a rerun \
             asks for them again"
        );
    }
    bar.finish_and_clear();
    if unrecorded > 0 {
        eprintln!(
            "warning: the teacher refused the requests of the last {unrecorded} rows (the last: \
             {last_refusal}) and no request went through after them, so they are not recorded \
             as done: a rerun asks for them again"
        );
    }
    let summary = serde_json::json!({
        "kept": kept,
        "rejected": rejected,
        "rejected_by_reason": reasons,
        "refused_not_recorded": unrecorded,
        "resumed_from": existing.len(),
        "seconds": started.elapsed().as_secs_f64(),
    });
    println!("{}", serde_json::to_string_pretty(&summary)?);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leaks_and_empty_outputs_are_rejected() {
        let q = |s: &str| vec![s.to_string()];
        assert_eq!(
            rejection("def f(): 'a'", "", &q("Why?")),
            Some("empty_problem")
        );
        assert_eq!(
            rejection("def f(): 'a'", "def f(): 'b'", &[]),
            Some("no_questions")
        );
        assert_eq!(
            rejection("def f(): 'a'", "def f(): 'a'", &q("Why?")),
            Some("unchanged")
        );
        assert_eq!(
            rejection(
                "def f(): 'a'",
                "def f(): 'b' # Note: this is ambiguous",
                &q("Why?")
            ),
            Some("problem_names_the_change")
        );
        assert_eq!(
            rejection(
                "def f(): 'a'",
                "def f(): 'b'",
                &q("What did the original say?")
            ),
            Some("questions_leak")
        );
        assert_eq!(
            rejection("def f(): 'a'", "def f(): 'b'", &q("Which order?")),
            None
        );
    }

    #[test]
    fn only_errors_of_the_request_itself_reject_its_row() {
        let http = |status| EngineError::Http {
            url: "http://teacher".into(),
            reason: "refused".into(),
            status,
        };
        for status in [200, 400, 413, 422] {
            assert!(refused_row(&http(Some(status))), "{status}");
        }
        for status in [401, 403, 404, 408, 409, 425, 429, 500, 503] {
            assert!(!refused_row(&http(Some(status))), "{status}");
        }
        assert!(!refused_row(&http(None)));
    }

    #[test]
    fn prompts_name_the_category() {
        let m = rewrite_message(Category::AP, "def f():\n    '''Sort.'''\n");
        assert!(
            m.contains("ambiguous")
                && m.contains("incomplete")
                && m.contains("```python\ndef f():")
        );
        let q = questions_message(Category::C, "M\n", "O\n");
        assert!(
            q.contains("contradict")
                && q.contains("```python\nM```")
                && q.contains("Never mention")
        );
    }
}
