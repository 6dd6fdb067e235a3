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
//! * int8 (AVX-512 VNNI): `W` is rounded to int8 once, one scale per output column, and packed
//!   like bf16 but with quads of reduction rows (one 64-byte load = 16 columns x 4 rows). Each
//!   call quantizes its input rows to unsigned bytes (per-row scale and zero point), runs
//!   `vpdpbusd` on the same 6 x 64 tile with i32 accumulators, and dequantizes in the
//!   epilogue: `y = s_row * s_col * (acc - zero_row * colsum) + b`. The reduction is walked in
//!   blocks of 128 quads so a panel's slice stays in L1 across the row tiles.

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
    /// int8 weights (symmetric, one scale per output column) and unsigned 8-bit inputs
    /// (dynamic, one scale and zero point per row), i32 accumulation (needs AVX-512 VNNI).
    Int8,
}

impl Precision {
    /// What `auto` runs: int8 where the CPU has AVX-512 VNNI, else f32. Decided by the CPU's
    /// features alone, never by timing, so every process on a machine computes the same
    /// vectors. int8 is the fastest path on both CPUs measured (2-3x f32's products on an
    /// Intel Xeon, where `vdpbf16ps` runs at a quarter of the FMA rate and bf16 loses to f32);
    /// its cost is bounded by the parity test and measured on dev MRR (README).
    pub fn best() -> Precision {
        if int8_supported() {
            Precision::Int8
        } else {
            Precision::F32
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::Bf16 => "bf16",
            Precision::Int8 => "int8",
        }
    }

    /// Whether this CPU runs this precision's kernel.
    pub fn supported(self) -> bool {
        match self {
            Precision::F32 => true,
            Precision::Bf16 => bf16_supported(),
            Precision::Int8 => int8_supported(),
        }
    }
}

impl std::str::FromStr for Precision {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "f32" => Ok(Precision::F32),
            "bf16" => Ok(Precision::Bf16),
            "int8" => Ok(Precision::Int8),
            other => Err(format!("unknown precision {other:?} (f32, bf16 or int8)")),
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

/// Whether this CPU has the 8-bit dot-product instructions (`vpdpbusd`) the int8 kernel uses.
pub fn int8_supported() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512bw")
            && std::arch::is_x86_feature_detected!("avx512vnni")
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
    /// Panels `[N/NR][K/4][NR][4]` of int8 weights, each column's scale and the sum of its
    /// quantized weights (for the inputs' zero points), both padded to whole panels.
    Int8 {
        packed: Vec<i8>,
        scales: Vec<f32>,
        sums: Vec<i32>,
    },
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
        if precision == Precision::Int8 && !int8_supported() {
            return Err("this CPU has no AVX-512 VNNI instructions; use f32".into());
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
            Precision::Int8 => {
                let kq = k.div_ceil(4);
                let np = panels(n);
                let mut scales = vec![0f32; np * NR];
                let mut sums = vec![0i32; np * NR];
                for (col, scale) in scales.iter_mut().enumerate().take(n) {
                    let max = (0..k)
                        .map(|r| weight[r * n + col].abs())
                        .fold(0f32, f32::max);
                    *scale = if max > 0.0 { max / 127.0 } else { 1.0 };
                }
                let mut packed = vec![0i8; np * kq * NR * 4];
                for p in 0..np {
                    for q in 0..kq {
                        for j in 0..NR {
                            let col = p * NR + j;
                            if col >= n {
                                continue;
                            }
                            for e in 0..4 {
                                let row = 4 * q + e;
                                if row < k {
                                    let v = (weight[row * n + col] / scales[col])
                                        .round()
                                        .clamp(-127.0, 127.0)
                                        as i8;
                                    packed[((p * kq + q) * NR + j) * 4 + e] = v;
                                    sums[col] += i32::from(v);
                                }
                            }
                        }
                    }
                }
                Weights::Int8 {
                    packed,
                    scales,
                    sums,
                }
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
            Weights::Int8 { .. } => Precision::Int8,
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
            Weights::Int8 {
                packed,
                scales,
                sums,
            } => {
                let kq = k.div_ceil(4);
                scratch.clear();
                scratch.resize(m * kq, 0);
                let mut params = vec![(0f32, 0i32); m];
                #[cfg(target_arch = "x86_64")]
                // SAFETY: int8_supported() (AVX-512 F/BW/VNNI) was checked at packing.
                unsafe {
                    int8::quantize_rows(&x[..m * k], k, kq, scratch, &mut params)
                };
                #[cfg(target_arch = "x86_64")]
                int8::gemm(
                    int8::Operands {
                        a: scratch,
                        params: &params,
                        kq,
                        packed,
                        scales,
                        sums,
                        bias: &self.bias,
                    },
                    m,
                    n,
                    &mut out[..m * n],
                    threads,
                );
                #[cfg(not(target_arch = "x86_64"))]
                unreachable!("int8 weights are only packed on x86-64 CPUs with AVX-512 VNNI");
            }
        }
    }
}

/// Runs `task(r0, r1, p0, p1)` over tasks covering rows `0..m` x panels `0..np`: one task
/// when single-threaded or the product is small (`work` multiply-adds), else row blocks of
/// [`MC`] when there are enough of them, else groups of column panels.
#[cfg(target_arch = "x86_64")]
fn split(
    m: usize,
    np: usize,
    work: usize,
    threads: usize,
    task: &(dyn Fn(usize, usize, usize, usize) + Sync),
) {
    use rayon::prelude::*;
    let mblocks = m.div_ceil(MC);
    if threads <= 1 || work < 64 * 1024 {
        task(0, m, 0, np);
    } else if mblocks >= 2 * threads {
        (0..mblocks)
            .into_par_iter()
            .for_each(|b| task(b * MC, ((b + 1) * MC).min(m), 0, np));
    } else {
        let per = np.div_ceil(threads.min(np));
        (0..np.div_ceil(per))
            .into_par_iter()
            .for_each(|t| task(0, m, t * per, ((t + 1) * per).min(np)));
    }
}

/// The output pointer, shared by tasks that write disjoint parts of it.
#[cfg(target_arch = "x86_64")]
#[derive(Clone, Copy)]
struct SendPtr(*mut f32);
// SAFETY: tasks write disjoint parts of the output (row blocks or column panels).
unsafe impl Send for SendPtr {}
unsafe impl Sync for SendPtr {}

#[cfg(target_arch = "x86_64")]
mod bf16 {
    use std::arch::x86_64::*;

    use super::{MC, MR, NR, SendPtr, panels};

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
        super::split(m, np, m * n * kp, threads, &task);
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

#[cfg(target_arch = "x86_64")]
mod int8 {
    use std::arch::x86_64::*;

    use super::{MC, MR, NR, SendPtr, panels};

    /// Dynamic asymmetric quantization of each row of `x` (`[m, k]`) to unsigned bytes, four
    /// to a u32 (`out`: `[m, kq]`, byte `j` of quad `q` = column `4q + j`; columns past `k`
    /// are 0). Row `i`'s range `[min(x_i, 0), max(x_i, 0)]` maps onto 0..=255:
    /// `x ~ scale_i * (q - zero_i)`, `params[i] = (scale_i, zero_i)`.
    #[target_feature(enable = "avx512f,avx512bw")]
    pub(super) unsafe fn quantize_rows(
        x: &[f32],
        k: usize,
        kq: usize,
        out: &mut [u32],
        params: &mut [(f32, i32)],
    ) {
        assert!(kq * 4 >= k && out.len() >= x.len() / k.max(1) * kq);
        let tail = k % 16;
        let tail_mask = ((1u32 << tail) - 1) as __mmask16;
        for ((row, dst), param) in x
            .chunks_exact(k)
            .zip(out.chunks_exact_mut(kq))
            .zip(params.iter_mut())
        {
            let full = k - tail;
            let (mut lo, mut hi) = (_mm512_setzero_ps(), _mm512_setzero_ps());
            for j in (0..full).step_by(16) {
                // SAFETY: j + 16 <= full <= k = row.len().
                let v = unsafe { _mm512_loadu_ps(row.as_ptr().add(j)) };
                lo = _mm512_min_ps(lo, v);
                hi = _mm512_max_ps(hi, v);
            }
            if tail > 0 {
                // SAFETY: the mask covers the last `tail` values of the row; the rest read 0.
                let v = unsafe { _mm512_maskz_loadu_ps(tail_mask, row.as_ptr().add(full)) };
                lo = _mm512_min_ps(lo, v);
                hi = _mm512_max_ps(hi, v);
            }
            let (lo, hi) = (_mm512_reduce_min_ps(lo), _mm512_reduce_max_ps(hi));
            let scale = if hi > lo { (hi - lo) / 255.0 } else { 1.0 };
            let inv = 1.0 / scale;
            let zero = (-lo * inv).round().clamp(0.0, 255.0);
            *param = (scale, zero as i32);
            let (vinv, vzero) = (_mm512_set1_ps(inv), _mm512_set1_ps(zero));
            let (vmin, vmax) = (_mm512_setzero_ps(), _mm512_set1_ps(255.0));
            let bytes = dst.as_mut_ptr().cast::<u8>();
            let quantize = |v: __m512| {
                let y = _mm512_min_ps(_mm512_max_ps(_mm512_fmadd_ps(v, vinv, vzero), vmin), vmax);
                _mm512_cvtps_epi32(y) // round to nearest
            };
            for j in (0..full).step_by(16) {
                // SAFETY: j + 16 <= k <= 4 kq bytes of `dst`; vpmovdb keeps the low byte of each
                // lane (0..=255 here).
                unsafe {
                    let q = quantize(_mm512_loadu_ps(row.as_ptr().add(j)));
                    _mm_storeu_si128(bytes.add(j).cast(), _mm512_cvtepi32_epi8(q));
                }
            }
            if tail > 0 {
                // SAFETY: as above, masked to the row's last `tail` values.
                unsafe {
                    let q = quantize(_mm512_maskz_loadu_ps(tail_mask, row.as_ptr().add(full)));
                    _mm512_mask_cvtepi32_storeu_epi8(bytes.add(full).cast(), tail_mask, q);
                }
            }
            for j in k..kq * 4 {
                // SAFETY: j < 4 kq, inside `dst`.
                unsafe { *bytes.add(j) = 0 };
            }
        }
    }

    /// The inputs of one int8 product.
    pub(super) struct Operands<'a> {
        /// `[m, kq]` quads of unsigned bytes.
        pub a: &'a [u32],
        /// Each row's (scale, zero point).
        pub params: &'a [(f32, i32)],
        pub kq: usize,
        pub packed: &'a [i8],
        pub scales: &'a [f32],
        pub sums: &'a [i32],
        pub bias: &'a [f32],
    }

    /// `c[m, n] = dequantize(a * packed) + bias`.
    pub(super) fn gemm(ops: Operands<'_>, m: usize, n: usize, c: &mut [f32], threads: usize) {
        let np = panels(n);
        assert!(ops.a.len() >= m * ops.kq && ops.params.len() >= m && c.len() >= m * n);
        assert!(
            ops.packed.len() >= np * ops.kq * NR * 4
                && ops.scales.len() >= np * NR
                && ops.sums.len() >= np * NR
                && ops.bias.len() >= np * NR
        );
        let cp = SendPtr(c.as_mut_ptr());
        let task = |r0: usize, r1: usize, p0: usize, p1: usize| {
            let cp = cp;
            // SAFETY: int8_supported() was checked when the weights were packed; the ranges
            // lie inside the buffers (asserted above) and tasks never overlap.
            unsafe { block(&ops, n, cp.0, r0, r1, p0, p1) }
        };
        super::split(m, np, m * n * ops.kq * 2, threads, &task);
    }

    /// Reduction quads per cache block: a panel's slice of them (128 x 256 bytes) stays in L1
    /// while the row tiles of a block pass over it.
    const KC: usize = 128;

    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    unsafe fn block(
        ops: &Operands<'_>,
        n: usize,
        c: *mut f32,
        r0: usize,
        r1: usize,
        p0: usize,
        p1: usize,
    ) {
        let kq = ops.kq;
        // Partial sums of a row block between reduction blocks.
        let mut partial = vec![0i32; MC * NR];
        let mut mb = r0;
        while mb < r1 {
            let me = (mb + MC).min(r1);
            for p in p0..p1 {
                let panel = Panel {
                    b: unsafe { ops.packed.as_ptr().add(p * kq * NR * 4) },
                    scales: unsafe { ops.scales.as_ptr().add(p * NR) },
                    sums: unsafe { ops.sums.as_ptr().add(p * NR) },
                    bias: unsafe { ops.bias.as_ptr().add(p * NR) },
                    cols: (n - p * NR).min(NR),
                };
                let mut q0 = 0;
                while q0 < kq {
                    let q1 = (q0 + KC).min(kq);
                    let span = Span {
                        q0,
                        q1,
                        first: q0 == 0,
                        last: q1 == kq,
                    };
                    let mut r = mb;
                    while r < me {
                        let rows = (me - r).min(MR);
                        let ap = unsafe { ops.a.as_ptr().add(r * kq) };
                        let params = &ops.params[r..r + rows];
                        let cptr = unsafe { c.add(r * n + p * NR) };
                        let tile = unsafe { partial.as_mut_ptr().add((r - mb) * NR) };
                        unsafe {
                            match rows {
                                6 => kernel::<6>(ap, kq, &span, &panel, tile, params, cptr, n),
                                5 => kernel::<5>(ap, kq, &span, &panel, tile, params, cptr, n),
                                4 => kernel::<4>(ap, kq, &span, &panel, tile, params, cptr, n),
                                3 => kernel::<3>(ap, kq, &span, &panel, tile, params, cptr, n),
                                2 => kernel::<2>(ap, kq, &span, &panel, tile, params, cptr, n),
                                _ => kernel::<1>(ap, kq, &span, &panel, tile, params, cptr, n),
                            }
                        }
                        r += rows;
                    }
                    q0 = q1;
                }
            }
            mb = me;
        }
    }

    /// The reduction quads `q0..q1` of one pass; the first starts from zero, the last writes
    /// the dequantized output (the others keep partial sums).
    struct Span {
        q0: usize,
        q1: usize,
        first: bool,
        last: bool,
    }

    /// One 64-column panel's weights and per-column constants.
    struct Panel {
        b: *const i8,
        scales: *const f32,
        sums: *const i32,
        bias: *const f32,
        cols: usize,
    }

    /// `R` rows x one panel over the quads of `span`; on the last span, dequantized:
    /// `c = scale_row * scale_col * (acc - zero_row * sum_col) + bias`. `tile` holds the
    /// partial sums (`R` rows of NR, NR apart) between spans.
    #[inline]
    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    unsafe fn kernel<const R: usize>(
        a: *const u32,
        kq: usize,
        span: &Span,
        panel: &Panel,
        tile: *mut i32,
        params: &[(f32, i32)],
        c: *mut f32,
        ldc: usize,
    ) {
        let mut acc = [[_mm512_setzero_si512(); 4]; R];
        if !span.first {
            for (r, row) in acc.iter_mut().enumerate() {
                for (j, v) in row.iter_mut().enumerate() {
                    // SAFETY: `tile` holds R rows of NR partial sums.
                    *v = unsafe { _mm512_loadu_si512(tile.add(r * NR + j * 16).cast()) };
                }
            }
        }
        for q in span.q0..span.q1 {
            // SAFETY (whole body): `panel.b` points at [kq][NR][4] bytes, `a` at R rows of kq
            // quads, `c` at R rows of at least `cols` columns (ldc apart), the constants at NR.
            let bq = unsafe { panel.b.add(q * NR * 4) };
            let b0 = unsafe { _mm512_loadu_si512(bq.cast()) };
            let b1 = unsafe { _mm512_loadu_si512(bq.add(64).cast()) };
            let b2 = unsafe { _mm512_loadu_si512(bq.add(128).cast()) };
            let b3 = unsafe { _mm512_loadu_si512(bq.add(192).cast()) };
            for (r, row) in acc.iter_mut().enumerate() {
                let av = _mm512_set1_epi32(unsafe { *a.add(r * kq + q) } as i32);
                row[0] = _mm512_dpbusd_epi32(row[0], av, b0);
                row[1] = _mm512_dpbusd_epi32(row[1], av, b1);
                row[2] = _mm512_dpbusd_epi32(row[2], av, b2);
                row[3] = _mm512_dpbusd_epi32(row[3], av, b3);
            }
        }
        if !span.last {
            for (r, row) in acc.iter().enumerate() {
                for (j, v) in row.iter().enumerate() {
                    unsafe { _mm512_storeu_si512(tile.add(r * NR + j * 16).cast(), *v) };
                }
            }
            return;
        }
        let cols = panel.cols;
        for (r, row) in acc.iter().enumerate() {
            let (scale, zero) = params[r];
            let crow = unsafe { c.add(r * ldc) };
            let zero = _mm512_set1_epi32(zero);
            let scale = _mm512_set1_ps(scale);
            for (j, v) in row.iter().enumerate() {
                let col = j * 16;
                if col >= cols {
                    break;
                }
                let sums = unsafe { _mm512_loadu_si512(panel.sums.add(col).cast()) };
                let exact = _mm512_sub_epi32(*v, _mm512_mullo_epi32(zero, sums));
                let s = _mm512_mul_ps(scale, unsafe { _mm512_loadu_ps(panel.scales.add(col)) });
                let v = _mm512_fmadd_ps(_mm512_cvtepi32_ps(exact), s, unsafe {
                    _mm512_loadu_ps(panel.bias.add(col))
                });
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
