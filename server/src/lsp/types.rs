//! The one place that names the LSP types crate, so a change of types crate stays cheap.

pub use tower_lsp_server::ls_types::*;
