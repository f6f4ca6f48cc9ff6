//! The analysis worker: one thread that owns the backend and runs every model call, fed by a
//! channel. LSP handlers never call the model; they send jobs here and get events back.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::mpsc;
use std::sync::{Arc, Mutex, PoisonError};

use clarifycoder_core::engine::{CancelToken, EngineError, GenerateRequest};
use clarifycoder_core::examples::{self, Verdict};
use clarifycoder_core::{analysis, prompt, python};
use tokio::sync::{mpsc as tmpsc, oneshot};

use super::types::Uri;
use crate::backend::Plan;
use clarifycoder_core::analysis::{Analyzer, Options, Outcome, ResultCache};

/// A function to analyse: its hash and the problem text the model sees.
#[derive(Debug, Clone)]
pub struct Item {
    /// `Function::hash`.
    pub hash: String,
    /// `Function::problem()`.
    pub problem: String,
    /// Its docstring contradicts its signature, or its code returns a value its annotation
    /// excludes: a finding without the model ([`analysis::certain`]).
    pub certain: bool,
}

impl Item {
    /// A function, with the questions of its checks ([`analysis::check_questions`]).
    pub fn of(f: &python::Function, checked: &[String]) -> Item {
        Item {
            hash: f.hash.clone(),
            problem: f.problem(),
            certain: !checked.is_empty(),
        }
    }
}

/// Why a backend did not load.
#[derive(Debug, Clone)]
pub struct LoadFailure {
    /// The model file is missing (the editor offers to install it).
    pub missing_model: bool,
    /// The missing model is a known one (`clarifycoder model install NAME` installs it).
    pub install: Option<String>,
    /// What went wrong and what to do, for the user.
    pub message: String,
}

impl From<String> for LoadFailure {
    fn from(message: String) -> LoadFailure {
        LoadFailure {
            missing_model: false,
            install: None,
            message,
        }
    }
}

/// Running a document's docstring examples before its analysis (the `runExamples` setting).
#[derive(Debug, Clone, PartialEq)]
pub struct ExamplesRun {
    /// The interpreter.
    pub python: String,
    /// The document's text.
    pub text: String,
    /// Its directory, when it is a file, so that it can import its neighbours.
    pub dir: Option<PathBuf>,
}

/// What a document's examples showed, by function hash.
pub type Verdicts = HashMap<String, Verdict>;

/// The result shown for a function: the model's cached outcome with what its examples showed
/// applied ([`analysis::with_examples`]). A finding that needs no model ([`analysis::certain`]) is
/// shown with or without a model result; `checked` is what the checks found in the function
/// ([`analysis::check_questions`]).
pub fn effective(
    cache: &ResultCache,
    verdict: Option<&Verdict>,
    f: &python::Function,
    checked: &[String],
    max_questions: usize,
) -> Option<Outcome> {
    if let Some(found) = analysis::certain_given(&f.qualname, checked, verdict, max_questions) {
        return Some(found);
    }
    cache.get(&f.hash).map(|o| Outcome {
        p_ask: analysis::with_examples(o.p_ask, verdict),
        questions: o.questions.clone(),
    })
}

/// Work for the worker.
pub enum Job {
    /// (Re)load the backend from a plan; replies with the outcome.
    Load {
        plan: Box<Plan>,
        options: Options,
        /// The results of the plan's model (`None`: keep the cache there is). It takes the
        /// place of the old model's when this job runs, not before: the jobs queued ahead of it
        /// still run on the old model, and their results are the old model's.
        cache: Option<ResultCache>,
        reply: oneshot::Sender<Result<String, LoadFailure>>,
    },
    /// Analyse the functions of one document version.
    Analyze {
        uri: Uri,
        version: i32,
        items: Vec<Item>,
        threshold: f32,
        cancel: CancelToken,
    },
    /// Generate an implementation for a problem; replies with the code.
    Implement {
        problem: String,
        cancel: CancelToken,
        reply: oneshot::Sender<Result<String, String>>,
    },
    /// Replies once every job queued before it is done, the examples runs it queued included.
    Barrier(oneshot::Sender<()>),
    /// The session is over: ends the thread, before the jobs still queued, saving the result
    /// cache and freeing the model; replies when the model is freed.
    Stop(oneshot::Sender<()>),
}

/// Work for the examples thread.
enum ExamplesJob {
    /// Run a document's examples (`None`: forget its verdicts), then report the version.
    Run {
        uri: Uri,
        version: i32,
        run: Option<ExamplesRun>,
    },
    /// Replies once every run queued before it is done.
    Barrier(oneshot::Sender<()>),
    /// The session is over: ends the thread, before the runs still queued.
    Stop,
}

/// What the worker reports.
#[derive(Debug)]
pub enum Event {
    /// New results for a document version are in the cache.
    Analyzed { uri: Uri, version: i32 },
    /// The engine failed (message for the user).
    EngineError(String),
}

/// The engine's state, for hover and the status of editors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EngineState {
    /// Not loaded yet or loading.
    Loading,
    /// Ready, serving this model.
    Ready(String),
    /// Could not load; the message says why and what to do.
    Failed(String),
}

/// Handle to the worker thread.
#[derive(Clone)]
pub struct Worker {
    jobs: mpsc::Sender<Job>,
    examples_jobs: mpsc::Sender<ExamplesJob>,
    /// Results shared with the handlers (hover, code actions, diagnostics).
    pub cache: Arc<Mutex<ResultCache>>,
    /// Engine state.
    pub state: Arc<Mutex<EngineState>>,
    /// Functions sent to the model so far (decisions), for tests and benchmarks.
    pub decided: Arc<std::sync::atomic::AtomicU64>,
    /// Jobs stopped by cancellation, for tests.
    pub cancelled: Arc<std::sync::atomic::AtomicU64>,
    /// The engine's counters as of the last barrier, for tests and benchmarks (none before the
    /// engine has loaded).
    pub inference: Arc<Mutex<Option<clarifycoder_core::engine::Stats>>>,
    /// Why a function has no result, by hash, when the model could not take it (too long for
    /// the context), for hover.
    pub not_analysed: Arc<Mutex<std::collections::HashMap<String, String>>>,
    /// What each document's examples showed at their last run (written by the examples thread
    /// only).
    pub examples: Arc<Mutex<HashMap<Uri, Verdicts>>>,
}

impl Worker {
    /// Starts the worker thread.
    pub fn start(cache: ResultCache, events: tmpsc::UnboundedSender<Event>) -> Worker {
        let (tx, rx) = mpsc::channel();
        let (examples_tx, examples_rx) = mpsc::channel();
        let worker = Worker {
            jobs: tx,
            examples_jobs: examples_tx,
            cache: Arc::new(Mutex::new(cache)),
            state: Arc::new(Mutex::new(EngineState::Loading)),
            decided: Arc::default(),
            cancelled: Arc::default(),
            inference: Arc::default(),
            not_analysed: Arc::default(),
            examples: Arc::default(),
        };
        let (w, examples_events) = (worker.clone(), events.clone());
        std::thread::Builder::new()
            .name("clarifycoder-examples".into())
            .spawn(move || run_examples_jobs(examples_rx, w, examples_events))
            .expect("spawn the examples thread");
        let w = worker.clone();
        std::thread::Builder::new()
            .name("clarifycoder-analysis".into())
            .spawn(move || run(rx, w, events))
            .expect("spawn the analysis thread");
        worker
    }

    /// Writes the result cache (a failure is logged: the cache only saves time).
    fn save_cache(&self) {
        let saved = self
            .cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .save();
        if let Err(e) = saved {
            tracing::warn!("cannot write the result cache: {e}");
        }
    }

    /// What the examples of a document's function showed, if they ran.
    pub fn verdict(&self, uri: &Uri, hash: &str) -> Option<Verdict> {
        let examples = self.examples.lock().unwrap_or_else(PoisonError::into_inner);
        examples.get(uri)?.get(hash).cloned()
    }

    /// The result shown for a document's function ([`effective`]).
    pub fn outcome(
        &self,
        uri: &Uri,
        f: &python::Function,
        max_questions: usize,
    ) -> Option<Outcome> {
        let verdict = self.verdict(uri, &f.hash);
        let cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        effective(
            &cache,
            verdict.as_ref(),
            f,
            &analysis::check_questions(f),
            max_questions,
        )
    }

    /// Runs a document's examples on the examples thread (`None`, the setting off: forgets its
    /// verdicts), apart from the model's work, so that a file whose imports are slow does not
    /// hold back the model's results; the verdicts are published when they come. Queue it before
    /// the document's [`Job::Analyze`], which uses the verdicts known by then.
    pub fn run_examples(&self, uri: Uri, version: i32, run: Option<ExamplesRun>) {
        let _ = self
            .examples_jobs
            .send(ExamplesJob::Run { uri, version, run });
    }

    /// Queues a job. Fails only when the worker thread is gone.
    pub fn send(&self, job: Job) -> Result<(), String> {
        self.jobs
            .send(job)
            .map_err(|_| "the analysis thread stopped".to_string())
    }

    /// Ends both threads once the job in flight is done (cancel it first) and returns when the
    /// model is freed. Each thread holds a `Worker`, hence a sender to its own channel: the
    /// channels never close, and without this the threads and the model outlived their session.
    pub async fn stop(&self) {
        let _ = self.examples_jobs.send(ExamplesJob::Stop);
        let (done_tx, done_rx) = oneshot::channel();
        if self.jobs.send(Job::Stop(done_tx)).is_ok() {
            let _ = done_rx.await;
        }
    }
}

fn run(rx: mpsc::Receiver<Job>, w: Worker, events: tmpsc::UnboundedSender<Event>) {
    let mut analyzer: Option<Analyzer> = None;
    let mut plan: Option<(Plan, Options)> = None;
    let mut pending: std::collections::VecDeque<Job> = Default::default();
    // The engine error last shown: an endpoint that is down fails every analysis the same way,
    // and the user is told once, until the model answers again (or the engine is reloaded).
    let mut shown_error: Option<String> = None;
    let mut stopped = None;
    loop {
        // Drain the channel so that newer jobs can supersede older ones.
        let mut job = match pending.pop_front() {
            Some(job) => job,
            None => match rx.recv() {
                Ok(job) => job,
                Err(_) => break,
            },
        };
        pending.extend(rx.try_iter());
        // Once the session is over, what is still queued is for nobody.
        if let Some(i) = pending.iter().position(|j| matches!(j, Job::Stop(_))) {
            job = pending.remove(i).expect("a queued job");
        }
        match job {
            Job::Stop(done) => {
                stopped = Some(done);
                break;
            }
            Job::Load {
                plan: p,
                options,
                cache,
                reply,
            } => {
                // What the jobs before this one found is the old model's, in its cache.
                if let Some(cache) = cache {
                    w.save_cache();
                    *w.cache.lock().unwrap_or_else(PoisonError::into_inner) = cache;
                }
                // So is why a function could not be analysed (the new context may hold it).
                w.not_analysed
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .clear();
                *w.state.lock().unwrap() = EngineState::Loading;
                let result = load(&p, options);
                let message = match &result {
                    Ok(a) => {
                        let info = a.backend().info().clone();
                        let m = format!("{} ({})", info.model, info.backend);
                        *w.state.lock().unwrap() = EngineState::Ready(m.clone());
                        Ok(m)
                    }
                    Err(e) => {
                        *w.state.lock().unwrap() = EngineState::Failed(e.message.clone());
                        Err(e.clone())
                    }
                };
                analyzer = result.ok();
                plan = Some((*p, options));
                shown_error = None;
                let _ = reply.send(message);
            }
            Job::Analyze {
                uri,
                version,
                items,
                threshold,
                cancel,
            } => {
                // A newer version of the same document is already queued: skip this one.
                let superseded = pending
                    .iter()
                    .any(|j| matches!(j, Job::Analyze { uri: u, version: v, .. } if *u == uri && *v > version));
                if superseded || cancel.is_cancelled() {
                    continue;
                }
                // The verdicts known now (the examples thread publishes newer ones itself): they
                // spare the model the functions whose example the code disagrees with.
                let verdicts = w
                    .examples
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .get(&uri)
                    .cloned()
                    .unwrap_or_default();
                let Some(a) = analyzer.as_ref() else {
                    // No model: a contradiction with the signature or the code is still a finding
                    // (and so is an example the code disagrees with, which its thread publishes).
                    // Once no model could be loaded, published also when there is none, so that
                    // a fixed one goes away; while one loads, the analysis after it publishes.
                    let failed = matches!(*w.state.lock().unwrap(), EngineState::Failed(_));
                    if failed || items.iter().any(|i| i.certain) {
                        let _ = events.send(Event::Analyzed { uri, version });
                    }
                    continue;
                };
                let partial = || {
                    let _ = events.send(Event::Analyzed {
                        uri: uri.clone(),
                        version,
                    });
                };
                match guarded(|| analyze(a, &w, &items, &verdicts, threshold, &cancel, partial)) {
                    // The model answered: a later failure is news again.
                    Ok(true) => shown_error = None,
                    // Nothing was asked (all cached): the model may still be unreachable.
                    Ok(false) => {}
                    Err(EngineError::Cancelled) => {
                        // Cancelled because the document changed or closed: a newer job (or
                        // nothing) follows; publishing half the results would only flicker.
                        w.cancelled
                            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        // Rounds finished before the cancellation are cached (and were
                        // published): keep them.
                        w.save_cache();
                        continue;
                    }
                    Err(EngineError::Stopped(reason)) => {
                        // The engine thread died: restart it once from the same plan.
                        tracing::error!("engine stopped ({reason:?}); restarting");
                        analyzer = plan.as_ref().and_then(|(p, o)| load(p, *o).ok());
                        if analyzer.is_none() {
                            let m = "the inference engine stopped and could not be restarted"
                                .to_string();
                            *w.state.lock().unwrap() = EngineState::Failed(m.clone());
                            report(&events, &mut shown_error, m);
                        }
                    }
                    Err(e) => report(&events, &mut shown_error, e.to_string()),
                }
                let _ = events.send(Event::Analyzed { uri, version });
                w.save_cache();
            }
            Job::Barrier(reply) => {
                *w.inference.lock().unwrap() = analyzer.as_ref().map(|a| a.backend().stats());
                let _ = w.examples_jobs.send(ExamplesJob::Barrier(reply));
            }
            Job::Implement {
                problem,
                cancel,
                reply,
            } => {
                let result = match analyzer.as_ref() {
                    None => Err("the model is not loaded".to_string()),
                    Some(a) => guarded(|| implement(a, &problem, &cancel)).map_err(|e| {
                        if matches!(e, EngineError::Cancelled) {
                            w.cancelled
                                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                        e.to_string()
                    }),
                };
                let _ = reply.send(result);
            }
        }
    }
    w.save_cache();
    drop(analyzer);
    if let Some(done) = stopped {
        let _ = done.send(());
    }
}

/// The examples thread: runs each document's examples (the latest run queued for it), stores the
/// verdicts and reports the document's version, so that its diagnostics are published again.
fn run_examples_jobs(
    rx: mpsc::Receiver<ExamplesJob>,
    w: Worker,
    events: tmpsc::UnboundedSender<Event>,
) {
    // Each document's last run (interpreter, text, directory): the same text again (a settings
    // change, a workspace check) does not start Python again.
    let mut ran: HashMap<Uri, ExamplesRun> = HashMap::new();
    while let Ok(first) = rx.recv() {
        let jobs: Vec<ExamplesJob> = std::iter::once(first).chain(rx.try_iter()).collect();
        // Once the session is over, what is still queued is for nobody.
        if jobs.iter().any(|j| matches!(j, ExamplesJob::Stop)) {
            break;
        }
        for (i, job) in jobs.iter().enumerate() {
            match job {
                ExamplesJob::Barrier(_) | ExamplesJob::Stop => {}
                ExamplesJob::Run { uri, version, run } => {
                    // A later run of the same document supersedes this one.
                    let superseded = jobs[i + 1..]
                        .iter()
                        .any(|j| matches!(j, ExamplesJob::Run { uri: u, .. } if u == uri));
                    let known = w
                        .examples
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .contains_key(uri);
                    if superseded || known && run.is_some() && ran.get(uri) == run.as_ref() {
                        continue;
                    }
                    let verdicts = run.as_ref().map(run_examples).unwrap_or_default();
                    // Published again only when what is shown changes.
                    let changed = {
                        let mut examples =
                            w.examples.lock().unwrap_or_else(PoisonError::into_inner);
                        let before = match run {
                            Some(_) => examples.insert(uri.clone(), verdicts.clone()),
                            None => examples.remove(uri),
                        };
                        before.unwrap_or_default() != verdicts
                    };
                    match run {
                        Some(run) => ran.insert(uri.clone(), run.clone()),
                        None => ran.remove(uri),
                    };
                    if changed {
                        let (uri, version) = (uri.clone(), *version);
                        let _ = events.send(Event::Analyzed { uri, version });
                    }
                }
            }
        }
        for job in jobs {
            if let ExamplesJob::Barrier(reply) = job {
                let _ = reply.send(());
            }
        }
    }
}

/// Runs a document's examples; a document whose examples cannot run is logged and has none.
fn run_examples(run: &ExamplesRun) -> Verdicts {
    let parsed = python::extract(&run.text);
    if parsed.has_syntax_errors {
        return Verdicts::new();
    }
    let functions = analysis::analyzable(&parsed);
    match examples::run(&run.python, &run.text, run.dir.as_deref(), &functions) {
        Ok(ran) => {
            for why in ran.stopped {
                tracing::warn!("docstring examples stopped: {why}");
            }
            functions
                .iter()
                .zip(ran.verdicts)
                .filter_map(|(f, v)| Some((f.hash.clone(), v?)))
                .collect()
        }
        Err(why) => {
            tracing::warn!("docstring examples not run: {why}");
            Verdicts::new()
        }
    }
}

/// Sends an engine error for the user unless it is the one shown last (`shown`), which it becomes.
fn report(events: &tmpsc::UnboundedSender<Event>, shown: &mut Option<String>, message: String) {
    if shown.as_ref() != Some(&message) {
        *shown = Some(message.clone());
        let _ = events.send(Event::EngineError(message));
    }
}

/// Runs a job's work so that a bug in it is an error for the user, not the end of the worker
/// (which would leave every later edit without diagnostics).
fn guarded<T>(work: impl FnOnce() -> Result<T, EngineError>) -> Result<T, EngineError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(work)).unwrap_or_else(|panic| {
        let why = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown cause".into());
        tracing::error!("analysis failed: {why}");
        Err(EngineError::Inference(format!(
            "analysis failed ({why}); please report this"
        )))
    })
}

fn load(plan: &Plan, options: Options) -> Result<Analyzer, LoadFailure> {
    plan.open().map(|b| Analyzer::new(b, options)).map_err(|e| {
        let e = anyhow::Error::new(e);
        let missing_model = crate::backend::is_missing_model(&e);
        LoadFailure {
            missing_model,
            install: missing_model
                .then(|| clarifycoder_core::models::find_by_path(&plan.model.path))
                .flatten()
                .map(|m| m.name.to_string()),
            message: format!("{e:#}"),
        }
    })
}

/// Functions decided and asked about before the first partial results go out; each later round
/// takes four times as many (up to [`LAST_ROUND`]), so that a large file's first diagnostics come
/// after two functions while later rounds keep the engine's lanes full (rounds of 2, 8, 32: the
/// first diagnostics of 20 functions in half the time of rounds of 4, 8, 16, 32, and all of them
/// as soon; BENCHMARKS.md, "Language server").
const FIRST_ROUND: usize = 2;
const LAST_ROUND: usize = 32;

/// Decides the items that have no result yet and generates questions for those at or above the
/// threshold, in rounds of growing size; `partial` is called after every round but the last, when
/// new results are in the cache (the caller publishes them). Returns whether the model was asked
/// anything (and answered).
fn analyze(
    a: &Analyzer,
    w: &Worker,
    items: &[Item],
    verdicts: &Verdicts,
    threshold: f32,
    cancel: &CancelToken,
    mut partial: impl FnMut(),
) -> Result<bool, EngineError> {
    // A function with a finding of its own (an example the code disagrees with, a contradiction
    // with its signature or its code) needs no model.
    let settled =
        |i: &Item| i.certain || matches!(verdicts.get(&i.hash), Some(Verdict::Disagree(_)));
    let undecided: Vec<&Item> = {
        let cache = w.cache.lock().unwrap_or_else(PoisonError::into_inner);
        items
            .iter()
            .filter(|i| cache.get(&i.hash).is_none() && !settled(i))
            .collect()
    };
    let mut rest = undecided.as_slice();
    let mut round = FIRST_ROUND;
    while !rest.is_empty() {
        let (these, later) = rest.split_at(round.min(rest.len()));
        rest = later;
        round = (round * 4).min(LAST_ROUND);
        cancel.check()?;
        let problems: Vec<&str> = these.iter().map(|i| i.problem.as_str()).collect();
        let scores = a.decide_each(&problems, cancel)?;
        w.decided
            .fetch_add(these.len() as u64, std::sync::atomic::Ordering::Relaxed);
        {
            let mut cache = w.cache.lock().unwrap_or_else(PoisonError::into_inner);
            for (item, p_ask) in these.iter().zip(scores) {
                match p_ask {
                    Ok(p_ask) => cache.put(
                        &item.hash,
                        Outcome {
                            p_ask,
                            questions: None,
                        },
                    ),
                    // Too long for the context: no result, and the others go on.
                    Err(e) => {
                        tracing::warn!("a function was not analysed: {e}");
                        let why = match e {
                            EngineError::PromptTooLong { tokens, max } => format!(
                                "its prompt has {tokens} tokens and the model's context holds \
                                 {max}; raise the `ctxSize` setting or shorten the docstring"
                            ),
                            e => e.to_string(),
                        };
                        w.not_analysed
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .insert(item.hash.clone(), why);
                    }
                }
            }
        }
        ask(a, w, these, verdicts, threshold, cancel)?;
        if !rest.is_empty() {
            partial();
        }
    }
    // Functions decided before (under another threshold, say) that still need their questions.
    let all: Vec<&Item> = items.iter().collect();
    let asked = ask(a, w, &all, verdicts, threshold, cancel)?;
    Ok(!undecided.is_empty() || asked)
}

/// Generates questions for the items whose cached result is at or above the threshold and has
/// none yet. They are generated together (the engine batches them), in groups: a cancellation
/// stops the work after the group in flight, and every answer is cached as its group ends, even
/// when another one of the group failed. Returns whether any were generated.
fn ask(
    a: &Analyzer,
    w: &Worker,
    items: &[&Item],
    verdicts: &Verdicts,
    threshold: f32,
    cancel: &CancelToken,
) -> Result<bool, EngineError> {
    cancel.check()?;
    let flagged: Vec<&Item> = {
        let cache = w.cache.lock().unwrap_or_else(PoisonError::into_inner);
        items
            .iter()
            .copied()
            .filter(|item| {
                let verdict = verdicts.get(&item.hash);
                !item.certain
                    && !matches!(verdict, Some(Verdict::Disagree(_)))
                    && cache.get(&item.hash).is_some_and(|o| {
                        analysis::with_examples(o.p_ask, verdict) >= threshold
                            && o.questions.is_none()
                    })
            })
            .collect()
    };
    for group in flagged.chunks(clarifycoder_core::analysis::IN_FLIGHT) {
        cancel.check()?;
        let problems: Vec<&str> = group.iter().map(|i| i.problem.as_str()).collect();
        let answers = a.questions_many(&problems, cancel);
        let mut cache = w.cache.lock().unwrap_or_else(PoisonError::into_inner);
        let mut failure = None;
        for (item, questions) in group.iter().zip(answers) {
            match questions {
                Ok(questions) => {
                    if let Some(mut o) = cache.get(&item.hash).cloned() {
                        o.questions = Some(questions);
                        cache.put(&item.hash, o);
                    }
                }
                Err(e) => {
                    failure.get_or_insert(e);
                }
            }
        }
        if let Some(e) = failure {
            return Err(e);
        }
    }
    Ok(!flagged.is_empty())
}

/// Generates code for a problem, given that the model codes: the prompt is followed by an opening
/// fence and generation stops at the closing one.
fn implement(a: &Analyzer, problem: &str, cancel: &CancelToken) -> Result<String, EngineError> {
    let backend = a.backend();
    let markup = backend.info().markup;
    let mut request = GenerateRequest::greedy(prompt::round1_code(markup, problem), markup, 384);
    request.stop.push(prompt::CODE_FENCE_CLOSE.into());
    Ok(backend.generate(&request, cancel)?.text)
}

#[cfg(test)]
mod tests {
    use clarifycoder_core::engine::llama::{LlamaConfig, LlamaEngine};
    use clarifycoder_core::models::GEMMA3_270M;

    use super::*;

    /// A file's first functions get their results (and the caller its `partial` call) before the
    /// rest are decided: rounds of 2, then 8, ...
    #[test]
    fn results_come_in_rounds_of_growing_size() {
        let model = GEMMA3_270M
            .installed_path()
            .unwrap_or_else(|e| panic!("{e}"));
        let engine = LlamaEngine::load(LlamaConfig::new(model)).unwrap();
        let options = Options {
            threshold: 0.0,
            max_tokens: 8,
            ..Options::default()
        };
        let analyzer = Analyzer::new(Arc::new(engine), options);
        let (events, _) = tmpsc::unbounded_channel();
        let w = Worker::start(ResultCache::in_memory(), events);
        let items: Vec<Item> = (0..6)
            .map(|i| Item {
                hash: format!("f{i}"),
                problem: format!("def f{i}(x):\n    \"\"\"Handle x number {i}.\"\"\"\n"),
                certain: false,
            })
            .collect();
        let asked = |w: &Worker| {
            let cache = w.cache.lock().unwrap_or_else(PoisonError::into_inner);
            items
                .iter()
                .filter(|i| cache.get(&i.hash).is_some_and(|o| o.questions.is_some()))
                .count()
        };
        let mut seen = Vec::new();
        analyze(
            &analyzer,
            &w,
            &items,
            &Verdicts::new(),
            0.0,
            &CancelToken::new(),
            || seen.push(asked(&w)),
        )
        .unwrap();
        assert_eq!(seen, vec![2]);
        assert_eq!(asked(&w), 6);
    }
}
