//! A small LSP client for the tests and benchmarks: the real binary over stdin/stdout, or over
//! TCP (`serve --listen`).
#![allow(dead_code)]

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

pub const TIMEOUT: Duration = Duration::from_secs(120);

pub fn model_path() -> PathBuf {
    clarifycoder_core::models::GEMMA3_270M
        .installed_path()
        .unwrap_or_else(|e| panic!("{e}"))
}

/// Three functions, the middle one (`giant`, line 5) with a docstring far too long for the
/// model's context.
pub fn too_long_source() -> String {
    let words: Vec<String> = (0..6000).map(|i| format!("word{i}")).collect();
    format!(
        "def first(x):\n    \"\"\"Handle x.\"\"\"\n\n\ndef giant(x):\n    \"\"\"Handle x. {}\"\"\"\n\n\ndef last(x):\n    \"\"\"Handle x too.\"\"\"\n",
        words.join(" ")
    )
}

pub struct Client {
    pub child: Child,
    /// Where messages to the server go: its stdin, or the connection.
    output: Box<dyn Write + Send>,
    /// `serve --listen`: the server's address and the connection of the current session.
    tcp: Option<(SocketAddr, TcpStream)>,
    rx: mpsc::Receiver<Value>,
    /// Notifications seen while waiting for something else.
    backlog: VecDeque<Value>,
    next_id: i64,
    /// The server's log (stderr, our modules at debug level), shown when a wait times out.
    log: PathBuf,
    _cache: tempfile::TempDir,
}

impl Client {
    pub fn start(model: &Path) -> Client {
        Client::start_with(model, |_| {})
    }

    /// [`Client::start`] with more settings of the server's process (`configure`).
    pub fn start_with(model: &Path, configure: impl FnOnce(&mut Command)) -> Client {
        let (mut command, cache, log) = server_command(model);
        configure(&mut command);
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(if std::env::var_os("CLARIFYCODER_TEST_LOG").is_some() {
                Stdio::inherit()
            } else {
                Stdio::from(std::fs::File::create(&log).unwrap())
            })
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        Client {
            child,
            output: Box::new(stdin),
            tcp: None,
            rx: read_messages(stdout),
            backlog: VecDeque::new(),
            next_id: 1,
            log,
            _cache: cache,
        }
    }

    /// `serve --listen` on a free local port, connected: the first session.
    pub fn listen(model: &Path) -> Client {
        let (mut command, cache, log) = server_command(model);
        command.args(["--listen", "127.0.0.1:0"]);
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // The log (stderr) names the address; the rest of it goes where `start`'s goes.
        let mut stderr = BufReader::new(child.stderr.take().unwrap());
        let addr: SocketAddr = loop {
            let mut line = String::new();
            assert!(
                stderr.read_line(&mut line).unwrap() > 0,
                "the server ended without listening"
            );
            if let Some(addr) = line.trim_end().strip_prefix("clarifycoder: listening on ") {
                break addr.parse().unwrap();
            }
        };
        let mut sink: Box<dyn Write + Send> = if std::env::var_os("CLARIFYCODER_TEST_LOG").is_some()
        {
            Box::new(std::io::stderr())
        } else {
            Box::new(std::fs::File::create(&log).unwrap())
        };
        std::thread::spawn(move || std::io::copy(&mut stderr, &mut sink));
        let stream = TcpStream::connect(addr).unwrap();
        Client {
            child,
            output: Box::new(stream.try_clone().unwrap()),
            rx: read_messages(stream.try_clone().unwrap()),
            tcp: Some((addr, stream)),
            backlog: VecDeque::new(),
            next_id: 1,
            log,
            _cache: cache,
        }
    }

    /// A listening server ([`Client::listen`]): closes the connection, which ends the session as
    /// an editor's window reload does.
    pub fn disconnect(&mut self) {
        let (_, stream) = self.tcp.as_ref().expect("a server started with `listen`");
        let _ = stream.shutdown(Shutdown::Both);
    }

    /// A listening server ([`Client::listen`]): connects again (after [`Client::disconnect`] or
    /// `exit`), for the next session.
    pub fn connect(&mut self) {
        self.disconnect();
        let (addr, _) = self.tcp.take().unwrap();
        let stream = TcpStream::connect(addr).unwrap();
        self.output = Box::new(stream.try_clone().unwrap());
        self.rx = read_messages(stream.try_clone().unwrap());
        self.tcp = Some((addr, stream));
        self.backlog.clear();
        self.next_id = 1;
    }

    pub fn send(&mut self, message: Value) {
        let body = message.to_string();
        write!(self.output, "Content-Length: {}\r\n\r\n{body}", body.len()).unwrap();
        self.output.flush().unwrap();
    }

    /// Writes raw bytes, framing and all (for malformed-input tests).
    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.output.write_all(bytes).unwrap();
        self.output.flush().unwrap();
    }

    pub fn notify(&mut self, method: &str, params: Value) {
        self.send(json!({"jsonrpc": "2.0", "method": method, "params": params}));
    }

    /// Next message from the server, answering its requests (progress creation, refresh).
    pub fn next(&mut self, deadline: Instant) -> Value {
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let msg = match self.rx.recv_timeout(left) {
                Ok(msg) => msg,
                Err(e) => panic!("{}", self.report(e)),
            };
            if msg.get("method").is_some() && msg.get("id").is_some() {
                let id = msg["id"].clone();
                self.send(json!({"jsonrpc": "2.0", "id": id, "result": null}));
                if msg["method"] == "workspace/diagnostic/refresh" {
                    return msg;
                }
                continue;
            }
            return msg;
        }
    }

    /// Why a wait failed, with what the server said: the messages kept for later, whether the
    /// process still runs, and the end of its log.
    fn report(&mut self, e: mpsc::RecvTimeoutError) -> String {
        let what = match e {
            mpsc::RecvTimeoutError::Timeout => "timed out waiting for the server",
            mpsc::RecvTimeoutError::Disconnected => "the server closed its output",
        };
        let kept: Vec<String> = self
            .backlog
            .iter()
            .map(|m| {
                let params: String = m["params"].to_string().chars().take(120).collect();
                format!("{} {params}", m["method"].as_str().unwrap_or("(response)"))
            })
            .collect();
        let process = match self.child.try_wait() {
            Ok(Some(status)) => format!("exited ({status})"),
            Ok(None) => "still running".to_string(),
            Err(e) => format!("unknown ({e})"),
        };
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        let tail = lines[lines.len().saturating_sub(60)..].join("\n");
        format!(
            "{what}; the server is {process}; messages kept: {kept:?}\n--- the server's log, last lines ---\n{tail}"
        )
    }

    /// Sends a request and returns its response (`result` or `error`), keeping notifications.
    pub fn request(&mut self, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        self.send(json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}));
        self.response(id)
    }

    /// Waits for the response to a request sent with `send` (keeping everything else).
    pub fn response(&mut self, id: i64) -> Value {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let msg = self.next(deadline);
            if msg.get("id") == Some(&json!(id)) && msg.get("method").is_none() {
                return msg;
            }
            self.backlog.push_back(msg);
        }
    }

    /// The last diagnostics published for `uri` at `version` (the backlog included) once the
    /// server has been quiet for `quiet`; the rest stays in the backlog.
    pub fn last_publish(&mut self, uri: &str, version: i64, quiet: Duration) -> Option<Value> {
        loop {
            match self.rx.recv_timeout(quiet) {
                Ok(msg) => self.backlog.push_back(msg),
                Err(mpsc::RecvTimeoutError::Timeout) => break,
                Err(e) => panic!("{}", self.report(e)),
            }
        }
        let is_it = |m: &Value| {
            m["method"] == "textDocument/publishDiagnostics"
                && m["params"]["uri"] == uri
                && m["params"]["version"] == version
        };
        let last = self.backlog.iter().rposition(is_it)?;
        let found = self.backlog[last]["params"].clone();
        self.backlog.retain(|m| !is_it(m));
        Some(found)
    }

    /// The notifications `method` received so far and not yet taken by `wait`.
    pub fn kept(&self, method: &str) -> Vec<Value> {
        self.backlog
            .iter()
            .filter(|m| m["method"] == method)
            .map(|m| m["params"].clone())
            .collect()
    }

    /// Keeps a message for later `wait` calls.
    pub fn backlog_push(&mut self, msg: Value) {
        self.backlog.push_back(msg);
    }

    /// Waits for a notification matching `pred` (the backlog first).
    pub fn wait(&mut self, method: &str, pred: impl Fn(&Value) -> bool) -> Value {
        if let Some(i) = self
            .backlog
            .iter()
            .position(|m| m["method"] == method && pred(&m["params"]))
        {
            return self.backlog.remove(i).unwrap()["params"].clone();
        }
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let msg = self.next(deadline);
            if msg["method"] == method && pred(&msg["params"]) {
                return msg["params"].clone();
            }
            self.backlog.push_back(msg);
        }
    }

    pub fn initialize(&mut self, capabilities: Value, options: Value) -> Value {
        let response = self.request(
            "initialize",
            json!({"processId": null, "rootUri": null, "capabilities": capabilities, "initializationOptions": options}),
        );
        self.notify("initialized", json!({}));
        response
    }
}

/// The server's command (`serve`), with a cache, configuration and working directory of its own
/// (a temporary directory, returned) and the path of its log there.
fn server_command(model: &Path) -> (Command, tempfile::TempDir, PathBuf) {
    let cache = tempfile::tempdir().unwrap();
    let log = cache.path().join("server.log");
    // Another build of the server, for benchmarks side by side.
    let binary = std::env::var_os("CLARIFYCODER_TEST_BIN")
        .unwrap_or_else(|| env!("CARGO_BIN_EXE_clarifycoder").into());
    let mut command = Command::new(binary);
    // Without a workspace folder the server looks for a configuration file from its working
    // directory up, then in the user's: neither is the developer's.
    command
        .arg("serve")
        .current_dir(cache.path())
        .env("XDG_CACHE_HOME", cache.path())
        .env("XDG_CONFIG_HOME", cache.path().join("config"))
        .env("CLARIFYCODER_MODEL", model)
        .env("CLARIFYCODER_ADAPTER", "none")
        .env("CLARIFYCODER_LOG", "info,clarifycoder=debug");
    (command, cache, log)
}

/// The messages the server writes to `input`, read on a thread of their own.
fn read_messages(input: impl Read + Send + 'static) -> mpsc::Receiver<Value> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut reader = BufReader::new(input);
        loop {
            let mut length = 0usize;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 {
                    return;
                }
                let line = line.trim_end();
                if line.is_empty() {
                    break;
                }
                if let Some(v) = line.strip_prefix("Content-Length: ") {
                    length = v.parse().unwrap();
                }
            }
            let mut body = vec![0; length];
            if reader.read_exact(&mut body).is_err() {
                return;
            }
            if tx.send(serde_json::from_slice(&body).unwrap()).is_err() {
                return;
            }
        }
    });
    rx
}

impl Drop for Client {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
