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
            "rebuild it with `gnn-coder index ROOT --rebuild` after scripts/fetch-model.sh, or use --mode lexical",
        ),
        E::Store(S::Locked { .. }) => Some("wait for that process to finish, or stop it"),
        E::Incompatible(_) => Some(
            "use the --weights the index was built with, or rebuild it with `gnn-coder index ROOT --rebuild`",
        ),
        _ if err.kind() == ErrorKind::ModelMissing => Some(
            "run scripts/fetch-model.sh in the gnn-coder checkout, or point --model-dir / GNN_CODER_MODEL_DIR at the model",
        ),
        E::NotFound(m) if m.starts_with("no repository") => {
            Some("`gnn-coder repos` lists the indexed repositories")
        }
        E::InvalidArgument(m) if m.starts_with("unknown language") => {
            Some("`gnn-coder languages` lists them")
        }
        _ => None,
    };
    match hint {
        Some(h) => anyhow::anyhow!("{err}; {h}"),
        None => anyhow::Error::new(err),
    }
}

/// A gRPC status as an error for people.
pub fn advise_status(s: tonic::Status) -> anyhow::Error {
    use tonic::Code;
    let hint = match s.code() {
        Code::Unauthenticated => {
            Some("give the server's token with --token-file FILE or $GNN_CODER_TOKEN")
        }
        Code::PermissionDenied => Some("the server indexes only below its --allow-root paths"),
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
