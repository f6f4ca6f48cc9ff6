//! Tiny random models written as GGUF (F32, through `core::gguf`), with a small SentencePiece
//! vocabulary that llama.cpp accepts (control tokens, the 256 byte tokens, a few words). They load
//! in llama.cpp and in the trainer's forward pass in milliseconds, so tests of the machinery
//! (parity, fine-tuning, the binaries end to end) need no real model.
//!
//! ```ignore
//! let model = dir.join("tiny.gguf");
//! tiny::write_model(&model, &Tiny::llama());
//! ```

use std::path::Path;

use clarifycoder_core::gguf::{self, Value};

/// The shape of a tiny model. Start from [`Tiny::gemma3`], [`Tiny::llama`] or [`Tiny::qwen2`]
/// and change fields (a model "for another base" is one with other sizes).
pub struct Tiny {
    /// `general.architecture`: `gemma3`, `llama` or `qwen2` (anything else is written too, for
    /// tests of unsupported architectures).
    pub arch: &'static str,
    /// Layers.
    pub n_layer: usize,
    /// Embedding width.
    pub n_embd: usize,
    /// Attention heads.
    pub n_head: usize,
    /// Key/value heads.
    pub n_head_kv: usize,
    /// Width of one head.
    pub head_dim: usize,
    /// Feed-forward width.
    pub n_ff: usize,
    /// Gemma 3 only.
    pub sliding_window: usize,
    /// Write a separate `output.weight` instead of tying it to the embeddings.
    pub untied: bool,
    /// Qwen 2's q/k/v biases.
    pub biases: bool,
    /// Seed of the random weights.
    pub seed: u64,
}

impl Tiny {
    /// Gemma 3: six layers (sliding-window and global attention), tied output.
    pub fn gemma3() -> Tiny {
        Tiny {
            arch: "gemma3",
            n_layer: 6,
            n_embd: 64,
            n_head: 4,
            n_head_kv: 2,
            head_dim: 32,
            n_ff: 96,
            sliding_window: 4,
            untied: false,
            biases: false,
            seed: 1,
        }
    }

    /// Llama: two layers, separate output matrix. The fastest of the three.
    pub fn llama() -> Tiny {
        Tiny {
            arch: "llama",
            n_layer: 2,
            n_embd: 64,
            n_head: 4,
            n_head_kv: 2,
            head_dim: 16,
            n_ff: 96,
            sliding_window: 0,
            untied: true,
            biases: false,
            seed: 2,
        }
    }

    /// Qwen 2: two layers, q/k/v biases, tied output.
    pub fn qwen2() -> Tiny {
        Tiny {
            arch: "qwen2",
            n_layer: 2,
            n_embd: 64,
            n_head: 4,
            n_head_kv: 1,
            head_dim: 16,
            n_ff: 96,
            sliding_window: 0,
            untied: false,
            biases: true,
            seed: 3,
        }
    }
}

/// The weights' generator (xorshift): the same seed gives the same model. Tests also draw random
/// adapter values from it.
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    /// Uniform in [-1, 1).
    pub fn uniform(&mut self) -> f32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
    }
    /// `n` values uniform in [-scale, scale).
    pub fn vec(&mut self, n: usize, scale: f32) -> Vec<f32> {
        (0..n).map(|_| self.uniform() * scale).collect()
    }
}

/// The vocabulary's word tokens after the byte tokens.
pub const WORDS: [&str; 12] = [
    "▁",
    "▁the",
    "▁a",
    "e",
    "t",
    "o",
    "▁def",
    "▁return",
    "▁list",
    "▁Which",
    "?",
    "\n",
];

/// Vocabulary: <unk>, <s>, </s>, 256 byte tokens, then `WORDS`.
pub fn vocab() -> (Vec<Value>, Vec<Value>, Vec<Value>) {
    let mut tokens = vec!["<unk>".to_string(), "<s>".into(), "</s>".into()];
    let mut types = vec![2i64, 3, 3];
    for b in 0..256 {
        tokens.push(format!("<0x{b:02X}>"));
        types.push(6);
    }
    for w in WORDS {
        tokens.push(w.to_string());
        types.push(1);
    }
    let scores = (0..tokens.len())
        .map(|i| Value::Float(if i < 259 { 0.0 } else { -(i as f64) / 100.0 }))
        .collect();
    (
        tokens.into_iter().map(Value::Str).collect(),
        scores,
        types.into_iter().map(Value::Int).collect(),
    )
}

/// Size of the vocabulary.
pub fn n_vocab() -> usize {
    3 + 256 + WORDS.len()
}

/// Writes the model `t` to `path` (panics on an I/O error: test support).
pub fn write_model(path: &Path, t: &Tiny) {
    let mut rng = Rng::new(t.seed);
    let (tokens, scores, types) = vocab();
    let v = n_vocab();
    let a = t.arch;
    let mut md: Vec<(String, Value)> = vec![
        ("general.architecture".into(), Value::Str(a.into())),
        ("general.name".into(), Value::Str(format!("tiny-{a}"))),
        (format!("{a}.context_length"), Value::Int(2048)),
        (format!("{a}.embedding_length"), Value::Int(t.n_embd as i64)),
        (format!("{a}.block_count"), Value::Int(t.n_layer as i64)),
        (
            format!("{a}.feed_forward_length"),
            Value::Int(t.n_ff as i64),
        ),
        (
            format!("{a}.attention.head_count"),
            Value::Int(t.n_head as i64),
        ),
        (
            format!("{a}.attention.head_count_kv"),
            Value::Int(t.n_head_kv as i64),
        ),
        (
            format!("{a}.attention.layer_norm_rms_epsilon"),
            Value::Float(1e-6),
        ),
        (
            format!("{a}.attention.key_length"),
            Value::Int(t.head_dim as i64),
        ),
        (
            format!("{a}.attention.value_length"),
            Value::Int(t.head_dim as i64),
        ),
        (
            format!("{a}.rope.freq_base"),
            Value::Float(if a == "gemma3" { 1e6 } else { 1e4 }),
        ),
        (
            format!("{a}.rope.dimension_count"),
            Value::Int(t.head_dim as i64),
        ),
        ("tokenizer.ggml.model".into(), Value::Str("llama".into())),
        (
            "tokenizer.ggml.tokens".into(),
            Value::Array(tokens, v as u64),
        ),
        (
            "tokenizer.ggml.scores".into(),
            Value::Array(scores, v as u64),
        ),
        (
            "tokenizer.ggml.token_type".into(),
            Value::Array(types, v as u64),
        ),
        ("tokenizer.ggml.unknown_token_id".into(), Value::Int(0)),
        ("tokenizer.ggml.bos_token_id".into(), Value::Int(1)),
        ("tokenizer.ggml.eos_token_id".into(), Value::Int(2)),
        ("tokenizer.ggml.add_bos_token".into(), Value::Bool(true)),
    ];
    if a == "gemma3" {
        md.push((
            format!("{a}.attention.sliding_window"),
            Value::Int(t.sliding_window as i64),
        ));
    }
    let (d, q, kv, ff) = (
        t.n_embd as u64,
        (t.n_head * t.head_dim) as u64,
        (t.n_head_kv * t.head_dim) as u64,
        t.n_ff as u64,
    );
    let mut tensors: Vec<(String, Vec<u64>, Vec<f32>)> = Vec::new();
    let mat = |name: String, n_in: u64, n_out: u64, rng: &mut Rng| {
        let scale = 1.0 / (n_in as f32).sqrt();
        (
            name,
            vec![n_in, n_out],
            rng.vec((n_in * n_out) as usize, scale * 1.5),
        )
    };
    let norm = |name: String, n: u64, rng: &mut Rng| {
        let w = (0..n).map(|_| 1.0 + 0.2 * rng.uniform()).collect();
        (name, vec![n], w)
    };
    tensors.push((
        "token_embd.weight".into(),
        vec![d, v as u64],
        rng.vec(v * t.n_embd, 1.0),
    ));
    for l in 0..t.n_layer {
        let b = |s: &str| format!("blk.{l}.{s}");
        tensors.push(norm(b("attn_norm.weight"), d, &mut rng));
        tensors.push(mat(b("attn_q.weight"), d, q, &mut rng));
        tensors.push(mat(b("attn_k.weight"), d, kv, &mut rng));
        tensors.push(mat(b("attn_v.weight"), d, kv, &mut rng));
        tensors.push(mat(b("attn_output.weight"), q, d, &mut rng));
        if t.biases {
            tensors.push((b("attn_q.bias"), vec![q], rng.vec(q as usize, 0.3)));
            tensors.push((b("attn_k.bias"), vec![kv], rng.vec(kv as usize, 0.3)));
            tensors.push((b("attn_v.bias"), vec![kv], rng.vec(kv as usize, 0.3)));
        }
        if a == "gemma3" {
            tensors.push(norm(b("attn_q_norm.weight"), t.head_dim as u64, &mut rng));
            tensors.push(norm(b("attn_k_norm.weight"), t.head_dim as u64, &mut rng));
            tensors.push(norm(b("post_attention_norm.weight"), d, &mut rng));
            tensors.push(norm(b("post_ffw_norm.weight"), d, &mut rng));
        }
        tensors.push(norm(b("ffn_norm.weight"), d, &mut rng));
        tensors.push(mat(b("ffn_gate.weight"), d, ff, &mut rng));
        tensors.push(mat(b("ffn_up.weight"), d, ff, &mut rng));
        tensors.push(mat(b("ffn_down.weight"), ff, d, &mut rng));
    }
    tensors.push(norm("output_norm.weight".into(), d, &mut rng));
    if t.untied {
        tensors.push(mat("output.weight".into(), d, v as u64, &mut rng));
    }
    let md_refs: Vec<(&str, Value)> = md.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
    let t_refs: Vec<(&str, Vec<u64>, Vec<f32>)> = tensors
        .iter()
        .map(|(n, d, x)| (n.as_str(), d.clone(), x.clone()))
        .collect();
    gguf::write_f32(path, &md_refs, &t_refs).unwrap();
}
