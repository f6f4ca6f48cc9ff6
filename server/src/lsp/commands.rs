//! `workspace/executeCommand`: `clarifycoder.server.checkWorkspace` (every Python file under the
//! workspace folders, with cancellable progress), `clarifycoder.server.restartEngine` and the
//! unadvertised `clarifycoder.stats` (and the first two's old ids, without `server.`).

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};

use clarifycoder_core::engine::CancelToken;
use serde_json::{json, Value};
use tokio::sync::oneshot;
use tower_lsp_server::jsonrpc::Result;

use super::diagnostics::build_diagnostics;
use super::document::Document;
use super::types::*;
use super::worker::{EngineState, Item, Job};
use super::{
    lsp_error, progress, ClarifyServer, State, CMD_CHECK_WORKSPACE, CMD_CHECK_WORKSPACE_OLD,
    CMD_RESTART, CMD_RESTART_OLD, CMD_STATS,
};

impl ClarifyServer {
    /// `workspace/executeCommand`.
    pub(super) async fn on_execute_command(
        &self,
        params: ExecuteCommandParams,
    ) -> Result<Option<LSPAny>> {
        match params.command.as_str() {
            CMD_CHECK_WORKSPACE | CMD_CHECK_WORKSPACE_OLD => self.check_workspace().await,
            CMD_RESTART | CMD_RESTART_OLD => {
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
                    "inference": *self.worker.inference.lock().unwrap(),
                })))
            }
            other => Err(lsp_error(format!("unknown command {other}"))),
        }
    }

    /// Checks every Python file under the workspace folders, publishing each file's diagnostics
    /// as it goes; the user can cancel it from the progress.
    async fn check_workspace(&self) -> Result<Option<Value>> {
        let roots = self.state.lock().unwrap().roots.clone();
        let mut walk_errors = Vec::new();
        // A virtual environment under a workspace folder is skipped there too.
        let files = crate::check::collect_files(&roots, &mut walk_errors, &mut Vec::new());
        for e in walk_errors {
            tracing::warn!("workspace check: {e}");
        }
        let token_name = progress::token("check");
        // Known before the progress begins, so that a cancel from it always finds the check.
        let check = CheckGuard::register(&self.state, &token_name);
        let progress = progress::begin(
            &self.client,
            &token_name,
            "ClarifyCoder: checking workspace",
            |p| {
                p.with_cancel_button()
                    .with_percentage(0)
                    .with_message(format!("0/{} files", files.len()))
            },
        )
        .await;
        let total = files.len().max(1);
        // Every file found, checked or not (a cancelled check stops early), and those published.
        let found: HashSet<Uri> = files.iter().filter_map(Uri::from_file_path).collect();
        let mut published = HashSet::new();
        let mut flagged = 0;
        // Files done, those skipped (unreadable, gone) included.
        let mut checked = 0;
        // A pull client is told once, at the end, to pull the open documents' diagnostics again.
        let mut open_pulled = false;
        for (i, file) in files.iter().enumerate() {
            if check.cancel.is_cancelled() {
                break;
            }
            checked = i + 1;
            let Some(uri) = Uri::from_file_path(file) else {
                continue;
            };
            // An open document is checked as the editor has it, not as it is on disk. Files
            // that are not open stay out of the document store: the user may open one while it
            // is checked, and then it is theirs.
            let (open, pull) = {
                let st = self.state.lock().unwrap();
                (st.docs.get(&uri).cloned(), st.pull)
            };
            let is_open = open.is_some();
            let Some(doc) = open.or_else(|| {
                let text = std::fs::read_to_string(file).ok()?;
                Some(Document::new(&text, 0))
            }) else {
                continue;
            };
            let read = doc.functions();
            let items: Vec<Item> = read.iter().map(|(f, found)| Item::of(f, found)).collect();
            let (threshold, examples) = {
                let st = self.state.lock().unwrap();
                (
                    st.config.options.threshold,
                    st.config.examples_run(&uri, read.text.clone()),
                )
            };
            self.worker.run_examples(uri.clone(), 0, examples);
            let _ = self.worker.send(Job::Analyze {
                uri: uri.clone(),
                version: 0,
                items,
                threshold,
                cancel: check.cancel.clone(),
            });
            // Wait until the worker has done this file.
            let (done_tx, done_rx) = oneshot::channel();
            let _ = self.worker.send(Job::Barrier(done_tx));
            let _ = done_rx.await;
            // Cancelled mid-file: its results are not all there, and not published.
            if check.cancel.is_cancelled() {
                checked = i;
                break;
            }
            let diags = match self.diagnostics(&uri) {
                Some((_, diags)) => diags,
                None => {
                    let st = self.state.lock().unwrap();
                    let verdicts = self.worker.examples.lock().unwrap().remove(&uri);
                    let cache = self.worker.cache.lock().unwrap();
                    build_diagnostics(
                        &doc,
                        &cache,
                        &verdicts.unwrap_or_default(),
                        &st.config,
                        st.encoding,
                        None,
                    )
                }
            };
            flagged += usize::from(!diags.is_empty());
            if is_open && pull {
                // A pull client keeps pushed diagnostics apart from pulled ones: an open
                // document's would show twice, and the pushed copy would never move.
                open_pulled = true;
            } else {
                if pull {
                    // Cleared when the file is opened, where pulled diagnostics take over.
                    self.state.lock().unwrap().pushed.insert(uri.clone());
                }
                self.client
                    .publish_diagnostics(uri.clone(), diags, None)
                    .await;
                published.insert(uri.clone());
            }
            if let Some(p) = &progress {
                p.report_with_message(
                    format!("{}/{} files", i + 1, files.len()),
                    ((i + 1) * 100 / total) as u32,
                    Some(true),
                )
                .await;
            }
        }
        // What the last check published for a file it no longer finds stays until cleared; an
        // open document's diagnostics are its own (closing it clears them).
        let gone: Vec<Uri> = {
            let mut st = self.state.lock().unwrap();
            let before = std::mem::take(&mut st.checked);
            let (kept, gone): (HashSet<Uri>, HashSet<Uri>) =
                before.into_iter().partition(|u| found.contains(u));
            st.checked = kept.into_iter().chain(published).collect();
            let gone: Vec<Uri> = gone
                .into_iter()
                .filter(|u| !st.docs.contains_key(u))
                .collect();
            for u in &gone {
                st.pushed.remove(u);
            }
            gone
        };
        for uri in gone {
            self.client.publish_diagnostics(uri, Vec::new(), None).await;
        }
        if open_pulled {
            let _ = self.client.workspace_diagnostic_refresh().await;
        }
        if let Some(p) = progress {
            p.finish_with_message(format!(
                "{flagged} of {checked} files have unclear functions{}",
                if check.cancel.is_cancelled() {
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
}

/// A running workspace check's cancel token, known to the server under the check's progress
/// token until the check ends. Dropped early (the request cancelled, the session over), it
/// cancels the check's file in flight.
struct CheckGuard {
    state: Arc<Mutex<State>>,
    name: String,
    cancel: CancelToken,
}

impl CheckGuard {
    fn register(state: &Arc<Mutex<State>>, name: &str) -> CheckGuard {
        let cancel = CancelToken::new();
        state
            .lock()
            .unwrap()
            .checks
            .insert(name.to_string(), cancel.clone());
        CheckGuard {
            state: state.clone(),
            name: name.to_string(),
            cancel,
        }
    }
}

impl Drop for CheckGuard {
    fn drop(&mut self) {
        self.cancel.cancel();
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .checks
            .remove(&self.name);
    }
}
