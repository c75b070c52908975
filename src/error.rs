//! `ProxyError`, and the single edge where an error becomes an HTTP answer.
//!
//! Inside the crate every failure is a typed error with a [`Side`]; `respond` is the only place that picks a
//! status code and writes an error page, so the same failure always looks the same to a client.

use http::{header, Response, StatusCode};

use crate::body::{full, ProxyBody};
use crate::upstream::UpstreamError;

/// Who caused a failure: decides the status class and the log level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Client,
    Upstream,
    Internal,
}

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("bad request: {0}")]
    BadRequest(String),
    #[error("this host is not served here")]
    UnknownHost,
    #[error("no such session, or it has expired")]
    SessionNotFound,
    #[error("not found")]
    NotFound,
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("a valid API token is required")]
    Unauthorized,
    #[error("request body too large")]
    PayloadTooLarge,
    #[error("the request body did not arrive in time")]
    ClientTimeout,
    #[error("target not allowed: {0}")]
    Forbidden(String),
    #[error("the forward proxy needs credentials: Proxy-Authorization: Basic with the API token as password")]
    ProxyAuthRequired,
    #[error("request loop: {0}")]
    Loop(&'static str),
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    #[error(transparent)]
    Relay(#[from] crate::relay::RelayError),
    #[error("too many {0} from this address; try again in a minute")]
    TooManyRequests(&'static str),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error("{0}")]
    Session(#[from] crate::session::SessionError),
    #[error("internal error: {0}")]
    Internal(String),
}

impl ProxyError {
    pub fn side(&self) -> Side {
        match self {
            ProxyError::Upstream(e) if e.is_client_side() => Side::Client,
            ProxyError::Upstream(_) => Side::Upstream,
            ProxyError::Internal(_) | ProxyError::Store(_) | ProxyError::Session(_) => {
                Side::Internal
            }
            _ => Side::Client,
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ProxyError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ProxyError::UnknownHost => StatusCode::MISDIRECTED_REQUEST,
            ProxyError::SessionNotFound | ProxyError::NotFound => StatusCode::NOT_FOUND,
            ProxyError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ProxyError::Unauthorized => StatusCode::UNAUTHORIZED,
            ProxyError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ProxyError::ClientTimeout => StatusCode::REQUEST_TIMEOUT,
            ProxyError::Forbidden(_) => StatusCode::FORBIDDEN,
            ProxyError::ProxyAuthRequired => StatusCode::PROXY_AUTHENTICATION_REQUIRED,
            ProxyError::Loop(_) => StatusCode::LOOP_DETECTED,
            ProxyError::Upstream(e) => e.status(),
            ProxyError::Relay(e) => e.status(),
            ProxyError::TooManyRequests(_) => StatusCode::TOO_MANY_REQUESTS,
            ProxyError::Store(_) | ProxyError::Session(_) => StatusCode::SERVICE_UNAVAILABLE,
            ProxyError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// How the client wants the error: API clients get JSON, browsers a short page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorFormat {
    Html,
    Json,
}

/// The single error → HTTP edge.
pub fn respond(err: &ProxyError, format: ErrorFormat) -> Response<ProxyBody> {
    let status = err.status();
    match err.side() {
        Side::Internal => tracing::error!(status = status.as_u16(), error = %err, "request failed"),
        Side::Upstream => tracing::warn!(status = status.as_u16(), error = %err, "upstream failed"),
        Side::Client => tracing::debug!(status = status.as_u16(), error = %err, "request refused"),
    }
    let message = err.to_string();
    let (content_type, body) = match format {
        ErrorFormat::Json => (
            "application/json",
            serde_json::json!({ "error": message }).to_string(),
        ),
        ErrorFormat::Html => ("text/html; charset=utf-8", error_page(status, &message)),
    };
    let mut response = Response::new(full(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    headers.insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        header::HeaderValue::from_static("nosniff"),
    );
    if matches!(err, ProxyError::TooManyRequests(_)) {
        headers.insert(header::RETRY_AFTER, header::HeaderValue::from_static("60"));
    }
    if matches!(err, ProxyError::ProxyAuthRequired) {
        headers.insert(
            header::PROXY_AUTHENTICATE,
            header::HeaderValue::from_static("Basic realm=\"cobrowse-proxy\", charset=\"UTF-8\""),
        );
    }
    response
}

fn error_page(status: StatusCode, message: &str) -> String {
    let reason = status.canonical_reason().unwrap_or("Error");
    let message = htmlize::escape_text(message);
    format!(
        "<!doctype html><html><head><meta charset=utf-8><title>{code} {reason}</title></head>\
         <body><h1>{code} {reason}</h1><p>{message}</p><p><small>cobrowse-proxy</small></p></body></html>\n",
        code = status.as_u16()
    )
}
