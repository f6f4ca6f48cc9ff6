//! The training forward pass: Gemma 3, Llama and Qwen 2 decoders over dequantized GGUF weights,
//! with LoRA on the projections.
//!
//! Everything on the path from a LoRA weight to the loss is a differentiable candle op (matmul,
//! broadcast arithmetic, `exp`/`log`/`sqrt`, `narrow`/`cat`, `gather`): candle's `rope`,
//! `softmax_last_dim`, fast `rms_norm` and `QMatMul` have no backward pass and would silently stop
//! the gradient. Frozen weights are multiplied through [`Frozen`], a custom op whose backward
//! returns only the input's gradient: candle's own matmul backward would also compute the (unused)
//! gradient of every frozen matrix, the 262k × 640 output head included.
//!
//! The math follows llama.cpp (the engine that serves the adapter): for Gemma 3, embeddings scaled
//! by √hidden, norms whose weights already include the +1, QK-norm before RoPE, q scaled by
//! head_dim^-½, NEOX RoPE with base 10k on sliding-window layers (5 of every 6) and the GGUF's base
//! on global ones, post-attention and post-FFN norms, GELU (tanh) gating, tied output head.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{bail, Context, Result};
use candle_core::quantized::gguf_file;
use candle_core::{CpuStorage, CustomOp1, DType, Device, Layout, Shape, Tensor, Var, D};
use serde::{Deserialize, Serialize};

/// Supported architectures (the GGUF's `general.architecture`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Arch {
    Gemma3,
    Llama,
    Qwen2,
}

impl Arch {
    pub fn parse(name: &str) -> Result<Arch> {
        Ok(match name {
            "gemma3" => Arch::Gemma3,
            "llama" => Arch::Llama,
            "qwen2" => Arch::Qwen2,
            other => bail!(
                "architecture '{other}' is not supported for fine-tuning; supported: gemma3 \
                 (Gemma 3), llama (Llama, CodeLlama, DeepSeek Coder), qwen2 (Qwen 2/2.5)"
            ),
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Arch::Gemma3 => "gemma3",
            Arch::Llama => "llama",
            Arch::Qwen2 => "qwen2",
        }
    }

    /// NEOX RoPE rotates dimension i with i + d/2; the original (llama.cpp "NORM") rotates pairs
    /// (2i, 2i+1), which is why llama.cpp's converter permutes Llama's q/k rows.
    fn neox_rope(self) -> bool {
        !matches!(self, Arch::Llama)
    }
}

/// A LoRA target: which projection of each block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Target {
    Q,
    K,
    V,
    O,
    Gate,
    Up,
    Down,
}

impl Target {
    pub const ALL: [Target; 7] = [
        Target::Q,
        Target::K,
        Target::V,
        Target::O,
        Target::Gate,
        Target::Up,
        Target::Down,
    ];

    pub fn parse_list(list: &str) -> Result<Vec<Target>> {
        let mut out = Vec::new();
        for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let t = match item {
                "q" => Target::Q,
                "k" => Target::K,
                "v" => Target::V,
                "o" => Target::O,
                "gate" => Target::Gate,
                "up" => Target::Up,
                "down" => Target::Down,
                other => bail!(
                    "unknown LoRA target '{other}'; use a comma-separated subset of \
                     q,k,v,o,gate,up,down"
                ),
            };
            if !out.contains(&t) {
                out.push(t);
            }
        }
        if out.is_empty() {
            bail!("--targets is empty; use a comma-separated subset of q,k,v,o,gate,up,down");
        }
        out.sort();
        Ok(out)
    }

    /// The GGUF tensor stem (`blk.N.<stem>.weight`).
    pub fn gguf_stem(self) -> &'static str {
        match self {
            Target::Q => "attn_q",
            Target::K => "attn_k",
            Target::V => "attn_v",
            Target::O => "attn_output",
            Target::Gate => "ffn_gate",
            Target::Up => "ffn_up",
            Target::Down => "ffn_down",
        }
    }

    /// The Hugging Face module path inside a decoder layer (PEFT naming).
    pub fn hf_module(self) -> &'static str {
        match self {
            Target::Q => "self_attn.q_proj",
            Target::K => "self_attn.k_proj",
            Target::V => "self_attn.v_proj",
            Target::O => "self_attn.o_proj",
            Target::Gate => "mlp.gate_proj",
            Target::Up => "mlp.up_proj",
            Target::Down => "mlp.down_proj",
        }
    }

    pub fn short(self) -> &'static str {
        match self {
            Target::Q => "q",
            Target::K => "k",
            Target::V => "v",
            Target::O => "o",
            Target::Gate => "gate",
            Target::Up => "up",
            Target::Down => "down",
        }
    }
}

/// Hyperparameters read from the GGUF metadata.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Config {
    pub arch: Arch,
    pub n_layer: usize,
    pub n_embd: usize,
    pub n_head: usize,
    pub n_head_kv: usize,
    pub head_dim: usize,
    pub n_ff: usize,
    pub n_vocab: usize,
    pub eps: f64,
    pub rope_dim: usize,
    pub rope_base: f32,
    pub rope_scale: f32,
    pub rope_base_local: f32,
    /// Sliding-window size of the local layers (Gemma 3), if any.
    pub sliding_window: Option<usize>,
    /// Every `swa_pattern`-th layer is global; the others use the sliding window.
    pub swa_pattern: usize,
    pub attn_scale: f64,
    pub context_length: usize,
}

impl Config {
    /// Reads the hyperparameters from a GGUF's metadata (no tensor data).
    pub fn from_file(path: &Path) -> Result<Config> {
        let mut file = std::fs::File::open(path)
            .with_context(|| format!("cannot open base model '{}'", path.display()))?;
        let content = gguf_file::Content::read(&mut file)
            .map_err(|e| anyhow::anyhow!("'{}' is not a readable GGUF: {e}", path.display()))?;
        Config::read(&content).with_context(|| format!("base model '{}'", path.display()))
    }

    fn read(content: &gguf_file::Content) -> Result<Config> {
        let md = &content.metadata;
        let arch_name = md
            .get("general.architecture")
            .and_then(|v| v.to_string().ok())
            .context("the GGUF has no general.architecture")?;
        if md
            .get("general.type")
            .and_then(|v| v.to_string().ok())
            .is_some_and(|t| t == "adapter")
        {
            bail!("this GGUF is a LoRA adapter, not a base model");
        }
        let arch = Arch::parse(arch_name)?;
        let a = arch.name();
        let int = |key: &str| -> Result<Option<usize>> {
            match md.get(&format!("{a}.{key}")) {
                None => Ok(None),
                Some(v) => Ok(Some(integer(v).with_context(|| format!("{a}.{key}"))?)),
            }
        };
        let float = |key: &str| -> Result<Option<f64>> {
            match md.get(&format!("{a}.{key}")) {
                None => Ok(None),
                Some(v) => Ok(Some(floating(v).with_context(|| format!("{a}.{key}"))?)),
            }
        };
        let need = |key: &str| -> Result<usize> {
            int(key)?.with_context(|| format!("the GGUF lacks {a}.{key}"))
        };
        let n_layer = need("block_count")?;
        let n_embd = need("embedding_length")?;
        let n_head = need("attention.head_count")?;
        let n_head_kv = int("attention.head_count_kv")?.unwrap_or(n_head);
        let head_dim = int("attention.key_length")?.unwrap_or(n_embd / n_head.max(1));
        let n_ff = need("feed_forward_length")?;
        if n_head == 0 || n_head_kv == 0 || n_head % n_head_kv != 0 {
            bail!("bad head counts: {n_head} query heads, {n_head_kv} KV heads");
        }
        let eps = float("attention.layer_norm_rms_epsilon")?.unwrap_or(1e-6);
        let rope_dim = int("rope.dimension_count")?.unwrap_or(head_dim);
        let default_base = if arch == Arch::Gemma3 { 1e6 } else { 1e4 };
        let rope_base = float("rope.freq_base")?.unwrap_or(default_base) as f32;
        let mut rope_scale = 1.0f32;
        if let Some(kind) = md
            .get(&format!("{a}.rope.scaling.type"))
            .and_then(|v| v.to_string().ok())
        {
            match kind.as_str() {
                "none" => {}
                "linear" => {
                    if let Some(f) = float("rope.scaling.factor")? {
                        if f > 0.0 {
                            rope_scale = (1.0 / f) as f32;
                        }
                    }
                }
                other => bail!("RoPE scaling '{other}' is not supported for fine-tuning"),
            }
        } else if let Some(f) = float("rope.scaling.factor")? {
            if f > 0.0 && arch == Arch::Gemma3 {
                rope_scale = (1.0 / f) as f32;
            }
        }
        let (sliding_window, swa_pattern, rope_base_local) = match arch {
            Arch::Gemma3 => (
                int("attention.sliding_window")?,
                int("attention.sliding_window_pattern")?.unwrap_or(6).max(1),
                float("rope.freq_base_swa")?.unwrap_or(10_000.0) as f32,
            ),
            _ => (None, 1, rope_base),
        };
        // llama.cpp: Gemma 3 27B scales q by (n_embd / n_head)^-½, the others by head_dim^-½.
        let attn_scale = if arch == Arch::Gemma3 && n_layer == 62 {
            1.0 / ((n_embd / n_head) as f64).sqrt()
        } else {
            1.0 / (head_dim as f64).sqrt()
        };
        let n_vocab = content
            .tensor_infos
            .get("token_embd.weight")
            .map(|t| t.shape.dims()[0])
            .context("the GGUF has no token_embd.weight")?;
        Ok(Config {
            arch,
            n_layer,
            n_embd,
            n_head,
            n_head_kv,
            head_dim,
            n_ff,
            n_vocab,
            eps,
            rope_dim,
            rope_base,
            rope_scale,
            rope_base_local,
            sliding_window,
            swa_pattern,
            attn_scale,
            context_length: int("context_length")?.unwrap_or(2048),
        })
    }

    fn is_local(&self, layer: usize) -> bool {
        self.sliding_window.is_some() && (layer % self.swa_pattern) < self.swa_pattern - 1
    }

    /// Input and output width of a target's weight.
    pub fn target_shape(&self, target: Target) -> (usize, usize) {
        let q = self.n_head * self.head_dim;
        let kv = self.n_head_kv * self.head_dim;
        match target {
            Target::Q => (self.n_embd, q),
            Target::K | Target::V => (self.n_embd, kv),
            Target::O => (q, self.n_embd),
            Target::Gate | Target::Up => (self.n_embd, self.n_ff),
            Target::Down => (self.n_ff, self.n_embd),
        }
    }

    /// Parameters of the frozen base (for memory estimates).
    pub fn base_parameters(&self) -> usize {
        let per_layer: usize = Target::ALL
            .iter()
            .map(|&t| {
                let (i, o) = self.target_shape(t);
                i * o
            })
            .sum();
        self.n_vocab * self.n_embd + self.n_layer * per_layer
    }
}

fn integer(v: &gguf_file::Value) -> Result<usize> {
    use gguf_file::Value as V;
    Ok(match v {
        V::U8(x) => *x as usize,
        V::I8(x) => *x as usize,
        V::U16(x) => *x as usize,
        V::I16(x) => *x as usize,
        V::U32(x) => *x as usize,
        V::I32(x) => *x as usize,
        V::U64(x) => *x as usize,
        V::I64(x) => *x as usize,
        other => bail!("expected an integer, found {other:?}"),
    })
}

fn floating(v: &gguf_file::Value) -> Result<f64> {
    use gguf_file::Value as V;
    Ok(match v {
        V::F32(x) => *x as f64,
        V::F64(x) => *x,
        other => integer(other)? as f64,
    })
}

/// `x · Wᵀ` with a frozen `W` ([out, in]); the backward pass yields only `∂/∂x`.
struct Frozen {
    w: Tensor,
}

impl Frozen {
    /// The weight as F32: candle's CPU matmul has no BF16 kernel, so `--dtype bf16` stores the
    /// frozen matrices narrow and widens one at a time.
    fn weight(&self) -> candle_core::Result<Tensor> {
        self.w.to_dtype(DType::F32)
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if x.device().is_cpu() {
            Ok(x.contiguous()?.apply_op1(Frozen { w: self.w.clone() })?)
        } else {
            // Other devices: candle's matmul (its backward also forms the unused weight
            // gradient, which costs time but not correctness).
            let w = self.w.to_dtype(x.dtype())?;
            Ok(x.matmul(&w.t()?)?)
        }
    }
}

impl CustomOp1 for Frozen {
    fn name(&self) -> &'static str {
        "frozen-linear"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let data = match storage {
            CpuStorage::F32(v) => v,
            _ => candle_core::bail!("frozen-linear: expected f32 activations"),
        };
        let x = match layout.contiguous_offsets() {
            Some((start, end)) => {
                Tensor::from_slice(&data[start..end], layout.shape(), &Device::Cpu)?
            }
            None => candle_core::bail!("frozen-linear: expected contiguous activations"),
        };
        let y = x.matmul(&self.weight()?.t()?)?;
        let shape = y.shape().clone();
        Ok((CpuStorage::F32(y.flatten_all()?.to_vec1::<f32>()?), shape))
    }

    fn bwd(
        &self,
        _arg: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        let g = grad_res.contiguous()?.matmul(&self.weight()?)?;
        Ok(Some(g))
    }
}

/// Per-row cross-entropy of logits [n, vocab] against fixed targets, fused: the forward pass is
/// two sweeps per row and the backward pass (softmax − one-hot) three, in parallel over rows,
/// instead of a dozen full-size intermediate tensors (the vocabulary has 262k entries).
struct CrossEntropy {
    targets: Vec<u32>,
}

impl CrossEntropy {
    fn rows<'a>(
        &self,
        storage: &'a CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(&'a [f32], usize)> {
        let data = match storage {
            CpuStorage::F32(v) => v,
            _ => candle_core::bail!("cross-entropy: expected f32 logits"),
        };
        let (n, vocab) = layout.shape().dims2()?;
        if n != self.targets.len() {
            candle_core::bail!("cross-entropy: {n} rows for {} targets", self.targets.len());
        }
        match layout.contiguous_offsets() {
            Some((start, end)) => Ok((&data[start..end], vocab)),
            None => candle_core::bail!("cross-entropy: expected contiguous logits"),
        }
    }
}

/// RMS norm over the last dimension with a frozen weight, fused: one parallel pass forward and
/// one backward (`∂x = r·w·g − x·r³·mean(x·w·g)`, r = 1/√(mean(x²)+ε)) instead of a dozen
/// intermediate tensors per norm (Gemma 3 has seven norms per layer).
struct RmsNorm {
    w: Vec<f32>,
    eps: f64,
}

impl RmsNorm {
    fn data<'a>(&self, storage: &'a CpuStorage, layout: &Layout) -> candle_core::Result<&'a [f32]> {
        let data = match storage {
            CpuStorage::F32(v) => v,
            _ => candle_core::bail!("rms-norm: expected f32"),
        };
        if layout.dims().last() != Some(&self.w.len()) {
            candle_core::bail!(
                "rms-norm: width {:?} vs weight {}",
                layout.dims(),
                self.w.len()
            );
        }
        match layout.contiguous_offsets() {
            Some((start, end)) => Ok(&data[start..end]),
            None => candle_core::bail!("rms-norm: expected contiguous input"),
        }
    }

    fn inv_rms(&self, row: &[f32]) -> f64 {
        let ms = row.iter().map(|&v| (v as f64) * (v as f64)).sum::<f64>() / row.len() as f64;
        1.0 / (ms + self.eps).sqrt()
    }
}

impl CustomOp1 for RmsNorm {
    fn name(&self) -> &'static str {
        "rms-norm"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        use rayon::prelude::*;
        let x = self.data(storage, layout)?;
        let n = self.w.len();
        let mut y = vec![0f32; x.len()];
        y.par_chunks_mut(n).zip(x.par_chunks(n)).for_each(|(y, x)| {
            let r = self.inv_rms(x) as f32;
            for ((yi, &xi), &wi) in y.iter_mut().zip(x).zip(&self.w) {
                *yi = xi * r * wi;
            }
        });
        Ok((CpuStorage::F32(y), layout.shape().clone()))
    }

    fn bwd(
        &self,
        arg: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        use rayon::prelude::*;
        let x = arg.flatten_all()?.to_vec1::<f32>()?;
        let g = grad_res.contiguous()?.flatten_all()?.to_vec1::<f32>()?;
        let n = self.w.len();
        let mut dx = vec![0f32; x.len()];
        dx.par_chunks_mut(n)
            .zip(x.par_chunks(n).zip(g.par_chunks(n)))
            .for_each(|(dx, (x, g))| {
                let r = self.inv_rms(x);
                let dot: f64 = x
                    .iter()
                    .zip(g)
                    .zip(&self.w)
                    .map(|((&xi, &gi), &wi)| xi as f64 * gi as f64 * wi as f64)
                    .sum::<f64>()
                    / n as f64;
                let c = r * r * r * dot;
                for (((d, &xi), &gi), &wi) in dx.iter_mut().zip(x).zip(g).zip(&self.w) {
                    *d = (r * wi as f64 * gi as f64 - xi as f64 * c) as f32;
                }
            });
        Ok(Some(Tensor::from_vec(dx, arg.shape(), arg.device())?))
    }
}

/// log Σ exp(row), stably.
fn log_sum_exp(row: &[f32]) -> f32 {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f64 = row.iter().map(|&x| ((x - max) as f64).exp()).sum();
    max + sum.ln() as f32
}

impl CustomOp1 for CrossEntropy {
    fn name(&self) -> &'static str {
        "cross-entropy"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        use rayon::prelude::*;
        let (data, vocab) = self.rows(storage, layout)?;
        let out: Vec<f32> = data
            .par_chunks(vocab)
            .zip(self.targets.par_iter())
            .map(|(row, &t)| log_sum_exp(row) - row[t as usize])
            .collect();
        let n = out.len();
        Ok((CpuStorage::F32(out), Shape::from(n)))
    }

    fn bwd(
        &self,
        arg: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        use rayon::prelude::*;
        let vocab = arg.dim(1)?;
        let data = arg.flatten_all()?.to_vec1::<f32>()?;
        let scale = grad_res.to_vec1::<f32>()?;
        let mut grad = vec![0f32; data.len()];
        grad.par_chunks_mut(vocab)
            .zip(data.par_chunks(vocab))
            .zip(self.targets.par_iter().zip(scale.par_iter()))
            .for_each(|((g, row), (&t, &s))| {
                let lse = log_sum_exp(row);
                for (gi, &x) in g.iter_mut().zip(row) {
                    *gi = (x - lse).exp() * s;
                }
                g[t as usize] -= s;
            });
        Ok(Some(Tensor::from_vec(grad, arg.shape(), arg.device())?))
    }
}

/// One LoRA pair: `A` [r, in], `B` [out, r] (PEFT orientation).
pub struct Lora {
    pub a: Var,
    pub b: Var,
}

/// All trainable LoRA pairs, keyed by (layer, target).
pub struct Adapter {
    pub rank: usize,
    pub alpha: f64,
    pub pairs: BTreeMap<(usize, Target), Lora>,
}

impl Adapter {
    /// `A` uniform in ±1/√in (PEFT's Kaiming-uniform default), `B` zero: training starts from
    /// the base model.
    pub fn init(
        config: &Config,
        rank: usize,
        alpha: f64,
        targets: &[Target],
        seed: u64,
        device: &Device,
    ) -> Result<Adapter> {
        if rank == 0 {
            bail!("--rank must be at least 1");
        }
        let mut rng = SplitMix64::new(seed ^ 0x0005_EED0_FA11);
        let mut pairs = BTreeMap::new();
        for layer in 0..config.n_layer {
            for &t in targets {
                let (n_in, n_out) = config.target_shape(t);
                if rank > n_in.min(n_out) {
                    bail!(
                        "--rank {rank} exceeds the smaller side of blk.{layer}.{} ({n_in} × \
                         {n_out})",
                        t.gguf_stem()
                    );
                }
                let bound = 1.0 / (n_in as f64).sqrt();
                let a: Vec<f32> = (0..rank * n_in)
                    .map(|_| ((rng.next_f64() * 2.0 - 1.0) * bound) as f32)
                    .collect();
                let a = Var::from_tensor(&Tensor::from_vec(a, (rank, n_in), device)?)?;
                let b = Var::zeros((n_out, rank), DType::F32, device)?;
                pairs.insert((layer, t), Lora { a, b });
            }
        }
        Ok(Adapter { rank, alpha, pairs })
    }

    pub fn scale(&self) -> f64 {
        self.alpha / self.rank as f64
    }

    /// Tensor names in our checkpoint and native adapter files: `blk.N.<stem>.lora_a` / `lora_b`
    /// (the llama.cpp names without `.weight`).
    pub fn named(&self) -> Vec<(String, &Var)> {
        let mut out = Vec::new();
        for ((layer, t), pair) in &self.pairs {
            out.push((format!("blk.{layer}.{}.lora_a", t.gguf_stem()), &pair.a));
            out.push((format!("blk.{layer}.{}.lora_b", t.gguf_stem()), &pair.b));
        }
        out
    }

    pub fn vars(&self) -> Vec<&Var> {
        self.named().into_iter().map(|(_, v)| v).collect()
    }

    pub fn parameters(&self) -> usize {
        self.vars().iter().map(|v| v.elem_count()).sum()
    }

    /// Loads values saved by [`Adapter::named`] names, checking every shape first.
    pub fn load_values(&self, tensors: &std::collections::HashMap<String, Tensor>) -> Result<()> {
        for (name, var) in self.named() {
            let t = tensors
                .get(&name)
                .with_context(|| format!("the adapter file lacks {name}"))?;
            if t.dims() != var.dims() {
                bail!(
                    "{name} has shape {:?} but this base model and rank need {:?}: the adapter \
                     was trained for another base model or rank",
                    t.dims(),
                    var.dims()
                );
            }
        }
        for (name, var) in self.named() {
            var.set(&tensors[&name].to_dtype(DType::F32)?)?;
        }
        Ok(())
    }
}

/// Dropout on the LoRA input, drawn from a seeded generator so a resumed run draws the same
/// masks.
pub struct Dropout {
    pub p: f64,
    pub rng: SplitMix64,
}

struct Block {
    attn_norm: Tensor,
    q: Frozen,
    k: Frozen,
    v: Frozen,
    o: Frozen,
    q_bias: Option<Tensor>,
    k_bias: Option<Tensor>,
    v_bias: Option<Tensor>,
    q_norm: Option<Tensor>,
    k_norm: Option<Tensor>,
    post_attn_norm: Option<Tensor>,
    ffn_norm: Tensor,
    gate: Frozen,
    up: Frozen,
    down: Frozen,
    post_ffn_norm: Option<Tensor>,
}

/// The frozen base model.
pub struct Model {
    pub config: Config,
    embed: Tensor,
    blocks: Vec<Block>,
    output_norm: Tensor,
    head: Frozen,
    device: Device,
}

impl Model {
    /// Reads and dequantizes the GGUF. `dtype` is the storage type of the frozen matrices (F32,
    /// or BF16 to halve their memory); activations and LoRA weights stay F32.
    pub fn load(path: &Path, dtype: DType, device: &Device) -> Result<Model> {
        let mut file = std::fs::File::open(path)
            .with_context(|| format!("cannot open base model '{}'", path.display()))?;
        let content = gguf_file::Content::read(&mut file)
            .map_err(|e| anyhow::anyhow!("'{}' is not a readable GGUF: {e}", path.display()))?;
        let config =
            Config::read(&content).with_context(|| format!("base model '{}'", path.display()))?;
        let mut get = |name: &str, dt: DType| -> Result<Tensor> {
            let q = content
                .tensor(&mut file, name, device)
                .map_err(|e| anyhow::anyhow!("tensor {name}: {e}"))?;
            Ok(q.dequantize(device)?.to_dtype(dt)?)
        };
        let has = |name: &str| content.tensor_infos.contains_key(name);
        let c = &config;
        let check = |t: &Tensor, name: &str, want: &[usize]| -> Result<()> {
            if t.dims() != want {
                bail!(
                    "tensor {name} has shape {:?}, expected {want:?} from the metadata",
                    t.dims()
                );
            }
            Ok(())
        };
        let embed = get("token_embd.weight", dtype)?;
        check(&embed, "token_embd.weight", &[c.n_vocab, c.n_embd])?;
        let mut blocks = Vec::with_capacity(c.n_layer);
        for l in 0..c.n_layer {
            let n = |s: &str| format!("blk.{l}.{s}");
            let mut mat = |t: Target| -> Result<Frozen> {
                let name = n(&format!("{}.weight", t.gguf_stem()));
                let w = get(&name, dtype)?;
                let (i, o) = c.target_shape(t);
                check(&w, &name, &[o, i])?;
                Ok(Frozen { w })
            };
            let (q, k, v, o) = (
                mat(Target::Q)?,
                mat(Target::K)?,
                mat(Target::V)?,
                mat(Target::O)?,
            );
            let (gate, up, down) = (mat(Target::Gate)?, mat(Target::Up)?, mat(Target::Down)?);
            let attn_norm = get(&n("attn_norm.weight"), DType::F32)?;
            let ffn_norm = get(&n("ffn_norm.weight"), DType::F32)?;
            let mut opt = |s: &str| -> Result<Option<Tensor>> {
                let name = n(s);
                if has(&name) {
                    Ok(Some(get(&name, DType::F32)?))
                } else {
                    Ok(None)
                }
            };
            let gemma = c.arch == Arch::Gemma3;
            let block = Block {
                attn_norm,
                q_bias: opt("attn_q.bias")?,
                k_bias: opt("attn_k.bias")?,
                v_bias: opt("attn_v.bias")?,
                q_norm: if gemma {
                    opt("attn_q_norm.weight")?
                } else {
                    None
                },
                k_norm: if gemma {
                    opt("attn_k_norm.weight")?
                } else {
                    None
                },
                post_attn_norm: if gemma {
                    opt("post_attention_norm.weight")?
                } else {
                    None
                },
                ffn_norm,
                post_ffn_norm: if gemma {
                    opt("post_ffw_norm.weight")?
                } else {
                    None
                },
                q,
                k,
                v,
                o,
                gate,
                up,
                down,
            };
            blocks.push(block);
        }
        let output_norm = get("output_norm.weight", DType::F32)?;
        let head = if has("output.weight") {
            let w = get("output.weight", dtype)?;
            check(&w, "output.weight", &[c.n_vocab, c.n_embd])?;
            Frozen { w }
        } else {
            Frozen { w: embed.clone() }
        };
        Ok(Model {
            config,
            embed,
            blocks,
            output_norm,
            head,
            device: device.clone(),
        })
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    fn rms_norm(&self, x: &Tensor, w: &Tensor) -> Result<Tensor> {
        if x.device().is_cpu() && x.dtype() == DType::F32 {
            return Ok(x.contiguous()?.apply_op1(RmsNorm {
                w: w.flatten_all()?.to_vec1::<f32>()?,
                eps: self.config.eps,
            })?);
        }
        let ms = x.sqr()?.mean_keepdim(D::Minus1)?;
        let y = x.broadcast_div(&(ms + self.config.eps)?.sqrt()?)?;
        Ok(y.broadcast_mul(w)?)
    }

    fn linear(
        &self,
        x: &Tensor,
        base: &Frozen,
        lora: Option<&Lora>,
        scale: f64,
        dropout: &mut Option<&mut Dropout>,
    ) -> Result<Tensor> {
        let y = base.forward(x)?;
        let Some(lora) = lora else { return Ok(y) };
        let x = match dropout {
            Some(d) if d.p > 0.0 => {
                let keep = 1.0 - d.p;
                let mask: Vec<f32> = (0..x.elem_count())
                    .map(|_| {
                        if d.rng.next_f64() < keep {
                            (1.0 / keep) as f32
                        } else {
                            0.0
                        }
                    })
                    .collect();
                x.mul(&Tensor::from_vec(mask, x.shape(), x.device())?)?
            }
            _ => x.clone(),
        };
        let delta = x
            .matmul(&lora.a.as_tensor().t()?)?
            .matmul(&lora.b.as_tensor().t()?)?;
        Ok((y + (delta * scale)?)?)
    }

    /// RoPE tables (cos, sin), each [T, rope_dim/2].
    fn rope_tables(&self, t: usize, base: f32, scale: f32) -> Result<(Tensor, Tensor)> {
        let half = self.config.rope_dim / 2;
        let mut cos = Vec::with_capacity(t * half);
        let mut sin = Vec::with_capacity(t * half);
        for p in 0..t {
            for i in 0..half {
                let theta = (base as f64).powf(-2.0 * i as f64 / self.config.rope_dim as f64);
                let angle = p as f64 * scale as f64 * theta;
                cos.push(angle.cos() as f32);
                sin.push(angle.sin() as f32);
            }
        }
        Ok((
            Tensor::from_vec(cos, (t, 1, half), &self.device)?,
            Tensor::from_vec(sin, (t, 1, half), &self.device)?,
        ))
    }

    /// Rotates x [T, H, head_dim] (only the first rope_dim dimensions).
    fn rope(&self, x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
        let (t, h, d) = x.dims3()?;
        let rd = self.config.rope_dim;
        let half = rd / 2;
        let rot = x.narrow(2, 0, rd)?;
        let out = if self.config.arch.neox_rope() {
            let x1 = rot.narrow(2, 0, half)?;
            let x2 = rot.narrow(2, half, half)?;
            let r1 = (x1.broadcast_mul(cos)? - x2.broadcast_mul(sin)?)?;
            let r2 = (x2.broadcast_mul(cos)? + x1.broadcast_mul(sin)?)?;
            Tensor::cat(&[r1, r2], 2)?
        } else {
            let pairs = rot.reshape((t, h, half, 2))?;
            let even = pairs.narrow(3, 0, 1)?.squeeze(3)?;
            let odd = pairs.narrow(3, 1, 1)?.squeeze(3)?;
            let r1 = (even.broadcast_mul(cos)? - odd.broadcast_mul(sin)?)?;
            let r2 = (odd.broadcast_mul(cos)? + even.broadcast_mul(sin)?)?;
            Tensor::stack(&[r1, r2], 3)?.reshape((t, h, rd))?
        };
        if rd < d {
            Ok(Tensor::cat(&[out, x.narrow(2, rd, d - rd)?], 2)?)
        } else {
            Ok(out)
        }
    }

    /// Additive causal mask [T, T], with a sliding window if given.
    fn mask(&self, t: usize, window: Option<usize>) -> Result<Tensor> {
        let mut m = vec![0f32; t * t];
        for i in 0..t {
            for j in 0..t {
                let hidden = j > i || window.is_some_and(|w| i - j >= w);
                if hidden {
                    m[i * t + j] = f32::NEG_INFINITY;
                }
            }
        }
        Ok(Tensor::from_vec(m, (t, t), &self.device)?)
    }

    /// Final hidden states [T, n_embd] (after the output norm) for `tokens`.
    pub fn hidden(
        &self,
        tokens: &[u32],
        adapter: Option<&Adapter>,
        mut dropout: Option<&mut Dropout>,
    ) -> Result<Tensor> {
        let c = &self.config;
        let t = tokens.len();
        if t == 0 {
            bail!("empty token sequence");
        }
        if let Some(&bad) = tokens.iter().find(|&&x| x as usize >= c.n_vocab) {
            bail!("token {bad} is outside the vocabulary of {}", c.n_vocab);
        }
        let ids = Tensor::from_slice(tokens, t, &self.device)?;
        let mut x = self.embed.index_select(&ids, 0)?.to_dtype(DType::F32)?;
        if c.arch == Arch::Gemma3 {
            x = (x * (c.n_embd as f64).sqrt())?;
        }
        let global = self.rope_tables(t, c.rope_base, c.rope_scale)?;
        let local = self.rope_tables(t, c.rope_base_local, 1.0)?;
        let global_mask = self.mask(t, None)?;
        let local_mask = self.mask(t, c.sliding_window)?;
        let scale = adapter.map(|a| a.scale()).unwrap_or(0.0);
        let lora = |l: usize, target: Target| adapter.and_then(|a| a.pairs.get(&(l, target)));
        let (hq, hkv, hd) = (c.n_head, c.n_head_kv, c.head_dim);
        let groups = hq / hkv;
        for (l, b) in self.blocks.iter().enumerate() {
            let (cos, sin) = if c.is_local(l) { &local } else { &global };
            let mask = if c.is_local(l) {
                &local_mask
            } else {
                &global_mask
            };
            let h = self.rms_norm(&x, &b.attn_norm)?;
            let mut q = self.linear(&h, &b.q, lora(l, Target::Q), scale, &mut dropout)?;
            let mut k = self.linear(&h, &b.k, lora(l, Target::K), scale, &mut dropout)?;
            let mut v = self.linear(&h, &b.v, lora(l, Target::V), scale, &mut dropout)?;
            if let Some(bias) = &b.q_bias {
                q = q.broadcast_add(bias)?;
            }
            if let Some(bias) = &b.k_bias {
                k = k.broadcast_add(bias)?;
            }
            if let Some(bias) = &b.v_bias {
                v = v.broadcast_add(bias)?;
            }
            let mut q = q.reshape((t, hq, hd))?;
            let mut k = k.reshape((t, hkv, hd))?;
            let v = v.reshape((t, hkv, hd))?;
            if let Some(w) = &b.q_norm {
                q = self.rms_norm(&q, w)?;
            }
            if let Some(w) = &b.k_norm {
                k = self.rms_norm(&k, w)?;
            }
            let q = (self.rope(&q, cos, sin)? * c.attn_scale)?;
            let k = self.rope(&k, cos, sin)?;
            // Query heads of one KV head are consecutive: [Hkv, G·T, hd] against [Hkv, T, hd].
            let q = q
                .transpose(0, 1)?
                .contiguous()?
                .reshape((hkv, groups * t, hd))?;
            let k = k.transpose(0, 1)?.contiguous()?;
            let v = v.transpose(0, 1)?.contiguous()?;
            let scores = q
                .matmul(&k.t()?)?
                .reshape((hkv, groups, t, t))?
                .broadcast_add(mask)?;
            let max = scores.max_keepdim(D::Minus1)?.detach();
            let e = scores.broadcast_sub(&max)?.exp()?;
            let p = e.broadcast_div(&e.sum_keepdim(D::Minus1)?)?;
            let attn = p
                .reshape((hkv, groups * t, t))?
                .matmul(&v)?
                .reshape((hq, t, hd))?
                .transpose(0, 1)?
                .contiguous()?
                .reshape((t, hq * hd))?;
            let mut o = self.linear(&attn, &b.o, lora(l, Target::O), scale, &mut dropout)?;
            if let Some(w) = &b.post_attn_norm {
                o = self.rms_norm(&o, w)?;
            }
            x = (x + o)?;
            let h = self.rms_norm(&x, &b.ffn_norm)?;
            let g = self.linear(&h, &b.gate, lora(l, Target::Gate), scale, &mut dropout)?;
            let u = self.linear(&h, &b.up, lora(l, Target::Up), scale, &mut dropout)?;
            let act = if c.arch == Arch::Gemma3 {
                g.gelu()?
            } else {
                g.silu()?
            };
            let mut f = self.linear(
                &(act * u)?,
                &b.down,
                lora(l, Target::Down),
                scale,
                &mut dropout,
            )?;
            if let Some(w) = &b.post_ffn_norm {
                f = self.rms_norm(&f, w)?;
            }
            x = (x + f)?;
        }
        self.rms_norm(&x, &self.output_norm)
    }

    /// Logits [n, vocab] for hidden states [n, n_embd].
    pub fn logits(&self, hidden: &Tensor) -> Result<Tensor> {
        self.head.forward(&hidden.contiguous()?)
    }

    /// Summed negative log-likelihood of `tokens[from..]`, each predicted from the tokens before
    /// it (`from` ≥ 1), and the number of predicted tokens. Logits are formed only for those
    /// positions.
    pub fn nll(
        &self,
        tokens: &[u32],
        from: usize,
        adapter: Option<&Adapter>,
        dropout: Option<&mut Dropout>,
    ) -> Result<(Tensor, usize)> {
        if from == 0 || from >= tokens.len() {
            bail!("nothing to predict: {from} of {} tokens", tokens.len());
        }
        let hidden = self.hidden(&tokens[..tokens.len() - 1], adapter, dropout)?;
        let n = tokens.len() - from;
        let h = hidden.narrow(0, from - 1, n)?;
        let logits = self.logits(&h)?;
        let nll = if logits.device().is_cpu() {
            logits.apply_op1(CrossEntropy {
                targets: tokens[from..].to_vec(),
            })?
        } else {
            let max = logits.max_keepdim(1)?.detach();
            let lse = (logits.broadcast_sub(&max)?.exp()?.sum_keepdim(1)?.log()? + &max)?;
            let targets = Tensor::from_slice(&tokens[from..], (n, 1), &self.device)?;
            (lse - logits.gather(&targets, 1)?)?.squeeze(1)?
        };
        Ok((nll.sum_all()?, n))
    }
}

/// A small, fast, seedable generator (SplitMix64): data order, dropout masks and LoRA init.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct SplitMix64(pub u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> SplitMix64 {
        SplitMix64(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// A seeded permutation of 0..n (Fisher–Yates).
    pub fn permutation(&mut self, n: usize) -> Vec<usize> {
        let mut v: Vec<usize> = (0..n).collect();
        for i in (1..n).rev() {
            let j = (self.next_u64() % (i as u64 + 1)) as usize;
            v.swap(i, j);
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fused RMS norm equals the composite formula in value and gradient.
    #[test]
    fn fused_rms_norm_matches_the_formula() {
        let mut rng = SplitMix64::new(5);
        let (rows, n) = (3, 16);
        let data: Vec<f32> = (0..rows * n)
            .map(|_| (rng.next_f64() * 4.0 - 2.0) as f32)
            .collect();
        let w: Vec<f32> = (0..n).map(|i| 0.5 + i as f32 / n as f32).collect();
        let probe: Vec<f32> = (0..rows * n)
            .map(|_| (rng.next_f64() - 0.5) as f32)
            .collect();
        let probe = Tensor::from_vec(probe, (rows, n), &Device::Cpu).unwrap();
        let run = |fused: bool| {
            let x =
                Var::from_tensor(&Tensor::from_vec(data.clone(), (rows, n), &Device::Cpu).unwrap())
                    .unwrap();
            let y = if fused {
                x.as_tensor()
                    .apply_op1(RmsNorm {
                        w: w.clone(),
                        eps: 1e-6,
                    })
                    .unwrap()
            } else {
                let wt = Tensor::from_vec(w.clone(), n, &Device::Cpu).unwrap();
                let xt = x.as_tensor();
                let ms = xt.sqr().unwrap().mean_keepdim(D::Minus1).unwrap();
                xt.broadcast_div(&(ms + 1e-6).unwrap().sqrt().unwrap())
                    .unwrap()
                    .broadcast_mul(&wt)
                    .unwrap()
            };
            let loss = (y.clone() * &probe).unwrap().sum_all().unwrap();
            let g = loss.backward().unwrap();
            (
                y.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
                g.get(x.as_tensor())
                    .unwrap()
                    .flatten_all()
                    .unwrap()
                    .to_vec1::<f32>()
                    .unwrap(),
            )
        };
        let (y1, g1) = run(true);
        let (y2, g2) = run(false);
        for (a, b) in y1.iter().zip(&y2).chain(g1.iter().zip(&g2)) {
            assert!((a - b).abs() < 1e-5, "{a} vs {b}");
        }
    }

    /// The fused cross-entropy equals the composite formula in value and gradient.
    #[test]
    fn fused_cross_entropy_matches_the_formula() {
        let mut rng = SplitMix64::new(3);
        let (n, vocab) = (5, 1000);
        let data: Vec<f32> = (0..n * vocab)
            .map(|_| (rng.next_f64() * 20.0 - 10.0) as f32)
            .collect();
        let targets: Vec<u32> = (0..n as u32).map(|i| i * 97 % vocab as u32).collect();
        let weights = Tensor::from_vec(
            (1..=n).map(|i| i as f32).collect::<Vec<_>>(),
            n,
            &Device::Cpu,
        )
        .unwrap();
        let run = |fused: bool| {
            let x = Var::from_tensor(
                &Tensor::from_vec(data.clone(), (n, vocab), &Device::Cpu).unwrap(),
            )
            .unwrap();
            let nll = if fused {
                x.as_tensor()
                    .apply_op1(CrossEntropy {
                        targets: targets.clone(),
                    })
                    .unwrap()
            } else {
                let l = x.as_tensor();
                let max = l.max_keepdim(1).unwrap().detach();
                let lse = (l
                    .broadcast_sub(&max)
                    .unwrap()
                    .exp()
                    .unwrap()
                    .sum_keepdim(1)
                    .unwrap()
                    .log()
                    .unwrap()
                    + &max)
                    .unwrap();
                let t = Tensor::from_slice(&targets, (n, 1), &Device::Cpu).unwrap();
                (lse - l.gather(&t, 1).unwrap())
                    .unwrap()
                    .squeeze(1)
                    .unwrap()
            };
            let loss = (nll.clone() * &weights).unwrap().sum_all().unwrap();
            let grads = loss.backward().unwrap();
            let g = grads
                .get(x.as_tensor())
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap();
            (nll.to_vec1::<f32>().unwrap(), g)
        };
        let (v1, g1) = run(true);
        let (v2, g2) = run(false);
        for (a, b) in v1.iter().zip(&v2) {
            assert!((a - b).abs() < 1e-4, "{a} vs {b}");
        }
        for (a, b) in g1.iter().zip(&g2) {
            assert!((a - b).abs() < 1e-5, "{a} vs {b}");
        }
    }
}
