//! The local certificate authority for TLS interception: created once in `certs/` (the private key
//! readable by its owner only, and git-ignored), then a leaf certificate per intercepted host, signed by
//! the CA. Leaves share one key generated per process (never the CA's key) and are cached as ready
//! `rustls::ServerConfig`s (ALPN h2 and http/1.1), so a hot host costs no signing.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

const CERT_FILE: &str = "ca.pem";
const KEY_FILE: &str = "ca-key.pem";
/// Leaves are short-lived: a process rarely outlives them, and a leaked one expires soon.
const LEAF_VALIDITY: Duration = Duration::from_secs(7 * 24 * 3600);
/// Accept some client clock skew.
const LEAF_BACKDATE: Duration = Duration::from_secs(24 * 3600);
const CA_VALIDITY: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

#[derive(Debug, thiserror::Error)]
pub enum CaError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("certificate: {0}")]
    Cert(#[from] rcgen::Error),
    #[error("TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
    #[error("not a host name or IP address: {0:?}")]
    BadHost(String),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CaError + '_ {
    move |source| CaError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Where the CA certificate lives in `dir`, for `curl --cacert` or a browser's trust store.
pub fn cert_path(dir: &Path) -> PathBuf {
    dir.join(CERT_FILE)
}

pub struct CertificateAuthority {
    issuer: rcgen::Certificate,
    issuer_key: KeyPair,
    cert_pem: String,
    /// The CA certificate as stored, sent after each leaf: clients that pin or allow-list the CA's key
    /// (Chromium's `--ignore-certificate-errors-spki-list`) find it in the chain.
    cert_der: CertificateDer<'static>,
    leaf_key: KeyPair,
    leaves: moka::sync::Cache<String, Arc<rustls::ServerConfig>>,
}

impl CertificateAuthority {
    /// Loads the CA from `dir`, creating it (and `dir`) first if absent. Returns whether it was created.
    pub fn load_or_create(dir: &Path) -> Result<(CertificateAuthority, bool), CaError> {
        let created = ensure(dir)?;
        let cert_pem =
            std::fs::read_to_string(dir.join(CERT_FILE)).map_err(io(&dir.join(CERT_FILE)))?;
        let key_pem =
            std::fs::read_to_string(dir.join(KEY_FILE)).map_err(io(&dir.join(KEY_FILE)))?;
        let issuer_key = KeyPair::from_pem(&key_pem)?;
        // rcgen signs with an issuer `Certificate`; rebuilt from the stored one (same name, same key).
        let issuer = CertificateParams::from_ca_cert_pem(&cert_pem)?.self_signed(&issuer_key)?;
        let cert_der = rustls_pemfile::certs(&mut cert_pem.as_bytes())
            .next()
            .ok_or(CaError::Cert(rcgen::Error::CouldNotParseCertificate))?
            .map_err(|source| CaError::Io {
                path: dir.join(CERT_FILE),
                source,
            })?;
        let ca = CertificateAuthority {
            issuer,
            issuer_key,
            cert_pem,
            cert_der,
            leaf_key: KeyPair::generate()?,
            leaves: moka::sync::Cache::builder()
                .max_capacity(10_000)
                .time_to_live(LEAF_VALIDITY / 2)
                .build(),
        };
        Ok((ca, created))
    }

    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// Base64 SHA-256 of the CA's SubjectPublicKeyInfo: what Chromium's
    /// `--ignore-certificate-errors-spki-list` takes, to trust the CA without touching a trust store.
    pub fn spki_sha256(&self) -> String {
        use base64::Engine;
        use sha2::Digest;
        let digest = sha2::Sha256::digest(self.issuer_key.public_key_der());
        base64::engine::general_purpose::STANDARD.encode(digest)
    }

    /// A server configuration presenting a leaf for `host` (a DNS name or an IP literal), from cache.
    pub fn server_config(&self, host: &str) -> Result<Arc<rustls::ServerConfig>, CaError> {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        if let Some(config) = self.leaves.get(&host) {
            return Ok(config);
        }
        let config = Arc::new(self.build_config(&host)?);
        self.leaves.insert(host, config.clone());
        Ok(config)
    }

    fn build_config(&self, host: &str) -> Result<rustls::ServerConfig, CaError> {
        let leaf =
            self.leaf_params(host)?
                .signed_by(&self.leaf_key, &self.issuer, &self.issuer_key)?;
        let chain = vec![
            CertificateDer::from(leaf.der().to_vec()),
            self.cert_der.clone(),
        ];
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.leaf_key.serialize_der()));
        Ok(crate::tls::server_config(chain, key)?)
    }

    fn leaf_params(&self, host: &str) -> Result<CertificateParams, CaError> {
        let valid_name = !host.is_empty()
            && host.len() <= 253
            && (host.parse::<IpAddr>().is_ok()
                || host
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_'));
        if !valid_name {
            return Err(CaError::BadHost(host.to_owned()));
        }
        let mut params = CertificateParams::new(vec![host.to_owned()])?;
        let mut name = DistinguishedName::new();
        name.push(
            DnType::CommonName,
            host.chars().take(64).collect::<String>(),
        );
        params.distinguished_name = name;
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - LEAF_BACKDATE;
        params.not_after = now + LEAF_VALIDITY;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        Ok(params)
    }
}

/// Creates the CA files in `dir` unless both exist. The key is written owner-only before any byte of it.
fn ensure(dir: &Path) -> Result<bool, CaError> {
    let (cert, key) = (dir.join(CERT_FILE), dir.join(KEY_FILE));
    if cert.exists() && key.exists() {
        return Ok(false);
    }
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let key_pair = KeyPair::generate()?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, "cobrowse-proxy local CA");
    name.push(DnType::OrganizationName, "cobrowse-proxy");
    params.distinguished_name = name;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - LEAF_BACKDATE;
    params.not_after = now + CA_VALIDITY;
    let ca = params.self_signed(&key_pair)?;
    write_private(&key, key_pair.serialize_pem().as_bytes())?;
    std::fs::write(&cert, ca.pem()).map_err(io(&cert))?;
    Ok(true)
}

#[cfg(unix)]
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), CaError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(io(path))?;
    file.write_all(bytes).map_err(io(path))
}

#[cfg(not(unix))]
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), CaError> {
    std::fs::write(path, bytes).map_err(io(path))
}

#[cfg(test)]
mod tests;
