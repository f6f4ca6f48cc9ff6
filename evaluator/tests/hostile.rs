//! The test harness end to end: real Python in the real sandbox. Semantics first (comparison,
//! relations, timeouts, function lookup), then a suite of hostile programs, each of which must be
//! contained, recorded as not passed, and leave everything outside its sandbox as it was.

use clarifycoder_evaluator::harness::{self, CaseStatus, Harness, ProgramResult, TestCase};
use serde_json::json;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

fn harness(per_case_secs: f64) -> Harness {
    let mut h = Harness::new();
    h.per_case_timeout = Duration::from_secs_f64(per_case_secs);
    h
}

fn case(input: &str, output: &str) -> TestCase {
    TestCase {
        input: input.into(),
        output: output.into(),
        relation: "==".into(),
    }
}

fn relation(input: &str, output: &str, relation: &str) -> TestCase {
    TestCase {
        input: input.into(),
        output: output.into(),
        relation: relation.into(),
    }
}

fn failed(got: &str) -> CaseStatus {
    CaseStatus::Failed { got: got.into() }
}

fn is_error(status: &CaseStatus, needle: &str) -> bool {
    matches!(status, CaseStatus::Error { error } if error.contains(needle))
}

#[test]
fn a_correct_program_passes_and_wrong_answers_and_exceptions_are_told_apart() {
    let code = "def add(a, b):\n    print('noise')\n    if a == -1:\n        raise ValueError('negative')\n    return a + b if a != 2 else 5\n";
    let cases = [
        case("1, 2", "3"),
        case("2, 2", "4"),
        case("-1, 2", "1"),
        case("'a', 'b'", "ab"),
        case("[1], [2]", "[1, 2]"),
    ];
    let r = harness(3.0).run_cases(code, "add", &cases);
    assert_eq!(r.program_error, None, "{r:?}");
    assert_eq!(r.cases[0], CaseStatus::Passed);
    assert_eq!(r.cases[1], failed("5"));
    assert!(
        is_error(&r.cases[2], "ValueError: negative (line 4)"),
        "{r:?}"
    );
    assert_eq!(r.cases[3], CaseStatus::Passed);
    assert_eq!(r.cases[4], CaseStatus::Passed);
    assert_eq!(r.passed(), 3);
    assert!(!r.all_passed());
    assert!((r.pass_fraction() - 0.6).abs() < 1e-9);

    let r = harness(3.0).run_cases(code, "add", &cases[..1]);
    assert!(r.all_passed(), "{r:?}");
    assert_eq!(r.pass_fraction(), 1.0);
}

#[test]
fn an_infinite_loop_times_out_its_case_and_the_others_still_run() {
    let code = "def f(n):\n    while n == 2:\n        pass\n    return n * 10\n";
    let cases = [case("1", "10"), case("2", "20"), case("3", "30")];
    let started = Instant::now();
    let r = harness(1.0).run_cases(code, "f", &cases);
    assert_eq!(
        r.cases,
        vec![CaseStatus::Passed, CaseStatus::Timeout, CaseStatus::Passed],
        "{r:?}"
    );
    assert_eq!(r.program_error, None);
    assert!(started.elapsed() < Duration::from_secs(5), "{r:?}");

    // A loop that swallows the timer's exception is stopped too (by the watchdog), and the
    // remaining cases run in a fresh process.
    let code = "def f(n):\n    while n == 2:\n        try:\n            while True:\n                pass\n        except BaseException:\n            pass\n    return n * 10\n";
    let r = harness(1.0).run_cases(code, "f", &cases);
    assert_eq!(
        r.cases,
        vec![CaseStatus::Passed, CaseStatus::Timeout, CaseStatus::Passed],
        "{r:?}"
    );
}

#[test]
fn compat_compares_text_and_default_compares_values() {
    let code = "def f(kind):\n    return {'float': 1.0, 'list': [1, 2], 'sum': 0.1 + 0.2, 'str': '22', 'tuple': (1, 2), 'bool': True}[kind]\n";
    let cases = [
        case("'float'", "1"),
        case("'list'", "[1,2]"),
        case("'sum'", "0.3"),
        case("'str'", "22"),
        case("'str'", "'22'"),
        case("'tuple'", "(1, 2)"),
        case("'tuple'", "[1, 2]"),
        case("'bool'", "True"),
        case("'list'", "[1, 2]"),
    ];
    let default = harness(3.0).run_cases(code, "f", &cases);
    let mut compat_harness = harness(3.0);
    compat_harness.compat = true;
    let compat = compat_harness.run_cases(code, "f", &cases);
    use CaseStatus::Passed;
    assert_eq!(
        default.cases,
        vec![
            Passed,
            Passed,
            Passed,
            Passed,
            Passed,
            Passed,
            failed("(1, 2)"),
            Passed,
            Passed
        ],
        "{default:?}"
    );
    assert_eq!(
        compat.cases,
        vec![
            failed("1.0"),
            failed("[1, 2]"),
            failed("0.30000000000000004"),
            Passed,
            failed("22"),
            Passed,
            failed("(1, 2)"),
            Passed,
            Passed
        ],
        "{compat:?}"
    );
}

#[test]
fn the_function_is_found_under_its_name_as_candidate_or_alone() {
    let cases = [case("3", "9")];
    let h = harness(3.0);
    let renamed = "def candidate(x):\n    return x * x if x < 4 else candidate(x - 1)\n";
    assert!(h.run_cases(renamed, "square", &cases).all_passed());
    let alone = "import math\nfrom typing import List\nsquare_it = lambda x: x\ndef sq(x):\n    return x * x\n";
    assert!(h.run_cases(alone, "square", &cases).all_passed());
    let class = "class Solution:\n    def square(self, x):\n        return x * x\n";
    assert!(h.run_cases(class, "square", &cases).all_passed());
    let ambiguous = "def a(x):\n    return x\ndef b(x):\n    return x\n";
    let r = h.run_cases(ambiguous, "square", &cases);
    let error = r.program_error.as_deref().unwrap_or_default();
    assert!(error.contains("no function named square"), "{r:?}");
    assert!(error.contains("a, b"), "{r:?}");
    assert!(is_error(&r.cases[0], "no function named square"), "{r:?}");
    // The entry point wins over other functions.
    let both = "def helper(x):\n    return 0\ndef square(x):\n    return helper(x) + x * x\n";
    assert!(h.run_cases(both, "square", &cases).all_passed());
}

#[test]
fn non_string_inputs_and_outputs_and_keyword_arguments() {
    let h = harness(3.0);
    let code = "def total(xs, scale=1):\n    return sum(xs) * scale\n";
    let cases = [
        TestCase {
            input: json!([1.5, 2, 3]),
            output: json!(6.5),
            relation: "==".into(),
        },
        case("[1, 2], scale=3", "9"),
        case("[1, 2], # two numbers", "3"),
    ];
    let r = h.run_cases(code, "total", &cases);
    assert!(r.all_passed(), "{r:?}");
    let none = "def zero():\n    return 0\n";
    assert!(h.run_cases(none, "zero", &[case("", "0")]).all_passed());
    // Missing relation in JSON means `==`.
    let parsed: TestCase = serde_json::from_str(r#"{"input": "1", "output": "1"}"#).unwrap();
    assert_eq!(parsed.relation, "==");
}

#[test]
fn relations_are_python_and_a_broken_relation_is_recorded() {
    let h = harness(3.0);
    let code = "def poly(xs, x):\n    return sum(c * x ** i for i, c in enumerate(xs))\n\ndef find_zero(xs):\n    lo, hi = -100.0, 100.0\n    for _ in range(200):\n        mid = (lo + hi) / 2\n        if (poly(xs, lo) > 0) == (poly(xs, mid) > 0):\n            lo = mid\n        else:\n            hi = mid\n    return lo\n\ndef half(x):\n    if x < 0:\n        raise ValueError('negative')\n    return x / 2\n";
    // The benchmark's HumanEval/32 relation: statements that print True.
    let poly = "from $demo$ import poly\nimport math\nsolution = find_zero($input$)\nprint(math.fabs(poly($input$, solution)) < 1e-4)";
    let r = h.run_cases(
        code,
        "find_zero",
        &[
            TestCase {
                input: json!([-10, -2]),
                output: json!(1.1641532182693481e-10),
                relation: poly.into(),
            },
            TestCase {
                input: json!([1, 1]),
                output: json!(0.0),
                relation: "abs(poly($input$, output)) < 1e-4 and inputs == ([1, 1],)".into(),
            },
        ],
    );
    assert!(r.all_passed(), "{r:?}");
    let r = h.run_cases(
        code,
        "half",
        &[
            relation("1.0", "0.5", "abs(output - expected) < 0.01"),
            relation("1.0", "0.5", "abs($output$ - $demo$) < 0.01"),
            relation("1.33", "1e-6", "abs(candidate(1.33) - 0.665) < 1e-6"),
            relation("4", "2", "abs(output - expected) > 1"),
            relation("4", "2", "output + undefined_name > 0"),
            relation("4", "2", "output >"),
            relation("4", "2", "candidate(-1) > 0"),
            relation("-4", "2", "output > 0"),
        ],
    );
    assert_eq!(
        r.cases[..3],
        [CaseStatus::Passed, CaseStatus::Passed, CaseStatus::Passed]
    );
    assert_eq!(r.cases[3], failed("2.0"));
    assert!(
        matches!(&r.cases[4], CaseStatus::RelationError { error } if error.contains("NameError")),
        "{r:?}"
    );
    assert!(
        matches!(&r.cases[5], CaseStatus::RelationError { error } if error.contains("SyntaxError")),
        "{r:?}"
    );
    // The function raising inside the relation, or before it, is the function's error.
    assert!(is_error(&r.cases[6], "ValueError: negative"), "{r:?}");
    assert!(is_error(&r.cases[7], "ValueError: negative"), "{r:?}");
    assert_eq!(r.program_error, None);
}

#[test]
fn programs_that_do_not_load_fail_every_case() {
    let h = harness(1.0);
    let cases = [case("1", "1"), case("2", "2")];
    let r = h.run_cases("def f(x:\n    return x\n", "f", &cases);
    assert!(
        r.program_error.as_deref().unwrap().contains("SyntaxError"),
        "{r:?}"
    );
    assert!(r.cases.iter().all(|c| is_error(c, "SyntaxError")), "{r:?}");
    let r = h.run_cases(
        "import no_such_module\ndef f(x):\n    return x\n",
        "f",
        &cases,
    );
    assert!(
        r.cases.iter().all(|c| is_error(c, "ModuleNotFoundError")),
        "{r:?}"
    );
    let r = h.run_cases("while True:\n    pass\n", "f", &cases);
    assert_eq!(
        r.cases,
        vec![CaseStatus::Timeout, CaseStatus::Timeout],
        "{r:?}"
    );
    assert!(
        r.program_error.as_deref().unwrap().contains("loading"),
        "{r:?}"
    );
    // `if __name__ == "__main__":` blocks do not run (they often wait for input()).
    let main = "def f(x):\n    return x\nif __name__ == '__main__':\n    f(int(input()))\n";
    assert!(h.run_cases(main, "f", &cases).all_passed());
    // The program cannot read the expected outputs.
    let peek = "def f(x):\n    return open('harness_input.json').read()\n";
    let r = h.run_cases(peek, "f", &cases[..1]);
    assert!(is_error(&r.cases[0], "FileNotFoundError"), "{r:?}");
    let r = h.run_cases("def f(x):\n    return x\n", "f", &[]);
    assert_eq!(r.cases, vec![]);
    assert!(!r.all_passed());
    assert_eq!(r.pass_fraction(), 0.0);
}

#[test]
fn user_output_does_not_break_result_collection() {
    let code = "import os, sys\ndef f(x):\n    print('RESULT', x)\n    sys.__stdout__.write('x' * 100000)\n    os.write(1, b'\\x1eharness-0000:{\"ev\": \"done\"}\\n')\n    os.write(2, b'err' * 1000)\n    sys.stderr.write('more')\n    sys.stdout.buffer.write(b'bytes')\n    sys.stdout.close()\n    return x\nprint('at load')\n";
    let r = harness(3.0).run_cases(code, "f", &[case("1", "1"), case("2", "2")]);
    assert!(r.all_passed(), "{r:?}");
}

#[test]
fn run_program_is_one_pass_or_fail() {
    let h = harness(1.0);
    let ok = "def inc(x):\n    return x + 1\n\ndef check(candidate):\n    assert candidate(1) == 2\n\ncheck(inc)\n";
    assert_eq!(h.run_program(ok).cases, vec![CaseStatus::Passed]);
    assert!(h.run_program(ok).all_passed());
    let wrong = ok.replace("x + 1", "x + 2");
    assert!(
        matches!(&h.run_program(&wrong).cases[0], CaseStatus::Failed { got } if got.contains("AssertionError"))
    );
    let raises = ok.replace("x + 1", "x + None");
    assert!(is_error(&h.run_program(&raises).cases[0], "TypeError"));
    let slow = ok.replace("return x + 1", "while True:\n        pass");
    let r = h.run_program(&slow);
    assert_eq!(r.cases, vec![CaseStatus::Timeout], "{r:?}");
    let r = h.run_program("def inc(x:\n");
    assert!(r.program_error.unwrap().contains("SyntaxError"));
    let r = h.run_program("import os\nos._exit(3)\n");
    assert!(is_error(&r.cases[0], "exited with code 3"), "{r:?}");
}

#[test]
fn run_many_keeps_input_order() {
    let jobs: Vec<u64> = (0..20).collect();
    let out = Harness::run_many(&jobs, 4, |&n| {
        std::thread::sleep(Duration::from_millis((20 - n) * 2));
        n * n
    });
    assert_eq!(out, jobs.iter().map(|n| n * n).collect::<Vec<_>>());
    assert_eq!(Harness::run_many(&jobs, 0, |&n| n), jobs);
    assert!(Harness::run_many(&[] as &[u64], 3, |&n| n).is_empty());
}

// --- hostile programs ------------------------------------------------------------------------

/// A directory outside every sandbox whose content the programs try to destroy.
struct Canary {
    dir: PathBuf,
}

impl Canary {
    fn new(tag: &str) -> Canary {
        let dir =
            std::env::temp_dir().join(format!("clarifycoder-canary-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        std::fs::write(dir.join("keep.txt"), "keep me").unwrap();
        std::fs::write(dir.join("sub/deep.txt"), "me too").unwrap();
        Canary { dir }
    }

    /// Hash of the listing (names, sizes) and contents.
    fn digest(&self) -> String {
        fn walk(dir: &Path, root: &Path, hasher: &mut Sha256) {
            let mut entries: Vec<_> = std::fs::read_dir(dir).unwrap().flatten().collect();
            entries.sort_by_key(|e| e.file_name());
            for entry in entries {
                let path = entry.path();
                let rel = path.strip_prefix(root).unwrap().display().to_string();
                hasher.update(rel.as_bytes());
                hasher.update([0]);
                if path.is_dir() {
                    walk(&path, root, hasher);
                } else {
                    let content = std::fs::read(&path).unwrap();
                    hasher.update((content.len() as u64).to_le_bytes());
                    hasher.update(&content);
                }
            }
        }
        let mut hasher = Sha256::new();
        walk(&self.dir, &self.dir, &mut hasher);
        format!("{:x}", hasher.finalize())
    }
}

impl Drop for Canary {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(2) == Some("0"))
}

/// Processes whose command line contains `needle`.
fn processes_with(needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.chars().all(|c| c.is_ascii_digit()) || name == std::process::id().to_string() {
            continue;
        }
        if let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) {
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            if cmdline.contains(needle) {
                found.push(format!("{name}: {cmdline}"));
            }
        }
    }
    found
}

/// A hostile program: `f(1)` misbehaves, `f(0)` returns 42. Both cases expect 42.
struct Hostile {
    name: &'static str,
    code: String,
    /// The hostile case's status is acceptable (it must never be `Passed`).
    expect: fn(&CaseStatus) -> bool,
    /// The normal case after it still passes.
    recovers: bool,
}

fn hostile(name: &'static str, body: &str, expect: fn(&CaseStatus) -> bool) -> Hostile {
    let indented: String = body.lines().map(|l| format!("        {l}\n")).collect();
    Hostile {
        name,
        code: format!(
            "import os, sys, signal, socket, subprocess, shutil, time\n\ndef f(x):\n    if x:\n{indented}    return 42\n"
        ),
        expect,
        recovers: true,
    }
}

fn any_failure(s: &CaseStatus) -> bool {
    !matches!(s, CaseStatus::Passed)
}

fn timeout(s: &CaseStatus) -> bool {
    matches!(s, CaseStatus::Timeout)
}

fn error(s: &CaseStatus) -> bool {
    matches!(s, CaseStatus::Error { .. })
}

#[test]
fn hostile_programs_are_contained_and_the_run_goes_on() {
    let h = harness(1.0);
    let landlock = h.landlock_abi();
    let root = is_root();
    let isolated = clarifycoder_core::sandbox::network_isolated();
    eprintln!("landlock ABI {landlock:?}, root {root}, network isolated {isolated}");
    eprintln!("{}", harness::network_note());

    let canary = Canary::new("hostile");
    let before = canary.digest();
    let cwd = std::env::current_dir().unwrap();
    let cwd_before = listing(&cwd);
    let pid = std::process::id();
    let escapes: Vec<PathBuf> = vec![
        std::env::temp_dir().join(format!("clarifycoder-escape-{pid}.txt")),
        std::env::temp_dir().join(format!("clarifycoder-escape-dir-{pid}")),
        std::env::temp_dir().join(format!("clarifycoder-escape-rel-{pid}.txt")),
        cwd.join(format!("clarifycoder-escape-{pid}.txt")),
        canary.dir.join("new.txt"),
    ];
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let canary_dir = canary.dir.display().to_string();

    let mut programs = vec![
        hostile("infinite loop", "while True:\n    pass", timeout),
        hostile("fork bomb", "while True:\n    os.fork()", any_failure),
        hostile(
            "process bomb",
            "while True:\n    subprocess.Popen(['sleep', '4242'])",
            any_failure,
        ),
        hostile(
            "cpu burners",
            "for _ in range(200):\n    subprocess.Popen([sys.executable, '-c', 'while True: pass  # clarifycoder-burner'])\ntime.sleep(0.5)\nreturn 'spawned'",
            any_failure,
        ),
        hostile("100 GB allocation", "x = bytearray(100 * 2**30)\nreturn len(x)", error),
        hostile(
            "delete the canary",
            &format!(
                "done = []\nfor attempt in (lambda: os.remove({canary_dir:?} + '/keep.txt'), lambda: shutil.rmtree({canary_dir:?}), lambda: os.rename({canary_dir:?} + '/sub', {canary_dir:?} + '/moved'), lambda: os.chmod({canary_dir:?} + '/keep.txt', 0o777), lambda: open({canary_dir:?} + '/keep.txt', 'w').write('gone')):\n    try:\n        attempt()\n        done.append('done')\n    except OSError as e:\n        done.append(type(e).__name__)\nreturn done"
            ),
            any_failure,
        ),
        hostile(
            "write outside",
            &format!(
                "done = []\nfor path in {:?}:\n    try:\n        open(path, 'w').write('escaped')\n        done.append('wrote ' + path)\n    except OSError as e:\n        done.append(type(e).__name__)\ntry:\n    os.mkdir({:?})\n    done.append('mkdir')\nexcept OSError as e:\n    done.append(type(e).__name__)\ntry:\n    open('../clarifycoder-escape-rel-{pid}.txt', 'w').write('escaped')\n    done.append('relative')\nexcept OSError as e:\n    done.append(type(e).__name__)\nopen('inside.txt', 'w').write('fine')\nreturn done",
                [&escapes[0], &escapes[3], &escapes[4]]
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>(),
                escapes[1].display().to_string(),
            ),
            any_failure,
        ),
        hostile(
            "fill the disk",
            "with open('big.bin', 'wb') as f:\n    for _ in range(200):\n        f.write(b'x' * (1 << 20))\nreturn 'wrote 200 MB'",
            error,
        ),
        hostile(
            "network",
            &format!(
                "done = []\nfor address in (('127.0.0.1', {port}), ('10.255.255.1', 80)):\n    try:\n        socket.create_connection(address, timeout=1).close()\n        done.append('connected')\n    except OSError as e:\n        done.append('blocked')\nreturn done"
            ),
            any_failure,
        ),
        hostile(
            "print 1 GB",
            "sys.stdout.write('x' * 10**9)\nprint('x' * 10**8)\nreturn 'printed'",
            any_failure,
        ),
        hostile(
            "os.write 1 GB",
            "for _ in range(1000):\n    os.write(1, b'x' * 10**6)\n    os.write(2, b'x' * 10**6)\nreturn 'written'",
            any_failure,
        ),
        hostile("os._exit", "os._exit(0)", error),
        hostile("sys.exit", "sys.exit()", error),
        hostile(
            "ignore SIGALRM and spin",
            "signal.signal(signal.SIGALRM, signal.SIG_IGN)\nwhile True:\n    pass",
            timeout,
        ),
        hostile(
            "ignore SIGALRM and sleep",
            "signal.signal(signal.SIGALRM, signal.SIG_IGN)\nsignal.setitimer(signal.ITIMER_REAL, 0)\ntime.sleep(1000)",
            timeout,
        ),
        hostile("stuck in C", "return sum(range(10**13))", timeout),
        hostile("segfault", "import ctypes\nctypes.string_at(0)", error),
        hostile(
            "escape the process group",
            "if os.fork() == 0:\n    os.setsid()\n    time.sleep(4242)\nreturn 'forked'",
            any_failure,
        ),
    ];
    if root && landlock.is_some_and(|abi| abi >= 6) {
        // Signals to processes outside the sandbox (other sandboxes run as the same user). Only
        // as root, where the sandbox is `nobody`: were scoping broken, nothing of ours dies.
        programs.push(hostile(
            "kill everything",
            "os.kill(-1, signal.SIGKILL)\nreturn 'killed'",
            any_failure,
        ));
    }
    let mut top_level = hostile("os._exit while loading", "pass", error);
    top_level.code = "import os\nos._exit(0)\ndef f(x):\n    return 42\n".into();
    top_level.recovers = false;
    programs.push(top_level);

    let cases = [case("1", "42"), case("0", "42")];
    let started = Instant::now();
    let results: Vec<ProgramResult> =
        Harness::run_many(&programs, 2, |p| h.run_cases(&p.code, "f", &cases));
    let elapsed = started.elapsed();
    for (p, r) in programs.iter().zip(&results) {
        eprintln!(
            "{:<26} {:>5} ms  {:?}  {:?}",
            p.name, r.elapsed_ms, r.cases, r.program_error
        );
    }
    let mut problems = Vec::new();
    for (p, r) in programs.iter().zip(&results) {
        if r.cases.len() != 2 || !(p.expect)(&r.cases[0]) {
            problems.push(format!("{}: unexpected first case: {r:?}", p.name));
        }
        if p.recovers && r.cases.get(1) != Some(&CaseStatus::Passed) {
            problems.push(format!("{}: the normal case did not pass: {r:?}", p.name));
        }
        if !p.recovers && r.cases.iter().any(|c| c == &CaseStatus::Passed) {
            problems.push(format!("{}: passed: {r:?}", p.name));
        }
        // Each program is bounded by twice its wall timeout: (2 + 1) s + 5 s.
        if r.elapsed_ms > 16_000 {
            problems.push(format!("{}: took {} ms", p.name, r.elapsed_ms));
        }
    }
    let network = results[programs.iter().position(|p| p.name == "network").unwrap()].clone();
    if isolated || landlock.is_some_and(|abi| abi >= 4) {
        if network.cases[0] != failed("['blocked', 'blocked']") {
            problems.push(format!("network: {network:?}"));
        }
    } else {
        eprintln!("network isolation is unavailable here: only containment was checked");
    }
    // Nobody connected to the listener on our loopback.
    assert!(
        listener.accept().is_err(),
        "a sandboxed program connected to 127.0.0.1:{port}"
    );
    assert!(problems.is_empty(), "{}", problems.join("\n"));

    // Nothing outside the sandboxes changed.
    if landlock.is_some() || root {
        assert_eq!(canary.digest(), before, "the canary directory changed");
    } else {
        eprintln!("no Landlock and not root: the canary is not protected here (same owner)");
    }
    if landlock.is_some() {
        for path in &escapes {
            assert!(!path.exists(), "{} was created", path.display());
        }
        assert_eq!(
            listing(&cwd),
            cwd_before,
            "files appeared in the working directory"
        );
    } else {
        eprintln!("no Landlock: /tmp (world-writable) is not protected from the sandbox user");
        for path in &escapes {
            let _ = std::fs::remove_file(path);
            let _ = std::fs::remove_dir(path);
        }
    }
    // Nothing the programs started is still running.
    for needle in ["sleep 4242", "clarifycoder-burner"] {
        let left = processes_with(needle);
        assert!(left.is_empty(), "left running: {left:?}");
    }
    eprintln!(
        "suite: {} programs in {:.1} s",
        programs.len(),
        elapsed.as_secs_f64()
    );

    // One sandbox cannot signal another, though both run as `nobody` (Landlock ABI 6 scoping):
    // a program that sends SIGKILL to every process it may signal does not kill its neighbour.
    if root && landlock.is_some_and(|abi| abi >= 6) {
        let jobs = [
            "import time\ndef f(x):\n    time.sleep(1.5)\n    return 42\n",
            "import os, time\ndef f(x):\n    time.sleep(0.3)\n    os.kill(-1, 9)\n    return 42\n",
        ];
        let slow = harness(3.0);
        let r = Harness::run_many(&jobs, 2, |code| slow.run_cases(code, "f", &cases[..1]));
        assert!(r[0].all_passed(), "the neighbour was killed: {r:?}");
    }

    // After all that, a normal program still runs fine.
    let r = h.run_cases(
        "def f(x):\n    return 42\n",
        "f",
        &[case("1", "42"), case("0", "42")],
    );
    assert!(r.all_passed(), "{r:?}");
    assert_eq!(r.program_error, None);
}
