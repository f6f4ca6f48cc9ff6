//! Engine vs a raw llama-cpp-2 loop on the same prompt, model and threads, side by side.
//!
//! cargo run --release -p clarifycoder-core --example bench_engine -- [MODEL] [ROUNDS] [TOKENS] [GPU_LAYERS]
//!
//! GPU_LAYERS (a CUDA build, `make cuda`): layers both sides offload [default: the engine's
//! default, all when there is a GPU]; 0 keeps both on the CPU.
//!
//! The prompt is rendered in Gemma's markup whatever the model: with Gemma the engine reuses its
//! cached instruction prefix, with another model (Qwen, the default) it prefills the whole
//! prompt as the raw loop does, so the ratio compares the same work.
//!
//! Prints prefill and decode throughput and `decide` latency for both, the raw library's time to
//! tokenize the prompt (the engine's `decide` includes it, the raw loop's does not), and the
//! ratios of the engine's time to the raw loop's (target: at most 1.05). Then the raw library's decoding
//! throughput with 1, 2, 4 and 8 sequences per step: the most that batching can gain on this
//! machine.

use std::num::NonZeroU32;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use clarifycoder_core::engine::llama::{LlamaConfig, LlamaEngine};
use clarifycoder_core::engine::{Backend, CancelToken, GenerateRequest};
use clarifycoder_core::prompt::{self, Markup};
use clarifycoder_core::settings;
use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::token::LlamaToken;

const PROBLEM: &str = r#"def merge_intervals(intervals: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Merge overlapping intervals.

    Given a list of closed intervals (start, end) with start <= end, return the list of merged
    intervals sorted by start. Two intervals overlap when they share at least one point; touching
    intervals such as (1, 2) and (2, 3) are merged into (1, 3). The input may be unsorted and may
    be empty, in which case the result is empty.

    >>> merge_intervals([(1, 3), (2, 6), (8, 10), (15, 18)])
    [(1, 6), (8, 10), (15, 18)]
    >>> merge_intervals([(1, 4), (4, 5)])
    [(1, 5)]
    """
"#;

fn threads() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
}

fn median(mut xs: Vec<Duration>) -> Duration {
    xs.sort();
    xs[xs.len() / 2]
}

struct Timing {
    /// Tokenizing the prompt (the engine does it inside `decide`).
    tokenize: Duration,
    prefill: Duration,
    decide: Duration,
    decode: Duration,
}

/// Whether the model is on the GPU: the raw contexts then offload as the engine's do, and on the
/// CPU they stay there as the engine's do (no operation offload).
static ON_GPU: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

fn on_gpu() -> bool {
    ON_GPU.load(std::sync::atomic::Ordering::Relaxed)
}

/// The raw loop: a fresh context per round, prefill the whole prompt in one batch, softmax for
/// the decision, then greedy decoding of `tokens` tokens.
fn raw_round(backend: &LlamaBackend, model: &LlamaModel, text: &str, tokens: usize) -> Timing {
    let params = LlamaContextParams::default()
        .with_n_ctx(NonZeroU32::new(4096))
        .with_n_batch(2048)
        .with_n_ubatch(512)
        .with_n_threads(threads() as i32)
        .with_n_threads_batch(threads() as i32)
        .with_op_offload(on_gpu())
        .with_offload_kqv(on_gpu());
    let mut ctx = model.new_context(backend, params).unwrap();
    let start = Instant::now();
    let prompt = model.vocab().tokenize(text.as_bytes(), true, true);
    let tokenize = start.elapsed();
    let mut batch = LlamaBatch::new(prompt.len(), 1);
    for (i, &t) in prompt.iter().enumerate() {
        batch.add(t, i as i32, &[0], i + 1 == prompt.len()).unwrap();
    }
    let start = Instant::now();
    ctx.decode(&mut batch).unwrap();
    let prefill = start.elapsed();
    let logits = ctx.get_logits_ith(batch.n_tokens() - 1);
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let _z: f64 = logits.iter().map(|&l| ((l - max) as f64).exp()).sum();
    let decide = start.elapsed();
    let start = Instant::now();
    let mut one = LlamaBatch::new(1, 1);
    for pos in prompt.len()..prompt.len() + tokens {
        let logits = ctx.get_logits_ith(-1);
        let next = logits
            .iter()
            .enumerate()
            .fold(
                (0, f32::NEG_INFINITY),
                |b, (i, &l)| if l > b.1 { (i, l) } else { b },
            )
            .0;
        one.clear();
        one.add(LlamaToken(next as i32), pos as i32, &[0], true)
            .unwrap();
        ctx.decode(&mut one).unwrap();
    }
    Timing {
        tokenize,
        prefill,
        decide,
        decode: start.elapsed(),
    }
}

/// Raw greedy decoding of `tokens` steps with `n` sequences per step (the prompt prefilled once
/// and copied); returns all sequences' tokens per second.
fn raw_batched(
    backend: &LlamaBackend,
    model: &LlamaModel,
    text: &str,
    tokens: usize,
    n: usize,
) -> f64 {
    let params = LlamaContextParams::default()
        .with_n_ctx(NonZeroU32::new(4096))
        .with_n_batch(2048)
        .with_n_ubatch(512)
        .with_n_seq_max(n as u32)
        .with_kv_unified(true)
        .with_n_threads(threads() as i32)
        .with_n_threads_batch(threads() as i32)
        .with_op_offload(on_gpu())
        .with_offload_kqv(on_gpu());
    let mut ctx = model.new_context(backend, params).unwrap();
    let prompt = model.vocab().tokenize(text.as_bytes(), true, true);
    let mut batch = LlamaBatch::new(prompt.len().max(n), 1);
    for (i, &t) in prompt.iter().enumerate() {
        batch.add(t, i as i32, &[0], i + 1 == prompt.len()).unwrap();
    }
    ctx.decode(&mut batch).unwrap();
    for seq in 1..n as i32 {
        ctx.copy_kv_cache_seq(0, seq, None, None).unwrap();
    }
    let logits = ctx.get_logits_ith(batch.n_tokens() - 1).to_vec();
    let first = argmax(&logits);
    let mut next = vec![first; n];
    let start = Instant::now();
    for pos in prompt.len()..prompt.len() + tokens {
        batch.clear();
        for (seq, &t) in next.iter().enumerate() {
            batch
                .add(LlamaToken(t as i32), pos as i32, &[seq as i32], true)
                .unwrap();
        }
        ctx.decode(&mut batch).unwrap();
        for (row, t) in next.iter_mut().enumerate() {
            *t = argmax(ctx.get_logits_ith(row as i32));
        }
    }
    (tokens * n) as f64 / start.elapsed().as_secs_f64()
}

fn argmax(logits: &[f32]) -> usize {
    logits
        .iter()
        .enumerate()
        .fold(
            (0, f32::NEG_INFINITY),
            |b, (i, &l)| if l > b.1 { (i, l) } else { b },
        )
        .0
}

fn main() {
    let mut args = std::env::args().skip(1);
    // An empty MODEL argument means the default model.
    let model_path = args
        .next()
        .filter(|s| !s.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| settings::resolve_model(None, None).path);
    let rounds: usize = args
        .next()
        .map(|s| s.parse().expect("ROUNDS is a number"))
        .unwrap_or(5);
    let tokens: usize = args
        .next()
        .map(|s| s.parse().expect("TOKENS is a number"))
        .unwrap_or(64);

    let mut config = LlamaConfig::new(&model_path);
    if let Some(n) = args.next() {
        config.gpu_layers = n.parse().expect("GPU_LAYERS is a number");
    }
    config.threads = threads();
    let gpu_layers = config.gpu_layers;
    let engine = LlamaEngine::load(config).expect("model loads");
    // llama.cpp is initialised once per process: share the engine's backend handle.
    let backend = clarifycoder_core::engine::llama::backend().unwrap();
    let placement = clarifycoder_core::engine::llama::placement(gpu_layers);
    let layers = match placement {
        clarifycoder_core::engine::llama::Placement::Cpu => 0,
        clarifycoder_core::engine::llama::Placement::Gpu { layers, .. } => layers,
    };
    ON_GPU.store(layers > 0, std::sync::atomic::Ordering::Relaxed);
    let params = LlamaModelParams::default().with_n_gpu_layers(layers);
    let model = LlamaModel::load_from_file(backend, &model_path, &params).unwrap();
    let prompt = prompt::round1(Markup::Gemma, PROBLEM);
    let n_prompt = model
        .vocab()
        .tokenize(prompt.text.as_bytes(), true, true)
        .len();
    let cancel = CancelToken::new();

    let (mut raw, mut eng) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        raw.push(raw_round(backend, &model, &prompt.text, tokens));
        // Engine: decide (cached prefix), then a generation of the same length without stops.
        // The prompt was decided in the last round and is kept in the cache: a score call drops
        // the kept prompts, so that every round decides it from the instruction prefix on.
        engine.score("x", "y", &cancel).unwrap();
        let start = Instant::now();
        engine
            .decide(std::slice::from_ref(&prompt), &cancel)
            .unwrap();
        let decide = start.elapsed();
        // Again, so that the generation prefills what the decision did.
        engine.score("x", "y", &cancel).unwrap();
        let mut req = GenerateRequest::greedy(prompt.clone(), Markup::Gemma, tokens);
        req.stop.clear();
        let start = Instant::now();
        let g = engine.generate(&req, &cancel).unwrap();
        let total = start.elapsed();
        assert_eq!(g.tokens, tokens, "generation ended early: {:?}", g.finish);
        // generate = prefill of the non-prefix part + decoding; split with the decide time.
        eng.push(Timing {
            tokenize: Duration::ZERO,
            prefill: decide,
            decide,
            decode: total.saturating_sub(decide),
        });
    }
    let med = |v: &[Timing], f: fn(&Timing) -> Duration| median(v.iter().map(f).collect());
    let raw_prefill = med(&raw, |t| t.prefill);
    let raw_decide = med(&raw, |t| t.decide);
    let raw_tokenize = med(&raw, |t| t.tokenize);
    let raw_decode = med(&raw, |t| t.decode);
    let eng_decide = med(&eng, |t| t.decide);
    let eng_decode = med(&eng, |t| t.decode);
    let tps = |n: usize, d: Duration| n as f64 / d.as_secs_f64();
    println!(
        "model: {}  threads: {}  prompt tokens: {n_prompt}  generated: {tokens}  rounds: {rounds}  on: {placement}",
        model_path.display(),
        threads()
    );
    println!(
        "raw    prefill {:>7.1} tok/s   decide {:>7.1} ms   decode {:>6.1} tok/s",
        tps(n_prompt, raw_prefill),
        raw_decide.as_secs_f64() * 1e3,
        tps(tokens, raw_decode)
    );
    println!(
        "engine decide  {:>7.1} ms (the prefix cached if the markup is the model's)   decode {:>6.1} tok/s",
        eng_decide.as_secs_f64() * 1e3,
        tps(tokens, eng_decode)
    );
    println!(
        "ratio engine/raw: decide time {:.3}   decode time {:.3}",
        eng_decide.as_secs_f64() / raw_decide.as_secs_f64(),
        eng_decode.as_secs_f64() / raw_decode.as_secs_f64()
    );
    // The engine's decide tokenizes its prompt; the raw loop's above does not.
    println!(
        "raw    tokenize {:>7.3} ms   ratio engine/raw with the raw loop tokenizing too: decide time {:.3}",
        raw_tokenize.as_secs_f64() * 1e3,
        eng_decide.as_secs_f64() / (raw_decide + raw_tokenize).as_secs_f64()
    );
    let single = raw_batched(backend, &model, &prompt.text, tokens, 1);
    for n in [1, 2, 4, 8] {
        let rate = if n == 1 {
            single
        } else {
            raw_batched(backend, &model, &prompt.text, tokens, n)
        };
        println!(
            "raw    decode with {n} sequences per step: {rate:>6.1} tok/s  ({:.2}x one sequence)",
            rate / single
        );
    }
}
