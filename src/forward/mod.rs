//! The forward proxy: absolute-form requests (`GET http://host/…`) and CONNECT tunnels, whose requests
//! all go through the same `proxy::handle` as a session's proxy hosts, in its forward mode.
//!
//! - `connect`: CONNECT, the first-bytes sniff, TLS interception (SNI before the certificate), blind tunnels;
//! - `ca`: the local CA and the per-host leaf certificates;
//! - here: credentials (`Proxy-Authorization`), loop refusal, and the agent under its reserved path.

pub mod ca;
pub mod connect;
pub mod sniff;

use std::sync::Arc;

use base64::Engine;
use http::{header, HeaderMap, Request, Response};
use hyper::body::Incoming;
use url::Host;

use crate::body::ProxyBody;
use crate::error::ProxyError;
use crate::proxy::{self, Mode};
use crate::url_codec::TargetOrigin;
use crate::Shared;

/// A forward-proxy request for `target`. Requests inside a tunnel were authorised by its CONNECT.
pub async fn handle(
    shared: Arc<Shared>,
    req: Request<Incoming>,
    target: TargetOrigin,
    tunnelled: bool,
) -> Result<Response<ProxyBody>, ProxyError> {
    if !tunnelled {
        authorize(&shared, req.headers())?;
    }
    refuse_self(&shared, &target)?;
    if req.uri().path() == crate::agent::PATH {
        return Ok(shared.agent.serve_forward(req.headers()));
    }
    proxy::handle(shared, req, Mode::Forward, target).await
}

/// Whenever an API token is set (always, off loopback), forward-proxy clients must send it as the password
/// of `Proxy-Authorization: Basic` (any user name).
pub fn authorize(shared: &Shared, headers: &HeaderMap) -> Result<(), ProxyError> {
    let Some(token) = shared.config.api_token.as_deref() else {
        return Ok(());
    };
    match basic_password(headers) {
        Some(given) if crate::secret::equal(given.as_bytes(), token.as_bytes()) => Ok(()),
        _ => Err(ProxyError::ProxyAuthRequired),
    }
}

fn basic_password(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::PROXY_AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (_user, password) = text.split_once(':')?;
    Some(password.to_owned())
}

/// A forward request or tunnel whose target is this proxy would come straight back in: refused.
pub fn refuse_self(shared: &Shared, target: &TargetOrigin) -> Result<(), ProxyError> {
    let public = &shared.public;
    let host = target.host_str();
    let names_us = public.covers_host(&host) && target.port == public.port();
    let listen = shared.config.listen;
    let dials_us = match &target.host {
        Host::Ipv4(ip) => listen.ip() == std::net::IpAddr::V4(*ip) && target.port == listen.port(),
        Host::Ipv6(ip) => listen.ip() == std::net::IpAddr::V6(*ip) && target.port == listen.port(),
        Host::Domain(_) => false,
    };
    if names_us || dials_us {
        return Err(ProxyError::Loop("the target is this proxy itself"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            header::PROXY_AUTHORIZATION,
            http::HeaderValue::from_str(value).unwrap(),
        );
        h
    }

    #[test]
    fn basic_credentials_yield_the_password() {
        let encoded = base64::engine::general_purpose::STANDARD.encode("agent:s3cret:x");
        assert_eq!(
            basic_password(&headers(&format!("Basic {encoded}"))).as_deref(),
            Some("s3cret:x")
        );
        assert_eq!(
            basic_password(&headers(&format!("basic  {encoded}"))).as_deref(),
            Some("s3cret:x")
        );
        assert_eq!(basic_password(&headers("Bearer abc")), None);
        assert_eq!(basic_password(&headers("Basic !!!")), None);
        assert_eq!(basic_password(&HeaderMap::new()), None);
    }
}
