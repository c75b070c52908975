//! Accepting connections and answering requests: the connection cap, HTTP/1 and HTTP/2 (with upgrades),
//! graceful shutdown, one log line per request, and the single edge where errors become responses.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use http_body_util::BodyExt;

use crate::access_log::{AccessLog, LoggedBody};
use crate::body::ProxyBody;
use crate::error::{respond, ErrorFormat, ProxyError};
use crate::router::{classify, Route};
use crate::Shared;

/// How long a client may take to send its request headers.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// How long in-flight requests get to finish once shutdown begins.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves `listener` until `shutdown` resolves, then drains open connections.
pub async fn serve(shared: Arc<Shared>, listener: TcpListener, shutdown: impl Future<Output = ()>) {
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(Semaphore::new(shared.config.limits.max_connections));
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    // At the cap, a new connection is closed at once rather than queued without bound.
                    let Ok(permit) = slots.clone().try_acquire_owned() else {
                        tracing::warn!("connection cap reached; refusing a connection");
                        continue;
                    };
                    let conn = serve_connection(shared.clone(), stream, peer, &graceful);
                    tokio::spawn(async move {
                        conn.await;
                        drop(permit);
                    });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    let _ = tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown()).await;
}

fn serve_connection(
    shared: Arc<Shared>,
    stream: TcpStream,
    peer: SocketAddr,
    graceful: &GracefulShutdown,
) -> impl Future<Output = ()> + Send + 'static {
    let _ = stream.set_nodelay(true);
    let service = service_fn(move |req| {
        let shared = shared.clone();
        async move { Ok::<_, Infallible>(answer(shared, req, peer).await) }
    });
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    let conn = builder
        .serve_connection_with_upgrades(TokioIo::new(stream), service)
        .into_owned();
    let conn = graceful.watch(conn);
    async move {
        if let Err(e) = conn.await {
            tracing::debug!(error = %e, "connection ended with an error");
        }
    }
}

/// Routes one request and turns any error into its answer: the single error edge.
async fn answer(
    shared: Arc<Shared>,
    req: Request<Incoming>,
    _peer: SocketAddr,
) -> Response<ProxyBody> {
    let started = Instant::now();
    let route = classify(&req, &shared.public);
    let route_name = route.name();
    let method = req.method().clone();
    let format = error_format(&route, req.uri().path());
    let host = match &route {
        Route::Proxied { target, .. } => target.host_str(),
        _ => String::new(),
    };
    let result: Result<Response<ProxyBody>, ProxyError> = match route {
        Route::Console => crate::api::handle(&shared, req).await,
        Route::Proxied { session, target } => {
            crate::proxy::handle(shared.clone(), req, session, target).await
        }
        Route::Forward => Err(ProxyError::ForwardUnavailable),
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
