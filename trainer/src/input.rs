//! Reading a command's JSON Lines input, with errors that say what was expected and what to do:
//! `--skip-bad` is suggested for a bad line, never for a file of another kind (it would skip
//! every line), and a `--skip-bad` that skipped every line is an error, not an empty result.

use std::path::Path;

use anyhow::bail;
use clarifycoder_core::dataset::{self, LineProblem};
use serde::de::DeserializeOwned;

/// What `stats` and `mix` read. (`finetune` and `validate` read training rows too, but have no
/// `--skip-bad`: they call [`dataset::read_jsonl`] directly, and a bad line stops them.)
pub const ROWS: &str = "training rows (from `clarifycoder-trainer synthesize`, `specs` or `mix`, \
                        or harvest's original.jsonl)";

/// What `synthesize` reads.
pub const HARVESTED: &str =
    "harvested functions (harvested.jsonl from `clarifycoder-trainer harvest`)";

/// Reads `path`, a file of `what`, for a command with a `--skip-bad` flag: the records and the
/// number of lines skipped.
pub fn read<T: DeserializeOwned>(
    path: &Path,
    what: &str,
    skip_bad: bool,
) -> anyhow::Result<(Vec<T>, usize)> {
    match dataset::read_jsonl::<T>(path, skip_bad) {
        Ok((rows, skipped)) if rows.is_empty() && skipped > 0 => bail!(
            "--skip-bad skipped every line of {} ({skipped}): it is not a file of {what}",
            path.display()
        ),
        Ok(read) => Ok(read),
        Err(e) => match e.problem {
            LineProblem::OtherKind => bail!(
                "{}:{}: {}: not a file of {what}",
                path.display(),
                e.line,
                e.message
            ),
            LineProblem::Malformed => bail!("{e} (pass --skip-bad to skip such lines)"),
            LineProblem::Unreadable => Err(e.into()),
        },
    }
}
