//! Linear layers `y = x W + b` on packed weights.
//!
//! * f32: `W` stays `[K, N]` row-major and the `gemm` crate (the kernels burn's flex backend
//!   uses, AVX-512/AVX2 picked at run time) does the product.
//! * bf16 (AVX-512 BF16 CPUs): `W` is rounded to bfloat16 once and packed in panels of
//!   [`NR`] = 64 output columns; inside a panel, the two weights of reduction rows `2p` and
//!   `2p + 1` of each column sit side by side, so one 64-byte load feeds 16 columns' `vdpbf16ps`
//!   (`acc += a0*b0 + a1*b1` per f32 lane). The input is rounded to bfloat16 pairs once per
//!   call. The micro-kernel keeps a 6 x 64 tile of f32 accumulators in 24 registers; rows are
//!   walked in blocks of [`MC`] so a block's input stays in L2 while the panels stream past.

use super::math;

/// Output columns per packed panel (4 vectors of 16 f32).
const NR: usize = 64;
/// Rows per micro-kernel call.
const MR: usize = 6;
/// Rows per cache block.
const MC: usize = 96;

/// Arithmetic of the transformer's matrix products.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Precision {
    /// f32 weights and inputs.
    F32,
    /// bfloat16 weights and inputs, f32 accumulation (needs AVX-512 BF16).
    Bf16,
}

impl Precision {
    /// bf16 where the CPU multiplies it natively, else f32.
    pub fn best() -> Precision {
        if bf16_supported() {
            Precision::Bf16
        } else {
            Precision::F32
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::Bf16 => "bf16",
        }
    }
}

impl std::str::FromStr for Precision {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "f32" => Ok(Precision::F32),
            "bf16" => Ok(Precision::Bf16),
            other => Err(format!("unknown precision {other:?} (f32 or bf16)")),
        }
    }
}

/// Whether this CPU has the bfloat16 dot-product instructions the bf16 kernel uses.
pub fn bf16_supported() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512bw")
            && std::arch::is_x86_feature_detected!("avx512bf16")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

#[derive(Debug, Clone)]
enum Weights {
    /// `[K, N]` row-major.
    F32(Vec<f32>),
    /// Panels `[N/NR][K/2][NR][2]` of bfloat16 bits.
    Bf16(Vec<u16>),
}

/// A linear layer's weights, packed for one [`Precision`].
#[derive(Debug, Clone)]
pub struct PackedLinear {
    k: usize,
    n: usize,
    /// Bias padded to a whole number of panels.
    bias: Vec<f32>,
    weights: Weights,
}

fn panels(n: usize) -> usize {
    n.div_ceil(NR)
}

impl PackedLinear {
    /// `weight`: `[k, n]` row-major (burn's `Linear` layout), `bias`: `n` values (or none).
    pub fn new(
        weight: &[f32],
        bias: Option<&[f32]>,
        k: usize,
        n: usize,
        precision: Precision,
    ) -> Result<PackedLinear, String> {
        if weight.len() != k * n {
            return Err(format!(
                "linear weight has {} values, expected {k} x {n}",
                weight.len()
            ));
        }
        if bias.is_some_and(|b| b.len() != n) {
            return Err(format!("linear bias has the wrong size (expected {n})"));
        }
        if precision == Precision::Bf16 && !bf16_supported() {
            return Err("this CPU has no AVX-512 BF16 instructions; use f32".into());
        }
        let mut padded_bias = vec![0f32; panels(n) * NR];
        if let Some(b) = bias {
            padded_bias[..n].copy_from_slice(b);
        }
        let weights = match precision {
            Precision::F32 => Weights::F32(weight.to_vec()),
            Precision::Bf16 => {
                let kp = k.div_ceil(2);
                let mut packed = vec![0u16; panels(n) * kp * NR * 2];
                for p in 0..panels(n) {
                    for q in 0..kp {
                        for j in 0..NR {
                            let col = p * NR + j;
                            if col >= n {
                                continue;
                            }
                            for e in 0..2 {
                                let row = 2 * q + e;
                                if row < k {
                                    packed[((p * kp + q) * NR + j) * 2 + e] =
                                        math::bf16_bits(weight[row * n + col]);
                                }
                            }
                        }
                    }
                }
                Weights::Bf16(packed)
            }
        };
        Ok(PackedLinear {
            k,
            n,
            bias: padded_bias,
            weights,
        })
    }

    pub fn in_dim(&self) -> usize {
        self.k
    }

    pub fn out_dim(&self) -> usize {
        self.n
    }

    pub fn precision(&self) -> Precision {
        match self.weights {
            Weights::F32(_) => Precision::F32,
            Weights::Bf16(_) => Precision::Bf16,
        }
    }

    /// `out = x W + b` for `m` rows: `x` is `[m, k]`, `out` `[m, n]` (overwritten).
    /// `scratch` holds the bf16 copy of `x` between calls (grown as needed).
    pub fn forward(
        &self,
        x: &[f32],
        m: usize,
        out: &mut [f32],
        threads: usize,
        scratch: &mut Vec<u32>,
    ) {
        let (k, n) = (self.k, self.n);
        assert!(
            x.len() >= m * k && out.len() >= m * n,
            "linear: buffers too small"
        );
        if m == 0 {
            return;
        }
        match &self.weights {
            Weights::F32(w) => {
                let par = if threads > 1 {
                    gemm::Parallelism::Rayon(threads)
                } else {
                    gemm::Parallelism::None
                };
                // SAFETY: the pointers cover [m, k], [k, n] and [m, n] row-major (checked above).
                unsafe {
                    gemm::gemm(
                        m,
                        n,
                        k,
                        out.as_mut_ptr(),
                        1,
                        n as isize,
                        false,
                        x.as_ptr(),
                        1,
                        k as isize,
                        w.as_ptr(),
                        1,
                        n as isize,
                        0.0,
                        1.0,
                        false,
                        false,
                        false,
                        par,
                    );
                }
                for row in out[..m * n].chunks_exact_mut(n) {
                    math::add_inplace(row, &self.bias[..n]);
                }
            }
            Weights::Bf16(packed) => {
                let kp = k.div_ceil(2);
                scratch.clear();
                scratch.resize(m * kp, 0);
                math::to_bf16_pairs(&x[..m * k], k, kp, scratch);
                #[cfg(target_arch = "x86_64")]
                bf16::gemm(
                    scratch,
                    m,
                    kp,
                    packed,
                    n,
                    &self.bias,
                    &mut out[..m * n],
                    threads,
                );
                #[cfg(not(target_arch = "x86_64"))]
                unreachable!("bf16 weights are only packed on x86-64 CPUs with AVX-512 BF16");
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod bf16 {
    use std::arch::x86_64::*;

    use super::{MC, MR, NR, panels};

    #[derive(Clone, Copy)]
    struct SendPtr(*mut f32);
    // SAFETY: tasks write disjoint parts of the output (row blocks or column panels).
    unsafe impl Send for SendPtr {}
    unsafe impl Sync for SendPtr {}

    /// `c[m, n] = a[m, kp pairs] * packed + bias`.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn gemm(
        a: &[u32],
        m: usize,
        kp: usize,
        packed: &[u16],
        n: usize,
        bias: &[f32],
        c: &mut [f32],
        threads: usize,
    ) {
        debug_assert!(a.len() >= m * kp && c.len() >= m * n);
        debug_assert!(packed.len() >= panels(n) * kp * NR * 2 && bias.len() >= panels(n) * NR);
        let np = panels(n);
        let cp = SendPtr(c.as_mut_ptr());
        // One task: rows [r0, r1) x panels [p0, p1).
        let task = |r0: usize, r1: usize, p0: usize, p1: usize| {
            let cp = cp;
            // SAFETY: bf16_supported() was checked when the weights were packed; the ranges
            // lie inside the buffers (asserted above) and tasks never overlap.
            unsafe { block(a, kp, packed, n, bias, cp.0, r0, r1, p0, p1) }
        };
        let mblocks = m.div_ceil(MC);
        if threads <= 1 || (m * n * kp) < 64 * 1024 {
            task(0, m, 0, np);
        } else if mblocks >= 2 * threads {
            use rayon::prelude::*;
            (0..mblocks)
                .into_par_iter()
                .for_each(|b| task(b * MC, ((b + 1) * MC).min(m), 0, np));
        } else {
            use rayon::prelude::*;
            let per = np.div_ceil(threads.min(np));
            (0..np.div_ceil(per))
                .into_par_iter()
                .for_each(|t| task(0, m, t * per, ((t + 1) * per).min(np)));
        }
    }

    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
    unsafe fn block(
        a: &[u32],
        kp: usize,
        packed: &[u16],
        n: usize,
        bias: &[f32],
        c: *mut f32,
        r0: usize,
        r1: usize,
        p0: usize,
        p1: usize,
    ) {
        let mut mb = r0;
        while mb < r1 {
            let me = (mb + MC).min(r1);
            for p in p0..p1 {
                let cols = (n - p * NR).min(NR);
                let bp = unsafe { packed.as_ptr().add(p * kp * NR * 2) };
                let biasp = unsafe { bias.as_ptr().add(p * NR) };
                let mut r = mb;
                while r < me {
                    let rows = (me - r).min(MR);
                    let ap = unsafe { a.as_ptr().add(r * kp) };
                    let cptr = unsafe { c.add(r * n + p * NR) };
                    unsafe {
                        match rows {
                            6 => kernel::<6>(ap, kp, bp, cptr, n, biasp, cols),
                            5 => kernel::<5>(ap, kp, bp, cptr, n, biasp, cols),
                            4 => kernel::<4>(ap, kp, bp, cptr, n, biasp, cols),
                            3 => kernel::<3>(ap, kp, bp, cptr, n, biasp, cols),
                            2 => kernel::<2>(ap, kp, bp, cptr, n, biasp, cols),
                            _ => kernel::<1>(ap, kp, bp, cptr, n, biasp, cols),
                        }
                    }
                    r += rows;
                }
            }
            mb = me;
        }
    }

    /// `R` rows x one 64-column panel over the whole reduction.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
    unsafe fn kernel<const R: usize>(
        a: *const u32,
        kp: usize,
        b: *const u16,
        c: *mut f32,
        ldc: usize,
        bias: *const f32,
        cols: usize,
    ) {
        let mut acc = [[_mm512_setzero_ps(); 4]; R];
        for p in 0..kp {
            // SAFETY (whole body): `b` points at this panel ([kp][NR][2] u16), `a` at R rows of
            // kp pairs, `c` at R rows of at least `cols` columns (ldc apart), `bias` at NR.
            let bq = unsafe { b.add(p * NR * 2) };
            let b0: __m512bh = unsafe { std::mem::transmute(_mm512_loadu_si512(bq.cast())) };
            let b1: __m512bh =
                unsafe { std::mem::transmute(_mm512_loadu_si512(bq.add(32).cast())) };
            let b2: __m512bh =
                unsafe { std::mem::transmute(_mm512_loadu_si512(bq.add(64).cast())) };
            let b3: __m512bh =
                unsafe { std::mem::transmute(_mm512_loadu_si512(bq.add(96).cast())) };
            for (r, row) in acc.iter_mut().enumerate() {
                let av: __m512bh =
                    unsafe { std::mem::transmute(_mm512_set1_epi32(*a.add(r * kp + p) as i32)) };
                row[0] = _mm512_dpbf16_ps(row[0], av, b0);
                row[1] = _mm512_dpbf16_ps(row[1], av, b1);
                row[2] = _mm512_dpbf16_ps(row[2], av, b2);
                row[3] = _mm512_dpbf16_ps(row[3], av, b3);
            }
        }
        for (r, row) in acc.iter().enumerate() {
            let crow = unsafe { c.add(r * ldc) };
            for (j, v) in row.iter().enumerate() {
                let col = j * 16;
                if col >= cols {
                    break;
                }
                let v = _mm512_add_ps(*v, unsafe { _mm512_loadu_ps(bias.add(col)) });
                if cols - col >= 16 {
                    unsafe { _mm512_storeu_ps(crow.add(col), v) };
                } else {
                    let mask = ((1u32 << (cols - col)) - 1) as __mmask16;
                    unsafe { _mm512_mask_storeu_ps(crow.add(col), mask, v) };
                }
            }
        }
    }
}
