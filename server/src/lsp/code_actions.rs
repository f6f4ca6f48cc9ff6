//! `textDocument/codeAction` and `codeAction/resolve`: answer the questions, ignore the function
//! or the file (edits computed at once), and generate the implementation (computed on resolve, on
//! the worker, with progress; `$/cancelRequest` stops it).

use std::collections::HashMap;

use clarifycoder_core::analysis;
use clarifycoder_core::engine::CancelToken;
use clarifycoder_core::python::{self, Function, ParsedFile};
use serde_json::json;
use tokio::sync::oneshot;
use tower_lsp_server::jsonrpc::Result;

use super::document::{Document, Encoding};
use super::types::*;
use super::worker::{EngineState, Job};
use super::{edits, lsp_error, progress, ClarifyServer, SOURCE};

impl ClarifyServer {
    /// The function whose `def` line or docstring contains a position, with its file (whose
    /// pragmas [`analysis::ignored`] reads).
    pub(super) fn function_at(
        &self,
        uri: &Uri,
        pos: Position,
    ) -> Option<(String, ParsedFile, Function, Encoding)> {
        let st = self.state.lock().unwrap();
        let doc = st.docs.get(uri)?;
        let byte = doc.byte_of_position(pos, st.encoding);
        let text = doc.text();
        let parsed = python::extract(&text);
        let f = parsed
            .functions
            .iter()
            .rfind(|f| {
                let doc_end = f
                    .docstring
                    .as_ref()
                    .map(|d| d.span.end.byte)
                    .unwrap_or(f.header_span.end.byte);
                f.decorated_span.start.byte <= byte && byte <= doc_end
            })?
            .clone();
        Some((text, parsed, f, st.encoding))
    }

    pub(super) fn workspace_edit(
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

    /// `textDocument/codeAction`: the actions for the function at the start of the range.
    pub(super) async fn on_code_action(
        &self,
        params: CodeActionParams,
    ) -> Result<Option<CodeActionResponse>> {
        let uri = params.text_document.uri;
        let Some((text, parsed, f, enc)) = self.function_at(&uri, params.range.start) else {
            return Ok(None);
        };
        // A function its pragma (or its file's) already skips has nothing to answer or ignore: its
        // cached result outlives the pragma, which the function's hash does not cover.
        let ignored = analysis::ignored(&parsed, &f);
        let options = self.state.lock().unwrap().config.options;
        let threshold = options.threshold;
        let outcome = self.worker.outcome(&uri, &f, options.max_questions);
        let mut actions = Vec::new();
        let flagged = outcome.as_ref().is_some_and(|o| o.p_ask >= threshold);
        let diagnostics: Vec<Diagnostic> = params
            .context
            .diagnostics
            .iter()
            .filter(|d| d.source.as_deref() == Some(SOURCE))
            .cloned()
            .collect();
        // A contradiction found without the model (the docstring against the signature or the
        // code, an example the code disagrees with) is fixed in the code or the docstring; an
        // answer below the docstring would leave it standing.
        let certain = analysis::certain_given(
            &f.qualname,
            &analysis::check_questions(&f),
            self.worker.verdict(&uri, &f.hash).as_ref(),
            1,
        )
        .is_some();
        // Only with questions to answer: a flagged function may have none (the model gave none,
        // or they are still being generated), and the edit would add an empty heading.
        let questions = outcome
            .as_ref()
            .and_then(|o| o.questions.clone())
            .unwrap_or_default();
        if flagged && !certain && !ignored && !questions.is_empty() {
            let title = "Answer the model's questions in the docstring";
            match edits::answer(&text, &f, &questions) {
                Ok(edit) => actions.push(CodeAction {
                    title: title.into(),
                    kind: Some(CodeActionKind::QUICKFIX),
                    diagnostics: Some(diagnostics.clone()),
                    edit: Some(self.workspace_edit(&uri, &text, &edit, enc)),
                    is_preferred: Some(true),
                    ..CodeAction::default()
                }),
                // A docstring the edit cannot take (in parentheses, say): the client that can
                // show why the action is not there is told.
                Err(reason) if self.state.lock().unwrap().disabled_actions => {
                    actions.push(CodeAction {
                        title: title.into(),
                        kind: Some(CodeActionKind::QUICKFIX),
                        diagnostics: Some(diagnostics.clone()),
                        disabled: Some(CodeActionDisabled { reason }),
                        ..CodeAction::default()
                    })
                }
                Err(_) => {}
            }
        }
        // Only for a body still to be written, and only with a model to write it: the body the
        // user wrote is never replaced.
        let ready = matches!(*self.worker.state.lock().unwrap(), EngineState::Ready(_));
        if ready && f.docstring.is_some() && edits::is_stub(&text, &f) {
            actions.push(CodeAction {
                title: "Generate the implementation".into(),
                kind: Some(CodeActionKind::QUICKFIX),
                data: Some(json!({"action": "implement", "uri": uri.as_str(), "hash": f.hash})),
                ..CodeAction::default()
            });
        }
        if let Some(edit) = (!ignored)
            .then(|| edits::ignore_function(&text, &f).ok())
            .flatten()
        {
            actions.push(CodeAction {
                title: format!("Ignore `{}` (# clarify: ignore)", f.qualname),
                kind: Some(CodeActionKind::QUICKFIX),
                diagnostics: Some(diagnostics.clone()),
                edit: Some(self.workspace_edit(&uri, &text, &edit, enc)),
                ..CodeAction::default()
            });
        }
        if !parsed.ignore_file {
            actions.push(CodeAction {
                title: "Ignore this file (# clarify: ignore-file)".into(),
                kind: Some(CodeActionKind::QUICKFIX),
                diagnostics: Some(diagnostics),
                edit: Some(self.workspace_edit(&uri, &text, &edits::ignore_file(&text), enc)),
                ..CodeAction::default()
            });
        }
        Ok(Some(
            actions
                .into_iter()
                .map(CodeActionOrCommand::CodeAction)
                .collect(),
        ))
    }

    /// `codeAction/resolve`: generates the implementation for "Generate the implementation".
    pub(super) async fn on_code_action_resolve(
        &self,
        mut action: CodeAction,
    ) -> Result<CodeAction> {
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
        let progress = progress::begin(
            &self.client,
            &progress::token("implement"),
            format!("ClarifyCoder: writing {}", f.qualname),
            |p| p,
        )
        .await;
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
}

/// Cancels its token when dropped (when a request's future is dropped on `$/cancelRequest`).
struct CancelOnDrop(CancelToken);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.cancel();
    }
}
