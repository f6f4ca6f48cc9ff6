#!/usr/bin/env bash
# A real OpenAI-compatible server for the tests and for trying the `openai` backend on one
# machine: llama-cpp-python's server (PyPI, pinned by version and sha256), serving a GGUF model
# and optionally a GGUF LoRA adapter on 127.0.0.1 with /v1/completions and log-probabilities.
#
#   scripts/openai-server.sh install                  # build it once into the cache (CMake, minutes)
#   scripts/openai-server.sh start MODEL [ADAPTER] [PORT]   # starts it, waits until it answers,
#                                                     # prints its URL; the PID is in $STATE/pid
#   scripts/openai-server.sh stop
#
# llama-cpp-sys-2 vendors llama.cpp without its server (tools/server holds only a README), so the
# server comes from llama-cpp-python, which compiles its own llama.cpp at install time.
set -euo pipefail
VERSION=0.3.16
SHA256=34ed0f9bd9431af045bb63d9324ae620ad0536653740e9bb163a2e1fcb973be6
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/clarifycoder"
VENV="$CACHE/llama-cpp-python-$VERSION"
STATE="${TMPDIR:-/tmp}/clarifycoder-openai-server"

install() {
    if [ -f "$VENV/.installed" ]; then
        return 0
    fi
    echo "installing llama-cpp-python $VERSION into $VENV (compiles llama.cpp: several minutes)" >&2
    rm -rf "$VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/python" -m pip install --quiet --upgrade pip
    "$VENV/bin/python" -m pip download --quiet --no-deps --no-binary :all: \
        "llama-cpp-python==$VERSION" -d "$VENV/src"
    local sdist="$VENV/src/llama_cpp_python-$VERSION.tar.gz"
    echo "$SHA256  $sdist" | sha256sum --check --quiet || {
        echo "llama-cpp-python $VERSION does not have the pinned sha256; not installing" >&2
        rm -rf "$VENV"
        exit 1
    }
    # CPU build with the same SIMD level as ours (no -march=native), no GPU.
    CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON" \
        "$VENV/bin/python" -m pip install --quiet "$sdist[server]"
    # Only a complete install counts: a killed one is redone from the start.
    touch "$VENV/.installed"
}

start() {
    local model="$1" adapter="${2:-}" port="${3:-8765}"
    install >&2   # stdout carries only the URL
    mkdir -p "$STATE"
    # logits_all (the server's default) is what lets completions return log-probabilities.
    local args=(--model "$model" --host 127.0.0.1 --port "$port" --n_ctx 4096)
    [ -n "$adapter" ] && args+=(--lora_path "$adapter")
    "$VENV/bin/python" -m llama_cpp.server "${args[@]}" > "$STATE/log" 2>&1 &
    echo $! > "$STATE/pid"
    for _ in $(seq 1 120); do
        if curl -sf "http://127.0.0.1:$port/v1/models" > /dev/null; then
            echo "http://127.0.0.1:$port"
            return 0
        fi
        kill -0 "$(cat "$STATE/pid")" 2>/dev/null || break
        sleep 1
    done
    echo "the server did not come up; its log:" >&2
    tail -20 "$STATE/log" >&2
    exit 1
}

stop() {
    [ -f "$STATE/pid" ] && kill "$(cat "$STATE/pid")" 2>/dev/null || true
    rm -f "$STATE/pid"
}

case "${1:-}" in
    install) install ;;
    start) shift; start "$@" ;;
    stop) stop ;;
    *) echo "usage: $0 install | start MODEL [ADAPTER] [PORT] | stop" >&2; exit 2 ;;
esac
