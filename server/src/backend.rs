//! Turning settings into a running backend, with messages that say what to do when it fails.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context};
use clarifycoder_core::engine::llama::{LlamaConfig, LlamaEngine};
use clarifycoder_core::engine::openai::{OpenAiConfig, OpenAiEngine};
use clarifycoder_core::engine::{Backend, EngineError};
use clarifycoder_core::gguf::GgufError;
use clarifycoder_core::settings::{self, BackendKind, Origin, Resolved, Settings};
use sha2::{Digest, Sha256};

/// The model file is not where the settings say: the one failure an editor answers differently
/// (it offers to install the model). Carried inside the `anyhow::Error` that [`Plan::identity`]
/// and [`Plan::open`] return; test with [`is_missing_model`].
#[derive(Debug)]
pub struct MissingModel {
    /// Where the model was looked for.
    pub path: PathBuf,
    /// What to do about it.
    pub hint: String,
}

impl std::fmt::Display for MissingModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "model not found at '{}'; {}",
            self.path.display(),
            self.hint
        )
    }
}

impl std::error::Error for MissingModel {}

/// Whether loading failed because the model file is missing.
pub fn is_missing_model(e: &anyhow::Error) -> bool {
    e.chain().any(|c| c.is::<MissingModel>())
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
            adapter,
        }
    }

    /// The backend kind.
    pub fn backend(&self) -> BackendKind {
        self.settings.backend.unwrap_or_default()
    }

    /// A key that changes whenever the served model could answer differently: the model and
    /// adapter files (path, size, modification time) or the endpoint and model name. Fails when
    /// the model file is missing, with the install hint.
    pub fn identity(&self) -> anyhow::Result<String> {
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
    pub fn open(&self) -> anyhow::Result<Arc<dyn Backend>> {
        let s = &self.settings;
        match self.backend() {
            BackendKind::Embedded => {
                let mut config = LlamaConfig::new(self.model.path.clone());
                config.adapter = self.adapter.as_ref().map(|a| a.path.clone());
                config.gpu_layers = s.gpu_layers.unwrap_or(0);
                config.threads = s.threads.unwrap_or(0);
                if let Some(n) = s.ctx_size {
                    config.n_ctx = n;
                }
                let engine = LlamaEngine::load(config).map_err(|e| self.explain(e))?;
                Ok(Arc::new(engine))
            }
            BackendKind::Openai => {
                let Some(endpoint) = s.endpoint.clone() else {
                    bail!("backend is `openai` but no endpoint is set; set `endpoint` (e.g. http://gpu-box:8080)");
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
                let engine = OpenAiEngine::new(config)
                    .context("cannot set up the OpenAI-compatible backend")?;
                Ok(Arc::new(engine))
            }
        }
    }

    fn explain(&self, e: EngineError) -> anyhow::Error {
        match &e {
            EngineError::Model(GgufError::NotFound(path)) => {
                let how = match (&self.model.name, self.model.origin) {
                    (Some(name), _) => format!(
                        "install it with `clarifycoder model install {name}` (or `make setup` in a checkout)"
                    ),
                    (None, Origin::Default) => settings::INSTALL_HINT.to_string(),
                    (None, origin) => format!("it was set by {origin}; fix that setting, or unset it to use the default model"),
                };
                anyhow::Error::new(MissingModel {
                    path: path.clone(),
                    hint: how,
                })
            }
            EngineError::Model(_) => anyhow::anyhow!(
                "{e}; re-install it with `make setup` or pass another file with --model"
            ),
            EngineError::Adapter(_) => {
                anyhow::anyhow!("{e}; pass --adapter none to run without it")
            }
            _ => anyhow::Error::new(e),
        }
    }
}

fn file_identity(path: &PathBuf, what: &str) -> anyhow::Result<String> {
    let meta = std::fs::metadata(path).map_err(|_| {
        if what == "model" {
            anyhow::Error::new(MissingModel {
                path: path.clone(),
                hint: settings::INSTALL_HINT.to_string(),
            })
        } else {
            anyhow::anyhow!(
                "{what} not found at '{}'; pass --adapter none to run without it",
                path.display()
            )
        }
    })?;
    if !meta.is_file() {
        bail!(
            "{what} '{}' is not a file (a GGUF file is expected)",
            path.display()
        );
    }
    let canonical = std::fs::canonicalize(path).unwrap_or_else(|_| path.clone());
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
    use clarifycoder_core::prompt::Markup;

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
}
