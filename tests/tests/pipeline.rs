//! The training pipeline end to end, each step the built binary on the previous step's output as
//! the README runs it: `harvest` a small Python tree (decontaminated against a HumanEval file
//! written here) → `synthesize --method rules` → `mix` → `finetune` a few steps on a tiny random
//! model → `export` → `clarifycoder check` with the exported adapter → `clarifycoder-evaluator
//! humanevalcomm` with it on a two-problem benchmark file. The tiny model's answers are noise;
//! what is checked is that each step's output has the content the next step relies on.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use clarifycoder_core::gguf;
use clarifycoder_testkit::tiny::{write_model, Tiny};
use clarifycoder_tests::{assert_exit, command, leftovers, read_jsonl, stderr, stdout_json};
use serde_json::{json, Value};

const PRICING: &str = r#"def apply_discount(price, percent):
    """Return the price after taking off the given percentage as a discount.

    >>> apply_discount(200.0, 25)
    150.0
    """
    factor = 1 - percent / 100
    return price * factor


def clamp(value, low, high):
    """Limit value to the closed range from low to high and return the result.

    >>> clamp(15, 0, 10)
    10
    """
    if value < low:
        return low
    return min(value, high)


def _round2(x):
    value = round(x, 2)
    return value


def tiny_doc(x):
    """Too short."""
    y = x
    return y
"#;

const TEXT: &str = r#"def initials(full_name):
    """Return the upper-case first letter of every word of the full name, joined.

    >>> initials("ada lovelace")
    'AL'
    """
    words = full_name.split()
    return "".join(w[0].upper() for w in words)


def count_vowels(text):
    """Count the vowels (a, e, i, o, u, in either case) in the given text and return the count.

    >>> count_vowels("Banana")
    3
    """
    vowels = set("aeiouAEIOU")
    return sum(1 for c in text if c in vowels)


def has_close_elements(numbers, threshold):
    """Check whether any two numbers of the list are closer to each other than the threshold.

    >>> has_close_elements([1.0, 2.0, 3.0], 0.5)
    False
    """
    pairs = [(a, b) for i, a in enumerate(numbers) for b in numbers[i + 1:]]
    return any(abs(a - b) < threshold for a, b in pairs)
"#;

/// In a `tests/` directory: never harvested.
const TEST_FILE: &str = r#"def test_clamp_keeps_values_in_range():
    """The clamp function must keep a value inside the range it is given, at both ends."""
    assert clamp(5, 0, 10) == 5
    assert clamp(-1, 0, 10) == 0
"#;

/// The file `check` runs on: two documented functions and one without a docstring.
const APP: &str = r#"def load_orders(path):
    """Read the orders from the CSV file at path and return them as a list of dicts."""
    import csv
    with open(path) as f:
        return list(csv.DictReader(f))


def handle(items):
    """Process the items properly."""
    return items


def helper(x):
    return x
"#;

fn run(cmd: &mut Command) -> Output {
    cmd.output().expect("the binary runs")
}

fn ok(cmd: &mut Command) -> Value {
    let out = run(cmd);
    assert_exit(&out, 0);
    stdout_json(&out)
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// HumanEval in its own format (uncompressed JSON Lines), one problem: a harvested function with
/// its entry point is dropped.
fn write_humaneval(path: &Path) {
    let problem = json!({
        "task_id": "HumanEval/0",
        "entry_point": "has_close_elements",
        "prompt": "def has_close_elements(numbers, threshold):\n    \"\"\"Any two numbers closer than threshold?\"\"\"\n",
        "canonical_solution": "    return False\n",
    });
    std::fs::write(path, format!("{problem}\n")).unwrap();
}

/// Two problems in HumanEvalComm's schema, each with an ambiguous (`1a`) variant.
fn write_benchmark(path: &Path) {
    let add = json!({
        "name": "Pipeline/0", "entry_point": "add",
        "prompt": "def add(a, b):\n    \"\"\"Return the sum of a and b.\n    >>> add(1, 2)\n    3\n    \"\"\"\n",
        "solution": "    return a + b\n",
        "test_case": [{"input": "1, 2", "output": "3", "relation": "=="}],
        "prompt1a": "def add(a, b):\n    \"\"\"Return the combination of a and b.\"\"\"\n",
    });
    let rev = json!({
        "name": "Pipeline/1", "entry_point": "rev",
        "prompt": "def rev(s):\n    \"\"\"Return s reversed.\"\"\"\n",
        "solution": "    return s[::-1]\n",
        "test_case": [{"input": "'abc'", "output": "'cba'", "relation": "=="}],
        "prompt1a": "def rev(s):\n    \"\"\"Return s rearranged.\"\"\"\n",
    });
    std::fs::write(path, format!("{add}\n{rev}\n")).unwrap();
}

struct Dirs {
    _tmp: tempfile::TempDir,
    root: PathBuf,
}

impl Dirs {
    fn new() -> Dirs {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().to_path_buf();
        Dirs { _tmp: tmp, root }
    }
    fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }
    fn write(&self, rel: &str, content: &str) -> PathBuf {
        let path = self.path(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, content).unwrap();
        path
    }
}

#[test]
fn harvest_synthesize_mix_finetune_export_then_check_and_evaluate_with_the_adapter() {
    let d = Dirs::new();
    d.write("src/shop/pricing.py", PRICING);
    d.write("src/shop/text.py", TEXT);
    d.write("src/shop/tests/test_pricing.py", TEST_FILE);
    let humaneval = d.path("HumanEval.jsonl");
    write_humaneval(&humaneval);
    let data = d.path("data");

    // harvest: the documented functions with bodies, not the HumanEval one, nothing from tests/.
    let report = ok(command("clarifycoder-trainer")
        .args([
            "harvest",
            "--from",
            s(&d.path("src")),
            "--out-dir",
            s(&data),
        ])
        .args(["--humaneval", s(&humaneval)]));
    assert_eq!(report["files"], 2, "{report:#}");
    assert_eq!(report["kept"], 4, "{report:#}");
    assert_eq!(report["humaneval_problems"], 1, "{report:#}");
    assert_eq!(
        report["dropped"],
        json!({"humaneval_entry_point": 1, "no_docstring": 1, "docstring_length": 1}),
        "{report:#}"
    );
    let harvested = read_jsonl(&data.join("harvested.jsonl"));
    let names: BTreeSet<&str> = harvested
        .iter()
        .map(|h| h["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        BTreeSet::from(["apply_discount", "clamp", "count_vowels", "initials"])
    );
    let clamp = harvested.iter().find(|h| h["name"] == "clamp").unwrap();
    assert_eq!(clamp["examples"][0]["source"], "clamp(15, 0, 10)");
    assert_eq!(clamp["examples"][0]["want"], "10");
    let originals = read_jsonl(&data.join("original.jsonl"));
    assert_eq!(originals.len(), 4);
    for row in &originals {
        assert_eq!(row["type"], "Original", "{row}");
        assert_eq!(row["category"], "original", "{row}");
        let answer = row["answer"].as_str().unwrap();
        assert!(answer.starts_with("```python\ndef "), "{row}");
        // The code answer is the function without its docstring.
        assert!(!answer.contains("\"\"\""), "{row}");
    }

    // synthesize: unclear variants of those functions with the questions that resolve them.
    let clarify = data.join("clarify.jsonl");
    let summary = ok(command("clarifycoder-trainer")
        .args(["synthesize", "--method", "rules", "--per-function", "2"])
        .args(["--input", s(&data.join("harvested.jsonl"))])
        .args(["--output", s(&clarify)]));
    let rows = read_jsonl(&clarify);
    assert_eq!(summary["rows"], rows.len(), "{summary:#}");
    assert!(rows.len() >= 4, "{summary:#}");
    let problem_of: HashMap<&str, &str> = originals
        .iter()
        .map(|r| {
            (
                r["source_id"].as_str().unwrap(),
                r["problem"].as_str().unwrap(),
            )
        })
        .collect();
    let mut per_category = BTreeMap::new();
    for row in &rows {
        let category = row["category"].as_str().unwrap();
        assert!(
            ["1a", "1c", "1p", "2ac", "2ap", "2cp"].contains(&category),
            "{row}"
        );
        *per_category.entry(category).or_insert(0) += 1;
        let kind = row["type"].as_str().unwrap();
        assert!(
            ["Ambiguous", "Incomplete", "Inconsistent"].contains(&kind),
            "{row}"
        );
        let original = problem_of[row["source_id"].as_str().unwrap()];
        assert_eq!(row["original_problem"], original, "{row}");
        assert_ne!(row["problem"], original, "{row}");
        let answer = row["answer"].as_str().unwrap();
        assert!(
            answer.contains('?') && !answer.contains("```"),
            "the answer of an unclear row is questions: {row}"
        );
        assert_eq!(row["method"], "rules", "{row}");
    }
    assert!(per_category.len() >= 2, "{per_category:?}");
    assert_eq!(summary["per_category"], json!(per_category), "{summary:#}");
    // Inconsistent rows were verified by running the harvested code against its own examples.
    assert_eq!(
        summary["inconsistent_rejected_by_execution"], 0,
        "{summary:#}"
    );

    // mix: half clarify, half original, split by function.
    let mix = data.join("mix");
    let mixed = ok(command("clarifycoder-trainer")
        .args(["mix", "--clarify", s(&clarify), "--original"])
        .arg(data.join("original.jsonl"))
        .args([
            "--ratio",
            "0.5",
            "--val-fraction",
            "0.25",
            "--out-dir",
            s(&mix),
        ]));
    let train = read_jsonl(&mix.join("train.jsonl"));
    let val = read_jsonl(&mix.join("val.jsonl"));
    assert!(!train.is_empty() && !val.is_empty(), "{mixed:#}");
    let count = |rows: &[Value], original: bool| {
        rows.iter()
            .filter(|r| (r["category"] == "original") == original)
            .count()
    };
    assert_eq!(mixed["train"]["clarify"], count(&train, false), "{mixed:#}");
    assert_eq!(mixed["train"]["original"], count(&train, true), "{mixed:#}");
    assert_eq!(count(&train, false), count(&train, true), "{mixed:#}");
    let group = |rows: &[Value]| -> BTreeSet<String> {
        rows.iter()
            .map(|r| r["source_id"].as_str().unwrap().to_string())
            .collect()
    };
    assert!(
        group(&train).is_disjoint(&group(&val)),
        "a function in both splits: {mixed:#}"
    );
    let known: BTreeSet<&str> = rows
        .iter()
        .chain(&originals)
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert!(train
        .iter()
        .chain(&val)
        .all(|r| known.contains(r["id"].as_str().unwrap())));

    // finetune a few steps on a tiny random model.
    let model = d.path("tiny-llama.gguf");
    write_model(&model, &Tiny::llama());
    let run_dir = d.path("run");
    let out = run(command("clarifycoder-trainer")
        .args(["finetune", "--model", s(&model)])
        .args(["--train", s(&mix.join("train.jsonl"))])
        .args(["--val", s(&mix.join("val.jsonl"))])
        .args(["--output", s(&run_dir)])
        .args([
            "--max-steps",
            "4",
            "--accum",
            "2",
            "--rank",
            "4",
            "--alpha",
            "8",
        ])
        .args(["--lr", "1e-2", "--warmup", "1", "--max-len", "1024"])
        .args(["--eval-every", "2", "--save-every", "2"]));
    assert_exit(&out, 0);
    // No row was skipped (too long for --max-len, empty answer).
    let err = stderr(&out);
    assert!(
        err.contains(&format!("train: {} sequences", train.len()))
            && err.contains(&format!("val: {} sequences", val.len())),
        "{err}"
    );
    // Into a pipe (a log), progress comes as plain lines: validations and checkpoints.
    assert!(
        err.contains("finetune: step 0: val loss")
            && err.contains("finetune: step 2/4: loss")
            && err.contains("finetune: step 4: train loss"),
        "{err}"
    );
    let log = read_jsonl(&run_dir.join("log.jsonl"));
    // Step 0 is the base model's validation loss; then one line per step.
    assert_eq!(log[0]["step"], 0, "{log:?}");
    let base_val = log[0]["val_loss"].as_f64().expect("a validation loss");
    assert!(base_val.is_finite() && base_val > 0.0, "{log:?}");
    let losses: Vec<f64> = log.iter().filter_map(|l| l["loss"].as_f64()).collect();
    assert_eq!(losses.len(), 4, "{log:?}");
    assert!(
        losses.iter().all(|l| l.is_finite() && *l > 0.0),
        "{losses:?}"
    );
    let last_val = log.last().unwrap()["val_loss"]
        .as_f64()
        .expect("a final validation loss");
    assert!(
        last_val < base_val,
        "validation loss {base_val} → {last_val}"
    );

    // export: a llama.cpp LoRA adapter for this base model.
    let adapter = d.path("exported.lora.gguf");
    let out = run(command("clarifycoder-trainer").args([
        "export",
        s(&run_dir),
        "--format",
        "gguf",
        "-o",
        s(&adapter),
    ]));
    assert_exit(&out, 0);
    let info = gguf::read(&adapter).expect("core reads the exported adapter's header");
    assert!(info.is_adapter());
    assert_eq!(info.architecture(), Some("llama"));
    assert_eq!(info.get_str("adapter.type"), Some("lora"));
    let base = gguf::read(&model).unwrap();
    let base_dims: BTreeMap<&str, &[u64]> = base
        .tensors
        .iter()
        .map(|t| (t.name.as_str(), t.dims.as_slice()))
        .collect();
    // Seven projections in each of the two layers, an A and a B each, shaped for this base.
    assert_eq!(info.tensors.len(), 2 * 7 * 2);
    for t in &info.tensors {
        let (name, part) = t.name.rsplit_once('.').unwrap();
        let dims = base_dims
            .get(name)
            .unwrap_or_else(|| panic!("{} adapts no tensor of the model", t.name));
        match part {
            "lora_a" => assert_eq!(t.dims, [dims[0], 4], "{}", t.name),
            "lora_b" => assert_eq!(t.dims, [4, dims[1]], "{}", t.name),
            _ => panic!("unexpected tensor {}", t.name),
        }
    }
    assert!(leftovers(&d.root).is_empty(), "{:?}", leftovers(&d.root));

    // check: the base model with the exported adapter, on a small file. Threshold 0 flags every
    // analyzed function whatever the tiny model thinks.
    let app = d.write("app/orders.py", APP);
    let cache = d.path("cache");
    let out = run(command("clarifycoder")
        .args(["check", "--format", "json", "--threshold", "0"])
        .args([
            "--max-tokens",
            "8",
            "--model",
            s(&model),
            "--adapter",
            s(&adapter),
        ])
        .arg(&app)
        .env("XDG_CACHE_HOME", &cache)
        .env("XDG_CONFIG_HOME", d.path("config"))
        .env_remove("CLARIFYCODER_MODEL")
        .env_remove("CLARIFYCODER_ADAPTER"));
    assert_exit(&out, 1);
    let report = stdout_json(&out);
    let flagged: BTreeSet<&str> = report["diagnostics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["function"].as_str().unwrap())
        .collect();
    assert_eq!(
        flagged,
        BTreeSet::from(["handle", "load_orders"]),
        "{report:#}"
    );
    for diagnostic in report["diagnostics"].as_array().unwrap() {
        assert_eq!(diagnostic["path"], s(&app), "{report:#}");
        let score = diagnostic["score"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&score), "{report:#}");
    }
    assert_eq!(report["stats"]["functions"], 3, "{report:#}");
    assert_eq!(report["stats"]["analyzed"], 2, "{report:#}");
    assert_eq!(report["stats"]["inference"]["decided"], 2, "{report:#}");
    assert_eq!(report["errors"], json!([]), "{report:#}");
    // The adapter was applied: without it the same model scores the functions differently.
    let out = run(command("clarifycoder")
        .args([
            "check",
            "--format",
            "json",
            "--threshold",
            "0",
            "--max-tokens",
            "8",
        ])
        .args(["--model", s(&model), "--adapter", "none"])
        .arg(&app)
        .env("XDG_CACHE_HOME", &cache)
        .env("XDG_CONFIG_HOME", d.path("config"))
        .env_remove("CLARIFYCODER_MODEL")
        .env_remove("CLARIFYCODER_ADAPTER"));
    assert_exit(&out, 1);
    let without = stdout_json(&out);
    let scores = |r: &Value| -> Vec<f64> {
        r["diagnostics"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["score"].as_f64().unwrap())
            .collect()
    };
    assert_eq!(without["stats"]["cache_hits"], 0, "{without:#}");
    assert!(
        scores(&report)
            .iter()
            .zip(scores(&without))
            .any(|(a, b)| (a - b).abs() > 1e-4),
        "with the adapter {report:#}\nwithout {without:#}"
    );

    // The evaluator: the same model and adapter on two problems, each as written and ambiguous.
    let bench = d.path("comm.jsonl");
    write_benchmark(&bench);
    let eval = d.path("eval");
    let summary = ok(command("clarifycoder-evaluator")
        .args(["humanevalcomm", "--data", s(&bench), "--out-dir", s(&eval)])
        .args(["--model", s(&model), "--adapter", s(&adapter)])
        .args(["--variants", "1a,original", "--max-tokens", "16"])
        .args(["--ctx-size", "4096"]));
    // `overall` is over the unclear variants; the problems as written measure false alarms.
    assert_eq!(summary["overall"]["instances"], 2, "{summary:#}");
    let categories: HashMap<&str, &Value> = summary["categories"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c[0].as_str().unwrap(), &c[1]))
        .collect();
    for name in ["1a", "original"] {
        let c = categories[name];
        assert_eq!(c["instances"], 2, "{summary:#}");
        for metric in [
            "communication_rate",
            "good_question_rate",
            "pass_at_1",
            "test_pass_rate",
        ] {
            let v = c[metric]
                .as_f64()
                .unwrap_or_else(|| panic!("{name}: no {metric}: {summary:#}"));
            assert!((0.0..=100.0).contains(&v), "{name}.{metric}: {summary:#}");
        }
    }
    let false_alarms = summary["false_alarm_rate"].as_f64().unwrap();
    assert!((0.0..=100.0).contains(&false_alarms), "{summary:#}");
    let instances = read_jsonl(&eval.join("instances.jsonl"));
    let keys: BTreeSet<&str> = instances
        .iter()
        .map(|i| i["key"].as_str().unwrap())
        .collect();
    assert_eq!(
        keys,
        BTreeSet::from([
            "Pipeline/0#1a",
            "Pipeline/0#original",
            "Pipeline/1#1a",
            "Pipeline/1#original"
        ])
    );
    assert_eq!(
        read_json(&eval.join("summary.json"))["overall"],
        summary["overall"]
    );
    assert!(std::fs::read_to_string(eval.join("summary.md"))
        .unwrap()
        .contains("| 1a | 2 |"));
    assert!(leftovers(&d.root).is_empty(), "{:?}", leftovers(&d.root));
}

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}
