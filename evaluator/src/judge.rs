//! Judges: rate a model's clarifying questions (3 good: they recover what was changed; 2 fair;
//! 1 no real question) and answer them from the original problem.
//!
//! The offline judge is deterministic and needs no model. It is a proxy: a question is "good"
//! when it touches what differs between the original and the modified problem (a word that was
//! removed or changed, the renamed function, a contradicted example value). The LLM judge asks a
//! model with the benchmark's rubric.

use std::collections::HashSet;
use std::sync::Arc;

use clarifycoder_core::engine::{Backend, CancelToken, GenerateRequest};
use clarifycoder_core::prompt::{Markup, Prompt, Turn};
use serde::{Deserialize, Serialize};

/// A judgement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verdict {
    /// 1..=3.
    pub quality: u8,
    /// Answers to the questions, from the original problem.
    pub answers: String,
    /// Why (offline judge: the grounding words found).
    pub note: String,
}

/// Words that carry no signal for grounding.
const STOP: &[&str] = &[
    "the", "and", "for", "that", "this", "with", "from", "are", "return", "returns", "function",
    "should", "what", "which", "when", "does", "will", "would", "list", "given", "input", "output",
    "value", "values", "number", "numbers", "string", "you", "your", "can", "not", "all", "any",
    "each", "there", "then", "than", "into", "def", "none", "true", "false", "example", "examples",
];

fn tokens(text: &str) -> Vec<String> {
    text.split(|c: char| !(c.is_alphanumeric() || c == '_' || c == '.' || c == '-'))
        .map(|t| {
            t.trim_matches(|c: char| c == '.' || c == '-')
                .to_lowercase()
        })
        .filter(|t| !t.is_empty())
        .collect()
}

/// A crude stem, so that "added" meets "add" and "combined" meets "combination": one common
/// suffix off, then at most six characters.
fn stem(t: &str) -> String {
    let mut w = t;
    for suffix in ["ations", "ation", "ings", "ing", "ed", "es", "s", "ly"] {
        if let Some(rest) = w.strip_suffix(suffix) {
            if rest.len() >= 3 {
                w = rest;
                break;
            }
        }
    }
    w.chars().take(6).collect()
}

fn significant(t: &str) -> bool {
    (t.len() >= 3 || t.chars().all(|c| c.is_ascii_digit())) && !STOP.contains(&t)
}

/// The offline judge.
pub fn offline(original: &str, modified: &str, entry_point: &str, questions: &[String]) -> Verdict {
    let answers = format!(
        "Here is the full problem description:\n{}",
        original.trim_end()
    );
    let text: String = questions.join(" ");
    if questions.is_empty() || !text.contains('?') {
        return Verdict {
            quality: 1,
            answers,
            note: "no question".into(),
        };
    }
    let orig: HashSet<String> = tokens(original)
        .into_iter()
        .filter(|t| significant(t))
        .map(|t| stem(&t))
        .collect();
    let modi: HashSet<String> = tokens(modified)
        .into_iter()
        .filter(|t| significant(t))
        .map(|t| stem(&t))
        .collect();
    // What changed, in both directions: removed or replaced words, and new (contradicting) ones.
    let mut changed: HashSet<String> = orig.symmetric_difference(&modi).cloned().collect();
    if !modified.contains(entry_point) {
        // The function was renamed (e.g. to `candidate`): asking what it should do is on target.
        changed.extend(tokens(entry_point).iter().map(|t| stem(t)));
        changed.insert("purpose".into());
        changed.insert("name".into());
    }
    let asked: HashSet<String> = tokens(&text)
        .into_iter()
        .filter(|t| significant(t))
        .map(|t| stem(&t))
        .collect();
    let mut hits: Vec<&String> = asked.intersection(&changed).collect();
    hits.sort();
    if hits.is_empty() {
        Verdict {
            quality: 2,
            answers,
            note: "questions do not touch what changed".into(),
        }
    } else {
        let words: Vec<&str> = hits.iter().take(5).map(|s| s.as_str()).collect();
        Verdict {
            quality: 3,
            answers,
            note: format!("grounded on: {}", words.join(", ")),
        }
    }
}

/// The LLM judge's instruction.
pub fn llm_message(original: &str, modified: &str, questions: &[String]) -> String {
    format!(
        "You judge a coding assistant's clarifying questions. The assistant saw the MODIFIED problem, which was \
made unclear on purpose; the ORIGINAL problem is the clear version.\n\nORIGINAL:\n{}\n\nMODIFIED:\n{}\n\nQUESTIONS:\n{}\n\n\
Rate the questions: 3 = good, they would recover what was changed; 2 = fair, reasonable but miss the change; \
1 = no real question. Then answer the questions using only the ORIGINAL problem, without writing code.\n\
Reply exactly in this form:\nQUALITY=<1, 2 or 3>\nANSWERS:\n<your answers>",
        original.trim_end(),
        modified.trim_end(),
        questions.iter().map(|q| format!("- {q}")).collect::<Vec<_>>().join("\n")
    )
}

/// Parses an LLM judge reply, tolerating format slips ("Quality: 3", "QUALITY = 3/3", missing
/// ANSWERS heading). No quality found → 1.
pub fn parse_llm(reply: &str) -> Verdict {
    let upper = reply.to_uppercase();
    let quality = upper
        .find("QUALITY")
        .and_then(|i| upper[i + 7..].chars().find(|c| c.is_ascii_digit()))
        .and_then(|c| c.to_digit(10))
        .filter(|q| (1..=3).contains(q))
        .unwrap_or(1) as u8;
    let answers = match upper.find("ANSWERS") {
        Some(i) => reply[i + 7..]
            .trim_start_matches([':', ' ', '\n'])
            .trim()
            .to_string(),
        None => reply
            .lines()
            .filter(|l| !l.to_uppercase().contains("QUALITY"))
            .collect::<Vec<_>>()
            .join("\n")
            .trim()
            .to_string(),
    };
    Verdict {
        quality,
        answers,
        note: "llm judge".into(),
    }
}

/// Which judge to use.
#[derive(Clone)]
pub enum Judge {
    /// The deterministic proxy.
    Offline,
    /// A model.
    Llm(Arc<dyn Backend>, Markup),
}

impl Judge {
    /// Judges questions about a modified problem.
    pub fn judge(
        &self,
        original: &str,
        modified: &str,
        entry_point: &str,
        questions: &[String],
    ) -> anyhow::Result<Verdict> {
        match self {
            Judge::Offline => Ok(offline(original, modified, entry_point, questions)),
            Judge::Llm(backend, markup) => {
                if questions.is_empty() {
                    return Ok(offline(original, modified, entry_point, questions));
                }
                let text = markup.render(&[Turn::user(llm_message(original, modified, questions))]);
                let request = GenerateRequest::greedy(
                    Prompt {
                        text,
                        prefix_len: 0,
                    },
                    *markup,
                    512,
                );
                let reply = backend.generate(&request, &CancelToken::new())?;
                Ok(parse_llm(&reply.text))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ORIGINAL: &str = "def sort_desc(xs):\n    \"\"\"Sort xs in descending order.\n    >>> sort_desc([1, 3, 2])\n    [3, 2, 1]\n    \"\"\"\n";

    fn qs(q: &str) -> Vec<String> {
        vec![q.to_string()]
    }

    #[test]
    fn offline_grades_by_grounding() {
        let modified = ORIGINAL.replace("in descending order", "in some order");
        let good = offline(
            ORIGINAL,
            &modified,
            "sort_desc",
            &qs("Should it be ascending or descending?"),
        );
        assert_eq!(good.quality, 3, "{good:?}");
        assert!(good.note.contains("descen"), "{good:?}");
        let combined = offline(
            "def f(a, b):\n    \"\"\"Return the sum.\"\"\"",
            "def f(a, b):\n    \"\"\"Return the combination.\"\"\"",
            "f",
            &qs("How are they combined?"),
        );
        assert_eq!(combined.quality, 3, "{combined:?}");
        let fair = offline(
            ORIGINAL,
            &modified,
            "sort_desc",
            &qs("Can the list contain duplicates?"),
        );
        assert_eq!(fair.quality, 2);
        let none = offline(
            ORIGINAL,
            &modified,
            "sort_desc",
            &qs("I will write it now."),
        );
        assert_eq!(none.quality, 1);
        assert!(none.answers.contains("descending order"));
        // A contradicted example value is a change too.
        let contradicted = ORIGINAL.replace("[3, 2, 1]", "[1, 2, 3]");
        let v = offline(
            ORIGINAL,
            &contradicted,
            "sort_desc",
            &qs("The example returns [1, 2, 3]; is that right?"),
        );
        assert_eq!(
            v.quality, 2,
            "same tokens in another order are not a word change: {v:?}"
        );
        let renamed = ORIGINAL.replace("sort_desc", "candidate");
        let v = offline(
            ORIGINAL,
            &renamed,
            "sort_desc",
            &qs("What is the purpose of candidate?"),
        );
        assert_eq!(v.quality, 3, "{v:?}");
    }

    #[test]
    fn llm_replies_are_parsed_tolerantly() {
        assert_eq!(parse_llm("QUALITY=3\nANSWERS:\nDescending.").quality, 3);
        assert_eq!(
            parse_llm("QUALITY=3\nANSWERS:\nDescending.").answers,
            "Descending."
        );
        assert_eq!(
            parse_llm("Quality: 2\nThe list is sorted descending.").quality,
            2
        );
        assert_eq!(
            parse_llm("Quality: 2\nThe list is sorted descending.").answers,
            "The list is sorted descending."
        );
        assert_eq!(parse_llm("**QUALITY = 3/3**\nAnswers - yes").quality, 3);
        assert_eq!(parse_llm("I think they are fine.").quality, 1);
        assert_eq!(parse_llm("QUALITY=7").quality, 1);
    }
}
