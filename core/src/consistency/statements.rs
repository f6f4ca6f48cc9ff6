//! The third round: two statements of one docstring that cannot both hold, or a statement that
//! the signature contradicts in a way the first two rounds do not read.
//!
//! - a result said to be a count ("Return how many …", "Return the number of …") or a truth value
//!   ("Return True if …") against an annotation of another kind;
//! - an order stated both ways ("oldest first" in the summary, "newest to oldest" where the result
//!   is described);
//! - an input said to be changed in place and, elsewhere, left untouched;
//! - a flag's default implied by "unless `flag` is turned off" against the signature's default;
//! - a name the docstring uses like a parameter ("unless ``count_weekends`` is set") that the
//!   signature lacks while it has a parameter sharing a word with it (`skip_weekends`);
//! - a conversion "from millivolts to volts" whose one parameter is documented in another unit;
//! - a parameter called a percentage ("`rate` is a percentage") whose default is a fraction.
//!
//! As in the first rounds, each speaks only when both sides are unmistakable; the harvest, the
//! clear specs and the clear dev functions are the false-alarm check (BENCHMARKS.md).

use super::{
    documented_parameters, kinds_of_annotation, negated, prose_sentences, returns_text, Signature,
    BOOL, DICT, LIST, NONE, SET, TUPLE,
};

/// The questions this round asks of a signature and its docstring.
pub(super) fn questions(signature: &Signature, doc: &str) -> Vec<String> {
    let sentences = prose_sentences(doc);
    [
        result_kind(signature, doc, &sentences),
        order(signature, &sentences),
        in_place(signature, doc, &sentences),
        percentage_default(signature, doc, &sentences),
        implied_flag_default(signature, &sentences),
        stale_parameter(signature, doc, &sentences),
        conversion_unit_contradiction(signature, doc, &sentences),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// A sentence's words, lowercased, with the punctuation around them trimmed.
fn words(sentence: &str) -> Vec<String> {
    sentence
        .replace('\u{2019}', "'")
        .split_whitespace()
        .map(|w| {
            w.trim_matches(|c: char| !(c.is_alphanumeric() || c == '_' || c == '\''))
                .to_lowercase()
        })
        .filter(|w| !w.is_empty())
        .collect()
}

/// A sentence as lowercase words joined by single spaces, for phrase lookups.
fn flat(sentence: &str) -> String {
    format!(" {} ", words(sentence).join(" "))
}

fn has_phrase(sentence: &str, phrase: &str) -> bool {
    flat(sentence).contains(&format!(" {phrase} "))
}

/// "Return how many days …" or "Returns the number of …" against `-> bool` or `-> None`;
/// "Return True if …" against a scalar annotation that is not `bool` (`-> int`, `-> str`).
/// Only the function's own verb counts: a capitalized "Return" starting a prose sentence, or a
/// Returns section's text. ("… ; return True if the row should stay" tells a callback what to
/// do, and "the number of the issue" may well be a string.)
fn result_kind(signature: &Signature, doc: &str, sentences: &[String]) -> Option<String> {
    let annotation = signature.returns.as_deref()?;
    let annotated = kinds_of_annotation(annotation)?;
    let returns_section = returns_text(doc);
    let prose = sentences
        .iter()
        .filter(|s| s.starts_with("Return ") || s.starts_with("Returns "))
        .map(|s| (s.as_str(), 1));
    let section_text =
        std::iter::once((returns_section.as_str(), 0)).filter(|(s, _)| !s.is_empty());
    for (sentence, skip) in prose.chain(section_text) {
        let w = words(sentence);
        let rest = &w[skip.min(w.len())..];
        // "… as a string" speaks of the result's form, which the first rounds read.
        if w.iter().any(|x| x == "as") {
            continue;
        }
        let starts = |phrase: &[&str]| {
            rest.len() > phrase.len() && rest.iter().zip(phrase).all(|(a, b)| a == b)
        };
        let count = starts(&["how", "many"]) || starts(&["the", "number", "of"]);
        let truth = starts(&["true", "if"]) || starts(&["true", "when"]);
        let clash = if count {
            annotated == BOOL || annotated == NONE
        } else if truth {
            annotated & (BOOL | NONE | LIST | TUPLE | SET | DICT) == 0
        } else {
            false
        };
        if clash {
            let what = sentence.trim_end_matches(['.', ';']);
            return Some(format!(
                "The docstring says \"{what}\", but `{name}` is annotated to return `{annotation}`; which is right?",
                name = signature.name
            ));
        }
    }
    None
}

/// Orders that speak of the same key, each as (one way, the other way). Only phrases of one
/// family are compared: "lowest first" and "best to worst" may be one order (golf).
const ORDERS: [(&[&str], &[&str]); 4] = [
    (
        &[
            "oldest first",
            "earliest first",
            "oldest to newest",
            "earliest to latest",
            "chronological order",
        ],
        &[
            "newest first",
            "latest first",
            "most recent first",
            "newest to oldest",
            "latest to earliest",
            "reverse chronological order",
        ],
    ),
    (
        &[
            "smallest first",
            "lowest first",
            "smallest to largest",
            "lowest to highest",
            "low to high",
            "least to most",
        ],
        &[
            "largest first",
            "biggest first",
            "highest first",
            "largest to smallest",
            "highest to lowest",
            "high to low",
            "most to least",
        ],
    ),
    (
        &["worst first", "worst to best"],
        &["best first", "best to worst"],
    ),
    (
        &[
            "ascending order",
            "in ascending",
            "sorted ascending",
            "increasing order",
        ],
        &[
            "descending order",
            "in descending",
            "sorted descending",
            "decreasing order",
        ],
    ),
];

/// The summary orders the result one way ("Return the n most recent readings, oldest first") and
/// a sentence whose subject is the result orders it the other way ("The result is ordered newest
/// to oldest"). A parameter that picks the order (`reverse`, `descending`, `sort_order`), a
/// conditional, or another key (ties, groups) means two orders may well both hold.
fn order(signature: &Signature, sentences: &[String]) -> Option<String> {
    if signature.parameters.iter().any(|p| {
        let n = p.name.to_lowercase();
        [
            "reverse", "desc", "asc", "order", "sort", "first", "newest", "oldest",
        ]
        .iter()
        .any(|k| n.contains(k))
    }) {
        return None;
    }
    let summary = sentences.first()?;
    let hedged = |s: &str| {
        words(s).iter().any(|x| {
            matches!(
                x.as_str(),
                "input"
                    | "given"
                    | "expects"
                    | "expected"
                    | "assumes"
                    | "assumed"
                    | "already"
                    | "must"
                    | "tie"
                    | "ties"
                    | "equal"
                    | "same"
                    | "then"
                    | "within"
                    | "secondary"
                    | "each"
                    | "if"
                    | "when"
                    | "unless"
                    | "otherwise"
                    | "before"
                    | "previously"
                    | "version"
                    | "reverse"
                    | "reversed"
            )
        }) || negated(s)
    };
    let first_words = words(summary);
    if !matches!(
        first_words.first().map(String::as_str),
        Some("return" | "returns" | "list" | "sort" | "get" | "fetch")
    ) || hedged(summary)
    {
        return None;
    }
    let about_result = |s: &str| {
        let w = words(s);
        let w: Vec<&str> = w.iter().map(String::as_str).collect();
        matches!(
            w.as_slice(),
            [
                "the",
                "result" | "results" | "output" | "list",
                "is" | "are",
                ..
            ] | ["results" | "they" | "these", "are", ..]
                | [
                    "the",
                    "returned",
                    "list" | "items" | "rows",
                    "is" | "are",
                    ..
                ]
        )
    };
    for (up, down) in ORDERS {
        let find =
            |s: &str, phrases: &[&'static str]| phrases.iter().copied().find(|p| has_phrase(s, p));
        let (stated, is_up) = match (find(summary, up), find(summary, down)) {
            (Some(u), None) => (u, true),
            (None, Some(d)) => (d, false),
            _ => continue,
        };
        let opposite = if is_up { down } else { up };
        let same = if is_up { up } else { down };
        for s in &sentences[1..] {
            if !about_result(s) || hedged(s) || find(s, same).is_some() {
                continue;
            }
            if let Some(other) = find(s, opposite) {
                return Some(format!(
                    "The docstring orders the result \"{stated}\" and also \"{other}\"; which order should `{name}` return?",
                    name = signature.name
                ));
            }
        }
    }
    None
}

/// One sentence changes the input in place ("Upper-case the sku of every product in place"),
/// another says the input is left untouched.
fn in_place(signature: &Signature, doc: &str, sentences: &[String]) -> Option<String> {
    // A parameter may choose (`inplace`, `copy`).
    if signature.parameters.iter().any(|p| {
        let n = p.name.to_lowercase();
        n.contains("inplace") || n.contains("in_place") || n == "copy" || n.contains("mutate")
    }) {
        return None;
    }
    // "kept in place", "held in place", "`new` in place of `old`" speak of a position.
    let position = [
        "kept", "keep", "keeps", "stay", "stays", "remain", "remains", "left", "held", "fixed",
        "pinned", "locked", "put", "already",
    ]
    .iter()
    .any(|w| {
        sentences
            .iter()
            .any(|s| has_phrase(s, &format!("{w} in place")))
    }) || sentences.iter().any(|s| has_phrase(s, "in place of"));
    if position {
        return None;
    }
    let parameters: Vec<String> = signature
        .parameters
        .iter()
        .filter(|p| p.name != "self" && p.name != "cls")
        .map(|p| p.name.to_lowercase())
        .collect();
    let named = |s: &str| -> Vec<String> {
        let w = words(s);
        parameters
            .iter()
            .filter(|p| w.contains(p))
            .cloned()
            .collect()
    };
    // A conditional, a pointer to another function, or a quoted call is not this function's
    // own behaviour.
    let own = |s: &str| {
        let pointer = words(s).iter().any(|x| {
            matches!(
                x.as_str(),
                "if" | "when"
                    | "unless"
                    | "otherwise"
                    | "use"
                    | "see"
                    | "variant"
                    | "version"
                    | "counterpart"
            )
        });
        let other_function = words_quoted(s).iter().any(|q| {
            q.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                && !parameters.contains(&q.to_lowercase())
        });
        !negated(s) && !pointer && !other_function
    };
    let changes = sentences
        .iter()
        .find(|s| (has_phrase(s, "in place") || has_phrase(s, "in-place")) && own(s))?;
    // The Returns section may say it too: "A new list; the input is left untouched."
    let returns_section = returns_text(doc);
    let untouched = [
        "left untouched",
        "is untouched",
        "are untouched",
        "is not modified",
        "are not modified",
        "is never modified",
        "are never modified",
        "not mutated",
        "is left unchanged",
        "are left unchanged",
    ];
    // The clause that leaves something untouched must be about the input as a whole: "the input
    // list", "the original", or a parameter the in-place sentence changes (and no other one).
    let changed = named(changes);
    let whole_input = |clause: &str| {
        let w = words(clause);
        let w: Vec<&str> = w.iter().map(String::as_str).collect();
        match w.as_slice() {
            ["the", "input" | "inputs" | "original" | "caller's" | "argument" | "arguments", ..] => {
                changed.len() <= 1
            }
            [first, ..] => {
                parameters.iter().any(|p| p == first)
                    && (changed.is_empty() || changed == [first.to_string()])
            }
            _ => false,
        }
    };
    let keeps = sentences
        .iter()
        .chain(std::iter::once(&returns_section))
        .filter(|s| *s != changes && !words(s).iter().any(|x| x == "if" || x == "otherwise"))
        .find_map(|s| {
            s.split([';', ','])
                .find(|clause| {
                    untouched.iter().any(|p| has_phrase(clause, p)) && whole_input(clause)
                })
                .map(|_| s)
        })?;
    Some(format!(
        "The docstring says \"{}\", and also \"{}\"; should `{name}` change its input in place or leave it alone?",
        changes.trim_end_matches(['.', ';']),
        keeps.trim_end_matches(['.', ';']),
        name = signature.name
    ))
}

/// The code-quoted names of a sentence (``name`` or `name`).
fn words_quoted(sentence: &str) -> Vec<String> {
    sentence
        .replace("``", "`")
        .split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect()
}

/// "… unless ``include_header`` is turned off" means the flag is on by default; a signature that
/// defaults it to `False` says the opposite.
fn implied_flag_default(signature: &Signature, sentences: &[String]) -> Option<String> {
    for sentence in sentences {
        let w = words(sentence);
        for (i, word) in w.iter().enumerate() {
            if word != "unless" {
                continue;
            }
            let Some(parameter) = w
                .get(i + 1)
                .and_then(|n| signature.parameters.iter().find(|p| &p.name == n))
            else {
                continue;
            };
            let default = match parameter.default.as_deref() {
                Some("True") => true,
                Some("False") => false,
                _ => continue,
            };
            // "`timeout` is ignored unless `blocking` is true" ties one parameter to another and
            // says nothing of a default.
            let before = &w[..i];
            let tied = before.iter().any(|x| {
                matches!(
                    x.as_str(),
                    "ignored" | "effect" | "only" | "applies" | "used" | "unused" | "matters"
                ) || signature
                    .parameters
                    .iter()
                    .any(|p| p.name != parameter.name && p.name == *x)
            });
            if tied {
                continue;
            }
            let rest: Vec<&str> = w[i + 2..(i + 6).min(w.len())]
                .iter()
                .map(String::as_str)
                .collect();
            // Only a verb of switching implies a state to switch from ("unless the header is
            // turned off"); "unless `skip_header` is true" may describe either value.
            let off = matches!(
                rest.as_slice(),
                ["is", "turned", "off", ..]
                    | ["is", "disabled", ..]
                    | ["is", "switched", "off", ..]
            );
            let on = matches!(
                rest.as_slice(),
                ["is", "turned", "on", ..] | ["is", "enabled", ..] | ["is", "switched", "on", ..]
            );
            // "unless X is turned off": X is on unless someone turns it off.
            let implied = if off {
                true
            } else if on {
                false
            } else {
                continue;
            };
            if implied != default {
                return Some(format!(
                    "The docstring says \"{}\", which makes `{name}` {state} by default, but the signature's default is `{written}`; which is right?",
                    sentence.trim_end_matches(['.', ';']),
                    name = parameter.name,
                    state = if implied { "on" } else { "off" },
                    written = if default { "True" } else { "False" },
                ));
            }
        }
    }
    None
}

/// A code-quoted name used like a parameter ("unless ``count_weekends`` is set to False") that the
/// signature lacks, while an unmentioned parameter shares a word with it (`skip_weekends`): the
/// parameter was renamed and the docstring was not.
fn stale_parameter(signature: &Signature, doc: &str, sentences: &[String]) -> Option<String> {
    if signature.has_splat {
        return None;
    }
    let doc_words = words(doc);
    for sentence in sentences {
        // ``name`` (reST) and `name` (Markdown) quote code alike.
        let quoted = sentence.replace("``", "`");
        let pieces: Vec<&str> = quoted.split('`').collect();
        for (i, piece) in pieces.iter().enumerate() {
            if i % 2 == 0 || piece.is_empty() {
                continue;
            }
            let name = *piece;
            let snake = name.contains('_')
                && name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
                && name.starts_with(|c: char| c.is_ascii_lowercase());
            if !snake
                || name == signature.name
                || signature.parameters.iter().any(|p| p.name == name)
            {
                continue;
            }
            // What follows the name: a call or an attribute is not a parameter.
            let after = pieces
                .get(i + 1)
                .map(|s| s.trim_start_matches('`'))
                .unwrap_or("");
            if after.starts_with(['(', '.', '[']) {
                continue;
            }
            let before = words(&pieces[..i].join(" "));
            let next = words(after);
            let next: Vec<&str> = next.iter().take(4).map(String::as_str).collect();
            // "unless `count_weekends` is set", "if `dry_run` is true": a condition on it, as on
            // a parameter. ("A row whose `is_deleted` is true" speaks of a field.)
            let conditioned = before
                .last()
                .is_some_and(|w| matches!(w.as_str(), "unless" | "if" | "when"))
                && matches!(next.as_slice(), ["is" | "are", ..]);
            if !conditioned {
                continue;
            }
            // A flag's value ("is set to False", "is true", "is enabled") needs a flag.
            let flag_value = next.iter().any(|w| {
                matches!(
                    *w,
                    "true" | "false" | "set" | "enabled" | "disabled" | "on" | "off"
                )
            });
            let tokens: Vec<&str> = name.split('_').filter(|t| t.len() >= 4).collect();
            let is_flag = |p: &super::Parameter| {
                matches!(p.default.as_deref(), Some("True" | "False"))
                    || p.annotation.as_deref() == Some("bool")
            };
            let similar: Vec<&str> = signature
                .parameters
                .iter()
                .filter(|p| p.name != "self" && p.name != "cls")
                .filter(|p| p.name.split('_').any(|t| tokens.contains(&t)))
                .filter(|p| !doc_words.contains(&p.name))
                .filter(|p| !flag_value || is_flag(p))
                .map(|p| p.name.as_str())
                .collect();
            if let [parameter] = similar.as_slice() {
                return Some(format!(
                    "The docstring speaks of `{name}`, which `{function}` does not have; does it mean `{parameter}`, and what should each of its values do?",
                    function = signature.name
                ));
            }
        }
    }
    None
}

/// Units a conversion names: the dimension and the unit itself (no scale is needed, only
/// sameness).
fn conversion_unit(word: &str) -> Option<(&'static str, &'static str)> {
    Some(match word {
        "millivolts" | "mv" => ("voltage", "millivolts"),
        "volts" => ("voltage", "volts"),
        "milliamps" | "milliamperes" => ("current", "milliamps"),
        "amps" | "amperes" => ("current", "amps"),
        "celsius" => ("temperature", "celsius"),
        "fahrenheit" => ("temperature", "fahrenheit"),
        "kelvin" => ("temperature", "kelvin"),
        "meters" | "metres" => ("length", "meters"),
        "kilometers" | "kilometres" | "km" => ("length", "kilometers"),
        "miles" => ("length", "miles"),
        "feet" => ("length", "feet"),
        "inches" => ("length", "inches"),
        "centimeters" | "centimetres" | "cm" => ("length", "centimeters"),
        "millimeters" | "millimetres" | "mm" => ("length", "millimeters"),
        "grams" => ("mass", "grams"),
        "kilograms" | "kg" => ("mass", "kilograms"),
        "ounces" => ("mass", "ounces"),
        "lbs" => ("mass", "pounds"),
        "milliseconds" | "ms" => ("time", "milliseconds"),
        "seconds" => ("time", "seconds"),
        "minutes" => ("time", "minutes"),
        "hours" => ("time", "hours"),
        "bytes" => ("size", "bytes"),
        "kilobytes" => ("size", "kilobytes"),
        "megabytes" => ("size", "megabytes"),
        "cents" => ("money", "cents"),
        "dollars" => ("money", "dollars"),
        _ => return None,
    })
}

/// "Convert a reading from millivolts to volts" with one parameter whose entry says it is "in
/// volts": the input's unit is stated twice, differently.
fn conversion_unit_contradiction(
    signature: &Signature,
    doc: &str,
    sentences: &[String],
) -> Option<String> {
    let summary = sentences.first()?;
    let w = words(summary);
    let from = w.iter().position(|x| x == "from")?;
    let source = conversion_unit(w.get(from + 1)?)?;
    w.get(from + 2).filter(|x| *x == "to")?;
    let target = conversion_unit(w.get(from + 3)?)?;
    if source.0 != target.0 || source.1 == target.1 {
        return None;
    }
    let inputs: Vec<_> = signature
        .parameters
        .iter()
        .filter(|p| p.name != "self" && p.name != "cls")
        .collect();
    let [input] = inputs.as_slice() else {
        return None;
    };
    let entry = documented_parameters(doc)
        .into_iter()
        .find(|d| d.name == input.name)?;
    // The entry's first sentence states the unit; later ones give advice ("For readings in
    // kelvin, call …", "values already in seconds must not be passed").
    let description = entry.text.split_once(':').map_or("", |(_, d)| d);
    let first = description
        .split_inclusive(". ")
        .next()
        .unwrap_or(description);
    if negated(first) || words(first).iter().any(|w| w == "for" || w == "already") {
        return None;
    }
    let entry_words = words(first);
    let stated = entry_words.iter().enumerate().find_map(|(i, x)| {
        let unit = conversion_unit(x)?;
        (i > 0 && entry_words[i - 1] == "in" && unit.0 == source.0).then_some(unit)
    })?;
    (stated.1 != source.1).then(|| {
        format!(
            "The docstring converts \"from {} to {}\", but documents `{}` in {}; which unit does `{name}` take?",
            source.1,
            target.1,
            input.name,
            stated.1,
            name = signature.name
        )
    })
}

/// A parameter described as a percentage ("`rate` is a percentage, e.g. 7.65 for 7.65%", or an
/// entry "rate: The tax rate in percent.") whose default is a fraction between 0 and 1
/// (`rate=0.0765`): 7.65% or 0.0765%? The parameter must be what is a percentage, not the result
/// or a display ("shown as a percentage").
fn percentage_default(signature: &Signature, doc: &str, sentences: &[String]) -> Option<String> {
    let entries = documented_parameters(doc);
    let display = |text: &str| {
        words(text).iter().any(|w| {
            matches!(
                w.as_str(),
                "shown"
                    | "displayed"
                    | "printed"
                    | "reported"
                    | "formatted"
                    | "rounded"
                    | "fraction"
                    | "ratio"
            )
        }) || ["0 and 1", "0.0 and 1.0", "0 to 1", "0.0 to 1.0"]
            .iter()
            .any(|p| has_phrase(text, p))
    };
    signature.parameters.iter().find_map(|parameter| {
        let written = parameter.default.as_deref()?;
        let default: f64 = written.parse().ok()?;
        if !(0.001..1.0).contains(&default) {
            return None;
        }
        let name = parameter.name.to_lowercase();
        // An entry whose first sentence calls the parameter a percentage.
        let entry = entries.iter().filter(|e| e.name == parameter.name).any(|e| {
            let description = e.text.split_once(':').map_or("", |(_, d)| d);
            let first = description.split_inclusive(". ").next().unwrap_or("");
            let w = words(first);
            w.iter().any(|x| x == "percentage" || x == "percent") && !display(first) && !negated(first)
        });
        // A sentence whose subject is the parameter: "`rate` is a percentage", "rate is given in
        // percent".
        let prose = sentences.iter().any(|s| {
            let w = words(s);
            let w: Vec<&str> = w.iter().map(String::as_str).collect();
            w.windows(4).any(|win| {
                win[0] == name
                    && win[1] == "is"
                    && matches!(win[2..], ["a", "percentage"] | ["in", "percent"] | ["given", "in"])
            }) && !display(s)
                && !negated(s)
        });
        (entry || prose).then(|| {
            format!(
                "The docstring says `{}` is a percentage, but its default is `{written}`; is that {written}% or {}%?",
                parameter.name,
                format!("{:.4}", default * 100.0)
                    .trim_end_matches('0')
                    .trim_end_matches('.')
            )
        })
    })
}

#[cfg(test)]
mod tests {
    use crate::consistency::contradictions;

    fn questions(source: &str) -> Vec<String> {
        contradictions(source)
            .into_iter()
            .map(|c| c.question)
            .collect()
    }

    fn assert_silent(sources: &[&str]) {
        for source in sources {
            assert_eq!(questions(source), Vec::<String>::new(), "{source}");
        }
    }

    #[test]
    fn a_count_or_a_truth_value_against_the_annotation() {
        assert_eq!(
            questions("def days_overdue(invoice: dict, today) -> bool:\n    \"\"\"Return how many days past due the invoice is, or 0 if it is not overdue.\"\"\"\n"),
            ["The docstring says \"Return how many days past due the invoice is, or 0 if it is not overdue\", but `days_overdue` is annotated to return `bool`; which is right?"]
        );
        assert_eq!(
            questions("def is_open(shop, now) -> int:\n    \"\"\"Return True if the shop is open at `now`.\"\"\"\n").len(),
            1
        );
        assert_silent(&[
            "def overdue(invoices: list, today) -> int:\n    \"\"\"Return how many invoices are past due.\"\"\"\n",
            "def count_rows(path) -> int | None:\n    \"\"\"Return the number of rows, or None if the file is empty.\"\"\"\n",
            "def label(n: int) -> str:\n    \"\"\"Return the number of items as a string, e.g. '3 items'.\"\"\"\n",
            "def is_open(shop, now) -> bool | str:\n    \"\"\"Return True if the shop is open, else the reason it is closed.\"\"\"\n",
            "def check(shop) -> Result:\n    \"\"\"Return True if the shop is open.\"\"\"\n",
        ]);
    }

    #[test]
    fn an_order_stated_both_ways() {
        assert_eq!(
            questions("def latest(readings: list, n: int = 5) -> list:\n    \"\"\"Return the n most recent readings, oldest first.\n\n    The result is ordered newest to oldest for the dashboard.\n    \"\"\"\n"),
            ["The docstring orders the result \"oldest first\" and also \"newest to oldest\"; which order should `latest` return?"]
        );
        assert_silent(&[
            // A parameter picks the order; the input has its own order; ties have a second key.
            "def latest(readings, n, newest_first=False):\n    \"\"\"Return the n most recent readings, oldest first.\n\n    The result is ordered newest to oldest when newest_first is set.\n    \"\"\"\n",
            "def top(scores, n):\n    \"\"\"Return the n best scores, highest first.\n\n    The input must be sorted ascending; the result is returned as a new list.\n    \"\"\"\n",
            "def ranking(players):\n    \"\"\"Return the players by score, highest first.\n\n    Ties are returned in ascending order of name.\n    \"\"\"\n",
            "def recent(events):\n    \"\"\"Return the events, newest first.\n\n    The result is ordered newest first.\n    \"\"\"\n",
        ]);
    }

    #[test]
    fn changed_in_place_and_left_untouched() {
        assert_eq!(
            questions("def normalize_skus(products):\n    \"\"\"Upper-case the sku of every product in place.\n\n    Returns:\n        A new list; the input list is left untouched.\n    \"\"\"\n").len(),
            1
        );
        assert_silent(&[
            "def dedupe(records, key):\n    \"\"\"Drop repeated records. Records missing ``key`` are all kept, in place.\n\n    The input list is not modified.\n    \"\"\"\n",
            "def normalize(products):\n    \"\"\"Upper-case the sku of every product in place and return None.\"\"\"\n",
            "def sort_copy(items):\n    \"\"\"Return a sorted copy; the input is not modified.\"\"\"\n",
        ]);
    }

    #[test]
    fn a_flag_default_implied_by_unless() {
        assert_eq!(
            questions("def export(rows, path, include_header: bool = False) -> int:\n    \"\"\"Write rows to CSV.\n\n    A header row is written first unless ``include_header`` is turned off.\n    \"\"\"\n"),
            ["The docstring says \"A header row is written first unless ``include_header`` is turned off\", which makes `include_header` on by default, but the signature's default is `False`; which is right?"]
        );
        assert_silent(&[
            "def export(rows, path, include_header: bool = True) -> int:\n    \"\"\"Write rows to CSV.\n\n    A header row is written first unless include_header is False.\n    \"\"\"\n",
            "def export(rows, path, quiet=False):\n    \"\"\"Write rows, printing progress unless quiet is true.\"\"\"\n",
        ]);
    }

    #[test]
    fn a_renamed_parameter_still_named_in_the_prose() {
        assert_eq!(
            questions("def leave_days(start, end, skip_weekends: bool = True) -> int:\n    \"\"\"Count the days of a leave request.\n\n    Saturdays and Sundays count too, unless ``count_weekends`` is set to False.\n    \"\"\"\n"),
            ["The docstring speaks of `count_weekends`, which `leave_days` does not have; does it mean `skip_weekends`, and what should each of its values do?"]
        );
        assert_silent(&[
            // A helper function, an attribute, the parameter mentioned as well, a splat.
            "def load(config_path):\n    \"\"\"Load the config; ``parse_config`` does the parsing.\"\"\"\n",
            "def leave_days(self, start, skip_weekends=True):\n    \"\"\"Count days, unless `self.count_weekends` is set.\"\"\"\n",
            "def leave_days(start, skip_weekends=True):\n    \"\"\"Count days. `skip_weekends` replaces the old flag; unless `count_weekends` is set, nothing changes.\"\"\"\n",
            "def leave_days(start, skip_weekends=True, **legacy):\n    \"\"\"Count days, unless `count_weekends` is set to False.\"\"\"\n",
        ]);
    }

    #[test]
    fn a_conversion_and_its_input_unit() {
        assert_eq!(
            questions("def to_volts(reading: float) -> float:\n    \"\"\"Convert a probe reading from millivolts to volts.\n\n    Args:\n        reading: the probe voltage, in volts.\n    \"\"\"\n"),
            ["The docstring converts \"from millivolts to volts\", but documents `reading` in volts; which unit does `to_volts` take?"]
        );
        assert_silent(&[
            "def to_volts(reading: float) -> float:\n    \"\"\"Convert a probe reading from millivolts to volts.\n\n    Args:\n        reading: the probe voltage, in millivolts.\n    \"\"\"\n",
            "def to_c(value, scale):\n    \"\"\"Convert from fahrenheit to celsius.\n\n    Args:\n        value: in kelvin.\n        scale: unused.\n    \"\"\"\n",
        ]);
    }

    #[test]
    fn a_percentage_with_a_fractional_default() {
        assert_eq!(
            questions("def payroll_tax(gross: float, rate: float = 0.0765) -> float:\n    \"\"\"Return the payroll tax.\n\n    `rate` is a percentage, e.g. 7.65 for 7.65%.\n    \"\"\"\n"),
            ["The docstring says `rate` is a percentage, but its default is `0.0765`; is that 0.0765% or 7.65%?"]
        );
        assert_silent(&[
            "def tax(gross: float, rate: float = 0.0765) -> float:\n    \"\"\"Return the tax. `rate` is a percentage as a fraction, e.g. 0.0765.\"\"\"\n",
            "def tax(gross: float, rate: float = 7.65) -> float:\n    \"\"\"Return the tax. `rate` is a percentage, e.g. 7.65 for 7.65%.\"\"\"\n",
        ]);
    }
}
