//! The one prompt format. The server, the trainer and the evaluator all render prompts and read
//! responses through this module, so the text a model was trained on is byte-for-byte the text it
//! is asked at run time. Tests pin the exact rendered strings; changing any of them is a format
//! change and must bump [`FORMAT_VERSION`] (which also invalidates cached results), and so must a
//! change in how a response is read into questions.

use serde::{Deserialize, Serialize};

/// Version of everything this module renders and of how it reads a response into questions. Part
/// of every result-cache key, so a cached result never keeps what the reading now drops.
/// 2: a question that contrasts a claim with itself, and one cut off by the token limit, are
/// dropped (results cached before kept them).
pub const FORMAT_VERSION: u32 = 2;

/// The round-1 instruction, exactly as in the HumanEvalComm benchmark.
pub const ROUND1_INSTRUCTION: &str = "You are an expert software developer who writes high quality code. With below information, please either generate Python3 code (Respond directly with code only with markdown), or ask clarifying questions:";

/// The request that closes round 2, after the answers to the model's questions.
pub const ROUND2_REQUEST: &str =
    "Given above conversations, generate Python code directly (Markdown) to solve the coding problem:";

/// Who speaks a turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Role {
    /// The person (or the benchmark) asking.
    User,
    /// The model answering.
    Model,
}

/// One turn of a conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Turn {
    /// Speaker.
    pub role: Role,
    /// Text of the turn, without any markup.
    pub content: String,
}

impl Turn {
    /// A user turn.
    pub fn user(content: impl Into<String>) -> Turn {
        Turn {
            role: Role::User,
            content: content.into(),
        }
    }
    /// A model turn.
    pub fn model(content: impl Into<String>) -> Turn {
        Turn {
            role: Role::Model,
            content: content.into(),
        }
    }
}

/// Turn markup of a model family. We recognise the family from the GGUF's chat template (or its
/// architecture when it has none) and render the markup ourselves instead of executing the Jinja
/// template: the trainer has no llama.cpp, and both must produce identical text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Markup {
    /// Gemma: `<start_of_turn>user\n...<end_of_turn>\n<start_of_turn>model\n`.
    Gemma,
    /// ChatML (Qwen and others): `<|im_start|>user\n...<|im_end|>\n<|im_start|>assistant\n`.
    ChatMl,
    /// Llama 3: `<|start_header_id|>user<|end_header_id|>\n\n...<|eot_id|>`.
    Llama3,
    /// Models without a chat template: `### Instruction:` / `### Response:` sections.
    Plain,
}

impl Markup {
    /// Picks the markup from a GGUF's `tokenizer.chat_template` and `general.architecture`.
    pub fn detect(architecture: Option<&str>, chat_template: Option<&str>) -> Markup {
        if let Some(template) = chat_template {
            if template.contains("<start_of_turn>") {
                return Markup::Gemma;
            }
            if template.contains("<|im_start|>") {
                return Markup::ChatMl;
            }
            if template.contains("<|start_header_id|>") {
                return Markup::Llama3;
            }
        }
        match architecture {
            Some(arch) if arch.starts_with("gemma") => Markup::Gemma,
            Some(arch) if arch.starts_with("qwen") => Markup::ChatMl,
            _ => Markup::Plain,
        }
    }

    /// Every markup, with the name it is written as in settings and flags.
    pub const NAMED: [(&'static str, Markup); 4] = [
        ("gemma", Markup::Gemma),
        ("chatml", Markup::ChatMl),
        ("llama3", Markup::Llama3),
        ("plain", Markup::Plain),
    ];

    fn open(self, role: Role) -> &'static str {
        match (self, role) {
            (Markup::Gemma, Role::User) => "<start_of_turn>user\n",
            (Markup::Gemma, Role::Model) => "<start_of_turn>model\n",
            (Markup::ChatMl, Role::User) => "<|im_start|>user\n",
            (Markup::ChatMl, Role::Model) => "<|im_start|>assistant\n",
            (Markup::Llama3, Role::User) => "<|start_header_id|>user<|end_header_id|>\n\n",
            (Markup::Llama3, Role::Model) => "<|start_header_id|>assistant<|end_header_id|>\n\n",
            (Markup::Plain, Role::User) => "### Instruction:\n",
            (Markup::Plain, Role::Model) => "### Response:\n",
        }
    }

    /// The text that ends a turn. A trained model ends its answer with it.
    pub fn end_of_turn(self) -> &'static str {
        match self {
            Markup::Gemma => "<end_of_turn>\n",
            Markup::ChatMl => "<|im_end|>\n",
            Markup::Llama3 => "<|eot_id|>",
            Markup::Plain => "\n",
        }
    }

    /// Strings at which generation stops (besides the model's end-of-generation tokens).
    pub fn stop_strings(self) -> Vec<String> {
        let stops: &[&str] = match self {
            Markup::Gemma => &["<end_of_turn>", "<start_of_turn>"],
            Markup::ChatMl => &["<|im_end|>", "<|im_start|>"],
            Markup::Llama3 => &["<|eot_id|>", "<|start_header_id|>"],
            Markup::Plain => &["### Instruction:", "### Response:"],
        };
        stops.iter().map(|s| s.to_string()).collect()
    }

    /// Renders a conversation. When the last turn is the user's, an open model turn follows, so
    /// the text ends where the model starts writing.
    pub fn render(self, turns: &[Turn]) -> String {
        let mut out = String::new();
        for turn in turns {
            out.push_str(self.open(turn.role));
            out.push_str(&turn.content);
            out.push_str(self.end_of_turn());
        }
        if turns.last().is_none_or(|t| t.role == Role::User) {
            out.push_str(self.open(Role::Model));
        }
        out
    }
}

/// A markup name that is not one of [`Markup::NAMED`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown markup `{0}`; use gemma, chatml, llama3 or plain")]
pub struct UnknownMarkup(pub String);

impl std::str::FromStr for Markup {
    type Err = UnknownMarkup;

    /// Parses `gemma`, `chatml`, `llama3` or `plain` (case-insensitive).
    fn from_str(s: &str) -> Result<Markup, UnknownMarkup> {
        Markup::NAMED
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(s.trim()))
            .map(|(_, m)| *m)
            .ok_or_else(|| UnknownMarkup(s.to_string()))
    }
}

/// A rendered prompt plus the length of its fixed prefix (everything up to the problem), which
/// is the same for every round-1 request and whose KV cache the engine keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prompt {
    /// The full text to feed the model (the tokenizer adds BOS).
    pub text: String,
    /// Byte length of the fixed prefix of `text`.
    pub prefix_len: usize,
}

impl Prompt {
    /// The fixed prefix.
    pub fn prefix(&self) -> &str {
        &self.text[..self.prefix_len]
    }
}

/// The user message of round 1: the instruction, a newline, the problem.
pub fn round1_message(problem: &str) -> String {
    format!("{ROUND1_INSTRUCTION}\n{problem}")
}

/// The round-1 prompt for a problem (for us: [`crate::python::Function::problem`]).
pub fn round1(markup: Markup, problem: &str) -> Prompt {
    let text = markup.render(&[Turn::user(round1_message(problem))]);
    let prefix_len = markup.open(Role::User).len() + ROUND1_INSTRUCTION.len() + 1;
    Prompt { text, prefix_len }
}

/// The conversation of round 2: round 1, the model's questions, then the answers and the request
/// for code.
pub fn round2_turns(problem: &str, questions: &str, answers: &str) -> Vec<Turn> {
    vec![
        Turn::user(round1_message(problem)),
        Turn::model(questions.trim()),
        Turn::user(format!("{}\n\n{ROUND2_REQUEST}", answers.trim())),
    ]
}

/// The round-2 prompt: round 1, the model's questions, then the answers and the request for code.
pub fn round2(markup: Markup, problem: &str, questions: &str, answers: &str) -> Prompt {
    let text = markup.render(&round2_turns(problem, questions, answers));
    let prefix_len = markup.open(Role::User).len() + ROUND1_INSTRUCTION.len() + 1;
    Prompt { text, prefix_len }
}

/// The opening fence of a code answer; what [`round1_code`] ends with.
pub const CODE_FENCE_OPEN: &str = "```python\n";
/// The closing fence: generation after [`round1_code`] stops at it.
pub const CODE_FENCE_CLOSE: &str = "```";

/// Round 1 with the model's answer already opened as a code block: "given that the model codes,
/// what code". Generate until [`CODE_FENCE_CLOSE`].
pub fn round1_code(markup: Markup, problem: &str) -> Prompt {
    let mut p = round1(markup, problem);
    p.text.push_str(CODE_FENCE_OPEN);
    p
}

/// The protocol's texts, overridable for exact-protocol benchmark runs (`--prompts FILE`). The
/// defaults are the constants above; the server and trainer always use the defaults.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Texts {
    /// Replaces [`ROUND1_INSTRUCTION`].
    pub round1_instruction: String,
    /// Replaces [`ROUND2_REQUEST`].
    pub round2_request: String,
    /// Appended to the round-1 message (chain-of-thought baselines); empty by default.
    pub round1_suffix: String,
}

impl Default for Texts {
    fn default() -> Texts {
        Texts {
            round1_instruction: ROUND1_INSTRUCTION.into(),
            round2_request: ROUND2_REQUEST.into(),
            round1_suffix: String::new(),
        }
    }
}

/// A benchmark conversation: optional few-shot examples (each a round-1 problem and the answer),
/// then round 1 for `problem`, and, when `round2` is `Some((questions, answers))`, the model's
/// questions, the answers and the request for code. With default texts, no shots and no round 2
/// this is exactly [`round1`]; with a round 2, exactly [`round2`].
pub fn conversation(
    markup: Markup,
    texts: &Texts,
    shots: &[(String, String)],
    problem: &str,
    round2: Option<(&str, &str)>,
) -> Prompt {
    let message = |p: &str| format!("{}\n{p}{}", texts.round1_instruction, texts.round1_suffix);
    let mut turns = Vec::new();
    for (p, a) in shots {
        turns.push(Turn::user(message(p)));
        turns.push(Turn::model(a.trim()));
    }
    turns.push(Turn::user(message(problem)));
    if let Some((questions, answers)) = round2 {
        turns.push(Turn::model(questions.trim()));
        turns.push(Turn::user(format!(
            "{}\n\n{}",
            answers.trim(),
            texts.round2_request
        )));
    }
    let text = markup.render(&turns);
    let prefix_len = markup.open(Role::User).len() + texts.round1_instruction.len() + 1;
    Prompt { text, prefix_len }
}

/// A training example: the prompt (no loss) and the completion the model learns to write (the
/// answer followed by the end-of-turn marker).
pub fn training_pair(markup: Markup, problem: &str, answer: &str) -> (String, String) {
    let prompt = round1(markup, problem).text;
    let completion = format!("{}{}", answer.trim_end(), markup.end_of_turn());
    (prompt, completion)
}

/// Whether a token's text begins a Markdown code fence: after leading white space it starts with
/// "```" or is a non-empty prefix of it ("`", "``"). The probability mass the model puts on such
/// tokens as its first output token is its probability of answering with code; the rest is its
/// probability of asking (see `Engine::decide`).
pub fn piece_begins_code(piece: &str) -> bool {
    let t = piece.trim_start();
    !t.is_empty() && (t.starts_with("```") || "```".starts_with(t))
}

/// What a model answered in round 1.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Response {
    /// The response contains a fenced code block: the model wrote code.
    Code {
        /// Contents of the first fenced block (without the fences).
        code: String,
    },
    /// No fenced code: the model asked. The questions, split into items (possibly empty).
    Questions {
        /// One entry per question.
        questions: Vec<String>,
    },
}

/// Classifies a response and extracts its code or its questions.
pub fn parse_response(text: &str) -> Response {
    if let Some(code) = first_code_block(text) {
        return Response::Code { code };
    }
    Response::Questions {
        questions: split_questions(text),
    }
}

/// The questions of an answer generated "given that the model asks" (first token not a fence):
/// its items, or, when code follows later, the prose before the code.
pub fn asked_questions(text: &str) -> Vec<String> {
    match parse_response(text) {
        Response::Questions { questions } => questions,
        Response::Code { .. } => split_questions(text.split("```").next().unwrap_or_default()),
    }
}

/// Contents of the first fenced code block. An unterminated fence (a truncated generation) runs to
/// the end of the text.
pub fn first_code_block(text: &str) -> Option<String> {
    let start = text.find("```")?;
    let after = &text[start + 3..];
    // Skip the info string (e.g. "python") up to the end of the line.
    let body_start = after.find('\n').map(|i| i + 1).unwrap_or(after.len());
    let body = &after[body_start..];
    let code = match body.find("```") {
        Some(end) => &body[..end],
        None => body,
    };
    Some(code.trim_end().to_string() + "\n")
}

/// Splits a question response into items: list entries when the text is a numbered or bulleted
/// list (continuation lines joined), else the sentences that end with '?', else the whole text.
/// What a token limit cut off is dropped: a list marker left without its text ("2"), and a last
/// item that stops mid-sentence after complete questions.
pub fn split_questions(text: &str) -> Vec<String> {
    let text = text.trim();
    if text.is_empty() {
        return Vec::new();
    }
    let mut items: Vec<String> = Vec::new();
    let mut in_list = false;
    for line in text.lines() {
        let trimmed = line.trim();
        if let Some(rest) = strip_list_marker(trimmed) {
            items.push(rest.to_string());
            in_list = true;
        } else if in_list && is_bare_marker(trimmed) {
            // The next item's number, and the token limit right after it.
        } else if in_list && !trimmed.is_empty() {
            let last = items.last_mut().expect("in_list implies an item");
            last.push(' ');
            last.push_str(trimmed);
        } else if trimmed.is_empty() {
            in_list = false;
        }
    }
    if !items.is_empty() {
        let mut items: Vec<String> = items
            .into_iter()
            .map(|s| clean_item(&s))
            .filter(|s| !s.is_empty())
            .collect();
        let complete = |s: &str| {
            s.trim_end_matches(['`', '"', '\'', '*', '”', '’'])
                .ends_with(['?', '.', '!', ')', '？', '。'])
        };
        if items.len() > 1 && items[..items.len() - 1].iter().any(|s| s.ends_with('?')) {
            if let Some(last) = items.last().filter(|s| !complete(s)) {
                tracing::debug!("dropped a question cut off by the token limit: {last:?}");
                items.pop();
            }
        }
        items.retain(|q| !is_vacuous_contrast(q));
        return items;
    }
    let flat = collapse_whitespace(text);
    let questions: Vec<String> = sentences(&flat)
        .into_iter()
        .filter(|s| s.ends_with('?'))
        .map(|s| clean_item(&s))
        .collect();
    if questions.is_empty() {
        return vec![flat];
    }
    // All of them dropped: nothing to ask, not the text itself.
    questions
        .into_iter()
        .filter(|q| !is_vacuous_contrast(q))
        .collect()
}

/// A contrast whose two sides say the same thing ("The summary says a date is written as
/// YYYY-MM-DD, but the text says it is written as YYYY-MM-DD; which is right?"): a small model's
/// slip that nobody can answer (3 of 501 questions on the dev set). The second side may be the
/// end of the first ("… look like '…ERROR disk full'", "the example shows '…ERROR disk full'")
/// when it is at least three words and nothing before it in the first turns it round ("never
/// returns a negative number", "all but the first item"). Case and quotes count: `'0'` is not
/// `0`, `'Error'` is not `'ERROR'`.
fn is_vacuous_contrast(question: &str) -> bool {
    let Some((left, right)) = question.split_once(", but ") else {
        return false;
    };
    let right = right.split([';', '?']).next().unwrap_or_default();
    let claim = |side: &str| {
        // ASCII lowercase keeps byte offsets.
        let lower = side.to_ascii_lowercase();
        let at = ["says ", "shows ", "states ", "gives ", "returns "]
            .iter()
            .filter_map(|verb| lower.find(verb).map(|i| i + verb.len()))
            .min()?;
        let quotes: String = side[at..]
            .chars()
            .map(|c| match c {
                '‘' | '’' => '\'',
                '“' | '”' => '"',
                c => c,
            })
            .collect();
        Some(collapse_whitespace(quotes.trim_end_matches(['.', ' '])))
    };
    let (Some(a), Some(b)) = (claim(left), claim(right)) else {
        return false;
    };
    if b.is_empty() {
        return false;
    }
    if a == b {
        return true;
    }
    const TURNS: [&str; 12] = [
        "not", "never", "no", "without", "except", "but", "only", "unless", "excludes", "most",
        "least", "non",
    ];
    match a.strip_suffix(&b).and_then(|head| head.strip_suffix(' ')) {
        Some(head) => {
            b.split(' ').count() >= 3
                && !head
                    .split(|c: char| !c.is_alphanumeric())
                    .any(|w| TURNS.contains(&w.to_ascii_lowercase().as_str()))
        }
        None => false,
    }
}

/// A list marker alone: `2`, `2.`, `2)`, `-`.
fn is_bare_marker(line: &str) -> bool {
    let digits = line.bytes().take_while(u8::is_ascii_digit).count();
    (digits > 0 && digits <= 3 && matches!(&line[digits..], "" | "." | ")"))
        || matches!(line, "-" | "*" | "•")
}

fn strip_list_marker(line: &str) -> Option<&str> {
    for bullet in ["- ", "* ", "• "] {
        if let Some(rest) = line.strip_prefix(bullet) {
            return Some(rest.trim());
        }
    }
    let digits = line.bytes().take_while(u8::is_ascii_digit).count();
    if digits > 0 && digits <= 3 {
        let rest = &line[digits..];
        if let Some(rest) = rest.strip_prefix(". ").or_else(|| rest.strip_prefix(") ")) {
            return Some(rest.trim());
        }
    }
    None
}

fn clean_item(item: &str) -> String {
    collapse_whitespace(item.trim().trim_matches('*').trim())
}

fn collapse_whitespace(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn sentences(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        current.push(c);
        let at_break =
            matches!(c, '?' | '!' | '.') && chars.peek().is_none_or(|n| n.is_whitespace());
        if at_break {
            out.push(current.trim().to_string());
            current.clear();
        }
    }
    if !current.trim().is_empty() {
        out.push(current.trim().to_string());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use expect_test::expect;

    const PROBLEM: &str = "def add(a, b):\n    \"\"\"Add two numbers.\"\"\"\n";

    #[test]
    fn questions_cut_off_by_the_token_limit_are_dropped() {
        // A number left without its item, and a last item that stops mid-sentence.
        assert_eq!(
            split_questions("1. Ascending or descending?\n2"),
            ["Ascending or descending?"]
        );
        assert_eq!(
            split_questions("1. Ascending or descending?\n2. What should be returned when `x`"),
            ["Ascending or descending?"]
        );
        // Complete items stay; so does a lone item, cut or not (it is all there is).
        assert_eq!(
            split_questions("- Which unit?\n- Rounded to cents."),
            ["Which unit?", "Rounded to cents."]
        );
        assert_eq!(
            split_questions("1. What should be returned when `x`"),
            ["What should be returned when `x`"]
        );
        // A last item that ends in code or a quote after its punctuation is complete.
        assert_eq!(
            split_questions("1. Sorted?\n2. What should this return:\n   `f([])`"),
            ["Sorted?", "What should this return: `f([])`"]
        );
        assert_eq!(
            split_questions("1. Sorted?\n2. Does it mean \"properly?\""),
            ["Sorted?", "Does it mean \"properly?\""]
        );
    }

    #[test]
    fn a_contrast_of_a_claim_with_itself_is_dropped() {
        // Seen on the dev set: both sides the same, or the second the end of the first.
        let vacuous = [
            "The summary says a value is valid when it is a real calendar date written exactly as YYYY-MM-DD, but the text says it is a real calendar date written exactly as YYYY-MM-DD; which is right?",
            "The text says lines look like '2024-05-01T12:00:00Z ERROR disk full', but the example shows '2024-05-01T12:00:00Z ERROR disk full'; should the level be trimmed?",
            "The docstring says low <= high, but the text says low <= high; which is right?",
        ];
        for q in vacuous {
            assert!(is_vacuous_contrast(q), "{q}");
        }
        assert_eq!(
            split_questions(&format!("1. {}\n2. Inclusive or exclusive?", vacuous[0])),
            ["Inclusive or exclusive?"]
        );
        assert!(split_questions(vacuous[2]).is_empty());
        // Two different sides, a short second side, or no claim on one side: kept.
        for q in [
            "The text says the result is below 5, but the example returns 5; which is right?",
            "The Returns section says `int`, but the return annotation is `float`; which type should `total` return?",
            "The example `format_price(1999)` expects `'$19.99'`, but the code of `format_price` gives `'19.99'`; which is right, the example or the code?",
            "The summary says ERROR lines, but the text says the most recent one; which?",
            "The docstring says the function never returns a negative number, but the example returns a negative number; which is right?",
            "The text says it returns all but the first item, but the example returns the first item; which is right?",
            "The text says it returns '0', but the code returns 0; a string or a number?",
            "The summary says 'Error', but the example shows 'ERROR'; which case is right?",
        ] {
            assert!(!is_vacuous_contrast(q), "{q}");
        }
    }

    #[test]
    fn round1_gemma_text_is_pinned() {
        let prompt = round1(Markup::Gemma, PROBLEM);
        expect![[r#"
            "<start_of_turn>user\nYou are an expert software developer who writes high quality code. With below information, please either generate Python3 code (Respond directly with code only with markdown), or ask clarifying questions:\ndef add(a, b):\n    \"\"\"Add two numbers.\"\"\"\n<end_of_turn>\n<start_of_turn>model\n"
        "#]]
        .assert_debug_eq(&prompt.text);
        assert_eq!(
            prompt.prefix(),
            format!("<start_of_turn>user\n{ROUND1_INSTRUCTION}\n")
        );
    }

    #[test]
    fn round1_other_markups_are_pinned() {
        let rendered: Vec<String> = [Markup::ChatMl, Markup::Llama3, Markup::Plain]
            .into_iter()
            .map(|m| round1(m, "P").text)
            .collect();
        expect![[r####"
            [
                "<|im_start|>user\nYou are an expert software developer who writes high quality code. With below information, please either generate Python3 code (Respond directly with code only with markdown), or ask clarifying questions:\nP<|im_end|>\n<|im_start|>assistant\n",
                "<|start_header_id|>user<|end_header_id|>\n\nYou are an expert software developer who writes high quality code. With below information, please either generate Python3 code (Respond directly with code only with markdown), or ask clarifying questions:\nP<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n",
                "### Instruction:\nYou are an expert software developer who writes high quality code. With below information, please either generate Python3 code (Respond directly with code only with markdown), or ask clarifying questions:\nP\n### Response:\n",
            ]
        "####]]
        .assert_debug_eq(&rendered);
    }

    #[test]
    fn round2_gemma_text_is_pinned() {
        let prompt = round2(Markup::Gemma, "P", "1. Which order?\n", "Ascending.\n");
        expect![[r#"
            "<start_of_turn>user\nYou are an expert software developer who writes high quality code. With below information, please either generate Python3 code (Respond directly with code only with markdown), or ask clarifying questions:\nP<end_of_turn>\n<start_of_turn>model\n1. Which order?<end_of_turn>\n<start_of_turn>user\nAscending.\n\nGiven above conversations, generate Python code directly (Markdown) to solve the coding problem:<end_of_turn>\n<start_of_turn>model\n"
        "#]]
        .assert_debug_eq(&prompt.text);
        assert!(prompt.text.starts_with(round1(Markup::Gemma, "P").prefix()));
    }

    #[test]
    fn benchmark_conversations_reduce_to_the_pinned_rounds() {
        let t = Texts::default();
        assert_eq!(
            conversation(Markup::Gemma, &t, &[], "P", None),
            round1(Markup::Gemma, "P")
        );
        assert_eq!(
            conversation(Markup::Gemma, &t, &[], "P", Some(("Q?", "A."))),
            round2(Markup::Gemma, "P", "Q?", "A.")
        );
        let shots = vec![("S".to_string(), "Which one?".to_string())];
        let with_shot = conversation(Markup::Gemma, &t, &shots, "P", None);
        assert!(with_shot
            .text
            .contains("S<end_of_turn>\n<start_of_turn>model\nWhich one?<end_of_turn>\n"));
        assert!(with_shot
            .text
            .ends_with("P<end_of_turn>\n<start_of_turn>model\n"));
        let cot = Texts {
            round1_suffix: "\nThink first.".into(),
            ..Texts::default()
        };
        assert!(conversation(Markup::Gemma, &cot, &[], "P", None)
            .text
            .contains("P\nThink first.<end_of_turn>"));
    }

    #[test]
    fn code_prompt_opens_a_fence_after_round1() {
        let p = round1_code(Markup::Gemma, "P");
        assert_eq!(
            p.text,
            format!("{}```python\n", round1(Markup::Gemma, "P").text)
        );
        assert!(piece_begins_code(CODE_FENCE_OPEN));
    }

    #[test]
    fn training_pair_is_prompt_plus_answer_and_end_of_turn() {
        let (prompt, completion) = training_pair(Markup::Gemma, "P", "Which order?\n\n");
        assert_eq!(prompt, round1(Markup::Gemma, "P").text);
        assert_eq!(completion, "Which order?<end_of_turn>\n");
    }

    #[test]
    fn markup_detection() {
        let gemma_template = "{{ bos_token }}{% for m in messages %}<start_of_turn>{{ m.role }}";
        assert_eq!(
            Markup::detect(Some("llama"), Some(gemma_template)),
            Markup::Gemma
        );
        assert_eq!(
            Markup::detect(Some("qwen2"), Some("<|im_start|>")),
            Markup::ChatMl
        );
        assert_eq!(
            Markup::detect(None, Some("<|start_header_id|>")),
            Markup::Llama3
        );
        assert_eq!(Markup::detect(Some("gemma3"), None), Markup::Gemma);
        assert_eq!(Markup::detect(Some("qwen2"), None), Markup::ChatMl);
        assert_eq!(Markup::detect(Some("llama"), None), Markup::Plain);
        assert_eq!(Markup::detect(None, None), Markup::Plain);
    }

    #[test]
    fn markup_names_parse() {
        for (name, m) in Markup::NAMED {
            assert_eq!(name.parse::<Markup>(), Ok(m));
            // The serde name (settings files) is the same word.
            assert_eq!(serde_json::to_string(&m).unwrap(), format!("\"{name}\""));
        }
        assert_eq!("ChatML".parse::<Markup>(), Ok(Markup::ChatMl));
        assert!("jinja"
            .parse::<Markup>()
            .unwrap_err()
            .to_string()
            .contains("unknown markup `jinja`; use gemma"));
    }

    #[test]
    fn code_fence_pieces() {
        for piece in ["```", "```python", " ```", "\n```py", "`", "``", "\n\n``"] {
            assert!(piece_begins_code(piece), "{piece:?}");
        }
        for piece in ["", " ", "\n", "What", "`x", "def", "``x", "Here"] {
            assert!(!piece_begins_code(piece), "{piece:?}");
        }
    }

    #[test]
    fn code_responses() {
        let r = parse_response("```python\ndef f():\n    return 1\n```\n");
        assert_eq!(
            r,
            Response::Code {
                code: "def f():\n    return 1\n".into()
            }
        );
        // Code after prose still counts as code; the first block wins.
        let r = parse_response("Sure, here it is:\n```\nx = 1\n```\nand\n```\ny\n```");
        assert_eq!(
            r,
            Response::Code {
                code: "x = 1\n".into()
            }
        );
        // A truncated generation: unterminated fence.
        let r = parse_response("```python\ndef f(");
        assert_eq!(
            r,
            Response::Code {
                code: "def f(\n".into()
            }
        );
        // Questions that mention code in a fence are still code: a fence is the rule.
        let r = parse_response("Do you mean this?\n```\nsorted(x)\n```");
        assert!(matches!(r, Response::Code { .. }));
    }

    #[test]
    fn question_responses() {
        let cases = [
            (
                "1. Should the list be sorted ascending?\n2. What if it is empty?",
                vec![
                    "Should the list be sorted ascending?",
                    "What if it is empty?",
                ],
            ),
            (
                "I have questions:\n- What is the unit\n  of the timeout?\n- Can `n` be negative?",
                vec!["What is the unit of the timeout?", "Can `n` be negative?"],
            ),
            (
                "1) **Which order?**\n\n2) Ties?",
                vec!["Which order?", "Ties?"],
            ),
            (
                "The description is unclear. What should happen for ties? Is the input sorted?",
                vec!["What should happen for ties?", "Is the input sorted?"],
            ),
            (
                "Please clarify the return type.",
                vec!["Please clarify the return type."],
            ),
            ("  \n ", vec![]),
        ];
        for (text, want) in cases {
            let want: Vec<String> = want.into_iter().map(String::from).collect();
            assert_eq!(
                parse_response(text),
                Response::Questions { questions: want },
                "{text:?}"
            );
        }
    }
}
