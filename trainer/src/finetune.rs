//! `finetune`: LoRA fine-tuning on the mixed data, with the loss on the answer tokens.
//!
//! Training text is exactly what the server sends: `core::prompt::training_pair` renders round 1
//! in the base model's markup, and llama.cpp (through the core engine) tokenizes it, prompt and
//! completion separately, the way the engine tokenizes a prompt and then generates.
//!
//! A run lives in one output directory, laid out by [`crate::run`]: its configuration, the
//! checkpoint a killed run resumes from bit for bit, the log and, at the end, the adapter.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Tensor};
use clarifycoder_core::dataset::{read_jsonl, Category, Row};
use clarifycoder_core::engine::llama::{LlamaConfig, LlamaEngine};
use clarifycoder_core::engine::Backend;
use clarifycoder_core::prompt;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::export;
use crate::model::{Adapter, Config, Dropout, Model, SplitMix64, Target};
use crate::run::{
    self, AdapterMeta, Checkpoint, CheckpointState, DtypeArg, LogLine, LossOn, RunConfig, RunDir,
    Schedule,
};

#[derive(clap::Args, Debug, Clone)]
pub struct FinetuneArgs {
    /// Training rows (JSONL, e.g. `train.jsonl` from `mix`).
    #[arg(long, value_name = "FILE")]
    pub train: PathBuf,
    /// Validation rows (e.g. `val.jsonl` from `mix`): validation loss every --eval-every steps.
    #[arg(long, value_name = "FILE")]
    pub val: Option<PathBuf>,
    /// The base model: a GGUF file or a known model name [default: the default model]. Any
    /// quantization candle can dequantize.
    #[arg(long, value_name = "FILE")]
    pub model: Option<PathBuf>,
    /// Run directory: checkpoints, log, and the final adapter.
    #[arg(long, short, value_name = "DIR")]
    pub output: PathBuf,
    /// Continue the run in --output from its last checkpoint.
    #[arg(long)]
    pub resume: bool,
    /// Start from a trained adapter (`adapter.safetensors` of an earlier run, or an exported
    /// `*.lora.gguf` such as the shipped one; same base model, rank, alpha and targets) instead
    /// of B = 0: a second stage on other data, such as your own project's functions.
    #[arg(long, value_name = "FILE")]
    pub init_adapter: Option<PathBuf>,
    /// LoRA rank.
    #[arg(long, default_value_t = 8)]
    pub rank: usize,
    /// LoRA alpha (the update is scaled by alpha / rank).
    #[arg(long, default_value_t = 16.0)]
    pub alpha: f64,
    /// Dropout on the LoRA input.
    #[arg(long, default_value_t = 0.05)]
    pub dropout: f64,
    /// Projections that get LoRA: a comma-separated subset of q,k,v,o,gate,up,down.
    #[arg(long, default_value = "q,k,v,o,gate,up,down")]
    pub targets: String,
    /// Peak learning rate.
    #[arg(long, default_value_t = 2e-4)]
    pub lr: f64,
    /// Decoupled weight decay (AdamW).
    #[arg(long, default_value_t = 0.0)]
    pub weight_decay: f64,
    /// Warm-up steps (linear from 0 to --lr).
    #[arg(long, default_value_t = 10)]
    pub warmup: usize,
    /// Decay after warm-up.
    #[arg(long, value_enum, default_value = "cosine")]
    pub schedule: Schedule,
    /// Passes over the training rows.
    #[arg(long, default_value_t = 1)]
    pub epochs: usize,
    /// Optimizer steps in total (default: epochs × rows / accumulation).
    #[arg(long)]
    pub max_steps: Option<usize>,
    /// Sequences per optimizer step (gradient accumulation over --micro-batch sequences per
    /// forward pass).
    #[arg(long, default_value_t = 8)]
    pub accum: usize,
    /// Sequences per forward pass, padded to the longest of them; at most --accum. The same
    /// step either way, up to rounding (dropout masks differ), and N times the activation
    /// memory. On the CPU 1 is fastest (padding costs more than batching saves); on an H200,
    /// 8 was 0.8x (f32) to 1.36x (bf16) the speed of 1 (BENCHMARKS.md, "On a GPU").
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub micro_batch: usize,
    /// Clip the global gradient norm to this (0: no clipping).
    #[arg(long, default_value_t = 1.0)]
    pub clip: f64,
    /// Longest training sequence in tokens. Longer rows keep their whole prompt and lose the end
    /// of the answer; rows whose prompt alone does not fit are skipped and counted.
    #[arg(long, default_value_t = 512)]
    pub max_len: usize,
    /// Keep only the first N answer tokens of each row: the loss then concentrates on how an
    /// answer begins (the ask-or-code decision is its first token) at a fraction of the cost.
    #[arg(long, value_name = "N")]
    pub max_answer_tokens: Option<usize>,
    /// Keep only the first N tokens of code answers (`original` rows), whatever
    /// --max-answer-tokens says for questions: the adapter learns to start coding where it
    /// should, and the base model's code stays its own (BENCHMARKS.md, "A second recipe").
    #[arg(long, value_name = "N")]
    pub max_code_answer_tokens: Option<usize>,
    /// `answer`: loss on the answer tokens only (the paper's best); `full`: on every token.
    #[arg(long, value_enum, default_value = "answer")]
    pub loss: LossOn,
    /// Seed of initialisation, data order and dropout.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Validation loss every N steps (and at the end).
    #[arg(long, default_value_t = 50)]
    pub eval_every: usize,
    /// Validation rows used (the first N).
    #[arg(long, default_value_t = 64)]
    pub val_rows: usize,
    /// Checkpoint every N steps (and at the end).
    #[arg(long, default_value_t = 25)]
    pub save_every: usize,
    /// Storage type of the frozen base matrices (bf16 halves their memory).
    #[arg(long, value_enum, default_value = "f32")]
    pub dtype: DtypeArg,
    /// Where to train: `auto` is the GPU in a build with the `cuda` feature (`make cuda`) that
    /// finds one, else the CPU; `cuda` fails without a GPU.
    #[arg(long, value_enum, default_value = "auto")]
    pub device: DeviceArg,
    /// Write the tokenized training set (JSONL of {"tokens", "prompt_len"}), in the order the
    /// first epoch trains on it, here and continue; for comparisons with other trainers.
    #[arg(long, value_name = "FILE")]
    pub dump_tokens: Option<PathBuf>,
    /// Stop after this many steps in this process, as if killed (tests of --resume).
    #[arg(long, hide = true)]
    pub stop_after: Option<usize>,
    /// Don't draw a progress bar.
    #[arg(long)]
    pub quiet: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum DeviceArg {
    Auto,
    Cpu,
    Cuda,
}

impl DeviceArg {
    /// The device to train on. `auto` in a CUDA build without a usable GPU says why on stderr
    /// and trains on the CPU.
    pub fn device(self) -> Result<Device> {
        // candle's error carries a backtrace when RUST_BACKTRACE is set: the first line says it.
        let cuda = || {
            Device::new_cuda(0).map_err(|e| {
                let e = e.to_string();
                e.lines().next().unwrap_or_default().to_string()
            })
        };
        match self {
            DeviceArg::Cpu => Ok(Device::Cpu),
            DeviceArg::Cuda if !cfg!(feature = "cuda") => bail!(
                "--device cuda: this trainer was built without CUDA; build it with `make cuda` \
                 (or `--features cuda`), or pass --device cpu"
            ),
            DeviceArg::Cuda => cuda().map_err(|e| {
                anyhow::anyhow!(
                    "--device cuda: CUDA device 0 is not usable ({e}); check the NVIDIA driver \
                     and GPU with `nvidia-smi`, or pass --device cpu"
                )
            }),
            DeviceArg::Auto if cfg!(feature = "cuda") => Ok(cuda().unwrap_or_else(|e| {
                eprintln!(
                    "warning: this is a CUDA build but CUDA device 0 is not usable ({e}); \
                     training on the CPU"
                );
                Device::Cpu
            })),
            DeviceArg::Auto => Ok(Device::Cpu),
        }
    }
}

/// A tokenized training sequence.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Example {
    pub tokens: Vec<u32>,
    /// Tokens of the prompt (BOS included); the loss starts at this index with `--loss answer`.
    pub prompt_len: usize,
}

/// What tokenizing a file kept and dropped.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Prepared {
    pub examples: Vec<Example>,
    pub empty_answers: usize,
    pub prompt_too_long: usize,
    pub truncated: usize,
}

pub fn run(args: FinetuneArgs) -> Result<()> {
    check_args(&args)?;
    let targets = Target::parse_list(&args.targets)?;
    let model_path = match &args.model {
        Some(p) => clarifycoder_core::settings::resolve_model(Some(p), None).path,
        None => clarifycoder_core::settings::installed_model().context("no --model given")?,
    };
    let device = args.device.device()?;
    if cfg!(feature = "cuda") {
        let on = if device.is_cuda() {
            "CUDA device 0"
        } else {
            "the CPU"
        };
        eprintln!("finetune: training on {on}");
    }
    let dtype = match args.dtype {
        DtypeArg::F32 => DType::F32,
        DtypeArg::Bf16 => DType::BF16,
    };
    // Architecture and shapes first: an unsupported model fails before anything slow.
    let config = read_config(&model_path)?;
    std::fs::create_dir_all(&args.output)
        .with_context(|| format!("cannot create {}", args.output.display()))?;
    let run_dir = RunDir::new(&args.output);
    if !args.resume && run_dir.holds_run() {
        bail!(
            "{} already holds a run; pass --resume to continue it, or choose another --output",
            args.output.display()
        );
    }

    eprintln!(
        "finetune: tokenizing with llama.cpp ({})",
        model_path.display()
    );
    let tokenizer = Tokenizer::load(&model_path, args.max_len)?;
    let limits = AnswerLimits {
        all: args.max_answer_tokens,
        code: args.max_code_answer_tokens,
    };
    let train = tokenizer.prepare(&args.train, args.max_len, limits)?;
    report_prepared("train", &args.train, &train);
    if train.examples.is_empty() {
        bail!(
            "{} has no usable rows (empty answers: {}, prompt longer than --max-len {}: {})",
            args.train.display(),
            train.empty_answers,
            args.max_len,
            train.prompt_too_long
        );
    }
    let val = match &args.val {
        Some(path) => {
            let mut v = tokenizer.prepare(path, args.max_len, limits)?;
            report_prepared("val", path, &v);
            v.examples.truncate(args.val_rows);
            v.examples
        }
        None => Vec::new(),
    };
    drop(tokenizer);
    if let Some(path) = &args.dump_tokens {
        let order = epoch_order(args.seed, 0, train.examples.len());
        let ordered: Vec<_> = order.iter().map(|&i| &train.examples[i]).collect();
        clarifycoder_core::dataset::write_jsonl(path, &ordered)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }

    let total_steps = args.max_steps.unwrap_or_else(|| {
        (args.epochs * train.examples.len())
            .div_ceil(args.accum)
            .max(1)
    });
    let run_config = RunConfig {
        base_model: model_path.display().to_string(),
        base_sha256: sha256_file(&model_path)?,
        arch: config.arch,
        train: args.train.display().to_string(),
        val: args.val.as_ref().map(|p| p.display().to_string()),
        rank: args.rank,
        alpha: args.alpha,
        dropout: args.dropout,
        targets: targets.clone(),
        lr: args.lr,
        weight_decay: args.weight_decay,
        warmup: args.warmup,
        schedule: args.schedule,
        epochs: args.epochs,
        total_steps,
        accum: args.accum,
        clip: args.clip,
        max_len: args.max_len,
        max_answer_tokens: args.max_answer_tokens,
        max_code_answer_tokens: args.max_code_answer_tokens,
        init_adapter: args.init_adapter.as_ref().map(|p| p.display().to_string()),
        loss: args.loss,
        seed: args.seed,
        dtype: args.dtype,
        train_examples: train.examples.len(),
        train_tokens: train.examples.iter().map(|e| e.tokens.len()).sum(),
    };
    if args.resume {
        let saved = run_dir.read_config().context("--resume")?;
        let diffs = config_differences(&saved, &run_config);
        if !diffs.is_empty() {
            bail!(
                "--resume: this run was started with other settings ({}); use the same \
                 flags and data, or start a new --output",
                diffs.join("; ")
            );
        }
    } else {
        run_dir.write_config(&run_config)?;
    }

    let micro_batch = args.micro_batch.clamp(1, args.accum);
    let estimate = MemoryEstimate::of(
        &config,
        &args,
        &train.examples,
        dtype,
        &targets,
        micro_batch,
    );
    eprintln!("finetune: {}", estimate.describe());
    if let Some(available) = available_memory() {
        if device.is_cpu() && estimate.total() > available {
            bail!(
                "the run needs about {:.1} GiB but {:.1} GiB are available; lower --max-len, \
                 use --dtype bf16, or free memory",
                gib(estimate.total()),
                gib(available)
            );
        }
    }

    eprintln!(
        "finetune: loading {} ({}, {} layers) as {:?}",
        model_path.display(),
        config.arch.name(),
        config.n_layer,
        dtype
    );
    let model = Model::load(&model_path, dtype, &device)?;
    let adapter = Adapter::init(
        &model.config,
        args.rank,
        args.alpha,
        &targets,
        args.seed,
        &device,
    )?;
    if let Some(path) = &args.init_adapter {
        let values = if path.extension().is_some_and(|e| e == "gguf") {
            let (values, alpha) = run::read_gguf_adapter(path)?;
            // The update is scaled by alpha / rank: the same weights under another alpha are
            // another adapter.
            if let Some(alpha) = alpha.filter(|a| (a - args.alpha).abs() > 1e-6) {
                bail!(
                    "--init-adapter {} was trained with alpha {alpha}; pass --alpha {alpha} (and its rank) to continue from it",
                    path.display()
                );
            }
            values
        } else {
            run::read_adapter(path)?
        };
        adapter
            .load_values(&values)
            .with_context(|| format!("--init-adapter {}", path.display()))?;
    }
    let mut trainer = Trainer::new(&model, adapter, &run_config)?;
    trainer.micro_batch = micro_batch;
    let mut state = CheckpointState {
        step: 0,
        log: Vec::new(),
        elapsed_s: 0.0,
    };
    if args.resume {
        if let Some(s) = trainer.load_checkpoint(&run_dir)? {
            eprintln!("finetune: resuming at step {} of {}", s.step, total_steps);
            state = s;
        } else {
            eprintln!("finetune: no checkpoint yet; starting from step 0");
        }
    }
    eprintln!(
        "finetune: {} examples, {} steps of {} sequences ({} per pass), LoRA rank {} on {} ({} \
         trainable parameters)",
        train.examples.len(),
        total_steps,
        args.accum,
        micro_batch,
        args.rank,
        targets
            .iter()
            .map(|t| t.short())
            .collect::<Vec<_>>()
            .join(","),
        trainer.adapter.parameters()
    );

    let bar = if args.quiet {
        indicatif::ProgressBar::hidden()
    } else {
        indicatif::ProgressBar::new(total_steps as u64)
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{bar:30} {pos}/{len} steps  {msg}  [{elapsed_precise} < {eta_precise}]",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar.set_position(state.step as u64);
    // Where stderr is a log (nohup, CI) the bar and the lines it prints are hidden: plain lines
    // instead, at each validation and each checkpoint.
    let plain = !args.quiet && !std::io::IsTerminal::is_terminal(&std::io::stderr());
    let say = |line: String| match plain {
        true => eprintln!("finetune: {line}"),
        false => bar.println(line),
    };
    if state.step == 0 && !val.is_empty() && state.log.is_empty() {
        // The base model's validation loss, the point of comparison.
        let v = trainer.validate(&val)?;
        say(format!("step 0: val loss {v:.4}"));
        state.log.push(LogLine {
            step: 0,
            loss: None,
            lr: None,
            grad_norm: None,
            tokens: None,
            val_loss: Some(v),
            seconds: None,
        });
    }
    let started = Instant::now();
    let elapsed_before = state.elapsed_s;
    let mut tokens_here = 0usize;
    let mut steps_here = 0usize;
    let mut order: (usize, Vec<usize>) = (usize::MAX, Vec::new());
    while state.step < total_steps {
        if args.stop_after.is_some_and(|n| steps_here >= n) {
            bar.abandon();
            eprintln!("finetune: stopped after {steps_here} steps (--stop-after)");
            return Ok(());
        }
        let step = state.step;
        let n = train.examples.len();
        let mut batch = Vec::with_capacity(args.accum);
        for j in 0..args.accum {
            let e = step * args.accum + j;
            if order.0 != e / n {
                order = (e / n, epoch_order(args.seed, e / n, n));
            }
            batch.push(&train.examples[order.1[e % n]]);
        }
        let step_started = Instant::now();
        let stats = trainer
            .step(step, &batch)
            .map_err(|e| out_of_gpu_memory(e, &estimate))?;
        let step_seconds = step_started.elapsed().as_secs_f64();
        state.step += 1;
        steps_here += 1;
        tokens_here += stats.tokens;
        state.log.push(LogLine {
            step: state.step,
            loss: Some(stats.loss),
            lr: Some(stats.lr),
            grad_norm: Some(stats.grad_norm),
            tokens: Some(stats.tokens),
            val_loss: None,
            seconds: Some((step_seconds * 1000.0).round() / 1000.0),
        });
        let secs = started.elapsed().as_secs_f64();
        bar.set_position(state.step as u64);
        bar.set_message(format!(
            "loss {:.3}  {:.0} tok/s",
            stats.loss,
            tokens_here as f64 / secs.max(1e-9)
        ));
        let last = state.step == total_steps;
        if !val.is_empty() && (state.step.is_multiple_of(args.eval_every.max(1)) || last) {
            let v = trainer.validate(&val)?;
            say(format!(
                "step {}: train loss {:.4}, val loss {v:.4}",
                state.step, stats.loss
            ));
            if let Some(l) = state.log.last_mut() {
                l.val_loss = Some(v);
            }
        }
        if state.step.is_multiple_of(args.save_every.max(1)) || last {
            state.elapsed_s = elapsed_before + started.elapsed().as_secs_f64();
            trainer.save_checkpoint(&run_dir, &state)?;
            run_dir.write_log(&state.log)?;
            if plain {
                let left = secs / steps_here as f64 * (total_steps - state.step) as f64;
                say(format!(
                    "step {}/{total_steps}: loss {:.3}, {:.0} tokens/s, checkpoint saved; about {:.0} min left",
                    state.step,
                    stats.loss,
                    tokens_here as f64 / secs.max(1e-9),
                    left / 60.0
                ));
            }
        }
    }
    bar.finish_and_clear();
    run_dir.write_log(&state.log)?;

    let final_train = state.log.iter().rev().find_map(|l| l.loss);
    let final_val = state.log.iter().rev().find_map(|l| l.val_loss);
    let meta = AdapterMeta::new(&run_config, &config, state.step, final_train, final_val);
    let adapter_path = run_dir.adapter_path();
    trainer.save_adapter(&adapter_path)?;
    run_dir.write_adapter_meta(&meta)?;
    let gguf = run_dir.adapter_gguf_path();
    export::write_gguf(
        &meta,
        &run::read_adapter(&adapter_path)?,
        &gguf,
        clarifycoder_core::gguf::Storage::F32,
    )?;
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "finetune: {} steps in {:.0} s ({:.0} tokens/s); train loss {}, val loss {}; wrote {}",
        steps_here,
        secs,
        tokens_here as f64 / secs.max(1e-9),
        final_train.map_or("-".into(), |l| format!("{l:.4}")),
        final_val.map_or("-".into(), |l| format!("{l:.4}")),
        gguf.display()
    );
    Ok(())
}

fn check_args(args: &FinetuneArgs) -> Result<()> {
    if args.rank == 0 {
        bail!("--rank must be at least 1");
    }
    if args.alpha.is_nan() || args.alpha <= 0.0 {
        bail!("--alpha must be positive");
    }
    if !(0.0..1.0).contains(&args.dropout) {
        bail!("--dropout must be in [0, 1)");
    }
    if args.lr.is_nan() || args.lr <= 0.0 {
        bail!("--lr must be positive");
    }
    if args.accum == 0 {
        bail!("--accum must be at least 1");
    }
    if args.epochs == 0 && args.max_steps.is_none() {
        bail!("--epochs must be at least 1");
    }
    if args.max_steps == Some(0) {
        bail!("--max-steps must be at least 1");
    }
    if args.max_len < 8 {
        bail!("--max-len must be at least 8 tokens");
    }
    if !args.train.is_file() {
        bail!(
            "{} does not exist; build training data with `clarifycoder-trainer mix`",
            args.train.display()
        );
    }
    if let Some(a) = &args.init_adapter {
        if !a.is_file() {
            bail!(
                "--init-adapter {} does not exist (use a run's adapter.safetensors or an exported .lora.gguf)",
                a.display()
            );
        }
    }
    if args.max_answer_tokens == Some(0) {
        bail!("--max-answer-tokens must be at least 1");
    }
    if args.max_code_answer_tokens == Some(0) {
        bail!("--max-code-answer-tokens must be at least 1");
    }
    if let Some(v) = &args.val {
        if !v.is_file() {
            bail!("{} does not exist", v.display());
        }
    }
    Ok(())
}

fn report_prepared(what: &str, path: &Path, p: &Prepared) {
    eprintln!(
        "finetune: {what}: {} sequences from {}{}{}{}",
        p.examples.len(),
        path.display(),
        if p.truncated > 0 {
            format!("; {} answers cut at --max-len", p.truncated)
        } else {
            String::new()
        },
        if p.prompt_too_long > 0 {
            format!(
                "; {} rows skipped: the prompt alone exceeds --max-len",
                p.prompt_too_long
            )
        } else {
            String::new()
        },
        if p.empty_answers > 0 {
            format!("; {} rows skipped: empty answer", p.empty_answers)
        } else {
            String::new()
        },
    );
}

/// Reads only the metadata (fast) to fail early on unsupported models.
pub fn read_config(path: &Path) -> Result<Config> {
    if !path.is_file() {
        bail!(
            "base model '{}' not found; {}",
            path.display(),
            clarifycoder_core::settings::INSTALL_HINT
        );
    }
    Config::from_file(path)
}

fn config_differences(a: &RunConfig, b: &RunConfig) -> Vec<String> {
    let (ja, jb) = (
        serde_json::to_value(a).unwrap_or_default(),
        serde_json::to_value(b).unwrap_or_default(),
    );
    let mut out = Vec::new();
    if let (Some(ma), Some(mb)) = (ja.as_object(), jb.as_object()) {
        for (k, va) in ma {
            let vb = mb.get(k).cloned().unwrap_or_default();
            if *va != vb {
                out.push(format!("{k}: was {va}, now {vb}"));
            }
        }
    }
    out
}

/// llama.cpp's tokenizer for the base model (through the core engine).
pub struct Tokenizer {
    engine: LlamaEngine,
    markup: prompt::Markup,
}

impl Tokenizer {
    pub fn load(model: &Path, max_len: usize) -> Result<Tokenizer> {
        let mut config = LlamaConfig::new(model);
        // It only tokenizes: no GPU memory, which training needs.
        config.gpu_layers = 0;
        config.n_ctx = (max_len as u32 + 64).max(512);
        config.batch_prompts = 1;
        let engine = LlamaEngine::load(config)?;
        let markup = engine.info().markup;
        Ok(Tokenizer { engine, markup })
    }

    /// Prompt and completion tokens of one training pair.
    pub fn pair(&self, problem: &str, answer: &str) -> Result<(Vec<u32>, Vec<u32>)> {
        let (p, c) = prompt::training_pair(self.markup, problem, answer);
        Ok(self.engine.tokenize_pair(&p, &c)?)
    }

    pub fn prepare(&self, path: &Path, max_len: usize, limits: AnswerLimits) -> Result<Prepared> {
        let (rows, _) = read_jsonl::<Row>(path, false)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let mut out = Prepared::default();
        for row in rows {
            if row.answer.trim().is_empty() {
                out.empty_answers += 1;
                continue;
            }
            let (p, mut c) = self.pair(&row.problem, &row.answer)?;
            if let Some(n) = limits.for_row(&row) {
                c.truncate(n.max(1));
            }
            // Keep the whole prompt and at least one answer token; cut the answer's end.
            if p.len() + 1 > max_len {
                out.prompt_too_long += 1;
                continue;
            }
            let mut tokens = p.clone();
            tokens.extend(&c);
            if tokens.len() > max_len {
                tokens.truncate(max_len);
                out.truncated += 1;
            }
            out.examples.push(Example {
                tokens,
                prompt_len: p.len(),
            });
        }
        Ok(out)
    }
}

/// How many answer tokens of a row are trained on.
#[derive(Debug, Clone, Copy, Default)]
pub struct AnswerLimits {
    /// Every answer (`--max-answer-tokens`).
    pub all: Option<usize>,
    /// Code answers, the rows of the `original` category (`--max-code-answer-tokens`).
    pub code: Option<usize>,
}

impl AnswerLimits {
    /// The limit for one row: the code limit for a code answer when set, else the general one.
    pub fn for_row(&self, row: &Row) -> Option<usize> {
        match (row.category, self.code) {
            (Category::Original, Some(n)) => Some(n),
            _ => self.all,
        }
    }
}

struct StepStats {
    loss: f64,
    lr: f64,
    grad_norm: f64,
    tokens: usize,
}

/// Model + adapter + AdamW state.
pub struct Trainer<'m> {
    model: &'m Model,
    pub adapter: Adapter,
    m: Vec<Tensor>,
    v: Vec<Tensor>,
    config: RunConfig,
    /// Sequences per forward pass (`--micro-batch`).
    pub micro_batch: usize,
}

const BETA1: f64 = 0.9;
const BETA2: f64 = 0.999;
const ADAM_EPS: f64 = 1e-8;

impl<'m> Trainer<'m> {
    pub fn new(model: &'m Model, adapter: Adapter, config: &RunConfig) -> Result<Trainer<'m>> {
        let m = adapter
            .vars()
            .iter()
            .map(|v| v.as_tensor().zeros_like())
            .collect::<candle_core::Result<Vec<_>>>()?;
        let v = m.clone();
        Ok(Trainer {
            model,
            adapter,
            m,
            v,
            config: config.clone(),
            micro_batch: 1,
        })
    }

    fn lr_at(&self, step: usize) -> f64 {
        let c = &self.config;
        if step < c.warmup {
            return c.lr * (step + 1) as f64 / c.warmup as f64;
        }
        let span = c.total_steps.saturating_sub(c.warmup).max(1) as f64;
        let progress = ((step - c.warmup) as f64 / span).min(1.0);
        match c.schedule {
            Schedule::Constant => c.lr,
            Schedule::Linear => c.lr * (1.0 - progress),
            Schedule::Cosine => c.lr * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos()),
        }
    }

    fn from(&self, e: &Example) -> usize {
        match self.config.loss {
            LossOn::Answer => e.prompt_len.max(1),
            LossOn::Full => 1,
        }
    }

    fn step(&mut self, step: usize, batch: &[&Example]) -> Result<StepStats> {
        let predicted: usize = batch.iter().map(|e| e.tokens.len() - self.from(e)).sum();
        let denom = predicted.max(1) as f64;
        let vars = self.adapter.vars();
        let mut grads: Vec<Option<Tensor>> = vec![None; vars.len()];
        let mut total = 0.0;
        // One sequence per pass keeps the step's order (and dropout masks) as they always were;
        // several go longest first, so that each pass pads little.
        let mut order: Vec<usize> = (0..batch.len()).collect();
        if self.micro_batch > 1 {
            order.sort_by_key(|&i| std::cmp::Reverse(batch[i].tokens.len()));
        }
        for (j, pass) in order.chunks(self.micro_batch.max(1)).enumerate() {
            let mut dropout = Dropout {
                p: self.config.dropout,
                rng: SplitMix64::new(
                    self.config.seed ^ ((step as u64) << 20) ^ (j as u64) ^ 0xD20F,
                ),
            };
            let seqs: Vec<(&[u32], usize)> = pass
                .iter()
                .map(|&i| (batch[i].tokens.as_slice(), self.from(batch[i])))
                .collect();
            let (nll, _) = self
                .model
                .nll_batch(&seqs, Some(&self.adapter), Some(&mut dropout))?;
            total += nll.to_scalar::<f32>()? as f64;
            let loss = (nll / denom)?;
            let g = loss.backward()?;
            for (slot, var) in grads.iter_mut().zip(&vars) {
                if let Some(gv) = g.get(var.as_tensor()) {
                    *slot = Some(match slot.take() {
                        Some(acc) => (acc + gv)?,
                        None => gv.clone(),
                    });
                }
            }
        }
        let grads: Vec<Tensor> = grads
            .into_iter()
            .zip(&vars)
            .map(|(g, v)| match g {
                Some(g) => Ok(g),
                None => v.as_tensor().zeros_like(),
            })
            .collect::<candle_core::Result<_>>()?;
        let mut sq = 0.0f64;
        for g in &grads {
            sq += g.sqr()?.sum_all()?.to_scalar::<f32>()? as f64;
        }
        let grad_norm = sq.sqrt();
        let clip = if self.config.clip > 0.0 && grad_norm > self.config.clip {
            self.config.clip / grad_norm
        } else {
            1.0
        };
        let lr = self.lr_at(step);
        let t = (step + 1) as i32;
        let (bc1, bc2) = (1.0 - BETA1.powi(t), 1.0 - BETA2.powi(t));
        for (i, var) in vars.iter().enumerate() {
            let g = (&grads[i] * clip)?;
            self.m[i] = ((&self.m[i] * BETA1)? + (&g * (1.0 - BETA1))?)?;
            self.v[i] = ((&self.v[i] * BETA2)? + (g.sqr()? * (1.0 - BETA2))?)?;
            let m_hat = (&self.m[i] / bc1)?;
            let v_hat = (&self.v[i] / bc2)?;
            let mut update = m_hat.broadcast_div(&(v_hat.sqrt()? + ADAM_EPS)?)?;
            if self.config.weight_decay > 0.0 {
                update = (update + (var.as_tensor() * self.config.weight_decay)?)?;
            }
            let next = (var.as_tensor() - (update * lr)?)?;
            var.set(&next)?;
        }
        Ok(StepStats {
            loss: total / denom,
            lr,
            grad_norm,
            tokens: batch.iter().map(|e| e.tokens.len()).sum(),
        })
    }

    /// Mean per-token loss over `examples` (no dropout, no gradient).
    pub fn validate(&self, examples: &[Example]) -> Result<f64> {
        let (mut sum, mut n) = (0.0, 0usize);
        for e in examples {
            let (nll, k) = self
                .model
                .nll(&e.tokens, self.from(e), Some(&self.adapter), None)?;
            sum += nll.detach().to_scalar::<f32>()? as f64;
            n += k;
        }
        Ok(sum / n.max(1) as f64)
    }

    fn save_checkpoint(&self, run_dir: &RunDir, state: &CheckpointState) -> Result<()> {
        let mut checkpoint = Checkpoint {
            state: state.clone(),
            lora: HashMap::new(),
            m: HashMap::new(),
            v: HashMap::new(),
        };
        for (i, (name, var)) in self.adapter.named().into_iter().enumerate() {
            checkpoint
                .lora
                .insert(name.clone(), var.as_tensor().clone());
            checkpoint.m.insert(name.clone(), self.m[i].clone());
            checkpoint.v.insert(name, self.v[i].clone());
        }
        run_dir.write_checkpoint(&checkpoint)
    }

    fn load_checkpoint(&mut self, run_dir: &RunDir) -> Result<Option<CheckpointState>> {
        let Some(checkpoint) = run_dir.read_checkpoint(self.model.device())? else {
            return Ok(None);
        };
        self.adapter.load_values(&checkpoint.lora)?;
        for (i, (name, _)) in self.adapter.named().into_iter().enumerate() {
            for (prefix, moments, slot) in [
                ("m", &checkpoint.m, &mut self.m[i]),
                ("v", &checkpoint.v, &mut self.v[i]),
            ] {
                let t = moments
                    .get(&name)
                    .with_context(|| format!("checkpoint lacks {prefix}/{name}"))?;
                *slot = t.clone();
            }
        }
        Ok(Some(checkpoint.state))
    }

    fn save_adapter(&self, path: &Path) -> Result<()> {
        let tensors: HashMap<String, Tensor> = self
            .adapter
            .named()
            .into_iter()
            .map(|(n, v)| (n, v.as_tensor().clone()))
            .collect();
        run::write_adapter(path, &tensors)
    }
}

pub fn sha256_file(path: &Path) -> Result<String> {
    use std::io::Read;
    let mut f =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(format!("{:x}", h.finalize()))
}

/// A GPU's out-of-memory error says what to change (candle's says only "out of memory").
fn out_of_gpu_memory(e: anyhow::Error, estimate: &MemoryEstimate) -> anyhow::Error {
    if !format!("{e:#}").contains("CUDA_ERROR_OUT_OF_MEMORY") {
        return e;
    }
    anyhow::anyhow!(
        "the GPU ran out of memory (this run needs about {:.1} GiB); lower --micro-batch or \
         --max-len, or use --dtype bf16",
        gib(estimate.total())
    )
}

/// Rough peak memory of a run, reported before it starts.
struct MemoryEstimate {
    weights: u64,
    adapter: u64,
    activations: u64,
    logits: u64,
}

impl MemoryEstimate {
    fn of(
        c: &Config,
        args: &FinetuneArgs,
        examples: &[Example],
        dtype: DType,
        targets: &[Target],
        micro_batch: usize,
    ) -> MemoryEstimate {
        let longest = examples.iter().map(|e| e.tokens.len()).max().unwrap_or(0) as u64;
        let predicted = examples
            .iter()
            .map(|e| match args.loss {
                LossOn::Answer => e.tokens.len() - e.prompt_len,
                LossOn::Full => e.tokens.len() - 1,
            })
            .max()
            .unwrap_or(0) as u64;
        let weights = c.base_parameters() as u64 * dtype.size_in_bytes() as u64;
        let lora: u64 = targets
            .iter()
            .map(|&t| {
                let (i, o) = c.target_shape(t);
                (args.rank * (i + o)) as u64
            })
            .sum::<u64>()
            * c.n_layer as u64;
        // Parameter, gradient, accumulated gradient, two moments.
        let adapter = lora * 4 * 5;
        let q = (c.n_head * c.head_dim) as u64;
        let kv = (c.n_head_kv * c.head_dim) as u64;
        // Floats the autograd graph keeps per token and layer (norm intermediates, projections,
        // LoRA inputs and dropout masks, attention rows), calibrated on Gemma 3 270M: 3.9 GB
        // measured against 4.2 GB estimated at --max-len 256.
        let per_token_layer = 30 * c.n_embd as u64
            + 12 * q
            + 10 * kv
            + 10 * c.n_ff as u64
            + 8 * c.n_head as u64 * longest;
        let micro = micro_batch as u64;
        let activations = per_token_layer * longest * micro * c.n_layer as u64 * 4;
        // Logits, their exponentials and gradients.
        let logits = predicted * micro * c.n_vocab as u64 * 4 * 5;
        MemoryEstimate {
            weights,
            adapter,
            activations,
            logits,
        }
    }

    fn total(&self) -> u64 {
        self.weights + self.adapter + self.activations + self.logits
    }

    fn describe(&self) -> String {
        format!(
            "estimated peak memory {:.2} GiB (frozen weights {:.2}, adapter + optimizer {:.2}, \
             activations {:.2}, logits {:.2})",
            gib(self.total()),
            gib(self.weights),
            gib(self.adapter),
            gib(self.activations),
            gib(self.logits)
        )
    }
}

fn gib(bytes: u64) -> f64 {
    bytes as f64 / (1u64 << 30) as f64
}

fn available_memory() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// The order epoch `epoch` visits `n` training sequences: a function of (seed, epoch) only, so a
/// resumed run sees the same.
fn epoch_order(seed: u64, epoch: usize, n: usize) -> Vec<usize> {
    SplitMix64::new(seed ^ epoch as u64).permutation(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Candle's CUDA error as the H200 run printed it becomes advice; other errors pass as they are.
    #[test]
    fn running_out_of_gpu_memory_says_what_to_lower() {
        let estimate = MemoryEstimate {
            weights: 1 << 30,
            adapter: 0,
            activations: 90 << 30,
            logits: 24 << 30,
        };
        let oom = anyhow::anyhow!("DriverError(CUDA_ERROR_OUT_OF_MEMORY, \"out of memory\")")
            .context("step 1");
        let message = out_of_gpu_memory(oom, &estimate).to_string();
        assert!(message.contains("115.0 GiB"), "{message}");
        assert!(message.contains("--micro-batch"), "{message}");
        let other = out_of_gpu_memory(anyhow::anyhow!("token 9 is outside"), &estimate);
        assert_eq!(other.to_string(), "token 9 is outside");
    }

    #[cfg(not(feature = "cuda"))]
    #[test]
    fn without_cuda_auto_is_the_cpu_and_cuda_says_how_to_get_it() {
        assert!(DeviceArg::Auto.device().unwrap().is_cpu());
        let e = DeviceArg::Cuda.device().unwrap_err().to_string();
        assert!(
            e.contains("built without CUDA") && e.contains("make cuda"),
            "{e}"
        );
    }

    fn row(category: &str) -> Row {
        serde_json::from_value(serde_json::json!({
            "id": "x", "problem": "def f():\n", "answer": "a", "type": "Original",
            "category": category, "source": "s", "source_id": "x", "method": "m",
            "mutations": [], "original_problem": "def f():\n",
        }))
        .unwrap()
    }

    #[test]
    fn code_answers_take_their_own_limit_and_questions_the_general_one() {
        let limits = AnswerLimits {
            all: Some(80),
            code: Some(4),
        };
        assert_eq!(limits.for_row(&row("original")), Some(4));
        assert_eq!(limits.for_row(&row("1c")), Some(80));
        let general = AnswerLimits {
            all: Some(80),
            code: None,
        };
        assert_eq!(general.for_row(&row("original")), Some(80));
    }
}
