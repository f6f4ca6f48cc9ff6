#!/usr/bin/env bash
# PyTorch + PEFT reference for the LoRA training benchmark (see scripts/bench_train_torch.py).
#
#   scripts/bench-train-torch.sh                 # only set up .venv-bench (idempotent, fast when done)
#   scripts/bench-train-torch.sh --tokens T.jsonl --steps 10 --rank 8 --alpha 16 \
#       --targets q,k,v,o,gate,up,down --lr 1e-4 --threads 2 [--model GGUF]
#                                                # set up, then run the benchmark with these arguments
#
# Installs into a project-local venv, .venv-bench (git-ignored), from PyPI only. No Hugging Face hub
# access is needed: the model is read from the GGUF file (default: the one the Rust side uses).
#
# What worked (2026-11, Python 3.11, x86_64, 2-core CPU box, no GPU):
# - PyPI has no CPU-only torch wheel for Linux x86_64: every manylinux x86_64 torch wheel is the CUDA
#   build (torch 2.15.0: 514 MiB wheel) and its dependencies pull ~3 GiB of nvidia-*/cuda-toolkit/
#   triton wheels. `pip install --no-deps torch` alone does not import: libtorch_cpu.so,
#   libtorch_cuda.so and libtorch_python.so are linked against libcudart.so.13, libcublas.so.13,
#   libcudnn.so.9, libnccl.so.2, ... (torch/__init__.py then fails looking for the nvidia packages).
# - So: torch==2.15.0 with --no-deps plus its small pure-Python deps, and tiny stub libraries for the
#   missing CUDA sonames, built here with cc from torch's own ELF symbol tables (readelf) and put in
#   torch/lib (which is on the RPATH of torch's libraries, as $ORIGIN). The stubs only satisfy the
#   dynamic linker; their functions report "no device" (cudaGetDeviceCount -> 0 devices, error 100),
#   so torch.cuda.is_available() is False and nothing CUDA is ever called on the CPU code paths.
#   CPU kernels are the real ones (MKL BLAS, oneDNN, OpenMP; AVX-512 where the CPU has it).
#   The venv is ~1.6 GiB instead of ~5 GiB.
# - If the stubs cannot be built (no cc/readelf) or torch still fails to import, the script falls
#   back to the plain `pip install torch==...` with all its CUDA dependencies. BENCH_TORCH_FULL=1
#   forces that path.
# - transformers 5.23.0 does load Gemma 3 GGUF checkpoints (from_pretrained(dir, gguf_file=...):
#   architecture gemma3 -> Gemma3ForCausalLM, model_type gemma3_text, norm weights get the -1 that
#   undoes llama.cpp's +1), but it takes ~35 s and peaks at ~2.6 GiB (its GGUF reader builds Python
#   objects for the 262k-token vocabulary). The benchmark's default loader parses the GGUF header
#   itself, builds the same Gemma3TextConfig and dequantizes with gguf 0.19.0 in row chunks: ~2 s,
#   ~1.7 GiB, and bit-identical weights and logits (checked; --loader transformers runs the slow way).
# - peft 0.21.2 and accelerate 1.15.0 declare a dependency on torch, so they are installed with
#   --no-deps (plus their other deps) to keep pip from pulling the CUDA wheels back in.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=.venv-bench
PYTHON="${PYTHON:-python3}"
TORCH_VERSION=2.15.0
TRANSFORMERS_VERSION=5.23.0
PEFT_VERSION=0.21.2
ACCELERATE_VERSION=1.15.0
GGUF_VERSION=0.19.0
STAMP="torch=$TORCH_VERSION transformers=$TRANSFORMERS_VERSION peft=$PEFT_VERSION accelerate=$ACCELERATE_VERSION gguf=$GGUF_VERSION full=${BENCH_TORCH_FULL:-0}"

py="$VENV/bin/python"
pip() { "$py" -m pip install --disable-pip-version-check -q "$@"; }
check_imports() {
    "$py" - <<'PY'
import torch, transformers, peft, gguf
x = torch.randn(64, 64, requires_grad=True)
(x @ x).sum().backward()
assert x.grad is not None
from transformers import Gemma3ForCausalLM  # noqa: F401
print(f"torch {torch.__version__} (cuda available: {torch.cuda.is_available()}), "
      f"transformers {transformers.__version__}, peft {peft.__version__}, gguf ok")
PY
}

setup() {
    [ -x "$py" ] || "$PYTHON" -m venv "$VENV"
    if [ -f "$VENV/.bench-stamp" ] && [ "$(cat "$VENV/.bench-stamp")" = "$STAMP" ] && check_imports >/dev/null 2>&1; then
        return 0
    fi
    rm -f "$VENV/.bench-stamp"
    echo "setting up $VENV ($STAMP)" >&2
    pip --upgrade pip
    if [ "${BENCH_TORCH_FULL:-0}" = 1 ]; then
        pip "torch==$TORCH_VERSION"
    else
        # torch's own small deps first, so pip has no half-installed torch to complain about
        pip "setuptools>=77" filelock "typing-extensions>=4.13" "sympy>=1.13.3" "networkx>=2.5.1" jinja2 \
            "fsspec>=0.8.5" numpy
        pip --no-deps "torch==$TORCH_VERSION"
        if ! "$py" -c "import torch" >/dev/null 2>&1; then
            if command -v cc >/dev/null && command -v readelf >/dev/null && cuda_stubs; then :; fi
            if ! "$py" -c "import torch" >/dev/null 2>&1; then
                echo "CUDA stubs did not make torch importable; installing torch with its CUDA deps" >&2
                pip "torch==$TORCH_VERSION"
            fi
        fi
    fi
    pip "transformers==$TRANSFORMERS_VERSION" "gguf==$GGUF_VERSION"
    pip --no-deps "peft==$PEFT_VERSION" "accelerate==$ACCELERATE_VERSION"
    pip psutil pyyaml tqdm safetensors huggingface_hub packaging
    check_imports >&2
    echo "$STAMP" > "$VENV/.bench-stamp"
}

# Build stub .so files for the CUDA libraries torch's binaries are linked against but that are not
# installed, each with the right SONAME, symbol versions and symbols, into torch/lib.
cuda_stubs() {
    local torch_dir
    torch_dir="$("$py" -c 'import importlib.util, os; print(os.path.dirname(importlib.util.find_spec("torch").origin))')"
    echo "building CUDA stub libraries in $torch_dir/lib" >&2
    "$py" - "$torch_dir" <<'PY'
import collections, os, re, subprocess, sys, tempfile
torch_dir = sys.argv[1]
out = os.path.join(torch_dir, "lib")
def run(*a): return subprocess.run(a, capture_output=True, text=True).stdout
elfs = [os.path.join(r, f) for r, _, fs in os.walk(torch_dir) for f in fs if re.search(r"\.so(\.|$)", f)]
local = {os.path.basename(e) for e in elfs}
ldconfig = next((p for p in ("ldconfig", "/sbin/ldconfig", "/usr/sbin/ldconfig")
                 if subprocess.run(["sh", "-c", f"command -v {p}"], capture_output=True).returncode == 0), None)
sysl = run(ldconfig, "-p") if ldconfig else ""
def on_system(s): return re.search(r"\s" + re.escape(s) + r" \(", sysl) is not None
needed_by, missing, ver_file, defined = {}, set(), {}, set()
versioned = collections.defaultdict(set)    # missing soname -> {(sym, type, version)}
unversioned = collections.defaultdict(set)  # elf -> {(sym, type)}
for e in elfs:
    need = re.findall(r"\(NEEDED\).*\[(.*)\]", run("readelf", "-W", "-d", e))
    needed_by[e] = need
    missing.update(n for n in need if n not in local and not on_system(n))
    cur = None
    for line in run("readelf", "-W", "-V", e).splitlines():
        m = re.search(r"File: (\S+)", line)
        if m:
            cur = m.group(1)
            continue
        m = re.search(r"Name: (\S+)", line)
        if m and cur:
            ver_file[(e, m.group(1))] = cur
    for line in run("readelf", "-W", "--dyn-syms", e).splitlines():
        p = line.split()
        if len(p) < 8 or not p[0].endswith(":"):
            continue
        typ, bind, ndx, name = p[3], p[4], p[6], p[7]
        if ndx != "UND":
            defined.add(name.split("@")[0])
        elif "@" in name:
            sym, ver = name.split("@", 1)
            f = ver_file.get((e, ver))
            if f in missing:
                versioned[f].add((sym, typ, ver))
        elif not (typ == "NOTYPE" and bind == "WEAK"):
            unversioned[e].add((name, typ))
bad = sorted(m for m in missing if not re.match(r"lib(cu|nv|nccl)", m))
if bad:
    sys.exit(f"not stubbing non-CUDA libraries missing from the system: {bad}")
for lib in ("libc.so.6", "libm.so.6", "libstdc++.so.6", "libgcc_s.so.1", "libdl.so.2", "libpthread.so.0",
            "librt.so.1", "libz.so.1", "ld-linux-x86-64.so.2"):
    m = re.search(r"\s" + re.escape(lib) + r" \(.*?\) => (\S+)", sysl)
    if m:
        for line in run("readelf", "-W", "--dyn-syms", m.group(1)).splitlines():
            p = line.split()
            if len(p) >= 8 and p[6] != "UND":
                defined.add(p[7].split("@")[0])
for e, syms in unversioned.items():
    first = next((n for n in needed_by[e] if n in missing), None)
    if first:
        for sym, typ in syms:
            if sym not in defined and typ != "NOTYPE":
                versioned[first].add((sym, typ, None))
tmp = tempfile.mkdtemp()
for f in sorted(missing):
    syms = versioned.get(f, set())
    vers = sorted({v for _, _, v in syms if v} | {v for (_, v), ff in ver_file.items() if ff == f})
    c = ["static char stub_buf[4096];", 'static const char stub_msg[] = "CUDA stub (CPU-only benchmark venv)";']
    for sym, typ, _ in sorted(syms):
        if typ in ("OBJECT", "TLS"):
            c.append(f"char {sym}[256] __attribute__((aligned(64)));")
        elif sym == "cudaGetDeviceCount":
            c.append(f"int {sym}(int *n) {{ if (n) *n = 0; return 100; }}")  # cudaErrorNoDevice
        elif sym.startswith("__cudaRegisterFatBinary") and not sym.endswith("End"):
            c.append(f"void *{sym}(void) {{ return stub_buf; }}")
        elif re.search(r"(ErrorString|ErrorName|StatusString|GetString)$", sym):
            c.append(f"const char *{sym}(void) {{ return stub_msg; }}")
        elif sym.startswith("__cuda"):
            c.append(f"long {sym}(void) {{ return 0; }}")
        else:
            c.append(f"int {sym}(void) {{ return 100; }}")
    by_ver = collections.defaultdict(list)
    for sym, _, v in syms:
        by_ver[v or (vers[0] if vers else None)].append(sym)
    vmap = [v + " { global: " + " ".join(s + ";" for s in by_ver.get(v, [])) + " };" for v in vers] or ["{ global: *; };"]
    base = os.path.join(tmp, re.sub(r"[^A-Za-z0-9]", "_", f))
    open(base + ".c", "w").write("\n".join(c) + "\n")
    open(base + ".map", "w").write("\n".join(vmap) + "\n")
    subprocess.run(["cc", "-shared", "-fPIC", "-O1", "-w", "-o", os.path.join(out, f), f"-Wl,-soname,{f}",
                    f"-Wl,--version-script={base}.map", base + ".c"], check=True)
    print(f"  stub {f}: {len(syms)} symbols", file=sys.stderr)
PY
}

setup
if [ "$#" -gt 0 ]; then
    exec "$py" scripts/bench_train_torch.py "$@"
fi
