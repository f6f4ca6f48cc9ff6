//! Running a docstring's examples against the function's own code.
//!
//! A doctest whose expected output the code does not produce is a contradiction no model has to
//! guess at: the example or the code is wrong, and the author should say which. Examples that run
//! and agree are evidence the other way: the docstring shows what the function does. The
//! analyzer uses both ([`crate::analysis::with_examples`]).
//!
//! This executes the user's code, so it is opt-in (`check --run-examples`, the `runExamples`
//! setting; the VS Code extension turns it on in trusted workspaces only) and runs in
//! [`crate::sandbox`]: a temporary working directory, a cleared environment, resource limits and a
//! timeout. Of the file, only top-level imports, `def`s, `class`es and assignments of literal values
//! are executed, each on its own; an example that cannot run here (a missing import, a name defined
//! elsewhere, an unfinished function) tells nothing and is left out.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use crate::python::{self, Function};
use crate::sandbox::{self, Limits};
use serde::Deserialize;

const HARNESS: &str = include_str!("examples/harness.py");
/// The harness's result line starts with this (`MARK` there).
const MARK: &str = "\0clarifycoder-examples\0";

/// What a function's examples showed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// All of them ran and printed what the docstring says.
    Agree {
        /// How many examples ran.
        examples: usize,
    },
    /// At least one printed something else or raised.
    Disagree(Vec<Mismatch>),
}

/// One example whose result is not the documented one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    /// The example's code, e.g. `total_price([2.0, 3.5], [3, 2])`.
    pub source: String,
    /// What the docstring says it prints.
    pub want: String,
    /// What the code did.
    pub got: Got,
}

/// What the code did with an example.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Got {
    /// Printed this.
    Output(String),
    /// Raised an exception of this type.
    Raised(String),
}

impl Verdict {
    /// A short stable text of the verdict, folded into a function's cache key.
    pub fn fingerprint(&self) -> String {
        let text = match self {
            Verdict::Agree { examples } => format!("agree {examples}"),
            Verdict::Disagree(ms) => ms
                .iter()
                .map(|m| {
                    let got = match &m.got {
                        // An object's address changes from run to run; the verdict does not.
                        Got::Output(s) => format!("out {}", mask_addresses(s)),
                        Got::Raised(s) => format!("raised {s}"),
                    };
                    format!("{}\0{}\0{}\0", m.source, m.want, got)
                })
                .collect(),
        };
        python::hex_sha256(&text)[..16].to_string()
    }

    /// The questions a disagreement asks, one per example (none when they agree).
    pub fn questions(&self, function: &str) -> Vec<String> {
        let Verdict::Disagree(ms) = self else {
            return Vec::new();
        };
        ms.iter()
            .map(|m| {
                let call = one_line(&m.source);
                let want = one_line(&m.want);
                let did = match &m.got {
                    Got::Output(s) if s.trim().is_empty() => "prints nothing".to_string(),
                    Got::Output(s) => format!("gives `{}`", one_line(s)),
                    Got::Raised(e) => format!("raises {e}"),
                };
                format!(
                    "The example `{call}` expects `{want}`, but the code of `{function}` {did}; which is right, the example or the code?"
                )
            })
            .collect()
    }
}

/// `0x7f3a…` hexadecimal numbers (object addresses in a repr) replaced by `0x_`.
fn mask_addresses(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(at) = rest.find("0x") {
        out.push_str(&rest[..at + 2]);
        rest = &rest[at + 2..];
        let digits = rest
            .find(|c: char| !c.is_ascii_hexdigit())
            .unwrap_or(rest.len());
        if digits > 0 {
            out.push('_');
        }
        rest = &rest[digits..];
    }
    out.push_str(rest);
    out
}

/// The interpreter's path: a bare name is looked up on this process's `PATH` (the user's, with
/// an activated virtual environment), since the sandbox runs with a minimal one; a relative path
/// is taken from the current directory.
pub fn interpreter(python: &str) -> String {
    if python.contains('/') {
        return std::path::absolute(python)
            .map(|p| p.display().to_string())
            .unwrap_or_else(|_| python.to_string());
    }
    std::env::var_os("PATH")
        .and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|dir| dir.join(python))
                .find(|candidate| candidate.is_file())
        })
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| python.to_string())
}

/// Code on one line, shortened for a diagnostic.
pub(crate) fn one_line(s: &str) -> String {
    let joined = s.split_whitespace().collect::<Vec<_>>().join(" ");
    const MAX: usize = 80;
    if joined.chars().count() <= MAX {
        joined
    } else {
        let cut: String = joined.chars().take(MAX - 1).collect();
        format!("{cut}…")
    }
}

/// Whether a function has examples worth running: a docstring with a `>>>` prompt, at the top
/// level or directly in a top-level class.
pub fn has_examples(f: &Function) -> bool {
    let nested = f.qualname.matches('.').count();
    let placed = (nested == 0 && !f.is_method) || (nested == 1 && f.is_method);
    placed
        && f.docstring
            .as_ref()
            .is_some_and(|d| d.text.lines().any(|l| l.trim_start().starts_with(">>>")))
}

/// How long one function's examples may run before they are stopped and the next function's
/// run.
pub const FUNCTION_TIMEOUT: Duration = Duration::from_secs(2);

/// How long one file's examples may run, imports included.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// What running a file's examples gave.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Ran {
    /// One entry per function, in order: its verdict when its examples could run.
    pub verdicts: Vec<Option<Verdict>>,
    /// Functions whose examples were stopped, each with why (`` `spin` (line 3): they ran past
    /// 2 s``); they have no verdict, and the others' stand.
    pub stopped: Vec<String>,
}

/// Runs the examples of `functions` (those for which [`has_examples`] holds) in the file `source`,
/// which lives in `dir` (put on Python's path so that it can import its neighbours): a verdict
/// per function whose examples could run, and the functions whose examples were stopped (past
/// [`FUNCTION_TIMEOUT`], or running when the file ran past [`TIMEOUT`] or Python ended). `python`
/// is the interpreter. A file that cannot be run at all is an error that says why.
///
/// A function defined twice under one name is run only as its last definition (the one the module
/// keeps); the earlier one has no verdict.
pub fn run(
    python: &str,
    source: &str,
    dir: Option<&Path>,
    functions: &[&Function],
) -> Result<Ran, String> {
    // One `qualname<TAB>line` per function with examples; the line (1-based, of `def`) tells
    // apart two definitions of one name.
    let key = |f: &Function| format!("{}\t{}", f.qualname, f.def_span.start.line + 1);
    let targets: Vec<String> = functions
        .iter()
        .filter(|f| has_examples(f))
        .map(|f| key(f))
        .collect();
    if targets.is_empty() {
        return Ok(Ran {
            verdicts: vec![None; functions.len()],
            stopped: Vec::new(),
        });
    }
    let targets = targets.join("\n");
    let python = interpreter(python);
    let python = python.as_str();
    let syspath = dir.map(|d| d.display().to_string()).unwrap_or_default();
    let limits = Limits {
        timeout: TIMEOUT,
        // Address space, not memory used: numerical libraries reserve a lot of it at import.
        memory_bytes: 4 << 30,
        cpu_seconds: TIMEOUT.as_secs(),
        ..Limits::default()
    };
    let outcome = sandbox::run_python(
        python,
        HARNESS,
        &[
            ("module.py", source.as_bytes()),
            ("targets.txt", targets.as_bytes()),
            ("syspath.txt", syspath.as_bytes()),
            (
                "budget.txt",
                FUNCTION_TIMEOUT.as_secs_f64().to_string().as_bytes(),
            ),
        ],
        &limits,
    )
    .map_err(|e| format!("cannot start {python} ({e}); set the Python interpreter to use: `--python`, `python = ...` in the configuration file, or the editor's `python` setting"))?;
    let (mut done, mut stopped) = (HashMap::new(), Vec::new());
    let (mut running, mut ended, mut heard) = (None, false, false);
    for line in outcome.stdout.lines().filter_map(|l| l.strip_prefix(MARK)) {
        // A line cut by the output cap or a kill says nothing; the others stand.
        let Ok(line) = serde_json::from_str::<Line>(line) else {
            continue;
        };
        heard = true;
        if let Some(key) = line.start {
            running = Some(key);
        } else if let (Some(key), Some(events)) = (line.done, line.events) {
            running = None;
            done.insert(key, events);
        } else if let Some(key) = line.slow {
            running = None;
            stopped.push(format!(
                "{}: they ran past {} s",
                shown(&key),
                FUNCTION_TIMEOUT.as_secs()
            ));
        } else if line.end {
            ended = true;
        }
    }
    if !ended {
        let why = match outcome.status {
            sandbox::Status::TimedOut => format!("they ran past {} s", TIMEOUT.as_secs()),
            // The CPU limit (as many seconds as the wall clock's).
            sandbox::Status::Signaled(libc::SIGXCPU) => {
                format!("they used {} s of CPU time", TIMEOUT.as_secs())
            }
            // The kernel at the CPU limit (soft and hard alike), or the code itself.
            sandbox::Status::Signaled(libc::SIGKILL) => format!(
                "{python} was killed (SIGKILL: the {} s CPU-time limit, or the code itself)",
                TIMEOUT.as_secs()
            ),
            _ if outcome.truncated => "they printed more than the output limit".to_string(),
            _ => {
                let last = outcome.stderr.lines().last().unwrap_or("no output");
                format!("{python} failed: {last}")
            }
        };
        match running {
            Some(key) => stopped.push(format!("{}: {why}", shown(&key))),
            // Nothing had started: the file itself (its imports) is the cause.
            None if !heard => return Err(why),
            None => stopped.push(format!("the rest: {why}")),
        }
    }
    Ok(Ran {
        verdicts: functions
            .iter()
            .map(|f| done.remove(&key(f)).map(verdict))
            .collect(),
        stopped,
    })
}

/// A target (`qualname<TAB>line`) as a user reads it: `` `spin` (line 3)``.
fn shown(key: &str) -> String {
    match key.split_once('\t') {
        Some((name, line)) => format!("`{name}` (line {line})"),
        None => format!("`{key}`"),
    }
}

/// One of the harness's lines.
#[derive(Deserialize, Default)]
#[serde(default)]
struct Line {
    start: Option<String>,
    done: Option<String>,
    events: Option<Vec<Event>>,
    slow: Option<String>,
    end: bool,
}

#[derive(Deserialize)]
struct Event {
    kind: String,
    #[serde(default)]
    source: String,
    #[serde(default)]
    want: String,
    #[serde(default)]
    got: String,
}

fn verdict(events: Vec<Event>) -> Verdict {
    let examples = events.len();
    let mismatches: Vec<Mismatch> = events
        .into_iter()
        .filter(|e| e.kind != "ok")
        .map(|e| Mismatch {
            source: e.source.trim_end().to_string(),
            want: e.want.trim_end().to_string(),
            got: if e.kind == "raised" {
                Got::Raised(e.got)
            } else {
                Got::Output(e.got.trim_end().to_string())
            },
        })
        .collect();
    if mismatches.is_empty() {
        Verdict::Agree { examples }
    } else {
        Verdict::Disagree(mismatches)
    }
}

/// A function's cache key with its examples' verdict folded in, so that a result computed under
/// one verdict is never served under another.
pub fn keyed(hash: &str, verdict: Option<&Verdict>) -> String {
    match verdict {
        None => hash.to_string(),
        Some(v) => python::hex_sha256(&format!("{hash}\0examples\0{}", v.fingerprint())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// [`run`] on every function of `source`.
    fn run_source(
        python: &str,
        source: &str,
        dir: Option<&Path>,
    ) -> Result<Vec<Option<Verdict>>, String> {
        let parsed = python::extract(source);
        let functions: Vec<&Function> = parsed.functions.iter().collect();
        let ran = run(python, source, dir, &functions)?;
        assert_eq!(ran.stopped, Vec::<String>::new(), "stopped");
        Ok(ran.verdicts)
    }

    /// Verdicts by qualified name (the test files define each name once).
    fn run_file(source: &str) -> HashMap<String, Verdict> {
        let parsed = python::extract(source);
        let verdicts = run_source("python3", source, None).expect("python3 runs");
        parsed
            .functions
            .iter()
            .zip(verdicts)
            .filter_map(|(f, v)| Some((f.qualname.clone(), v?)))
            .collect()
    }

    #[test]
    fn an_example_the_code_disagrees_with_is_a_mismatch_and_asks_which_is_right() {
        let source = r#"
import math

RATE = 0.5

def half(x):
    """Half of x, rounded down.

    >>> half(5)
    3
    >>> half(4)
    2
    """
    return math.floor(x * RATE)

def double(x):
    """Twice x.

    >>> double(4)
    8
    """
    return 2 * x

main()  # a script's top-level call never runs
"#;
        let verdicts = run_file(source);
        assert_eq!(verdicts["double"], Verdict::Agree { examples: 1 });
        let Verdict::Disagree(ms) = &verdicts["half"] else {
            panic!("{verdicts:?}");
        };
        assert_eq!(
            ms,
            &vec![Mismatch {
                source: "half(5)".into(),
                want: "3".into(),
                got: Got::Output("2".into()),
            }]
        );
        assert_eq!(
            verdicts["half"].questions("half"),
            vec!["The example `half(5)` expects `3`, but the code of `half` gives `2`; which is right, the example or the code?"]
        );
    }

    #[test]
    fn examples_that_cannot_run_here_tell_nothing() {
        let source = r#"
from __future__ import annotations
from somewhere_else import helper

def uses_helper(x):
    """Uses a helper from another package.

    >>> uses_helper(1)
    2
    """
    return helper(x)

def unfinished(x):
    """Not written yet.

    >>> unfinished(1)
    2
    """
    ...

def raises(x):
    """Raises for a negative x.

    >>> raises(-1)
    0
    """
    if x < 0:
        raise ValueError("negative")
    return x

def expects_an_error(x):
    """Raises for a bad x.

    >>> expects_an_error(1)
    Traceback (most recent call last):
    ValueError: bad
    """
    return undefined_helper(x)

def home() -> str:
    """Where the settings live.

    >>> home()
    '/home/ana/.config/app'
    """
    import os
    return os.path.join(os.environ["HOME"], ".config", "app")

def here():
    """The directory it runs in.

    >>> here()
    '/srv/app'
    """
    import os
    return os.getcwd()

def offline():
    """Needs the network.

    >>> offline()
    1
    """
    raise ConnectionRefusedError("no network here")

class Shelf:
    def count(self, item) -> Shelf:
        """Items on the shelf.

        >>> Shelf().count("a")
        0
        """
        print("RESULT noise")
        return 0
"#;
        let verdicts = run_file(source);
        // The sandbox's directory in a result is where the example ran, not a contradiction.
        for unknown in [
            "uses_helper",
            "unfinished",
            "expects_an_error",
            "offline",
            "home",
            "here",
        ] {
            assert!(!verdicts.contains_key(unknown), "{unknown}: {verdicts:?}");
        }
        assert_eq!(
            verdicts["raises"].questions("raises"),
            vec!["The example `raises(-1)` expects `0`, but the code of `raises` raises ValueError; which is right, the example or the code?"]
        );
        // Printed output is the example's; a forward annotation needs the file's `__future__`.
        assert_eq!(
            verdicts["Shelf.count"].questions("Shelf.count"),
            vec!["The example `Shelf().count(\"a\")` expects `0`, but the code of `Shelf.count` gives `RESULT noise 0`; which is right, the example or the code?"]
        );
    }

    #[test]
    fn a_file_imports_its_neighbours_even_one_called_main() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("main.py"),
            "def helper(x):\n    return x + 1\n",
        )
        .unwrap();
        let source = "from main import helper\n\ndef f(x):\n    \"\"\"One more.\n\n    >>> f(1)\n    2\n    \"\"\"\n    return helper(x)\n";
        let verdicts = run_source("python3", source, Some(dir.path())).unwrap();
        assert_eq!(verdicts, vec![Some(Verdict::Agree { examples: 1 })]);
    }

    #[test]
    fn a_name_defined_twice_is_run_as_its_last_definition_only() {
        let source = "def f():\n    \"\"\"Old.\n\n    >>> f()\n    1\n    \"\"\"\n    return 2\n\n\ndef f():\n    \"\"\"New.\n\n    >>> f()\n    3\n    \"\"\"\n    return 3\n";
        let verdicts = run_source("python3", source, None).unwrap();
        assert_eq!(verdicts, vec![None, Some(Verdict::Agree { examples: 1 })]);
    }

    #[test]
    fn a_runaway_example_is_stopped_named_and_the_others_still_run() {
        let spin = "def spin():\n    \"\"\"Spins.\n\n    >>> spin()\n    1\n    \"\"\"\n    while True:\n        pass\n";
        let wrong =
            "\n\ndef one():\n    \"\"\"One.\n\n    >>> one()\n    1\n    \"\"\"\n    return 2\n";
        // A loop that catches everything outlives its function's budget: the file's ends it.
        let stubborn = "\n\ndef stubborn():\n    \"\"\"Stubborn.\n\n    >>> stubborn()\n    1\n    \"\"\"\n    while True:\n        try:\n            while True:\n                pass\n        except BaseException:\n            pass\n";
        for (source, last) in [
            (format!("{spin}{wrong}"), None),
            (
                format!("{spin}{wrong}{stubborn}"),
                Some("`stubborn` (line 20)"),
            ),
        ] {
            let parsed = python::extract(&source);
            let functions: Vec<&Function> = parsed.functions.iter().collect();
            let ran = run("python3", &source, None, &functions).unwrap();
            assert_eq!(ran.verdicts[0], None);
            assert!(
                matches!(ran.verdicts[1], Some(Verdict::Disagree(_))),
                "{ran:?}"
            );
            assert_eq!(
                ran.stopped[0], "`spin` (line 1): they ran past 2 s",
                "{ran:?}"
            );
            match last {
                None => assert_eq!(ran.stopped.len(), 1, "{ran:?}"),
                Some(name) => assert_eq!(
                    ran.stopped[1],
                    format!("{name}: they ran past {} s", TIMEOUT.as_secs())
                ),
            }
        }
    }

    /// Checked code that sets its own SIGALRM handler (a timeout decorator) does not turn a later
    /// slow function into a contradiction.
    #[test]
    fn a_handler_of_the_checked_code_does_not_replace_the_timer() {
        let source = "import signal\n\nclass Timeout(Exception):\n    pass\n\ndef arm():\n    \"\"\"Arm.\n\n    >>> arm()\n    1\n    \"\"\"\n    def fire(signum, frame):\n        raise Timeout()\n    signal.signal(signal.SIGALRM, fire)\n    return 1\n\ndef spin():\n    \"\"\"Spin.\n\n    >>> spin()\n    1\n    \"\"\"\n    while True:\n        pass\n";
        let parsed = python::extract(source);
        let functions: Vec<&Function> = parsed.functions.iter().collect();
        let ran = run("python3", source, None, &functions).unwrap();
        assert_eq!(ran.verdicts[0], Some(Verdict::Agree { examples: 1 }));
        assert_eq!(ran.verdicts.last().unwrap(), &None, "{ran:?}");
        assert!(
            ran.stopped.iter().any(|s| s.starts_with("`spin`")),
            "{ran:?}"
        );
    }

    #[test]
    fn a_missing_interpreter_says_what_to_set() {
        let source = "def f():\n    \"\"\"F.\n\n    >>> f()\n    1\n    \"\"\"\n    return 1\n";
        let err = run_source("/nonexistent/python", source, None).unwrap_err();
        assert!(err.contains("interpreter"), "{err}");
    }

    #[test]
    fn an_address_in_a_result_does_not_change_the_verdict_key() {
        let at = |addr: &str| {
            Verdict::Disagree(vec![Mismatch {
                source: "make()".into(),
                want: "1".into(),
                got: Got::Output(format!("<Shelf object at {addr}>")),
            }])
        };
        assert_eq!(at("0x7f3a12").fingerprint(), at("0x7f99ff").fingerprint());
        assert_eq!(mask_addresses("0x1f and 0x and 10"), "0x_ and 0x and 10");
        assert!(
            interpreter("python3").starts_with('/'),
            "{}",
            interpreter("python3")
        );
    }

    #[test]
    fn the_verdict_changes_the_key() {
        let agree = Verdict::Agree { examples: 2 };
        assert_eq!(keyed("abc", None), "abc");
        assert_ne!(keyed("abc", Some(&agree)), "abc");
        assert_ne!(
            keyed("abc", Some(&agree)),
            keyed("abc", Some(&Verdict::Agree { examples: 3 }))
        );
    }
}
