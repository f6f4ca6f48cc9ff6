//! `humaneval`: plain HumanEval with pass@k. The program is prompt + completion + test +
//! `check(entry_point)`, run in the sandbox.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use clarifycoder_core::engine::{Backend, CancelToken, GenerateRequest};
use clarifycoder_core::prompt::{self, Texts};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

use crate::data::{self, HumanEvalProblem};
use crate::harness::Harness;
use crate::passk::pass_at_k;

/// What `humaneval` needs.
pub struct HumanEvalRun {
    /// `HumanEval.jsonl.gz`.
    pub data: PathBuf,
    /// Samples per problem.
    pub n: usize,
    /// The k of pass@k.
    pub ks: Vec<usize>,
    /// Most problems.
    pub limit: Option<usize>,
    /// Sampling temperature when n > 1 (greedy when n = 1).
    pub temperature: f32,
    /// Tokens per completion.
    pub max_tokens: usize,
    /// Samples generated at once.
    pub parallel: usize,
    /// Parallel test processes.
    pub jobs: usize,
    /// Output directory.
    pub out_dir: PathBuf,
    /// Test the canonical solutions instead of a model (checks the harness: expect 100%).
    pub reference: bool,
}

impl HumanEvalRun {
    /// Samples per problem: `n`, or one canonical solution with `reference`.
    pub fn samples(&self) -> usize {
        if self.reference {
            1
        } else {
            self.n.max(1)
        }
    }

    /// Refuses a k that pass@k cannot be estimated for: 0, or more than the samples per problem
    /// (it was left out of the report without a word). Cheap: call it before loading a model.
    pub fn check(&self) -> anyhow::Result<()> {
        let n = self.samples();
        if let Some(k) = self.ks.iter().find(|&&k| k == 0 || k > n) {
            let samples = if self.reference {
                "--reference tests one canonical solution per problem".to_string()
            } else {
                format!("-n {n} samples per problem")
            };
            anyhow::bail!(
                "-k {k}: pass@k needs k from 1 to the samples per problem ({samples}); raise -n to \
                 at least {k} or leave {k} out of -k"
            );
        }
        Ok(())
    }
}

/// The program for a problem and a model response: when the response defines the entry point, its
/// code follows the prompt (redefining the function); otherwise the response is the body.
pub fn program(p: &HumanEvalProblem, response: &str) -> String {
    let code = prompt::first_code_block(response).unwrap_or_else(|| response.to_string());
    let body = if code.contains(&format!("def {}", p.entry_point)) {
        format!("{}\n    pass\n\n{}", p.prompt.trim_end(), code)
    } else {
        format!("{}{}", p.prompt, code)
    };
    format!("{body}\n\n{}\n\ncheck({})\n", p.test, p.entry_point)
}

#[derive(Serialize)]
struct Sample {
    task_id: String,
    sample: usize,
    completion: String,
    passed: bool,
    error: Option<String>,
}

/// Runs HumanEval; prints and writes `humaneval.json` and `samples.jsonl`.
pub fn run(
    run: &HumanEvalRun,
    backend: Option<Arc<dyn Backend>>,
    harness: &Harness,
    model_label: &str,
) -> anyhow::Result<serde_json::Value> {
    let started = Instant::now();
    run.check()?;
    let mut problems = data::read_humaneval(&run.data)?;
    if let Some(l) = run.limit {
        problems.truncate(l);
    }
    std::fs::create_dir_all(&run.out_dir)
        .with_context(|| format!("cannot create '{}'", run.out_dir.display()))?;
    let bar = ProgressBar::new((problems.len() * run.n) as u64);
    bar.set_style(
        ProgressStyle::with_template(
            "{bar:30} {pos}/{len} samples {per_sec} [{elapsed_precise} < {eta}]",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let samples_wanted: Vec<(&HumanEvalProblem, usize)> = problems
        .iter()
        .flat_map(|p| (0..run.n).map(move |s| (p, s)))
        .collect();
    let mut completions = Vec::with_capacity(samples_wanted.len());
    match backend.as_ref().filter(|_| !run.reference) {
        None => {
            for p in &problems {
                completions.push((p, 0, p.canonical_solution.clone()));
                bar.inc(1);
            }
        }
        Some(backend) => {
            let markup = backend.info().markup;
            let complete = |&(p, s): &(&HumanEvalProblem, usize)| {
                let prompt = prompt::conversation(markup, &Texts::default(), &[], &p.prompt, None);
                let mut request = GenerateRequest::greedy(prompt, markup, run.max_tokens);
                if run.n > 1 {
                    request.temperature = run.temperature;
                    request.seed = s as u64;
                }
                anyhow::Ok(backend.generate(&request, &CancelToken::new())?.text)
            };
            let mut texts = vec![None; samples_wanted.len()];
            clarifycoder_core::parallel::for_each_unordered(
                &samples_wanted,
                run.parallel,
                complete,
                |i, text| {
                    texts[i] = Some(text);
                    bar.inc(1);
                    Ok(())
                },
            )?;
            for ((p, s), text) in samples_wanted.iter().zip(texts) {
                completions.push((*p, *s, text.expect("every sample completed")));
            }
        }
    }
    bar.finish_and_clear();
    let results = Harness::run_many(&completions, run.jobs.max(1), |(p, _, text)| {
        harness.run_program(&program(p, text))
    });
    let mut samples = Vec::new();
    let mut per_problem: Vec<(usize, usize)> = vec![(0, 0); problems.len()];
    for ((p, s, text), r) in completions.iter().zip(&results) {
        let i = problems
            .iter()
            .position(|q| q.task_id == p.task_id)
            .expect("own problem");
        per_problem[i].0 += 1;
        per_problem[i].1 += usize::from(r.all_passed());
        samples.push(Sample {
            task_id: p.task_id.clone(),
            sample: *s,
            completion: text.clone(),
            passed: r.all_passed(),
            error: r.program_error.clone(),
        });
    }
    let mut pass = serde_json::Map::new();
    for &k in &run.ks {
        let mean = per_problem
            .iter()
            .map(|(n, c)| pass_at_k(*n, *c, k))
            .sum::<f64>()
            / per_problem.len().max(1) as f64;
        pass.insert(format!("pass@{k}"), serde_json::json!(100.0 * mean));
    }
    let mut out =
        std::io::BufWriter::new(std::fs::File::create(run.out_dir.join("samples.jsonl"))?);
    for s in &samples {
        serde_json::to_writer(&mut out, s)?;
        std::io::Write::write_all(&mut out, b"\n")?;
    }
    let secs = started.elapsed().as_secs_f64();
    // A clear problem answered without code: the model asked instead (a false alarm on
    // HumanEval's clear prompts). Not for the canonical solutions, which are bodies without a
    // fence.
    let asked_percent = (!run.reference).then(|| {
        let asked = completions
            .iter()
            .filter(|(_, _, text)| prompt::first_code_block(text).is_none())
            .count();
        100.0 * asked as f64 / completions.len().max(1) as f64
    });
    let summary = serde_json::json!({
        "model": model_label,
        "problems": problems.len(),
        "samples_per_problem": run.samples(),
        "pass_at_k_percent": pass,
        "asked_percent": asked_percent,
        "seconds": secs,
        "problems_per_minute": problems.len() as f64 / (secs / 60.0).max(1e-9),
        "network": crate::harness::network_note(),
    });
    std::fs::write(
        run.out_dir.join("humaneval.json"),
        serde_json::to_string_pretty(&summary)?,
    )?;
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn programs_accept_whole_functions_or_bodies() {
        let p = HumanEvalProblem {
            task_id: "T/0".into(),
            prompt: "def inc(x):\n    \"\"\"Add one.\"\"\"\n".into(),
            canonical_solution: "    return x + 1\n".into(),
            test: "def check(candidate):\n    assert candidate(1) == 2\n".into(),
            entry_point: "inc".into(),
        };
        let body = program(&p, "    return x + 1\n");
        assert!(body.starts_with("def inc(x):\n    \"\"\"Add one.\"\"\"\n    return x + 1\n"));
        assert!(body.ends_with("check(inc)\n"));
        let whole = program(&p, "```python\ndef inc(x):\n    return x + 1\n```");
        assert!(
            whole.contains("    pass\n\ndef inc(x):\n    return x + 1\n"),
            "{whole}"
        );
    }
}
