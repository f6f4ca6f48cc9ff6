//! `clarifycoder check`: the linter mode.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use clarifycoder_core::engine::{CancelToken, Stats};
use clarifycoder_core::examples;
use clarifycoder_core::python;
use clarifycoder_core::settings;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

use crate::backend::Plan;
use clarifycoder_core::analysis::{self, Analyzer, Options, Outcome, ResultCache};

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// `path:line:col: clarify[score=0.83] question` lines.
    Text,
    /// One JSON document with diagnostics, warnings and statistics.
    Json,
    /// GitHub Actions workflow commands: a `::warning file=…,line=…,col=…::questions` line per
    /// flagged function (an annotation on the pull request's diff), an `::error` line per error.
    Github,
    /// SARIF 2.1.0 (GitHub code scanning and other static-analysis dashboards): a result per
    /// flagged function, warnings and errors as the run's notifications.
    Sarif,
}

/// What `check` needs besides the model plan.
pub struct CheckArgs {
    /// Files and directories.
    pub paths: Vec<PathBuf>,
    /// Output format.
    pub format: Format,
    /// Analysis options.
    pub options: Options,
    /// Files larger than this are skipped with a warning.
    pub max_file_size: u64,
    /// Do not read or write the result cache.
    pub no_cache: bool,
    /// Run docstring examples against the code with this Python interpreter
    /// ([`clarifycoder_core::examples`]); `None` runs nothing.
    pub run_examples: Option<String>,
}

/// One flagged function.
#[derive(Debug, Serialize)]
pub struct Diagnostic {
    /// The file, as found.
    pub path: String,
    /// 1-based line of the function name.
    pub line: u32,
    /// 1-based byte column of the function name.
    pub column: u32,
    /// Qualified name.
    pub function: String,
    /// Probability that the model asks.
    pub score: f32,
    /// The questions.
    pub questions: Vec<String>,
    /// Whether the result came from the cache.
    pub cached: bool,
}

impl Diagnostic {
    /// The text output's line: `path:line:col: clarify[score=0.83] questions`.
    fn line_text(&self) -> String {
        format!(
            "{}:{}:{}: clarify[score={:.2}] {}",
            self.path,
            self.line,
            self.column,
            self.score,
            self.questions_joined(" ")
        )
    }

    /// The questions, or what stands for them when the model gave none.
    fn questions_joined(&self, separator: &str) -> String {
        match self.questions.is_empty() {
            true => analysis::NO_QUESTION.to_string(),
            false => self.questions.join(separator),
        }
    }

    fn relative_path(&self) -> &str {
        without_dot_slash(&self.path)
    }

    /// The GitHub Actions output's line: a `warning` workflow command, one question per line of
    /// the annotation.
    fn github_line(&self) -> String {
        let title = format!("clarify[score={:.2}] {}", self.score, self.function);
        format!(
            "::warning file={},line={},col={},title={}::{}",
            github_property(self.relative_path()),
            self.line,
            self.column,
            github_property(&title),
            github_data(&self.questions_joined("\n"))
        )
    }

    /// A SARIF result: the questions as the message (one per line), at the function's name.
    fn sarif_result(&self) -> serde_json::Value {
        serde_json::json!({
            "ruleId": SARIF_RULE,
            "level": "warning",
            "message": {"text": self.questions_joined("\n")},
            "locations": [{
                "physicalLocation": {
                    "artifactLocation": {"uri": sarif_uri(self.relative_path())},
                    "region": {"startLine": self.line, "startColumn": self.column},
                },
                "logicalLocations": [{"fullyQualifiedName": self.function, "kind": "function"}],
            }],
            "properties": {"score": self.score},
        })
    }
}

/// A path as found, without a leading `./`: what GitHub and SARIF take as relative to the checkout.
fn without_dot_slash(path: &str) -> &str {
    path.strip_prefix("./").unwrap_or(path)
}

/// A path as a SARIF artifact URI: a relative reference (to the directory the check ran in,
/// which code scanning takes for the checkout) or a `file://` URI for an absolute path, with
/// `/` separators and everything but unreserved characters percent-encoded.
fn sarif_uri(path: &str) -> String {
    let path = path.replace('\\', "/");
    let mut out = String::with_capacity(path.len() + 8);
    if path.starts_with('/') {
        out.push_str("file://");
    }
    for b in path.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'/' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// A warning of a run: about a file (and a line of it) when it is, or about the whole run.
#[derive(Debug, Clone, PartialEq)]
pub struct Notice {
    /// The file, as shown in the findings.
    path: Option<String>,
    /// 1-based line.
    line: Option<usize>,
    message: String,
}

impl Notice {
    /// About the whole run.
    fn run(message: impl Into<String>) -> Notice {
        Notice {
            path: None,
            line: None,
            message: message.into(),
        }
    }

    /// About a file.
    fn file(path: &str, message: impl Into<String>) -> Notice {
        Notice {
            path: Some(path.to_string()),
            line: None,
            message: message.into(),
        }
    }

    /// About a line of a file.
    fn line(path: &str, line: usize, message: impl Into<String>) -> Notice {
        Notice {
            line: Some(line),
            ..Notice::file(path, message)
        }
    }

    fn relative_path(&self) -> Option<&str> {
        self.path.as_deref().map(without_dot_slash)
    }

    /// A `::warning` workflow command, with `file=` (and `line=`) so that the pull request
    /// shows it on the file, which then need not be in its text.
    fn github_line(&self) -> String {
        let mut properties = String::new();
        if let Some(path) = self.relative_path() {
            properties += &format!("file={},", github_property(path));
        }
        if let Some(line) = self.line {
            properties += &format!("line={line},");
        }
        format!(
            "::warning {properties}title=clarifycoder::{}",
            github_data(&self.message)
        )
    }

    /// A SARIF notification, at its file (and line) when it has one.
    fn sarif_notification(&self) -> serde_json::Value {
        let mut n = serde_json::json!({"level": "warning", "message": {"text": self.to_string()}});
        if let Some(path) = self.relative_path() {
            let mut location = serde_json::json!({
                "physicalLocation": {"artifactLocation": {"uri": sarif_uri(path)}}
            });
            if let Some(line) = self.line {
                location["physicalLocation"]["region"] = serde_json::json!({"startLine": line});
            }
            n["locations"] = serde_json::json!([location]);
        }
        n
    }
}

/// `path:line: message`, as the text and JSON outputs show it.
impl std::fmt::Display for Notice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(path) = &self.path {
            write!(f, "{path}:")?;
            if let Some(line) = self.line {
                write!(f, "{line}:")?;
            }
            write!(f, " ")?;
        }
        f.write_str(&self.message)
    }
}

/// A string in the JSON output, as before notices had a place.
impl Serialize for Notice {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// The one rule of the SARIF output, and what it says.
const SARIF_RULE: &str = "unclear";
const SARIF_RULE_SUMMARY: &str = "A docstring a developer would ask about before coding";
const SARIF_RULE_DESCRIPTION: &str = "The function's docstring is ambiguous, incomplete or \
    contradicts its signature, code or examples; the message asks what it leaves open.";

/// The SARIF 2.1.0 log of a run: its results, and its warnings and errors as notifications.
fn sarif_log(
    diagnostics: &[Diagnostic],
    warnings: &[Notice],
    errors: &[String],
) -> serde_json::Value {
    let notifications: Vec<_> = warnings
        .iter()
        .map(Notice::sarif_notification)
        .chain(
            errors
                .iter()
                .map(|e| serde_json::json!({"level": "error", "message": {"text": e}})),
        )
        .collect();
    serde_json::json!({
        "version": "2.1.0",
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "runs": [{
            "tool": {"driver": {
                "name": "clarifycoder",
                "version": env!("CARGO_PKG_VERSION"),
                "rules": [{
                    "id": SARIF_RULE,
                    "shortDescription": {"text": SARIF_RULE_SUMMARY},
                    "fullDescription": {"text": SARIF_RULE_DESCRIPTION},
                    "defaultConfiguration": {"level": "warning"},
                }],
            }},
            "invocations": [{
                "executionSuccessful": errors.is_empty(),
                "toolExecutionNotifications": notifications,
            }],
            "results": diagnostics.iter().map(Diagnostic::sarif_result).collect::<Vec<_>>(),
        }],
    })
}

/// A workflow command's message, escaped as the GitHub Actions runner reads it back.
fn github_data(text: &str) -> String {
    text.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

/// A workflow command's property value: [`github_data`], and `:` and `,`, which end it.
fn github_property(text: &str) -> String {
    github_data(text).replace(':', "%3A").replace(',', "%2C")
}

/// Counts for the JSON output and tests.
#[derive(Debug, Default, Serialize)]
pub struct CheckStats {
    /// Python files read.
    pub files: usize,
    /// Functions found.
    pub functions: usize,
    /// Functions the model scored or the cache knew (those with a docstring, not ignored, and
    /// short enough for the model's context).
    pub analyzed: usize,
    /// Functions skipped by a pragma.
    pub ignored: usize,
    /// Functions whose docstring examples ran (`--run-examples`).
    pub examples_run: usize,
    /// Functions answered entirely from the cache: a cached score that now needs questions (the
    /// threshold was lowered since) is not one, and its diagnostic is not `cached`.
    pub cache_hits: usize,
    /// Functions flagged.
    pub flagged: usize,
    /// Work the inference engine did in this run (all zero when everything was cached).
    pub inference: Stats,
    /// Wall time.
    pub elapsed_ms: u128,
}

#[derive(Serialize)]
struct Report<'a> {
    version: u32,
    diagnostics: &'a [Diagnostic],
    warnings: &'a [Notice],
    errors: &'a [String],
    stats: &'a CheckStats,
}

struct Item {
    path: String,
    /// The function; its `hash` has the examples' verdict folded in ([`examples::keyed`]).
    function: python::Function,
    /// What its examples showed, when they were run and could run.
    examples: Option<examples::Verdict>,
}

/// Runs the check and prints the report; returns the exit code (0 clean, 1 flagged, 2 errors).
pub fn run(args: CheckArgs, plan: Plan) -> anyhow::Result<i32> {
    let started = Instant::now();
    let mut warnings = Vec::new();
    let mut errors = Vec::new();
    let mut stats = CheckStats::default();

    let mut environments = Vec::new();
    let files = collect_files(&args.paths, &mut errors, &mut environments);
    if !environments.is_empty() {
        let names: Vec<String> = environments
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        warnings.push(Notice::run(format!(
            "skipped {} (virtual environments: installed packages, not the project's code; name one to check it)",
            names.join(", ")
        )));
    }
    if files.is_empty() && errors.is_empty() {
        warnings.push(Notice::run(
            "no Python files found under the given paths (hidden and .gitignore'd ones are skipped; name a file to check it anyway)",
        ));
    }
    let mut items = Vec::new();
    let cwd = std::env::current_dir().ok();
    for file in &files {
        // Paths under the working directory are shown relative to it, however they were given.
        let shown = match cwd.as_deref().map(|cwd| file.strip_prefix(cwd)) {
            Some(Ok(relative)) if file.is_absolute() => relative.display().to_string(),
            _ => file.display().to_string(),
        };
        let bytes = match std::fs::metadata(file) {
            Ok(m) if m.len() > args.max_file_size => {
                warnings.push(Notice::file(
                    &shown,
                    format!(
                        "skipped, {} bytes is over the {} byte limit (raise --max-file-size to check it)",
                        m.len(),
                        args.max_file_size
                    ),
                ));
                continue;
            }
            _ => match std::fs::read(file) {
                Ok(b) => b,
                Err(e) => {
                    errors.push(format!("{shown}: cannot read: {e}"));
                    continue;
                }
            },
        };
        let Ok(mut source) = String::from_utf8(bytes) else {
            warnings.push(Notice::file(
                &shown,
                "skipped, not valid UTF-8 (save it as UTF-8 to check it)",
            ));
            continue;
        };
        // A byte-order mark is not a column in any editor.
        if source.starts_with('\u{feff}') {
            source.drain(..'\u{feff}'.len_utf8());
        }
        stats.files += 1;
        let parsed = python::extract(&source);
        if parsed.has_syntax_errors {
            let message = match parsed.indentation_only {
                true => "has indentation Python refuses (an IndentationError or TabError); checking its functions as written",
                false => "has syntax errors; checking what could be parsed",
            };
            warnings.push(match parsed.syntax_errors.first() {
                Some(first) => Notice::line(&shown, first.start.line as usize + 1, message),
                None => Notice::file(&shown, message),
            });
        }
        stats.functions += parsed.functions.len();
        stats.ignored += parsed
            .functions
            .iter()
            .filter(|f| analysis::ignored(&parsed, f))
            .count();
        let analyzable = analysis::analyzable(&parsed);
        let none = || vec![None; analyzable.len()];
        let verdicts = match &args.run_examples {
            Some(python) if !parsed.has_syntax_errors => {
                let dir = match file.parent() {
                    Some(d) if !d.as_os_str().is_empty() => d,
                    _ => Path::new("."),
                };
                let dir = std::fs::canonicalize(dir).ok();
                match examples::run(python, &source, dir.as_deref(), &analyzable) {
                    Ok(ran) => {
                        for why in ran.stopped {
                            warnings.push(Notice::file(
                                &shown,
                                format!("docstring examples stopped: {why}"),
                            ));
                        }
                        ran.verdicts
                    }
                    Err(why) => {
                        warnings.push(Notice::file(
                            &shown,
                            format!("docstring examples not run: {why}"),
                        ));
                        none()
                    }
                }
            }
            _ => none(),
        };
        stats.examples_run += verdicts.iter().flatten().count();
        items.extend(analyzable.into_iter().zip(verdicts).map(|(f, verdict)| {
            let mut function = f.clone();
            function.hash = examples::keyed(&f.hash, verdict.as_ref());
            Item {
                path: shown.clone(),
                function,
                examples: verdict,
            }
        }));
    }
    stats.analyzed = items.len();

    // Text and GitHub output stream: a flagged function is printed once it and every function
    // before it are done, so a long run shows its results as it goes, in the order of the end.
    let stream = matches!(args.format, Format::Text | Format::Github);
    let mut diagnostics = Vec::new();
    let mut done = 0;
    let mut emit = |upto: usize, results: &[Option<(Outcome, bool)>]| {
        for (item, result) in items.iter().zip(results).take(upto).skip(done) {
            // Functions the model could not take (warned about) have no outcome.
            let Some((outcome, cached)) = result else {
                continue;
            };
            if outcome.p_ask < args.options.threshold {
                continue;
            }
            let f = &item.function;
            let d = Diagnostic {
                path: item.path.clone(),
                line: f.name_span.start.line + 1,
                column: f.name_span.start.utf8_col + 1,
                function: f.qualname.clone(),
                score: outcome.p_ask,
                questions: outcome.questions.clone().unwrap_or_default(),
                cached: *cached,
            };
            if stream {
                let line = match args.format {
                    Format::Github => d.github_line(),
                    _ => d.line_text(),
                };
                // A closed pipe (`| head`) only ends the printing.
                let _ = writeln!(std::io::stdout().lock(), "{line}");
            }
            diagnostics.push(d);
        }
        done = done.max(upto);
    };
    if !items.is_empty() {
        match analyze(&items, &args, &plan, &mut stats, &mut warnings, &mut emit) {
            Ok(outcomes) => {
                emit(items.len(), &outcomes);
                // Less those the model could not take (too long for its context).
                stats.analyzed = outcomes.iter().flatten().count();
            }
            Err(e) => errors.push(format!("{e:#}")),
        }
    }
    stats.flagged = diagnostics.len();
    stats.elapsed_ms = started.elapsed().as_millis();

    let mut out = String::new();
    match args.format {
        Format::Text => {}
        Format::Github => {
            // On a pull request only the workflow commands show: a skipped file is annotated too.
            for w in &warnings {
                out += &w.github_line();
                out.push('\n');
            }
            for e in &errors {
                out += &format!("::error title=clarifycoder::{}\n", github_data(e));
            }
        }
        Format::Sarif => {
            out = serde_json::to_string_pretty(&sarif_log(&diagnostics, &warnings, &errors))?;
            out.push('\n');
        }
        Format::Json => {
            let report = Report {
                version: 1,
                diagnostics: &diagnostics,
                warnings: &warnings,
                errors: &errors,
                stats: &stats,
            };
            out = serde_json::to_string_pretty(&report)?;
            out.push('\n');
        }
    }
    if matches!(args.format, Format::Text | Format::Github) {
        for w in &warnings {
            eprintln!("warning: {w}");
        }
        for e in &errors {
            eprintln!("error: {e}");
        }
    }
    print_stdout(&out)?;
    Ok(if !errors.is_empty() {
        2
    } else if !diagnostics.is_empty() {
        1
    } else {
        0
    })
}

/// What is known so far: every item before the first argument is done; `results` holds them.
type Emit<'a> = dyn FnMut(usize, &[Option<(Outcome, bool)>]) + 'a;

/// The outcome of every item, and whether it came from the cache; `None` for a function the
/// model could not take (too long for its context), with a warning. Loads the model only when
/// something is not cached; `emit` hears of the items done as the model gets through them. A
/// cache that cannot be written is a warning: it only saves time. When the model is missing or
/// cannot load, the findings that need none (and cached results) are still emitted, beside the
/// error.
fn analyze(
    items: &[Item],
    args: &CheckArgs,
    plan: &Plan,
    stats: &mut CheckStats,
    warnings: &mut Vec<Notice>,
    emit: &mut Emit,
) -> anyhow::Result<Vec<Option<(Outcome, bool)>>> {
    // An example the code disagrees with, a docstring that contradicts its signature, or a
    // returned value the annotation excludes, is a finding without the model (or the cache).
    let certain: Vec<Option<Outcome>> = items
        .iter()
        .map(|item| {
            analysis::certain(
                &item.function,
                item.examples.as_ref(),
                args.options.consistency,
                args.options.max_questions,
            )
        })
        .collect();
    // The model is missing or cannot load: what is known is still reported.
    let mut without_model = |results: &[Option<(Outcome, bool)>], stats: &mut CheckStats| {
        stats.analyzed = results.iter().flatten().count();
        emit(items.len(), results);
    };
    let identity = match plan.identity() {
        Ok(identity) => identity,
        Err(e) => {
            let found: Vec<_> = certain.into_iter().map(|o| o.map(|o| (o, false))).collect();
            without_model(&found, stats);
            return Err(e.into());
        }
    };
    let cache_dir = settings::cache_dir().join("results");
    let mut cache = if args.no_cache {
        ResultCache::in_memory()
    } else {
        ResultCache::open(cache_dir.clone(), &identity, &args.options)
    };
    let threshold = args.options.threshold;
    let needs_work = |o: Option<&Outcome>| match o {
        None => true,
        Some(o) => o.p_ask >= threshold && o.questions.is_none(),
    };
    let mut results: Vec<Option<(Outcome, bool)>> = items
        .iter()
        .zip(certain)
        .map(|(item, found)| {
            if let Some(outcome) = found {
                return Some((outcome, false));
            }
            let cached = cache.get(&item.function.hash);
            (!needs_work(cached)).then(|| {
                (
                    cached.cloned().expect("not needing work implies cached"),
                    true,
                )
            })
        })
        .collect();
    stats.cache_hits = results
        .iter()
        .filter(|r| r.as_ref().is_some_and(|(_, cached)| *cached))
        .count();

    let pending: Vec<usize> = (0..items.len()).filter(|&i| results[i].is_none()).collect();
    // Said once the model is known to load (or was not needed: cached results are its too).
    let untuned = plan.untuned_warning().filter(|_| !items.is_empty());
    if pending.is_empty() {
        warnings.extend(untuned.map(Notice::run));
    } else {
        let backend = match plan.open() {
            Ok(backend) => backend,
            Err(e) => {
                without_model(&results, stats);
                return Err(e.into());
            }
        };
        warnings.extend(untuned.map(Notice::run));
        let analyzer = Analyzer::new(backend.clone(), args.options);
        let outcome = run_model(
            items,
            &pending,
            &analyzer,
            &mut cache,
            &mut results,
            warnings,
            emit,
        );
        stats.inference = backend.stats();
        if outcome.is_err() {
            // The model failed part way (an endpoint that cannot be reached): what is known is
            // still reported, beside the error.
            stats.analyzed = results.iter().flatten().count();
            emit(items.len(), &results);
        }
        // Keep what was computed even when a later step failed.
        if let Err(e) = cache.save() {
            warnings.push(Notice::run(format!(
                "cannot write the result cache in '{}' ({e}), so the next run analyses these functions again; make that directory writable, set XDG_CACHE_HOME to another directory, or pass --no-cache",
                cache_dir.display()
            )));
        }
        outcome?;
    }
    Ok(results)
}

/// How often a long run writes the result cache, so that an interrupted run (Ctrl-C, a killed
/// job) keeps all but the last few seconds of its work and the next run resumes from there.
const SAVE_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

fn run_model(
    items: &[Item],
    pending: &[usize],
    analyzer: &Analyzer,
    cache: &mut ResultCache,
    results: &mut [Option<(Outcome, bool)>],
    warnings: &mut Vec<Notice>,
    emit: &mut Emit,
) -> anyhow::Result<()> {
    let cancel = CancelToken::new();
    let threshold = analyzer.options().threshold;
    let bar = ProgressBar::new(pending.len() as u64);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} {pos}/{len} functions [{elapsed_precise} < {eta}] {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let mut saved = Instant::now();
    // Chunks of 8 functions, as many as the engine keeps prompts for their questions. Someone
    // reading a terminal gets 2, then 4 first, so that the first findings show within seconds
    // (a 50-function file's first after 2.0 s instead of 6.6 s, for 2-3% more in all:
    // BENCHMARKS.md); piped output (CI, pre-commit, an editor) keeps the throughput.
    let first: &[usize] = if std::io::IsTerminal::is_terminal(&std::io::stdout()) {
        &[2, 4]
    } else {
        &[]
    };
    let mut chunks = Vec::new();
    let mut rest = pending;
    while !rest.is_empty() {
        let size = first
            .get(chunks.len())
            .copied()
            .unwrap_or(8)
            .min(rest.len());
        let (chunk, after) = rest.split_at(size);
        chunks.push(chunk);
        rest = after;
    }
    for chunk in chunks {
        if saved.elapsed() >= SAVE_EVERY {
            // A failure here is reported by the final save.
            let _ = cache.save();
            saved = Instant::now();
        }
        // Decide for the functions that have no cached score.
        let undecided: Vec<usize> = chunk
            .iter()
            .copied()
            .filter(|&i| cache.get(&items[i].function.hash).is_none())
            .collect();
        let problems: Vec<String> = undecided
            .iter()
            .map(|&i| items[i].function.problem())
            .collect();
        let refs: Vec<&str> = problems.iter().map(String::as_str).collect();
        let scores = analyzer
            .decide_each(&refs, &cancel)
            .context("the model failed to score functions")?;
        for (&i, p_ask) in undecided.iter().zip(scores) {
            let item = &items[i];
            match p_ask {
                Ok(p_ask) => cache.put(
                    &item.function.hash,
                    Outcome {
                        p_ask: analysis::with_examples(p_ask, item.examples.as_ref()),
                        questions: None,
                    },
                ),
                Err(e) => warnings.push(Notice::line(
                    &item.path,
                    item.function.name_span.start.line as usize + 1,
                    format!("{} not analysed: {e}", item.function.qualname),
                )),
            }
        }
        // The questions of the chunk's flagged functions, generated together.
        let flagged: Vec<usize> = chunk
            .iter()
            .copied()
            .filter(|&i| {
                cache
                    .get(&items[i].function.hash)
                    .is_some_and(|o| o.p_ask >= threshold && o.questions.is_none())
            })
            .collect();
        let problems: Vec<String> = flagged
            .iter()
            .map(|&i| items[i].function.problem())
            .collect();
        let refs: Vec<&str> = problems.iter().map(String::as_str).collect();
        for (&i, questions) in flagged.iter().zip(analyzer.questions_many(&refs, &cancel)) {
            let f = &items[i].function;
            let questions =
                questions.with_context(|| format!("the model failed on {}", f.qualname))?;
            let mut outcome = cache.get(&f.hash).cloned().expect("decided above");
            outcome.questions = Some(questions);
            cache.put(&f.hash, outcome);
        }
        for &i in chunk {
            results[i] = cache
                .get(&items[i].function.hash)
                .map(|outcome| (outcome.clone(), false));
            bar.inc(1);
        }
        // `pending` ascends: this chunk's last item and everything before it are done.
        if let Some(&last) = chunk.last() {
            bar.suspend(|| emit(last + 1, results));
        }
    }
    bar.finish_and_clear();
    Ok(())
}

/// Writes to standard output. A reader that closed the pipe (`| head`) only ends the printing:
/// the exit code still says what was found.
pub fn print_stdout(text: &str) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(std::io::Error::new(
            e.kind(),
            format!("cannot write the output to standard output: {e}"),
        )),
        r => r,
    }
}

/// Python files under the given paths: directories are walked (respecting .gitignore and
/// `.ignore`, skipping hidden files and directories, not following symbolic links), files given
/// explicitly are always taken; a file named twice (`a.py ./a.py`) once. A virtual environment
/// found in a directory (one that holds `pyvenv.cfg`, or `conda-meta`) is installed packages, not
/// the project's code: it is skipped and named in `environments`, unless it was given itself.
pub(crate) fn collect_files(
    paths: &[PathBuf],
    errors: &mut Vec<String>,
    environments: &mut Vec<PathBuf>,
) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for path in paths {
        if path.is_file() {
            files.push(path.clone());
            continue;
        }
        if path.as_os_str() == "-" {
            errors.push(
                "-: reading from standard input is not supported; give files or directories"
                    .to_string(),
            );
            continue;
        }
        if !path.is_dir() {
            errors.push(match std::fs::metadata(path) {
                Ok(_) => format!(
                    "{}: not a regular file or a directory (a pipe or a device); give .py files or directories",
                    path.display()
                ),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    format!("{}: no such file or directory", path.display())
                }
                Err(e) => format!("{}: cannot read: {e}", path.display()),
            });
            continue;
        }
        let found = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let skipped = found.clone();
        let walker = ignore::WalkBuilder::new(path)
            .require_git(false)
            .filter_entry(move |e| {
                let environment = e.depth() > 0
                    && e.file_type().is_some_and(|t| t.is_dir())
                    && (e.path().join("pyvenv.cfg").is_file()
                        || e.path().join("conda-meta").is_dir());
                if environment {
                    skipped.lock().unwrap().push(e.path().to_path_buf());
                }
                !environment
            })
            .build();
        for entry in walker {
            match entry {
                Ok(e) if e.file_type().is_some_and(|t| t.is_file()) && is_python(e.path()) => {
                    files.push(e.into_path());
                }
                Ok(_) => {}
                Err(e) => errors.push(format!("{e}")),
            }
        }
        environments.append(&mut found.lock().unwrap());
    }
    environments.sort();
    files.sort();
    files.dedup();
    let mut seen = std::collections::HashSet::new();
    files.retain(|f| seen.insert(std::fs::canonicalize(f).unwrap_or_else(|_| f.clone())));
    files
}

fn is_python(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "py")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn github_commands_and_sarif_uris_escape_what_their_readers_would_misread() {
        assert_eq!(github_data("50% off\r\nthen"), "50%25 off%0D%0Athen");
        assert_eq!(
            github_property("a/b.py: x, y"),
            "a/b.py%3A x%2C y",
            "`:` and `,` end a property"
        );
        assert_eq!(sarif_uri("app/my file#1.py"), "app/my%20file%231.py");
        assert_eq!(sarif_uri("/srv/ü.py"), "file:///srv/%C3%BC.py");
        assert_eq!(sarif_uri("app\\b.py"), "app/b.py");
        let d = Diagnostic {
            path: "./app/b,c.py".into(),
            line: 3,
            column: 5,
            function: "Cart.total".into(),
            score: 0.8,
            questions: vec![],
            cached: false,
        };
        assert_eq!(
            d.github_line(),
            "::warning file=app/b%2Cc.py,line=3,col=5,title=clarify[score=0.80] Cart.total::\
             The model would rather ask than code, but gave no question"
        );
    }

    #[test]
    fn a_warning_about_a_file_is_shown_on_that_file() {
        let run = Notice::run("no Python files found");
        assert_eq!(run.to_string(), "no Python files found");
        assert_eq!(
            run.github_line(),
            "::warning title=clarifycoder::no Python files found"
        );
        assert!(run.sarif_notification().get("locations").is_none());

        let file = Notice::file("./app/a,b.py", "skipped, not valid UTF-8");
        assert_eq!(file.to_string(), "./app/a,b.py: skipped, not valid UTF-8");
        assert_eq!(
            file.github_line(),
            "::warning file=app/a%2Cb.py,title=clarifycoder::skipped, not valid UTF-8"
        );

        let line = Notice::line("app/c.py", 12, "Cart.total not analysed: too long");
        assert_eq!(
            line.to_string(),
            "app/c.py:12: Cart.total not analysed: too long"
        );
        assert_eq!(
            line.github_line(),
            "::warning file=app/c.py,line=12,title=clarifycoder::Cart.total not analysed: too long"
        );
        let location = &line.sarif_notification()["locations"][0]["physicalLocation"];
        assert_eq!(location["artifactLocation"]["uri"], "app/c.py");
        assert_eq!(location["region"]["startLine"], 12);
        // The JSON output keeps its strings.
        assert_eq!(
            serde_json::to_value(&line).unwrap(),
            "app/c.py:12: Cart.total not analysed: too long"
        );
    }
}
