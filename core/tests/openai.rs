//! The OpenAI-compatible backend against a tiny local HTTP server that speaks the same API.

use std::sync::Arc;
use std::time::Duration;

use clarifycoder_core::engine::openai::{OpenAiConfig, OpenAiEngine};
use clarifycoder_core::engine::{Backend, CancelToken, EngineError, FinishReason, GenerateRequest};
use clarifycoder_core::prompt::{self, Markup};
use clarifycoder_testkit::{unused_port, MockServer, Reply};
use serde_json::json;

fn config(url: &str) -> OpenAiConfig {
    let mut c = OpenAiConfig::new(url, "clarify");
    c.backoff = Duration::from_millis(10);
    c.timeout = Duration::from_secs(10);
    c
}

#[test]
fn decide_sums_fence_tokens_in_both_logprob_formats() {
    let legacy = json!({"choices": [{"text": "```", "logprobs": {
        "top_logprobs": [{"```": (0.5f64).ln(), "```python": (0.25f64).ln(), "What": (0.2f64).ln()}]
    }}]});
    let modern = json!({"choices": [{"text": "W", "logprobs": {"content": [{"token": "What", "logprob": -0.1,
        "top_logprobs": [{"token": "What", "logprob": (0.9f64).ln()}, {"token": "``", "logprob": (0.1f64).ln()}]}]}}]});
    let server = MockServer::scripted(vec![Reply::json(&legacy), Reply::json(&modern)]);
    // One request at a time, so that the answers come in the order of the prompts.
    let mut c = config(server.url());
    c.concurrency = 1;
    let engine = OpenAiEngine::new(c).unwrap();
    let p = prompt::round1(Markup::Gemma, "def f(): ...\n");
    let d = engine
        .decide(&[p.clone(), p.clone()], &CancelToken::new())
        .unwrap();
    assert!((d[0].p_code - 0.75).abs() < 1e-5, "{d:?}");
    assert!((d[1].p_code - 0.1).abs() < 1e-5, "{d:?}");
    let seen = server.requests();
    // The prompt is sent exactly as the embedded engine would see it.
    assert_eq!(seen[0].body["prompt"], json!(p.text));
    assert_eq!(seen[0].body["max_tokens"], json!(1));
    assert_eq!(seen[0].body["model"], json!("clarify"));
}

#[test]
fn generate_retries_server_errors_and_sends_the_key() {
    // SAFETY: set before any thread of this test reads it; the name is unique to this test.
    unsafe { std::env::set_var("CLARIFYCODER_TEST_KEY_1", "sekret") };
    let ok = json!({"choices": [{"text": "1. Which order?<end_of_turn>junk", "finish_reason": "stop"}],
        "usage": {"completion_tokens": 7}});
    let server = MockServer::scripted(vec![
        Reply::new(503, "{}"),
        Reply::new(429, "{}"),
        Reply::json(&ok),
    ]);
    let mut c = config(server.url());
    c.api_key_env = Some("CLARIFYCODER_TEST_KEY_1".into());
    let engine = OpenAiEngine::new(c).unwrap();
    let req = GenerateRequest::greedy(prompt::round1(Markup::Gemma, "P"), Markup::Gemma, 32);
    let g = engine.generate(&req, &CancelToken::new()).unwrap();
    assert_eq!(g.text, "1. Which order?");
    assert_eq!(g.finish, FinishReason::Stop);
    assert_eq!(g.tokens, 7);
    let seen = server.requests();
    assert_eq!(seen.len(), 3);
    assert_eq!(seen[2].header("authorization"), Some("Bearer sekret"));
    assert_eq!(
        seen[2].body["stop"],
        json!(["<end_of_turn>", "<start_of_turn>"])
    );
}

#[test]
fn client_errors_are_not_retried_and_name_the_endpoint() {
    let server = MockServer::scripted(vec![Reply::new(400, r#"{"error": "bad model"}"#)]);
    let url = server.url();
    let engine = OpenAiEngine::new(config(url)).unwrap();
    let req = GenerateRequest::greedy(prompt::round1(Markup::Gemma, "P"), Markup::Gemma, 4);
    let err = engine.generate(&req, &CancelToken::new()).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("HTTP 400") && msg.contains("bad model") && msg.contains(url),
        "{msg}"
    );
    assert!(
        matches!(
            err,
            EngineError::Http {
                status: Some(400),
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(server.request_count(), 1);
}

/// An answer that is not the API's is told apart from no answer: status 200.
#[test]
fn an_answer_that_is_not_the_apis_has_status_200() {
    let server = MockServer::scripted(vec![Reply::new(200, "<html>not an API</html>")]);
    let engine = OpenAiEngine::new(config(server.url())).unwrap();
    let req = GenerateRequest::greedy(prompt::round1(Markup::Gemma, "P"), Markup::Gemma, 4);
    let err = engine.generate(&req, &CancelToken::new()).unwrap_err();
    assert!(
        matches!(
            err,
            EngineError::Http {
                status: Some(200),
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("not JSON"), "{err}");
}

#[test]
fn unreachable_endpoint_is_a_clear_error_after_retries() {
    let port = unused_port();
    let mut c = config(&format!("http://127.0.0.1:{port}/v1"));
    c.retries = 1;
    let engine = OpenAiEngine::new(c).unwrap();
    let err = engine
        .decide(&[prompt::round1(Markup::Gemma, "P")], &CancelToken::new())
        .unwrap_err();
    assert!(
        matches!(err, EngineError::Http { status: None, .. }),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains(&format!("127.0.0.1:{port}/v1/completions")),
        "{err}"
    );
}

#[test]
fn missing_key_variable_is_reported() {
    let mut c = config("http://127.0.0.1:9");
    c.api_key_env = Some("CLARIFYCODER_TEST_KEY_UNSET".into());
    let err = OpenAiEngine::new(c).err().unwrap();
    assert!(
        err.to_string()
            .contains("CLARIFYCODER_TEST_KEY_UNSET is not set"),
        "{err}"
    );
}

#[test]
fn score_reads_echoed_prompt_logprobs() {
    let prompt_text = "ab";
    let body = json!({"choices": [{"text": "abcd!", "logprobs": {
        "tokens": ["a", "b", "c", "d", "!"],
        "text_offset": [0, 1, 2, 3, 4],
        "token_logprobs": [null, -1.0, -0.5, -0.25, -3.0],
        "top_logprobs": [null, {"b": -1.0}, {"c": -0.5}, {"d": -0.25}, {"!": -3.0}]
    }}]});
    let server = MockServer::scripted(vec![
        Reply::json(&body),
        Reply::json(&json!({"choices": [{"text": "x"}]})),
    ]);
    let engine = OpenAiEngine::new(config(server.url())).unwrap();
    let s = engine
        .score(prompt_text, "cd", &CancelToken::new())
        .unwrap();
    assert_eq!(s.token_logprobs, vec![-0.5, -0.25]);
    assert_eq!(s.token_entropies.len(), 2);
    let err = engine
        .score(prompt_text, "cd", &CancelToken::new())
        .unwrap_err();
    assert!(matches!(err, EngineError::Unsupported(_)), "{err}");
}

/// Answers every request after `delay`, with P(code) = N/10 for a prompt that contains `fN`,
/// each on its own thread; the server counts the most requests it had in flight at once.
fn serve_concurrently(delay: Duration) -> MockServer {
    MockServer::start(move |request| {
        let n = (0..10)
            .find(|n| request.prompt().contains(&format!("def f{n}(")))
            .unwrap_or(0);
        std::thread::sleep(delay);
        Reply::json(&json!({"choices": [{"text": "```", "logprobs": {
            "top_logprobs": [{"```": (n as f64 / 10.0).max(1e-9).ln()}]}}]}))
    })
}

#[test]
fn concurrency_bounds_the_requests_in_flight_and_keeps_the_order() {
    let prompts: Vec<_> = (1..=8)
        .map(|n| {
            prompt::round1(
                Markup::ChatMl,
                &format!("def f{n}():\n    \"\"\"Do {n}.\"\"\"\n"),
            )
        })
        .collect();
    for concurrency in [1, 4] {
        let server = serve_concurrently(Duration::from_millis(150));
        let mut c = config(server.url());
        c.concurrency = concurrency;
        let engine = Arc::new(OpenAiEngine::new(c).unwrap());
        let decisions = engine.decide(&prompts, &CancelToken::new()).unwrap();
        let p_code: Vec<f32> = decisions.iter().map(|d| d.p_code).collect();
        let want: Vec<f32> = (1..=8).map(|n| n as f32 / 10.0).collect();
        for (got, want) in p_code.iter().zip(&want) {
            assert!((got - want).abs() < 1e-5, "{p_code:?}");
        }
        // Generations from several callers share the same bound.
        let callers: Vec<_> = (0..6)
            .map(|_| {
                let engine = engine.clone();
                let request = GenerateRequest::greedy(prompts[0].clone(), Markup::ChatMl, 4);
                std::thread::spawn(move || engine.generate(&request, &CancelToken::new()))
            })
            .collect();
        for caller in callers {
            caller.join().unwrap().unwrap();
        }
        assert_eq!(
            server.peak_in_flight(),
            concurrency,
            "concurrency {concurrency}"
        );
    }
}
