//! Work-done progress (`$/progress`) for the model load, the workspace check and generation, and
//! the client's `window/workDoneProgress/cancel`.

use tower_lsp_server::{Client, OngoingProgress, Progress};

use super::types::*;
use super::ClarifyServer;

/// A new progress token: `clarifycoder/<kind>/<suffix>`.
pub(super) fn token(kind: &str) -> String {
    format!("clarifycoder/{kind}/{}", rand_suffix())
}

/// Asks the client to create progress `token` and begins it with `title`, after `shape` adds what
/// the work needs (a message, a percentage, a cancel button). `None` when the client refuses:
/// the work then runs without progress.
pub(super) async fn begin<B, C>(
    client: &Client,
    token: &str,
    title: impl Into<String>,
    shape: impl FnOnce(Progress) -> Progress<B, C>,
) -> Option<OngoingProgress<B, C>> {
    let token = ProgressToken::String(token.to_string());
    match client.create_work_done_progress(token.clone()).await {
        Ok(()) => Some(shape(client.progress(token, title)).begin().await),
        Err(_) => None,
    }
}

impl ClarifyServer {
    /// `window/workDoneProgress/cancel`: a workspace check under that token stops, its file in
    /// flight included.
    pub(super) async fn progress_cancel(&self, params: WorkDoneProgressCancelParams) {
        tracing::debug!("progress cancelled: {:?}", params.token);
        if let ProgressToken::String(token) = params.token {
            if let Some(cancel) = self.state.lock().unwrap().checks.get(&token) {
                cancel.cancel();
            }
        }
    }
}

fn rand_suffix() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}
