//! Checking inconsistency mutations by running the real implementation: the harvested function,
//! in a sandboxed Python process, must pass its original examples and fail the mutated ones.

use std::time::Duration;

use clarifycoder_core::dataset::{Example, Harvested};
use clarifycoder_core::sandbox::{self, Limits};
use serde::Serialize;

/// The program that runs doctest examples against a function, in its module's namespace when
/// the module can be imported, else in a namespace holding only the function's code.
const VERIFIER: &str = r#"
import doctest, importlib, json, sys
specs = json.load(open("specs.json"))
results = []
for spec in specs:
    globs = None
    if spec["module"]:
        try:
            globs = dict(vars(importlib.import_module(spec["module"])))
        except BaseException:
            globs = None
    if globs is None:
        globs = {"__name__": "__sandbox__"}
        try:
            exec(compile(spec["code"], "<function>", "exec"), globs)
        except BaseException:
            results.append(None)
            continue
    def failures(examples):
        exs = [doctest.Example(e["source"] + "\n", (e["want"] + "\n") if e["want"] else "") for e in examples]
        test = doctest.DocTest(exs, dict(globs), spec["name"], None, 0, None)
        runner = doctest.DocTestRunner(verbose=False, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
        runner.run(test, out=lambda s: None)
        return runner.failures
    try:
        results.append([failures(spec["original"]), failures(spec["mutated"])])
    except BaseException:
        results.append(None)
print(json.dumps(results))
"#;

#[derive(Serialize)]
struct Spec<'a> {
    module: Option<&'a str>,
    name: &'a str,
    code: &'a str,
    original: &'a [Example],
    mutated: &'a [Example],
}

/// A candidate to verify: the function and its mutated examples.
pub struct Candidate<'a> {
    /// The harvested function.
    pub function: &'a Harvested,
    /// The examples after mutation.
    pub mutated: Vec<Example>,
}

/// For each candidate: `true` when the original examples all pass and at least one mutated
/// example fails. Candidates are run in batches in one process; a batch that fails as a whole
/// (a hang, a crash) is retried one candidate at a time, and candidates that still fail are
/// `false`. An interpreter that cannot be started, or that does not run Python, is an error: it
/// would otherwise reject every candidate.
pub fn verify(python: &str, candidates: &[Candidate]) -> anyhow::Result<Vec<bool>> {
    if candidates.is_empty() {
        return Ok(Vec::new());
    }
    check_python(python)?;
    let mut out = Vec::with_capacity(candidates.len());
    for chunk in candidates.chunks(32) {
        match run_batch(python, chunk, Duration::from_secs(30))? {
            Some(results) => out.extend(results),
            None => {
                for c in chunk {
                    let r = run_batch(python, std::slice::from_ref(c), Duration::from_secs(5))?;
                    out.push(r.is_some_and(|v| v[0]));
                }
            }
        }
    }
    Ok(out)
}

/// Starts `python` once in the sandbox with a one-line program.
fn check_python(python: &str) -> anyhow::Result<()> {
    let what_to_do = "give a Python 3 interpreter with --python (one that imports the harvested modules, e.g. the .venv's)";
    let outcome = sandbox::run_python(python, "print('ok')", &[], &Limits::default())
        .map_err(|e| anyhow::anyhow!("cannot start the Python interpreter '{python}' to verify inconsistencies: {e}; {what_to_do}"))?;
    if !outcome.success() || outcome.stdout.trim() != "ok" {
        let stderr: String = outcome.stderr.trim().chars().take(300).collect();
        let status = match outcome.status {
            sandbox::Status::Exited(code) => format!("exit code {code}"),
            sandbox::Status::Signaled(signal) => format!("killed by signal {signal}"),
            sandbox::Status::TimedOut => "timed out".to_string(),
        };
        anyhow::bail!(
            "'{python}' did not run a one-line Python program ({status}{}); {what_to_do}",
            if stderr.is_empty() {
                String::new()
            } else {
                format!(": {stderr}")
            }
        );
    }
    Ok(())
}

/// The verdicts of one batch, `None` when the batch failed as a whole; `Err` only when the
/// interpreter could not be started.
fn run_batch(
    python: &str,
    chunk: &[Candidate],
    timeout: Duration,
) -> anyhow::Result<Option<Vec<bool>>> {
    let specs: Vec<Spec> = chunk
        .iter()
        .map(|c| Spec {
            module: c.function.module.as_deref(),
            name: &c.function.name,
            code: &c.function.code,
            original: &c.function.examples,
            mutated: &c.mutated,
        })
        .collect();
    let json = serde_json::to_vec(&specs)?;
    let limits = Limits {
        timeout,
        cpu_seconds: timeout.as_secs().max(1),
        ..Limits::default()
    };
    let outcome = sandbox::run_python(python, VERIFIER, &[("specs.json", &json)], &limits)
        .map_err(|e| {
            anyhow::anyhow!(
                "cannot start the Python interpreter '{python}' to verify inconsistencies: {e}"
            )
        })?;
    if !outcome.success() {
        return Ok(None);
    }
    let Ok(results) = serde_json::from_str::<Vec<Option<(usize, usize)>>>(outcome.stdout.trim())
    else {
        return Ok(None);
    };
    if results.len() != chunk.len() {
        return Ok(None);
    }
    Ok(Some(
        results
            .into_iter()
            .map(|r| matches!(r, Some((0, failed)) if failed > 0))
            .collect(),
    ))
}
