//! Talking to a running `gnn-coder serve`: the `--server` flags every client command shares.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use gnn_coder_service::client::{self, Client, ClientOptions};

/// Flags naming a server.
#[derive(Args, Clone, Default)]
pub struct ServerFlags {
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

impl ServerFlags {
    fn options(&self) -> Result<ClientOptions> {
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
        match client::connect(url, &self.options()?).await {
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
