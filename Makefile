# The two commands of the README: `make demo` and `make test`. Both set the machine up first.
.PHONY: setup setup-test demo test test-server lint editors adapter compare cuda

setup:
	bash scripts/setup.sh

# Check the bundled examples with the embedded default model, running their docstring examples
# (our own file, so trusted). Exit code 1 means "something was flagged", which is what the demo is for.
demo: setup
	./target/release/clarifycoder check --run-examples examples/ || [ $$? -eq 1 ]

setup-test:
	bash scripts/setup.sh --test

lint: setup-test
	cargo fmt --all --check
	cargo clippy --release --workspace --all-targets -- -D warnings

# The VS Code extension: locked npm packages, compile, lint, tests (one drives the real server),
# and a .vsix package.
editors: setup-test
	cd editors/vscode && npm ci --no-audit --no-fund && npm run lint && npm test && npm run package

test: lint
	cargo test --release --workspace
	$(MAKE) editors

# The openai backend against a real server: llama-cpp-python (built once into the cache, several
# minutes) serving the default model and adapter on 127.0.0.1. Not part of `make test`, which
# stays within CI's time.
test-server: setup-test
	bash scripts/test-server.sh

# Retrain the default adapter (models/clarifycoder-qwen2.5-coder-0.5b.lora.gguf + manifest) on this
# CPU; MODEL=gemma3-270m for Gemma's.
adapter: setup
	bash scripts/train-adapter.sh

# The base-model comparison of BENCHMARKS.md (dev set and HumanEval, with and without adapters).
compare: setup
	bash scripts/compare-models.sh

# The three binaries built with CUDA (toolkit from PyPI, pinned, into the cache; no GPU needed to
# build) into dist/clarifycoder-cuda-sm$(CUDA_ARCH)/, which runs on any machine with the NVIDIA
# driver. CUDA_ARCH=90 by default (Hopper); 80, 86, 89 for Ampere and Ada. Long on few cores.
CUDA_ARCH ?= 90
cuda:
	CUDA_ARCH=$(CUDA_ARCH) bash scripts/build-cuda.sh
