//! The text edits behind the code actions, as pure functions of the source text. Each returns a
//! byte range to replace and the new text; every edit is checked to leave a file that parses.

use clarifycoder_core::python::{self, Function, QuoteStyle};

/// Replace `start..end` (bytes) with `text`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Edit {
    /// First byte replaced.
    pub start: usize,
    /// One past the last byte replaced.
    pub end: usize,
    /// The replacement.
    pub text: String,
}

impl Edit {
    /// The source with this edit applied.
    pub fn apply(&self, source: &str) -> String {
        format!(
            "{}{}{}",
            &source[..self.start],
            self.text,
            &source[self.end..]
        )
    }
}

/// The heading of the section the Answer action adds to a docstring.
pub const SECTION: &str = "Clarifications:";

/// What the lines an edit adds end with: `\r\n` where the text has one, `\r` in a text of old
/// Mac line ends (no `\n` at all), `\n` otherwise.
fn newline_of(source: &str) -> &'static str {
    if source.contains("\r\n") {
        "\r\n"
    } else if source.contains('\r') && !source.contains('\n') {
        "\r"
    } else {
        "\n"
    }
}

/// Checks that an edit leaves no more syntax errors than there were.
fn still_parses(source: &str, edit: &Edit) -> Result<(), String> {
    let before = python::extract(source).syntax_errors.len();
    let after = python::extract(&edit.apply(source)).syntax_errors.len();
    if after > before {
        return Err("the edit would break the file's syntax".into());
    }
    Ok(())
}

/// Whether a function's body after its docstring is still to be written: nothing, `pass`, `...`,
/// or `raise NotImplementedError`, with comments and blank lines around them.
pub fn is_stub(source: &str, f: &Function) -> bool {
    let start = f
        .docstring
        .as_ref()
        .map_or(f.body.start.byte, |d| d.span.end.byte);
    let body = source.get(start..f.body.end.byte.max(start)).unwrap_or("");
    let statements: Vec<&str> = body
        .split(['\n', '\r'])
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .filter(|l| !l.is_empty())
        .collect();
    match statements.as_slice() {
        [] => true,
        [only] => {
            let s = only.trim_end_matches(';').trim();
            s == "pass" || s == "..." || s.starts_with("raise NotImplementedError")
        }
        _ => false,
    }
}

/// Adds a `Clarifications:` section with each question and an empty answer line to the
/// function's docstring, in its indentation and quote style (a one-line `"doc"` becomes a
/// triple-quoted docstring). An existing section is extended.
pub fn answer(source: &str, f: &Function, questions: &[String]) -> Result<Edit, String> {
    let doc = f
        .docstring
        .as_ref()
        .ok_or("the function has no docstring")?;
    if doc.literals > 1 || doc.raw.starts_with('(') {
        return Err("the docstring is written in parentheses or as several string literals; make it one plain string literal to add the answers".into());
    }
    let nl = newline_of(source);
    let raw = &source[doc.span.start.byte..doc.span.end.byte];
    let quote = doc.quote.as_str();
    let inner_start = doc.prefix.len() + quote.len();
    let inner = raw
        .get(inner_start..raw.len().saturating_sub(quote.len()))
        .ok_or("the docstring literal is malformed")?;
    let closing = match doc.quote {
        QuoteStyle::TripleDouble | QuoteStyle::Double => "\"\"\"",
        QuoteStyle::TripleSingle | QuoteStyle::Single => "'''",
    };
    let raw_string = doc.prefix.to_ascii_lowercase().contains('r');
    let escape = |q: &str| {
        let q = q.replace(['\r', '\n'], " ");
        let q = if raw_string {
            q
        } else {
            q.replace('\\', "\\\\")
        };
        // Raw strings cannot escape quotes; soften a closing sequence instead.
        if raw_string {
            q.replace(closing, &closing[..2])
        } else {
            q.replace(closing, &format!("\\{closing}"))
        }
    };
    let indent = &f.body_indent;
    let mut text = String::new();
    text.push_str(&doc.prefix);
    text.push_str(closing);
    text.push_str(inner.trim_end());
    if !inner.contains(SECTION) {
        text.push_str(nl);
        text.push_str(nl);
        text.push_str(indent);
        text.push_str(SECTION);
    }
    for q in questions {
        text.push_str(&format!("{nl}{indent}- Q: {}{nl}{indent}  A:", escape(q)));
    }
    text.push_str(nl);
    text.push_str(indent);
    text.push_str(closing);
    let edit = Edit {
        start: doc.span.start.byte,
        end: doc.span.end.byte,
        text,
    };
    still_parses(source, &edit)?;
    Ok(edit)
}

/// Where the line after the line end at `end` starts (`\n`, `\r\n` or a lone `\r`).
fn next_line(source: &str, end: usize) -> usize {
    let rest = &source[end.min(source.len())..];
    let len = if rest.starts_with("\r\n") {
        2
    } else {
        usize::from(rest.starts_with(['\n', '\r']))
    };
    end + len
}

/// Appends `# clarify: ignore` to the function's `def` line.
pub fn ignore_function(source: &str, f: &Function) -> Result<Edit, String> {
    // Where the line's end (`\n`, `\r\n` or a lone `\r`) starts.
    let end_of_line = |at: usize| {
        source[at..]
            .find(['\n', '\r'])
            .map_or(source.len(), |i| at + i)
    };
    let mut line_end = end_of_line(f.header_span.start.byte);
    // A comment cannot follow a line continuation: take the signature's next line (the pragma
    // counts on any of them).
    while source[..line_end].ends_with('\\') && line_end < f.header_span.end.byte {
        let next = next_line(source, line_end);
        line_end = end_of_line(next.min(source.len()));
    }
    let edit = Edit {
        start: line_end,
        end: line_end,
        text: "  # clarify: ignore".into(),
    };
    still_parses(source, &edit)?;
    Ok(edit)
}

/// Inserts `# clarify: ignore-file` as the first line (after a shebang or encoding line).
pub fn ignore_file(source: &str) -> Edit {
    let nl = newline_of(source);
    let mut at = 0;
    for _ in 0..2 {
        let rest = &source[at..];
        let line = rest.split(['\n', '\r']).next().unwrap_or_default();
        let is_header =
            line.starts_with("#!") || (line.starts_with('#') && line.contains("coding"));
        if is_header && rest.len() > line.len() {
            at = next_line(source, at + line.len());
        } else {
            break;
        }
    }
    Edit {
        start: at,
        end: at,
        text: format!("# clarify: ignore-file{nl}"),
    }
}

/// Replaces the function's body (after its docstring) with the body of generated code. The code
/// may be a whole function (its body is taken, its docstring dropped) or bare statements.
pub fn implementation(source: &str, f: &Function, code: &str) -> Result<Edit, String> {
    let nl = newline_of(source);
    let parsed = python::extract(code);
    let body_text = match parsed
        .functions
        .iter()
        .find(|g| g.name == f.name)
        .or(parsed.functions.first())
    {
        Some(g) => {
            let from = g
                .docstring
                .as_ref()
                .map(|d| d.span.end.byte)
                .unwrap_or(g.body.start.byte);
            let mut text = code[from..g.body.end.byte].to_string();
            if g.docstring.is_none() {
                // Keep the first statement's indentation for dedenting.
                text = format!("{}{text}", g.body_indent);
            }
            text
        }
        None => code.to_string(),
    };
    let body = reindent(&body_text, &f.body_indent, nl);
    if body.trim().is_empty() {
        return Err("the generated code has no body".into());
    }
    let start = match &f.docstring {
        Some(d) => d.span.end.byte,
        None => f.header_span.end.byte,
    };
    let edit = Edit {
        start,
        end: f.body.end.byte.max(start),
        text: format!("{nl}{body}"),
    };
    let after = edit.apply(source);
    let errors_after = python::extract(&after).syntax_errors.len();
    if errors_after > python::extract(source).syntax_errors.len() {
        return Err("the generated code does not parse; try again or write it yourself".into());
    }
    Ok(edit)
}

/// Dedents `text` by its common indentation, drops blank lines at both ends, and indents every
/// non-blank line with `indent`, joined with `nl` (no trailing newline).
fn reindent(text: &str, indent: &str, nl: &str) -> String {
    let lines: Vec<&str> = text.lines().map(|l| l.trim_end_matches('\r')).collect();
    let first = lines
        .iter()
        .position(|l| !l.trim().is_empty())
        .unwrap_or(lines.len());
    let last = lines
        .iter()
        .rposition(|l| !l.trim().is_empty())
        .map(|i| i + 1)
        .unwrap_or(first);
    let lines = &lines[first..last];
    let margin = lines
        .iter()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.len() - l.trim_start().len())
        .min()
        .unwrap_or(0);
    lines
        .iter()
        .map(|l| {
            if l.trim().is_empty() {
                String::new()
            } else {
                format!("{indent}{}", &l[margin.min(l.len())..])
            }
        })
        .collect::<Vec<_>>()
        .join(nl)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn first(source: &str) -> Function {
        python::extract(source)
            .functions
            .into_iter()
            .next()
            .unwrap()
    }

    fn qs(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn ignore_goes_after_a_line_continuation() {
        let src = "def f(x, \\\n      y):\n    \"\"\"Doc.\"\"\"\n    return x\n";
        let f = first(src);
        let out = ignore_function(src, &f).unwrap().apply(src);
        assert_eq!(
            out,
            "def f(x, \\\n      y):  # clarify: ignore\n    \"\"\"Doc.\"\"\"\n    return x\n"
        );
        assert!(python::extract(&out).functions[0].ignored, "{out}");
    }

    #[test]
    fn a_stub_is_a_body_still_to_be_written() {
        let stub = |body: &str| {
            is_stub(
                &format!("def f(x):\n    \"\"\"Doc.\"\"\"\n{body}"),
                &first(&format!("def f(x):\n    \"\"\"Doc.\"\"\"\n{body}")),
            )
        };
        for body in [
            "",
            "    pass\n",
            "    ...\n",
            "    # TODO\n    raise NotImplementedError(\"later\")\n",
        ] {
            assert!(stub(body), "{body:?}");
        }
        for body in [
            "    return x\n",
            "    pass\n    return x\n",
            "    x = \"#\"\n",
        ] {
            assert!(!stub(body), "{body:?}");
        }
        let no_docstring = "def f(x):\n    pass\n";
        assert!(is_stub(no_docstring, &first(no_docstring)));
    }

    #[test]
    fn answer_adds_a_section_in_the_docstring_style() {
        let src = "class C:\n    def f(self, x):\n        \"\"\"Sort x.\n\n        Somehow.\n        \"\"\"\n        return x\n";
        let f = first(src);
        let out = answer(src, &f, &qs(&["Ascending?", "What about ties?"]))
            .unwrap()
            .apply(src);
        assert_eq!(
            out,
            "class C:\n    def f(self, x):\n        \"\"\"Sort x.\n\n        Somehow.\n\n        Clarifications:\n        - Q: Ascending?\n          A:\n        - Q: What about ties?\n          A:\n        \"\"\"\n        return x\n"
        );
        // Answering again extends the section.
        let f = first(&out);
        let again = answer(&out, &f, &qs(&["Stable?"])).unwrap().apply(&out);
        assert!(
            again.contains("          A:\n        - Q: Stable?\n          A:\n        \"\"\""),
            "{again}"
        );
        assert_eq!(again.matches(SECTION).count(), 1);
    }

    #[test]
    fn answer_turns_one_quote_docstrings_into_triple_quotes_and_escapes() {
        let src = "def f(x):\r\n    'Do it.'\r\n    return x\r\n";
        let out = answer(src, &first(src), &qs(&["Which '''it'''?"]))
            .unwrap()
            .apply(src);
        assert_eq!(
            out,
            "def f(x):\r\n    '''Do it.\r\n\r\n    Clarifications:\r\n    - Q: Which \\'''it\\'''?\r\n      A:\r\n    '''\r\n    return x\r\n"
        );
        let f = first(&out);
        assert!(f.docstring.unwrap().text.contains("Which '''it'''?"));
    }

    #[test]
    fn answer_refuses_a_docstring_of_several_literals_or_in_parentheses() {
        for src in [
            "def f(x):\n    (\"Sort x \"\n     \"somehow.\")\n    return x\n",
            "def f(x):\n    \"Sort x \" \"somehow.\"\n    return x\n",
            "def f(x):\n    (\"Sort x.\")\n    return x\n",
        ] {
            let err = answer(src, &first(src), &qs(&["Ascending?"])).unwrap_err();
            assert!(err.contains("one plain string literal"), "{err}");
        }
    }

    #[test]
    fn a_docstring_in_parentheses_ends_at_its_parenthesis() {
        let src = "def f(x):\n    (\"Sort x.\")\n    ...\n";
        let f = first(src);
        assert!(is_stub(src, &f));
        let edit = implementation(src, &f, "    return sorted(x)\n").unwrap();
        assert_eq!(
            edit.apply(src),
            "def f(x):\n    (\"Sort x.\")\n    return sorted(x)\n"
        );
    }

    #[test]
    fn ignore_function_and_file() {
        let src = "#!/usr/bin/env python\ndef f(x):  # noqa\n    \"\"\"Do.\"\"\"\n";
        let f = first(src);
        let out = ignore_function(src, &f).unwrap().apply(src);
        assert_eq!(
            out,
            "#!/usr/bin/env python\ndef f(x):  # noqa  # clarify: ignore\n    \"\"\"Do.\"\"\"\n"
        );
        assert!(first(&out).ignored);
        let out = ignore_file(src).apply(src);
        assert_eq!(out, "#!/usr/bin/env python\n# clarify: ignore-file\ndef f(x):  # noqa\n    \"\"\"Do.\"\"\"\n");
        assert!(python::extract(&out).ignore_file);
        // Old Mac line ends, and Windows ones.
        for nl in ["\r", "\r\n"] {
            let src = src.replace('\n', nl);
            let out = ignore_function(&src, &first(&src)).unwrap().apply(&src);
            assert_eq!(out, format!("#!/usr/bin/env python{nl}def f(x):  # noqa  # clarify: ignore{nl}    \"\"\"Do.\"\"\"{nl}"));
            assert!(first(&out).ignored);
            let out = ignore_file(&src).apply(&src);
            assert_eq!(out, format!("#!/usr/bin/env python{nl}# clarify: ignore-file{nl}def f(x):  # noqa{nl}    \"\"\"Do.\"\"\"{nl}"));
        }
    }

    #[test]
    fn implementation_replaces_the_body_after_the_docstring() {
        let src = "class C:\n    def add(self, a, b):\n        \"\"\"Add.\"\"\"\n        ...\n\n    def other(self):\n        pass\n";
        let f = first(src);
        let code = "def add(self, a, b):\n    \"\"\"Add two numbers.\"\"\"\n    total = a + b\n    if total:\n        return total\n    return 0\n";
        let out = implementation(src, &f, code).unwrap().apply(src);
        assert_eq!(
            out,
            "class C:\n    def add(self, a, b):\n        \"\"\"Add.\"\"\"\n        total = a + b\n        if total:\n            return total\n        return 0\n\n    def other(self):\n        pass\n"
        );
        // Bare statements, and a function without docstring.
        let src = "def g(x): pass\n";
        let out = implementation(src, &first(src), "return x * 2\n")
            .unwrap()
            .apply(src);
        assert_eq!(out, "def g(x):\n    return x * 2\n");
        // Code that does not parse is refused.
        let err = implementation(src, &first(src), "return (x\n").unwrap_err();
        assert!(err.contains("does not parse"), "{err}");
    }
}
