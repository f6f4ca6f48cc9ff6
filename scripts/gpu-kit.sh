#!/usr/bin/env bash
# The CUDA build, the default model and its adapter in pieces small enough for a channel that
# carries little at a time, for a GPU machine that has CUDA 13.0's libraries already (BENCHMARKS.md,
# "On a GPU", was measured this way: ten pieces of 58 MiB).
#
#   scripts/gpu-kit.sh pack [DIR [MiB]]    # here, after `make cuda`: DIR/p00, p01, ... (default:
#                                          # gpu-kit/, 58 MiB pieces)
#   scripts/gpu-kit.sh unpack DIR [DEST]   # there: joins and checks the pieces, lays out
#                                          # DEST/dist (default DEST: /tmp/clarifycoder-gpu) with
#                                          # lib/ linked to the machine's cuBLAS and cuRAND (from
#                                          # CUDA_LIBS, else /usr/local/cuda*), puts the model and
#                                          # adapter into DEST/cache, and prints what to export
#
# The binaries share llama.cpp's kernels, so with a large xz window the five of them pack into
# 52 MB instead of 430; the model does not compress.
set -euo pipefail
cd "$(dirname "$0")/.."

pack() {
    local out="${1:-gpu-kit}" size="${2:-58}"
    local dist
    dist="$(ls -d dist/clarifycoder-cuda-sm* 2>/dev/null | tail -1)"
    [ -n "$dist" ] && [ -x "$dist/bin/clarifycoder" ] || {
        echo "gpu-kit: no CUDA build in dist/; run \`make cuda\` first" >&2
        exit 1
    }
    local model adapter
    model="$(./target/release/clarifycoder info | sed -n '/"model": {/,/}/s/.*"path": "\(.*\)".*/\1/p')"
    adapter="$(./target/release/clarifycoder info | sed -n '/"adapter": {/,/}/s/.*"path": "\(.*\)".*/\1/p')"
    [ -f "$model" ] && [ -f "$adapter" ] || {
        echo "gpu-kit: the default model or adapter is not installed; run \`make setup\`" >&2
        exit 1
    }
    local work
    work="$(mktemp -d)"
    trap 'rm -rf "$work"' RETURN
    echo "gpu-kit: packing $(basename "$dist") (a few minutes: xz with a 512 MiB window)" >&2
    (cd "$dist" && tar cf - bin lib/libclarifycoder-cuda.so lib/libgomp.so.1 BUILD-INFO README.txt) \
        | xz -T1 --lzma2=preset=6,dict=512MiB > "$work/dist.tar.xz"
    ln -s "$(readlink -f "$model")" "$work/$(basename "$model")"
    ln -s "$(readlink -f "$adapter")" "$work/$(basename "$adapter")"
    (cd "$work" && sha256sum dist.tar.xz "$(basename "$model")" "$(basename "$adapter")" > SHA256SUMS)
    mkdir -p "$out"
    rm -f "$out"/p[0-9][0-9]
    tar chf - -C "$work" SHA256SUMS dist.tar.xz "$(basename "$model")" "$(basename "$adapter")" \
        | split -b "${size}M" -d -a 2 - "$out/p"
    echo "gpu-kit: $(ls "$out"/p[0-9][0-9] | wc -l) pieces of at most $size MiB in $out/" >&2
}

unpack() {
    local from="${1:?usage: gpu-kit.sh unpack DIR [DEST]}" dest="${2:-/tmp/clarifycoder-gpu}"
    local stage="$dest/stage" dist="$dest/dist" models="$dest/cache/clarifycoder/models"
    mkdir -p "$stage" "$dist" "$models"
    cat "$from"/p[0-9][0-9] | tar xf - -C "$stage"
    (cd "$stage" && sha256sum -c --quiet SHA256SUMS) || {
        echo "gpu-kit: a piece is missing or damaged; send them all again" >&2
        exit 1
    }
    if command -v xz >/dev/null; then
        xz -dc "$stage/dist.tar.xz"
    else
        python3 -c 'import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), sys.stdout.buffer)' \
            "$stage/dist.tar.xz"
    fi | tar xf - -C "$dist"
    local lib found
    for lib in libcublas.so.13 libcublasLt.so.13 libcurand.so.10; do
        found="$(ls "${CUDA_LIBS:-/nonexistent}/$lib" /usr/local/cuda/lib64/$lib \
            /usr/local/cuda*/targets/x86_64-linux/lib/$lib 2>/dev/null | head -1 || true)"
        [ -n "$found" ] || {
            echo "gpu-kit: no $lib here; set CUDA_LIBS to the folder of CUDA 13.0's libraries" >&2
            exit 1
        }
        ln -sf "$found" "$dist/lib/$lib"
    done
    find "$stage" -maxdepth 1 -name '*.gguf' -exec mv {} "$models/" \;
    rm -rf "$stage"
    echo "gpu-kit: ready. export XDG_CACHE_HOME=$dest/cache CLARIFYCODER_CUDA_DIR=$dist"
    echo "gpu-kit: then $dist/bin/clarifycoder info, or scripts/gpu-check.sh"
}

case "${1:-}" in
    pack) shift; pack "$@" ;;
    unpack) shift; unpack "$@" ;;
    *) echo "usage: scripts/gpu-kit.sh pack [DIR [MiB]] | unpack DIR [DEST]" >&2; exit 2 ;;
esac
