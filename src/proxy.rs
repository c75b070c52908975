//! The life of a proxied request, top to bottom (see `docs/FLOW.md`):
//!
//! 1. the session must be live;
//! 2. request headers are mapped back to the target (`headers::request`);
//! 3. the request goes upstream (`upstream`, private-address guard inside), unless the public asset
//!    cache answers it (`cache`, which stores upstream responses, never rewritten ones);
//! 4. response headers are mapped into proxy hosts (`headers::response`);
//! 5. the body is planned (`rewrite::plan`) and streamed: rewritten (HTML, CSS) or passed through;
//! 6. WebSocket upgrades are joined end to end.
//!
//! Every step is a call visible here; errors return to `server`, the single edge that answers them.

use std::io;
use std::sync::Arc;

use futures_util::{stream, StreamExt, TryStreamExt};
use http::{header, HeaderMap, Request, Response, Uri, Version};
use http_body_util::{BodyDataStream, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::TokioIo;
use url::Url;

use crate::body::{boxed, ProxyBody};
use crate::error::ProxyError;
use crate::headers::{self, csp::AgentSources, response::ResponseContext};
use crate::rewrite::{self, css::CssRewriter, html, Kind, Plan, Transform, TransformStream};
use crate::upstream::UpstreamError;
use crate::url_codec::{ProxyMap, SessionId, TargetOrigin};
use crate::Shared;

pub async fn handle(
    shared: Arc<Shared>,
    mut req: Request<Incoming>,
    session: SessionId,
    target: TargetOrigin,
) -> Result<Response<ProxyBody>, ProxyError> {
    shared
        .sessions
        .get(&session)
        .ok_or(ProxyError::SessionNotFound)?;
    // A service worker would run outside the in-page runtime; browsers fall back to the network when
    // registration fails, so refuse its script (the runtime also refuses `register()` itself).
    if req.headers().contains_key("service-worker") {
        return Err(ProxyError::Forbidden(
            "service workers are not available while co-browsing".into(),
        ));
    }
    let map = ProxyMap::new(shared.public.clone(), session);
    let url = target_url(&target, req.uri())?;
    let websocket = is_websocket(req.headers());
    let client_upgrade = websocket.then(|| hyper::upgrade::on(&mut req));
    let method = req.method().clone();
    let dest = rewrite::Destination::from_request(req.headers());

    let upstream_req = upstream_request(req, &url, &map, websocket)?;
    let (mut response, cache_status) = shared.cache.fetch(upstream_req, &shared, websocket).await?;

    let plan = rewrite::plan(&method, response.status(), response.headers(), dest);
    let agent = AgentSources {
        nonce: shared.nonce_for(map.session()),
    };
    let ctx = ResponseContext {
        map: &map,
        target: &target,
        url: &url,
        agent: &agent,
    };
    let upgraded = response.status() == http::StatusCode::SWITCHING_PROTOCOLS;
    if let (true, Some(client)) = (upgraded, client_upgrade) {
        join_upgrades(client, hyper::upgrade::on(&mut response));
    }
    let (mut parts, body) = response.into_parts();
    headers::response::rewrite(&mut parts.headers, &ctx, plan.changes_body(), upgraded);
    cache_status.append_to(&mut parts.headers);
    let body = response_body(&shared, body, plan, &map, &url, &target, agent).await?;
    Ok(Response::from_parts(parts, body))
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

fn upstream_request(
    req: Request<Incoming>,
    url: &Url,
    map: &ProxyMap,
    websocket: bool,
) -> Result<Request<ProxyBody>, ProxyError> {
    let (mut parts, body) = req.into_parts();
    headers::request::rewrite(&mut parts.headers, map, websocket);
    let uri: Uri = url
        .as_str()
        .parse()
        .map_err(|_| ProxyError::BadRequest("target URL is not a valid URI".into()))?;
    let mut out = Request::new(boxed(body));
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
    map: &ProxyMap,
    url: &Url,
    target: &TargetOrigin,
    agent: AgentSources,
) -> Result<ProxyBody, ProxyError> {
    let transform: Box<dyn Transform> = match plan.kind {
        Kind::Pass => return Ok(body),
        Kind::Html(encoding) => Box::new(html::HtmlTransform::new(html::HtmlContext {
            map: map.clone(),
            url: url.clone(),
            target: target.clone(),
            agent_tag: crate::agent::script_tag(&shared.public, map.session(), &agent.nonce),
            agent,
            encoding,
            memory_limit: shared.config.limits.html_memory,
            inline_limit: shared.config.limits.inline_buffer,
            scripts: shared.scripts.clone(),
        })),
        Kind::Script { worker } => Box::new(rewrite::script::ScriptTransform::new(
            shared.scripts.clone(),
            shared.config.limits.script_buffer,
            worker.then(|| crate::agent::worker_bootstrap(&shared.public, map.session())),
        )),
        Kind::Css => Box::new(CssTransform(Some(CssRewriter::new(
            map.clone(),
            url.clone(),
            shared.config.limits.css_carry,
        )))),
    };
    shared.metrics.rewritten_bodies.inc();
    let data = BodyDataStream::new(body).map_err(io::Error::other);
    let limits = rewrite::DecodeLimits {
        max_output: shared.config.limits.max_decoded_body,
        max_ratio: shared.config.limits.max_decode_ratio,
    };
    let decoded = rewrite::decode(Box::pin(data), plan.coding, limits);
    let mut out = TransformStream::new(decoded, transform);
    let first = match out.next().await {
        Some(Err(e)) => return Err(body_error(&target.host_str(), e)),
        other => other,
    };
    let stream = stream::iter(first).chain(out).map_ok(Frame::data);
    Ok(boxed(StreamBody::new(stream)))
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
    fn write(&mut self, chunk: &[u8], out: &mut Vec<u8>) -> Result<(), rewrite::RewriteError> {
        match self.0.as_mut() {
            Some(css) => css.write(chunk, out).map_err(Into::into),
            None => {
                out.extend_from_slice(chunk);
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
