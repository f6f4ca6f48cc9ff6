//! Finding the phrase of a docstring that a question is about, for diagnostic ranges.

/// Words too common to tie a question to a phrase.
const STOP: &[&str] = &[
    "about", "also", "could", "does", "each", "from", "have", "into", "just", "like", "more",
    "must", "only", "other", "same", "should", "some", "than", "that", "their", "them", "then",
    "there", "these", "they", "this", "what", "when", "where", "which", "while", "will", "with",
    "would", "your", "function", "return", "returns", "value", "mean", "means", "clarify",
    "exactly",
];

fn words(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.char_indices()
        .filter(|(i, c)| {
            c.is_alphanumeric()
                && !text[..*i]
                    .chars()
                    .next_back()
                    .is_some_and(|p| p.is_alphanumeric() || p == '_')
        })
        .map(move |(i, _)| {
            let end = text[i..]
                .find(|c: char| !(c.is_alphanumeric() || c == '_'))
                .map(|e| i + e)
                .unwrap_or(text.len());
            (i, &text[i..end])
        })
}

fn key(word: &str) -> Option<String> {
    let w = word.to_lowercase();
    (w.chars().count() >= 4 && !STOP.contains(&w.as_str())).then_some(w)
}

/// The byte range (within `literal`, the docstring's source text) of the line that shares the
/// most significant words with `question`, narrowed to the first and last shared word. `None`
/// when no line shares a word.
pub fn find(literal: &str, question: &str) -> Option<(usize, usize)> {
    let wanted: Vec<String> = words(question).filter_map(|(_, w)| key(w)).collect();
    if wanted.is_empty() {
        return None;
    }
    let mut best: Option<(usize, usize, usize)> = None; // (hits, start, end)
    let mut line_start = 0;
    // Lines end at '\n' and at a lone '\r' (a "\r\n" splits into a line and an empty one).
    for line in literal.split_inclusive(['\n', '\r']) {
        let hits: Vec<(usize, &str)> = words(line)
            .filter(|(_, w)| key(w).is_some_and(|k| wanted.contains(&k)))
            .collect();
        if let (Some(first), Some(last)) = (hits.first(), hits.last()) {
            let candidate = (
                hits.len(),
                line_start + first.0,
                line_start + last.0 + last.1.len(),
            );
            if best.is_none_or(|b| candidate.0 > b.0) {
                best = Some(candidate);
            }
        }
        line_start += line.len();
    }
    best.map(|(_, s, e)| (s, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_the_line_with_the_most_shared_words() {
        let doc =
            "\"\"\"Sort the stock.\n\n    Return the important items, by priority.\n    \"\"\"";
        let (s, e) = find(doc, "Which items are important?").unwrap();
        assert_eq!(&doc[s..e], "important items");
        let (s, e) = find(doc, "Sort by what? Ascending stock?").unwrap();
        assert_eq!(&doc[s..e], "Sort the stock");
        assert_eq!(find(doc, "What should it do?"), None);
        // Old Mac line ends: still one line's words.
        let doc = doc.replace('\n', "\r");
        let (s, e) = find(&doc, "Which stock is sorted, by which priority?").unwrap();
        assert_eq!(&doc[s..e], "stock");
    }
}
