//! A guard between the client's byte stream and `tower-lsp-server`.
//!
//! `tower-lsp-server` stops reading after the first frame it cannot decode (its framed reader ends
//! on an error), and the process then waits on stdin for ever: one malformed message and the
//! editor sees a hung server that it will not restart. Here every frame is checked first. A good
//! frame goes on to the server unchanged; a bad one is answered the way JSON-RPC asks (parse error
//! −32700 for a body that is not JSON or a broken header, invalid request −32600 with the message's
//! id, when it has one, for JSON that is not a JSON-RPC message) and the server keeps serving.
//! The guard owns the output as well, so its answers go out between whole frames of the server's.

use serde_json::{json, Value};
use tokio::io::{
    AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader, DuplexStream,
};
use tokio::sync::mpsc;
use tower_lsp_server::jsonrpc::{Request, Response};

/// Frames larger than this are refused (and skipped) rather than buffered.
const MAX_FRAME: usize = 64 << 20;

/// What [`guard`] gives the server.
pub struct Guarded {
    /// The server's input: checked frames.
    pub input: DuplexStream,
    /// The server's output.
    pub output: DuplexStream,
    /// Fires when the client's `exit` notification has gone to the server, or its input ended.
    /// `tower-lsp-server` does not return from `serve` while a request it sent the client is
    /// unanswered, so the caller stops on this instead.
    pub exited: tokio::sync::oneshot::Receiver<()>,
    /// Moves bytes between the pipes and the real input and output; ends when the server's
    /// output is closed.
    pub pump: tokio::task::JoinHandle<()>,
}

/// Puts the guard between `input`/`output` and the server.
pub fn guard<R, W>(input: R, output: W) -> Guarded
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let (server_in, feed) = tokio::io::duplex(1 << 16);
    let (drain, server_out) = tokio::io::duplex(1 << 16);
    let (errors, error_rx) = mpsc::unbounded_channel();
    let (exit_tx, exited) = tokio::sync::oneshot::channel();
    let reading = tokio::spawn(async move {
        read_input(BufReader::new(input), feed, errors).await;
        let _ = exit_tx.send(());
    });
    let pump = tokio::spawn(async move {
        write_output(BufReader::new(drain), output, error_rx).await;
        // The server has ended: stop reading the client.
        reading.abort();
    });
    Guarded {
        input: server_in,
        output: server_out,
        exited,
        pump,
    }
}

/// One frame read from a stream: its body, or what was wrong with it.
enum Frame {
    Body(Vec<u8>),
    /// The header block had no usable `Content-Length`, or the body was too large.
    BadHeader(String),
}

async fn read_frame<R: AsyncRead + Unpin>(reader: &mut BufReader<R>) -> Option<Frame> {
    let mut length: Option<Result<usize, String>> = None;
    let mut saw_header = false;
    loop {
        let mut line = String::new();
        match reader.read_line(&mut line).await {
            Ok(0) | Err(_) => return None,
            Ok(_) => {}
        }
        let line = line.trim_end_matches(['\r', '\n']);
        if line.is_empty() {
            if saw_header {
                break;
            }
            continue;
        }
        saw_header = true;
        if let Some((name, value)) = line.split_once(':') {
            if name.trim().eq_ignore_ascii_case("content-length") {
                length = Some(
                    value
                        .trim()
                        .parse::<usize>()
                        .map_err(|_| format!("bad Content-Length {:?}", value.trim())),
                );
            }
        }
    }
    let length = match length {
        None => return Some(Frame::BadHeader("no Content-Length header".into())),
        Some(Err(e)) => return Some(Frame::BadHeader(e)),
        Some(Ok(n)) if n > MAX_FRAME => {
            // Skip the body we will not keep.
            let mut rest = reader.take(n as u64);
            let _ = tokio::io::copy(&mut rest, &mut tokio::io::sink()).await;
            return Some(Frame::BadHeader(format!("a {n}-byte message is too large")));
        }
        Some(Ok(n)) => n,
    };
    let mut body = vec![0; length];
    reader.read_exact(&mut body).await.ok()?;
    Some(Frame::Body(body))
}

/// `None` when `body` is a JSON-RPC message the server can decode; else the error response.
pub fn check(body: &[u8]) -> Option<Value> {
    let error = |id: Value, code: i64, message: &str| json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}});
    let Ok(value) = serde_json::from_slice::<Value>(body) else {
        return Some(error(
            Value::Null,
            -32700,
            "Parse error: the message is not valid JSON",
        ));
    };
    if serde_json::from_value::<Request>(value.clone()).is_ok()
        || serde_json::from_value::<Response>(value.clone()).is_ok()
    {
        return None;
    }
    let id = value
        .get("id")
        .filter(|id| id.is_number() || id.is_string())
        .cloned()
        .unwrap_or(Value::Null);
    Some(error(
        id,
        -32600,
        "Invalid Request: not a JSON-RPC 2.0 request, notification or response",
    ))
}

fn is_exit(body: &[u8]) -> bool {
    serde_json::from_slice::<Value>(body)
        .is_ok_and(|v| v["method"] == "exit" && v.get("id").is_none())
}

/// Forwards checked frames until the input ends or `exit` has been forwarded.
async fn read_input<R: AsyncRead + Unpin>(
    mut input: BufReader<R>,
    mut feed: DuplexStream,
    errors: mpsc::UnboundedSender<Value>,
) {
    while let Some(frame) = read_frame(&mut input).await {
        match frame {
            Frame::Body(body) => match check(&body) {
                None => {
                    let header = format!("Content-Length: {}\r\n\r\n", body.len());
                    if feed.write_all(header.as_bytes()).await.is_err()
                        || feed.write_all(&body).await.is_err()
                    {
                        return;
                    }
                    if is_exit(&body) {
                        return;
                    }
                }
                Some(error) => {
                    tracing::error!(
                        "malformed message answered with {}: {}",
                        error["error"]["code"],
                        String::from_utf8_lossy(&body[..body.len().min(200)])
                    );
                    let _ = errors.send(error);
                }
            },
            Frame::BadHeader(why) => {
                tracing::error!("malformed message header: {why}");
                let _ = errors.send(json!({"jsonrpc": "2.0", "id": null,
                    "error": {"code": -32700, "message": format!("Parse error: {why}")}}));
            }
        }
    }
    // End of input: the server sees its input end too.
    let _ = feed.shutdown().await;
}

async fn write_output<W: AsyncWrite + Unpin>(
    mut drain: BufReader<DuplexStream>,
    mut output: W,
    mut errors: mpsc::UnboundedReceiver<Value>,
) {
    // Frames are read on their own task: reading one is not cancel-safe (a half-read header would
    // be lost), so it must not be a branch that an error answer can win.
    let (frames_tx, mut frames) = mpsc::channel::<Vec<u8>>(16);
    let reader = tokio::spawn(async move {
        while let Some(Frame::Body(body)) = read_frame(&mut drain).await {
            if frames_tx.send(body).await.is_err() {
                break;
            }
        }
    });
    let mut errors_open = true;
    loop {
        tokio::select! {
            body = frames.recv() => {
                let Some(body) = body else { break };
                if write_frame(&mut output, &body).await.is_err() {
                    reader.abort();
                    return;
                }
            }
            error = errors.recv(), if errors_open => match error {
                Some(error) => {
                    if write_frame(&mut output, error.to_string().as_bytes()).await.is_err() {
                        reader.abort();
                        return;
                    }
                }
                None => errors_open = false,
            },
        }
    }
    while let Ok(error) = errors.try_recv() {
        let _ = write_frame(&mut output, error.to_string().as_bytes()).await;
    }
}

async fn write_frame<W: AsyncWrite + Unpin>(output: &mut W, body: &[u8]) -> std::io::Result<()> {
    output
        .write_all(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes())
        .await?;
    output.write_all(body).await?;
    output.flush().await
}

#[cfg(test)]
mod tests {
    use super::check;

    #[test]
    fn bad_bodies_get_the_json_rpc_error_the_protocol_asks_for() {
        assert_eq!(check(b"{not json!!}").unwrap()["error"]["code"], -32700);
        assert_eq!(
            check(b"{\"jsonrpc\": \"2.0\", \"id\": 3,").unwrap()["error"]["code"],
            -32700
        );
        let e = check(b"[]").unwrap();
        assert_eq!(
            (e["error"]["code"].as_i64(), e["id"].is_null()),
            (Some(-32600), true)
        );
        let e = check(br#"{"jsonrpc": "2.0", "id": 7, "method": 5}"#).unwrap();
        assert_eq!(
            (e["error"]["code"].as_i64(), e["id"].as_i64()),
            (Some(-32600), Some(7))
        );
        assert!(check(br#"{"jsonrpc": "2.0", "id": 1, "method": "shutdown"}"#).is_none());
        assert!(check(br#"{"jsonrpc": "2.0", "method": "initialized", "params": {}}"#).is_none());
        assert!(check(br#"{"jsonrpc": "2.0", "id": 1, "result": null}"#).is_none());
    }
}
