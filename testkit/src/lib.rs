//! Test support shared by the workspace's tests: one mock OpenAI-compatible server, and tiny
//! random models ([`tiny`]).
//!
//! Tests use the real components; only remote endpoints are mocked, by [`MockServer`], a local
//! HTTP server that answers `/v1/completions` (or any path) the way a test scripts it. It records
//! every request (path, headers, JSON body) and the most requests it had in flight at once.
//!
//! - [`MockServer::start`]: every request is answered by a function of the request, each
//!   connection on its own thread (a test that wants latency sleeps in that function).
//! - [`MockServer::scripted`]: the given replies in the order the requests arrive, one connection
//!   at a time; once they are used up the server stops listening.
//! - [`unused_port`]: a port nobody listens on, for unreachable endpoints.
//!
//! Where the real model is not needed (the trainer's parity and fine-tuning tests, the binaries
//! end to end), [`tiny::write_model`] writes a tiny random GGUF model that llama.cpp loads.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};

pub mod tiny;

/// A request the server received.
#[derive(Debug, Clone)]
pub struct Request {
    /// The request target, e.g. `/v1/completions`.
    pub path: String,
    /// Headers in arrival order, names lower-cased.
    pub headers: Vec<(String, String)>,
    /// The JSON body (`Null` when there is none or it is not JSON).
    pub body: Value,
}

impl Request {
    /// The value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The completion request's `prompt` (empty when there is none).
    pub fn prompt(&self) -> &str {
        self.body["prompt"].as_str().unwrap_or_default()
    }
}

/// A reply: HTTP status and JSON body text.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub body: String,
}

impl Reply {
    /// `status` with `body` as it is.
    pub fn new(status: u16, body: impl Into<String>) -> Reply {
        Reply {
            status,
            body: body.into(),
        }
    }

    /// 200 with a JSON body.
    pub fn json(body: &Value) -> Reply {
        Reply::new(200, body.to_string())
    }

    /// 200 with a completion that generated `text` and stopped.
    pub fn completion(text: &str) -> Reply {
        Reply::json(&json!({"choices": [{"text": text, "finish_reason": "stop"}]}))
    }
}

/// What the server thread and the test share.
#[derive(Default)]
struct Log {
    requests: Mutex<Vec<Request>>,
    in_flight: AtomicUsize,
    peak: AtomicUsize,
}

/// A mock OpenAI-compatible server on a free local port; it runs until the test process ends.
pub struct MockServer {
    url: String,
    log: Arc<Log>,
}

impl MockServer {
    /// Answers every request with `respond(&request)`, each connection on its own thread.
    pub fn start<F>(respond: F) -> MockServer
    where
        F: Fn(&Request) -> Reply + Send + Sync + 'static,
    {
        let (listener, server) = MockServer::bind();
        let log = server.log.clone();
        let respond = Arc::new(respond);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                let (log, respond) = (log.clone(), respond.clone());
                std::thread::spawn(move || {
                    serve(stream, &log, &*respond);
                });
            }
        });
        server
    }

    /// Answers requests with `replies`, in the order the requests arrive, one connection at a
    /// time; then stops listening (a further request finds the port closed).
    pub fn scripted(replies: Vec<Reply>) -> MockServer {
        let (listener, server) = MockServer::bind();
        let log = server.log.clone();
        std::thread::spawn(move || {
            let replies = Mutex::new(VecDeque::from(replies));
            let next =
                |_: &Request| {
                    replies.lock().unwrap().pop_front().unwrap_or_else(|| {
                        Reply::new(500, r#"{"error": "no scripted reply left"}"#)
                    })
                };
            while !replies.lock().unwrap().is_empty() {
                let Ok((stream, _)) = listener.accept() else {
                    return;
                };
                serve(stream, &log, &next);
            }
        });
        server
    }

    fn bind() -> (TcpListener, MockServer) {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a local port");
        let url = format!("http://{}", listener.local_addr().expect("a bound address"));
        let server = MockServer {
            url,
            log: Arc::new(Log::default()),
        };
        (listener, server)
    }

    /// `http://127.0.0.1:PORT` (no path).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The requests received so far, in arrival order.
    pub fn requests(&self) -> Vec<Request> {
        self.log.requests.lock().unwrap().clone()
    }

    /// How many requests were received so far.
    pub fn request_count(&self) -> usize {
        self.log.requests.lock().unwrap().len()
    }

    /// The most requests that were in flight at once (received, not yet answered).
    pub fn peak_in_flight(&self) -> usize {
        self.log.peak.load(Ordering::SeqCst)
    }
}

/// A local port nobody listens on (bound, then released).
pub fn unused_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind a local port")
        .port()
}

/// Reads one request from `stream`, records it and writes `respond`'s reply. A connection closed
/// before it sent a request line is ignored.
fn serve(stream: TcpStream, log: &Log, respond: &dyn Fn(&Request) -> Reply) {
    let in_flight = log.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    log.peak.fetch_max(in_flight, Ordering::SeqCst);
    let request = read_request(stream);
    let Some((request, mut stream)) = request else {
        log.in_flight.fetch_sub(1, Ordering::SeqCst);
        return;
    };
    log.requests.lock().unwrap().push(request.clone());
    let reply = respond(&request);
    log.in_flight.fetch_sub(1, Ordering::SeqCst);
    let reason = if reply.status == 200 { "OK" } else { "Mock" };
    let _ = write!(
        stream,
        "HTTP/1.1 {} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{}",
        reply.status,
        reply.body.len(),
        reply.body
    );
    let _ = stream.flush();
}

fn read_request(stream: TcpStream) -> Option<(Request, TcpStream)> {
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    if reader.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let path = line
        .split_whitespace()
        .nth(1)
        .unwrap_or_default()
        .to_string();
    let mut headers = Vec::new();
    let mut length = 0;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            break;
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            let (k, v) = (k.trim().to_ascii_lowercase(), v.trim().to_string());
            if k == "content-length" {
                length = v.parse().unwrap_or(0);
            }
            headers.push((k, v));
        }
    }
    let mut body = vec![0; length];
    let body = match reader.read_exact(&mut body) {
        Ok(()) => serde_json::from_slice(&body).unwrap_or(Value::Null),
        Err(_) => Value::Null,
    };
    Some((
        Request {
            path,
            headers,
            body,
        },
        reader.into_inner(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal HTTP/1.1 POST; returns the status and the body.
    fn post(url: &str, body: &str) -> (u16, String) {
        let mut stream = TcpStream::connect(url.trim_start_matches("http://")).unwrap();
        write!(
            stream,
            "POST /v1/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer k\r\n\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut text = String::new();
        stream.read_to_string(&mut text).unwrap();
        let status = text.split_whitespace().nth(1).unwrap().parse().unwrap();
        let body = text.split("\r\n\r\n").nth(1).unwrap().to_string();
        (status, body)
    }

    #[test]
    fn scripted_replies_come_in_order_and_requests_are_recorded() {
        let server = MockServer::scripted(vec![Reply::new(503, "{}"), Reply::completion("hello")]);
        assert_eq!(post(server.url(), r#"{"prompt": "a"}"#), (503, "{}".into()));
        let (status, body) = post(server.url(), r#"{"prompt": "b"}"#);
        assert_eq!(status, 200);
        let body: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(body["choices"][0]["text"], "hello");
        let seen = server.requests();
        assert_eq!(seen.len(), 2);
        assert_eq!(seen[1].prompt(), "b");
        assert_eq!(seen[1].path, "/v1/completions");
        assert_eq!(seen[1].header("AUTHORIZATION"), Some("Bearer k"));
        // The script is used up: the port is closed.
        std::thread::sleep(Duration::from_millis(50));
        assert!(TcpStream::connect(server.url().trim_start_matches("http://")).is_err());
    }

    #[test]
    fn a_responder_answers_concurrent_requests_and_the_peak_is_counted() {
        let server = MockServer::start(|r| {
            std::thread::sleep(Duration::from_millis(200));
            Reply::completion(&r.prompt().to_uppercase())
        });
        let url = server.url().to_string();
        let clients: Vec<_> = (0..3)
            .map(|i| {
                let url = url.clone();
                std::thread::spawn(move || post(&url, &format!(r#"{{"prompt": "p{i}"}}"#)))
            })
            .collect();
        for (i, c) in clients.into_iter().enumerate() {
            let (status, body) = c.join().unwrap();
            assert_eq!(status, 200);
            assert!(body.contains(&format!("P{i}")), "{body}");
        }
        assert_eq!(server.request_count(), 3);
        assert_eq!(server.peak_in_flight(), 3);
    }

    #[test]
    fn an_unused_port_refuses_connections() {
        assert!(TcpStream::connect(("127.0.0.1", unused_port())).is_err());
    }
}
