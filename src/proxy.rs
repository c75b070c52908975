//! The life of a proxied request, top to bottom (see `docs/FLOW.md`):
//!
//! 1. the session must be live (for a proxy host; the forward proxy has none), and the request must not
//!    have looped back through us;
//! 2. request headers are mapped back to the target (`headers::request`);
//! 3. the request goes upstream (`upstream`, private-address guard inside), unless the public asset
//!    cache answers it (`cache`, which stores upstream responses, never rewritten ones);
//! 4. response headers are mapped into proxy hosts (`headers::response`);
//! 5. the body is planned (`rewrite::plan`) and streamed: rewritten (HTML, CSS) or passed through;
//! 6. WebSocket upgrades are joined end to end;
//! 7. `Server-Timing` tells how long steps 1–3 and the body's first rewritten bytes took
//!    (`headers::timing`).
//!
//! Every step is a call visible here; errors return to `server`, the single edge that answers them.

use std::io;
use std::sync::Arc;
use std::time::Instant;

use futures_util::{stream, StreamExt, TryStreamExt};
use http::{header, HeaderMap, Request, Response, Uri, Version};
use http_body_util::{BodyDataStream, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::TokioIo;
use url::Url;

use crate::body::{boxed, ProxyBody};
use crate::error::ProxyError;
use crate::headers::csp::{AgentSources, LazyAgentSources};
use crate::headers::{self, response::ResponseContext};
use crate::rewrite::{self, css::CssRewriter, html, Kind, Plan, Transform, TransformStream};
use crate::upstream::IdleTimeoutBody;
use crate::upstream::UpstreamError;
use crate::url_codec::{ProxyMap, SessionId, TargetOrigin};
use crate::Shared;

const SERVER_TIMING: header::HeaderName = header::HeaderName::from_static("server-timing");

/// Whose request this is.
pub enum Mode {
    /// A session's proxy host: URLs are mapped to proxy hosts and back.
    Session(SessionId),
    /// The forward proxy: the browser already speaks the target's own URLs; only the agent is added.
    Forward,
}

pub async fn handle(
    shared: Arc<Shared>,
    mut req: Request<Incoming>,
    mode: Mode,
    target: TargetOrigin,
) -> Result<Response<ProxyBody>, ProxyError> {
    let arrived = Instant::now();
    let map = match mode {
        Mode::Session(session) => {
            shared
                .sessions
                .find(&session)
                .await
                .ok_or(ProxyError::SessionNotFound)?;
            Some(ProxyMap::new(shared.public.clone(), session))
        }
        Mode::Forward => None,
    };
    if headers::request::has_looped(req.headers(), &shared.via) {
        return Err(ProxyError::Loop(
            "the request already passed through this proxy",
        ));
    }
    // A service worker would run outside the in-page runtime; browsers fall back to the network when
    // registration fails, so refuse its script (the runtime also refuses `register()` itself).
    if req.headers().contains_key("service-worker") {
        return Err(ProxyError::Forbidden(
            "service workers are not available while co-browsing".into(),
        ));
    }
    let url = target_url(&target, req.uri())?;
    let websocket = is_websocket(req.headers());
    let client_upgrade = websocket.then(|| hyper::upgrade::on(&mut req));
    let method = req.method().clone();
    let dest = rewrite::Destination::from_request(req.headers());
    let visit = Visit::of(&req);

    let client_idle = shared.config.limits.client_body_idle();
    let upstream_req = upstream_request(
        req,
        &url,
        map.as_ref(),
        websocket,
        shared.via_header.as_ref(),
    )?
    .map(|body| request_body(body, client_idle));
    let (mut response, cache_status) = shared.cache.fetch(upstream_req, &shared, websocket).await?;
    let head_in_hand = Instant::now();

    let mut plan = rewrite::plan(&method, response.status(), response.headers(), dest);
    match &map {
        Some(map) => visit.note(&shared, map.session(), &url, response.status(), plan.kind),
        None => plan = plan.for_forward(),
    }
    let agent = std::sync::LazyLock::new(|| agent_sources(&shared, map.as_ref(), &target));
    let upgraded = response.status() == http::StatusCode::SWITCHING_PROTOCOLS;
    if let (true, Some(client)) = (upgraded, client_upgrade) {
        join_upgrades(client, hyper::upgrade::on(&mut response));
    }
    let (mut parts, body) = response.into_parts();
    let changes = plan.changes_body();
    match &map {
        Some(map) => {
            let ctx = ResponseContext {
                map,
                target: &target,
                url: &url,
                agent: &agent,
            };
            headers::response::rewrite(&mut parts.headers, &ctx, changes, upgraded);
        }
        None => headers::response::rewrite_forward(
            &mut parts.headers,
            &target,
            &url,
            &agent,
            changes,
            upgraded,
        ),
    }
    cache_status.append_to(&mut parts.headers);
    let exchange = Exchange {
        map: map.as_ref(),
        url: &url,
        target: &target,
        agent: &agent,
    };
    let body = response_body(&shared, body, plan, exchange).await?;
    let rewrite = changes.then(|| head_in_hand.elapsed());
    parts.headers.append(
        SERVER_TIMING,
        headers::timing::value(head_in_hand - arrived, rewrite),
    );
    Ok(Response::from_parts(parts, body))
}

/// What visitor metadata takes from a request: the peer address, the User-Agent, and whether it is a
/// top-level page load (`Sec-Fetch-Dest: document`, or no such header from an older client).
struct Visit {
    ip: Option<std::net::IpAddr>,
    /// A cheap (reference-counted) copy of the header: most requests never need it.
    user_agent: Option<http::HeaderValue>,
    top_level: bool,
}

impl Visit {
    fn of(req: &Request<Incoming>) -> Visit {
        let dest = req.headers().get("sec-fetch-dest");
        Visit {
            ip: req
                .extensions()
                .get::<crate::server::ClientAddr>()
                .map(|a| a.0),
            user_agent: req.headers().get(header::USER_AGENT).cloned(),
            top_level: dest.is_none_or(|d| d.as_bytes() == b"document"),
        }
    }

    /// A session's page that loaded: the visitor's last page, IP and device (the store drops the
    /// query and fragment). Frames, assets and failed loads are not the visitor's page.
    fn note(
        &self,
        shared: &Shared,
        session: &SessionId,
        url: &Url,
        status: http::StatusCode,
        kind: Kind,
    ) {
        if !(self.top_level && status.is_success() && matches!(kind, Kind::Html(_))) {
            return;
        }
        shared.store.seen(crate::store::Sighting {
            visitor: session,
            ip: self.ip,
            page: Some(url),
            user_agent: self.user_agent.as_ref().and_then(|v| v.to_str().ok()),
            online: None,
        });
        let name = crate::store::EventName::PageView;
        shared.store.event(session, name, Some("visitor"), None);
    }
}

/// What the body transforms need to know about one exchange. `map` is `None` in the forward proxy.
struct Exchange<'a> {
    map: Option<&'a ProxyMap>,
    url: &'a Url,
    target: &'a TargetOrigin,
    agent: &'a LazyAgentSources<'a>,
}

/// Where the agent comes from and the nonce its tag carries: the public origin for a session's pages, the
/// page's own origin (a reserved path) in the forward proxy.
fn agent_sources(shared: &Shared, map: Option<&ProxyMap>, target: &TargetOrigin) -> AgentSources {
    match map {
        Some(map) => AgentSources {
            nonce: shared.nonce_for(map.session()),
            origin: shared.public.origin(),
        },
        None => AgentSources {
            nonce: shared.forward_nonce(target),
            origin: target.ascii(),
        },
    }
}

/// The target URL: the target origin plus the request's own path and query, untouched.
fn target_url(target: &TargetOrigin, uri: &Uri) -> Result<Url, ProxyError> {
    let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    Url::parse(&format!("{}{path}", target.ascii()))
        .map_err(|e| ProxyError::BadRequest(format!("cannot build the target URL: {e}")))
}

fn is_websocket(headers: &HeaderMap) -> bool {
    headers
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}

/// The client's request body as it goes upstream: guarded against a client that stalls mid-body, unless
/// it has ended already (a GET, most requests), which needs no timer nor a box.
fn request_body(body: Incoming, client_idle: std::time::Duration) -> ProxyBody {
    if http_body::Body::is_end_stream(&body) {
        return crate::body::empty();
    }
    boxed(IdleTimeoutBody::new(body, client_idle))
}

fn upstream_request(
    req: Request<Incoming>,
    url: &Url,
    map: Option<&ProxyMap>,
    websocket: bool,
    via: Option<&http::HeaderValue>,
) -> Result<Request<Incoming>, ProxyError> {
    let (mut parts, body) = req.into_parts();
    match map {
        Some(map) => headers::request::rewrite(&mut parts.headers, map, websocket),
        None => headers::request::rewrite_forward(&mut parts.headers, websocket),
    }
    if let Some(via) = via {
        headers::request::add_via(&mut parts.headers, via);
    }
    let uri: Uri = url
        .as_str()
        .parse()
        .map_err(|_| ProxyError::BadRequest("target URL is not a valid URI".into()))?;
    let mut out = Request::new(body);
    *out.method_mut() = parts.method;
    *out.uri_mut() = uri;
    *out.version_mut() = Version::HTTP_11;
    *out.headers_mut() = parts.headers;
    Ok(out)
}

/// Splices the client's and the upstream's upgraded connections together (WebSocket pass-through).
fn join_upgrades(client: hyper::upgrade::OnUpgrade, upstream: hyper::upgrade::OnUpgrade) {
    tokio::spawn(async move {
        let (Ok(client), Ok(upstream)) = (client.await, upstream.await) else {
            return;
        };
        let mut client = TokioIo::new(client);
        let mut upstream = TokioIo::new(upstream);
        let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
    });
}

/// Step 5: the body as planned. A rewritten body's first chunk is produced before the headers go out, so
/// a body that fails at once (a compression bomb, a reset) becomes an error page rather than a broken page.
async fn response_body(
    shared: &Shared,
    body: ProxyBody,
    plan: Plan,
    exchange: Exchange<'_>,
) -> Result<ProxyBody, ProxyError> {
    let host = exchange.target.host_str();
    let full_rewrite = exchange.map.is_some();
    let Some(transform) = transform_for(shared, plan.kind, exchange) else {
        return Ok(body);
    };
    shared.metrics.rewritten_bodies.inc();
    let data = BodyDataStream::new(body).map_err(io::Error::other);
    let limits = rewrite::DecodeLimits {
        max_output: shared.config.limits.max_decoded_body,
        max_ratio: shared.config.limits.max_decode_ratio,
    };
    let decoded = rewrite::decode(Box::pin(data), plan.coding, limits);
    // Read ahead only what may be split over two cores (`rewrite/html/split.rs`): a page's full rewrite.
    // A stylesheet, or a page the forward proxy only injects into, would pay a task for nothing.
    let decoded = if matches!(plan.kind, Kind::Html(_)) && full_rewrite {
        rewrite::read_ahead(decoded)
    } else {
        decoded
    };
    let mut out = TransformStream::new(decoded, transform);
    let first = match out.next().await {
        Some(Err(e)) => return Err(body_error(&host, e)),
        other => other,
    };
    let stream = stream::iter(first).chain(out).map_ok(Frame::data);
    Ok(boxed(StreamBody::new(stream)))
}

/// The transform for a body kind, or `None` to pass it through untouched.
fn transform_for(shared: &Shared, kind: Kind, ex: Exchange<'_>) -> Option<Box<dyn Transform>> {
    let limits = &shared.config.limits;
    let Some(map) = ex.map else {
        let Kind::Html(charset) = kind else {
            return None;
        };
        return Some(Box::new(rewrite::inject::transform(
            rewrite::inject::InjectContext {
                url: ex.url.clone(),
                target: ex.target.clone(),
                agent_tag: crate::agent::forward_script_tag(&ex.agent.origin, &ex.agent.nonce),
                agent: AgentSources::clone(ex.agent),
                charset,
                memory_limit: limits.html_memory,
            },
        )));
    };
    let transform: Box<dyn Transform> = match kind {
        Kind::Pass => return None,
        Kind::Html(charset) => Box::new(html::HtmlTransform::new(html::HtmlContext {
            map: map.clone(),
            url: ex.url.clone(),
            target: ex.target.clone(),
            agent_tag: crate::agent::script_tag_with(
                &shared.public,
                map.session(),
                &shared
                    .sessions
                    .visitor_credential(map.session(), std::time::SystemTime::now()),
                &ex.agent.nonce,
            ),
            agent: AgentSources::clone(ex.agent),
            charset,
            memory_limit: limits.html_memory,
            inline_limit: limits.inline_buffer,
            scripts: shared.scripts.clone(),
        })),
        Kind::Script { worker } => Box::new(rewrite::script::ScriptTransform::new(
            shared.scripts.clone(),
            limits.script_buffer,
            worker.then(|| crate::agent::worker_bootstrap(&shared.public, map.session())),
        )),
        Kind::Css => Box::new(CssTransform(Some(CssRewriter::new(
            map.clone(),
            ex.url.clone(),
            limits.css_carry,
        )))),
    };
    Some(transform)
}

fn body_error(host: &str, e: io::Error) -> ProxyError {
    ProxyError::Upstream(UpstreamError::Failed {
        host: host.to_owned(),
        detail: format!("response body: {e}"),
    })
}

/// The CSS rewriter behind the [`Transform`] interface.
struct CssTransform(Option<CssRewriter>);

impl Transform for CssTransform {
    fn write(
        &mut self,
        chunk: bytes::Bytes,
        out: &mut Vec<u8>,
    ) -> Result<(), rewrite::RewriteError> {
        match self.0.as_mut() {
            Some(css) => css.write(&chunk, out).map_err(Into::into),
            None => {
                out.extend_from_slice(&chunk);
                Ok(())
            }
        }
    }

    fn end(&mut self, out: &mut Vec<u8>) -> Result<(), rewrite::RewriteError> {
        match self.0.take() {
            Some(css) => css.end(out).map_err(Into::into),
            None => Ok(()),
        }
    }
}
