use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

use gnn_coder_ann::{AnnError, AnnIndex, AnnParams};

// ------------------------------------------------------------------ helpers

mod support;

use support::{Rng, normalize};

/// `n` clustered, L2-normalized vectors (centres + gaussian noise of norm ~1).
fn clustered(n: usize, dim: usize, clusters: usize, seed: u64) -> Vec<Vec<f32>> {
    let mut rng = Rng(seed);
    let centres: Vec<Vec<f32>> = (0..clusters)
        .map(|_| {
            let mut c: Vec<f32> = (0..dim).map(|_| rng.gauss()).collect();
            normalize(&mut c);
            c
        })
        .collect();
    let s = 1.0 / (dim as f32).sqrt();
    (0..n)
        .map(|_| {
            let c = &centres[(rng.next_u64() % clusters as u64) as usize];
            let mut v: Vec<f32> = c.iter().map(|x| x + s * rng.gauss()).collect();
            normalize(&mut v);
            v
        })
        .collect()
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Exact top-k ids by inner product among `keep`.
fn exact(data: &[(u32, Vec<f32>)], q: &[f32], k: usize, keep: &dyn Fn(u32) -> bool) -> Vec<u32> {
    let mut all: Vec<(f32, u32)> = data
        .iter()
        .filter(|(id, _)| keep(*id))
        .map(|(id, v)| (dot(q, v), *id))
        .collect();
    all.sort_by(|a, b| b.0.total_cmp(&a.0));
    all.into_iter().take(k).map(|x| x.1).collect()
}

type Rows = Vec<(u32, Vec<f32>)>;

/// (id, vector) rows with sparse ids, plus queries from the same distribution.
fn dataset(n: usize, dim: usize, seed: u64) -> (Rows, Vec<Vec<f32>>) {
    let mut all = clustered(n + 50, dim, n / 40, seed);
    let queries = all.split_off(n);
    let data = all
        .into_iter()
        .enumerate()
        .map(|(i, v)| (1_000_000 + 7 * i as u32, v))
        .collect();
    (data, queries)
}

fn items(data: &[(u32, Vec<f32>)]) -> Vec<(u32, &[f32])> {
    data.iter().map(|(id, v)| (*id, v.as_slice())).collect()
}

fn never() -> bool {
    false
}

fn all(_: u32) -> bool {
    true
}

fn build(data: &[(u32, Vec<f32>)], dim: usize) -> AnnIndex {
    AnnIndex::build(dim, &items(data), &AnnParams::default(), &never).unwrap()
}

fn tmp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("gnn-coder-ann-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

const DIM: usize = 96;

// ------------------------------------------------------------------ tests

#[test]
fn recall_at_10_against_exact_search() {
    let (data, queries) = dataset(4000, DIM, 1);
    let index = build(&data, DIM);
    assert_eq!(index.len(), 4000);
    assert_eq!(index.dim(), DIM);
    let mut hits = 0;
    for q in &queries {
        let truth: HashSet<u32> = exact(&data, q, 10, &all).into_iter().collect();
        let got = index.search(q, 10, 0, &all);
        assert_eq!(got.len(), 10);
        assert!(
            got.windows(2).all(|w| w[0].1 >= w[1].1),
            "results must be best first"
        );
        hits += got.iter().filter(|(id, _)| truth.contains(id)).count();
        // Similarities are the cosine of the int8 codes: close to the exact f32 inner product.
        let by_id: std::collections::HashMap<u32, &Vec<f32>> =
            data.iter().map(|(i, v)| (*i, v)).collect();
        for (id, s) in &got {
            assert!(
                (dot(q, by_id[id]) - s).abs() < 0.02,
                "score {s} vs exact {}",
                dot(q, by_id[id])
            );
        }
    }
    let recall = hits as f64 / (10 * queries.len()) as f64;
    assert!(recall >= 0.95, "recall@10 = {recall}");
}

#[test]
fn filter_is_applied_and_selective_filters_still_fill_k() {
    let (data, queries) = dataset(3000, DIM, 2);
    let index = build(&data, DIM);
    let ids: Vec<u32> = data.iter().map(|(id, _)| *id).collect();

    // A broad filter: every third row.
    let third = |id: u32| ((id - 1_000_000) / 7).is_multiple_of(3);
    for q in &queries[..10] {
        let got = index.search(q, 10, 0, &third);
        assert_eq!(got.len(), 10);
        assert!(got.iter().all(|(id, _)| third(*id)));
    }

    // A selective filter: 20 of 3000 rows (0.7%), spread over the clusters.
    let chosen: HashSet<u32> = ids.iter().copied().step_by(150).collect();
    assert_eq!(chosen.len(), 20);
    let keep = |id: u32| chosen.contains(&id);
    for q in &queries[..10] {
        let got = index.search(q, 10, 0, &keep);
        assert_eq!(
            got.len(),
            10,
            "a selective filter must still return k results"
        );
        assert!(got.iter().all(|(id, _)| chosen.contains(id)));
        let truth: HashSet<u32> = exact(&data, q, 10, &keep).into_iter().collect();
        let same = got.iter().filter(|(id, _)| truth.contains(id)).count();
        assert!(
            same >= 9,
            "selective filter found {same}/10 of the exact answers"
        );
    }

    // Fewer kept ids than k: all of them, nothing else.
    let five: HashSet<u32> = ids.iter().copied().skip(3).step_by(601).collect();
    assert_eq!(five.len(), 5);
    let got = index.search(&queries[0], 10, 0, &|id| five.contains(&id));
    assert_eq!(got.iter().map(|x| x.0).collect::<HashSet<_>>(), five);

    // Nothing kept.
    assert!(index.search(&queries[0], 10, 0, &|_| false).is_empty());
}

#[test]
fn save_load_round_trip_gives_identical_results() {
    let (data, queries) = dataset(2000, DIM, 3);
    let params = AnnParams {
        m: 12,
        ef_construction: 100,
        ef_search: 48,
        threads: 2,
    };
    let index = AnnIndex::build(DIM, &items(&data), &params, &never).unwrap();
    let dir = tmp_dir("roundtrip");
    let path = dir.join("vectors.ann");
    index.save(&path).unwrap();
    // Saving again replaces the file atomically and leaves no temporary file behind.
    index.save(&path).unwrap();
    let names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from("vectors.ann")]);

    let loaded = AnnIndex::load(&path).unwrap();
    assert_eq!(loaded.len(), index.len());
    assert_eq!(loaded.dim(), DIM);
    assert_eq!(
        *loaded.params(),
        AnnParams {
            threads: 0,
            ..params
        }
    );
    let odd = |id: u32| id % 2 == 1;
    for q in &queries {
        for ef in [0, 10, 100] {
            assert_eq!(
                index.search(q, 10, ef, &all),
                loaded.search(q, 10, ef, &all)
            );
            assert_eq!(index.search(q, 5, ef, &odd), loaded.search(q, 5, ef, &odd));
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn saved_without_vectors_it_loads_the_same_index_from_the_callers_vectors() {
    let (mut data, queries) = dataset(2000, DIM, 9);
    // Two ids with the same vector: either one's vector fills the slot of the other.
    let twin = data[3].1.clone();
    data[4].1 = twin;
    let params = AnnParams {
        threads: 2,
        ..AnnParams::default()
    };
    let index = AnnIndex::build(DIM, &items(&data), &params, &never).unwrap();
    let dir = tmp_dir("external");
    let whole = dir.join("whole.ann");
    let graph = dir.join("graph.ann");
    index.save(&whole).unwrap();
    index.save_without_vectors(&graph).unwrap();
    let size = |p: &PathBuf| std::fs::metadata(p).unwrap().len() as usize;
    // Each vector's codes (DIM bytes) become a 4-byte id.
    assert_eq!(size(&whole) - size(&graph), data.len() * (DIM - 4) + 8 - 4);

    let by_id: std::collections::HashMap<u32, Vec<f32>> = data.iter().cloned().collect();
    let calls = AtomicUsize::new(0);
    let vector_of = |id: u32| {
        calls.fetch_add(1, Ordering::Relaxed);
        by_id.get(&id).cloned()
    };
    let loaded = AnnIndex::load_with(&graph, &vector_of).unwrap();
    assert_eq!(calls.load(Ordering::Relaxed), data.len());
    assert_eq!((loaded.len(), loaded.dim()), (index.len(), DIM));
    let odd = |id: u32| id % 2 == 1;
    for q in &queries {
        assert_eq!(index.search(q, 10, 0, &all), loaded.search(q, 10, 0, &all));
        assert_eq!(index.search(q, 5, 40, &odd), loaded.search(q, 5, 40, &odd));
    }
    // A self-contained file never asks for vectors.
    let whole_loaded = AnnIndex::load_with(&whole, &|_| panic!("asked for a vector")).unwrap();
    assert_eq!(
        whole_loaded.search(&queries[0], 10, 0, &all),
        index.search(&queries[0], 10, 0, &all)
    );
    // It does not list its ids, so it cannot leave its vectors out; a graph loaded with the
    // caller's vectors can, and gives the same file.
    assert!(matches!(
        whole_loaded.save_without_vectors(&dir.join("x.ann")),
        Err(AnnError::InvalidParams(_))
    ));
    let again = dir.join("again.ann");
    loaded.save_without_vectors(&again).unwrap();
    assert_eq!(
        std::fs::read(&again).unwrap(),
        std::fs::read(&graph).unwrap()
    );

    // Without vectors, with one missing, or with one changed, the file is corrupt.
    let corrupt = |r: Result<AnnIndex, AnnError>| matches!(r, Err(AnnError::Corrupt { .. }));
    assert!(corrupt(AnnIndex::load(&graph)));
    let missing = data[10].0;
    assert!(corrupt(AnnIndex::load_with(&graph, &|id| {
        (id != missing).then(|| by_id[&id].clone())
    })));
    let changed = data[20].0;
    assert!(corrupt(AnnIndex::load_with(&graph, &|id| {
        let mut v = by_id.get(&id)?.clone();
        if id == changed {
            v[0] = -v[0] + 0.5;
        }
        Some(v)
    })));
    assert!(corrupt(AnnIndex::load_with(&graph, &|id| {
        by_id.get(&id).map(|v| v[1..].to_vec())
    })));
    // The envelope's checks hold for this layout too: a flipped byte anywhere is refused.
    let bytes = std::fs::read(&graph).unwrap();
    let bad = dir.join("bad.ann");
    for pos in [36, 64, 70, 64 + 4 * 100, bytes.len() - 1] {
        let mut b = bytes.clone();
        b[pos] ^= 0x04;
        std::fs::write(&bad, &b).unwrap();
        assert!(
            corrupt(AnnIndex::load_with(&bad, &vector_of)),
            "flip at {pos} accepted"
        );
    }

    // An empty index round-trips too.
    let empty = AnnIndex::build(DIM, &[], &params, &never).unwrap();
    let path = dir.join("empty.ann");
    empty.save_without_vectors(&path).unwrap();
    assert!(AnnIndex::load_with(&path, &vector_of).unwrap().is_empty());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn truncated_corrupt_or_foreign_files_are_errors() {
    let (data, _) = dataset(500, 32, 4);
    let index = build(&data, 32);
    let dir = tmp_dir("corrupt");
    let good = dir.join("good.ann");
    index.save(&good).unwrap();
    let bytes = std::fs::read(&good).unwrap();
    let bad = dir.join("bad.ann");

    let cases: Vec<(String, Vec<u8>)> = vec![
        ("empty".into(), vec![]),
        ("header only".into(), bytes[..64].to_vec()),
        ("half".into(), bytes[..bytes.len() / 2].to_vec()),
        ("minus one byte".into(), bytes[..bytes.len() - 1].to_vec()),
        ("plus one byte".into(), [bytes.as_slice(), &[0]].concat()),
        (
            "garbage".into(),
            (0..bytes.len()).map(|i| (i * 31 % 251) as u8).collect(),
        ),
    ];
    let mut flips = Vec::new();
    for pos in [0, 9, 13, 20, 40, 70, bytes.len() / 2, bytes.len() - 1] {
        let mut b = bytes.clone();
        b[pos] ^= 0x10;
        flips.push((format!("flip at {pos}"), b));
    }
    for (what, content) in cases.into_iter().chain(flips) {
        std::fs::write(&bad, &content).unwrap();
        match AnnIndex::load(&bad) {
            Err(AnnError::Corrupt { .. } | AnnError::UnsupportedVersion { .. }) => {}
            other => panic!("{what}: expected a corrupt-file error, got {other:?}"),
        }
    }
    assert!(matches!(
        AnnIndex::load(&dir.join("missing.ann")),
        Err(AnnError::Io { .. })
    ));
    assert!(AnnIndex::load(&good).is_ok());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_queries_give_empty_results() {
    let (data, queries) = dataset(300, 32, 5);
    let index = build(&data, 32);
    assert!(index.search(&queries[0][..31], 5, 0, &all).is_empty());
    assert!(
        index
            .search(&[queries[0].as_slice(), &[0.0]].concat(), 5, 0, &all)
            .is_empty()
    );
    assert!(index.search(&[], 5, 0, &all).is_empty());
    assert!(index.search(&queries[0], 0, 0, &all).is_empty());
    let mut nan = queries[0].clone();
    nan[3] = f32::NAN;
    assert!(index.search(&nan, 5, 0, &all).is_empty());
    assert!(index.search(&[0.0; 32], 5, 0, &all).is_empty());
    // k larger than the index: (nearly) everything, each id once. The graph walk does not
    // promise to reach every node (a multi-threaded build is not deterministic; 297 of 300
    // was seen once), so "all 300" would be a flaky claim.
    let got = index.search(&queries[0], 1000, 0, &all);
    assert!(got.len() >= 285 && got.len() <= 300, "{}", got.len());
    assert_eq!(
        got.iter().map(|x| x.0).collect::<HashSet<_>>().len(),
        got.len()
    );
    assert_eq!(index.search(&queries[0], usize::MAX, usize::MAX, &all), got);
}

#[test]
fn bad_build_input_gives_typed_errors() {
    let v = vec![0.5f32; 8];
    let short = vec![0.5f32; 7];
    let mut nan = v.clone();
    nan[2] = f32::INFINITY;
    let zero = vec![0.0f32; 8];
    let p = AnnParams::default();
    let b = |items: &[(u32, &[f32])], p: &AnnParams| AnnIndex::build(8, items, p, &never);
    assert!(matches!(
        b(&[(1, &v), (2, &short)], &p),
        Err(AnnError::DimMismatch {
            id: 2,
            expected: 8,
            got: 7
        })
    ));
    assert!(matches!(
        b(&[(1, &v), (9, &nan)], &p),
        Err(AnnError::NonFinite { id: 9 })
    ));
    assert!(matches!(
        b(&[(4, &zero)], &p),
        Err(AnnError::ZeroVector { id: 4 })
    ));
    assert!(matches!(
        b(&[(3, &v), (5, &v), (3, &v)], &p),
        Err(AnnError::DuplicateId(3))
    ));
    for bad in [
        AnnParams { m: 0, ..p },
        AnnParams { m: 1, ..p },
        AnnParams { m: 100_000, ..p },
        AnnParams {
            ef_construction: 0,
            ..p
        },
        AnnParams { ef_search: 0, ..p },
    ] {
        assert!(
            matches!(b(&[(1, &v)], &bad), Err(AnnError::InvalidParams(_))),
            "{bad:?}"
        );
    }
    assert!(matches!(
        AnnIndex::build(0, &[], &p, &never),
        Err(AnnError::InvalidParams(_))
    ));
}

#[test]
fn empty_and_tiny_indexes() {
    let dir = tmp_dir("empty");
    let empty = AnnIndex::build(16, &[], &AnnParams::default(), &never).unwrap();
    assert_eq!(empty.len(), 0);
    assert!(empty.is_empty());
    assert!(empty.search(&[0.25; 16], 10, 0, &all).is_empty());
    let path = dir.join("empty.ann");
    empty.save(&path).unwrap();
    let loaded = AnnIndex::load(&path).unwrap();
    assert_eq!((loaded.len(), loaded.dim()), (0, 16));
    assert!(loaded.search(&[0.25; 16], 10, 0, &all).is_empty());

    let a = vec![1.0f32, 0.0, 0.0, 0.0];
    let b = vec![0.0f32, 1.0, 0.0, 0.0];
    let one = AnnIndex::build(4, &[(42, &a)], &AnnParams::default(), &never).unwrap();
    let got = one.search(&a, 3, 0, &all);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].0, 42);
    assert!((got[0].1 - 1.0).abs() < 1e-3);
    let two =
        AnnIndex::build(4, &[(7, &a), (u32::MAX, &b)], &AnnParams::default(), &never).unwrap();
    assert_eq!(two.search(&b, 1, 0, &all)[0].0, u32::MAX);
    assert_eq!(two.search(&b, 2, 0, &|id| id == 7)[0].0, 7);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn cancellation_is_polled_during_the_build() {
    let (data, _) = dataset(2000, 32, 6);
    let it = items(&data);
    let now = AnnIndex::build(32, &it, &AnnParams::default(), &|| true);
    assert!(matches!(now, Err(AnnError::Cancelled)));
    // Cancel after a few polls: the build stops part-way.
    let polls = AtomicUsize::new(0);
    let later = || polls.fetch_add(1, Ordering::Relaxed) >= 5;
    assert!(matches!(
        AnnIndex::build(32, &it, &AnnParams::default(), &later),
        Err(AnnError::Cancelled)
    ));
    let seen = polls.load(Ordering::Relaxed);
    assert!(
        seen < 2000 / 64,
        "polled {seen} times: the build went on after cancellation"
    );
}

#[test]
fn concurrent_searches_with_mixed_ef_match_sequential_ones() {
    let (data, queries) = dataset(2000, DIM, 7);
    let index = build(&data, DIM);
    let efs = [10usize, 40, 0, 200];
    let expected: Vec<Vec<Vec<(u32, f32)>>> = efs
        .iter()
        .map(|&ef| {
            queries
                .iter()
                .map(|q| index.search(q, 10, ef, &all))
                .collect()
        })
        .collect();
    std::thread::scope(|s| {
        for t in 0..12 {
            let (index, queries, expected) = (&index, &queries, &expected);
            s.spawn(move || {
                for round in 0..3 {
                    for (qi, q) in queries.iter().enumerate() {
                        let e = (t + qi + round) % efs.len();
                        assert_eq!(index.search(q, 10, efs[e], &all), expected[e][qi]);
                    }
                }
            });
        }
    });
}

#[test]
fn a_panicking_filter_propagates_and_leaves_the_index_usable() {
    let (data, queries) = dataset(500, 32, 8);
    let index = build(&data, 32);
    let before = index.search(&queries[0], 5, 0, &all);
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        index.search(&queries[0], 5, 0, &|_| panic!("filter bug"))
    }));
    assert!(r.is_err());
    assert_eq!(index.search(&queries[0], 5, 0, &all), before);
}
