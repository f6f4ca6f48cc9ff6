//! `textDocument/hover`: the model's verdict on the function under the cursor, its questions,
//! and the engine's state when it failed.

use tower_lsp_server::jsonrpc::Result;

use super::types::*;
use super::worker::EngineState;
use super::ClarifyServer;
use clarifycoder_core::examples::Verdict;
use clarifycoder_core::{analysis, consistency};

impl ClarifyServer {
    /// `textDocument/hover`.
    pub(super) async fn on_hover(&self, params: HoverParams) -> Result<Option<Hover>> {
        let p = params.text_document_position_params;
        let Some((_, parsed, f, _)) = self.function_at(&p.text_document.uri, p.position) else {
            return Ok(None);
        };
        // Only on the function's name and its docstring, and only for a function with one: a
        // hover on its parameters or annotations is another server's (an editor that shows one
        // server's hover would show ours instead of the type checker's).
        let byte = {
            let st = self.state.lock().unwrap();
            let Some(doc) = st.docs.get(&p.text_document.uri) else {
                return Ok(None);
            };
            doc.byte_of_position(p.position, st.encoding)
        };
        let on = |s: &clarifycoder_core::python::Span| s.start.byte <= byte && byte <= s.end.byte;
        let on_docstring = f.docstring.as_ref().is_some_and(|d| on(&d.span));
        if !(on_docstring || (f.docstring.is_some() && on(&f.name_span))) {
            return Ok(None);
        }
        let options = self.state.lock().unwrap().config.options;
        let threshold = options.threshold;
        let uri = &p.text_document.uri;
        let outcome = self.worker.outcome(uri, &f, options.max_questions);
        let examples = self.worker.verdict(uri, &f.hash);
        let engine = self.worker.state.lock().unwrap().clone();
        let mut md = format!("**ClarifyCoder** · `{}`\n\n", f.qualname);
        // A pragma added after the analysis leaves its result cached (the function's hash does
        // not cover it): the pragma decides.
        match (
            &outcome,
            f.docstring.is_some(),
            analysis::ignored(&parsed, &f),
        ) {
            (_, _, true) if parsed.ignore_file => {
                md.push_str("Ignored (`# clarify: ignore-file`).")
            }
            (_, _, true) => md.push_str("Ignored (`# clarify: ignore`)."),
            (None, _, _) => {
                let why = self
                    .worker
                    .not_analysed
                    .lock()
                    .unwrap()
                    .get(&f.hash)
                    .cloned();
                match (why, &engine) {
                    (_, EngineState::Failed(_)) => {
                        md.push_str("Not analysed: the model is not available.")
                    }
                    (Some(why), _) => md.push_str(&format!("Not analysed: {why}.")),
                    (None, _) => md.push_str("Not analysed yet."),
                }
            }
            (Some(o), _, _) => {
                let verdict = if o.p_ask >= threshold {
                    "would rather **ask**"
                } else {
                    "would **code**"
                };
                let docstring = !consistency::contradictions(&f.problem()).is_empty();
                let returns = !consistency::returned_contradictions(&f).is_empty();
                match &examples {
                    Some(Verdict::Disagree(_)) => md.push_str(
                        "Its docstring examples were run: the code disagrees with an example.",
                    ),
                    _ if docstring => md.push_str("Its docstring contradicts its signature."),
                    _ if returns => {
                        md.push_str("Its code returns a value that its return annotation excludes.")
                    }
                    Some(Verdict::Agree { examples }) => md.push_str(&format!(
                        "The model {verdict}: score {:.2} (threshold {threshold:.2}), lowered \
                         because its {examples} docstring example(s) ran and agree with the code.",
                        o.p_ask
                    )),
                    None => md.push_str(&format!(
                        "The model {verdict}: P(ask) = {:.2} (threshold {threshold:.2}).",
                        o.p_ask
                    )),
                }
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
}
