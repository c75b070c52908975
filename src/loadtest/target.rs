//! Where a visitor's requests go and how its connections are made: straight to the origin (plain or TLS),
//! to a proxy host of the rewriting proxy, or through the forward proxy (absolute-form or CONNECT + TLS).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{ACCEPT, HOST};
use http::Request;
use http_body_util::Empty;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::LoadError;

/// Longest a connection (TCP, CONNECT and TLS) may take to set up.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

pub(super) type Sender = SendRequest<Empty<Bytes>>;

/// How connections reach the site.
#[derive(Clone)]
pub(super) enum Via {
    /// Origin-form requests over plain HTTP/1.1 (the origin, or a proxy host of the rewriting proxy).
    Plain,
    /// Absolute-form requests to the forward proxy.
    Absolute,
    /// CONNECT through the forward proxy, then TLS trusting the proxy's CA.
    Tunnel(TlsConnector),
    /// TLS to the origin itself.
    Tls(TlsConnector),
}

/// One site as a visitor sees it.
pub(super) struct Target {
    /// The socket every connection dials (the origin or the proxy).
    pub(super) addr: SocketAddr,
    /// `Host` (and the TLS server name, the CONNECT authority's host).
    pub(super) host: String,
    pub(super) via: Via,
    /// Other hosts the same socket serves and the page loads from (the proxy's public origin: agent.js).
    pub(super) also: Vec<String>,
    /// Every request gets a unique query, so no cache can answer it (the cold-cache variant).
    pub(super) bust: bool,
    /// Whether visitors load the assets a page names, or only the page itself.
    pub(super) assets: bool,
}

impl Target {
    /// Opens one HTTP/1.1 connection.
    pub(super) async fn connect(&self) -> Result<Sender, LoadError> {
        let setup = async {
            let tcp = TcpStream::connect(self.addr).await?;
            tcp.set_nodelay(true)?;
            match &self.via {
                Via::Plain | Via::Absolute => handshake(tcp).await,
                Via::Tls(tls) => handshake(self.tls(tls, tcp).await?).await,
                Via::Tunnel(tls) => {
                    let tcp = self.connect_tunnel(tcp).await?;
                    handshake(self.tls(tls, tcp).await?).await
                }
            }
        };
        tokio::time::timeout(CONNECT_TIMEOUT, setup)
            .await
            .map_err(|_| LoadError::Timeout("connection set-up"))?
    }

    async fn tls<S>(
        &self,
        tls: &TlsConnector,
        stream: S,
    ) -> Result<tokio_rustls::client::TlsStream<S>, LoadError>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let name = rustls::pki_types::ServerName::try_from(self.host.clone())
            .map_err(|_| LoadError::Setup(format!("bad server name {}", self.host)))?;
        Ok(tls.connect(name, stream).await?)
    }

    async fn connect_tunnel(&self, mut tcp: TcpStream) -> Result<TcpStream, LoadError> {
        let head = format!(
            "CONNECT {0}:443 HTTP/1.1\r\nHost: {0}:443\r\n\r\n",
            self.host
        );
        tcp.write_all(head.as_bytes()).await?;
        // The proxy sends nothing after its answer until the client speaks TLS, so reading in blocks
        // cannot swallow bytes of the tunnel.
        let mut answer = Vec::with_capacity(256);
        let mut block = [0u8; 256];
        while !answer.ends_with(b"\r\n\r\n") {
            let n = tcp.read(&mut block).await?;
            if n == 0 || answer.len() > 8192 {
                return Err(LoadError::Setup("CONNECT answer cut short".into()));
            }
            answer.extend_from_slice(&block[..n]);
        }
        if !answer.starts_with(b"HTTP/1.1 200") {
            let line = String::from_utf8_lossy(&answer);
            let line = line.lines().next().unwrap_or_default().to_owned();
            return Err(LoadError::Setup(format!("CONNECT refused: {line}")));
        }
        Ok(tcp)
    }

    /// A GET for `path` on `host` (the target's own host when `None`), as this target sends it.
    pub(super) fn request(
        &self,
        host: Option<&str>,
        path: &str,
        unique: u64,
    ) -> Result<Request<Empty<Bytes>>, LoadError> {
        let host = host.unwrap_or(&self.host);
        let path = if self.bust {
            let sep = if path.contains('?') { '&' } else { '?' };
            format!("{path}{sep}bust={unique}")
        } else {
            path.to_owned()
        };
        let uri = match self.via {
            Via::Absolute => format!("http://{host}{path}"),
            _ => path,
        };
        Request::get(uri)
            .header(HOST, host)
            .header(ACCEPT, "*/*")
            .body(Empty::new())
            .map_err(|e| LoadError::Setup(format!("bad request: {e}")))
    }

    /// Whether a URL's host is served on this target's connections.
    pub(super) fn serves(&self, host: &str) -> bool {
        host == self.host || self.also.iter().any(|h| h == host)
    }
}

async fn handshake<S>(io: S) -> Result<Sender, LoadError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (sender, conn) = http1::handshake(TokioIo::new(io)).await?;
    tokio::spawn(async move {
        // A connection that ends shows up as a failed request on its sender; nothing to do here.
        let _ = conn.await;
    });
    Ok(sender)
}

/// A TLS client trusting only `ca_pem`, speaking HTTP/1.1.
pub(super) fn tls_connector(ca_pem: &str) -> Result<TlsConnector, LoadError> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut ca_pem.as_bytes()) {
        roots
            .add(cert?)
            .map_err(|e| LoadError::Setup(format!("CA: {e}")))?;
    }
    let mut config = crate::tls::client_config(roots)
        .map_err(|e| LoadError::Setup(format!("TLS client: {e}")))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsConnector::from(Arc::new(config)))
}
