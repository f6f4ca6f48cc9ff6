//! The `clarifycoder` binary's library: the linter and the language server. `main.rs` is the CLI
//! over it; tests use it directly.
//!
//! - [`check`]: the linter (`clarifycoder check`).
//! - [`lsp`]: the language server (`clarifycoder serve`).
//! - [`backend`]: core's `Plan` and recognising a missing model in an error chain.

pub mod backend;
pub mod check;
pub mod lsp;
