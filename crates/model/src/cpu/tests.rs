//! Kernels against plain f64 reference loops.

use super::gemm::{PackedLinear, Precision, bf16_supported, int8_supported};
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
fn int8_linear_matches_reference_within_quantization() {
    if !int8_supported() {
        eprintln!("skipped: this CPU has no AVX-512 VNNI");
        assert!(PackedLinear::new(&[0.0; 4], None, 2, 2, Precision::Int8).is_err());
        return;
    }
    // Weights step |w|max/127 per column, inputs (range/255) per row: each product errs by
    // ~2^-8 of its size, independently, so the sum errs by ~2^-8 sqrt(k) (checked at 2^-6).
    check_linear(Precision::Int8, 2f64.powi(-6));
    // Rows that are all positive, all zero or constant exercise the zero points.
    let (m, k, n) = (9, 70, 40);
    let mut rng = Lcg(3);
    let mut x: Vec<f32> = rng.vec(m * k).iter().map(|v| v + 1.5).collect();
    x[k..2 * k].fill(0.0);
    x[2 * k..3 * k].fill(-0.25);
    let w = rng.vec(k * n);
    let b = rng.vec(n);
    let want = reference(&x, &w, &b, m, k, n);
    let lin = PackedLinear::new(&w, Some(&b), k, n, Precision::Int8).unwrap();
    let mut out = vec![f32::NAN; m * n];
    lin.forward(&x, m, &mut out, 1, &mut Vec::new());
    for (i, (&got, &want)) in out.iter().zip(&want).enumerate() {
        let tol = if (k..2 * k).contains(&(i / n * k)) {
            1e-6
        } else {
            0.05 * (k as f64).sqrt()
        };
        assert!(
            (f64::from(got) - want).abs() <= tol,
            "at {i}: {got} vs {want}"
        );
    }
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

/// The CPU head against burn's `GnnCoderHead::code_vectors` on the same token states: random
/// weights (gate included), trees of several sizes, a node with no tokens, a kind id past the
/// table, a single-node graph and a row without a graph.
#[test]
fn code_head_matches_burn() {
    check_code_head(false);
    check_code_head(true);
}

/// The head on slices against burn's, with raw or log1p child counts.
fn check_code_head(log1p: bool) {
    use burn::module::Param;
    use burn::prelude::*;
    use burn::tensor::Distribution;
    use gnn_coder_syntax::AstGraph;

    use super::encoder::States;
    use super::head::CodeHead;
    use crate::graph::{GraphBatch, GraphConfig, GraphInput};
    use crate::model::HeadConfig;
    use crate::tokenize::Encoded;

    let device = Device::flex();
    let (d, hidden, vocab) = (24, 16, 40);
    let cfg = HeadConfig {
        graph: GraphConfig {
            d_model: d,
            hidden,
            kind_vocab_size: vocab,
            num_layers: 3,
            eps: 0.3,
            pool_ratio: 0.5,
            pool_min_keep: 2,
            child_count_score: true,
            child_count_log1p: log1p,
        },
        out_dim: 20,
        ..HeadConfig::default()
    };
    let mut head = cfg.init(&device);
    let normal = |shape: [usize; 2]| {
        Param::from_tensor(Tensor::<2>::random(
            shape,
            Distribution::Normal(0.0, 0.3),
            &device,
        ))
    };
    head.gate.weight = normal([2 * d, d]);
    head.out_proj.weight = normal([d, 20]);
    head.graph.kind_embedding.weight = normal([vocab, d]);

    let mut rng = Lcg(7);
    let lens = [9usize, 14, 5, 20, 11];
    let mut encs = Vec::new();
    let mut graphs = Vec::new();
    for (t, &len) in lens.iter().enumerate() {
        // Token j (1..len-1) covers bytes [4j, 4j + 3); [CLS] and [SEP] are special.
        let mut enc = Encoded {
            ids: vec![0; len],
            offsets: vec![(0, 0); len],
            special: vec![false; len],
        };
        enc.special[0] = true;
        enc.special[len - 1] = true;
        for j in 1..len - 1 {
            enc.offsets[j] = (4 * j, 4 * j + 3);
        }
        let n = if t == 2 { 1 } else { 3 + 2 * t };
        let mut g = AstGraph::default();
        let mut child = vec![0u32; n];
        for i in 0..n {
            if i > 0 {
                let parent = ((rng.next() + 1.0) * 0.5 * i as f32) as usize % i;
                g.edges.push((parent as u32, i as u32));
                child[parent] += 1;
            }
            let a = ((rng.next() + 1.0) * 0.5 * (4 * len) as f32) as u32;
            let span = if i == 0 {
                (0, (4 * len) as u32)
            } else if i == 1 {
                (1, 2) // inside one token: no token lies within it
            } else {
                (a.saturating_sub(9), a + 5)
            };
            g.spans.push(span);
            g.kinds.push(if i == 3 { 500 } else { (i % 30) as u16 });
        }
        g.child_counts = child;
        encs.push(enc);
        graphs.push(g);
    }
    let inputs: Vec<GraphInput<'_>> = (0..lens.len())
        .filter(|&r| r != 3) // row 3 has no graph
        .map(|r| GraphInput {
            row: r,
            graph: &graphs[r],
            tokens: &encs[r],
            kind_offset: if r % 2 == 0 { 0 } else { 10 },
        })
        .collect();

    let mut offsets = vec![0usize];
    for &l in &lens {
        offsets.push(offsets.last().unwrap() + l);
    }
    let total = *offsets.last().unwrap();
    let states = States {
        data: rng.vec(total * d),
        offsets: offsets.clone(),
        dim: d,
    };
    let seq = states.mean_pool();
    let lmax = *lens.iter().max().unwrap();
    let mut padded = vec![0f32; lens.len() * lmax * d];
    for (i, &l) in lens.iter().enumerate() {
        padded[i * lmax * d..(i * lmax + l) * d].copy_from_slice(states.rows(i));
    }
    let burn_batch = GraphBatch::build(&inputs, lmax, vocab).unwrap();
    let want = head
        .code_vectors(
            Tensor::<2>::from_data(TensorData::new(seq.clone(), [lens.len(), d]), &device),
            Tensor::<3>::from_data(
                TensorData::new(padded.clone(), [lens.len(), lmax, d]),
                &device,
            ),
            Some(&burn_batch),
        )
        .unwrap();
    let want = super::encoder::tensor_values(want).unwrap();
    // The same head with the other child-count scale keeps other nodes: the flag is used.
    let mut flipped = head.clone();
    flipped.graph.child_count_log1p = !log1p;
    let other = flipped
        .code_vectors(
            Tensor::<2>::from_data(TensorData::new(seq.clone(), [lens.len(), d]), &device),
            Tensor::<3>::from_data(
                TensorData::new(padded.clone(), [lens.len(), lmax, d]),
                &device,
            ),
            Some(&burn_batch),
        )
        .unwrap();
    let other = super::encoder::tensor_values(other).unwrap();
    assert!(
        want.iter().zip(&other).any(|(a, b)| (a - b).abs() > 1e-4),
        "the child-count scale changed nothing"
    );

    let cpu = CodeHead::from_burn(&head).unwrap();
    let batch = GraphBatch::build_ragged(&inputs, &offsets, vocab).unwrap();
    assert_eq!(batch.pair_node, burn_batch.pair_node);
    assert!(!batch.pair_node.is_empty());
    for threads in [1, 2] {
        let got = cpu
            .code_vectors(&seq, &states, Some(&batch), threads)
            .unwrap();
        assert_eq!(got.len(), lens.len());
        for (r, row) in got.iter().enumerate() {
            for (j, v) in row.iter().enumerate() {
                let w = want[r * 20 + j];
                assert!((v - w).abs() < 1e-4, "row {r} col {j}: {v} vs {w}");
            }
        }
    }
    // Without graphs: the projected sequence vectors.
    let plain = cpu.code_vectors(&seq, &states, None, 1).unwrap();
    let want_plain = super::encoder::tensor_values(
        head.code_vectors(
            Tensor::<2>::from_data(TensorData::new(seq.clone(), [lens.len(), d]), &device),
            Tensor::<3>::zeros([lens.len(), 1, d], &device),
            None,
        )
        .unwrap(),
    )
    .unwrap();
    for (r, row) in plain.iter().enumerate() {
        for (j, v) in row.iter().enumerate() {
            assert!((v - want_plain[r * 20 + j]).abs() < 1e-5);
        }
    }
    // A graph row past the batch is refused, not a panic.
    let bad = [GraphInput {
        row: lens.len(),
        graph: &graphs[0],
        tokens: &encs[0],
        kind_offset: 0,
    }];
    assert!(GraphBatch::build_ragged(&bad, &offsets, vocab).is_err());
}
