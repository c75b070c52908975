//! The fixture origin and the proxy, started in this process on loopback ports, as the tests start them.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::sync::oneshot;

use super::LoadError;
use crate::config::{Config, FileConfig, Overrides};
use crate::fixture::FixtureOrigin;
use crate::url_codec::{ProxyMap, PublicOrigin, SessionId};

pub(super) struct Stack {
    pub(super) origin: FixtureOrigin,
    pub(super) proxy: SocketAddr,
    pub(super) public: Arc<PublicOrigin>,
    /// PEM of the proxy's local CA (what a forward-proxy client trusts for intercepted TLS).
    pub(super) proxy_ca_pem: String,
    scratch: PathBuf,
    stop: Option<oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<()>>,
}

/// A folder of this run's files (origin CA, proxy CA), removed at the end.
pub(super) fn scratch_dir() -> PathBuf {
    std::env::temp_dir().join(format!("cobrowse-loadtest-{}", std::process::id()))
}

/// Writes the origin's CA where the proxy's `--upstream-ca` can read it.
pub(super) fn write_origin_ca(
    scratch: &Path,
    origin: &FixtureOrigin,
) -> Result<PathBuf, LoadError> {
    std::fs::create_dir_all(scratch)?;
    let path = scratch.join("origin-ca.pem");
    std::fs::write(&path, &origin.ca_pem)?;
    Ok(path)
}

impl Stack {
    pub(super) async fn start(sites: PathBuf) -> Result<Stack, LoadError> {
        let origin = FixtureOrigin::start(sites).await?;
        let scratch = scratch_dir();
        let origin_ca = write_origin_ca(&scratch, &origin)?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let proxy = listener.local_addr()?;
        let ca_dir = scratch.join("proxy-ca");
        let (ca, _) = crate::forward::ca::CertificateAuthority::load_or_create(&ca_dir)
            .map_err(|e| LoadError::Setup(format!("proxy CA: {e}")))?;
        let over = Overrides {
            listen: Some(proxy),
            resolve: vec![origin.resolve_rule()],
            upstream_ca: vec![origin_ca],
            ca_dir: Some(ca_dir),
            data_dir: Some(scratch.join("data")),
            ..Overrides::default()
        };
        let config = Config::build(FileConfig::default(), over)
            .map_err(|e| LoadError::Setup(e.to_string()))?;
        let public = Arc::new(config.public.clone());
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            let ended = crate::run(config, listener, async {
                let _ = stopped.await;
            })
            .await;
            if let Err(e) = ended {
                tracing::error!(error = %e, "load-test proxy failed to start");
            }
        });
        Ok(Stack {
            origin,
            proxy,
            public,
            proxy_ca_pem: ca.cert_pem().to_owned(),
            scratch,
            stop: Some(stop),
            server: Some(server),
        })
    }

    /// A co-browsing session for `url`; returns the proxy host (`host:port`) serving that URL's origin.
    pub(super) async fn proxy_host(&self, url: &str) -> Result<String, LoadError> {
        let id = create_session(self.proxy, &self.public, url).await?;
        let map = ProxyMap::new(self.public.clone(), id);
        let target = url::Url::parse(url).map_err(|e| LoadError::Setup(e.to_string()))?;
        let proxied = map
            .to_proxy(&target)
            .ok_or_else(|| LoadError::Setup(format!("no proxy host for {url}")))?;
        authority(&proxied)
    }

    pub(super) async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            let _ = tokio::time::timeout(std::time::Duration::from_secs(15), server).await;
        }
        let _ = std::fs::remove_dir_all(&self.scratch);
        self.origin.stop().await;
    }
}

/// `POST /api/sessions` on the proxy at `addr`; the new session's id.
pub(super) async fn create_session(
    addr: SocketAddr,
    public: &PublicOrigin,
    url: &str,
) -> Result<SessionId, LoadError> {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let body = serde_json::json!({ "url": url }).to_string();
    let host = public.origin();
    let host = host.trim_start_matches("http://");
    let req = http::Request::post(format!("http://{addr}/api/sessions"))
        .header("host", host)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| LoadError::Setup(e.to_string()))?;
    let res = client
        .request(req)
        .await
        .map_err(|e| LoadError::Setup(format!("session: {e}")))?;
    let bytes = res.into_body().collect().await?.to_bytes();
    let json: serde_json::Value = serde_json::from_slice(&bytes)
        .map_err(|_| LoadError::Setup("session: no JSON answer".into()))?;
    json["id"]
        .as_str()
        .and_then(SessionId::parse)
        .ok_or_else(|| LoadError::Setup(format!("session refused: {json}")))
}

/// `host:port` of a URL (the form a `Host` header takes).
pub(super) fn authority(url: &url::Url) -> Result<String, LoadError> {
    let host = url
        .host_str()
        .ok_or_else(|| LoadError::Setup(format!("no host in {url}")))?;
    Ok(match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_owned(),
    })
}
