//! The inference engine: one [`Backend`] trait, two implementations.
//!
//! - [`llama::LlamaEngine`]: llama.cpp embedded through `llama-cpp-2`, on one dedicated thread that
//!   owns the model and context and is fed by a channel.
//! - [`openai::OpenAiEngine`]: any OpenAI-compatible `/v1/completions` endpoint (llama-server, vLLM,
//!   Ollama), for a shared GPU box.
//!
//! Both take prompts rendered by [`crate::prompt`], so a model sees the same text whichever
//! backend serves it.

pub mod llama;
pub mod openai;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::gguf::GgufError;
use crate::prompt::{Markup, Prompt};

/// Errors of the engine. Messages name the subject and, where there is one, the next step.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The model file is missing, unreadable or not a GGUF.
    #[error("model: {0}")]
    Model(#[source] GgufError),
    /// The adapter file is missing, unreadable or not a GGUF LoRA adapter.
    #[error("adapter: {0}")]
    Adapter(String),
    /// llama.cpp refused to load the model.
    #[error("llama.cpp failed to load model '{}': {reason}", path.display())]
    Load {
        /// The model file.
        path: PathBuf,
        /// What llama.cpp said.
        reason: String,
    },
    /// The prompt does not fit into the context window.
    #[error("prompt has {tokens} tokens but the context holds {max}; raise --ctx-size or shorten the docstring")]
    PromptTooLong {
        /// Tokens in the prompt.
        tokens: usize,
        /// What fits.
        max: usize,
    },
    /// The request was cancelled.
    #[error("cancelled")]
    Cancelled,
    /// A decode step failed.
    #[error("inference failed: {0}")]
    Inference(String),
    /// The engine thread is gone (it panicked or was shut down).
    #[error("the inference engine stopped{}; restart it", .0.as_deref().map(|r| format!(": {r}")).unwrap_or_default())]
    Stopped(Option<String>),
    /// An HTTP endpoint could not be reached or answered with an error.
    #[error("endpoint {url}: {reason}")]
    Http {
        /// The URL called.
        url: String,
        /// What went wrong.
        reason: String,
        /// The status of the endpoint's answer (after the retries of 429 and 5xx); `Some(200)`
        /// for an answer that is not what the API promises (not JSON, no choices, no
        /// log-probabilities); `None` when no answer came (no connection, a timeout) or the
        /// request was never sent (a bad address, an unset API key variable).
        status: Option<u16>,
    },
    /// The backend cannot do this.
    #[error("{0}")]
    Unsupported(String),
}

/// A cancellation flag shared between a caller and the engine, checked between decode steps.
#[derive(Debug, Clone, Default)]
pub struct CancelToken(Arc<AtomicBool>);

impl CancelToken {
    /// A fresh, not cancelled token.
    pub fn new() -> CancelToken {
        CancelToken::default()
    }
    /// Requests cancellation.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::Relaxed);
    }
    /// Whether cancellation was requested.
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
    /// `Err(Cancelled)` once cancellation was requested.
    pub fn check(&self) -> Result<(), EngineError> {
        if self.is_cancelled() {
            Err(EngineError::Cancelled)
        } else {
            Ok(())
        }
    }
}

/// The model's choice between asking and coding, read from its first-token distribution.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    /// Probability that the first token begins a code fence (see
    /// [`crate::prompt::piece_begins_code`]).
    pub p_code: f32,
    /// `1 - p_code`: the probability that the model asks instead.
    pub p_ask: f32,
}

impl Decision {
    /// From the code probability (clamped into [0, 1]).
    pub fn from_p_code(p_code: f32) -> Decision {
        let p_code = if p_code.is_finite() {
            p_code.clamp(0.0, 1.0)
        } else {
            0.0
        };
        Decision {
            p_code,
            p_ask: 1.0 - p_code,
        }
    }
}

/// A generation request.
#[derive(Debug, Clone)]
pub struct GenerateRequest {
    /// The rendered prompt.
    pub prompt: Prompt,
    /// Most tokens to generate.
    pub max_tokens: usize,
    /// Generation stops before the first occurrence of any of these.
    pub stop: Vec<String>,
    /// 0 for greedy decoding.
    pub temperature: f32,
    /// Seed for sampling when temperature > 0.
    pub seed: u64,
    /// Forbid tokens that begin a code fence as the first token: "given that the model asks,
    /// what does it ask".
    pub forbid_code_start: bool,
}

impl GenerateRequest {
    /// Greedy generation with the markup's stop strings.
    pub fn greedy(prompt: Prompt, markup: Markup, max_tokens: usize) -> GenerateRequest {
        GenerateRequest {
            prompt,
            max_tokens,
            stop: markup.stop_strings(),
            temperature: 0.0,
            seed: 0,
            forbid_code_start: false,
        }
    }
}

/// Why a generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// A stop string was produced (and removed from the text).
    Stop,
    /// The model produced an end-of-generation token.
    EndOfGeneration,
    /// `max_tokens` was reached.
    Length,
}

/// A generated text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Generation {
    /// The text, without the stop string.
    pub text: String,
    /// Tokens generated.
    pub tokens: usize,
    /// Why it ended.
    pub finish: FinishReason,
}

/// Log-likelihood of a continuation given a prompt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Score {
    /// Natural-log probability of each continuation token.
    pub token_logprobs: Vec<f32>,
    /// Entropy (nats) of the model's distribution at each continuation position.
    pub token_entropies: Vec<f32>,
}

impl Score {
    /// Sum of the token log-probabilities.
    pub fn logprob(&self) -> f64 {
        self.token_logprobs.iter().map(|x| *x as f64).sum()
    }
    /// Perplexity of the continuation.
    pub fn perplexity(&self) -> f64 {
        if self.token_logprobs.is_empty() {
            return f64::NAN;
        }
        (-self.logprob() / self.token_logprobs.len() as f64).exp()
    }
    /// Mean entropy over the continuation.
    pub fn mean_entropy(&self) -> f64 {
        if self.token_entropies.is_empty() {
            return f64::NAN;
        }
        self.token_entropies.iter().map(|x| *x as f64).sum::<f64>()
            / self.token_entropies.len() as f64
    }
}

/// What a backend serves.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackendInfo {
    /// "embedded" or "openai".
    pub backend: String,
    /// The model: a file path or an endpoint's model name.
    pub model: String,
    /// The adapter file, if any.
    pub adapter: Option<String>,
    /// Whether code answers come from the base model without the adapter (the adapter decides
    /// and asks); see [`llama::LlamaConfig::code_from_base`].
    #[serde(default)]
    pub code_from_base: bool,
    /// The turn markup prompts must be rendered with.
    pub markup: Markup,
    /// Context window in tokens.
    pub n_ctx: usize,
}

/// Counters of the work a backend did; tests and benchmarks read them.
#[derive(Debug, Default)]
pub struct Counters {
    /// Prompts whose first-token distribution was computed.
    pub decided: AtomicU64,
    /// Generation requests served.
    pub generations: AtomicU64,
    /// Score requests served.
    pub scores: AtomicU64,
    /// Prompt tokens evaluated (after prefix reuse).
    pub prompt_tokens: AtomicU64,
    /// Prompt tokens served from the KV cache: the instruction prefix, and the beginnings that a
    /// prompt shares with another of its batch or with a prompt decided lately.
    pub reused_tokens: AtomicU64,
    /// Prompts decided lately whose KV cells were freed to make room for other work.
    pub forgotten_prompts: AtomicU64,
    /// Tokens generated.
    pub generated_tokens: AtomicU64,
    /// Calls to the model's decode (one batch each).
    pub decode_calls: AtomicU64,
}

/// A snapshot of [`Counters`].
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    /// See [`Counters::decided`].
    pub decided: u64,
    /// See [`Counters::generations`].
    pub generations: u64,
    /// See [`Counters::scores`].
    pub scores: u64,
    /// See [`Counters::prompt_tokens`].
    pub prompt_tokens: u64,
    /// See [`Counters::reused_tokens`].
    pub reused_tokens: u64,
    /// See [`Counters::forgotten_prompts`].
    #[serde(default)]
    pub forgotten_prompts: u64,
    /// See [`Counters::generated_tokens`].
    pub generated_tokens: u64,
    /// See [`Counters::decode_calls`].
    pub decode_calls: u64,
}

impl Counters {
    /// Reads all counters.
    pub fn snapshot(&self) -> Stats {
        let r = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Stats {
            decided: r(&self.decided),
            generations: r(&self.generations),
            scores: r(&self.scores),
            prompt_tokens: r(&self.prompt_tokens),
            reused_tokens: r(&self.reused_tokens),
            forgotten_prompts: r(&self.forgotten_prompts),
            generated_tokens: r(&self.generated_tokens),
            decode_calls: r(&self.decode_calls),
        }
    }
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

/// An inference backend. Calls block; they are safe to make from several threads at once.
pub trait Backend: Send + Sync {
    /// What is served, and how prompts must be rendered.
    fn info(&self) -> &BackendInfo;
    /// For each round-1 prompt, the probability that the model asks rather than codes: the
    /// probability mass of its first output token on tokens that begin a code fence is `p_code`;
    /// `p_ask = 1 - p_code`. One prefill per prompt, no decoding.
    fn decide(
        &self,
        prompts: &[Prompt],
        cancel: &CancelToken,
    ) -> Result<Vec<Decision>, EngineError>;
    /// Generates a continuation.
    fn generate(
        &self,
        request: &GenerateRequest,
        cancel: &CancelToken,
    ) -> Result<Generation, EngineError>;
    /// Log-likelihood of `continuation` after `prompt`, token by token.
    fn score(
        &self,
        prompt: &str,
        continuation: &str,
        cancel: &CancelToken,
    ) -> Result<Score, EngineError>;
    /// Work done so far.
    fn stats(&self) -> Stats;
}

/// Numerically stable log-softmax statistics of a logit row: returns (log of the normaliser,
/// max logit).
pub(crate) fn log_normaliser(logits: &[f32]) -> f32 {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f64 = logits.iter().map(|&l| ((l - max) as f64).exp()).sum();
    max + sum.ln() as f32
}

/// Entropy (nats) of the softmax of a logit row, given its log-normaliser.
pub(crate) fn entropy(logits: &[f32], log_z: f32) -> f32 {
    let mut h = 0.0f64;
    for &l in logits {
        let lp = (l - log_z) as f64;
        if lp > -60.0 {
            h -= lp.exp() * lp;
        }
    }
    h as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn softmax_helpers() {
        let logits = [0.0f32, 0.0, 0.0, 0.0];
        let z = log_normaliser(&logits);
        assert!((z - 4f32.ln()).abs() < 1e-6);
        assert!((entropy(&logits, z) - 4f32.ln()).abs() < 1e-5);
        let peaked = [100.0f32, 0.0, 0.0];
        let z = log_normaliser(&peaked);
        assert!(entropy(&peaked, z) < 1e-6);
    }

    #[test]
    fn decision_clamps() {
        assert_eq!(Decision::from_p_code(1.5).p_ask, 0.0);
        assert_eq!(Decision::from_p_code(f32::NAN).p_ask, 1.0);
        let d = Decision::from_p_code(0.25);
        assert!((d.p_ask - 0.75).abs() < 1e-6);
    }
}
