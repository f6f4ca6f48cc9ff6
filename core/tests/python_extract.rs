//! Snapshot tests of `clarifycoder_core::python`: function extraction, positions and the
//! model-facing `problem()` text. Run with `UPDATE_EXPECT=1` to refresh the snapshots, then
//! review every change by hand.

use std::fmt::Write as _;

use clarifycoder_core::python::{extract, position_at, ParsedFile, Position, Span};
use expect_test::{expect, Expect};

fn pos(p: Position) -> String {
    format!("{}:{}/{}", p.line, p.utf8_col, p.utf16_col)
}

fn span(s: Span) -> String {
    format!("{}-{}", pos(s.start), pos(s.end))
}

fn text(source: &str, s: Span) -> &str {
    &source[s.start.byte..s.end.byte]
}

/// Invariants every extraction must satisfy, whatever the snapshot says.
fn check_invariants(source: &str, parsed: &ParsedFile) {
    let mut spans: Vec<Span> = parsed.syntax_errors.clone();
    for f in &parsed.functions {
        spans.extend([
            f.def_span,
            f.name_span,
            f.header_span,
            f.decorated_span,
            f.body,
        ]);
        spans.extend(f.docstring.as_ref().map(|d| d.span));
        assert_eq!(text(source, f.name_span), f.name);
        assert!(f.qualname.ends_with(&f.name), "{}", f.qualname);
        assert_eq!(f.header_span.start, f.def_span.start);
        assert!(f.decorated_span.start.byte <= f.def_span.start.byte);
        assert_eq!(f.decorated_span.end, f.def_span.end);
        assert!(f.header_span.end.byte <= f.body.start.byte || f.body.start == f.body.end);
        assert_eq!(f.hash.len(), 64);
        assert!(f.hash.bytes().all(|b| b.is_ascii_hexdigit()));
        assert!(f.problem().starts_with(&f.signature));
        assert!(!f.signature.contains('\r'));
        if let Some(d) = &f.docstring {
            assert_eq!(text(source, d.span), d.raw);
            assert!(d.raw.starts_with(&d.prefix));
        }
    }
    for s in spans {
        assert!(s.start.byte <= s.end.byte);
        assert_eq!(s.start, position_at(source, s.start.byte));
        assert_eq!(s.end, position_at(source, s.end.byte));
    }
    let starts: Vec<usize> = parsed
        .functions
        .iter()
        .map(|f| f.def_span.start.byte)
        .collect();
    assert!(
        starts.windows(2).all(|w| w[0] <= w[1]),
        "not in source order"
    );
}

fn render(parsed: &ParsedFile) -> String {
    let mut out = String::new();
    let errors: Vec<String> = parsed.syntax_errors.iter().map(|s| span(*s)).collect();
    writeln!(
        out,
        "ignore_file={} syntax_errors={} {:?}",
        parsed.ignore_file, parsed.has_syntax_errors, errors
    )
    .unwrap();
    for f in &parsed.functions {
        let mut flags = Vec::new();
        if f.is_async {
            flags.push("async".to_owned());
        }
        if f.is_method {
            flags.push("method".to_owned());
        }
        if f.ignored {
            flags.push("ignored".to_owned());
        }
        if f.decorated_span != f.def_span {
            flags.push(format!("decorated@{}", pos(f.decorated_span.start)));
        }
        writeln!(
            out,
            "{} [{}] name@{}",
            f.qualname,
            flags.join(" "),
            pos(f.name_span.start)
        )
        .unwrap();
        writeln!(out, "  sig: {:?}", f.signature).unwrap();
        match &f.docstring {
            Some(d) => writeln!(
                out,
                "  doc: {:?} prefix={:?} {:?} @{}",
                d.quote,
                d.prefix,
                d.text,
                span(d.span)
            )
            .unwrap(),
            None => writeln!(out, "  doc: none").unwrap(),
        }
        writeln!(
            out,
            "  body: lines {}-{} indent={:?} body_indent={:?}",
            f.body.start.line, f.body.end.line, f.indent, f.body_indent
        )
        .unwrap();
    }
    out
}

fn check(source: &str, expect: Expect) {
    let parsed = extract(source);
    check_invariants(source, &parsed);
    expect.assert_eq(&render(&parsed));
}

#[test]
fn empty_file() {
    check(
        "",
        expect![[r#"
            ignore_file=false syntax_errors=false []
        "#]],
    );
}

#[test]
fn only_comments() {
    check(
        "# just a comment\n\n   # another\n",
        expect![[r#"
        "#]],
    );
}

#[test]
fn nested_async_decorated() {
    check(
        r#"
@decorator
@other(1, 2)
async def outer(x):
    """Outer."""
    def inner(y):
        async def innermost():
            'Innermost.'
        return y
    return inner

def after(): pass
"#,
        expect![[r#"
        "#]],
    );
}

#[test]
fn classes_and_nested_classes() {
    check(
        r#"
class Outer:
    """Class docstring, not a function's."""

    def method(self):
        """A method."""

    @staticmethod
    def static():
        pass

    async def amethod(self):
        pass

    class Inner:
        def deep(self):
            def local():
                pass

def top():
    class Local:
        def m(self):
            pass
"#,
        expect![[r#"
        "#]],
    );
}

#[test]
fn quote_styles() {
    check(
        r#"
def a():
    'single'
def b():
    "double"
def c():
    '''triple single'''
def d():
    """triple double"""
def e():
    u"unicode prefix"
def f():
    U'''Upper unicode prefix'''
def g():
    """"Quoted" start and end \""""
def h():
    ''
"#,
        expect![[r#"
        "#]],
    );
}

#[test]
fn escapes_and_raw_docstrings() {
    check(
        r#"
def raw():
    r"""Raw: \n stays, \d stays, \\ stays."""
def raw_upper():
    R'\t'
def escaped():
    """Tab:\there\nnew line, quote \" and \', backslash \\, unknown \d, hex \x41, \N{BULLET}, \
continued."""
"#,
        expect![[r#"
        "#]],
    );
}

#[test]
fn non_docstring_first_statements() {
    check(
        r#"
def fstring(name):
    f"Hello {name}"
def fstring_raw(name):
    rf"Hello {name}"
def byte_string():
    b"bytes"
def raw_bytes():
    Rb"bytes"
def concatenated():
    "a" "b"
def not_first():
    x = 1
    "late"
def call():
    "doc".strip()
def tuple_of_strings():
    "a", "b"
def comment_first():
    # a comment is not a statement
    """Still the docstring."""
def parenthesized():
    ("parenthesized")
"#,
        expect![[r#"
        "#]],
    );
}

#[test]
fn crlf_line_endings() {
    check(
        "class C:\r\n    def f(self,\r\n          a):\r\n        \"\"\"Line one.\r\n\r\n        Line two.\r\n        \"\"\"\r\n        return a\r\n",
        expect![[r#"
        "#]],
    );
}

#[test]
fn tab_indentation() {
    check(
        "class C:\n\tdef f(self,\n\t\t\ta):\n\t\t\"\"\"Summary.\n\n\t\tDetails\tindented\n\t\t\t\tmore.\n\t\t\"\"\"\n\t\treturn a\n",
        expect![[r#"
        "#]],
    );
}

#[test]
fn unicode_columns() {
    // Emoji are 4 UTF-8 bytes / 2 UTF-16 units, CJK 3 bytes / 1 unit.
    check(
        "x = '😀'; def f(): pass\nclass 类:\n    def 方法(self):\n        \"\"\"Ünïcode 😀 文档\n        第二行 🎉\"\"\"\n",
        expect![[r#"
        "#]],
    );
}

#[test]
fn syntax_error_then_good_function() {
    check(
        r#"
def broken(a, b:
    """Broken."""
    return (

def good(x):
    """Still found."""
    return x
"#,
        expect![[r#"
        "#]],
    );
}

#[test]
fn one_liners() {
    check(
        r#"
def f(): pass
def g(): "Doc on the def line."; return 1
class K:
    def m(self): ...
    async def n(self): return 1
"#,
        expect![[r#"
        "#]],
    );
}

#[test]
fn multiline_signatures() {
    check(
        r#"
class Service:
    async def call(
        self,
        request: "Request",  # the request
        *,
        timeout: float = 1.0,
    ) -> dict[str, int]:  # trailing comment is not part of the signature
        """Call the service."""

    def generic[T](self, x: T) -> T: return x
"#,
        expect![[r#"
        "#]],
    );
}

#[test]
fn ignore_pragmas() {
    check(
        r#"
def a():  # clarify: ignore
    pass
def b():  #clarify:ignore
    pass
def c():  #   clarify :   ignore   (reason)
    pass
def d():  # noqa # clarify: ignore
    pass
# clarify: ignore
def e():
    pass
def f(  # clarify: ignore
    x,
):
    pass
@decorator  # clarify: ignore
def g():
    pass
def h():  # clarify: ignored
    pass
async def i():  # clarify: ignore
    pass
def j():  # clarify: ignore-file
    pass
"#,
        expect![[r#"
        "#]],
    );
}

#[test]
fn ignore_file_pragma() {
    check(
        "#!/usr/bin/env python\n# -*- coding: utf-8 -*-\n#   clarify :ignore-file\ndef f():\n    pass\n",
        expect![[r#"
        "#]],
    );
    check(
        "# clarify: ignore - file\n",
        expect![[r#"
        "#]],
    );
    // Only comments before the first statement count.
    check(
        "import os\n# clarify: ignore-file\n",
        expect![[r#"
        "#]],
    );
    check(
        "\"\"\"Module docstring.\"\"\"\n# clarify: ignore-file\n",
        expect![[r#"
        "#]],
    );
}

#[test]
fn module_level_if_and_try() {
    check(
        r#"
if sys.version_info >= (3, 8):
    def a():
        pass
elif False:
    def b():
        pass
else:
    def c():
        pass
try:
    def d():
        pass
except Exception:
    def e():
        pass
finally:
    def f():
        pass
with ctx:
    def g():
        pass
for _ in range(3):
    def h():
        pass
"#,
        expect![[r#"
        "#]],
    );
}

#[test]
fn fixture_sample() {
    check(
        include_str!("fixtures/python/sample.py"),
        expect![[r#"
        "#]],
    );
}

#[test]
fn incomplete_definitions() {
    check(
        "def f(\n",
        expect![[r#"
        "#]],
    );
    check(
        "def f():",
        expect![[r#"
        "#]],
    );
    check(
        "def f():\n    \"\"\"Unterminated docstring\n",
        expect![[r#"
        "#]],
    );
}

// ---------------------------------------------------------------------------
// problem() text

fn only_function(source: &str) -> clarifycoder_core::python::Function {
    let mut parsed = extract(source);
    assert_eq!(parsed.functions.len(), 1, "{parsed:#?}");
    parsed.functions.remove(0)
}

#[test]
fn problem_spec_example() {
    let f = only_function(
        "def add(a: int, b: int) -> int:\n    \"\"\"Add two numbers.\n\n    Returns the sum.\n    \"\"\"\n    return a + b\n",
    );
    assert_eq!(
        f.problem(),
        "def add(a: int, b: int) -> int:\n    \"\"\"Add two numbers.\n\n    Returns the sum.\n    \"\"\"\n"
    );
}

#[test]
fn problem_one_line_docstring() {
    let f = only_function("def f(x):\n    'Return x.'\n    return x\n");
    assert_eq!(f.problem(), "def f(x):\n    \"\"\"Return x.\"\"\"\n");
}

#[test]
fn problem_without_docstring() {
    let f = only_function("async def f(x) -> None:  # comment\n    return x\n");
    assert_eq!(f.problem(), "async def f(x) -> None:\n");
}

#[test]
fn problem_docstring_containing_triple_quotes() {
    let f = only_function(
        "def f():\n    '''Use \"\"\"triple\"\"\" quotes.\n\n    Ends with a quote \"'''\n",
    );
    assert_eq!(
        f.docstring.as_ref().unwrap().text,
        "Use \"\"\"triple\"\"\" quotes.\n\nEnds with a quote \""
    );
    assert_eq!(
        f.problem(),
        "def f():\n    \"\"\"Use \\\"\\\"\\\"triple\\\"\\\"\\\" quotes.\n\n    Ends with a quote \\\"\n    \"\"\"\n"
    );
    let f = only_function("def f():\n    'Ends with a backslash \\\\'\n");
    assert_eq!(
        f.docstring.as_ref().unwrap().text,
        "Ends with a backslash \\"
    );
    assert_eq!(
        f.problem(),
        "def f():\n    \"\"\"Ends with a backslash \\\\\"\"\"\n"
    );
}

#[test]
fn problem_multiline_signature_in_class() {
    let parsed = extract(
        "class C:\n    @property\n    def f(\n        self,\n        x: int,\n    ) -> int:  # note\n        \"\"\"Summary.\n\n          Indented detail.\n        \"\"\"\n        return x\n",
    );
    let f = &parsed.functions[0];
    assert_eq!(
        f.problem(),
        "def f(\n    self,\n    x: int,\n) -> int:\n    \"\"\"Summary.\n\n      Indented detail.\n    \"\"\"\n"
    );
}

// ---------------------------------------------------------------------------
// hash

fn hash_of(source: &str) -> String {
    only_function(source).hash
}

#[test]
fn hash_is_stable_across_reformatting() {
    let base = hash_of("def f(x):\n    \"\"\"doc\"\"\"\n    return x\n");
    for same in [
        "def f(x):\n    'doc'\n    return x\n",
        "def f(x):\r\n    \"doc\"\r\n    return x + 1\r\n",
        "def f(x): '''doc'''\n",
        "@decorator\ndef f(x):  # trailing comment\n    \"\"\"\n    doc\n    \"\"\"\n",
        "class C:\n    def f(x):\n        r\"\"\"doc\"\"\"\n",
        "if True:\n\tdef f(x):\n\t\t\"\"\"doc\n\t\t\"\"\"\n",
    ] {
        assert_eq!(hash_of(same), base, "{same:?}");
    }
    for different in [
        "def f(x):\n    \"\"\"doc.\"\"\"\n",
        "def f(x):\n    \"\"\"Doc\"\"\"\n",
        "def f(x):\n    \"\"\"doc\n\n    more\"\"\"\n",
        "def f(y):\n    \"\"\"doc\"\"\"\n",
        "def f(x):\n    pass\n",
        "async def f(x):\n    \"\"\"doc\"\"\"\n",
    ] {
        assert_ne!(hash_of(different), base, "{different:?}");
    }
}

// ---------------------------------------------------------------------------
// robustness

const TRICKY: &str = concat!(
    "# clarify: ignore-file\n",
    "@dec(\"x\")\r\n",
    "async def f(a, b: 'int' = \"\\\"\", *c, **d) -> 'R':  # clarify: ignore\n",
    "    r'''raw \\''' ; x = 1\n",
    "\tdef g(): '😀 文' \\\n",
    "        ; pass\n",
    "class C(B, metaclass=M):\r",
    "    def m(self, x=f\"{1:>{2}}\"): \"\"\"a\\\n",
    "b\"\"\"\n",
    "def broken(:\n",
    "    \"\"\"unterminated\n",
    "def \u{0}nul(\u{0}): 'x\u{0}'\n",
    "\u{feff}\u{2028}λ = lambda: '''\n",
    "''' b'\\xff' u'' Rb'' f'{x!r}' \"\"\"\"\"\"",
);

#[test]
fn never_panics_on_any_prefix() {
    for source in [
        TRICKY,
        include_str!("fixtures/python/sample.py"),
        "\r\r\n\n\r",
        "\u{0}\u{0}\u{0}",
        "\u{7f}ELF\u{2}\u{1}\u{1}\u{0}\u{0}\u{0}���def def def ((((",
        ")))]]]}}}:::",
        "def",
        "async",
        "@",
        "class",
        "'''",
        "def f(): '''",
        "def f(x=\"\"\"",
    ] {
        for (i, _) in source.char_indices().chain([(source.len(), ' ')]) {
            let prefix = &source[..i];
            let parsed = extract(prefix);
            check_invariants(prefix, &parsed);
            for f in &parsed.functions {
                let _ = f.problem();
            }
            for b in 0..=prefix.len() + 1 {
                let _ = position_at(prefix, b);
            }
        }
    }
}

#[test]
fn deep_nesting_does_not_overflow() {
    let mut source = String::new();
    for depth in 0..200 {
        source.push_str(&"    ".repeat(depth));
        source.push_str(&format!("def f{depth}():\n"));
    }
    source.push_str(&"    ".repeat(200));
    source.push_str("pass\n");
    let parsed = extract(&source);
    assert_eq!(parsed.functions.len(), 200);
    assert!(parsed.functions[199].qualname.starts_with("f0.f1.f2."));
    let parens = "(".repeat(20_000);
    let _ = extract(&format!("def f(x={parens}):\n    pass\n"));
}
