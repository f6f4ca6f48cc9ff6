//! Test-execution throughput: all of a program's cases in one sandboxed process (what the
//! evaluator does) against one process per test case (what the benchmark's own harness does).
//!
//! ```text
//! cargo run --release -p clarifycoder-evaluator --example bench_harness -- [--programs 20] [--cases 10] [--jobs 2]
//! ```
//!
//! Both ways run the same programs with the same parallelism and must agree on every case.

use clarifycoder_evaluator::harness::{self, CaseStatus, Harness, TestCase};
use std::time::Instant;

struct Program {
    code: String,
    cases: Vec<TestCase>,
}

/// Small HumanEval-like programs; every third one has a bug that fails some cases.
fn programs(count: usize, cases: usize) -> Vec<Program> {
    (0..count)
        .map(|p| {
            let bug = if p % 3 == 2 { " + (x % 4 == 0)" } else { "" };
            let code = format!(
                "from typing import List\n\n\ndef f(xs: List[int], k: int) -> List[int]:\n    \"\"\"Each element times k, plus {p}.\"\"\"\n    return [x * k + {p}{bug} for x in xs]\n"
            );
            let cases = (0..cases)
                .map(|c| {
                    let xs: Vec<usize> = (c..c + 5).collect();
                    let expected: Vec<usize> = xs.iter().map(|x| x * 3 + p).collect();
                    TestCase {
                        input: format!("{xs:?}, 3").into(),
                        output: format!("{expected:?}").into(),
                        relation: "==".into(),
                    }
                })
                .collect();
            Program { code, cases }
        })
        .collect()
}

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(|v| {
            v.parse()
                .unwrap_or_else(|_| panic!("{name} takes a number"))
        })
        .unwrap_or(default)
}

fn main() {
    let count = arg("--programs", 20);
    let cases = arg("--cases", 10);
    let jobs = arg("--jobs", 2);
    let harness = Harness::new();
    let programs = programs(count, cases);
    println!(
        "{count} programs x {cases} cases, {jobs} parallel, python {} ({})",
        harness.python,
        harness::network_note()
    );

    // Warm the interpreter's files into the page cache so neither side pays for it.
    let _ = harness.run_cases(&programs[0].code, "f", &programs[0].cases[..1]);

    let started = Instant::now();
    let batched = Harness::run_many(&programs, jobs, |p| {
        harness.run_cases(&p.code, "f", &p.cases)
    });
    let batched_time = started.elapsed();

    let singles: Vec<(usize, usize)> = (0..count)
        .flat_map(|p| (0..cases).map(move |c| (p, c)))
        .collect();
    let started = Instant::now();
    let single = Harness::run_many(&singles, jobs, |&(p, c)| {
        let program = &programs[p];
        harness.run_cases(&program.code, "f", std::slice::from_ref(&program.cases[c]))
    });
    let single_time = started.elapsed();

    // Both ways must agree case by case.
    let mut passed = 0;
    for (i, &(p, c)) in singles.iter().enumerate() {
        assert_eq!(
            single[i].cases[0], batched[p].cases[c],
            "program {p} case {c} differs"
        );
        passed += usize::from(single[i].cases[0] == CaseStatus::Passed);
    }
    let total = count * cases;
    let rate = |d: std::time::Duration| total as f64 / d.as_secs_f64();
    println!("cases passed: {passed}/{total} (both ways agree)");
    println!(
        "one process per program:   {:>8.3} s  {:>8.1} cases/s  ({count} processes)",
        batched_time.as_secs_f64(),
        rate(batched_time)
    );
    println!(
        "one process per test case: {:>8.3} s  {:>8.1} cases/s  ({total} processes)",
        single_time.as_secs_f64(),
        rate(single_time)
    );
    println!(
        "speed-up: {:.1}x (at most {cases}x: the processes started are {cases}x fewer)",
        single_time.as_secs_f64() / batched_time.as_secs_f64()
    );
}
