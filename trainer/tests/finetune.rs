//! Fine-tuning end to end on tiny random models: the loss goes down, the exported adapter makes
//! llama.cpp say the trained answer, a killed run resumes bit for bit, bad input is refused
//! before training, and the real Gemma 3 270M trains a step.

use std::path::{Path, PathBuf};

use clap::Parser;
use clarifycoder_core::dataset::{write_jsonl, Category, Kind, Row};
use clarifycoder_core::engine::llama::{LlamaConfig, LlamaEngine};
use clarifycoder_core::engine::{Backend, CancelToken, GenerateRequest};
use clarifycoder_core::prompt;
use clarifycoder_testkit::tiny::{write_model, Tiny};
use clarifycoder_trainer::finetune::{self, FinetuneArgs};
use clarifycoder_trainer::run::LogLine;

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    args: FinetuneArgs,
}

fn args(extra: &[&str]) -> FinetuneArgs {
    let mut argv = vec!["finetune", "--quiet"];
    argv.extend_from_slice(extra);
    Cli::try_parse_from(argv).unwrap().args
}

fn row(problem: &str, answer: &str, category: Category) -> Row {
    Row {
        id: format!("{:x}", problem.len()),
        problem: problem.into(),
        answer: answer.into(),
        kind: if category == Category::Original {
            Kind::Original
        } else {
            Kind::Ambiguous
        },
        category,
        source: "test".into(),
        source_id: problem.into(),
        method: "test".into(),
        mutations: Vec::new(),
        original_problem: String::new(),
    }
}

fn tiny_rows() -> Vec<Row> {
    vec![
        row(
            "def f(xs):\n    \"\"\"Sort the list.\"\"\"",
            "Which order?",
            Category::A,
        ),
        row(
            "def g(xs):\n    \"\"\"Return the list reversed.\"\"\"",
            "```python\nreturn xs[::-1]\n```",
            Category::Original,
        ),
    ]
}

fn log(dir: &Path) -> Vec<LogLine> {
    std::fs::read_to_string(dir.join("log.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn s(p: &Path) -> String {
    p.to_str().unwrap().to_string()
}

#[test]
fn training_lowers_the_loss_and_llama_cpp_says_the_trained_answer() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("tiny.gguf");
    let mut tiny = Tiny::gemma3();
    tiny.sliding_window = 64;
    write_model(&model, &tiny);
    let train = dir.path().join("train.jsonl");
    write_jsonl(&train, &tiny_rows()).unwrap();
    let out = dir.path().join("run");
    let on_tiny = |output: &Path, rest: &[&str]| {
        let common = [
            "--model",
            &s(&model),
            "--train",
            &s(&train),
            "--val",
            &s(&train),
            "--output",
            &s(output),
            "--rank",
            "8",
            "--alpha",
            "16",
            "--max-len",
            "1024",
        ]
        .map(String::from);
        let argv: Vec<&str> = common
            .iter()
            .map(String::as_str)
            .chain(rest.iter().copied())
            .collect();
        finetune::run(args(&argv))
    };
    on_tiny(
        &out,
        &[
            "--max-steps",
            "120",
            "--accum",
            "2",
            "--lr",
            "1e-2",
            "--warmup",
            "5",
            "--dropout",
            "0",
            "--eval-every",
            "60",
            "--save-every",
            "1000",
        ],
    )
    .unwrap();
    let log = log(&out);
    // Step 0 is the base model's validation loss.
    assert_eq!(log[0].step, 0);
    let base_val = log[0].val_loss.unwrap();
    let first = log[1].loss.unwrap();
    let last = log.last().unwrap().loss.unwrap();
    assert!(last < first * 0.05, "loss {first} → {last}");
    assert!(log.last().unwrap().val_loss.unwrap() < base_val * 0.05);

    let mut config = LlamaConfig::new(&model);
    config.adapter = Some(out.join("adapter.lora.gguf"));
    let engine = LlamaEngine::load(config).unwrap();
    let markup = engine.info().markup;
    for r in tiny_rows() {
        let req = GenerateRequest::greedy(prompt::round1(markup, &r.problem), markup, 80);
        let g = engine.generate(&req, &CancelToken::new()).unwrap();
        assert_eq!(g.text, r.answer, "for {:?}", r.problem);
    }
    // A second run can start from the exported GGUF (an F32 export: the same weights), and its
    // step-0 validation loss is the first run's last.
    let again = dir.path().join("again");
    let exported = s(&out.join("adapter.lora.gguf"));
    on_tiny(&again, &["--max-steps", "1", "--init-adapter", &exported]).unwrap();
    let start = self::log(&again)[0].val_loss.unwrap();
    let end = log.last().unwrap().val_loss.unwrap();
    assert!(
        (start - end).abs() < 0.01 + 0.05 * end,
        "{start} vs {end} (base model: {base_val})"
    );
    let wrong_alpha = finetune::run(args(&[
        "--model",
        &s(&model),
        "--train",
        &s(&train),
        "--output",
        &s(&dir.path().join("wrong")),
        "--rank",
        "8",
        "--alpha",
        "8",
        "--init-adapter",
        &exported,
    ]))
    .unwrap_err();
    assert!(
        format!("{wrong_alpha:#}").contains("pass --alpha 16"),
        "{wrong_alpha:#}"
    );

    // The PEFT export has A/B per target module.
    let peft = dir.path().join("peft");
    clarifycoder_trainer::export::run(clarifycoder_trainer::export::ExportArgs {
        run: out.clone(),
        format: clarifycoder_trainer::export::Format::Peft,
        output: peft.clone(),
        checkpoint: false,
        f16: false,
        q8: false,
    })
    .unwrap();
    let tensors = candle_core::safetensors::load(
        peft.join("adapter_model.safetensors"),
        &candle_core::Device::Cpu,
    )
    .unwrap();
    let a = &tensors["base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"];
    let b = &tensors["base_model.model.model.layers.0.mlp.down_proj.lora_B.weight"];
    assert_eq!(a.dims(), &[8, 64]);
    assert_eq!(b.dims(), &[64, 8]);
    assert_eq!(tensors.len(), tiny.n_layer * 7 * 2);
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(peft.join("adapter_config.json")).unwrap())
            .unwrap();
    assert_eq!(config["r"], 8);
    assert_eq!(config["peft_type"], "LORA");
}

fn resume_fixture(dir: &Path) -> (PathBuf, PathBuf) {
    let model = dir.join("tiny.gguf");
    write_model(&model, &Tiny::llama());
    let train = dir.join("train.jsonl");
    let mut rows = tiny_rows();
    rows.push(row(
        "def h():\n    \"\"\"Do it.\"\"\"",
        "Do what?",
        Category::A,
    ));
    write_jsonl(&train, &rows).unwrap();
    (model, train)
}

#[test]
fn a_killed_run_resumes_bit_for_bit() {
    let dir = tempfile::tempdir().unwrap();
    let (model, train) = resume_fixture(dir.path());
    let run = |out: &Path, extra: &[&str]| {
        let mut a = vec![
            "--model".to_string(),
            s(&model),
            "--train".into(),
            s(&train),
            "--val".into(),
            s(&train),
            "--output".into(),
            s(out),
            "--max-steps".into(),
            "6".into(),
            "--accum".into(),
            "2".into(),
            "--dropout".into(),
            "0.1".into(),
            "--lr".into(),
            "1e-2".into(),
            "--save-every".into(),
            "2".into(),
            "--eval-every".into(),
            "3".into(),
        ];
        a.extend(extra.iter().map(|x| x.to_string()));
        let refs: Vec<&str> = a.iter().map(String::as_str).collect();
        finetune::run(args(&refs))
    };
    let straight = dir.path().join("straight");
    run(&straight, &[]).unwrap();
    let killed = dir.path().join("killed");
    // Three steps, then "killed": the checkpoint holds step 2, step 3's work is lost.
    run(&killed, &["--stop-after", "3"]).unwrap();
    assert!(!killed.join("adapter.safetensors").exists());
    // A run in progress exports its checkpoint.
    let export_checkpoint = |d: &Path, output: &Path| {
        clarifycoder_trainer::export::run(clarifycoder_trainer::export::ExportArgs {
            run: d.to_path_buf(),
            format: clarifycoder_trainer::export::Format::Gguf,
            output: output.to_path_buf(),
            checkpoint: true,
            f16: false,
            q8: false,
        })
    };
    let partial = dir.path().join("partial.gguf");
    export_checkpoint(&killed, &partial).unwrap();
    assert!(partial.is_file());
    // Restarting without --resume would overwrite the run: refused.
    let err = run(&killed, &[]).unwrap_err().to_string();
    assert!(err.contains("--resume"), "{err}");
    // Resuming with other hyperparameters: refused, naming the difference.
    let err = run(&killed, &["--resume", "--rank", "4"])
        .unwrap_err()
        .to_string();
    assert!(err.contains("rank"), "{err}");
    run(&killed, &["--resume"]).unwrap();
    let read = |d: &Path| std::fs::read(d.join("adapter.safetensors")).unwrap();
    assert!(read(&straight) == read(&killed), "adapters differ");
    let untimed = |d: &Path| {
        let mut l = log(d);
        l.iter_mut().for_each(|x| x.seconds = None);
        l
    };
    assert_eq!(untimed(&straight), untimed(&killed));
    assert_eq!(
        std::fs::read(straight.join("adapter.lora.gguf")).unwrap(),
        std::fs::read(killed.join("adapter.lora.gguf")).unwrap()
    );
    // The last checkpoint is the finished adapter.
    let last = dir.path().join("last.gguf");
    export_checkpoint(&killed, &last).unwrap();
    assert_eq!(
        std::fs::read(&last).unwrap(),
        std::fs::read(killed.join("adapter.lora.gguf")).unwrap()
    );
    // Every file was written whole and renamed into place: no temporary file is left.
    let mut files: Vec<String> = std::fs::read_dir(&killed)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(
        files,
        [
            "adapter.json",
            "adapter.lora.gguf",
            "adapter.safetensors",
            "checkpoint",
            "log.jsonl",
            "run.json"
        ]
    );
}

#[test]
fn bad_input_is_refused_before_training() {
    let dir = tempfile::tempdir().unwrap();
    let (model, train) = resume_fixture(dir.path());
    let out = |name: &str| s(&dir.path().join(name));

    // An architecture we have no forward pass for.
    let other = dir.path().join("other.gguf");
    let mut tiny = Tiny::llama();
    tiny.arch = "mamba";
    write_model(&other, &tiny);
    let err = finetune::run(args(&[
        "--model",
        &s(&other),
        "--train",
        &s(&train),
        "--output",
        &out("a"),
    ]))
    .unwrap_err();
    let msg = format!("{err:#}");
    assert!(msg.contains("'mamba' is not supported"), "{msg}");

    // Rank larger than a projection.
    let err = finetune::run(args(&[
        "--model",
        &s(&model),
        "--train",
        &s(&train),
        "--output",
        &out("b"),
        "--rank",
        "100",
    ]))
    .unwrap_err();
    assert!(format!("{err:#}").contains("--rank 100 exceeds"), "{err:#}");

    // Unknown target, missing data.
    let err = finetune::run(args(&[
        "--model",
        &s(&model),
        "--train",
        &s(&train),
        "--output",
        &out("c"),
        "--targets",
        "q,lm_head",
    ]))
    .unwrap_err();
    assert!(
        err.to_string().contains("unknown LoRA target 'lm_head'"),
        "{err}"
    );
    let err = finetune::run(args(&[
        "--model",
        &s(&model),
        "--train",
        &out("missing.jsonl"),
        "--output",
        &out("d"),
    ]))
    .unwrap_err();
    assert!(err.to_string().contains("does not exist"), "{err}");

    // An adapter to start from that was trained for another rank (or base): refused before
    // training, naming the tensor.
    let wrong = dir.path().join("wrong.safetensors");
    let t = candle_core::Tensor::zeros((3, 64), candle_core::DType::F32, &candle_core::Device::Cpu)
        .unwrap();
    let mut tensors = std::collections::HashMap::new();
    tensors.insert("blk.0.attn_k.lora_a".to_string(), t.clone());
    tensors.insert("blk.0.attn_q.lora_a".to_string(), t);
    candle_core::safetensors::save(&tensors, &wrong).unwrap();
    let err = finetune::run(args(&[
        "--model",
        &s(&model),
        "--train",
        &s(&train),
        "--output",
        &out("f"),
        "--targets",
        "q",
        "--init-adapter",
        &s(&wrong),
    ]))
    .unwrap_err();
    let msg = format!("{err:#}");
    assert!(msg.contains("--init-adapter"), "{msg}");
    assert!(
        msg.contains("blk.0.attn_q.lora_a has shape [3, 64]"),
        "{msg}"
    );
    assert!(!dir.path().join("f").join("checkpoint").exists());

    // Rows that cannot train: empty answers and prompts longer than --max-len are skipped and
    // counted; when nothing is left that is an error.
    let bad = dir.path().join("bad.jsonl");
    write_jsonl(
        &bad,
        &[
            row("def f():\n    \"\"\"x\"\"\"", "   ", Category::A),
            row(
                &"def g():\n    \"\"\"long\"\"\"".repeat(50),
                "ok",
                Category::Original,
            ),
        ],
    )
    .unwrap();
    let err = finetune::run(args(&[
        "--model",
        &s(&model),
        "--train",
        &s(&bad),
        "--output",
        &out("e"),
        "--max-len",
        "600",
    ]))
    .unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("empty answers: 1"), "{msg}");
    assert!(msg.contains("prompt longer than --max-len 600: 1"), "{msg}");
}

/// One step on the real model: its Q4_K/Q6_K weights dequantize, the loss is finite, and the
/// exported adapter loads in llama.cpp.
#[test]
fn the_real_gemma_trains_a_step() {
    let dir = tempfile::tempdir().unwrap();
    let train = dir.path().join("train.jsonl");
    write_jsonl(&train, &tiny_rows()).unwrap();
    let out = dir.path().join("run");
    let model = clarifycoder_core::models::GEMMA3_270M
        .installed_path()
        .unwrap();
    finetune::run(args(&[
        "--model",
        "gemma3-270m",
        "--train",
        &s(&train),
        "--output",
        &s(&out),
        "--max-steps",
        "1",
        "--accum",
        "2",
        "--rank",
        "2",
    ]))
    .unwrap();
    let log = log(&out);
    let loss = log[0].loss.unwrap();
    assert_eq!(log.len(), 1);
    assert!(loss.is_finite() && loss > 0.0, "{loss}");
    let mut config = LlamaConfig::new(&model);
    config.adapter = Some(out.join("adapter.lora.gguf"));
    LlamaEngine::load(config).expect("llama.cpp loads the exported adapter");
    // The F16 export (how adapters are shipped) is half the size and loads too.
    let f16 = dir.path().join("f16.lora.gguf");
    clarifycoder_trainer::export::run(clarifycoder_trainer::export::ExportArgs {
        run: out.clone(),
        format: clarifycoder_trainer::export::Format::Gguf,
        output: f16.clone(),
        checkpoint: false,
        f16: true,
        q8: false,
    })
    .unwrap();
    let size = |p: &std::path::Path| std::fs::metadata(p).unwrap().len();
    assert!(size(&f16) < size(&out.join("adapter.lora.gguf")) * 6 / 10);
    let mut config = LlamaConfig::new(&model);
    config.adapter = Some(f16.clone());
    LlamaEngine::load(config).expect("llama.cpp loads the F16 adapter");
    // The Q8_0 export (A matrices in 8-bit blocks; Gemma's width, 640, is 20 blocks) is smaller
    // still and loads too.
    let q8 = dir.path().join("q8.lora.gguf");
    clarifycoder_trainer::export::run(clarifycoder_trainer::export::ExportArgs {
        run: out.clone(),
        format: clarifycoder_trainer::export::Format::Gguf,
        output: q8.clone(),
        checkpoint: false,
        f16: false,
        q8: true,
    })
    .unwrap();
    let info = clarifycoder_core::gguf::read(&q8).unwrap();
    assert!(
        info.tensors.iter().any(|t| t.ggml_type == 8),
        "Q8_0 A matrices"
    );
    assert!(size(&q8) < size(&f16));
    let mut config = LlamaConfig::new(&model);
    config.adapter = Some(q8);
    LlamaEngine::load(config).expect("llama.cpp loads the Q8_0 adapter");
}

/// `--dtype bf16` stores the frozen matrices in bf16 and still trains.
#[test]
fn bf16_storage_trains() {
    let dir = tempfile::tempdir().unwrap();
    let (model, train) = resume_fixture(dir.path());
    let out = dir.path().join("run");
    finetune::run(args(&[
        "--model",
        &s(&model),
        "--train",
        &s(&train),
        "--output",
        &s(&out),
        "--max-steps",
        "20",
        "--accum",
        "3",
        "--lr",
        "1e-2",
        "--dtype",
        "bf16",
    ]))
    .unwrap();
    let log = log(&out);
    let (first, last) = (log[0].loss.unwrap(), log.last().unwrap().loss.unwrap());
    assert_eq!(log[0].step, 1, "no --val, no step-0 entry");
    assert!(last < first * 0.5, "loss {first} → {last}");
}
