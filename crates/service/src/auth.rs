//! Bearer tokens: `authorization: Bearer <token>` on every call but health.
//!
//! Tokens come from a file, one per line (blank lines and `#` comments skipped). They are
//! compared in constant time, so the time of a refusal says nothing about how close a guess
//! was.

use std::path::Path;
use std::sync::Arc;

use tonic::{Request, Status};

/// Why a token file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TokenFileError {
    #[error("cannot read the token file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("the token file {path} holds no token (one per line)")]
    Empty { path: String },
    #[error("a token in {path} is shorter than 16 characters; use long random tokens")]
    Short { path: String },
}

/// The accepted tokens.
#[derive(Clone, Default)]
pub struct Tokens {
    tokens: Arc<Vec<Vec<u8>>>,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tokens({} tokens)", self.tokens.len())
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Tokens {
    /// Reads a token file.
    pub fn from_file(path: &Path) -> Result<Tokens, TokenFileError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| TokenFileError::Read {
            path: shown.clone(),
            source,
        })?;
        let tokens: Vec<Vec<u8>> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(|l| l.as_bytes().to_vec())
            .collect();
        if tokens.is_empty() {
            return Err(TokenFileError::Empty { path: shown });
        }
        if tokens.iter().any(|t| t.len() < 16) {
            return Err(TokenFileError::Short { path: shown });
        }
        Ok(Tokens {
            tokens: Arc::new(tokens),
        })
    }

    /// Whether any token is configured (none: every call is let in).
    pub fn enabled(&self) -> bool {
        !self.tokens.is_empty()
    }

    /// Whether `token` is one of them (every token is compared, in constant time each).
    pub fn accepts(&self, token: &[u8]) -> bool {
        self.tokens
            .iter()
            .fold(false, |ok, t| ok | constant_time_eq(t, token))
    }

    /// Whether an `authorization` header's value (`Bearer TOKEN`; empty when absent) lets a
    /// call in: always when no token is configured. Shared by every transport (gRPC here, the
    /// MCP server's HTTP).
    pub fn allows(&self, header: &str) -> bool {
        if !self.enabled() {
            return true;
        }
        let token = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .unwrap_or("")
            .trim();
        !token.is_empty() && self.accepts(token.as_bytes())
    }

    /// Checks a request's `authorization` header.
    pub fn check<T>(&self, req: &Request<T>) -> Result<(), Status> {
        let header = req
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if self.allows(header) {
            Ok(())
        } else {
            Err(Status::unauthenticated(
                "missing or invalid bearer token (send `authorization: Bearer <token>`)",
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_file_rules() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("tokens");
        std::fs::write(
            &p,
            "# ops\n\n0123456789abcdef0123\n  fedcba9876543210fedc  \n",
        )
        .unwrap();
        let t = Tokens::from_file(&p).unwrap();
        assert!(t.accepts(b"0123456789abcdef0123"));
        assert!(t.accepts(b"fedcba9876543210fedc"));
        assert!(!t.accepts(b"0123456789abcdef012"));
        assert!(!t.accepts(b""));
        std::fs::write(&p, "# nothing\n").unwrap();
        assert!(matches!(
            Tokens::from_file(&p),
            Err(TokenFileError::Empty { .. })
        ));
        std::fs::write(&p, "short\n").unwrap();
        assert!(matches!(
            Tokens::from_file(&p),
            Err(TokenFileError::Short { .. })
        ));
        assert!(Tokens::from_file(&dir.path().join("missing")).is_err());
    }

    #[test]
    fn header_values() {
        assert!(Tokens::default().allows(""), "no tokens: every call");
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("tokens");
        std::fs::write(&p, "0123456789abcdef0123\n").unwrap();
        let t = Tokens::from_file(&p).unwrap();
        assert!(t.allows("Bearer 0123456789abcdef0123"));
        assert!(t.allows("bearer 0123456789abcdef0123 "));
        for bad in [
            "",
            "Bearer ",
            "0123456789abcdef0123",
            "Bearer 0123456789abcdef012x",
        ] {
            assert!(!t.allows(bad), "{bad:?}");
        }
    }

    #[test]
    fn header_check() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("tokens");
        std::fs::write(&p, "0123456789abcdef0123\n").unwrap();
        let t = Tokens::from_file(&p).unwrap();
        let mut ok = Request::new(());
        ok.metadata_mut().insert(
            "authorization",
            "Bearer 0123456789abcdef0123".parse().unwrap(),
        );
        assert!(t.check(&ok).is_ok());
        let mut bad = Request::new(());
        bad.metadata_mut()
            .insert("authorization", "Bearer nope".parse().unwrap());
        assert_eq!(
            t.check(&bad).unwrap_err().code(),
            tonic::Code::Unauthenticated
        );
        assert_eq!(
            t.check(&Request::new(())).unwrap_err().code(),
            tonic::Code::Unauthenticated
        );
        assert!(Tokens::default().check(&Request::new(())).is_ok());
    }
}
