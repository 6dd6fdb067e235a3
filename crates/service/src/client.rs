//! Connecting to a server: the command line's `--server`, batch jobs, tests.

use std::path::PathBuf;
use std::time::Duration;

use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};
use tonic::{Request, Status};

use crate::proto::code_search_client::CodeSearchClient;

/// How to reach a server.
#[derive(Debug, Clone, Default)]
pub struct ClientOptions {
    /// PEM CA certificate that signed the server's certificate (for `https://` URLs).
    pub tls_ca: Option<PathBuf>,
    /// Name to check the certificate against (default: the URL's host).
    pub tls_domain: Option<String>,
    /// Bearer token.
    pub token: Option<String>,
    /// Largest message accepted (default 64 MiB).
    pub max_message_bytes: Option<usize>,
}

/// Why a client could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("bad server URL {url:?}: {message}")]
    Url { url: String, message: String },
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the token is not a valid header value")]
    Token,
    #[error("cannot connect to {url}: {source}")]
    Connect {
        url: String,
        source: tonic::transport::Error,
    },
}

/// Adds `authorization: Bearer <token>` to every call.
#[derive(Clone, Default)]
pub struct BearerToken(Option<MetadataValue<Ascii>>);

impl Interceptor for BearerToken {
    fn call(&mut self, mut req: Request<()>) -> Result<Request<()>, Status> {
        if let Some(v) = &self.0 {
            req.metadata_mut().insert("authorization", v.clone());
        }
        Ok(req)
    }
}

/// A `CodeSearch` client.
pub type Client = CodeSearchClient<InterceptedService<Channel, BearerToken>>;

/// The first token of a token file (the server's format: one per line, `#` comments).
pub fn read_token_file(path: &std::path::Path) -> Result<String, ClientError> {
    let text = std::fs::read_to_string(path).map_err(|source| ClientError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    text.lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .ok_or(ClientError::Token)
}

/// A channel to `url` (`http://host:port`, `https://host:port`, or `host:port`).
pub async fn channel(url: &str, opts: &ClientOptions) -> Result<Channel, ClientError> {
    let full = if url.contains("://") {
        url.to_string()
    } else {
        format!("http://{url}")
    };
    let bad = |message: String| ClientError::Url {
        url: url.to_string(),
        message,
    };
    let mut endpoint = Endpoint::from_shared(full.clone())
        .map_err(|e| bad(e.to_string()))?
        .connect_timeout(Duration::from_secs(10))
        .tcp_nodelay(true);
    if full.starts_with("https://") {
        let Some(ca) = &opts.tls_ca else {
            return Err(bad(
                "https needs the CA certificate that signed the server's (--tls-ca FILE)".into(),
            ));
        };
        let pem = std::fs::read(ca).map_err(|source| ClientError::Read {
            path: ca.clone(),
            source,
        })?;
        let mut tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(pem));
        if let Some(d) = &opts.tls_domain {
            tls = tls.domain_name(d.clone());
        }
        endpoint = endpoint.tls_config(tls).map_err(|e| bad(e.to_string()))?;
    } else if !full.starts_with("http://") {
        return Err(bad("use http:// or https://".into()));
    }
    endpoint
        .connect()
        .await
        .map_err(|source| ClientError::Connect {
            url: url.to_string(),
            source,
        })
}

/// A client of the server at `url`.
pub async fn connect(url: &str, opts: &ClientOptions) -> Result<Client, ClientError> {
    let channel = channel(url, opts).await?;
    let token = match &opts.token {
        Some(t) => Some(
            format!("Bearer {t}")
                .parse::<MetadataValue<Ascii>>()
                .map_err(|_| ClientError::Token)?,
        ),
        None => None,
    };
    let limit = opts.max_message_bytes.unwrap_or(64 << 20);
    Ok(
        CodeSearchClient::with_interceptor(channel, BearerToken(token))
            .max_decoding_message_size(limit)
            .max_encoding_message_size(limit),
    )
}
