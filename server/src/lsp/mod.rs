//! `clarifycoder serve`: the language server.
//!
//! Handlers that change documents (`didOpen`, `didChange`, `didClose`) update the store under a
//! lock before any `.await`, so notifications cannot reorder. Analysis runs on the worker thread
//! (see `worker.rs`) after a debounce; its results come back as events and are published only
//! for the document version they were computed for.

mod document;
pub mod edits;
mod phrase;
mod transport;
mod types;
mod worker;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clarifycoder_core::engine::CancelToken;
use clarifycoder_core::python::{self, Function};
use clarifycoder_core::settings::{self, Settings};
use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot};
use tower_lsp_server::jsonrpc::{Error as RpcError, Result};
use tower_lsp_server::{Client, LanguageServer, LspService, Server};

use self::document::{Document, Encoding};
use self::types::*;
use self::worker::{EngineState, Event, Item, Job, LoadFailure, Worker};
use crate::analysis::{analyzable, Options, ResultCache};
use crate::backend::Plan;

const SOURCE: &str = "clarifycoder";
const CMD_CHECK_WORKSPACE: &str = "clarifycoder.checkWorkspace";
const CMD_RESTART: &str = "clarifycoder.restartEngine";
/// Not advertised: counters for tests and benchmarks.
const CMD_STATS: &str = "clarifycoder.stats";

/// `clarifycoder/status`: the engine's state, for editors' status bars.
enum StatusNotification {}

impl notification::Notification for StatusNotification {
    type Params = Value;
    const METHOD: &'static str = "clarifycoder/status";
}

/// Settings of the server beyond the model plan.
#[derive(Debug, Clone)]
struct Config {
    options: Options,
    severity: DiagnosticSeverity,
    debounce: Duration,
    per_question: bool,
}

impl Config {
    fn from(s: &Settings) -> Config {
        let d = Options::default();
        let severity = match s
            .severity
            .as_deref()
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            Some("error") => DiagnosticSeverity::ERROR,
            Some("warning") => DiagnosticSeverity::WARNING,
            Some("hint") => DiagnosticSeverity::HINT,
            _ => DiagnosticSeverity::INFORMATION,
        };
        Config {
            options: Options {
                threshold: s.threshold.unwrap_or(d.threshold).clamp(0.0, 1.0),
                max_questions: s.max_questions.unwrap_or(d.max_questions),
                max_tokens: s.max_tokens.unwrap_or(d.max_tokens),
            },
            severity,
            debounce: Duration::from_millis(s.debounce_ms.unwrap_or(500)),
            per_question: s.per_question.unwrap_or(false),
        }
    }
}

struct State {
    docs: HashMap<Uri, Document>,
    /// Cancels in-flight analysis of a document when it changes.
    cancels: HashMap<Uri, CancelToken>,
    encoding: Encoding,
    settings: Settings,
    config: Config,
    pull: bool,
    roots: Vec<PathBuf>,
    /// Progress tokens the user cancelled (workspace checks stop at the next file).
    cancelled_progress: std::collections::HashSet<String>,
}

/// The language server.
pub struct ClarifyServer {
    client: Client,
    state: Arc<Mutex<State>>,
    worker: Worker,
    /// Loads in progress, so requests can wait for the engine.
    events: Mutex<Option<mpsc::UnboundedReceiver<Event>>>,
}

fn service() -> (LspService<ClarifyServer>, tower_lsp_server::ClientSocket) {
    LspService::build(ClarifyServer::new)
        .custom_method(
            "window/workDoneProgress/cancel",
            ClarifyServer::progress_cancel,
        )
        .finish()
}

/// Serves LSP over stdin/stdout.
pub async fn serve_stdio() {
    serve_guarded(tokio::io::stdin(), tokio::io::stdout()).await;
}

/// Serves LSP over one TCP connection at a time.
pub async fn serve_tcp(addr: &str) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    eprintln!("clarifycoder: listening on {}", listener.local_addr()?);
    loop {
        let (stream, _) = listener.accept().await?;
        let (read, write) = tokio::io::split(stream);
        serve_guarded(read, write).await;
    }
}

/// One session over a byte stream, behind the transport guard (malformed frames answered, not
/// fatal). Returns after `exit` (or the end of the input) once the last responses are out.
async fn serve_guarded<R, W>(input: R, output: W)
where
    R: tokio::io::AsyncRead + Unpin + Send + 'static,
    W: tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let guarded = transport::guard(input, output);
    let (service, socket) = service();
    let serve = Server::new(guarded.input, guarded.output, socket).serve(service);
    tokio::pin!(serve);
    tokio::select! {
        () = &mut serve => {}
        _ = guarded.exited => {
            // Answers already under way get a moment to go out; requests the server sent the
            // client may stay unanswered, and must not keep the process alive.
            let _ = tokio::time::timeout(Duration::from_millis(300), &mut serve).await;
        }
    }
    // What the server wrote last still goes out (the pump ends when the server's output closes).
    let _ = tokio::time::timeout(Duration::from_millis(300), guarded.pump).await;
    tracing::debug!("session ended");
}

fn lsp_error(message: impl Into<String>) -> RpcError {
    let mut e = RpcError::internal_error();
    e.message = message.into().into();
    e
}

impl ClarifyServer {
    fn new(client: Client) -> ClarifyServer {
        let (tx, rx) = mpsc::unbounded_channel();
        let worker = Worker::start(ResultCache::in_memory(), tx);
        ClarifyServer {
            client,
            state: Arc::new(Mutex::new(State {
                docs: HashMap::new(),
                cancels: HashMap::new(),
                encoding: Encoding::Utf16,
                settings: Settings::default(),
                config: Config::from(&Settings::default()),
                pull: false,
                roots: Vec::new(),
                cancelled_progress: Default::default(),
            })),
            worker,
            events: Mutex::new(Some(rx)),
        }
    }

    /// Loads (or reloads) the engine from the current settings, with progress; on failure tells
    /// the user once and keeps serving.
    async fn load_engine(&self) {
        let (settings, root) = {
            let st = self.state.lock().unwrap();
            (st.settings.clone(), st.roots.first().cloned())
        };
        // The project's configuration file, read like `check` reads it (paths relative to it,
        // values validated); a broken one is reported, not silently ignored.
        let config_file = match root.as_deref().and_then(Settings::discover) {
            Some(path) => {
                match Settings::from_toml_file(&path) {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::warn!("{e}");
                        self.client
                        .show_message(MessageType::WARNING, format!("ClarifyCoder: {e}; using the editor's settings and the defaults"))
                        .await;
                        Settings::default()
                    }
                }
            }
            None => Settings::default(),
        };
        let plan = Plan::new(settings, config_file);
        let options = Config::from(&plan.settings).options;
        // Results are only valid for one model: reopen the persistent cache for this one.
        if let Ok(identity) = plan.identity() {
            *self.worker.cache.lock().unwrap() =
                ResultCache::open(settings::cache_dir().join("results"), &identity, &options);
        }
        let token = ProgressToken::String(format!("clarifycoder/load/{}", rand_suffix()));
        let progress = match self.client.create_work_done_progress(token.clone()).await {
            Ok(()) => Some(
                self.client
                    .progress(token, "ClarifyCoder: loading model")
                    .begin()
                    .await,
            ),
            Err(_) => None,
        };
        self.client
            .send_notification::<StatusNotification>(json!({"state": "loading"}))
            .await;
        let (tx, rx) = oneshot::channel();
        let result = match self.worker.send(Job::Load(Box::new(plan), options, tx)) {
            Ok(()) => rx
                .await
                .unwrap_or_else(|_| Err(String::from("the analysis thread stopped").into())),
            Err(e) => Err(e.into()),
        };
        if let Some(p) = progress {
            p.finish_with_message(if result.is_ok() { "ready" } else { "failed" })
                .await;
        }
        match result {
            Ok(model) => {
                tracing::info!("engine ready: {model}");
                self.client
                    .send_notification::<StatusNotification>(
                        json!({"state": "ready", "message": model}),
                    )
                    .await;
                self.reanalyze_all();
            }
            Err(LoadFailure {
                missing_model,
                message,
            }) => {
                tracing::error!("{message}");
                let state = if missing_model { "noModel" } else { "error" };
                self.client
                    .send_notification::<StatusNotification>(
                        json!({"state": state, "message": message}),
                    )
                    .await;
                self.client
                    .show_message(MessageType::ERROR, format!("ClarifyCoder: {message}"))
                    .await;
            }
        }
    }

    async fn progress_cancel(&self, params: WorkDoneProgressCancelParams) {
        tracing::debug!("progress cancelled: {:?}", params.token);
        if let ProgressToken::String(token) = params.token {
            self.state.lock().unwrap().cancelled_progress.insert(token);
        }
    }

    /// Queues analysis of every open document now.
    fn reanalyze_all(&self) {
        let uris: Vec<Uri> = self.state.lock().unwrap().docs.keys().cloned().collect();
        for uri in uris {
            self.queue_analysis(&uri);
        }
    }

    /// Queues analysis of the current version of a document.
    fn queue_analysis(&self, uri: &Uri) {
        let mut st = self.state.lock().unwrap();
        let Some(doc) = st.docs.get(uri) else { return };
        let version = doc.version;
        let items = analyzable(&python::extract(&doc.text()))
            .into_iter()
            .map(|f| Item {
                hash: f.hash.clone(),
                problem: f.problem(),
            })
            .collect();
        let cancel = CancelToken::new();
        if let Some(old) = st.cancels.insert(uri.clone(), cancel.clone()) {
            old.cancel();
        }
        let threshold = st.config.options.threshold;
        drop(st);
        tracing::debug!("analysis queued for {} v{version}", uri.as_str());
        let _ = self.worker.send(Job::Analyze {
            uri: uri.clone(),
            version,
            items,
            threshold,
            cancel,
        });
    }

    /// After the debounce delay, analyses the document if it is still at `version`.
    fn schedule(&self, uri: Uri, version: i32) {
        let delay = self.state.lock().unwrap().config.debounce;
        let state = self.state.clone();
        let me = self.handle();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let current = state.lock().unwrap().docs.get(&uri).map(|d| d.version);
            if current == Some(version) {
                me.queue_analysis(&uri);
            }
        });
    }

    fn handle(&self) -> ClarifyServer {
        ClarifyServer {
            client: self.client.clone(),
            state: self.state.clone(),
            worker: self.worker.clone(),
            events: Mutex::new(None),
        }
    }

    /// Diagnostics of a document from the cached results.
    /// The diagnostics of an open document, with its version.
    fn diagnostics(&self, uri: &Uri) -> Option<(i32, Vec<Diagnostic>)> {
        let st = self.state.lock().unwrap();
        let doc = st.docs.get(uri)?;
        let cache = self.worker.cache.lock().unwrap();
        Some((
            doc.version,
            build_diagnostics(doc, &cache, &st.config, st.encoding),
        ))
    }

    async fn publish(&self, uri: Uri, version: i32) {
        tracing::debug!("results for {} v{version}", uri.as_str());
        let pull = self.state.lock().unwrap().pull;
        if pull {
            let _ = self.client.workspace_diagnostic_refresh().await;
            return;
        }
        if let Some((current, diagnostics)) = self.diagnostics(&uri) {
            if current == version {
                self.client
                    .publish_diagnostics(uri, diagnostics, Some(version))
                    .await;
            }
        }
    }

    /// The function whose `def` line or docstring contains a position.
    fn function_at(&self, uri: &Uri, pos: Position) -> Option<(String, Function, Encoding)> {
        let st = self.state.lock().unwrap();
        let doc = st.docs.get(uri)?;
        let byte = doc.byte_of_position(pos, st.encoding);
        let text = doc.text();
        let parsed = python::extract(&text);
        let f = parsed.functions.into_iter().rfind(|f| {
            let doc_end = f
                .docstring
                .as_ref()
                .map(|d| d.span.end.byte)
                .unwrap_or(f.header_span.end.byte);
            f.decorated_span.start.byte <= byte && byte <= doc_end
        })?;
        Some((text, f, st.encoding))
    }

    fn workspace_edit(
        &self,
        uri: &Uri,
        text: &str,
        edit: &edits::Edit,
        enc: Encoding,
    ) -> WorkspaceEdit {
        let doc = Document::new(text, 0);
        let range = doc.range_of_bytes(edit.start, edit.end, enc);
        let mut changes = HashMap::new();
        changes.insert(
            uri.clone(),
            vec![TextEdit {
                range,
                new_text: edit.text.clone(),
            }],
        );
        WorkspaceEdit {
            changes: Some(changes),
            ..WorkspaceEdit::default()
        }
    }

    async fn check_workspace(&self) -> Result<Option<Value>> {
        let roots = self.state.lock().unwrap().roots.clone();
        let mut walk_errors = Vec::new();
        let files = crate::check::collect_files(&roots, &mut walk_errors);
        for e in walk_errors {
            tracing::warn!("workspace check: {e}");
        }
        let token_name = format!("clarifycoder/check/{}", rand_suffix());
        let token = ProgressToken::String(token_name.clone());
        let progress = match self.client.create_work_done_progress(token.clone()).await {
            Ok(()) => Some(
                self.client
                    .progress(token, "ClarifyCoder: checking workspace")
                    .with_cancel_button()
                    .with_percentage(0)
                    .with_message(format!("0/{} files", files.len()))
                    .begin()
                    .await,
            ),
            Err(_) => None,
        };
        let total = files.len().max(1);
        let mut flagged = 0;
        let mut checked = 0;
        for (i, file) in files.iter().enumerate() {
            if self
                .state
                .lock()
                .unwrap()
                .cancelled_progress
                .remove(&token_name)
            {
                break;
            }
            checked = i + 1;
            let Ok(text) = std::fs::read_to_string(file) else {
                continue;
            };
            let Some(uri) = Uri::from_file_path(file) else {
                continue;
            };
            // Files that are not open stay out of the document store: the user may open one
            // while it is checked, and then it is theirs.
            let items: Vec<Item> = analyzable(&python::extract(&text))
                .into_iter()
                .map(|f| Item {
                    hash: f.hash.clone(),
                    problem: f.problem(),
                })
                .collect();
            let threshold = self.state.lock().unwrap().config.options.threshold;
            let _ = self.worker.send(Job::Analyze {
                uri: uri.clone(),
                version: 0,
                items,
                threshold,
                cancel: CancelToken::new(),
            });
            // Wait until the worker has done this file.
            let (done_tx, done_rx) = oneshot::channel();
            let _ = self.worker.send(Job::Barrier(done_tx));
            let _ = done_rx.await;
            let diags = match self.diagnostics(&uri) {
                Some((_, diags)) => diags,
                None => {
                    let st = self.state.lock().unwrap();
                    let cache = self.worker.cache.lock().unwrap();
                    build_diagnostics(&Document::new(&text, 0), &cache, &st.config, st.encoding)
                }
            };
            flagged += usize::from(!diags.is_empty());
            self.client
                .publish_diagnostics(uri.clone(), diags, None)
                .await;
            if let Some(p) = &progress {
                p.report_with_message(
                    format!("{}/{} files", i + 1, files.len()),
                    ((i + 1) * 100 / total) as u32,
                    Some(true),
                )
                .await;
            }
        }
        if let Some(p) = progress {
            p.finish_with_message(format!(
                "{flagged} of {checked} files have unclear functions{}",
                if checked < files.len() {
                    " (cancelled)"
                } else {
                    ""
                }
            ))
            .await;
        }
        Ok(Some(
            json!({"files": files.len(), "checked": checked, "flagged": flagged}),
        ))
    }

    fn apply_settings(&self, value: &Value) -> bool {
        // Editors send either our section or `{ "clarifycoder": {...} }`.
        let value = value.get("clarifycoder").unwrap_or(value);
        match Settings::from_json(value) {
            Ok(new) => {
                for key in new.unknown.keys() {
                    tracing::warn!("unknown setting `{key}` ignored");
                }
                let mut st = self.state.lock().unwrap();
                let reload = engine_settings(&new) != engine_settings(&st.settings);
                st.config = Config::from(&new);
                st.settings = new;
                reload
            }
            Err(e) => {
                tracing::warn!("{e}");
                false
            }
        }
    }
}

/// The diagnostics of a document snapshot from the cached results: a pure function of the text,
/// the results and the settings.
fn build_diagnostics(
    doc: &Document,
    cache: &ResultCache,
    config: &Config,
    encoding: Encoding,
) -> Vec<Diagnostic> {
    let text = doc.text();
    let parsed = python::extract(&text);
    let mut out = Vec::new();
    for f in analyzable(&parsed) {
        let Some(outcome) = cache.get(&f.hash) else {
            continue;
        };
        if outcome.p_ask < config.options.threshold {
            continue;
        }
        let Some(questions) = outcome.questions.clone() else {
            continue;
        };
        let doc_span = f.docstring.as_ref().map(|d| d.span).unwrap_or(f.name_span);
        let range = doc.range_of_bytes(doc_span.start.byte, doc_span.end.byte, encoding);
        // A single question points at the phrase it is about, when that can be found.
        let literal = &text[doc_span.start.byte..doc_span.end.byte];
        let range_of = |question: &str| match phrase::find(literal, question) {
            Some((s, e)) => {
                doc.range_of_bytes(doc_span.start.byte + s, doc_span.start.byte + e, encoding)
            }
            None => range,
        };
        let data = json!({"hash": f.hash, "function": f.qualname, "questions": questions, "score": outcome.p_ask});
        let messages: Vec<(String, Range)> = if questions.is_empty() {
            vec![(
                "The model would rather ask than code, but gave no question".into(),
                range,
            )]
        } else if config.per_question || questions.len() == 1 {
            questions.iter().map(|q| (q.clone(), range_of(q))).collect()
        } else {
            vec![(questions.join("\n"), range)]
        };
        for (message, range) in messages {
            out.push(Diagnostic {
                range,
                severity: Some(config.severity),
                code: Some(NumberOrString::String("unclear".into())),
                source: Some(SOURCE.into()),
                message,
                data: Some(data.clone()),
                ..Diagnostic::default()
            });
        }
    }
    out
}

/// The settings that decide the engine or the cached results: all but how diagnostics are shown
/// and when. A change in any of them reloads the engine (and re-analyses from the cache).
fn engine_settings(s: &Settings) -> Settings {
    Settings {
        severity: None,
        debounce_ms: None,
        per_question: None,
        unknown: Default::default(),
        ..s.clone()
    }
}

/// Cancels its token when dropped (when a request's future is dropped on `$/cancelRequest`).
struct CancelOnDrop(CancelToken);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

fn rand_suffix() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

impl LanguageServer for ClarifyServer {
    async fn initialize(&self, params: InitializeParams) -> Result<InitializeResult> {
        let offers_utf8 = params
            .capabilities
            .general
            .as_ref()
            .and_then(|g| g.position_encodings.as_ref())
            .is_some_and(|e| e.contains(&PositionEncodingKind::UTF8));
        let pull = params
            .capabilities
            .text_document
            .as_ref()
            .and_then(|t| t.diagnostic.as_ref())
            .is_some();
        {
            let mut st = self.state.lock().unwrap();
            st.encoding = if offers_utf8 {
                Encoding::Utf8
            } else {
                Encoding::Utf16
            };
            st.pull = pull;
            if let Some(folders) = &params.workspace_folders {
                st.roots = folders
                    .iter()
                    .filter_map(|f| f.uri.to_file_path().map(|p| p.into_owned()))
                    .collect();
            }
        }
        if let Some(options) = &params.initialization_options {
            self.apply_settings(options);
        }
        // Forward worker events to the client.
        if let Some(mut rx) = self.events.lock().unwrap().take() {
            let me = self.handle();
            tokio::spawn(async move {
                while let Some(event) = rx.recv().await {
                    match event {
                        Event::Analyzed { uri, version } => me.publish(uri, version).await,
                        Event::EngineError(m) => {
                            me.client
                                .show_message(MessageType::ERROR, format!("ClarifyCoder: {m}"))
                                .await
                        }
                    }
                }
            });
        }
        Ok(InitializeResult {
            server_info: Some(ServerInfo {
                name: SOURCE.into(),
                version: Some(env!("CARGO_PKG_VERSION").into()),
            }),
            capabilities: ServerCapabilities {
                position_encoding: Some(if offers_utf8 {
                    PositionEncodingKind::UTF8
                } else {
                    PositionEncodingKind::UTF16
                }),
                text_document_sync: Some(TextDocumentSyncCapability::Options(
                    TextDocumentSyncOptions {
                        open_close: Some(true),
                        change: Some(TextDocumentSyncKind::INCREMENTAL),
                        ..TextDocumentSyncOptions::default()
                    },
                )),
                hover_provider: Some(HoverProviderCapability::Simple(true)),
                code_action_provider: Some(CodeActionProviderCapability::Options(
                    CodeActionOptions {
                        code_action_kinds: Some(vec![CodeActionKind::QUICKFIX]),
                        resolve_provider: Some(true),
                        ..CodeActionOptions::default()
                    },
                )),
                execute_command_provider: Some(ExecuteCommandOptions {
                    commands: vec![CMD_CHECK_WORKSPACE.into(), CMD_RESTART.into()],
                    ..ExecuteCommandOptions::default()
                }),
                diagnostic_provider: pull.then(|| {
                    DiagnosticServerCapabilities::Options(DiagnosticOptions {
                        identifier: Some(SOURCE.into()),
                        inter_file_dependencies: false,
                        workspace_diagnostics: false,
                        ..DiagnosticOptions::default()
                    })
                }),
                ..ServerCapabilities::default()
            },
            offset_encoding: None,
        })
    }

    async fn initialized(&self, _: InitializedParams) {
        self.load_engine().await;
    }

    async fn shutdown(&self) -> Result<()> {
        let _ = self.worker.cache.lock().unwrap().save();
        Ok(())
    }

    async fn did_open(&self, params: DidOpenTextDocumentParams) {
        let doc = params.text_document;
        let version = doc.version;
        self.state
            .lock()
            .unwrap()
            .docs
            .insert(doc.uri.clone(), Document::new(&doc.text, version));
        // Opening is not typing: analyse without the debounce delay.
        self.queue_analysis(&doc.uri);
    }

    async fn did_change(&self, params: DidChangeTextDocumentParams) {
        let uri = params.text_document.uri;
        let version = params.text_document.version;
        {
            let mut st = self.state.lock().unwrap();
            let enc = st.encoding;
            let Some(doc) = st.docs.get_mut(&uri) else {
                tracing::warn!(
                    "didChange for a document that is not open: {}",
                    uri.as_str()
                );
                return;
            };
            if version <= doc.version {
                tracing::warn!(
                    "stale didChange (version {version} <= {}) ignored",
                    doc.version
                );
                return;
            }
            let clamped = doc.apply(&params.content_changes, version, enc);
            tracing::debug!("{} is now v{version}", uri.as_str());
            if clamped > 0 {
                tracing::warn!(
                    "{clamped} out-of-range positions clamped in {}",
                    uri.as_str()
                );
            }
            if let Some(c) = st.cancels.get(&uri) {
                c.cancel();
            }
        }
        self.schedule(uri, version);
    }

    async fn did_close(&self, params: DidCloseTextDocumentParams) {
        let uri = params.text_document.uri;
        {
            let mut st = self.state.lock().unwrap();
            st.docs.remove(&uri);
            if let Some(c) = st.cancels.remove(&uri) {
                c.cancel();
            }
        }
        self.client.publish_diagnostics(uri, Vec::new(), None).await;
    }

    async fn did_change_configuration(&self, params: DidChangeConfigurationParams) {
        if self.apply_settings(&params.settings) {
            self.load_engine().await;
        } else {
            // Threshold, severity and such only change how results are shown.
            let uris: Vec<(Uri, i32)> = self
                .state
                .lock()
                .unwrap()
                .docs
                .iter()
                .map(|(u, d)| (u.clone(), d.version))
                .collect();
            for (uri, version) in uris {
                self.queue_analysis(&uri);
                self.publish(uri, version).await;
            }
        }
    }

    async fn diagnostic(
        &self,
        params: DocumentDiagnosticParams,
    ) -> Result<DocumentDiagnosticReportResult> {
        let items = self
            .diagnostics(&params.text_document.uri)
            .map(|(_, d)| d)
            .unwrap_or_default();
        Ok(DocumentDiagnosticReportResult::Report(
            DocumentDiagnosticReport::Full(RelatedFullDocumentDiagnosticReport {
                related_documents: None,
                full_document_diagnostic_report: FullDocumentDiagnosticReport {
                    result_id: None,
                    items,
                },
            }),
        ))
    }

    async fn hover(&self, params: HoverParams) -> Result<Option<Hover>> {
        let p = params.text_document_position_params;
        let Some((_, f, _)) = self.function_at(&p.text_document.uri, p.position) else {
            return Ok(None);
        };
        let threshold = self.state.lock().unwrap().config.options.threshold;
        let outcome = self.worker.cache.lock().unwrap().get(&f.hash).cloned();
        let engine = self.worker.state.lock().unwrap().clone();
        let mut md = format!("**ClarifyCoder** · `{}`\n\n", f.qualname);
        match (&outcome, f.docstring.is_some(), f.ignored) {
            (_, _, true) => md.push_str("Ignored (`# clarify: ignore`)."),
            (_, false, _) => md.push_str("No docstring: nothing to clarify."),
            (None, _, _) => md.push_str(match engine {
                EngineState::Failed(_) => "Not analysed: the model is not available.",
                _ => "Not analysed yet.",
            }),
            (Some(o), _, _) => {
                let verdict = if o.p_ask >= threshold {
                    "would rather **ask**"
                } else {
                    "would **code**"
                };
                md.push_str(&format!(
                    "The model {verdict}: P(ask) = {:.2} (threshold {threshold:.2}).",
                    o.p_ask
                ));
                if let Some(qs) = &o.questions {
                    for q in qs {
                        md.push_str(&format!("\n- {q}"));
                    }
                }
                md.push_str("\n\n_Result cached: unchanged functions are not re-run._");
            }
        }
        if let EngineState::Failed(m) = engine {
            md.push_str(&format!("\n\nEngine: {m}"));
        }
        Ok(Some(Hover {
            contents: HoverContents::Markup(MarkupContent {
                kind: MarkupKind::Markdown,
                value: md,
            }),
            range: None,
        }))
    }

    async fn code_action(&self, params: CodeActionParams) -> Result<Option<CodeActionResponse>> {
        let uri = params.text_document.uri;
        let Some((text, f, enc)) = self.function_at(&uri, params.range.start) else {
            return Ok(None);
        };
        let outcome = self.worker.cache.lock().unwrap().get(&f.hash).cloned();
        let threshold = self.state.lock().unwrap().config.options.threshold;
        let mut actions = Vec::new();
        let flagged = outcome.as_ref().is_some_and(|o| o.p_ask >= threshold);
        let diagnostics: Vec<Diagnostic> = params
            .context
            .diagnostics
            .iter()
            .filter(|d| d.source.as_deref() == Some(SOURCE))
            .cloned()
            .collect();
        if flagged {
            let questions = outcome
                .as_ref()
                .and_then(|o| o.questions.clone())
                .unwrap_or_default();
            if let Ok(edit) = edits::answer(&text, &f, &questions) {
                actions.push(CodeAction {
                    title: "Answer the model's questions in the docstring".into(),
                    kind: Some(CodeActionKind::QUICKFIX),
                    diagnostics: Some(diagnostics.clone()),
                    edit: Some(self.workspace_edit(&uri, &text, &edit, enc)),
                    is_preferred: Some(true),
                    ..CodeAction::default()
                });
            }
        }
        if f.docstring.is_some() {
            actions.push(CodeAction {
                title: "Generate the implementation".into(),
                kind: Some(CodeActionKind::QUICKFIX),
                data: Some(json!({"action": "implement", "uri": uri.as_str(), "hash": f.hash})),
                ..CodeAction::default()
            });
        }
        if let Ok(edit) = edits::ignore_function(&text, &f) {
            actions.push(CodeAction {
                title: format!("Ignore `{}` (# clarify: ignore)", f.qualname),
                kind: Some(CodeActionKind::QUICKFIX),
                diagnostics: Some(diagnostics.clone()),
                edit: Some(self.workspace_edit(&uri, &text, &edit, enc)),
                ..CodeAction::default()
            });
        }
        actions.push(CodeAction {
            title: "Ignore this file (# clarify: ignore-file)".into(),
            kind: Some(CodeActionKind::QUICKFIX),
            diagnostics: Some(diagnostics),
            edit: Some(self.workspace_edit(&uri, &text, &edits::ignore_file(&text), enc)),
            ..CodeAction::default()
        });
        Ok(Some(
            actions
                .into_iter()
                .map(CodeActionOrCommand::CodeAction)
                .collect(),
        ))
    }

    async fn code_action_resolve(&self, mut action: CodeAction) -> Result<CodeAction> {
        let Some(data) = action.data.clone() else {
            return Ok(action);
        };
        if data["action"] != "implement" {
            return Ok(action);
        }
        let uri: Uri = data["uri"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| lsp_error("code action data has no valid uri"))?;
        let hash = data["hash"].as_str().unwrap_or_default().to_string();
        let (text, f, enc) = {
            let st = self.state.lock().unwrap();
            let doc = st
                .docs
                .get(&uri)
                .ok_or_else(|| lsp_error("the document is no longer open"))?;
            let text = doc.text();
            let f = python::extract(&text)
                .functions
                .into_iter()
                .find(|f| f.hash == hash)
                .ok_or_else(|| {
                    lsp_error("the function changed since the action was offered; try again")
                })?;
            (text, f, st.encoding)
        };
        let token = ProgressToken::String(format!("clarifycoder/implement/{}", rand_suffix()));
        let progress = match self.client.create_work_done_progress(token.clone()).await {
            Ok(()) => Some(
                self.client
                    .progress(token, format!("ClarifyCoder: writing {}", f.qualname))
                    .begin()
                    .await,
            ),
            Err(_) => None,
        };
        let (tx, rx) = oneshot::channel();
        // `$/cancelRequest` drops this future; the guard then stops the generation.
        let guard = CancelOnDrop(CancelToken::new());
        self.worker
            .send(Job::Implement {
                problem: f.problem(),
                cancel: guard.0.clone(),
                reply: tx,
            })
            .map_err(lsp_error)?;
        let code = rx
            .await
            .map_err(|_| lsp_error("the analysis thread stopped"))?;
        if let Some(p) = progress {
            p.finish().await;
        }
        let code = code.map_err(lsp_error)?;
        let edit = edits::implementation(&text, &f, &code).map_err(lsp_error)?;
        action.edit = Some(self.workspace_edit(&uri, &text, &edit, enc));
        Ok(action)
    }

    async fn execute_command(&self, params: ExecuteCommandParams) -> Result<Option<LSPAny>> {
        match params.command.as_str() {
            CMD_CHECK_WORKSPACE => self.check_workspace().await,
            CMD_RESTART => {
                self.load_engine().await;
                let state = self.worker.state.lock().unwrap().clone();
                Ok(Some(
                    json!({"ready": matches!(state, EngineState::Ready(_))}),
                ))
            }
            CMD_STATS => {
                let (done_tx, done_rx) = oneshot::channel();
                let _ = self.worker.send(Job::Barrier(done_tx));
                let _ = done_rx.await;
                Ok(Some(json!({
                    "decided": self.worker.decided.load(Ordering::Relaxed),
                    "cancelled": self.worker.cancelled.load(Ordering::Relaxed),
                })))
            }
            other => Err(lsp_error(format!("unknown command {other}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A regression: the reload check was a hand-written field list that left out `ctx_size`,
    /// `api_key_env` and `max_questions`, so changing them did nothing until a restart.
    #[test]
    fn every_engine_setting_reloads_and_presentation_does_not() {
        let base = Settings::default();
        let reloads = |changed: Settings| engine_settings(&changed) != engine_settings(&base);
        assert!(reloads(Settings {
            ctx_size: Some(8192),
            ..Settings::default()
        }));
        assert!(reloads(Settings {
            api_key_env: Some("KEY".into()),
            ..Settings::default()
        }));
        assert!(reloads(Settings {
            max_questions: Some(1),
            ..Settings::default()
        }));
        assert!(reloads(Settings {
            model: Some("gemma3-270m".into()),
            ..Settings::default()
        }));
        assert!(!reloads(Settings {
            severity: Some("hint".into()),
            debounce_ms: Some(10),
            per_question: Some(true),
            ..Settings::default()
        }));
    }
}
