//! The third round: two statements of one docstring that cannot both hold, or a statement that
//! the signature contradicts in a way the first two rounds do not read.
//!
//! - a result said to be a count ("Return how many …", "Return the number of …") or a truth value
//!   ("Return True if …", "Return whether …") against an annotation of another kind;
//! - an order stated both ways ("oldest first" in the summary, "newest to oldest" where the result
//!   is described);
//! - an input said to be changed in place and, elsewhere, left untouched;
//! - a flag's default implied by "unless `flag` is turned off" against the signature's default;
//! - a name the docstring uses like a parameter ("unless ``count_weekends`` is set") that the
//!   signature lacks while it has a parameter sharing a word with it (`skip_weekends`);
//! - a conversion "from millivolts to volts" whose one parameter is documented in another unit.
//!
//! As in the first rounds, each speaks only when both sides are unmistakable; the harvest, the
//! clear specs and the clear dev functions are the false-alarm check (BENCHMARKS.md).

use super::{
    documented_parameters, kinds_of_annotation, negated, prose_sentences, section, Signature, BOOL,
    FLOAT, INT, NONE, STR,
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

/// "Return how many days …" or "Returns the number of …" against `-> bool`, `-> str` or `->
/// None`; "Return True if …" or "Return whether …" against an annotation without `bool`.
fn result_kind(signature: &Signature, doc: &str, sentences: &[String]) -> Option<String> {
    let annotation = signature.returns.as_deref()?;
    let annotated = kinds_of_annotation(annotation)?;
    let returns_section = section(doc, &["Returns:", "Return:"], Some("Returns"))
        .map(|(body, _)| body.join(" "))
        .unwrap_or_default();
    let candidates = sentences
        .iter()
        .map(String::as_str)
        .chain(std::iter::once(returns_section.trim()));
    for sentence in candidates {
        let w = words(sentence);
        // The sentence's own verb: "Return …" or "Returns …" first, not "… and return it".
        let rest = match w.first().map(String::as_str) {
            Some("return" | "returns") => &w[1..],
            _ if w.is_empty() => continue,
            _ => {
                // A Returns section's text has no verb: "The number of rows written."
                if sentence == returns_section.trim() {
                    &w[..]
                } else {
                    continue;
                }
            }
        };
        // "… as a string" speaks of the result's form, which the first rounds read.
        // A negation after the verb is part of a condition ("or 0 if it is not overdue").
        if w.iter().any(|x| x == "as") {
            continue;
        }
        let starts = |phrase: &[&str]| {
            rest.len() > phrase.len() && rest.iter().zip(phrase).all(|(a, b)| a == b)
        };
        let count = starts(&["how", "many"]) || starts(&["the", "number", "of"]);
        let truth = starts(&["true", "if"]) || starts(&["true", "when"]) || starts(&["whether"]);
        // A bare `-> None` names no result at all; `-> int | None` holds a count.
        let clash = if count {
            annotated & (INT | FLOAT) == 0 && (annotated & !(BOOL | STR | NONE)) == 0
        } else if truth {
            annotated & BOOL == 0
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

const ASCENDING: [&str; 15] = [
    "oldest first",
    "earliest first",
    "smallest first",
    "lowest first",
    "ascending",
    "increasing order",
    "oldest to newest",
    "earliest to latest",
    "smallest to largest",
    "lowest to highest",
    "low to high",
    "least to most",
    "worst to best",
    "chronological order",
    "a to z",
];
const DESCENDING: [&str; 16] = [
    "newest first",
    "latest first",
    "most recent first",
    "largest first",
    "biggest first",
    "highest first",
    "best first",
    "descending",
    "decreasing order",
    "newest to oldest",
    "latest to earliest",
    "largest to smallest",
    "highest to lowest",
    "high to low",
    "most to least",
    "best to worst",
];

/// The summary orders the result one way ("Return the n most recent readings, oldest first") and
/// another sentence about the result orders it the other way ("The result is ordered newest to
/// oldest"). A parameter that picks the order (`reverse`, `descending`, `sort_order`) or a
/// sentence about the input, ties or a second key means two orders may well both hold.
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
    let direction = |s: &str| {
        let up = ASCENDING.iter().find(|p| has_phrase(s, p));
        let down = DESCENDING.iter().find(|p| has_phrase(s, p));
        match (up, down) {
            (Some(u), None) => Some((*u, true)),
            (None, Some(d)) => Some((*d, false)),
            _ => None,
        }
    };
    let about_other_things = |s: &str| {
        let w = words(s);
        w.iter().any(|x| {
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
                    | "then"
                    | "within"
                    | "secondary"
                    | "each"
            )
        }) || negated(s)
    };
    let first_words = words(summary);
    if !matches!(
        first_words.first().map(String::as_str),
        Some("return" | "returns" | "list" | "sort" | "get" | "fetch" | "order")
    ) || about_other_things(summary)
    {
        return None;
    }
    let (stated, up) = direction(summary)?;
    sentences[1..].iter().find_map(|s| {
        let w = words(s);
        let about_result = w.iter().any(|x| {
            matches!(
                x.as_str(),
                "result" | "results" | "returned" | "return" | "returns" | "output"
            )
        });
        let (other, other_up) = direction(s)?;
        (about_result && other_up != up && !about_other_things(s)).then(|| {
            format!(
                "The docstring orders the result \"{stated}\" and also \"{other}\"; which order should `{name}` return?",
                name = signature.name
            )
        })
    })
}

/// One sentence changes the input in place ("Upper-case the sku of every product in place"),
/// another says the input is left untouched.
fn in_place(signature: &Signature, doc: &str, sentences: &[String]) -> Option<String> {
    // "kept in place" and "stay in place" speak of a position, not of mutation.
    let position = [
        "kept", "keep", "keeps", "stay", "stays", "remain", "remains", "left",
    ]
    .iter()
    .any(|w| {
        sentences
            .iter()
            .any(|s| has_phrase(s, &format!("{w} in place")))
    });
    if position {
        return None;
    }
    let changes = sentences
        .iter()
        .find(|s| (has_phrase(s, "in place") || has_phrase(s, "in-place")) && !negated(s))?;
    // The Returns section may say it too: "A new list; the input is left untouched."
    let returns_section = section(doc, &["Returns:", "Return:"], Some("Returns"))
        .map(|(body, _)| {
            body.join(" ")
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default();
    let untouched = [
        "left untouched",
        "is untouched",
        "are untouched",
        "is not modified",
        "are not modified",
        "is never modified",
        "are never modified",
        "does not modify",
        "without modifying",
        "not mutated",
        "is left unchanged",
        "are left unchanged",
    ];
    let subject = |s: &str| {
        let w = words(s);
        w.iter().any(|x| {
            matches!(
                x.as_str(),
                "input" | "inputs" | "original" | "argument" | "arguments"
            ) || signature
                .parameters
                .iter()
                .any(|p| p.name != "self" && p.name.to_lowercase() == *x)
        })
    };
    let keeps = sentences
        .iter()
        .chain(std::iter::once(&returns_section))
        .find(|s| *s != changes && untouched.iter().any(|p| has_phrase(s, p)) && subject(s))?;
    Some(format!(
        "The docstring says \"{}\", and also \"{}\"; should `{name}` change its input in place or leave it alone?",
        changes.trim_end_matches(['.', ';']),
        keeps.trim_end_matches(['.', ';']),
        name = signature.name
    ))
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
            let rest: Vec<&str> = w[i + 2..(i + 6).min(w.len())]
                .iter()
                .map(String::as_str)
                .collect();
            let off = matches!(
                rest.as_slice(),
                ["is", "false", ..]
                    | ["is", "set", "to", "false", ..]
                    | ["is", "turned", "off", ..]
                    | ["is", "disabled", ..]
                    | ["is", "switched", "off", ..]
            );
            let on = matches!(
                rest.as_slice(),
                ["is", "true", ..]
                    | ["is", "set", "to", "true", ..]
                    | ["is", "turned", "on", ..]
                    | ["is", "enabled", ..]
                    | ["is", "switched", "on", ..]
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
            let used_as_parameter = before
                .last()
                .is_some_and(|w| matches!(w.as_str(), "unless" | "if" | "when"))
                && matches!(
                    next.iter()
                        .take(2)
                        .map(String::as_str)
                        .collect::<Vec<_>>()
                        .as_slice(),
                    ["is", _] | ["are", _]
                )
                || matches!(
                    next.iter()
                        .take(3)
                        .map(String::as_str)
                        .collect::<Vec<_>>()
                        .as_slice(),
                    ["is", "set", "to"]
                        | ["is", "true", _]
                        | ["is", "false", _]
                        | ["defaults", _, _]
                );
            if !used_as_parameter {
                continue;
            }
            let tokens: Vec<&str> = name.split('_').filter(|t| t.len() >= 4).collect();
            let similar: Vec<&str> = signature
                .parameters
                .iter()
                .map(|p| p.name.as_str())
                .filter(|p| *p != "self" && *p != "cls")
                .filter(|p| p.split('_').any(|t| tokens.contains(&t)))
                .filter(|p| !doc_words.iter().any(|w| w == p))
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
    let to = w.get(from + 2).filter(|x| *x == "to")?;
    let target = conversion_unit(w.get(from + 3)?)?;
    if source.0 != target.0 || source.1 == target.1 || to.is_empty() {
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
    let entry_words = words(entry.text.split_once(':').map_or("", |(_, d)| d));
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

/// A parameter described as a percentage ("`rate` is a percentage, e.g. 7.65 for 7.65%") whose
/// default is a fraction between 0 and 1 (`rate=0.0765`): 7.65% or 0.0765%?
fn percentage_default(signature: &Signature, doc: &str, sentences: &[String]) -> Option<String> {
    let entries = documented_parameters(doc);
    signature.parameters.iter().find_map(|parameter| {
        let default: f64 = parameter.default.as_deref()?.parse().ok()?;
        if !(default > 0.0 && default < 1.0) {
            return None;
        }
        let texts = entries
            .iter()
            .filter(|e| e.name == parameter.name)
            .map(|e| e.text.clone())
            .chain(
                sentences
                    .iter()
                    .filter(|s| words(s).contains(&parameter.name.to_lowercase()))
                    .cloned(),
            );
        texts.into_iter().find_map(|text| {
            let percent = ["is a percentage", "as a percentage", "in percent", "a percent value"]
                .iter()
                .any(|p| has_phrase(&text, p));
            let fraction = ["fraction", "0 and 1", "0.0 and 1.0", "0 to 1", "0.0 to 1.0", "ratio"]
                .iter()
                .any(|p| has_phrase(&text, p));
            (percent && !fraction && !negated(&text)).then(|| {
                format!(
                    "The docstring says `{name}` is a percentage, but its default is `{written}`; is that {written}% or {percent}%?",
                    name = parameter.name,
                    written = parameter.default.as_deref().unwrap_or_default(),
                    percent = format!("{:.4}", default * 100.0)
                        .trim_end_matches('0')
                        .trim_end_matches('.')
                )
            })
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
