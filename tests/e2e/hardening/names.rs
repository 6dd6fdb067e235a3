//! Class 4 of issue 22 (first bullet): file names that are not UTF-8 stay exact through
//! `gnn-coder serve`. `bad\xffname.py` and `bad\xfename.py` used to both become
//! `bad\u{fffd}name.py`: one was unsearchable, every refresh reported a change, and
//! `UpdateFiles` of the lossy name removed a unit. Now each is its own `\xHH` text.

use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;

use gnn_coder_service::client::Client;
use gnn_coder_service::proto as pb;

use crate::support::{Server, index, index_request, search};

async fn path_of(c: &mut Client, symbol: &str) -> Option<String> {
    let hits = c
        .search(pb::SearchRequest {
            mode: pb::Mode::Lexical as i32,
            ..search(symbol)
        })
        .await
        .unwrap()
        .into_inner()
        .hits;
    hits.into_iter()
        .find(|h| h.symbol == symbol)
        .map(|h| h.path)
}

async fn update(c: &mut Client, path: &str) -> pb::FileResult {
    let mut r = c
        .update_files(pb::UpdateFilesRequest {
            repository: "r".into(),
            changes: vec![pb::FileChange {
                path: path.into(),
                contents: None,
                deleted: false,
            }],
            unsaved: false,
        })
        .await
        .unwrap()
        .into_inner();
    r.files.remove(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_that_are_not_utf8_stay_exact_through_the_server() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("repo");
    fs::create_dir_all(&repo).unwrap();
    let ff = repo.join(OsStr::from_bytes(b"bad\xffname.py"));
    let fe = repo.join(OsStr::from_bytes(b"bad\xfename.py"));
    if fs::write(&ff, "def alpha_in_ff():\n    return 1\n").is_err() {
        return; // a file system that refuses such names
    }
    fs::write(&fe, "def beta_in_fe():\n    return 2\n").unwrap();
    let server = Server::lexical(tmp.path());
    let mut c = server.client().await;
    let (_, s) = index(&mut c, index_request(&repo, "r")).await;
    assert_eq!((s.files, s.units), (2, 2), "{s:?}");
    assert_eq!(
        path_of(&mut c, "alpha_in_ff").await.as_deref(),
        Some("bad\\xffname.py")
    );
    assert_eq!(
        path_of(&mut c, "beta_in_fe").await.as_deref(),
        Some("bad\\xfename.py")
    );

    let (_, s) = index(&mut c, index_request(&repo, "r")).await;
    assert_eq!(
        (
            s.files_added,
            s.files_changed,
            s.files_removed,
            s.files_unchanged
        ),
        (0, 0, 0, 2),
        "a refresh sees no change: {s:?}"
    );

    fs::write(&ff, "def alpha_changed():\n    return 1\n").unwrap();
    let r = update(&mut c, "bad\\xffname.py").await;
    assert_eq!((r.outcome.as_str(), r.units), ("indexed", 1), "{r:?}");
    assert_eq!(
        path_of(&mut c, "alpha_changed").await.as_deref(),
        Some("bad\\xffname.py")
    );
    assert_eq!(update(&mut c, "bad\\xfename.py").await.outcome, "unchanged");
    // The lossy text names no file and removes nothing.
    update(&mut c, "bad\u{fffd}name.py").await;
    assert_eq!(
        path_of(&mut c, "beta_in_fe").await.as_deref(),
        Some("bad\\xfename.py")
    );
    assert!(path_of(&mut c, "alpha_changed").await.is_some());
}
