//! The PostgreSQL store end to end on a real server, before the generic conformance suite.

mod server;

use gnn_coder_postgres::PgStore;
use gnn_coder_store::*;

fn unit(path: &str, name: &str, code: &str, key: u8, v: [f32; 4]) -> UnitWrite {
    let n = (v.iter().map(|x| x * x).sum::<f32>()).sqrt();
    UnitWrite {
        record: UnitRecord {
            path: path.into(),
            language: "python".into(),
            kind: "function".into(),
            name: name.into(),
            symbol: name.into(),
            start_line: 1,
            end_line: 2,
            def_line: 1,
            start_byte: 0,
            end_byte: code.len() as u64,
            doc: None,
            code: code.into(),
        },
        key: UnitKey([key; 16]),
        vector: Some(v.iter().map(|x| x / n).collect()),
    }
}

#[test]
fn index_search_and_snapshot() {
    let db = server::TestDb::new();
    let info = EmbeddingInfo {
        model: "m".into(),
        dim: 4,
        trained: true,
    };
    let store = PgStore::open_or_create(&db.url, Some(info.clone())).unwrap();
    let mut w = store.writer().unwrap();
    w.put_repository(&RepoInfo {
        name: "r".into(),
        root: "/r".into(),
        ..Default::default()
    })
    .unwrap();
    w.upsert_files(
        "r",
        vec![FileWrite {
            file: FileEntry {
                path: "a.py".into(),
                hash: "h1".into(),
                units: 2,
                bytes: 10,
            },
            units: vec![
                unit(
                    "a.py",
                    "parse_header",
                    "def parse_header(x): return x",
                    1,
                    [1.0, 0.0, 0.0, 0.0],
                ),
                unit(
                    "a.py",
                    "write_body",
                    "def write_body(y): parse(y)",
                    2,
                    [0.0, 1.0, 0.0, 0.0],
                ),
            ],
        }],
    )
    .unwrap();
    let before = store.reader().unwrap();
    assert_eq!(before.stats().unwrap().units, 0);
    w.commit(&CancellationToken::new()).unwrap();
    let r = store.reader().unwrap();
    assert_eq!(r.stats().unwrap().units, 2);
    let hits = r
        .lexical(&LexicalQuery {
            text: "parse header".into(),
            boosts: FieldBoosts::default(),
            filters: Filters::default(),
            limit: 10,
        })
        .unwrap();
    assert_eq!(hits.len(), 2, "{hits:?}");
    let units = r.units(&[hits[0].0]).unwrap();
    assert_eq!(units[0].record.name, "parse_header");
    let v = r
        .vector(&VectorQuery {
            vector: vec![0.0, 1.0, 0.0, 0.0],
            filters: Filters::default(),
            limit: 1,
            exact: false,
        })
        .unwrap();
    assert_eq!(r.units(&[v[0].0]).unwrap()[0].record.name, "write_body");
    assert!((v[0].1 - 1.0).abs() < 1e-5);
    assert_eq!(before.stats().unwrap().units, 0, "the old snapshot moved");
    let repos = r.repositories().unwrap();
    assert_eq!((repos[0].files, repos[0].units), (1, 2));
    // The cache: a known key without its vector.
    assert_eq!(
        w.known_keys(&[UnitKey([1; 16]), UnitKey([9; 16])]).unwrap(),
        vec![true, false]
    );
    let mut u = unit(
        "b.py",
        "again",
        "def again(): pass",
        1,
        [1.0, 0.0, 0.0, 0.0],
    );
    u.vector = None;
    w.upsert_files(
        "r",
        vec![FileWrite {
            file: FileEntry {
                path: "b.py".into(),
                hash: "h".into(),
                units: 1,
                bytes: 3,
            },
            units: vec![u],
        }],
    )
    .unwrap();
    w.commit(&CancellationToken::new()).unwrap();
    w.maintain(&CancellationToken::new()).unwrap();
    let r = store.reader().unwrap();
    assert_eq!(r.stats().unwrap().ann_vectors, 3);
    let id = r.units_of_file("r", "b.py").unwrap()[0].id;
    assert_eq!(
        r.unit_vector(id).unwrap().unwrap(),
        vec![1.0, 0.0, 0.0, 0.0]
    );
    // A second writer on the same repository is refused; on another one it is not.
    let store2 = PgStore::open(&db.url).unwrap();
    let mut w2 = store2.writer().unwrap();
    let e = w2.delete_files("r", &["a.py".into()]).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Locked, "{e}");
    w2.put_repository(&RepoInfo {
        name: "s".into(),
        root: "/s".into(),
        ..Default::default()
    })
    .unwrap();
    w2.commit(&CancellationToken::new()).unwrap();
    drop(w);
    w2.delete_files("r", &["a.py".into()]).unwrap();
    w2.commit(&CancellationToken::new()).unwrap();
    let r = store.reader().unwrap();
    assert_eq!(r.stats().unwrap().units, 1);
    assert_eq!(r.repositories().unwrap().len(), 2);
}
