//! The training forward pass: Gemma 3, Llama and Qwen 2 decoders over dequantized GGUF weights,
//! with LoRA on the projections.
//!
//! Everything on the path from a LoRA weight to the loss is differentiable: candle's matmul and
//! arithmetic for the LoRA products, and the fused ops of [`crate::ops`] (frozen matrix products,
//! RMS norm, RoPE, causal softmax, gated activation, cross-entropy), each with its own backward
//! pass. candle's `rope`, `softmax_last_dim`, fast `rms_norm` and `QMatMul` have no backward pass
//! and would silently stop the gradient, so none of them is used.
//!
//! The math follows llama.cpp (the engine that serves the adapter): for Gemma 3, embeddings scaled
//! by √hidden, norms whose weights already include the +1, QK-norm before RoPE, q scaled by
//! head_dim^-½, NEOX RoPE with base 10k on sliding-window layers (5 of every 6) and the GGUF's base
//! on global ones, post-attention and post-FFN norms, GELU (tanh) gating, tied output head.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{bail, Context, Result};
use candle_core::quantized::gguf_file;
use candle_core::{CpuStorage, CustomOp1, DType, Device, Layout, Shape, Tensor, Var};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::ops::{self, Activation, Frozen, Norm, RopeTables};

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
        let content = gguf_file::Content::read(&mut file).with_context(|| {
            format!(
                "'{}' is not a readable GGUF; pass a GGUF model file with --model",
                path.display()
            )
        })?;
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

/// Mask elements per parallel chunk (a multiple of `MASK_LANES`).
const MASK_CHUNK: usize = 1 << 14;
/// Keep-or-drop decisions per 64 random bits: each reads 16 of them.
const MASK_LANES: usize = 4;

impl Dropout {
    /// The keep mask of `n` elements: 1 where an element is kept, 0 where it is dropped.
    ///
    /// A mask is one draw from `rng` (its key) and a counter: element `i` reads 16 bits of
    /// SplitMix64's output at `key + (i / 4 + 1)·γ`, so the chunks are drawn on all of rayon's
    /// threads and the mask does not depend on how many there are. An element is kept when its 16
    /// bits fall below `round((1 − p)·65536)`, which moves the keep probability by at most 2^-17.
    /// The LoRA input has about 246,000 elements per token for Qwen2.5-0.5B; drawing them one
    /// `next_f64` at a time on one thread cost a few percent of a CPU step, and is the first
    /// suspect for the host work a GPU waits for (BENCHMARKS.md).
    pub fn keep_mask(&mut self, n: usize) -> Vec<u8> {
        let key = self.rng.next_u64();
        let threshold = ((1.0 - self.p) * 65536.0).round() as u64;
        let mut mask = vec![0u8; n];
        mask.par_chunks_mut(MASK_CHUNK)
            .enumerate()
            .for_each(|(c, chunk)| {
                let first_block = (c * MASK_CHUNK / MASK_LANES) as u64;
                for (b, lanes) in chunk.chunks_mut(MASK_LANES).enumerate() {
                    let bits = SplitMix64::mix(key.wrapping_add(
                        (first_block + b as u64 + 1).wrapping_mul(SplitMix64::GAMMA),
                    ));
                    for (j, keep) in lanes.iter_mut().enumerate() {
                        *keep = u8::from((bits >> (16 * j)) & 0xFFFF < threshold);
                    }
                }
            });
        mask
    }

    /// `x` with its dropped elements zeroed and the kept ones scaled by 1 / (1 − p).
    ///
    /// On the CPU this is one operation (`Masked`) whose gradient is the same masking. Written as
    /// `x.mul(&mask)` it cost a sixth of a training step: candle differentiates both sides of a
    /// product, so the backward pass also made the mask's gradient (three more passes over the
    /// LoRA input, per projection). Elsewhere the mask goes over as bytes (a quarter of the
    /// transfer) and is widened on the device, where `Masked` has no kernel.
    fn apply(&mut self, x: &Tensor) -> Result<Tensor> {
        let scale = 1.0 / (1.0 - self.p);
        let keep = self.keep_mask(x.elem_count());
        if x.device().is_cpu() && x.dtype() == DType::F32 {
            let op = Masked {
                keep: std::sync::Arc::new(keep),
                scale: scale as f32,
            };
            return Ok(x.contiguous()?.apply_op1(op)?);
        }
        let mask = Tensor::from_vec(keep, x.shape(), x.device())?
            .to_dtype(x.dtype())?
            .affine(scale, 0.0)?;
        Ok(x.mul(&mask)?)
    }
}

/// Dropout's masking on the CPU: kept elements scaled, dropped ones zero; its gradient is the
/// same masking of the incoming gradient.
struct Masked {
    keep: std::sync::Arc<Vec<u8>>,
    scale: f32,
}

impl CustomOp1 for Masked {
    fn name(&self) -> &'static str {
        "dropout-mask"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let CpuStorage::F32(values) = storage else {
            candle_core::bail!("dropout mask: F32 input expected");
        };
        let Some((from, to)) = layout.contiguous_offsets() else {
            candle_core::bail!("dropout mask: contiguous input expected");
        };
        let x = &values[from..to];
        if x.len() != self.keep.len() {
            candle_core::bail!("dropout mask: {} elements for {}", self.keep.len(), x.len());
        }
        let mut out = vec![0f32; x.len()];
        out.par_chunks_mut(MASK_CHUNK)
            .zip(
                x.par_chunks(MASK_CHUNK)
                    .zip(self.keep.par_chunks(MASK_CHUNK)),
            )
            .for_each(|(out, (x, keep))| {
                for ((o, &x), &k) in out.iter_mut().zip(x).zip(keep) {
                    if k == 1 {
                        *o = x * self.scale;
                    }
                }
            });
        Ok((CpuStorage::F32(out), layout.shape().clone()))
    }

    fn bwd(
        &self,
        _arg: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        Ok(Some(grad.contiguous()?.apply_op1_no_bwd(self)?))
    }
}

struct Block {
    attn_norm: Norm,
    q: Frozen,
    k: Frozen,
    v: Frozen,
    o: Frozen,
    q_bias: Option<Tensor>,
    k_bias: Option<Tensor>,
    v_bias: Option<Tensor>,
    q_norm: Option<Norm>,
    k_norm: Option<Norm>,
    post_attn_norm: Option<Norm>,
    ffn_norm: Norm,
    gate: Frozen,
    up: Frozen,
    down: Frozen,
    post_ffn_norm: Option<Norm>,
}

/// The frozen base model.
pub struct Model {
    pub config: Config,
    embed: Tensor,
    blocks: Vec<Block>,
    output_norm: Norm,
    head: Frozen,
    device: Device,
}

impl Model {
    /// Reads and dequantizes the GGUF. `dtype` is the storage type of the frozen matrices (F32,
    /// or BF16 to halve their memory); activations and LoRA weights stay F32.
    pub fn load(path: &Path, dtype: DType, device: &Device) -> Result<Model> {
        let mut file = std::fs::File::open(path)
            .with_context(|| format!("cannot open base model '{}'", path.display()))?;
        let content = gguf_file::Content::read(&mut file).with_context(|| {
            format!(
                "'{}' is not a readable GGUF; pass a GGUF model file with --model",
                path.display()
            )
        })?;
        let config =
            Config::read(&content).with_context(|| format!("base model '{}'", path.display()))?;
        let mut get = |name: &str, dt: DType| -> Result<Tensor> {
            let q = content
                .tensor(&mut file, name, device)
                .with_context(|| format!("cannot read tensor {name}"))?;
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
            let attn_norm = Norm::new(get(&n("attn_norm.weight"), DType::F32)?, c.eps)?;
            let ffn_norm = Norm::new(get(&n("ffn_norm.weight"), DType::F32)?, c.eps)?;
            let mut opt = |s: &str| -> Result<Option<Tensor>> {
                let name = n(s);
                if has(&name) {
                    Ok(Some(get(&name, DType::F32)?))
                } else {
                    Ok(None)
                }
            };
            let (q_bias, k_bias, v_bias) = (
                opt("attn_q.bias")?,
                opt("attn_k.bias")?,
                opt("attn_v.bias")?,
            );
            let gemma = c.arch == Arch::Gemma3;
            // Gemma's extra norms; other architectures' files do not have them.
            let mut norm = |s: &str| -> Result<Option<Norm>> {
                match opt(s)? {
                    Some(w) if gemma => Ok(Some(Norm::new(w, c.eps)?)),
                    _ => Ok(None),
                }
            };
            let block = Block {
                attn_norm,
                q_bias,
                k_bias,
                v_bias,
                q_norm: norm("attn_q_norm.weight")?,
                k_norm: norm("attn_k_norm.weight")?,
                post_attn_norm: norm("post_attention_norm.weight")?,
                ffn_norm,
                post_ffn_norm: norm("post_ffw_norm.weight")?,
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
        let output_norm = Norm::new(get("output_norm.weight", DType::F32)?, c.eps)?;
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
            Some(d) if d.p > 0.0 => d.apply(x)?,
            _ => x.clone(),
        };
        // The scale applies to the rank-r intermediate, the smallest tensor of the product.
        let delta =
            (x.matmul(&lora.a.as_tensor().t()?)? * scale)?.matmul(&lora.b.as_tensor().t()?)?;
        Ok((y + delta)?)
    }

    /// Final hidden states [T, n_embd] (after the output norm) for `tokens`.
    pub fn hidden(
        &self,
        tokens: &[u32],
        adapter: Option<&Adapter>,
        dropout: Option<&mut Dropout>,
    ) -> Result<Tensor> {
        self.hidden_batch(&[tokens], adapter, dropout)
    }

    /// Final hidden states [B·T, n_embd] of B sequences in one pass, each padded at its end to
    /// the longest (T): sequence i's position p is row i·T + p. Attention is causal, so a real
    /// position never sees the padding, and its state is the one the sequence alone gets (up to
    /// rounding). One sequence is exactly [`Model::hidden`]. Each kernel launch does B
    /// sequences' work; on an H200 that did not make training faster (BENCHMARKS.md, "On a GPU").
    pub fn hidden_batch(
        &self,
        batch: &[&[u32]],
        adapter: Option<&Adapter>,
        mut dropout: Option<&mut Dropout>,
    ) -> Result<Tensor> {
        let c = &self.config;
        let b = batch.len();
        let t = batch.iter().map(|s| s.len()).max().unwrap_or(0);
        if t == 0 || batch.iter().any(|s| s.is_empty()) {
            bail!("empty token sequence");
        }
        if let Some(&bad) = batch
            .iter()
            .flat_map(|s| s.iter())
            .find(|&&x| x as usize >= c.n_vocab)
        {
            bail!("token {bad} is outside the vocabulary of {}", c.n_vocab);
        }
        let mut padded = Vec::with_capacity(b * t);
        for s in batch {
            padded.extend_from_slice(s);
            padded.resize(padded.len() + t - s.len(), 0);
        }
        let ids = Tensor::from_vec(padded, b * t, &self.device)?;
        let mut x = self.embed.index_select(&ids, 0)?.to_dtype(DType::F32)?;
        if c.arch == Arch::Gemma3 {
            x = (x * (c.n_embd as f64).sqrt())?;
        }
        let global = RopeTables::new(t, c.rope_dim, c.rope_base, c.rope_scale).repeat(b);
        let local = RopeTables::new(t, c.rope_dim, c.rope_base_local, 1.0).repeat(b);
        let neox = c.arch.neox_rope();
        let activation = if c.arch == Arch::Gemma3 {
            Activation::GeluTanh
        } else {
            Activation::Silu
        };
        let scale = adapter.map(|a| a.scale()).unwrap_or(0.0);
        let lora = |l: usize, target: Target| adapter.and_then(|a| a.pairs.get(&(l, target)));
        let (hq, hkv, hd) = (c.n_head, c.n_head_kv, c.head_dim);
        let groups = hq / hkv;
        for (l, blk) in self.blocks.iter().enumerate() {
            let (tables, window) = if c.is_local(l) {
                (&local, c.sliding_window)
            } else {
                (&global, None)
            };
            let h = blk.attn_norm.forward(&x)?;
            let mut q = self.linear(&h, &blk.q, lora(l, Target::Q), scale, &mut dropout)?;
            let mut k = self.linear(&h, &blk.k, lora(l, Target::K), scale, &mut dropout)?;
            let mut v = self.linear(&h, &blk.v, lora(l, Target::V), scale, &mut dropout)?;
            if let Some(bias) = &blk.q_bias {
                q = q.broadcast_add(bias)?;
            }
            if let Some(bias) = &blk.k_bias {
                k = k.broadcast_add(bias)?;
            }
            if let Some(bias) = &blk.v_bias {
                v = v.broadcast_add(bias)?;
            }
            let mut q = q.reshape((b * t, hq, hd))?;
            let mut k = k.reshape((b * t, hkv, hd))?;
            let v = v.reshape((b, t, hkv, hd))?;
            if let Some(norm) = &blk.q_norm {
                q = norm.forward(&q)?;
            }
            if let Some(norm) = &blk.k_norm {
                k = norm.forward(&k)?;
            }
            let q = ops::rope(&q, tables, neox, c.attn_scale as f32)?;
            let k = ops::rope(&k, tables, neox, 1.0)?;
            // Query heads of one KV head are consecutive: [B·Hkv, G·T, hd] against
            // [B·Hkv, T, hd].
            let q = q
                .reshape((b, t, hq, hd))?
                .transpose(1, 2)?
                .contiguous()?
                .reshape((b * hkv, groups * t, hd))?;
            let heads = |x: Tensor| -> candle_core::Result<Tensor> {
                x.reshape((b, t, hkv, hd))?
                    .transpose(1, 2)?
                    .contiguous()?
                    .reshape((b * hkv, t, hd))
            };
            let k = heads(k)?;
            let v = heads(v)?;
            let scores = q.matmul(&k.t()?)?.reshape((b * hkv, groups, t, t))?;
            let p = ops::causal_softmax(&scores, window)?;
            let attn = p
                .reshape((b * hkv, groups * t, t))?
                .matmul(&v)?
                .reshape((b, hq, t, hd))?
                .transpose(1, 2)?
                .contiguous()?
                .reshape((b * t, hq * hd))?;
            let mut o = self.linear(&attn, &blk.o, lora(l, Target::O), scale, &mut dropout)?;
            if let Some(norm) = &blk.post_attn_norm {
                o = norm.forward(&o)?;
            }
            x = (x + o)?;
            let h = blk.ffn_norm.forward(&x)?;
            let g = self.linear(&h, &blk.gate, lora(l, Target::Gate), scale, &mut dropout)?;
            let u = self.linear(&h, &blk.up, lora(l, Target::Up), scale, &mut dropout)?;
            let mut f = self.linear(
                &ops::gated(&g, &u, activation)?,
                &blk.down,
                lora(l, Target::Down),
                scale,
                &mut dropout,
            )?;
            if let Some(norm) = &blk.post_ffn_norm {
                f = norm.forward(&f)?;
            }
            x = (x + f)?;
        }
        Ok(self.output_norm.forward(&x)?)
    }

    /// Logits [n, vocab] for hidden states [n, n_embd].
    pub fn logits(&self, hidden: &Tensor) -> Result<Tensor> {
        Ok(self.head.forward(hidden)?)
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
        self.nll_batch(&[(tokens, from)], adapter, dropout)
    }

    /// [`Model::nll`] of several sequences `(tokens, from)` in one forward pass
    /// ([`Model::hidden_batch`]): the sum over all of them, and the number of predicted tokens.
    pub fn nll_batch(
        &self,
        batch: &[(&[u32], usize)],
        adapter: Option<&Adapter>,
        dropout: Option<&mut Dropout>,
    ) -> Result<(Tensor, usize)> {
        for &(tokens, from) in batch {
            if from == 0 || from >= tokens.len() {
                bail!("nothing to predict: {from} of {} tokens", tokens.len());
            }
        }
        let inputs: Vec<&[u32]> = batch.iter().map(|(s, _)| &s[..s.len() - 1]).collect();
        let hidden = self.hidden_batch(&inputs, adapter, dropout)?;
        // Sequence i's predicting rows are contiguous: i·T + from − 1 up to its last token.
        let t = inputs.iter().map(|s| s.len()).max().unwrap_or(0);
        let mut rows = Vec::with_capacity(batch.len());
        let mut targets = Vec::new();
        for (i, &(tokens, from)) in batch.iter().enumerate() {
            rows.push(hidden.narrow(0, i * t + from - 1, tokens.len() - from)?);
            targets.extend_from_slice(&tokens[from..]);
        }
        let rows = Tensor::cat(&rows, 0)?;
        let logits = self.logits(&rows)?;
        let nll = ops::cross_entropy(&logits, &targets)?;
        Ok((nll.sum_all()?, targets.len()))
    }
}

pub use clarifycoder_core::rng::SplitMix64;

#[cfg(test)]
mod tests {
    use super::*;

    fn dropout(p: f64, seed: u64) -> Dropout {
        Dropout {
            p,
            rng: SplitMix64::new(seed),
        }
    }

    #[test]
    fn a_mask_keeps_one_minus_p_of_its_elements() {
        for p in [0.05, 0.1, 0.5] {
            let n = 1_000_003; // not a multiple of a chunk or of the lanes
            let kept = dropout(p, 7)
                .keep_mask(n)
                .iter()
                .filter(|&&k| k == 1)
                .count();
            let rate = kept as f64 / n as f64;
            // Four standard deviations of a binomial count.
            let sd = (p * (1.0 - p) / n as f64).sqrt();
            assert!((rate - (1.0 - p)).abs() < 4.0 * sd, "p {p}: kept {rate}");
        }
    }

    #[test]
    fn a_mask_is_the_seeds_whatever_the_thread_count() {
        let n = 3 * MASK_CHUNK + 5;
        let here = dropout(0.1, 42).keep_mask(n);
        let one = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap()
            .install(|| dropout(0.1, 42).keep_mask(n));
        assert_eq!(here, one);
        assert_ne!(
            here,
            dropout(0.1, 43).keep_mask(n),
            "another seed, another mask"
        );
        // Successive masks from one generator differ, and chunks do not repeat each other.
        let mut d = dropout(0.1, 42);
        let (a, b) = (d.keep_mask(n), d.keep_mask(n));
        assert_ne!(a, b);
        assert_ne!(a[..MASK_CHUNK], a[MASK_CHUNK..2 * MASK_CHUNK]);
    }

    #[test]
    fn dropout_zeroes_or_scales_each_element() {
        let x = Tensor::ones((64, 100), DType::F32, &Device::Cpu).unwrap();
        let y: Vec<f32> = dropout(0.2, 1)
            .apply(&x)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        assert!(y.iter().all(|&v| v == 0.0 || v == 1.25), "{y:?}");
        let mean = y.iter().sum::<f32>() / y.len() as f32;
        assert!((mean - 1.0).abs() < 0.05, "mean {mean}");
    }

    #[test]
    fn the_gradient_through_dropout_is_the_same_masking() {
        let dev = Device::Cpu;
        let x = Var::from_tensor(&Tensor::randn(0f32, 1.0, (32, 50), &dev).unwrap()).unwrap();
        let w = Tensor::randn(0f32, 1.0, (32, 50), &dev).unwrap();
        let mut d = dropout(0.3, 9);
        let keep = dropout(0.3, 9).keep_mask(32 * 50);
        let y = d.apply(x.as_tensor()).unwrap();
        let grads = (y.clone() * &w)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        let g: Vec<f32> = grads
            .get(x.as_tensor())
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let (xs, ys, ws): (Vec<f32>, Vec<f32>, Vec<f32>) = (
            x.as_tensor().flatten_all().unwrap().to_vec1().unwrap(),
            y.flatten_all().unwrap().to_vec1().unwrap(),
            w.flatten_all().unwrap().to_vec1().unwrap(),
        );
        let scale = (1.0 / 0.7f64) as f32;
        for i in 0..xs.len() {
            let k = if keep[i] == 1 { scale } else { 0.0 };
            assert_eq!(ys[i], xs[i] * k, "value {i}");
            assert_eq!(g[i], ws[i] * k, "gradient {i}");
        }
    }
}
