//! Kernels against plain f64 reference loops.

use super::gemm::{PackedLinear, Precision, bf16_supported};
use super::math;

struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> f32 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
    fn vec(&mut self, n: usize) -> Vec<f32> {
        (0..n).map(|_| self.next()).collect()
    }
}

fn reference(x: &[f32], w: &[f32], b: &[f32], m: usize, k: usize, n: usize) -> Vec<f64> {
    let mut out = vec![0f64; m * n];
    for i in 0..m {
        for j in 0..n {
            let mut s = f64::from(b[j]);
            for t in 0..k {
                s += f64::from(x[i * k + t]) * f64::from(w[t * n + j]);
            }
            out[i * n + j] = s;
        }
    }
    out
}

fn check_linear(precision: Precision, tol: f64) {
    let mut rng = Lcg(7);
    // Odd shapes: partial panels, partial row tiles, an odd reduction, one row.
    for &(m, k, n) in &[
        (1, 384, 384),
        (7, 33, 70),
        (13, 384, 1152),
        (100, 97, 130),
        (200, 64, 16),
        (5, 2, 1),
    ] {
        let x = rng.vec(m * k);
        let w = rng.vec(k * n);
        let b = rng.vec(n);
        let want = reference(&x, &w, &b, m, k, n);
        let lin = PackedLinear::new(&w, Some(&b), k, n, precision).unwrap();
        for threads in [1, 2] {
            let mut out = vec![f32::NAN; m * n];
            lin.forward(&x, m, &mut out, threads, &mut Vec::new());
            let scale = (k as f64).sqrt();
            for (i, (&got, &want)) in out.iter().zip(&want).enumerate() {
                assert!(
                    (f64::from(got) - want).abs() <= tol * scale,
                    "{precision:?} m={m} k={k} n={n} threads={threads} at {i}: {got} vs {want}"
                );
            }
        }
    }
}

#[test]
fn f32_linear_matches_reference() {
    check_linear(Precision::F32, 1e-5);
}

#[test]
fn bf16_linear_matches_reference_within_rounding() {
    if !bf16_supported() {
        eprintln!("skipped: this CPU has no AVX-512 BF16");
        assert!(PackedLinear::new(&[0.0; 4], None, 2, 2, Precision::Bf16).is_err());
        return;
    }
    // Inputs and weights in [-1, 1] rounded to 8 significant bits: each product errs by at
    // most ~2^-8 relative, and the errors are independent, so the sum errs by ~2^-8 sqrt(k).
    check_linear(Precision::Bf16, 2.0 * 2f64.powi(-8));
}

#[test]
fn exp_and_erf_are_accurate() {
    for i in -8700..8800 {
        let x = i as f32 / 100.0;
        let got = math::exp(x);
        let want = f64::from(x).exp();
        assert!(
            ((f64::from(got) - want) / want).abs() < 1e-6,
            "exp({x}) = {got}, want {want}"
        );
    }
    assert!(math::exp(-200.0) < 1e-37);
    // erf values from tables (Abramowitz & Stegun 7.1).
    for (x, want) in [
        (0.0f32, 0.0f64),
        (0.1, 0.112_462_916),
        (0.5, 0.520_499_878),
        (1.0, 0.842_700_793),
        (-1.5, -0.966_105_146),
        (2.0, 0.995_322_265),
        (4.0, 0.999_999_985),
    ] {
        let got = f64::from(math::erf(x));
        assert!((got - want).abs() < 3e-7, "erf({x}) = {got}, want {want}");
    }
    let mut g = vec![-3.0f32, -1.0, 0.0, 0.5, 2.0];
    math::gelu_inplace(&mut g);
    for (got, want) in g
        .iter()
        .zip([-0.004_049_7, -0.158_655_3, 0.0, 0.345_731_1, 1.954_5])
    {
        assert!((got - want).abs() < 1e-4, "gelu: {got} vs {want}");
    }
}

#[test]
fn layer_norm_and_softmax_match_reference() {
    let mut rng = Lcg(11);
    let d = 37;
    let mut x = rng.vec(3 * d);
    let gamma = rng.vec(d);
    let beta = rng.vec(d);
    let orig = x.clone();
    math::layer_norm_rows(&mut x, d, &gamma, &beta, 1e-12);
    for r in 0..3 {
        let row: Vec<f64> = orig[r * d..(r + 1) * d]
            .iter()
            .map(|&v| f64::from(v))
            .collect();
        let mean = row.iter().sum::<f64>() / d as f64;
        let var = row.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / d as f64;
        for c in 0..d {
            let want = (row[c] - mean) / var.sqrt() * f64::from(gamma[c]) + f64::from(beta[c]);
            assert!((f64::from(x[r * d + c]) - want).abs() < 1e-5);
        }
    }

    let n = 19;
    let mut x = rng.vec(2 * n);
    x[3] = 80.0; // large logits must not overflow
    let orig = x.clone();
    math::softmax_rows(&mut x, n);
    for r in 0..2 {
        let row = &orig[r * n..(r + 1) * n];
        let m = row.iter().cloned().fold(f32::MIN, f32::max);
        let z: f64 = row.iter().map(|&v| f64::from(v - m).exp()).sum();
        for c in 0..n {
            let want = f64::from(row[c] - m).exp() / z;
            assert!((f64::from(x[r * n + c]) - want).abs() < 1e-6);
        }
    }
}

#[test]
fn bf16_rounding_is_to_nearest_even() {
    assert_eq!(math::bf16_bits(1.0), 0x3f80);
    // 1 + 2^-8 is halfway between 1 and 1 + 2^-7: ties go to the even mantissa (1.0).
    assert_eq!(math::bf16_bits(1.0 + 2f32.powi(-8)), 0x3f80);
    assert_eq!(math::bf16_bits(1.0 + 3.0 * 2f32.powi(-8)), 0x3f82);
    assert!(f32::from_bits(u32::from(math::bf16_bits(f32::NAN)) << 16).is_nan());
    let mut pairs = vec![0u32; 2];
    math::to_bf16_pairs(&[1.0, -2.0, 0.5], 3, 2, &mut pairs);
    assert_eq!(pairs, vec![0x3f80 | (0xc000 << 16), 0x3f00]);
}
