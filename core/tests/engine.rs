//! The embedded engine with the real model (Gemma 3 270M from PyPI, installed by `make setup`).
//! It is a base model: these tests check the engine's mechanics, not the model's judgement.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use clarifycoder_core::engine::llama::{LlamaConfig, LlamaEngine};
use clarifycoder_core::engine::{Backend, CancelToken, EngineError, FinishReason, GenerateRequest};
use clarifycoder_core::gguf::GgufError;
use clarifycoder_core::prompt::{self, Markup};

fn model_path() -> PathBuf {
    clarifycoder_core::models::GEMMA3_270M
        .installed_path()
        .unwrap_or_else(|e| panic!("{e}"))
}

fn engine() -> Arc<LlamaEngine> {
    static ENGINE: OnceLock<Arc<LlamaEngine>> = OnceLock::new();
    ENGINE
        .get_or_init(|| {
            let mut config = LlamaConfig::new(model_path());
            config.adapter = None;
            Arc::new(LlamaEngine::load(config).expect("the default model loads"))
        })
        .clone()
}

const CLEAR: &str = "def add(a: int, b: int) -> int:\n    \"\"\"Return the sum of a and b.\"\"\"\n";
const VAGUE: &str = "def process(data):\n    \"\"\"Process the data properly.\"\"\"\n";

fn round1(problem: &str) -> prompt::Prompt {
    prompt::round1(engine().info().markup, problem)
}

#[test]
fn gemma_markup_is_detected_from_the_gguf() {
    assert_eq!(engine().info().markup, Markup::Gemma);
    assert_eq!(engine().info().backend, "embedded");
}

#[test]
fn decide_returns_probabilities_and_batching_matches_single_calls() {
    // Engines of the test's own, so that no prompt of another test is kept in the cache.
    let e = own_engine(4096);
    let cancel = CancelToken::new();
    let problems = [CLEAR, VAGUE, "def f(x):\n    \"\"\"Sort x.\"\"\"\n"];
    let prompts: Vec<_> = problems.iter().map(|p| round1(p)).collect();
    let before = e.stats();
    let batched = e.decide(&prompts, &cancel).unwrap();
    let after = e.stats();
    assert_eq!(batched.len(), 3);
    for d in &batched {
        assert!((0.0..=1.0).contains(&d.p_ask), "{d:?}");
        assert!((d.p_ask + d.p_code - 1.0).abs() < 1e-5, "{d:?}");
    }
    // The instruction prefix came from the KV cache, not from a new prefill.
    assert!(after.reused_tokens > before.reused_tokens);
    for (p, b) in prompts.iter().zip(&batched) {
        let single = own_engine(4096)
            .decide(std::slice::from_ref(p), &cancel)
            .unwrap()[0];
        assert!(
            (single.p_ask - b.p_ask).abs() < 2e-3,
            "single {single:?} vs batched {b:?}"
        );
    }
}

#[test]
fn generate_honours_max_tokens() {
    let e = engine();
    let mut req = GenerateRequest::greedy(round1(VAGUE), Markup::Gemma, 5);
    req.stop.clear();
    let g = e.generate(&req, &CancelToken::new()).unwrap();
    assert!(g.tokens <= 5, "{g:?}");
    if g.finish == FinishReason::Length {
        assert_eq!(g.tokens, 5);
    }
}

#[test]
fn generate_honours_stop_strings() {
    // An engine of its own: a prompt decided by another test would be kept, and a generation
    // that starts from kept cells may round differently from one that does not.
    let e = own_engine(4096);
    let mut req = GenerateRequest::greedy(round1(CLEAR), Markup::Gemma, 24);
    req.stop.clear();
    let free = e.generate(&req, &CancelToken::new()).unwrap();
    // Pick a piece from the middle of the greedy output as the stop string: greedy decoding is
    // deterministic, so the same run must now stop just before it.
    let chars: Vec<char> = free.text.chars().collect();
    assert!(
        chars.len() >= 8,
        "greedy output too short to test: {:?}",
        free.text
    );
    let stop: String = chars[chars.len() / 2..chars.len() / 2 + 3].iter().collect();
    let expected = &free.text[..free.text.find(&stop).unwrap()];
    req.stop = vec![stop.clone()];
    let stopped = e.generate(&req, &CancelToken::new()).unwrap();
    assert_eq!(stopped.finish, FinishReason::Stop, "{stopped:?}");
    assert_eq!(stopped.text, expected, "stop {stop:?}");
}

#[test]
fn forbidding_code_start_changes_only_the_first_token() {
    let e = engine();
    let mut req = GenerateRequest::greedy(round1(CLEAR), Markup::Gemma, 3);
    req.forbid_code_start = true;
    let g = e.generate(&req, &CancelToken::new()).unwrap();
    assert!(!prompt::piece_begins_code(&g.text), "{g:?}");
}

#[test]
fn cancellation_stops_a_long_generation() {
    let e = engine();
    let mut req = GenerateRequest::greedy(round1(VAGUE), Markup::Gemma, 3000);
    req.stop.clear();
    let cancel = CancelToken::new();
    let canceller = {
        let cancel = cancel.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            cancel.cancel();
        })
    };
    let started = Instant::now();
    let result = e.generate(&req, &cancel);
    canceller.join().unwrap();
    assert!(matches!(result, Err(EngineError::Cancelled)), "{result:?}");
    // 3000 tokens take minutes on a CPU; a prompt stop takes well under that.
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
    // The engine is still usable afterwards.
    let d = e.decide(&[round1(CLEAR)], &CancelToken::new()).unwrap();
    assert_eq!(d.len(), 1);
}

#[test]
fn concurrent_callers_get_their_own_answers() {
    // An engine of its own (see `generate_honours_stop_strings`).
    let e = Arc::new(own_engine(4096));
    let make = |problem: &str| {
        let mut r = GenerateRequest::greedy(round1(problem), Markup::Gemma, 8);
        r.stop.clear();
        r
    };
    let (a, b) = (make(CLEAR), make(VAGUE));
    let want_a = e.generate(&a, &CancelToken::new()).unwrap().text;
    let want_b = e.generate(&b, &CancelToken::new()).unwrap().text;
    assert_ne!(
        want_a, want_b,
        "the two prompts should give different texts"
    );
    let threads: Vec<_> = (0..4)
        .map(|i| {
            let e = e.clone();
            let req = if i % 2 == 0 { a.clone() } else { b.clone() };
            std::thread::spawn(move || (i, e.generate(&req, &CancelToken::new()).unwrap().text))
        })
        .collect();
    for t in threads {
        let (i, text) = t.join().unwrap();
        assert_eq!(&text, if i % 2 == 0 { &want_a } else { &want_b });
    }
}

#[test]
fn score_gives_one_logprob_per_continuation_token() {
    let e = engine();
    let cancel = CancelToken::new();
    let likely = e
        .score("The capital of France is", " Paris", &cancel)
        .unwrap();
    let unlikely = e
        .score("The capital of France is", " banana", &cancel)
        .unwrap();
    assert!(!likely.token_logprobs.is_empty());
    assert_eq!(likely.token_logprobs.len(), likely.token_entropies.len());
    assert!(likely.token_logprobs.iter().all(|lp| *lp <= 0.0));
    assert!(likely.token_entropies.iter().all(|h| *h >= 0.0));
    assert!(
        likely.logprob() > unlikely.logprob(),
        "{likely:?} vs {unlikely:?}"
    );
    assert!(likely.perplexity().is_finite());
    // The round-1 prompt shares the cached prefix; scoring must not depend on that.
    let p = round1(CLEAR).text;
    let s1 = e.score(&p, "```python\n", &cancel).unwrap();
    let s2 = e.score(&p, "```python\n", &cancel).unwrap();
    assert_eq!(s1.token_logprobs.len(), s2.token_logprobs.len());
    for (x, y) in s1.token_logprobs.iter().zip(&s2.token_logprobs) {
        assert!((x - y).abs() < 1e-3);
    }
}

#[test]
fn too_long_prompts_are_an_error_not_an_abort() {
    let mut config = LlamaConfig::new(model_path());
    config.n_ctx = 256;
    let small = LlamaEngine::load(config).unwrap();
    let long = "word ".repeat(600);
    let err = small
        .decide(&[prompt::round1(Markup::Gemma, &long)], &CancelToken::new())
        .unwrap_err();
    assert!(matches!(err, EngineError::PromptTooLong { .. }), "{err}");
    // Still serves a prompt that fits.
    assert_eq!(
        small
            .decide(&[prompt::round1(Markup::Gemma, CLEAR)], &CancelToken::new())
            .unwrap()
            .len(),
        1
    );
}

#[test]
fn bad_model_files_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    // A truncated copy of the real model.
    let truncated = dir.path().join("truncated.gguf");
    let bytes = std::fs::read(model_path()).unwrap();
    std::fs::write(&truncated, &bytes[..bytes.len() / 3]).unwrap();
    let err = LlamaEngine::load(LlamaConfig::new(&truncated))
        .err()
        .expect("truncated model must fail");
    let msg = err.to_string();
    assert!(
        msg.contains("truncated") && msg.contains("truncated.gguf"),
        "{msg}"
    );

    let err = LlamaEngine::load(LlamaConfig::new(dir.path()))
        .err()
        .unwrap();
    assert!(
        matches!(err, EngineError::Model(GgufError::NotAFile(_))),
        "{err}"
    );

    let err = LlamaEngine::load(LlamaConfig::new(dir.path().join("missing.gguf")))
        .err()
        .unwrap();
    assert!(
        matches!(err, EngineError::Model(GgufError::NotFound(_))),
        "{err}"
    );

    // A model passed as the adapter.
    let mut config = LlamaConfig::new(model_path());
    config.adapter = Some(model_path());
    let err = LlamaEngine::load(config).err().unwrap();
    assert!(err.to_string().contains("not a LoRA adapter"), "{err}");
}

/// Writes a LoRA adapter for the default model touching `blk.0.attn_q` and `blk.0.ffn_up`, in
/// llama.cpp's layout: `lora_a` is [r, in] and `lora_b` is [out, r] (GGUF dims innermost first).
fn write_adapter(path: &std::path::Path, b_scale: f32) {
    use clarifycoder_core::gguf::{self, Value};
    let info = gguf::read(&model_path()).unwrap();
    let rank = 4u64;
    let mut seed = 0x2545_F491_4F6C_DD1Du64;
    let mut random = |n: u64, scale: f32| -> Vec<f32> {
        (0..n)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                ((seed >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 2.0 * scale
            })
            .collect()
    };
    let mut tensors = Vec::new();
    let mut names = Vec::new();
    for base in ["blk.0.attn_q.weight", "blk.0.ffn_up.weight"] {
        let t = info.tensors.iter().find(|t| t.name == base).unwrap();
        let (n_in, n_out) = (t.dims[0], t.dims[1]);
        names.push((
            format!("{base}.lora_a"),
            vec![n_in, rank],
            random(n_in * rank, 0.5),
        ));
        names.push((
            format!("{base}.lora_b"),
            vec![rank, n_out],
            random(rank * n_out, b_scale),
        ));
    }
    for (name, dims, data) in &names {
        tensors.push((name.as_str(), dims.clone(), data.clone()));
    }
    gguf::write_f32(
        path,
        &[
            (
                "general.architecture",
                Value::Str(info.architecture().unwrap().into()),
            ),
            ("general.type", Value::Str("adapter".into())),
            ("adapter.type", Value::Str("lora".into())),
            ("adapter.lora.alpha", Value::Float(rank as f64)),
        ],
        &tensors,
    )
    .unwrap();
}

#[test]
fn lora_adapter_is_applied() {
    let dir = tempfile::tempdir().unwrap();
    let (zero, random) = (dir.path().join("zero.gguf"), dir.path().join("random.gguf"));
    write_adapter(&zero, 0.0);
    write_adapter(&random, 0.5);
    let prompts = [round1(VAGUE)];
    let cancel = CancelToken::new();
    let base = engine().decide(&prompts, &cancel).unwrap()[0];
    let with = |path: &std::path::Path| {
        let mut config = LlamaConfig::new(model_path());
        config.adapter = Some(path.to_path_buf());
        let e = LlamaEngine::load(config).expect("adapter loads");
        assert_eq!(e.info().adapter.as_deref(), Some(path.to_str().unwrap()));
        e.decide(&prompts, &cancel).unwrap()[0]
    };
    // lora_b = 0 leaves the model unchanged; a random adapter changes its distribution.
    let same = with(&zero);
    assert!(
        (same.p_code - base.p_code).abs() < 1e-4,
        "{same:?} vs {base:?}"
    );
    let changed = with(&random);
    assert!(
        (changed.p_code - base.p_code).abs() > 1e-4,
        "{changed:?} vs {base:?}"
    );

    // An adapter for another architecture is refused before llama.cpp sees it.
    let other = dir.path().join("other.gguf");
    clarifycoder_core::gguf::write_f32(
        &other,
        &[
            (
                "general.architecture",
                clarifycoder_core::gguf::Value::Str("llama".into()),
            ),
            (
                "general.type",
                clarifycoder_core::gguf::Value::Str("adapter".into()),
            ),
        ],
        &[],
    )
    .unwrap();
    let mut config = LlamaConfig::new(model_path());
    config.adapter = Some(other);
    let err = LlamaEngine::load(config).err().unwrap();
    assert!(err.to_string().contains("architecture 'llama'"), "{err}");
}

/// `code_from_base` with the default model (Qwen2.5-Coder-0.5B) and its shipped adapter: a
/// question comes from the adapter, exactly as without the switch; code comes from the base
/// model, exactly as the base model alone writes it after the same first token.
#[test]
fn code_from_base_lets_the_adapter_decide_and_the_base_model_code() {
    let qwen = clarifycoder_core::models::QWEN25_CODER_05B;
    let model = qwen.installed_path().unwrap_or_else(|e| panic!("{e}"));
    let adapter = qwen
        .adapter_path()
        .expect("the default model ships an adapter");
    let load = |adapter: Option<&PathBuf>, code_from_base: bool| {
        let mut config = LlamaConfig::new(&model);
        config.adapter = adapter.cloned();
        config.code_from_base = code_from_base;
        config.n_ctx = 1024;
        LlamaEngine::load(config).expect("the default model loads")
    };
    let routed = load(Some(&adapter), true);
    assert!(routed.info().code_from_base);
    let adapted = load(Some(&adapter), false);
    let base = load(None, true);
    assert!(
        !base.info().code_from_base,
        "nothing to switch without an adapter"
    );
    let cancel = CancelToken::new();
    let generate = |engine: &LlamaEngine, problem: &str| {
        let markup = engine.info().markup;
        let request = GenerateRequest::greedy(prompt::round1(markup, problem), markup, 40);
        engine.generate(&request, &cancel).unwrap().text
    };
    let clear = "def celsius(fahrenheit: float) -> float:\n    \"\"\"Convert degrees Fahrenheit to Celsius.\"\"\"\n";
    let vague = "def sort_stock(items):\n    \"\"\"Put the important ones first.\"\"\"\n";

    let code = generate(&routed, clear);
    assert!(code.trim_start().starts_with("```"), "{code}");
    assert_eq!(
        code,
        generate(&base, clear),
        "code comes from the base model"
    );
    assert_ne!(
        code,
        generate(&adapted, clear),
        "the adapter writes other code"
    );

    let question = generate(&routed, vague);
    assert!(!question.trim_start().starts_with("```"), "{question}");
    assert_eq!(
        question,
        generate(&adapted, vague),
        "questions come from the adapter"
    );
    // The switch is per generation: the next code answer starts from the adapter again.
    assert_eq!(generate(&routed, clear), code);
}

/// Generations submitted together run as one batch (continuous batching): with
/// `batch_invariant`, each greedy text is the one the request gets alone, in fewer decode calls;
/// and cancelling one leaves the others.
#[test]
fn batched_generation_matches_serial_and_cancels_one_job_only() {
    let mut config = LlamaConfig::new(model_path());
    config.adapter = None;
    config.batch_prompts = 4;
    config.batch_invariant = true;
    let e = Arc::new(LlamaEngine::load(config).expect("the default model loads"));
    let problems = [
        CLEAR,
        VAGUE,
        "def mean(xs: list[float]) -> float:\n    \"\"\"Return the arithmetic mean of xs.\"\"\"\n",
        "def slugify(title: str) -> str:\n    \"\"\"Turn a title into a URL slug: lower case, words joined by '-'.\"\"\"\n",
        "def tidy(rows):\n    \"\"\"Clean up the rows.\"\"\"\n",
    ];
    let requests: Vec<GenerateRequest> = problems
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let mut r = GenerateRequest::greedy(round1(p), Markup::Gemma, 12 + 4 * i);
            r.stop.clear();
            if i == 1 {
                r.temperature = 0.8;
                r.seed = 7;
            }
            r
        })
        .collect();
    let cancel = CancelToken::new();
    let before = e.stats().decode_calls;
    let serial: Vec<String> = requests
        .iter()
        .map(|r| e.generate(r, &cancel).unwrap().text)
        .collect();
    let serial_calls = e.stats().decode_calls - before;

    let before = e.stats().decode_calls;
    let barrier = Arc::new(std::sync::Barrier::new(requests.len()));
    let threads: Vec<_> = requests
        .iter()
        .cloned()
        .map(|r| {
            let (e, barrier) = (e.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                e.generate(&r, &CancelToken::new()).unwrap().text
            })
        })
        .collect();
    let batched: Vec<String> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let batched_calls = e.stats().decode_calls - before;
    // Greedy texts are identical. The sampled one (request 1) runs in the same batch, but its
    // draws can flip on a last-digit difference of a prefill, so it is only checked to exist.
    for (i, (b, s)) in batched.iter().zip(&serial).enumerate() {
        if requests[i].temperature == 0.0 {
            assert_eq!(b, s, "request {i}");
        } else {
            assert!(!b.is_empty(), "request {i}");
        }
    }
    assert!(
        batched_calls < serial_calls,
        "batched {batched_calls} decode calls, serial {serial_calls}"
    );

    // A long generation cancelled mid-way; the one beside it completes unchanged.
    let mut long = requests[4].clone();
    long.max_tokens = 3000;
    let stop_long = CancelToken::new();
    let running = {
        let (e, stop_long) = (e.clone(), stop_long.clone());
        std::thread::spawn(move || e.generate(&long, &stop_long))
    };
    std::thread::sleep(Duration::from_millis(100));
    let beside = e.generate(&requests[2], &cancel).unwrap().text;
    stop_long.cancel();
    let result = running.join().unwrap();
    assert!(matches!(result, Err(EngineError::Cancelled)), "{result:?}");
    assert_eq!(beside, serial[2]);
}

/// An engine of its own, so that its counters see only the test's calls.
fn own_engine(n_ctx: u32) -> LlamaEngine {
    let mut config = LlamaConfig::new(model_path());
    config.adapter = None;
    config.n_ctx = n_ctx;
    LlamaEngine::load(config).expect("the model loads")
}

const LONG: &str = "def nearest_station(stations: list[tuple[str, float, float]], lat: float, lon: float) -> str:\n    \"\"\"Return the name of the station nearest to the point (lat, lon).\n\n    Distances are great-circle distances on a sphere of radius 6371 km. Ties go to the\n    station listed first. Raises ValueError when stations is empty.\n    \"\"\"\n";

#[test]
fn a_summary_read_beside_its_whole_docstring_is_not_prefilled_twice() {
    let e = own_engine(4096);
    let cancel = CancelToken::new();
    let summary = clarifycoder_core::analysis::summary_problem(LONG).expect("two paragraphs");
    let prompts = [round1(LONG), round1(&summary)];
    let before = e.stats();
    let together = e.decide(&prompts, &cancel).unwrap();
    let after = e.stats();
    let alone = own_engine(4096).decide(&prompts[1..], &cancel).unwrap()[0];
    assert!(
        (together[1].p_ask - alone.p_ask).abs() < 2e-3,
        "together {:?} vs alone {alone:?}",
        together[1]
    );
    // The summary's prompt was evaluated from where it leaves the whole docstring: its
    // signature and summary line came from the cache.
    let evaluated = after.prompt_tokens - before.prompt_tokens;
    let whole_only = {
        let fresh = own_engine(4096);
        let before = fresh.stats();
        fresh.decide(&prompts[..1], &cancel).unwrap();
        fresh.stats().prompt_tokens - before.prompt_tokens
    };
    assert!(
        evaluated < whole_only + 20,
        "{evaluated} tokens evaluated for both, {whole_only} for the whole one alone"
    );
}

/// Prompt tokens `decide` evaluates for `prompts` on `e`.
fn evaluated(e: &LlamaEngine, prompts: &[prompt::Prompt]) -> u64 {
    let before = e.stats().prompt_tokens;
    e.decide(prompts, &CancelToken::new()).unwrap();
    e.stats().prompt_tokens - before
}

#[test]
fn a_prompt_decided_lately_is_not_prefilled_again() {
    let e = own_engine(4096);
    let cancel = CancelToken::new();
    let prompt = round1(VAGUE);
    let mut req = GenerateRequest::greedy(prompt.clone(), Markup::Gemma, 8);
    req.stop.clear();
    // A score call frees the kept prompts: the generation starts from the prefix alone.
    let full = evaluated(&e, std::slice::from_ref(&prompt));
    e.score(&prompt.text, "x", &cancel).unwrap();
    assert_eq!(evaluated(&e, std::slice::from_ref(&prompt)), full);
    e.score(&prompt.text, "x", &cancel).unwrap();
    let cold = e.generate(&req, &cancel).unwrap();
    // Decided, then asked about: only the prompt's last token is evaluated again (for its
    // logits). The cells are the prompt's: the answer begins as it does without them (only
    // the beginning, since cells decoded in another batch may round a later token apart).
    e.decide(std::slice::from_ref(&prompt), &cancel).unwrap();
    let before = e.stats();
    let warm = e.generate(&req, &cancel).unwrap();
    assert_eq!(e.stats().prompt_tokens - before.prompt_tokens, 1);
    let first_word = |t: &str| t.split_whitespace().next().map(str::to_string);
    assert_eq!(
        first_word(&warm.text),
        first_word(&cold.text),
        "{warm:?} vs {cold:?}"
    );

    // A function being edited: its new version is evaluated from the edit on.
    let whole = evaluated(&e, &[round1(LONG)]);
    let edited = round1(&LONG.replace("Ties go to", "A tie goes to"));
    let again = evaluated(&e, std::slice::from_ref(&edited));
    assert!(
        again * 2 < whole,
        "{again} tokens evaluated after the edit, {whole} for the whole prompt"
    );
}

#[test]
fn kept_prompts_give_way_when_the_context_is_needed() {
    // A small context: a decided prompt is kept, then a long generation needs its cells.
    let e = own_engine(512);
    let cancel = CancelToken::new();
    let prompts: Vec<_> = (0..6)
        .map(|i| round1(&LONG.replace("nearest_station", &format!("nearest_{i}"))))
        .collect();
    let decided = e.decide(&prompts, &cancel).unwrap();
    assert_eq!(decided.len(), prompts.len());
    let before = e.stats();
    let mut req = GenerateRequest::greedy(round1(CLEAR), Markup::Gemma, 420);
    req.stop.clear();
    let g = e.generate(&req, &cancel).unwrap();
    assert!(g.tokens > 0, "{g:?}");
    assert!(
        e.stats().forgotten_prompts > before.forgotten_prompts,
        "the generation fitted beside the kept prompt: the test does not test anything"
    );
    // And deciding goes on as before.
    let again = e.decide(&prompts[..2], &cancel).unwrap();
    for (a, b) in again.iter().zip(&decided) {
        assert!((a.p_ask - b.p_ask).abs() < 2e-3, "{a:?} vs {b:?}");
    }
}

/// `check` decides a chunk of functions, then asks about the flagged ones. When the chunk's
/// prompts outgrow the kept cells, those the model would ask about stay, and their questions start
/// from them (default model and adapter, whose scores tell clear from vague).
#[test]
fn a_prompt_likely_asked_about_is_kept_before_later_ones() {
    let qwen = clarifycoder_core::models::QWEN25_CODER_05B;
    let mut config = LlamaConfig::new(qwen.installed_path().unwrap_or_else(|e| panic!("{e}")));
    config.adapter = qwen.adapter_path();
    // A quarter of 1,024 cells: room for about three of these prompts.
    config.n_ctx = 1024;
    let e = LlamaEngine::load(config).expect("the default model loads");
    let markup = e.info().markup;
    let cancel = CancelToken::new();
    let vague = prompt::round1(
        markup,
        "def sort_stock(items):\n    \"\"\"Put the important ones first.\"\"\"\n",
    );
    let clear: Vec<_> = ["fahrenheit", "kelvin", "rankine", "reaumur", "delisle", "newton"]
        .iter()
        .map(|unit| {
            prompt::round1(
                markup,
                &format!("def celsius_from_{unit}(degrees: float) -> float:\n    \"\"\"Convert a temperature in degrees {unit} to degrees Celsius.\n\n    Args:\n        degrees: The temperature in degrees {unit}.\n\n    Returns:\n        The same temperature in degrees Celsius, not rounded.\n    \"\"\"\n"),
            )
        })
        .collect();
    let mut prompts = vec![vague.clone()];
    prompts.extend(clear);
    let before = e.stats();
    let decided = e.decide(&prompts, &cancel).unwrap();
    assert!(decided[0].p_ask >= 0.5, "vague: {:?}", decided[0]);
    assert!(
        decided[1..].iter().all(|d| d.p_ask < 0.5),
        "clear: {decided:?}"
    );
    assert!(
        e.stats().forgotten_prompts > before.forgotten_prompts,
        "every prompt stayed: the test does not test anything"
    );
    let mut request = GenerateRequest::greedy(vague, markup, 4);
    request.stop.clear();
    let before = e.stats();
    e.generate(&request, &cancel).unwrap();
    assert_eq!(
        e.stats().prompt_tokens - before.prompt_tokens,
        1,
        "the vague prompt was prefilled again"
    );
}
