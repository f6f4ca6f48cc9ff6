//! The evaluator's library: the benchmark protocols, the judge, the sandboxed test harness and
//! the reports. The `clarifycoder-evaluator` binary is a thin CLI over it; tests and examples use
//! it directly.
//!
//! - [`comm`]: the HumanEvalComm protocol and its metrics.
//! - [`humaneval`]: HumanEval programs and pass@k ([`passk`]).
//! - [`judge`]: the offline and the LLM judge of clarifying questions.
//! - [`harness`]: generated code against test cases in `core::sandbox`.
//! - [`data`]: reading the benchmark files.
//! - [`report`]: `summary.json`, Markdown tables and the chart.

pub mod comm;
pub mod data;
pub mod harness;
pub mod humaneval;
pub mod judge;
pub mod passk;
pub mod report;
