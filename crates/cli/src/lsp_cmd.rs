//! `gnn-coder lsp`: a language server over stdio, so any editor searches with GNN-Coder.
//!
//! What it answers:
//! * `workspace/symbol`: the query (a plain-English question or an identifier) ranked by
//!   GNN-Coder, as `SymbolInformation` with locations and kinds; an empty query answers nothing.
//! * `textDocument/didOpen`, `didChange` (full text): the buffer's text is searchable at once
//!   as an unsaved buffer (the engine's overlay: no durable commit per keystroke), so a
//!   function typed a moment ago is found; `didSave` indexes the saved text durably;
//!   `didClose` drops the buffer and goes back to the file on disk (or removes a file never
//!   saved); `shutdown` writes the buffers still open.
//! * `workspace/executeCommand` `gnn-coder.similar` (arguments: a document URI and a 0-based
//!   line) and a code action "Find similar code" that runs it: locations of similar code.
//!
//! The workspace folders (or the root) given at `initialize` are indexed, or refreshed, when
//! the client says `initialized`, on a background thread, with `$/progress` reports when the
//! client supports them. The index is `--index DIR`, else `.gnn-coder` in the first folder;
//! with `--server URL` a running `gnn-coder serve` holds it (and indexes the folders, which
//! must be under its `--allow-root`).
//!
//! Messages are framed by hand (`Content-Length` headers) so that a malformed frame or body
//! gets a JSON-RPC error and the session goes on; nothing a client sends can end the server
//! but `exit` or a closed stdin.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result, bail};
use clap::Args;
use gnn_coder_engine::{
    CancellationToken, EngineOptions, FileUpdate, IndexEvent, IndexOptions, KindFilter,
    SearchRequest, SimilarRequest, SimilarTarget,
};
use serde_json::{Value, json};

use crate::DEFAULT_INDEX_DIR;
use crate::backend::{Backend, Found};
use crate::flags::ModelFlags;
use crate::remote::ServerFlags;

/// The largest message body accepted (a whole file's text travels in one).
const MAX_BODY: usize = 64 << 20;
/// Symbols answered per `workspace/symbol`.
const SYMBOLS: usize = 50;

#[derive(Args)]
pub struct LspArgs {
    /// Index directory (default: .gnn-coder in the first workspace folder).
    #[arg(long)]
    index: Option<PathBuf>,
    #[command(flatten)]
    model: ModelFlags,
    #[command(flatten)]
    server: ServerFlags,
}

/// Writes framed messages; shared with the indexing thread.
#[derive(Clone)]
struct Out(Arc<Mutex<std::io::Stdout>>);

impl Out {
    fn send(&self, message: &Value) {
        let body = message.to_string();
        let mut out = self.0.lock().unwrap_or_else(|p| p.into_inner());
        // A client that went away ends the session at the next read.
        let _ = write!(out, "Content-Length: {}\r\n\r\n{body}", body.len());
        let _ = out.flush();
    }

    fn reply(&self, id: &Value, result: Value) {
        self.send(&json!({"jsonrpc": "2.0", "id": id, "result": result}));
    }

    fn error(&self, id: &Value, code: i64, message: &str) {
        self.send(
            &json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}}),
        );
    }

    fn log(&self, message: &str) {
        self.send(&json!({"jsonrpc": "2.0", "method": "window/logMessage",
            "params": {"type": 3, "message": message}}));
    }
}

/// One frame's body; `Err` carries what was wrong with the frame (answered, then skipped).
/// `None` at the end of input.
fn read_frame(input: &mut impl BufRead) -> Option<Result<Vec<u8>, String>> {
    let mut length: Option<usize> = None;
    let mut bad = None;
    let mut any = false;
    loop {
        let mut line = String::new();
        match input.read_line(&mut line) {
            Ok(0) => return None,
            Ok(_) => {}
            Err(e) => return Some(Err(format!("unreadable header: {e}"))),
        }
        let line = line.trim_end_matches(['\r', '\n']);
        if line.is_empty() {
            if any {
                break;
            }
            continue;
        }
        any = true;
        if let Some((name, value)) = line.split_once(':')
            && name.trim().eq_ignore_ascii_case("content-length")
        {
            match value.trim().parse::<usize>() {
                Ok(n) if n <= MAX_BODY => length = Some(n),
                Ok(n) => bad = Some(format!("a body of {n} bytes is over the {MAX_BODY} limit")),
                Err(_) => bad = Some(format!("Content-Length {:?} is not a number", value.trim())),
            }
        }
    }
    if let Some(b) = bad {
        return Some(Err(b));
    }
    let Some(n) = length else {
        return Some(Err("a message without Content-Length".into()));
    };
    let mut body = vec![0; n];
    match input.read_exact(&mut body) {
        Ok(()) => Some(Ok(body)),
        Err(_) => None,
    }
}

/// A `file://` URI as a path (percent-decoded); `None` for other schemes.
fn uri_to_path(uri: &str) -> Option<PathBuf> {
    let rest = uri.strip_prefix("file://")?;
    let rest = rest.strip_prefix("localhost").unwrap_or(rest);
    let bytes = rest.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Some(b) = std::str::from_utf8(&bytes[i + 1..i + 3])
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    use std::os::unix::ffi::OsStringExt;
    Some(PathBuf::from(std::ffi::OsString::from_vec(out)))
}

/// A path as a `file://` URI (bytes outside the unreserved set and `/` percent-encoded).
fn path_to_uri(path: &Path) -> String {
    use std::os::unix::ffi::OsStrExt;
    let mut s = String::from("file://");
    for &b in path.as_os_str().as_bytes() {
        if b.is_ascii_alphanumeric() || b"/-._~".contains(&b) {
            s.push(b as char);
        } else {
            s.push_str(&format!("%{b:02X}"));
        }
    }
    s
}

/// LSP `SymbolKind` of a unit kind.
fn symbol_kind(kind: &str) -> u32 {
    match kind {
        "method" => 6,
        "class" | "impl" => 5,
        "module" => 2,
        "enum" => 10,
        "interface" | "trait" => 11,
        "struct" => 23,
        _ => 12,
    }
}

/// A workspace folder: the repository's name in the index and its root (as given and
/// canonical, so a document path matches either).
struct Folder {
    name: String,
    root: PathBuf,
    canonical: PathBuf,
}

struct Server {
    backend: Arc<Backend>,
    folders: Arc<Vec<Folder>>,
    out: Out,
    /// Whether the client takes `window/workDoneProgress/create`.
    progress: bool,
}

impl Server {
    /// The repository and root-relative path of a document.
    fn locate(&self, uri: &str) -> Option<(String, String, PathBuf)> {
        let path = uri_to_path(uri)?;
        self.folders.iter().find_map(|f| {
            let rel = path
                .strip_prefix(&f.root)
                .or_else(|_| path.strip_prefix(&f.canonical))
                .ok()?;
            Some((
                f.name.clone(),
                gnn_coder_syntax::encode_rel_path(rel),
                path.clone(),
            ))
        })
    }

    /// The location of a hit, from its repository's root.
    fn location(&self, f: &Found, roots: &[(String, PathBuf)]) -> Option<Value> {
        let u = &f.hit.unit;
        let root = roots
            .iter()
            .find(|(n, _)| *n == f.hit.repository)?
            .1
            .clone();
        let rel = gnn_coder_syntax::decode_path(&u.path)?;
        Some(json!({
            "uri": path_to_uri(&root.join(rel)),
            "range": {
                "start": {"line": u.start_line.saturating_sub(1), "character": 0},
                "end": {"line": u.end_line, "character": 0},
            }
        }))
    }

    fn roots(&self) -> Vec<(String, PathBuf)> {
        self.backend
            .repositories()
            .map(|rs| {
                rs.iter()
                    .filter_map(|r| Some((r.name.clone(), gnn_coder_syntax::decode_path(&r.root)?)))
                    .collect()
            })
            .unwrap_or_default()
    }

    fn symbols(&self, params: &Value) -> Result<Value, String> {
        let query = params["query"].as_str().unwrap_or("").trim();
        if query.is_empty() {
            return Ok(json!([]));
        }
        let mut req = SearchRequest::new(query.to_string(), SYMBOLS);
        req.kinds = KindFilter::All;
        let hits = self.backend.search(req).map_err(|e| format!("{e:#}"))?;
        let roots = self.roots();
        let out: Vec<Value> = hits
            .iter()
            .filter_map(|f| {
                Some(json!({
                    "name": f.hit.unit.symbol,
                    "kind": symbol_kind(&f.hit.unit.kind),
                    "location": self.location(f, &roots)?,
                    "containerName": f.hit.repository,
                }))
            })
            .collect();
        Ok(Value::Array(out))
    }

    /// Holds one document's unsaved text as a buffer (`None`: drops it).
    fn buffer(&self, uri: &str, text: Option<&str>) {
        let Some((repo, rel, _)) = self.locate(uri) else {
            return;
        };
        let update = FileUpdate {
            path: rel,
            contents: text.map(|t| t.as_bytes().to_vec()),
            deleted: false,
        };
        if let Err(e) = self.backend.update_buffers(&repo, &[update]) {
            self.out
                .log(&format!("gnn-coder: {uri} not searchable: {e:#}"));
        }
    }

    /// Indexes one document's text (or the file on disk with `None`; a file that is not on
    /// disk is removed).
    fn update(&self, uri: &str, text: Option<&str>) {
        let Some((repo, rel, path)) = self.locate(uri) else {
            return;
        };
        let deleted = text.is_none() && !path.exists();
        let update = FileUpdate {
            path: rel,
            contents: text.map(|t| t.as_bytes().to_vec()),
            deleted,
        };
        if let Err(e) = self
            .backend
            .update_files(&repo, &[update], &CancellationToken::new())
        {
            self.out
                .log(&format!("gnn-coder: {uri} not indexed: {e:#}"));
        }
    }

    fn similar(&self, uri: &str, line: u64) -> Result<Value, String> {
        let (repo, rel, _) = self
            .locate(uri)
            .ok_or_else(|| format!("{uri} is not in a workspace folder"))?;
        let target = SimilarTarget::Unit {
            repository: Some(repo),
            path: rel,
            line: line + 1,
        };
        let (_, hits) = self
            .backend
            .similar(&SimilarRequest::new(target, 20))
            .map_err(|e| format!("{e:#}"))?;
        let roots = self.roots();
        Ok(Value::Array(
            hits.iter()
                .filter_map(|f| self.location(f, &roots))
                .collect(),
        ))
    }

    /// Indexes (or refreshes) every workspace folder, reporting progress.
    fn index_folders(&self) {
        let backend = self.backend.clone();
        let folders = self.folders.clone();
        let out = self.out.clone();
        let progress = self.progress;
        std::thread::spawn(move || {
            let token = "gnn-coder-index";
            if progress {
                out.send(&json!({"jsonrpc": "2.0", "id": "gnn-coder-progress",
                    "method": "window/workDoneProgress/create", "params": {"token": token}}));
                out.send(
                    &json!({"jsonrpc": "2.0", "method": "$/progress", "params": {"token": token,
                    "value": {"kind": "begin", "title": "gnn-coder: indexing", "percentage": 0}}}),
                );
            }
            for f in folders.iter() {
                let mut opts = IndexOptions::new(&f.root);
                opts.name = Some(f.name.clone());
                let last = Mutex::new(std::time::Instant::now());
                let on_event = |e: &IndexEvent| {
                    if let (true, IndexEvent::Progress(p)) = (progress, e) {
                        let mut t = last.lock().unwrap_or_else(|p| p.into_inner());
                        if t.elapsed() >= std::time::Duration::from_millis(250) {
                            *t = std::time::Instant::now();
                            out.send(&json!({"jsonrpc": "2.0", "method": "$/progress",
                                "params": {"token": token, "value": {"kind": "report",
                                "message": format!("{}: {} of {} files, {} units", f.name,
                                    p.files_done, p.files_total, p.units)}}}));
                        }
                    }
                };
                match backend.index(&opts, None, &on_event, &CancellationToken::new()) {
                    Ok(s) => out.log(&format!(
                        "gnn-coder: indexed {} ({} files, {} units)",
                        s.repository, s.files, s.units
                    )),
                    Err(e) => out.log(&format!("gnn-coder: cannot index {}: {e:#}", f.name)),
                }
            }
            if progress {
                out.send(
                    &json!({"jsonrpc": "2.0", "method": "$/progress", "params": {"token": token,
                    "value": {"kind": "end", "message": "indexed"}}}),
                );
            }
        });
    }

    /// Answers one request.
    fn request(&self, method: &str, params: &Value) -> Result<Value, (i64, String)> {
        let invalid = |m: &str| (-32602, m.to_string());
        match method {
            "workspace/symbol" => self.symbols(params).map_err(|m| (-32603, m)),
            "workspace/executeCommand" => {
                if params["command"] != "gnn-coder.similar" {
                    return Err(invalid(
                        "unknown command; this server has gnn-coder.similar",
                    ));
                }
                let args = &params["arguments"];
                let (Some(uri), Some(line)) = (args[0].as_str(), args[1].as_u64()) else {
                    return Err(invalid("gnn-coder.similar takes [uri, line]"));
                };
                self.similar(uri, line).map_err(|m| (-32603, m))
            }
            "textDocument/codeAction" => {
                let uri = params["textDocument"]["uri"].as_str().unwrap_or("");
                let line = params["range"]["start"]["line"].as_u64().unwrap_or(0);
                Ok(json!([{
                    "title": "Find similar code",
                    "kind": "",
                    "command": {"title": "Find similar code", "command": "gnn-coder.similar",
                        "arguments": [uri, line]},
                }]))
            }
            "shutdown" => {
                if let Err(e) = self.backend.flush_buffers() {
                    self.out
                        .log(&format!("gnn-coder: unsaved buffers not written: {e:#}"));
                }
                Ok(Value::Null)
            }
            _ => Err((-32601, format!("{method} is not supported"))),
        }
    }

    fn notification(&self, method: &str, params: &Value) {
        let uri = params["textDocument"]["uri"].as_str().unwrap_or("");
        match method {
            "initialized" => self.index_folders(),
            "textDocument/didOpen" => {
                self.buffer(uri, params["textDocument"]["text"].as_str());
            }
            "textDocument/didChange" => {
                let text = params["contentChanges"]
                    .as_array()
                    .and_then(|c| c.last())
                    .and_then(|c| c["text"].as_str());
                if text.is_some() {
                    self.buffer(uri, text);
                }
            }
            "textDocument/didSave" => self.update(uri, params["text"].as_str()),
            "textDocument/didClose" => {
                self.buffer(uri, None);
                self.update(uri, None);
            }
            _ => {}
        }
    }
}

/// The workspace folders of `initialize` (or its root).
fn folders(params: &Value) -> Vec<Folder> {
    let mut roots: Vec<PathBuf> = params["workspaceFolders"]
        .as_array()
        .map(|fs| {
            fs.iter()
                .filter_map(|f| uri_to_path(f["uri"].as_str()?))
                .collect()
        })
        .unwrap_or_default();
    if roots.is_empty() {
        if let Some(root) = params["rootUri"].as_str().and_then(uri_to_path) {
            roots.push(root);
        } else if let Some(root) = params["rootPath"].as_str() {
            roots.push(PathBuf::from(root));
        }
    }
    roots
        .into_iter()
        .filter(|r| r.is_dir())
        .map(|root| Folder {
            name: root
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "root".into()),
            canonical: root.canonicalize().unwrap_or_else(|_| root.clone()),
            root,
        })
        .collect()
}

pub fn run(args: LspArgs) -> Result<()> {
    let stdin = std::io::stdin();
    let mut input = stdin.lock();
    let out = Out(Arc::new(Mutex::new(std::io::stdout())));
    // Until `initialize`: only it is answered.
    let (init_id, params) = loop {
        let Some(frame) = read_frame(&mut input) else {
            return Ok(());
        };
        let body = match frame {
            Ok(b) => b,
            Err(m) => {
                out.error(&Value::Null, -32700, &m);
                continue;
            }
        };
        let Ok(msg) = serde_json::from_slice::<Value>(&body) else {
            out.error(&Value::Null, -32700, "the body is not JSON");
            continue;
        };
        match msg["method"].as_str() {
            Some("initialize") => break (msg["id"].clone(), msg["params"].clone()),
            Some("exit") => return Ok(()),
            _ if !msg["id"].is_null() => {
                out.error(&msg["id"], -32002, "the server is not initialized");
            }
            _ => {}
        }
    };
    let folders = folders(&params);
    let backend = if args.server.server.is_some() {
        if args.index.is_some() {
            bail!("give either --index DIR or --server URL, not both");
        }
        Backend::open(None, &args.server, &args.model)?
    } else {
        let default = folders.first().map(|f| f.root.join(DEFAULT_INDEX_DIR));
        if args.index.is_none()
            && default.is_none()
            && args.server.store.is_none()
            && std::env::var(crate::remote::STORE_ENV).is_err()
        {
            bail!("the client named no workspace folder; give --index DIR or --store URL");
        }
        let options = EngineOptions {
            model: args.model.choice(),
            ..EngineOptions::default()
        };
        Backend::open_for_writing(args.index.clone(), default, &args.server, options, false)
            .context("cannot open the index")?
    };
    let backend = Arc::new(backend);
    crate::backend::warm_in_background(&backend);
    let server = Server {
        backend,
        folders: Arc::new(folders),
        out: out.clone(),
        progress: params["capabilities"]["window"]["workDoneProgress"] == true,
    };
    out.reply(
        &init_id,
        json!({
            "capabilities": {
                "workspaceSymbolProvider": true,
                "textDocumentSync": {"openClose": true, "change": 1, "save": {"includeText": true}},
                "executeCommandProvider": {"commands": ["gnn-coder.similar"]},
                "codeActionProvider": true,
            },
            "serverInfo": {"name": "gnn-coder", "version": env!("CARGO_PKG_VERSION")},
        }),
    );
    let mut shutdown = false;
    while let Some(frame) = read_frame(&mut input) {
        let body = match frame {
            Ok(b) => b,
            Err(m) => {
                out.error(&Value::Null, -32700, &m);
                continue;
            }
        };
        let msg = match serde_json::from_slice::<Value>(&body) {
            Ok(v) if v.is_object() => v,
            Ok(_) => {
                out.error(&Value::Null, -32600, "a message must be a JSON object");
                continue;
            }
            Err(e) => {
                out.error(&Value::Null, -32700, &format!("the body is not JSON: {e}"));
                continue;
            }
        };
        let Some(method) = msg["method"].as_str() else {
            continue; // a response to one of our requests
        };
        if method == "exit" {
            std::process::exit(if shutdown { 0 } else { 1 });
        }
        let params = &msg["params"];
        if msg.get("id").is_some() {
            let id = &msg["id"];
            if method == "shutdown" {
                shutdown = true;
            }
            match server.request(method, params) {
                Ok(v) => out.reply(id, v),
                Err((code, m)) => out.error(id, code, &m),
            }
        } else {
            server.notification(method, params);
        }
    }
    Ok(())
}
