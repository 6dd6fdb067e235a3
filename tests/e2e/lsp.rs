//! End-to-end tests of `gnn-coder lsp` at the protocol level: a client speaking framed
//! JSON-RPC over the server's stdin and stdout (as every editor does).

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

mod support;
use support::*;

struct Client {
    child: Child,
    stdin: Option<ChildStdin>,
    rx: Receiver<Value>,
    /// Messages read while waiting for something else.
    seen: Vec<Value>,
    next_id: i64,
}

fn uri(path: &Path) -> String {
    format!("file://{}", path.display())
}

impl Client {
    fn start(args: &[&str], cwd: &Path) -> Client {
        let mut child = Command::new(BIN)
            .arg("lsp")
            .args(args)
            .current_dir(cwd)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            let mut r = BufReader::new(stdout);
            loop {
                let mut len = 0usize;
                loop {
                    let mut line = String::new();
                    if r.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    let line = line.trim_end();
                    if line.is_empty() {
                        break;
                    }
                    if let Some(v) = line.strip_prefix("Content-Length: ") {
                        len = v.parse().unwrap();
                    }
                }
                let mut body = vec![0; len];
                if r.read_exact(&mut body).is_err() {
                    return;
                }
                if tx.send(serde_json::from_slice(&body).unwrap()).is_err() {
                    return;
                }
            }
        });
        Client {
            stdin: child.stdin.take(),
            child,
            rx,
            seen: Vec::new(),
            next_id: 1,
        }
    }

    fn raw(&mut self, bytes: &[u8]) {
        let stdin = self.stdin.as_mut().unwrap();
        stdin.write_all(bytes).unwrap();
        stdin.flush().unwrap();
    }

    fn send(&mut self, message: Value) {
        let body = message.to_string();
        self.raw(format!("Content-Length: {}\r\n\r\n{body}", body.len()).as_bytes());
    }

    fn notify(&mut self, method: &str, params: Value) {
        self.send(json!({"jsonrpc": "2.0", "method": method, "params": params}));
    }

    /// Sends a request and waits for its answer (the whole message).
    fn request(&mut self, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        self.send(json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}));
        self.wait(|m| m["id"] == id && m.get("method").is_none())
    }

    fn wait(&mut self, pred: impl Fn(&Value) -> bool) -> Value {
        if let Some(i) = self.seen.iter().position(&pred) {
            return self.seen.remove(i);
        }
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let m = self
                .rx
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("no such message; saw {:?}", self.seen));
            if pred(&m) {
                return m;
            }
            self.seen.push(m);
        }
    }

    /// Symbols for a query, asked again until `until` holds (indexing runs in the background).
    fn symbols_until(&mut self, query: &str, until: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let r = self.request("workspace/symbol", json!({"query": query}));
            let list = r["result"].as_array().cloned().unwrap_or_default();
            if until(&list) || Instant::now() > deadline {
                return list;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

fn names(symbols: &[Value]) -> Vec<String> {
    symbols
        .iter()
        .map(|s| s["name"].as_str().unwrap_or("").to_string())
        .collect()
}

#[test]
fn symbols_unsaved_buffers_similar_and_malformed_input() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("polyglot");
    copy_dir(&fixture(), &root);
    let mut c = Client::start(
        &["--index", tmp.path().join("idx").to_str().unwrap()],
        &root,
    );
    // Before initialize, only initialize is answered.
    let early = c.request("workspace/symbol", json!({"query": "x"}));
    assert_eq!(early["error"]["code"], -32002, "{early}");
    let init = c.request(
        "initialize",
        json!({"processId": null, "rootUri": uri(&root),
               "workspaceFolders": [{"uri": uri(&root), "name": "polyglot"}],
               "capabilities": {"window": {"workDoneProgress": true}}}),
    );
    assert_eq!(
        init["result"]["capabilities"]["workspaceSymbolProvider"], true,
        "{init}"
    );
    c.notify("initialized", json!({}));
    // The workspace is indexed in the background, with progress.
    let found = c.symbols_until(
        "compute the levenshtein edit distance between two strings",
        |l| names(l).iter().any(|n| n == "levenshtein_distance"),
    );
    let top = &found[0];
    assert_eq!(top["name"], "levenshtein_distance", "{found:?}");
    assert_eq!(top["kind"], 12, "a function");
    let file = root.join("python/text_utils.py");
    assert_eq!(top["location"]["uri"], uri(&file), "{top}");
    assert_eq!(top["location"]["range"]["start"]["line"], 6, "{top}");
    let progress =
        c.wait(|m| m["method"] == "$/progress" && m["params"]["value"]["kind"] == "begin");
    assert_eq!(progress["params"]["token"], "gnn-coder-index");
    // An empty query answers nothing, quickly.
    let empty = c.request("workspace/symbol", json!({"query": "  "}));
    assert_eq!(empty["result"], json!([]));

    // A function typed into an unsaved buffer is found before it is saved.
    let text = std::fs::read_to_string(&file).unwrap();
    c.notify(
        "textDocument/didOpen",
        json!({"textDocument": {"uri": uri(&file), "languageId": "python", "version": 1, "text": text}}),
    );
    let edited = format!("{text}\n\ndef zebra_unsaved_frobnicator(q):\n    return q * 2\n");
    let t = Instant::now();
    c.notify(
        "textDocument/didChange",
        json!({"textDocument": {"uri": uri(&file), "version": 2},
               "contentChanges": [{"text": edited}]}),
    );
    let hits = c.symbols_until("zebra_unsaved_frobnicator", |l| {
        names(l).iter().any(|n| n == "zebra_unsaved_frobnicator")
    });
    let elapsed = t.elapsed();
    assert_eq!(hits[0]["name"], "zebra_unsaved_frobnicator", "{hits:?}");
    eprintln!(
        "didChange to workspace/symbol: {:.0} ms",
        elapsed.as_secs_f64() * 1000.0
    );
    // Closing without saving goes back to the file on disk: the function is gone.
    c.notify(
        "textDocument/didClose",
        json!({"textDocument": {"uri": uri(&file)}}),
    );
    let gone = c.symbols_until("zebra_unsaved_frobnicator", |l| {
        !names(l).iter().any(|n| n == "zebra_unsaved_frobnicator")
    });
    assert!(
        !names(&gone)
            .iter()
            .any(|n| n == "zebra_unsaved_frobnicator"),
        "{gone:?}"
    );

    // Find similar code: a code action offers the command; the command answers locations.
    let actions = c.request(
        "textDocument/codeAction",
        json!({"textDocument": {"uri": uri(&file)},
               "range": {"start": {"line": 8, "character": 0}, "end": {"line": 8, "character": 0}},
               "context": {"diagnostics": []}}),
    );
    let command = &actions["result"][0]["command"];
    assert_eq!(command["command"], "gnn-coder.similar", "{actions}");
    let similar = c.request(
        "workspace/executeCommand",
        json!({"command": "gnn-coder.similar", "arguments": command["arguments"]}),
    );
    let locations = similar["result"].as_array().unwrap();
    assert!(!locations.is_empty(), "{similar}");
    assert!(
        locations
            .iter()
            .all(|l| l["uri"].as_str().unwrap().starts_with("file://")),
        "{similar}"
    );

    // Malformed input gets JSON-RPC errors; the session goes on.
    c.raw(b"Content-Length: 9\r\n\r\n{not json");
    let e = c.wait(|m| m["error"]["code"] == -32700);
    assert!(e["id"].is_null(), "{e}");
    c.raw(b"X-Nothing: 1\r\n\r\n");
    c.wait(|m| {
        m["error"]["code"] == -32700
            && m["error"]["message"]
                .as_str()
                .unwrap()
                .contains("Content-Length")
    });
    c.raw(b"Content-Length: 2\r\n\r\n[]");
    c.wait(|m| m["error"]["code"] == -32600);
    let unknown = c.request("textDocument/nonsense", json!({}));
    assert_eq!(unknown["error"]["code"], -32601, "{unknown}");
    let bad = c.request(
        "workspace/executeCommand",
        json!({"command": "gnn-coder.similar"}),
    );
    assert_eq!(bad["error"]["code"], -32602, "{bad}");
    let again = c.request("workspace/symbol", json!({"query": "parse_ini"}));
    assert!(
        names(again["result"].as_array().unwrap()).contains(&"parse_ini".to_string()),
        "{again}"
    );

    // shutdown, exit: status 0.
    let r = c.request("shutdown", Value::Null);
    assert!(r["result"].is_null() && r.get("error").is_none(), "{r}");
    c.notify("exit", Value::Null);
    let status = c.child.wait().unwrap();
    assert!(status.success(), "{status}");
}

#[test]
fn a_closed_stdin_ends_the_server() {
    let tmp = tempfile::tempdir().unwrap();
    let mut c = Client::start(
        &["--index", tmp.path().join("idx").to_str().unwrap()],
        tmp.path(),
    );
    c.stdin = None;
    let status = c.child.wait().unwrap();
    assert!(status.success(), "{status}");
}

/// Headless Neovim (Debian's `neovim`, which `.ci/run` installs) as the editor:
/// `vim.lsp.buf.workspace_symbol` fills the quickfix list with GNN-Coder's ranking, and a
/// function typed into a buffer that is never saved is found by name.
#[test]
fn neovim_finds_symbols_and_unsaved_functions() {
    let have = Command::new("nvim")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !have {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must install neovim (apt-get install neovim) before the tests"
        );
        eprintln!("skipping: no nvim on PATH");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("polyglot");
    copy_dir(&fixture(), &root);
    let report = tmp.path().join("report.json");
    let script =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/e2e/nvim/workspace_symbol.lua");
    let out = Command::new("nvim")
        .args(["--headless", "--clean", "-c"])
        .arg(format!("luafile {}", script.display()))
        .env("GNN_BIN", BIN)
        .env("GNN_ROOT", &root)
        .env("GNN_IDX", tmp.path().join("idx"))
        .env("GNN_OUT", &report)
        .current_dir(tmp.path())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = std::fs::read_to_string(&report).unwrap_or_else(|e| {
        panic!(
            "no report ({e}): {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["ok"], true, "{v}");
    let first = &v["quickfix"][0];
    assert_eq!(first["text"], "[Function] levenshtein_distance", "{v}");
    assert_eq!(first["lnum"], 7, "{v}");
    assert!(
        first["file"]
            .as_str()
            .unwrap()
            .ends_with("python/text_utils.py"),
        "{v}"
    );
    assert_eq!(v["unsaved_found"], true, "{v}");
    assert_eq!(v["modified"], true, "the buffer was never saved: {v}");
    eprintln!(
        "neovim: buffer edit to workspace/symbol hit: {:.0} ms (incl. Neovim's 150 ms debounce)",
        v["unsaved_ms"].as_f64().unwrap()
    );
}

/// The same through a running `gnn-coder serve` (`--server`): the server indexes the folder,
/// and an unsaved buffer reaches it as `UpdateFiles`.
#[test]
fn through_a_server() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("polyglot");
    copy_dir(&fixture(), &root);
    let server = Server::start(
        &tmp.path().join("idx"),
        &["--allow-root", tmp.path().to_str().unwrap()],
    );
    let mut c = Client::start(&["--server", &server.url], &root);
    c.request(
        "initialize",
        json!({"processId": null, "workspaceFolders": [{"uri": uri(&root), "name": "polyglot"}],
               "capabilities": {}}),
    );
    c.notify("initialized", json!({}));
    let found = c.symbols_until(
        "compute the levenshtein edit distance between two strings",
        |l| names(l).iter().any(|n| n == "levenshtein_distance"),
    );
    assert_eq!(found[0]["name"], "levenshtein_distance", "{found:?}");
    let file = root.join("python/text_utils.py");
    let text = std::fs::read_to_string(&file).unwrap();
    c.notify(
        "textDocument/didChange",
        json!({"textDocument": {"uri": uri(&file), "version": 2},
               "contentChanges": [{"text": format!("{text}\ndef zebra_remote_probe():\n    return 1\n")}]}),
    );
    let hits = c.symbols_until("zebra_remote_probe", |l| {
        names(l).iter().any(|n| n == "zebra_remote_probe")
    });
    assert_eq!(hits[0]["name"], "zebra_remote_probe", "{hits:?}");
    let r = c.request("shutdown", Value::Null);
    assert!(r.get("error").is_none(), "{r}");
    c.notify("exit", Value::Null);
    assert!(c.child.wait().unwrap().success());
}
