//! End-to-end tests of `gnn-coder serve`: the real server binary on loopback, a real tonic
//! client, the command-line client, and Python's grpcio as an outside client that learns the
//! API from reflection.

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use gnn_coder_service::client::{self, ClientOptions};
use gnn_coder_service::proto as pb;
use pb::index_event::Event;
use tonic::Code;

mod support;
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn index_search_similar_update_list_remove() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("polyglot");
    copy_dir(&fixture(), &root);
    let index_dir = tmp.path().join("idx");
    let server = Server::start(&index_dir, &["--allow-root", tmp.path().to_str().unwrap()]);
    let mut c = server.client().await;

    // Health and reflection.
    let channel = client::channel(&server.url, &ClientOptions::default())
        .await
        .unwrap();
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
    let h = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: "gnn_coder.v1.CodeSearch".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        h.status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );
    let services = list_services(channel.clone()).await;
    assert!(
        services.contains(&"gnn_coder.v1.CodeSearch".to_string()),
        "{services:?}"
    );
    assert!(
        services.contains(&"grpc.health.v1.Health".to_string()),
        "{services:?}"
    );

    // Index through the stream; a file that cannot be indexed is reported, and skipped.
    fs::write(
        root.join("python/blob.py"),
        b"def f():\n    return 1\n\0\0binary",
    )
    .unwrap();
    let (events, summary) = index(&mut c, index_request(&root, "poly")).await;
    assert!(
        events.iter().any(
            |e| matches!(e, Event::Skipped(f) if f.path == "python/blob.py" && f.reason == "binary")
        ),
        "{events:?}"
    );
    assert_eq!(summary.skipped.get("binary"), Some(&1), "{summary:?}");
    assert!(
        events.iter().any(|e| matches!(e, Event::Progress(_))),
        "{events:?}"
    );
    assert!(
        events.iter().any(|e| matches!(e, Event::Committed(_))),
        "{events:?}"
    );
    assert_eq!(summary.repository, "poly");
    assert!(summary.files >= 11 && summary.units >= 40, "{summary:?}");
    assert!(summary.embeddings_computed > 0, "{summary:?}");
    assert!(!summary.model.is_empty());

    // Search.
    let r = c
        .search(search(
            "compute the levenshtein edit distance between two strings",
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.mode, pb::Mode::Hybrid as i32);
    let top = &r.hits[0];
    assert_eq!(top.symbol, "levenshtein_distance", "{:?}", r.hits);
    assert_eq!(top.repository, "poly");
    assert_eq!(top.path, "python/text_utils.py");
    assert!(
        top.snippet[0].contains("def levenshtein_distance("),
        "{:?}",
        top.snippet
    );
    assert!(!top.matches.is_empty());
    let lexical = c
        .search(pb::SearchRequest {
            mode: pb::Mode::Lexical as i32,
            filters: Some(pb::Filters {
                languages: vec!["rust".into()],
                ..Default::default()
            }),
            ..search("parse_ini")
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(lexical.hits[0].symbol, "parse_ini");
    assert!(lexical.hits.iter().all(|h| h.language == "rust"));
    // The cross-encoder corrects the order of a hybrid search's top hits (the same hits).
    let hybrid = |rerank_depth| pb::SearchRequest {
        mode: pb::Mode::Hybrid as i32,
        rerank_depth,
        ..search("parse an ini file into sections")
    };
    let plain = c.search(hybrid(0)).await.unwrap().into_inner();
    let reranked = c.search(hybrid(3)).await.unwrap().into_inner();
    let top3 = |hits: &[pb::Hit]| -> std::collections::BTreeSet<String> {
        hits.iter().take(3).map(|h| h.symbol.clone()).collect()
    };
    assert_eq!(reranked.hits.len(), plain.hits.len());
    assert_eq!(top3(&reranked.hits), top3(&plain.hits));
    assert_eq!(reranked.hits[0].symbol, "parse_ini", "{:?}", reranked.hits);

    // Similar, by unit and by snippet.
    let by_unit = c
        .search_similar(pb::SimilarRequest {
            target: Some(pb::similar_request::Target::Unit(pb::UnitRef {
                repository: "poly".into(),
                path: top.path.clone(),
                line: top.start_line,
            })),
            top_k: 3,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        by_unit.origin.as_ref().unwrap().symbol,
        "levenshtein_distance"
    );
    assert!(!by_unit.hits.is_empty());
    assert!(
        by_unit
            .hits
            .iter()
            .all(|h| h.symbol != "levenshtein_distance")
    );
    let code = fs::read_to_string(root.join("python/text_utils.py")).unwrap();
    let by_snippet = c
        .search_similar(pb::SimilarRequest {
            target: Some(pb::similar_request::Target::Snippet(pb::CodeSnippet {
                code: code.clone(),
                language: "python".into(),
            })),
            top_k: 3,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        by_snippet.hits[0].language, "python",
        "{:?}",
        by_snippet.hits
    );

    // `similar` through the command line: `--server` answers as the local index does, for a
    // unit named PATH:LINE and for a snippet on stdin.
    let similar_cli = |where_: &[&str], target: &str, stdin: &str| {
        let mut child = Command::new(BIN)
            .arg("similar")
            .arg(target)
            .args(where_)
            .args(["--json", "-k", "3"])
            .args(if target == "-" {
                &["--lang", "python"][..]
            } else {
                &[]
            })
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        std::io::Write::write_all(child.stdin.as_mut().unwrap(), stdin.as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "similar {where_:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    let unit = format!("{}:{}", top.path, top.start_line);
    let remote = similar_cli(&["--server", &server.url], &unit, "");
    let local = similar_cli(&["--index", index_dir.to_str().unwrap()], &unit, "");
    assert_eq!(
        remote["origin"]["symbol"], "levenshtein_distance",
        "{remote}"
    );
    assert_eq!(remote, local);
    let remote = similar_cli(&["--server", &server.url], "-", &code);
    let hits = remote["results"].as_array().unwrap();
    assert!(
        !hits.is_empty() && hits.iter().all(|h| h["language"] == "python"),
        "{remote}"
    );

    // An unsaved buffer is searchable at once; so is a deletion.
    let buffer = "def frobnicate_quaternion_widget(q):\n    \"\"\"Rotate the widget.\"\"\"\n    return q * 2\n";
    let t = Instant::now();
    let up = c
        .update_files(pb::UpdateFilesRequest {
            repository: "poly".into(),
            changes: vec![pb::FileChange {
                path: "python/unsaved.py".into(),
                contents: Some(buffer.as_bytes().to_vec()),
                deleted: false,
            }],
            unsaved: false,
        })
        .await
        .unwrap()
        .into_inner();
    let found = c
        .search(pb::SearchRequest {
            mode: pb::Mode::Lexical as i32,
            ..search("frobnicate_quaternion_widget")
        })
        .await
        .unwrap()
        .into_inner();
    let visible_after = t.elapsed();
    assert_eq!(up.files[0].outcome, "indexed", "{up:?}");
    assert_eq!(up.embeddings_computed, 1);
    assert_eq!(found.hits[0].path, "python/unsaved.py");
    eprintln!(
        "update + search round trip: {visible_after:?} (server-side update {:.3}s)",
        up.seconds
    );
    assert!(
        !fs::exists(root.join("python/unsaved.py")).unwrap(),
        "the buffer is not written to disk"
    );
    // The same buffer again is unchanged; files the walk would skip are skipped.
    let again = c
        .update_files(pb::UpdateFilesRequest {
            repository: "poly".into(),
            changes: vec![
                pb::FileChange {
                    path: "python/unsaved.py".into(),
                    contents: Some(buffer.as_bytes().to_vec()),
                    deleted: false,
                },
                pb::FileChange {
                    path: "notes.txt".into(),
                    contents: Some(b"plain text".to_vec()),
                    deleted: false,
                },
                pb::FileChange {
                    path: ".git/hooks/x.py".into(),
                    contents: Some(b"def f(): pass\n".to_vec()),
                    deleted: false,
                },
            ],
            unsaved: false,
        })
        .await
        .unwrap()
        .into_inner();
    let outcomes: Vec<&str> = again.files.iter().map(|f| f.outcome.as_str()).collect();
    assert_eq!(outcomes, ["unchanged", "skipped", "skipped"], "{again:?}");
    // An edit on disk, read by the server.
    fs::write(
        root.join("python/text_utils.py"),
        code.replace("def levenshtein_distance(", "def edit_distance_renamed("),
    )
    .unwrap();
    let disk = c
        .update_files(pb::UpdateFilesRequest {
            repository: "poly".into(),
            changes: vec![
                pb::FileChange {
                    path: "python/text_utils.py".into(),
                    ..Default::default()
                },
                pb::FileChange {
                    path: "python/unsaved.py".into(),
                    deleted: true,
                    ..Default::default()
                },
            ],
            unsaved: false,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(disk.files[0].outcome, "indexed", "{disk:?}");
    assert_eq!(disk.files[1].outcome, "removed", "{disk:?}");
    let renamed = c
        .search(pb::SearchRequest {
            mode: pb::Mode::Lexical as i32,
            ..search("edit_distance_renamed")
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(renamed.hits[0].symbol, "edit_distance_renamed");
    let gone = c
        .search(pb::SearchRequest {
            mode: pb::Mode::Lexical as i32,
            ..search("frobnicate_quaternion_widget")
        })
        .await
        .unwrap()
        .into_inner();
    assert!(
        gone.hits.iter().all(|h| h.path != "python/unsaved.py"),
        "{gone:?}"
    );

    // List, get, stats, remove.
    let repos = c
        .list_repositories(pb::ListRepositoriesRequest {})
        .await
        .unwrap()
        .into_inner()
        .repositories;
    assert_eq!(repos.len(), 1);
    assert_eq!(
        repos[0].files, summary.files,
        "the counts follow the updates"
    );
    let one = c
        .get_repository(pb::GetRepositoryRequest {
            name: "poly".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(one.root, root.canonicalize().unwrap().to_string_lossy());
    let stats = c
        .get_stats(pb::GetStatsRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(stats.repositories, 1);
    assert!(stats.units >= 40 && stats.vectors >= 40, "{stats:?}");
    assert_eq!(stats.dim, 384);
    let removed = c
        .remove_repository(pb::RemoveRepositoryRequest {
            name: "poly".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(removed.name, "poly");
    assert!(
        c.list_repositories(pb::ListRepositoriesRequest {})
            .await
            .unwrap()
            .into_inner()
            .repositories
            .is_empty()
    );
    assert_eq!(
        code_of(c.get_repository(pb::GetRepositoryRequest {
            name: "poly".into()
        }))
        .await,
        Code::NotFound
    );
    // The index was prepared in the background once the server listened.
    assert!(
        server
            .log()
            .contains("index ready for searches and updates"),
        "{}",
        server.log()
    );
}

async fn list_services(channel: tonic::transport::Channel) -> Vec<String> {
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    let mut r = ServerReflectionClient::new(channel);
    let req = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut stream = r
        .server_reflection_info(tokio_stream::iter(vec![req]))
        .await
        .unwrap()
        .into_inner();
    let msg = stream.message().await.unwrap().unwrap();
    match msg.message_response.unwrap() {
        MessageResponse::ListServicesResponse(l) => l.service.into_iter().map(|s| s.name).collect(),
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_precise_codes() {
    let tmp = tempfile::tempdir().unwrap();
    let allowed = tmp.path().join("allowed");
    let root = allowed.join("polyglot");
    copy_dir(&fixture(), &root);
    let outside = tmp.path().join("outside");
    copy_dir(&fixture().join("python"), &outside);
    std::os::unix::fs::symlink(&outside, allowed.join("escape")).unwrap();
    let server = Server::start(
        &tmp.path().join("idx"),
        &[
            "--lexical-only",
            "--allow-root",
            allowed.to_str().unwrap(),
            "--max-message-bytes",
            "1000000",
            "--max-index-jobs",
            "1",
        ],
    );
    let mut c = server.client().await;
    index(&mut c, index_request(&root, "poly")).await;

    let cases: Vec<(pb::SearchRequest, Code)> = vec![
        (search(""), Code::InvalidArgument),
        (search("   "), Code::InvalidArgument),
        (
            pb::SearchRequest {
                top_k: 100_000,
                ..search("x")
            },
            Code::InvalidArgument,
        ),
        (
            pb::SearchRequest {
                mode: 9,
                ..search("x")
            },
            Code::InvalidArgument,
        ),
        (search(&"word ".repeat(5000)), Code::InvalidArgument),
        (
            pb::SearchRequest {
                filters: Some(pb::Filters {
                    repositories: vec!["nope".into()],
                    ..Default::default()
                }),
                ..search("x")
            },
            Code::NotFound,
        ),
        (
            pb::SearchRequest {
                filters: Some(pb::Filters {
                    languages: vec!["klingon".into()],
                    ..Default::default()
                }),
                ..search("x")
            },
            Code::InvalidArgument,
        ),
        // A lexical-only index has no vectors for semantic search.
        (
            pb::SearchRequest {
                mode: pb::Mode::Semantic as i32,
                ..search("x")
            },
            Code::FailedPrecondition,
        ),
        (
            pb::SearchRequest {
                session: "s".repeat(129),
                ..search("x")
            },
            Code::InvalidArgument,
        ),
    ];
    for (req, want) in cases {
        let got = code_of(c.search(req.clone())).await;
        assert_eq!(got, want, "{req:?}");
    }
    // Searches as you type, one session: each completed search answers (a search is cancelled
    // only by the next one arriving while it runs); the session ends with its searches.
    for q in ["p", "pa", "par", "pars", "parse"] {
        let hits = c
            .search(pb::SearchRequest {
                session: "editor-1".into(),
                ..search(q)
            })
            .await
            .expect("a search in a session")
            .into_inner()
            .hits;
        if q == "parse" {
            assert!(!hits.is_empty());
        }
    }
    let similar = pb::SimilarRequest {
        target: Some(pb::similar_request::Target::Snippet(pb::CodeSnippet {
            code: "def f(): pass".into(),
            language: "python".into(),
        })),
        ..Default::default()
    };
    assert_eq!(
        code_of(c.search_similar(similar)).await,
        Code::FailedPrecondition
    );
    assert_eq!(
        code_of(c.search_similar(pb::SimilarRequest::default())).await,
        Code::InvalidArgument
    );

    // Roots.
    let s = |p: &Path| p.to_string_lossy().into_owned();
    let root_cases = [
        (String::new(), Code::InvalidArgument),
        ("relative/path".to_string(), Code::InvalidArgument),
        (format!("{}/../outside", s(&allowed)), Code::InvalidArgument),
        (s(&outside), Code::PermissionDenied),
        (s(&allowed.join("escape")), Code::PermissionDenied),
        (s(&allowed.join("missing")), Code::NotFound),
        (s(&tmp.path().join("missing")), Code::PermissionDenied),
        (s(&root.join("python/text_utils.py")), Code::InvalidArgument),
    ];
    let huge = pb::IndexRepositoryRequest {
        max_file_size: u64::MAX,
        ..index_request(&root, "poly")
    };
    assert_eq!(
        code_of(c.index_repository(huge)).await,
        Code::InvalidArgument
    );
    for (r, want) in root_cases {
        let req = pb::IndexRepositoryRequest {
            root: r.clone(),
            ..Default::default()
        };
        assert_eq!(code_of(c.index_repository(req)).await, want, "{r:?}");
    }

    // Files.
    for (path, want) in [
        ("../etc/passwd", Code::InvalidArgument),
        ("/etc/passwd", Code::InvalidArgument),
    ] {
        let req = pb::UpdateFilesRequest {
            repository: "poly".into(),
            changes: vec![pb::FileChange {
                path: path.into(),
                ..Default::default()
            }],
            unsaved: false,
        };
        assert_eq!(code_of(c.update_files(req)).await, want, "{path}");
    }
    let unknown = pb::UpdateFilesRequest {
        repository: "nope".into(),
        changes: vec![pb::FileChange {
            path: "a.py".into(),
            ..Default::default()
        }],
        unsaved: false,
    };
    assert_eq!(code_of(c.update_files(unknown)).await, Code::NotFound);
    // A symlink inside the repository is never followed.
    std::os::unix::fs::symlink(outside.join("text_utils.py"), root.join("link.py")).unwrap();
    let link = c
        .update_files(pb::UpdateFilesRequest {
            repository: "poly".into(),
            changes: vec![pb::FileChange {
                path: "link.py".into(),
                ..Default::default()
            }],
            unsaved: false,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(link.files[0].outcome, "skipped");
    assert_eq!(link.files[0].reason, "symbolic link");

    // An oversize message is refused, and the server stays up.
    let big = pb::UpdateFilesRequest {
        repository: "poly".into(),
        changes: vec![pb::FileChange {
            path: "big.py".into(),
            contents: Some(vec![b'#'; 2_000_000]),
            deleted: false,
        }],
        unsaved: false,
    };
    let code = code_of(c.update_files(big)).await;
    assert_eq!(
        code,
        Code::OutOfRange,
        "tonic's code for a message over the limit"
    );
    assert!(c.search(search("levenshtein")).await.is_ok());

    // Index jobs beyond the limit are refused at once.
    big_repo(&allowed.join("big"), 3000);
    let mut first = c
        .index_repository(index_request(&allowed.join("big"), "big"))
        .await
        .unwrap()
        .into_inner();
    let _ = first.message().await.unwrap();
    let second = code_of(c.index_repository(index_request(&root, "poly"))).await;
    assert_eq!(second, Code::ResourceExhausted);
    drop(first);
    let log = server.log();
    assert!(log.contains("index job"), "{log}");
    // A log that goes to a file is plain text: no terminal colours.
    assert!(!log.contains('\u{1b}'), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_and_tokens() {
    let tmp = tempfile::tempdir().unwrap();
    let (ca_file, _, cert, key) = certificates(tmp.path(), "server");
    let tokens = tmp.path().join("tokens");
    let token = "s3cret-token-0123456789abcdef";
    fs::write(&tokens, format!("# clients\n{token}\n")).unwrap();
    let root = tmp.path().join("polyglot");
    copy_dir(&fixture(), &root);
    let server = Server::start(
        &tmp.path().join("idx"),
        &[
            "--lexical-only",
            "--allow-root",
            tmp.path().to_str().unwrap(),
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
            "--auth-token-file",
            tokens.to_str().unwrap(),
        ],
    );
    assert!(server.url.starts_with("https://"), "{}", server.url);
    let url = server.url.replace("127.0.0.1", "localhost");
    let tls = |token: Option<&str>| ClientOptions {
        tls_ca: Some(ca_file.clone()),
        token: token.map(str::to_string),
        ..Default::default()
    };
    // No token, a wrong token: UNAUTHENTICATED. Health stays open.
    let mut anon = client::connect(&url, &tls(None)).await.unwrap();
    assert_eq!(
        code_of(anon.search(search("x"))).await,
        Code::Unauthenticated
    );
    let mut wrong = client::connect(&url, &tls(Some("not-the-token-at-all")))
        .await
        .unwrap();
    assert_eq!(
        code_of(wrong.list_repositories(pb::ListRepositoriesRequest {})).await,
        Code::Unauthenticated
    );
    let channel = client::channel(&url, &tls(None)).await.unwrap();
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    assert!(
        health
            .check(tonic_health::pb::HealthCheckRequest::default())
            .await
            .is_ok()
    );
    // Plain text to a TLS server fails.
    let plain = format!("http://{}", server.addr());
    let plain_ok = match client::connect(&plain, &ClientOptions::default()).await {
        Ok(mut c) => c.search(search("x")).await.is_ok(),
        Err(_) => false,
    };
    assert!(!plain_ok);
    // The right token over TLS.
    let mut ok = client::connect(&url, &tls(Some(token))).await.unwrap();
    index(&mut ok, index_request(&root, "poly")).await;
    let r = ok
        .search(search("levenshtein distance"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.hits[0].symbol, "levenshtein_distance");

    // The command-line client, same flags.
    let out = Command::new(BIN)
        .args(["search", "levenshtein distance", "--json", "--server", &url])
        .args([
            "--tls-ca",
            ca_file.to_str().unwrap(),
            "--token-file",
            tokens.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["results"][0]["symbol"], "levenshtein_distance");
    let out = Command::new(BIN)
        .args([
            "search",
            "levenshtein",
            "--server",
            &url,
            "--tls-ca",
            ca_file.to_str().unwrap(),
        ])
        .env_remove("GNN_CODER_TOKEN")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("Unauthenticated") && err.contains("--token-file"),
        "{err}"
    );

    // Refused at start: reachable from other machines without tokens.
    let out = Command::new(BIN)
        .args(["serve", "--index"])
        .arg(tmp.path().join("idx2"))
        .args(["--lexical-only", "--listen", "0.0.0.0:0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--auth-token-file"), "{err}");
    // It never started, and says so.
    assert!(
        err.contains("did not start") && !err.contains("stopped"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn searches_run_during_indexing_and_cancel_stops_the_job() {
    let tmp = tempfile::tempdir().unwrap();
    let small = tmp.path().join("polyglot");
    copy_dir(&fixture(), &small);
    let big = tmp.path().join("big");
    big_repo(&big, 6000);
    let server = Server::start(
        &tmp.path().join("idx"),
        &[
            "--lexical-only",
            "--allow-root",
            tmp.path().to_str().unwrap(),
            "--metrics-listen",
            "127.0.0.1:0",
        ],
    );
    let mut c = server.client().await;
    index(&mut c, index_request(&small, "poly")).await;

    let mut req = index_request(&big, "big");
    req.commit_every = 200;
    let mut stream = c.index_repository(req.clone()).await.unwrap().into_inner();
    let mut committed = 0;
    while committed == 0 {
        match stream.message().await.unwrap().unwrap().event.unwrap() {
            Event::Committed(x) => committed = x.files,
            Event::Summary(s) => panic!("finished before the test could look: {s:?}"),
            _ => {}
        }
    }
    // Searches of another repository answer while the job runs; a search of the repository
    // being indexed sees what is committed.
    for _ in 0..5 {
        let t = Instant::now();
        let r = c
            .search(pb::SearchRequest {
                filters: Some(pb::Filters {
                    repositories: vec!["poly".into()],
                    ..Default::default()
                }),
                ..search("levenshtein distance")
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(r.hits[0].symbol, "levenshtein_distance");
        assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    }
    let partial = c
        .search(pb::SearchRequest {
            filters: Some(pb::Filters {
                repositories: vec!["big".into()],
                ..Default::default()
            }),
            ..search("handler request")
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!partial.hits.is_empty());
    // A second job on the same repository is refused while the first runs.
    assert_eq!(
        code_of(c.index_repository(req.clone())).await,
        Code::Aborted
    );

    // The client hangs up: the server stops the job at its last commit.
    drop(stream);
    let t = Instant::now();
    loop {
        let running = match c.index_repository(req.clone()).await {
            Err(s) if s.code() == Code::Aborted => true,
            Err(s) => panic!("{s:?}"),
            Ok(s) => {
                drop(s);
                false
            }
        };
        if !running {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "the job went on after the hang-up"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let info = c
        .get_repository(pb::GetRepositoryRequest { name: "big".into() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        info.indexed_unix, 0,
        "the interrupted run never completed: {info:?}"
    );

    // Metrics count the calls.
    let log = server.log();
    let metrics_addr = log
        .lines()
        .find_map(|l| l.split("metrics on http://").nth(1))
        .and_then(|r| r.split('/').next())
        .unwrap_or_else(|| panic!("no metrics address in the log:\n{log}"))
        .to_string();
    let text = http_get(&metrics_addr, "/metrics");
    assert!(
        text.contains("gnn_coder_requests_total{method=\"Search\",code=\"OK\"}"),
        "{text}"
    );
    assert!(
        text.contains("gnn_coder_requests_total{method=\"IndexRepository\",code=\"ABORTED\"}"),
        "{text}"
    );
    assert!(
        text.contains("gnn_coder_request_duration_seconds_bucket{method=\"Search\""),
        "{text}"
    );
    assert!(text.contains("gnn_coder_index_units "), "{text}");
    assert!(http_get(&metrics_addr, "/other").is_empty());
}

fn http_get(addr: &str, path: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    if !out.starts_with("HTTP/1.1 200") {
        return String::new();
    }
    out.split("\r\n\r\n").nth(1).unwrap_or("").to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_indexing_keeps_what_was_committed() {
    let tmp = tempfile::tempdir().unwrap();
    let big = tmp.path().join("big");
    big_repo(&big, 6000);
    let index_dir = tmp.path().join("idx");
    let args = [
        "--lexical-only",
        "--allow-root",
        tmp.path().to_str().unwrap(),
    ];
    let mut server = Server::start(&index_dir, &args);
    let mut c = server.client().await;
    let mut req = index_request(&big, "big");
    req.commit_every = 200;
    let mut stream = c.index_repository(req.clone()).await.unwrap().into_inner();
    let mut committed = 0;
    while committed == 0 {
        match stream.message().await.unwrap().unwrap().event.unwrap() {
            Event::Committed(x) => committed = x.files,
            Event::Summary(s) => panic!("finished too soon: {s:?}"),
            _ => {}
        }
    }
    let status = server.terminate();
    assert!(status.success(), "exit {status:?}\n{}", server.log());
    // The stream ends with UNAVAILABLE, not a summary.
    let mut end = None;
    loop {
        match stream.message().await {
            Ok(Some(pb::IndexEvent {
                event: Some(Event::Summary(s)),
            })) => {
                panic!("the run finished despite SIGTERM: {s:?}")
            }
            Ok(Some(_)) => {}
            Ok(None) => break,
            Err(s) => {
                end = Some(s.code());
                break;
            }
        }
    }
    assert!(
        matches!(
            end,
            Some(Code::Unavailable) | Some(Code::Cancelled) | Some(Code::Unknown) | None
        ),
        "{end:?}"
    );
    assert!(server.log().contains("shutting down"), "{}", server.log());

    // Restart: everything committed is there, and the next run completes the repository.
    let server = Server::start(&index_dir, &args);
    let mut c = server.client().await;
    let stats = c
        .get_stats(pb::GetStatsRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(stats.files >= committed, "{stats:?} < {committed}");
    let (_, summary) = index(&mut c, req).await;
    assert_eq!(summary.files, 6000);
    assert!(summary.files_unchanged >= committed, "{summary:?}");
    assert_eq!(summary.units, 6000 * 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn command_line_client_matches_local_commands_and_jobs() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("polyglot");
    copy_dir(&fixture(), &root);
    let other = tmp.path().join("other");
    copy_dir(&fixture().join("rust"), &other);
    let index_dir = tmp.path().join("idx");
    let server = Server::start(
        &index_dir,
        &[
            "--lexical-only",
            "--allow-root",
            tmp.path().to_str().unwrap(),
            "--watch",
        ],
    );
    let run = |args: &[&str]| {
        let out = Command::new(BIN).args(args).output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, out, err) = run(&[
        "index",
        root.to_str().unwrap(),
        "--server",
        &server.url,
        "--name",
        "poly",
        "--json",
    ]);
    assert!(ok, "{err}");
    let summary: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(summary["repository"], "poly");
    assert!(summary["units"].as_u64().unwrap() >= 40);
    let (ok, _, err) = run(&[
        "index",
        root.to_str().unwrap(),
        "--server",
        &server.url,
        "--name",
        "poly",
    ]);
    assert!(
        ok && err.contains(": 0 added, 0 changed, 0 removed, "),
        "{err}"
    );

    // The batch contract, through the server and locally, gives the same lines.
    let queries = tmp.path().join("q.jsonl");
    fs::write(
        &queries,
        "{\"id\": 1, \"query\": \"levenshtein distance\"}\n{\"id\": \"b\", \"query\": \"parse an ini file\"}\n",
    )
    .unwrap();
    let (ok, remote, err) = run(&[
        "search",
        "--queries",
        queries.to_str().unwrap(),
        "--json",
        "--top-k",
        "10",
        "--server",
        &server.url,
    ]);
    assert!(ok, "{err}");
    let (ok, local, err) = run(&[
        "search",
        "--queries",
        queries.to_str().unwrap(),
        "--json",
        "--top-k",
        "10",
        "--index",
        index_dir.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    assert_eq!(remote, local);
    assert_eq!(remote.lines().count(), 2);
    let (ok, human, _) = run(&["search", "levenshtein distance", "--server", &server.url]);
    assert!(
        ok && human.contains("levenshtein_distance") && human.contains("def levenshtein_distance("),
        "{human}"
    );

    // Jobs through the server: a bad root fails alone; a rerun finds nothing changed.
    let jobs = tmp.path().join("jobs.jsonl");
    fs::write(
        &jobs,
        format!(
            "{{\"name\": \"poly\", \"root\": \"{}\"}}\n{{\"name\": \"other\", \"root\": \"{}\"}}\n{{\"name\": \"gone\", \"root\": \"{}\"}}\n",
            root.display(),
            other.display(),
            tmp.path().join("missing").display()
        ),
    )
    .unwrap();
    let report = tmp.path().join("report.json");
    let (ok, _, err) = run(&[
        "jobs",
        jobs.to_str().unwrap(),
        "--server",
        &server.url,
        "--report",
        report.to_str().unwrap(),
    ]);
    assert!(!ok, "a failed job fails the run: {err}");
    let r: serde_json::Value = serde_json::from_str(&fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(r["failed"], 1, "{r}");
    assert_eq!(r["jobs"][0]["status"], "unchanged", "{r}");
    assert_eq!(r["jobs"][1]["status"], "indexed", "{r}");
    assert_eq!(r["jobs"][2]["status"], "failed", "{r}");
    assert!(
        r["jobs"][2]["error"].as_str().unwrap().contains("NotFound"),
        "{r}"
    );
    fs::write(
        &jobs,
        format!(
            "{{\"name\": \"poly\", \"root\": \"{}\"}}\n{{\"name\": \"other\", \"root\": \"{}\"}}\n",
            root.display(),
            other.display()
        ),
    )
    .unwrap();
    let (ok, out, err) = run(&["jobs", jobs.to_str().unwrap(), "--server", &server.url]);
    assert!(ok, "{err}");
    let r: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (r["unchanged"].as_u64(), r["failed"].as_u64()),
        (Some(2), Some(0)),
        "{r}"
    );

    // repos, info and remove work through the server with the same code as locally.
    let (ok, remote, err) = run(&["repos", "--json", "--server", &server.url]);
    assert!(ok, "{err}");
    let (ok, local, err) = run(&["repos", "--json", "--index", index_dir.to_str().unwrap()]);
    assert!(ok, "{err}");
    assert_eq!(remote, local);
    assert_eq!(remote.lines().count(), 2, "{remote}");
    let (ok, info, err) = run(&["info", "--server", &server.url]);
    assert!(ok, "{err}");
    assert!(
        info.contains("repos:      2") && info.contains("vectors:    none (lexical-only)"),
        "{info}"
    );
    let (ok, _, err) = run(&["remove", "other", "--server", &server.url]);
    assert!(ok && err.contains("removed other"), "{err}");
    let (ok, after, _) = run(&["repos", "--json", "--server", &server.url]);
    assert!(
        ok && after.lines().count() == 1 && !after.contains("\"other\""),
        "{after}"
    );
    let (ok, _, err) = run(&["remove", "other", "--server", &server.url]);
    assert!(!ok && err.contains("NotFound"), "{err}");

    // --watch: a file written to disk becomes searchable without a request.
    fs::write(
        root.join("python/watched.py"),
        "def zebra_striped_watcher_probe():\n    return 42\n",
    )
    .unwrap();
    let mut c = server.client().await;
    let t = Instant::now();
    loop {
        let r = c
            .search(pb::SearchRequest {
                mode: pb::Mode::Lexical as i32,
                ..search("zebra_striped_watcher_probe")
            })
            .await
            .unwrap()
            .into_inner();
        if r.hits
            .first()
            .is_some_and(|h| h.path == "python/watched.py")
        {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "not picked up:\n{}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    fs::remove_file(root.join("python/watched.py")).unwrap();
    let t = Instant::now();
    loop {
        let r = c
            .search(pb::SearchRequest {
                mode: pb::Mode::Lexical as i32,
                ..search("zebra_striped_watcher_probe")
            })
            .await
            .unwrap()
            .into_inner();
        if r.hits.iter().all(|h| h.path != "python/watched.py") {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "deletion not picked up:\n{}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[test]
fn jobs_locally() {
    let tmp = tempfile::tempdir().unwrap();
    let a = tmp.path().join("a");
    copy_dir(&fixture().join("python"), &a);
    let b = tmp.path().join("b");
    copy_dir(&fixture().join("go"), &b);
    let jobs = tmp.path().join("jobs.jsonl");
    fs::write(
        &jobs,
        format!(
            "{{\"name\": \"a\", \"root\": \"{}\"}}\n\n{{\"root\": \"{}\"}}\n",
            a.display(),
            b.display()
        ),
    )
    .unwrap();
    let idx = tmp.path().join("idx");
    let run = || {
        let out = Command::new(BIN)
            .args([
                "jobs",
                jobs.to_str().unwrap(),
                "--index",
                idx.to_str().unwrap(),
                "--lexical-only",
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    let first = run();
    assert_eq!(first["indexed"], 2, "{first}");
    assert_eq!(first["jobs"][1]["name"], "b");
    let again = run();
    assert_eq!(again["unchanged"], 2, "{again}");
    // A malformed line fails before any work.
    fs::write(&jobs, "{\"name\": \"x\"}\n").unwrap();
    let out = Command::new(BIN)
        .args([
            "jobs",
            jobs.to_str().unwrap(),
            "--index",
            idx.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("jobs.jsonl:1"));
}

#[test]
fn python_grpcio_reflection_client() {
    let have = Command::new("python3")
        .args(["-c", "import grpc, grpc_reflection, grpc_health"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        have,
        "the outside client needs Python's grpcio: pip install -r tests/e2e/python/requirements.txt"
    );
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("polyglot");
    copy_dir(&fixture(), &root);
    let tokens = tmp.path().join("tokens");
    let token = "python-client-token-0123456789";
    fs::write(&tokens, format!("{token}\n")).unwrap();
    let server = Server::start(
        &tmp.path().join("idx"),
        &[
            "--lexical-only",
            "--allow-root",
            tmp.path().to_str().unwrap(),
            "--auth-token-file",
            tokens.to_str().unwrap(),
        ],
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut c = server
            .client_with(ClientOptions {
                token: Some(token.into()),
                ..Default::default()
            })
            .await;
        index(&mut c, index_request(&root, "poly")).await;
    });
    let script =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/e2e/python/reflection_client.py");
    let out = Command::new("python3")
        .arg(&script)
        .args([&server.addr(), "levenshtein distance", "--token", token])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        server.log()
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let services: Vec<&str> = v["services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    assert!(services.contains(&"gnn_coder.v1.CodeSearch"), "{v}");
    assert!(services.contains(&"grpc.health.v1.Health"), "{v}");
    assert!(
        v["methods"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m == "UpdateFiles"),
        "{v}"
    );
    assert_eq!(v["health"], "SERVING");
    assert_eq!(v["repositories"][0]["name"], "poly");
    assert_eq!(v["hits"][0]["symbol"], "levenshtein_distance", "{v}");
    assert_eq!(v["empty_query"], "INVALID_ARGUMENT");
    // Without the token, reflection is refused too.
    let out = Command::new("python3")
        .arg(&script)
        .args([&server.addr(), "x"])
        .output()
        .unwrap();
    assert!(!out.status.success());
}

/// The engine checks a request once, so a bad input gets the same message through the library,
/// the gRPC service, the local command line and the command line through `--server`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_validator_one_message_in_every_front_end() {
    use gnn_coder_engine::{Engine, EngineOptions, KindFilter, RequestLimits, SearchRequest};

    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("polyglot");
    copy_dir(&fixture(), &root);
    let index_dir = tmp.path().join("idx");
    let server = Server::start(
        &index_dir,
        &[
            "--lexical-only",
            "--allow-root",
            tmp.path().to_str().unwrap(),
            "--max-top-k",
            "50",
            "--max-query-bytes",
            "200",
        ],
    );
    let mut c = server.client().await;
    index(&mut c, index_request(&root, "poly")).await;
    // The library, with the limits the server was given.
    let engine = Engine::open(
        &index_dir,
        EngineOptions {
            lexical_only: true,
            limits: RequestLimits {
                max_query_bytes: 200,
                max_top_k: 50,
            },
            ..EngineOptions::default()
        },
    )
    .unwrap();
    let cli = |args: &[&str]| {
        let out = Command::new(BIN).args(args).output().unwrap();
        assert!(!out.status.success(), "{args:?} succeeded");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };

    struct Case {
        /// What the library is asked.
        req: SearchRequest,
        /// The same request as command-line flags (`None`: a limit only the server has).
        flags: Option<Vec<String>>,
        /// Part of the message every front end must show.
        message: &'static str,
    }
    let base = |q: &str| {
        let mut r = SearchRequest::new(q, 10);
        r.dense_weight = None;
        r
    };
    let flags = |v: &[&str]| Some(v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
    let long = "word ".repeat(50);
    let cases = vec![
        Case {
            req: base("   "),
            flags: flags(&["   "]),
            message: "the query is empty",
        },
        Case {
            req: SearchRequest {
                languages: vec!["cobol".into()],
                ..base("sort")
            },
            flags: flags(&["sort", "--lang", "cobol"]),
            message: "unknown language \"cobol\"",
        },
        Case {
            req: SearchRequest {
                path_globs: vec!["src/[".into()],
                ..base("sort")
            },
            flags: flags(&["sort", "--path", "src/["]),
            message: "invalid path glob \"src/[\"",
        },
        Case {
            req: SearchRequest {
                repositories: vec!["nope".into()],
                ..base("sort")
            },
            flags: flags(&["sort", "--repo", "nope"]),
            message: "no repository named \"nope\" in the index",
        },
        Case {
            req: SearchRequest {
                dense_weight: Some(2.0),
                ..base("sort")
            },
            flags: flags(&["sort", "--dense-weight", "2"]),
            message: "the dense weight must be between 0 and 1",
        },
        Case {
            req: SearchRequest {
                mode: Some(gnn_coder_engine::Mode::Semantic),
                ..base("sort")
            },
            flags: flags(&["sort", "--mode", "semantic"]),
            message: "holds no vectors",
        },
        Case {
            req: SearchRequest {
                rerank: Some(101),
                ..base("sort")
            },
            flags: flags(&["sort", "--rerank", "101"]),
            message: "the rerank depth must be between 1 and 100",
        },
        Case {
            req: SearchRequest::new("sort", 60),
            flags: None,
            message: "top_k 60 is out of range; the limit is 1 to 50",
        },
        Case {
            req: base(&long),
            flags: None,
            message: "the query is 250 bytes long; the limit is 200",
        },
    ];
    for case in cases {
        let lib = engine.search(&case.req).unwrap_err().to_string();
        assert!(lib.contains(case.message), "library: {lib}");
        let mut wire = gnn_coder_service::convert::search_request_to_wire(&case.req, 3);
        wire.dense_weight = case.req.dense_weight;
        let status = c.search(wire).await.unwrap_err();
        assert_eq!(status.message(), lib, "gRPC and library differ");
        if let Some(flags) = case.flags {
            let args: Vec<&str> = flags.iter().map(String::as_str).collect();
            let idx = index_dir.to_str().unwrap();
            let local = cli(&[&["search", "--index", idx][..], &args].concat());
            assert!(local.contains(&lib), "local CLI: {local}\nlibrary: {lib}");
            let remote = cli(&[&["search", "--server", &server.url][..], &args].concat());
            assert!(
                remote.contains(&lib),
                "CLI --server: {remote}\nlibrary: {lib}"
            );
        }
    }
    // Kind words are parsed by one parser for the command line and the wire.
    let parsed = KindFilter::parse(&["widget"], KindFilter::Callables).unwrap_err();
    let local = cli(&[
        "search",
        "--index",
        index_dir.to_str().unwrap(),
        "--kind",
        "widget",
        "sort",
    ]);
    assert!(local.contains(&parsed.to_string()), "{local}");
    let status = c
        .search(pb::SearchRequest {
            filters: Some(pb::Filters {
                kinds: vec!["widget".into()],
                ..Default::default()
            }),
            ..search("sort")
        })
        .await
        .unwrap_err();
    assert_eq!(status.message(), parsed.to_string());
}

/// Unsaved buffers (`UpdateFiles` with `unsaved`): searchable at once, an edit hiding what it
/// removed and a deleted file hiding its units; written about a second after the last buffer
/// update, and at shutdown, so an index opened afterwards holds them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsaved_buffers_are_searched_at_once_and_written_later() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("polyglot");
    copy_dir(&fixture(), &root);
    let index_dir = tmp.path().join("idx");
    let lexical = |q: &str| pb::SearchRequest {
        mode: pb::Mode::Lexical as i32,
        ..search(q)
    };
    let names =
        |r: &pb::SearchResponse| r.hits.iter().map(|h| h.symbol.clone()).collect::<Vec<_>>();
    // The symbols and paths a search of the index on disk finds (no server).
    let local = |q: &str| -> String {
        let out = Command::new(BIN)
            .args(["search", q, "--index", index_dir.to_str().unwrap()])
            .args(["--mode", "lexical", "--json"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        v["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| format!("{} {}\n", h["symbol"], h["path"]))
            .collect()
    };
    let code = fs::read_to_string(root.join("python/text_utils.py")).unwrap();
    let edited = code.replace("def levenshtein_distance(", "def overlay_renamed_distance(");

    for written_by in ["shutdown", "quiet second"] {
        let mut server = Server::lexical(tmp.path());
        let mut c = server.client().await;
        if written_by == "shutdown" {
            index(&mut c, index_request(&root, "poly")).await;
        }
        let name = format!("buffer_fn_{}", written_by.len());
        let text = format!("{edited}\n\ndef {name}(x):\n    return x\n");
        let up = c
            .update_files(pb::UpdateFilesRequest {
                repository: "poly".into(),
                changes: vec![
                    pb::FileChange {
                        path: "python/text_utils.py".into(),
                        contents: Some(text.into_bytes()),
                        deleted: false,
                    },
                    pb::FileChange {
                        path: "go/retry/retry.go".into(),
                        deleted: true,
                        ..Default::default()
                    },
                ],
                unsaved: true,
            })
            .await
            .unwrap()
            .into_inner();
        let outcomes: Vec<&str> = up.files.iter().map(|f| f.outcome.as_str()).collect();
        assert_eq!(outcomes, ["indexed", "removed"], "{up:?}");
        // Visible at once, and what the buffers removed is gone.
        let found = c.search(lexical(&name)).await.unwrap().into_inner();
        assert_eq!(names(&found)[0], name, "{found:?}");
        assert_eq!(found.hits[0].path, "python/text_utils.py");
        let renamed = c
            .search(lexical("overlay_renamed_distance"))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(names(&renamed)[0], "overlay_renamed_distance");
        let old = c
            .search(lexical("levenshtein_distance"))
            .await
            .unwrap()
            .into_inner();
        assert!(
            !names(&old).contains(&"levenshtein_distance".to_string()),
            "{old:?}"
        );
        let deleted = c
            .search(lexical("RetryWithBackoff"))
            .await
            .unwrap()
            .into_inner();
        assert!(
            !names(&deleted)
                .iter()
                .any(|n| n.contains("RetryWithBackoff")),
            "{deleted:?}"
        );
        // Nothing touched the files on disk.
        assert_eq!(
            fs::read_to_string(root.join("python/text_utils.py")).unwrap(),
            code
        );
        assert!(root.join("go/retry/retry.go").exists());

        if written_by == "shutdown" {
            assert!(server.terminate().success(), "{}", server.log());
        } else {
            tokio::time::sleep(Duration::from_millis(2500)).await;
            drop(server); // SIGKILL: only what was written survives
        }
        let after = local(&name);
        assert!(
            after.contains(&name),
            "written at the {written_by}: {after}"
        );
        assert!(!local("RetryWithBackoff").contains("retry.go"));
    }
}
