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
//!   signature lacks, and a documented parameter type against its annotation.
//!
//! Each check speaks only when both sides are unmistakable: an annotation or type it does not
//! know (`Iterator[Row]`, `"Order"`, "the matching listing") means no finding. A finding is
//! certain, so the analyzer flags the function and asks the finding's question instead of the
//! model's (see `analysis.rs`).

use tree_sitter::{Node, Parser};

use crate::python;

/// Part of every result-cache key: bump it when a check changes what it finds.
pub const VERSION: u32 = 1;

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
                                Some(("as", _)) => format!("the result comes \"{phrase}\""),
                                _ => format!("it \"r{}\"", &phrase[1..]),
                            },
                            name = signature.name
                        ),
                    });
                }
            }
        }
    }
    for (name, stated) in documented_parameters(doc) {
        let bare = name.trim_start_matches('*');
        match signature.parameters.iter().find(|p| p.name == bare) {
            None if !signature.has_splat && !matches!(bare, "self" | "cls") => {
                found.push(Contradiction {
                    question: format!(
                        "The docstring documents a parameter `{bare}` that `{}` does not have; was it renamed, or is the parameter missing?",
                        signature.name
                    ),
                })
            }
            Some(parameter) => {
                let (Some(stated), Some(annotation)) = (stated, parameter.annotation.as_deref())
                else {
                    continue;
                };
                let (Some(doc_kinds), Some(ann_kinds)) =
                    (kinds_of_doc_type(&stated), kinds_of_annotation(annotation))
                else {
                    continue;
                };
                if !overlap(doc_kinds, ann_kinds) {
                    found.push(Contradiction {
                        question: format!(
                            "The docstring says `{bare}` is `{stated}`, but it is annotated `{annotation}`; which is right?"
                        ),
                    });
                }
            }
            None => {}
        }
    }
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

/// The parameters a docstring documents, each with its stated type if any.
fn documented_parameters(doc: &str) -> Vec<(String, Option<String>)> {
    let mut out = Vec::new();
    if let Some((body, _)) = section(doc, &GOOGLE_PARAMETERS, None) {
        // Entries sit at the section's first indentation; deeper lines continue them.
        let level = body
            .iter()
            .find(|l| !l.trim().is_empty())
            .map(|l| indent_of(l));
        for line in body.iter().filter(|l| Some(indent_of(l)) == level) {
            let Some((left, _)) = line.trim().split_once(':') else {
                continue;
            };
            let (name, ty) = match left.split_once('(') {
                Some((name, ty)) => (name.trim(), ty.strip_suffix(')').map(str::trim)),
                None => (left.trim(), None),
            };
            if is_parameter_name(name) {
                out.push((name.to_string(), ty.map(strip_optional)));
            }
        }
    } else if let Some((body, _)) = section(doc, &[], Some("Parameters")) {
        // `name`, `name : type` or `a, b : type`; an unindented sentence is prose, not an entry.
        for line in body
            .iter()
            .filter(|l| indent_of(l) == 0 && !l.trim().is_empty())
        {
            let (names, ty) = match line.split_once(" : ") {
                Some((names, ty)) => (names, Some(strip_optional(ty.trim()))),
                None => (line.trim_end().trim_end_matches(':'), None),
            };
            let names: Vec<&str> = names.split(',').map(str::trim).collect();
            if names.iter().all(|n| is_parameter_name(n)) {
                out.extend(names.iter().map(|n| (n.to_string(), ty.clone())));
            }
        }
    }
    for line in doc.lines() {
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
            out.push((name.to_string(), ty));
        }
    }
    out
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

    fn questions(source: &str) -> Vec<String> {
        contradictions(source)
            .into_iter()
            .map(|c| c.question)
            .collect()
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
        for agreeing in [
            "def f(x) -> int | None:\n    \"\"\"Find it.\n\n    Returns:\n        int or None: The index.\n    \"\"\"\n",
            "def f(x) -> Optional[List[str]]:\n    \"\"\"Names.\n\n    Returns:\n        list of str: The names.\n    \"\"\"\n",
            "def f(x) -> dict:\n    \"\"\"Look it up.\n\n    Returns:\n        The matching listing: a dict, or None.\n    \"\"\"\n",
            "def f(x) -> Iterator[Row]:\n    \"\"\"Rows.\n\n    Returns:\n        list: The rows.\n    \"\"\"\n",
        ] {
            assert_eq!(questions(agreeing), Vec::<String>::new(), "{agreeing}");
        }
    }

    #[test]
    fn a_sentence_about_the_result_against_the_annotation() {
        assert_eq!(
            questions("def active_ids(devices) -> list[int]:\n    \"\"\"Return the ids of active devices, as a set.\"\"\"\n"),
            ["The docstring says the result comes \"as a set\", but `active_ids` is annotated to return `list[int]`; which one is right?"]
        );
        assert_eq!(
            questions("def health(request) -> dict:\n    \"\"\"Health check.\n\n    Returns a (status_code, body) tuple.\n    \"\"\"\n").len(),
            1
        );
        assert_eq!(
            questions("def names(people) -> list[str]:\n    \"\"\"Return the names as one comma-separated string.\"\"\"\n").len(),
            1
        );
        for agreeing in [
            "def names(people) -> str:\n    \"\"\"Return the names as one comma-separated string.\"\"\"\n",
            "def ok(value) -> bool:\n    \"\"\"Return True if the value is given as a string.\"\"\"\n",
            "def rows(path) -> list[dict]:\n    \"\"\"Read the file.\n\n    Each row comes as a dict; the file is read as a string first.\n    \"\"\"\n",
            "def keys(d) -> Sequence[str]:\n    \"\"\"Return the keys as a list.\"\"\"\n",
        ] {
            assert_eq!(questions(agreeing), Vec::<String>::new(), "{agreeing}");
        }
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
        for agreeing in [
            // Found in NumPy's own docstrings: `None` for no parameters, a prose paragraph after
            // the entries, names documented for `*arys`.
            "def flush(self):\n    \"\"\"Flush.\n\n    Parameters\n    ----------\n    None\n    \"\"\"\n",
            "def adjust(arr):\n    \"\"\"Adjust.\n\n    Parameters\n    ----------\n    arr\n        The array.\n\n    Thankfully, this only matters for 2-D arrays.\n    \"\"\"\n",
            "def atleast_1d(*arys):\n    \"\"\"Views.\n\n    Parameters\n    ----------\n    arys1, arys2, ... : array_like\n        Arrays.\n    \"\"\"\n",
            // **kwargs may take any documented name; continuation lines are not parameters.
            "def call(name, **options):\n    \"\"\"Call it.\n\n    Args:\n        name: The name.\n        timeout: Seconds to wait.\n    \"\"\"\n",
            "def f(self, items: list[str], *args: int) -> None:\n    \"\"\"Store.\n\n    Args:\n        items (list of str): The items, e.g.\n            note: continued here.\n        *args: More.\n    \"\"\"\n",
        ] {
            assert_eq!(questions(agreeing), Vec::<String>::new(), "{agreeing}");
        }
    }
}
