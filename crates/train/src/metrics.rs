//! Retrieval metrics over a pool of vectors, and the Mean Angular Margin.

/// MRR@10, R@1, R@10 and the number of queries.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Retrieval {
    pub n: usize,
    pub mrr10: f64,
    pub r1: f64,
    pub r10: f64,
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Query `i`'s relevant item is `codes[gold[i]]`; the pool is all of `codes`. Rank = 1 + the
/// number of codes scoring strictly higher than the gold (ties count in the query's favour).
pub fn retrieval(queries: &[Vec<f32>], codes: &[Vec<f32>], gold: &[usize]) -> Retrieval {
    let mut r = Retrieval {
        n: queries.len(),
        ..Default::default()
    };
    if queries.is_empty() {
        return r;
    }
    for (q, &g) in queries.iter().zip(gold) {
        let target = dot(q, &codes[g]);
        let rank = 1 + codes
            .iter()
            .enumerate()
            .filter(|&(j, c)| j != g && dot(q, c) > target)
            .count();
        if rank <= 10 {
            r.mrr10 += 1.0 / rank as f64;
            r.r10 += 1.0;
        }
        if rank == 1 {
            r.r1 += 1.0;
        }
    }
    let n = queries.len() as f64;
    r.mrr10 /= n;
    r.r1 /= n;
    r.r10 /= n;
    r
}

/// Mean Angular Margin, the uniformity measure of the GNN-Coder paper as we define it: the mean,
/// over all pairs `i < j` of the first `limit` vectors, of `|pi/2 - angle(e_i, e_j)|` in radians.
/// 0 when every pair is orthogonal (vectors spread over the sphere); it grows as vectors crowd
/// into a cone (all equal: pi/2). Lower is more uniform. Vectors need not be normalized.
pub fn mean_angular_margin(vectors: &[Vec<f32>], limit: usize) -> f64 {
    let v = &vectors[..vectors.len().min(limit)];
    let norms: Vec<f64> = v
        .iter()
        .map(|x| f64::from(dot(x, x)).sqrt().max(1e-12))
        .collect();
    let (mut sum, mut count) = (0.0f64, 0usize);
    for i in 0..v.len() {
        for j in i + 1..v.len() {
            let cos = (f64::from(dot(&v[i], &v[j])) / (norms[i] * norms[j])).clamp(-1.0, 1.0);
            sum += (std::f64::consts::FRAC_PI_2 - cos.acos()).abs();
            count += 1;
        }
    }
    if count == 0 { 0.0 } else { sum / count as f64 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retrieval_ranks() {
        let codes = vec![vec![1.0, 0.0], vec![0.0, 1.0], vec![0.7, 0.7]];
        // q0 -> gold 0 ranks 1; q1 -> gold 0 but [0,1] scores higher: rank 3 ([0,1], [.7,.7]).
        let queries = vec![vec![1.0, 0.0], vec![0.0, 1.0]];
        let r = retrieval(&queries, &codes, &[0, 0]);
        assert_eq!(r.n, 2);
        assert!((r.mrr10 - (1.0 + 1.0 / 3.0) / 2.0).abs() < 1e-9);
        assert!((r.r1 - 0.5).abs() < 1e-9);
        assert!((r.r10 - 1.0).abs() < 1e-9);
    }

    #[test]
    fn mam_extremes() {
        let orth = vec![
            vec![1.0, 0.0, 0.0],
            vec![0.0, 1.0, 0.0],
            vec![0.0, 0.0, 1.0],
        ];
        assert!(mean_angular_margin(&orth, 10) < 1e-9);
        let same = vec![vec![1.0, 1.0], vec![2.0, 2.0]];
        assert!((mean_angular_margin(&same, 10) - std::f64::consts::FRAC_PI_2).abs() < 1e-6);
        assert_eq!(mean_angular_margin(&same, 1), 0.0);
    }
}
