//! Fused CPU ops of the training forward pass, each with a hand-written backward pass.
//!
//! candle's CPU elementwise ops run on one thread and allocate a tensor per step, and a composite
//! formula keeps a dozen full-size intermediates per norm, softmax or activation: at Gemma 3's
//! sizes they took longer than the matrix products. Each op here is one parallel pass forward and
//! one backward. Every op is unit-tested against the composite formula it replaces, which
//! [`crate::model`] still uses off the CPU.
//!
//! Matrix products with frozen weights call `gemm` directly on the tensors' storage: no copies,
//! and the backward pass forms only the input's gradient (candle's matmul would also form the
//! unused gradient of every frozen matrix, the 262k × 640 output head included).

use std::sync::Arc;

use candle_core::{CpuStorage, CustomOp1, CustomOp2, DType, Layout, Shape, Storage, Tensor};
use rayon::prelude::*;

/// Elements per parallel work item of the elementwise ops.
const CHUNK: usize = 1 << 14;

/// The contiguous f32 data behind a CPU storage and layout.
fn slice<'a>(op: &str, storage: &'a CpuStorage, layout: &Layout) -> candle_core::Result<&'a [f32]> {
    let CpuStorage::F32(data) = storage else {
        candle_core::bail!("{op}: expected f32 data")
    };
    match layout.contiguous_offsets() {
        Some((start, end)) => Ok(&data[start..end]),
        None => candle_core::bail!("{op}: expected contiguous data"),
    }
}

/// Runs `f` on a CPU tensor's data as a contiguous f32 slice (made contiguous first if needed).
fn with_data<R>(
    op: &str,
    t: &Tensor,
    f: impl FnOnce(&[f32]) -> candle_core::Result<R>,
) -> candle_core::Result<R> {
    let t = t.contiguous()?;
    let (storage, layout) = t.storage_and_layout();
    match &*storage {
        Storage::Cpu(s) => f(slice(op, s, layout)?),
        _ => candle_core::bail!("{op}: expected a CPU tensor"),
    }
}

/// Whether `x` takes the fused CPU ops (F32 on the CPU) or the composite formulas.
fn fused(x: &Tensor) -> bool {
    x.device().is_cpu() && x.dtype() == DType::F32
}

fn tensor(data: Vec<f32>, shape: &Shape) -> candle_core::Result<Tensor> {
    Tensor::from_vec(data, shape, &candle_core::Device::Cpu)
}

/// `lhs [m, k] · rhs [k, n]`, with `rhs` read through strides (`rhs_rs` between rows, `rhs_cs`
/// between columns), on all of rayon's threads.
fn matmul(
    (m, k, n): (usize, usize, usize),
    lhs: &[f32],
    rhs: &[f32],
    (rhs_rs, rhs_cs): (usize, usize),
) -> Vec<f32> {
    let mut dst = vec![0f32; m * n];
    if m == 0 || n == 0 || k == 0 {
        return dst;
    }
    assert_eq!(lhs.len(), m * k, "matmul: lhs size");
    assert_eq!(
        (k - 1) * rhs_rs + (n - 1) * rhs_cs + 1,
        rhs.len(),
        "matmul: rhs size"
    );
    let threads = rayon::current_num_threads();
    let parallelism = if threads > 1 {
        gemm::Parallelism::Rayon(threads)
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: the asserts above keep every index gemm forms for these strides inside `lhs`,
    // `rhs` and `dst`; `read_dst` is false, so `dst` is only written.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            n as isize,
            false,
            lhs.as_ptr(),
            1,
            k as isize,
            rhs.as_ptr(),
            rhs_cs as isize,
            rhs_rs as isize,
            0.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        )
    }
    dst
}

/// `x · Wᵀ` with a frozen `W` [out, in] (F32, or BF16 widened for each product: `gemm` has no
/// BF16 kernel); the backward pass yields only `∂/∂x = g · W`.
pub struct Frozen {
    pub w: Tensor,
}

impl Frozen {
    /// `x · Wᵀ` for x [.., in].
    pub fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        if fused(x) {
            x.contiguous()?.apply_op1(Frozen { w: self.w.clone() })
        } else {
            // Off the CPU: candle's matmul (its backward also forms the unused weight gradient,
            // which costs time but not correctness).
            x.broadcast_matmul(&self.w.to_dtype(x.dtype())?.t()?)
        }
    }

    /// Runs `f` on the weight's data as f32, with its (out, in) shape.
    fn with_weight<R>(
        &self,
        f: impl FnOnce(&[f32], (usize, usize)) -> candle_core::Result<R>,
    ) -> candle_core::Result<R> {
        let dims = self.w.dims2()?;
        if self.w.dtype() == DType::F32 {
            return with_data("frozen-linear", &self.w, |w| f(w, dims));
        }
        let wide = self.w.to_dtype(DType::F32)?;
        with_data("frozen-linear", &wide, |w| f(w, dims))
    }
}

impl CustomOp1 for Frozen {
    fn name(&self) -> &'static str {
        "frozen-linear"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = slice("frozen-linear", storage, layout)?;
        self.with_weight(|w, (out, inp)| {
            let mut dims = layout.dims().to_vec();
            if dims.last() != Some(&inp) {
                candle_core::bail!("frozen-linear: input {dims:?} against weight [{out}, {inp}]");
            }
            let rows = x.len() / inp;
            let y = matmul((rows, inp, out), x, w, (1, inp));
            *dims.last_mut().unwrap() = out;
            Ok((CpuStorage::F32(y), Shape::from(dims)))
        })
    }

    fn bwd(
        &self,
        arg: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        let dx = with_data("frozen-linear", grad_res, |g| {
            self.with_weight(|w, (out, inp)| Ok(matmul((g.len() / out, out, inp), g, w, (inp, 1))))
        })?;
        Ok(Some(tensor(dx, arg.shape())?))
    }
}

/// `e^x` for f32, within 4e-7 relative error for x in [−87.3, 88] (where e^x is a normal
/// number); inputs outside are clamped to that range, NaN stays NaN. Branch-free, so loops over
/// slices vectorize.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    // ln 2 split in two so that n·LN2_HI is exact.
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    let x = x.clamp(-87.3, 88.0);
    let n = (x * LOG2E).round_ties_even();
    let r = x - n * LN2_HI - n * LN2_LO;
    // e^r on [-ln2/2, ln2/2] (Cephes' expf polynomial).
    let p = ((((1.987_569_1e-4 * r + 1.398_199_9e-3) * r + 8.333_452e-3) * r + 4.166_579_6e-2) * r
        + 1.666_666_5e-1)
        * r
        + 0.5;
    let e = p * r * r + r + 1.0;
    // 2^n as a float (n is within [-126, 127] after the clamp). `e` is in [0.7, 1.42], so
    // `e · 2^n` can only underflow gracefully.
    e * f32::from_bits(((n as i32 + 127) as u32) << 23)
}

/// Lanes of the vectorizable reductions below (two AVX-512 or four AVX2 registers).
const LANES: usize = 32;

/// The largest element (−∞ for an empty slice), in independent lanes so the loop vectorizes.
fn max(xs: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; LANES];
    let chunks = xs.chunks_exact(LANES);
    let rest = chunks.remainder();
    for c in chunks {
        for (a, &v) in acc.iter_mut().zip(c) {
            *a = if v > *a { v } else { *a };
        }
    }
    acc.iter()
        .chain(rest)
        .copied()
        .fold(f32::NEG_INFINITY, f32::max)
}

/// Σ e^(x − shift), in f32 lanes per block of 1024 and f64 across blocks.
fn sum_exp(xs: &[f32], shift: f32) -> f64 {
    let mut total = 0f64;
    for block in xs.chunks(1024) {
        let mut acc = [0f32; LANES];
        let chunks = block.chunks_exact(LANES);
        let rest = chunks.remainder();
        for c in chunks {
            for (a, &v) in acc.iter_mut().zip(c) {
                *a += exp(v - shift);
            }
        }
        total += acc.iter().map(|&a| a as f64).sum::<f64>();
        total += rest.iter().map(|&v| exp(v - shift) as f64).sum::<f64>();
    }
    total
}

/// log Σ exp(row), stably.
pub fn log_sum_exp(row: &[f32]) -> f32 {
    let m = max(row);
    m + sum_exp(row, m).ln() as f32
}

/// Per-row cross-entropy of logits [n, vocab] against fixed targets: two sweeps per row forward
/// and two backward (softmax − one-hot), in parallel over rows.
pub struct CrossEntropy {
    pub targets: Vec<u32>,
}

impl CrossEntropy {
    fn vocab(&self, dims: &[usize]) -> candle_core::Result<usize> {
        match dims {
            &[n, vocab] if n == self.targets.len() => Ok(vocab),
            _ => candle_core::bail!(
                "cross-entropy: logits {dims:?} for {} targets",
                self.targets.len()
            ),
        }
    }
}

impl CustomOp1 for CrossEntropy {
    fn name(&self) -> &'static str {
        "cross-entropy"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let vocab = self.vocab(layout.dims())?;
        let data = slice("cross-entropy", storage, layout)?;
        let out: Vec<f32> = data
            .par_chunks(vocab)
            .zip(self.targets.par_iter())
            .map(|(row, &t)| log_sum_exp(row) - row[t as usize])
            .collect();
        let n = out.len();
        Ok((CpuStorage::F32(out), Shape::from(n)))
    }

    fn bwd(
        &self,
        arg: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        let vocab = self.vocab(arg.dims())?;
        let scale = grad_res.to_vec1::<f32>()?;
        let grad = with_data("cross-entropy", arg, |data| {
            let mut grad = vec![0f32; data.len()];
            grad.par_chunks_mut(vocab)
                .zip(data.par_chunks(vocab))
                .zip(self.targets.par_iter().zip(scale.par_iter()))
                .for_each(|((g, row), (&t, &s))| {
                    let lse = log_sum_exp(row);
                    for (gi, &x) in g.iter_mut().zip(row) {
                        *gi = exp(x - lse) * s;
                    }
                    g[t as usize] -= s;
                });
            Ok(grad)
        })?;
        Ok(Some(tensor(grad, arg.shape())?))
    }
}

/// RMS norm over the last dimension with a frozen weight: one parallel pass forward and one
/// backward (`∂x = r·w·g − x·r³·mean(x·w·g)`, r = 1/√(mean(x²)+ε)).
pub struct RmsNorm {
    pub w: Arc<[f32]>,
    pub eps: f64,
}

impl RmsNorm {
    fn check(&self, dims: &[usize]) -> candle_core::Result<()> {
        if dims.last() != Some(&self.w.len()) {
            candle_core::bail!("rms-norm: input {dims:?} against weight {}", self.w.len());
        }
        Ok(())
    }

    fn inv_rms(&self, row: &[f32]) -> f64 {
        let ms = row.iter().map(|&v| (v as f64) * (v as f64)).sum::<f64>() / row.len() as f64;
        1.0 / (ms + self.eps).sqrt()
    }
}

impl CustomOp1 for RmsNorm {
    fn name(&self) -> &'static str {
        "rms-norm"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        self.check(layout.dims())?;
        let x = slice("rms-norm", storage, layout)?;
        let n = self.w.len();
        let mut y = vec![0f32; x.len()];
        y.par_chunks_mut(n).zip(x.par_chunks(n)).for_each(|(y, x)| {
            let r = self.inv_rms(x) as f32;
            for ((yi, &xi), &wi) in y.iter_mut().zip(x).zip(self.w.iter()) {
                *yi = xi * r * wi;
            }
        });
        Ok((CpuStorage::F32(y), layout.shape().clone()))
    }

    fn bwd(
        &self,
        arg: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        self.check(arg.dims())?;
        let n = self.w.len();
        let dx = with_data("rms-norm", arg, |x| {
            with_data("rms-norm", grad_res, |g| {
                let mut dx = vec![0f32; x.len()];
                dx.par_chunks_mut(n)
                    .zip(x.par_chunks(n).zip(g.par_chunks(n)))
                    .for_each(|(dx, (x, g))| {
                        let r = self.inv_rms(x);
                        let dot: f64 = x
                            .iter()
                            .zip(g)
                            .zip(self.w.iter())
                            .map(|((&xi, &gi), &wi)| xi as f64 * gi as f64 * wi as f64)
                            .sum::<f64>()
                            / n as f64;
                        let c = r * r * r * dot;
                        for (((d, &xi), &gi), &wi) in dx.iter_mut().zip(x).zip(g).zip(self.w.iter())
                        {
                            *d = (r * wi as f64 * gi as f64 - xi as f64 * c) as f32;
                        }
                    });
                Ok(dx)
            })
        })?;
        Ok(Some(tensor(dx, arg.shape())?))
    }
}

/// The gate's activation in a gated feed-forward block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// GELU, tanh approximation (Gemma).
    GeluTanh,
    /// SiLU (Llama, Qwen 2).
    Silu,
}

impl Activation {
    /// The activation and its derivative at `x`.
    #[inline(always)]
    fn eval(self, x: f32) -> (f32, f32) {
        match self {
            Activation::GeluTanh => {
                const C: f32 = 0.797_884_6; // √(2/π)
                const A: f32 = 0.044_715;
                let u = C * x * (1.0 + A * x * x);
                // tanh(u) = 1 − 2 / (e^(2u) + 1), which saturates cleanly at ±1.
                let t = 1.0 - 2.0 / (exp(2.0 * u) + 1.0);
                let value = 0.5 * x * (1.0 + t);
                let slope = 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * C * (1.0 + 3.0 * A * x * x);
                (value, slope)
            }
            Activation::Silu => {
                let s = 1.0 / (1.0 + exp(-x));
                (x * s, s * (1.0 + x * (1.0 - s)))
            }
        }
    }
}

/// `act(gate) ⊙ up`, the gated feed-forward product.
pub struct Gated(pub Activation);

impl CustomOp2 for Gated {
    fn name(&self) -> &'static str {
        "gated-activation"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        if l1.dims() != l2.dims() {
            candle_core::bail!(
                "gated-activation: gate {:?} vs up {:?}",
                l1.dims(),
                l2.dims()
            );
        }
        let gate = slice("gated-activation", s1, l1)?;
        let up = slice("gated-activation", s2, l2)?;
        let mut y = vec![0f32; gate.len()];
        y.par_chunks_mut(CHUNK)
            .zip(gate.par_chunks(CHUNK).zip(up.par_chunks(CHUNK)))
            .for_each(|(y, (g, u))| {
                for ((yi, &gi), &ui) in y.iter_mut().zip(g).zip(u) {
                    *yi = self.0.eval(gi).0 * ui;
                }
            });
        Ok((CpuStorage::F32(y), l1.shape().clone()))
    }

    fn bwd(
        &self,
        gate: &Tensor,
        up: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let (dg, du) = with_data("gated-activation", gate, |g| {
            with_data("gated-activation", up, |u| {
                with_data("gated-activation", grad_res, |d| {
                    let mut dg = vec![0f32; g.len()];
                    let mut du = vec![0f32; g.len()];
                    dg.par_chunks_mut(CHUNK)
                        .zip(du.par_chunks_mut(CHUNK))
                        .zip(g.par_chunks(CHUNK).zip(u.par_chunks(CHUNK)))
                        .zip(d.par_chunks(CHUNK))
                        .for_each(|(((dg, du), (g, u)), d)| {
                            for i in 0..g.len() {
                                let (value, slope) = self.0.eval(g[i]);
                                dg[i] = d[i] * u[i] * slope;
                                du[i] = d[i] * value;
                            }
                        });
                    Ok((dg, du))
                })
            })
        })?;
        Ok((
            Some(tensor(dg, gate.shape())?),
            Some(tensor(du, up.shape())?),
        ))
    }
}

/// Softmax over the last dimension of attention scores [.., T, T] under a causal mask (query
/// `i` sees keys `j ≤ i`), optionally limited to a sliding window of `w` keys (`i − j < w`).
/// Masked entries are 0 in the output and are never read.
pub struct CausalSoftmax {
    pub window: Option<usize>,
}

impl CausalSoftmax {
    /// The keys that query row `i` sees.
    fn visible(&self, i: usize) -> std::ops::Range<usize> {
        let lo = self.window.map_or(0, |w| (i + 1).saturating_sub(w));
        lo..i + 1
    }

    fn width(dims: &[usize]) -> candle_core::Result<usize> {
        match dims {
            [.., a, b] if a == b => Ok(*b),
            _ => candle_core::bail!("causal-softmax: expected [.., T, T], got {dims:?}"),
        }
    }
}

impl CustomOp1 for CausalSoftmax {
    fn name(&self) -> &'static str {
        "causal-softmax"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let t = Self::width(layout.dims())?;
        let s = slice("causal-softmax", storage, layout)?;
        let mut p = vec![0f32; s.len()];
        p.par_chunks_mut(t)
            .zip(s.par_chunks(t))
            .enumerate()
            .for_each(|(row, (p, s))| {
                let keys = self.visible(row % t);
                let (p, s) = (&mut p[keys.clone()], &s[keys]);
                let m = max(s);
                for (pi, &si) in p.iter_mut().zip(s) {
                    *pi = exp(si - m);
                }
                let inv = 1.0 / p.iter().map(|&v| v as f64).sum::<f64>() as f32;
                p.iter_mut().for_each(|v| *v *= inv);
            });
        Ok((CpuStorage::F32(p), layout.shape().clone()))
    }

    fn bwd(
        &self,
        arg: &Tensor,
        res: &Tensor,
        grad_res: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        let t = Self::width(arg.dims())?;
        let ds = with_data("causal-softmax", res, |p| {
            with_data("causal-softmax", grad_res, |g| {
                let mut ds = vec![0f32; p.len()];
                ds.par_chunks_mut(t)
                    .zip(p.par_chunks(t).zip(g.par_chunks(t)))
                    .enumerate()
                    .for_each(|(row, (ds, (p, g)))| {
                        let keys = self.visible(row % t);
                        let (ds, p, g) = (&mut ds[keys.clone()], &p[keys.clone()], &g[keys]);
                        let dot: f64 = p.iter().zip(g).map(|(&a, &b)| a as f64 * b as f64).sum();
                        let dot = dot as f32;
                        for ((d, &pi), &gi) in ds.iter_mut().zip(p).zip(g) {
                            *d = pi * (gi - dot);
                        }
                    });
                Ok(ds)
            })
        })?;
        Ok(Some(tensor(ds, arg.shape())?))
    }
}

/// Rotary position embedding of x [T, H, head_dim] (the first `cos`-table-width·2 dimensions of
/// each head rotate, the rest pass through), times `scale`. NEOX style rotates dimension `i`
/// with `i + half`; the original style rotates adjacent pairs. The backward pass rotates back.
pub struct Rope {
    /// cos and sin of each position's angles, [T, half] each.
    pub cos: Arc<[f32]>,
    pub sin: Arc<[f32]>,
    pub half: usize,
    pub neox: bool,
    pub scale: f32,
}

impl Rope {
    /// Applies the rotation (`sign` 1) or its inverse (`sign` −1) to rows of `x` laid out as
    /// [T, H, d] into `y`.
    fn rotate(
        &self,
        x: &[f32],
        y: &mut [f32],
        dims: &[usize],
        sign: f32,
    ) -> candle_core::Result<()> {
        let &[t, h, d] = dims else {
            candle_core::bail!("rope: expected [T, H, head_dim], got {dims:?}")
        };
        let half = self.half;
        if 2 * half > d || self.cos.len() != t * half {
            candle_core::bail!(
                "rope: tables for {} values do not fit {dims:?}",
                self.cos.len()
            );
        }
        y.par_chunks_mut(h * d)
            .zip(x.par_chunks(h * d))
            .enumerate()
            .for_each(|(p, (y, x))| {
                let cos = &self.cos[p * half..(p + 1) * half];
                let sin = &self.sin[p * half..(p + 1) * half];
                for (y, x) in y.chunks_mut(d).zip(x.chunks(d)) {
                    for i in 0..half {
                        let (a, b) = if self.neox {
                            (i, i + half)
                        } else {
                            (2 * i, 2 * i + 1)
                        };
                        let (c, s) = (cos[i] * self.scale, sign * sin[i] * self.scale);
                        y[a] = x[a] * c - x[b] * s;
                        y[b] = x[b] * c + x[a] * s;
                    }
                    for i in 2 * half..d {
                        y[i] = x[i] * self.scale;
                    }
                }
            });
        Ok(())
    }
}

impl CustomOp1 for Rope {
    fn name(&self) -> &'static str {
        "rope"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = slice("rope", storage, layout)?;
        let mut y = vec![0f32; x.len()];
        self.rotate(x, &mut y, layout.dims(), 1.0)?;
        Ok((CpuStorage::F32(y), layout.shape().clone()))
    }

    fn bwd(
        &self,
        arg: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        let dx = with_data("rope", grad_res, |g| {
            let mut dx = vec![0f32; g.len()];
            self.rotate(g, &mut dx, arg.dims(), -1.0)?;
            Ok(dx)
        })?;
        Ok(Some(tensor(dx, arg.shape())?))
    }
}

/// An RMS norm with a frozen weight (kept as a slice too, for the fused op).
pub struct Norm {
    w: Tensor,
    data: Arc<[f32]>,
    eps: f64,
}

impl Norm {
    pub fn new(w: Tensor, eps: f64) -> candle_core::Result<Norm> {
        let data = w.flatten_all()?.to_dtype(DType::F32)?.to_vec1::<f32>()?;
        Ok(Norm {
            w,
            data: data.into(),
            eps,
        })
    }

    pub fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        if fused(x) {
            x.contiguous()?.apply_op1(RmsNorm {
                w: self.data.clone(),
                eps: self.eps,
            })
        } else {
            composite::rms_norm(x, &self.w, self.eps)
        }
    }
}

/// cos and sin of the RoPE angles for positions 0..T, [T, rope_dim/2] each.
pub struct RopeTables {
    cos: Arc<[f32]>,
    sin: Arc<[f32]>,
    half: usize,
}

impl RopeTables {
    /// Angle `p · scale · base^(−2i/rope_dim)` for position p and pair i.
    pub fn new(t: usize, rope_dim: usize, base: f32, scale: f32) -> RopeTables {
        let half = rope_dim / 2;
        let theta: Vec<f64> = (0..half)
            .map(|i| (base as f64).powf(-2.0 * i as f64 / rope_dim as f64))
            .collect();
        let mut cos = Vec::with_capacity(t * half);
        let mut sin = Vec::with_capacity(t * half);
        for p in 0..t {
            for th in &theta {
                let angle = p as f64 * scale as f64 * th;
                cos.push(angle.cos() as f32);
                sin.push(angle.sin() as f32);
            }
        }
        RopeTables {
            cos: cos.into(),
            sin: sin.into(),
            half,
        }
    }

    /// The same tables `b` times over: positions of `b` sequences laid one after the other.
    pub fn repeat(self, b: usize) -> RopeTables {
        if b == 1 {
            return self;
        }
        RopeTables {
            cos: self.cos.repeat(b).into(),
            sin: self.sin.repeat(b).into(),
            half: self.half,
        }
    }
}

/// Rotary embedding of x [T, H, head_dim], times `scale`.
pub fn rope(
    x: &Tensor,
    tables: &RopeTables,
    neox: bool,
    scale: f32,
) -> candle_core::Result<Tensor> {
    if fused(x) {
        x.contiguous()?.apply_op1(Rope {
            cos: tables.cos.clone(),
            sin: tables.sin.clone(),
            half: tables.half,
            neox,
            scale,
        })
    } else {
        composite::rope(x, tables, neox)? * scale as f64
    }
}

/// Causal softmax of attention scores [.., T, T] (see [`CausalSoftmax`]).
pub fn causal_softmax(scores: &Tensor, window: Option<usize>) -> candle_core::Result<Tensor> {
    if fused(scores) {
        scores.contiguous()?.apply_op1(CausalSoftmax { window })
    } else {
        composite::causal_softmax(scores, window)
    }
}

/// `act(gate) ⊙ up`.
pub fn gated(gate: &Tensor, up: &Tensor, act: Activation) -> candle_core::Result<Tensor> {
    if fused(gate) {
        gate.contiguous()?.apply_op2(&up.contiguous()?, Gated(act))
    } else {
        composite::gated(gate, up, act)
    }
}

/// Negative log-likelihood of each row's target under logits [n, vocab], as [n].
pub fn cross_entropy(logits: &Tensor, targets: &[u32]) -> candle_core::Result<Tensor> {
    if fused(logits) {
        logits.contiguous()?.apply_op1(CrossEntropy {
            targets: targets.to_vec(),
        })
    } else {
        composite::cross_entropy(logits, targets)
    }
}

/// The same functions as compositions of candle's differentiable ops: used off the CPU, and the
/// references the fused ops are tested against.
pub mod composite {
    use candle_core::{Tensor, D};

    use super::{Activation, RopeTables};

    pub fn rms_norm(x: &Tensor, w: &Tensor, eps: f64) -> candle_core::Result<Tensor> {
        let ms = x.sqr()?.mean_keepdim(D::Minus1)?;
        x.broadcast_div(&(ms + eps)?.sqrt()?)?.broadcast_mul(w)
    }

    pub fn rope(x: &Tensor, tables: &RopeTables, neox: bool) -> candle_core::Result<Tensor> {
        let (t, h, d) = x.dims3()?;
        let half = tables.half;
        let rd = 2 * half;
        let cos = Tensor::from_slice(&tables.cos, (t, 1, half), x.device())?;
        let sin = Tensor::from_slice(&tables.sin, (t, 1, half), x.device())?;
        let rot = x.narrow(2, 0, rd)?;
        let out = if neox {
            let x1 = rot.narrow(2, 0, half)?;
            let x2 = rot.narrow(2, half, half)?;
            let r1 = (x1.broadcast_mul(&cos)? - x2.broadcast_mul(&sin)?)?;
            let r2 = (x2.broadcast_mul(&cos)? + x1.broadcast_mul(&sin)?)?;
            Tensor::cat(&[r1, r2], 2)?
        } else {
            let pairs = rot.reshape((t, h, half, 2))?;
            let even = pairs.narrow(3, 0, 1)?.squeeze(3)?;
            let odd = pairs.narrow(3, 1, 1)?.squeeze(3)?;
            let r1 = (even.broadcast_mul(&cos)? - odd.broadcast_mul(&sin)?)?;
            let r2 = (odd.broadcast_mul(&cos)? + even.broadcast_mul(&sin)?)?;
            Tensor::stack(&[r1, r2], 3)?.reshape((t, h, rd))?
        };
        if rd < d {
            Tensor::cat(&[out, x.narrow(2, rd, d - rd)?], 2)
        } else {
            Ok(out)
        }
    }

    pub fn causal_softmax(scores: &Tensor, window: Option<usize>) -> candle_core::Result<Tensor> {
        let t = scores.dim(D::Minus1)?;
        let mut mask = vec![0f32; t * t];
        for i in 0..t {
            for j in 0..t {
                if j > i || window.is_some_and(|w| i - j >= w) {
                    mask[i * t + j] = f32::NEG_INFINITY;
                }
            }
        }
        let mask = Tensor::from_vec(mask, (t, t), scores.device())?;
        let scores = scores.broadcast_add(&mask)?;
        let max = scores.max_keepdim(D::Minus1)?.detach();
        let e = scores.broadcast_sub(&max)?.exp()?;
        e.broadcast_div(&e.sum_keepdim(D::Minus1)?)
    }

    pub fn gated(gate: &Tensor, up: &Tensor, act: Activation) -> candle_core::Result<Tensor> {
        let a = match act {
            Activation::GeluTanh => gate.gelu()?,
            Activation::Silu => gate.silu()?,
        };
        a * up
    }

    pub fn cross_entropy(logits: &Tensor, targets: &[u32]) -> candle_core::Result<Tensor> {
        let max = logits.max_keepdim(1)?.detach();
        let lse = (logits.broadcast_sub(&max)?.exp()?.sum_keepdim(1)?.log()? + &max)?;
        let targets = Tensor::from_slice(targets, (targets.len(), 1), logits.device())?;
        (lse - logits.gather(&targets, 1)?)?.squeeze(1)
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Var};

    use super::*;
    use crate::model::SplitMix64;

    fn random(rng: &mut SplitMix64, n: usize, lo: f64, hi: f64) -> Vec<f32> {
        (0..n)
            .map(|_| (lo + rng.next_f64() * (hi - lo)) as f32)
            .collect()
    }

    /// `f`'s output and the gradients of a fixed random projection of it with respect to each
    /// input.
    fn run(inputs: &[(Vec<f32>, &[usize])], f: impl Fn(&[Tensor]) -> Tensor) -> Vec<Vec<f32>> {
        let vars: Vec<Var> = inputs
            .iter()
            .map(|(data, shape)| {
                Var::from_tensor(&Tensor::from_vec(data.clone(), *shape, &Device::Cpu).unwrap())
                    .unwrap()
            })
            .collect();
        let tensors: Vec<Tensor> = vars.iter().map(|v| v.as_tensor().clone()).collect();
        let y = f(&tensors);
        let probe = random(&mut SplitMix64::new(99), y.elem_count(), -1.0, 1.0);
        let probe = Tensor::from_vec(probe, y.shape(), &Device::Cpu).unwrap();
        let grads = (&y * probe).unwrap().sum_all().unwrap().backward().unwrap();
        let flat = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let mut out = vec![flat(&y)];
        out.extend(vars.iter().map(|v| flat(grads.get(v.as_tensor()).unwrap())));
        out
    }

    /// The fused op and its composite formula agree in value and in every input gradient.
    fn check(
        inputs: &[(Vec<f32>, &[usize])],
        fused: impl Fn(&[Tensor]) -> Tensor,
        composite: impl Fn(&[Tensor]) -> Tensor,
        tolerance: f32,
    ) {
        let (a, b) = (run(inputs, fused), run(inputs, composite));
        for (which, (a, b)) in a.iter().zip(&b).enumerate() {
            assert_eq!(a.len(), b.len());
            let scale = b.iter().fold(1f32, |m, v| m.max(v.abs()));
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                assert!(
                    (x - y).abs() <= tolerance * scale,
                    "output {which} (0 = value, then input gradients), element {i}: {x} vs {y}"
                );
            }
        }
    }

    #[test]
    fn fast_exp_is_accurate() {
        for i in -8730..=8800 {
            let x = i as f32 / 100.0;
            let (got, want) = (exp(x), x.exp());
            assert!(
                (got - want).abs() <= 4e-7 * want,
                "exp({x}) = {got}, want {want}"
            );
        }
        assert!(exp(f32::NEG_INFINITY) < 1e-37);
        assert!(exp(f32::NAN).is_nan());
    }

    #[test]
    fn frozen_linear_matches_matmul() {
        let rng = &mut SplitMix64::new(1);
        let w = Tensor::from_vec(random(rng, 7 * 5, -1.0, 1.0), (7, 5), &Device::Cpu).unwrap();
        for dtype in [DType::F32, DType::BF16] {
            let w = w.to_dtype(dtype).unwrap();
            let frozen = Frozen { w: w.clone() };
            let wide = w.to_dtype(DType::F32).unwrap().detach();
            check(
                &[(random(rng, 2 * 3 * 5, -2.0, 2.0), &[2, 3, 5])],
                |x| frozen.forward(&x[0]).unwrap(),
                |x| x[0].broadcast_matmul(&wide.t().unwrap()).unwrap(),
                1e-6,
            );
        }
    }

    #[test]
    fn fused_rms_norm_matches_the_formula() {
        let rng = &mut SplitMix64::new(5);
        let w = Tensor::from_vec(random(rng, 16, 0.5, 1.5), 16, &Device::Cpu).unwrap();
        let norm = Norm::new(w.clone(), 1e-6).unwrap();
        check(
            &[(random(rng, 3 * 16, -2.0, 2.0), &[3, 16])],
            |x| norm.forward(&x[0]).unwrap(),
            |x| composite::rms_norm(&x[0], &w, 1e-6).unwrap(),
            1e-5,
        );
    }

    #[test]
    fn fused_cross_entropy_matches_the_formula() {
        let rng = &mut SplitMix64::new(3);
        let (n, vocab) = (5, 1000);
        let targets: Vec<u32> = (0..n as u32).map(|i| i * 97 % vocab as u32).collect();
        check(
            &[(random(rng, n * vocab, -10.0, 10.0), &[n, vocab])],
            |x| cross_entropy(&x[0], &targets).unwrap(),
            |x| composite::cross_entropy(&x[0], &targets).unwrap(),
            1e-5,
        );
    }

    #[test]
    fn fused_gated_activations_match_the_formulas() {
        let rng = &mut SplitMix64::new(4);
        for act in [Activation::GeluTanh, Activation::Silu] {
            // Wide enough to reach both saturated ends of tanh and the sigmoid.
            let inputs = [
                (random(rng, 6 * 40, -12.0, 12.0), &[6, 40][..]),
                (random(rng, 6 * 40, -2.0, 2.0), &[6, 40][..]),
            ];
            check(
                &inputs,
                |x| gated(&x[0], &x[1], act).unwrap(),
                |x| composite::gated(&x[0], &x[1], act).unwrap(),
                1e-5,
            );
        }
    }

    #[test]
    fn fused_causal_softmax_matches_the_masked_formula() {
        let rng = &mut SplitMix64::new(6);
        for window in [None, Some(3)] {
            check(
                &[(random(rng, 2 * 2 * 7 * 7, -5.0, 5.0), &[2, 2, 7, 7])],
                |x| causal_softmax(&x[0], window).unwrap(),
                |x| composite::causal_softmax(&x[0], window).unwrap(),
                1e-5,
            );
        }
    }

    #[test]
    fn fused_rope_matches_the_formula() {
        let rng = &mut SplitMix64::new(7);
        let (t, h, d) = (5, 3, 8);
        // Rotating all dimensions, and only the first 6 of 8.
        for rope_dim in [8, 6] {
            let tables = RopeTables::new(t, rope_dim, 10_000.0, 1.0);
            for neox in [true, false] {
                check(
                    &[(random(rng, t * h * d, -2.0, 2.0), &[t, h, d])],
                    |x| rope(&x[0], &tables, neox, 0.5).unwrap(),
                    |x| (composite::rope(&x[0], &tables, neox).unwrap() * 0.5).unwrap(),
                    1e-6,
                );
            }
        }
    }
}
