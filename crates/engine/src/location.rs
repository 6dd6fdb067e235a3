//! Where an index lives: one value for both backends, parsed once from what a person typed.
//!
//! `--index DIR` names an embedded index (a directory); `--store postgres://USER@HOST:PORT/DB`
//! (or `$GNN_CODER_STORE`) a PostgreSQL database. Everything above the engine passes a
//! [`StoreLocation`] along and never names a backend; the engine opens the one it names.

use std::fmt;
use std::path::PathBuf;

use crate::{EngineError, Result};

/// An embedded index directory or a PostgreSQL URL.
#[derive(Clone, PartialEq, Eq)]
pub enum StoreLocation {
    Dir(PathBuf),
    /// The full URL (with any password: shown only through [`fmt::Display`], which hides it).
    Postgres(String),
}

impl StoreLocation {
    /// A PostgreSQL URL (`postgres://…` or `postgresql://…`); anything else is refused.
    pub fn postgres(url: &str) -> Result<StoreLocation> {
        let url = url.trim();
        if !gnn_coder_postgres::is_postgres_url(url) {
            return Err(EngineError::InvalidArgument(format!(
                "--store takes a PostgreSQL URL (postgres://USER@HOST:PORT/DB), not {:?}",
                gnn_coder_postgres::redact(url)
            )));
        }
        Ok(StoreLocation::Postgres(url.to_string()))
    }

    pub fn is_postgres(&self) -> bool {
        matches!(self, StoreLocation::Postgres(_))
    }

    /// The directory of an embedded index.
    pub fn dir(&self) -> Option<&std::path::Path> {
        match self {
            StoreLocation::Dir(d) => Some(d),
            StoreLocation::Postgres(_) => None,
        }
    }

    /// For messages (a path; the URL without its password).
    pub(crate) fn display_path(&self) -> PathBuf {
        PathBuf::from(self.to_string())
    }
}

impl fmt::Display for StoreLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreLocation::Dir(d) => write!(f, "{}", d.display()),
            StoreLocation::Postgres(url) => f.write_str(&gnn_coder_postgres::redact(url)),
        }
    }
}

impl fmt::Debug for StoreLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StoreLocation({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked_and_passwords_never_shown() {
        let l = StoreLocation::postgres("postgres://gnn:pw@db:5432/gnn").unwrap();
        assert!(l.is_postgres());
        assert_eq!(l.to_string(), "postgres://gnn:***@db:5432/gnn");
        assert!(!format!("{l:?}").contains("pw"));
        assert!(StoreLocation::postgres("/var/lib/index").is_err());
    }
}
