//! GPU against CPU on one machine, for `scripts/gpu-check.sh` (built into the CUDA directory by
//! `make cuda`). Each comparison prints one JSON line on stdout.
//!
//! ```text
//! gpu_check logits [MODEL [ADAPTER]]   llama.cpp's next-token logits, all layers on the GPU
//!                                      against none, at every position of a training pair's
//!                                      tokens; without MODEL on tiny random models of each
//!                                      architecture, with and without a random adapter
//! gpu_check train [MODEL] [STEPS]      LoRA training steps (SGD, the trainer's forward and
//!                                      backward pass) on the GPU and on the CPU from the same
//!                                      start: loss and gradients at each step
//! ```
//!
//! Relative error is ‖gpu − cpu‖ / ‖cpu‖; `top1` is the share of positions whose most likely
//! next token is the same. Exits 3 when there is no GPU.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Tensor};
use clarifycoder_core::engine::llama::{self, LlamaConfig, LlamaEngine, Placement};
use clarifycoder_core::engine::Backend;
use clarifycoder_core::prompt;
use clarifycoder_testkit::tiny::{n_vocab, write_model, Rng, Tiny};
use clarifycoder_trainer::export;
use clarifycoder_trainer::model::{Adapter, Model, Target};
use clarifycoder_trainer::run::AdapterMeta;
use serde_json::json;

const PROBLEM: &str = r#"def top_customers(orders, n=3):
    """Return the best customers.

    Args:
        orders: list of (customer, amount) pairs.
        n: how many to return.
    """
"#;
const ANSWER: &str =
    "Should 'best' mean the highest total amount or the most orders? How should ties be ordered?";

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // An empty MODEL argument means the tiny models.
    let path = |i: usize| args.get(i).filter(|s| !s.is_empty()).map(PathBuf::from);
    let outcome = match args.first().map(String::as_str) {
        Some("logits") => logits(path(1), path(2)),
        Some("train") => train(
            path(1),
            args.get(2).and_then(|s| s.parse().ok()).unwrap_or(4),
        ),
        _ => {
            eprintln!("usage: gpu_check logits [MODEL [ADAPTER]] | train [MODEL] [STEPS]");
            std::process::exit(2);
        }
    };
    if let Err(e) = outcome {
        eprintln!("gpu_check: {e:#}");
        std::process::exit(1);
    }
}

fn gpu_name() -> String {
    match llama::placement(llama::ALL_LAYERS) {
        Placement::Gpu { device, .. } => device.to_string(),
        Placement::Cpu => {
            eprintln!("gpu_check: no GPU found (this needs the CUDA build and an NVIDIA GPU)");
            std::process::exit(3);
        }
    }
}

/// ‖a − b‖ / ‖b‖, the largest |a − b|, and the share of rows with the same arg-max.
fn compare(a: &[Vec<f32>], b: &[Vec<f32>]) -> (f64, f64, f64) {
    let (mut num, mut den, mut max, mut same) = (0.0f64, 0.0f64, 0.0f64, 0usize);
    let argmax = |v: &[f32]| {
        v.iter()
            .enumerate()
            .max_by(|x, y| x.1.total_cmp(y.1))
            .map(|(i, _)| i)
    };
    for (x, y) in a.iter().zip(b) {
        for (p, q) in x.iter().zip(y) {
            let d = (*p - *q) as f64;
            num += d * d;
            den += (*q as f64).powi(2);
            max = max.max(d.abs());
        }
        same += usize::from(argmax(x) == argmax(y));
    }
    ((num / den).sqrt(), max, same as f64 / a.len().max(1) as f64)
}

fn engine(model: &Path, adapter: Option<&Path>, gpu_layers: u32) -> Result<LlamaEngine> {
    let mut config = LlamaConfig::new(model);
    config.adapter = adapter.map(Path::to_path_buf);
    config.gpu_layers = gpu_layers;
    config.exact_kv = true;
    config.n_ctx = 1024;
    config.batch_prompts = 1;
    LlamaEngine::load(config).with_context(|| format!("cannot load '{}'", model.display()))
}

/// The prompt and answer tokens of one training pair, as the trainer tokenizes them.
fn pair_tokens(model: &Path) -> Result<(Vec<u32>, usize)> {
    let e = engine(model, None, 0)?;
    let (p, c) = prompt::training_pair(e.info().markup, PROBLEM, ANSWER);
    let (mut tokens, completion) = e.tokenize_pair(&p, &c)?;
    let prompt_len = tokens.len();
    tokens.extend(completion);
    Ok((tokens, prompt_len))
}

fn tiny_tokens() -> Vec<u32> {
    std::iter::once(1)
        .chain((0..30).map(|i| 3 + (i * 37 + 11) % (n_vocab() as u32 - 3)))
        .collect()
}

fn logits(model: Option<PathBuf>, adapter: Option<PathBuf>) -> Result<()> {
    let gpu = gpu_name();
    let report = |name: &str, adapter: bool, tokens: &[u32], m: &Path, a: Option<&Path>| {
        let on_gpu = engine(m, a, llama::ALL_LAYERS)?.logits(tokens)?;
        let on_cpu = engine(m, a, 0)?.logits(tokens)?;
        let (rel, max, top1) = compare(&on_gpu, &on_cpu);
        println!(
            "{}",
            json!({"check": "logits", "model": name, "adapter": adapter, "gpu": gpu,
                   "positions": tokens.len(), "rel_err": rel, "max_abs": max, "top1": top1})
        );
        anyhow::Ok(())
    };
    if let Some(model) = model {
        let name = model.file_name().unwrap_or_default().to_string_lossy();
        let (tokens, _) = pair_tokens(&model)?;
        report(&name, false, &tokens, &model, None)?;
        if let Some(adapter) = adapter {
            report(&name, true, &tokens, &model, Some(&adapter))?;
        }
        return Ok(());
    }
    let dir = tempfile::tempdir()?;
    for tiny in [Tiny::gemma3(), Tiny::llama(), Tiny::qwen2()] {
        let path = dir.path().join(format!("tiny-{}.gguf", tiny.arch));
        write_model(&path, &tiny);
        let gguf = dir.path().join(format!("tiny-{}.lora.gguf", tiny.arch));
        write_random_adapter(&path, &gguf)?;
        let name = format!("tiny {}", tiny.arch);
        report(&name, false, &tiny_tokens(), &path, None)?;
        report(&name, true, &tiny_tokens(), &path, Some(&gguf))?;
    }
    Ok(())
}

/// A LoRA adapter with random A and B (a trained one moves logits; B = 0 would not).
fn write_random_adapter(model_path: &Path, out: &Path) -> Result<()> {
    let model = Model::load(model_path, DType::F32, &Device::Cpu)?;
    let adapter = Adapter::init(&model.config, 4, 8.0, &Target::ALL, 7, &Device::Cpu)?;
    let mut rng = Rng::new(99);
    let mut tensors = HashMap::new();
    for (name, var) in adapter.named() {
        let dims = var.dims().to_vec();
        let n = dims.iter().product();
        tensors.insert(name, Tensor::from_vec(rng.vec(n, 0.2), dims, &Device::Cpu)?);
    }
    let meta = AdapterMeta::untrained(&model.config, model_path.display().to_string(), 4, 8.0);
    export::write_gguf(&meta, &tensors, out, clarifycoder_core::gguf::Storage::F32)
}

/// One SGD step's loss and gradients (in the adapter's order, on the CPU).
fn step(
    model: &Model,
    adapter: &Adapter,
    tokens: &[u32],
    from: usize,
) -> Result<(f64, Vec<Tensor>)> {
    let (nll, n) = model.nll(tokens, from, Some(adapter), None)?;
    let loss = (nll / n as f64)?;
    let grads = loss.backward()?;
    let mut out = Vec::new();
    for var in adapter.vars() {
        let g = match grads.get(var.as_tensor()) {
            Some(g) => g.clone(),
            None => var.as_tensor().zeros_like()?,
        };
        var.set(&(var.as_tensor() - (&g * 0.05)?)?)?;
        out.push(g.to_device(&Device::Cpu)?);
    }
    Ok((
        loss.to_device(&Device::Cpu)?.to_scalar::<f32>()? as f64,
        out,
    ))
}

fn train(model: Option<PathBuf>, steps: usize) -> Result<()> {
    let gpu_label = gpu_name();
    let dir = tempfile::tempdir()?;
    let (path, name, tokens, from) = match model {
        Some(m) => {
            let (tokens, from) = pair_tokens(&m)?;
            let name = m
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .to_string();
            (m, name, tokens, from)
        }
        None => {
            let p = dir.path().join("tiny-qwen2.gguf");
            write_model(&p, &Tiny::qwen2());
            (p, "tiny qwen2".to_string(), tiny_tokens(), 8)
        }
    };
    let gpu = Device::new_cuda(0).context("the trainer cannot open CUDA device 0")?;
    let on = |device: &Device| -> Result<(Model, Adapter)> {
        let model = Model::load(&path, DType::F32, device)?;
        let adapter = Adapter::init(&model.config, 8, 16.0, &Target::ALL, 0, device)?;
        Ok((model, adapter))
    };
    let (gm, ga) = on(&gpu)?;
    let (cm, ca) = on(&Device::Cpu)?;
    if tokens.len() <= from {
        bail!("the training pair has no answer tokens");
    }
    for s in 0..steps {
        let start = std::time::Instant::now();
        let (gl, gg) = step(&gm, &ga, &tokens, from)?;
        let gpu_s = start.elapsed().as_secs_f64();
        let start = std::time::Instant::now();
        let (cl, cg) = step(&cm, &ca, &tokens, from)?;
        let cpu_s = start.elapsed().as_secs_f64();
        let (mut num, mut den, mut worst) = (0.0f64, 0.0f64, 0.0f64);
        for (g, c) in gg.iter().zip(&cg) {
            let d = (g - c)?.sqr()?.sum_all()?.to_scalar::<f32>()? as f64;
            let n = c.sqr()?.sum_all()?.to_scalar::<f32>()? as f64;
            num += d;
            den += n;
            if n > 0.0 {
                worst = worst.max((d / n).sqrt());
            }
        }
        println!(
            "{}",
            json!({"check": "train", "model": name, "gpu": gpu_label, "step": s,
                   "tokens": tokens.len(), "loss_gpu": gl, "loss_cpu": cl,
                   "grad_rel_err": (num / den.max(f64::MIN_POSITIVE)).sqrt(),
                   "grad_rel_err_worst_tensor": worst, "seconds_gpu": gpu_s, "seconds_cpu": cpu_s})
        );
    }
    Ok(())
}
