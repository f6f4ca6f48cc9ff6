//! ClarifyCoder's core: what the server, the trainer and the evaluator share.
//!
//! - [`analysis`]: the product's flow: which functions go to the model, deciding, asking, and
//!   the result cache.
//! - [`consistency`]: contradictions between a docstring and its signature, found without the
//!   model.
//! - [`python`]: functions, signatures and docstrings of Python files (tree-sitter).
//! - [`prompt`]: the one prompt format and response parser.
//! - [`engine`]: the inference backends (embedded llama.cpp, OpenAI-compatible HTTP).
//! - [`backend`]: settings to a loaded backend ([`backend::Plan`]), with typed errors.
//! - [`gguf`]: GGUF header reading and validation.
//! - [`models`]: the installable base models, by name.
//! - [`dataset`]: training and benchmark rows, JSON Lines.
//! - [`fsutil`]: the one atomic file write.
//! - [`sandbox`]: running untrusted Python in a contained child process.
//! - [`settings`]: configuration and model/adapter resolution.

pub mod analysis;
pub mod backend;
pub mod consistency;
pub mod dataset;
pub mod engine;
pub mod examples;
pub mod fsutil;
pub mod gguf;
pub mod models;
pub mod parallel;
pub mod prompt;
pub mod python;
pub mod rng;
pub mod sandbox;
pub mod settings;
