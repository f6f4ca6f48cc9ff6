//! A GGUF model requantized by llama.cpp's own quantizer, for the measurements of BENCHMARKS.md
//! ("The default model requantized for the CPU"). The product does not do this.
//!
//! ```sh
//! cargo run --release -p clarifycoder-core --example requantize -- IN.gguf OUT.gguf q8_0 [--keep-embeddings]
//! ```
//!
//! TYPE is `q8_0` or `q4_0`. Every matrix is requantized from what the file holds
//! (`allow_requantize`); `--keep-embeddings` leaves the token embeddings as they are (they are only
//! looked up, never multiplied).

use std::ffi::CString;
use std::process::ExitCode;

use llama_cpp_sys_2 as sys;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let keep_embeddings = args.iter().any(|a| a == "--keep-embeddings");
    let positional: Vec<&String> = args.iter().filter(|a| !a.starts_with("--")).collect();
    let [input, output, kind] = positional[..] else {
        eprintln!("usage: requantize IN.gguf OUT.gguf q8_0|q4_0 [--keep-embeddings]");
        return ExitCode::from(2);
    };
    let ftype = match kind.as_str() {
        "q8_0" => sys::LLAMA_FTYPE_MOSTLY_Q8_0,
        "q4_0" => sys::LLAMA_FTYPE_MOSTLY_Q4_0,
        other => {
            eprintln!("requantize: unknown type '{other}'; use q8_0 or q4_0");
            return ExitCode::from(2);
        }
    };
    let (Ok(input), Ok(output)) = (CString::new(input.as_str()), CString::new(output.as_str()))
    else {
        eprintln!("requantize: a path contains a NUL byte");
        return ExitCode::from(2);
    };
    // SAFETY: the defaults come from llama.cpp itself; the paths outlive the call.
    let status = unsafe {
        let mut params = sys::llama_model_quantize_default_params();
        params.ftype = ftype;
        params.allow_requantize = true;
        params.nthread = std::thread::available_parallelism().map_or(1, |n| n.get() as i32);
        if keep_embeddings {
            // The embeddings' own type: llama.cpp's quantizer leaves a tensor as it is when asked
            // for the type it already has, so read it from the file.
            match embedding_type(&input) {
                Some(t) => params.token_embedding_type = t,
                None => {
                    eprintln!("requantize: no token_embd.weight in the input");
                    return ExitCode::FAILURE;
                }
            }
        }
        sys::llama_model_quantize(input.as_ptr(), output.as_ptr(), &params)
    };
    if status != 0 {
        eprintln!("requantize: llama_model_quantize failed ({status})");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

/// The GGML type of `token_embd.weight` in the GGUF at `path`.
fn embedding_type(path: &CString) -> Option<sys::ggml_type> {
    // SAFETY: a metadata-only read (no_alloc); the context is freed before returning.
    unsafe {
        let params = sys::gguf_init_params {
            no_alloc: true,
            ctx: std::ptr::null_mut(),
        };
        let ctx = sys::gguf_init_from_file(path.as_ptr(), params);
        if ctx.is_null() {
            return None;
        }
        let name = CString::new("token_embd.weight").ok()?;
        let id = sys::gguf_find_tensor(ctx, name.as_ptr());
        let found = (id >= 0).then(|| sys::gguf_get_tensor_type(ctx, id));
        sys::gguf_free(ctx);
        found
    }
}
