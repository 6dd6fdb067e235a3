//! TLS to the database.
//!
//! `sslmode=require` (or `verify-ca` / `verify-full`, which tokio-postgres reads as `require`)
//! in the URL turns TLS on, and then the server's certificate is always verified, as libpq's
//! `verify-full` does: against `$PGSSLROOTCERT` (a PEM file of CA certificates, libpq's
//! variable) when set, else the Mozilla roots built in (webpki-roots), which managed databases'
//! certificates chain to. Anything else (no `sslmode`, `prefer`, `disable`) is plain TCP: a
//! connection is never silently half-secure, encrypted to whoever answered.

use std::sync::Arc;

use gnn_coder_store::{Result, StoreError};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use tokio_postgres::config::SslMode;
use tokio_postgres_rustls::MakeRustlsConnect;

/// libpq's variable naming the CA certificates that sign the server's certificate.
pub const ROOT_CERT_ENV: &str = "PGSSLROOTCERT";

/// The connector for `config`; turns TLS off unless the URL asked for it.
pub(crate) fn connector(
    config: &mut tokio_postgres::Config,
    location: &str,
) -> Result<MakeRustlsConnect> {
    let wanted = config.get_ssl_mode() == SslMode::Require;
    if !wanted {
        config.ssl_mode(SslMode::Disable);
    }
    let mut roots = rustls::RootCertStore::empty();
    match std::env::var_os(ROOT_CERT_ENV).filter(|_| wanted) {
        Some(file) => {
            let certs = CertificateDer::pem_file_iter(&file)
                .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                .map_err(|e| StoreError::InvalidArgument {
                    message: format!(
                        "${ROOT_CERT_ENV} ({}): cannot read CA certificates: {e}",
                        std::path::Path::new(&file).display()
                    ),
                })?;
            let (added, _) = roots.add_parsable_certificates(certs);
            if added == 0 {
                return Err(StoreError::InvalidArgument {
                    message: format!(
                        "${ROOT_CERT_ENV} ({}) holds no usable CA certificate",
                        std::path::Path::new(&file).display()
                    ),
                });
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| StoreError::Unavailable {
            location: location.to_string(),
            message: format!("cannot set up TLS: {e}"),
        })?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(MakeRustlsConnect::new(config))
}
