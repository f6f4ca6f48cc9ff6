//! Contradictions between a docstring and its own signature, found without the model.
//!
//! A 0.5B model rarely notices that a docstring promises a set where the annotation says
//! `list[int]`, or documents a parameter the function does not have (see BENCHMARKS.md). These
//! checks read what the docstring states in a structured way and compare it with the signature,
//! in the spirit of pydoclint's return-type and argument checks:
//!
//! - the type of a Returns section (Google `Returns:\n    int: ...`, NumPy `Returns\n-------\nint`,
//!   Sphinx `:rtype: int`) against the return annotation;
//! - a sentence about the result that names its container ("Return the ids as a set", "Returns a
//!   (status, body) tuple") against the return annotation;
//! - a documented parameter (Google `Args:`, NumPy `Parameters`, Sphinx `:param`) that the
//!   signature lacks, and a documented parameter type against its annotation;
//! - a documented default ("Defaults to 3", "int, default 3", or a prose sentence about that one
//!   parameter: "The cooldown lasts 1.5 minutes by default") against the signature's default,
//!   converting units where the parameter's name carries one (`cooldown_ms`);
//! - a unit in a parameter's name (`timeout_ms`, `price_cents`) against the unit its entry or a
//!   sentence about it states ("in seconds");
//! - a promised `None` result against a return annotation that excludes it, or against a
//!   `KeyError`, `LookupError` or `IndexError` the docstring says is raised when something is
//!   absent (a Raises entry or a sentence);
//! - two statements of the docstring that cannot both hold, or a statement the signature
//!   contradicts in ways the above do not read (`statements.rs`): a count or a truth value
//!   against the annotation, an order stated both ways, an input changed in place and left
//!   untouched, a flag's default implied by "unless `flag` is turned off", a renamed parameter
//!   still named in the prose, a conversion's input unit, a percentage with a fractional default.
//!
//! Each check speaks only when both sides are unmistakable: an annotation or type it does not
//! know (`Iterator[Row]`, `"Order"`, "the matching listing") means no finding. A finding is
//! certain, so the analyzer flags the function and asks the finding's question instead of the
//! model's (see `analysis.rs`).

use tree_sitter::{Node, Parser};

use crate::python;

mod statements;

/// Part of every result-cache key: bump it when a check changes what it finds.
pub const VERSION: u32 = 4;

/// A value the function's code returns that its return annotation excludes (`-> int` over
/// `return 0.0`, `-> dict` over `return None`): the signature and the code disagree about the
/// result, so one of them is not what the author meant. Only values whose kind the syntax shows
/// count ([`python::Returned`]), and only annotations whose every part is known.
pub fn returned_contradictions(f: &python::Function) -> Vec<Contradiction> {
    use python::ValueKind as V;
    if f.returns.is_empty() {
        return Vec::new();
    }
    let problem = f.problem();
    let Some(annotation) = Signature::parse(&problem).and_then(|s| s.returns) else {
        return Vec::new();
    };
    let Some(annotated) = kinds_of_annotation(&annotation) else {
        return Vec::new();
    };
    let admitted = |kind: V| match kind {
        // An int is a fine float, and a bool a fine int (PEP 484's numeric tower).
        V::Int => overlap(annotated, INT | FLOAT),
        V::Bool => overlap(annotated, BOOL | INT | FLOAT),
        V::Float => overlap(annotated, FLOAT),
        // `/` also joins paths: a quotient contradicts only an integer result.
        V::Quotient => annotated & (INT | BOOL) == 0 || annotated & !(INT | BOOL | NONE) != 0,
        V::Str => overlap(annotated, STR),
        V::Bytes => overlap(annotated, BYTES),
        V::None => overlap(annotated, NONE),
        V::List | V::Tuple => overlap(annotated, LIST),
        V::Set => overlap(annotated, SET),
        V::Dict => overlap(annotated, DICT),
    };
    let Some(r) = f.returns.iter().find(|r| !admitted(r.kind)) else {
        return Vec::new();
    };
    let name = &f.qualname;
    let line = r.line + 1;
    let question = match r.kind {
        V::None => format!(
            "`{name}` is annotated to return `{annotation}`, but line {line} returns `None`; \
             should the annotation allow `None`, or should that case give a value or raise?"
        ),
        kind => {
            let what = match kind {
                V::Int => "an int",
                V::Float | V::Quotient => "a float",
                V::Str => "a string",
                V::Bytes => "bytes",
                V::Bool => "a bool",
                V::List => "a list",
                V::Tuple => "a tuple",
                V::Set => "a set",
                V::Dict => "a dict",
                V::None => unreachable!("handled above"),
            };
            let text = crate::examples::one_line(&r.text);
            let from = match &r.binding {
                Some(b) => format!(" (from `{}`)", crate::examples::one_line(b)),
                None => String::new(),
            };
            format!(
                "`{name}` is annotated to return `{annotation}`, but line {line} returns \
                 `{text}`{from}, {what}; which is right, the annotation or the code?"
            )
        }
    };
    vec![Contradiction { question }]
}

/// One contradiction, phrased as the question that resolves it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Contradiction {
    /// The question to ask, naming both sides.
    pub question: String,
}

/// The contradictions in a problem (`Function::problem` text: a signature and its docstring).
pub fn contradictions(problem: &str) -> Vec<Contradiction> {
    let Some(signature) = Signature::parse(problem) else {
        return Vec::new();
    };
    let parsed = python::extract(problem);
    let Some(doc) = parsed
        .functions
        .first()
        .and_then(|f| f.docstring.as_ref())
        .map(|d| d.text.as_str())
    else {
        return Vec::new();
    };
    let mut found = Vec::new();
    let returns = signature.returns.as_deref();
    if let Some((annotation, annotated)) = returns.and_then(|a| Some((a, kinds_of_annotation(a)?)))
    {
        if let Some(stated) = returns_section_type(doc) {
            if let Some(kinds) = kinds_of_doc_type(&stated) {
                if !overlap(kinds, annotated) {
                    found.push(Contradiction {
                        question: format!(
                            "The Returns section says `{stated}`, but the return annotation is `{annotation}`; which type should `{name}` return?",
                            name = signature.name
                        ),
                    });
                }
            }
        }
        // A sentence in a function returning a bool or a tuple describes its inputs or the tuple's
        // parts more often than the result.
        if found.is_empty() && annotated & (BOOL | TUPLE) == 0 {
            if let Some((phrase, kind)) = result_phrase(doc) {
                if !overlap(kind, annotated) {
                    found.push(Contradiction {
                        question: format!(
                            "The docstring says {what}, but `{name}` is annotated to return `{annotation}`; which one is right?",
                            what = match phrase.split_once(' ') {
                                Some((a, _)) if a.eq_ignore_ascii_case("as") => {
                                    format!("the result comes \"{phrase}\"")
                                }
                                _ => format!("it \"r{}\"", &phrase[1..]),
                            },
                            name = signature.name
                        ),
                    });
                }
            }
        }
    }
    if let Some(annotation) = returns {
        // In a container, None may be one of the values ("a (sha or None, is_branch) tuple").
        let scalar = kinds_of_annotation(annotation)
            .filter(|k| k & (NONE | LIST | TUPLE | SET | DICT) == 0)
            .is_some()
            && !annotation.contains("None")
            && !annotation.contains("Optional");
        if let Some(sentence) = none_promised(doc).filter(|_| scalar) {
            {
                found.push(Contradiction {
                    question: format!(
                        "The docstring says \"{sentence}\", but `{name}` is annotated to return `{annotation}`, which excludes None; should it return None or raise?",
                        name = signature.name
                    ),
                });
            }
        }
    }
    // A plain "returns None" is a procedure's result; only None on a condition ("None if the id
    // is unknown", "or None") competes with a raised lookup error.
    let conditional = |s: &String| {
        let lower = format!(" {} ", s.to_lowercase().replace('`', ""));
        [
            " none if ",
            " none when ",
            " or none ",
            " none otherwise",
            " none for ",
            " none on ",
            " none unless ",
        ]
        .iter()
        .any(|p| lower.contains(p))
    };
    if let (Some(sentence), Some(error)) = (
        none_promised(doc).filter(conditional),
        lookup_error_raised(doc),
    ) {
        found.push(Contradiction {
            question: format!(
                "The docstring says \"{sentence}\", and also that `{name}` raises {error}; which happens when nothing matches?",
                name = signature.name
            ),
        });
    }
    let mut checked = Vec::new();
    for documented in documented_parameters(doc) {
        let bare = documented.name.trim_start_matches('*');
        let Some(parameter) = signature.parameters.iter().find(|p| p.name == bare) else {
            if !signature.has_splat && !matches!(bare, "self" | "cls") {
                found.push(Contradiction {
                    question: format!(
                        "The docstring documents a parameter `{bare}` that `{}` does not have; was it renamed, or is the parameter missing?",
                        signature.name
                    ),
                });
            }
            continue;
        };
        if let (Some(stated), Some(annotation)) = (&documented.ty, &parameter.annotation) {
            if let (Some(doc_kinds), Some(ann_kinds)) =
                (kinds_of_doc_type(stated), kinds_of_annotation(annotation))
            {
                if !overlap(doc_kinds, ann_kinds) {
                    found.push(Contradiction {
                        question: format!(
                            "The docstring says `{bare}` is `{stated}`, but it is annotated `{annotation}`; which is right?"
                        ),
                    });
                }
            }
        }
        checked.push(bare.to_string());
        if let Some(question) = default_contradiction(parameter, &documented.text) {
            found.push(Contradiction { question });
        } else if let Some(question) = unit_contradiction(bare, &documented.text) {
            found.push(Contradiction { question });
        }
    }
    // Prose about one parameter ("The cooldown lasts 1.5 minutes by default.", "All times,
    // including the timeout, are in seconds.") for parameters without an entry of their own.
    let sentences = prose_sentences(doc);
    for parameter in &signature.parameters {
        // A parameter named `default` makes every "default" in the prose its name.
        if checked.contains(&parameter.name)
            || matches!(parameter.name.as_str(), "self" | "cls" | "default")
        {
            continue;
        }
        let about: Vec<&String> = sentences
            .iter()
            .filter(|s| {
                let mentioned: Vec<&Parameter> = signature
                    .parameters
                    .iter()
                    .filter(|p| mentions(s, p))
                    .collect();
                mentioned.len() == 1 && mentioned[0].name == parameter.name && !negated(s)
            })
            .collect();
        let question = about.iter().find_map(|sentence| {
            default_contradiction(parameter, sentence)
                .filter(|_| parameter.default.is_some())
                .or_else(|| unit_contradiction(&parameter.name, sentence))
        });
        if let Some(question) = question {
            found.push(Contradiction { question });
        }
    }
    found.extend(
        statements::questions(&signature, doc)
            .into_iter()
            .map(|question| Contradiction { question }),
    );
    found
}

// Kinds of value as bits, so that a union is an `|` and "no overlap" is `& == 0`.
const LIST: u16 = 1;
const TUPLE: u16 = 1 << 1;
const SET: u16 = 1 << 2;
const DICT: u16 = 1 << 3;
const STR: u16 = 1 << 4;
const INT: u16 = 1 << 5;
const FLOAT: u16 = 1 << 6;
const BOOL: u16 = 1 << 7;
const BYTES: u16 = 1 << 8;
const NONE: u16 = 1 << 9;

/// Whether two sets of kinds can describe the same value. Lists and tuples count as one kind:
/// prose and docstrings often say "list" for any sequence.
fn overlap(a: u16, b: u16) -> bool {
    let widen = |k: u16| {
        if k & (LIST | TUPLE) != 0 {
            k | LIST | TUPLE
        } else {
            k
        }
    };
    widen(a) & widen(b) != 0
}

/// The kind a type name stands for, in annotations and docstrings alike.
fn kind_of_name(name: &str) -> Option<u16> {
    let name = name.rsplit('.').next().unwrap_or(name);
    Some(match name {
        "list" | "List" | "lists" => LIST,
        "tuple" | "Tuple" | "tuples" => TUPLE,
        "set" | "Set" | "frozenset" | "FrozenSet" | "sets" => SET,
        "dict" | "Dict" | "dictionary" | "dicts" | "OrderedDict" | "defaultdict"
        | "DefaultDict" => DICT,
        "str" | "string" | "strings" => STR,
        "int" | "integer" | "integers" => INT,
        "float" | "floats" => FLOAT,
        "bool" | "boolean" => BOOL,
        "bytes" => BYTES,
        "None" => NONE,
        _ => return None,
    })
}

/// Splits at `sep` outside brackets and parentheses.
fn split_top(text: &str, sep: char) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0i32, 0);
    for (i, c) in text.char_indices() {
        match c {
            '[' | '(' => depth += 1,
            ']' | ')' => depth -= 1,
            c if c == sep && depth == 0 => {
                parts.push(&text[start..i]);
                start = i + c.len_utf8();
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts
}

/// The leading dotted name of a type expression and what is inside its brackets, if any.
fn head(text: &str) -> (&str, Option<&str>) {
    let end = text
        .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == '.'))
        .unwrap_or(text.len());
    let rest = text[end..].trim_start();
    let inner = rest
        .strip_prefix('[')
        .and_then(|r| r.strip_suffix(']'))
        .map(str::trim);
    (&text[..end], inner)
}

/// The kinds an annotation admits, or `None` when any part of it is unknown.
fn kinds_of_annotation(annotation: &str) -> Option<u16> {
    let text = annotation
        .trim()
        .trim_matches(|c| c == '"' || c == '\'')
        .trim();
    let parts = split_top(text, '|');
    if parts.len() > 1 {
        return parts
            .iter()
            .try_fold(0, |acc, p| Some(acc | kinds_of_annotation(p)?));
    }
    let (name, inner) = head(text);
    match name.rsplit('.').next().unwrap_or(name) {
        "Optional" => Some(kinds_of_annotation(inner?)? | NONE),
        "Union" => split_top(inner?, ',')
            .iter()
            .try_fold(0, |acc, p| Some(acc | kinds_of_annotation(p)?)),
        _ if name.is_empty() => None,
        _ => kind_of_name(name),
    }
}

/// The kinds a docstring's type text names ("int", "list of str", "str or None",
/// "dict[str, int]", "(int, str)"), or `None` when it is not plainly a type.
fn kinds_of_doc_type(text: &str) -> Option<u16> {
    let text = text.trim().trim_matches('`').trim();
    let mut kinds = 0;
    for part in text.split(" or ").flat_map(|p| split_top(p, '|')) {
        let part = part.trim();
        if part.starts_with('(') && part.ends_with(')') {
            kinds |= TUPLE;
            continue;
        }
        let (name, inner) = head(part);
        let rest = part[name.len()..].trim();
        // "list of str", "list[str]" and a bare name are types; "list sorted by date" is prose.
        if !(rest.is_empty() || inner.is_some() || rest.starts_with("of ")) {
            return None;
        }
        kinds |= match name {
            "Optional" => kinds_of_annotation(part)?,
            _ => kind_of_name(name)?,
        };
    }
    (kinds != 0).then_some(kinds)
}

/// The names of a docstring's section headers, as Google style writes them (`Returns:`).
const GOOGLE_PARAMETERS: [&str; 4] = ["Args:", "Arguments:", "Parameters:", "Params:"];

fn indent_of(line: &str) -> usize {
    line.len() - line.trim_start().len()
}

/// The body lines of a section: Google style (`Name:` then indented lines) or NumPy style
/// (`Name` underlined with dashes, then lines up to the next header or the end).
fn section<'a>(doc: &'a str, google: &[&str], numpy: Option<&str>) -> Option<(Vec<&'a str>, bool)> {
    let lines: Vec<&str> = doc.lines().collect();
    for (i, line) in lines.iter().enumerate() {
        if indent_of(line) != 0 {
            continue;
        }
        let header = line.trim_end();
        if google.contains(&header) {
            let body = lines[i + 1..]
                .iter()
                .take_while(|l| l.trim().is_empty() || indent_of(l) > 0)
                .copied()
                .collect();
            return Some((body, false));
        }
        let underlined = lines
            .get(i + 1)
            .is_some_and(|l| l.trim().len() >= 3 && l.trim().chars().all(|c| c == '-'));
        if Some(header) == numpy && underlined {
            let rest = &lines[i + 2..];
            let end = (0..rest.len())
                .find(|&j| {
                    indent_of(rest[j]) == 0
                        && !rest[j].trim().is_empty()
                        && rest.get(j + 1).is_some_and(|l| {
                            l.trim().len() >= 3 && l.trim().chars().all(|c| c == '-')
                        })
                })
                .unwrap_or(rest.len());
            return Some((rest[..end].to_vec(), true));
        }
    }
    None
}

/// The type a Returns section or `:rtype:` states.
fn returns_section_type(doc: &str) -> Option<String> {
    if let Some((body, numpy)) = section(doc, &["Returns:", "Return:"], Some("Returns")) {
        let first = body.iter().find(|l| !l.trim().is_empty())?.trim();
        if numpy {
            // `int` or `total : int`, then an indented description.
            return Some(match first.split_once(" : ") {
                Some((_, ty)) => ty.trim().to_string(),
                None => first.to_string(),
            });
        }
        // `int: The total.`; a sentence without a type before its colon is not a type.
        let (ty, _) = first.split_once(": ")?;
        return (ty.len() <= 40).then(|| ty.trim().to_string());
    }
    doc.lines()
        .find_map(|l| l.trim().strip_prefix(":rtype:"))
        .map(|t| t.trim().to_string())
}

/// A parameter as the docstring documents it.
struct DocParameter {
    name: String,
    /// The stated type, without ", optional" or ", default …".
    ty: Option<String>,
    /// Everything the entry says: its type text and its description, continuation lines included.
    text: String,
}

/// The parameters a docstring documents, each with its stated type if any.
fn documented_parameters(doc: &str) -> Vec<DocParameter> {
    let mut out = Vec::new();
    if let Some((body, _)) = section(doc, &GOOGLE_PARAMETERS, None) {
        // Entries sit at the section's first indentation; deeper lines continue them.
        let level = body
            .iter()
            .find(|l| !l.trim().is_empty())
            .map(|l| indent_of(l));
        for (i, line) in body.iter().enumerate() {
            if Some(indent_of(line)) != level {
                continue;
            }
            let Some((left, _)) = line.trim().split_once(':') else {
                continue;
            };
            let (name, ty) = match left.split_once('(') {
                Some((name, ty)) => (name.trim(), ty.strip_suffix(')').map(str::trim)),
                None => (left.trim(), None),
            };
            if is_parameter_name(name) {
                let continuation = body[i + 1..]
                    .iter()
                    .take_while(|l| l.trim().is_empty() || Some(indent_of(l)) > level);
                out.push(DocParameter {
                    name: name.to_string(),
                    ty: ty.map(strip_optional),
                    text: entry_text(line, continuation),
                });
            }
        }
    } else if let Some((body, _)) = section(doc, &[], Some("Parameters")) {
        // `name`, `name : type` or `a, b : type`; an unindented sentence is prose, not an entry.
        for (i, line) in body.iter().enumerate() {
            if indent_of(line) != 0 || line.trim().is_empty() {
                continue;
            }
            let (names, ty) = match line.split_once(" : ") {
                Some((names, ty)) => (names, Some(strip_optional(ty.trim()))),
                None => (line.trim_end().trim_end_matches(':'), None),
            };
            let names: Vec<&str> = names.split(',').map(str::trim).collect();
            if names.iter().all(|n| is_parameter_name(n)) {
                let continuation = body[i + 1..]
                    .iter()
                    .take_while(|l| l.trim().is_empty() || indent_of(l) > 0);
                let text = entry_text(line, continuation);
                out.extend(names.iter().map(|n| DocParameter {
                    name: n.to_string(),
                    ty: ty.clone(),
                    text: text.clone(),
                }));
            }
        }
    }
    let lines: Vec<&str> = doc.lines().collect();
    for (i, line) in lines.iter().enumerate() {
        // `:param name:` or `:param type name:`
        let Some(rest) = line.trim().strip_prefix(":param ") else {
            continue;
        };
        let Some((spec, _)) = rest.split_once(':') else {
            continue;
        };
        let mut words: Vec<&str> = spec.split_whitespace().collect();
        let Some(name) = words.pop() else { continue };
        if is_parameter_name(name) {
            let ty = (!words.is_empty()).then(|| words.join(" "));
            let continuation = lines[i + 1..]
                .iter()
                .take_while(|l| !l.trim().is_empty() && !l.trim().starts_with(':'));
            out.push(DocParameter {
                name: name.to_string(),
                ty,
                text: entry_text(line, continuation),
            });
        }
    }
    out
}

/// An entry's first line and its continuation lines as one line of text.
fn entry_text<'a>(first: &'a str, continuation: impl Iterator<Item = &'a &'a str>) -> String {
    std::iter::once(first)
        .chain(continuation.copied())
        .flat_map(str::split_whitespace)
        .collect::<Vec<_>>()
        .join(" ")
}

/// "float, optional" and "int, default 3" state the type `float` and `int`.
fn strip_optional(ty: &str) -> String {
    let ty = ty.trim();
    match split_top(ty, ',').as_slice() {
        [first, rest @ ..]
            if rest.iter().all(|r| {
                let r = r.trim();
                r == "optional" || r.starts_with("default")
            }) =>
        {
            first.trim().to_string()
        }
        _ => ty.to_string(),
    }
}

fn is_parameter_name(name: &str) -> bool {
    let bare = name.trim_start_matches('*');
    // NumPy style writes `None` under Parameters for a function without any.
    bare != "None"
        && name.len() - bare.len() <= 2
        && bare
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && bare.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

const CONTAINERS: [(&str, u16); 6] = [
    ("set", SET),
    ("list", LIST),
    ("dict", DICT),
    ("dictionary", DICT),
    ("tuple", TUPLE),
    ("string", STR),
];

/// A sentence about the result that names its container: "… as a set", "… as one
/// comma-separated string", "Returns a (status, body) tuple". Only prose paragraphs count (not
/// sections or examples), and only sentences that speak of returning.
fn result_phrase(doc: &str) -> Option<(String, u16)> {
    for paragraph in doc.split("\n\n") {
        let first = paragraph.trim_start();
        if first.starts_with(">>>")
            || first.starts_with(':')
            || GOOGLE_PARAMETERS
                .iter()
                .chain(&[
                    "Returns:",
                    "Return:",
                    "Raises:",
                    "Yields:",
                    "Examples:",
                    "Example:",
                ])
                .any(|h| first.starts_with(h))
            || first
                .lines()
                .nth(1)
                .is_some_and(|l| l.trim().starts_with("---"))
        {
            continue;
        }
        let text = paragraph.split_whitespace().collect::<Vec<_>>().join(" ");
        for sentence in text.split_inclusive(['.', ';']) {
            let words: Vec<&str> = sentence.split(' ').filter(|w| !w.is_empty()).collect();
            let lower: Vec<String> = words
                .iter()
                .map(|w| {
                    w.trim_matches(|c: char| !c.is_alphanumeric() && c != '-' && c != '_')
                        .to_lowercase()
                })
                .collect();
            if !lower.iter().any(|w| w == "return" || w == "returns") {
                continue;
            }
            for (i, w) in lower.iter().enumerate() {
                // "as a|an|one [w] [w] KIND" or "returns a|an [(…)] KIND"
                let after_article = match (w.as_str(), lower.get(i + 1).map(String::as_str)) {
                    ("as", Some("a" | "an" | "one")) => i + 2,
                    ("returns" | "return", Some("a" | "an")) => i + 2,
                    _ => continue,
                };
                let mut j = after_article;
                if w.starts_with("return") && words.get(j).is_some_and(|w| w.starts_with('(')) {
                    while j < words.len() && !words[j].ends_with(')') {
                        j += 1;
                    }
                    j += 1;
                }
                let limit = if w == "as" { j + 3 } else { j + 1 };
                for k in j..limit.min(lower.len()) {
                    if let Some(&(_, kind)) = CONTAINERS.iter().find(|(n, _)| *n == lower[k]) {
                        let phrase = words[i..=k].join(" ");
                        let phrase = phrase.trim_end_matches(|c: char| !c.is_alphanumeric());
                        return Some((phrase.to_string(), kind));
                    }
                }
            }
        }
    }
    None
}

/// A literal value, as a signature's default or a docstring's "Defaults to …" states it.
#[derive(Debug, Clone, PartialEq)]
enum Literal {
    Number(f64),
    Text(String),
    Bool(bool),
    None,
}

impl Literal {
    /// A Python literal as written in source: `3`, `-0.5`, `1_000`, `'utf-8'`, `True`, `None`.
    fn parse(text: &str) -> Option<Literal> {
        let text = text.trim();
        match text {
            "True" => return Some(Literal::Bool(true)),
            "False" => return Some(Literal::Bool(false)),
            "None" => return Some(Literal::None),
            _ => {}
        }
        for quote in ['\'', '"'] {
            if let Some(inner) = text.strip_prefix(quote).and_then(|t| t.strip_suffix(quote)) {
                return (!inner.contains(quote)).then(|| Literal::Text(inner.to_string()));
            }
        }
        let digits = text.replace('_', "");
        let starts_like_a_number = digits
            .trim_start_matches(['-', '+'])
            .starts_with(|c: char| c.is_ascii_digit() || c == '.');
        if !starts_like_a_number {
            return None;
        }
        digits
            .parse::<f64>()
            .ok()
            .filter(|n| n.is_finite())
            .map(Literal::Number)
    }

    fn same(&self, other: &Literal) -> bool {
        match (self, other) {
            (Literal::Number(a), Literal::Number(b)) => (a - b).abs() <= 1e-9 * a.abs().max(1.0),
            (Literal::Text(a), Literal::Text(b)) => a.eq_ignore_ascii_case(b),
            (a, b) => a == b,
        }
    }
}

/// The default a parameter's entry states ("Defaults to 3.", "int, default 3",
/// "(default: ``','``)", "default is True"), with the word after it (a unit, perhaps). Only
/// literals count: "Defaults to the current directory" states nothing comparable.
fn documented_default(text: &str) -> Option<(Literal, String, String)> {
    // ASCII lowercasing keeps byte offsets, so they index `text` too.
    let lower = text.to_ascii_lowercase();
    let mut from = 0;
    while let Some(at) = lower[from..].find("default") {
        let start = from + at;
        from = start + "default".len();
        // Only where a clause starts ("Defaults to 3.", "int, default 3", "(default: 3)"): "the
        // PostgreSQL default is 5432" states someone else's default.
        let before = lower[..start].trim_end();
        if !(before.is_empty() || before.ends_with(['.', ';', '(', ',', ':', '['])) {
            continue;
        }
        let Some(rest) = ["s to ", " to ", " value is ", " is ", ": ", "=", " "]
            .iter()
            .find_map(|connective| text[from..].strip_prefix(connective))
        else {
            continue;
        };
        let rest = rest.trim_start();
        // A quoted value may hold spaces and punctuation: take it whole.
        let unticked = rest.trim_start_matches('`');
        let (written, after) = match unticked.chars().next() {
            Some(q @ ('\'' | '"')) => match unticked[1..].find(q) {
                Some(end) => unticked.split_at(end + 2),
                None => continue,
            },
            _ => {
                let end = unticked
                    .find(|c: char| c.is_whitespace() || c == '`' || c == ')' || c == ';')
                    .unwrap_or(unticked.len());
                let (word, after) = unticked.split_at(end);
                (word.trim_end_matches(['.', ',', ':']), after)
            }
        };
        let written = if is_thousands(written) {
            written.replace(',', "")
        } else {
            written.to_string()
        };
        let literal = match written.as_str() {
            "true" => Some(Literal::Bool(true)),
            "false" => Some(Literal::Bool(false)),
            w => Literal::parse(w),
        };
        if let Some(literal) = literal {
            let after = after.trim_start_matches('`');
            let unit = if after.starts_with('%') {
                "%".to_string()
            } else {
                after
                    .split_whitespace()
                    .next()
                    .unwrap_or("")
                    .trim_matches(|c: char| !c.is_alphanumeric())
                    .to_lowercase()
            };
            return Some((literal, unit, written));
        }
    }
    None
}

/// A default stated before "by default" ("The cooldown lasts 1.5 minutes by default").
fn default_before_by_default(text: &str) -> Option<(Literal, String, String)> {
    let lower = text.to_ascii_lowercase();
    let at = lower.find(" by default")?;
    let before: Vec<&str> = text[..at].split_whitespace().collect();
    let candidates = [
        before.len().checked_sub(1).map(|i| (before[i], "")),
        before
            .len()
            .checked_sub(2)
            .map(|i| (before[i], before[i + 1])),
    ];
    candidates.into_iter().flatten().find_map(|(word, unit)| {
        let word = word.trim_matches('`');
        let literal = Literal::parse(word)?;
        let unit = unit
            .trim_matches(|c: char| !c.is_alphanumeric())
            .to_lowercase();
        (unit.is_empty() || unit_of_word(&unit).is_some())
            .then(|| (literal, unit, word.to_string()))
    })
}

/// "1,000" and "25,000,000" (but not "3,4").
fn is_thousands(text: &str) -> bool {
    let mut groups = text.split(',');
    let first = groups.next().unwrap_or("");
    text.contains(',')
        && (1..=3).contains(&first.len())
        && first.chars().all(|c| c.is_ascii_digit())
        && groups.all(|g| g.len() == 3 && g.chars().all(|c| c.is_ascii_digit()))
}

/// A documented default that the signature contradicts: a different literal, or a default the
/// function does not have. A `None` default is left alone (it often stands for a value computed
/// inside), and so are numbers whose units may differ ("Defaults to 5 minutes" for
/// `timeout=300`) or that a word other than a known unit follows ("1 hour", "10 percent").
fn default_contradiction(parameter: &Parameter, entry: &str) -> Option<String> {
    let (stated, unit, written) =
        documented_default(entry).or_else(|| default_before_by_default(entry))?;
    let name = &parameter.name;
    let Some(default) = parameter.default.as_deref() else {
        return Some(format!(
            "The docstring says `{name}` defaults to `{written}`, but the signature gives it no default; is it optional?"
        ));
    };
    let actual = Literal::parse(default)?;
    if actual == Literal::None || stated.same(&actual) {
        return None;
    }
    let differs = match (&stated, &actual) {
        (Literal::Number(doc), Literal::Number(code)) => {
            match (unit_of_word(&unit), unit_of_name(name)) {
                // "1.5 minutes" for `cooldown_ms=1500`: compare in one unit.
                (Some(stated_unit), Some(named_unit)) if stated_unit.0 == named_unit.0 => {
                    let (doc, code) = (doc * stated_unit.1, code * named_unit.1);
                    (doc - code).abs() > 1e-9 * doc.abs().max(code.abs())
                }
                // "Defaults to 3." compares; "1 hour", "10 percent" or "3 if unset" may not.
                (None, _) => unit.is_empty(),
                _ => false,
            }
        }
        // Escapes and whitespace read differently in a docstring and in source ('\t').
        (Literal::Text(a), Literal::Text(b)) => ![a, b]
            .iter()
            .any(|t| t.contains('\\') || t.contains(char::is_whitespace)),
        (Literal::None, _) | (Literal::Bool(_), Literal::Bool(_)) => true,
        _ => false,
    };
    differs.then(|| {
        format!(
            "The docstring says `{name}` defaults to `{written}`{unit}, but the signature's default is `{default}`; which is right?",
            unit = if unit_of_word(&unit).is_some() { format!(" {unit}") } else { String::new() },
        )
    })
}

/// A measured quantity's dimension and its size in the dimension's base unit.
type Unit = (&'static str, f64);

/// The unit a word names: "ms", "seconds", "minutes", "kb", "cents"… Only plurals and
/// abbreviations, so that "in second place" or "(min)" mean nothing.
fn unit_of_word(word: &str) -> Option<Unit> {
    Some(match word {
        "ms" | "msec" | "msecs" | "millis" | "milliseconds" => ("time", 0.001),
        "secs" | "seconds" => ("time", 1.0),
        "mins" | "minutes" => ("time", 60.0),
        "hrs" | "hours" => ("time", 3600.0),
        "days" => ("time", 86400.0),
        "bytes" => ("size", 1.0),
        "kb" | "kib" | "kilobytes" => ("size", 1024.0),
        "mb" | "mib" | "megabytes" => ("size", 1024.0 * 1024.0),
        "gb" | "gib" | "gigabytes" => ("size", 1024.0 * 1024.0 * 1024.0),
        "cents" => ("money", 0.01),
        "dollars" | "euros" | "pounds" => ("money", 1.0),
        _ => return None,
    })
}

/// The unit a parameter's name carries: `timeout_ms`, `delay_seconds`, `max_kb`, `price_cents`,
/// or a bare `seconds`.
fn unit_of_name(name: &str) -> Option<Unit> {
    let suffix = name.rsplit('_').next().unwrap_or(name).to_lowercase();
    match suffix.as_str() {
        // `_min` and `_h` are more often "minimum" and "height" than minutes and hours.
        "s" | "sec" if name.contains('_') => Some(("time", 1.0)),
        s => unit_of_word(s),
    }
}

/// A parameter whose name carries one unit while its entry states another ("timeout_ms: How
/// long to wait, in seconds"). The entry must state the unit as its unit ("in seconds",
/// "(minutes)", "number of hours", or a leading "Seconds to wait") and not mention the name's.
fn unit_contradiction(name: &str, entry: &str) -> Option<String> {
    let named = unit_of_name(name)?;
    let words: Vec<String> = entry
        .split(|c: char| !(c.is_alphanumeric() || c == '_' || c == '(' || c == ')'))
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect();
    // The entry's own name is its first word; its description starts after the type.
    let mentions = |unit: Unit| {
        words
            .iter()
            .skip(1)
            .any(|w| unit_of_word(w.trim_matches(['(', ')'])).is_some_and(|u| u == unit))
    };
    if mentions(named) {
        return None;
    }
    let description = entry.split_once(':').map_or(entry, |(_, d)| d);
    let lower = description.to_lowercase();
    let tokens: Vec<&str> = lower
        .split(|c: char| c.is_whitespace() || c == ',' || c == '.' || c == ';')
        .filter(|w| !w.is_empty())
        .collect();
    let stated = tokens.iter().enumerate().find_map(|(i, token)| {
        let as_unit = |w: &str| unit_of_word(w).filter(|u| u.0 == named.0);
        let previous = i.checked_sub(1).map(|j| tokens[j]);
        let unit = if let Some(inner) = token.strip_prefix('(').and_then(|t| t.strip_suffix(')')) {
            as_unit(inner)
        } else if matches!(previous, Some("in"))
            || (previous == Some("of") && i >= 2 && tokens[i - 2] == "number")
            || i == 0
        {
            as_unit(token)
        } else {
            None
        };
        unit.map(|_| token.trim_matches(['(', ')']).to_string())
    })?;
    Some(format!(
        "`{name}`'s name says its unit, but the docstring gives it in {stated}; which unit does `{name}` take?"
    ))
}

/// The Returns section's text on one line (empty without one).
fn returns_text(doc: &str) -> String {
    section(doc, &["Returns:", "Return:"], Some("Returns"))
        .map(|(body, _)| {
            body.join(" ")
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default()
}

/// A sentence promising that the function returns `None` ("Return the user, or None if there is
/// none."), from the prose or the Returns section; a negated one ("never returns None") does not
/// count.
fn none_promised(doc: &str) -> Option<String> {
    let section_text = returns_text(doc);
    prose_sentences(doc)
        .into_iter()
        // After a semicolon the verb is lowercase: "Look up a user; returns None if …".
        .filter(|s| {
            // Lowercase only in the third person: "return None to skip the row" tells a
            // callback what to do.
            ["Return ", "Returns ", "returns "]
                .iter()
                .any(|v| s.starts_with(v))
        })
        .chain(std::iter::once(section_text).filter(|s| !s.is_empty()))
        .find(|sentence| {
            // "If-None-Match" is one word; "``None``," is `None`.
            let sentence = sentence.replace('\u{2019}', "'");
            let words: Vec<&str> = sentence
                .split_whitespace()
                .map(|w| w.trim_matches(|c: char| !(c.is_alphanumeric() || c == '\'')))
                .filter(|w| !w.is_empty())
                .collect();
            // The result is None: "returns None", "None if …", "None otherwise", and "or None"
            // where it ends the sentence or a condition follows ("missing or None (…)" speaks of
            // a value).
            let result_none = words.iter().enumerate().any(|(i, w)| {
                let next = words.get(i + 1).copied();
                let condition = next.is_some_and(|n| {
                    matches!(n, "if" | "when" | "otherwise" | "for" | "unless" | "on")
                });
                *w == "None"
                    && (i.checked_sub(1).is_some_and(|j| {
                        matches!(
                            words[j],
                            "return" | "returns" | "Returns" | "Return" | "otherwise" | "else"
                        ) || (words[j] == "or" && (next.is_none() || condition))
                    }) || condition
                        || (i == 0 && words.len() > 1))
            });
            // A negation before None denies it ("never returns None"); after it, it is part of
            // the condition ("None if it isn't found"), unless it denies None itself ("None is
            // never returned").
            let denial = |w: &&str| {
                matches!(*w, "never" | "not" | "Never" | "Not" | "instead") || w.ends_with("n't")
            };
            let at = words.iter().position(|w| *w == "None").unwrap_or(0);
            let denied_after = matches!(words.get(at + 1), Some(&("is" | "are" | "will" | "was")))
                && words.get(at + 2).is_some_and(denial);
            result_none && !words[..at].iter().any(denial) && !denied_after
        })
        .map(|s| s.trim_end_matches(['.', ';']).to_string())
}

/// The docstring's prose (not the paragraphs that start with a section header or an example) as
/// sentences, whitespace collapsed.
/// A sentence ends at `.`, `;`, `!` or `?` before a space, so "1.5 minutes" stays whole.
fn prose_sentences(doc: &str) -> Vec<String> {
    let mut sentences = Vec::new();
    for paragraph in paragraphs(doc) {
        let paragraph = paragraph.as_str();
        let first = paragraph.trim_start();
        let header = first.lines().next().unwrap_or("").trim_end();
        let underlined = first
            .lines()
            .nth(1)
            .is_some_and(|l| l.trim().starts_with("---"));
        if first.starts_with(">>>")
            || first.starts_with(':')
            || underlined
            || SECTION_HEADERS.contains(&header)
            || is_section_header(header)
        {
            continue;
        }
        let text = paragraph.split_whitespace().collect::<Vec<_>>().join(" ");
        let mut start = 0;
        let bytes = text.as_bytes();
        for (i, c) in text.char_indices() {
            let at_end =
                matches!(c, '.' | ';' | '!' | '?') && bytes.get(i + 1).is_none_or(|b| *b == b' ');
            if at_end {
                sentences.push(text[start..=i].trim().to_string());
                start = i + 1;
            }
        }
        if !text[start..].trim().is_empty() {
            sentences.push(text[start..].trim().to_string());
        }
    }
    sentences
}

/// A docstring's paragraphs: runs of lines between blank lines, where a line of spaces counts as
/// blank too.
fn paragraphs(doc: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current: Vec<&str> = Vec::new();
    for line in doc.lines() {
        if line.trim().is_empty() {
            if !current.is_empty() {
                out.push(current.join("\n"));
                current.clear();
            }
        } else {
            current.push(line);
        }
    }
    if !current.is_empty() {
        out.push(current.join("\n"));
    }
    out
}

/// A Google-style header beyond the common ones: "Keyword Args:", "See Also:", "Other
/// Parameters:", "Warning:" (one to three capitalized words and a colon, nothing after it).
fn is_section_header(line: &str) -> bool {
    let Some(name) = line.trim().strip_suffix(':') else {
        return false;
    };
    let words: Vec<&str> = name.split_whitespace().collect();
    (1..=3).contains(&words.len())
        && words[0].starts_with(|c: char| c.is_ascii_uppercase())
        && words
            .iter()
            .all(|w| w.chars().all(|c| c.is_ascii_alphabetic()))
}

/// A sentence that says what something is not ("It does not default to '/'", "unlike …").
fn negated(sentence: &str) -> bool {
    sentence.split_whitespace().any(|w| {
        let w = w
            .replace('\u{2019}', "'")
            .trim_matches(|c: char| !c.is_alphanumeric() && c != '\'')
            .to_lowercase();
        matches!(w.as_str(), "not" | "never" | "unlike" | "instead" | "no") || w.ends_with("n't")
    })
}

/// Section headers whose paragraphs are not prose.
const SECTION_HEADERS: [&str; 13] = [
    "Args:",
    "Arguments:",
    "Parameters:",
    "Params:",
    "Returns:",
    "Return:",
    "Raises:",
    "Yields:",
    "Examples:",
    "Example:",
    "Note:",
    "Notes:",
    "Attributes:",
];

/// Whether a sentence speaks of a parameter: its name, or the name without its unit suffix
/// (`timeout` for `timeout_ms`) when that is a word of its own.
fn mentions(sentence: &str, parameter: &Parameter) -> bool {
    let lower = sentence.to_lowercase();
    let words: Vec<&str> = lower
        .split(|c: char| !(c.is_alphanumeric() || c == '_'))
        .filter(|w| !w.is_empty())
        .collect();
    let name = parameter.name.to_lowercase();
    if words.contains(&name.as_str()) {
        return true;
    }
    match name.rsplit_once('_') {
        Some((stem, _)) if unit_of_name(&name).is_some() && stem.len() >= 4 => {
            words.contains(&stem)
        }
        _ => false,
    }
}

/// A lookup error the docstring says the function raises when something is absent: an entry of
/// its Raises section or a sentence such as "Raises KeyError if no user has that id". A negated
/// sentence ("does not raise KeyError") and another condition ("IndexError: if n is negative")
/// do not count.
fn lookup_error_raised(doc: &str) -> Option<&'static str> {
    const ERRORS: [&str; 3] = ["KeyError", "LookupError", "IndexError"];
    let absent = |text: &str| {
        let lower = text.to_ascii_lowercase();
        let words: Vec<&str> = lower
            .split(|c: char| !c.is_ascii_alphanumeric() && c != '\'')
            .collect();
        words.iter().any(|w| {
            matches!(
                *w,
                "no" | "missing" | "unknown" | "absent" | "nonexistent" | "exist" | "exists"
            )
        }) || lower.contains("not found")
            || lower.contains("isn't found")
            || lower.contains("not in ")
    };
    let error_in = |words: &[&str]| {
        ERRORS
            .iter()
            .find(|e| {
                words
                    .iter()
                    .any(|w| w.trim_matches(|c: char| !c.is_alphanumeric()) == **e)
            })
            .copied()
    };
    let in_section = section(doc, &["Raises:"], Some("Raises")).and_then(|(body, _)| {
        body.iter().find_map(|line| {
            let first = line.trim().split([':', ' ']).next()?;
            let error = ERRORS.iter().find(|e| first.trim_matches('`') == **e)?;
            absent(line).then_some(*error)
        })
    });
    in_section.or_else(|| {
        prose_sentences(doc).iter().find_map(|sentence| {
            let words: Vec<&str> = sentence.split_whitespace().collect();
            let raises = words.iter().position(|w| {
                matches!(
                    w.trim_matches(|c: char| !c.is_alphanumeric()),
                    "Raises" | "raises" | "raise" | "Raise"
                )
            })?;
            let error = error_in(&words[raises + 1..(raises + 3).min(words.len())])?;
            // "does not raise KeyError" is negated; "raises KeyError if no user …" is not.
            (!negated(&words[..raises].join(" ")) && absent(sentence)).then_some(error)
        })
    })
}

/// What the checks need of a signature.
struct Signature {
    name: String,
    parameters: Vec<Parameter>,
    /// `*args` or `**kwargs`: the docstring may document names that reach them.
    has_splat: bool,
    returns: Option<String>,
}

struct Parameter {
    name: String,
    annotation: Option<String>,
    /// The default as written in the source (`3`, `'utf-8'`, `None`).
    default: Option<String>,
}

impl Signature {
    fn parse(problem: &str) -> Option<Signature> {
        let mut parser = Parser::new();
        parser
            .set_language(&tree_sitter_python::LANGUAGE.into())
            .ok()?;
        let tree = parser.parse(problem, None)?;
        let def = find_function(tree.root_node())?;
        let text = |n: Node| problem[n.byte_range()].to_string();
        let name = text(def.child_by_field_name("name")?);
        let returns = def.child_by_field_name("return_type").map(text);
        let mut parameters = Vec::new();
        let mut has_splat = false;
        let list = def.child_by_field_name("parameters")?;
        let mut cursor = list.walk();
        for p in list.named_children(&mut cursor) {
            let default = p.child_by_field_name("value").map(text);
            let (name_node, annotation) = match p.kind() {
                "identifier" => (Some(p), None),
                "typed_parameter" => (p.named_child(0), p.child_by_field_name("type").map(text)),
                "default_parameter" | "typed_default_parameter" => (
                    p.child_by_field_name("name"),
                    p.child_by_field_name("type").map(text),
                ),
                "list_splat_pattern" => (p.named_child(0), None),
                "dictionary_splat_pattern" => {
                    has_splat = true;
                    (p.named_child(0), None)
                }
                _ => (None, None),
            };
            // `*args: int` and `**kwargs: str` are typed parameters around a splat.
            let name_node = match name_node {
                Some(n) if n.kind() == "dictionary_splat_pattern" => {
                    has_splat = true;
                    n.named_child(0)
                }
                Some(n) if n.kind() == "list_splat_pattern" => n.named_child(0),
                other => other,
            };
            if let Some(n) = name_node {
                parameters.push(Parameter {
                    name: text(n),
                    annotation,
                    default,
                });
            }
        }
        Some(Signature {
            name,
            parameters,
            has_splat,
            returns,
        })
    }
}

fn find_function(node: Node) -> Option<Node> {
    if node.kind() == "function_definition" {
        return Some(node);
    }
    let mut cursor = node.walk();
    let children: Vec<Node> = node.named_children(&mut cursor).collect();
    children.into_iter().find_map(find_function)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sources on which no check may speak (both sides agree, or one is not unmistakable).
    fn assert_silent(sources: &[&str]) {
        for source in sources {
            assert_eq!(questions(source), Vec::<String>::new(), "{source}");
        }
    }

    fn questions(source: &str) -> Vec<String> {
        contradictions(source)
            .into_iter()
            .map(|c| c.question)
            .collect()
    }

    fn returned(source: &str) -> Vec<String> {
        let parsed = python::extract(source);
        parsed
            .functions
            .iter()
            .flat_map(returned_contradictions)
            .map(|c| c.question)
            .collect()
    }

    #[test]
    fn a_returned_value_against_the_annotation() {
        let doc = "    \"\"\"Do it.\"\"\"\n";
        let with = |header: &str, body: &str| format!("{header}\n{doc}{body}");
        // Literals, displays, calls with a plain result, a bare `return`, a local name.
        for (header, body, question) in [
            (
                "def mean(xs: list[int]) -> int:",
                "    if not xs:\n        return 0.0\n    return sum(xs) // len(xs)\n",
                "`mean` is annotated to return `int`, but line 4 returns `0.0`, a float; which is right, the annotation or the code?",
            ),
            (
                "def ids(rows) -> list[int]:",
                "    return {r.id for r in rows}\n",
                "`ids` is annotated to return `list[int]`, but line 3 returns `{r.id for r in rows}`, a set; which is right, the annotation or the code?",
            ),
            (
                "def find(users, email) -> dict:",
                "    for u in users:\n        if u['email'] == email:\n            return u\n    return\n",
                "`find` is annotated to return `dict`, but line 6 returns `None`; should the annotation allow `None`, or should that case give a value or raise?",
            ),
            (
                "def serial(raw: str) -> int:",
                "    return raw.split(':')[1].strip()\n",
                "`serial` is annotated to return `int`, but line 3 returns `raw.split(':')[1].strip()`, a string; which is right, the annotation or the code?",
            ),
            (
                "def ratio(a: int, b: int) -> Optional[int]:",
                "    r = round(a / b, 2)\n    return r\n",
                "`ratio` is annotated to return `Optional[int]`, but line 4 returns `r` (from `r = round(a / b, 2)`), a float; which is right, the annotation or the code?",
            ),
            (
                "def status(r) -> dict:",
                "    return 200, {'ok': True}\n",
                "`status` is annotated to return `dict`, but line 3 returns `200, {'ok': True}`, a tuple; which is right, the annotation or the code?",
            ),
        ] {
            assert_eq!(returned(&with(header, body)), [question], "{header}");
        }
        // Agreeing values, values whose kind the syntax does not show, and annotations that are
        // not plainly a type say nothing.
        for (header, body) in [
            // An int is a float, a bool an int; a list and a tuple are both sequences.
            ("def f(x) -> float:", "    if x:\n        return 0\n    return True\n"),
            ("def f(x) -> tuple[int, int]:", "    return [x, x]\n"),
            ("def f(x) -> Optional[str]:", "    if x:\n        return None\n    return f'{x}'\n"),
            ("def f(x) -> int | None:", "    return\n"),
            // `/` joins paths; bytes have `rstrip` and `join` too.
            ("def f(d) -> Path:", "    return d / 'a.txt'\n"),
            ("def f(d) -> str:", "    p = d / 'a.txt'\n    return p\n"),
            ("def f(s) -> bytes:", "    return base64.b64encode(s).rstrip(b'=')\n"),
            ("def f(parts) -> bytes:", "    return b','.join(parts)\n"),
            // A generator, a nested function's return, a lambda.
            ("def f(xs) -> Iterator[int]:", "    for x in xs:\n        yield x\n    return None\n"),
            ("def f(xs) -> list[int]:", "    yield 1\n    return 'done'\n"),
            ("def f(x) -> int:", "    def g():\n        return 'a'\n    return len(g())\n"),
            ("def f(x) -> int:", "    key = lambda y: str(y)\n    return x\n"),
            // A name bound otherwise than by a plain assignment, or a parameter.
            ("def f(x) -> int:", "    y = 0.5\n    y += x\n    return y\n"),
            ("def f(xs) -> int:", "    n = 0.0\n    for n in xs:\n        pass\n    return n\n"),
            ("def f(x) -> int:", "    a, b = 1.5, 2\n    return a\n"),
            ("def f(x) -> int:", "    y = 1.5\n    y = int(y)\n    return y\n"),
            ("def f(x: str = '') -> int:", "    return x\n"),
            ("def f(x) -> int:", "    with open(x) as y:\n        pass\n    return y\n"),
            ("def f(x) -> int:", "    try:\n        y = 1\n    except ValueError as y:\n        pass\n    return y\n"),
            // Unknown annotations, strings that are not plainly str.
            ("def f(x) -> Any:", "    return 'a'\n"),
            ("def f(x) -> 'Order':", "    return None\n"),
            ("def f(x) -> T:", "    return 1.5\n"),
            ("def f(x):", "    return 1.5\n"),
            ("def f(x) -> int:", "    return x.decode()\n"),
        ] {
            assert_eq!(returned(&with(header, body)), Vec::<String>::new(), "{header}\n{body}");
        }
    }

    #[test]
    fn returns_section_type_against_the_annotation() {
        let found = questions(
            "def invoice_total(lines: list[dict]) -> float:\n    \"\"\"Return the total.\n\n    Returns:\n        int: The total in cents.\n    \"\"\"\n",
        );
        assert_eq!(
            found,
            ["The Returns section says `int`, but the return annotation is `float`; which type should `invoice_total` return?"]
        );
        // NumPy and Sphinx styles, and agreeing types that say nothing.
        assert_eq!(
            questions("def f(x) -> str:\n    \"\"\"Name it.\n\n    Returns\n    -------\n    int\n        The id.\n    \"\"\"\n").len(),
            1
        );
        assert_eq!(
            questions("def f(x) -> list[str]:\n    \"\"\"Names.\n\n    :rtype: dict\n    \"\"\"\n")
                .len(),
            1
        );
        assert_silent(&[
            "def f(x) -> int | None:\n    \"\"\"Find it.\n\n    Returns:\n        int or None: The index.\n    \"\"\"\n",
            "def f(x) -> Optional[List[str]]:\n    \"\"\"Names.\n\n    Returns:\n        list of str: The names.\n    \"\"\"\n",
            "def f(x) -> dict:\n    \"\"\"Look it up.\n\n    Returns:\n        The matching listing: a dict, or None.\n    \"\"\"\n",
            "def f(x) -> Iterator[Row]:\n    \"\"\"Rows.\n\n    Returns:\n        list: The rows.\n    \"\"\"\n",
        ]);
    }

    #[test]
    fn a_sentence_about_the_result_against_the_annotation() {
        assert_eq!(
            questions("def active_ids(devices) -> list[int]:\n    \"\"\"Return the ids of active devices, as a set.\"\"\"\n"),
            ["The docstring says the result comes \"as a set\", but `active_ids` is annotated to return `list[int]`; which one is right?"]
        );
        // A sentence may start with it.
        assert_eq!(
            questions("def active_ids(devices) -> list[int]:\n    \"\"\"Collect the active devices.\n\n    As a set, it returns their ids.\n    \"\"\"\n"),
            ["The docstring says the result comes \"As a set\", but `active_ids` is annotated to return `list[int]`; which one is right?"]
        );
        assert_eq!(
            questions("def health(request) -> dict:\n    \"\"\"Health check.\n\n    Returns a (status_code, body) tuple.\n    \"\"\"\n").len(),
            1
        );
        assert_eq!(
            questions("def names(people) -> list[str]:\n    \"\"\"Return the names as one comma-separated string.\"\"\"\n").len(),
            1
        );
        assert_silent(&[
            "def names(people) -> str:\n    \"\"\"Return the names as one comma-separated string.\"\"\"\n",
            "def ok(value) -> bool:\n    \"\"\"Return True if the value is given as a string.\"\"\"\n",
            "def rows(path) -> list[dict]:\n    \"\"\"Read the file.\n\n    Each row comes as a dict; the file is read as a string first.\n    \"\"\"\n",
            "def keys(d) -> Sequence[str]:\n    \"\"\"Return the keys as a list.\"\"\"\n",
        ]);
    }

    #[test]
    fn documented_defaults_against_the_signature() {
        assert_eq!(
            questions("def render(rows, with_newlines=True):\n    \"\"\"Render.\n\n    Args:\n        rows (list): The rows.\n        with_newlines (bool): Add newlines. Default ``False``.\n    \"\"\"\n"),
            ["The docstring says `with_newlines` defaults to `False`, but the signature's default is `True`; which is right?"]
        );
        assert_eq!(
            questions("def export(rows, delimiter: str = \";\"):\n    \"\"\"Export.\n\n    Parameters\n    ----------\n    delimiter : str, default ','\n        Field separator.\n    \"\"\"\n"),
            ["The docstring says `delimiter` defaults to `','`, but the signature's default is `\";\"`; which is right?"]
        );
        assert_eq!(
            questions("def page(items, size: int):\n    \"\"\"Page.\n\n    Args:\n        items: All items.\n        size: Items per page. Defaults to 20.\n    \"\"\"\n"),
            ["The docstring says `size` defaults to `20`, but the signature gives it no default; is it optional?"]
        );
        // Prose about one parameter, with units compared in one unit.
        assert_eq!(
            questions("def cooldown_left(now: float, cooldown_ms: int = 1500) -> float:\n    \"\"\"Return the seconds left.\n\n    The cooldown lasts 1.5 minutes by default.\n    \"\"\"\n"),
            ["The docstring says `cooldown_ms` defaults to `1.5` minutes, but the signature's default is `1500`; which is right?"]
        );
        assert_silent(&[
            // Same value in another unit, in words, as a percentage, or behind a None default.
            "def wait(timeout_s: float = 90):\n    \"\"\"Wait.\n\n    Args:\n        timeout_s: Defaults to 1.5 minutes.\n    \"\"\"\n",
            "def wait(timeout=300):\n    \"\"\"Wait.\n\n    Args:\n        timeout: Seconds to wait. Defaults to 5 minutes.\n    \"\"\"\n",
            "def tax(pay, rate=0.1):\n    \"\"\"Tax.\n\n    Args:\n        pay: Gross pay.\n        rate: The rate. Defaults to 10%.\n    \"\"\"\n",
            "def fmt(x, encoding=None):\n    \"\"\"Format.\n\n    Args:\n        x: Value.\n        encoding: Defaults to 'utf-8'.\n    \"\"\"\n",
            "def fmt(x, sep=','):\n    \"\"\"Format.\n\n    Args:\n        x: Value.\n        sep: The default separator is used when empty. Defaults to ``','``.\n    \"\"\"\n",
            "def fmt(x, limit=1_000):\n    \"\"\"Format.\n\n    Args:\n        limit: Defaults to 1,000.\n    \"\"\"\n",
            // Found in review: non-ASCII text, singular or unknown units, someone else's default,
            // an escaped character, a `_min` that means "minimum".
            "def f(city='Ankara'):\n    \"\"\"Pick.\n\n    Args:\n        city: A name such as İstanbul or İzmir; None means the default.\n    \"\"\"\n",
            "def f(temp=300):\n    \"\"\"Heat.\n\n    Args:\n        temp: Given in \u{212a}; 20 °C by default.\n    \"\"\"\n",
            "def wait(timeout=3600):\n    \"\"\"Wait.\n\n    Args:\n        timeout: Seconds. Defaults to 1 hour.\n    \"\"\"\n",
            "def connect(host: str, port: int):\n    \"\"\"Connect.\n\n    Args:\n        host: The host.\n        port: The TCP port. The PostgreSQL default is 5432.\n    \"\"\"\n",
            "def wrap(text, width=70):\n    \"\"\"Wrap.\n\n    Lines longer than width are wrapped (the terminal default is 80).\n    \"\"\"\n",
            "def split(line, delimiter='\\t'):\n    \"\"\"Split.\n\n    Args:\n        line: A line.\n        delimiter: Defaults to '\t'.\n    \"\"\"\n",
            "def retry(delay_min: float = 0.5):\n    \"\"\"Retry.\n\n    Args:\n        delay_min: Minimum delay between retries, in seconds.\n    \"\"\"\n",
            // Negated prose, and a parameter called `default`.
            "def quote_plus(string, safe=''):\n    \"\"\"Quote.\n\n    It does not have safe default to '/'.\n    \"\"\"\n",
            "def icon(self, default=False):\n    \"\"\"Set the icon. If default is True, apply it everywhere.\"\"\"\n",
        ]);
    }

    #[test]
    fn a_unit_in_the_name_against_the_docstring() {
        assert_eq!(
            questions("def wait(host, timeout_ms: int = 5000) -> bool:\n    \"\"\"Wait.\n\n    Args:\n        host: The host.\n        timeout_ms: How long to wait, in seconds.\n    \"\"\"\n"),
            ["`timeout_ms`'s name says its unit, but the docstring gives it in seconds; which unit does `timeout_ms` take?"]
        );
        assert_eq!(
            questions("def wait(host, timeout_ms: int = 5000) -> bool:\n    \"\"\"Wait for the port.\n\n    All times, including the timeout, are in seconds.\n    \"\"\"\n").len(),
            1
        );
        assert_silent(&[
            "def wait(host, timeout_ms: int = 5000):\n    \"\"\"Wait.\n\n    Args:\n        host: The host.\n        timeout_ms: In milliseconds (5 seconds by default).\n    \"\"\"\n",
            "def wait(host, timeout: int = 5):\n    \"\"\"Wait.\n\n    Args:\n        timeout: In seconds.\n    \"\"\"\n",
            "def backoff(attempt, base_s=1.0):\n    \"\"\"Back off.\n\n    Args:\n        base_s: First delay; doubles each time, up to 10 minutes.\n    \"\"\"\n",
        ]);
    }

    #[test]
    fn none_promised_against_the_annotation_or_a_raised_lookup_error() {
        assert_eq!(
            questions("def find(users, user_id: int) -> User:\n    \"\"\"Find a user.\n\n    Returns the user, or None if there is none.\n    \"\"\"\n"),
            Vec::<String>::new(),
            "an unknown annotation says nothing"
        );
        assert_eq!(
            questions("def port_of(url: str) -> int:\n    \"\"\"Return the URL's port, or None if it has none.\"\"\"\n"),
            ["The docstring says \"Return the URL's port, or None if it has none\", but `port_of` is annotated to return `int`, which excludes None; should it return None or raise?"]
        );
        assert_eq!(
            questions("def get_setting(settings: dict, key: str):\n    \"\"\"Look up a setting.\n\n    Returns None if the key is missing.\n\n    Raises:\n        KeyError: if the setting does not exist.\n    \"\"\"\n"),
            ["The docstring says \"Returns None if the key is missing\", and also that `get_setting` raises KeyError; which happens when nothing matches?"]
        );
        // A negation inside the condition, and a verb after a semicolon.
        assert_eq!(
            questions("def find(listings: list, listing_id: str) -> dict | None:\n    \"\"\"Look up a listing.\n\n    Raises KeyError if no listing has that id.\n\n    Returns:\n        The listing, or None if it isn't found.\n    \"\"\"\n").len(),
            1
        );
        assert_eq!(
            questions("def find(staff: list, badge: str) -> Employee | None:\n    \"\"\"Look up an employee; returns None if there is no such employee.\n\n    Raises:\n        KeyError: If no employee has that id.\n    \"\"\"\n").len(),
            1
        );
        // Found in review: another condition, a negated raise, an Args entry's callback, an
        // input described as None.
        assert_silent(&[
            "def nth(xs: list, n: int):\n    \"\"\"Return the n-th match, or None if fewer match.\n\n    Raises:\n        IndexError: if n is negative.\n    \"\"\"\n",
            "def get(settings: dict, key: str):\n    \"\"\"Return the setting, or None if it is unset.\n\n    Unlike settings[key], this does not raise KeyError when the key is missing.\n    \"\"\"\n",
            "def total(rows, callback) -> int:\n    \"\"\"Count rows.\n\n    Args:\n        rows: The rows.\n        callback: Called with each row. Returns None to drop the row.\n    \"\"\"\n",
            "def null_ratio(rows: list, column: str) -> float:\n    \"\"\"Return the fraction of rows whose column is missing or None (empty strings count), or 0.0 when rows is empty.\"\"\"\n",
            "def to_text(value) -> str:\n    \"\"\"Return value decoded, or an empty string if None is passed.\"\"\"\n",
        ]);
        assert_silent(&[
            "def port_of(url: str) -> int | None:\n    \"\"\"Return the URL's port, or None if it has none.\"\"\"\n",
            "def mean_rtt(pings: list) -> float:\n    \"\"\"Return the mean time, ignoring pings that timed out (None).\"\"\"\n",
            "def sha(rev: str) -> Tuple[Optional[str], bool]:\n    \"\"\"Return (sha or None, is_branch).\"\"\"\n",
            "def etag_matches(header: str, etag: str) -> bool:\n    \"\"\"Return True if the If-None-Match header lists `etag`.\"\"\"\n",
            "def total(xs: list) -> int:\n    \"\"\"Return the total; never returns None.\"\"\"\n",
            "def total(xs: list) -> int:\n    \"\"\"Return the total. None is never returned.\"\"\"\n",
            "def get(d: dict, key: str):\n    \"\"\"Return d[key], or None if missing.\n\n    Raises:\n        TypeError: if d is not a dict.\n    \"\"\"\n",
        ]);
    }

    #[test]
    fn documented_parameters_against_the_signature() {
        assert_eq!(
            questions("def fetch(url: str, retries: int = 3) -> bytes:\n    \"\"\"Fetch a page.\n\n    Args:\n        url: The page.\n        max_retries (int): How often to retry.\n    \"\"\"\n"),
            ["The docstring documents a parameter `max_retries` that `fetch` does not have; was it renamed, or is the parameter missing?"]
        );
        assert_eq!(
            questions("def tax(gross: float, rate: float) -> float:\n    \"\"\"Tax.\n\n    Parameters\n    ----------\n    gross : float\n        Pay.\n    rate : int, optional\n        Percent.\n    \"\"\"\n"),
            ["The docstring says `rate` is `int`, but it is annotated `float`; which is right?"]
        );
        assert_eq!(
            questions("def f(a, b):\n    \"\"\"Add.\n\n    :param int a: first\n    :param c: third\n    \"\"\"\n").len(),
            1
        );
        assert_silent(&[
            // Found in NumPy's own docstrings: `None` for no parameters, a prose paragraph after
            // the entries, names documented for `*arys`.
            "def flush(self):\n    \"\"\"Flush.\n\n    Parameters\n    ----------\n    None\n    \"\"\"\n",
            "def adjust(arr):\n    \"\"\"Adjust.\n\n    Parameters\n    ----------\n    arr\n        The array.\n\n    Thankfully, this only matters for 2-D arrays.\n    \"\"\"\n",
            "def atleast_1d(*arys):\n    \"\"\"Views.\n\n    Parameters\n    ----------\n    arys1, arys2, ... : array_like\n        Arrays.\n    \"\"\"\n",
            // **kwargs may take any documented name; continuation lines are not parameters.
            "def call(name, **options):\n    \"\"\"Call it.\n\n    Args:\n        name: The name.\n        timeout: Seconds to wait.\n    \"\"\"\n",
            "def f(self, items: list[str], *args: int) -> None:\n    \"\"\"Store.\n\n    Args:\n        items (list of str): The items, e.g.\n            note: continued here.\n        *args: More.\n    \"\"\"\n",
        ]);
    }
}
