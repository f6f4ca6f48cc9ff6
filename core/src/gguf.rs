//! A small GGUF reader: header, metadata and tensor table, checked against the file size.
//!
//! llama.cpp aborts the process on some malformed files, so every model and adapter is read and
//! checked here first and a bad file becomes an error that names it.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

/// Why a file is not a usable GGUF.
#[derive(Debug, thiserror::Error)]
pub enum GgufError {
    /// The path does not exist.
    #[error("'{}' does not exist", .0.display())]
    NotFound(PathBuf),
    /// The path is a directory or something else that is not a regular file.
    #[error("'{}' is not a file (a GGUF model file is expected)", .0.display())]
    NotAFile(PathBuf),
    /// Reading failed.
    #[error("failed to read '{}': {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The content is not a valid GGUF.
    #[error("'{}' is not a valid GGUF file: {reason}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

/// A metadata value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// Any integer type.
    Int(i64),
    /// Any float type.
    Float(f64),
    /// A boolean.
    Bool(bool),
    /// A string.
    Str(String),
    /// An array (long arrays of numbers are skipped and kept as their length only).
    Array(Vec<Value>, u64),
}

impl Value {
    /// The string, if this is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }
    /// The value as an integer, if it is one.
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }
}

/// One tensor's entry in the table.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorInfo {
    /// Name, e.g. `blk.0.attn_q.weight`.
    pub name: String,
    /// Dimensions, innermost first (GGUF order).
    pub dims: Vec<u64>,
    /// ggml type id.
    pub ggml_type: u32,
    /// Offset in the data section.
    pub offset: u64,
}

/// The parsed header of a GGUF file.
#[derive(Debug, Clone)]
pub struct GgufInfo {
    /// The file.
    pub path: PathBuf,
    /// GGUF version (2 or 3).
    pub version: u32,
    /// Metadata, by key.
    pub metadata: BTreeMap<String, Value>,
    /// Tensor table.
    pub tensors: Vec<TensorInfo>,
    /// File size in bytes.
    pub file_size: u64,
}

impl GgufInfo {
    /// A metadata string.
    pub fn get_str(&self, key: &str) -> Option<&str> {
        self.metadata.get(key).and_then(Value::as_str)
    }
    /// `general.architecture`.
    pub fn architecture(&self) -> Option<&str> {
        self.get_str("general.architecture")
    }
    /// `tokenizer.chat_template`.
    pub fn chat_template(&self) -> Option<&str> {
        self.get_str("tokenizer.chat_template")
    }
    /// Whether this file is a LoRA adapter (`general.type = "adapter"`).
    pub fn is_adapter(&self) -> bool {
        self.get_str("general.type") == Some("adapter")
    }
}

const MAX_STRING: u64 = 64 << 20;
const MAX_COUNT: u64 = 1 << 24;
/// Arrays longer than this are skipped rather than kept (token lists of 262k entries).
const KEEP_ARRAY: u64 = 64;

struct Reader<R> {
    inner: R,
    pos: u64,
}

impl<R: Read> Reader<R> {
    fn bytes<const N: usize>(&mut self) -> std::io::Result<[u8; N]> {
        let mut buf = [0u8; N];
        self.inner.read_exact(&mut buf)?;
        self.pos += N as u64;
        Ok(buf)
    }
    fn u32(&mut self) -> std::io::Result<u32> {
        Ok(u32::from_le_bytes(self.bytes()?))
    }
    fn u64(&mut self) -> std::io::Result<u64> {
        Ok(u64::from_le_bytes(self.bytes()?))
    }
    fn skip(&mut self, n: u64) -> std::io::Result<()> {
        let copied = std::io::copy(&mut (&mut self.inner).take(n), &mut std::io::sink())?;
        self.pos += copied;
        if copied != n {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        Ok(())
    }
}

/// Reads and checks a GGUF file: magic, version, metadata, tensor table, and that the file is
/// long enough to hold every tensor (a truncated download is the common failure).
pub fn read(path: &Path) -> Result<GgufInfo, GgufError> {
    let meta = std::fs::metadata(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => GgufError::NotFound(path.to_path_buf()),
        _ => GgufError::Io {
            path: path.to_path_buf(),
            source: e,
        },
    })?;
    if !meta.is_file() {
        return Err(GgufError::NotAFile(path.to_path_buf()));
    }
    let file = File::open(path).map_err(|e| GgufError::Io {
        path: path.to_path_buf(),
        source: e,
    })?;
    let invalid = |reason: String| GgufError::Invalid {
        path: path.to_path_buf(),
        reason,
    };
    let mut r = Reader {
        inner: BufReader::new(file),
        pos: 0,
    };
    let eof = |what: &str| format!("file ends inside the {what} (truncated?)");

    let magic = r
        .bytes::<4>()
        .map_err(|_| invalid("file is shorter than a GGUF header".into()))?;
    if &magic != b"GGUF" {
        return Err(invalid(format!("bad magic {magic:?}, expected \"GGUF\"")));
    }
    let version = r.u32().map_err(|_| invalid(eof("header")))?;
    if !(2..=3).contains(&version) {
        return Err(invalid(format!("unsupported GGUF version {version}")));
    }
    let n_tensors = r.u64().map_err(|_| invalid(eof("header")))?;
    let n_kv = r.u64().map_err(|_| invalid(eof("header")))?;
    if n_tensors > MAX_COUNT || n_kv > MAX_COUNT {
        return Err(invalid(format!(
            "implausible counts: {n_tensors} tensors, {n_kv} keys"
        )));
    }

    let mut metadata = BTreeMap::new();
    for _ in 0..n_kv {
        let key = read_string(&mut r).map_err(|e| invalid(e.unwrap_or_else(|| eof("metadata"))))?;
        let ty = r.u32().map_err(|_| invalid(eof("metadata")))?;
        let value =
            read_value(&mut r, ty, 0).map_err(|e| invalid(e.unwrap_or_else(|| eof("metadata"))))?;
        metadata.insert(key, value);
    }

    let mut tensors = Vec::with_capacity(n_tensors as usize);
    for _ in 0..n_tensors {
        let name =
            read_string(&mut r).map_err(|e| invalid(e.unwrap_or_else(|| eof("tensor table"))))?;
        let n_dims = r.u32().map_err(|_| invalid(eof("tensor table")))?;
        if n_dims > 8 {
            return Err(invalid(format!("tensor '{name}' has {n_dims} dimensions")));
        }
        let mut dims = Vec::with_capacity(n_dims as usize);
        for _ in 0..n_dims {
            dims.push(r.u64().map_err(|_| invalid(eof("tensor table")))?);
        }
        let ggml_type = r.u32().map_err(|_| invalid(eof("tensor table")))?;
        let offset = r.u64().map_err(|_| invalid(eof("tensor table")))?;
        tensors.push(TensorInfo {
            name,
            dims,
            ggml_type,
            offset,
        });
    }

    let alignment = metadata
        .get("general.alignment")
        .and_then(Value::as_int)
        .filter(|a| *a > 0)
        .unwrap_or(32) as u64;
    let data_start = r.pos.div_ceil(alignment) * alignment;
    let mut needed = data_start;
    for t in &tensors {
        let size = tensor_bytes(t.ggml_type, &t.dims).unwrap_or(0);
        needed = needed.max(data_start.saturating_add(t.offset).saturating_add(size));
    }
    let file_size = meta.len();
    if needed > file_size {
        return Err(invalid(format!(
            "file is truncated: its tensors need {needed} bytes but it has {file_size}"
        )));
    }
    Ok(GgufInfo {
        path: path.to_path_buf(),
        version,
        metadata,
        tensors,
        file_size,
    })
}

/// Err(None) means end of file; Err(Some(reason)) a malformed entry.
fn read_string<R: Read>(r: &mut Reader<R>) -> Result<String, Option<String>> {
    let len = r.u64().map_err(|_| None)?;
    if len > MAX_STRING {
        return Err(Some(format!("implausible string length {len}")));
    }
    let mut buf = vec![0u8; len as usize];
    r.inner.read_exact(&mut buf).map_err(|_| None)?;
    r.pos += len;
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

fn read_value<R: Read>(r: &mut Reader<R>, ty: u32, depth: u32) -> Result<Value, Option<String>> {
    let eof = |_| None;
    Ok(match ty {
        0 => Value::Int(r.bytes::<1>().map_err(eof)?[0] as i64),
        1 => Value::Int(r.bytes::<1>().map_err(eof)?[0] as i8 as i64),
        2 => Value::Int(u16::from_le_bytes(r.bytes().map_err(eof)?) as i64),
        3 => Value::Int(i16::from_le_bytes(r.bytes().map_err(eof)?) as i64),
        4 => Value::Int(u32::from_le_bytes(r.bytes().map_err(eof)?) as i64),
        5 => Value::Int(i32::from_le_bytes(r.bytes().map_err(eof)?) as i64),
        6 => Value::Float(f32::from_le_bytes(r.bytes().map_err(eof)?) as f64),
        7 => Value::Bool(r.bytes::<1>().map_err(eof)?[0] != 0),
        8 => Value::Str(read_string(r)?),
        9 => {
            if depth > 2 {
                return Err(Some("arrays nested too deeply".into()));
            }
            let elem = r.u32().map_err(eof)?;
            let len = r.u64().map_err(eof)?;
            if len > MAX_COUNT * 4 {
                return Err(Some(format!("implausible array length {len}")));
            }
            let fixed = match elem {
                0 | 1 | 7 => Some(1),
                2 | 3 => Some(2),
                4..=6 => Some(4),
                10..=12 => Some(8),
                _ => None,
            };
            match fixed {
                Some(width) if len > KEEP_ARRAY => {
                    r.skip(len * width).map_err(eof)?;
                    Value::Array(Vec::new(), len)
                }
                _ => {
                    let mut items = Vec::new();
                    for _ in 0..len {
                        let v = read_value(r, elem, depth + 1)?;
                        if (items.len() as u64) < KEEP_ARRAY {
                            items.push(v);
                        }
                    }
                    Value::Array(items, len)
                }
            }
        }
        10 => Value::Int(u64::from_le_bytes(r.bytes().map_err(eof)?) as i64),
        11 => Value::Int(i64::from_le_bytes(r.bytes().map_err(eof)?)),
        12 => Value::Float(f64::from_le_bytes(r.bytes().map_err(eof)?)),
        other => return Err(Some(format!("unknown metadata value type {other}"))),
    })
}

/// Bytes a tensor of a ggml type takes, for the types whose layout we know.
pub fn tensor_bytes(ggml_type: u32, dims: &[u64]) -> Option<u64> {
    // (block size in elements, bytes per block)
    let (block, bytes) = match ggml_type {
        0 => (1, 4),      // F32
        1 => (1, 2),      // F16
        2 => (32, 18),    // Q4_0
        3 => (32, 20),    // Q4_1
        6 => (32, 22),    // Q5_0
        7 => (32, 24),    // Q5_1
        8 => (32, 34),    // Q8_0
        9 => (32, 36),    // Q8_1
        10 => (256, 84),  // Q2_K
        11 => (256, 110), // Q3_K
        12 => (256, 144), // Q4_K
        13 => (256, 176), // Q5_K
        14 => (256, 210), // Q6_K
        15 => (256, 292), // Q8_K
        24 => (1, 1),     // I8
        25 => (1, 2),     // I16
        26 => (1, 4),     // I32
        27 => (1, 8),     // I64
        28 => (1, 8),     // F64
        30 => (1, 2),     // BF16
        _ => return None,
    };
    let elements = dims.iter().try_fold(1u64, |acc, d| acc.checked_mul(*d))?;
    Some(elements.div_ceil(block) * bytes)
}

/// How [`write`] stores tensor data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Storage {
    /// 32-bit floats (GGML type 0).
    F32,
    /// 16-bit floats (GGML type 1): half the size, about three significant digits.
    F16,
    /// 8-bit blocks (GGML type 8, Q8_0: 32 values and their F16 scale in 34 bytes) for tensors
    /// whose rows are whole blocks, F16 for the others (a LoRA B matrix's rows are as long as
    /// its rank: F16 unless the rank is a multiple of 32).
    Q8_0,
}

impl Storage {
    /// The GGML type a tensor whose innermost dimension is `row` is stored as.
    fn ggml_type(self, row: u64) -> u32 {
        match self {
            Storage::F32 => 0,
            Storage::Q8_0 if row.is_multiple_of(Q8_0_BLOCK) => 8,
            Storage::F16 | Storage::Q8_0 => 1,
        }
    }
}

const Q8_0_BLOCK: u64 = 32;

/// Appends `data` as Q8_0 blocks, rounding as ggml's reference quantizer does.
fn put_q8_0(out: &mut Vec<u8>, data: &[f32]) {
    for block in data.chunks(Q8_0_BLOCK as usize) {
        let amax = block.iter().fold(0f32, |m, x| m.max(x.abs()));
        let d = amax / 127.0;
        let id = if d == 0.0 { 0.0 } else { 1.0 / d };
        out.extend_from_slice(&half::f16::from_f32(d).to_le_bytes());
        out.extend(block.iter().map(|x| (x * id).round() as i8 as u8));
    }
}

/// Writes a GGUF file (version 3) with F32 tensors: small test models and the trainer's LoRA
/// adapters. See [`write`].
pub fn write_f32(
    path: &Path,
    metadata: &[(&str, Value)],
    tensors: &[(&str, Vec<u64>, Vec<f32>)],
) -> std::io::Result<()> {
    write(path, metadata, tensors, Storage::F32)
}

/// Writes a GGUF file (version 3) with the given metadata and tensors, stored as `storage`.
/// Tensors are `(name, dims innermost first, data)`; arrays hold one element type (integers,
/// floats or strings).
pub fn write(
    path: &Path,
    metadata: &[(&str, Value)],
    tensors: &[(&str, Vec<u64>, Vec<f32>)],
    storage: Storage,
) -> std::io::Result<()> {
    let mut out = Vec::new();
    out.extend_from_slice(b"GGUF");
    out.extend_from_slice(&3u32.to_le_bytes());
    out.extend_from_slice(&(tensors.len() as u64).to_le_bytes());
    out.extend_from_slice(&(metadata.len() as u64).to_le_bytes());
    fn put_str(out: &mut Vec<u8>, s: &str) {
        out.extend_from_slice(&(s.len() as u64).to_le_bytes());
        out.extend_from_slice(s.as_bytes());
    }
    fn put_value(out: &mut Vec<u8>, v: &Value) {
        match v {
            // Non-negative integers as U32 (what llama.cpp expects of counts and ids).
            Value::Int(i) if *i >= 0 => {
                out.extend_from_slice(&4u32.to_le_bytes());
                out.extend_from_slice(&(*i as u32).to_le_bytes());
            }
            Value::Int(i) => {
                out.extend_from_slice(&5u32.to_le_bytes());
                out.extend_from_slice(&(*i as i32).to_le_bytes());
            }
            Value::Float(f) => {
                out.extend_from_slice(&6u32.to_le_bytes());
                out.extend_from_slice(&(*f as f32).to_le_bytes());
            }
            Value::Bool(b) => {
                out.extend_from_slice(&7u32.to_le_bytes());
                out.push(*b as u8);
            }
            Value::Str(s) => {
                out.extend_from_slice(&8u32.to_le_bytes());
                put_str(out, s);
            }
            Value::Array(items, _) => {
                // The element type is the first item's (strings when empty): I32, F32 or string.
                out.extend_from_slice(&9u32.to_le_bytes());
                let element = match items.first() {
                    Some(Value::Int(_)) => 5u32,
                    Some(Value::Float(_)) => 6,
                    _ => 8,
                };
                out.extend_from_slice(&element.to_le_bytes());
                out.extend_from_slice(&(items.len() as u64).to_le_bytes());
                for item in items {
                    match (element, item) {
                        (5, Value::Int(i)) => out.extend_from_slice(&(*i as i32).to_le_bytes()),
                        (6, Value::Float(f)) => out.extend_from_slice(&(*f as f32).to_le_bytes()),
                        (5, _) => out.extend_from_slice(&0i32.to_le_bytes()),
                        (6, _) => out.extend_from_slice(&0f32.to_le_bytes()),
                        _ => put_str(out, item.as_str().unwrap_or_default()),
                    }
                }
            }
        }
    }
    for (key, value) in metadata {
        put_str(&mut out, key);
        put_value(&mut out, value);
    }
    let mut offset = 0u64;
    for (name, dims, data) in tensors {
        put_str(&mut out, name);
        out.extend_from_slice(&(dims.len() as u32).to_le_bytes());
        for d in dims {
            out.extend_from_slice(&d.to_le_bytes());
        }
        let ggml_type = storage.ggml_type(dims.first().copied().unwrap_or(1));
        out.extend_from_slice(&ggml_type.to_le_bytes());
        out.extend_from_slice(&offset.to_le_bytes());
        let elements = dims.iter().try_fold(1u64, |acc, d| acc.checked_mul(*d));
        let size = tensor_bytes(ggml_type, dims)
            .filter(|_| elements == Some(data.len() as u64))
            .ok_or_else(|| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    format!(
                        "tensor '{name}' has {} values for its shape {dims:?}",
                        data.len()
                    ),
                )
            })?;
        offset += size.div_ceil(32) * 32;
    }
    while out.len() % 32 != 0 {
        out.push(0);
    }
    for (_, dims, data) in tensors {
        while out.len() % 32 != 0 {
            out.push(0);
        }
        match storage.ggml_type(dims.first().copied().unwrap_or(1)) {
            0 => data
                .iter()
                .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
            8 => put_q8_0(&mut out, data),
            _ => data
                .iter()
                .for_each(|x| out.extend_from_slice(&half::f16::from_f32(*x).to_le_bytes())),
        }
    }
    std::fs::write(path, out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(dir: &Path) -> PathBuf {
        let path = dir.join("m.gguf");
        write_f32(
            &path,
            &[
                ("general.architecture", Value::Str("llama".into())),
                ("general.type", Value::Str("adapter".into())),
                ("x.count", Value::Int(7)),
            ],
            &[
                ("a.weight", vec![4, 2], vec![1.0; 8]),
                ("b.weight", vec![3], vec![2.0; 3]),
            ],
        )
        .unwrap();
        path
    }

    #[test]
    fn f16_storage_halves_the_data_and_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a.gguf"), dir.path().join("b.gguf"));
        let tensors = [("w", vec![64u64, 4], vec![0.1f32; 256])];
        write(&a, &[], &tensors, Storage::F32).unwrap();
        write(&b, &[], &tensors, Storage::F16).unwrap();
        let (ia, ib) = (read(&a).unwrap(), read(&b).unwrap());
        assert_eq!(ia.tensors[0].ggml_type, 0);
        assert_eq!(ib.tensors[0].ggml_type, 1);
        assert_eq!(ia.file_size - ib.file_size, 512);
        let bytes = std::fs::read(&b).unwrap();
        let first = &bytes[bytes.len() - 512..bytes.len() - 510];
        let x = half::f16::from_le_bytes([first[0], first[1]]).to_f32();
        assert!((x - 0.1).abs() < 1e-4, "{x}");
    }

    #[test]
    fn q8_0_storage_quantizes_whole_block_rows_and_keeps_the_others_f16() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("q.gguf");
        let a: Vec<f32> = (0..128).map(|i| (i as f32 - 64.0) / 100.0).collect();
        // A LoRA pair: A's rows (64 long) are two blocks; B's (rank 4) are not a block.
        let tensors = [
            ("a", vec![64u64, 2], a.clone()),
            ("b", vec![4u64, 3], vec![0.25f32; 12]),
        ];
        write(&path, &[], &tensors, Storage::Q8_0).unwrap();
        let info = read(&path).unwrap();
        assert_eq!(info.tensors[0].ggml_type, 8);
        assert_eq!(info.tensors[1].ggml_type, 1);
        assert_eq!(
            info.tensors[1].offset, 160,
            "4 blocks of 34 bytes, padded to 32"
        );
        let bytes = std::fs::read(&path).unwrap();
        // The data section ends with a (136 bytes, padded to 160), then b (12 F16 values).
        let data = &bytes[bytes.len() - 160 - 24..];
        // Dequantized, every value is within half a step of the original, plus what storing the
        // step as F16 costs (up to 127 steps times its rounding, 2^-11).
        for (block, values) in data[..4 * 34].chunks(34).zip(a.chunks(32)) {
            let d = half::f16::from_le_bytes([block[0], block[1]]).to_f32();
            let amax = values.iter().fold(0f32, |m, x| m.max(x.abs()));
            assert!((d - amax / 127.0).abs() < 1e-5, "{d}");
            for (&q, &x) in block[2..].iter().zip(values) {
                assert!((q as i8 as f32 * d - x).abs() <= d * 0.57, "{q} {x}");
            }
        }
        let b = &data[160..162];
        assert_eq!(half::f16::from_le_bytes([b[0], b[1]]).to_f32(), 0.25);
    }

    #[test]
    fn reads_what_it_writes() {
        let dir = tempfile::tempdir().unwrap();
        let info = read(&sample(dir.path())).unwrap();
        assert_eq!(info.version, 3);
        assert_eq!(info.architecture(), Some("llama"));
        assert!(info.is_adapter());
        assert_eq!(info.metadata["x.count"], Value::Int(7));
        assert_eq!(info.tensors.len(), 2);
        assert_eq!(info.tensors[1].name, "b.weight");
        assert_eq!(info.tensors[1].offset, 32);
    }

    #[test]
    fn truncated_files_are_rejected_at_every_length() {
        let dir = tempfile::tempdir().unwrap();
        let path = sample(dir.path());
        let bytes = std::fs::read(&path).unwrap();
        let cut = dir.path().join("cut.gguf");
        for len in 0..bytes.len() {
            std::fs::write(&cut, &bytes[..len]).unwrap();
            let err = read(&cut).expect_err(&format!("length {len} should fail"));
            assert!(matches!(err, GgufError::Invalid { .. }), "{err}");
        }
    }

    #[test]
    fn not_found_directory_and_garbage() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            read(&dir.path().join("nope")),
            Err(GgufError::NotFound(_))
        ));
        assert!(matches!(read(dir.path()), Err(GgufError::NotAFile(_))));
        let junk = dir.path().join("junk.gguf");
        std::fs::write(&junk, b"this is not a model at all").unwrap();
        let msg = read(&junk).unwrap_err().to_string();
        assert!(msg.contains("bad magic"), "{msg}");
        assert!(msg.contains("junk.gguf"), "{msg}");
    }
}
