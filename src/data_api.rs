//! The data API on the public origin, for the API token holder (`docs/DATA-POLICY.md`):
//! `GET /api/visitors`, `GET` and `DELETE /api/visitors/<id>`, `GET /api/events?session=<id>`; and the
//! optional `visitor` object of `POST /api/sessions`, checked here. The store does the work; this file
//! turns its records into JSON and its failures into [`ProxyError`]s.

use std::collections::BTreeMap;

use http::{Request, Response, StatusCode};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::api::{authorize, rfc3339, text};
use crate::body::ProxyBody;
use crate::error::ProxyError;
use crate::store::{retention, EventRecord, Identity, VisitorRecord};
use crate::url_codec::SessionId;
use crate::Shared;

pub const VISITORS: &str = "/api/visitors";
pub const EVENTS: &str = "/api/events";

/// Limits on what a deployer may attach to a visitor, so a record stays small.
const MAX_EXTERNAL_ID: usize = 256;
const MAX_IDENTITIES: usize = 16;
const MAX_IDENTITY_KEY: usize = 64;
const MAX_IDENTITY_VALUE: usize = 256;

/// `visitor` in `POST /api/sessions`: `{"external_id": "…", "identities": {"email": "…"}}`, both optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VisitorInput {
    external_id: Option<String>,
    #[serde(default)]
    identities: BTreeMap<String, String>,
}

impl VisitorInput {
    pub fn into_identity(self) -> Result<Identity, ProxyError> {
        let too_long = |what: &str, max: usize| {
            ProxyError::BadRequest(format!("visitor.{what} is longer than {max} bytes"))
        };
        if self
            .external_id
            .as_ref()
            .is_some_and(|e| e.len() > MAX_EXTERNAL_ID)
        {
            return Err(too_long("external_id", MAX_EXTERNAL_ID));
        }
        if self.identities.len() > MAX_IDENTITIES {
            return Err(ProxyError::BadRequest(format!(
                "visitor.identities has more than {MAX_IDENTITIES} entries"
            )));
        }
        for (key, value) in &self.identities {
            if key.is_empty() || key.len() > MAX_IDENTITY_KEY {
                return Err(too_long("identities key", MAX_IDENTITY_KEY));
            }
            if value.len() > MAX_IDENTITY_VALUE {
                return Err(too_long("identities value", MAX_IDENTITY_VALUE));
            }
        }
        Ok(Identity {
            external_id: self.external_id,
            identities: self.identities,
        })
    }
}

/// Answers a request under `/api/visitors` or `/api/events`.
pub async fn handle<B>(
    shared: &Shared,
    req: &Request<B>,
) -> Result<Response<ProxyBody>, ProxyError> {
    authorize(shared, req.headers(), None)?;
    let path = req.uri().path();
    let method = req.method();
    if path == VISITORS || path == format!("{VISITORS}/") {
        return match *method {
            http::Method::GET => list_visitors(shared).await,
            _ => Err(ProxyError::MethodNotAllowed),
        };
    }
    if path == EVENTS {
        return match *method {
            http::Method::GET => list_events(shared, req.uri().query()).await,
            _ => Err(ProxyError::MethodNotAllowed),
        };
    }
    let id = path
        .strip_prefix(VISITORS)
        .and_then(|rest| rest.strip_prefix('/'))
        .and_then(SessionId::parse)
        .ok_or(ProxyError::NotFound)?;
    match *method {
        http::Method::GET => get_visitor(shared, &id).await,
        http::Method::DELETE => delete_visitor(shared, &id).await,
        _ => Err(ProxyError::MethodNotAllowed),
    }
}

async fn list_visitors(shared: &Shared) -> Result<Response<ProxyBody>, ProxyError> {
    let visitors = shared.store.visitors().await?;
    let list: Vec<Value> = visitors.iter().map(visitor_json).collect();
    Ok(json_response(StatusCode::OK, &json!({ "visitors": list })))
}

async fn get_visitor(shared: &Shared, id: &SessionId) -> Result<Response<ProxyBody>, ProxyError> {
    let visitor = shared
        .store
        .visitor(id)
        .await?
        .ok_or(ProxyError::NotFound)?;
    Ok(json_response(StatusCode::OK, &visitor_json(&visitor)))
}

async fn delete_visitor(
    shared: &Shared,
    id: &SessionId,
) -> Result<Response<ProxyBody>, ProxyError> {
    if shared.store.delete_visitor(id).await? {
        Ok(text(StatusCode::NO_CONTENT, "text/plain", ""))
    } else {
        Err(ProxyError::NotFound)
    }
}

/// `GET /api/events?session=<id>`: that session's debug events (empty, with `enabled: false`, when the
/// event log is off for this deployment).
async fn list_events(
    shared: &Shared,
    query: Option<&str>,
) -> Result<Response<ProxyBody>, ProxyError> {
    let session = url::form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .find(|(k, _)| k == "session")
        .map(|(_, v)| v.into_owned())
        .ok_or_else(|| ProxyError::BadRequest("missing ?session=".into()))?;
    let session = SessionId::parse(&session)
        .ok_or_else(|| ProxyError::BadRequest("not a session id".into()))?;
    let events = shared.store.events(&session).await?;
    let list: Vec<Value> = events.iter().map(event_json).collect();
    let body = json!({ "enabled": shared.store.debug_events(), "events": list });
    Ok(json_response(StatusCode::OK, &body))
}

fn visitor_json(v: &VisitorRecord) -> Value {
    let time = |ms: Option<i64>| ms.map(|ms| rfc3339(retention::from_unix_ms(ms)));
    json!({
        "id": v.id,
        "external_id": v.external_id,
        "identities": v.identities,
        "online": v.online,
        "last_seen": time(v.last_seen),
        "last_ip": v.last_ip,
        "last_page_url": v.last_page_url,
        "last_page_at": time(v.last_page_at),
        "device": v.device,
        "os": v.os,
        "browser": v.browser,
        "created_at": rfc3339(retention::from_unix_ms(v.created_at)),
        "expires_at": rfc3339(v.expires_at()),
    })
}

fn event_json(e: &EventRecord) -> Value {
    json!({
        "at": rfc3339(retention::from_unix_ms(e.at)),
        "session": e.session,
        "name": e.name,
        "role": e.role,
        "bytes": e.bytes,
    })
}

fn json_response(status: StatusCode, body: &Value) -> Response<ProxyBody> {
    text(status, "application/json", body.to_string())
}
