//! `synthesize --method rules`: mutations that know exactly what they changed, so every question
//! is grounded in ground truth. Inconsistency mutations are verified by running the real
//! implementation (see `verify.rs`).

use crate::model::SplitMix64;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use clarifycoder_core::dataset::{self, Category, Example, Harvested, Kind, Mutation, Row};
use clarifycoder_core::python;
use indicatif::{ProgressBar, ProgressStyle};
use sha2::{Digest, Sha256};

use crate::verify;

/// Arguments shared by both synthesis methods.
#[derive(clap::Args)]
pub struct RulesArgs {
    /// Harvested functions (`harvested.jsonl` from `harvest`).
    #[arg(long, default_value = DEFAULT_INPUT)]
    pub input: PathBuf,
    /// Where the clarify rows go (JSON Lines) [default: data/clarify.jsonl with `--method
    /// rules`, data/clarify-llm.jsonl with `--method llm`].
    #[arg(long)]
    pub output: Option<PathBuf>,
    /// Use at most this many functions.
    #[arg(long)]
    pub limit: Option<usize>,
    /// Seed of every random choice.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Category weights, e.g. `1a=1,1c=1,1p=1,2ac=0.5,2ap=0.5,2cp=0.5`.
    #[arg(long, default_value = "1a=1,1c=1,1p=1,2ac=0.5,2ap=0.5,2cp=0.5")]
    pub weights: String,
    /// Variants made per function (each of a category drawn by weight).
    #[arg(long, default_value_t = 2)]
    pub per_function: usize,
    /// Python used to verify inconsistencies (must import the harvested modules).
    #[arg(long, default_value = "python3")]
    pub python: String,
    /// Skip malformed input lines instead of stopping at the first.
    #[arg(long)]
    pub skip_bad: bool,
}

/// Where `harvest --out-dir data` writes its functions: `synthesize`'s default input.
pub const DEFAULT_INPUT: &str = "data/harvested.jsonl";

/// `synthesize --method rules`'s default output.
pub const DEFAULT_OUTPUT: &str = "data/clarify.jsonl";

/// The checkpoint that `synthesize --method llm` keeps beside its output: the keys it finished.
pub fn progress_path(output: &std::path::Path) -> PathBuf {
    PathBuf::from(format!("{}.progress", output.display()))
}

/// The harvested functions of `--input`, after a warning for skipped lines; a missing input
/// says to run `harvest` first when it is the default one.
pub fn read_functions(args: &RulesArgs) -> anyhow::Result<Vec<Harvested>> {
    if !args.input.exists() {
        let hint = if args.input == std::path::Path::new(DEFAULT_INPUT) {
            format!("run `clarifycoder-trainer harvest --out-dir data` first (it writes {DEFAULT_INPUT}), or give --input")
        } else {
            "check --input".to_string()
        };
        anyhow::bail!("{} does not exist; {hint}", args.input.display());
    }
    let (functions, skipped) =
        crate::input::read::<Harvested>(&args.input, crate::input::HARVESTED, args.skip_bad)?;
    if skipped > 0 {
        eprintln!(
            "warning: skipped {skipped} malformed lines of {}",
            args.input.display()
        );
    }
    Ok(functions)
}

/// A deterministic generator per (seed, key): SplitMix64 seeded from a hash.
pub struct Rng(SplitMix64);

impl Rng {
    /// A generator for one (seed, key) pair: the same pair always gives the same draws.
    pub fn for_key(seed: u64, key: &str) -> Rng {
        let mut h = Sha256::new();
        h.update(seed.to_le_bytes());
        h.update(key);
        let d = h.finalize();
        Rng(SplitMix64::new(u64::from_le_bytes(
            d[..8].try_into().expect("8 bytes"),
        )))
    }
    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }
    /// Uniform in 0..n (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }
    /// One of the items.
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
    /// Shuffles in place.
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i + 1);
            items.swap(i, j);
        }
    }
}

/// The problem being mutated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Draft {
    /// Function signature.
    pub signature: String,
    /// Docstring text.
    pub doc: String,
}

/// What a mutation did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    /// The mutated problem.
    pub draft: Draft,
    /// Ground truth of the change.
    pub mutation: Mutation,
    /// Questions that resolve it.
    pub questions: Vec<String>,
}

type MutationFn = fn(&Draft, &mut Rng) -> Option<Applied>;

/// The mutations of each kind, by name.
pub fn mutations(kind: Kind) -> &'static [(&'static str, MutationFn)] {
    match kind {
        Kind::Ambiguous => &[
            ("vague_comparison", vague_comparison),
            ("vague_quantity", vague_quantity),
            ("drop_order", drop_order),
            ("drop_unit", drop_unit),
            ("vague_reference", vague_reference),
            ("vague_quantifier", vague_quantifier),
        ],
        Kind::Incomplete => &[
            ("drop_examples", drop_examples),
            ("drop_return", drop_return),
            ("drop_param", drop_param),
            ("drop_constraint", drop_constraint),
            ("meaningless_name", meaningless_name),
        ],
        Kind::Inconsistent => &[
            ("contradict_example", contradict_example),
            ("contradict_type", contradict_type),
        ],
        Kind::Original => &[],
    }
}

fn applied(draft: Draft, name: &str, detail: String, questions: Vec<String>) -> Option<Applied> {
    Some(Applied {
        draft,
        mutation: Mutation {
            name: name.into(),
            detail,
        },
        questions,
    })
}

// ---------------------------------------------------------------------------------------------
// Text helpers: the description is every docstring line that is not part of a doctest example.

/// For each line of `doc`: whether it belongs to a doctest example (source or expected output).
fn example_lines(doc: &str) -> Vec<bool> {
    let mut flags = Vec::new();
    let mut in_example = false;
    for line in doc.lines() {
        let t = line.trim_start();
        if t.starts_with(">>>") {
            in_example = true;
        } else if t.is_empty() {
            in_example = false;
        }
        flags.push(in_example);
    }
    flags
}

/// Finds `needle` case-insensitively as whole words in `hay`; returns the byte range.
fn find_words(hay: &str, needle: &str) -> Option<(usize, usize)> {
    let lower = hay.to_lowercase();
    if lower.len() != hay.len() {
        return None; // case folding changed byte offsets; skip such lines
    }
    let mut from = 0;
    while let Some(i) = lower[from..].find(needle) {
        let (s, e) = (from + i, from + i + needle.len());
        let before = hay[..s]
            .chars()
            .next_back()
            .is_none_or(|c| !c.is_alphanumeric() && c != '_');
        let after = hay[e..]
            .chars()
            .next()
            .is_none_or(|c| !c.is_alphanumeric() && c != '_');
        if before && after {
            return Some((s, e));
        }
        from = e;
    }
    None
}

/// Replaces the first description occurrence of any of `needles` (tried in order) with what
/// `with` returns for it. Returns the new doc and the needle replaced (as written in the doc).
fn replace_in_description(
    doc: &str,
    needles: &[&str],
    with: impl Fn(&str) -> String,
) -> Option<(String, String, String)> {
    let flags = example_lines(doc);
    let lines: Vec<&str> = doc.lines().collect();
    for needle in needles {
        for (i, line) in lines.iter().enumerate() {
            if flags[i] {
                continue;
            }
            if let Some((s, e)) = find_words(line, needle) {
                let found = &line[s..e];
                let replacement = with(found);
                let new_line = format!("{}{}{}", &line[..s], replacement, &line[e..]);
                let mut out: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
                out[i] = new_line;
                return Some((out.join("\n"), found.to_string(), replacement));
            }
        }
    }
    None
}

fn description_words(doc: &str) -> usize {
    let flags = example_lines(doc);
    doc.lines()
        .zip(flags)
        .filter(|(_, f)| !f)
        .map(|(l, _)| l.split_whitespace().count())
        .sum()
}

/// Removes lines `range` and collapses blank lines left behind.
fn remove_lines(doc: &str, remove: impl Fn(usize, &str) -> bool) -> String {
    let mut out: Vec<&str> = Vec::new();
    for (i, line) in doc.lines().enumerate() {
        if remove(i, line) {
            continue;
        }
        if line.trim().is_empty() && out.last().is_some_and(|l| l.trim().is_empty()) {
            continue;
        }
        out.push(line);
    }
    while out.last().is_some_and(|l| l.trim().is_empty()) {
        out.pop();
    }
    while out.first().is_some_and(|l| l.trim().is_empty()) {
        out.remove(0);
    }
    out.join("\n")
}

/// Sentences of the description lines (split at ". ", "? ", "! " and line ends after a period).
fn sentences(text: &str) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut start = 0;
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        if matches!(c, b'.' | b'?' | b'!')
            && (i + 1 == bytes.len() || bytes[i + 1].is_ascii_whitespace())
        {
            out.push((start, i + 1));
            start = i + 1;
            while start < bytes.len() && bytes[start].is_ascii_whitespace() {
                start += 1;
            }
            i = start;
            continue;
        }
        i += 1;
    }
    if start < text.len() && !text[start..].trim().is_empty() {
        out.push((start, text.len()));
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Ambiguity.

const COMPARISONS: &[&str] = &[
    "greater than or equal to",
    "less than or equal to",
    "strictly greater than",
    "strictly less than",
    "greater than",
    "less than",
    "larger than",
    "smaller than",
    "more than",
    "fewer than",
    "at least",
    "at most",
];

fn vague_comparison(d: &Draft, rng: &mut Rng) -> Option<Applied> {
    let (doc, found, new) =
        replace_in_description(&d.doc, COMPARISONS, |_| "compared against".into())?;
    let q = rng.pick(&[
        "How exactly should the values be compared here: greater or smaller, and does equality count?",
        "Which comparison is meant by \"compared against\": >, >=, < or <=?",
        "Should the comparison be strict, and in which direction?",
    ]);
    applied(
        Draft { doc, ..d.clone() },
        "vague_comparison",
        format!("{found:?} -> {new:?}"),
        vec![q.to_string()],
    )
}

/// Words after which a number is a name, not a quantity ("PEP 8", "Python 3").
const NUMBER_NAMES: &[&str] = &[
    "pep", "rfc", "python", "version", "iso", "section", "chapter", "utf", "ieee", "posix",
];

fn vague_quantity(d: &Draft, rng: &mut Rng) -> Option<Applied> {
    let flags = example_lines(&d.doc);
    let lines: Vec<&str> = d.doc.lines().collect();
    for (i, line) in lines.iter().enumerate() {
        if flags[i] {
            continue;
        }
        // A quantity in prose: " 3 items", a whole word of digits between a space (or the line
        // start) and a space followed by a lower-case word.
        let words: Vec<&str> = line.split(' ').collect();
        for (k, w) in words.iter().enumerate() {
            let is_number = !w.is_empty() && w.len() <= 4 && w.bytes().all(|b| b.is_ascii_digit());
            let next_is_word = words
                .get(k + 1)
                .is_some_and(|n| n.chars().next().is_some_and(|c| c.is_ascii_lowercase()));
            let prev_is_name = k > 0
                && NUMBER_NAMES.contains(
                    &words[k - 1]
                        .to_lowercase()
                        .trim_matches(|c: char| !c.is_alphanumeric()),
                );
            if !(is_number && next_is_word && !prev_is_name) {
                continue;
            }
            let mut new_words = words.clone();
            new_words[k] = "a certain number of";
            let mut out: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
            out[i] = new_words.join(" ");
            let q = rng.pick(&[
                "How many exactly? The description only says \"a certain number\".",
                "The description mentions \"a certain number\": which number should be used?",
            ]);
            return applied(
                Draft {
                    doc: out.join("\n"),
                    ..d.clone()
                },
                "vague_quantity",
                format!("{w:?} -> \"a certain number of\""),
                vec![q.to_string()],
            );
        }
    }
    None
}

const ORDERS: &[&str] = &[
    "in ascending order",
    "in descending order",
    "in increasing order",
    "in decreasing order",
    "in reverse order",
    "in reversed order",
    "in sorted order",
];

fn drop_order(d: &Draft, rng: &mut Rng) -> Option<Applied> {
    let (doc, found, new) = replace_in_description(&d.doc, ORDERS, |_| "in some order".into())?;
    let q = rng.pick(&[
        "In which order should the result be: ascending or descending?",
        "What order do you expect the output in?",
    ]);
    applied(
        Draft { doc, ..d.clone() },
        "drop_order",
        format!("{found:?} -> {new:?}"),
        vec![q.to_string()],
    )
}

const UNITS: &[&str] = &[
    "in seconds",
    "in milliseconds",
    "in microseconds",
    "in nanoseconds",
    "in minutes",
    "in hours",
    "in days",
    "in bytes",
    "in bits",
    "in characters",
    "in degrees",
    "in radians",
    "in percent",
];

fn drop_unit(d: &Draft, rng: &mut Rng) -> Option<Applied> {
    let (doc, found, _) = replace_in_description(&d.doc, UNITS, |_| String::new())?;
    let doc = doc.replace("  ", " ").replace(" .", ".").replace(" ,", ",");
    let q = rng.pick(&[
        "In which unit is this value expressed?",
        "What unit should the value be in?",
    ]);
    applied(
        Draft { doc, ..d.clone() },
        "drop_unit",
        format!("{found:?} removed"),
        vec![q.to_string()],
    )
}

/// A parameter named in the description becomes "the input": with several parameters, which one
/// is meant is no longer clear.
fn vague_reference(d: &Draft, rng: &mut Rng) -> Option<Applied> {
    let params = parameters(&d.signature);
    if params.len() < 2 {
        return None;
    }
    let mut order = params.clone();
    rng.shuffle(&mut order);
    for p in &order {
        if p.len() < 2 {
            continue;
        }
        let ticked = format!("`{p}`");
        let needles: Vec<&str> = vec![ticked.as_str(), p.as_str()];
        let Some((doc, found, _)) = replace_in_description_exact(&d.doc, &needles, "the input")
        else {
            continue;
        };
        let others: Vec<String> = params
            .iter()
            .filter(|o| *o != p)
            .map(|o| format!("`{o}`"))
            .collect();
        let q = format!(
            "Which argument does \"the input\" refer to: `{p}` or {}?",
            others.join(" or ")
        );
        let q = if rng.below(2) == 0 {
            q
        } else {
            "The description says \"the input\", but there are several arguments. Which one is meant?".to_string()
        };
        return applied(
            Draft { doc, ..d.clone() },
            "vague_reference",
            format!("{found:?} -> \"the input\""),
            vec![q],
        );
    }
    None
}

/// Like `replace_in_description` but case-sensitive (identifiers).
fn replace_in_description_exact(
    doc: &str,
    needles: &[&str],
    with: &str,
) -> Option<(String, String, String)> {
    let flags = example_lines(doc);
    let lines: Vec<&str> = doc.lines().collect();
    for needle in needles {
        for (i, line) in lines.iter().enumerate() {
            if flags[i] || line.trim_start().starts_with(needle) {
                // Skip parameter-description lines ("x: the value").
                continue;
            }
            let mut from = 0;
            while let Some(k) = line[from..].find(needle) {
                let (s, e) = (from + k, from + k + needle.len());
                let before = line[..s]
                    .chars()
                    .next_back()
                    .is_none_or(|c| !c.is_alphanumeric() && c != '_' && c != '.');
                let after = line[e..]
                    .chars()
                    .next()
                    .is_none_or(|c| !c.is_alphanumeric() && c != '_' && c != '(' && c != '=');
                if before && after {
                    let mut out: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
                    out[i] = format!("{}{}{}", &line[..s], with, &line[e..]);
                    return Some((out.join("\n"), needle.to_string(), with.to_string()));
                }
                from = e;
            }
        }
    }
    None
}

const QUANTIFIERS: &[&str] = &["all of the", "all the", "every", "each of the"];

fn vague_quantifier(d: &Draft, rng: &mut Rng) -> Option<Applied> {
    let (doc, found, new) = replace_in_description(&d.doc, QUANTIFIERS, |f| {
        if f.eq_ignore_ascii_case("every") {
            "some".into()
        } else {
            "some of the".into()
        }
    })?;
    let q = rng.pick(&[
        "Which of them should be included: all of them, or only some? If some, which ones?",
        "\"Some of the\" is vague: exactly which elements should this apply to?",
    ]);
    applied(
        Draft { doc, ..d.clone() },
        "vague_quantifier",
        format!("{found:?} -> {new:?}"),
        vec![q.to_string()],
    )
}

// ---------------------------------------------------------------------------------------------
// Incompleteness.

fn drop_examples(d: &Draft, rng: &mut Rng) -> Option<Applied> {
    let flags = example_lines(&d.doc);
    if !flags.iter().any(|f| *f) || description_words(&d.doc) > 25 {
        return None;
    }
    let doc = remove_lines(&d.doc, |i, _| flags[i]);
    let doc = remove_example_headings(&doc);
    if doc.trim().is_empty() {
        return None;
    }
    let q = rng.pick(&[
        "Could you give a few example inputs and the outputs you expect?",
        "Can you show an example call and its expected result?",
    ]);
    let n = flags.iter().filter(|f| **f).count();
    applied(
        Draft { doc, ..d.clone() },
        "drop_examples",
        format!("{n} example lines removed"),
        vec![q.to_string()],
    )
}

/// Drops "Examples:"-style headings left with nothing under them.
fn remove_example_headings(doc: &str) -> String {
    let lines: Vec<&str> = doc.lines().collect();
    let heading = |l: &str| {
        matches!(
            l.trim().trim_end_matches(':').to_lowercase().as_str(),
            "example" | "examples" | "usage"
        )
    };
    let keep: Vec<bool> = (0..lines.len())
        .map(|i| {
            !(heading(lines[i])
                && lines[i + 1..]
                    .iter()
                    .all(|l| l.trim().is_empty() || heading(l)))
        })
        .collect();
    remove_lines(doc, |i, _| !keep[i])
}

fn drop_return(d: &Draft, rng: &mut Rng) -> Option<Applied> {
    let lines: Vec<&str> = d.doc.lines().collect();
    let flags = example_lines(&d.doc);
    // A "Returns:" section: the heading and the more-indented lines under it.
    if let Some(h) = lines.iter().position(|l| {
        let t = l.trim().to_lowercase();
        t == "returns:"
            || t == "return:"
            || t == "returns"
            || t.starts_with(":return")
            || t.starts_with(":rtype")
    }) {
        let indent = lines[h].len() - lines[h].trim_start().len();
        let is_field = lines[h].trim_start().starts_with(':');
        let mut end = h + 1;
        while end < lines.len() {
            let l = lines[end];
            let li = l.len() - l.trim_start().len();
            let continues = if is_field {
                !l.trim().is_empty() && (li > indent || l.trim_start().starts_with(":rtype"))
            } else {
                !l.trim().is_empty() && li > indent || (l.trim() == "-------")
            };
            if !continues {
                break;
            }
            end += 1;
        }
        let doc = remove_lines(&d.doc, |i, _| (h..end).contains(&i));
        if !doc.trim().is_empty() {
            let detail = format!("removed {:?}", lines[h..end].join(" / "));
            return applied(
                Draft { doc, ..d.clone() },
                "drop_return",
                detail,
                vec![return_question(rng)],
            );
        }
    }
    // A sentence that starts with "Return", not the only sentence.
    for (i, line) in lines.iter().enumerate() {
        if flags[i] {
            continue;
        }
        for (s, e) in sentences(line) {
            let sentence = &line[s..e];
            if (sentence.starts_with("Return ") || sentence.starts_with("Returns "))
                && description_words(&d.doc) > sentence.split_whitespace().count() + 3
            {
                let mut out: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
                out[i] = format!("{}{}", &line[..s], line[e..].trim_start())
                    .trim_end()
                    .to_string();
                let doc = remove_lines(&out.join("\n"), |_, _| false);
                if doc.trim().is_empty() {
                    return None;
                }
                return applied(
                    Draft { doc, ..d.clone() },
                    "drop_return",
                    format!("removed {sentence:?}"),
                    vec![return_question(rng)],
                );
            }
        }
    }
    None
}

fn return_question(rng: &mut Rng) -> String {
    rng.pick(&[
        "What should the function return?",
        "What exactly is the return value supposed to be?",
        "What should I return, and in which form?",
    ])
    .to_string()
}

/// Parameter names of a signature, without self/cls and star arguments.
fn parameters(signature: &str) -> Vec<String> {
    let Some(open) = signature.find('(') else {
        return Vec::new();
    };
    let inner = &signature[open + 1..signature.rfind(')').unwrap_or(signature.len())];
    let mut depth = 0;
    let mut parts = Vec::new();
    let mut cur = String::new();
    for c in inner.chars() {
        match c {
            '(' | '[' | '{' => depth += 1,
            ')' | ']' | '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(std::mem::take(&mut cur));
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    parts.push(cur);
    parts
        .iter()
        .map(|p| {
            p.split([':', '='])
                .next()
                .unwrap_or_default()
                .trim()
                .to_string()
        })
        .filter(|p| !p.is_empty() && !p.starts_with('*') && p != "self" && p != "cls" && p != "/")
        .collect()
}

fn drop_param(d: &Draft, rng: &mut Rng) -> Option<Applied> {
    let lines: Vec<&str> = d.doc.lines().collect();
    let mut params = parameters(&d.signature);
    rng.shuffle(&mut params);
    for p in params {
        let starts = |l: &str| {
            let t = l.trim_start();
            t.starts_with(&format!("{p}:"))
                || t.starts_with(&format!("{p} ("))
                || t.starts_with(&format!("{p} --"))
                || t.starts_with(&format!(":param {p}:"))
                || t.starts_with(&format!(":param {p} "))
                || t == p
        };
        let Some(h) = lines.iter().position(|l| starts(l)) else {
            continue;
        };
        let indent = lines[h].len() - lines[h].trim_start().len();
        let mut end = h + 1;
        while end < lines.len()
            && !lines[end].trim().is_empty()
            && lines[end].len() - lines[end].trim_start().len() > indent
        {
            end += 1;
        }
        let doc = remove_lines(&d.doc, |i, _| (h..end).contains(&i));
        let q = match rng.below(2) {
            0 => format!("What is `{p}`, and what values can it take?"),
            _ => format!("What does the parameter `{p}` mean?"),
        };
        return applied(
            Draft { doc, ..d.clone() },
            "drop_param",
            format!("removed the description of `{p}`"),
            vec![q],
        );
    }
    None
}

fn drop_constraint(d: &Draft, rng: &mut Rng) -> Option<Applied> {
    let lines: Vec<&str> = d.doc.lines().collect();
    let flags = example_lines(&d.doc);
    let keys: &[(&[&str], &[&str])] = &[
        (&["raise", "raises", "raised"], &["What should happen with invalid input: should it raise an exception, and which one?"]),
        (&["empty"], &["What should happen when the input is empty?", "How should an empty input be handled?"]),
        (&["none"], &["How should `None` be handled?"]),
        (&["negative", "non-negative"], &["Are negative values allowed, and if so how should they be handled?"]),
        (&["must"], &["Are there constraints on the inputs that I should check or rely on?"]),
        (&["otherwise"], &["What should happen in the other cases?"]),
    ];
    let mut first_sentence = true;
    for (i, line) in lines.iter().enumerate() {
        if flags[i] || line.trim().is_empty() {
            continue;
        }
        for (s, e) in sentences(line) {
            let sentence = &line[s..e];
            if first_sentence {
                first_sentence = false;
                continue;
            }
            let lower = sentence.to_lowercase();
            if let Some((_, qs)) = keys
                .iter()
                .find(|(ws, _)| ws.iter().any(|w| find_words(&lower, w).is_some()))
            {
                let mut out: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
                out[i] = format!("{}{}", &line[..s], line[e..].trim_start())
                    .trim_end()
                    .to_string();
                let doc = remove_lines(&out.join("\n"), |_, _| false);
                return applied(
                    Draft { doc, ..d.clone() },
                    "drop_constraint",
                    format!("removed {sentence:?}"),
                    vec![rng.pick(qs).to_string()],
                );
            }
        }
    }
    None
}

const MEANINGLESS: &[&str] = &["func", "process", "handle", "do_it", "candidate"];

fn meaningless_name(d: &Draft, rng: &mut Rng) -> Option<Applied> {
    // Only when the summary carries the meaning: drop it and rename the function.
    let first_line = d.doc.lines().next()?;
    let rest = remove_lines(&d.doc, |i, _| i == 0);
    if sentences(first_line).len() != 1 || description_words(&rest) < 4 {
        return None;
    }
    let name_start = d.signature.find("def ")? + 4;
    let name_end = name_start + d.signature[name_start..].find('(')?;
    let old = &d.signature[name_start..name_end];
    let new = *rng.pick(MEANINGLESS);
    if old == new {
        return None;
    }
    let signature = format!(
        "{}{}{}",
        &d.signature[..name_start],
        new,
        &d.signature[name_end..]
    );
    let doc = rest.replace(&format!("{old}("), &format!("{new}("));
    let q = rng.pick(&[
        "What is this function supposed to do? Its name and description don't say.",
        "What is the purpose of this function?",
    ]);
    applied(
        Draft { signature, doc },
        "meaningless_name",
        format!("renamed `{old}` to `{new}` and removed {first_line:?}"),
        vec![q.to_string()],
    )
}

// ---------------------------------------------------------------------------------------------
// Inconsistency: the examples contradict the rest; verified by running the implementation.

/// The example lines of `doc` with the expected output of example `index` replaced.
fn with_want(doc: &str, index: usize, new_want: &str) -> Option<String> {
    let lines: Vec<&str> = doc.lines().collect();
    let mut out: Vec<String> = Vec::new();
    let mut example = 0usize;
    let mut i = 0;
    let mut replaced = false;
    while i < lines.len() {
        let t = lines[i].trim_start();
        if t.starts_with(">>>") {
            out.push(lines[i].to_string());
            i += 1;
            while i < lines.len() && lines[i].trim_start().starts_with("...") {
                out.push(lines[i].to_string());
                i += 1;
            }
            let indent =
                lines[i.saturating_sub(1)].len() - lines[i.saturating_sub(1)].trim_start().len();
            let want_start = i;
            while i < lines.len()
                && !lines[i].trim().is_empty()
                && !lines[i].trim_start().starts_with(">>>")
            {
                i += 1;
            }
            if example == index && i > want_start {
                let pad = " ".repeat(indent);
                for w in new_want.lines() {
                    out.push(format!("{pad}{w}"));
                }
                replaced = true;
            } else {
                out.extend(lines[want_start..i].iter().map(|l| l.to_string()));
            }
            example += 1;
        } else {
            out.push(lines[i].to_string());
            i += 1;
        }
    }
    replaced.then(|| out.join("\n"))
}

/// A different value of the same type, as Python would print it.
fn perturb(want: &str) -> Option<String> {
    let w = want.trim();
    if w.contains('\n') {
        return None;
    }
    if let Ok(n) = w.parse::<i64>() {
        return Some((n + 1).to_string());
    }
    if w.contains('.') {
        if let Ok(x) = w.parse::<f64>() {
            return Some(format!("{:?}", x * 2.0 + 1.0));
        }
    }
    match w {
        "True" => return Some("False".into()),
        "False" => return Some("True".into()),
        _ => {}
    }
    if (w.starts_with('\'') && w.ends_with('\'') || w.starts_with('"') && w.ends_with('"'))
        && w.len() >= 4
    {
        let q = &w[..1];
        let inner = &w[1..w.len() - 1];
        if inner.contains('\\') || inner.contains(q) {
            return None;
        }
        let reversed: String = inner.chars().rev().collect();
        let changed = if reversed != inner {
            reversed
        } else {
            format!("{inner}{}", inner.chars().next()?)
        };
        return Some(format!("{q}{changed}{q}"));
    }
    if w.starts_with('[')
        && w.ends_with(']')
        && !w[1..w.len() - 1].contains(['[', ']', '(', '{', '\'', '"'])
    {
        let items: Vec<&str> = w[1..w.len() - 1]
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect();
        if items.len() >= 2 {
            let reversed: Vec<&str> = items.iter().rev().copied().collect();
            if reversed != items {
                return Some(format!("[{}]", reversed.join(", ")));
            }
        }
    }
    None
}

/// Inconsistency needs a description for the examples to contradict.
fn has_description(d: &Draft) -> bool {
    description_words(&d.doc) >= 5
}

fn contradict_example(d: &Draft, rng: &mut Rng) -> Option<Applied> {
    if !has_description(d) {
        return None;
    }
    let examples = crate::harvest::examples(&d.doc);
    let mut order: Vec<usize> = (0..examples.len()).collect();
    rng.shuffle(&mut order);
    for index in order {
        let ex = &examples[index];
        let Some(new) = perturb(&ex.want) else {
            continue;
        };
        let doc = with_want(&d.doc, index, &new)?;
        let call = ex.source.lines().next().unwrap_or_default();
        let q = match rng.below(3) {
            0 => format!("The example `{call}` shows `{new}`, which does not match the description. Which one is right?"),
            1 => format!("Should `{call}` really give `{new}`? The description suggests otherwise."),
            _ => format!("The description and the example `{call}` → `{new}` disagree: which should I follow?"),
        };
        return applied(
            Draft { doc, ..d.clone() },
            "contradict_example",
            format!("example {index}: {:?} -> {new:?}", ex.want),
            vec![q],
        );
    }
    None
}

fn contradict_type(d: &Draft, rng: &mut Rng) -> Option<Applied> {
    if !has_description(d) {
        return None;
    }
    let ret = d
        .signature
        .rsplit_once("->")?
        .1
        .trim()
        .trim_end_matches(':')
        .trim()
        .to_string();
    let examples = crate::harvest::examples(&d.doc);
    for (index, ex) in examples.iter().enumerate() {
        let w = ex.want.trim();
        let new = match ret.as_str() {
            "int" if w.parse::<i64>().is_ok() => format!("'{w}'"),
            "float" if w.parse::<f64>().is_ok() => format!("'{w}'"),
            "bool" if w == "True" || w == "False" => format!("'{}'", w.to_lowercase()),
            "str" if (w.starts_with('\'') && w.ends_with('\'') && w.len() >= 2) => {
                format!("{}", w.len() - 2)
            }
            _ => continue,
        };
        let doc = with_want(&d.doc, index, &new)?;
        let q = match rng.below(2) {
            0 => format!("The signature says the result is `{ret}`, but an example shows `{new}`. Which type should it return?"),
            _ => format!("Should the function return a `{ret}` as annotated, or a value like `{new}` as in the example?"),
        };
        return applied(
            Draft { doc, ..d.clone() },
            "contradict_type",
            format!("example {index}: {w:?} -> {new:?} against `-> {ret}`"),
            vec![q],
        );
    }
    None
}

// ---------------------------------------------------------------------------------------------
// Synthesis.

/// Parses `1a=1,2cp=0.5` into weights.
pub fn parse_weights(text: &str) -> anyhow::Result<Vec<(Category, f64)>> {
    let mut out = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (code, w) = part
            .split_once('=')
            .with_context(|| format!("weight `{part}` is not CATEGORY=WEIGHT"))?;
        let c = Category::from_code(code.trim())
            .filter(|c| Category::SYNTHESIZED.contains(c))
            .with_context(|| {
                format!("unknown category `{code}`; use 1a, 1c, 1p, 2ac, 2ap or 2cp")
            })?;
        let w: f64 = w
            .trim()
            .parse()
            .with_context(|| format!("weight `{w}` is not a number"))?;
        anyhow::ensure!(
            w >= 0.0 && w.is_finite(),
            "weight of {code} must be non-negative"
        );
        out.push((c, w));
    }
    anyhow::ensure!(
        out.iter().any(|(_, w)| *w > 0.0),
        "at least one category needs a positive weight"
    );
    Ok(out)
}

pub fn draw_category(weights: &[(Category, f64)], rng: &mut Rng) -> Category {
    let total: f64 = weights.iter().map(|(_, w)| w).sum();
    let mut x = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64 * total;
    for (c, w) in weights {
        if x < *w {
            return *c;
        }
        x -= w;
    }
    weights
        .iter()
        .rev()
        .find(|(_, w)| *w > 0.0)
        .expect("a positive weight")
        .0
}

/// A mutated problem for a category: one mutation per kind of the category, in order (for CP,
/// the incompleteness mutation may not remove the contradicted examples).
pub fn mutate(
    h: &Harvested,
    category: Category,
    rng: &mut Rng,
) -> Option<(Draft, Vec<Mutation>, Vec<String>)> {
    let mut draft = Draft {
        signature: h.signature.clone(),
        doc: h.docstring.clone(),
    };
    let mut muts = Vec::new();
    let mut questions = Vec::new();
    for kind in category.kinds() {
        let mut options: Vec<&(&str, MutationFn)> = mutations(kind).iter().collect();
        if kind == Kind::Incomplete && category.kinds().contains(&Kind::Inconsistent) {
            options.retain(|(name, _)| *name != "drop_examples");
        }
        rng.shuffle(&mut options);
        let a = options.iter().find_map(|(_, f)| f(&draft, rng))?;
        draft = a.draft;
        muts.push(a.mutation);
        questions.extend(a.questions);
    }
    Some((draft, muts, questions))
}

/// The answer: the questions, one per line and numbered when there are several.
pub fn render_questions(questions: &[String], rng: &mut Rng) -> String {
    if questions.len() == 1 {
        return questions[0].clone();
    }
    let preface = rng.pick(&[
        "",
        "Before I write this, a few questions:\n",
        "I need some clarification first:\n",
    ]);
    let list: Vec<String> = questions
        .iter()
        .enumerate()
        .map(|(i, q)| format!("{}. {q}", i + 1))
        .collect();
    format!("{preface}{}", list.join("\n"))
}

fn row_id(source_id: &str, category: Category, variant: usize, muts: &[Mutation]) -> String {
    let mut h = Sha256::new();
    h.update(source_id);
    h.update(category.code());
    h.update(variant.to_le_bytes());
    for m in muts {
        h.update(&m.name);
        h.update(&m.detail);
    }
    format!("{:x}", h.finalize())[..16].to_string()
}

/// Candidate rows of one function (before verification), with the mutated examples of the
/// inconsistent ones.
pub fn synthesize_function(
    h: &Harvested,
    weights: &[(Category, f64)],
    per_function: usize,
    seed: u64,
) -> Vec<(Row, Option<Vec<Example>>)> {
    let mut rng = Rng::for_key(seed, &h.id);
    let mut out = Vec::new();
    for variant in 0..per_function {
        let category = draw_category(weights, &mut rng);
        let Some((draft, muts, questions)) = mutate(h, category, &mut rng) else {
            continue;
        };
        let problem = python::render_problem(&draft.signature, Some(&draft.doc));
        if problem == h.problem() || out.iter().any(|(r, _): &(Row, _)| r.problem == problem) {
            continue;
        }
        let needs_check = category.kinds().contains(&Kind::Inconsistent);
        let mutated_examples = needs_check.then(|| crate::harvest::examples(&draft.doc));
        let row = Row {
            id: row_id(&h.id, category, variant, &muts),
            problem,
            answer: render_questions(&questions, &mut rng),
            kind: category.kind(),
            category,
            source: h.source.clone(),
            source_id: h.id.clone(),
            method: "rules".into(),
            mutations: muts,
            original_problem: h.problem(),
        };
        out.push((row, mutated_examples));
    }
    out
}

/// Runs `synthesize --method rules`.
pub fn run(args: RulesArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let weights = parse_weights(&args.weights)?;
    let output = args
        .output
        .clone()
        .unwrap_or_else(|| PathBuf::from(DEFAULT_OUTPUT));
    // This method rewrites its output whole; the LLM method's would lose its rows, and its
    // checkpoint would then make a rerun skip them.
    let progress = progress_path(&output);
    if progress.exists() {
        anyhow::bail!(
            "'{}' is the output of `synthesize --method llm` ('{}' lists the rows it finished), \
             which this would overwrite; give --output another file (the rules method's default \
             is {DEFAULT_OUTPUT}), or delete both files to start the LLM synthesis over",
            output.display(),
            progress.display()
        );
    }
    let mut functions = read_functions(&args)?;
    if let Some(limit) = args.limit {
        functions.truncate(limit);
    }
    let bar = ProgressBar::new(functions.len() as u64);
    bar.set_style(
        ProgressStyle::with_template(
            "{bar:30} {pos}/{len} functions {per_sec} [{elapsed_precise} < {eta}] {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let mut rows = Vec::new();
    let mut pending: Vec<(Row, &Harvested, Vec<Example>)> = Vec::new();
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for h in &functions {
        for (row, mutated) in synthesize_function(h, &weights, args.per_function, args.seed) {
            match mutated {
                Some(examples) => pending.push((row, h, examples)),
                None => rows.push(row),
            }
        }
        bar.inc(1);
    }
    bar.set_message(format!("verifying {} inconsistencies", pending.len()));
    let candidates: Vec<verify::Candidate> = pending
        .iter()
        .map(|(_, h, ex)| verify::Candidate {
            function: h,
            mutated: ex.clone(),
        })
        .collect();
    let verdicts =
        verify::verify(&args.python, &candidates).inspect_err(|_| bar.finish_and_clear())?;
    let mut rejected = 0;
    for ((row, _, _), ok) in pending.into_iter().zip(verdicts) {
        if ok {
            rows.push(row);
        } else {
            rejected += 1;
        }
    }
    bar.finish_and_clear();
    rows.sort_by(|a, b| a.id.cmp(&b.id));
    for r in &rows {
        *counts.entry(r.category.code().to_string()).or_default() += 1;
    }
    if let Some(dir) = output.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    dataset::write_jsonl(&output, &rows)
        .with_context(|| format!("cannot write '{}'", output.display()))?;
    let secs = started.elapsed().as_secs_f64();
    let summary = serde_json::json!({
        "functions": functions.len(),
        "rows": rows.len(),
        "per_category": counts,
        "inconsistent_rejected_by_execution": rejected,
        "seconds": secs,
        "rows_per_second": rows.len() as f64 / secs.max(1e-9),
    });
    eprintln!(
        "wrote {} rows to {} ({:.0} rows/s)",
        rows.len(),
        output.display(),
        rows.len() as f64 / secs.max(1e-9)
    );
    println!("{}", serde_json::to_string_pretty(&summary)?);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn draft(signature: &str, doc: &str) -> Draft {
        Draft {
            signature: signature.into(),
            doc: doc.into(),
        }
    }

    fn rng() -> Rng {
        Rng::for_key(1, "test")
    }

    #[test]
    fn vague_comparison_replaces_the_operator_only_in_the_description() {
        let d = draft(
            "def big(xs, n):",
            "Keep the items greater than n.\n\n>>> big([1, 5], 2)\n[5]",
        );
        let a = vague_comparison(&d, &mut rng()).unwrap();
        assert_eq!(
            a.draft.doc,
            "Keep the items compared against n.\n\n>>> big([1, 5], 2)\n[5]"
        );
        assert_eq!(
            a.mutation.detail,
            "\"greater than\" -> \"compared against\""
        );
        assert!(a.questions[0].contains("compar") || a.questions[0].contains("strict"));
    }

    #[test]
    fn vague_quantity_skips_examples_and_code() {
        let d = draft(
            "def f(xs):",
            "See PEP 8 and x=2. Take the first 3 items.\n>>> f([1, 2, 3, 4])\n[1, 2, 3]",
        );
        let a = vague_quantity(&d, &mut rng()).unwrap();
        assert_eq!(a.draft.doc, "See PEP 8 and x=2. Take the first a certain number of items.\n>>> f([1, 2, 3, 4])\n[1, 2, 3]");
        assert_eq!(a.mutation.detail, "\"3\" -> \"a certain number of\"");
        assert!(
            vague_quantity(&draft("def f():", "Follow PEP 8 in year=1999."), &mut rng()).is_none()
        );
    }

    #[test]
    fn drop_order_and_unit() {
        let d = draft("def f(xs):", "Return xs sorted in descending order.");
        assert_eq!(
            drop_order(&d, &mut rng()).unwrap().draft.doc,
            "Return xs sorted in some order."
        );
        let d = draft("def wait(t):", "Wait for t, given in seconds, then return.");
        let a = drop_unit(&d, &mut rng()).unwrap();
        assert_eq!(a.draft.doc, "Wait for t, given, then return.");
        assert_eq!(a.mutation.detail, "\"in seconds\" removed");
    }

    #[test]
    fn vague_reference_and_quantifier() {
        let d = draft(
            "def clip(values, limit):",
            "Clip every item of `values` to `limit`.\n\nvalues: the numbers.",
        );
        let mut r = Rng::for_key(2, "r");
        let a = vague_reference(&d, &mut r).unwrap();
        assert!(
            a.draft.doc == "Clip every item of the input to `limit`.\n\nvalues: the numbers."
                || a.draft.doc
                    == "Clip every item of `values` to the input.\n\nvalues: the numbers.",
            "{:?}",
            a.draft.doc
        );
        assert!(vague_reference(&draft("def f(x):", "Use x."), &mut r).is_none());
        let a = vague_quantifier(&d, &mut r).unwrap();
        assert_eq!(
            a.draft.doc,
            "Clip some item of `values` to `limit`.\n\nvalues: the numbers."
        );
    }

    #[test]
    fn drop_examples_only_when_the_text_is_thin() {
        let d = draft(
            "def f(x):",
            "Transform x.\n\nExamples:\n\n>>> f(2)\n4\n>>> f(3)\n9",
        );
        let a = drop_examples(&d, &mut rng()).unwrap();
        assert_eq!(a.draft.doc, "Transform x.");
        let long = draft("def f(x):", &format!("{}\n>>> f(2)\n4", "word ".repeat(30)));
        assert!(drop_examples(&long, &mut rng()).is_none());
    }

    #[test]
    fn drop_return_section_or_sentence() {
        let d = draft("def f(a):", "Compute things.\n\nArgs:\n    a: the input.\n\nReturns:\n    The count of things,\n    as an int.");
        let a = drop_return(&d, &mut rng()).unwrap();
        assert_eq!(a.draft.doc, "Compute things.\n\nArgs:\n    a: the input.");
        let d = draft("def f(a):", "Scan the input for markers. Return the number of markers found.\nMarkers start with #.");
        let a = drop_return(&d, &mut rng()).unwrap();
        assert_eq!(
            a.draft.doc,
            "Scan the input for markers.\nMarkers start with #."
        );
    }

    #[test]
    fn drop_param_removes_its_description() {
        let d = draft("def f(self, path: str, mode='r'):", "Open a file.\n\nArgs:\n    path: where it is,\n        relative to cwd.\n    mode: how to open it.");
        let mut r = Rng::for_key(3, "x");
        let a = drop_param(&d, &mut r).unwrap();
        let removed_path = a.draft.doc == "Open a file.\n\nArgs:\n    mode: how to open it.";
        let removed_mode = a.draft.doc
            == "Open a file.\n\nArgs:\n    path: where it is,\n        relative to cwd.";
        assert!(removed_path || removed_mode, "{:?}", a.draft.doc);
        assert!(a.questions[0].contains(if removed_path { "`path`" } else { "`mode`" }));
        assert_eq!(
            parameters("def g(a, b: Dict[str, int] = {}, *args, c=1, **kw) -> int:"),
            ["a", "b", "c"]
        );
    }

    #[test]
    fn drop_constraint_and_meaningless_name() {
        let d = draft(
            "def parse(s):",
            "Parse a version string. Raises ValueError if it is malformed.",
        );
        let a = drop_constraint(&d, &mut rng()).unwrap();
        assert_eq!(a.draft.doc, "Parse a version string.");
        assert!(a.questions[0].contains("exception"));
        let d = draft("def count_words(text):", "Count the words of text.\n\nWords are separated by white space.\n>>> count_words('a b')\n2");
        let a = meaningless_name(&d, &mut rng()).unwrap();
        assert!(
            a.draft.signature.starts_with("def ") && !a.draft.signature.contains("count_words")
        );
        assert!(
            !a.draft.doc.contains("count_words(") && a.draft.doc.starts_with("Words are separated")
        );
    }

    #[test]
    fn contradict_example_and_type_change_one_expected_output() {
        let d = draft(
            "def add(a, b) -> int:",
            "Add the two numbers a and b.\n\n>>> add(1, 2)\n3",
        );
        assert!(
            contradict_example(&draft("def add(a, b):", ">>> add(1, 2)\n3"), &mut rng()).is_none()
        );
        let a = contradict_example(&d, &mut rng()).unwrap();
        assert_eq!(
            a.draft.doc,
            "Add the two numbers a and b.\n\n>>> add(1, 2)\n4"
        );
        assert!(a.questions[0].contains("`4`"), "{:?}", a.questions);
        let a = contradict_type(&d, &mut rng()).unwrap();
        assert_eq!(
            a.draft.doc,
            "Add the two numbers a and b.\n\n>>> add(1, 2)\n'3'"
        );
        assert!(a.questions[0].contains("`int`"));
        assert_eq!(perturb("[1, 2, 3]").as_deref(), Some("[3, 2, 1]"));
        assert_eq!(perturb("'abc'").as_deref(), Some("'cba'"));
        assert_eq!(perturb("True").as_deref(), Some("False"));
        assert_eq!(perturb("<object at 0x1>"), None);
    }

    #[test]
    fn questions_never_mention_an_original() {
        for kind in [Kind::Ambiguous, Kind::Incomplete, Kind::Inconsistent] {
            for (name, _) in mutations(kind) {
                assert!(!name.is_empty());
            }
        }
        let d = draft("def add(a, b) -> int:", "Add a and b, which must be greater than 0.\nThe first 3 digits count.\n\n>>> add(1, 2)\n3");
        let mut r = rng();
        for kind in [Kind::Ambiguous, Kind::Incomplete, Kind::Inconsistent] {
            for (_, f) in mutations(kind) {
                if let Some(a) = f(&d, &mut r) {
                    for q in &a.questions {
                        let lower = q.to_lowercase();
                        assert!(
                            !lower.contains("original")
                                && !lower.contains("modified")
                                && !lower.contains("removed"),
                            "{q}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn weights_parse_and_draw_deterministically() {
        let w = parse_weights("1a=1, 2cp=0").unwrap();
        let mut r = Rng::for_key(5, "k");
        assert!((0..50).all(|_| draw_category(&w, &mut r) == Category::A));
        assert!(parse_weights("9z=1")
            .unwrap_err()
            .to_string()
            .contains("unknown category"));
        assert!(parse_weights("1a=0").is_err());
    }
}
