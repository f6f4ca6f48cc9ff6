//! Diagnostics: queueing analysis (at once or after the debounce), publishing results (push) or
//! announcing them (pull, `workspace/diagnostic/refresh`) for the version they were computed for,
//! the `textDocument/diagnostic` request, and `build_diagnostics`, a pure function of a document
//! snapshot, the cached results and the settings.

use std::collections::HashMap;

use clarifycoder_core::engine::CancelToken;
use clarifycoder_core::python;
use serde_json::json;
use tower_lsp_server::jsonrpc::Result;

use super::configuration::Config;
use super::document::{Document, Encoding};
use super::types::*;
use super::worker::{effective, Item, Job, Verdicts};
use super::{phrase, ClarifyServer, SOURCE};
use clarifycoder_core::analysis::{self, ResultCache};

impl ClarifyServer {
    /// Queues analysis of every open document now.
    pub(super) fn reanalyze_all(&self) {
        let uris: Vec<Uri> = self.state.lock().unwrap().docs.keys().cloned().collect();
        for uri in uris {
            self.queue_analysis(&uri);
        }
    }

    /// Queues analysis of the current version of a document.
    pub(super) fn queue_analysis(&self, uri: &Uri) {
        let mut st = self.state.lock().unwrap();
        let Some(doc) = st.docs.get(uri) else { return };
        let version = doc.version;
        let read = doc.functions();
        let items = read
            .iter()
            .map(|(f, checked)| Item::of(f, checked))
            .collect();
        let examples = st.config.examples_run(uri, read.text.clone());
        let cancel = CancelToken::new();
        if let Some(old) = st.cancels.insert(uri.clone(), cancel.clone()) {
            old.cancel();
        }
        let threshold = st.config.options.threshold;
        drop(st);
        tracing::debug!("analysis queued for {} v{version}", uri.as_str());
        self.worker.run_examples(uri.clone(), version, examples);
        let _ = self.worker.send(Job::Analyze {
            uri: uri.clone(),
            version,
            items,
            threshold,
            cancel,
        });
    }

    /// After the debounce delay, analyses the document if it is still at `version`. A push
    /// client first gets the results already known for this version (the unchanged functions',
    /// at their new lines): the model's next results wait for the changed function, which each
    /// keystroke puts off, and meanwhile the last ones would sit on the lines they had before the
    /// edit. A pull client always gets the current version's.
    pub(super) fn schedule(&self, uri: Uri, version: i32) {
        let delay = self.state.lock().unwrap().config.debounce;
        let state = self.state.clone();
        let me = self.handle();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let (current, pull) = {
                let st = state.lock().unwrap();
                (st.docs.get(&uri).map(|d| d.version), st.pull)
            };
            if current == Some(version) {
                // Queued first, so that whoever sees the known results and then asks the
                // worker anything finds this analysis ahead of the question.
                me.queue_analysis(&uri);
                if !pull {
                    me.publish_known(uri, version).await;
                }
            }
        });
    }

    /// The diagnostics of an open document, with its version, from the cached results.
    pub(super) fn diagnostics(&self, uri: &Uri) -> Option<(i32, Vec<Diagnostic>)> {
        self.diagnostics_carrying(uri, false)
    }

    /// [`Self::diagnostics`]; with `carry`, a function that has no result yet shows the one its
    /// name had at the last analysed version (`State::shown`) until its own comes.
    fn diagnostics_carrying(&self, uri: &Uri, carry: bool) -> Option<(i32, Vec<Diagnostic>)> {
        let st = self.state.lock().unwrap();
        let doc = st.docs.get(uri)?;
        let verdicts = self.worker.examples.lock().unwrap().get(uri).cloned();
        let cache = self.worker.cache.lock().unwrap();
        let carried = if carry { st.shown.get(uri) } else { None };
        Some((
            doc.version,
            build_diagnostics(
                doc,
                &cache,
                &verdicts.unwrap_or_default(),
                &st.config,
                st.encoding,
                carried,
            ),
        ))
    }

    /// Pushes what is known of a document version before its analysis: the unchanged functions'
    /// results at their new lines, and an edited function's last result until its own comes.
    async fn publish_known(&self, uri: Uri, version: i32) {
        if let Some((current, diagnostics)) = self.diagnostics_carrying(&uri, true) {
            if current == version {
                self.client
                    .publish_diagnostics(uri, diagnostics, Some(version))
                    .await;
            }
        }
    }

    /// Sends the diagnostics of a document version that has results (push), or asks a pull client
    /// to fetch them again.
    pub(super) async fn publish(&self, uri: Uri, version: i32) {
        tracing::debug!("results for {} v{version}", uri.as_str());
        let pull = self.state.lock().unwrap().pull;
        if pull {
            let _ = self.client.workspace_diagnostic_refresh().await;
            return;
        }
        if let Some((current, diagnostics)) = self.diagnostics(&uri) {
            if current == version {
                self.remember_shown(&uri);
                self.client
                    .publish_diagnostics(uri, diagnostics, Some(version))
                    .await;
            }
        }
    }

    /// Records which result each function of a document shows now (`State::shown`). A function
    /// without a result of its own keeps its last one only while it may still get one: not when
    /// it cannot be analysed (too long for the context) or has a finding that needs no model.
    fn remember_shown(&self, uri: &Uri) {
        let mut st = self.state.lock().unwrap();
        let Some(doc) = st.docs.get(uri) else { return };
        let read = doc.functions();
        let previous = st.shown.get(uri).cloned().unwrap_or_default();
        let cache = self.worker.cache.lock().unwrap();
        let not_analysed = self.worker.not_analysed.lock().unwrap();
        let mut shown = HashMap::new();
        let mut seen = HashMap::new();
        for (f, checked) in read.iter() {
            let key = shown_key(&f.qualname, &mut seen);
            if cache.get(&f.hash).is_some() {
                shown.insert(key, f.hash.clone());
            } else if checked.is_empty() && !not_analysed.contains_key(&f.hash) {
                if let Some(last) = previous.get(&key) {
                    shown.insert(key, last.clone());
                }
            }
        }
        drop((cache, not_analysed));
        st.shown.insert(uri.clone(), shown);
    }

    /// `textDocument/diagnostic` (pull): the document's diagnostics as they are now.
    pub(super) async fn on_diagnostic(
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
}

/// The diagnostics of a document snapshot from the cached results: a pure function of the text,
/// the results and the settings. A function with no result of its own may show the result of
/// the hash `carried` names for it (its last analysed version). Callers hold the server's locks:
/// a bug in here is logged and gives no diagnostics for this document, rather than unwinding
/// through (and poisoning) the locks that every later request needs.
pub(super) fn build_diagnostics(
    doc: &Document,
    cache: &ResultCache,
    verdicts: &Verdicts,
    config: &Config,
    encoding: Encoding,
    carried: Option<&HashMap<String, String>>,
) -> Vec<Diagnostic> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        diagnostics_of(doc, cache, verdicts, config, encoding, carried)
    }))
    .unwrap_or_else(|_| {
        tracing::error!("building diagnostics failed; please report this");
        Vec::new()
    })
}

/// A function's key in `State::shown`: its qualified name and how many functions of that name
/// came before it (a property's getter and setter share one).
fn shown_key<'a>(qualname: &'a str, seen: &mut HashMap<&'a str, usize>) -> String {
    let n = seen.entry(qualname).or_default();
    let key = format!("{qualname}#{n}");
    *n += 1;
    key
}

fn diagnostics_of(
    doc: &Document,
    cache: &ResultCache,
    verdicts: &Verdicts,
    config: &Config,
    encoding: Encoding,
    carried: Option<&HashMap<String, String>>,
) -> Vec<Diagnostic> {
    let read = doc.functions();
    let text = &read.text;
    let mut out = Vec::new();
    let mut seen = HashMap::new();
    for (f, checked) in read.iter() {
        let max_questions = config.options.max_questions;
        let key = shown_key(&f.qualname, &mut seen);
        let mut hash = &f.hash;
        let mut outcome = effective(cache, verdicts.get(hash), f, checked, max_questions);
        if outcome.is_none() {
            if let Some(last) = carried.and_then(|c| c.get(&key)) {
                let was = python::Function {
                    hash: last.clone(),
                    ..f.clone()
                };
                outcome = effective(cache, verdicts.get(last), &was, checked, max_questions);
                hash = last;
            }
        }
        let Some(outcome) = outcome else {
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
        let data = json!({"hash": hash, "function": f.qualname, "questions": questions, "score": outcome.p_ask});
        let messages: Vec<(String, Range)> = if questions.is_empty() {
            vec![(analysis::NO_QUESTION.into(), range)]
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

#[cfg(test)]
mod tests {
    use clarifycoder_core::analysis::NO_QUESTION;
    use clarifycoder_core::python;
    use clarifycoder_core::settings::Settings;
    use serde_json::Value;

    use super::*;
    use clarifycoder_core::analysis::Outcome;

    /// `process` is flagged with two questions, `total` is below the threshold, `pending` is
    /// flagged before its questions came, `mute` is flagged with no question, `skipped` is flagged
    /// but ignored by its pragma, `fresh` has no result.
    const TEXT: &str = "def process(data):\n    \"\"\"Process the data 😀 properly.\"\"\"\n    ...\n\n\ndef total(prices):\n    \"\"\"Return the sum of the prices.\"\"\"\n\n\ndef pending(x):\n    \"\"\"Handle x.\"\"\"\n\n\ndef mute(x):\n    \"\"\"Do it.\"\"\"\n\n\ndef skipped(x):  # clarify: ignore\n    \"\"\"Skip x.\"\"\"\n\n\ndef fresh(x):\n    \"\"\"Fresh x.\"\"\"\n";
    const QUESTIONS: [&str; 2] = ["What does processing mean here?", "Properly how?"];
    /// The cached results: function, P(ask), questions.
    const RESULTS: [(&str, f32, Option<&[&str]>); 5] = [
        ("process", 0.75, Some(&QUESTIONS)),
        ("total", 0.25, Some(&["Which prices?"])),
        ("pending", 0.75, None),
        ("mute", 0.875, Some(&[])),
        ("skipped", 0.75, Some(&["Skip what?"])),
    ];

    /// The diagnostics of `TEXT` with the results above, as JSON.
    fn diagnostics(settings: Settings, encoding: Encoding) -> Value {
        let parsed = python::extract(TEXT);
        let mut cache = ResultCache::in_memory();
        for (name, p_ask, questions) in RESULTS {
            let f = parsed.functions.iter().find(|f| f.name == name).unwrap();
            let questions = questions.map(|qs| qs.iter().map(|q| q.to_string()).collect());
            cache.put(&f.hash, Outcome { p_ask, questions });
        }
        let doc = Document::new(TEXT, 3);
        let config = Config::from(&settings);
        serde_json::to_value(build_diagnostics(
            &doc,
            &cache,
            &Verdicts::new(),
            &config,
            encoding,
            None,
        ))
        .unwrap()
    }

    /// One expected diagnostic: `[line, character, line, character]`, severity, message, and the
    /// function whose result it carries.
    fn diagnostic(range: [u32; 4], severity: u32, message: &str, function: &str) -> Value {
        let hash = &python::extract(TEXT)
            .functions
            .into_iter()
            .find(|f| f.name == function)
            .unwrap()
            .hash;
        let (_, score, questions) = RESULTS.iter().find(|r| r.0 == function).unwrap();
        let data =
            json!({"hash": hash, "function": function, "questions": questions, "score": score});
        json!({
            "range": {
                "start": {"line": range[0], "character": range[1]},
                "end": {"line": range[2], "character": range[3]},
            },
            "severity": severity,
            "code": "unclear",
            "source": "clarifycoder",
            "message": message,
            "data": data,
        })
    }

    #[test]
    fn flagged_functions_get_one_diagnostic_on_the_docstring() {
        let joined = QUESTIONS.join("\n");
        // UTF-16: the emoji is two code units.
        assert_eq!(
            diagnostics(Settings::default(), Encoding::Utf16),
            json!([
                diagnostic([1, 4, 1, 39], 3, &joined, "process"),
                diagnostic([14, 4, 14, 16], 3, NO_QUESTION, "mute"),
            ])
        );
        // UTF-8: four bytes.
        assert_eq!(
            diagnostics(Settings::default(), Encoding::Utf8),
            json!([
                diagnostic([1, 4, 1, 41], 3, &joined, "process"),
                diagnostic([14, 4, 14, 16], 3, NO_QUESTION, "mute"),
            ])
        );
    }

    #[test]
    fn per_question_diagnostics_point_at_their_phrase() {
        let settings = Settings {
            per_question: Some(true),
            severity: Some("Hint".into()),
            ..Settings::default()
        };
        assert_eq!(
            diagnostics(settings, Encoding::Utf16),
            json!([
                // No word of the question is in the docstring: the whole docstring.
                diagnostic([1, 4, 1, 39], 4, QUESTIONS[0], "process"),
                // "properly", after the emoji.
                diagnostic([1, 27, 1, 35], 4, QUESTIONS[1], "process"),
                diagnostic([14, 4, 14, 16], 4, NO_QUESTION, "mute"),
            ])
        );
    }

    #[test]
    fn the_threshold_decides_what_is_flagged() {
        let strict = Settings {
            threshold: Some(0.9),
            ..Settings::default()
        };
        assert_eq!(diagnostics(strict, Encoding::Utf16), json!([]));
        let lax = Settings {
            threshold: Some(0.2),
            ..Settings::default()
        };
        assert_eq!(
            diagnostics(lax, Encoding::Utf16),
            json!([
                diagnostic([1, 4, 1, 39], 3, &QUESTIONS.join("\n"), "process"),
                diagnostic([6, 29, 6, 35], 3, "Which prices?", "total"),
                diagnostic([14, 4, 14, 16], 3, NO_QUESTION, "mute"),
            ])
        );
    }
}
