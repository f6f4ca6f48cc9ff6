//! `mix`: clarify rows + original rows at a chosen ratio, with a grouped train/validation split.
//!
//! 1. Every row's `source_id` is a group (all variants of one harvested function). A seeded
//!    shuffle of the distinct groups puts about `--val-fraction` of them into validation, so no
//!    function is seen on both sides. Validation keeps its rows as they are.
//! 2. On the training side, with C clarify and O original rows, the strategy makes
//!    C' / (C' + O') equal `--ratio` (rounded to the nearest integer count):
//!    - `downsample` keeps the side that is too small and drops random rows of the other;
//!    - `oversample` keeps everything and repeats the side that is too small (whole copies first,
//!      then a random subset for the remainder), at most [`MAX_REPEAT`] times on average;
//!    - `uniform` keeps the total C + O and draws each side's share from its rows, without
//!      replacement while rows last, then with replacement (also at most [`MAX_REPEAT`] times on
//!      average).
//! 3. The training rows are shuffled. The same inputs and seed give byte-identical outputs.
//!
//! The split uses its own random stream derived from the seed, so the validation set depends only
//! on the inputs, the seed and `--val-fraction`, not on the ratio or the strategy: runs at
//! different ratios validate on the same functions.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use anyhow::{bail, Context};
use clarifycoder_core::dataset::{write_jsonl, Category, Row};
use serde::Serialize;

/// Arguments of `mix`.
#[derive(clap::Args)]
pub struct MixArgs {
    /// JSONL files of clarify rows (categories 1a, 1c, 1p, 2ac, 2ap, 2cp), e.g. from `synthesize`.
    #[arg(long, num_args = 1.., required = true, value_name = "FILE")]
    pub clarify: Vec<PathBuf>,
    /// JSONL files of original rows (category `original`), e.g. from `harvest`.
    #[arg(long, num_args = 1.., required = true, value_name = "FILE")]
    pub original: Vec<PathBuf>,
    /// Share of clarify rows in the training set: |clarify| / (|original| + |clarify|), strictly
    /// between 0 and 1.
    #[arg(long, value_name = "R")]
    pub ratio: f64,
    /// How the training side reaches the ratio.
    #[arg(long, value_enum, default_value = "downsample")]
    pub strategy: Strategy,
    /// Seed of every random choice (split, sampling, shuffle).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Share of source functions (groups of rows with one `source_id`) held out for validation,
    /// in [0, 1).
    #[arg(long, default_value_t = 0.1, value_name = "F")]
    pub val_fraction: f64,
    /// Directory for `train.jsonl`, `val.jsonl` and `mix.json` (created if missing).
    #[arg(long, value_name = "DIR")]
    pub out_dir: PathBuf,
    /// Skip malformed JSONL lines (and report how many) instead of stopping at the first.
    #[arg(long)]
    pub skip_bad: bool,
}

/// How the training side reaches the ratio.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Strategy {
    /// Same total as the input; each side drawn at random (with replacement only when it runs
    /// out of rows).
    Uniform,
    /// Keep every row; repeat rows of the smaller side.
    Oversample,
    /// Keep the smaller side; drop random rows of the larger one.
    Downsample,
}

/// What `mix.json` records.
#[derive(Debug, Serialize)]
struct Report {
    strategy: Strategy,
    seed: u64,
    ratio_requested: f64,
    ratio_achieved: f64,
    val_fraction: f64,
    inputs: Inputs,
    groups: Groups,
    /// Training rows before the ratio was applied.
    train_before: Side,
    train: Side,
    val: Side,
    train_by_category: BTreeMap<Category, usize>,
    val_by_category: BTreeMap<Category, usize>,
}

#[derive(Debug, Serialize)]
struct Inputs {
    clarify_files: Vec<String>,
    original_files: Vec<String>,
    clarify_rows: usize,
    original_rows: usize,
    skipped_lines: usize,
}

#[derive(Debug, Serialize)]
struct Groups {
    total: usize,
    train: usize,
    val: usize,
}

#[derive(Debug, Serialize)]
struct Side {
    clarify: usize,
    original: usize,
    total: usize,
    /// Rows that are repeats of another row in the same set.
    duplicates: usize,
}

impl Side {
    fn of(clarify: &[Row], original: &[Row]) -> Side {
        let mut seen = BTreeSet::new();
        let duplicates = clarify
            .iter()
            .chain(original)
            .filter(|r| !seen.insert(r.id.as_str()))
            .count();
        Side {
            clarify: clarify.len(),
            original: original.len(),
            total: clarify.len() + original.len(),
            duplicates,
        }
    }
}

/// Runs `mix`.
pub fn run(args: MixArgs) -> anyhow::Result<()> {
    if !(args.ratio > 0.0 && args.ratio < 1.0) {
        bail!(
            "--ratio must be strictly between 0 and 1 (it is the share of clarify rows in the training set), got {}",
            args.ratio
        );
    }
    if !(args.val_fraction >= 0.0 && args.val_fraction < 1.0) {
        bail!(
            "--val-fraction must be at least 0 and below 1, got {}",
            args.val_fraction
        );
    }

    let mut skipped = 0;
    let clarify = read_side(&args.clarify, false, args.skip_bad, &mut skipped)?;
    let original = read_side(&args.original, true, args.skip_bad, &mut skipped)?;
    if skipped > 0 {
        eprintln!("mix: skipped {skipped} malformed line(s)");
    }
    if clarify.is_empty() {
        bail!("no clarify rows in the --clarify files; run `synthesize` first or check the paths");
    }
    if original.is_empty() {
        bail!("no original rows in the --original files; run `harvest` first or check the paths");
    }

    // 1. Grouped split.
    let groups: BTreeSet<&str> = clarify
        .iter()
        .chain(&original)
        .map(|r| r.source_id.as_str())
        .collect();
    let mut groups: Vec<&str> = groups.into_iter().collect();
    let mut split_rng = SplitMix64::new(args.seed ^ 0x5eed_5b11_7000_u64);
    shuffle(&mut groups, &mut split_rng);
    let n_val = val_group_count(groups.len(), args.val_fraction);
    let val_groups: BTreeSet<&str> = groups[..n_val].iter().copied().collect();
    let is_val = |r: &Row| val_groups.contains(r.source_id.as_str());
    let (val_clarify, train_clarify): (Vec<Row>, Vec<Row>) =
        clarify.iter().cloned().partition(is_val);
    let (val_original, train_original): (Vec<Row>, Vec<Row>) =
        original.iter().cloned().partition(is_val);
    if train_clarify.is_empty() || train_original.is_empty() {
        bail!(
            "after holding out {n_val} of {} source functions for validation, the training side has {} clarify and {} original rows; lower --val-fraction or add rows",
            groups.len(),
            train_clarify.len(),
            train_original.len()
        );
    }

    // 2. The ratio on the training side.
    let mut rng = SplitMix64::new(args.seed ^ 0x0a11_ce5a_a1e5_u64);
    let (c, o) = (train_clarify.len(), train_original.len());
    let (mixed_clarify, mixed_original) = match args.strategy {
        Strategy::Downsample => {
            let (tc, to) = downsample_targets(c, o, args.ratio)?;
            (
                subset(&train_clarify, tc, &mut rng),
                subset(&train_original, to, &mut rng),
            )
        }
        Strategy::Oversample => {
            let (tc, to) = oversample_targets(c, o, args.ratio)?;
            (
                repeat(&train_clarify, tc, &mut rng),
                repeat(&train_original, to, &mut rng),
            )
        }
        Strategy::Uniform => {
            let (tc, to) = uniform_targets(c, o, args.ratio)?;
            (
                draw(&train_clarify, tc, &mut rng),
                draw(&train_original, to, &mut rng),
            )
        }
    };

    // 3. Shuffled training rows; validation as read.
    let mut train: Vec<Row> = mixed_clarify
        .iter()
        .chain(&mixed_original)
        .cloned()
        .collect();
    shuffle(&mut train, &mut rng);
    let val: Vec<Row> = val_clarify.iter().chain(&val_original).cloned().collect();

    std::fs::create_dir_all(&args.out_dir).with_context(|| {
        format!(
            "cannot create {}; check the path and permissions",
            args.out_dir.display()
        )
    })?;
    let train_path = args.out_dir.join("train.jsonl");
    let val_path = args.out_dir.join("val.jsonl");
    let report_path = args.out_dir.join("mix.json");
    write_jsonl(&train_path, &train)
        .with_context(|| format!("cannot write {}", train_path.display()))?;
    write_jsonl(&val_path, &val).with_context(|| format!("cannot write {}", val_path.display()))?;

    let report = Report {
        strategy: args.strategy,
        seed: args.seed,
        ratio_requested: args.ratio,
        ratio_achieved: mixed_clarify.len() as f64 / train.len() as f64,
        val_fraction: args.val_fraction,
        inputs: Inputs {
            clarify_files: args
                .clarify
                .iter()
                .map(|p| p.display().to_string())
                .collect(),
            original_files: args
                .original
                .iter()
                .map(|p| p.display().to_string())
                .collect(),
            clarify_rows: clarify.len(),
            original_rows: original.len(),
            skipped_lines: skipped,
        },
        groups: Groups {
            total: groups.len(),
            train: groups.len() - n_val,
            val: n_val,
        },
        train_before: Side::of(&train_clarify, &train_original),
        train: Side::of(&mixed_clarify, &mixed_original),
        val: Side::of(&val_clarify, &val_original),
        train_by_category: by_category(&train),
        val_by_category: by_category(&val),
    };
    let json = serde_json::to_string_pretty(&report).context("cannot serialize the mix report")?;
    std::fs::write(&report_path, format!("{json}\n"))
        .with_context(|| format!("cannot write {}", report_path.display()))?;

    eprintln!(
        "mix: {}: train {} rows ({} clarify + {} original, ratio {:.4}, {} repeated) from {} + {}; val {} rows from {} of {} functions; wrote {}",
        strategy_name(args.strategy),
        report.train.total,
        report.train.clarify,
        report.train.original,
        report.ratio_achieved,
        report.train.duplicates,
        c,
        o,
        report.val.total,
        n_val,
        groups.len(),
        args.out_dir.display()
    );
    println!("{json}");
    Ok(())
}

fn strategy_name(s: Strategy) -> &'static str {
    match s {
        Strategy::Uniform => "uniform",
        Strategy::Oversample => "oversample",
        Strategy::Downsample => "downsample",
    }
}

/// Reads one side's files and checks that every row belongs to it.
fn read_side(
    files: &[PathBuf],
    original: bool,
    skip_bad: bool,
    skipped: &mut usize,
) -> anyhow::Result<Vec<Row>> {
    let (flag, other) = if original {
        ("--original", "--clarify")
    } else {
        ("--clarify", "--original")
    };
    let mut rows = Vec::new();
    for path in files {
        if !path.is_file() {
            bail!(
                "{flag} file {} does not exist; check the path",
                path.display()
            );
        }
        let (read, n) = crate::input::read::<Row>(path, crate::input::ROWS, skip_bad)
            .with_context(|| format!("cannot read {flag} file {}", path.display()))?;
        *skipped += n;
        if let Some(row) = read
            .iter()
            .find(|r| (r.category == Category::Original) != original)
        {
            bail!(
                "{}: row {} has category {}, which belongs in the {other} files; split the file by category",
                path.display(),
                row.id,
                row.category.code()
            );
        }
        rows.extend(read);
    }
    Ok(rows)
}

/// Validation groups for `n` groups: the nearest integer to `fraction · n`, at least one when the
/// fraction is positive and there are two groups or more, and never all of them.
fn val_group_count(n: usize, fraction: f64) -> usize {
    if fraction <= 0.0 || n < 2 {
        return 0;
    }
    ((fraction * n as f64).round() as usize).clamp(1, n - 1)
}

/// The count of clarify rows that makes `clarify / (clarify + original) = ratio` for a fixed
/// number of original rows, and the converse.
fn clarify_for(original: usize, ratio: f64) -> usize {
    (ratio * original as f64 / (1.0 - ratio)).round() as usize
}

fn original_for(clarify: usize, ratio: f64) -> usize {
    (clarify as f64 * (1.0 - ratio) / ratio).round() as usize
}

fn check_targets(tc: usize, to: usize, c: usize, o: usize, ratio: f64) -> anyhow::Result<()> {
    if tc == 0 || to == 0 {
        bail!(
            "--ratio {ratio} with {c} clarify and {o} original training rows leaves {tc} clarify and {to} original rows; choose a ratio closer to 0.5 or add rows"
        );
    }
    Ok(())
}

/// The most times `oversample` and `uniform` may repeat a side's rows on average: beyond it the
/// model would mostly learn those few rows by heart (and a tiny ratio asked for petabytes).
pub const MAX_REPEAT: f64 = 10.0;

/// Refuses targets that repeat a side's rows more than [`MAX_REPEAT`] times on average.
fn check_repeats(
    tc: usize,
    to: usize,
    c: usize,
    o: usize,
    ratio: f64,
    strategy: &str,
) -> anyhow::Result<()> {
    for (target, have, side) in [(tc, c, "clarify"), (to, o, "original")] {
        let factor = target as f64 / have as f64;
        if factor > MAX_REPEAT {
            bail!(
                "--ratio {ratio} with --strategy {strategy} would repeat each of the {have} {side} training rows {factor:.0} times on average (at most {MAX_REPEAT:.0}); use --strategy downsample, or a ratio nearer to the data's own ({:.3})",
                c as f64 / (c + o) as f64
            );
        }
    }
    Ok(())
}

/// `downsample`: keep the side that is too small, shrink the other.
fn downsample_targets(c: usize, o: usize, ratio: f64) -> anyhow::Result<(usize, usize)> {
    let (tc, to) = if (c as f64) / ((c + o) as f64) > ratio {
        (clarify_for(o, ratio).min(c), o)
    } else {
        (c, original_for(c, ratio).min(o))
    };
    check_targets(tc, to, c, o, ratio)?;
    Ok((tc, to))
}

/// `oversample`: keep everything, grow the side that is too small.
fn oversample_targets(c: usize, o: usize, ratio: f64) -> anyhow::Result<(usize, usize)> {
    let (tc, to) = if (c as f64) / ((c + o) as f64) < ratio {
        (clarify_for(o, ratio).max(c), o)
    } else {
        (c, original_for(c, ratio).max(o))
    };
    check_targets(tc, to, c, o, ratio)?;
    check_repeats(tc, to, c, o, ratio, "oversample")?;
    Ok((tc, to))
}

/// `uniform`: the same total, split by the ratio.
fn uniform_targets(c: usize, o: usize, ratio: f64) -> anyhow::Result<(usize, usize)> {
    let total = c + o;
    let tc = ((ratio * total as f64).round() as usize).min(total);
    let to = total - tc;
    check_targets(tc, to, c, o, ratio)?;
    check_repeats(tc, to, c, o, ratio, "uniform")?;
    Ok((tc, to))
}

/// `n` distinct rows chosen at random, in their original order (`n <= rows.len()`).
fn subset(rows: &[Row], n: usize, rng: &mut SplitMix64) -> Vec<Row> {
    if n >= rows.len() {
        return rows.to_vec();
    }
    let mut idx: Vec<usize> = (0..rows.len()).collect();
    shuffle(&mut idx, rng);
    let mut keep = idx[..n].to_vec();
    keep.sort_unstable();
    keep.into_iter().map(|i| rows[i].clone()).collect()
}

/// `n >= rows.len()` rows: whole copies of `rows`, then a random subset for the remainder.
fn repeat(rows: &[Row], n: usize, rng: &mut SplitMix64) -> Vec<Row> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n / rows.len() {
        out.extend_from_slice(rows);
    }
    out.extend(subset(rows, n % rows.len(), rng));
    out
}

/// `n` rows drawn uniformly: without replacement while rows last, then with replacement.
fn draw(rows: &[Row], n: usize, rng: &mut SplitMix64) -> Vec<Row> {
    let mut out = subset(rows, n.min(rows.len()), rng);
    while out.len() < n {
        out.push(rows[rng.below(rows.len())].clone());
    }
    out
}

fn by_category(rows: &[Row]) -> BTreeMap<Category, usize> {
    let mut counts = BTreeMap::new();
    for r in rows {
        *counts.entry(r.category).or_default() += 1;
    }
    counts
}

/// Fisher–Yates.
fn shuffle<T>(items: &mut [T], rng: &mut SplitMix64) {
    for i in (1..items.len()).rev() {
        let j = rng.below(i + 1);
        items.swap(i, j);
    }
}

/// SplitMix64: small, seedable, and the same on every platform (outputs must be reproducible).
struct SplitMix64(u64);

impl SplitMix64 {
    fn new(seed: u64) -> SplitMix64 {
        SplitMix64(seed)
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`), by multiply-shift.
    fn below(&mut self, n: usize) -> usize {
        ((self.next_u64() as u128 * n as u128) >> 64) as usize
    }
}
