//! Extraction of Python functions (signature + docstring) with tree-sitter.
//!
//! [`extract`] parses a Python source text and returns every function and method it
//! contains, in source order, together with precise positions (byte offset, line,
//! UTF-8 and UTF-16 columns) so that both a CLI linter and a language server can
//! report diagnostics. [`Function::problem`] renders the exact text the model sees.
//!
//! Extraction never fails and never panics: files with syntax errors yield whatever
//! tree-sitter recovered, and the error regions are reported in
//! [`ParsedFile::syntax_errors`].

use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

use sha2::{Digest, Sha256};
use tree_sitter::{Node, Parser};

/// A position in a source text: byte offset plus 0-based line and column in UTF-8 bytes and UTF-16 code units.
///
/// `line` counts the line ends before `byte`: `'\n'`, and `'\r'` where no `'\n'` follows it
/// ([`extract`]); a `'\r'` before `'\n'` is an ordinary column character of its line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Position {
    /// Byte offset from the start of the text.
    pub byte: usize,
    /// 0-based line number (number of line ends before `byte`).
    pub line: u32,
    /// 0-based column in UTF-8 bytes since the start of the line.
    pub utf8_col: u32,
    /// 0-based column in UTF-16 code units since the start of the line.
    pub utf16_col: u32,
}

/// A half-open range `[start, end)` of a source text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Span {
    /// First position inside the range.
    pub start: Position,
    /// First position after the range.
    pub end: Position,
}

/// The quotes delimiting a string literal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum QuoteStyle {
    /// `"""..."""`
    TripleDouble,
    /// `'''...'''`
    TripleSingle,
    /// `"..."`
    Double,
    /// `'...'`
    Single,
}

impl QuoteStyle {
    /// The delimiter as written in the source, e.g. `"""`.
    pub fn as_str(&self) -> &'static str {
        match self {
            QuoteStyle::TripleDouble => "\"\"\"",
            QuoteStyle::TripleSingle => "'''",
            QuoteStyle::Double => "\"",
            QuoteStyle::Single => "'",
        }
    }
}

/// The docstring of a function: the string literal that is its first statement (or several
/// side by side, which Python joins, in parentheses or not).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Docstring {
    /// Cleaned text: Python's `inspect.cleandoc()` of the literal's value (newlines normalized to LF).
    pub text: String,
    /// The statement's source text: the literal with its prefix and quotes, or the literals,
    /// any comments between them and the parentheses around them.
    pub raw: String,
    /// Span of `raw`: what comes after it is the function's code.
    pub span: Span,
    /// The quotes of the (first) literal.
    pub quote: QuoteStyle,
    /// The string prefix as written, e.g. `""`, `"r"`, `"R"`, `"u"` (of the first literal).
    pub prefix: String,
    /// How many string literals it is written as: 1, or more side by side.
    #[serde(default = "one")]
    pub literals: usize,
}

fn one() -> usize {
    1
}

/// A function or method found in a Python source text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Function {
    /// The function's name.
    pub name: String,
    /// Dotted path of enclosing classes and functions plus the name, e.g. `Outer.method`.
    pub qualname: String,
    /// `async def`.
    pub is_async: bool,
    /// Defined directly inside a class body.
    pub is_method: bool,
    /// Source from `def`/`async` through the header's `:`, dedented by [`Function::indent`], newlines as LF.
    pub signature: String,
    /// Span of the `function_definition` node (without decorators).
    pub def_span: Span,
    /// Span of the function's name.
    pub name_span: Span,
    /// From the `def`/`async` keyword through the header's `:` token.
    pub header_span: Span,
    /// Span including decorators (equal to `def_span` when there are none).
    pub decorated_span: Span,
    /// The docstring, if the body starts with one.
    pub docstring: Option<Docstring>,
    /// Span of the body block.
    pub body: Span,
    /// Leading whitespace of the def line (may contain tabs).
    pub indent: String,
    /// Leading whitespace of the body's first statement line (`indent` + 4 spaces when the body is on the header line).
    pub body_indent: String,
    /// The def line carries a `# clarify: ignore` comment.
    pub ignored: bool,
    /// Lowercase hex SHA-256 (all 64 hex digits) of [`Function::problem`].
    pub hash: String,
    /// The values the function's own `return` statements give whose kind the syntax shows
    /// ([`returned_values`]); empty for a generator. Not part of [`Function::hash`].
    #[serde(default)]
    pub returns: Vec<Returned>,
}

/// A kind of value that an expression plainly has, whatever its inputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ValueKind {
    Int,
    Float,
    /// A true division (`a / b`) or a `round` to some digits: a float whenever its inputs are
    /// numbers, but `/` is also a path join.
    Quotient,
    Str,
    Bytes,
    Bool,
    None,
    List,
    Tuple,
    Set,
    Dict,
}

/// A value a `return` statement gives.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Returned {
    pub kind: ValueKind,
    /// The returned expression as written (`None` for a bare `return`).
    pub text: String,
    /// For a local name, the assignment that gives it its kind (`hours = minutes / 60`).
    pub binding: Option<String>,
    /// 0-based line of the `return` statement.
    pub line: u32,
}

impl Function {
    /// The exact text the model sees: the signature and, if any, the docstring re-indented by 4 spaces.
    pub fn problem(&self) -> String {
        render_problem(
            &self.signature,
            self.docstring.as_ref().map(|d| d.text.as_str()),
        )
    }
}

/// The result of [`extract`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ParsedFile {
    /// All functions and methods, in source order (by start of `def_span`).
    pub functions: Vec<Function>,
    /// The file opens with a `# clarify: ignore-file` comment (before the first statement).
    pub ignore_file: bool,
    /// tree-sitter found syntax errors, or indentation that Python refuses and tree-sitter
    /// accepts (an unexpected indent, a dedent to no outer level, tabs and spaces mixed).
    pub has_syntax_errors: bool,
    /// Spans of the outermost error regions and of missing tokens (zero width).
    pub syntax_errors: Vec<Span>,
    /// Every syntax error is indentation Python refuses (an `IndentationError` or `TabError`):
    /// the tree itself had none, so every function was found as Python would read it.
    pub indentation_only: bool,
}

/// Renders the model's view of a function from its signature and cleaned docstring text.
///
/// This is the contract behind [`Function::problem`]: `signature + "\n"`, then, with a
/// docstring, `    """` + text (lines after the first indented by 4 spaces, empty lines
/// left empty) + (`"\n    "` when multi-line) + `"""\n`. A `"""` inside the text is
/// written `\"\"\"` and a final `"` or `\` is escaped with a backslash.
pub fn render_problem(signature: &str, docstring: Option<&str>) -> String {
    let mut out = String::with_capacity(signature.len() + docstring.map_or(0, str::len) + 32);
    out.push_str(signature);
    out.push('\n');
    let Some(text) = docstring else {
        return out;
    };
    let escaped = escape_docstring_text(text);
    out.push_str("    \"\"\"");
    for (i, line) in escaped.split('\n').enumerate() {
        if i > 0 {
            out.push('\n');
            if !line.is_empty() {
                out.push_str("    ");
            }
        }
        out.push_str(line);
    }
    if text.contains('\n') {
        out.push_str("\n    ");
    }
    out.push_str("\"\"\"\n");
    out
}

fn escape_docstring_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        if rest.starts_with("\"\"\"") {
            out.push_str("\\\"\\\"\\\"");
            rest = &rest[3..];
            continue;
        }
        rest = &rest[c.len_utf8()..];
        if rest.is_empty() && (c == '"' || c == '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Python's `inspect.cleandoc()`: expand tabs to 8 columns, strip the first line's leading
/// whitespace, remove the common indentation of the other non-blank lines, and drop blank lines at
/// both ends (whitespace-only lines count as blank; CPython 3.11 keeps a trailing one).
pub fn cleandoc(doc: &str) -> String {
    let expanded = expand_tabs(doc);
    let mut lines: Vec<&str> = expanded.split('\n').collect();
    let mut margin = usize::MAX;
    for line in &lines[1..] {
        let content = line.trim_start_matches(py_isspace).chars().count();
        if content > 0 {
            margin = margin.min(line.chars().count() - content);
        }
    }
    lines[0] = lines[0].trim_start_matches(py_isspace);
    if margin < usize::MAX {
        for line in &mut lines[1..] {
            *line = match line.char_indices().nth(margin) {
                Some((i, _)) => &line[i..],
                None => "",
            };
        }
    }
    // Unlike CPython 3.11 (like the docstrings Python 3.13 compiles), whitespace-only lines at the
    // ends count as blank: `"""Summary.\n    """` is "Summary.".
    let blank = |l: &&str| l.chars().all(py_isspace);
    while lines.last().is_some_and(&blank) {
        lines.pop();
    }
    let first = lines.iter().position(|l| !blank(l)).unwrap_or(lines.len());
    lines[first..].join("\n")
}

/// Python's `str.isspace()` for one character.
fn py_isspace(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// Python's `str.expandtabs(8)`: the column restarts after `\n` and `\r`.
fn expand_tabs(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut col = 0usize;
    for c in s.chars() {
        match c {
            '\t' => {
                let n = 8 - col % 8;
                out.extend(std::iter::repeat_n(' ', n));
                col += n;
            }
            '\n' | '\r' => {
                out.push(c);
                col = 0;
            }
            _ => {
                out.push(c);
                col += 1;
            }
        }
    }
    out
}

/// Converts `\r\n` and lone `\r` to `\n`, as Python's tokenizer does.
fn normalize_newlines(s: &str) -> String {
    if !s.contains('\r') {
        return s.to_owned();
    }
    s.replace("\r\n", "\n").replace('\r', "\n")
}

/// Position of a byte offset in `source` (clamped to the text length and to a char boundary).
pub fn position_at(source: &str, byte: usize) -> Position {
    let byte = floor_char_boundary(source, byte);
    let bytes = source.as_bytes();
    // Line ends as [`extract`] counts them: `\n`, and `\r` where no `\n` follows.
    let ends = (0..byte)
        .filter(|&i| bytes[i] == b'\n' || (bytes[i] == b'\r' && bytes.get(i + 1) != Some(&b'\n')));
    let (line, line_start) = ends.fold((0, 0), |(n, _), i| (n + 1, i + 1));
    Position {
        byte,
        line: to_u32(line),
        utf8_col: to_u32(byte - line_start),
        utf16_col: to_u32(utf16_len(&source[line_start..byte])),
    }
}

fn to_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

fn utf16_len(s: &str) -> usize {
    if s.is_ascii() {
        s.len()
    } else {
        s.chars().map(char::len_utf16).sum()
    }
}

fn floor_char_boundary(s: &str, byte: usize) -> usize {
    let mut b = byte.min(s.len());
    while !s.is_char_boundary(b) {
        b -= 1;
    }
    b
}

/// `&s[start..end]`, clamped to char boundaries; never panics.
fn slice(s: &str, start: usize, end: usize) -> &str {
    let end = floor_char_boundary(s, end);
    let start = floor_char_boundary(s, start.min(end));
    &s[start..end]
}

/// Fast byte offset → [`Position`] conversion for one text.
struct LineIndex<'a> {
    source: &'a str,
    line_starts: Vec<usize>,
}

impl<'a> LineIndex<'a> {
    fn new(source: &'a str) -> Self {
        let mut line_starts = vec![0];
        line_starts.extend(
            source
                .bytes()
                .enumerate()
                .filter(|&(_, b)| b == b'\n')
                .map(|(i, _)| i + 1),
        );
        LineIndex {
            source,
            line_starts,
        }
    }

    fn line_of(&self, byte: usize) -> usize {
        self.line_starts.partition_point(|&s| s <= byte) - 1
    }

    fn line_start(&self, line: usize) -> usize {
        self.line_starts[line]
    }

    fn position(&self, byte: usize) -> Position {
        let byte = floor_char_boundary(self.source, byte);
        let line = self.line_of(byte);
        let start = self.line_starts[line];
        Position {
            byte,
            line: to_u32(line),
            utf8_col: to_u32(byte - start),
            utf16_col: to_u32(utf16_len(&self.source[start..byte])),
        }
    }

    fn span(&self, start: usize, end: usize) -> Span {
        Span {
            start: self.position(start),
            end: self.position(end.max(start)),
        }
    }

    fn node_span(&self, node: Node) -> Span {
        self.span(node.start_byte(), node.end_byte())
    }

    /// Leading spaces, tabs and form feeds of the line containing `byte`.
    fn leading_whitespace(&self, byte: usize) -> &'a str {
        let start = self.line_start(self.line_of(floor_char_boundary(self.source, byte)));
        let rest = &self.source[start..];
        let len = rest
            .bytes()
            .take_while(|b| matches!(b, b' ' | b'\t' | b'\x0c'))
            .count();
        &rest[..len]
    }
}

/// A `# clarify: ...` pragma found in a comment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pragma {
    Ignore,
    IgnoreFile,
}

/// Finds the pragmas in a comment's text; spacing around `#`, `:` and `-` is free.
fn pragmas(comment: &str) -> impl Iterator<Item = Pragma> + '_ {
    comment
        .match_indices('#')
        .filter_map(|(i, _)| parse_pragma(&comment[i + 1..]))
}

fn parse_pragma(s: &str) -> Option<Pragma> {
    fn is_word(c: char) -> bool {
        c.is_alphanumeric() || c == '_' || c == '-'
    }
    let s = s.trim_start().strip_prefix("clarify")?;
    let s = s.trim_start().strip_prefix(':')?;
    let s = s.trim_start().strip_prefix("ignore")?;
    let after = s.trim_start();
    if let Some(rest) = after.strip_prefix('-') {
        let rest = rest.trim_start().strip_prefix("file")?;
        return match rest.chars().next() {
            Some(c) if is_word(c) => None,
            _ => Some(Pragma::IgnoreFile),
        };
    }
    match s.chars().next() {
        Some(c) if is_word(c) => None,
        _ => Some(Pragma::Ignore),
    }
}

/// Parses `source` and extracts every function. Never fails: files with syntax errors yield whatever tree-sitter recovered.
///
/// When an error region swallows later definitions (an unclosed bracket, say), the region is
/// blanked up to the next line that starts a `def`/`class`/decorator and the text is parsed
/// again, so that the functions after a broken one are still found.
///
/// Lines end at `\n`, and at a `\r` that no `\n` follows, as Python and the LSP read them (a file
/// saved with old Mac line ends is all `\r`); tree-sitter's grammar knows only `\n`, so such a
/// text is read from a copy with `\n` in place of each lone `\r`. The copy has the same length,
/// so every byte offset still points at the same place of `source`.
pub fn extract(source: &str) -> ParsedFile {
    let Some(text) = with_lone_cr_as_lf(source) else {
        return extract_lines(source);
    };
    let mut parsed = extract_lines(&text);
    // `raw` is the source text as written.
    for doc in parsed
        .functions
        .iter_mut()
        .filter_map(|f| f.docstring.as_mut())
    {
        doc.raw = source[doc.span.start.byte..doc.span.end.byte].to_owned();
    }
    parsed
}

/// `source` with each `\r` that no `\n` follows replaced by `\n`, or `None` when it has none.
fn with_lone_cr_as_lf(source: &str) -> Option<String> {
    let bytes = source.as_bytes();
    let lone = |i: usize| bytes[i] == b'\r' && bytes.get(i + 1) != Some(&b'\n');
    if !(0..bytes.len()).any(lone) {
        return None;
    }
    let replaced: Vec<u8> = (0..bytes.len())
        .map(|i| if lone(i) { b'\n' } else { bytes[i] })
        .collect();
    // One ASCII byte for another: still UTF-8.
    String::from_utf8(replaced).ok()
}

fn extract_lines(source: &str) -> ParsedFile {
    let index = LineIndex::new(source);
    let mut parser = Parser::new();
    let tree = parser
        .set_language(&tree_sitter_python::LANGUAGE.into())
        .ok()
        .and_then(|()| parser.parse(source, None));
    let Some(tree) = tree else {
        return ParsedFile {
            functions: Vec::new(),
            ignore_file: false,
            has_syntax_errors: true,
            syntax_errors: vec![index.span(0, source.len())],
            indentation_only: false,
        };
    };
    let root = tree.root_node();
    let scan = Scan::new(root, &index);

    let mut root_cursor = root.walk();
    // The module docstring may come before the pragma too.
    let first_statement = root
        .named_children(&mut root_cursor)
        .filter(|n| n.kind() != "comment")
        .enumerate()
        .find(|(i, n)| {
            let docstring = n.kind() == "expression_statement"
                && n.named_child_count() == 1
                && n.named_child(0).is_some_and(|c| c.kind() == "string");
            !(*i == 0 && docstring)
        })
        .map_or(usize::MAX, |(_, n)| n.start_byte());
    let ignore_file = scan.comments.iter().any(|c| {
        c.start_byte() < first_statement
            && pragmas(node_text(source, *c)).any(|p| p == Pragma::IgnoreFile)
    });
    let mut ignored_lines = BTreeSet::new();
    scan.add_ignored_lines(source, &index, &mut ignored_lines);

    // Judged only on a tree without errors, which tree-sitter's recovery has not reshaped.
    let indentation = match !root.has_error() && tree_nests_as_python(source) {
        true => scan.indentation.clone(),
        false => Vec::new(),
    };
    let indentation_only = !indentation.is_empty();
    let has_syntax_errors = root.has_error() || indentation_only;
    let syntax_errors = outermost([scan.errors.clone(), indentation].concat())
        .into_iter()
        .map(|(s, e)| index.span(s, e))
        .collect();
    let mut functions: Vec<Function> = scan
        .defs
        .iter()
        .filter_map(|def| function(source, &index, *def, &ignored_lines))
        .collect();
    if root.has_error() {
        recover(
            &mut parser,
            source,
            &index,
            &scan,
            &mut functions,
            &mut ignored_lines,
        );
    }
    functions.sort_by_key(|f| f.def_span.start.byte);

    ParsedFile {
        functions,
        ignore_file,
        has_syntax_errors,
        syntax_errors,
        indentation_only,
    }
}

/// At most this many extra parses are spent on recovering from syntax errors.
const MAX_RECOVERY_PASSES: usize = 16;

/// Re-parses `source` with error regions blanked so that definitions swallowed by them are found.
fn recover(
    parser: &mut Parser,
    source: &str,
    index: &LineIndex,
    first: &Scan,
    functions: &mut Vec<Function>,
    ignored_lines: &mut BTreeSet<usize>,
) {
    let mut masked = source.as_bytes().to_vec();
    let mut errors = outermost(first.errors.clone());
    for _ in 0..MAX_RECOVERY_PASSES {
        let found_lines: BTreeSet<usize> = functions
            .iter()
            .flat_map(|f| [f.def_span.start.line, f.decorated_span.start.line])
            .map(|l| l as usize)
            .collect();
        let mut changed = false;
        for &(start, end) in &errors {
            let first_line = index.line_of(start);
            let mut candidates = (first_line + 1..index.line_starts.len())
                .map(|line| (line, index.line_start(line)))
                .take_while(|&(_, line_start)| line_start < end)
                .filter(|&(line, line_start)| {
                    !found_lines.contains(&line) && starts_definition(&source[line_start..])
                })
                .peekable();
            let Some(&(_, first_candidate)) = candidates.peek() else {
                continue;
            };
            // Blank the broken lines up to a definition but keep class headers, so that the
            // methods after the error keep their class; blank everything if that is not enough.
            let broken_lines = |candidate_line: usize, candidate_start: usize| {
                (first_line..candidate_line)
                    .filter(|&line| !starts_class(&source[index.line_start(line)..]))
                    .map(move |line| {
                        start.max(index.line_start(line))
                            ..index.line_start(line + 1).min(candidate_start)
                    })
            };
            let keeping_classes = candidates.find(|&(line, line_start)| {
                broken_lines(line, line_start).any(|range| needs_blanking(&masked[range]))
            });
            match keeping_classes {
                Some((line, line_start)) => {
                    for range in broken_lines(line, line_start) {
                        changed |= blank(&mut masked[range]);
                    }
                }
                None => changed |= blank(&mut masked[start.min(first_candidate)..first_candidate]),
            }
        }
        if !changed {
            return;
        }
        let Ok(text) = std::str::from_utf8(&masked) else {
            return;
        };
        let Some(tree) = parser.parse(text, None) else {
            return;
        };
        let scan = Scan::new(tree.root_node(), index);
        scan.add_ignored_lines(text, index, ignored_lines);
        let known: BTreeSet<usize> = functions.iter().map(|f| f.def_span.start.byte).collect();
        functions.extend(
            scan.defs
                .iter()
                .filter(|def| !known.contains(&def.start_byte()))
                .filter_map(|def| function(text, index, *def, ignored_lines)),
        );
        if !tree.root_node().has_error() {
            return;
        }
        errors = outermost(scan.errors);
    }
}

/// Whether [`blank`] would change anything.
fn needs_blanking(bytes: &[u8]) -> bool {
    bytes.iter().any(|b| !matches!(b, b'\n' | b' '))
}

/// Replaces everything but newlines with spaces; returns whether anything changed.
fn blank(bytes: &mut [u8]) -> bool {
    let changed = needs_blanking(bytes);
    for b in bytes {
        if *b != b'\n' {
            *b = b' ';
        }
    }
    changed
}

/// Whether a line starts (after indentation) with `class`.
fn starts_class(line: &str) -> bool {
    let line = line.trim_start_matches([' ', '\t', '\x0c']);
    line.strip_prefix("class")
        .is_some_and(|rest| rest.starts_with([' ', '\t', '\x0c']))
}

/// Whether a line starts (after indentation) with `def`, `async def`, `class` or a decorator.
fn starts_definition(line: &str) -> bool {
    fn keyword<'a>(s: &'a str, kw: &str) -> Option<&'a str> {
        let rest = s.strip_prefix(kw)?;
        let trimmed = rest.trim_start_matches([' ', '\t', '\x0c']);
        (trimmed.len() < rest.len()).then_some(trimmed)
    }
    let line = line.trim_start_matches([' ', '\t', '\x0c']);
    line.starts_with('@')
        || keyword(line, "def").is_some()
        || keyword(line, "class").is_some()
        || keyword(line, "async").is_some_and(|rest| keyword(rest, "def").is_some())
}

/// Keeps only the regions not contained in another one (input: any order).
fn outermost(mut regions: Vec<(usize, usize)>) -> Vec<(usize, usize)> {
    regions.sort_by_key(|&(s, e)| (s, std::cmp::Reverse(e)));
    let mut outer: Vec<(usize, usize)> = Vec::new();
    for (s, e) in regions {
        let covered = outer
            .last()
            .is_some_and(|&(ps, pe)| (ps, pe) == (s, e) || (s < pe && e <= pe));
        if !covered {
            outer.push((s, e));
        }
    }
    outer
}

/// The nodes of interest in one syntax tree.
struct Scan<'t> {
    defs: Vec<Node<'t>>,
    comments: Vec<Node<'t>>,
    /// Error regions and missing tokens (possibly nested).
    errors: Vec<(usize, usize)>,
    /// Indentation Python refuses and tree-sitter accepts: see [`indentation_errors`].
    indentation: Vec<(usize, usize)>,
}

impl<'t> Scan<'t> {
    /// Walks the whole tree iteratively (no recursion: trees can be deep).
    fn new(root: Node<'t>, index: &LineIndex) -> Self {
        let mut scan = Scan {
            defs: Vec::new(),
            comments: Vec::new(),
            errors: Vec::new(),
            indentation: Vec::new(),
        };
        let mut cursor = root.walk();
        loop {
            let node = cursor.node();
            match node.kind() {
                "function_definition" => scan.defs.push(node),
                "comment" => scan.comments.push(node),
                _ => {}
            }
            if node.is_error() || node.is_missing() {
                scan.errors.push((node.start_byte(), node.end_byte()));
            } else if node.has_error() {
                hidden_errors(node, index, &mut scan.errors);
            } else {
                indentation_errors(node, index, &mut scan.indentation);
            }
            if cursor.goto_first_child() {
                continue;
            }
            while !cursor.goto_next_sibling() {
                if !cursor.goto_parent() {
                    return scan;
                }
            }
        }
    }

    /// Adds the lines carrying a `# clarify: ignore` comment.
    fn add_ignored_lines(&self, source: &str, index: &LineIndex, lines: &mut BTreeSet<usize>) {
        for comment in &self.comments {
            if pragmas(node_text(source, *comment)).any(|p| p == Pragma::Ignore) {
                lines.insert(index.line_of(comment.start_byte()));
            }
        }
    }
}

/// Locates the errors of a node whose error is invisible: a missing hidden token such as a
/// newline, which tree-sitter's API does not expose. Nothing when a visible child has the error.
fn hidden_errors(node: Node, index: &LineIndex, errors: &mut Vec<(usize, usize)>) {
    let mut cursor = node.walk();
    let children: Vec<Node> = node.children(&mut cursor).collect();
    if children
        .iter()
        .any(|c| c.has_error() || c.is_error() || c.is_missing())
    {
        return;
    }
    let found = errors.len();
    if matches!(node.kind(), "module" | "block") {
        // Most likely a missing newline between two statements on one line.
        let code: Vec<&Node> = children.iter().filter(|c| c.kind() != "comment").collect();
        for pair in code.windows(2) {
            let (prev, next) = (pair[0], pair[1]);
            let same_line = index.line_of(prev.end_byte()) == index.line_of(next.start_byte());
            let compound = !matches!(
                next.kind(),
                "expression_statement"
                    | "return_statement"
                    | "pass_statement"
                    | "break_statement"
                    | "continue_statement"
                    | "import_statement"
                    | "import_from_statement"
                    | "future_import_statement"
                    | "raise_statement"
                    | "global_statement"
                    | "nonlocal_statement"
                    | "assert_statement"
                    | "delete_statement"
                    | "print_statement"
                    | "exec_statement"
                    | "type_alias_statement"
                    | ";"
            );
            if same_line && next.kind() != ";" && (prev.kind() != ";" || compound) {
                errors.push((next.start_byte(), next.start_byte()));
            }
        }
    }
    if errors.len() == found {
        errors.push((node.start_byte(), node.end_byte()));
    }
}

/// Whether tree-sitter's scanner measures every line's indentation as Python does, so that its
/// tree nests statements as Python would: it counts a tab as 8 columns where Python moves to
/// the next multiple of 8, and it goes on counting past a line that holds only a backslash.
/// Where it does not, [`indentation_errors`] are not reported.
fn tree_nests_as_python(source: &str) -> bool {
    source.split('\n').all(|line| {
        let (mut python, mut scanner) = (0u32, 0u32);
        for (i, b) in line.bytes().enumerate() {
            match b {
                b' ' => (python, scanner) = (python + 1, scanner + 1),
                b'\t' => (python, scanner) = ((python / 8 + 1) * 8, scanner + 8),
                b'\x0c' => (python, scanner) = (0, 0),
                b'\\' if line[i + 1..].trim_end_matches('\r').is_empty() => return false,
                _ => break,
            }
        }
        python == scanner
    })
}

/// The indentation of one line as Python's tokenizer measures it: the column with tabs to the
/// next multiple of 8, and the column with a tab as one space (both must agree, or it is a
/// `TabError`). A form feed starts the count again.
fn indent_of_line(index: &LineIndex, line: usize) -> (u32, u32) {
    let start = index.line_start(line);
    let (mut col, mut alt) = (0u32, 0u32);
    for b in index.source[start..].bytes() {
        match b {
            b' ' => (col, alt) = (col + 1, alt + 1),
            b'\t' => (col, alt) = ((col / 8 + 1) * 8, alt + 1),
            b'\x0c' => (col, alt) = (0, 0),
            _ => break,
        }
    }
    (col, alt)
}

/// The indentation of the logical line `node` begins, or `None` when it does not begin one
/// (something precedes it on its line, or the line above ends with a backslash).
fn statement_indent(index: &LineIndex, node: Node) -> Option<(u32, u32)> {
    let line = index.line_of(node.start_byte());
    let start = index.line_start(line);
    let before = index.source.get(start..node.start_byte())?;
    if !before.bytes().all(|b| matches!(b, b' ' | b'\t' | b'\x0c')) {
        return None;
    }
    if line > 0 {
        let above = &index.source[index.line_start(line - 1)..start];
        if above.trim_end_matches(['\n', '\r']).ends_with('\\') {
            return None;
        }
    }
    Some(indent_of_line(index, line))
}

/// Adds the statements of `node` (free of errors) that Python would refuse for their
/// indentation alone (`IndentationError`, `TabError`), as the span of that indentation.
///
/// tree-sitter's scanner ignores an indent where no block may open and closes blocks on any
/// dedent, so such a statement parses without error, but at a column its siblings do not share:
/// a module's statements start at column 0, a block's at one column deeper than its header, and
/// `elif`/`else`/`except`/`finally` and a decorated definition at their statement's column.
fn indentation_errors(node: Node, index: &LineIndex, errors: &mut Vec<(usize, usize)>) {
    let mut refuse = |child: Node| {
        let start = index.line_start(index.line_of(child.start_byte()));
        errors.push((start, child.start_byte()));
    };
    let header = |n: Node| indent_of_line(index, index.line_of(n.start_byte()));
    match node.kind() {
        "module" => {
            for child in code_children(node).filter(|c| c.kind() != "line_continuation") {
                if statement_indent(index, child).is_some_and(|i| i != (0, 0)) {
                    refuse(child);
                }
            }
        }
        "block" => {
            let Some(parent) = node.parent() else {
                return;
            };
            let mut statements = code_children(node).filter(|c| c.kind() != "line_continuation");
            let Some(first) = statements.next() else {
                // A header with no statement indented under it.
                errors.push((node.start_byte(), node.start_byte()));
                return;
            };
            let (col, alt) = header(parent);
            let mut expected = None;
            for child in std::iter::once(first).chain(statements) {
                let Some(indent) = statement_indent(index, child) else {
                    continue;
                };
                let expected = *expected.get_or_insert(indent);
                if indent != expected || indent.0 <= col || indent.1 <= alt {
                    refuse(child);
                }
            }
        }
        "elif_clause"
        | "else_clause"
        | "except_clause"
        | "except_group_clause"
        | "finally_clause" => {
            let Some(parent) = node.parent() else {
                return;
            };
            if statement_indent(index, node).is_some_and(|i| i != header(parent)) {
                refuse(node);
            }
        }
        "decorated_definition" => {
            if let Some(definition) = node.child_by_field_name("definition") {
                if statement_indent(index, definition).is_some_and(|i| i != header(node)) {
                    refuse(definition);
                }
            }
        }
        _ => {}
    }
}

fn node_text<'a>(source: &'a str, node: Node) -> &'a str {
    slice(source, node.start_byte(), node.end_byte())
}

/// Named children of `node` that are not comments.
fn code_children(node: Node<'_>) -> impl Iterator<Item = Node<'_>> {
    let mut cursor = node.walk();
    let children: Vec<Node<'_>> = node
        .named_children(&mut cursor)
        .filter(|n| n.kind() != "comment")
        .collect();
    children.into_iter()
}

fn function(
    source: &str,
    index: &LineIndex,
    def: Node,
    ignored_lines: &BTreeSet<usize>,
) -> Option<Function> {
    let name_node = def.child_by_field_name("name")?;
    if name_node.is_missing() || name_node.start_byte() >= name_node.end_byte() {
        return None;
    }
    let name = node_text(source, name_node).to_owned();

    let mut cursor = def.walk();
    let children: Vec<Node> = def.children(&mut cursor).collect();
    let is_async = children.first().is_some_and(|n| n.kind() == "async");
    let start = def.start_byte();
    let header_end = children
        .iter()
        .find(|n| n.kind() == ":")
        .map(|n| n.end_byte())
        .or_else(|| {
            ["name", "type_parameters", "parameters", "return_type"]
                .iter()
                .filter_map(|f| def.child_by_field_name(f))
                .map(|n| n.end_byte())
                .max()
        })
        .unwrap_or(def.end_byte())
        .max(start);

    let def_line = index.line_of(start);
    let indent = index.leading_whitespace(start).to_owned();
    let signature = dedent(
        &normalize_newlines(slice(source, start, header_end)),
        &indent,
    );

    let body_node = def.child_by_field_name("body");
    let body = match body_node {
        Some(b) => index.node_span(b),
        None => index.span(header_end, header_end),
    };
    let first_stmt = body_node.and_then(|b| code_children(b).next());
    let header_end_line = index.line_of(header_end);
    let body_indent = match first_stmt {
        Some(stmt) if index.line_of(stmt.start_byte()) > header_end_line => {
            index.leading_whitespace(stmt.start_byte()).to_owned()
        }
        _ => format!("{indent}    "),
    };
    let docstring = first_stmt.and_then(|stmt| docstring(source, index, stmt));

    let mut qual = vec![name.clone()];
    let mut ancestor = def.parent();
    while let Some(a) = ancestor {
        if matches!(a.kind(), "function_definition" | "class_definition") {
            let n = a
                .child_by_field_name("name")
                .map_or("", |n| node_text(source, n));
            qual.push(n.to_owned());
        }
        ancestor = a.parent();
    }
    qual.reverse();
    let qualname = qual.join(".");

    let decorated = def
        .parent()
        .filter(|p| p.kind() == "decorated_definition")
        .filter(|p| p.child_by_field_name("definition") == Some(def));
    let container = decorated.unwrap_or(def).parent();
    let is_method = container.is_some_and(|b| {
        b.kind() == "block" && b.parent().is_some_and(|c| c.kind() == "class_definition")
    });
    let def_span = index.node_span(def);
    let decorated_span = decorated.map_or(def_span, |d| index.node_span(d));

    let mut function = Function {
        name,
        qualname,
        is_async,
        is_method,
        signature,
        def_span,
        name_span: index.node_span(name_node),
        header_span: index.span(start, header_end),
        decorated_span,
        docstring,
        body,
        indent,
        body_indent,
        // On the `def` line, a decorator's or any line of the signature.
        ignored: ignored_lines
            .range((decorated_span.start.line as usize).min(def_line)..=index.line_of(header_end))
            .next()
            .is_some(),
        hash: String::new(),
        returns: body_node.map_or_else(Vec::new, |b| returned_values(source, index, def, b)),
    };
    function.hash = hex_sha256(&function.problem());
    Some(function)
}

/// The nodes of a function's own scope: its body without nested functions, classes, lambdas and
/// comprehensions (which have scopes of their own).
fn own_scope(body: Node<'_>) -> Vec<Node<'_>> {
    let mut out = Vec::new();
    let mut stack = vec![body];
    while let Some(node) = stack.pop() {
        out.push(node);
        let mut cursor = node.walk();
        for child in node.named_children(&mut cursor) {
            if !matches!(
                child.kind(),
                "function_definition"
                    | "class_definition"
                    | "decorated_definition"
                    | "lambda"
                    | "list_comprehension"
                    | "set_comprehension"
                    | "dictionary_comprehension"
                    | "generator_expression"
            ) {
                stack.push(child);
            }
        }
    }
    out
}

/// The values of a function's own `return` statements whose kind the syntax shows: literals,
/// displays, comparisons, a few builtins (`len`, `str`, `sorted`…) and string methods, and a local
/// name every assignment of which gives one kind. Nothing for a generator.
fn returned_values(source: &str, index: &LineIndex, def: Node, body: Node) -> Vec<Returned> {
    let scope = own_scope(body);
    if scope.iter().any(|n| matches!(n.kind(), "yield")) {
        return Vec::new();
    }
    let parameters: Vec<&str> = def
        .child_by_field_name("parameters")
        .map(|p| {
            let mut names = Vec::new();
            let mut stack = vec![p];
            while let Some(n) = stack.pop() {
                if n.kind() == "identifier" {
                    names.push(node_text(source, n));
                }
                // A default value or an annotation names no parameter.
                let mut cursor = n.walk();
                for (i, child) in n.children(&mut cursor).enumerate() {
                    let field = n.field_name_for_child(i as u32);
                    if !matches!(field, Some("value" | "type")) {
                        stack.push(child);
                    }
                }
            }
            names
        })
        .unwrap_or_default();
    let mut out = Vec::new();
    for ret in scope.iter().filter(|n| n.kind() == "return_statement") {
        let line = index.line_of(ret.start_byte()) as u32;
        let Some(value) = code_children(*ret).next() else {
            out.push(Returned {
                kind: ValueKind::None,
                text: "None".into(),
                binding: None,
                line,
            });
            continue;
        };
        let text = node_text(source, value);
        let found = match value_kind(source, value) {
            Some(kind) => Some((kind, None)),
            None if value.kind() == "identifier" && !parameters.contains(&text) => {
                local_kind(source, &scope, text).map(|(kind, binding)| (kind, Some(binding)))
            }
            None => None,
        };
        if let Some((kind, binding)) = found {
            out.push(Returned {
                kind,
                text: text.to_owned(),
                binding,
                line,
            });
        }
    }
    out
}

/// The kind of a local name that is bound only by plain assignments (`x = …`) that all give
/// the same kind, with the assignment's text; `None` when anything else binds it.
fn local_kind(source: &str, scope: &[Node], name: &str) -> Option<(ValueKind, String)> {
    let mut kind = None;
    let mut text = String::new();
    for node in scope.iter().filter(|n| n.kind() == "identifier") {
        if node_text(source, *node) != name {
            continue;
        }
        let Some(parent) = node.parent() else {
            continue;
        };
        let is_left = |field: &str| parent.child_by_field_name(field) == Some(*node);
        match parent.kind() {
            "assignment" if is_left("left") => {
                // `x: int` alone binds nothing the code returns.
                let value = parent.child_by_field_name("right")?;
                let k = value_kind(source, value)?;
                if kind.is_some_and(|seen| seen != k) {
                    return None;
                }
                kind = Some(k);
                text = node_text(source, parent).to_owned();
            }
            "augmented_assignment" if is_left("left") => return None,
            "for_statement" | "for_in_clause" | "named_expression" | "pattern_list"
            | "tuple_pattern" | "list_pattern" | "as_pattern_target" | "as_pattern"
            | "global_statement" | "nonlocal_statement" | "dotted_name" | "aliased_import"
            | "delete_statement" | "case_pattern" | "keyword_pattern" | "splat_pattern"
            | "except_clause" => return None,
            _ => {}
        }
    }
    Some((kind?, text))
}

/// The kind an expression plainly has, if any.
fn value_kind(source: &str, node: Node) -> Option<ValueKind> {
    value_kind_within(source, node, VALUE_KIND_DEPTH)
}

/// How deep [`value_kind`] reads nested expressions: what people write is a few levels, and a
/// generated `((((…))))` thousands deep must not exhaust the stack (Python itself refuses 200).
const VALUE_KIND_DEPTH: usize = 64;

fn value_kind_within(source: &str, node: Node, depth: usize) -> Option<ValueKind> {
    let depth = depth.checked_sub(1)?;
    let value_kind = |node: Node| value_kind_within(source, node, depth);
    Some(match node.kind() {
        "integer" => ValueKind::Int,
        "float" => ValueKind::Float,
        "true" | "false" | "comparison_operator" | "not_operator" => ValueKind::Bool,
        "none" => ValueKind::None,
        "string" | "concatenated_string" => {
            let text = node_text(source, node);
            let prefix = &text[..text.find(['"', '\'']).unwrap_or(0)];
            if prefix.contains(['b', 'B']) {
                ValueKind::Bytes
            } else {
                ValueKind::Str
            }
        }
        "list" | "list_comprehension" => ValueKind::List,
        "tuple" | "expression_list" => ValueKind::Tuple,
        "set" | "set_comprehension" => ValueKind::Set,
        "dictionary" | "dictionary_comprehension" => ValueKind::Dict,
        "parenthesized_expression" => value_kind(code_children(node).next()?)?,
        "unary_operator" => match value_kind(node.child_by_field_name("argument")?)? {
            k @ (ValueKind::Int | ValueKind::Float) => k,
            _ => return None,
        },
        "binary_operator" => {
            let op = node.child_by_field_name("operator")?;
            match node_text(source, op) {
                "/" => ValueKind::Quotient,
                _ => return None,
            }
        }
        "call" => {
            let function = node.child_by_field_name("function")?;
            let arguments = node.child_by_field_name("arguments")?;
            let count = code_children(arguments).count();
            match function.kind() {
                "identifier" => match node_text(source, function) {
                    "str" | "repr" => ValueKind::Str,
                    "len" | "int" => ValueKind::Int,
                    "float" => ValueKind::Float,
                    "bool" => ValueKind::Bool,
                    "sorted" | "list" => ValueKind::List,
                    "tuple" => ValueKind::Tuple,
                    "set" | "frozenset" => ValueKind::Set,
                    "dict" => ValueKind::Dict,
                    "round" if count == 2 => ValueKind::Quotient,
                    "round" if count == 1 => ValueKind::Int,
                    _ => return None,
                },
                "attribute" => {
                    let method = function.child_by_field_name("attribute")?;
                    let object = function.child_by_field_name("object")?;
                    // Read once: a chain of calls read twice per link takes 2^n steps.
                    let object_kind = value_kind(object);
                    let on_str = object_kind == Some(ValueKind::Str);
                    // `b"=".join(…)`, `data.rstrip(b"=")`: bytes have these methods too.
                    let bytes = object_kind == Some(ValueKind::Bytes)
                        || code_children(arguments)
                            .any(|a| value_kind(a) == Some(ValueKind::Bytes));
                    match node_text(source, method) {
                        _ if bytes => return None,
                        "strftime" | "isoformat" => ValueKind::Str,
                        "join" | "format" if on_str => ValueKind::Str,
                        "strip" | "lstrip" | "rstrip" | "lower" | "upper" | "title"
                        | "capitalize" | "casefold" | "zfill" => ValueKind::Str,
                        _ => return None,
                    }
                }
                _ => return None,
            }
        }
        _ => return None,
    })
}

/// Lowercase hex SHA-256 of a text.
pub(crate) fn hex_sha256(text: &str) -> String {
    let digest = Sha256::digest(text.as_bytes());
    let mut out = String::with_capacity(64);
    for b in digest {
        out.push(char::from(b"0123456789abcdef"[usize::from(b >> 4)]));
        out.push(char::from(b"0123456789abcdef"[usize::from(b & 15)]));
    }
    out
}

/// Removes `indent` from the start of every line after the first.
fn dedent(text: &str, indent: &str) -> String {
    if indent.is_empty() {
        return text.to_owned();
    }
    let mut out = String::with_capacity(text.len());
    for (i, line) in text.split('\n').enumerate() {
        if i > 0 {
            out.push('\n');
            out.push_str(line.strip_prefix(indent).unwrap_or(line));
        } else {
            out.push_str(line);
        }
    }
    out
}

/// The docstring, if `stmt` (a body's first statement) is a lone plain string literal, or
/// several written side by side (`"Return the " "total."`, which Python joins), in parentheses
/// or not.
fn docstring(source: &str, index: &LineIndex, stmt: Node) -> Option<Docstring> {
    if stmt.kind() != "expression_statement" {
        return None;
    }
    let mut cursor = stmt.walk();
    let mut parts = stmt.children(&mut cursor).filter(|n| n.kind() != "comment");
    let whole = parts.next()?;
    if parts.next().is_some() || whole.has_error() {
        return None;
    }
    // `(("doc"))` is a docstring too.
    let mut string = whole;
    while string.kind() == "parenthesized_expression" {
        let mut inner = code_children(string);
        string = inner.next()?;
        if inner.next().is_some() {
            return None;
        }
    }
    let literals: Vec<Node> = match string.kind() {
        "string" => vec![string],
        "concatenated_string" => code_children(string).collect(),
        _ => return None,
    };
    if literals.iter().any(|l| l.kind() != "string") {
        return None;
    }
    let mut value = String::new();
    let mut first = None;
    for node in &literals {
        let literal = parse_literal(node_text(source, *node))?;
        let body = normalize_newlines(literal.body);
        value += &if literal.is_raw {
            body
        } else {
            unescape(&body)
        };
        first.get_or_insert(literal);
    }
    let first = first?;
    Some(Docstring {
        text: cleandoc(&value),
        raw: node_text(source, whole).to_owned(),
        span: index.node_span(whole),
        quote: first.quote,
        prefix: first.prefix.to_owned(),
        literals: literals.len(),
    })
}

struct Literal<'a> {
    prefix: &'a str,
    quote: QuoteStyle,
    body: &'a str,
    is_raw: bool,
}

/// Splits a string literal into prefix, quotes and body; `None` for byte strings,
/// f-/t-strings, unknown prefixes and unterminated literals.
fn parse_literal(raw: &str) -> Option<Literal<'_>> {
    let prefix_len = raw.find(['"', '\''])?;
    let prefix = &raw[..prefix_len];
    let lower = prefix.to_ascii_lowercase();
    let is_raw = match lower.as_str() {
        "" | "u" => false,
        "r" => true,
        _ => return None,
    };
    let rest = &raw[prefix_len..];
    let quote = if rest.starts_with("\"\"\"") {
        QuoteStyle::TripleDouble
    } else if rest.starts_with("'''") {
        QuoteStyle::TripleSingle
    } else if rest.starts_with('"') {
        QuoteStyle::Double
    } else {
        QuoteStyle::Single
    };
    let q = quote.as_str();
    if rest.len() < 2 * q.len() || !rest.ends_with(q) {
        return None;
    }
    let body = &rest[q.len()..rest.len() - q.len()];
    // The closing quote must not be escaped (an unterminated literal that ends in `\"`).
    let backslashes = body.bytes().rev().take_while(|&b| b == b'\\').count();
    if backslashes % 2 == 1 {
        return None;
    }
    Some(Literal {
        prefix,
        quote,
        body,
        is_raw,
    })
}

/// Processes the escape sequences of a non-raw string; invalid or unsupported
/// escapes (such as `\N{...}`) are left as written.
fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(pos) = rest.find('\\') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        let Some(c) = after.chars().next() else {
            out.push('\\');
            rest = after;
            break;
        };
        let simple = match c {
            '\n' => Some(None),
            '\\' => Some(Some('\\')),
            '\'' => Some(Some('\'')),
            '"' => Some(Some('"')),
            'a' => Some(Some('\u{7}')),
            'b' => Some(Some('\u{8}')),
            'f' => Some(Some('\u{c}')),
            'n' => Some(Some('\n')),
            'r' => Some(Some('\r')),
            't' => Some(Some('\t')),
            'v' => Some(Some('\u{b}')),
            _ => None,
        };
        if let Some(replacement) = simple {
            out.extend(replacement);
            rest = &after[c.len_utf8()..];
            continue;
        }
        let (digits, radix, len) = match c {
            '0'..='7' => {
                let n = after
                    .bytes()
                    .take(3)
                    .take_while(|b| (b'0'..=b'7').contains(b))
                    .count();
                (&after[..n], 8, n)
            }
            'x' => (after.get(1..3).unwrap_or(""), 16, 3),
            'u' => (after.get(1..5).unwrap_or(""), 16, 5),
            'U' => (after.get(1..9).unwrap_or(""), 16, 9),
            _ => ("", 0, 0),
        };
        let expected = if radix == 8 { len } else { len - 1 };
        let decoded =
            (radix != 0 && digits.len() == expected && digits.chars().all(|d| d.is_digit(radix)))
                .then(|| u32::from_str_radix(digits, radix).ok())
                .flatten()
                .and_then(char::from_u32);
        match decoded {
            Some(ch) => {
                out.push(ch);
                rest = &after[len..];
            }
            None => {
                out.push('\\');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cleandoc_matches_python() {
        assert_eq!(cleandoc(""), "");
        assert_eq!(cleandoc("Foo."), "Foo.");
        assert_eq!(cleandoc("\n    Foo.\n\n    Bar.\n    "), "Foo.\n\nBar.");
        assert_eq!(cleandoc("Foo.\n    "), "Foo.");
        assert_eq!(cleandoc("  Foo.\n      a\n    b\n"), "Foo.\n  a\nb");
        assert_eq!(cleandoc("x\n\ta\n        b"), "x\na\nb");
        assert_eq!(cleandoc("x\n  \t a"), "x\na");
        assert_eq!(cleandoc("\n\n"), "");
        assert_eq!(cleandoc("é\n  ü\n   ö"), "é\nü\n ö");
    }

    #[test]
    fn unescape_sequences() {
        assert_eq!(unescape(r#"a\nb\tc\\d\'e\"f"#), "a\nb\tc\\d'e\"f");
        assert_eq!(unescape("a\\\nb"), "ab");
        assert_eq!(
            unescape(r"\d\w \N{DASH} \x4 \x41\u00e9\U0001F600\101\0"),
            "\\d\\w \\N{DASH} \\x4 Aé😀A\0"
        );
        assert_eq!(unescape("\\"), "\\");
        assert_eq!(unescape(r"\ud800"), r"\ud800");
    }

    #[test]
    fn literal_parsing() {
        let l = parse_literal("r'''x'''").unwrap();
        assert_eq!(
            (l.prefix, l.quote, l.body, l.is_raw),
            ("r", QuoteStyle::TripleSingle, "x", true)
        );
        assert!(parse_literal("b'x'").is_none());
        assert!(parse_literal("f'x'").is_none());
        assert!(parse_literal("Rb'x'").is_none());
        assert!(parse_literal("'x").is_none());
        assert!(parse_literal("'''x'").is_none());
        assert!(parse_literal("'x\\'").is_none());
        assert_eq!(parse_literal("''").unwrap().body, "");
        assert_eq!(parse_literal("\"\"\"\"\"\"").unwrap().body, "");
    }

    #[test]
    fn pragma_parsing() {
        assert_eq!(
            pragmas("# clarify: ignore").collect::<Vec<_>>(),
            [Pragma::Ignore]
        );
        assert_eq!(
            pragmas("#clarify:ignore").collect::<Vec<_>>(),
            [Pragma::Ignore]
        );
        assert_eq!(
            pragmas("#  clarify :  ignore  # more").collect::<Vec<_>>(),
            [Pragma::Ignore]
        );
        assert_eq!(
            pragmas("# noqa # clarify: ignore").collect::<Vec<_>>(),
            [Pragma::Ignore]
        );
        assert_eq!(
            pragmas("# clarify: ignore-file").collect::<Vec<_>>(),
            [Pragma::IgnoreFile]
        );
        assert_eq!(
            pragmas("#clarify:ignore - file").collect::<Vec<_>>(),
            [Pragma::IgnoreFile]
        );
        assert!(pragmas("# clarify: ignored").next().is_none());
        assert!(pragmas("# clarify: ignore-files").next().is_none());
        assert!(pragmas("# clarify: ignore-foo").next().is_none());
        assert!(pragmas("# clarify ignore").next().is_none());
    }

    #[test]
    fn a_return_nested_thousands_deep_is_read_without_exhausting_the_stack() {
        let n = 20_000;
        let source = format!(
            "def f(a):\n    \"\"\"Return it.\"\"\"\n    return {}1{}\n\n\ndef g():\n    \"\"\"Return two.\"\"\"\n    return ((2))\n",
            "(".repeat(n),
            ")".repeat(n)
        );
        let parsed = extract(&source);
        let names: Vec<&str> = parsed.functions.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["f", "g"]);
        assert!(parsed.functions[0].returns.is_empty());
        assert_eq!(parsed.functions[1].returns[0].kind, ValueKind::Int);
    }

    #[test]
    fn old_mac_line_ends_are_lines() {
        let source =
            "import os\r\rdef f(x):\r    \"\"\"Return x.\r\r    More.\r    \"\"\"\r    return x\r";
        let parsed = extract(source);
        assert!(!parsed.has_syntax_errors, "{:?}", parsed.syntax_errors);
        let [f] = parsed.functions.as_slice() else {
            panic!("{:?}", parsed.functions);
        };
        assert_eq!((f.name_span.start.line, f.name_span.start.utf8_col), (2, 4));
        let doc = f.docstring.as_ref().unwrap();
        assert_eq!(doc.text, "Return x.\n\nMore.");
        assert_eq!(doc.span.start.line, 3);
        // Byte offsets point into the text as given.
        assert_eq!(
            &source[doc.span.start.byte..doc.span.start.byte + 3],
            "\"\"\""
        );
        // A `\r` before `\n` still belongs to its line.
        assert!(with_lone_cr_as_lf("a\r\nb").is_none());
        assert_eq!(with_lone_cr_as_lf("a\r\r\nb\r").unwrap(), "a\n\r\nb\n");
    }

    #[test]
    fn positions() {
        let s = "a\r\n😀é\tx\n";
        assert_eq!(
            position_at(s, 0),
            Position {
                byte: 0,
                line: 0,
                utf8_col: 0,
                utf16_col: 0
            }
        );
        assert_eq!(
            position_at(s, 2),
            Position {
                byte: 2,
                line: 0,
                utf8_col: 2,
                utf16_col: 2
            }
        );
        assert_eq!(
            position_at(s, 3),
            Position {
                byte: 3,
                line: 1,
                utf8_col: 0,
                utf16_col: 0
            }
        );
        // Inside the emoji: clamped down to its start.
        assert_eq!(
            position_at(s, 5),
            Position {
                byte: 3,
                line: 1,
                utf8_col: 0,
                utf16_col: 0
            }
        );
        assert_eq!(
            position_at(s, 9),
            Position {
                byte: 9,
                line: 1,
                utf8_col: 6,
                utf16_col: 3
            }
        );
        assert_eq!(
            position_at(s, 100),
            Position {
                byte: 12,
                line: 2,
                utf8_col: 0,
                utf16_col: 0
            }
        );
        assert_eq!(
            position_at("", 5),
            Position {
                byte: 0,
                line: 0,
                utf8_col: 0,
                utf16_col: 0
            }
        );
        let index = LineIndex::new(s);
        for b in 0..=20 {
            assert_eq!(index.position(b), position_at(s, b), "byte {b}");
        }
    }

    #[test]
    fn escaping_in_problem() {
        assert_eq!(
            render_problem("def f():", Some("a\"")),
            "def f():\n    \"\"\"a\\\"\"\"\"\n"
        );
        assert_eq!(
            render_problem("def f():", Some("a\\")),
            "def f():\n    \"\"\"a\\\\\"\"\"\n"
        );
        assert_eq!(
            render_problem("def f():", Some("x\"\"\"\"")),
            "def f():\n    \"\"\"x\\\"\\\"\\\"\\\"\"\"\"\n"
        );
        assert_eq!(
            render_problem("def f():", Some("x\"\"\"")),
            "def f():\n    \"\"\"x\\\"\\\"\\\"\"\"\"\n"
        );
    }
}
