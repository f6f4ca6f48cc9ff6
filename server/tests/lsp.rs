//! `clarifycoder serve` end to end: the real binary over stdin/stdout, the real model, and a small
//! JSON-RPC client written here.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clarifycoder_core::python;
use clarifycoder_testkit::{MockServer, Reply};
use common::{model_path, Client, TIMEOUT};
use serde_json::{json, Value};

const URI: &str = "file:///tmp/clarify-fixture/shop.py";

const SHOP: &str = "def total(prices):\n    \"\"\"Return the sum of the prices.\"\"\"\n    return sum(prices)\n\n\ndef process(data):\n    \"\"\"Process the data properly 😀.\"\"\"\n    ...\n\n\ndef helper(x):\n    return x\n";

fn stats(c: &mut Client) -> u64 {
    let r = c.request(
        "workspace/executeCommand",
        json!({"command": "clarifycoder.stats", "arguments": []}),
    );
    r["result"]["decided"].as_u64().unwrap()
}

/// Applies LSP text edits (UTF-16 positions, non-overlapping) to a text.
fn apply_edits(text: &str, edits: &[Value]) -> String {
    let offset = |pos: &Value| -> usize {
        let (line, character) = (
            pos["line"].as_u64().unwrap() as usize,
            pos["character"].as_u64().unwrap() as usize,
        );
        let line_start: usize = text.split_inclusive('\n').take(line).map(str::len).sum();
        let mut units = 0;
        for (i, c) in text[line_start..].char_indices() {
            if units >= character || c == '\n' {
                return line_start + i;
            }
            units += c.len_utf16();
        }
        text.len()
    };
    let mut edits: Vec<(usize, usize, String)> = edits
        .iter()
        .map(|e| {
            (
                offset(&e["range"]["start"]),
                offset(&e["range"]["end"]),
                e["newText"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    edits.sort_by_key(|e| std::cmp::Reverse(e.0));
    let mut out = text.to_string();
    for (s, e, t) in edits {
        out.replace_range(s..e, &t);
    }
    out
}

/// The markdown of a hover on the test document, empty when there is none.
/// A server with the default model and these settings, with `SHOP` open at `URI`.
fn open_shop(settings: Value) -> Client {
    let mut c = Client::start(&model_path());
    c.initialize(json!({}), settings);
    c.notify(
        "textDocument/didOpen",
        json!({"textDocument": {"uri": URI, "languageId": "python", "version": 1, "text": SHOP}}),
    );
    c
}

/// A server with Qwen without its adapter, which never asks (P(ask) < 0.1): at a threshold of
/// 0.99 only findings that need no model are shown.
fn bare_qwen(settings: Value) -> Client {
    let qwen = clarifycoder_core::models::QWEN25_CODER_05B
        .installed_path()
        .unwrap();
    let mut c = Client::start(&qwen);
    c.initialize(json!({}), settings);
    c
}

/// The titles of the code actions at a position of `URI`.
fn action_titles(c: &mut Client, line: u32, character: u32) -> Vec<String> {
    let position = json!({"line": line, "character": character});
    let actions = c.request(
        "textDocument/codeAction",
        json!({"textDocument": {"uri": URI}, "range": {"start": position, "end": position},
               "context": {"diagnostics": []}}),
    );
    actions["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["title"].as_str().unwrap().to_string())
        .collect()
}

fn hover_text(c: &mut Client, line: u32, character: u32) -> String {
    let hover = c.request(
        "textDocument/hover",
        json!({"textDocument": {"uri": URI}, "position": {"line": line, "character": character}}),
    );
    hover["result"]["contents"]["value"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[test]
fn diagnostics_edits_code_actions_hover_and_configuration() {
    let mut c = Client::start(&model_path());
    let init = c.initialize(
        json!({"general": {"positionEncodings": ["utf-16"]}}),
        json!({"threshold": 0.0, "maxTokens": 12, "debounceMs": 50, "shiny": 1}),
    );
    let caps = &init["result"]["capabilities"];
    assert_eq!(
        *caps,
        json!({
            "positionEncoding": "utf-16",
            "textDocumentSync": {"openClose": true, "change": 2},
            "hoverProvider": true,
            "codeActionProvider": {"codeActionKinds": ["quickfix"], "resolveProvider": true},
            "executeCommandProvider": {"commands": ["clarifycoder.server.checkWorkspace", "clarifycoder.server.restartEngine"]}
        }),
        "{caps:#}"
    );
    assert_eq!(init["result"]["serverInfo"]["name"], "clarifycoder");

    // Open: both documented functions are flagged at threshold 0; `helper` has no docstring.
    c.notify(
        "textDocument/didOpen",
        json!({"textDocument": {"uri": URI, "languageId": "python", "version": 1, "text": SHOP}}),
    );
    let published = c.wait("textDocument/publishDiagnostics", |p| p["version"] == 1);
    let diags = published["diagnostics"].as_array().unwrap();
    assert_eq!(diags.len(), 2, "{published:#}");
    assert_eq!(diags[0]["source"], "clarifycoder");
    assert_eq!(diags[0]["severity"], 3);
    assert_eq!(
        diags[0]["range"],
        json!({"start": {"line": 1, "character": 4}, "end": {"line": 1, "character": 39}})
    );
    // The emoji counts as two UTF-16 units.
    assert_eq!(
        diags[1]["range"]["end"],
        json!({"line": 6, "character": 39})
    );
    assert_eq!(diags[1]["data"]["function"], "process");
    let decided_after_open = stats(&mut c);
    assert_eq!(decided_after_open, 2);

    // An edit inside one docstring: only that function goes back to the model.
    let mut text = SHOP.replace("properly", "carefully");
    c.notify(
        "textDocument/didChange",
        json!({"textDocument": {"uri": URI, "version": 2}, "contentChanges": [
            {"range": {"start": {"line": 6, "character": 24}, "end": {"line": 6, "character": 32}}, "text": "carefully"}
        ]}),
    );
    let published = c.wait("textDocument/publishDiagnostics", |p| p["version"] == 2);
    assert_eq!(published["diagnostics"].as_array().unwrap().len(), 2);
    assert_eq!(stats(&mut c), decided_after_open + 1);

    // Hover on the def line.
    let md = hover_text(&mut c, 5, 5);
    assert!(md.contains("`process`") && md.contains("P(ask) = "), "{md}");

    // Code actions on `process`.
    let actions = c.request(
        "textDocument/codeAction",
        json!({"textDocument": {"uri": URI}, "range": {"start": {"line": 6, "character": 8}, "end": {"line": 6, "character": 8}},
               "context": {"diagnostics": []}}),
    );
    let actions = actions["result"].as_array().unwrap().clone();
    let titles: Vec<&str> = actions
        .iter()
        .map(|a| a["title"].as_str().unwrap())
        .collect();
    assert_eq!(
        titles,
        [
            "Answer the model's questions in the docstring",
            "Generate the implementation",
            "Ignore `process` (# clarify: ignore)",
            "Ignore this file (# clarify: ignore-file)"
        ]
    );
    let edits_of = |a: &Value| a["edit"]["changes"][URI].as_array().unwrap().clone();
    let answered = apply_edits(&text, &edits_of(&actions[0]));
    let parsed = python::extract(&answered);
    assert!(!parsed.has_syntax_errors, "{answered}");
    let doc = parsed.functions[1].docstring.clone().unwrap().text;
    assert!(
        doc.starts_with("Process the data carefully 😀.\n\nClarifications:\n- Q: "),
        "{doc}"
    );
    let ignored = apply_edits(&text, &edits_of(&actions[2]));
    assert!(python::extract(&ignored).functions[1].ignored, "{ignored}");
    let ignored_file = apply_edits(&text, &edits_of(&actions[3]));
    assert!(python::extract(&ignored_file).ignore_file);
    // `total` has its body: generating one is not offered (it would replace the user's).
    assert_eq!(
        action_titles(&mut c, 1, 8),
        [
            "Answer the model's questions in the docstring",
            "Ignore `total` (# clarify: ignore)",
            "Ignore this file (# clarify: ignore-file)"
        ]
    );

    // Generate: resolved lazily. The base model may write code that does not parse; then the
    // server says so instead of breaking the file.
    let resolved = c.request("codeAction/resolve", actions[1].clone());
    if let Some(action) = resolved.get("result") {
        let implemented = apply_edits(&text, &edits_of(action));
        assert!(
            !python::extract(&implemented).has_syntax_errors,
            "{implemented}"
        );
        assert!(
            implemented.contains("\"\"\"Process the data carefully 😀.\"\"\"\n"),
            "{implemented}"
        );
    } else {
        let message = resolved["error"]["message"].as_str().unwrap();
        assert!(
            message.contains("does not parse") || message.contains("no body"),
            "{message}"
        );
    }

    // Apply the answer edit as the editor would: the diagnostics follow the new version.
    // (TextEdit's `newText` is a content change's `text`.)
    let answer_edits: Vec<Value> = edits_of(&actions[0])
        .iter()
        .map(|e| json!({"range": e["range"], "text": e["newText"]}))
        .collect();
    c.notify(
        "textDocument/didChange",
        json!({"textDocument": {"uri": URI, "version": 3}, "contentChanges": answer_edits}),
    );
    text = answered;
    let published = c.wait("textDocument/publishDiagnostics", |p| p["version"] == 3);
    assert_eq!(published["diagnostics"].as_array().unwrap().len(), 2);
    assert_eq!(stats(&mut c), decided_after_open + 2);

    // Raising the threshold to 1 hides everything without re-running the model.
    c.notify(
        "workspace/didChangeConfiguration",
        json!({"settings": {"clarifycoder": {"threshold": 1.0, "maxTokens": 12}}}),
    );
    let published = c.wait("textDocument/publishDiagnostics", |p| {
        p["diagnostics"] == json!([])
    });
    assert_eq!(published["version"], 3);
    assert_eq!(stats(&mut c), decided_after_open + 2);

    // Unknown documents: empty results, not errors.
    let hover = c.request("textDocument/hover", json!({"textDocument": {"uri": "file:///nope.py"}, "position": {"line": 0, "character": 0}}));
    assert_eq!(hover["result"], Value::Null);
    let _ = text;

    let shutdown = c.request("shutdown", Value::Null);
    assert_eq!(shutdown["result"], Value::Null);
    c.notify("exit", Value::Null);
}

/// A regression: an out-of-range threshold from the editor was only logged (and `Config` clamped
/// it), so the user never learned that the change was ignored. The key is ignored with a message
/// that names it (as if the editor had not sent it: the threshold of `initializationOptions`
/// stays), and the change's other keys apply.
/// A docstring the "answer" edit cannot take (literals in parentheses) keeps the action, disabled
/// with the reason, for a client that shows such actions; the others do not get it.
#[test]
fn an_answer_that_cannot_be_written_is_a_disabled_action_with_the_reason() {
    let text = "def pick(items):\n    (\"Return the items that are \"\n     \"good enough.\")\n    return items\n";
    for disabled_support in [true, false] {
        let mut c = Client::start(&model_path());
        c.initialize(
            json!({"textDocument": {"codeAction": {"disabledSupport": disabled_support}}}),
            json!({"threshold": 0.0, "maxTokens": 12}),
        );
        c.notify(
            "textDocument/didOpen",
            json!({"textDocument": {"uri": URI, "languageId": "python", "version": 1, "text": text}}),
        );
        let published = c.wait("textDocument/publishDiagnostics", |p| {
            p["diagnostics"].as_array().is_some_and(|d| !d.is_empty())
        });
        assert_eq!(published["diagnostics"].as_array().unwrap().len(), 1);
        let position = json!({"line": 0, "character": 5});
        let actions = c.request(
            "textDocument/codeAction",
            json!({"textDocument": {"uri": URI}, "range": {"start": position, "end": position},
                   "context": {"diagnostics": []}}),
        );
        let answer = actions["result"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["title"] == "Answer the model's questions in the docstring")
            .cloned();
        match disabled_support {
            true => {
                let answer = answer.expect("the disabled action");
                assert!(answer.get("edit").is_none(), "{answer}");
                let reason = answer["disabled"]["reason"].as_str().unwrap();
                assert!(reason.contains("one plain string literal"), "{reason}");
            }
            false => assert_eq!(answer, None),
        }
    }
}

#[test]
fn an_out_of_range_setting_is_ignored_with_a_message_and_the_others_apply() {
    let mut c = open_shop(json!({"threshold": 0.0, "maxTokens": 4, "debounceMs": 0}));
    let published = c.wait("textDocument/publishDiagnostics", |p| p["version"] == 1);
    assert_eq!(published["diagnostics"].as_array().unwrap().len(), 2);

    // Clamped, 7 would have been 1 and hidden every diagnostic.
    c.notify(
        "workspace/didChangeConfiguration",
        json!({"settings": {"clarifycoder": {"threshold": 7, "maxTokens": 4, "debounceMs": 0, "severity": "error"}}}),
    );
    let message = c.wait("window/showMessage", |p| {
        p["message"]
            .as_str()
            .is_some_and(|m| m.contains("threshold"))
    });
    let text = message["message"].as_str().unwrap();
    for phrase in [
        "invalid settings: threshold must be between 0 and 1, got 7",
        "fix the `clarifycoder` settings in your editor",
        "those keys are ignored and the others apply",
    ] {
        assert!(text.contains(phrase), "{phrase:?} not in {text}");
    }
    assert_eq!(message["type"], 2, "a warning: {message}");

    // A new version is published with threshold 0 and the new severity.
    c.notify(
        "textDocument/didChange",
        json!({"textDocument": {"uri": URI, "version": 2}, "contentChanges": [
            {"range": {"start": {"line": 11, "character": 12}, "end": {"line": 11, "character": 12}}, "text": " "}
        ]}),
    );
    let published = c.wait("textDocument/publishDiagnostics", |p| p["version"] == 2);
    let diagnostics = published["diagnostics"].as_array().unwrap();
    assert_eq!(diagnostics.len(), 2, "{published:#}");
    assert!(
        diagnostics.iter().all(|d| d["severity"] == 1),
        "{published:#}"
    );
}

#[test]
fn rapid_edits_publish_only_the_latest_version() {
    let mut c = open_shop(json!({"threshold": 0.0, "maxTokens": 4, "debounceMs": 200}));
    c.wait("textDocument/publishDiagnostics", |p| p["version"] == 1);
    // Ten quick edits inside the debounce window: only version 11 is analysed and published.
    for v in 2..=11 {
        c.notify(
            "textDocument/didChange",
            json!({"textDocument": {"uri": URI, "version": v}, "contentChanges": [
                {"range": {"start": {"line": 1, "character": 34}, "end": {"line": 1, "character": 34}}, "text": "!"}
            ]}),
        );
    }
    let published = c.wait("textDocument/publishDiagnostics", |p| {
        p["version"].as_i64().unwrap_or(0) > 1
    });
    assert_eq!(published["version"], 11, "{published:#}");
    assert_eq!(stats(&mut c), 3);
}

#[test]
fn pull_diagnostics_for_clients_that_ask() {
    let mut c = Client::start(&model_path());
    let init = c.initialize(
        json!({"textDocument": {"diagnostic": {"dynamicRegistration": false}},
               "workspace": {"diagnostics": {"refreshSupport": true}}}),
        json!({"threshold": 0.0, "maxTokens": 4}),
    );
    assert_eq!(
        init["result"]["capabilities"]["diagnosticProvider"]["identifier"],
        "clarifycoder"
    );
    c.notify(
        "textDocument/didOpen",
        json!({"textDocument": {"uri": URI, "languageId": "python", "version": 1, "text": SHOP}}),
    );
    // The server asks the client to pull once results are in.
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let msg = c.next(deadline);
        if msg["method"] == "workspace/diagnostic/refresh" {
            break;
        }
    }
    let report = c.request(
        "textDocument/diagnostic",
        json!({"textDocument": {"uri": URI}}),
    );
    assert_eq!(report["result"]["kind"], "full");
    assert_eq!(
        report["result"]["items"].as_array().unwrap().len(),
        2,
        "{report:#}"
    );
}

/// A regression: Neovim 0.10 and 0.11 can pull diagnostics but cannot be told to pull again, so
/// in pull mode they never saw a result; such a client gets them pushed.
#[test]
fn a_client_that_cannot_be_told_to_pull_gets_diagnostics_pushed() {
    let mut c = Client::start(&model_path());
    let init = c.initialize(
        json!({"textDocument": {"diagnostic": {"dynamicRegistration": false}}}),
        json!({"threshold": 0.0, "maxTokens": 4}),
    );
    assert!(
        init["result"]["capabilities"]
            .get("diagnosticProvider")
            .is_none(),
        "{init:#}"
    );
    c.notify(
        "textDocument/didOpen",
        json!({"textDocument": {"uri": URI, "languageId": "python", "version": 1, "text": SHOP}}),
    );
    let published = c.wait("textDocument/publishDiagnostics", |p| p["version"] == 1);
    assert_eq!(published["diagnostics"].as_array().unwrap().len(), 2);
}

/// A regression: while a function was being written above others, their diagnostics stayed on
/// the lines they had before the edit until the new function had been decided (and each
/// keystroke put that off). What is known is now pushed at the new lines first.
#[test]
fn known_results_move_with_an_edit_before_the_new_function_is_decided() {
    let mut c = open_shop(json!({"threshold": 0.0, "maxTokens": 4, "debounceMs": 50}));
    let lines = |p: &Value| -> Vec<(i64, String)> {
        p["diagnostics"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| {
                let function = d["data"]["function"].as_str().unwrap().to_string();
                (d["range"]["start"]["line"].as_i64().unwrap(), function)
            })
            .collect()
    };
    let opened = c.wait("textDocument/publishDiagnostics", |p| p["version"] == 1);
    assert_eq!(
        lines(&opened),
        [(1, "total".to_string()), (6, "process".to_string())]
    );
    let decided = stats(&mut c);
    c.notify(
        "textDocument/didChange",
        json!({"textDocument": {"uri": URI, "version": 2}, "contentChanges": [
            {"range": {"start": {"line": 0, "character": 0}, "end": {"line": 0, "character": 0}},
             "text": "def sketch(x):\n    \"\"\"Handle it.\"\"\"\n\n\n"}
        ]}),
    );
    let first = c.wait("textDocument/publishDiagnostics", |p| p["version"] == 2);
    assert_eq!(
        lines(&first),
        [(5, "total".to_string()), (10, "process".to_string())],
        "{first:#}"
    );
    // Then the new function's own result.
    let last = c.wait("textDocument/publishDiagnostics", |p| {
        p["version"] == 2 && p["diagnostics"].as_array().unwrap().len() == 3
    });
    assert_eq!(lines(&last)[0], (1, "sketch".to_string()));
    assert_eq!(stats(&mut c), decided + 1);
}

/// A regression: without a model, a finding that needs none (the code against its annotation)
/// stayed after it was fixed, since nothing was published when no finding was left.
#[test]
fn without_a_model_a_fixed_finding_goes_away() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = Client::start(&dir.path().join("absent.gguf"));
    c.initialize(json!({}), json!({"debounceMs": 50}));
    c.wait("clarifycoder/status", |p| p["state"] == "noModel");
    let text = "def mean(xs) -> int:\n    \"\"\"Return the mean of the values.\"\"\"\n    return sum(xs) / len(xs)\n";
    c.notify(
        "textDocument/didOpen",
        json!({"textDocument": {"uri": URI, "languageId": "python", "version": 1, "text": text}}),
    );
    let published = c.wait("textDocument/publishDiagnostics", |p| p["version"] == 1);
    assert_eq!(
        published["diagnostics"].as_array().unwrap().len(),
        1,
        "{published:#}"
    );
    // A contradiction is fixed in the code or the docstring, not answered; with no model
    // nothing can be generated.
    assert_eq!(
        action_titles(&mut c, 1, 8),
        [
            "Ignore `mean` (# clarify: ignore)",
            "Ignore this file (# clarify: ignore-file)"
        ]
    );
    c.notify(
        "textDocument/didChange",
        json!({"textDocument": {"uri": URI, "version": 2}, "contentChanges": [
            {"range": {"start": {"line": 0, "character": 16}, "end": {"line": 0, "character": 19}}, "text": "float"}
        ]}),
    );
    let published = c.wait("textDocument/publishDiagnostics", |p| {
        p["version"] == 2 && p["diagnostics"].as_array().unwrap().is_empty()
    });
    assert_eq!(published["version"], 2);
}

/// Only Python is analysed: a client may send the server a document of any language (a
/// Markdown file whose text happens to be Python, here), and it gets no diagnostics.
#[test]
fn documents_of_another_language_are_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = Client::start(&dir.path().join("absent.gguf"));
    c.initialize(json!({}), json!({"debounceMs": 50}));
    c.wait("clarifycoder/status", |p| p["state"] == "noModel");
    let text = "def mean(xs) -> int:\n    \"\"\"Return the mean of the values.\"\"\"\n    return sum(xs) / len(xs)\n";
    let notes = "file:///tmp/project/notes.md";
    c.notify(
        "textDocument/didOpen",
        json!({"textDocument": {"uri": notes, "languageId": "markdown", "version": 1, "text": text}}),
    );
    c.notify(
        "textDocument/didChange",
        json!({"textDocument": {"uri": notes, "version": 2}, "contentChanges": [{"text": text}]}),
    );
    // The same text as Python, opened after it, is flagged; by then the Markdown file would have been.
    c.notify(
        "textDocument/didOpen",
        json!({"textDocument": {"uri": URI, "languageId": "python", "version": 1, "text": text}}),
    );
    let published = c.wait("textDocument/publishDiagnostics", |p| p["uri"] == URI);
    assert_eq!(published["diagnostics"].as_array().unwrap().len(), 1);
    // Quiet for half a second: past the debounce of the Markdown file's change.
    c.last_publish(URI, 1, Duration::from_millis(500));
    let others: Vec<Value> = c
        .kept("textDocument/publishDiagnostics")
        .into_iter()
        .filter(|p| p["uri"] == notes)
        .collect();
    assert!(others.is_empty(), "{others:?}");
    // The Python file opened again as plain text (no close between): its findings go.
    c.notify(
        "textDocument/didOpen",
        json!({"textDocument": {"uri": URI, "languageId": "plaintext", "version": 2, "text": text}}),
    );
    let cleared = c.wait("textDocument/publishDiagnostics", |p| p["uri"] == URI);
    assert_eq!(cleared["diagnostics"], json!([]), "{cleared}");
}

/// A regression: one frame the server could not decode used to stop it reading for good (no
/// answer, not even to `shutdown`, and `exit` ignored). Each bad frame now gets the JSON-RPC error
/// the protocol asks for, and the server keeps serving and exits on `exit`.
#[test]
fn malformed_messages_are_answered_and_the_server_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = Client::start(&dir.path().join("absent.gguf"));
    c.initialize(json!({}), json!([]));
    let bad: [(&[u8], i64, Value); 5] = [
        (
            b"Content-Length: 12\r\n\r\n{not json!!}",
            -32700,
            Value::Null,
        ),
        (
            b"Content-Length: 28\r\n\r\n{\"jsonrpc\": \"2.0\", \"id\": 41,",
            -32700,
            Value::Null,
        ),
        (b"Content-Length: 2\r\n\r\n[]", -32600, Value::Null),
        (
            b"Content-Length: 40\r\n\r\n{\"jsonrpc\": \"2.0\", \"id\": 9, \"method\": 5}",
            -32600,
            json!(9),
        ),
        (b"Content-Type: text/plain\r\n\r\n", -32700, Value::Null),
    ];
    for (frame, code, id) in bad {
        c.send_raw(frame);
        let deadline = Instant::now() + TIMEOUT;
        let error = loop {
            let msg = c.next(deadline);
            if msg.get("error").is_some() {
                break msg;
            }
            c.backlog_push(msg);
        };
        assert_eq!(error["error"]["code"], code, "{error} for {frame:?}");
        assert_eq!(error["id"], id, "{error}");
    }
    let response = c.request("shutdown", Value::Null);
    assert!(response.get("error").is_none(), "{response}");
    c.notify("exit", Value::Null);
    let started = Instant::now();
    loop {
        if let Some(status) = c.child.try_wait().unwrap() {
            assert!(status.success(), "{status}");
            break;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(10),
            "the server did not exit after `exit`"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[test]
fn missing_model_is_one_message_and_the_server_stays_up() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = Client::start(&dir.path().join("absent.gguf"));
    c.initialize(json!({}), json!([]));
    // The editor learns the state by its kind; a file that is no known model cannot be installed.
    let status = c.wait("clarifycoder/status", |p| p["state"] == "noModel");
    assert_eq!(status["install"], Value::Null, "{status}");
    let message = c.wait("window/showMessage", |_| true);
    let text = message["message"].as_str().unwrap();
    assert!(
        text.contains("model not found") && text.contains("absent.gguf"),
        "{text}"
    );
    c.notify(
        "textDocument/didOpen",
        json!({"textDocument": {"uri": URI, "languageId": "python", "version": 1, "text": SHOP}}),
    );
    let md = hover_text(&mut c, 0, 5);
    assert!(md.contains("model is not available"), "{md}");
    let restart = c.request(
        "workspace/executeCommand",
        json!({"command": "clarifycoder.server.restartEngine"}),
    );
    assert_eq!(restart["result"]["ready"], false);
}

/// A known model that is not installed: the status names it, for the editor's offer to install it.
#[test]
fn a_missing_known_model_is_offered_for_installation() {
    // The client's cache directory is empty.
    let mut c = Client::start(std::path::Path::new("gemma3-270m"));
    c.initialize(json!({}), json!([]));
    let status = c.wait("clarifycoder/status", |p| p["state"] == "noModel");
    assert_eq!(status["install"], "gemma3-270m", "{status}");
    assert_eq!(status["installSize"], 253_113_024, "{status}");
    // A client without an offer of its own gets the server's message, which says what to run.
    let message = c.wait("window/showMessage", |_| true);
    let text = message["message"].as_str().unwrap();
    assert!(
        text.contains("clarifycoder model install gemma3-270m"),
        "{text}"
    );
}

/// A client that offers the install itself (VS Code) gets that one notification, not the server's
/// error besides.
#[test]
fn a_client_that_offers_the_install_gets_no_second_message() {
    let mut c = Client::start(std::path::Path::new("gemma3-270m"));
    c.initialize(
        json!({"experimental": {"clarifycoderInstallModel": true}}),
        json!([]),
    );
    let status = c.wait("clarifycoder/status", |p| p["state"] == "noModel");
    assert_eq!(status["install"], "gemma3-270m", "{status}");
    // The restart's answer comes after a second load, so the first one's messages are all in.
    let restart = c.request(
        "workspace/executeCommand",
        json!({"command": "clarifycoder.server.restartEngine"}),
    );
    assert_eq!(restart["result"]["ready"], false, "{restart}");
    let messages = c.kept("window/showMessage");
    assert!(messages.is_empty(), "{messages:?}");
}

#[test]
fn a_broken_model_file_is_an_error_not_a_missing_model() {
    let dir = tempfile::tempdir().unwrap();
    let broken = dir.path().join("broken.gguf");
    std::fs::write(&broken, "not a gguf file").unwrap();
    let mut c = Client::start(&broken);
    c.initialize(json!({}), json!([]));
    let status = c.wait("clarifycoder/status", |p| p["state"] != "loading");
    assert_eq!(status["state"], "error", "{status}");
}

#[test]
fn cancelling_a_generation_stops_it() {
    let mut c = Client::start(&model_path());
    c.initialize(
        json!({"window": {"workDoneProgress": true}}),
        json!({"threshold": 0.0, "maxTokens": 4}),
    );
    c.notify(
        "textDocument/didOpen",
        json!({"textDocument": {"uri": URI, "languageId": "python", "version": 1, "text": SHOP}}),
    );
    c.wait("textDocument/publishDiagnostics", |p| p["version"] == 1);
    let actions = c.request(
        "textDocument/codeAction",
        json!({"textDocument": {"uri": URI}, "range": {"start": {"line": 6, "character": 8}, "end": {"line": 6, "character": 8}},
               "context": {"diagnostics": []}}),
    );
    let generate = actions["result"][1].clone();
    assert_eq!(
        generate["title"], "Generate the implementation",
        "{actions:#}"
    );
    let before = c.request(
        "workspace/executeCommand",
        json!({"command": "clarifycoder.stats"}),
    );
    let cancelled_before = before["result"]["cancelled"].as_u64().unwrap();
    let id = 1000;
    c.send(json!({"jsonrpc": "2.0", "id": id, "method": "codeAction/resolve", "params": generate}));
    // Cancel once the generation has begun (its progress report), not after a guessed delay.
    c.wait("$/progress", |p| {
        p["value"]["kind"] == "begin"
            && p["value"]["title"]
                .as_str()
                .is_some_and(|t| t.contains("writing"))
    });
    c.notify("$/cancelRequest", json!({"id": id}));
    let deadline = Instant::now() + TIMEOUT;
    let response = loop {
        let msg = c.next(deadline);
        if msg.get("id") == Some(&json!(id)) {
            break msg;
        }
    };
    assert_eq!(response["error"]["code"], -32800, "{response:#}");
    // The generation itself was stopped, not just the answer dropped.
    let stats = c.request(
        "workspace/executeCommand",
        json!({"command": "clarifycoder.stats"}),
    );
    assert_eq!(stats["result"]["decided"], 2);
    assert_eq!(
        stats["result"]["cancelled"],
        cancelled_before + 1,
        "{stats:#}"
    );
}

/// A server with workspace folder `root` and work-done progress, initialized with `options`.
fn workspace_client(root: &str, options: Value) -> Client {
    let mut c = Client::start(&model_path());
    let init = c.request(
        "initialize",
        json!({"processId": null, "capabilities": {"window": {"workDoneProgress": true}},
               "workspaceFolders": [{"uri": root, "name": "w"}],
               "initializationOptions": options}),
    );
    assert!(init.get("result").is_some(), "{init}");
    c.notify("initialized", json!({}));
    c
}

/// Starts a workspace check as request `id` (answered later, `Client::response`) and returns
/// its progress's `begin`.
fn begin_workspace_check(c: &mut Client, id: i64) -> Value {
    c.send(
        json!({"jsonrpc": "2.0", "id": id, "method": "workspace/executeCommand",
                  "params": {"command": "clarifycoder.server.checkWorkspace"}}),
    );
    c.wait("$/progress", |p| {
        p["value"]["kind"] == "begin"
            && p["token"]
                .as_str()
                .is_some_and(|t| t.starts_with("clarifycoder/check/"))
    })
}

#[test]
fn check_workspace_reports_progress_and_can_be_cancelled() {
    let dir = tempfile::tempdir().unwrap();
    for i in 0..20 {
        std::fs::write(
            dir.path().join(format!("m{i:02}.py")),
            SHOP.replace("process", &format!("process_{i}")),
        )
        .unwrap();
    }
    std::fs::write(dir.path().join("notes.txt"), "not python").unwrap();
    let root = format!("file://{}", dir.path().display());
    let mut c = workspace_client(&root, json!({"threshold": 0.0, "maxTokens": 4}));

    // Cancel as soon as the check reports that it began.
    let id = 77;
    let begin = begin_workspace_check(&mut c, id);
    assert_eq!(begin["value"]["cancellable"], true);
    c.notify(
        "window/workDoneProgress/cancel",
        json!({"token": begin["token"]}),
    );
    let response = c.response(id);
    let result = &response["result"];
    assert_eq!(result["files"], 20, "{response:#}");
    assert!(result["checked"].as_u64().unwrap() < 20, "{response:#}");

    // A full run checks every Python file and publishes their diagnostics.
    let full = c.request(
        "workspace/executeCommand",
        json!({"command": "clarifycoder.checkWorkspace"}),
    );
    assert_eq!(full["result"]["checked"], 20, "{full:#}");
    assert_eq!(full["result"]["flagged"], 20, "{full:#}");
    let uri = format!("{root}/m07.py");
    let published = c.wait("textDocument/publishDiagnostics", |p| {
        p["uri"] == uri.as_str()
    });
    assert_eq!(published["diagnostics"].as_array().unwrap().len(), 2);
}

/// A settings change that reloads the model stops a workspace check (one check's results come
/// from one model), its file in flight included: that file is not published half analysed.
#[test]
fn a_reload_stops_a_workspace_check() {
    let dir = tempfile::tempdir().unwrap();
    for i in 0..20 {
        std::fs::write(
            dir.path().join(format!("m{i:02}.py")),
            SHOP.replace("process", &format!("process_{i}")),
        )
        .unwrap();
    }
    let root = format!("file://{}", dir.path().display());
    let mut c = workspace_client(&root, json!({"threshold": 0.0, "maxTokens": 4}));
    c.wait("clarifycoder/status", |p| p["state"] == "ready");
    let id = 78;
    // The first file's analysis is under way once its progress has begun; the context size
    // reloads the model.
    let begin = begin_workspace_check(&mut c, id);
    c.notify(
        "workspace/didChangeConfiguration",
        json!({"settings": {"clarifycoder": {"threshold": 0.0, "maxTokens": 4, "ctxSize": 1024}}}),
    );
    let response = c.response(id);
    let checked = response["result"]["checked"].as_u64().unwrap();
    assert!(checked < 20, "{response:#}");
    let end = c.wait("$/progress", |p| {
        p["token"] == begin["token"] && p["value"]["kind"] == "end"
    });
    assert!(
        end["value"]["message"]
            .as_str()
            .is_some_and(|m| m.ends_with("(cancelled)")),
        "{end}"
    );
    // Every file it published was analysed whole: both functions flagged at threshold 0.
    for p in c.kept("textDocument/publishDiagnostics") {
        assert_eq!(p["diagnostics"].as_array().unwrap().len(), 2, "{p}");
    }
}

/// Cancelling a workspace check from its progress stops the file in flight: the file is not
/// published with half its results (here: decided, its questions never asked).
#[test]
fn a_cancelled_workspace_check_does_not_publish_its_file_in_flight() {
    let held = Arc::new(AtomicBool::new(true));
    let server = two_models(held.clone());
    let dir = tempfile::tempdir().unwrap();
    for name in ["m0.py", "m1.py"] {
        std::fs::write(dir.path().join(name), SHOP).unwrap();
    }
    let root = format!("file://{}", dir.path().display());
    let mut c = workspace_client(
        &root,
        json!({"backend": "openai", "endpoint": server.url(), "apiModel": "a"}),
    );
    c.wait("clarifycoder/status", |p| p["state"] == "ready");
    let id = 79;
    let begin = begin_workspace_check(&mut c, id);
    // The first file's decision is in flight, held by the model.
    let started = Instant::now();
    while server.request_count() == 0 {
        assert!(started.elapsed() < TIMEOUT, "the model was never asked");
        std::thread::sleep(Duration::from_millis(10));
    }
    c.notify(
        "window/workDoneProgress/cancel",
        json!({"token": begin["token"]}),
    );
    // Answered after the cancel is handled (a handler with nothing to wait for).
    c.request(
        "textDocument/hover",
        json!({"textDocument": {"uri": "file:///nowhere.py"}, "position": {"line": 0, "character": 0}}),
    );
    held.store(false, Ordering::SeqCst);
    let response = c.response(id);
    assert_eq!(response["result"]["checked"], 0, "{response:#}");
    let end = c.wait("$/progress", |p| {
        p["token"] == begin["token"] && p["value"]["kind"] == "end"
    });
    assert_eq!(
        end["value"]["message"], "0 of 0 files have unclear functions (cancelled)",
        "{end}"
    );
    assert_eq!(
        c.kept("textDocument/publishDiagnostics"),
        Vec::<Value>::new()
    );
    // No question was asked after the cancel.
    assert!(
        server
            .requests()
            .iter()
            .all(|r| r.body.get("logprobs").is_some()),
        "{:?}",
        server.requests().len()
    );
}

/// The workspace check waits for the examples, which run on a thread of their own.
#[test]
fn check_workspace_runs_the_examples_of_files_that_are_not_open() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("bill.py"),
        "import math\n\n\ndef total(prices):\n    \"\"\"Return the sum of the prices, rounded up.\n\n    >>> total([1.5, 2.25])\n    3\n    \"\"\"\n    return math.ceil(sum(prices))\n",
    )
    .unwrap();
    let root = format!("file://{}", dir.path().display());
    // Qwen without its adapter never asks (P(ask) < 0.1): at 0.99 only the example can flag.
    let qwen = clarifycoder_core::models::QWEN25_CODER_05B
        .installed_path()
        .unwrap();
    let mut c = Client::start(&qwen);
    c.request(
        "initialize",
        json!({"processId": null, "capabilities": {},
               "workspaceFolders": [{"uri": root, "name": "w"}],
               "initializationOptions": {"threshold": 0.99, "maxTokens": 8, "runExamples": true}}),
    );
    c.notify("initialized", json!({}));
    c.wait("clarifycoder/status", |p| p["state"] == "ready");
    let full = c.request(
        "workspace/executeCommand",
        json!({"command": "clarifycoder.checkWorkspace"}),
    );
    assert_eq!(full["result"]["flagged"], 1, "{full:#}");
    let uri = format!("{root}/bill.py");
    let published = c.wait("textDocument/publishDiagnostics", |p| {
        p["uri"] == uri.as_str()
    });
    assert_eq!(
        published["diagnostics"][0]["message"],
        "The example `total([1.5, 2.25])` expects `3`, but the code of `total` gives `4`; which is right, the example or the code?",
        "{published:#}"
    );
}

/// A regression: the workspace check put files that were not open into the document store and
/// removed them when done, so a file the user opened during the check was dropped and its later
/// edits ignored as "not open".
#[test]
fn a_file_opened_during_a_workspace_check_stays_open() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.py"), SHOP).unwrap();
    let root = format!("file://{}", dir.path().display());
    let uri = format!("{root}/a.py");
    let mut c = workspace_client(
        &root,
        json!({"threshold": 0.0, "maxTokens": 64, "debounceMs": 0}),
    );
    // With the engine ready, the check really analyses the file when the user opens it.
    c.wait("clarifycoder/status", |p| p["state"] == "ready");
    // The check is under way (its generation takes a second or more) when the user opens the
    // file.
    let id = 91;
    c.send(
        json!({"jsonrpc": "2.0", "id": id, "method": "workspace/executeCommand",
                  "params": {"command": "clarifycoder.server.checkWorkspace"}}),
    );
    c.wait("$/progress", |p| {
        p["value"]["kind"] == "begin"
            && p["token"]
                .as_str()
                .is_some_and(|t| t.starts_with("clarifycoder/check/"))
    });
    std::thread::sleep(std::time::Duration::from_millis(300));
    c.notify(
        "textDocument/didOpen",
        json!({"textDocument": {"uri": uri, "languageId": "python", "version": 1, "text": SHOP}}),
    );
    let msg = c.response(id);
    assert_eq!(msg["result"]["checked"], 1, "{msg}");
    // After the check the document is still open: an edit is analysed and published for its
    // version.
    let edited = SHOP.replace("Process the data properly", "Tidy the records up");
    c.notify(
        "textDocument/didChange",
        json!({"textDocument": {"uri": uri, "version": 2},
               "contentChanges": [{"text": edited}]}),
    );
    let published = c.wait("textDocument/publishDiagnostics", |p| {
        p["uri"] == uri.as_str() && p["version"] == 2
    });
    let diagnostics = published["diagnostics"].as_array().unwrap();
    assert!(!diagnostics.is_empty(), "{published}");
}

/// llama.cpp's waiting threads spin only briefly (`GOMP_SPINCOUNT=1000`, set by the server for
/// itself before libgomp loads), unless the user chose how OpenMP threads wait.
#[test]
#[cfg(target_os = "linux")]
fn openmp_threads_wait_briefly_unless_the_user_chose() {
    let dir = tempfile::tempdir().unwrap();
    let absent = dir.path().join("absent.gguf");
    // (the user's setting, the spin count the server runs with)
    let cases = [
        (None, Some("1000")),
        (Some(("GOMP_SPINCOUNT", "5")), Some("5")),
        (Some(("OMP_WAIT_POLICY", "active")), None),
    ];
    for (env, expected) in cases {
        let mut c = Client::start_with(&absent, |command| {
            command
                .env_remove("GOMP_SPINCOUNT")
                .env_remove("OMP_WAIT_POLICY")
                .envs(env.iter().copied());
        });
        // Answering `initialize` means the server is past `main`'s start.
        c.initialize(json!({}), json!({}));
        let environ = std::fs::read(format!("/proc/{}/environ", c.child.id())).unwrap();
        let spin = environ
            .split(|&b| b == 0)
            .filter_map(|v| v.strip_prefix(b"GOMP_SPINCOUNT="))
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .next();
        assert_eq!(spin.as_deref(), expected, "{env:?}");
    }
}

/// A docstring too long for the model's context leaves its function without a diagnostic; the
/// other functions of the file still get theirs.
#[test]
fn a_docstring_too_long_for_the_context_does_not_stop_the_others() {
    let text = common::too_long_source();
    let mut c = Client::start(&model_path());
    c.initialize(
        json!({}),
        json!({"threshold": 0.0, "maxTokens": 8, "debounceMs": 0}),
    );
    c.wait("clarifycoder/status", |p| p["state"] == "ready");
    c.notify(
        "textDocument/didOpen",
        json!({"textDocument": {"uri": URI, "languageId": "python", "version": 1, "text": text}}),
    );
    let first = c.wait("textDocument/publishDiagnostics", |p| {
        p["uri"] == URI && p["version"] == 1
    });
    // The file is published after each round of functions: the last publish has them all.
    stats(&mut c);
    let published = c
        .last_publish(URI, 1, std::time::Duration::from_millis(500))
        .unwrap_or(first);
    let functions: Vec<&str> = published["diagnostics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["data"]["function"].as_str().unwrap())
        .collect();
    assert_eq!(functions, ["first", "last"], "{published}");
    // Hover on `def giant` says why it has no result and what to do.
    let shown = hover_text(&mut c, 4, 6);
    assert!(
        shown.contains("Not analysed: its prompt has") && shown.contains("`ctxSize`"),
        "{shown}"
    );
}

/// Functions whose findings need no model: an example the code disagrees with (`total`), a value
/// the annotation excludes (`hours`), a documented parameter the signature lacks (`low`).
const EXAMPLES: &str = "import math\n\n\ndef total(prices):\n    \"\"\"Return the sum of the prices, rounded up.\n\n    >>> total([1.5, 2.25])\n    3\n    \"\"\"\n    return math.ceil(sum(prices))\n\n\ndef scale(values, factor):\n    \"\"\"Multiply every value by factor.\n\n    >>> scale([1, 2], 3)\n    [3, 6]\n    \"\"\"\n    return [v * factor for v in values]\n\n\ndef hours(minutes: int) -> int:\n    \"\"\"Convert minutes to hours.\"\"\"\n    return minutes / 60\n\n\ndef low(stock, minimum=5):\n    \"\"\"Names with few units.\n\n    Args:\n        threshold: The limit.\n    \"\"\"\n    return [n for n, u in stock.items() if u < minimum]\n";

#[test]
fn run_examples_shows_an_example_the_code_disagrees_with() {
    let text = EXAMPLES;
    // Qwen without its adapter never asks (P(ask) < 0.1): at 0.99 only the disagreeing example,
    // or a returned value the annotation excludes, can flag a function.
    let mut c = bare_qwen(json!({"threshold": 0.99, "maxTokens": 8, "debounceMs": 0}));
    c.wait("clarifycoder/status", |p| p["state"] == "ready");
    c.notify(
        "textDocument/didOpen",
        json!({"textDocument": {"uri": URI, "languageId": "python", "version": 1, "text": text}}),
    );
    let published = c.wait("textDocument/publishDiagnostics", |p| {
        p["uri"] == URI && p["version"] == 1
    });
    // Without running anything, the annotation against the code, and the docstring against the
    // signature.
    let diagnostics = published["diagnostics"].as_array().unwrap();
    assert_eq!(diagnostics.len(), 2, "{published}");
    assert_eq!(
        diagnostics[0]["message"],
        "`hours` is annotated to return `int`, but line 24 returns `minutes / 60`, a float; which is right, the annotation or the code?"
    );
    let shown = hover_text(&mut c, 21, 6);
    assert!(
        shown.contains("returns a value that its return annotation excludes"),
        "{shown}"
    );
    let shown = hover_text(&mut c, 26, 6);
    assert!(
        shown.contains("Its docstring contradicts its signature.") && shown.contains("`threshold`"),
        "{shown}"
    );

    // Turned on: the example is run and its disagreement is a diagnostic.
    c.notify(
        "workspace/didChangeConfiguration",
        json!({"settings": {"threshold": 0.99, "maxTokens": 8, "debounceMs": 0, "runExamples": true}}),
    );
    let published = c.wait("textDocument/publishDiagnostics", |p| {
        p["uri"] == URI && p["diagnostics"].as_array().is_some_and(|d| d.len() > 2)
    });
    let diagnostics = published["diagnostics"].as_array().unwrap();
    assert_eq!(diagnostics.len(), 3, "{published}");
    assert_eq!(diagnostics[0]["data"]["function"], "total");
    assert_eq!(
        diagnostics[0]["message"],
        "The example `total([1.5, 2.25])` expects `3`, but the code of `total` gives `4`; which is right, the example or the code?"
    );
    let shown = hover_text(&mut c, 3, 6);
    assert!(
        shown.contains("the code disagrees with an example"),
        "{shown}"
    );
}

/// A regression: `runExamples` from `initializationOptions` was turned off by the next
/// `didChangeConfiguration` that did not repeat it.
#[test]
fn run_examples_set_at_start_survives_a_settings_change() {
    let mut c =
        bare_qwen(json!({"threshold": 0.99, "maxTokens": 8, "debounceMs": 0, "runExamples": true}));
    c.notify(
        "textDocument/didOpen",
        json!({"textDocument": {"uri": URI, "languageId": "python", "version": 1, "text": EXAMPLES}}),
    );
    c.wait("textDocument/publishDiagnostics", |p| {
        p["diagnostics"].as_array().is_some_and(|d| d.len() == 3)
    });
    c.notify(
        "workspace/didChangeConfiguration",
        json!({"settings": {"clarifycoder": {"severity": "warning"}}}),
    );
    let published = c.wait("textDocument/publishDiagnostics", |p| {
        p["diagnostics"]
            .as_array()
            .is_some_and(|d| d.iter().all(|d| d["severity"] == 2))
    });
    let diagnostics = published["diagnostics"].as_array().unwrap();
    assert_eq!(diagnostics.len(), 3, "{published}");
    assert_eq!(diagnostics[0]["data"]["function"], "total");
}

/// A regression: a function that lost its result for good (here, a docstring grown too long for
/// the context) showed its old result again at every later edit of the file, until analysed.
#[test]
fn a_result_that_went_away_is_not_shown_again_at_the_next_edit() {
    let mut c = Client::start(&model_path());
    c.initialize(
        json!({}),
        json!({"threshold": 0.0, "maxTokens": 4, "debounceMs": 50, "ctxSize": 512}),
    );
    let short = "def f(x):\n    \"\"\"Handle x.\"\"\"\n\n\ndef g(y):\n    \"\"\"Handle y.\"\"\"\n";
    c.notify(
        "textDocument/didOpen",
        json!({"textDocument": {"uri": URI, "languageId": "python", "version": 1, "text": short}}),
    );
    let functions = |p: &Value| -> Vec<String> {
        p["diagnostics"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["data"]["function"].as_str().unwrap().to_string())
            .collect()
    };
    let v1 = c.wait("textDocument/publishDiagnostics", |p| p["version"] == 1);
    assert_eq!(functions(&v1), ["f", "g"]);
    let words: Vec<String> = (0..700).map(|i| format!("word{i}")).collect();
    let long = short.replace("Handle x.", &format!("Handle x. {}", words.join(" ")));
    c.notify(
        "textDocument/didChange",
        json!({"textDocument": {"uri": URI, "version": 2}, "contentChanges": [{"text": long}]}),
    );
    c.wait("textDocument/publishDiagnostics", |p| {
        p["version"] == 2 && p["diagnostics"].as_array().is_some_and(|d| d.len() == 1)
    });
    let edited = long.replace("Handle y.", "Handle y!");
    c.notify(
        "textDocument/didChange",
        json!({"textDocument": {"uri": URI, "version": 3}, "contentChanges": [{"text": edited}]}),
    );
    let v3 = c.wait("textDocument/publishDiagnostics", |p| p["version"] == 3);
    assert!(!functions(&v3).contains(&"f".to_string()), "{v3:#}");
}

/// A pull client shows pushed diagnostics beside pulled ones: what a workspace check pushed for a
/// closed file is withdrawn when the file is opened (its diagnostics are pulled from then on).
#[test]
fn a_pull_client_loses_the_pushed_copy_when_it_opens_a_checked_file() {
    let dir = tempfile::tempdir().unwrap();
    let text = "def hours(minutes: int) -> int:\n    \"\"\"Convert minutes to hours.\"\"\"\n    return minutes / 60\n";
    std::fs::write(dir.path().join("time.py"), text).unwrap();
    let root = format!("file://{}", dir.path().display());
    let uri = format!("{root}/time.py");
    let mut c = Client::start(&model_path());
    c.request(
        "initialize",
        json!({"processId": null,
               "capabilities": {"textDocument": {"diagnostic": {}}, "workspace": {"diagnostics": {"refreshSupport": true}}},
               "workspaceFolders": [{"uri": root, "name": "w"}],
               "initializationOptions": {"threshold": 0.99, "maxTokens": 4}}),
    );
    c.notify("initialized", json!({}));
    c.wait("clarifycoder/status", |p| p["state"] == "ready");
    c.request(
        "workspace/executeCommand",
        json!({"command": "clarifycoder.server.checkWorkspace"}),
    );
    let pushed = c.wait("textDocument/publishDiagnostics", |p| {
        p["uri"] == uri.as_str()
    });
    assert_eq!(
        pushed["diagnostics"].as_array().unwrap().len(),
        1,
        "{pushed}"
    );
    c.notify(
        "textDocument/didOpen",
        json!({"textDocument": {"uri": uri, "languageId": "python", "version": 1, "text": text}}),
    );
    let withdrawn = c.wait("textDocument/publishDiagnostics", |p| {
        p["uri"] == uri.as_str()
    });
    assert_eq!(withdrawn["diagnostics"], json!([]), "{withdrawn}");
    let pulled = c.request(
        "textDocument/diagnostic",
        json!({"textDocument": {"uri": uri}}),
    );
    assert_eq!(
        pulled["result"]["items"].as_array().unwrap().len(),
        1,
        "{pulled}"
    );
}

/// A mock endpoint for the `openai` backend that asks about every function (P(ask) = 1) and
/// writes `questions` when asked for them; while `down` is set it answers every request with
/// HTTP 503.
fn endpoint(questions: &'static str, down: Arc<AtomicBool>) -> MockServer {
    MockServer::start(move |request| {
        if down.load(Ordering::SeqCst) {
            return Reply::new(503, r#"{"error": "the model is unavailable"}"#);
        }
        if request.body.get("logprobs").is_some() {
            Reply::json(
                &json!({"choices": [{"text": "What", "logprobs": {"top_logprobs": [{"What": 0.0}]}}]}),
            )
        } else {
            Reply::completion(questions)
        }
    })
}

/// A server on `endpoint`, ready, with `SHOP` open at `URI` and analysed.
fn open_shop_on(endpoint: &MockServer) -> Client {
    let mut c = Client::start(&model_path());
    c.initialize(
        json!({}),
        json!({"backend": "openai", "endpoint": endpoint.url(), "debounceMs": 0}),
    );
    c.wait("clarifycoder/status", |p| p["state"] == "ready");
    c.notify(
        "textDocument/didOpen",
        json!({"textDocument": {"uri": URI, "languageId": "python", "version": 1, "text": SHOP}}),
    );
    assert_eq!(stats(&mut c), 2);
    c
}

/// Replaces the whole text of `URI`, as version `version`.
fn change_shop(c: &mut Client, version: i64, text: &str) {
    c.notify(
        "textDocument/didChange",
        json!({"textDocument": {"uri": URI, "version": version}, "contentChanges": [{"text": text}]}),
    );
}

/// A regression: a flagged function whose model gave no questions was offered "Answer the
/// model's questions", which inserted an empty `Clarifications:` heading.
#[test]
fn a_flagged_function_without_questions_has_no_answer_action() {
    let server = endpoint("", Arc::default());
    let mut c = open_shop_on(&server);
    assert_eq!(
        action_titles(&mut c, 6, 8),
        [
            "Generate the implementation",
            "Ignore `process` (# clarify: ignore)",
            "Ignore this file (# clarify: ignore-file)"
        ]
    );
}

/// A regression: a pragma does not change a function's hash, so its cached result stayed and the
/// lightbulb still offered the answer and the same pragma again (a second one when chosen), and
/// hover still showed the score in an ignored file.
#[test]
fn an_ignored_function_or_file_is_not_offered_its_pragma_again() {
    let server = endpoint("Which data?", Arc::default());
    let mut c = open_shop_on(&server);
    let answer = "Answer the model's questions in the docstring";
    let generate = "Generate the implementation";
    let ignore_process = "Ignore `process` (# clarify: ignore)";
    let ignore_file = "Ignore this file (# clarify: ignore-file)";
    assert_eq!(
        action_titles(&mut c, 6, 8),
        [answer, generate, ignore_process, ignore_file]
    );

    let ignored = SHOP.replace(
        "def process(data):",
        "def process(data):  # clarify: ignore",
    );
    change_shop(&mut c, 2, &ignored);
    assert_eq!(action_titles(&mut c, 6, 8), [generate, ignore_file]);
    let shown = hover_text(&mut c, 5, 5);
    assert!(shown.contains("Ignored (`# clarify: ignore`)."), "{shown}");
    // `total` is not ignored: its actions stay.
    assert_eq!(
        action_titles(&mut c, 1, 8),
        [answer, "Ignore `total` (# clarify: ignore)", ignore_file]
    );

    // The file: its functions are offered nothing to answer or ignore, and hover says why.
    change_shop(&mut c, 3, &format!("# clarify: ignore-file\n{SHOP}"));
    assert_eq!(action_titles(&mut c, 2, 8), Vec::<String>::new());
    assert_eq!(action_titles(&mut c, 7, 8), [generate]);
    let shown = hover_text(&mut c, 1, 5);
    assert!(
        shown.contains("Ignored (`# clarify: ignore-file`).") && !shown.contains("P(ask)"),
        "{shown}"
    );
}

/// A regression: with the endpoint down, every analysis showed the same error again. It is shown
/// once, until the model answers again; an analysis that needed no model (a file of cached
/// functions) is no sign that it does.
#[test]
fn an_endpoint_that_is_down_is_one_message_until_it_answers_again() {
    let down = Arc::new(AtomicBool::new(false));
    let server = endpoint("Which data?", down.clone());
    let mut c = open_shop_on(&server);
    let errors = |c: &Client| -> Vec<String> {
        c.kept("window/showMessage")
            .iter()
            .filter(|m| m["type"] == 1)
            .map(|m| m["message"].as_str().unwrap().to_string())
            .collect()
    };
    // A version's analysis is queued (its known results are out), done (the barrier), and what
    // it reported has come.
    let settle = |c: &mut Client, version: i64| {
        c.wait("textDocument/publishDiagnostics", |p| {
            p["uri"] == URI && p["version"] == version
        });
        stats(c);
        c.last_publish(URI, version, Duration::from_millis(300));
    };
    down.store(true, Ordering::SeqCst);
    for (version, word) in [(2, "carefully"), (3, "neatly")] {
        change_shop(&mut c, version, &SHOP.replace("properly", word));
        settle(&mut c, version);
    }
    let shown = errors(&c);
    assert_eq!(shown.len(), 1, "{shown:?}");
    assert!(shown[0].contains("HTTP 503"), "{shown:?}");
    // Another file whose functions are all cached: no model needed, nothing learnt about it.
    let other = "file:///tmp/clarify-fixture/other.py";
    c.notify(
        "textDocument/didOpen",
        json!({"textDocument": {"uri": other, "languageId": "python", "version": 1, "text": SHOP}}),
    );
    stats(&mut c);
    change_shop(&mut c, 4, &SHOP.replace("properly", "quickly"));
    settle(&mut c, 4);
    assert_eq!(errors(&c).len(), 1, "{:?}", errors(&c));

    // The model answers again, then fails again: that is news.
    down.store(false, Ordering::SeqCst);
    change_shop(&mut c, 5, &SHOP.replace("properly", "gently"));
    settle(&mut c, 5);
    assert_eq!(errors(&c).len(), 1, "{:?}", errors(&c));
    down.store(true, Ordering::SeqCst);
    change_shop(&mut c, 6, &SHOP.replace("properly", "firmly"));
    settle(&mut c, 6);
    // The message comes from the event task, which a loaded machine may run late.
    let deadline = Instant::now() + Duration::from_secs(10);
    while errors(&c).len() < 2 && Instant::now() < deadline {
        c.last_publish(URI, 6, Duration::from_millis(300));
    }
    assert_eq!(errors(&c).len(), 2, "{:?}", errors(&c));
}

/// A regression: without a workspace folder (one file opened) no configuration file was read,
/// not even the user's. The client's `rootUri` is the project then; without one the file is found
/// from the working directory, as `check` finds it, and the user's file is the fallback.
#[test]
fn without_a_workspace_folder_the_configuration_file_is_still_found() {
    let text = "def mean(xs) -> int:\n    \"\"\"Return the mean of the values.\"\"\"\n    return sum(xs) / len(xs)\n";
    let dir = tempfile::tempdir().unwrap();
    let write = |path: std::path::PathBuf, severity: &str| {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, format!("severity = \"{severity}\"\n")).unwrap();
    };
    let (project, cwd, user) = (
        dir.path().join("project"),
        dir.path().join("cwd"),
        dir.path().join("user"),
    );
    write(project.join("clarifycoder.toml"), "hint");
    write(cwd.join("clarifycoder.toml"), "warning");
    write(user.join("clarifycoder").join("config.toml"), "error");
    let root = format!("file://{}", project.display());
    // (the root the client names, the server's working directory, the severity in force)
    let cases = [
        (Some(root.as_str()), Some(&cwd), 4),
        (None, Some(&cwd), 2),
        (None, None, 1),
    ];
    for (root, cwd, severity) in cases {
        let mut c = Client::start_with(&dir.path().join("absent.gguf"), |command| {
            command.env("XDG_CONFIG_HOME", &user);
            if let Some(cwd) = cwd {
                command.current_dir(cwd);
            }
        });
        c.request(
            "initialize",
            json!({"processId": null, "rootUri": root, "workspaceFolders": null, "capabilities": {},
                   "initializationOptions": {"debounceMs": 0}}),
        );
        c.notify("initialized", json!({}));
        c.wait("clarifycoder/status", |p| p["state"] == "noModel");
        c.notify(
            "textDocument/didOpen",
            json!({"textDocument": {"uri": URI, "languageId": "python", "version": 1, "text": text}}),
        );
        let published = c.wait("textDocument/publishDiagnostics", |p| p["version"] == 1);
        let diagnostics = published["diagnostics"].as_array().unwrap();
        assert_eq!(diagnostics.len(), 1, "{published}");
        assert_eq!(
            diagnostics[0]["severity"], severity,
            "{root:?} {cwd:?}: {published}"
        );
    }
}

/// A regression: what a workspace check published for a file stayed after the file was deleted
/// or renamed, since the next check published only for the files it found.
#[test]
fn a_workspace_check_clears_a_file_that_is_gone() {
    let dir = tempfile::tempdir().unwrap();
    let text = "def hours(minutes: int) -> int:\n    \"\"\"Convert minutes to hours.\"\"\"\n    return minutes / 60\n";
    std::fs::write(dir.path().join("a.py"), text).unwrap();
    std::fs::write(dir.path().join("kept.py"), text).unwrap();
    let root = format!("file://{}", dir.path().display());
    let (a, b) = (format!("{root}/a.py"), format!("{root}/b.py"));
    let mut c = Client::start(&dir.path().join("absent.gguf"));
    c.request(
        "initialize",
        json!({"processId": null, "capabilities": {},
               "workspaceFolders": [{"uri": root, "name": "w"}],
               "initializationOptions": {"debounceMs": 0}}),
    );
    c.notify("initialized", json!({}));
    c.wait("clarifycoder/status", |p| p["state"] == "noModel");
    let check = |c: &mut Client| {
        c.request(
            "workspace/executeCommand",
            json!({"command": "clarifycoder.server.checkWorkspace"}),
        )
    };
    assert_eq!(check(&mut c)["result"]["flagged"], 2);
    let published = c.wait("textDocument/publishDiagnostics", |p| {
        p["uri"] == a.as_str()
    });
    assert_eq!(published["diagnostics"].as_array().unwrap().len(), 1);

    std::fs::rename(dir.path().join("a.py"), dir.path().join("b.py")).unwrap();
    let checked = check(&mut c);
    assert_eq!(checked["result"]["files"], 2, "{checked}");
    // Published before the check's answer: the renamed file's old name is cleared, once.
    let published = c.kept("textDocument/publishDiagnostics");
    let of = |uri: &str| -> Vec<Value> {
        published
            .iter()
            .filter(|p| p["uri"] == uri)
            .map(|p| p["diagnostics"].clone())
            .collect()
    };
    assert_eq!(of(&a), [json!([])], "{published:?}");
    assert_eq!(of(&b)[0].as_array().unwrap().len(), 1, "{published:?}");
    // A third check has nothing left to clear.
    let kept = c.kept("textDocument/publishDiagnostics").len();
    check(&mut c);
    let cleared = c
        .kept("textDocument/publishDiagnostics")
        .into_iter()
        .skip(kept)
        .filter(|p| p["uri"] == a.as_str())
        .count();
    assert_eq!(cleared, 0);
}

/// The names of the server's threads that belong to a session, each once: its worker's
/// (`clarifycoder-analysis`, `clarifycoder-examples`) and the engine's (`clarifycoder-engine`,
/// which the loaded model owns, and the OpenMP threads it started, which take its name). Linux
/// keeps 15 bytes of a thread's name.
fn session_threads(pid: u32) -> Vec<String> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).unwrap();
    let mut names: Vec<String> = tasks
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .map(|name| name.trim_end().to_string())
        .filter(|name| name.starts_with("clarifycoder-"))
        .collect();
    names.sort();
    names.dedup();
    names
}

/// A regression: each session of `serve --listen` kept its worker's threads, and with them its
/// loaded model, after the connection ended (each thread held a sender to its own channel, so it
/// never saw the channel close), and an editor that reconnected (a window reload) added a
/// model's memory each time until loads failed. A session's threads now end with it, whether it
/// ends with `exit` or with the connection.
#[test]
fn a_listening_server_frees_each_session_s_model_when_it_ends() {
    let mut c = Client::listen(&model_path());
    let pid = c.child.id();
    let ended = |c: &mut Client| {
        let started = Instant::now();
        while !session_threads(pid).is_empty() {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "the session's threads are still there: {:?}",
                session_threads(pid)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(c.child.try_wait().unwrap().is_none(), "the server exited");
    };
    for session in 0..2 {
        if session > 0 {
            c.connect();
        }
        c.initialize(json!({}), json!({"debounceMs": 0}));
        c.wait("clarifycoder/status", |p| p["state"] == "ready");
        c.notify(
            "textDocument/didOpen",
            json!({"textDocument": {"uri": URI, "languageId": "python", "version": 1, "text": SHOP}}),
        );
        c.wait("textDocument/publishDiagnostics", |p| p["version"] == 1);
        assert_eq!(
            session_threads(pid),
            ["clarifycoder-an", "clarifycoder-en", "clarifycoder-ex"],
            "session {session}"
        );
        if session == 0 {
            // The first session ends as the protocol says; the second with its connection.
            assert_eq!(c.request("shutdown", Value::Null)["result"], Value::Null);
            c.notify("exit", Value::Null);
        } else {
            c.disconnect();
        }
        ended(&mut c);
    }
}

/// A mock endpoint serving two models by name: `a` asks about every function (P(ask) = 1) and
/// answers only once `held` is cleared; `b` never asks (P(ask) = 0) and answers at once.
fn two_models(held: Arc<AtomicBool>) -> MockServer {
    MockServer::start(move |request| {
        let a = request.body["model"] == "a";
        while a && held.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(10));
        }
        let first = if a { "What" } else { "```" };
        if request.body.get("logprobs").is_some() {
            Reply::json(
                &json!({"choices": [{"text": first, "logprobs": {"top_logprobs": [{first: 0.0}]}}]}),
            )
        } else {
            Reply::completion("Which data?")
        }
    })
}

/// A regression: switching models swapped the result cache to the new model's at once, while the
/// analysis in flight (and any queued before the reload) still ran on the old model, so the old
/// model's results went into the new model's cache and were shown, and kept, as the new model's.
/// The new model's cache now comes in with the new model, and what was in flight is cancelled
/// and asked again of the new one.
#[test]
fn a_model_switched_mid_analysis_gets_results_of_its_own() {
    let held = Arc::new(AtomicBool::new(true));
    let server = two_models(held.clone());
    let settings = |model: &str| json!({"backend": "openai", "endpoint": server.url(), "apiModel": model, "debounceMs": 0});
    let mut c = Client::start(&model_path());
    c.initialize(json!({}), settings("a"));
    c.wait("clarifycoder/status", |p| p["state"] == "ready");
    c.wait("clarifycoder/status", |p| p["state"] == "loading");
    c.notify(
        "textDocument/didOpen",
        json!({"textDocument": {"uri": URI, "languageId": "python", "version": 1, "text": SHOP}}),
    );
    // `a` has the document's functions and holds its answers.
    let started = Instant::now();
    while server.request_count() == 0 {
        assert!(started.elapsed() < TIMEOUT, "model `a` was never asked");
        std::thread::sleep(Duration::from_millis(10));
    }
    c.notify(
        "workspace/didChangeConfiguration",
        json!({"settings": settings("b")}),
    );
    c.wait("clarifycoder/status", |p| p["state"] == "loading");
    held.store(false, Ordering::SeqCst);
    c.wait("clarifycoder/status", |p| p["state"] == "ready");
    stats(&mut c);

    let asked_b: Vec<String> = server
        .requests()
        .iter()
        .filter(|r| r.body["model"] == "b")
        .map(|r| r.prompt().to_string())
        .collect();
    for docstring in ["Return the sum of the prices.", "Process the data properly"] {
        assert!(
            asked_b.iter().any(|p| p.contains(docstring)),
            "`b` was not asked about {docstring:?}: {asked_b:?}"
        );
    }
    // What is shown is `b`'s: it asks about nothing.
    let shown = c.last_publish(URI, 1, Duration::from_millis(300)).unwrap();
    assert_eq!(shown["diagnostics"], json!([]), "{shown}");
}
