//! End-to-end tests of `gnn-coder mcp` with a client no one here wrote: the official Python MCP
//! SDK (`tests/e2e/python/mcp_client.py`, installed from PyPI by `.ci/run`), over stdio on a
//! local index, over stdio on a running `gnn-coder serve`, and over streamable HTTP behind a
//! bearer token; and raw malformed JSON-RPC on stdio.

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

mod support;
use support::*;

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/e2e/python/mcp_client.py")
}

fn python_has_mcp() {
    let have = Command::new("python3")
        .args(["-c", "import mcp.client.stdio, mcp.client.streamable_http"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        have,
        "the outside MCP client needs Python's mcp: pip install -r tests/e2e/python/requirements.txt"
    );
}

/// The fixture copied to a fresh directory (the client adds a file to it).
fn repo(tmp: &Path) -> PathBuf {
    let root = tmp.join("polyglot");
    copy_dir(&fixture(), &root);
    root
}

/// Runs the Python client; its JSON report.
fn client(args: &[&str]) -> Value {
    let out = Command::new("python3")
        .arg(script())
        .args(args)
        .output()
        .expect("python3 runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "the MCP client failed:\n{stderr}");
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
}

fn s(v: &Value, k: &str) -> String {
    v[k].as_str().unwrap_or_default().to_string()
}

/// What every transport must have answered.
fn check(v: &Value, semantic: bool) {
    let tools: Vec<&str> = v["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    for t in [
        "search_code",
        "find_similar",
        "index_repository",
        "refresh",
        "index_status",
    ] {
        assert!(tools.contains(&t), "{tools:?}");
    }
    assert!(s(v, "indexed").contains("as polyglot"), "{v}");
    let search = s(v, "search");
    if semantic {
        assert!(
            search.starts_with("1. python/text_utils.py:")
                && search.contains("levenshtein_distance"),
            "{search}"
        );
    }
    assert!(search.contains("    def "), "snippets: {search}");
    let (p1, p2) = (s(v, "page1"), s(v, "page2"));
    assert!(p1.starts_with("1. ") && p1.contains("cursor \"1\""), "{p1}");
    assert!(p2.starts_with("2. ") && p1 != p2, "{p2}");
    let tiny = s(v, "tiny_budget");
    assert!(
        tiny.starts_with("1. ") && !tiny.contains("\n2. ") && tiny.contains("cursor"),
        "{tiny}"
    );
    let e = &v["errors"];
    assert!(s(e, "empty_query").contains("the query is empty"), "{e}");
    assert!(
        s(e, "unknown_repository").contains("no repository named \"nope\""),
        "{e}"
    );
    assert!(s(e, "bad_mode").contains("telepathic"), "{e}");
    assert!(s(e, "bad_limit").contains("out of range"), "{e}");
    assert!(s(e, "bad_cursor").contains("not a cursor"), "{e}");
    assert!(s(e, "outside_root").contains("outside the roots"), "{e}");
    assert!(!s(e, "missing_dir").is_empty(), "{e}");
    assert!(s(e, "similar_nothing").contains("path and line"), "{e}");
    assert!(
        s(e, "similar_no_unit").contains("no indexed unit contains"),
        "{e}"
    );
    assert!(
        s(e, "refresh_unknown").contains("no repository named"),
        "{e}"
    );
    let p = &v["protocol"];
    assert!(s(p, "unknown_tool").starts_with("json-rpc error"), "{p}");
    // Arguments of the wrong type: the SDK answers a tool error naming the type.
    assert!(s(p, "wrong_type").contains("invalid type"), "{p}");
    if semantic {
        for k in ["similar_unit", "similar_absolute"] {
            assert!(
                s(v, k).starts_with("similar to python/text_utils.py:"),
                "{k}: {v}"
            );
        }
        assert!(s(v, "similar_snippet").starts_with("1. "), "{v}");
    }
    assert!(s(v, "refresh").contains("1 added"), "{v}");
    assert!(
        s(v, "after_refresh").contains("zebra_quaternion_frobnicator"),
        "{v}"
    );
    let status = s(v, "status");
    assert!(status.contains("- polyglot: "), "{status}");
    if semantic {
        assert!(status.contains("gnn-coder-head(trained:"), "{status}");
    }
}

/// Exactly README's agent configuration (`"command": "gnn-coder", "args": ["mcp"]`, started in
/// the project): the index is made at `./.gnn-coder` and only the project may be indexed.
#[test]
fn python_client_over_stdio_on_a_local_index() {
    python_has_mcp();
    let tmp = tempfile::tempdir().unwrap();
    let root = repo(tmp.path());
    let v = client(&["stdio", root.to_str().unwrap(), BIN, "mcp"]);
    check(&v, true);
    assert!(v["progress"].as_u64().unwrap() >= 1, "progress: {v}");
    assert!(
        root.join(".gnn-coder").is_dir(),
        "the index is made in the project"
    );
    assert!(s(&v, "status").contains(".gnn-coder"), "{v}");
}

#[test]
fn python_client_over_stdio_through_a_server() {
    python_has_mcp();
    let tmp = tempfile::tempdir().unwrap();
    let root = repo(tmp.path());
    let server = Server::start(
        &tmp.path().join("idx"),
        &["--allow-root", tmp.path().to_str().unwrap()],
    );
    let v = client(&[
        "stdio",
        root.to_str().unwrap(),
        BIN,
        "mcp",
        "--server",
        &server.url,
    ]);
    check(&v, true);
}

#[test]
fn python_client_over_http_with_a_token() {
    python_has_mcp();
    let tmp = tempfile::tempdir().unwrap();
    let root = repo(tmp.path());
    let tokens = tmp.path().join("tokens");
    let token = "mcp-http-token-0123456789abcdef";
    fs::write(&tokens, format!("{token}\n")).unwrap();
    let mut child = Command::new(BIN)
        .args(["mcp", "--listen", "127.0.0.1:0", "--auth-token-file"])
        .arg(&tokens)
        .arg("--index")
        .arg(tmp.path().join("idx"))
        .arg("--allow-root")
        .arg(&root)
        .current_dir(&root)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    let url = first
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("first line: {first:?}"))
        .to_string();
    // Without the token: 401, nothing served.
    let addr = url
        .trim_start_matches("http://")
        .trim_end_matches("/mcp")
        .to_string();
    let mut tcp = std::net::TcpStream::connect(&addr).unwrap();
    let body = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}"#;
    write!(
        tcp,
        "POST /mcp HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut answer = String::new();
    tcp.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");

    let v = client(&["http", root.to_str().unwrap(), &url, token]);
    check(&v, true);
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn a_non_loopback_listener_needs_tokens() {
    let out = Command::new(BIN)
        .args(["mcp", "--listen", "0.0.0.0:0"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("--auth-token-file"),
        "{err}"
    );
}

/// Malformed JSON-RPC on stdio gets a JSON-RPC error (text that is not JSON is dropped), and
/// the session goes on.
#[test]
fn malformed_messages_do_not_end_the_session() {
    let tmp = tempfile::tempdir().unwrap();
    let mut child = Command::new(BIN)
        .args(["mcp", "--index"])
        .arg(tmp.path().join("idx"))
        .current_dir(tmp.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut send = |line: &str| {
        stdin.write_all(line.as_bytes()).unwrap();
        stdin.write_all(b"\n").unwrap();
        stdin.flush().unwrap();
    };
    // Every line the server wrote until the answer with `id`.
    let wait_for = |id: i64, rx: &std::sync::mpsc::Receiver<String>| -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut seen = Vec::new();
        while let Ok(line) = rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            let v: Value = serde_json::from_str(&line)
                .unwrap_or_else(|e| panic!("stdout carries JSON-RPC only ({e}): {line}"));
            let done = v["id"] == id;
            seen.push(v);
            if done {
                return seen;
            }
        }
        panic!("no answer with id {id}; saw {seen:?}");
    };
    let answer = |lines: Vec<Value>| lines.last().cloned().unwrap();
    send(
        r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}"#,
    );
    assert!(answer(wait_for(1, &rx))["result"]["serverInfo"]["name"] == "gnn-coder");
    send(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#);
    for garbage in [
        "{not json",
        "[]",
        "42",
        r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":"oops"}"#,
        r#"{"jsonrpc":"2.0","id":3,"method":"no/such/method"}"#,
        r#"{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"search_code","arguments":{"query":["x"]}}}"#,
    ] {
        send(garbage);
    }
    send(r#"{"jsonrpc":"2.0","id":5,"method":"tools/list"}"#);
    // Answers come as requests finish, not in order: read until 3, 4 and 5 are all answered.
    let mut lines = Vec::new();
    for id in [3, 4, 5] {
        if !lines.iter().any(|v: &Value| v["id"] == id) {
            lines.extend(wait_for(id, &rx));
        }
    }
    // What the SDK answers: a message that is not a request (`[]`, `42`, bad params) is an
    // "Invalid request" error (it has no id to answer), an unknown method an error with its
    // id, arguments of the wrong type an error with its id (a tool error); text that is not
    // JSON at all is dropped. Then the session goes on.
    let code = |v: &Value| v["error"]["code"].as_i64();
    let invalid = lines.iter().filter(|v| code(v) == Some(-32600)).count();
    assert!(invalid >= 3, "{lines:?}");
    let by_id = |id: i64| lines.iter().find(|v| v["id"] == id);
    assert_eq!(by_id(3).and_then(code), Some(-32601), "{lines:?}");
    let four = by_id(4).unwrap();
    assert!(
        code(four).is_some() || four["result"]["isError"] == true,
        "{four}"
    );
    let tools = by_id(5).unwrap().clone();
    assert!(
        tools["result"]["tools"].as_array().unwrap().len() >= 5,
        "{tools}"
    );
    // A bad request is a tool error with the engine's message, not a crash.
    send(
        r#"{"jsonrpc":"2.0","id":6,"method":"tools/call","params":{"name":"search_code","arguments":{"query":"  "}}}"#,
    );
    let v = answer(wait_for(6, &rx));
    assert_eq!(v["result"]["isError"], true, "{v}");
    assert!(v.to_string().contains("the query is empty"), "{v}");
    drop(stdin);
    let status = child.wait().unwrap();
    assert!(
        status.success(),
        "closing stdin ends the server cleanly: {status}"
    );
}
