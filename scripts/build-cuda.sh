#!/usr/bin/env bash
# `make cuda`: clarifycoder, clarifycoder-evaluator and clarifycoder-trainer built with CUDA, on a
# Linux x86-64 machine that needs neither a GPU nor a system CUDA toolkit, into a directory that
# runs on any machine with the NVIDIA driver:
#
#   dist/clarifycoder-cuda-sm$CUDA_ARCH/
#     bin/   the three binaries (rpath $ORIGIN/../lib), and gpu_check and bench_engine, the
#            programs scripts/gpu-check.sh drives
#     lib/   the shared libraries they load that a driver-only machine may lack (cuBLAS, cuBLASLt,
#            cuRAND, OpenMP; the CUDA runtime is linked in) and libclarifycoder-cuda.so
#            (scripts/cuda-shim.c: forwards to the driver's libcuda.so.1, so the binaries also
#            start, and run on the CPU, where there is no driver)
#     BUILD-INFO, README.txt
#
#   CUDA_ARCH=90 scripts/build-cuda.sh    # compute capability: 90 Hopper (default), 80 A100,
#                                         # 86 RTX 30xx/A10, 89 L4/L40/RTX 40xx, 100, 120
#
# The CUDA 13.0 toolkit comes from NVIDIA's packages on PyPI (CUDA 13.0 Update 2, the component
# versions the `cuda-toolkit==13.0.2` meta-package names), every wheel's sha256 pinned, installed
# into its own venv under the cache directory; only this build uses it. 13.0 and not later: the
# candle kernels are PTX compiled by the driver at run time, and a 13.0 driver (R580) refuses PTX
# from a newer toolkit. The CPU build, `make demo` and `make test` are untouched: this one builds
# into target/cuda. llama.cpp's CUDA kernels take a few minutes on 16 cores and much longer on
# two; a second run rebuilds only what changed. x86-64 only (the shim's jumps are x86-64).
set -euo pipefail
cd "$(dirname "$0")/.."

CUDA_ARCH="${CUDA_ARCH:-90}"
TOOLKIT=13.0.2
CUDARC_VERSION=13000
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/clarifycoder"
VENV="$CACHE/cuda-$TOOLKIT"
TARGET_DIR=target/cuda
DIST="dist/clarifycoder-cuda-sm$CUDA_ARCH"

# pip --require-hashes needs every package of the closure pinned: nvcc depends on nvvm (cicc),
# crt (device headers) and the runtime.
REQUIREMENTS="\
nvidia-cuda-nvcc==13.0.88 --hash=sha256:56fe502eb77625a12f25172caa3cdddb4e4c8ba2c8c17dba44b164761b380f03
nvidia-nvvm==13.0.88 --hash=sha256:c5f41ffeb6466944a026dfa5317d7d85355c119bbec279205d22f1869d1054e0
nvidia-cuda-crt==13.0.88 --hash=sha256:2c8043c7c9e02492716426e9919fc78d2c5b3b2a7a768a88e952676b08aa55a4
nvidia-cuda-runtime==13.0.96 --hash=sha256:7f82250d7782aa23b6cfe765ecc7db554bd3c2870c43f3d1821f1d18aebf0548
nvidia-cuda-cccl==13.0.85 --hash=sha256:e0da7ad981f3a8aff08241b5bfc1af868742a63e2762f53a5171c492ef242649
nvidia-cuda-culibos==13.0.85 --hash=sha256:5c178858405f485367175e14f8a7536af6c86c5c428d25301f2218406c316ba0
nvidia-cublas==13.1.0.3 --hash=sha256:ee8722c1f0145ab246bccb9e452153b5e0515fd094c3678df50b2a0888b8b171
nvidia-cuda-nvrtc==13.0.88 --hash=sha256:ad9b6d2ead2435f11cbb6868809d2adeeee302e9bb94bcf0539c7a40d80e8575
nvidia-curand==10.4.0.35 --hash=sha256:1aee33a5da6e1db083fe2b90082def8915f30f3248d5896bcec36a579d941bfc
"

say() { echo "build-cuda: $*" >&2; }
die() { say "$*"; exit 1; }

check_prerequisites() {
    case "$CUDA_ARCH" in
        ''|*[!0-9]*) die "CUDA_ARCH must be a compute capability without the dot (90, 89, 86, 80), got '$CUDA_ARCH'" ;;
    esac
    [ "$(uname -sm)" = "Linux x86_64" ] || die "only Linux x86-64 is supported, this is $(uname -sm)"
    local missing=()
    for tool in cargo cmake gcc g++ python3; do
        command -v "$tool" >/dev/null || missing+=("$tool")
    done
    ls /usr/lib/llvm-*/lib/libclang.so* >/dev/null 2>&1 || missing+=(libclang)
    python3 -c "import ensurepip, venv" 2>/dev/null || missing+=(python3-venv)
    [ ${#missing[@]} -eq 0 ] || die "missing ${missing[*]}; run \`make setup\` (it installs cmake, clang, libclang-dev and python3-venv)"
}

# The toolkit: the wheels unpack into one tree, site-packages/nvidia/cu13 (bin/nvcc, include,
# lib, nvvm/bin/cicc). Three additions make it look like an installed toolkit to nvcc, CMake and
# the Rust build scripts: lib64 (where nvcc.profile looks), unversioned names of the shared
# libraries (-lcublas) and lib/stubs/libcuda.so (the shim, see above).
install_toolkit() {
    local stamp
    stamp=$(printf '%s' "$REQUIREMENTS" "$(cat scripts/cuda-shim.c)" | sha256sum | cut -c1-16)
    if [ "$(cat "$VENV/.installed" 2>/dev/null)" = "$stamp" ]; then
        CUDA=$(cat "$VENV/.root")
        return 0
    fi
    say "installing the CUDA $TOOLKIT toolkit from PyPI into $VENV (about 1.2 GB)"
    rm -rf "$VENV"
    python3 -m venv "$VENV"
    printf '%s' "$REQUIREMENTS" > "$VENV/requirements.txt"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-cache-dir \
        --require-hashes --only-binary :all: --progress-bar off -r "$VENV/requirements.txt"
    CUDA=$("$VENV/bin/python" -c 'import nvidia, os; print(os.path.join(nvidia.__path__[0], "cu13"))')
    [ -x "$CUDA/bin/nvcc" ] || die "no nvcc in $CUDA after installing the wheels"
    ln -sfn lib "$CUDA/lib64"
    local lib
    for lib in cudart.so.13 cublas.so.13 cublasLt.so.13 curand.so.10 nvrtc.so.13; do
        ln -sfn "lib$lib" "$CUDA/lib/lib${lib%.so.*}.so"
    done
    make_shim "$CUDA/lib/stubs"
    # llama-cpp-sys-2 links cuBLAS statically on Linux (cublas_static, cublasLt_static), which
    # the wheels do not carry: empty archives satisfy it, and the shared cuBLAS is linked instead
    # (link flags in build()).
    mkdir -p "$VENV/link"
    ar rc "$VENV/link/libcublas_static.a"
    ar rc "$VENV/link/libcublasLt_static.a"
    echo "$CUDA" > "$VENV/.root"
    echo "$stamp" > "$VENV/.installed"
}

# Every driver function cuda.h declares, under each of its naming schemes (the _v2 and per-thread
# variants are separate symbols), becomes an entry of the shim.
make_shim() {
    local out="$1" work="$VENV/shim"
    mkdir -p "$out" "$work"
    local defines
    for defines in "" "-D__CUDA_API_VERSION_INTERNAL" "-DCUDA_API_PER_THREAD_DEFAULT_STREAM"; do
        # shellcheck disable=SC2086
        printf '#include <cuda.h>\n' | gcc -E -P -x c - -I"$CUDA/include" $defines
    done | tr '\n' ' ' | grep -oE '\bCUresult +cu[A-Z][A-Za-z0-9_]* *\(' \
        | sed -E 's/CUresult +//; s/ *\(//' | sort -u | sed 's/.*/CUDA_SHIM(&)/' > "$work/symbols.h"
    [ "$(wc -l < "$work/symbols.h")" -gt 300 ] || die "found too few driver functions in cuda.h"
    gcc -O2 -shared -fPIC -I"$work" -o "$out/libcuda.so" scripts/cuda-shim.c \
        -Wl,-soname,libclarifycoder-cuda.so -ldl
}

build() {
    local flags
    # Joined to the CPU features in .cargo/config.toml (arrays from --config are appended).
    flags="[\"-L\", \"native=$VENV/link\", \"-L\", \"native=$CUDA/lib\", \
\"-C\", \"link-arg=-lcublas\", \"-C\", \"link-arg=-lcublasLt\", \
\"-C\", \"link-arg=-Wl,--disable-new-dtags,-rpath,\$ORIGIN/../lib\"]"
    say "building for sm_$CUDA_ARCH into $TARGET_DIR"
    # CMAKE_* and GGML_* variables reach llama.cpp's CMake (llama-cpp-sys-2 forwards them);
    # CUDA_COMPUTE_CAP is candle's kernel target, CUDARC_CUDA_VERSION cudarc's API version.
    env PATH="$CUDA/bin:$PATH" \
        CUDA_HOME="$CUDA" CUDA_PATH="$CUDA" CUDA_ROOT="$CUDA" CUDA_LIBRARY_PATH="$CUDA" \
        CUDAToolkit_ROOT="$CUDA" \
        CMAKE_CUDA_COMPILER="$CUDA/bin/nvcc" CMAKE_CUDA_ARCHITECTURES="$CUDA_ARCH" \
        GGML_CUDA_FA_ALL_QUANTS=OFF \
        CUDA_COMPUTE_CAP="$CUDA_ARCH" CUDARC_CUDA_VERSION="$CUDARC_VERSION" \
        cargo build --release --locked --target-dir "$TARGET_DIR" \
        --config "target.x86_64-unknown-linux-gnu.rustflags=$flags" \
        -p clarifycoder -p clarifycoder-evaluator -p clarifycoder-trainer -p clarifycoder-core \
        --bin clarifycoder --bin clarifycoder-evaluator --bin clarifycoder-trainer \
        --example gpu_check --example bench_engine \
        --features clarifycoder/cuda,clarifycoder-evaluator/cuda,clarifycoder-trainer/cuda,clarifycoder-core/cuda
}

# bin/ and lib/: each binary's shared libraries that come from the toolkit (or the shim), found by
# ldd with the toolkit on the library path, plus what they open at run time (NVRTC's builtins).
# The binaries lose their debug information (llama.cpp's is most of their size; symbols stay).
assemble() {
    local out="$TARGET_DIR/release"
    local bins=("$out/clarifycoder" "$out/clarifycoder-evaluator" "$out/clarifycoder-trainer"
        "$out/examples/gpu_check" "$out/examples/bench_engine")
    rm -rf "$DIST"
    mkdir -p "$DIST/bin" "$DIST/lib"
    cp "$CUDA/lib/stubs/libcuda.so" "$DIST/lib/libclarifycoder-cuda.so"
    local bin lib path
    for bin in "${bins[@]}"; do
        strip --strip-debug -o "$DIST/bin/$(basename "$bin")" "$bin"
        LD_LIBRARY_PATH="$CUDA/lib:$CUDA/lib/stubs" ldd "$bin" | while read -r lib _ path _; do
            [ -e "$DIST/lib/$lib" ] && continue
            case "$lib" in
                libclarifycoder-cuda.so|linux-vdso*|/*) ;;
                libgomp.so.*) cp "$path" "$DIST/lib/" ;;
                *) case "$path" in "$CUDA"/*) cp "$path" "$DIST/lib/" ;; esac ;;
            esac
        done
    done
    if ls "$DIST"/lib/libnvrtc.so.* >/dev/null 2>&1; then
        cp "$CUDA"/lib/libnvrtc-builtins.so.* "$DIST/lib/"
    fi
    # On this machine (no driver) every binary must load from the directory alone.
    for bin in "$DIST"/bin/*; do
        if env -u LD_LIBRARY_PATH ldd "$bin" | grep -q "not found"; then
            env -u LD_LIBRARY_PATH ldd "$bin" | grep "not found" >&2
            die "$bin misses libraries"
        fi
    done
    "$DIST/bin/clarifycoder" --version >/dev/null || die "$DIST/bin/clarifycoder does not run"
    {
        echo "built: $(date -u +%Y-%m-%dT%H:%MZ) on $(uname -n), commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet 2>/dev/null || echo ' (with local changes)')"
        echo "compute capability: sm_$CUDA_ARCH"
        echo "CUDA toolkit: $TOOLKIT from PyPI:"
        printf '%s' "$REQUIREMENTS" | sed 's/ --hash=.*//; s/^/  /'
        echo "glibc needed: $(for b in "$DIST"/bin/*; do objdump -T "$b"; done | grep -oE 'GLIBC_[0-9.]+' | sort -Vu | tail -1)"
    } > "$DIST/BUILD-INFO"
    cat > "$DIST/README.txt" <<EOF
ClarifyCoder built with CUDA for compute capability $CUDA_ARCH (BUILD-INFO has the versions).
Copy this directory to a Linux x86-64 machine with the NVIDIA driver (R580 or later, CUDA 13.0)
and run bin/clarifycoder (check, serve, info), bin/clarifycoder-trainer (finetune --device auto)
or bin/clarifycoder-evaluator: the libraries they need are in lib/. The model goes into the model
cache as usual (bin/clarifycoder model install). bin/clarifycoder info says which device the
engine uses; scripts/gpu-check.sh in the repository compares GPU and CPU on that machine.
EOF
}

main() {
    check_prerequisites
    install_toolkit
    local start=$SECONDS
    build
    assemble
    say "built in $((SECONDS - start)) s: $DIST ($(du -sh "$DIST" | cut -f1))"
}

main "$@"
