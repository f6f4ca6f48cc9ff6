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
            ignore_file=false syntax_errors=false []
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
            ignore_file=false syntax_errors=false []
            outer [async decorated@1:0/0] name@3:10/10
              sig: "async def outer(x):"
              doc: TripleDouble prefix="" "Outer." @4:4/4-4:16/16
              body: lines 4-9 indent="" body_indent="    "
            outer.inner [] name@5:8/8
              sig: "def inner(y):"
              doc: none
              body: lines 6-8 indent="    " body_indent="        "
            outer.inner.innermost [async] name@6:18/18
              sig: "async def innermost():"
              doc: Single prefix="" "Innermost." @7:12/12-7:24/24
              body: lines 7-7 indent="        " body_indent="            "
            after [] name@11:4/4
              sig: "def after():"
              doc: none
              body: lines 11-11 indent="" body_indent="    "
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
            ignore_file=false syntax_errors=false []
            Outer.method [method] name@4:8/8
              sig: "def method(self):"
              doc: TripleDouble prefix="" "A method." @5:8/8-5:23/23
              body: lines 5-5 indent="    " body_indent="        "
            Outer.static [method decorated@7:4/4] name@8:8/8
              sig: "def static():"
              doc: none
              body: lines 9-9 indent="    " body_indent="        "
            Outer.amethod [async method] name@11:14/14
              sig: "async def amethod(self):"
              doc: none
              body: lines 12-12 indent="    " body_indent="        "
            Outer.Inner.deep [method] name@15:12/12
              sig: "def deep(self):"
              doc: none
              body: lines 16-17 indent="        " body_indent="            "
            Outer.Inner.deep.local [] name@16:16/16
              sig: "def local():"
              doc: none
              body: lines 17-17 indent="            " body_indent="                "
            top [] name@19:4/4
              sig: "def top():"
              doc: none
              body: lines 20-22 indent="" body_indent="    "
            top.Local.m [method] name@21:12/12
              sig: "def m(self):"
              doc: none
              body: lines 22-22 indent="        " body_indent="            "
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
            ignore_file=false syntax_errors=false []
            a [] name@1:4/4
              sig: "def a():"
              doc: Single prefix="" "single" @2:4/4-2:12/12
              body: lines 2-2 indent="" body_indent="    "
            b [] name@3:4/4
              sig: "def b():"
              doc: Double prefix="" "double" @4:4/4-4:12/12
              body: lines 4-4 indent="" body_indent="    "
            c [] name@5:4/4
              sig: "def c():"
              doc: TripleSingle prefix="" "triple single" @6:4/4-6:23/23
              body: lines 6-6 indent="" body_indent="    "
            d [] name@7:4/4
              sig: "def d():"
              doc: TripleDouble prefix="" "triple double" @8:4/4-8:23/23
              body: lines 8-8 indent="" body_indent="    "
            e [] name@9:4/4
              sig: "def e():"
              doc: Double prefix="u" "unicode prefix" @10:4/4-10:21/21
              body: lines 10-10 indent="" body_indent="    "
            f [] name@11:4/4
              sig: "def f():"
              doc: TripleSingle prefix="U" "Upper unicode prefix" @12:4/4-12:31/31
              body: lines 12-12 indent="" body_indent="    "
            g [] name@13:4/4
              sig: "def g():"
              doc: TripleDouble prefix="" "\"Quoted\" start and end \"" @14:4/4-14:35/35
              body: lines 14-14 indent="" body_indent="    "
            h [] name@15:4/4
              sig: "def h():"
              doc: Single prefix="" "" @16:4/4-16:6/6
              body: lines 16-16 indent="" body_indent="    "
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
            ignore_file=false syntax_errors=false []
            raw [] name@1:4/4
              sig: "def raw():"
              doc: TripleDouble prefix="r" "Raw: \\n stays, \\d stays, \\\\ stays." @2:4/4-2:45/45
              body: lines 2-2 indent="" body_indent="    "
            raw_upper [] name@3:4/4
              sig: "def raw_upper():"
              doc: Single prefix="R" "\\t" @4:4/4-4:9/9
              body: lines 4-4 indent="" body_indent="    "
            escaped [] name@5:4/4
              sig: "def escaped():"
              doc: TripleDouble prefix="" "Tab:    here\nnew line, quote \" and ', backslash \\, unknown \\d, hex A, \\N{BULLET}, continued." @6:4/4-7:13/13
              body: lines 6-7 indent="" body_indent="    "
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
def concatenated_fstring():
    "a" f"b"
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
"#,
        expect![[r#"
            ignore_file=false syntax_errors=false []
            fstring [] name@1:4/4
              sig: "def fstring(name):"
              doc: none
              body: lines 2-2 indent="" body_indent="    "
            fstring_raw [] name@3:4/4
              sig: "def fstring_raw(name):"
              doc: none
              body: lines 4-4 indent="" body_indent="    "
            byte_string [] name@5:4/4
              sig: "def byte_string():"
              doc: none
              body: lines 6-6 indent="" body_indent="    "
            raw_bytes [] name@7:4/4
              sig: "def raw_bytes():"
              doc: none
              body: lines 8-8 indent="" body_indent="    "
            concatenated_fstring [] name@9:4/4
              sig: "def concatenated_fstring():"
              doc: none
              body: lines 10-10 indent="" body_indent="    "
            not_first [] name@11:4/4
              sig: "def not_first():"
              doc: none
              body: lines 12-13 indent="" body_indent="    "
            call [] name@14:4/4
              sig: "def call():"
              doc: none
              body: lines 15-15 indent="" body_indent="    "
            tuple_of_strings [] name@16:4/4
              sig: "def tuple_of_strings():"
              doc: none
              body: lines 17-17 indent="" body_indent="    "
            comment_first [] name@18:4/4
              sig: "def comment_first():"
              doc: TripleDouble prefix="" "Still the docstring." @20:4/4-20:30/30
              body: lines 20-20 indent="" body_indent="    "
        "#]],
    );
}

/// Python joins string literals written side by side, in parentheses or not, into one
/// docstring; an f-string among them makes it no docstring (see above), and so does a missing
/// parenthesis. The span covers the parentheses: the code starts after them.
#[test]
fn concatenated_and_parenthesized_docstrings() {
    let source = "def side_by_side():\n    \"Return the \" 'total.'\n\ndef parenthesized():\n    ((\"Parenthesized.\"))\n\ndef wrapped():\n    (\"Return the price \"  # a comment\n     r\"in \\cents.\")\n";
    let parsed = extract(source);
    let docs: Vec<(String, usize, &str)> = parsed
        .functions
        .iter()
        .map(|f| {
            let d = f.docstring.as_ref().expect("a docstring");
            (d.text.clone(), d.literals, text(source, d.span))
        })
        .collect();
    let unclosed = extract("def f():\n    (\"Doc.\"\n    return 1\n");
    assert_eq!(unclosed.functions.len(), 1);
    assert_eq!(unclosed.functions[0].docstring, None);
    assert_eq!(
        docs,
        [
            (
                "Return the total.".to_string(),
                2,
                "\"Return the \" 'total.'"
            ),
            ("Parenthesized.".to_string(), 1, "((\"Parenthesized.\"))"),
            (
                "Return the price in \\cents.".to_string(),
                2,
                "(\"Return the price \"  # a comment\n     r\"in \\cents.\")"
            ),
        ]
    );
}

#[test]
fn crlf_line_endings() {
    check(
        "class C:\r\n    def f(self,\r\n          a):\r\n        \"\"\"Line one.\r\n\r\n        Line two.\r\n        \"\"\"\r\n        return a\r\n",
        expect![[r#"
            ignore_file=false syntax_errors=false []
            C.f [method] name@1:8/8
              sig: "def f(self,\n      a):"
              doc: TripleDouble prefix="" "Line one.\n\nLine two." @3:8/8-6:11/11
              body: lines 3-7 indent="    " body_indent="        "
        "#]],
    );
}

#[test]
fn tab_indentation() {
    check(
        "class C:\n\tdef f(self,\n\t\t\ta):\n\t\t\"\"\"Summary.\n\n\t\tDetails\tindented\n\t\t\t\tmore.\n\t\t\"\"\"\n\t\treturn a\n",
        expect![[r#"
            ignore_file=false syntax_errors=false []
            C.f [method] name@1:5/5
              sig: "def f(self,\n\t\ta):"
              doc: TripleDouble prefix="" "Summary.\n\nDetails indented\n                more." @3:2/2-7:5/5
              body: lines 3-8 indent="\t" body_indent="\t\t"
        "#]],
    );
}

#[test]
fn unicode_columns() {
    // Emoji are 4 UTF-8 bytes / 2 UTF-16 units, CJK 3 bytes / 1 unit.
    check(
        "x = '😀'; def f(): pass\nclass 类:\n    def 方法(self):\n        \"\"\"Ünïcode 😀 文档\n        第二行 🎉\"\"\"\n中文 = 1; def h(): '文档 😀'\n",
        expect![[r#"
            ignore_file=false syntax_errors=true ["0:12/10-0:12/10", "5:12/8-5:12/8"]
            f [] name@0:16/14
              sig: "def f():"
              doc: none
              body: lines 0-0 indent="" body_indent="    "
            类.方法 [method] name@2:8/8
              sig: "def 方法(self):"
              doc: TripleDouble prefix="" "Ünïcode 😀 文档\n第二行 🎉" @3:8/8-4:25/17
              body: lines 3-4 indent="    " body_indent="        "
            h [] name@5:16/12
              sig: "def h():"
              doc: Single prefix="" "文档 😀" @5:21/17-5:34/24
              body: lines 5-5 indent="" body_indent="    "
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
            ignore_file=false syntax_errors=true ["1:0/0-7:12/12"]
            good [] name@5:4/4
              sig: "def good(x):"
              doc: TripleDouble prefix="" "Still found." @6:4/4-6:22/22
              body: lines 6-7 indent="" body_indent="    "
        "#]],
    );
}

#[test]
fn syntax_error_inside_class_and_between_functions() {
    check(
        r#"
class A:
    def broken(self, x:
        return (
    @property
    def good(self):
        """Good."""

def f(:
    pass

def g(x):  # clarify: ignore
    [1, 2
    return x

async def h():
    'After two errors.'
"#,
        expect![[r#"
            ignore_file=false syntax_errors=true ["1:0/0-17:0/0"]
            A.good [method decorated@4:4/4] name@5:8/8
              sig: "def good(self):"
              doc: TripleDouble prefix="" "Good." @6:8/8-6:19/19
              body: lines 6-6 indent="    " body_indent="        "
            f [] name@8:4/4
              sig: "def f(:"
              doc: none
              body: lines 9-9 indent="" body_indent="    "
            g [ignored] name@11:4/4
              sig: "def g(x):"
              doc: none
              body: lines 13-13 indent="" body_indent="    "
            h [async] name@15:10/10
              sig: "async def h():"
              doc: Single prefix="" "After two errors." @16:4/4-16:23/23
              body: lines 16-16 indent="" body_indent="    "
        "#]],
    );
}

#[test]
fn syntax_error_keeps_class_context() {
    check(
        "class A:\n    x = (\n    def good(self):\n        pass\n\nclass B(:\n    def m(self): pass\n",
        expect![[r#"
            ignore_file=false syntax_errors=true ["1:4/4-1:9/9", "5:7/7-5:8/8"]
            A.good [method] name@2:8/8
              sig: "def good(self):"
              doc: none
              body: lines 3-3 indent="    " body_indent="        "
            B.m [method] name@6:8/8
              sig: "def m(self):"
              doc: none
              body: lines 6-6 indent="    " body_indent="        "
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
            ignore_file=false syntax_errors=false []
            f [] name@1:4/4
              sig: "def f():"
              doc: none
              body: lines 1-1 indent="" body_indent="    "
            g [] name@2:4/4
              sig: "def g():"
              doc: Double prefix="" "Doc on the def line." @2:9/9-2:31/31
              body: lines 2-2 indent="" body_indent="    "
            K.m [method] name@4:8/8
              sig: "def m(self):"
              doc: none
              body: lines 4-4 indent="    " body_indent="        "
            K.n [async method] name@5:14/14
              sig: "async def n(self):"
              doc: none
              body: lines 5-5 indent="    " body_indent="        "
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
            ignore_file=false syntax_errors=false []
            Service.call [async method] name@2:14/14
              sig: "async def call(\n    self,\n    request: \"Request\",  # the request\n    *,\n    timeout: float = 1.0,\n) -> dict[str, int]:"
              doc: TripleDouble prefix="" "Call the service." @8:8/8-8:31/31
              body: lines 8-8 indent="    " body_indent="        "
            Service.generic [method] name@10:8/8
              sig: "def generic[T](self, x: T) -> T:"
              doc: none
              body: lines 10-10 indent="    " body_indent="        "
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
def k(
    x,
) -> int:  # clarify: ignore
    pass
def h():  # clarify: ignored
    pass
async def i():  # clarify: ignore
    pass
def j():  # clarify: ignore-file
    pass
"#,
        expect![[r#"
            ignore_file=false syntax_errors=false []
            a [ignored] name@1:4/4
              sig: "def a():"
              doc: none
              body: lines 2-2 indent="" body_indent="    "
            b [ignored] name@3:4/4
              sig: "def b():"
              doc: none
              body: lines 4-4 indent="" body_indent="    "
            c [ignored] name@5:4/4
              sig: "def c():"
              doc: none
              body: lines 6-6 indent="" body_indent="    "
            d [ignored] name@7:4/4
              sig: "def d():"
              doc: none
              body: lines 8-8 indent="" body_indent="    "
            e [] name@10:4/4
              sig: "def e():"
              doc: none
              body: lines 11-11 indent="" body_indent="    "
            f [ignored] name@12:4/4
              sig: "def f(  # clarify: ignore\n    x,\n):"
              doc: none
              body: lines 15-15 indent="" body_indent="    "
            g [ignored decorated@16:0/0] name@17:4/4
              sig: "def g():"
              doc: none
              body: lines 18-18 indent="" body_indent="    "
            k [ignored] name@19:4/4
              sig: "def k(\n    x,\n) -> int:"
              doc: none
              body: lines 22-22 indent="" body_indent="    "
            h [] name@23:4/4
              sig: "def h():"
              doc: none
              body: lines 24-24 indent="" body_indent="    "
            i [async ignored] name@25:10/10
              sig: "async def i():"
              doc: none
              body: lines 26-26 indent="" body_indent="    "
            j [] name@27:4/4
              sig: "def j():"
              doc: none
              body: lines 28-28 indent="" body_indent="    "
        "#]],
    );
}

#[test]
fn ignore_file_pragma() {
    check(
        "#!/usr/bin/env python\n# -*- coding: utf-8 -*-\n#   clarify :ignore-file\ndef f():\n    pass\n",
        expect![[r#"
            ignore_file=true syntax_errors=false []
            f [] name@3:4/4
              sig: "def f():"
              doc: none
              body: lines 4-4 indent="" body_indent="    "
        "#]],
    );
    check(
        "# clarify: ignore - file\n",
        expect![[r#"
            ignore_file=true syntax_errors=false []
        "#]],
    );
    // Only comments before the first statement count; the module docstring may come first.
    check(
        "import os\n# clarify: ignore-file\n",
        expect![[r#"
            ignore_file=false syntax_errors=false []
        "#]],
    );
    check(
        "\"\"\"Module docstring.\"\"\"\n# clarify: ignore-file\n",
        expect![[r#"
            ignore_file=true syntax_errors=false []
        "#]],
    );
    check(
        "\"\"\"Module docstring.\"\"\"\nimport os\n# clarify: ignore-file\n",
        expect![[r#"
            ignore_file=false syntax_errors=false []
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
            ignore_file=false syntax_errors=false []
            a [] name@2:8/8
              sig: "def a():"
              doc: none
              body: lines 3-3 indent="    " body_indent="        "
            b [] name@5:8/8
              sig: "def b():"
              doc: none
              body: lines 6-6 indent="    " body_indent="        "
            c [] name@8:8/8
              sig: "def c():"
              doc: none
              body: lines 9-9 indent="    " body_indent="        "
            d [] name@11:8/8
              sig: "def d():"
              doc: none
              body: lines 12-12 indent="    " body_indent="        "
            e [] name@14:8/8
              sig: "def e():"
              doc: none
              body: lines 15-15 indent="    " body_indent="        "
            f [] name@17:8/8
              sig: "def f():"
              doc: none
              body: lines 18-18 indent="    " body_indent="        "
            g [] name@20:8/8
              sig: "def g():"
              doc: none
              body: lines 21-21 indent="    " body_indent="        "
            h [] name@23:8/8
              sig: "def h():"
              doc: none
              body: lines 24-24 indent="    " body_indent="        "
        "#]],
    );
}

#[test]
fn fixture_sample() {
    check(
        include_str!("fixtures/python/sample.py"),
        expect![[r#"
            ignore_file=false syntax_errors=false []
            plain [] name@7:4/4
              sig: "def plain(a, b=1, *args, key: str = \"k\", **kwargs) -> None:"
              doc: TripleDouble prefix="" "Plain function.\n\nArgs:\n    a: the first.\n    b: the second." @8:4/4-13:7/7
              body: lines 8-14 indent="" body_indent="    "
            fetch [async] name@17:10/10
              sig: "async def fetch(url: str) -> bytes:"
              doc: TripleSingle prefix="" "Fetch *url*." @18:4/4-18:22/22
              body: lines 18-23 indent="" body_indent="    "
            fetch.retry [async] name@20:14/14
              sig: "async def retry():"
              doc: none
              body: lines 21-21 indent="    " body_indent="        "
            cached [decorated@26:0/0] name@28:4/4
              sig: "def cached(n):"
              doc: Double prefix="" "Cached." @29:4/4-29:13/13
              body: lines 29-30 indent="" body_indent="    "
            Shape.area [method] name@36:8/8
              sig: "def area(self) -> float:"
              doc: TripleDouble prefix="" "The area." @37:8/8-37:23/23
              body: lines 37-38 indent="    " body_indent="        "
            Shape.name [method decorated@40:4/4] name@41:8/8
              sig: "def name(self):"
              doc: none
              body: lines 42-42 indent="    " body_indent="        "
            Shape.Meta.describe [method] name@45:12/12
              sig: "def describe(cls):"
              doc: TripleDouble prefix="" "Describe\nthe meta class." @46:12/12-47:30/30
              body: lines 46-52 indent="        " body_indent="            "
            Shape.Meta.describe.helper [] name@49:16/16
              sig: "def helper():"
              doc: Double prefix="" "inner helper" @50:16/16-50:30/30
              body: lines 50-50 indent="            " body_indent="                "
            conditional [] name@56:8/8
              sig: "def conditional():"
              doc: TripleDouble prefix="" "Defined under if." @57:8/8-57:31/31
              body: lines 57-57 indent="    " body_indent="        "
            in_try [] name@60:12/12
              sig: "def in_try():"
              doc: none
              body: lines 61-61 indent="        " body_indent="            "
            in_except [] name@63:12/12
              sig: "def in_except():"
              doc: none
              body: lines 64-64 indent="        " body_indent="            "
        "#]],
    );
}

#[test]
fn incomplete_definitions() {
    check(
        "def f(\n",
        expect![[r#"
            ignore_file=false syntax_errors=true ["0:0/0-0:6/6"]
        "#]],
    );
    check(
        "def f():",
        expect![[r#"
            ignore_file=false syntax_errors=true ["0:8/8-0:8/8"]
            f [] name@0:4/4
              sig: "def f():"
              doc: none
              body: lines 0-0 indent="" body_indent="    "
        "#]],
    );
    check(
        "def f():\n    \"\"\"Unterminated docstring\n",
        expect![[r#"
            ignore_file=false syntax_errors=true ["1:4/4-1:19/19"]
            f [] name@0:4/4
              sig: "def f():"
              doc: none
              body: lines 1-1 indent="" body_indent="    "
        "#]],
    );
}

#[test]
fn odd_characters() {
    // A lone CR is a line break, for Python and for positions.
    check(
        "def f(a,\r      b):\r    '''One.\r\r    Two.'''\r",
        expect![[r#"
            ignore_file=false syntax_errors=false []
            f [] name@0:4/4
              sig: "def f(a,\n      b):"
              doc: TripleSingle prefix="" "One.\n\nTwo." @2:4/4-4:11/11
              body: lines 2-4 indent="" body_indent="    "
        "#]],
    );
    check(
        "def f(\u{0}):\n    'nul \u{0} inside'\n\u{0}\ndef g(): pass\n",
        expect![[r#"
            ignore_file=false syntax_errors=true ["0:6/6-0:7/7", "1:4/4-1:18/18", "2:0/0-2:1/1"]
            f [] name@0:4/4
              sig: "def f(\0):"
              doc: none
              body: lines 1-1 indent="" body_indent="    "
            g [] name@3:4/4
              sig: "def g():"
              doc: none
              body: lines 3-3 indent="" body_indent="    "
        "#]],
    );
    check(
        "\u{feff}def f():\n    \"\"\"BOM before def.\"\"\"\n",
        expect![[r#"
            ignore_file=false syntax_errors=false []
            f [] name@0:7/5
              sig: "def f():"
              doc: TripleDouble prefix="" "BOM before def." @1:4/4-1:25/25
              body: lines 1-1 indent="" body_indent="    "
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
        "class C:\n    @property\n    def f(\n        self,\n        x: int,\n    ) -> int:  # note\n        \"\"\"Summary.\n\n        Detail:\n          indented.\n        \"\"\"\n        return x\n",
    );
    let f = &parsed.functions[0];
    assert_eq!(
        f.problem(),
        "def f(\n    self,\n    x: int,\n) -> int:\n    \"\"\"Summary.\n\n    Detail:\n      indented.\n    \"\"\"\n"
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
        "if True:\n\tdef f(x):\n\t\t\"\"\"doc\"\"\"\n",
        // Closing quotes on their own line: the whitespace-only last line is blank.
        "def f(x):\n    \"\"\"doc\n    \"\"\"\n",
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

/// Why Python itself refuses each of `sources` (`compile(..., "exec")`, asked of `python3`):
/// the exception's class name (`SyntaxError`, `IndentationError`, `TabError`), `None` when it
/// compiles.
fn python_refuses(sources: &[&str]) -> Vec<Option<String>> {
    use std::io::Write as _;
    use std::process::{Command, Stdio};
    let script = "import json, sys\n\
        def why(s):\n    try:\n        compile(s, 'f.py', 'exec')\n        return None\n    \
        except SyntaxError as e:\n        return type(e).__name__\n\
        print(json.dumps([why(s) for s in json.load(sys.stdin)]))";
    let mut child = Command::new("python3")
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 runs");
    let input = serde_json::to_vec(sources).unwrap();
    child.stdin.take().unwrap().write_all(&input).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    serde_json::from_slice(&out.stdout).unwrap()
}

/// tree-sitter accepts indentation that Python refuses; extraction reports it as a syntax
/// error, and accepts every layout Python accepts.
#[test]
fn indentation_python_refuses_is_a_syntax_error() {
    let sources = [
        // Refused: an indent where no block opens.
        "x = 1\n    y = 2\n",
        "def f():\n    x = 1\n        return x\n",
        // Refused: a dedent to no outer level, at module level and inside a class.
        "def f():\n        x = 1\n    return x\n",
        "class A:\n    def f(self):\n            x = 1\n      return x\n",
        // Refused: a clause or a decorated definition away from its statement's column.
        "if x:\n    pass\n  else:\n    pass\n",
        "try:\n    pass\n    except E:\n    pass\n",
        "@d\n  def f():\n    pass\n",
        // Refused: tabs and spaces that agree only at a tab width of 8.
        "if x:\n        a = 1\n\tb = 2\n",
        // Refused: a header with nothing indented under it (tree-sitter: an empty block).
        "def f():\nreturn 1\n",
        "class A:\n    def f(self):\n    pass\n",
        "def f():\n    # only a comment\n",
        // Accepted: continuations, comments, one-liners, semicolons, strings and tabs.
        "x = (1,\n        2)\ny = [\n  3]\n",
        "def f():\n    x = 1 + \\\n            2\n    return x\n",
        "def f():\n        # a comment anywhere\n    return 1\n  # and here\n",
        "if x: y = 1\nelse: y = 2\nx = 1; y = 2\n",
        "def f():\n    s = '''\n  text\n        more'''\n    return s\n",
        "class A:\n\tdef f(self):\n\t\treturn 1\n",
        "try:\n    pass\nexcept E:\n    pass\nelse:\n    pass\nfinally:\n    pass\n",
        "@d\n@e(1,\n   2)\ndef f():\n    pass\n",
        "for a in b:\n    if a:\n        break\nelse:\n    pass\n",
        "match x:\n    case 1:\n        pass\n    case _:\n        pass\n",
        "\n   \n\t\ndef f():\n\n    pass\n",
        "\u{c}def f():\n    pass\n",
        // Accepted, and tree-sitter's scanner measures them otherwise (a tab as 8 columns, a
        // count that goes on past a lone backslash): not judged by its tree.
        "if x:\n       \ta = 1\n        b = 2\n",
        "if x:\n    \\\n        y = 1\n    z = 2\n",
    ];
    let refused = python_refuses(&sources);
    for (source, why) in sources.iter().zip(refused) {
        let parsed = extract(source);
        check_invariants(source, &parsed);
        assert_eq!(
            parsed.has_syntax_errors,
            why.is_some(),
            "{source:?}: {:?}",
            parsed.syntax_errors
        );
        // Called indentation alone exactly where Python says so (all of these parse in
        // tree-sitter but the `except` inside its `try` block, a plain syntax error).
        let indentation = matches!(why.as_deref(), Some("IndentationError" | "TabError"));
        assert_eq!(parsed.indentation_only, indentation, "{source:?}: {why:?}");
    }
    let broken = extract("def f(:\n    return 1\n");
    assert!(broken.has_syntax_errors && !broken.indentation_only);
}
