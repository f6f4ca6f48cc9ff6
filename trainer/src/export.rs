//! `export`: a trained adapter as a llama.cpp LoRA GGUF or as a PEFT directory.
//!
//! llama.cpp: `general.type = "adapter"`, `general.architecture` = the base's, `adapter.type =
//! "lora"`, `adapter.lora.alpha` as F32 (another type aborts llama.cpp), and per target
//! `<base tensor>.lora_a` [r, in] and `.lora_b` [out, r] (PEFT orientation; GGUF lists dims
//! innermost first, so [in, r] and [r, out] there). llama.cpp scales by adapter scale × alpha / r.
//!
//! PEFT: `adapter_model.safetensors` (`base_model.model.model.layers.N.<module>.lora_A.weight`)
//! and `adapter_config.json`. llama.cpp's converter permutes the rows of Llama's q and k weights
//! (for its RoPE layout); a LoRA trained against the GGUF has its `B` rows in that order, so they
//! are permuted back for Hugging Face.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use candle_core::{Device, Tensor};
use clarifycoder_core::fsutil;
use clarifycoder_core::gguf::{self, Value};

use crate::model::{Arch, Target};
use crate::run::{self, AdapterMeta, RunDir};

#[derive(clap::Args, Debug)]
pub struct ExportArgs {
    /// A `finetune` output directory (its `adapter.safetensors` and `adapter.json`).
    #[arg(value_name = "RUN_DIR")]
    pub run: PathBuf,
    /// `gguf` (llama.cpp, the server) or `peft` (Hugging Face / vLLM).
    #[arg(long, value_enum, default_value = "gguf")]
    pub format: Format,
    /// Output file (gguf) or directory (peft).
    #[arg(long, short, value_name = "PATH")]
    pub output: PathBuf,
    /// Export the last checkpoint instead of the finished adapter (a run still in progress).
    #[arg(long)]
    pub checkpoint: bool,
    /// Store the LoRA matrices as F16 (gguf): half the size, for shipping; F32 otherwise.
    #[arg(long)]
    pub f16: bool,
    /// Store the LoRA matrices as Q8_0 where their rows are whole blocks of 32 (the A matrices;
    /// the B matrices when the rank is a multiple of 32), F16 elsewhere (gguf): about a fifth
    /// smaller than `--f16` at rank 16, for a larger model's adapter.
    #[arg(long, conflicts_with = "f16")]
    pub q8: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Gguf,
    Peft,
}

pub fn run(args: ExportArgs) -> Result<()> {
    let run_dir = RunDir::new(&args.run);
    let meta_path = run_dir.adapter_meta_path();
    let (meta, tensors) = if args.checkpoint {
        let run_config = run_dir
            .read_config()
            .with_context(|| format!("{} is not a finetune run directory", args.run.display()))?;
        let config = crate::model::Config::from_file(Path::new(&run_config.base_model))?;
        let checkpoint = run_dir.read_checkpoint(&Device::Cpu)?.with_context(|| {
            format!(
                "{} has no checkpoint yet",
                run_dir.checkpoint_path().display()
            )
        })?;
        let meta = AdapterMeta::new(&run_config, &config, checkpoint.state.step, None, None);
        (meta, checkpoint.lora)
    } else {
        let meta: AdapterMeta =
            serde_json::from_str(&std::fs::read_to_string(&meta_path).with_context(|| {
                format!(
                    "cannot read {}; is {} a finished finetune run? (use --checkpoint for one \
                     in progress)",
                    meta_path.display(),
                    args.run.display()
                )
            })?)
            .with_context(|| format!("{} is not an adapter description", meta_path.display()))?;
        let tensors = run::read_adapter(&run_dir.adapter_path())?;
        (meta, tensors)
    };
    match args.format {
        Format::Gguf => {
            let storage = if args.q8 {
                gguf::Storage::Q8_0
            } else if args.f16 {
                gguf::Storage::F16
            } else {
                gguf::Storage::F32
            };
            write_gguf(&meta, &tensors, &args.output, storage)?
        }
        Format::Peft => write_peft(&meta, &tensors, &args.output)?,
    }
    eprintln!("export: wrote {}", args.output.display());
    Ok(())
}

/// (layer, target, A [r, in], B [out, r]) in a stable order, with shapes checked.
fn pairs(
    meta: &AdapterMeta,
    tensors: &HashMap<String, Tensor>,
) -> Result<Vec<(usize, Target, Tensor, Tensor)>> {
    let mut out = Vec::new();
    for layer in 0..meta.n_layer {
        for &t in &meta.targets {
            let stem = format!("blk.{layer}.{}", t.gguf_stem());
            let get = |suffix: &str| {
                tensors
                    .get(&format!("{stem}.{suffix}"))
                    .cloned()
                    .with_context(|| format!("the adapter lacks {stem}.{suffix}"))
            };
            let (a, b) = (get("lora_a")?, get("lora_b")?);
            let (ra, _) = a.dims2()?;
            let (_, rb) = b.dims2()?;
            if ra != meta.rank || rb != meta.rank {
                bail!(
                    "{stem}: LoRA rank {ra}/{rb} does not match the adapter's rank {}",
                    meta.rank
                );
            }
            out.push((layer, t, a, b));
        }
    }
    Ok(out)
}

pub fn write_gguf(
    meta: &AdapterMeta,
    tensors: &HashMap<String, Tensor>,
    path: &Path,
    storage: gguf::Storage,
) -> Result<()> {
    let mut data = Vec::new();
    for (layer, t, a, b) in pairs(meta, tensors)? {
        let (r, n_in) = a.dims2()?;
        let (n_out, _) = b.dims2()?;
        let base = format!("blk.{layer}.{}.weight", t.gguf_stem());
        data.push((
            format!("{base}.lora_a"),
            vec![n_in as u64, r as u64],
            a.flatten_all()?.to_vec1::<f32>()?,
        ));
        data.push((
            format!("{base}.lora_b"),
            vec![r as u64, n_out as u64],
            b.flatten_all()?.to_vec1::<f32>()?,
        ));
    }
    let refs: Vec<(&str, Vec<u64>, Vec<f32>)> = data
        .iter()
        .map(|(n, d, v)| (n.as_str(), d.clone(), v.clone()))
        .collect();
    fsutil::write_atomic_file(path, |tmp| {
        gguf::write(
            tmp,
            &[
                ("general.architecture", Value::Str(meta.arch.name().into())),
                ("general.type", Value::Str("adapter".into())),
                ("general.name", Value::Str("ClarifyCoder LoRA".into())),
                ("adapter.type", Value::Str("lora".into())),
                ("adapter.lora.alpha", Value::Float(meta.alpha)),
            ],
            &refs,
            storage,
        )
    })
    .with_context(|| format!("cannot write {}", path.display()))
}

/// Undoes llama.cpp's q/k row permutation for Llama (`B` rows are output features).
fn unpermute_rows(b: &Tensor, heads: usize) -> Result<Tensor> {
    let (out, r) = b.dims2()?;
    if heads == 0 || out % (heads * 2) != 0 {
        bail!("cannot un-permute {out} rows into {heads} heads");
    }
    // GGUF rows = HF rows viewed as [heads, 2, half, r] with axes 1 and 2 swapped.
    Ok(b.reshape((heads, out / heads / 2, 2, r))?
        .transpose(1, 2)?
        .contiguous()?
        .reshape((out, r))?)
}

pub fn write_peft(meta: &AdapterMeta, tensors: &HashMap<String, Tensor>, dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut out = HashMap::new();
    for (layer, t, a, b) in pairs(meta, tensors)? {
        let b = match (meta.arch, t) {
            (Arch::Llama, Target::Q) => unpermute_rows(&b, meta.n_head)?,
            (Arch::Llama, Target::K) => unpermute_rows(&b, meta.n_head_kv)?,
            _ => b,
        };
        let stem = format!("base_model.model.model.layers.{layer}.{}", t.hf_module());
        out.insert(format!("{stem}.lora_A.weight"), a);
        out.insert(format!("{stem}.lora_B.weight"), b);
    }
    run::write_adapter(&dir.join("adapter_model.safetensors"), &out)?;
    let modules: Vec<&str> = meta
        .targets
        .iter()
        .map(|t| t.hf_module().rsplit('.').next().unwrap_or_default())
        .collect();
    let config = serde_json::json!({
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "r": meta.rank,
        "lora_alpha": meta.alpha,
        "lora_dropout": meta.dropout,
        "target_modules": modules,
        "bias": "none",
        "fan_in_fan_out": false,
        "inference_mode": true,
        "base_model_name_or_path": meta.base_model,
        "use_rslora": false,
        "use_dora": false,
    });
    let config_path = dir.join("adapter_config.json");
    fsutil::write_atomic(
        &config_path,
        serde_json::to_string_pretty(&config)?.as_bytes(),
    )
    .with_context(|| format!("cannot write {}", config_path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unpermute_inverts_llama_cpp_permutation() {
        // llama.cpp's converter: w.reshape(heads, 2, half, ...).swapaxes(1, 2).
        let (heads, out, r) = (2usize, 8usize, 3usize);
        let hf: Vec<f32> = (0..out * r).map(|i| i as f32).collect();
        let hf = Tensor::from_vec(hf, (out, r), &Device::Cpu).unwrap();
        let gguf = hf
            .reshape((heads, 2, out / heads / 2, r))
            .unwrap()
            .transpose(1, 2)
            .unwrap()
            .contiguous()
            .unwrap()
            .reshape((out, r))
            .unwrap();
        let back = unpermute_rows(&gguf, heads).unwrap();
        assert_eq!(back.to_vec2::<f32>().unwrap(), hf.to_vec2::<f32>().unwrap());
    }
}
