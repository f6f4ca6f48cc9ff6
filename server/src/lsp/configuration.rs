//! Settings: the server's `Config`, settings from `initializationOptions` and
//! `workspace/didChangeConfiguration`, and loading the engine (with progress) when a setting that
//! decides it changes.

use std::time::Duration;

use clarifycoder_core::settings::{self, Settings};
use serde_json::{json, Value};
use tokio::sync::oneshot;

use super::types::*;
use super::worker::{ExamplesRun, Job, LoadFailure};
use super::{progress, ClarifyServer, StatusNotification};
use crate::backend::Plan;
use clarifycoder_core::analysis::{Options, ResultCache};

/// Settings of the server beyond the model plan.
#[derive(Debug, Clone)]
pub(super) struct Config {
    pub(super) options: Options,
    pub(super) severity: DiagnosticSeverity,
    pub(super) debounce: Duration,
    pub(super) per_question: bool,
    /// Run docstring examples with this interpreter (`runExamples`, `python`); `None`: do not.
    pub(super) run_examples: Option<String>,
}

impl Config {
    pub(super) fn from(s: &Settings) -> Config {
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
                // In range: settings are validated when they arrive
                // (`Settings::from_json_keeping_valid`, `Settings::from_toml_file`), and a value
                // that is not is left out, with a message.
                threshold: s.threshold.unwrap_or(d.threshold),
                max_questions: s.max_questions.unwrap_or(d.max_questions),
                max_tokens: s.max_tokens.unwrap_or(d.max_tokens),
                ..d
            },
            severity,
            debounce: Duration::from_millis(s.debounce_ms.unwrap_or(500)),
            per_question: s.per_question.unwrap_or(false),
            run_examples: s.run_examples.unwrap_or(false).then(|| {
                s.python
                    .clone()
                    .unwrap_or_else(|| settings::DEFAULT_PYTHON.into())
            }),
        }
    }

    /// The examples run of a document's analysis, when the setting is on.
    pub(super) fn examples_run(&self, uri: &Uri, text: String) -> Option<ExamplesRun> {
        let python = self.run_examples.clone()?;
        let dir = uri
            .to_file_path()
            .and_then(|p| p.parent().map(|d| d.to_path_buf()));
        Some(ExamplesRun { python, text, dir })
    }
}

impl ClarifyServer {
    /// Loads (or reloads) the engine from the current settings, with progress; on failure tells
    /// the user once and keeps serving.
    pub(super) async fn load_engine(&self) {
        let (settings, root) = {
            let st = self.state.lock().unwrap();
            (st.settings.clone(), st.roots.first().cloned())
        };
        // The project's configuration file, read like `check` reads it (paths relative to it,
        // values validated); a broken one is reported, not silently ignored. Without a workspace
        // root (a single file opened) it is found from the working directory, as `check` finds
        // it, and the user's own file is the fallback either way (the only file when not even
        // the working directory can be read).
        let start = root
            .or_else(|| std::env::current_dir().ok())
            .unwrap_or_default();
        let config_file = match Settings::discover(&start) {
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
        let plan = Plan::new(settings, config_file.clone());
        // The file's settings apply to how results are shown too, where the editor sets nothing.
        let options = {
            let mut st = self.state.lock().unwrap();
            st.config = Config::from(&plan.settings);
            st.file_settings = config_file;
            st.config.options
        };
        // Results are only valid for one model: the persistent cache for this one comes in with
        // it, on the worker, after the jobs queued before (whose results are the old model's).
        let cache = plan.identity().ok().map(|identity| {
            ResultCache::open(settings::cache_dir().join("results"), &identity, &options)
        });
        let untuned = plan.untuned_warning();
        let (tx, rx) = oneshot::channel();
        let sent = self.worker.send(Job::Load {
            plan: Box::new(plan),
            options,
            cache,
            reply: tx,
        });
        // What is in flight or queued is for the old model: cancelled, and every open document
        // is analysed again after the load (which reports what it can without a model when the
        // load fails). A workspace check stops: one check's results come from one model.
        for check in self.state.lock().unwrap().checks.values() {
            check.cancel();
        }
        self.reanalyze_all();
        let progress = progress::begin(
            &self.client,
            &progress::token("load"),
            "ClarifyCoder: loading model",
            |p| p,
        )
        .await;
        self.client
            .send_notification::<StatusNotification>(json!({"state": "loading"}))
            .await;
        let result = match sent {
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
                if let Some(warning) = untuned {
                    self.client
                        .show_message(MessageType::WARNING, format!("ClarifyCoder: {warning}"))
                        .await;
                }
                self.client
                    .send_notification::<StatusNotification>(
                        json!({"state": "ready", "message": model}),
                    )
                    .await;
            }
            Err(LoadFailure {
                missing_model,
                install,
                message,
            }) => {
                tracing::error!("{message}");
                let state = if missing_model { "noModel" } else { "error" };
                // `install`: the known model to install (`clarifycoder model install NAME`), for
                // an editor that offers to; `installSize`: its download in bytes.
                let size = install
                    .as_deref()
                    .and_then(clarifycoder_core::models::find)
                    .map(|m| m.size);
                self.client
                    .send_notification::<StatusNotification>(json!({
                        "state": state,
                        "message": message,
                        "install": install,
                        "installSize": size,
                    }))
                    .await;
                // A client that offers the install shows that offer instead of the error.
                let offered = install.is_some() && self.state.lock().unwrap().client_installs;
                if !offered {
                    self.client
                        .show_message(MessageType::ERROR, format!("ClarifyCoder: {message}"))
                        .await;
                }
            }
        }
    }

    /// Takes settings from `initializationOptions` (`initial`) or `didChangeConfiguration`. A
    /// change carries the editor's whole settings section, as clients send it, over the initial
    /// ones (which are never sent again): a key it leaves out falls back to
    /// `initializationOptions`, not to what an earlier change said. A key with an invalid value (the
    /// wrong type, out of range) is left out, as if unset, with a message to the user that names
    /// it; the other keys apply. Keys the editor does not set come from the project's
    /// configuration file, then the defaults.
    pub(super) async fn apply_settings(&self, value: &Value, initial: bool) -> Applied {
        // Editors send either our section or `{ "clarifycoder": {...} }`.
        let value = value.get("clarifycoder").unwrap_or(value);
        let (new, errors) = Settings::from_json_keeping_valid(value);
        if !errors.is_empty() {
            let errors: Vec<String> = errors.iter().map(ToString::to_string).collect();
            tracing::warn!("{}", errors.join("; "));
            // Settings that are not even an object cannot be read key by key.
            let refused = !value.is_object();
            self.client
                .show_message(
                    MessageType::WARNING,
                    format!(
                        "ClarifyCoder: {}; fix the `clarifycoder` settings in your editor ({})",
                        errors.join("; "),
                        if refused {
                            "until then the previous settings stay in force"
                        } else {
                            "until then those keys are ignored and the others apply"
                        }
                    ),
                )
                .await;
            if refused {
                return Applied::Refused;
            }
        }
        if !new.unknown.is_empty() {
            let warnings: Vec<String> = new
                .unknown
                .iter()
                .map(|(key, value)| settings::ignored_key_warning(key, value))
                .collect();
            tracing::warn!("{}", warnings.join("; "));
            self.client
                .show_message(
                    MessageType::WARNING,
                    format!(
                        "ClarifyCoder settings: {} (the settings are listed in the README)",
                        warnings.join("; ")
                    ),
                )
                .await;
        }
        let mut st = self.state.lock().unwrap();
        let new = if initial {
            st.initial_settings = new.clone();
            new
        } else {
            // `or` never takes `run_examples` from a fallback (a configuration file must not turn
            // it on); the editor's own initial setting is no such file.
            let run_examples = new.run_examples.or(st.initial_settings.run_examples);
            Settings {
                run_examples,
                ..new.or(st.initial_settings.clone())
            }
        };
        let reload = engine_settings(&new) != engine_settings(&st.settings);
        st.config = Config::from(&new.clone().or(st.file_settings.clone()));
        st.settings = new;
        if reload {
            Applied::Engine
        } else {
            Applied::Presentation
        }
    }

    /// `workspace/didChangeConfiguration`.
    pub(super) async fn on_did_change_configuration(&self, params: DidChangeConfigurationParams) {
        match self.apply_settings(&params.settings, false).await {
            Applied::Refused => {}
            Applied::Engine => self.load_engine().await,
            // Threshold, severity and such only change how results are shown.
            Applied::Presentation => self.republish().await,
        }
    }

    /// Shows every open document's results again under the current settings.
    async fn republish(&self) {
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

/// What [`ClarifyServer::apply_settings`] did with new settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Applied {
    /// They were not an object of settings; the previous ones stay in force.
    Refused,
    /// Only how results are shown changed.
    Presentation,
    /// A setting that decides the engine or the cached results changed: reload the engine.
    Engine,
}

/// The settings that decide the engine or the cached results: all but how diagnostics are shown
/// and when. A change in any of them reloads the engine (and re-analyses from the cache). The
/// threshold is not one: each analysis takes the current one (a function it newly flags gets
/// its questions then), and loading the model again would cost seconds.
fn engine_settings(s: &Settings) -> Settings {
    Settings {
        threshold: None,
        severity: None,
        debounce_ms: None,
        per_question: None,
        run_examples: None,
        python: None,
        unknown: Default::default(),
        ..s.clone()
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
        let engine_changes = [
            Settings {
                ctx_size: Some(8192),
                ..Settings::default()
            },
            Settings {
                api_key_env: Some("KEY".into()),
                ..Settings::default()
            },
            Settings {
                api_markup: Some(clarifycoder_core::prompt::Markup::Plain),
                ..Settings::default()
            },
            Settings {
                max_questions: Some(1),
                ..Settings::default()
            },
            Settings {
                concurrency: Some(2),
                ..Settings::default()
            },
            Settings {
                batch: Some(2),
                ..Settings::default()
            },
            Settings {
                model: Some("gemma3-270m".into()),
                ..Settings::default()
            },
        ];
        for changed in engine_changes {
            assert!(reloads(changed.clone()), "{changed:?}");
        }
        assert!(!reloads(Settings {
            threshold: Some(0.3),
            severity: Some("hint".into()),
            debounce_ms: Some(10),
            per_question: Some(true),
            ..Settings::default()
        }));
    }
}
