//! Micro benchmark of the transformer's building blocks on the CPU backend (dev tool):
//! `cargo run --release -p gnn-coder-model --example micro_ops`.
use burn::prelude::*;
use burn::tensor::activation::{gelu, softmax};
use std::time::Instant;

fn time<F: FnMut() -> Tensor<2>>(name: &str, reps: usize, mut f: F) {
    let _ = f().into_data();
    let t = Instant::now();
    for _ in 0..reps {
        let _ = f().into_data();
    }
    println!(
        "{name:40} {:8.2} ms",
        1000.0 * t.elapsed().as_secs_f64() / reps as f64
    );
}

fn main() {
    // With burn's `ndarray` feature enabled, add `("ndarray", Device::ndarray())` to compare.
    let backends = vec![("flex", Device::flex())];
    for (name, device) in backends {
        println!("== {name}");
        let a: Tensor<2> = Tensor::random(
            [32 * 108, 384],
            burn::tensor::Distribution::Default,
            &device,
        );
        let w: Tensor<2> =
            Tensor::random([384, 1536], burn::tensor::Distribution::Default, &device);
        let w2: Tensor<2> =
            Tensor::random([384, 384], burn::tensor::Distribution::Default, &device);
        time("matmul 3456x384 @ 384x1536", 5, || {
            a.clone().matmul(w.clone())
        });
        time("matmul 3456x384 @ 384x384", 5, || {
            a.clone().matmul(w2.clone())
        });
        let a3 = a.clone().reshape([32, 108, 384]);
        let w3 = w.clone().unsqueeze::<3>();
        time("matmul [32,108,384] @ [1,384,1536]", 5, || {
            a3.clone().matmul(w3.clone()).reshape([3456, 1536])
        });
        let q: Tensor<4> = Tensor::random(
            [32, 12, 108, 32],
            burn::tensor::Distribution::Default,
            &device,
        );
        time("attn scores q@k^T [32,12,108,32]", 5, || {
            q.clone()
                .matmul(q.clone().swap_dims(2, 3))
                .reshape([32 * 12 * 108, 108])
        });
        let s: Tensor<4> = Tensor::random(
            [32, 12, 108, 108],
            burn::tensor::Distribution::Default,
            &device,
        );
        time("softmax [32,12,108,108]", 5, || {
            softmax(s.clone(), 3).reshape([32 * 12 * 108, 108])
        });
        let big: Tensor<2> =
            Tensor::random([3456, 1536], burn::tensor::Distribution::Default, &device);
        time("gelu [3456,1536]", 5, || gelu(big.clone()));
        time("swap_dims+reshape [32,108,12,32]", 5, || {
            a3.clone()
                .reshape([32, 108, 12, 32])
                .swap_dims(1, 2)
                .reshape([32 * 12 * 108, 32])
        });
    }
}
