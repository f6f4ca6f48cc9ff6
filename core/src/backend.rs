//! Turning settings into a running backend, with messages that say what to do when it fails.
//!
//! [`Plan`] is the one place where a model, an adapter or an endpoint named by flags, editor
//! settings, the environment or a configuration file becomes a [`Backend`]: the language server,
//! `check` and the evaluator all load through it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha2::{Digest, Sha256};

use crate::engine::llama::{self, LlamaConfig, LlamaEngine, Placement};
use crate::engine::openai::{OpenAiConfig, OpenAiEngine};
use crate::engine::{Backend, EngineError};
use crate::gguf::GgufError;
use crate::settings::{self, BackendKind, Origin, Resolved, Settings};

/// Why a [`Plan`] could not name or load its backend. Messages name the subject and the next step.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// The model file is not where the settings say: the one failure an editor answers
    /// differently (it offers to install the model). Test with [`PlanError::is_missing_model`].
    #[error("model not found at '{}'; {hint}", path.display())]
    MissingModel {
        /// Where the model was looked for.
        path: PathBuf,
        /// What to do about it.
        hint: String,
    },
    /// The model file is there but cannot be used (unreadable, not a GGUF, truncated).
    #[error("{0}; pass another GGUF file with --model, or, for a known model, re-install it with `clarifycoder model install NAME` (`clarifycoder model list` names them)")]
    Model(EngineError),
    /// The adapter file cannot be used.
    #[error("{0}; pass --adapter none to run without it")]
    Adapter(EngineError),
    /// The adapter file is missing (found by [`Plan::identity`]).
    #[error("adapter not found at '{}'; pass --adapter none to run without it", path.display())]
    AdapterFile {
        /// Where the adapter was looked for.
        path: PathBuf,
    },
    /// A model or adapter path names something other than a file (found by [`Plan::identity`]).
    #[error("{what} '{}' is not a file (a GGUF file is expected)", path.display())]
    NotAFile {
        /// `model` or `adapter`.
        what: &'static str,
        /// The path.
        path: PathBuf,
    },
    /// The backend is `openai` but the settings name no endpoint.
    #[error(
        "backend is `openai` but no endpoint is set; set `endpoint` (e.g. http://gpu-box:8080)"
    )]
    NoEndpoint,
    /// The OpenAI-compatible backend could not be set up.
    #[error("cannot set up the OpenAI-compatible backend")]
    Endpoint(#[source] EngineError),
    /// Any other engine failure (llama.cpp refused the model, ...).
    #[error(transparent)]
    Engine(EngineError),
}

impl PlanError {
    /// Whether loading failed because the model file is missing.
    pub fn is_missing_model(&self) -> bool {
        matches!(self, PlanError::MissingModel { .. })
    }
}

/// What will be loaded, resolved from settings without loading anything.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The settings the plan came from.
    pub settings: Settings,
    /// The model file (embedded backend).
    pub model: Resolved,
    /// The adapter, if any.
    pub adapter: Option<Resolved>,
    /// `none` was set for the adapter: the model runs untuned on purpose.
    pub adapter_off: bool,
    /// Embedded backend with an adapter: the base model without it writes code answers (see
    /// [`LlamaConfig::code_from_base`]). Off by default: the editor never generates code.
    pub code_from_base: bool,
    /// Embedded backend: sequences decoded together ([`LlamaConfig::batch_prompts`]); `None`
    /// keeps the engine's default.
    pub lanes: Option<usize>,
    /// Embedded engine: [`LlamaConfig::batch_invariant`].
    pub batch_invariant: bool,
}

impl Plan {
    /// Resolves model and adapter: flag/editor setting → environment → config file → default.
    /// `explicit` holds flags, `config` the configuration file's settings.
    pub fn new(explicit: Settings, config: Settings) -> Plan {
        let model = settings::resolve_model(explicit.model.as_deref(), config.model.as_deref());
        let adapter = settings::resolve_adapter(
            explicit.adapter.as_deref(),
            config.adapter.as_deref(),
            &model,
        );
        Plan {
            settings: explicit.or(config),
            model,
            adapter_off: adapter == settings::AdapterChoice::Off,
            adapter: adapter.file(),
            code_from_base: false,
            lanes: None,
            batch_invariant: false,
        }
    }

    /// The warning for a model served without an adapter that nobody turned off (`adapter =
    /// "none"`): untuned, an instruct model codes whatever it reads, so a user would take its
    /// silence for "all clear". `None` with an adapter, with `none`, and for an endpoint.
    pub fn untuned_warning(&self) -> Option<String> {
        let known = self.model.name.as_deref().and_then(crate::models::find);
        if self.backend() != BackendKind::Embedded
            || self.adapter.is_some()
            || self.adapter_off
            // A known model not installed yet: that is the problem to report (its adapter is
            // written once it is).
            || known.is_some_and(|m| !m.installed())
        {
            return None;
        }
        let model = match known {
            Some(known) => format!("model {} ({})", known.name, known.missing_adapter_reason()),
            None => format!("the model at {}", self.model.path.display()),
        };
        Some(format!(
            "no ClarifyCoder adapter for {model}, so it runs untuned and its scores mean little \
             (an instruct model then rarely asks: few functions if any are flagged); set \
             `adapter` to an adapter trained for it, or to `none` to run it untuned on purpose"
        ))
    }

    /// What to do when the model file is missing: a known model's install command, else where
    /// the path was set and how to change it (editors' health checks show it too).
    pub fn missing_model_hint(&self) -> String {
        let hint = match (&self.model.name, self.model.origin) {
            (Some(name), _) => match crate::models::find(name) {
                Some(m) => format!("install it with {}", m.install_hint()),
                None => format!("install it with `clarifycoder model install {name}`"),
            },
            (None, Origin::Default) => settings::INSTALL_HINT.to_string(),
            (None, Origin::Env) => format!("it was set by {}; point it at a GGUF file or a name from `clarifycoder model list`, or unset it to use the default model", settings::MODEL_ENV),
            (None, Origin::Config) => "it was set by `model` in the configuration file; point it at a GGUF file or a name from `clarifycoder model list`, or remove it to use the default model".to_string(),
            (None, Origin::Flag) => "it was set by --model (the `model` setting in an editor); point it at a GGUF file or a name from `clarifycoder model list`, or leave it out to use the default model".to_string(),
        };
        // A word without an extension that is no file was most likely meant as a name (a
        // configuration file's is taken relative to the file: its last part is the word).
        let path = &self.model.path;
        let word = path
            .file_name()
            .filter(|_| self.model.name.is_none() && path.extension().is_none())
            .map(|w| w.to_string_lossy().into_owned());
        match word {
            Some(word) => {
                let names: Vec<&str> = crate::models::KNOWN.iter().map(|m| m.name).collect();
                format!(
                    "'{word}' is not a known model name either (known: {}); {hint}",
                    names.join(", ")
                )
            }
            None => hint,
        }
    }

    /// The backend kind.
    pub fn backend(&self) -> BackendKind {
        self.settings.backend.unwrap_or_default()
    }

    /// Where the embedded engine would run on this machine (`None` for an endpoint): the GPU in
    /// a CUDA build that finds one, unless `gpu_layers` is 0, else the CPU.
    pub fn placement(&self) -> Option<Placement> {
        match self.backend() {
            BackendKind::Embedded => Some(llama::placement(
                self.settings
                    .gpu_layers
                    .unwrap_or(llama::DEFAULT_GPU_LAYERS),
            )),
            BackendKind::Openai => None,
        }
    }

    /// A key that changes whenever the served model could answer differently: the model and
    /// adapter files (path, size, modification time) or the endpoint and model name. Fails when
    /// the model file is missing, with the install hint.
    pub fn identity(&self) -> Result<String, PlanError> {
        let mut h = Sha256::new();
        match self.backend() {
            BackendKind::Embedded => {
                if !self.model.path.exists() {
                    return Err(self.explain(EngineError::Model(GgufError::NotFound(
                        self.model.path.clone(),
                    ))));
                }
                h.update(file_identity(&self.model.path, "model")?);
                if let Some(adapter) = &self.adapter {
                    h.update(file_identity(&adapter.path, "adapter")?);
                }
            }
            BackendKind::Openai => {
                h.update(self.settings.endpoint.as_deref().unwrap_or_default());
                h.update([0]);
                h.update(self.settings.api_model.as_deref().unwrap_or_default());
            }
        }
        Ok(format!("{:x}", h.finalize()))
    }

    /// Loads the backend. Slow for the embedded one (the model is read).
    pub fn open(&self) -> Result<Arc<dyn Backend>, PlanError> {
        let s = &self.settings;
        match self.backend() {
            BackendKind::Embedded => {
                let mut config = LlamaConfig::new(self.model.path.clone());
                config.adapter = self.adapter.as_ref().map(|a| a.path.clone());
                if let Some(n) = s.gpu_layers {
                    config.gpu_layers = n;
                }
                config.threads = s.threads.unwrap_or(0);
                if let Some(n) = s.ctx_size {
                    config.n_ctx = n;
                }
                config.code_from_base = self.code_from_base;
                config.batch_invariant = self.batch_invariant;
                if let Some(n) = self.lanes.or(s.batch) {
                    config.batch_prompts = n;
                }
                let engine = LlamaEngine::load(config).map_err(|e| self.explain(e))?;
                Ok(Arc::new(engine))
            }
            BackendKind::Openai => {
                let Some(endpoint) = s.endpoint.clone() else {
                    return Err(PlanError::NoEndpoint);
                };
                let mut config = OpenAiConfig::new(
                    endpoint,
                    s.api_model.clone().unwrap_or_else(|| "default".into()),
                );
                config.api_key_env = s.api_key_env.clone();
                if let Some(markup) = s.api_markup {
                    config.markup = markup;
                }
                if let Some(n) = s.concurrency {
                    config.concurrency = n;
                }
                let engine = OpenAiEngine::new(config).map_err(PlanError::Endpoint)?;
                Ok(Arc::new(engine))
            }
        }
    }

    fn explain(&self, e: EngineError) -> PlanError {
        match e {
            EngineError::Model(GgufError::NotFound(path)) => PlanError::MissingModel {
                path,
                hint: self.missing_model_hint(),
            },
            e @ EngineError::Model(_) => PlanError::Model(e),
            e @ EngineError::Adapter(_) => PlanError::Adapter(e),
            e => PlanError::Engine(e),
        }
    }
}

fn file_identity(path: &Path, what: &'static str) -> Result<String, PlanError> {
    let meta = std::fs::metadata(path).map_err(|_| {
        if what == "model" {
            PlanError::MissingModel {
                path: path.to_path_buf(),
                hint: settings::INSTALL_HINT.to_string(),
            }
        } else {
            PlanError::AdapterFile {
                path: path.to_path_buf(),
            }
        }
    })?;
    if !meta.is_file() {
        return Err(PlanError::NotAFile {
            what,
            path: path.to_path_buf(),
        });
    }
    let canonical = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let mtime = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    Ok(format!(
        "{}\0{}\0{}\0",
        canonical.display(),
        meta.len(),
        mtime
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prompt::Markup;

    /// A regression: the endpoint was always prompted in Gemma's markup, although the default
    /// model (what a team serves) is Qwen2.5-Coder, a ChatML model.
    #[test]
    fn an_endpoint_is_prompted_in_the_default_models_markup_unless_set() {
        let endpoint = Settings {
            backend: Some(BackendKind::Openai),
            endpoint: Some("http://127.0.0.1:9".into()),
            ..Settings::default()
        };
        let markup = |s: Settings| {
            Plan::new(s, Settings::default())
                .open()
                .unwrap()
                .info()
                .markup
        };
        assert_eq!(markup(endpoint.clone()), Markup::ChatMl);
        let gemma = Settings {
            api_markup: Some(Markup::Gemma),
            ..endpoint
        };
        assert_eq!(markup(gemma), Markup::Gemma);
    }

    fn plan(model: &Path, adapter: &str) -> Plan {
        let flags = Settings {
            model: Some(model.to_path_buf()),
            adapter: Some(adapter.into()),
            ..Settings::default()
        };
        Plan::new(flags, Settings::default())
    }

    fn open_err(plan: &Plan) -> PlanError {
        match plan.open() {
            Ok(_) => panic!("opened {plan:?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn a_model_without_an_adapter_is_warned_about_unless_none_was_asked_for() {
        let untuned =
            |flags: Settings, config: Settings| Plan::new(flags, config).untuned_warning();
        // A model of our own without an adapter beside it (no known model's default applies).
        let own = Settings {
            model: Some("/models/own.gguf".into()),
            ..Settings::default()
        };
        if std::env::var_os(settings::ADAPTER_ENV).is_none() {
            let text = untuned(own.clone(), Settings::default()).expect("a warning");
            assert!(
                text.starts_with("no ClarifyCoder adapter for the model at /models/own.gguf"),
                "{text}"
            );
        }
        let none = Settings {
            adapter: Some("none".into()),
            ..Settings::default()
        };
        assert_eq!(
            untuned(own.clone(), none.clone()),
            None,
            "`none` in the file"
        );
        let flags = Settings {
            adapter: Some("none".into()),
            ..own.clone()
        };
        assert_eq!(
            untuned(flags, Settings::default()),
            None,
            "`--adapter none`"
        );
        assert_eq!(
            untuned(
                Settings {
                    adapter: Some("/a.gguf".into()),
                    ..own.clone()
                },
                Settings::default()
            ),
            None
        );
        let endpoint = Settings {
            backend: Some(BackendKind::Openai),
            ..own
        };
        assert_eq!(untuned(endpoint, Settings::default()), None);
    }

    #[test]
    fn a_bare_word_that_is_no_file_is_told_the_known_names() {
        let e = open_err(&plan(Path::new("qwen-coder"), "none"));
        let text = e.to_string();
        assert!(e.is_missing_model(), "{e:?}");
        assert!(
            text.contains(
                "'qwen-coder' is not a known model name either (known: qwen2.5-coder-0.5b, "
            ),
            "{text}"
        );
    }

    #[test]
    fn a_missing_model_is_told_apart_and_names_the_setting_that_chose_it() {
        let dir = tempfile::tempdir().unwrap();
        let absent = dir.path().join("absent.gguf");
        let plan = plan(&absent, "none");
        for e in [plan.identity().unwrap_err(), open_err(&plan)] {
            assert!(e.is_missing_model(), "{e:?}");
            let text = e.to_string();
            assert!(
                text.starts_with(&format!("model not found at '{}'; ", absent.display())),
                "{text}"
            );
            assert!(text.contains("it was set by"), "{text}");
        }
    }

    #[test]
    fn a_broken_model_file_is_not_a_missing_model_and_says_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        let broken = dir.path().join("broken.gguf");
        std::fs::write(&broken, b"not a gguf file").unwrap();
        let e = open_err(&plan(&broken, "none"));
        assert!(matches!(e, PlanError::Model(_)), "{e:?}");
        assert!(!e.is_missing_model());
        assert!(
            e.to_string()
                .ends_with("; pass another GGUF file with --model, or, for a known model, re-install it with `clarifycoder model install NAME` (`clarifycoder model list` names them)"),
            "{e}"
        );
    }

    #[test]
    fn identity_names_a_missing_adapter_and_a_path_that_is_no_file() {
        let dir = tempfile::tempdir().unwrap();
        let model = dir.path().join("m.gguf");
        std::fs::write(&model, b"x").unwrap();
        let adapter = dir.path().join("gone.gguf");
        let e = plan(&model, adapter.to_str().unwrap())
            .identity()
            .unwrap_err();
        assert!(!e.is_missing_model());
        assert_eq!(
            e.to_string(),
            format!(
                "adapter not found at '{}'; pass --adapter none to run without it",
                adapter.display()
            )
        );
        let e = plan(dir.path(), "none").identity().unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "model '{}' is not a file (a GGUF file is expected)",
                dir.path().display()
            )
        );
        // The key follows the file: a rewrite with other content gives another identity.
        let before = plan(&model, "none").identity().unwrap();
        std::fs::write(&model, b"longer").unwrap();
        assert_ne!(plan(&model, "none").identity().unwrap(), before);
    }

    #[test]
    fn an_openai_backend_without_an_endpoint_says_which_setting_to_set() {
        let flags = Settings {
            backend: Some(BackendKind::Openai),
            ..Settings::default()
        };
        let e = open_err(&Plan::new(flags, Settings::default()));
        assert!(matches!(e, PlanError::NoEndpoint));
        assert_eq!(
            e.to_string(),
            "backend is `openai` but no endpoint is set; set `endpoint` (e.g. http://gpu-box:8080)"
        );
    }
}
