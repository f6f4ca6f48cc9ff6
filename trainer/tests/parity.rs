//! Our training forward pass and llama.cpp (through the core engine) must mean the same thing:
//! same next-token logits on tiny random models of every supported architecture, without and
//! with an exported adapter.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use clarifycoder_core::engine::llama::{LlamaConfig, LlamaEngine};
use clarifycoder_testkit::tiny::{n_vocab, write_model, Rng, Tiny};
use clarifycoder_trainer::export;
use clarifycoder_trainer::model::{Adapter, Model, Target};
use clarifycoder_trainer::run::AdapterMeta;

fn ours(model: &Model, adapter: Option<&Adapter>, tokens: &[u32]) -> Vec<Vec<f32>> {
    let h = model.hidden(tokens, adapter, None).unwrap();
    model.logits(&h).unwrap().to_vec2::<f32>().unwrap()
}

fn llama_cpp(model: &Path, adapter: Option<&Path>, tokens: &[u32]) -> Vec<Vec<f32>> {
    let mut config = LlamaConfig::new(model);
    config.adapter = adapter.map(Path::to_path_buf);
    config.exact_kv = true;
    config.threads = 1;
    config.n_ctx = 256;
    config.batch_prompts = 1;
    let engine = LlamaEngine::load(config).unwrap();
    engine.logits(tokens).unwrap()
}

/// ‖a − b‖ / ‖b‖ over all positions.
fn relative_error(a: &[Vec<f32>], b: &[Vec<f32>]) -> f64 {
    assert_eq!(a.len(), b.len());
    let (mut num, mut den) = (0.0f64, 0.0f64);
    for (x, y) in a.iter().zip(b) {
        assert_eq!(x.len(), y.len());
        for (p, q) in x.iter().zip(y) {
            num += ((p - q) as f64).powi(2);
            den += (*q as f64).powi(2);
        }
    }
    (num / den).sqrt()
}

fn random_adapter(model: &Model, rng: &mut Rng) -> Adapter {
    let adapter = Adapter::init(&model.config, 4, 8.0, &Target::ALL, 7, &Device::Cpu).unwrap();
    let mut values = HashMap::new();
    for (name, var) in adapter.named() {
        let dims = var.dims().to_vec();
        let n = dims.iter().product();
        let t = Tensor::from_vec(rng.vec(n, 0.2), dims, &Device::Cpu).unwrap();
        values.insert(name, t);
    }
    adapter.load_values(&values).unwrap();
    adapter
}

fn meta(model: &Model, adapter: &Adapter) -> AdapterMeta {
    AdapterMeta::untrained(
        &model.config,
        "tiny.gguf".into(),
        adapter.rank,
        adapter.alpha,
    )
}

fn check(tiny: Tiny) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tiny.gguf");
    write_model(&path, &tiny);
    let model = Model::load(&path, DType::F32, &Device::Cpu).unwrap();
    // BOS, then tokens spread over the vocabulary; longer than Gemma's tiny sliding window.
    let tokens: Vec<u32> = std::iter::once(1)
        .chain((0..13).map(|i| 3 + (i * 37 + 11) % (n_vocab() as u32 - 3)))
        .collect();

    let base = relative_error(
        &ours(&model, None, &tokens),
        &llama_cpp(&path, None, &tokens),
    );
    assert!(
        base < 1e-3,
        "{}: relative error {base:e} without adapter",
        tiny.arch
    );

    let mut rng = Rng::new(99);
    let adapter = random_adapter(&model, &mut rng);
    let tensors: HashMap<String, Tensor> = adapter
        .named()
        .into_iter()
        .map(|(n, v)| (n, v.as_tensor().clone()))
        .collect();
    let gguf = dir.path().join("adapter.gguf");
    export::write_gguf(
        &meta(&model, &adapter),
        &tensors,
        &gguf,
        clarifycoder_core::gguf::Storage::F32,
    )
    .unwrap();
    let with_ours = ours(&model, Some(&adapter), &tokens);
    let with_cpp = llama_cpp(&path, Some(&gguf), &tokens);
    let err = relative_error(&with_ours, &with_cpp);
    assert!(
        err < 1e-3,
        "{}: relative error {err:e} with adapter",
        tiny.arch
    );
    // The adapter really changes the output (the comparison above is not vacuous).
    let moved = relative_error(&with_ours, &ours(&model, None, &tokens));
    assert!(
        moved > 1e-2,
        "{}: adapter moved logits by only {moved:e}",
        tiny.arch
    );
    eprintln!(
        "{}: relative error {base:.2e} (base), {err:.2e} (adapter; adapter moves logits by {moved:.2e})",
        tiny.arch
    );
}

#[test]
fn gemma3_matches_llama_cpp() {
    check(Tiny::gemma3());
}

#[test]
fn llama_matches_llama_cpp() {
    check(Tiny::llama());
}

#[test]
fn qwen2_matches_llama_cpp() {
    check(Tiny::qwen2());
}

/// Several sequences in one forward pass (`--micro-batch`), padded to the longest, give the sum
/// of their losses one at a time, and the same gradients.
fn check_batched(tiny: Tiny) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tiny.gguf");
    write_model(&path, &tiny);
    let model = Model::load(&path, DType::F32, &Device::Cpu).unwrap();
    let adapter = random_adapter(&model, &mut Rng::new(5));
    let seq = |len: u32, salt: u32| -> Vec<u32> {
        std::iter::once(1)
            .chain((0..len - 1).map(|i| 3 + (i * 29 + salt) % (n_vocab() as u32 - 3)))
            .collect()
    };
    // Longer than Gemma's tiny sliding window, and shorter ones padded behind it.
    let (a, b, c) = (seq(15, 3), seq(9, 8), seq(4, 1));
    let batch = [(&a[..], 3), (&b[..], 1), (&c[..], 2)];
    let grads = |loss: Tensor| {
        let g = loss.backward().unwrap();
        adapter
            .vars()
            .iter()
            .map(|v| g.get(v.as_tensor()).unwrap().clone())
            .collect::<Vec<_>>()
    };
    let (together, n) = model.nll_batch(&batch, Some(&adapter), None).unwrap();
    assert_eq!(n, 12 + 8 + 2);
    let together_value = together.to_scalar::<f32>().unwrap();
    let together_grads = grads(together);
    let mut alone_value = 0.0;
    let mut alone_grads: Vec<Tensor> = Vec::new();
    for &(tokens, from) in &batch {
        let (nll, _) = model.nll(tokens, from, Some(&adapter), None).unwrap();
        alone_value += nll.to_scalar::<f32>().unwrap();
        let g = grads(nll);
        alone_grads = if alone_grads.is_empty() {
            g
        } else {
            alone_grads
                .iter()
                .zip(g)
                .map(|(x, y)| (x + y).unwrap())
                .collect()
        };
    }
    let rel = ((together_value - alone_value) / alone_value).abs();
    assert!(
        rel < 1e-5,
        "{}: loss {together_value} against {alone_value}",
        tiny.arch
    );
    let sum_sq = |t: &Tensor| -> f32 { t.sqr().unwrap().sum_all().unwrap().to_scalar().unwrap() };
    for (x, y) in together_grads.iter().zip(&alone_grads) {
        let diff = sum_sq(&(x - y).unwrap());
        let norm = sum_sq(y);
        assert!(
            (diff / norm.max(1e-30)).sqrt() < 1e-4,
            "{}: gradient relative error {:e}",
            tiny.arch,
            (diff / norm).sqrt()
        );
    }
}

#[test]
fn batched_passes_match_single_sequences() {
    for tiny in [Tiny::gemma3(), Tiny::llama(), Tiny::qwen2()] {
        check_batched(tiny);
    }
}
