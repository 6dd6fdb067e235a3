//! Single-thread throughput of the packed linear layers at each precision, on the shapes of
//! MiniLM's layers (dev tool): `cargo run -p gnn-coder-model --example linear_bench`.
use std::time::Instant;

use gnn_coder_model::cpu::{PackedLinear, Precision};

fn main() {
    let m = 2048;
    let mut precisions = vec![Precision::F32];
    for p in [Precision::Bf16, Precision::Int8] {
        if p.supported() {
            precisions.push(p);
        }
    }
    for (k, n) in [(384, 1152), (384, 1536), (1536, 384)] {
        let w: Vec<f32> = (0..k * n)
            .map(|i| ((i * 7919) % 1000) as f32 / 1000.0 - 0.5)
            .collect();
        let x: Vec<f32> = (0..m * k)
            .map(|i| ((i * 104729) % 997) as f32 / 997.0 - 0.5)
            .collect();
        let mut out = vec![0f32; m * n];
        for &p in &precisions {
            let lin = PackedLinear::new(&w, None, k, n, p).unwrap();
            let mut scratch = Vec::new();
            lin.forward(&x, m, &mut out, 1, &mut scratch);
            let reps = 10;
            let t = Instant::now();
            for _ in 0..reps {
                lin.forward(&x, m, &mut out, 1, &mut scratch);
            }
            let s = t.elapsed().as_secs_f64() / reps as f64;
            println!(
                "{m}x{k}x{n} {:5}: {:7.2} ms, {:6.1} GFLOP/s",
                p.as_str(),
                s * 1e3,
                2.0 * (m * k * n) as f64 / s / 1e9
            );
        }
    }
}
