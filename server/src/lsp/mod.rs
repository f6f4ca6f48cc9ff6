//! `clarifycoder serve`: the language server.
//!
//! Handlers that change documents (`didOpen`, `didChange`, `didClose`) update the store under a
//! lock before any `.await`, so notifications cannot reorder. Analysis runs on the worker thread
//! (see `worker.rs`) after a debounce; its results come back as events and are published only
//! for the document version they were computed for.
//!
//! This file holds the server's state and wiring (`initialize`, the worker's events, the
//! transport); each request or notification family has its own file, and the
//! `LanguageServer` impl below only delegates to them: `text_sync.rs` (the document store's
//! notifications), `diagnostics.rs`, `hover.rs`, `code_actions.rs`, `commands.rs`,
//! `configuration.rs`, with `progress.rs` for work-done progress.

mod code_actions;
mod commands;
mod configuration;
mod diagnostics;
mod document;
pub mod edits;
mod hover;
mod phrase;
mod progress;
mod text_sync;
mod transport;
mod types;
mod worker;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clarifycoder_core::engine::CancelToken;
use clarifycoder_core::settings::Settings;
use serde_json::Value;
use tokio::sync::mpsc;
use tower_lsp_server::jsonrpc::{Error as RpcError, Result};
use tower_lsp_server::{Client, LanguageServer, LspService, Server};

use self::configuration::Config;
use self::document::{Document, Encoding};
use self::types::*;
use self::worker::{Event, Worker};
use clarifycoder_core::analysis::ResultCache;

const SOURCE: &str = "clarifycoder";
// The server's commands have ids of their own: vscode-languageclient registers every advertised
// command with VS Code, which refuses an id the extension registered already (its
// `clarifycoder.checkWorkspace`), and then the whole client fails to start.
const CMD_CHECK_WORKSPACE: &str = "clarifycoder.server.checkWorkspace";
const CMD_RESTART: &str = "clarifycoder.server.restartEngine";
/// The commands' first ids, still accepted (not advertised) for keymaps and scripts that use them.
const CMD_CHECK_WORKSPACE_OLD: &str = "clarifycoder.checkWorkspace";
const CMD_RESTART_OLD: &str = "clarifycoder.restartEngine";
/// Not advertised: counters for tests and benchmarks.
const CMD_STATS: &str = "clarifycoder.stats";

/// `clarifycoder/status`: the engine's state, for editors' status bars.
enum StatusNotification {}

impl notification::Notification for StatusNotification {
    type Params = Value;
    const METHOD: &'static str = "clarifycoder/status";
}

struct State {
    docs: HashMap<Uri, Document>,
    /// Open documents of another language (a client may send any): never analysed.
    other_language: std::collections::HashSet<Uri>,
    /// Cancels in-flight analysis of a document when it changes.
    cancels: HashMap<Uri, CancelToken>,
    encoding: Encoding,
    /// The editor's settings: `initializationOptions`, with what `didChangeConfiguration` sent
    /// over them.
    settings: Settings,
    /// The settings of `initializationOptions` alone.
    initial_settings: Settings,
    /// The project's configuration file (read when the engine loads): what the editor leaves
    /// unset.
    file_settings: Settings,
    /// What is in force: the editor's settings over the file's, over the defaults.
    config: Config,
    pull: bool,
    /// The client offers to install a missing known model itself (the experimental client
    /// capability `clarifycoderInstallModel`, which both editors set): the server's own
    /// message about it would be a second notification.
    client_installs: bool,
    /// The client shows a code action that cannot be applied, with the reason (LSP 3.16).
    disabled_actions: bool,
    roots: Vec<PathBuf>,
    /// Per document, the result (function hash) each function showed at the last analysed
    /// version, by qualified name and rank among functions of that name: an edited function
    /// keeps showing it, at its new place, until its own result comes.
    shown: HashMap<Uri, HashMap<String, String>>,
    /// Pull clients: files whose diagnostics a workspace check pushed while they were closed.
    pushed: std::collections::HashSet<Uri>,
    /// The files the last workspace check published diagnostics to: the next one clears those
    /// it no longer finds (deleted, renamed), which nothing else would.
    checked: std::collections::HashSet<Uri>,
    /// The workspace checks running, by progress token: cancelling one (from its progress, a
    /// reload, the session's end) stops its file in flight and the check.
    checks: HashMap<String, CancelToken>,
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
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| {
        anyhow::anyhow!(
            "cannot listen on '{addr}' ({e}); give an address and port such as 127.0.0.1:9257"
        )
    })?;
    eprintln!("clarifycoder: listening on {}", listener.local_addr()?);
    loop {
        let (stream, _) = listener.accept().await?;
        let (read, write) = tokio::io::split(stream);
        serve_guarded(read, write).await;
    }
}

/// One session over a byte stream, behind the transport guard (malformed frames answered, not
/// fatal). Returns after `exit` (or the end of the input) once the last responses are out and
/// the session's worker threads have ended, its model freed.
async fn serve_guarded<R, W>(input: R, output: W)
where
    R: tokio::io::AsyncRead + Unpin + Send + 'static,
    W: tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let guarded = transport::guard(input, output);
    let (service, socket) = service();
    let session = service.inner().handle();
    {
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
        // Dropped here: the requests still in flight (a code generation, when the connection
        // just closed) are dropped with it, which cancels their work before the wait below.
    }
    // What the server wrote last still goes out (the pump ends when the server's output closes).
    let _ = tokio::time::timeout(Duration::from_millis(300), guarded.pump).await;
    // A listening server's next session must not find this one's model still loaded. A job that
    // cannot be cancelled (a load, a generation) is waited for a few seconds; after that the
    // threads end on their own once it is done.
    if tokio::time::timeout(Duration::from_secs(5), session.end())
        .await
        .is_err()
    {
        tracing::warn!("the session's model is still busy; it is freed when its job ends");
    }
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
                other_language: Default::default(),
                cancels: HashMap::new(),
                encoding: Encoding::Utf16,
                settings: Settings::default(),
                initial_settings: Settings::default(),
                file_settings: Settings::default(),
                config: Config::from(&Settings::default()),
                pull: false,
                client_installs: false,
                disabled_actions: false,
                roots: Vec::new(),
                shown: HashMap::new(),
                pushed: Default::default(),
                checked: Default::default(),
                checks: HashMap::new(),
            })),
            worker,
            events: Mutex::new(Some(rx)),
        }
    }

    /// Ends the session's work: cancels the analyses in flight and ends the worker's threads,
    /// which saves the result cache and frees the model.
    async fn end(&self) {
        {
            let st = self.state.lock().unwrap();
            for cancel in st.cancels.values().chain(st.checks.values()) {
                cancel.cancel();
            }
        }
        self.worker.stop().await;
    }

    fn handle(&self) -> ClarifyServer {
        ClarifyServer {
            client: self.client.clone(),
            state: self.state.clone(),
            worker: self.worker.clone(),
            events: Mutex::new(None),
        }
    }

    /// `initialize`: the position encoding, push or pull diagnostics, the workspace folders and
    /// the settings from the client's parameters; starts forwarding the worker's events.
    async fn on_initialize(&self, params: InitializeParams) -> Result<InitializeResult> {
        let offers_utf8 = params
            .capabilities
            .general
            .as_ref()
            .and_then(|g| g.position_encodings.as_ref())
            .is_some_and(|e| e.contains(&PositionEncodingKind::UTF8));
        // Pull diagnostics only with a client that can be told to pull again: results come
        // seconds after a change, and a client that cannot be told (Neovim 0.10 and 0.11 pull
        // but do not handle `workspace/diagnostic/refresh`) would never see them.
        let pull = params
            .capabilities
            .text_document
            .as_ref()
            .and_then(|t| t.diagnostic.as_ref())
            .is_some()
            && params
                .capabilities
                .workspace
                .as_ref()
                .and_then(|w| w.diagnostics.as_ref())
                .and_then(|d| d.refresh_support)
                .unwrap_or(false);
        {
            let mut st = self.state.lock().unwrap();
            st.encoding = if offers_utf8 {
                Encoding::Utf8
            } else {
                Encoding::Utf16
            };
            st.pull = pull;
            st.disabled_actions = params
                .capabilities
                .text_document
                .as_ref()
                .and_then(|t| t.code_action.as_ref())
                .and_then(|c| c.disabled_support)
                .unwrap_or(false);
            st.client_installs = params
                .capabilities
                .experimental
                .as_ref()
                .and_then(|e| e.get("clarifycoderInstallModel"))
                .and_then(Value::as_bool)
                .unwrap_or(false);
            if let Some(folders) = &params.workspace_folders {
                st.roots = folders
                    .iter()
                    .filter_map(|f| f.uri.to_file_path().map(|p| p.into_owned()))
                    .collect();
            }
            // A client without workspace folders (or an older one) may still name the root.
            if st.roots.is_empty() {
                #[allow(deprecated)]
                let root = params.root_uri.as_ref();
                st.roots
                    .extend(root.and_then(|u| u.to_file_path().map(|p| p.into_owned())));
            }
        }
        if let Some(options) = &params.initialization_options {
            self.apply_settings(options, true).await;
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
}

impl LanguageServer for ClarifyServer {
    async fn initialize(&self, params: InitializeParams) -> Result<InitializeResult> {
        self.on_initialize(params).await
    }

    async fn initialized(&self, _: InitializedParams) {
        self.load_engine().await;
    }

    async fn shutdown(&self) -> Result<()> {
        let _ = self.worker.cache.lock().unwrap().save();
        Ok(())
    }

    async fn did_open(&self, params: DidOpenTextDocumentParams) {
        self.on_did_open(params).await
    }

    async fn did_change(&self, params: DidChangeTextDocumentParams) {
        self.on_did_change(params).await
    }

    async fn did_close(&self, params: DidCloseTextDocumentParams) {
        self.on_did_close(params).await
    }

    async fn did_change_configuration(&self, params: DidChangeConfigurationParams) {
        self.on_did_change_configuration(params).await
    }

    async fn diagnostic(
        &self,
        params: DocumentDiagnosticParams,
    ) -> Result<DocumentDiagnosticReportResult> {
        self.on_diagnostic(params).await
    }

    async fn hover(&self, params: HoverParams) -> Result<Option<Hover>> {
        self.on_hover(params).await
    }

    async fn code_action(&self, params: CodeActionParams) -> Result<Option<CodeActionResponse>> {
        self.on_code_action(params).await
    }

    async fn code_action_resolve(&self, action: CodeAction) -> Result<CodeAction> {
        self.on_code_action_resolve(action).await
    }

    async fn execute_command(&self, params: ExecuteCommandParams) -> Result<Option<LSPAny>> {
        self.on_execute_command(params).await
    }
}
