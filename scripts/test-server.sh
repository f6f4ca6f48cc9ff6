#!/usr/bin/env bash
# `make test-server`: starts llama-cpp-python's server with the default model and its shipped
# adapter, runs the tests marked as needing it, and stops it.
set -euo pipefail
cd "$(dirname "$0")/.."
# The tests (tests/tests/openai_server.rs) run the built binaries; `cargo test -p
# clarifycoder-tests` alone does not build them (tests/src/lib.rs).
cargo build --release -p clarifycoder -p clarifycoder-evaluator
MODEL="${XDG_CACHE_HOME:-$HOME/.cache}/clarifycoder/models/qwen2.5-coder-0.5b-instruct.gguf"
./target/release/clarifycoder model install qwen2.5-coder-0.5b >&2
ADAPTER=models/clarifycoder-qwen2.5-coder-0.5b.lora.gguf
URL="$(bash scripts/openai-server.sh start "$MODEL" "$ADAPTER" 8765)"
trap 'bash scripts/openai-server.sh stop' EXIT
export CLARIFYCODER_TEST_ENDPOINT="$URL"
cargo test --release -p clarifycoder-tests --test openai_server -- --ignored --test-threads 1
