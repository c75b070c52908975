//! The upstream side: one pooled hyper-util client over rustls (HTTP/1.1 and HTTP/2 by ALPN), connecting
//! through the [`guard`]ed resolver, with connect, header and body-idle timeouts.
//!
//! Policy on *which* targets are allowed lives in `guard`; this module only sends and classifies failures.

pub mod guard;
mod idle;

use std::error::Error as _;
use std::net::{IpAddr, SocketAddr};

use http::{header, HeaderValue, Request, Response, StatusCode, Uri};
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tokio::net::TcpStream;

use crate::body::ProxyBody;
use crate::config::{Config, UpstreamTimeouts};
use guard::{GuardedResolver, ResolveError};
pub use idle::IdleTimeoutBody;

#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("{host} is not a public address and is not mapped with --resolve: {refused}")]
    Guard {
        host: String,
        refused: guard::Refused,
    },
    #[error("could not resolve {host}: {detail}")]
    Dns { host: String, detail: String },
    #[error("{host} refused the connection")]
    Refused { host: String },
    #[error("TLS with {host} failed: {detail}")]
    Tls { host: String, detail: String },
    #[error("{host} did not answer in time ({phase})")]
    Timeout { host: String, phase: &'static str },
    #[error("request to {host} failed: {detail}")]
    Failed { host: String, detail: String },
    #[error("cannot build the upstream client: {0}")]
    Setup(String),
    #[error("{host} is not allowed by this deployment's target policy")]
    Denied { host: String },
}

impl UpstreamError {
    pub fn status(&self) -> StatusCode {
        match self {
            UpstreamError::Guard { .. } | UpstreamError::Denied { .. } => StatusCode::FORBIDDEN,
            UpstreamError::Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            UpstreamError::Setup(_) => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::BAD_GATEWAY,
        }
    }

    /// A refused target is the client's doing, not the upstream's.
    pub fn is_client_side(&self) -> bool {
        matches!(
            self,
            UpstreamError::Guard { .. } | UpstreamError::Denied { .. }
        )
    }
}

type Connector = HttpsConnector<HttpConnector<GuardedResolver>>;

pub struct Upstream {
    client: Client<Connector, ProxyBody>,
    /// Upgrades (WebSocket) need HTTP/1.1 end to end, so they never share an h2 connection.
    http1_client: Client<Connector, ProxyBody>,
    resolver: GuardedResolver,
    timeouts: UpstreamTimeouts,
    targets: crate::access::TargetPolicy,
}

impl Upstream {
    pub fn new(config: &Config) -> Result<Upstream, UpstreamError> {
        let resolver = GuardedResolver::new(config.resolve.clone().into(), &config.dns_servers);
        let mut http = HttpConnector::new_with_resolver(resolver.clone());
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(config.upstream.connect()));
        let tls = tls_config(&config.upstream_ca)?;
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls.clone())
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .wrap_connector(http.clone());
        let https1 = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        Ok(Upstream {
            client: pooled_client(https),
            http1_client: pooled_client(https1),
            resolver,
            timeouts: config.upstream.clone(),
            targets: config.targets.clone(),
        })
    }

    pub fn timeouts(&self) -> &UpstreamTimeouts {
        &self.timeouts
    }

    /// Sends a request whose URI is the absolute target URL. Redirects are never followed here: the client
    /// follows the rewritten `Location` itself.
    pub async fn send(
        &self,
        mut req: Request<ProxyBody>,
        upgrade: bool,
    ) -> Result<Response<Incoming>, UpstreamError> {
        let host = req.uri().host().unwrap_or_default().to_owned();
        self.check_target(&host)?;
        self.apply_resolve_port(&mut req, &host)?;
        let client = if upgrade {
            &self.http1_client
        } else {
            &self.client
        };
        let sent = tokio::time::timeout(self.timeouts.headers(), client.request(req)).await;
        match sent {
            Err(_) => Err(UpstreamError::Timeout {
                host,
                phase: "waiting for response headers",
            }),
            Ok(Err(e)) => Err(classify(&host, &e)),
            // HTTP/1 is capped by the parser; HTTP/2 only by bytes, so count fields here too.
            Ok(Ok(response)) if response.headers().len() > MAX_RESPONSE_HEADERS => {
                Err(UpstreamError::Failed {
                    host,
                    detail: format!("more than {MAX_RESPONSE_HEADERS} response header fields"),
                })
            }
            Ok(Ok(response)) => Ok(response),
        }
    }

    /// Where a tunnel to `host:port` would go: through `--resolve` and the guard, as every request does.
    pub async fn resolve(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, UpstreamError> {
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        self.check_target(host)?;
        if let Ok(ip) = bare.parse::<IpAddr>() {
            if self.resolver.rule_for(bare).is_none() {
                return Ok(vec![SocketAddr::new(ip, port)]);
            }
        }
        let found = self.resolver.clone().lookup(bare.to_owned()).await;
        let addrs = found.map_err(|e| match e {
            ResolveError::Refused(refused) => UpstreamError::Guard {
                host: host.to_owned(),
                refused,
            },
            ResolveError::Dns(detail) => UpstreamError::Dns {
                host: host.to_owned(),
                detail,
            },
        })?;
        Ok(addrs
            .map(|a| SocketAddr::new(a.ip(), if a.port() == 0 { port } else { a.port() }))
            .collect())
    }

    /// A raw TCP connection for a blind tunnel, to the first of `addrs` (from [`resolve`](Self::resolve))
    /// that answers.
    pub async fn connect_addrs(
        &self,
        host: &str,
        addrs: Vec<SocketAddr>,
    ) -> Result<TcpStream, UpstreamError> {
        let attempt = async {
            let mut refused = false;
            for addr in addrs {
                match TcpStream::connect(addr).await {
                    Ok(stream) => return Ok(stream),
                    Err(e) => refused |= e.kind() == std::io::ErrorKind::ConnectionRefused,
                }
            }
            Err(refused)
        };
        match tokio::time::timeout(self.timeouts.connect(), attempt).await {
            Ok(Ok(stream)) => {
                let _ = stream.set_nodelay(true);
                Ok(stream)
            }
            Ok(Err(true)) => Err(UpstreamError::Refused {
                host: host.to_owned(),
            }),
            Ok(Err(false)) => Err(UpstreamError::Failed {
                host: host.to_owned(),
                detail: "no address could be reached".into(),
            }),
            Err(_) => Err(UpstreamError::Timeout {
                host: host.to_owned(),
                phase: "connecting",
            }),
        }
    }

    /// IP-literal targets never reach the resolver, so the guard checks them here.
    /// The deployment's allow/deny lists, then the guard for an IP literal (names are guarded when
    /// resolved, on the addresses the connector dials).
    fn check_target(&self, host: &str) -> Result<(), UpstreamError> {
        if !self.targets.permits(host) {
            return Err(UpstreamError::Denied {
                host: host.to_owned(),
            });
        }
        self.check_ip_literal(host)
    }

    fn check_ip_literal(&self, host: &str) -> Result<(), UpstreamError> {
        let literal = host.trim_start_matches('[').trim_end_matches(']');
        let Ok(ip) = literal.parse() else {
            return Ok(());
        };
        if self.resolver.rule_for(literal).is_some() {
            return Ok(());
        }
        guard::check(ip).map_err(|refused| UpstreamError::Guard {
            host: host.to_owned(),
            refused,
        })
    }

    /// A `--resolve` rule with a port sends every port of its hosts there: the connector keeps a resolved
    /// port only when the URI names none, so the port leaves the URI and stays in the Host header.
    fn apply_resolve_port(
        &self,
        req: &mut Request<ProxyBody>,
        host: &str,
    ) -> Result<(), UpstreamError> {
        let authority = req.uri().authority().map(|a| a.as_str().to_owned());
        if let Some(authority) = &authority {
            let value = HeaderValue::from_str(authority)
                .map_err(|e| UpstreamError::Setup(e.to_string()))?;
            req.headers_mut().insert(header::HOST, value);
        }
        let mapped_port = self.resolver.rule_for(host).and_then(|r| r.port);
        if mapped_port.is_none() || req.uri().port().is_none() {
            return Ok(());
        }
        let mut parts = req.uri().clone().into_parts();
        let bare = if host.contains(':') && !host.starts_with('[') {
            format!("[{host}]")
        } else {
            host.to_owned()
        };
        parts.authority = Some(bare.parse().map_err(|_| UpstreamError::Failed {
            host: host.to_owned(),
            detail: "invalid authority".into(),
        })?);
        *req.uri_mut() = Uri::from_parts(parts).map_err(|e| UpstreamError::Setup(e.to_string()))?;
        Ok(())
    }
}

/// Most header fields an upstream response may carry; a flood beyond it is a 502, not memory.
const MAX_RESPONSE_HEADERS: usize = 256;
/// Most bytes of an upstream response head.
const MAX_RESPONSE_HEAD: usize = 256 << 10;

fn pooled_client(connector: Connector) -> Client<Connector, ProxyBody> {
    Client::builder(TokioExecutor::new())
        .http1_max_headers(MAX_RESPONSE_HEADERS)
        .http1_max_buf_size(MAX_RESPONSE_HEAD)
        .http2_max_header_list_size(u32::try_from(MAX_RESPONSE_HEAD).unwrap_or(u32::MAX))
        .pool_idle_timeout(std::time::Duration::from_secs(90))
        .pool_max_idle_per_host(64)
        .pool_timer(TokioTimer::new())
        .timer(TokioTimer::new())
        .build(connector)
}

fn tls_config(extra_ca: &[std::path::PathBuf]) -> Result<rustls::ClientConfig, UpstreamError> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    for path in extra_ca {
        let pem = std::fs::read(path)
            .map_err(|e| UpstreamError::Setup(format!("--upstream-ca {}: {e}", path.display())))?;
        for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
            let cert =
                cert.map_err(|e| UpstreamError::Setup(format!("{}: {e}", path.display())))?;
            roots
                .add(cert)
                .map_err(|e| UpstreamError::Setup(format!("{}: {e}", path.display())))?;
        }
    }
    crate::tls::client_config(roots).map_err(|e| UpstreamError::Setup(e.to_string()))
}

/// Names the failure from the error's source chain (hyper-util wraps the connector's errors).
fn classify(host: &str, err: &hyper_util::client::legacy::Error) -> UpstreamError {
    let host = host.to_owned();
    let mut source = err.source();
    while let Some(cause) = source {
        if let Some(resolve) = cause.downcast_ref::<ResolveError>() {
            return match resolve {
                ResolveError::Refused(refused) => UpstreamError::Guard {
                    host,
                    refused: refused.clone(),
                },
                ResolveError::Dns(detail) => UpstreamError::Dns {
                    host,
                    detail: detail.clone(),
                },
            };
        }
        if let Some(tls) = cause.downcast_ref::<rustls::Error>() {
            return UpstreamError::Tls {
                host,
                detail: tls.to_string(),
            };
        }
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            match io.kind() {
                std::io::ErrorKind::ConnectionRefused => return UpstreamError::Refused { host },
                std::io::ErrorKind::TimedOut => {
                    return UpstreamError::Timeout {
                        host,
                        phase: "connecting",
                    }
                }
                _ => {}
            }
        }
        source = next_cause(cause);
    }
    UpstreamError::Failed {
        host,
        detail: error_chain(err),
    }
}

/// The next error in a chain. `io::Error::source` skips the error it wraps, so descend into that first.
fn next_cause<'a>(
    cause: &'a (dyn std::error::Error + 'static),
) -> Option<&'a (dyn std::error::Error + 'static)> {
    match cause
        .downcast_ref::<std::io::Error>()
        .and_then(|io| io.get_ref())
    {
        Some(inner) => Some(inner as &(dyn std::error::Error + 'static)),
        None => cause.source(),
    }
}

/// `a: b: c` from an error and its sources: hyper's own Display names only the outermost layer.
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
