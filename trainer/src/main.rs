//! `clarifycoder-trainer`: builds ClarifyCoder's training data.
//!
//! - `harvest`: real Python functions with docstrings → clear problems with their code.
//! - `synthesize`: clear problems → ambiguous, incomplete and inconsistent ones with the
//!   clarifying questions that resolve them (rules or an LLM teacher).
//! - `mix`: clarify rows + original rows at a chosen ratio, with a grouped train/validation split.
//! - `stats`: counts, lengths, perplexity and entropy.
//! - `finetune`: LoRA fine-tuning (candle) with the loss on the answer.
//! - `export`: the adapter for llama.cpp (GGUF) or PEFT.
//! - `validate`: decision accuracy (ask vs code) on clear and unclear rows.
//! - `specs`: training rows from hand-written clear/unclear function specs.
//! - `devset`: decision quality on the labelled dev set.

use std::process::ExitCode;

use clarifycoder_trainer::{
    devset, export, finetune, harvest, llm, mix, rules, specs, stats, validate,
};

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "clarifycoder-trainer",
    version,
    about = "Builds ClarifyCoder's clarify-aware training data and fine-tunes the model on it"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Harvest real Python functions with docstrings (decontaminated against HumanEval).
    Harvest(harvest::HarvestArgs),
    /// Turn clear problems into unclear ones paired with clarifying questions.
    Synthesize(SynthesizeArgs),
    /// Training rows from hand-written specs: clear application functions and their unclear
    /// variants with specific questions.
    Specs(specs::SpecsArgs),
    /// Mix clarify rows with original rows and split train/validation.
    Mix(mix::MixArgs),
    /// Counts per category, lengths, and perplexity/entropy of problems vs answers.
    Stats(stats::StatsArgs),
    /// LoRA fine-tuning on mixed rows, loss on the answer (candle; checkpoints, --resume).
    Finetune(Box<finetune::FinetuneArgs>),
    /// Export a trained adapter for llama.cpp (GGUF) or Hugging Face PEFT.
    Export(export::ExportArgs),
    /// Decision accuracy (ask vs code) of a model or adapter on clear and unclear rows.
    Validate(validate::ValidateArgs),
    /// Decision quality on the labelled dev set (AUC, balanced accuracy, recall per label, false
    /// alarms, distinct questions, time per function).
    Devset(devset::DevsetArgs),
}

#[derive(clap::Args)]
struct SynthesizeArgs {
    /// `rules` (mutations with known ground truth) or `llm` (a teacher model rewrites).
    #[arg(long, value_enum, default_value = "rules")]
    method: Method,
    #[command(flatten)]
    rules: rules::RulesArgs,
    #[command(flatten)]
    llm: llm::LlmArgs,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum Method {
    Rules,
    Llm,
}

fn main() -> ExitCode {
    clarifycoder_core::engine::llama::limit_openmp_spinning();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Harvest(args) => harvest::run(args),
        Command::Synthesize(args) => match args.method {
            Method::Rules => rules::run(args.rules),
            Method::Llm => llm::run(args.rules, args.llm),
        },
        Command::Specs(args) => specs::run(args),
        Command::Mix(args) => mix::run(args),
        Command::Stats(args) => stats::run(args),
        Command::Finetune(args) => finetune::run(*args),
        Command::Export(args) => export::run(args),
        Command::Validate(args) => validate::run(args),
        Command::Devset(args) => devset::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
