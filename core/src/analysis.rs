//! From functions to clarifying questions: decide, then (for flagged functions) ask the model
//! what it would ask, with a persistent cache so unchanged functions are never re-run.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use crate::consistency;
use crate::engine::{Backend, CancelToken, EngineError, GenerateRequest};
use crate::examples;
use crate::prompt::{self, FORMAT_VERSION};
use crate::python;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Whether a pragma skips a function (`# clarify: ignore` on it, `# clarify: ignore-file` on its file).
pub fn ignored(parsed: &python::ParsedFile, f: &python::Function) -> bool {
    parsed.ignore_file || f.ignored
}

/// Whether a function has something to clarify: a non-empty docstring. Without one the code is the
/// specification.
pub fn documented(f: &python::Function) -> bool {
    f.docstring
        .as_ref()
        .is_some_and(|d| !d.text.trim().is_empty())
}

/// The functions of a file that go to the model.
pub fn analyzable(parsed: &python::ParsedFile) -> Vec<&python::Function> {
    parsed
        .functions
        .iter()
        .filter(|f| !ignored(parsed, f) && documented(f))
        .collect()
}

/// Analysis knobs that change results.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Options {
    /// Flag a function when `p_ask >= threshold`.
    pub threshold: f32,
    /// Most questions kept per function.
    pub max_questions: usize,
    /// Most tokens generated for the questions.
    pub max_tokens: usize,
    /// Check docstrings against their signatures ([`consistency`]) besides asking the model.
    pub consistency: bool,
    /// Weight of the summary's P(ask) in a function's score (see [`summary_problem`]): the score
    /// is `sigmoid((1 - w) * logit(p_full) + w * logit(p_summary))`; 0 asks about the full
    /// docstring only.
    pub summary_weight: f32,
}

/// The default [`Options::summary_weight`] (BENCHMARKS.md, "The summary's vote").
pub const SUMMARY_WEIGHT: f32 = 1.0 / 3.0;

impl Default for Options {
    fn default() -> Options {
        Options {
            threshold: crate::settings::DEFAULT_THRESHOLD,
            max_questions: 3,
            max_tokens: 96,
            consistency: true,
            summary_weight: SUMMARY_WEIGHT,
        }
    }
}

/// A cache file's entries as served with the generation options `generation` (questions asked
/// with others left out), and the entries whose questions were asked with others, as stored.
fn read_entries(bytes: &[u8], generation: &str) -> serde_json::Result<Entries> {
    let stored: HashMap<String, Stored> = serde_json::from_slice(bytes)?;
    let mut entries = Entries::default();
    for (hash, s) in stored {
        if s.outcome.questions.is_some() && s.generation.as_deref() != Some(generation) {
            let score_only = Outcome {
                p_ask: s.outcome.p_ask,
                questions: None,
            };
            entries.served.insert(hash.clone(), score_only);
            entries.other.insert(hash, s);
        } else {
            entries.served.insert(hash, s.outcome);
        }
    }
    Ok(entries)
}

/// What the model made of one function.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Outcome {
    /// Probability that the model asks rather than codes.
    pub p_ask: f32,
    /// Its questions; generated only for flagged functions.
    pub questions: Option<Vec<String>>,
}

/// Results on disk, one file per (model identity, prompt format, checks, summary weight): what
/// a score depends on. Questions depend on the generation's options too (`max_tokens`,
/// `max_questions`), so each entry's questions carry them. Questions asked with other options
/// are not served (the score is, and the questions are asked again), but they are written back
/// as they were until this cache has questions of its own for that function: the language
/// server and `check` with other options do not undo each other's work.
pub struct ResultCache {
    path: Option<PathBuf>,
    entries: Entries,
    /// `max_tokens/max_questions` of this cache's questions.
    generation: String,
    dirty: bool,
}

#[derive(Default)]
struct Entries {
    /// What [`ResultCache::get`] serves.
    served: HashMap<String, Outcome>,
    /// Entries whose questions were asked with other generation options, as stored.
    other: HashMap<String, Stored>,
}

impl Entries {
    /// Takes in what another process saved: the functions this cache lacks, and questions for
    /// a score it has without them.
    fn merge(&mut self, theirs: Entries) {
        use std::collections::hash_map::Entry;
        let Entries { served, mut other } = theirs;
        for (hash, outcome) in served {
            let foreign = other.remove(&hash);
            match self.served.entry(hash) {
                Entry::Vacant(v) => {
                    if let Some(foreign) = foreign {
                        self.other.insert(v.key().clone(), foreign);
                    }
                    v.insert(outcome);
                }
                Entry::Occupied(mut o)
                    if o.get().questions.is_none() && o.get().p_ask == outcome.p_ask =>
                {
                    if outcome.questions.is_some() {
                        self.other.remove(o.key());
                        o.insert(outcome);
                    } else if let Some(foreign) = foreign {
                        self.other.entry(o.key().clone()).or_insert(foreign);
                    }
                }
                Entry::Occupied(_) => {}
            }
        }
    }
}

/// One entry of a cache file.
#[derive(Clone, Serialize, Deserialize)]
struct Stored {
    #[serde(flatten)]
    outcome: Outcome,
    /// The generation options its questions were asked with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    generation: Option<String>,
}

fn generation_of(options: &Options) -> String {
    format!("{}/{}", options.max_tokens, options.max_questions)
}

impl ResultCache {
    /// An in-memory cache that never touches the disk.
    pub fn in_memory() -> ResultCache {
        ResultCache {
            path: None,
            entries: Entries::default(),
            generation: String::new(),
            dirty: false,
        }
    }

    /// Opens (or starts) the cache for a model identity. A corrupt file is set aside and a new
    /// one started: the cache only saves time.
    pub fn open(dir: PathBuf, model_identity: &str, options: &Options) -> ResultCache {
        let mut h = Sha256::new();
        h.update(model_identity);
        h.update(format!(
            "\0format={FORMAT_VERSION}\0consistency={}\0summary={}",
            if options.consistency {
                consistency::VERSION
            } else {
                0
            },
            options.summary_weight
        ));
        let hex = format!("{:x}", h.finalize());
        let path = dir.join(format!("{}.json", &hex[..16]));
        let generation = generation_of(options);
        let entries = match std::fs::read(&path) {
            Ok(bytes) => read_entries(&bytes, &generation).unwrap_or_else(|e| {
                let aside = path.with_extension("json.corrupt");
                let moved = std::fs::rename(&path, &aside).is_ok();
                eprintln!(
                    "warning: result cache '{}' is unreadable ({e}); starting a new one{}",
                    path.display(),
                    if moved {
                        format!(" (the old file is kept as '{}')", aside.display())
                    } else {
                        String::new()
                    }
                );
                Entries::default()
            }),
            Err(_) => Entries::default(),
        };
        ResultCache {
            path: Some(path),
            entries,
            generation,
            dirty: false,
        }
    }

    /// A cached outcome.
    pub fn get(&self, function_hash: &str) -> Option<&Outcome> {
        self.entries.served.get(function_hash)
    }

    /// Records an outcome. Questions of its own, or another score, replace the questions asked
    /// with other options.
    pub fn put(&mut self, function_hash: &str, outcome: Outcome) {
        let replaced = self
            .entries
            .other
            .get(function_hash)
            .is_some_and(|o| outcome.questions.is_some() || o.outcome.p_ask != outcome.p_ask);
        if replaced {
            self.entries.other.remove(function_hash);
        }
        self.entries
            .served
            .insert(function_hash.to_string(), outcome);
        self.dirty = true;
    }

    /// Writes the cache (atomically: temp file + rename) if it changed, merged with what other
    /// processes saved meanwhile (two `check` runs, or `check` beside the language server):
    /// under an exclusive lock on a file beside it, the file is read again and its entries that
    /// this cache lacks are taken in before writing, so that neither run's results are lost.
    pub fn save(&mut self) -> std::io::Result<()> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        if !self.dirty {
            return Ok(());
        }
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path.with_extension("json.lock"))?;
        // A file system without locks (some network ones) still gets the merge, unlocked.
        let locked = lock.lock().is_ok();
        if let Some(theirs) = std::fs::read(path)
            .ok()
            .and_then(|bytes| read_entries(&bytes, &self.generation).ok())
        {
            self.entries.merge(theirs);
        }
        let stored: HashMap<&String, Stored> = self
            .entries
            .served
            .iter()
            .map(|(hash, outcome)| {
                let stored = match self.entries.other.get(hash) {
                    Some(other) if outcome.questions.is_none() => other.clone(),
                    _ => Stored {
                        outcome: outcome.clone(),
                        generation: outcome.questions.is_some().then(|| self.generation.clone()),
                    },
                };
                (hash, stored)
            })
            .collect();
        let written = crate::fsutil::write_atomic(path, &serde_json::to_vec(&stored)?);
        if locked {
            let _ = lock.unlock();
        }
        written?;
        self.dirty = false;
        Ok(())
    }
}

/// A problem with its docstring cut to the summary (the first paragraph, on one line), or None
/// when that is the whole docstring already.
///
/// A 0.5B model's P(ask) for a whole docstring leans on its length: a long docstring reads as
/// clear whatever it leaves open. Its P(ask) for the summary alone says how open the request
/// itself is, and the rest of the docstring may close it; mixing the two votes ranks better on
/// every dev file but the shortest (BENCHMARKS.md).
pub fn summary_problem(problem: &str) -> Option<String> {
    let parsed = python::extract(problem);
    let function = parsed.functions.first()?;
    let text = function.docstring.as_ref()?.text.as_str();
    let summary = text
        .trim()
        .split("\n\n")
        .next()?
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    if summary.is_empty() || summary == text.trim() {
        return None;
    }
    Some(python::render_problem(&function.signature, Some(&summary)))
}

/// Two probabilities mixed in log-odds: `sigmoid((1 - w) * logit(a) + w * logit(b))`.
fn mix(a: f32, b: f32, w: f32) -> f32 {
    let z = (1.0 - w) * logit(a) + w * logit(b);
    1.0 / (1.0 + (-z).exp())
}

/// What a flagged function shows when the model gave no question.
pub const NO_QUESTION: &str = "The model would rather ask than code, but gave no question";

/// The least score of a function whose docstring contradicts its signature: the check is certain,
/// so it flags the function at any threshold but a maximal one.
pub const CONTRADICTION_SCORE: f32 = 0.99;

/// How far examples that run and agree with the code lower a function's score, in log-odds: a
/// docstring whose examples show what the function does is less likely to leave it open
/// (BENCHMARKS.md, "Running the examples").
pub const EXAMPLES_AGREE_SHIFT: f32 = 0.5;

/// A function's score given what its examples showed ([`crate::examples`]): an example the code
/// disagrees with is a certain finding ([`CONTRADICTION_SCORE`]); examples that agree lower the
/// model's score by [`EXAMPLES_AGREE_SHIFT`]; without a verdict the score is the model's.
pub fn with_examples(p_ask: f32, verdict: Option<&examples::Verdict>) -> f32 {
    match verdict {
        None => p_ask,
        Some(examples::Verdict::Disagree(_)) => p_ask.max(CONTRADICTION_SCORE),
        Some(examples::Verdict::Agree { .. }) => shift(p_ask, -EXAMPLES_AGREE_SHIFT),
    }
}

/// The questions of the checks that need no model, for one function: its docstring against its
/// signature ([`consistency::contradictions`]), then the values its code returns against its
/// annotation ([`consistency::returned_contradictions`]). Empty when they find nothing.
pub fn check_questions(f: &python::Function) -> Vec<String> {
    consistency::contradictions(&f.problem())
        .into_iter()
        .chain(consistency::returned_contradictions(f))
        .map(|c| c.question)
        .collect()
}

/// The outcome of a function with a finding that needs no model: an example its code disagrees
/// with ([`examples`]), or, with `consistency` on, a finding of the checks
/// ([`check_questions`]). It scores [`CONTRADICTION_SCORE`] and asks the questions of all of them
/// (cut to `max_questions`); `None` without such a finding.
pub fn certain(
    f: &python::Function,
    verdict: Option<&examples::Verdict>,
    consistency: bool,
    max_questions: usize,
) -> Option<Outcome> {
    let found = match consistency {
        true => check_questions(f),
        false => Vec::new(),
    };
    certain_given(&f.qualname, &found, verdict, max_questions)
}

/// [`certain`] for a function whose checks already ran: `checked` is what [`check_questions`]
/// returned for it (the language server reads it once per document text).
pub fn certain_given(
    qualname: &str,
    checked: &[String],
    verdict: Option<&examples::Verdict>,
    max_questions: usize,
) -> Option<Outcome> {
    let disagrees = matches!(verdict, Some(examples::Verdict::Disagree(_)));
    if !disagrees && checked.is_empty() {
        return None;
    }
    let mut questions = verdict.map_or_else(Vec::new, |v| v.questions(qualname));
    questions.extend(checked.iter().cloned());
    questions.truncate(max_questions);
    Some(Outcome {
        p_ask: CONTRADICTION_SCORE,
        questions: Some(questions),
    })
}

/// A probability moved by `by` in log-odds.
fn shift(p: f32, by: f32) -> f32 {
    1.0 / (1.0 + (-(logit(p) + by)).exp())
}

fn logit(p: f32) -> f32 {
    let p = p.clamp(1e-6, 1.0 - 1e-6);
    (p / (1.0 - p)).ln()
}

/// Question generations [`Analyzer::questions_many`] keeps in flight.
pub const IN_FLIGHT: usize = 8;

/// Runs the model over problems (texts from `Function::problem`).
pub struct Analyzer {
    backend: Arc<dyn Backend>,
    options: Options,
}

impl Analyzer {
    /// An analyzer over a loaded backend.
    pub fn new(backend: Arc<dyn Backend>, options: Options) -> Analyzer {
        Analyzer { backend, options }
    }

    /// The probability of asking, for each problem (one batched call). The model reads the
    /// problem twice, whole and with its docstring cut to the summary ([`summary_problem`]), and
    /// the two votes are mixed by [`Options::summary_weight`]. A problem whose docstring
    /// contradicts its signature ([`consistency`]) scores [`CONTRADICTION_SCORE`] without a call
    /// to the model: the finding is certain.
    pub fn decide(&self, problems: &[&str], cancel: &CancelToken) -> Result<Vec<f32>, EngineError> {
        let markup = self.backend.info().markup;
        let weight = self.options.summary_weight;
        // For each problem: None when a finding is certain, else the summary the model reads
        // besides the whole problem (None when there is none).
        let reads: Vec<Option<Option<String>>> = problems
            .iter()
            .map(|p| {
                if self.options.consistency && !consistency::contradictions(p).is_empty() {
                    return None;
                }
                Some((weight > 0.0).then(|| summary_problem(p)).flatten())
            })
            .collect();
        let prompts: Vec<_> = problems
            .iter()
            .zip(&reads)
            .filter_map(|(p, read)| Some((*p, read.as_ref()?)))
            .flat_map(|(whole, summary)| std::iter::once(whole).chain(summary.as_deref()))
            .map(|p| prompt::round1(markup, p))
            .collect();
        let mut decisions = if prompts.is_empty() {
            Vec::new()
        } else {
            self.backend.decide(&prompts, cancel)?
        }
        .into_iter()
        .map(|d| d.p_ask);
        Ok(reads
            .iter()
            .map(|read| match read {
                None => CONTRADICTION_SCORE,
                Some(summary) => {
                    let whole = decisions.next().unwrap_or(0.0);
                    match summary {
                        Some(_) => mix(whole, decisions.next().unwrap_or(whole), weight),
                        None => whole,
                    }
                }
            })
            .collect())
    }

    /// [`Analyzer::decide`], except that a problem too long for the model's context is refused
    /// on its own (its entry is the error) instead of failing the others of the call. Other
    /// errors (a cancellation, a stopped engine) still fail the call.
    pub fn decide_each(
        &self,
        problems: &[&str],
        cancel: &CancelToken,
    ) -> Result<Vec<Result<f32, EngineError>>, EngineError> {
        match self.decide(problems, cancel) {
            Ok(scores) => Ok(scores.into_iter().map(Ok).collect()),
            // Which one is too long is not said: one at a time (rare, so unbatched is fine).
            Err(EngineError::PromptTooLong { .. }) => problems
                .iter()
                .map(|p| match self.decide(&[p], cancel) {
                    Ok(scores) => Ok(Ok(scores[0])),
                    Err(e @ EngineError::PromptTooLong { .. }) => Ok(Err(e)),
                    Err(e) => Err(e),
                })
                .collect(),
            Err(e) => Err(e),
        }
    }

    /// The questions the model asks about a problem, given that it asks (code-fence tokens are
    /// excluded as its first token). A contradiction between the docstring and the signature is
    /// certain and names both sides, so its question is asked instead of the model's.
    pub fn questions(
        &self,
        problem: &str,
        cancel: &CancelToken,
    ) -> Result<Vec<String>, EngineError> {
        if self.options.consistency {
            let mut found: Vec<String> = consistency::contradictions(problem)
                .into_iter()
                .map(|c| c.question)
                .collect();
            if !found.is_empty() {
                found.truncate(self.options.max_questions);
                return Ok(found);
            }
        }
        let markup = self.backend.info().markup;
        let mut request = GenerateRequest::greedy(
            prompt::round1(markup, problem),
            markup,
            self.options.max_tokens,
        );
        request.forbid_code_start = true;
        let generation = self.backend.generate(&request, cancel)?;
        let mut questions = prompt::asked_questions(&generation.text);
        questions.truncate(self.options.max_questions);
        Ok(questions)
    }

    /// [`Analyzer::questions`] for several problems at once: up to [`IN_FLIGHT`] generations
    /// are submitted together, so the embedded engine decodes them as one batch and an endpoint
    /// serves them concurrently. Results come in the order of `problems`.
    pub fn questions_many(
        &self,
        problems: &[&str],
        cancel: &CancelToken,
    ) -> Vec<Result<Vec<String>, EngineError>> {
        crate::parallel::map(problems, IN_FLIGHT, |problem| {
            self.questions(problem, cancel)
        })
    }

    /// The backend.
    pub fn backend(&self) -> &Arc<dyn Backend> {
        &self.backend
    }

    /// The options in force.
    pub fn options(&self) -> &Options {
        &self.options
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_is_the_first_paragraph_on_one_line() {
        let problem = python::render_problem(
            "def f(items, limit):",
            Some("Return the items that are big\nenough.\n\nArgs:\n    items: The items.\n    limit: The size."),
        );
        assert_eq!(
            summary_problem(&problem).unwrap(),
            python::render_problem(
                "def f(items, limit):",
                Some("Return the items that are big enough.")
            )
        );
        // A one-line docstring is its own summary; no docstring has none.
        let one_line = python::render_problem("def f(x):", Some("Return x."));
        assert_eq!(summary_problem(&one_line), None);
        assert_eq!(summary_problem("def f(x):\n"), None);
    }

    #[test]
    fn examples_decide_a_disagreement_and_lower_an_agreement() {
        let agree = examples::Verdict::Agree { examples: 2 };
        let disagree = examples::Verdict::Disagree(Vec::new());
        assert_eq!(with_examples(0.4, None), 0.4);
        assert_eq!(with_examples(0.4, Some(&disagree)), CONTRADICTION_SCORE);
        let lowered = with_examples(0.8, Some(&agree));
        assert!(lowered < 0.8 && lowered > 0.6, "{lowered}");
        assert!((logit(lowered) - (logit(0.8) - EXAMPLES_AGREE_SHIFT)).abs() < 1e-4);
        let parsed = python::extract("def f(x):\n    \"\"\"Return x.\"\"\"\n    return x\n");
        let f = &parsed.functions[0];
        assert_eq!(certain(f, Some(&agree), true, 3), None);
        assert_eq!(certain(f, None, true, 3), None);
        let found = certain(f, Some(&disagree), true, 3).unwrap();
        assert_eq!(found.p_ask, CONTRADICTION_SCORE);
    }

    #[test]
    fn a_returned_value_the_annotation_excludes_is_certain() {
        let source = "def hours(minutes: int) -> int:\n    \"\"\"Convert minutes to fractional hours.\"\"\"\n    h = minutes / 60\n    return h\n";
        let parsed = python::extract(source);
        let f = &parsed.functions[0];
        let found = certain(f, None, true, 3).unwrap();
        assert_eq!(found.p_ask, CONTRADICTION_SCORE);
        assert_eq!(
            found.questions.unwrap(),
            ["`hours` is annotated to return `int`, but line 4 returns `h` (from `h = minutes / \
              60`), a float; which is right, the annotation or the code?"]
        );
        // The model alone (`consistency` off) has no such finding.
        assert_eq!(certain(f, None, false, 3), None);
    }

    #[test]
    fn two_runs_saving_one_cache_keep_both_results() {
        let dir = tempfile::tempdir().unwrap();
        let options = Options::default();
        let open = || ResultCache::open(dir.path().to_path_buf(), "model", &options);
        let outcome = |p_ask: f32, questions: Option<&str>| Outcome {
            p_ask,
            questions: questions.map(|q| vec![q.to_string()]),
        };
        let (mut first, mut second) = (open(), open());
        first.put("a", outcome(0.9, None));
        second.put("b", outcome(0.2, None));
        second.put("a", outcome(0.9, Some("Which items?")));
        first.save().unwrap();
        second.save().unwrap();
        first.put("c", outcome(0.1, None));
        first.save().unwrap();
        let merged = open();
        assert_eq!(merged.get("a"), Some(&outcome(0.9, Some("Which items?"))));
        assert_eq!(merged.get("b"), Some(&outcome(0.2, None)));
        assert_eq!(merged.get("c"), Some(&outcome(0.1, None)));
    }

    #[test]
    fn other_generation_options_keep_the_scores_and_ask_again() {
        let dir = tempfile::tempdir().unwrap();
        let open = |max_tokens: usize| {
            let options = Options {
                max_tokens,
                ..Options::default()
            };
            ResultCache::open(dir.path().to_path_buf(), "model", &options)
        };
        let asked = Outcome {
            p_ask: 0.9,
            questions: Some(vec!["Which items?".to_string()]),
        };
        let mut short = open(96);
        short.put("a", asked.clone());
        short.save().unwrap();
        // Longer questions: the score is served, the questions are asked again.
        let mut long = open(200);
        let unasked = Outcome {
            questions: None,
            ..asked.clone()
        };
        assert_eq!(long.get("a"), Some(&unasked));
        let asked_long = Outcome {
            questions: Some(vec!["Which items, and how many?".to_string()]),
            ..asked.clone()
        };
        // A run with other options keeps the questions it did not replace, its own or merged.
        short.put("b", asked.clone());
        short.save().unwrap();
        long.put("c", unasked.clone());
        long.save().unwrap();
        assert_eq!(open(96).get("a"), Some(&asked));
        assert_eq!(open(96).get("b"), Some(&asked));
        assert_eq!(open(200).get("b"), Some(&unasked));
        long.put("a", asked_long.clone());
        long.save().unwrap();
        assert_eq!(open(200).get("a"), Some(&asked_long));
        assert_eq!(open(96).get("a"), Some(&unasked));
        assert_eq!(open(96).get("b"), Some(&asked));
        // Another score replaces questions of any options.
        let mut short = open(96);
        short.put(
            "b",
            Outcome {
                p_ask: 0.5,
                questions: None,
            },
        );
        short.save().unwrap();
        assert_eq!(open(96).get("b").unwrap().questions, None);
        // Another model or another prompt is another file.
        let other = ResultCache::open(dir.path().to_path_buf(), "other", &Options::default());
        assert_eq!(other.get("a"), None);
    }

    #[test]
    fn votes_mix_in_log_odds() {
        assert!((mix(0.8, 0.8, 1.0 / 3.0) - 0.8).abs() < 1e-5);
        assert!((mix(0.9, 0.1, 0.5) - 0.5).abs() < 1e-5);
        assert!((mix(0.3, 0.9, 0.0) - 0.3).abs() < 1e-5);
        // (1 - w) * logit(0.2) + w * logit(0.95), w = 1/3: between the two, nearer the first.
        let mixed = mix(0.2, 0.95, 1.0 / 3.0);
        assert!(mixed > 0.2 && mixed < 0.6, "{mixed}");
    }
}
