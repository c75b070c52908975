//! Real servers on loopback for integration tests: the fixture origin (http + https on one port), the proxy
//! configured to reach it through `--resolve`, and a small client that speaks to proxy hosts.
#![allow(dead_code)]

pub mod browser;
pub mod forward;
pub mod nats;
pub mod postgres;
pub mod ws;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use cobrowse_proxy::config::{Config, FileConfig, Overrides};
use cobrowse_proxy::fixture::FixtureOrigin;
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use tokio::sync::oneshot;

pub struct Stack {
    pub origin: FixtureOrigin,
    pub proxy: SocketAddr,
    /// The proxy's local CA folder (a fresh temporary one per stack).
    pub ca_dir: PathBuf,
    /// The proxy's data folder (a fresh temporary one per stack unless the test gave one).
    pub data_dir: PathBuf,
    /// Whether dropping the stack removes `data_dir` (only when the stack made it).
    owns_data_dir: bool,
    /// The origin's CA written out for the proxy to trust, removed with the stack.
    upstream_ca_file: Option<PathBuf>,
    /// `http://localhost:<port>`
    pub public: String,
    stop: Option<oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<()>>,
    client: Client<HttpConnector, Full<Bytes>>,
}

/// Options a test may change before the proxy starts.
pub struct Options {
    pub trust_origin_ca: bool,
    pub extra_resolve: Vec<String>,
    pub file: FileConfig,
    /// The cache's and the store's clock; the real one when `None`.
    pub clock: Option<std::sync::Arc<dyn cobrowse_proxy::cache::Clock>>,
    /// The store's folder, kept after `stop` (restart tests); a fresh temporary one when `None`.
    pub data_dir: Option<PathBuf>,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            trust_origin_ca: true,
            extra_resolve: Vec::new(),
            file: FileConfig::default(),
            clock: None,
            data_dir: None,
        }
    }
}

/// `&h=Name:Value…` query parameters for the fixture's `/_fx/respond`, percent-encoded.
pub fn header_params(headers: &[&str]) -> String {
    headers
        .iter()
        .map(|h| {
            format!(
                "&h={}",
                url::form_urlencoded::byte_serialize(h.as_bytes()).collect::<String>()
            )
        })
        .collect()
}

pub fn sites_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/sites")
}

pub async fn start() -> Stack {
    start_with(Options::default()).await
}

pub async fn start_with(options: Options) -> Stack {
    let origin = FixtureOrigin::start(sites_root())
        .await
        .expect("fixture origin starts");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxy = listener.local_addr().unwrap();
    let mut resolve = options.extra_resolve.clone();
    resolve.push(format!("*.test=127.0.0.1:{}", origin.addr.port()));
    let mut upstream_ca = Vec::new();
    if options.trust_origin_ca {
        let path = std::env::temp_dir().join(format!(
            "cobrowse-test-ca-{}-{}.pem",
            std::process::id(),
            proxy.port()
        ));
        std::fs::write(&path, &origin.ca_pem).unwrap();
        upstream_ca.push(path);
    }
    let upstream_ca_file = upstream_ca.first().cloned();
    let ca_dir = options.file.ca_dir.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!(
            "cobrowse-test-local-ca-{}-{}",
            std::process::id(),
            proxy.port()
        ))
    });
    let owns_data_dir = options.data_dir.is_none();
    let data_dir = options.data_dir.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!(
            "cobrowse-test-data-{}-{}",
            std::process::id(),
            proxy.port()
        ))
    });
    // Made here rather than by the spawned server, so tests can read it as soon as `start` returns.
    cobrowse_proxy::forward::ca::CertificateAuthority::load_or_create(&ca_dir).expect("local CA");
    let over = Overrides {
        listen: Some(proxy),
        resolve,
        upstream_ca,
        ca_dir: Some(ca_dir.clone()),
        data_dir: Some(data_dir.clone()),
        ..Overrides::default()
    };
    let config = Config::build(options.file, over).expect("valid test config");
    let public = config.public.origin();
    let (stop, stopped) = oneshot::channel::<()>();
    let clock = options
        .clock
        .unwrap_or_else(|| std::sync::Arc::new(cobrowse_proxy::cache::SystemClock));
    let server = tokio::spawn(async move {
        cobrowse_proxy::run_with_clock(config, clock, listener, async {
            let _ = stopped.await;
        })
        .await
        .expect("proxy runs");
    });
    let client = Client::builder(TokioExecutor::new()).build_http();
    Stack {
        origin,
        proxy,
        ca_dir,
        data_dir,
        owns_data_dir,
        upstream_ca_file,
        public,
        stop: Some(stop),
        server: Some(server),
        client,
    }
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
}

impl Stack {
    /// Creates a session through the API and returns (session id, visitor URL).
    pub async fn session(&self, url: &str) -> (String, String) {
        let reply = self.create_session(url).await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text());
        let json = reply.json();
        (
            json["id"].as_str().unwrap().to_owned(),
            json["visitor_url"].as_str().unwrap().to_owned(),
        )
    }

    /// `POST /api/sessions` for `url`, whatever the answer (for tests of refusals).
    pub async fn create_session(&self, url: &str) -> Reply {
        let body = serde_json::json!({ "url": url }).to_string();
        self.request(
            Method::POST,
            &format!("{}/api/sessions", self.public),
            &[("content-type", "application/json")],
            body,
        )
        .await
    }

    /// The proxy URL for a target URL within a session.
    pub fn proxied(&self, session: &str, target: &str) -> String {
        let public = cobrowse_proxy::url_codec::PublicOrigin::parse(&self.public).unwrap();
        let map = cobrowse_proxy::url_codec::ProxyMap::new(
            std::sync::Arc::new(public),
            cobrowse_proxy::url_codec::SessionId::parse(session).unwrap(),
        );
        map.to_proxy(&url::Url::parse(target).unwrap())
            .unwrap()
            .to_string()
    }

    pub async fn get(&self, url: &str) -> Reply {
        self.request(Method::GET, url, &[], "").await
    }

    /// Sends a request for `url` (a proxy or public URL) to the proxy's socket, with `Host` from the URL.
    pub async fn request(
        &self,
        method: Method,
        url: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Reply {
        let response = self.send(method, url, headers, body).await;
        let status = response.status();
        let headers = response.headers().clone();
        let body = tokio::time::timeout(Duration::from_secs(60), response.into_body().collect())
            .await
            .expect("body within 60 s")
            .expect("body completes")
            .to_bytes();
        Reply {
            status,
            headers,
            body,
        }
    }

    /// Like `request` but hands back the streaming response.
    pub async fn send(
        &self,
        method: Method,
        url: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Response<hyper::body::Incoming> {
        let parsed = url::Url::parse(url).unwrap();
        let host = match parsed.port() {
            Some(p) => format!("{}:{p}", parsed.host_str().unwrap()),
            None => parsed.host_str().unwrap().to_owned(),
        };
        let path = &parsed[url::Position::BeforePath..];
        let mut req = Request::builder()
            .method(method)
            .uri(format!("http://{}{path}", self.proxy))
            .header("host", host);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req.body(Full::new(body.into())).unwrap();
        tokio::time::timeout(Duration::from_secs(60), self.client.request(req))
            .await
            .expect("response within 60 s")
            .expect("proxy answers")
    }

    /// PEM of the proxy's local CA, which signs the leaves of intercepted hosts.
    pub fn proxy_ca_pem(&self) -> String {
        std::fs::read_to_string(self.ca_dir.join("ca.pem")).expect("the proxy created its CA")
    }

    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            let _ = tokio::time::timeout(Duration::from_secs(15), server).await;
        }
    }
}

/// The stack's temporary files go with it, also when a test ends without `stop` (or fails first).
impl Drop for Stack {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.ca_dir);
        if let Some(file) = &self.upstream_ca_file {
            let _ = std::fs::remove_file(file);
        }
        if self.owns_data_dir {
            let _ = std::fs::remove_dir_all(&self.data_dir);
        }
    }
}
