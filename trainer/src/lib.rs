//! The trainer's library: data building, the training forward pass, fine-tuning and export.
//! The `clarifycoder-trainer` binary is a thin CLI over it; tests use it directly.

pub mod decontaminate;
pub mod devset;
pub mod export;
pub mod finetune;
pub mod harvest;
pub mod input;
pub mod llm;
pub mod mix;
pub mod model;
pub mod ops;
pub mod rules;
pub mod run;
pub mod specs;
pub mod stats;
pub mod validate;
pub mod verify;
