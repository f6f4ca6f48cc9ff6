//! Open documents: a rope, its version, and position conversion in the negotiated encoding.
//!
//! Lines end at '\n', and at a '\r' that no '\n' follows (old Mac line ends), as the LSP and
//! Python read them and `core::python` counts them; a '\r' before '\n' belongs to its line, as in
//! `core::python`'s columns. Out-of-range positions are clamped, never a panic.

use std::sync::{Arc, OnceLock};

use clarifycoder_core::{analysis, python};
use ropey::Rope;

use super::types::{Position, Range, TextDocumentContentChangeEvent};

/// How `Position::character` counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// UTF-8 code units (bytes); used when the client offers it.
    Utf8,
    /// UTF-16 code units: the LSP default.
    Utf16,
}

/// One open document.
#[derive(Debug, Clone)]
pub struct Document {
    rope: Rope,
    /// The client's version of this text.
    pub version: i32,
    /// What [`Document::functions`] found in this text, once asked.
    functions: OnceLock<Arc<Functions>>,
}

/// The functions of a text that go to the model, each with the questions of the checks that need
/// no model ([`analysis::check_questions`]): computed once per text, since every queued analysis
/// and every diagnostics build needs them.
#[derive(Debug)]
pub struct Functions {
    /// The text they were read from.
    pub text: String,
    /// [`analysis::analyzable`], in source order.
    pub functions: Vec<python::Function>,
    /// [`analysis::check_questions`] of each function, in the same order.
    pub checked: Vec<Vec<String>>,
}

impl Functions {
    /// Reads a text.
    pub fn of(text: String) -> Functions {
        let parsed = python::extract(&text);
        let functions: Vec<python::Function> =
            analysis::analyzable(&parsed).into_iter().cloned().collect();
        let checked = functions.iter().map(analysis::check_questions).collect();
        Functions {
            text,
            functions,
            checked,
        }
    }

    /// Each function with its checks' questions.
    pub fn iter(&self) -> impl Iterator<Item = (&python::Function, &[String])> {
        self.functions
            .iter()
            .zip(self.checked.iter().map(Vec::as_slice))
    }
}

impl Document {
    /// A document with its first text.
    pub fn new(text: &str, version: i32) -> Document {
        Document {
            rope: Rope::from_str(text),
            version,
            functions: OnceLock::new(),
        }
    }

    /// The whole text.
    pub fn text(&self) -> String {
        self.rope.to_string()
    }

    /// The functions of this text that go to the model, with their checks ([`Functions`]).
    pub fn functions(&self) -> Arc<Functions> {
        self.functions
            .get_or_init(|| Arc::new(Functions::of(self.text())))
            .clone()
    }

    /// Applies `didChange` content changes in order. Returns how many positions were out of range
    /// and clamped.
    pub fn apply(
        &mut self,
        changes: &[TextDocumentContentChangeEvent],
        version: i32,
        enc: Encoding,
    ) -> usize {
        let mut clamped = 0;
        self.functions = OnceLock::new();
        for change in changes {
            match change.range {
                None => self.rope = Rope::from_str(&change.text),
                Some(range) => {
                    let (start, c1) = self.char_index(range.start, enc);
                    let (end, c2) = self.char_index(range.end, enc);
                    clamped += c1 as usize + c2 as usize;
                    let (start, end) = if start <= end {
                        (start, end)
                    } else {
                        (end, start)
                    };
                    self.rope.remove(start..end);
                    self.rope.insert(start, &change.text);
                }
            }
        }
        self.version = version;
        clamped
    }

    /// The char index of a position, clamped into the text; the flag says whether it was clamped.
    pub fn char_index(&self, pos: Position, enc: Encoding) -> (usize, bool) {
        let lines = self.rope.len_lines();
        let line = pos.line as usize;
        if line >= lines {
            return (self.rope.len_chars(), true);
        }
        let line_start = self.rope.line_to_char(line);
        let slice = self.rope.line(line);
        // The line without its end: '\n' (a '\r' before it counts as a character, as in
        // `core::python`) or a lone '\r'.
        let mut len = slice.len_chars();
        if len > 0 && matches!(slice.char(len - 1), '\n' | '\r') {
            len -= 1;
        }
        let want = pos.character as usize;
        let mut units = 0;
        for (i, c) in slice.chars().take(len).enumerate() {
            if units >= want {
                return (line_start + i, units > want);
            }
            units += match enc {
                Encoding::Utf8 => c.len_utf8(),
                Encoding::Utf16 => c.len_utf16(),
            };
        }
        (line_start + len, units < want)
    }

    /// The LSP position of a byte offset in the text.
    pub fn position_of_byte(&self, byte: usize, enc: Encoding) -> Position {
        let byte = byte.min(self.rope.len_bytes());
        let char_idx = self.rope.byte_to_char(byte);
        let line = self.rope.char_to_line(char_idx);
        let line_start = self.rope.line_to_char(line);
        let character: usize = self
            .rope
            .slice(line_start..char_idx)
            .chars()
            .map(|c| match enc {
                Encoding::Utf8 => c.len_utf8(),
                Encoding::Utf16 => c.len_utf16(),
            })
            .sum();
        Position {
            line: line as u32,
            character: character as u32,
        }
    }

    /// The LSP range of a byte range.
    pub fn range_of_bytes(&self, start: usize, end: usize, enc: Encoding) -> Range {
        Range {
            start: self.position_of_byte(start, enc),
            end: self.position_of_byte(end, enc),
        }
    }

    /// The byte offset of a position (clamped).
    pub fn byte_of_position(&self, pos: Position, enc: Encoding) -> usize {
        let (c, _) = self.char_index(pos, enc);
        self.rope.char_to_byte(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(sl: u32, sc: u32, el: u32, ec: u32, text: &str) -> TextDocumentContentChangeEvent {
        TextDocumentContentChangeEvent {
            range: Some(Range {
                start: Position::new(sl, sc),
                end: Position::new(el, ec),
            }),
            range_length: None,
            text: text.into(),
        }
    }

    #[test]
    fn the_functions_and_their_checks_follow_every_edit() {
        let mut d = Document::new(
            "def mean(xs) -> int:\n    \"\"\"Return the mean of `xs`.\"\"\"\n    return sum(xs) / len(xs)\n",
            1,
        );
        let read = d.functions();
        assert_eq!(read.functions.len(), 1);
        assert_eq!(read.checked[0].len(), 1, "{:?}", read.checked);
        assert!(Arc::ptr_eq(&read, &d.functions()), "read once per text");
        // The body now returns an int: the check's finding goes with the old text.
        d.apply(
            &[change(2, 11, 2, 28, "sum(xs) // len(xs)")],
            2,
            Encoding::Utf8,
        );
        let read = d.functions();
        assert!(read.text.contains("//"));
        assert_eq!(read.checked, vec![Vec::<String>::new()]);
    }

    #[test]
    fn utf16_and_utf8_columns() {
        let mut d = Document::new("a😀b\r\nsecond\n", 1);
        // '😀' is 2 UTF-16 units and 4 UTF-8 bytes.
        d.apply(&[change(0, 3, 0, 4, "B")], 2, Encoding::Utf16);
        assert_eq!(d.text(), "a😀B\r\nsecond\n");
        d.apply(&[change(0, 5, 0, 6, "C")], 3, Encoding::Utf8);
        assert_eq!(d.text(), "a😀C\r\nsecond\n");
        assert_eq!(d.version, 3);
        assert_eq!(d.position_of_byte(5, Encoding::Utf16), Position::new(0, 3));
        assert_eq!(d.position_of_byte(5, Encoding::Utf8), Position::new(0, 5));
        assert_eq!(d.position_of_byte(8, Encoding::Utf16), Position::new(1, 0));
    }

    #[test]
    fn a_lone_carriage_return_ends_a_line() {
        // Old Mac line ends, as the client counts them.
        let mut d = Document::new("def f(x):\r    'Doc.'\r    return x\r", 1);
        assert_eq!(d.position_of_byte(10, Encoding::Utf16), Position::new(1, 0));
        d.apply(&[change(1, 5, 1, 8, "Text")], 2, Encoding::Utf16);
        assert_eq!(d.text(), "def f(x):\r    'Text.'\r    return x\r");
        // The end of a line is before its '\r'.
        let (end, clamped) = d.char_index(Position::new(0, 99), Encoding::Utf16);
        assert_eq!((end, clamped), (9, true));
        let read = d.functions();
        assert_eq!(read.functions.len(), 1);
        assert_eq!(read.functions[0].docstring.as_ref().unwrap().text, "Text.");
    }

    #[test]
    fn out_of_range_positions_are_clamped() {
        let mut d = Document::new("ab\ncd", 1);
        let clamped = d.apply(&[change(0, 10, 0, 99, "X")], 2, Encoding::Utf16);
        assert_eq!(d.text(), "abX\ncd");
        assert_eq!(clamped, 2);
        d.apply(&[change(7, 0, 9, 9, "!")], 3, Encoding::Utf16);
        assert_eq!(d.text(), "abX\ncd!");
        // Reversed ranges are normalised.
        d.apply(&[change(1, 2, 0, 1, "")], 4, Encoding::Utf16);
        assert_eq!(d.text(), "a!");
        // Inside a surrogate pair: clamped to the character boundary after it.
        let mut d = Document::new("😀x", 1);
        d.apply(&[change(0, 1, 0, 1, "Y")], 2, Encoding::Utf16);
        assert_eq!(d.text(), "😀Yx");
    }

    #[test]
    fn deletions_across_lines_and_full_replacement() {
        let mut d = Document::new("one\r\ntwo\r\nthree", 1);
        d.apply(&[change(0, 2, 2, 1, "")], 2, Encoding::Utf16);
        assert_eq!(d.text(), "onhree");
        d.apply(
            &[TextDocumentContentChangeEvent {
                range: None,
                range_length: None,
                text: "new".into(),
            }],
            3,
            Encoding::Utf16,
        );
        assert_eq!(d.text(), "new");
    }

    /// UTF-16 position of a char index in a plain string (the shadow's view): lines end at '\n'
    /// and at a '\r' that no '\n' follows.
    fn shadow_position(text: &str, char_idx: usize) -> Position {
        let chars: Vec<char> = text.chars().collect();
        let mut line = 0;
        let mut col = 0;
        for (i, &c) in chars.iter().enumerate().take(char_idx) {
            if c == '\n' || (c == '\r' && chars.get(i + 1) != Some(&'\n')) {
                line += 1;
                col = 0;
            } else {
                col += c.len_utf16() as u32;
            }
        }
        Position::new(line, col)
    }

    #[test]
    fn two_thousand_random_edits_match_a_shadow_string() {
        let alphabet: Vec<char> = "ab \t\r\n😀文é\"'#:".chars().collect();
        let mut seed = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = |n: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % n.max(1) as u64) as usize
        };
        let mut shadow = String::from("def f(x):\r\n    \"\"\"Doc 😀.\"\"\"\r\n    return x\n");
        let mut doc = Document::new(&shadow, 0);
        for version in 1..=2000 {
            let chars: Vec<char> = shadow.chars().collect();
            let (mut a, mut b) = (next(chars.len() + 1), next(chars.len() + 1));
            if a > b {
                std::mem::swap(&mut a, &mut b);
            }
            if next(3) == 0 {
                b = a; // pure insertion
            }
            let insert: String = (0..next(4))
                .map(|_| alphabet[next(alphabet.len())])
                .collect();
            let (start, end) = (shadow_position(&shadow, a), shadow_position(&shadow, b));
            let mut expected: String = chars[..a].iter().collect();
            expected.push_str(&insert);
            expected.extend(&chars[b..]);
            let change = TextDocumentContentChangeEvent {
                range: Some(Range { start, end }),
                range_length: None,
                text: insert,
            };
            let clamped = doc.apply(&[change], version, Encoding::Utf16);
            assert_eq!(clamped, 0, "version {version}");
            shadow = expected;
            assert_eq!(doc.text(), shadow, "after edit {version}");
            // Byte offsets map back to the same UTF-16 positions.
            let probe = next(shadow.len() + 1);
            if shadow.is_char_boundary(probe) {
                let char_idx = shadow[..probe].chars().count();
                assert_eq!(
                    doc.position_of_byte(probe, Encoding::Utf16),
                    shadow_position(&shadow, char_idx)
                );
            }
        }
    }
}
