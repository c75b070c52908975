use super::*;
use std::sync::atomic::{AtomicUsize, Ordering};

fn temp_dir() -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "cobrowse-ca-test-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

#[test]
fn created_once_with_an_owner_only_key() {
    let dir = temp_dir();
    let (first, created) = CertificateAuthority::load_or_create(&dir).unwrap();
    assert!(created);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.join(KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let (second, created) = CertificateAuthority::load_or_create(&dir).unwrap();
    assert!(!created, "an existing CA is reused");
    assert_eq!(first.cert_pem(), second.cert_pem());
    assert_eq!(cert_path(&dir), dir.join("ca.pem"));
    assert_ne!(
        first.leaf_key.public_key_der(),
        first.issuer_key.public_key_der(),
        "leaves never use the CA key"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn leaf_configs_are_cached_and_bad_hosts_refused() {
    let dir = temp_dir();
    let (ca, _) = CertificateAuthority::load_or_create(&dir).unwrap();
    let a = ca.server_config("www.shop.test").unwrap();
    let b = ca.server_config("WWW.shop.test.").unwrap();
    assert!(Arc::ptr_eq(&a, &b), "a hot host costs no signing");
    assert!(matches!(
        ca.server_config("bad host"),
        Err(CaError::BadHost(_))
    ));
    assert!(matches!(ca.server_config(""), Err(CaError::BadHost(_))));
    let _ = std::fs::remove_dir_all(&dir);
}

/// A real handshake over loopback: the client trusts only the CA, and sees ALPN h2.
async fn handshake(ca: &CertificateAuthority, host: &str) -> Option<Vec<u8>> {
    use rustls::pki_types::ServerName;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(ca.server_config(host).unwrap());
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let _ = acceptor.accept(tcp).await;
    });
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut ca.cert_pem().as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let mut config = crate::tls::client_config(roots).unwrap();
    config.alpn_protocols = crate::tls::ALPN.iter().map(|p| p.to_vec()).collect();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = ServerName::try_from(host.to_owned()).unwrap();
    let tls = connector.connect(name, tcp).await.ok()?;
    let alpn = tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
    drop(tls);
    let _ = server.await;
    alpn
}

#[tokio::test]
async fn clients_trusting_the_ca_accept_leaves_for_names_and_ips() {
    let dir = temp_dir();
    let (ca, _) = CertificateAuthority::load_or_create(&dir).unwrap();
    assert_eq!(
        handshake(&ca, "www.shop.test").await.as_deref(),
        Some(&b"h2"[..])
    );
    assert_eq!(
        handshake(&ca, "127.0.0.1").await.as_deref(),
        Some(&b"h2"[..])
    );
    // Another CA's client does not trust these leaves.
    let other_dir = temp_dir();
    let (other, _) = CertificateAuthority::load_or_create(&other_dir).unwrap();
    let leaf_from_ca = ca.server_config("www.shop.test").unwrap();
    let other_view = CertificateAuthority {
        leaves: moka::sync::Cache::new(1),
        ..other
    };
    other_view
        .leaves
        .insert("www.shop.test".into(), leaf_from_ca);
    assert_eq!(handshake(&other_view, "www.shop.test").await, None);
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&other_dir);
}
