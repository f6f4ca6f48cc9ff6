//! The embedded backend: llama.cpp through `llama-cpp-2`.
//!
//! `LlamaContext` borrows the model and is not `Sync`, so one dedicated thread loads the model,
//! creates the context and then serves jobs from a channel until every handle is dropped. Each job
//! carries its own reply channel, so concurrent callers get their own answers. A job with several
//! prompts is decoded as one batch, and generations are batched continuously: those queued
//! together (from any threads) decode one token each per llama.cpp call, and a finished one frees
//! its lane for the next (`State::run_generations`).
//!
//! KV layout: sequence 0 holds the fixed round-1 instruction prefix and is never cleared; a request
//! copies it into its working sequence(s) (`seq_cp`, which needs the unified KV cache) and decodes
//! only the rest of its prompt.

use std::collections::{HashMap, VecDeque};
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, OnceLock};

use llama_cpp_2::context::params::{KvCacheType, LlamaContextParams};
use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::token::LlamaToken;

use super::{
    entropy, log_normaliser, Backend, BackendInfo, CancelToken, Counters, Decision, EngineError,
    FinishReason, GenerateRequest, Generation, Score, Stats,
};
use crate::gguf;
use crate::prompt::{self, Markup, Prompt};
use crate::rng::SplitMix64;

/// Settings of the embedded engine.
#[derive(Debug, Clone, PartialEq)]
pub struct LlamaConfig {
    /// The GGUF model file.
    pub model: PathBuf,
    /// An optional GGUF LoRA adapter.
    pub adapter: Option<PathBuf>,
    /// Adapter scale (1.0 applies it as trained).
    pub adapter_scale: f32,
    /// Layers to offload to the GPU: 0 keeps the model on the CPU, [`ALL_LAYERS`] offloads all.
    /// Only a build with the `cuda` feature has a GPU to offload to; there the default is all
    /// layers (see [`DEFAULT_GPU_LAYERS`]).
    pub gpu_layers: u32,
    /// CPU threads (0 = all cores).
    pub threads: usize,
    /// Context window in tokens, shared by all sequences.
    pub n_ctx: u32,
    /// Most prompts decoded together in one batch.
    pub batch_prompts: usize,
    /// Keep the KV cache in F32 instead of F16: slower and larger, but exact. The trainer's
    /// parity tests compare logits with it.
    pub exact_kv: bool,
    /// With an adapter: when a generation's first token begins a code fence, the rest of the
    /// answer comes from the base model without the adapter. The adapter decides between asking
    /// and coding and writes the questions; the code is the base model's (see ARCHITECTURE.md,
    /// "Who writes the code"). Costs a second context and one more prefill per code answer.
    pub code_from_base: bool,
    /// Pad every generation step to a multiple of four rows, so that a sequence's next token is
    /// computed the same way alone or beside others (see ARCHITECTURE.md, "Batched generation
    /// and rounding"). A sequence that runs alone then decodes four rows per token: one flagged
    /// function's questions took 1.7× as long on two cores. No decided prompt is kept for later
    /// calls then, since its cells carry the rounding of the batch it was decided in.
    pub batch_invariant: bool,
}

impl LlamaConfig {
    /// Defaults for a model file.
    pub fn new(model: impl Into<PathBuf>) -> LlamaConfig {
        LlamaConfig {
            model: model.into(),
            adapter: None,
            adapter_scale: 1.0,
            gpu_layers: DEFAULT_GPU_LAYERS,
            threads: 0,
            n_ctx: 4096,
            batch_prompts: 4,
            exact_kv: false,
            code_from_base: false,
            batch_invariant: false,
        }
    }
}

/// `gpu_layers` that offloads every layer (llama.cpp caps it at the model's layer count).
pub const ALL_LAYERS: u32 = u32::MAX;

/// `gpu_layers` when the settings do not say: every layer in a build with the `cuda` feature
/// (on the CPU anyway when no device is found, see [`placement`]), none otherwise.
pub const DEFAULT_GPU_LAYERS: u32 = if cfg!(feature = "cuda") {
    ALL_LAYERS
} else {
    0
};

/// A GPU llama.cpp can offload to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GpuDevice {
    /// llama.cpp's name for it, e.g. `CUDA0`.
    pub name: String,
    /// What it is, e.g. `NVIDIA H200`.
    pub description: String,
    /// Its memory in bytes.
    pub memory_total: u64,
}

impl std::fmt::Display for GpuDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} ({}, {:.1} GiB)",
            self.name,
            self.description,
            self.memory_total as f64 / (1u64 << 30) as f64
        )
    }
}

/// The GPUs this process's llama.cpp found: none in a build without the `cuda` feature, and none
/// in a CUDA build on a machine without the NVIDIA driver or without a visible GPU.
pub fn gpu_devices() -> Vec<GpuDevice> {
    // The backend first: it routes llama.cpp's log (which would report a failed CUDA
    // initialisation on stderr) before the device registry is built.
    if backend().is_err() {
        return Vec::new();
    }
    llama_cpp_2::list_llama_ggml_backend_devices()
        .into_iter()
        .filter(|d| {
            matches!(
                d.device_type,
                llama_cpp_2::LlamaBackendDeviceType::Gpu
                    | llama_cpp_2::LlamaBackendDeviceType::IntegratedGpu
            )
        })
        .map(|d| GpuDevice {
            name: d.name,
            description: d.description,
            memory_total: d.memory_total as u64,
        })
        .collect()
}

/// Where an engine with `gpu_layers` runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placement {
    /// On the CPU.
    Cpu,
    /// Its layers (or all of them) on this GPU, the rest on the CPU.
    Gpu {
        /// The device llama.cpp offloads to first.
        device: GpuDevice,
        /// Layers offloaded ([`ALL_LAYERS`]: all).
        layers: u32,
    },
}

impl std::fmt::Display for Placement {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Placement::Cpu => write!(f, "CPU"),
            Placement::Gpu { device, layers } if *layers == ALL_LAYERS => {
                write!(f, "{device}, all layers")
            }
            Placement::Gpu { device, layers } => write!(f, "{device}, {layers} layers"),
        }
    }
}

/// Where an engine with `gpu_layers` runs on this machine. In a CUDA build that finds no GPU it
/// is the CPU, and the first call in the process says so on stderr (through `tracing` where a
/// subscriber is installed, as in the language server): one warning, however many engines load.
pub fn placement(gpu_layers: u32) -> Placement {
    if gpu_layers == 0 || !cfg!(feature = "cuda") {
        return Placement::Cpu;
    }
    match gpu_devices().into_iter().next() {
        Some(device) => Placement::Gpu {
            device,
            layers: gpu_layers,
        },
        None => {
            static WARNED: std::sync::Once = std::sync::Once::new();
            WARNED.call_once(|| {
                let message = "this is a CUDA build but no CUDA device was found (no NVIDIA \
                               driver, or no GPU visible to it: try `nvidia-smi`); running on the \
                               CPU (gpu_layers = 0, or --gpu-layers 0, does so without this \
                               warning)";
                if tracing::dispatcher::has_been_set() {
                    tracing::warn!("{message}");
                } else {
                    eprintln!("warning: {message}");
                }
            });
            Placement::Cpu
        }
    }
}

type Reply<T> = mpsc::Sender<Result<T, EngineError>>;

enum Job {
    Decide(Vec<Prompt>, CancelToken, Reply<Vec<Decision>>),
    Generate(GenerateRequest, CancelToken, Reply<Generation>),
    Score(String, String, CancelToken, Reply<Score>),
    TokenizePair(String, String, Reply<(Vec<u32>, Vec<u32>)>),
    Logits(Vec<u32>, Reply<Vec<Vec<f32>>>),
}

/// Handle to the engine thread. Cheap to share behind an `Arc`; dropping the last handle stops
/// the thread.
pub struct LlamaEngine {
    jobs: mpsc::Sender<Job>,
    info: BackendInfo,
    counters: Arc<Counters>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// Dropping the engine closes its job channel and waits for its thread to free the context and
/// the model. Freed later, while the process exits, CUDA memory outlives the CUDA runtime, and
/// llama.cpp aborts on the failed free: a CUDA build's `check` exited with 134, not 0 or 1.
impl Drop for LlamaEngine {
    fn drop(&mut self) {
        drop(std::mem::replace(&mut self.jobs, mpsc::channel().0));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// What `GOMP_SPINCOUNT` is set to when the user has not chosen how OpenMP threads wait.
pub const OPENMP_SPIN_COUNT: &str = "1000";

/// Makes llama.cpp's CPU threads go to sleep soon when they wait, unless the user chose
/// otherwise (`GOMP_SPINCOUNT` or `OMP_WAIT_POLICY` set). Call it first in `main`.
///
/// The CPU kernels synchronise their threads at an OpenMP barrier after every graph node,
/// hundreds of times per decode. libgomp's default spins about 300,000 times at a barrier before
/// it sleeps, so whenever anything else runs on the cores, a waiting thread burns the time slice
/// that the thread it waits for needs. On two cores, `check` of the examples took 47.8–55.3 s
/// beside two busy processes and 23.8–24.0 s with a spin count of 1,000; on an idle machine they
/// are within 2% (BENCHMARKS.md, "OpenMP threads that wait"). libgomp reads its settings once,
/// as it loads, before `main`: so this sets the variable and executes the program again (same
/// arguments, same process). It returns when the variable was already set, or when that fails.
pub fn limit_openmp_spinning() {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::process::CommandExt;
        if std::env::var_os("GOMP_SPINCOUNT").is_some()
            || std::env::var_os("OMP_WAIT_POLICY").is_some()
        {
            return;
        }
        let Ok(exe) = std::env::current_exe() else {
            return;
        };
        let mut args = std::env::args_os();
        let mut command = std::process::Command::new(exe);
        if let Some(arg0) = args.next() {
            command.arg0(arg0);
        }
        // Returns only when it failed: the program then runs with libgomp's default.
        let _ = command
            .args(args)
            .env("GOMP_SPINCOUNT", OPENMP_SPIN_COUNT)
            .exec();
    }
}

/// The process-wide llama.cpp backend (llama.cpp allows one initialisation per process).
pub fn backend() -> Result<&'static LlamaBackend, EngineError> {
    static BACKEND: OnceLock<Result<LlamaBackend, String>> = OnceLock::new();
    BACKEND
        .get_or_init(|| {
            let enabled = std::env::var_os("CLARIFYCODER_LLAMA_LOG").is_some();
            llama_cpp_2::send_logs_to_tracing(
                llama_cpp_2::LogOptions::default().with_logs_enabled(enabled),
            );
            LlamaBackend::init().map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(|e| EngineError::Stopped(Some(format!("llama.cpp backend init failed: {e}"))))
}

impl LlamaEngine {
    /// Checks the files, then loads the model (and adapter) on a new engine thread. Returns once
    /// the model is ready or failed to load.
    pub fn load(config: LlamaConfig) -> Result<LlamaEngine, EngineError> {
        let model_info = gguf::read(&config.model).map_err(EngineError::Model)?;
        if model_info.is_adapter() {
            return Err(EngineError::Model(gguf::GgufError::Invalid {
                path: config.model.clone(),
                reason: "this is a LoRA adapter, not a model; pass it as the adapter".into(),
            }));
        }
        if let Some(adapter) = &config.adapter {
            check_adapter(adapter, &model_info)?;
        }
        let markup = Markup::detect(model_info.architecture(), model_info.chat_template());
        let info = BackendInfo {
            backend: "embedded".into(),
            model: config.model.display().to_string(),
            adapter: config.adapter.as_ref().map(|p| p.display().to_string()),
            code_from_base: config.code_from_base && config.adapter.is_some(),
            markup,
            n_ctx: config.n_ctx as usize,
        };
        let counters = Arc::new(Counters::default());
        let (jobs_tx, jobs_rx) = mpsc::channel();
        let (ready_tx, ready_rx) = mpsc::channel();
        let thread_counters = counters.clone();
        let thread = std::thread::Builder::new()
            .name("clarifycoder-engine".into())
            .spawn(move || engine_thread(config, markup, jobs_rx, ready_tx, thread_counters))
            .map_err(|e| EngineError::Stopped(Some(format!("cannot start engine thread: {e}"))))?;
        match ready_rx.recv() {
            Ok(Ok(())) => Ok(LlamaEngine {
                jobs: jobs_tx,
                info,
                counters,
                thread: Some(thread),
            }),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(EngineError::Stopped(Some(
                "engine thread died while loading".into(),
            ))),
        }
    }

    /// Tokens of `prompt` (as any prompt: BOS, special tokens parsed) and of `continuation` as
    /// the model would produce it after that prompt; the rule `score` uses. The trainer
    /// tokenizes its training pairs with it.
    pub fn tokenize_pair(
        &self,
        prompt: &str,
        continuation: &str,
    ) -> Result<(Vec<u32>, Vec<u32>), EngineError> {
        self.call(|tx| Job::TokenizePair(prompt.to_string(), continuation.to_string(), tx))
    }

    /// Raw next-token logits after every position of `tokens` (one vector of vocabulary size per
    /// token), decoded from an empty cache. For parity checks against other implementations.
    pub fn logits(&self, tokens: &[u32]) -> Result<Vec<Vec<f32>>, EngineError> {
        self.call(|tx| Job::Logits(tokens.to_vec(), tx))
    }

    fn call<T>(&self, make: impl FnOnce(Reply<T>) -> Job) -> Result<T, EngineError> {
        let (tx, rx) = mpsc::channel();
        self.jobs
            .send(make(tx))
            .map_err(|_| EngineError::Stopped(None))?;
        rx.recv()
            .map_err(|_| EngineError::Stopped(Some("the engine thread panicked".into())))?
    }
}

/// Checks that the adapter at `path` fits the model: an adapter, for the model's architecture, and
/// each `<tensor>.lora_a` [in, r] and `.lora_b` [r, out] (GGUF order) shaped for the model's
/// `<tensor>` [in, out], as llama.cpp requires (its own refusal gives no reason).
pub fn check_adapter(path: &Path, model: &gguf::GgufInfo) -> Result<(), EngineError> {
    let info = gguf::read(path).map_err(|e| EngineError::Adapter(e.to_string()))?;
    if !info.is_adapter() {
        return Err(EngineError::Adapter(format!(
            "'{}' is not a LoRA adapter (general.type is not \"adapter\")",
            path.display()
        )));
    }
    if let (Some(a), Some(m)) = (info.architecture(), model.architecture()) {
        if a != m {
            return Err(EngineError::Adapter(format!(
                "'{}' was trained for architecture '{a}' but the model is '{m}'",
                path.display()
            )));
        }
    }
    let model_dims: HashMap<&str, &[u64]> = model
        .tensors
        .iter()
        .map(|t| (t.name.as_str(), t.dims.as_slice()))
        .collect();
    for t in &info.tensors {
        let Some((base, part @ ("lora_a" | "lora_b"))) = t.name.rsplit_once('.') else {
            continue;
        };
        let other_base = |what: String| {
            EngineError::Adapter(format!(
                "'{}' was made for another base model than '{}': {what}",
                path.display(),
                model.path.display()
            ))
        };
        let Some(dims) = model_dims.get(base) else {
            return Err(other_base(format!(
                "it adapts {base}, which the model does not have"
            )));
        };
        let fits = match (part, t.dims.as_slice()) {
            ("lora_a", [n_in, _]) => dims.first() == Some(n_in),
            (_, [_, n_out]) => dims.get(1) == Some(n_out),
            _ => false,
        };
        if !fits {
            return Err(other_base(format!(
                "its {} has shape {:?}, which does not fit the model's {base} of shape {dims:?}",
                t.name, t.dims
            )));
        }
    }
    Ok(())
}

impl Backend for LlamaEngine {
    fn info(&self) -> &BackendInfo {
        &self.info
    }

    fn decide(
        &self,
        prompts: &[Prompt],
        cancel: &CancelToken,
    ) -> Result<Vec<Decision>, EngineError> {
        if prompts.is_empty() {
            return Ok(Vec::new());
        }
        self.call(|tx| Job::Decide(prompts.to_vec(), cancel.clone(), tx))
    }

    fn generate(
        &self,
        request: &GenerateRequest,
        cancel: &CancelToken,
    ) -> Result<Generation, EngineError> {
        self.call(|tx| Job::Generate(request.clone(), cancel.clone(), tx))
    }

    fn score(
        &self,
        prompt: &str,
        continuation: &str,
        cancel: &CancelToken,
    ) -> Result<Score, EngineError> {
        self.call(|tx| {
            Job::Score(
                prompt.to_string(),
                continuation.to_string(),
                cancel.clone(),
                tx,
            )
        })
    }

    fn stats(&self) -> Stats {
        self.counters.snapshot()
    }
}

fn engine_thread(
    config: LlamaConfig,
    markup: Markup,
    jobs: mpsc::Receiver<Job>,
    ready: mpsc::Sender<Result<(), EngineError>>,
    counters: Arc<Counters>,
) {
    let (model, mut adapter) = match load_model(&config) {
        Ok(parts) => parts,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    let mut state = match State::new(&model, &config, markup, adapter.as_mut(), counters) {
        Ok(s) => s,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    let _ = ready.send(Ok(()));
    // Jobs taken from the channel but not served yet (generation admits them in order).
    let mut queue = VecDeque::new();
    loop {
        let Some(job) = queue.pop_front().or_else(|| jobs.recv().ok()) else {
            return;
        };
        // A panic inside llama.cpp bindings leaves the context in an unknown state: answer the
        // caller, then stop; the owner restarts the engine.
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| match job {
            Job::Decide(prompts, cancel, reply) => {
                let _ = reply.send(state.decide(&prompts, &cancel));
            }
            job @ Job::Generate(..) => {
                queue.push_front(job);
                state.run_generations(&jobs, &mut queue);
            }
            Job::Score(p, c, cancel, reply) => {
                let _ = reply.send(state.score(&p, &c, &cancel));
            }
            Job::TokenizePair(p, c, reply) => {
                let (pt, ct) = state.tokenize_pair(&p, &c);
                let ids = |t: Vec<LlamaToken>| t.into_iter().map(|t| t.0 as u32).collect();
                let _ = reply.send(Ok((ids(pt), ids(ct))));
            }
            Job::Logits(tokens, reply) => {
                let _ = reply.send(state.all_logits(&tokens));
            }
        }));
        if outcome.is_err() {
            return;
        }
    }
}

type Loaded = (LlamaModel, Option<llama_cpp_2::model::LlamaLoraAdapter>);

fn load_model(config: &LlamaConfig) -> Result<Loaded, EngineError> {
    let backend = backend()?;
    let placement = placement(config.gpu_layers);
    tracing::info!("embedded engine: {} on {placement}", config.model.display());
    let layers = match placement {
        Placement::Cpu => 0,
        Placement::Gpu { layers, .. } => layers,
    };
    let params = LlamaModelParams::default().with_n_gpu_layers(layers);
    let mut model = LlamaModel::load_from_file(backend, &config.model, &params).map_err(|e| {
        EngineError::Load {
            path: config.model.clone(),
            reason: e.to_string(),
        }
    })?;
    let adapter = match &config.adapter {
        Some(path) => Some(model.lora_adapter_init(path).map_err(|e| {
            EngineError::Adapter(format!("llama.cpp rejected '{}': {e}", path.display()))
        })?),
        None => None,
    };
    Ok((model, adapter))
}

/// Everything the engine thread keeps between jobs.
struct State<'m> {
    model: &'m LlamaModel,
    ctx: LlamaContext<'m>,
    counters: Arc<Counters>,
    /// Tokens of the cached instruction prefix in sequence 0 (BOS included).
    prefix: Vec<LlamaToken>,
    /// `code_start[t]`: token t begins a code fence.
    code_start: Vec<bool>,
    n_ctx: usize,
    n_batch: usize,
    /// Working sequences are 1..=lanes.
    lanes: usize,
    /// A second context without the adapter ([`LlamaConfig::code_from_base`]), its prefix in
    /// sequence 0 too. A generation that switches to it swaps it with `ctx` and back.
    base: Option<LlamaContext<'m>>,
    /// [`LlamaConfig::batch_invariant`].
    batch_invariant: bool,
    /// Prompts decided lately, oldest first, whose KV cells stay in their own sequences (after
    /// the working sequences and the padding one) while room allows: the questions about a
    /// flagged function, and the next version of a function being edited, start from them.
    kept: VecDeque<Kept>,
    /// `ctx` is the base context ([`State::swap_base`]); the kept prompts are in the other one.
    swapped: bool,
}

/// A prompt whose KV cells are kept in sequence `seq` ([`State::kept`]), and the model's
/// probability of asking about it.
struct Kept {
    seq: i32,
    tokens: Vec<LlamaToken>,
    p_ask: f32,
}

/// A kept prompt that the model would likely ask about ([`Kept::p_ask`] at least this) is
/// forgotten only when no other is left: its questions are what is asked for next.
const LIKELY_ASKED: f32 = 0.5;

/// How many decided prompts [`State::kept`] holds at most: a `check` chunk's.
const KEEP: usize = 8;

/// The share of the context that [`State::kept`] may take: kept cells widen every later
/// decode's attention, so they stay a fraction of it.
const KEEP_CONTEXT_SHARE: usize = 4;

impl<'m> State<'m> {
    fn new(
        model: &'m LlamaModel,
        config: &LlamaConfig,
        markup: Markup,
        adapter: Option<&mut llama_cpp_2::model::LlamaLoraAdapter>,
        counters: Arc<Counters>,
    ) -> Result<State<'m>, EngineError> {
        let backend = backend()?;
        let threads = if config.threads == 0 {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2)
        } else {
            config.threads
        } as i32;
        let lanes = config.batch_prompts.clamp(1, 16);
        // On the CPU means on the CPU: otherwise a CUDA build still sends every batch of 32
        // tokens or more to the GPU (llama.cpp's operation offload), which is not what
        // `gpu_layers = 0` asks for, and made gpu-check's "CPU" logits the GPU's.
        let on_gpu = matches!(placement(config.gpu_layers), Placement::Gpu { .. });
        let n_ctx = config.n_ctx.max(256);
        let n_batch = n_ctx.min(2048);
        let params = LlamaContextParams::default()
            .with_n_ctx(NonZeroU32::new(n_ctx))
            .with_n_batch(n_batch)
            .with_n_ubatch(n_batch.min(512))
            .with_n_seq_max((lanes + 2 + KEEP) as u32)
            .with_n_threads(threads)
            .with_n_threads_batch(threads)
            .with_kv_unified(true)
            .with_swa_full(true)
            .with_op_offload(on_gpu)
            .with_offload_kqv(on_gpu);
        let params = if config.exact_kv {
            params
                .with_type_k(KvCacheType::F32)
                .with_type_v(KvCacheType::F32)
        } else {
            params
        };
        let new_context = || {
            model
                .new_context(backend, params.clone())
                .map_err(|e| EngineError::Load {
                    path: config.model.clone(),
                    reason: format!("cannot create a context of {n_ctx} tokens: {e}"),
                })
        };
        let mut ctx = new_context()?;
        let base = if config.code_from_base && adapter.is_some() {
            Some(new_context()?)
        } else {
            None
        };
        if let Some(adapter) = adapter {
            ctx.lora_adapter_set(adapter, config.adapter_scale)
                .map_err(|e| {
                    EngineError::Adapter(format!("llama.cpp could not apply the adapter: {e}"))
                })?;
        }
        let vocab = model.vocab();
        let code_start = (0..vocab.n_tokens())
            .map(|t| {
                let piece = vocab.token_to_piece(LlamaToken(t), false, None);
                prompt::piece_begins_code(&String::from_utf8_lossy(&piece))
            })
            .collect();
        let mut state = State {
            model,
            ctx,
            counters,
            prefix: Vec::new(),
            code_start,
            n_ctx: n_ctx as usize,
            n_batch: n_batch as usize,
            lanes,
            base,
            batch_invariant: config.batch_invariant,
            kept: VecDeque::new(),
            swapped: false,
        };
        let prefix_text = prompt::round1(markup, "").prefix().to_string();
        let prefix = state.tokenize(&prefix_text);
        state.decode_into(0, &prefix, 0, &CancelToken::new())?;
        if state.base.is_some() {
            state.swap_base();
            let decoded = state.decode_into(0, &prefix, 0, &CancelToken::new());
            state.swap_base();
            decoded?;
        }
        state.prefix = prefix;
        Ok(state)
    }

    /// Swaps `ctx` with the base context (a no-op without one).
    fn swap_base(&mut self) {
        if let Some(base) = self.base.as_mut() {
            std::mem::swap(&mut self.ctx, base);
            self.swapped = !self.swapped;
        }
    }

    fn tokenize(&self, text: &str) -> Vec<LlamaToken> {
        self.model.vocab().tokenize(text.as_bytes(), true, true)
    }

    /// The prompt's tokens and the continuation's as they follow it: the continuation is
    /// tokenized in context (a SentencePiece tokenizer would otherwise add a space prefix), unless
    /// the boundary merges into one token, which generation after the prompt cannot produce; then
    /// it is tokenized on its own.
    fn tokenize_pair(
        &self,
        prompt: &str,
        continuation: &str,
    ) -> (Vec<LlamaToken>, Vec<LlamaToken>) {
        let prompt_tokens = self.tokenize(prompt);
        let joint = self.tokenize(&format!("{prompt}{continuation}"));
        let rest = if joint.len() >= prompt_tokens.len() && joint.starts_with(&prompt_tokens) {
            joint[prompt_tokens.len()..].to_vec()
        } else {
            self.model
                .vocab()
                .tokenize(continuation.as_bytes(), false, true)
        };
        (prompt_tokens, rest)
    }

    /// Prepares working sequence `seq` for `tokens`: reuses the cached prefix when `tokens` starts
    /// with it, and then the longest beginning it shares with a kept prompt ([`State::kept`]).
    /// Returns the position from which tokens still need decoding.
    fn prepare_seq(&mut self, seq: i32, tokens: &[LlamaToken]) -> Result<usize, EngineError> {
        self.ctx
            .clear_kv_cache_seq(Some(seq as u32), None, None)
            .map_err(kv_error)?;
        if self.own_cells(tokens) == tokens.len() {
            return Ok(0);
        }
        self.ctx
            .copy_kv_cache_seq(0, seq, None, None)
            .map_err(kv_error)?;
        let start = self.prefix.len();
        Counters::add(&self.counters.reused_tokens, start as u64);
        if self.swapped {
            return Ok(start);
        }
        // A kept prompt whose early cells a sliding-window layer has reused (its first position
        // is no longer 0) cannot lend them.
        while let Some(i) = self
            .kept
            .iter()
            .position(|k| self.ctx.kv_cache_seq_pos_min(k.seq) != 0)
        {
            let gone = self.kept.remove(i).expect("found above");
            let _ = self
                .ctx
                .clear_kv_cache_seq(Some(gone.seq as u32), None, None);
        }
        let best = self
            .kept
            .iter()
            .enumerate()
            .map(|(i, k)| (i, common_prefix(&k.tokens, tokens).min(tokens.len() - 1)))
            .max_by_key(|&(_, n)| n)
            .filter(|&(_, n)| n >= start + MIN_SHARED);
        let Some((i, n)) = best else {
            return Ok(start);
        };
        let kept = self.kept.remove(i).expect("found above");
        let copied = self
            .ctx
            .copy_kv_cache_seq(kept.seq, seq, Some(start as u32), Some(n as u32));
        self.kept.push_back(kept);
        copied.map_err(kv_error)?;
        Counters::add(&self.counters.reused_tokens, (n - start) as u64);
        Ok(n)
    }

    /// KV cells a prompt's sequence holds beyond those of the cached prefix.
    fn own_cells(&self, tokens: &[LlamaToken]) -> usize {
        if !self.prefix.is_empty()
            && tokens.len() > self.prefix.len()
            && tokens.starts_with(&self.prefix)
        {
            tokens.len() - self.prefix.len()
        } else {
            tokens.len()
        }
    }

    /// KV cells the kept prompts may hold (some are shared, so this is at most what they do).
    fn kept_cells(&self) -> usize {
        self.kept.iter().map(|k| self.own_cells(&k.tokens)).sum()
    }

    /// Keeps the prompt decoded in working sequence `seq` ([`State::kept`]), whose probability
    /// of asking is `p_ask`, forgetting others to make room ([`State::forget_one`]).
    fn keep(&mut self, seq: i32, tokens: &[LlamaToken], p_ask: f32) {
        // Cells decoded in a batch of prompts would tie a generation to that batch's rounding.
        if self.batch_invariant {
            return;
        }
        if let Some(i) = self.kept.iter().position(|k| k.tokens == tokens) {
            let mut again = self.kept.remove(i).expect("found above");
            again.p_ask = p_ask;
            self.kept.push_back(again);
            return;
        }
        let budget = self.n_ctx / KEEP_CONTEXT_SHARE;
        let cells = self.own_cells(tokens);
        if cells == tokens.len() || cells > budget || self.ctx.kv_cache_seq_pos_min(seq) != 0 {
            return;
        }
        while self.kept.len() >= KEEP || self.kept_cells() + cells > budget {
            self.forget_one();
        }
        let free = (0..KEEP as i32)
            .map(|i| (self.lanes + 2) as i32 + i)
            .find(|s| self.kept.iter().all(|k| k.seq != *s))
            .expect("fewer than KEEP are kept");
        if self.ctx.copy_kv_cache_seq(seq, free, None, None).is_ok() {
            self.kept.push_back(Kept {
                seq: free,
                tokens: tokens.to_vec(),
                p_ask,
            });
        }
    }

    /// Frees one kept prompt's cells: the oldest of those the model would likely not ask about,
    /// else the oldest. False when none is kept.
    ///
    /// `check` decides eight functions, then asks about the flagged ones. Eight long docstrings'
    /// prompts outgrow the kept cells, and forgetting the oldest first dropped the early flagged
    /// ones, whose questions then prefilled their prompt again.
    fn forget_one(&mut self) -> bool {
        let i = self
            .kept
            .iter()
            .position(|k| k.p_ask < LIKELY_ASKED)
            .unwrap_or(0);
        let Some(kept) = self.kept.remove(i) else {
            return false;
        };
        Counters::add(&self.counters.forgotten_prompts, 1);
        let _ = self
            .ctx
            .clear_kv_cache_seq(Some(kept.seq as u32), None, None);
        true
    }

    /// Decodes `tokens` into sequence `seq` starting at position `start`, in chunks of the batch
    /// size, with logits for the last token only.
    fn decode_into(
        &mut self,
        seq: i32,
        tokens: &[LlamaToken],
        start: usize,
        cancel: &CancelToken,
    ) -> Result<(), EngineError> {
        // With `batch_invariant`, chunks stay under llama.cpp's 64-row attention tile (whose
        // rounding depends on where other sequences' KV cells lie) and are padded to a multiple
        // of four rows, like the generation steps.
        let chunk_len = if self.batch_invariant {
            PREFILL_CHUNK
        } else {
            self.n_batch
        };
        let mut batch = LlamaBatch::new(self.n_batch.max(PREFILL_CHUNK), 1);
        let pad = (self.lanes + 1) as i32;
        let mut pos = start;
        for chunk in tokens.chunks(chunk_len) {
            cancel.check()?;
            batch.clear();
            for (i, &t) in chunk.iter().enumerate() {
                let last = pos + i + 1 == start + tokens.len();
                batch
                    .add(t, (pos + i) as i32, &[seq], last)
                    .map_err(|e| EngineError::Inference(e.to_string()))?;
            }
            let pad_rows = if self.batch_invariant {
                chunk.len().div_ceil(ROW_GROUP) * ROW_GROUP - chunk.len()
            } else {
                0
            };
            for p in 0..pad_rows {
                batch
                    .add(chunk[0], p as i32, &[pad], false)
                    .map_err(|e| EngineError::Inference(e.to_string()))?;
            }
            let decoded = self.decode(&mut batch);
            if pad_rows > 0 {
                let _ = self.ctx.clear_kv_cache_seq(Some(pad as u32), None, None);
            }
            decoded?;
            Counters::add(&self.counters.prompt_tokens, chunk.len() as u64);
            pos += chunk.len();
        }
        Ok(())
    }

    fn decode(&mut self, batch: &mut LlamaBatch) -> Result<(), EngineError> {
        Counters::add(&self.counters.decode_calls, 1);
        self.ctx
            .decode(batch)
            .map_err(|e| EngineError::Inference(e.to_string()))
    }

    fn all_logits(&mut self, tokens: &[u32]) -> Result<Vec<Vec<f32>>, EngineError> {
        self.check_fits(tokens.len())?;
        if tokens.len() > self.n_batch {
            return Err(EngineError::Unsupported(format!(
                "logits of at most {} tokens at once",
                self.n_batch
            )));
        }
        let n_vocab = self.model.vocab().n_tokens() as u32;
        if let Some(bad) = tokens.iter().find(|&&t| t >= n_vocab) {
            return Err(EngineError::Inference(format!(
                "token {bad} is outside the vocabulary of {n_vocab}"
            )));
        }
        while self.forget_one() {}
        let seq = 1;
        self.ctx
            .clear_kv_cache_seq(Some(seq as u32), None, None)
            .map_err(|e| EngineError::Inference(e.to_string()))?;
        let mut batch = LlamaBatch::new(self.n_batch, 1);
        for (p, &t) in tokens.iter().enumerate() {
            batch
                .add(LlamaToken(t as i32), p as i32, &[seq], true)
                .map_err(|e| EngineError::Inference(e.to_string()))?;
        }
        self.decode(&mut batch)?;
        let out = (0..tokens.len())
            .map(|i| self.ctx.get_logits_ith(i as i32).to_vec())
            .collect();
        let _ = self.ctx.clear_kv_cache_seq(Some(seq as u32), None, None);
        Ok(out)
    }

    fn check_fits(&self, tokens: usize) -> Result<(), EngineError> {
        // Sequence 0 (the prefix) is resident too.
        let max = self.n_ctx.saturating_sub(self.prefix.len() + 1);
        if tokens > max {
            return Err(EngineError::PromptTooLong { tokens, max });
        }
        Ok(())
    }

    fn p_code(&self, logits: &[f32]) -> f32 {
        let log_z = log_normaliser(logits);
        let mass: f64 = logits
            .iter()
            .zip(&self.code_start)
            .filter(|(_, &is_code)| is_code)
            .map(|(&l, _)| ((l - log_z) as f64).exp())
            .sum();
        mass as f32
    }

    fn decide(
        &mut self,
        prompts: &[Prompt],
        cancel: &CancelToken,
    ) -> Result<Vec<Decision>, EngineError> {
        let tokenized: Vec<Vec<LlamaToken>> =
            prompts.iter().map(|p| self.tokenize(&p.text)).collect();
        for t in &tokenized {
            self.check_fits(t.len())?;
        }
        let mut out = Vec::with_capacity(prompts.len());
        let mut next = 0;
        while next < tokenized.len() {
            let decided = self.decide_group(&tokenized, &mut next, cancel);
            if decided.is_err() {
                // A group that failed part way may hold cells in any working sequence.
                for seq in 1..=self.lanes as u32 {
                    let _ = self.ctx.clear_kv_cache_seq(Some(seq), None, None);
                }
            }
            out.extend(decided?);
        }
        Counters::add(&self.counters.decided, prompts.len() as u64);
        Ok(out)
    }

    /// Decides the next group of `tokenized` from `*next` on: as many prompts as there are lanes
    /// and fit into the KV cache and one batch, one working sequence each.
    fn decide_group(
        &mut self,
        tokenized: &[Vec<LlamaToken>],
        next: &mut usize,
        cancel: &CancelToken,
    ) -> Result<Vec<Decision>, EngineError> {
        cancel.check()?;
        let mut group: Vec<Member> = Vec::new();
        let mut batch_used = 0;
        while *next < tokenized.len() && group.len() < self.lanes {
            let seq = group.len() as i32 + 1;
            let tokens = &tokenized[*next];
            let start = self.prepare_seq(seq, tokens)?;
            // A prompt that begins like an earlier one of the group (a docstring's summary read
            // after the whole docstring) takes that prompt's cells for the common part.
            let shared = group
                .iter()
                .filter(|m| m.shared.is_none())
                .map(|m| (m.seq, common_prefix(&tokenized[m.index], tokens)))
                .max_by_key(|&(_, n)| n)
                .map(|(from, n)| (from, n.min(tokens.len() - 1)))
                .filter(|&(_, n)| n >= start + MIN_SHARED);
            // Rows count the prompt from where the cache leaves it (the instruction prefix, a
            // kept prompt's beginning), also what it may share with a batch-mate, which may turn
            // out to be gone (see `pass`). Cells count it whole after the instruction prefix: a
            // kept prompt may be forgotten while it is in use.
            let rows = tokens.len() - start;
            let cells = self.own_cells(tokens);
            let in_group = self.prefix.len() + group.iter().map(|m| m.cells).sum::<usize>();
            if !group.is_empty()
                && (batch_used + rows > self.n_batch || in_group + cells > self.n_ctx)
            {
                let _ = self.ctx.clear_kv_cache_seq(Some(seq as u32), None, None);
                break;
            }
            while in_group + self.kept_cells() + cells > self.n_ctx && self.forget_one() {}
            batch_used += rows;
            group.push(Member {
                seq,
                index: *next,
                start,
                shared,
                cells,
            });
            *next += 1;
        }
        let mut decided = vec![None; group.len()];
        if group.len() == 1 && batch_used > self.n_batch {
            // One long prompt: decode in chunks.
            let Member {
                seq, index, start, ..
            } = group[0];
            let tokens = tokenized[index][start..].to_vec();
            self.decode_into(seq, &tokens, start, cancel)?;
            decided[0] = Some(Decision::from_p_code(
                self.p_code(self.ctx.get_logits_ith(-1)),
            ));
        } else {
            // Two passes at most: the prompts that share nothing, then the rest of those that
            // share a beginning with one of them.
            for second in [false, true] {
                let members: Vec<usize> = (0..group.len())
                    .filter(|&i| group[i].shared.is_some() == second)
                    .collect();
                self.pass(tokenized, &group, &members, &mut decided)?;
            }
        }
        for (m, d) in group.iter().zip(&decided) {
            if let (None, Some(d)) = (m.shared, d) {
                self.keep(m.seq, &tokenized[m.index], d.p_ask);
            }
            let _ = self.ctx.clear_kv_cache_seq(Some(m.seq as u32), None, None);
        }
        Ok(decided.into_iter().flatten().collect())
    }

    /// Decodes `members` of a [`State::decide_group`] group in one batch and puts their decisions
    /// into `decided`. A member that shares a beginning copies those cells first, unless a
    /// sliding-window layer has already reused some of them (the source's first position is no
    /// longer 0); then it decodes from its own start.
    fn pass(
        &mut self,
        tokenized: &[Vec<LlamaToken>],
        group: &[Member],
        members: &[usize],
        decided: &mut [Option<Decision>],
    ) -> Result<(), EngineError> {
        if members.is_empty() {
            return Ok(());
        }
        let mut from_of = Vec::with_capacity(members.len());
        for &i in members {
            let Member {
                seq, start, shared, ..
            } = group[i];
            let from = match shared {
                Some((source, n)) if self.ctx.kv_cache_seq_pos_min(source) == 0 => {
                    self.ctx
                        .copy_kv_cache_seq(source, seq, Some(start as u32), Some(n as u32))
                        .map_err(kv_error)?;
                    Counters::add(&self.counters.reused_tokens, (n - start) as u64);
                    n
                }
                _ => start,
            };
            from_of.push(from);
        }
        let rows: usize = members
            .iter()
            .zip(&from_of)
            .map(|(&i, &from)| tokenized[group[i].index].len() - from)
            .sum();
        let mut batch = LlamaBatch::new(rows.max(1), 1);
        let mut last_index = Vec::with_capacity(members.len());
        for (&i, &from) in members.iter().zip(&from_of) {
            let tokens = &tokenized[group[i].index];
            for (pos, &t) in tokens.iter().enumerate().skip(from) {
                let last = pos + 1 == tokens.len();
                batch
                    .add(t, pos as i32, &[group[i].seq], last)
                    .map_err(|e| EngineError::Inference(e.to_string()))?;
            }
            last_index.push((i, batch.n_tokens() - 1));
        }
        self.decode(&mut batch)?;
        Counters::add(&self.counters.prompt_tokens, rows as u64);
        for (i, row) in last_index {
            decided[i] = Some(Decision::from_p_code(
                self.p_code(self.ctx.get_logits_ith(row)),
            ));
        }
        Ok(())
    }

    /// Serves generation jobs with continuous batching: up to `lanes` sequences are in flight,
    /// each step decodes the next token of all of them in one call (one per context when some
    /// have switched to the base context), and a finished sequence frees its lane for the next
    /// job. Jobs are taken from `queue`, then from `jobs` without waiting; a job of another kind
    /// stops admission, so it waits only for the generations already running. Returns when no
    /// generation is left.
    fn run_generations(&mut self, jobs: &mpsc::Receiver<Job>, queue: &mut VecDeque<Job>) {
        let mut slots: Vec<Slot> = Vec::new();
        let mut free: Vec<i32> = (1..=self.lanes as i32).rev().collect();
        loop {
            // 1. Admit new jobs while a lane and room in the KV cache are free.
            while !free.is_empty() {
                if queue.is_empty() {
                    match jobs.try_recv() {
                        Ok(job) => queue.push_back(job),
                        Err(_) => break,
                    }
                }
                let Some(Job::Generate(..)) = queue.front() else {
                    break;
                };
                let Some(Job::Generate(req, cancel, reply)) = queue.pop_front() else {
                    unreachable!("the front is a generation job")
                };
                let tokens = self.tokenize(&req.prompt.text);
                if let Err(e) = self.check_fits(tokens.len() + req.max_tokens.min(1)) {
                    let _ = reply.send(Err(e));
                    continue;
                }
                let reserve = self.reserve(&tokens, req.max_tokens);
                let in_use = |state: &Self| {
                    state.prefix.len()
                        + state.kept_cells()
                        + slots.iter().map(|s| s.reserve).sum::<usize>()
                };
                while in_use(self) + reserve > self.n_ctx && self.forget_one() {}
                if !slots.is_empty() && in_use(self) + reserve > self.n_ctx {
                    queue.push_front(Job::Generate(req, cancel, reply));
                    break;
                }
                Counters::add(&self.counters.generations, 1);
                let seq = free.pop().expect("a free lane");
                let mut slot = Slot::new(seq, req, cancel, reply, tokens, reserve);
                match self.start(&mut slot) {
                    Ok(None) => slots.push(slot),
                    Ok(Some(finish)) => self.finish(slot, Ok(finish), &mut free),
                    Err(e) => self.finish(slot, Err(e), &mut free),
                }
            }
            if slots.is_empty() {
                return;
            }
            // 2. One step: decode every sequence's last token, per context, and sample the next.
            for on_base in [false, true] {
                if !slots.iter().any(|s| s.on_base == on_base) {
                    continue;
                }
                let stepped = self.with_context(on_base, |state| state.step(&mut slots, on_base));
                if let Err(e) = stepped {
                    for slot in slots.drain(..) {
                        let error = EngineError::Inference(e.to_string());
                        self.finish(slot, Err(error), &mut free);
                    }
                    return;
                }
            }
            let mut i = 0;
            while i < slots.len() {
                if let Some(outcome) = slots[i].outcome.take() {
                    let slot = slots.swap_remove(i);
                    self.finish(slot, outcome, &mut free);
                } else {
                    i += 1;
                }
            }
        }
    }

    /// KV cells a sequence may need: its prompt after the shared prefix (also the part it may
    /// share with a kept prompt, which may be forgotten while it runs) and its tokens.
    fn reserve(&self, tokens: &[LlamaToken], max_tokens: usize) -> usize {
        (self.own_cells(tokens) + max_tokens + 1).min(self.n_ctx)
    }

    /// Runs `f` with `ctx` being the base context when `on_base` (see [`State::swap_base`]).
    fn with_context<T>(&mut self, on_base: bool, f: impl FnOnce(&mut Self) -> T) -> T {
        if on_base {
            self.swap_base();
        }
        let out = f(self);
        if on_base {
            self.swap_base();
        }
        out
    }

    /// Prefills a new slot's prompt and takes its first token. `Some` when it is already done.
    fn start(&mut self, slot: &mut Slot) -> Result<Option<FinishReason>, EngineError> {
        let start = self.prepare_seq(slot.seq, &slot.tokens)?;
        if start > self.prefix.len() && !self.swapped {
            // The kept prompt it starts from (`prepare_seq` moved it last) is being asked about
            // now: no longer a reason to keep it before others.
            if let Some(kept) = self.kept.back_mut() {
                kept.p_ask = 0.0;
            }
        }
        self.decode_into(slot.seq, &slot.tokens[start..], start, &slot.cancel)?;
        let Some(token) = self.next_token(slot, self.ctx.get_logits_ith(-1))? else {
            slot.outcome = None;
            return Ok(Some(FinishReason::Length));
        };
        if self.base.is_some() && self.code_start[token.0 as usize] {
            // The adapter chose to code: the base model writes the code, from the prompt and
            // this first token on.
            let _ = self
                .ctx
                .clear_kv_cache_seq(Some(slot.seq as u32), None, None);
            slot.on_base = true;
            self.with_context(true, |state| {
                let start = state.prepare_seq(slot.seq, &slot.tokens)?;
                state.decode_into(slot.seq, &slot.tokens[start..], start, &slot.cancel)
            })?;
        }
        Ok(self.accept(slot, token))
    }

    /// Decodes the pending token of every slot on this context in one batch and takes each
    /// one's next token; a finished slot gets its `outcome`.
    fn step(&mut self, slots: &mut [Slot], on_base: bool) -> Result<(), EngineError> {
        let mine = |s: &&mut Slot| s.on_base == on_base && s.outcome.is_none();
        let count = slots.iter_mut().filter(mine).count();
        if count == 0 {
            return Ok(());
        }
        let rows = if self.batch_invariant {
            count.div_ceil(ROW_GROUP) * ROW_GROUP
        } else {
            count
        };
        let mut batch = LlamaBatch::new(rows, 1);
        for slot in slots.iter_mut().filter(mine) {
            let token = slot.pending.expect("a running slot has a pending token");
            batch
                .add(token, slot.pos as i32, &[slot.seq], true)
                .map_err(|e| EngineError::Inference(e.to_string()))?;
            slot.pos += 1;
        }
        // llama.cpp's CPU kernels round differently by batch shape: repacked weights multiply
        // groups of four rows with one kernel and the rest with another, and a lone row's
        // attention is split over the KV cells. With `batch_invariant`, padding rows in a
        // sequence of their own bring every step to a multiple of four rows, so a sequence's next
        // token does not depend on what else runs beside it.
        let pad = (self.lanes + 1) as i32;
        for p in 0..rows - count {
            batch
                .add(self.prefix[0], p as i32, &[pad], false)
                .map_err(|e| EngineError::Inference(e.to_string()))?;
        }
        let decoded = self.decode(&mut batch);
        if rows > count {
            let _ = self.ctx.clear_kv_cache_seq(Some(pad as u32), None, None);
        }
        decoded?;
        for (i, slot) in slots.iter_mut().filter(mine).enumerate() {
            let logits = self.ctx.get_logits_ith(i as i32);
            match self.next_token(slot, logits) {
                Ok(Some(token)) => {
                    if let Some(finish) = self.accept(slot, token) {
                        slot.outcome = Some(Ok(finish));
                    }
                }
                Ok(None) => {}
                Err(e) => slot.outcome = Some(Err(e)),
            }
        }
        Ok(())
    }

    /// Samples a slot's next token from `logits`, or ends it (`None`, with its `outcome` set)
    /// when it has its tokens, the context is full, or it was cancelled.
    fn next_token(
        &self,
        slot: &mut Slot,
        logits: &[f32],
    ) -> Result<Option<LlamaToken>, EngineError> {
        if slot.produced >= slot.req.max_tokens || slot.pos + 1 >= self.n_ctx {
            slot.outcome = Some(Ok(FinishReason::Length));
            return Ok(None);
        }
        slot.cancel.check()?;
        let index = if slot.produced == 0 && slot.req.forbid_code_start {
            let mut masked = logits.to_vec();
            for (l, &is_code) in masked.iter_mut().zip(&self.code_start) {
                if is_code {
                    *l = f32::NEG_INFINITY;
                }
            }
            sample(&masked, slot.req.temperature, &mut slot.rng)
        } else {
            sample(logits, slot.req.temperature, &mut slot.rng)
        };
        Ok(Some(LlamaToken(index as i32)))
    }

    /// Appends a sampled token to the slot's text; `Some` when it ends the generation (an
    /// end-of-generation token or a stop string), otherwise it is pending for the next step.
    fn accept(&self, slot: &mut Slot, token: LlamaToken) -> Option<FinishReason> {
        let vocab = self.model.vocab();
        slot.produced += 1;
        if vocab.is_eog(token) {
            return Some(FinishReason::EndOfGeneration);
        }
        let text = &mut slot.text;
        let before = text.len();
        slot.partial.extend(vocab.token_to_piece(token, true, None));
        match std::str::from_utf8(&slot.partial) {
            Ok(piece) => text.push_str(piece),
            Err(e) if e.error_len().is_none() => {} // an incomplete character: wait
            Err(_) => text.push_str(&String::from_utf8_lossy(&slot.partial)),
        }
        if text.len() > before {
            slot.partial.clear();
            // Only the new text, and what a stop string could straddle, can hold a new match.
            let longest_stop = slot.req.stop.iter().map(String::len).max().unwrap_or(0);
            let mut from = before.saturating_sub(longest_stop);
            while !text.is_char_boundary(from) {
                from -= 1;
            }
            let tail = &text[from..];
            if let Some(cut) = slot
                .req
                .stop
                .iter()
                .filter_map(|s| tail.find(s.as_str()))
                .min()
            {
                text.truncate(from + cut);
                return Some(FinishReason::Stop);
            }
        }
        slot.pending = Some(token);
        None
    }

    /// Answers a slot's caller and frees its lane.
    fn finish(
        &mut self,
        mut slot: Slot,
        outcome: Result<FinishReason, EngineError>,
        free: &mut Vec<i32>,
    ) {
        let seq = Some(slot.seq as u32);
        let _ = self.ctx.clear_kv_cache_seq(seq, None, None);
        if slot.on_base {
            self.with_context(true, |state| {
                let _ = state.ctx.clear_kv_cache_seq(seq, None, None);
            });
        }
        free.push(slot.seq);
        Counters::add(&self.counters.generated_tokens, slot.produced as u64);
        let reply = outcome.map(|finish| {
            slot.text.push_str(&String::from_utf8_lossy(&slot.partial));
            Generation {
                text: std::mem::take(&mut slot.text),
                tokens: slot.produced,
                finish,
            }
        });
        let _ = slot.reply.send(reply);
    }

    fn score(
        &mut self,
        prompt_text: &str,
        continuation: &str,
        cancel: &CancelToken,
    ) -> Result<Score, EngineError> {
        Counters::add(&self.counters.scores, 1);
        let (prompt_tokens, rest) = self.tokenize_pair(prompt_text, continuation);
        let mut tokens = prompt_tokens.clone();
        tokens.extend(rest);
        self.check_fits(tokens.len())?;
        let first = prompt_tokens.len();
        if tokens.len() <= first {
            return Ok(Score {
                token_logprobs: Vec::new(),
                token_entropies: Vec::new(),
            });
        }
        // The longest prompt and continuation fit only in an empty cache.
        while self.forget_one() {}
        let seq = 1;
        let start = self.prepare_seq(seq, &tokens)?.min(first - 1);
        let mut token_logprobs = Vec::new();
        let mut token_entropies = Vec::new();
        let mut pos = start;
        let mut batch = LlamaBatch::new(self.n_batch, 1);
        if start > 0 {
            // Keep the copied prefix only up to `start`.
            let _ = self
                .ctx
                .clear_kv_cache_seq(Some(seq as u32), Some(start as u32), None);
        }
        while pos < tokens.len() - 1 {
            cancel.check()?;
            batch.clear();
            let end = (pos + self.n_batch).min(tokens.len() - 1);
            let mut want = Vec::new();
            for (p, &t) in tokens.iter().enumerate().take(end).skip(pos) {
                let need_logits = p + 1 >= first;
                batch
                    .add(t, p as i32, &[seq], need_logits)
                    .map_err(|e| EngineError::Inference(e.to_string()))?;
                if need_logits {
                    want.push((batch.n_tokens() - 1, tokens[p + 1]));
                }
            }
            self.decode(&mut batch)?;
            Counters::add(&self.counters.prompt_tokens, (end - pos) as u64);
            for (i, next) in want {
                let logits = self.ctx.get_logits_ith(i);
                let log_z = log_normaliser(logits);
                token_logprobs.push(logits[next.0 as usize] - log_z);
                token_entropies.push(entropy(logits, log_z));
            }
            pos = end;
        }
        let _ = self.ctx.clear_kv_cache_seq(Some(seq as u32), None, None);
        Ok(Score {
            token_logprobs,
            token_entropies,
        })
    }
}

/// A prompt of a [`State::decide`] group in its working sequence `seq`: `tokenized[index]`,
/// to be decoded from `start` (after the cached instruction prefix and what it shares with a
/// kept prompt), or, when `shared` is `(from, n)`, from `n` after copying positions `start..n`
/// from sequence `from`. It takes `cells` KV cells of its own.
#[derive(Clone, Copy)]
struct Member {
    seq: i32,
    index: usize,
    start: usize,
    shared: Option<(i32, usize)>,
    cells: usize,
}

/// The fewest tokens beyond the instruction prefix that [`State::decide`] shares between two
/// prompts of a group: below this, a second decode call costs more than the tokens saved.
const MIN_SHARED: usize = 8;

fn kv_error(e: impl std::fmt::Display) -> EngineError {
    EngineError::Inference(e.to_string())
}

fn common_prefix(a: &[LlamaToken], b: &[LlamaToken]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

/// With `batch_invariant`, rows of a generation step come in multiples of this ([`State::step`]).
const ROW_GROUP: usize = 4;

/// With `batch_invariant`, prompts are prefilled in chunks of at most this many rows: a multiple
/// of [`ROW_GROUP`] under llama.cpp's 64-row attention tile.
const PREFILL_CHUNK: usize = 60;

/// A generation in flight ([`State::run_generations`]).
struct Slot {
    seq: i32,
    req: GenerateRequest,
    cancel: CancelToken,
    reply: Reply<Generation>,
    /// The prompt's tokens.
    tokens: Vec<LlamaToken>,
    /// KV cells set aside for it.
    reserve: usize,
    /// Position of the next token to decode.
    pos: usize,
    /// Sampled, not yet decoded.
    pending: Option<LlamaToken>,
    produced: usize,
    text: String,
    /// Bytes of a UTF-8 character split across tokens, waiting for the rest.
    partial: Vec<u8>,
    rng: SplitMix64,
    /// Whether it runs on the base context ([`LlamaConfig::code_from_base`]).
    on_base: bool,
    /// Set when it ended during a step.
    outcome: Option<Result<FinishReason, EngineError>>,
}

impl Slot {
    fn new(
        seq: i32,
        req: GenerateRequest,
        cancel: CancelToken,
        reply: Reply<Generation>,
        tokens: Vec<LlamaToken>,
        reserve: usize,
    ) -> Slot {
        Slot {
            seq,
            rng: SplitMix64(req.seed ^ 0x9E37_79B9_7F4A_7C15),
            req,
            cancel,
            reply,
            pos: tokens.len(),
            tokens,
            reserve,
            pending: None,
            produced: 0,
            text: String::new(),
            partial: Vec::new(),
            on_base: false,
            outcome: None,
        }
    }
}

/// Greedy (temperature 0) or temperature sampling.
fn sample(logits: &[f32], temperature: f32, rng: &mut SplitMix64) -> usize {
    let argmax = || {
        logits
            .iter()
            .enumerate()
            .fold((0, f32::NEG_INFINITY), |best, (i, &l)| {
                if l > best.1 {
                    (i, l)
                } else {
                    best
                }
            })
            .0
    };
    if temperature <= 0.0 {
        return argmax();
    }
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let weights: Vec<f64> = logits
        .iter()
        .map(|&l| (((l - max) / temperature) as f64).exp())
        .collect();
    let total: f64 = weights.iter().sum();
    let mut target = rng.next_f64() * total;
    for (i, w) in weights.iter().enumerate() {
        target -= w;
        if target <= 0.0 {
            return i;
        }
    }
    argmax()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_placement_names_the_device_and_the_layers() {
        let device = GpuDevice {
            name: "CUDA0".into(),
            description: "NVIDIA H200".into(),
            memory_total: 150_000_000_000,
        };
        let all = Placement::Gpu {
            device: device.clone(),
            layers: ALL_LAYERS,
        };
        assert_eq!(
            all.to_string(),
            "CUDA0 (NVIDIA H200, 139.7 GiB), all layers"
        );
        let some = Placement::Gpu { device, layers: 12 };
        assert_eq!(
            some.to_string(),
            "CUDA0 (NVIDIA H200, 139.7 GiB), 12 layers"
        );
        assert_eq!(Placement::Cpu.to_string(), "CPU");
    }

    #[test]
    fn gpu_layers_zero_is_the_cpu_in_any_build() {
        assert_eq!(placement(0), Placement::Cpu);
        assert_eq!(LlamaConfig::new("m.gguf").gpu_layers, DEFAULT_GPU_LAYERS);
    }

    /// Dropping the engine returns once its thread has freed the context and the model (the
    /// thread holds the only other reference to the counters), so nothing is freed while the
    /// process exits.
    #[test]
    fn dropping_the_engine_waits_until_its_thread_has_freed_the_model() {
        let model = crate::models::GEMMA3_270M
            .installed_path()
            .unwrap_or_else(|e| panic!("{e}"));
        let mut config = LlamaConfig::new(model);
        config.adapter = None;
        config.gpu_layers = 0;
        let engine = LlamaEngine::load(config).expect("the model loads");
        let counters = engine.counters.clone();
        assert_eq!(Arc::strong_count(&counters), 3);
        drop(engine);
        assert_eq!(Arc::strong_count(&counters), 1);
    }

    /// The CPU build behaves as before the CUDA build existed: nothing offloaded, nothing found.
    #[cfg(not(feature = "cuda"))]
    #[test]
    fn without_cuda_the_engine_runs_on_the_cpu_whatever_gpu_layers_says() {
        assert_eq!(DEFAULT_GPU_LAYERS, 0);
        assert_eq!(placement(ALL_LAYERS), Placement::Cpu);
        assert!(gpu_devices().is_empty());
    }
}
