//! Errors turned into messages for people: the engine's typed errors and a server's gRPC
//! statuses, each with what to type next where there is a clear next step. The libraries say
//! what went wrong; only this binary adds advice.

use gnn_coder_engine::{EngineError, ErrorKind};

/// The engine's error with advice for a person: what to type next.
pub fn advise(err: EngineError) -> anyhow::Error {
    use gnn_coder_engine::EngineError as E;
    use gnn_coder_engine::StoreError as S;
    let hint = match &err {
        E::Store(S::NotFound { .. }) => Some("build one with `gnn-coder index ROOT`"),
        E::Store(S::IncompatibleVersion { .. }) | E::Store(S::Damaged { .. }) => {
            Some("rebuild it with `gnn-coder index ROOT --rebuild`")
        }
        E::Store(S::NoVectors { .. }) => Some(
            "rebuild it with `gnn-coder index ROOT --rebuild` to add vectors (the model is built in; `gnn-coder search --mode lexical` needs none)",
        ),
        E::Store(S::Locked { .. }) => Some("wait for that process to finish, or stop it"),
        E::Incompatible(_) => Some(
            "use the --weights the index was built with, or rebuild it with `gnn-coder index ROOT --rebuild`",
        ),
        _ if err.kind() == ErrorKind::NoSpace => Some(
            "the index's disk is full: free some space (or give --index a directory on another disk) and run it again",
        ),
        _ if err.kind() == ErrorKind::ModelMissing => Some(
            "the built-in model needs no files: leave out --model-dir and --weights (and $GNN_CODER_MODEL_DIR / $GNN_CODER_WEIGHTS); the zero-shot model (--weights none) needs all-MiniLM-L6-v2, which scripts/fetch-model.sh in the gnn-coder checkout fetches, at --model-dir",
        ),
        E::NotFound(m) if m.starts_with("no repository") => {
            Some("`gnn-coder repos` lists the indexed repositories")
        }
        E::InvalidArgument(m) if m.starts_with("unknown language") => {
            Some("`gnn-coder languages` lists them")
        }
        E::InvalidArgument(m) if m.ends_with("cannot be refreshed lexical-only") => Some(
            "drop --lexical-only to refresh it with vectors, or add --rebuild to make a lexical-only index in its place",
        ),
        E::InvalidArgument(m)
            if m.ends_with("vector codes are chosen when an index is created") =>
        {
            Some(
                "drop --vector-codes to refresh it as it is, or add --rebuild to build it anew with the codes asked for",
            )
        }
        _ => None,
    };
    match hint {
        Some(h) => anyhow::anyhow!("{err}; {h}"),
        None => anyhow::Error::new(err),
    }
}

/// The messages of `err` and its sources, outermost first, without repeats (tonic and hyper
/// wrap an error in several layers that say the same).
pub fn causes(err: &(dyn std::error::Error + 'static)) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut next = Some(err);
    while let Some(e) = next {
        let m = e.to_string();
        if !m.is_empty() && !out.iter().any(|o| o.contains(&m)) {
            out.push(m);
        }
        next = e.source();
    }
    out
}

/// What to do about a failed connection to `url`, judged by its causes (rustls and hyper
/// name them; tonic says only "transport error").
pub fn transport_hint(url: &str, causes: &[String]) -> &'static str {
    let any = |needles: &[&str]| {
        causes.iter().any(|c| {
            needles
                .iter()
                .any(|n| c.to_lowercase().contains(&n.to_lowercase()))
        })
    };
    let https = url.starts_with("https://");
    if any(&["CaUsedAsEndEntity"]) {
        "the server presents a CA certificate as its own: serve with a server certificate \
         signed by that CA (--tls-cert/--tls-key) and give the CA to clients with --tls-ca"
    } else if any(&["UnknownIssuer", "BadSignature"]) {
        "the server's certificate is not signed by the CA given with --tls-ca; give the CA \
         that signed it"
    } else if any(&["NotValidForName", "not valid for name"]) {
        "the server's certificate does not name this host; give the name it holds with \
         --tls-domain NAME"
    } else if any(&["Expired", "NotValidYet"]) {
        "the server's certificate is outside its validity period"
    } else if https && any(&["InvalidContentType", "corrupt message", "wrong version"]) {
        "the server does not speak TLS: use http:// instead of https://"
    } else if any(&["refused"]) {
        "is `gnn-coder serve` running there (and listening on that port)?"
    } else if !https {
        "if the server uses TLS (--tls-cert), use https:// and --tls-ca FILE; otherwise, is it running?"
    } else {
        "is `gnn-coder serve` running there, with TLS?"
    }
}

/// A failed connection to `url` as an error for people: the innermost cause and a hint.
pub fn advise_connect(url: &str, err: &(dyn std::error::Error + 'static)) -> anyhow::Error {
    let causes = causes(err);
    let hint = transport_hint(url, &causes);
    let cause = causes.last().cloned().unwrap_or_default();
    anyhow::anyhow!("cannot connect to {url}: {cause}; {hint}")
}

/// Whether a RESOURCE_EXHAUSTED says the server's disk is full (the service keeps the OS's
/// words), which no retry fixes, rather than that it is busy.
pub fn server_disk_full(s: &tonic::Status) -> bool {
    s.code() == tonic::Code::ResourceExhausted
        && (s.message().contains("No space left") || s.message().contains("os error 28"))
}

/// A gRPC status as an error for people.
pub fn advise_status(s: tonic::Status) -> anyhow::Error {
    use tonic::Code;
    // A status the client made from a failed connection: name the cause (`transport error`
    // alone says nothing), with the connection's hint.
    if let Some(source) = std::error::Error::source(&s) {
        let mut all = vec![s.message().to_string()];
        all.extend(causes(source));
        let hint = transport_hint("", &all);
        let cause = all.last().cloned().unwrap_or_default();
        return anyhow::anyhow!(
            "the call failed ({:?}): {}: {cause}; {hint}",
            s.code(),
            s.message()
        );
    }
    let hint = match s.code() {
        Code::Unauthenticated => {
            Some("give the server's token with --token-file FILE or $GNN_CODER_TOKEN")
        }
        Code::PermissionDenied => Some("the server indexes only below its --allow-root paths"),
        Code::ResourceExhausted if server_disk_full(&s) => {
            Some("the server's disk is full; free space on it and retry")
        }
        Code::ResourceExhausted => Some("the server is busy; retry in a moment"),
        Code::Unavailable => Some("is the server running (and is it http:// or https://)?"),
        Code::Aborted => Some("another job works on that repository; retry when it is done"),
        Code::DataLoss => Some(
            "the server's index is damaged: stop the server and rebuild the index with `gnn-coder index ROOT --index DIR --rebuild`",
        ),
        _ => None,
    };
    let base = format!("server answered {:?}: {}", s.code(), s.message());
    match hint {
        Some(h) => anyhow::anyhow!("{base}; {h}"),
        None => anyhow::anyhow!(base),
    }
}
