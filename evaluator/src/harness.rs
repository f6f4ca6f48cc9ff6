//! Running generated Python against test cases, contained by `core::sandbox`.
//!
//! One program's cases all run in one sandboxed Python process ([`Harness::run_cases`]): a small
//! driver ([`DRIVER`]) loads the code into a fresh module, finds the function and runs each case
//! with its own timer, reporting each result as soon as it has it on a private copy of stdout
//! (the program's own stdout and stderr go to `/dev/null`). When the process dies part-way
//! (a crash, `os._exit`, a timeout that Python could not interrupt), the cases already reported
//! keep their results, the case in progress is recorded as a timeout or an error, and the rest run
//! in a fresh process, within a time budget for the whole program.
//!
//! Containment is the sandbox's (fresh directory, cleared environment, rlimits, its own process
//! group killed at the end, no network where `unshare -n` works, `nobody` when we are root) plus
//! what the driver adds before it runs the program: a Landlock ruleset where the kernel has one
//! (files: read anywhere, write only inside the sandbox directory; TCP connect and bind refused;
//! no signals to processes outside), `no_new_privs`, and after each case every process the case
//! left behind is killed.

use clarifycoder_core::sandbox::{network_isolated, run_python, Limits, Outcome, Status};
use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant};

/// One HumanEvalComm test case. `input` is usually a string of Python call arguments
/// (`"[1, 2], 3"`), `output` the expected result as Python literal text (`"True"`); one problem
/// has non-string JSON values (a list input and a float output).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TestCase {
    /// Call arguments as Python source text, or a JSON value passed as the only argument.
    pub input: serde_json::Value,
    /// Expected result as Python literal text (string outputs usually unquoted), or a JSON value.
    pub output: serde_json::Value,
    /// `==`, or a Python expression or snippet that decides the case (see [`Harness::run_cases`]).
    #[serde(default = "equals")]
    pub relation: String,
}

fn equals() -> String {
    "==".to_string()
}

/// The outcome of one test case.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum CaseStatus {
    /// The result matched.
    Passed,
    /// The function returned something else; `got` is its `repr` (its `str` with `compat`),
    /// cut to about 1000 characters.
    Failed {
        /// What the function returned.
        got: String,
    },
    /// The function (or loading the program, or the test input) raised, or the process died
    /// during this case.
    Error {
        /// `Type: message (line N)`, or why the case did not run.
        error: String,
    },
    /// The case ran past its time limit.
    Timeout,
    /// The case's relation expression itself could not be evaluated.
    RelationError {
        /// What the relation raised.
        error: String,
    },
}

/// What happened to one program.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProgramResult {
    /// One per test case, in order (all `Error`/`Timeout` when the program could not load).
    pub cases: Vec<CaseStatus>,
    /// Syntax error, no function found, a crash or kill (with the case it happened in), ...
    pub program_error: Option<String>,
    /// Wall time for the whole program, restarts included.
    pub elapsed_ms: u64,
}

impl ProgramResult {
    /// Cases passed.
    pub fn passed(&self) -> usize {
        self.cases
            .iter()
            .filter(|c| matches!(c, CaseStatus::Passed))
            .count()
    }

    /// There was at least one case and every case passed.
    pub fn all_passed(&self) -> bool {
        !self.cases.is_empty() && self.passed() == self.cases.len()
    }

    /// Passed cases over all cases (0 when there are none).
    pub fn pass_fraction(&self) -> f64 {
        if self.cases.is_empty() {
            0.0
        } else {
            self.passed() as f64 / self.cases.len() as f64
        }
    }
}

/// Runs programs in the sandbox.
#[derive(Debug, Clone)]
pub struct Harness {
    /// The interpreter. As root with `limits.drop_privileges`, `nobody` must be able to run it.
    pub python: String,
    /// Sandbox limits. `timeout` and `cpu_seconds` are replaced per run, computed from
    /// `per_case_timeout` and the number of cases.
    pub limits: Limits,
    /// Time limit of each test case (and of loading the program; of the whole program in
    /// [`Harness::run_program`]).
    pub per_case_timeout: Duration,
    /// Compare like the benchmark's own harness: `str(result).strip() == expected.strip()`.
    pub compat: bool,
}

impl Default for Harness {
    fn default() -> Harness {
        Harness::new()
    }
}

/// Extra wall time per run for starting Python and reporting.
const RUN_SLACK: Duration = Duration::from_secs(5);
/// Runs shorter than this are not started.
const MIN_RUN: Duration = Duration::from_millis(500);
/// Attempts to start a sandbox when the process limit is momentarily exhausted.
const SPAWN_ATTEMPTS: u32 = 5;
/// Name of the driver's input file in the sandbox directory (deleted once read).
const INPUT_FILE: &str = "harness_input.json";

impl Harness {
    /// Defaults: privileges dropped to `nobody` when root (interpreter `/usr/bin/python3` then,
    /// else `python3`), 2 GiB address space, 64 processes, 16 MiB files, 3 s per case.
    pub fn new() -> Harness {
        Harness {
            python: default_python(),
            limits: Limits {
                timeout: Duration::from_secs(10),
                memory_bytes: 2 << 30,
                cpu_seconds: 10,
                processes: 64,
                file_bytes: 16 << 20,
                output_bytes: 4 << 20,
                drop_privileges: true,
            },
            per_case_timeout: Duration::from_secs(3),
            compat: false,
        }
    }

    /// Wall-clock limit of one run over `cases` cases: a timer for loading and one per case,
    /// plus slack for starting Python.
    fn run_timeout(&self, cases: usize) -> Duration {
        self.per_case_timeout * (cases as u32).saturating_add(1) + RUN_SLACK
    }

    /// All cases of one program in one sandboxed process, each with its own timeout.
    ///
    /// The code is executed as module `solution` (so `if __name__ == "__main__"` blocks do not
    /// run); the function is `entry_point`, else `candidate` (modified prompts rename it), else
    /// the only top-level function, else a method of that name on a top-level class. For each
    /// case the arguments are the string input evaluated as call arguments (`"1, b=2"`; empty
    /// means none) or the non-string input as the only argument.
    ///
    /// Relation `==`: with `compat`, `str(result).strip() == expected.strip()` (a non-string
    /// expected value is compared as its `repr`), exactly the benchmark harness's `print` and
    /// compare. Otherwise the expected text is evaluated (`ast.literal_eval`, then `eval`) and
    /// compared by value, numbers with `math.isclose(rel_tol=1e-6, abs_tol=1e-9)` inside lists,
    /// tuples and dicts too; a string result also passes when it equals the expected text (the
    /// benchmark stores string outputs unquoted); an expected text that does not evaluate is
    /// compared with `str(result)`, both stripped.
    ///
    /// Any other relation is Python: `$input$` becomes the input's source text, `$output$`
    /// `output`, `$demo$` after `from`/`import` the solution's module and elsewhere `expected`.
    /// An expression passes when truthy (with `compat`, when its `str` is `True`); statements
    /// pass when what they `print` is `True`, as in the benchmark. The function is called with
    /// the case's arguments first (so `output` is its result), and the relation sees
    /// `candidate`/the entry point, `inputs` (the argument tuple), `output`, `expected`, `math`.
    /// An exception from the function inside the relation is an `Error`; any other exception
    /// from the relation is a `RelationError`.
    pub fn run_cases(&self, code: &str, entry_point: &str, cases: &[TestCase]) -> ProgramResult {
        let started = Instant::now();
        let n = cases.len();
        // Whatever happens (restarts after crashes), a program gets at most twice a single run.
        let budget = self.run_timeout(n) * 2;
        let mut statuses: Vec<Option<CaseStatus>> = vec![None; n];
        let mut notes: Vec<String> = Vec::new();
        let mut start = 0;
        loop {
            let wall = self
                .run_timeout(n - start)
                .min(budget.saturating_sub(started.elapsed()));
            if wall < MIN_RUN {
                notes.push(format!(
                    "the program's time budget was spent before case {}",
                    start + 1
                ));
                break;
            }
            let input = serde_json::json!({
                "mode": "cases",
                "code": code,
                "entry_point": entry_point,
                "cases": &cases[start..],
                "first": start,
            });
            let run = match self.execute(input, wall) {
                Ok(run) => run,
                Err(error) => {
                    fill(
                        &mut statuses[start..],
                        &CaseStatus::Error {
                            error: error.clone(),
                        },
                    );
                    notes.push(error);
                    break;
                }
            };
            for (i, status) in run.cases.iter().cloned() {
                if let Some(slot) = statuses.get_mut(i) {
                    slot.get_or_insert(status);
                }
            }
            if let Some((error, status)) = &run.fatal {
                fill(&mut statuses[start..], status);
                notes.push(error.clone());
                break;
            }
            if run.truncated {
                notes.push("the harness output hit its limit".to_string());
            }
            if run.done {
                break;
            }
            let Some(k) = (start..n).find(|&i| statuses[i].is_none()) else {
                break;
            };
            if let Some(reason) = &run.restart {
                notes.push(format!("{reason}; later cases ran in a new process"));
                start = k;
                continue;
            }
            let (why, timed_out) = run.death();
            if !run.loaded {
                let status = if timed_out {
                    CaseStatus::Timeout
                } else {
                    CaseStatus::Error {
                        error: format!("the process {why} while loading the program"),
                    }
                };
                fill(&mut statuses[start..], &status);
                notes.push(format!("the process {why} while loading the program"));
                break;
            }
            statuses[k] = Some(if timed_out {
                CaseStatus::Timeout
            } else {
                CaseStatus::Error {
                    error: format!("the process {why} during this case"),
                }
            });
            notes.push(format!("case {}: the process {why}", k + 1));
            start = k + 1;
            if start >= n {
                break;
            }
        }
        let cases = statuses
            .into_iter()
            .map(|s| {
                s.unwrap_or_else(|| CaseStatus::Error {
                    error: "not run: the program ran out of time".to_string(),
                })
            })
            .collect();
        ProgramResult {
            cases,
            program_error: (!notes.is_empty()).then(|| notes.join("; ")),
            elapsed_ms: started.elapsed().as_millis() as u64,
        }
    }

    /// HumanEval style: `program` is prompt + completion + test + `check(entry_point)`, run as
    /// module `solution` under one `per_case_timeout`. `cases` is `[Passed]` when it finishes,
    /// `[Failed]` when it raises `AssertionError` (`got` is the assertion), `[Error]` for any
    /// other exception, `[Timeout]`; a syntax error is also a `program_error`.
    pub fn run_program(&self, program: &str) -> ProgramResult {
        let started = Instant::now();
        let input = serde_json::json!({ "mode": "program", "code": program });
        let (status, program_error) = match self.execute(input, self.run_timeout(1)) {
            Err(error) => (
                CaseStatus::Error {
                    error: error.clone(),
                },
                Some(error),
            ),
            Ok(run) => {
                if let Some((error, status)) = &run.fatal {
                    (status.clone(), Some(error.clone()))
                } else if let Some((_, status)) = run.cases.first() {
                    (status.clone(), None)
                } else {
                    let (why, timed_out) = run.death();
                    let status = if timed_out {
                        CaseStatus::Timeout
                    } else {
                        CaseStatus::Error {
                            error: format!("the process {why}"),
                        }
                    };
                    (status, Some(format!("the process {why}")))
                }
            }
        };
        ProgramResult {
            cases: vec![status],
            program_error,
            elapsed_ms: started.elapsed().as_millis() as u64,
        }
    }

    /// Bounded parallelism over many jobs (threads; results in input order).
    pub fn run_many<T: Sync, R: Send>(
        jobs: &[T],
        parallelism: usize,
        f: impl Fn(&T) -> R + Sync,
    ) -> Vec<R> {
        let workers = parallelism.max(1).min(jobs.len());
        if workers <= 1 {
            return jobs.iter().map(&f).collect();
        }
        let next = std::sync::atomic::AtomicUsize::new(0);
        let parts: Vec<Vec<(usize, R)>> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..workers)
                .map(|_| {
                    scope.spawn(|| {
                        let mut done = Vec::new();
                        loop {
                            let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            let Some(job) = jobs.get(i) else { break };
                            done.push((i, f(job)));
                        }
                        done
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
                })
                .collect()
        });
        let mut slots: Vec<Option<R>> = (0..jobs.len()).map(|_| None).collect();
        for (i, r) in parts.into_iter().flatten() {
            slots[i] = Some(r);
        }
        slots
            .into_iter()
            .map(|r| r.expect("every job ran"))
            .collect()
    }

    /// Starts the interpreter once in the sandbox with an empty program. `Err` says why it
    /// cannot run programs (not found, not executable as `nobody` when root, or not a Python
    /// that runs the driver): every test would fail for that reason instead.
    pub fn check_python(&self) -> Result<(), String> {
        let input = serde_json::json!({ "mode": "program", "code": "" });
        let run = self.execute(input, self.run_timeout(1))?;
        if run.ready && run.done {
            return Ok(());
        }
        let (why, _) = run.death();
        Err(format!(
            "{} cannot run the test harness: the process {why}",
            self.python
        ))
    }

    /// The Landlock ABI the driver could apply in this sandbox (`None`: not available, so files
    /// are protected only by ownership and, as root, by running as `nobody`). Starts Python.
    pub fn landlock_abi(&self) -> Option<u32> {
        let input = serde_json::json!({ "mode": "program", "code": "" });
        self.execute(input, self.run_timeout(1))
            .ok()
            .and_then(|run| run.landlock)
    }

    /// One sandboxed run of the driver; `input` gets the settings every run shares.
    fn execute(&self, mut input: serde_json::Value, wall: Duration) -> Result<Run, String> {
        let marker = format!("\u{1e}harness-{}:", nonce());
        input["marker"] = marker.clone().into();
        input["per_case"] = self.per_case_timeout.as_secs_f64().into();
        input["compat"] = self.compat.into();
        let input = serde_json::to_vec(&input).map_err(|e| format!("harness input: {e}"))?;
        let limits = Limits {
            timeout: wall,
            cpu_seconds: wall.as_secs() + 1,
            ..self.limits
        };
        let files: [(&str, &[u8]); 1] = [(INPUT_FILE, &input)];
        let mut attempt = 0;
        let outcome = loop {
            match run_python(&self.python, DRIVER, &files, &limits) {
                Ok(outcome) => break outcome,
                // The process limit is per user: other sandboxes may hold it for a moment.
                Err(e) if e.raw_os_error() == Some(11) && attempt + 1 < SPAWN_ATTEMPTS => {
                    attempt += 1;
                    std::thread::sleep(Duration::from_millis(100 << attempt));
                }
                Err(e)
                    if e.kind() == std::io::ErrorKind::PermissionDenied
                        && self.limits.drop_privileges =>
                {
                    return Err(format!(
                        "could not run {}: {e} (as root the sandbox runs it as nobody, who must \
                         be able to execute it, e.g. /usr/bin/python3)",
                        self.python
                    ))
                }
                Err(e) => return Err(format!("could not run {}: {e}", self.python)),
            }
        };
        Ok(Run::parse(outcome, &marker))
    }
}

fn fill(slots: &mut [Option<CaseStatus>], status: &CaseStatus) {
    for slot in slots.iter_mut().filter(|s| s.is_none()) {
        *slot = Some(status.clone());
    }
}

/// A sentence for reports saying whether generated code ran without network.
pub fn network_note() -> &'static str {
    if network_isolated() {
        "Generated code ran without network access: every run had its own empty network namespace."
    } else {
        "Generated code was not network-isolated (no network namespace could be created); \
         outgoing TCP was refused only where the kernel supports Landlock ABI 4 or later."
    }
}

/// What the driver reported during one run.
#[derive(Debug, Deserialize)]
#[serde(tag = "ev", rename_all = "snake_case")]
enum Event {
    Ready { landlock: Option<u32> },
    Loaded,
    Fatal { error: String, case: CaseStatus },
    Case { i: usize, result: CaseStatus },
    Restart { reason: String },
    Done,
}

/// One run, parsed.
#[derive(Debug)]
struct Run {
    outcome: Outcome,
    ready: bool,
    landlock: Option<u32>,
    loaded: bool,
    fatal: Option<(String, CaseStatus)>,
    cases: Vec<(usize, CaseStatus)>,
    restart: Option<String>,
    done: bool,
    truncated: bool,
}

impl Run {
    fn parse(outcome: Outcome, marker: &str) -> Run {
        let mut run = Run {
            ready: false,
            landlock: None,
            loaded: false,
            fatal: None,
            cases: Vec::new(),
            restart: None,
            done: false,
            truncated: outcome.truncated,
            outcome,
        };
        for line in run.outcome.stdout.lines() {
            let Some(json) = line.strip_prefix(marker) else {
                continue;
            };
            // A line cut by the output cap does not parse and is skipped.
            match serde_json::from_str::<Event>(json) {
                Ok(Event::Ready { landlock }) => {
                    run.ready = true;
                    run.landlock = landlock;
                }
                Ok(Event::Loaded) => run.loaded = true,
                Ok(Event::Fatal { error, case }) => run.fatal = Some((error, case)),
                Ok(Event::Case { i, result }) => run.cases.push((i, result)),
                Ok(Event::Restart { reason }) => run.restart = Some(reason),
                Ok(Event::Done) => run.done = true,
                Err(_) => {}
            }
        }
        run
    }

    /// How the process ended without reporting everything ("was killed by ..."), and whether
    /// that counts as a timeout.
    fn death(&self) -> (String, bool) {
        let (mut why, timed_out) = match self.outcome.status {
            Status::TimedOut => ("was killed at the wall-clock timeout".to_string(), true),
            Status::Signaled(24) => ("ran out of CPU time (SIGXCPU)".to_string(), true),
            Status::Signaled(14) => ("was killed by its timer (SIGALRM)".to_string(), true),
            Status::Signaled(signal) => (
                format!("was killed by signal {signal}{}", signal_name(signal)),
                false,
            ),
            Status::Exited(code) => (format!("exited with code {code} before reporting"), false),
        };
        if !self.ready {
            let tail = tail(self.outcome.stderr.trim(), 400);
            if !tail.is_empty() {
                why = format!("{why} ({tail})");
            }
        }
        (why, timed_out)
    }
}

fn signal_name(signal: i32) -> &'static str {
    match signal {
        4 => " (SIGILL)",
        6 => " (SIGABRT)",
        7 => " (SIGBUS)",
        8 => " (SIGFPE)",
        9 => " (SIGKILL)",
        11 => " (SIGSEGV)",
        15 => " (SIGTERM)",
        25 => " (SIGXFSZ)",
        _ => "",
    }
}

fn tail(text: &str, chars: usize) -> String {
    let count = text.chars().count();
    if count <= chars {
        text.to_string()
    } else {
        format!(
            "...{}",
            text.chars().skip(count - chars).collect::<String>()
        )
    }
}

/// A marker no program output can guess: result lines start with it.
fn nonce() -> String {
    use std::hash::BuildHasher;
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let hash = std::collections::hash_map::RandomState::new().hash_one((n, nanos));
    format!("{hash:016x}")
}

/// `/usr/bin/python3` when we are root (the sandbox then runs it as `nobody`, who usually cannot
/// run a root-owned pyenv or virtual-environment interpreter), else `python3` from `PATH`.
fn default_python() -> String {
    let root = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(2) == Some("0"))
        })
        .unwrap_or(false);
    if root {
        for python in ["/usr/bin/python3", "/usr/local/bin/python3"] {
            if std::path::Path::new(python).exists() {
                return python.to_string();
            }
        }
    }
    "python3".to_string()
}

/// The Python driver, run as `main.py` in the sandbox directory. It reads `harness_input.json`
/// (deleting it, so the program cannot read the expected outputs), keeps a private copy of the
/// real stdout for its report lines, points fds 1 and 2 at `/dev/null` and `sys.stdout`/`stderr`
/// at sinks, applies Landlock, loads the program and runs the cases. Every report line is the
/// marker followed by one JSON event: `ready`, `loaded`, `case`, `fatal`, `restart`, `done`.
const DRIVER: &str = include_str!("driver.py");
