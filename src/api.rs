//! The public origin: session API, cache purge, console page, agent script, health and metrics, the relay
//! endpoint and the agent's live view (`/agent/<id>?t=<agent credential>`).

use std::net::IpAddr;

use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use serde::Deserialize;
use url::Url;

use crate::body::{full, ProxyBody};
use crate::data_api::{self, VisitorInput};
use crate::error::ProxyError;
use crate::session::{Credential, Role, Session};
use crate::url_codec::TargetOrigin;
use crate::Shared;

const CONSOLE_HTML: &str = include_str!("../agent/console.html");
const CONSOLE_JS: &str = include_str!("../agent/console.js");
const VIEW_HTML: &str = include_str!("../agent/view.html");
const VIEW_JS: &str = include_str!("../agent/view.js");
const VIEW_CSS: &str = include_str!("../agent/view.css");

/// Strict headers for everything the public origin serves: it must never be framed by, or leak to, a
/// proxied site.
const CONSOLE_CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
     connect-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

pub async fn handle(
    shared: &Shared,
    req: Request<Incoming>,
    client: IpAddr,
) -> Result<Response<ProxyBody>, ProxyError> {
    let path = req.uri().path().to_owned();
    let mut response = match (req.method().clone(), path.as_str()) {
        (Method::GET, "/healthz") => text(StatusCode::OK, "text/plain", "ok\n"),
        (Method::GET, "/metrics") => text(
            StatusCode::OK,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            shared.metrics.render(),
        ),
        (Method::POST, "/api/sessions") => create_session(shared, req, client).await?,
        (Method::POST, "/api/cache/purge") => purge_cache(shared, req).await?,
        (Method::GET, "/go") => go(shared, &req, client).await?,
        (Method::GET, crate::agent::PATH) => return Ok(shared.agent.serve(req.headers())),
        (Method::GET, crate::relay::PATH) => {
            if !shared.client_limits.allow_join(client) {
                return Err(ProxyError::TooManyRequests("relay joins"));
            }
            return Ok(shared.relay.upgrade(req).await?);
        }
        (Method::DELETE, p) if p.starts_with("/api/sessions/") => {
            end_session(shared, &req, p).await?
        }
        (_, p) if p.starts_with(data_api::VISITORS) || p == data_api::EVENTS => {
            data_api::handle(shared, &req).await?
        }
        (Method::GET, "/") => text(StatusCode::OK, "text/html; charset=utf-8", CONSOLE_HTML),
        (Method::GET, "/__cobrowse/console.js") => {
            text(StatusCode::OK, "text/javascript; charset=utf-8", CONSOLE_JS)
        }
        (Method::GET, "/__cobrowse/view.js") => {
            text(StatusCode::OK, "text/javascript; charset=utf-8", VIEW_JS)
        }
        (Method::GET, "/__cobrowse/view.css") => {
            text(StatusCode::OK, "text/css; charset=utf-8", VIEW_CSS)
        }
        (Method::GET, p) if p.starts_with("/agent/") => {
            let mut page = agent_view(shared, p, req.uri().query()).await?;
            secure_headers(page.headers_mut());
            let csp = view_csp(&shared.public);
            if let Ok(v) = HeaderValue::from_str(&csp) {
                page.headers_mut()
                    .insert(header::CONTENT_SECURITY_POLICY, v);
            }
            return Ok(page);
        }
        (
            _,
            "/api/sessions"
            | "/api/cache/purge"
            | "/healthz"
            | "/metrics"
            | "/go"
            | crate::relay::PATH,
        ) => return Err(ProxyError::MethodNotAllowed),
        _ => return Err(ProxyError::NotFound),
    };
    secure_headers(response.headers_mut());
    Ok(response)
}

#[derive(Deserialize)]
struct CreateSession {
    url: String,
    /// What the deployer knows about the visitor (external id, identities), kept as visitor metadata.
    visitor: Option<VisitorInput>,
}

async fn create_session(
    shared: &Shared,
    req: Request<Incoming>,
    client: IpAddr,
) -> Result<Response<ProxyBody>, ProxyError> {
    authorize(shared, req.headers(), None)?;
    limit_sessions(shared, client)?;
    let bytes = read_body(shared, req).await?;
    let body: CreateSession = serde_json::from_slice(&bytes)
        .map_err(|e| ProxyError::BadRequest(format!("expected JSON {{\"url\": \"…\"}}: {e}")))?;
    let identity = body.visitor.map(VisitorInput::into_identity).transpose()?;
    let session = start_session(shared, &body.url).await?;
    if let Some(identity) = identity {
        shared.store.identify(&session.id, identity);
    }
    let json = serde_json::json!({
        "id": session.id.as_str(),
        "visitor_url": visitor_url(shared, &session)?,
        "agent_url": agent_url(shared, &session),
        "expires_at": rfc3339(session.expires_at),
    });
    Ok(text(
        StatusCode::CREATED,
        "application/json",
        json.to_string(),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Purge {
    url: Option<String>,
    #[serde(default)]
    all: bool,
}

/// `POST /api/cache/purge` with `{"url": "https://…"}` (every variant of that URL) or `{"all": true}`.
/// The API token is required when one is configured (it must be, off loopback). Only JSON is accepted,
/// so a page cannot send it as a CORS-simple request.
async fn purge_cache(
    shared: &Shared,
    req: Request<Incoming>,
) -> Result<Response<ProxyBody>, ProxyError> {
    authorize(shared, req.headers(), None)?;
    let json = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().starts_with("application/json"));
    if !json {
        return Err(ProxyError::BadRequest(
            "expected Content-Type: application/json".into(),
        ));
    }
    let body: Purge = read_json(shared, req, "{\"url\": \"…\"} or {\"all\": true}").await?;
    // Every node's cache is its own; the others purge when they hear of it (`docs/SCALING.md`).
    let cluster = shared.cluster.as_deref();
    let purged = match (body.url, body.all) {
        (None, true) => {
            cluster.inspect(|c| c.purge_all());
            shared.cache.purge_all()
        }
        (Some(url), false) => {
            let url = Url::parse(url.trim())
                .map_err(|e| ProxyError::BadRequest(format!("not a URL: {e}")))?;
            cluster.inspect(|c| c.purge(url.as_str()));
            u64::from(shared.cache.purge(url.as_str()))
        }
        _ => return Err(ProxyError::BadRequest("give either url or all".into())),
    };
    let json = serde_json::json!({ "purged": purged });
    Ok(text(StatusCode::OK, "application/json", json.to_string()))
}

/// An API request body: small (`max_api_body`) and in time (`client_body_idle_ms` for all of it).
async fn read_body(shared: &Shared, req: Request<Incoming>) -> Result<bytes::Bytes, ProxyError> {
    let limits = &shared.config.limits;
    let body = Limited::new(req.into_body(), limits.max_api_body).collect();
    match tokio::time::timeout(limits.client_body_idle(), body).await {
        Err(_) => Err(ProxyError::ClientTimeout),
        Ok(Err(_)) => Err(ProxyError::PayloadTooLarge),
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
    }
}

async fn read_json<T: serde::de::DeserializeOwned>(
    shared: &Shared,
    req: Request<Incoming>,
    shape: &str,
) -> Result<T, ProxyError> {
    let bytes = read_body(shared, req).await?;
    serde_json::from_slice(&bytes)
        .map_err(|e| ProxyError::BadRequest(format!("expected JSON {shape}: {e}")))
}

async fn go(
    shared: &Shared,
    req: &Request<Incoming>,
    client: IpAddr,
) -> Result<Response<ProxyBody>, ProxyError> {
    let query = req.uri().query().unwrap_or_default();
    let param = |name: &str| {
        url::form_urlencoded::parse(query.as_bytes())
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    };
    authorize(shared, req.headers(), param("token").as_deref())?;
    limit_sessions(shared, client)?;
    let target = param("url").ok_or_else(|| ProxyError::BadRequest("missing ?url=".into()))?;
    let session = start_session(shared, &target).await?;
    let location = visitor_url(shared, &session)?;
    let mut response = text(StatusCode::FOUND, "text/plain", "");
    if let Ok(v) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, v);
    }
    Ok(response)
}

/// The API token, when one is configured, as a Bearer header (or `token` parameter for `/go` links).
pub(crate) fn authorize(
    shared: &Shared,
    headers: &http::HeaderMap,
    param: Option<&str>,
) -> Result<(), ProxyError> {
    let Some(expected) = shared.config.api_token.as_deref() else {
        return Ok(());
    };
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let given = bearer.or(param).unwrap_or_default();
    if crate::secret::equal(given.as_bytes(), expected.as_bytes()) {
        Ok(())
    } else {
        Err(ProxyError::Unauthorized)
    }
}

/// Counted after the token check, so a stranger without the token cannot spend a client's budget.
fn limit_sessions(shared: &Shared, client: IpAddr) -> Result<(), ProxyError> {
    if shared.client_limits.allow_session(client) {
        Ok(())
    } else {
        Err(ProxyError::TooManyRequests("sessions"))
    }
}

async fn start_session(
    shared: &Shared,
    target: &str,
) -> Result<std::sync::Arc<Session>, ProxyError> {
    let url =
        Url::parse(target.trim()).map_err(|e| ProxyError::BadRequest(format!("not a URL: {e}")))?;
    let origin = TargetOrigin::from_url(&url)
        .map_err(|e| ProxyError::BadRequest(format!("cannot co-browse this URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(ProxyError::BadRequest(
            "only http and https URLs can be co-browsed".into(),
        ));
    }
    if shared.public.covers_host(&origin.host_str()) {
        return Err(ProxyError::Forbidden("that URL is the proxy itself".into()));
    }
    if !shared.config.targets.permits(&origin.host_str()) {
        return Err(ProxyError::Forbidden(
            "this deployment does not allow co-browsing that host".into(),
        ));
    }
    let session = shared.sessions.create(url).await?;
    let created = crate::store::EventName::SessionCreated;
    shared.store.event(&session.id, created, None, None);
    Ok(session)
}

fn visitor_url(shared: &Shared, session: &Session) -> Result<String, ProxyError> {
    let map = crate::url_codec::ProxyMap::new(shared.public.clone(), session.id.clone());
    map.to_proxy_string(&session.start)
        .ok_or_else(|| ProxyError::Internal("cannot map the session URL".into()))
}

/// The agent link carries an agent credential, good for the session's lifetime.
fn agent_url(shared: &Shared, session: &Session) -> String {
    let token = shared.sessions.sign(&Credential::new(
        session.id.clone(),
        Role::Agent,
        session.expires_at,
    ));
    format!("{}/agent/{}?t={token}", shared.public.origin(), session.id)
}

/// `DELETE /api/sessions/<id>`: ends the session now; its proxy hosts stop answering and its relay room
/// closes (revocation).
async fn end_session(
    shared: &Shared,
    req: &Request<Incoming>,
    path: &str,
) -> Result<Response<ProxyBody>, ProxyError> {
    authorize(shared, req.headers(), None)?;
    let id = crate::url_codec::SessionId::parse(path.trim_start_matches("/api/sessions/"))
        .ok_or(ProxyError::SessionNotFound)?;
    shared
        .sessions
        .find(&id)
        .await
        .ok_or(ProxyError::SessionNotFound)?;
    shared.sessions.remove(&id);
    shared.relay.revoke(&id);
    let ended = crate::store::EventName::SessionEnded;
    shared.store.event(&id, ended, None, None);
    Ok(text(StatusCode::NO_CONTENT, "text/plain", ""))
}

/// The agent view's policy. Its mirror frame (a sandboxed `srcdoc` document, which inherits this policy)
/// may load styles, images, fonts and media from proxy hosts only, and no script but the view's own runs
/// anywhere: the frame has no `allow-scripts` either.
fn view_csp(public: &crate::url_codec::PublicOrigin) -> String {
    let port = match (public.is_secure(), public.port()) {
        (true, 443) | (false, 80) => String::new(),
        (_, p) => format!(":{p}"),
    };
    let proxies = format!("{}://*.{}{port}", public.scheme(), public.host());
    let ws = public.origin().replacen("http", "ws", 1);
    format!(
        "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline' {proxies}; \
         img-src 'self' data: blob: {proxies}; font-src data: {proxies}; media-src {proxies}; \
         connect-src 'self' {ws}; frame-src 'self'; base-uri {proxies}; form-action 'none'; \
         frame-ancestors 'none'"
    )
}

/// The agent's live view of a session. The credential is checked here too, so an expired or wrong link
/// says so at once instead of a socket failing later.
async fn agent_view(
    shared: &Shared,
    path: &str,
    query: Option<&str>,
) -> Result<Response<ProxyBody>, ProxyError> {
    let id = crate::url_codec::SessionId::parse(path.trim_start_matches("/agent/"))
        .ok_or(ProxyError::SessionNotFound)?;
    let session = shared
        .sessions
        .find(&id)
        .await
        .ok_or(ProxyError::SessionNotFound)?;
    let token = url::form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .find(|(k, _)| k == "t")
        .map(|(_, v)| v.into_owned())
        .ok_or(crate::relay::RelayError::MissingCredential)?;
    let credential = shared
        .sessions
        .verify(&token, std::time::SystemTime::now())
        .map_err(crate::relay::RelayError::from)?;
    if credential.role != Role::Agent || credential.session != session.id {
        return Err(crate::relay::RelayError::WrongRole("agent").into());
    }
    let page = VIEW_HTML
        .replace("{{SESSION}}", session.id.as_str())
        .replace("{{TARGET}}", &htmlize::escape_text(session.start.as_str()));
    Ok(text(StatusCode::OK, "text/html; charset=utf-8", page))
}

pub(crate) fn rfc3339(t: std::time::SystemTime) -> String {
    let t = time::OffsetDateTime::from(t);
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

pub(crate) fn text(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<bytes::Bytes>,
) -> Response<ProxyBody> {
    let mut r = Response::new(full(body));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

fn secure_headers(h: &mut http::HeaderMap) {
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONSOLE_CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
}
