//! The remote backend: an OpenAI-compatible `/v1/completions` endpoint (llama-server, vLLM,
//! Ollama). We send the prompt text rendered by [`crate::prompt`] as is, so the remote model sees
//! exactly what the embedded one would.
//!
//! `decide` reads the top-20 log-probabilities of the first token: mass outside the top 20 counts as
//! "ask", so `p_code` is a lower bound (for a trained model the fence token dominates). `score`
//! needs `echo` with `logprobs`, which vLLM supports; its entropies are computed over the returned
//! top log-probabilities only.

use std::time::Duration;

use serde_json::{json, Value};

use super::{
    Backend, BackendInfo, CancelToken, Counters, Decision, EngineError, FinishReason,
    GenerateRequest, Generation, Score, Stats,
};
use crate::prompt::{self, Markup, Prompt};

/// Settings of the remote backend.
#[derive(Debug, Clone, PartialEq)]
pub struct OpenAiConfig {
    /// Base URL, e.g. `http://gpu-box:8080` or `http://gpu-box:8080/v1`.
    pub endpoint: String,
    /// Model name sent with each request.
    pub model: String,
    /// Name of the environment variable holding the API key (none: no key is sent).
    pub api_key_env: Option<String>,
    /// Timeout of one HTTP request.
    pub timeout: Duration,
    /// Retries after a transport error, 429 or 5xx, with exponential backoff.
    pub retries: u32,
    /// First backoff delay; doubles after each retry.
    pub backoff: Duration,
    /// Turn markup of the served model (it cannot be read from a remote GGUF) [default: the
    /// default model's].
    pub markup: Markup,
    /// Context window to assume.
    pub n_ctx: usize,
    /// Most requests in flight at once, over all callers; a `decide` of several prompts sends
    /// them concurrently up to this bound.
    pub concurrency: usize,
}

impl OpenAiConfig {
    /// Defaults for an endpoint.
    pub fn new(endpoint: impl Into<String>, model: impl Into<String>) -> OpenAiConfig {
        OpenAiConfig {
            endpoint: endpoint.into(),
            model: model.into(),
            api_key_env: None,
            timeout: Duration::from_secs(120),
            retries: 3,
            backoff: Duration::from_millis(500),
            markup: crate::models::default_model().markup,
            n_ctx: 8192,
            concurrency: 8,
        }
    }
}

/// Client of an OpenAI-compatible completions endpoint.
pub struct OpenAiEngine {
    config: OpenAiConfig,
    url: String,
    api_key: Option<String>,
    agent: ureq::Agent,
    info: BackendInfo,
    counters: Counters,
    slots: Slots,
}

/// A counting semaphore: [`OpenAiConfig::concurrency`] requests in flight at most.
struct Slots {
    free: std::sync::Mutex<usize>,
    freed: std::sync::Condvar,
}

impl Slots {
    fn new(n: usize) -> Slots {
        Slots {
            free: std::sync::Mutex::new(n.max(1)),
            freed: std::sync::Condvar::new(),
        }
    }

    /// Waits for a free slot (checking `cancel` every 50 ms) and holds it until the guard drops.
    fn take(&self, cancel: &CancelToken) -> Result<SlotGuard<'_>, EngineError> {
        let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
        while *free == 0 {
            cancel.check()?;
            free = self
                .freed
                .wait_timeout(free, Duration::from_millis(50))
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        *free -= 1;
        Ok(SlotGuard(self))
    }
}

struct SlotGuard<'a>(&'a Slots);

impl Drop for SlotGuard<'_> {
    fn drop(&mut self) {
        *self.0.free.lock().unwrap_or_else(|e| e.into_inner()) += 1;
        self.0.freed.notify_one();
    }
}

impl OpenAiEngine {
    /// Creates the client. Fails when the API key variable is named but not set.
    pub fn new(config: OpenAiConfig) -> Result<OpenAiEngine, EngineError> {
        let base = config.endpoint.trim_end_matches('/');
        if !["http://", "https://"]
            .iter()
            .any(|scheme| base.starts_with(scheme) && base.len() > scheme.len())
        {
            return Err(EngineError::Http {
                url: config.endpoint.clone(),
                reason: "not an http:// or https:// address; give the server's, such as http://127.0.0.1:8080".into(),
                status: None,
            });
        }
        let url = if base.ends_with("/v1") {
            format!("{base}/completions")
        } else {
            format!("{base}/v1/completions")
        };
        let api_key = match &config.api_key_env {
            Some(var) => Some(std::env::var(var).map_err(|_| EngineError::Http {
                url: url.clone(),
                reason: format!(
                    "the API key variable {var} is not set; export it or change apiKeyEnv"
                ),
                status: None,
            })?),
            None => None,
        };
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(config.timeout))
            .http_status_as_error(false)
            .build()
            .into();
        let info = BackendInfo {
            backend: "openai".into(),
            model: config.model.clone(),
            adapter: None,
            code_from_base: false,
            markup: config.markup,
            n_ctx: config.n_ctx,
        };
        Ok(OpenAiEngine {
            url,
            api_key,
            agent,
            info,
            counters: Counters::default(),
            slots: Slots::new(config.concurrency),
            config,
        })
    }

    fn post(&self, body: &Value, cancel: &CancelToken) -> Result<Value, EngineError> {
        let _slot = self.slots.take(cancel)?;
        let mut delay = self.config.backoff;
        let mut attempt = 0;
        loop {
            cancel.check()?;
            let err = match self.post_once(body) {
                Ok(v) => return Ok(v),
                Err(failed) if failed.retryable && attempt < self.config.retries => failed.reason,
                Err(failed) => {
                    return Err(EngineError::Http {
                        url: self.url.clone(),
                        reason: failed.reason,
                        status: failed.status,
                    });
                }
            };
            tracing::warn!("{}: {err}; retrying in {delay:?}", self.url);
            attempt += 1;
            // Sleep in small steps so cancellation stays prompt.
            let until = std::time::Instant::now() + delay;
            while std::time::Instant::now() < until {
                cancel.check()?;
                std::thread::sleep(Duration::from_millis(20));
            }
            delay *= 2;
        }
    }

    fn post_once(&self, body: &Value) -> Result<Value, Failed> {
        let mut request = self
            .agent
            .post(&self.url)
            .header("Content-Type", "application/json");
        if let Some(key) = &self.api_key {
            request = request.header("Authorization", &format!("Bearer {key}"));
        }
        let mut response = request.send_json(body).map_err(|e| Failed {
            retryable: true,
            status: None,
            reason: format!(
                "{e} (is the server running at that address, and reachable from here?)"
            ),
        })?;
        let status = response.status().as_u16();
        let text = response
            .body_mut()
            .with_config()
            .limit(64 << 20)
            .read_to_string()
            .map_err(|e| Failed {
                retryable: true,
                status: None,
                reason: e.to_string(),
            })?;
        if status != 200 {
            let snippet: String = text.chars().take(300).collect();
            return Err(Failed {
                retryable: status == 429 || status >= 500,
                status: Some(status),
                reason: format!("HTTP {status}: {snippet}"),
            });
        }
        serde_json::from_str(&text).map_err(|e| Failed {
            retryable: false,
            status: Some(status),
            reason: format!("response is not JSON: {e}"),
        })
    }

    fn choice<'a>(&self, response: &'a Value) -> Result<&'a Value, EngineError> {
        response
            .get("choices")
            .and_then(|c| c.get(0))
            .ok_or_else(|| self.bad("response has no choices".to_string()))
    }

    /// An answer of status 200 that is not what the API promises.
    fn bad(&self, reason: String) -> EngineError {
        EngineError::Http {
            url: self.url.clone(),
            reason,
            status: Some(200),
        }
    }
}

/// One failed request: whether to retry it, the status of the answer if one came, and why.
struct Failed {
    retryable: bool,
    status: Option<u16>,
    reason: String,
}

/// First-token top log-probabilities, in either the legacy completions format
/// (`logprobs.top_logprobs[0]` = {token: logprob}) or the newer one
/// (`logprobs.content[0].top_logprobs` = [{token, logprob}]).
fn first_top_logprobs(choice: &Value) -> Option<Vec<(String, f64)>> {
    let logprobs = choice.get("logprobs")?;
    if let Some(map) = logprobs
        .get("top_logprobs")
        .and_then(|t| t.get(0))
        .and_then(Value::as_object)
    {
        return Some(
            map.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_f64()?)))
                .collect(),
        );
    }
    let list = logprobs
        .get("content")?
        .get(0)?
        .get("top_logprobs")?
        .as_array()?;
    Some(
        list.iter()
            .filter_map(|e| {
                Some((
                    e.get("token")?.as_str()?.to_string(),
                    e.get("logprob")?.as_f64()?,
                ))
            })
            .collect(),
    )
}

impl Backend for OpenAiEngine {
    fn info(&self) -> &BackendInfo {
        &self.info
    }

    fn decide(
        &self,
        prompts: &[Prompt],
        cancel: &CancelToken,
    ) -> Result<Vec<Decision>, EngineError> {
        // One request per prompt, sent from up to `concurrency` threads at once.
        let decide_one = |p: &Prompt| {
            let body = json!({
                "model": self.config.model,
                "prompt": p.text,
                "max_tokens": 1,
                "temperature": 0.0,
                "logprobs": 20,
            });
            let response = self.post(&body, cancel)?;
            let choice = self.choice(&response)?;
            let top = first_top_logprobs(choice).ok_or_else(|| {
                self.bad("response has no logprobs; the server must support `logprobs` on /v1/completions".into())
            })?;
            let p_code: f64 = top
                .iter()
                .filter(|(token, _)| prompt::piece_begins_code(token))
                .map(|(_, lp)| lp.exp())
                .sum();
            Counters::add(&self.counters.decided, 1);
            Ok(Decision::from_p_code(p_code as f32))
        };
        let mut decisions = vec![Decision::from_p_code(0.0); prompts.len()];
        crate::parallel::for_each_unordered(
            prompts,
            self.config.concurrency,
            decide_one,
            |i, d| {
                decisions[i] = d;
                Ok(())
            },
        )?;
        Ok(decisions)
    }

    fn generate(
        &self,
        request: &GenerateRequest,
        cancel: &CancelToken,
    ) -> Result<Generation, EngineError> {
        let mut body = json!({
            "model": self.config.model,
            "prompt": request.prompt.text,
            "max_tokens": request.max_tokens,
            "temperature": request.temperature,
            "seed": request.seed,
        });
        if !request.stop.is_empty() {
            // The OpenAI API takes at most four stop strings.
            body["stop"] = json!(request.stop.iter().take(4).collect::<Vec<_>>());
        }
        let response = self.post(&body, cancel)?;
        let choice = self.choice(&response)?;
        let mut text = choice
            .get("text")
            .and_then(Value::as_str)
            .ok_or_else(|| self.bad("choice has no text".into()))?
            .to_string();
        let mut finish = match choice.get("finish_reason").and_then(Value::as_str) {
            Some("length") => FinishReason::Length,
            _ => FinishReason::Stop,
        };
        if let Some(cut) = request
            .stop
            .iter()
            .filter_map(|s| text.find(s.as_str()))
            .min()
        {
            text.truncate(cut);
            finish = FinishReason::Stop;
        }
        let tokens = response
            .get("usage")
            .and_then(|u| u.get("completion_tokens"))
            .and_then(Value::as_u64)
            .unwrap_or(0) as usize;
        Counters::add(&self.counters.generations, 1);
        Counters::add(&self.counters.generated_tokens, tokens as u64);
        Ok(Generation {
            text,
            tokens,
            finish,
        })
    }

    fn score(
        &self,
        prompt_text: &str,
        continuation: &str,
        cancel: &CancelToken,
    ) -> Result<Score, EngineError> {
        let body = json!({
            "model": self.config.model,
            "prompt": format!("{prompt_text}{continuation}"),
            "max_tokens": 1,
            "temperature": 0.0,
            "echo": true,
            "logprobs": 5,
        });
        let response = self.post(&body, cancel)?;
        let choice = self.choice(&response)?;
        let unsupported = || {
            EngineError::Unsupported(format!(
                "{} did not return prompt log-probabilities (`echo` + `logprobs`); scoring needs a server that does (vLLM) or the embedded backend",
                self.url
            ))
        };
        let lp = choice.get("logprobs").ok_or_else(unsupported)?;
        let offsets = lp
            .get("text_offset")
            .and_then(Value::as_array)
            .ok_or_else(unsupported)?;
        let logprobs = lp
            .get("token_logprobs")
            .and_then(Value::as_array)
            .ok_or_else(unsupported)?;
        let tops = lp.get("top_logprobs").and_then(Value::as_array);
        let mut score = Score {
            token_logprobs: Vec::new(),
            token_entropies: Vec::new(),
        };
        let total = prompt_text.len() + continuation.len();
        for (i, (off, lp)) in offsets.iter().zip(logprobs).enumerate() {
            let off = off.as_u64().unwrap_or(0) as usize;
            if off < prompt_text.len() || off >= total {
                continue;
            }
            let Some(lp) = lp.as_f64() else { continue };
            score.token_logprobs.push(lp as f32);
            let h = tops
                .and_then(|t| t.get(i))
                .and_then(Value::as_object)
                .map(|m| {
                    m.values()
                        .filter_map(Value::as_f64)
                        .map(|l| -l.exp() * l)
                        .sum::<f64>()
                })
                .unwrap_or(f64::NAN);
            score.token_entropies.push(h as f32);
        }
        Counters::add(&self.counters.scores, 1);
        Ok(score)
    }

    fn stats(&self) -> Stats {
        self.counters.snapshot()
    }
}
