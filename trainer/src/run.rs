//! A fine-tuning run's directory: what `finetune` writes and `export` reads.
//!
//! - `run.json`: the hyperparameters ([`RunConfig`]; a `--resume` must match them) and the base
//!   model's sha256;
//! - `checkpoint/`: LoRA weights, AdamW moments and the step ([`Checkpoint`]), replaced
//!   atomically every `--save-every` steps; a killed run resumes from it bit for bit (data order
//!   and dropout masks are functions of the seed and the step, not of process state);
//! - `log.jsonl`: loss, learning rate, gradient norm and validation loss per step ([`LogLine`]);
//! - `adapter.safetensors` + `adapter.json` ([`AdapterMeta`]; our format) and `adapter.lora.gguf`
//!   (llama.cpp's) at the end.
//!
//! Every file is replaced atomically (`core::fsutil`, or a renamed directory for the
//! checkpoint), so a kill at any moment leaves a usable run.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use candle_core::{Device, Tensor};
use clarifycoder_core::fsutil;
use serde::{Deserialize, Serialize};

use crate::model::{Arch, Config, Target};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Schedule {
    Cosine,
    Linear,
    Constant,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LossOn {
    Answer,
    Full,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum DtypeArg {
    F32,
    Bf16,
}

/// What must not change between a run and its `--resume` (`run.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunConfig {
    pub base_model: String,
    pub base_sha256: String,
    pub arch: Arch,
    pub train: String,
    pub val: Option<String>,
    pub rank: usize,
    pub alpha: f64,
    pub dropout: f64,
    pub targets: Vec<Target>,
    pub lr: f64,
    pub weight_decay: f64,
    pub warmup: usize,
    pub schedule: Schedule,
    pub epochs: usize,
    pub total_steps: usize,
    pub accum: usize,
    pub clip: f64,
    pub max_len: usize,
    #[serde(default)]
    pub max_answer_tokens: Option<usize>,
    #[serde(default)]
    pub max_code_answer_tokens: Option<usize>,
    #[serde(default)]
    pub init_adapter: Option<String>,
    pub loss: LossOn,
    pub seed: u64,
    pub dtype: DtypeArg,
    pub train_examples: usize,
    pub train_tokens: usize,
}

/// One line of `log.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogLine {
    pub step: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub loss: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lr: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grad_norm: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tokens: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub val_loss: Option<f64>,
    /// Wall time of the step (forward, backward, update), seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seconds: Option<f64>,
}

/// The checkpoint's JSON half, `checkpoint/state.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CheckpointState {
    pub step: usize,
    pub log: Vec<LogLine>,
    pub elapsed_s: f64,
}

/// A checkpoint: its state and its tensors (`checkpoint/state.safetensors`, where they are named
/// `lora/<name>`, `m/<name>` and `v/<name>`), each map keyed by the adapter's tensor names.
#[derive(Debug, Clone)]
pub struct Checkpoint {
    pub state: CheckpointState,
    /// LoRA weights.
    pub lora: HashMap<String, Tensor>,
    /// AdamW's first moments.
    pub m: HashMap<String, Tensor>,
    /// AdamW's second moments.
    pub v: HashMap<String, Tensor>,
}

/// `adapter.json`: what export needs to know about a trained adapter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AdapterMeta {
    pub format: String,
    pub arch: Arch,
    pub base_model: String,
    pub base_sha256: String,
    pub rank: usize,
    pub alpha: f64,
    pub dropout: f64,
    pub targets: Vec<Target>,
    pub n_layer: usize,
    pub n_head: usize,
    pub n_head_kv: usize,
    pub head_dim: usize,
    pub steps: usize,
    pub final_train_loss: Option<f64>,
    pub final_val_loss: Option<f64>,
}

impl AdapterMeta {
    /// The description of an adapter on every projection, without dropout, not trained by a run
    /// (the parity test and the GPU check make such adapters with random weights).
    pub fn untrained(config: &Config, base_model: String, rank: usize, alpha: f64) -> AdapterMeta {
        AdapterMeta {
            format: "clarifycoder-lora-1".into(),
            arch: config.arch,
            base_model,
            base_sha256: String::new(),
            rank,
            alpha,
            dropout: 0.0,
            targets: Target::ALL.to_vec(),
            n_layer: config.n_layer,
            n_head: config.n_head,
            n_head_kv: config.n_head_kv,
            head_dim: config.head_dim,
            steps: 0,
            final_train_loss: None,
            final_val_loss: None,
        }
    }

    /// The description of an adapter trained by `run` on a base with `config`.
    pub fn new(
        run: &RunConfig,
        config: &Config,
        steps: usize,
        final_train_loss: Option<f64>,
        final_val_loss: Option<f64>,
    ) -> AdapterMeta {
        AdapterMeta {
            format: "clarifycoder-lora-1".into(),
            arch: config.arch,
            base_model: Path::new(&run.base_model)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            base_sha256: run.base_sha256.clone(),
            rank: run.rank,
            alpha: run.alpha,
            dropout: run.dropout,
            targets: run.targets.clone(),
            n_layer: config.n_layer,
            n_head: config.n_head,
            n_head_kv: config.n_head_kv,
            head_dim: config.head_dim,
            steps,
            final_train_loss,
            final_val_loss,
        }
    }
}

/// The files of a run directory.
#[derive(Debug, Clone)]
pub struct RunDir {
    root: PathBuf,
}

impl RunDir {
    pub fn new(root: &Path) -> RunDir {
        RunDir {
            root: root.to_path_buf(),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `run.json`.
    pub fn config_path(&self) -> PathBuf {
        self.root.join("run.json")
    }

    /// `checkpoint/`.
    pub fn checkpoint_path(&self) -> PathBuf {
        self.root.join("checkpoint")
    }

    /// `log.jsonl`.
    pub fn log_path(&self) -> PathBuf {
        self.root.join("log.jsonl")
    }

    /// `adapter.safetensors`, the finished adapter's weights.
    pub fn adapter_path(&self) -> PathBuf {
        self.root.join("adapter.safetensors")
    }

    /// `adapter.json`, its [`AdapterMeta`].
    pub fn adapter_meta_path(&self) -> PathBuf {
        self.root.join("adapter.json")
    }

    /// `adapter.lora.gguf`, the finished adapter for llama.cpp.
    pub fn adapter_gguf_path(&self) -> PathBuf {
        self.root.join("adapter.lora.gguf")
    }

    /// Whether a run was started here.
    pub fn holds_run(&self) -> bool {
        self.checkpoint_path().exists() || self.config_path().exists()
    }

    pub fn read_config(&self) -> Result<RunConfig> {
        let path = self.config_path();
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        serde_json::from_str(&text)
            .with_context(|| format!("{} is not a run description", path.display()))
    }

    pub fn write_config(&self, config: &RunConfig) -> Result<()> {
        write(
            &self.config_path(),
            serde_json::to_string_pretty(config)?.as_bytes(),
        )
    }

    pub fn write_log(&self, log: &[LogLine]) -> Result<()> {
        let mut text = String::new();
        for l in log {
            text.push_str(&serde_json::to_string(l)?);
            text.push('\n');
        }
        write(&self.log_path(), text.as_bytes())
    }

    pub fn write_adapter_meta(&self, meta: &AdapterMeta) -> Result<()> {
        write(
            &self.adapter_meta_path(),
            serde_json::to_string_pretty(meta)?.as_bytes(),
        )
    }

    /// Replaces the checkpoint: written to `checkpoint.tmp`, then renamed into place (the old
    /// one is `checkpoint.old` between the two renames).
    pub fn write_checkpoint(&self, checkpoint: &Checkpoint) -> Result<()> {
        let dir = self.checkpoint_path();
        let tmp = dir.with_extension("tmp");
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(&tmp)?;
        let mut tensors = HashMap::new();
        for (prefix, map) in [
            ("lora", &checkpoint.lora),
            ("m", &checkpoint.m),
            ("v", &checkpoint.v),
        ] {
            for (name, t) in map {
                tensors.insert(format!("{prefix}/{name}"), t.clone());
            }
        }
        candle_core::safetensors::save(&tensors, tmp.join("state.safetensors"))?;
        std::fs::write(
            tmp.join("state.json"),
            serde_json::to_vec_pretty(&checkpoint.state)?,
        )?;
        let old = dir.with_extension("old");
        let _ = std::fs::remove_dir_all(&old);
        if dir.exists() {
            std::fs::rename(&dir, &old)?;
        }
        std::fs::rename(&tmp, &dir)?;
        let _ = std::fs::remove_dir_all(&old);
        Ok(())
    }

    /// The last checkpoint, with its tensors on `device`; `None` before the first.
    pub fn read_checkpoint(&self, device: &Device) -> Result<Option<Checkpoint>> {
        // A kill between the two renames leaves only `checkpoint.old`.
        let dir = self.checkpoint_path();
        let dir = if dir.exists() {
            dir
        } else if dir.with_extension("old").exists() {
            dir.with_extension("old")
        } else {
            return Ok(None);
        };
        let state: CheckpointState =
            serde_json::from_slice(&std::fs::read(dir.join("state.json")).with_context(|| {
                format!(
                    "cannot read checkpoint {}",
                    dir.join("state.json").display()
                )
            })?)?;
        let tensors = candle_core::safetensors::load(dir.join("state.safetensors"), device)
            .with_context(|| format!("cannot read checkpoint {}", dir.display()))?;
        let mut checkpoint = Checkpoint {
            state,
            lora: HashMap::new(),
            m: HashMap::new(),
            v: HashMap::new(),
        };
        for (key, t) in tensors {
            let (map, name) = match key.split_once('/') {
                Some(("lora", name)) => (&mut checkpoint.lora, name),
                Some(("m", name)) => (&mut checkpoint.m, name),
                Some(("v", name)) => (&mut checkpoint.v, name),
                _ => continue,
            };
            map.insert(name.to_string(), t);
        }
        Ok(Some(checkpoint))
    }
}

/// Reads adapter weights (`adapter.safetensors` of a run, or `--init-adapter`).
pub fn read_adapter(path: &Path) -> Result<HashMap<String, Tensor>> {
    candle_core::safetensors::load(path, &Device::Cpu)
        .with_context(|| format!("cannot read adapter {}", path.display()))
}

/// A LoRA adapter exported for llama.cpp (`export`, the shipped `*.lora.gguf`): its tensors under
/// the names of our own files (`blk.N.<stem>.lora_a` / `lora_b`, in F32) and its alpha. So a run
/// can start from the shipped adapter (`finetune --init-adapter`).
pub fn read_gguf_adapter(path: &Path) -> Result<(HashMap<String, Tensor>, Option<f64>)> {
    use candle_core::quantized::gguf_file;
    let mut file =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let content = gguf_file::Content::read(&mut file)
        .with_context(|| format!("{} is not a GGUF file", path.display()))?;
    let alpha = content
        .metadata
        .get("adapter.lora.alpha")
        .and_then(|v| v.to_f64().ok().or_else(|| v.to_f32().ok().map(f64::from)));
    let mut tensors = HashMap::new();
    let names: Vec<String> = content.tensor_infos.keys().cloned().collect();
    for name in names {
        let Some((stem, half)) = ["lora_a", "lora_b"].iter().find_map(|half| {
            name.strip_suffix(&format!(".weight.{half}"))
                .map(|stem| (stem.to_string(), *half))
        }) else {
            continue;
        };
        let t = content
            .tensor(&mut file, &name, &Device::Cpu)
            .and_then(|q| q.dequantize(&Device::Cpu))
            .with_context(|| format!("{}: cannot read {name}", path.display()))?;
        tensors.insert(format!("{stem}.{half}"), t);
    }
    if tensors.is_empty() {
        anyhow::bail!(
            "{} has no LoRA tensors (`*.weight.lora_a`, `*.weight.lora_b`); is it a LoRA adapter?",
            path.display()
        );
    }
    Ok((tensors, alpha))
}

/// Writes adapter weights atomically.
pub fn write_adapter(path: &Path, tensors: &HashMap<String, Tensor>) -> Result<()> {
    fsutil::write_atomic_file(path, |tmp| candle_core::safetensors::save(tensors, tmp))
        .with_context(|| format!("cannot write {}", path.display()))
}

/// Writes a file of the run atomically.
fn write(path: &Path, bytes: &[u8]) -> Result<()> {
    fsutil::write_atomic(path, bytes).with_context(|| format!("cannot write {}", path.display()))
}
