//! ClarifyCoder's core: what the server, the trainer and the evaluator share.
//!
//! - [`python`]: functions, signatures and docstrings of Python files (tree-sitter).
//! - [`prompt`]: the one prompt format and response parser.
//! - [`engine`]: the inference backends (embedded llama.cpp, OpenAI-compatible HTTP).
//! - [`gguf`]: GGUF header reading and validation.
//! - [`settings`]: configuration and model/adapter resolution.

pub mod engine;
pub mod gguf;
pub mod prompt;
pub mod python;
pub mod settings;
