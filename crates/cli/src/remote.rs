//! Talking to a running `gnn-coder serve`: the `--server` flags every client command shares.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use gnn_coder_service::client::{self, Client, ClientOptions};

/// Flags naming where the index is when it is not a local directory: a server, or a
/// PostgreSQL store.
#[derive(Args, Clone, Default)]
pub struct ServerFlags {
    /// Use the PostgreSQL store at this URL (postgres://USER@HOST:PORT/DB; the password from
    /// the URL or $PGPASSWORD) instead of an index directory; or set $GNN_CODER_STORE (an
    /// explicit --index wins over the variable).
    #[arg(long, value_name = "URL", conflicts_with = "server")]
    pub store: Option<String>,
    /// Talk to a running `gnn-coder serve` at this URL (http://HOST:PORT or https://HOST:PORT)
    /// instead of opening an index directory.
    #[arg(long, value_name = "URL")]
    pub server: Option<String>,
    /// CA certificate (PEM) that signed the server's TLS certificate (for https://).
    #[arg(long, value_name = "FILE", requires = "server")]
    pub tls_ca: Option<PathBuf>,
    /// Name to check the server's certificate against (default: the URL's host).
    #[arg(long, value_name = "NAME", requires = "server")]
    pub tls_domain: Option<String>,
    /// File holding the bearer token (its first non-comment line); or set $GNN_CODER_TOKEN.
    #[arg(long, value_name = "FILE", requires = "server")]
    pub token_file: Option<PathBuf>,
}

/// The variable naming a PostgreSQL store when neither --store nor --index is given.
pub const STORE_ENV: &str = "GNN_CODER_STORE";

impl ServerFlags {
    /// Where a local index is: `--store URL`, else `--index DIR` (`explicit`), else
    /// `$GNN_CODER_STORE`, else `fallback` (`None` when there is none).
    pub fn location(
        &self,
        explicit: Option<PathBuf>,
        fallback: impl FnOnce() -> Result<Option<PathBuf>>,
    ) -> Result<Option<gnn_coder_engine::StoreLocation>> {
        use gnn_coder_engine::StoreLocation;
        if let Some(url) = &self.store {
            if explicit.is_some() {
                anyhow::bail!("give either --index DIR or --store URL, not both");
            }
            return Ok(Some(
                StoreLocation::postgres(url).map_err(crate::advice::advise)?,
            ));
        }
        if let Some(dir) = explicit {
            return Ok(Some(StoreLocation::Dir(dir)));
        }
        if let Ok(url) = std::env::var(STORE_ENV)
            && !url.trim().is_empty()
        {
            return Ok(Some(
                StoreLocation::postgres(&url)
                    .map_err(crate::advice::advise)
                    .with_context(|| format!("${STORE_ENV}"))?,
            ));
        }
        Ok(fallback()?.map(StoreLocation::Dir))
    }

    /// The client's TLS and token settings.
    pub fn client_options(&self) -> Result<ClientOptions> {
        let token = match &self.token_file {
            Some(f) => Some(client::read_token_file(f)?),
            None => std::env::var("GNN_CODER_TOKEN")
                .ok()
                .filter(|t| !t.trim().is_empty()),
        };
        Ok(ClientOptions {
            tls_ca: self.tls_ca.clone(),
            tls_domain: self.tls_domain.clone(),
            token,
            max_message_bytes: None,
        })
    }

    /// The server's URL.
    pub fn url(&self) -> &str {
        self.server
            .as_deref()
            .unwrap_or(gnn_coder_service::DEFAULT_LISTEN)
    }

    /// Connects to the server.
    pub async fn connect(&self) -> Result<Client> {
        let url = self.url();
        match client::connect(url, &self.client_options()?).await {
            Ok(c) => Ok(c),
            // The transport's innermost cause, with what to do about it.
            Err(client::ClientError::Connect { source, .. }) => {
                Err(crate::advice::advise_connect(url, &source))
            }
            Err(e) => Err(e).with_context(|| format!("cannot connect to {url}")),
        }
    }
}

/// A root as the server should see it: the server resolves paths on its own disk, so a local
/// path that exists is sent absolute and resolved; another absolute path is sent as it is.
pub fn server_path(root: &std::path::Path) -> Result<PathBuf> {
    match root.canonicalize() {
        Ok(p) => Ok(p),
        Err(_) if root.is_absolute() => Ok(root.to_path_buf()),
        Err(e) => anyhow::bail!("cannot resolve {}: {e}", root.display()),
    }
}
