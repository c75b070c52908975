//! Accepting connections and answering requests: the connection cap, HTTP/1 and HTTP/2 (with upgrades)
//! on sockets and inside CONNECT tunnels, graceful shutdown, one log line per request, and the single edge
//! where errors become responses.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};

use http_body_util::BodyExt;

use crate::access_log::{AccessLog, LoggedBody};
use crate::body::ProxyBody;
use crate::error::{respond, ErrorFormat, ProxyError};
use crate::proxy::Mode;
use crate::router::{classify, Route};
use crate::url_codec::TargetOrigin;
use crate::Shared;
use sniff::{sniff, Version};

pub(crate) mod rewind;
mod sniff;

/// Most header fields in one HTTP/1.1 request; more gets 431.
const MAX_HEADERS: usize = 128;
/// Streams a client may reset before the server has taken them, per connection (h2's default).
const H2_MAX_PENDING_RESETS: usize = 20;
/// Streams the server may reset because of the client's errors before it ends the connection.
const H2_MAX_LOCAL_RESETS: usize = 200;
/// How long in-flight requests get to finish once shutdown begins.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// What a connection knows about where it came from.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    pub peer: SocketAddr,
    /// For a connection served inside a CONNECT tunnel: the origin the tunnel was opened to.
    pub tunnel: Option<TargetOrigin>,
}

/// The client's address, in every request's extensions: the socket's peer, never a forwarding header.
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub std::net::IpAddr);

/// Serves `listener` until `shutdown` resolves, then drains open connections (tunnelled ones too).
pub async fn serve(shared: Arc<Shared>, listener: TcpListener, shutdown: impl Future<Output = ()>) {
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => accept(&shared, stream, peer),
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    shared.shutdown.cancel();
    // Every connection holds a slot until it ends: all slots back means all connections are done.
    let all = u32::try_from(shared.config.limits.max_connections).unwrap_or(u32::MAX);
    let _ = tokio::time::timeout(DRAIN_TIMEOUT, shared.slots.acquire_many(all)).await;
}

fn accept(shared: &Arc<Shared>, stream: TcpStream, peer: SocketAddr) {
    // At the cap, a new connection is closed at once rather than queued without bound.
    let Ok(slot) = shared.slots.clone().try_acquire_owned() else {
        tracing::warn!("connection cap reached; refusing a connection");
        return;
    };
    let _ = stream.set_nodelay(true);
    let info = ConnInfo { peer, tunnel: None };
    let conn = serve_io(shared.clone(), stream, info);
    tokio::spawn(async move {
        conn.await;
        drop(slot);
    });
}

/// Serves HTTP/1.1 or HTTP/2 (with upgrades) on any byte stream: an accepted socket, or what a CONNECT
/// tunnel carries once its TLS is terminated. Every request takes the same path, whichever it is.
pub async fn serve_io<I>(shared: Arc<Shared>, io: I, info: ConnInfo)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let stop = shared.shutdown.clone();
    let limits = shared.config.limits.clone();
    let Some((version, io)) = sniff(io, limits.client_header_timeout()).await else {
        return;
    };
    let io = TokioIo::new(io);
    let service = service_fn(move |req| {
        let shared = shared.clone();
        let info = info.clone();
        // Boxed: hyper keeps a slot the size of the service's future in every connection, idle or not
        // (7 KB unboxed, by a heap profile of idle keep-alive connections); boxed, the slot is a
        // pointer and a request's state exists only while it runs.
        Box::pin(async move { Ok::<_, Infallible>(answer(shared, req, &info).await) })
    });
    let ended = match version {
        Version::H1 => {
            let conn = http1_builder(&limits)
                .serve_connection(io, service)
                .with_upgrades();
            until_done_or_drained!(conn, stop)
        }
        Version::H2 => {
            let conn = http2_builder(&limits).serve_connection(io, service);
            until_done_or_drained!(conn, stop)
        }
    };
    if let Some(Err(e)) = ended {
        tracing::debug!(error = %e, "connection ended with an error");
    }
}

/// Runs a connection to its end; once shutdown begins, lets it finish what is in flight for
/// `DRAIN_TIMEOUT`. `None` when it had to be cut off.
macro_rules! until_done_or_drained {
    ($conn:ident, $stop:ident) => {{
        tokio::pin!($conn);
        tokio::select! {
            ended = $conn.as_mut() => Some(ended),
            () = $stop.cancelled() => {
                $conn.as_mut().graceful_shutdown();
                tokio::time::timeout(DRAIN_TIMEOUT, $conn.as_mut()).await.ok()
            }
        }
    }};
}
use until_done_or_drained;

/// HTTP/1.1 settings that bound what one client connection can make the server hold.
fn http1_builder(limits: &crate::config::Limits) -> http1::Builder {
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.client_header_timeout())
        .max_buf_size(limits.max_request_head.max(8192))
        .max_headers(MAX_HEADERS);
    builder
}

/// HTTP/2 settings against rapid reset (CVE-2023-44487) and stream floods: few pending resets, few
/// locally caused resets, a bounded number of streams and of header bytes per connection.
fn http2_builder(limits: &crate::config::Limits) -> http2::Builder<TokioExecutor> {
    let mut builder = http2::Builder::new(TokioExecutor::new());
    builder
        .timer(TokioTimer::new())
        .max_concurrent_streams(limits.h2_max_streams)
        .max_pending_accept_reset_streams(H2_MAX_PENDING_RESETS)
        .max_local_error_reset_streams(H2_MAX_LOCAL_RESETS)
        .max_header_list_size(u32::try_from(limits.max_request_head).unwrap_or(u32::MAX));
    builder
}

/// [`serve_io`] for a connection carried by a CONNECT tunnel. That connection is served from inside a
/// request of another one; the boxed `Send` future gives the recursion a type the compiler can name.
pub fn serve_tunnelled<I>(
    shared: Arc<Shared>,
    io: I,
    info: ConnInfo,
) -> Pin<Box<dyn Future<Output = ()> + Send>>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    Box::pin(serve_io(shared, io, info))
}

/// Routes one request and turns any error into its answer: the single error edge.
async fn answer(
    shared: Arc<Shared>,
    mut req: Request<Incoming>,
    info: &ConnInfo,
) -> Response<ProxyBody> {
    let started = Instant::now();
    req.extensions_mut().insert(ClientAddr(info.peer.ip()));
    let route = classify(&req, &shared.public, info.tunnel.as_ref());
    let route_name = route.name();
    let method = req.method().clone();
    let format = error_format(&route, req.uri().path());
    let host = match &route {
        Route::Proxied { target, .. } | Route::Forward { target } => target.host_str(),
        _ => String::new(),
    };
    let tunnelled = info.tunnel.is_some();
    let result: Result<Response<ProxyBody>, ProxyError> = match route {
        Route::Console => crate::api::handle(&shared, req, info.peer.ip()).await,
        Route::Proxied { session, target } => {
            crate::proxy::handle(shared.clone(), req, Mode::Session(session), target).await
        }
        Route::Connect => crate::forward::connect::open(shared.clone(), req, info.peer).await,
        Route::Forward { target } => {
            crate::forward::handle(shared.clone(), req, target, tunnelled).await
        }
        Route::Unknown => Err(ProxyError::UnknownHost),
    };
    let response = result.unwrap_or_else(|e| respond(&e, format));
    shared.metrics.count_request(route_name, response.status());
    let log = AccessLog {
        route: route_name,
        method,
        host,
        status: response.status().as_u16(),
        started,
    };
    response.map(|body| LoggedBody::new(body, log).boxed_unsync())
}

fn error_format(route: &Route, path: &str) -> ErrorFormat {
    if matches!(route, Route::Console) && path.starts_with("/api/") {
        ErrorFormat::Json
    } else {
        ErrorFormat::Html
    }
}
