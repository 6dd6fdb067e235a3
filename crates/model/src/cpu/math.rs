//! Element-wise kernels: exp, erf-GELU, softmax, layer norm, reductions. Written as loops over
//! fixed-width lanes so the compiler vectorizes them (float reductions keep 16 partial sums,
//! since strict IEEE order forbids reassociating one).

use super::multiversion;

const LANES: usize = 16;

/// exp(x) for x in f32 range (Cephes' single-precision polynomial; relative error ~2e-7;
/// inputs below -87 give ~0, above 88 are clamped). Only float adds and bit operations, no
/// float-to-int cast (Rust's saturating `as` does not vectorize): `n = round(x / ln 2)` comes
/// from adding 1.5 * 2^23, which leaves `n` in the low mantissa bits.
#[inline(always)]
pub(crate) fn exp(x: f32) -> f32 {
    const MAGIC: f32 = 12_582_912.0; // 1.5 * 2^23; its bits are 0x4B40_0000
    let x = x.clamp(-87.0, 88.0);
    let t = x * std::f32::consts::LOG2_E + MAGIC;
    let n = t - MAGIC;
    let r = x - n * 0.693_359_4 + n * 2.121_944_4e-4;
    let p = (((((1.987_569_1e-4 * r + 1.398_199_9e-3) * r + 8.333_452e-3) * r + 4.166_579_6e-2)
        * r
        + 1.666_666_5e-1)
        * r
        + 5.000_000_1e-1)
        * r
        * r
        + r
        + 1.0;
    // n + 127 is in 2..=254, a normal exponent.
    p * f32::from_bits(t.to_bits().wrapping_sub(0x4B40_0000).wrapping_add(127) << 23)
}

/// erf(x) (Abramowitz & Stegun 7.1.26, absolute error <= 1.5e-7).
#[inline(always)]
pub(crate) fn erf(x: f32) -> f32 {
    let a = x.abs();
    let t = 1.0 / (1.0 + 0.327_591_1 * a);
    let poly = ((((1.061_405_4 * t - 1.453_152_1) * t + 1.421_413_8) * t - 0.284_496_74) * t
        + 0.254_829_6)
        * t;
    (1.0 - poly * exp(-a * a)).copysign(x)
}

multiversion! {
    /// `x <- gelu(x)`, the exact (erf) form BERT uses.
    pub(crate) fn gelu_inplace(x: &mut [f32]) {
        for v in x.iter_mut() {
            *v = 0.5 * *v * (1.0 + erf(*v * std::f32::consts::FRAC_1_SQRT_2));
        }
    }
}

multiversion! {
    /// `x <- x + y`.
    pub(crate) fn add_inplace(x: &mut [f32], y: &[f32]) {
        for (a, b) in x.iter_mut().zip(y) {
            *a += *b;
        }
    }
}

#[inline(always)]
fn sum(x: &[f32]) -> f32 {
    let mut acc = [0f32; LANES];
    let chunks = x.chunks_exact(LANES);
    let tail: f32 = chunks.remainder().iter().sum();
    for c in chunks {
        for i in 0..LANES {
            acc[i] += c[i];
        }
    }
    acc.iter().sum::<f32>() + tail
}

#[inline(always)]
fn max(x: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; LANES];
    let chunks = x.chunks_exact(LANES);
    let tail = chunks
        .remainder()
        .iter()
        .fold(f32::NEG_INFINITY, |m, &v| if v > m { v } else { m });
    for c in chunks {
        for i in 0..LANES {
            if c[i] > acc[i] {
                acc[i] = c[i];
            }
        }
    }
    acc.iter().fold(tail, |m, &v| if v > m { v } else { m })
}

multiversion! {
    /// Layer norm of every `d`-wide row of `x`, in place (two-pass mean and variance).
    pub(crate) fn layer_norm_rows(x: &mut [f32], d: usize, gamma: &[f32], beta: &[f32], eps: f32) {
        for row in x.chunks_exact_mut(d) {
            let mean = sum(row) / d as f32;
            let mut acc = [0f32; LANES];
            let chunks = row.chunks_exact(LANES);
            let mut tail = 0f32;
            for v in chunks.remainder() {
                tail += (v - mean) * (v - mean);
            }
            for c in chunks {
                for i in 0..LANES {
                    let v = c[i] - mean;
                    acc[i] += v * v;
                }
            }
            let var = (acc.iter().sum::<f32>() + tail) / d as f32;
            let rstd = 1.0 / (var + eps).sqrt();
            for ((v, g), b) in row.iter_mut().zip(gamma).zip(beta) {
                *v = (*v - mean) * rstd * g + b;
            }
        }
    }
}

multiversion! {
    /// Softmax of every `n`-wide row of `x`, in place.
    pub(crate) fn softmax_rows(x: &mut [f32], n: usize) {
        for row in x.chunks_exact_mut(n) {
            let m = max(row);
            for v in row.iter_mut() {
                *v = exp(*v - m);
            }
            let inv = 1.0 / sum(row);
            for v in row.iter_mut() {
                *v *= inv;
            }
        }
    }
}

/// Round-to-nearest-even f32 -> bfloat16 bits (NaN stays NaN).
#[inline(always)]
pub(crate) fn bf16_bits(x: f32) -> u16 {
    let b = x.to_bits();
    if x.is_nan() {
        return ((b >> 16) | 0x40) as u16;
    }
    (b.wrapping_add(0x7fff + ((b >> 16) & 1)) >> 16) as u16
}

multiversion! {
    /// Rows of `x` (`[m, k]`) as bfloat16 pairs (`[m, kp]` u32, pair `p` = columns `2p`
    /// (low half) and `2p + 1`); columns past `k` are 0.
    pub(crate) fn to_bf16_pairs(x: &[f32], k: usize, kp: usize, out: &mut [u32]) {
        for (row, dst) in x.chunks_exact(k).zip(out.chunks_exact_mut(kp)) {
            let pairs = row.chunks_exact(2);
            let odd = pairs.remainder().first().copied();
            let mut n = 0;
            for (d, p) in dst.iter_mut().zip(pairs) {
                *d = u32::from(bf16_bits(p[0])) | (u32::from(bf16_bits(p[1])) << 16);
                n += 1;
            }
            if let Some(v) = odd {
                dst[n] = u32::from(bf16_bits(v));
                n += 1;
            }
            dst[n..].fill(0);
        }
    }
}

/// Rows of `flat` (`dim` wide) scaled to unit length (zero rows stay zero).
pub(crate) fn normalize_rows(flat: Vec<f32>, dim: usize) -> Vec<Vec<f32>> {
    flat.chunks_exact(dim.max(1))
        .map(|r| {
            let n = r.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12);
            r.iter().map(|v| v / n).collect()
        })
        .collect()
}
