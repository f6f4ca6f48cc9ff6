//! `textDocument/didOpen`, `didChange` and `didClose`: each updates the document store under the
//! lock before any `.await`, so notifications cannot reorder.

use super::document::Document;
use super::types::*;
use super::ClarifyServer;

impl ClarifyServer {
    /// `textDocument/didOpen`: analysed at once if it is Python; a document of another language
    /// is left alone until it closes.
    pub(super) async fn on_did_open(&self, params: DidOpenTextDocumentParams) {
        let doc = params.text_document;
        let version = doc.version;
        if !is_python(&doc.language_id, &doc.uri) {
            tracing::debug!(
                "{} is {:?}, not Python: not analysed",
                doc.uri.as_str(),
                doc.language_id
            );
            let was_python = {
                let mut st = self.state.lock().unwrap();
                st.other_language.insert(doc.uri.clone());
                st.docs.remove(&doc.uri).is_some()
            };
            // Opened again under another language without a close: as if it had closed.
            if was_python {
                self.forget(doc.uri).await;
            }
            return;
        }
        let pushed = {
            let mut st = self.state.lock().unwrap();
            st.other_language.remove(&doc.uri);
            st.docs
                .insert(doc.uri.clone(), Document::new(&doc.text, version));
            st.pushed.remove(&doc.uri)
        };
        if pushed {
            // A pull client shows pushed diagnostics beside pulled ones and never moves them: the
            // workspace check's copy goes, the pulled ones stay.
            self.client
                .publish_diagnostics(doc.uri.clone(), Vec::new(), None)
                .await;
        }
        // Opening is not typing: analyse without the debounce delay.
        self.queue_analysis(&doc.uri);
    }

    /// `textDocument/didChange`: applied in order; analysed after the debounce.
    pub(super) async fn on_did_change(&self, params: DidChangeTextDocumentParams) {
        let uri = params.text_document.uri;
        let version = params.text_document.version;
        {
            let mut st = self.state.lock().unwrap();
            let enc = st.encoding;
            if st.other_language.contains(&uri) {
                return;
            }
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

    /// `textDocument/didClose`: its diagnostics are cleared.
    pub(super) async fn on_did_close(&self, params: DidCloseTextDocumentParams) {
        let uri = params.text_document.uri;
        {
            let mut st = self.state.lock().unwrap();
            st.other_language.remove(&uri);
            st.docs.remove(&uri);
        }
        self.forget(uri).await;
    }

    /// Drops what the server keeps for a document that is no longer open, and clears its
    /// diagnostics (a workspace check may have pushed some even for another language's document).
    async fn forget(&self, uri: Uri) {
        {
            let mut st = self.state.lock().unwrap();
            st.shown.remove(&uri);
            st.pushed.remove(&uri);
            if let Some(c) = st.cancels.remove(&uri) {
                c.cancel();
            }
        }
        self.client.publish_diagnostics(uri, Vec::new(), None).await;
    }
}

/// Whether a document is Python: its language id says so (VS Code's and Neovim's `python`), or a
/// client that sends no id opened a `.py` or `.pyi` file.
fn is_python(language_id: &str, uri: &Uri) -> bool {
    // Neovim sends the filetype, which may be compound (`python.django`).
    let language = language_id.to_ascii_lowercase();
    if language == "python" || language.starts_with("python.") {
        return true;
    }
    let path = uri.path().as_str();
    language_id.is_empty() && (path.ends_with(".py") || path.ends_with(".pyi"))
}
