#!/usr/bin/env python3
"""PyTorch + PEFT side of the LoRA training benchmark (the reference for the Rust/candle trainer).

Loads Gemma 3 270M from the same GGUF the Rust trainer reads (dequantized to fp32), wraps it with a
PEFT LoRA adapter and runs the same training steps: one sequence per step, cross-entropy on the
answer tokens only, AdamW, fp32. Run it in the venv made by `scripts/bench-train-torch.sh`.

Tokens file: one JSON object per line, {"tokens": [int, ...], "prompt_len": int}, token ids from
llama.cpp's tokenizer for the same model (BOS included). Token tokens[i] for i >= prompt_len is
predicted from position i - 1; the loss is the mean over those answer tokens.

By default the LM head (640 x 262144, as much work per position as the rest of the model) is only
applied to the positions that predict answer tokens (transformers' logits_to_keep); --full-logits
applies it to every position. The Rust side should do the same thing for a fair tokens/s comparison.

Steps: step 0 is the warm-up (a real training step on sequence 0, not timed); timed steps 1..N use
sequences 1, 2, ... (cycling through the file). tokens_per_s = whole-sequence tokens of the N timed
steps / their wall time. Per-step losses go to stderr; one JSON line goes to stdout.
"""
import argparse
import json
import math
import os
import resource
import sys
import time

TARGET_NAMES = {
    "q": "q_proj",
    "k": "k_proj",
    "v": "v_proj",
    "o": "o_proj",
    "gate": "gate_proj",
    "up": "up_proj",
    "down": "down_proj",
}


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    default_model = os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"),
        "clarifycoder", "models", "gemma-3-270m-q4_k_m.gguf",
    )
    p.add_argument("--model", default=os.environ.get("CLARIFYCODER_MODEL", default_model), help="GGUF file")
    p.add_argument("--tokens", required=True, help="JSONL: {\"tokens\": [...], \"prompt_len\": n} per line")
    p.add_argument("--steps", type=int, default=10, help="timed steps (after 1 untimed warm-up step)")
    p.add_argument("--rank", type=int, default=8)
    p.add_argument("--alpha", type=float, default=16.0)
    p.add_argument("--targets", default="q,k,v,o,gate,up,down", help="comma list of q,k,v,o,gate,up,down")
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--weight-decay", type=float, default=0.01, help="AdamW weight decay (torch's and candle's default: 0.01)")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--seed", type=int, default=0, help="seed for the LoRA A init")
    p.add_argument("--loader", choices=["gguf", "transformers"], default="gguf",
                   help="gguf: dequantize with the gguf package into a Gemma3ForCausalLM (lower load peak); "
                        "transformers: from_pretrained(dir, gguf_file=...) (same weights, ~2x the load peak)")
    p.add_argument("--full-logits", action="store_true",
                   help="compute the LM head on every position (default: only the positions that predict "
                        "answer tokens, via logits_to_keep)")
    p.add_argument("--attn", default="sdpa", choices=["sdpa", "eager"], help="transformers attention implementation")
    return p.parse_args()


def maxrss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # ru_maxrss is KiB on Linux


def log(msg):
    print(msg, file=sys.stderr, flush=True)


# GGUF tensor name (after "blk.N.") -> HF Gemma3ForCausalLM parameter name (after "model.layers.N.")
LAYER_MAP = {
    "attn_q.weight": "self_attn.q_proj.weight",
    "attn_k.weight": "self_attn.k_proj.weight",
    "attn_v.weight": "self_attn.v_proj.weight",
    "attn_output.weight": "self_attn.o_proj.weight",
    "attn_q_norm.weight": "self_attn.q_norm.weight",
    "attn_k_norm.weight": "self_attn.k_norm.weight",
    "attn_norm.weight": "input_layernorm.weight",
    "post_attention_norm.weight": "post_attention_layernorm.weight",
    "ffn_norm.weight": "pre_feedforward_layernorm.weight",
    "post_ffw_norm.weight": "post_feedforward_layernorm.weight",
    "ffn_gate.weight": "mlp.gate_proj.weight",
    "ffn_up.weight": "mlp.up_proj.weight",
    "ffn_down.weight": "mlp.down_proj.weight",
}


def hf_name(gguf_name):
    if gguf_name == "token_embd.weight":
        return "model.embed_tokens.weight"
    if gguf_name == "output_norm.weight":
        return "model.norm.weight"
    if gguf_name == "output.weight":
        return "lm_head.weight"
    if gguf_name.startswith("blk."):
        _, idx, rest = gguf_name.split(".", 2)
        if rest in LAYER_MAP:
            return f"model.layers.{idx}.{LAYER_MAP[rest]}"
    raise ValueError(f"unexpected GGUF tensor {gguf_name}")


_GGUF_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}


def read_gguf(path):
    """Minimal GGUF parser: metadata (arrays skipped) and tensor infos, without building the
    per-token objects that gguf.GGUFReader creates for the 262k-entry tokenizer arrays
    (~700 MB and ~11 s here)."""
    import struct

    with open(path, "rb") as f:
        def rd(fmt):
            return struct.unpack(fmt, f.read(struct.calcsize(fmt)))[0]

        def rd_str():
            return f.read(rd("<Q")).decode("utf-8", "replace")

        def rd_val(t):
            if t == 8:
                return rd_str()
            if t == 9:
                et, n = rd("<I"), rd("<Q")
                if et == 8:
                    for _ in range(n):
                        f.seek(rd("<Q"), 1)
                elif et in _GGUF_SCALARS:
                    f.seek(n * struct.calcsize(_GGUF_SCALARS[et]), 1)
                else:
                    for _ in range(n):
                        rd_val(et)
                return None  # arrays are not needed here
            return rd(_GGUF_SCALARS[t])

        if f.read(4) != b"GGUF":
            raise SystemExit(f"{path}: not a GGUF file")
        version, n_tensors, n_kv = rd("<I"), rd("<Q"), rd("<Q")
        if version < 2:
            raise SystemExit(f"{path}: GGUF version {version} is not supported")
        meta = {}
        for _ in range(n_kv):
            key = rd_str()
            meta[key] = rd_val(rd("<I"))
        tensors = []
        for _ in range(n_tensors):
            name = rd_str()
            dims = [rd("<Q") for _ in range(rd("<I"))]
            tensors.append((name, dims, rd("<I"), rd("<Q")))
        align = int(meta.get("general.alignment") or 32)
        data_start = (f.tell() + align - 1) // align * align
    return meta, tensors, data_start


def gemma3_config(meta, tensors, attn):
    """Gemma3TextConfig from the GGUF metadata, with the same choices llama.cpp makes for Gemma 3:
    attention scale 1/sqrt(key_length) (query_pre_attn_scalar = key_length; llama.cpp uses another
    scale only for the 27B model), RoPE base gemma3.rope.freq_base on the global layers and 10000 on the
    sliding-window layers, every 6th layer global (pattern 6), window gemma3.attention.sliding_window."""
    from transformers import Gemma3TextConfig

    arch = meta.get("general.architecture")
    if arch != "gemma3":
        raise SystemExit(f"expected a gemma3 GGUF, got general.architecture={arch}")
    g = lambda k, d=None: meta.get(f"gemma3.{k}", d)  # noqa: E731
    names = {t[0]: t for t in tensors}
    head_dim = int(g("attention.key_length", 256))
    config = Gemma3TextConfig(
        vocab_size=int(names["token_embd.weight"][1][1]),
        hidden_size=int(g("embedding_length")),
        intermediate_size=int(g("feed_forward_length")),
        num_hidden_layers=int(g("block_count")),
        num_attention_heads=int(g("attention.head_count")),
        num_key_value_heads=int(g("attention.head_count_kv")),
        head_dim=head_dim,
        query_pre_attn_scalar=head_dim,
        max_position_embeddings=int(g("context_length", 32768)),
        rms_norm_eps=float(g("attention.layer_norm_rms_epsilon", 1e-6)),
        sliding_window=int(g("attention.sliding_window", 512)),
        rope_parameters={
            "full_attention": {"rope_type": "default", "rope_theta": float(g("rope.freq_base", 1e6))},
            "sliding_attention": {"rope_type": "default", "rope_theta": 10000.0},
        },
        tie_word_embeddings="output.weight" not in names,
        bos_token_id=meta.get("tokenizer.ggml.bos_token_id", 2),
        eos_token_id=meta.get("tokenizer.ggml.eos_token_id", 1),
        pad_token_id=meta.get("tokenizer.ggml.padding_token_id", 0),
        use_cache=False,
    )
    config._attn_implementation = attn
    return config


def load_model_gguf(path, attn):
    """Weights dequantized tensor by tensor (in row chunks) with the gguf package's dequantizers,
    straight into a Gemma3ForCausalLM: the load peak stays near the fp32 model size."""
    import numpy as np
    import torch
    from gguf import GGML_QUANT_SIZES, GGMLQuantizationType
    from gguf.quants import dequantize
    from transformers import Gemma3ForCausalLM

    meta, tensors, data_start = read_gguf(path)
    config = gemma3_config(meta, tensors, attn)
    try:  # skip the random init of 268M parameters: every weight is overwritten from the GGUF below
        from transformers.initialization import no_init_weights  # transformers >= 5
    except ImportError:
        try:
            from transformers.modeling_utils import no_init_weights  # transformers 4.x
        except ImportError:
            from contextlib import nullcontext as no_init_weights
    with no_init_weights():
        model = Gemma3ForCausalLM(config).to(torch.float32)
    if config.tie_word_embeddings:
        model.tie_weights()
    params = dict(model.named_parameters())
    mm = np.memmap(path, dtype=np.uint8, mode="r")
    seen = set()
    with torch.no_grad():
        for tname, dims, ttype, offset in tensors:
            name = hf_name(tname)
            p = params[name]
            qtype = GGMLQuantizationType(ttype)
            shape = tuple(int(x) for x in reversed(dims))  # GGUF lists dims innermost first
            if tuple(p.shape) != shape:
                raise SystemExit(f"{tname} -> {name}: shape {shape} != {tuple(p.shape)}")
            block, type_size = GGML_QUANT_SIZES[qtype]
            row_bytes = dims[0] // block * type_size
            n_rows = p.numel() // dims[0]
            start = data_start + offset
            rows = mm[start:start + n_rows * row_bytes].reshape(n_rows, row_bytes)
            flat = p.view(n_rows, dims[0])
            step = max(1, (1 << 22) // dims[0])  # dequantize ~4M values at a time
            for r0 in range(0, n_rows, step):
                w = np.asarray(dequantize(np.ascontiguousarray(rows[r0:r0 + step]), qtype), dtype=np.float32)
                if name.endswith("norm.weight"):
                    # llama.cpp's converter stores Gemma norm weights as (1 + w);
                    # HF's Gemma3RMSNorm multiplies by (1 + w), so undo it
                    w = w - 1.0
                dst = flat[r0:r0 + step]
                dst.copy_(torch.from_numpy(np.ascontiguousarray(w)).view(dst.shape))
            seen.add(name)
    del mm
    missing = [n for n in params if n not in seen and not (n == "lm_head.weight" and config.tie_word_embeddings)]
    if missing:
        raise SystemExit(f"weights missing from the GGUF: {missing}")
    if config.tie_word_embeddings:
        assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr(), "lm_head not tied"
    return model


def load_model_transformers(path, attn):
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(
        os.path.dirname(os.path.abspath(path)), gguf_file=os.path.basename(path),
        dtype=torch.float32, attn_implementation=attn,
    )
    model.config.use_cache = False
    return model


def main():
    args = parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    import warnings
    warnings.filterwarnings("ignore", category=FutureWarning)
    import torch
    torch.set_num_threads(args.threads)
    import torch.nn.functional as F
    from peft import LoraConfig, get_peft_model

    examples = []
    with open(args.tokens) as f:
        for ln, line in enumerate(f, 1):
            if not line.strip():
                continue
            obj = json.loads(line)
            toks, pl = obj["tokens"], int(obj["prompt_len"])
            if not (1 <= pl < len(toks)):
                raise SystemExit(f"{args.tokens}:{ln}: need 1 <= prompt_len < len(tokens), got {pl}, {len(toks)}")
            examples.append((torch.tensor([toks], dtype=torch.long), pl))
    if not examples:
        raise SystemExit("no sequences in the tokens file")

    targets = []
    for t in args.targets.split(","):
        t = t.strip()
        if t not in TARGET_NAMES:
            raise SystemExit(f"unknown target {t!r}; use {','.join(TARGET_NAMES)}")
        targets.append(TARGET_NAMES[t])

    t0 = time.perf_counter()
    model = (load_model_gguf if args.loader == "gguf" else load_model_transformers)(args.model, args.attn)
    load_s = time.perf_counter() - t0
    vocab = model.config.vocab_size
    for toks, _ in examples:
        if int(toks.max()) >= vocab or int(toks.min()) < 0:
            raise SystemExit(f"token id out of range for vocab {vocab}")
    rss_after_load = maxrss_mib()

    torch.manual_seed(args.seed)
    lcfg = LoraConfig(r=args.rank, lora_alpha=args.alpha, lora_dropout=0.0, bias="none",
                      target_modules=targets, task_type="CAUSAL_LM")
    model = get_peft_model(model, lcfg)
    model.train()
    trainable = [p for p in model.parameters() if p.requires_grad]
    n_trainable = sum(p.numel() for p in trainable)
    opt = torch.optim.AdamW(trainable, lr=args.lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=args.weight_decay)
    log(f"loaded in {load_s:.1f}s ({args.loader}); LoRA r={args.rank} alpha={args.alpha} on {','.join(targets)}: "
        f"{n_trainable} trainable params; threads={torch.get_num_threads()}")

    def step(i):
        ids, pl = examples[i % len(examples)]
        n = ids.shape[1]
        keep = 0 if args.full_logits else n - pl + 1  # positions pl-1 .. n-1 (the last one predicts nothing)
        out = model(input_ids=ids, use_cache=False, logits_to_keep=keep)
        logits = out.logits[0]
        logits = logits[pl - 1:n - 1] if args.full_logits else logits[:-1]
        loss = F.cross_entropy(logits.float(), ids[0, pl:])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return float(loss.detach()), n

    loss, n = step(0)
    log(f"warm-up step: loss {loss:.4f} ({n} tokens)")
    total_tokens = 0
    t0 = time.perf_counter()
    for s in range(1, args.steps + 1):
        ts = time.perf_counter()
        loss, n = step(s)
        total_tokens += n
        log(f"step {s}: loss {loss:.4f} ({n} tokens, {time.perf_counter() - ts:.2f}s)")
        if not math.isfinite(loss):
            raise SystemExit("loss is not finite")
    seconds = time.perf_counter() - t0

    print(json.dumps({
        "tokens_per_s": total_tokens / seconds if seconds > 0 else None,
        "steps": args.steps,
        "seconds": seconds,
        "peak_rss_mib": round(maxrss_mib(), 1),  # whole process, load included
        # ru_maxrss right after loading: if peak_rss_mib is higher, training set the peak
        "final_loss": loss,
        "tokens": total_tokens,
        "load_peak_rss_mib": round(rss_after_load, 1),
        "load_seconds": round(load_s, 2),
        "trainable_params": n_trainable,
        "threads": torch.get_num_threads(),
        "full_logits": args.full_logits,
        "loader": args.loader,
        "torch": torch.__version__,
    }), flush=True)


if __name__ == "__main__":
    main()
