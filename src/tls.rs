//! rustls configurations, built in one place: the `ring` provider named explicitly (no process-wide default
//! to install, no cmake for aws-lc), safe protocol versions, and the ALPN list we serve and ask for.

use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// What we offer over TLS, in order of preference.
pub const ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn alpn() -> Vec<Vec<u8>> {
    ALPN.iter().map(|p| p.to_vec()).collect()
}

/// A server presenting `chain` with `key`, offering h2 and http/1.1.
pub fn server_config(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<rustls::ServerConfig, rustls::Error> {
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    config.alpn_protocols = alpn();
    Ok(config)
}

/// A client trusting `roots`. ALPN is left to the caller's connector (hyper-rustls sets its own).
pub fn client_config(roots: rustls::RootCertStore) -> Result<rustls::ClientConfig, rustls::Error> {
    Ok(rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth())
}
