//! CONNECT, step by step (`docs/CONNECT.md`):
//!
//! 1. `open`: credentials, the target parsed and checked (not this proxy, not a private address), then
//!    `200` and the tunnel runs on its own task;
//! 2. `run`: the first bytes decide (`sniff`): TLS is intercepted, plain HTTP is served, anything else —
//!    and TLS to a host configured as never intercepted — is tunnelled blind;
//! 3. `intercept`: the ClientHello is read first, so the leaf certificate is chosen by SNI; then the
//!    decrypted stream is served by `server::serve_io`, the very path every other request takes.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response, Uri};
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::LazyConfigAcceptor;
use url::Host;

use super::sniff::{self, Protocol};
use crate::body::{empty, ProxyBody};
use crate::error::ProxyError;
use crate::server::rewind::Rewind;
use crate::server::{serve_tunnelled, ConnInfo};
use crate::upstream::UpstreamError;
use crate::url_codec::TargetOrigin;
use crate::Shared;

/// How long a client may stay silent after CONNECT before the tunnel is taken to be server-first (blind).
const SNIFF_WAIT: Duration = Duration::from_secs(2);
/// How long a client may take over its TLS handshake with us.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
enum TunnelError {
    #[error("TLS handshake with the client: {0}")]
    Handshake(std::io::Error),
    #[error("TLS handshake with the client timed out")]
    HandshakeTimeout,
    #[error("leaf certificate: {0}")]
    Certificate(#[from] super::ca::CaError),
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    #[error("tunnel: {0}")]
    Io(#[from] std::io::Error),
}

/// Where a CONNECT asked to go.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ConnectTarget {
    host: Host<String>,
    port: u16,
}

impl ConnectTarget {
    /// `host:port`, the only form CONNECT allows (RFC 9110 §9.3.6); the port is required.
    fn parse(uri: &Uri) -> Result<ConnectTarget, ProxyError> {
        let bad = || ProxyError::BadRequest("CONNECT needs host:port".into());
        let authority = uri.authority().ok_or_else(bad)?;
        let port = authority.port_u16().filter(|p| *p != 0).ok_or_else(bad)?;
        if uri
            .path_and_query()
            .is_some_and(|p| p.as_str() != "/" && !p.as_str().is_empty())
        {
            return Err(bad());
        }
        let host = Host::parse(authority.host()).map_err(|_| bad())?;
        Ok(ConnectTarget { host, port })
    }

    fn host_str(&self) -> String {
        match &self.host {
            Host::Ipv6(ip) => ip.to_string(),
            other => other.to_string(),
        }
    }

    fn origin(&self, secure: bool) -> TargetOrigin {
        TargetOrigin {
            secure,
            host: self.host.clone(),
            port: self.port,
        }
    }
}

/// Answers a CONNECT: `200` once the target is allowed; the tunnel itself runs after the upgrade.
pub async fn open(
    shared: Arc<Shared>,
    mut req: Request<Incoming>,
    peer: SocketAddr,
) -> Result<Response<ProxyBody>, ProxyError> {
    super::authorize(&shared, req.headers())?;
    let target = ConnectTarget::parse(req.uri())?;
    super::refuse_self(&shared, &target.origin(false))?;
    // Checked before `200`, so a refused target is a clear answer rather than a tunnel that closes.
    let addrs = shared
        .upstream
        .resolve(&target.host_str(), target.port)
        .await?;
    if addrs.contains(&shared.config.listen) {
        return Err(ProxyError::Loop("the target is this proxy itself"));
    }
    let upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        if let Err(e) = run(shared, upgrade, target, addrs, peer).await {
            tracing::debug!(error = %e, "tunnel ended with an error");
        }
    });
    Ok(Response::new(empty()))
}

async fn run(
    shared: Arc<Shared>,
    upgrade: OnUpgrade,
    target: ConnectTarget,
    addrs: Vec<SocketAddr>,
    peer: SocketAddr,
) -> Result<(), TunnelError> {
    let mut client = TokioIo::new(upgrade.await.map_err(std::io::Error::other)?);
    // The CONNECT's own connection gave its slot back when it turned into this tunnel.
    let Ok(_slot) = shared.slots.clone().try_acquire_owned() else {
        tracing::warn!("connection cap reached; closing a tunnel");
        return Ok(());
    };
    let head = sniff::read_head(&mut client, SNIFF_WAIT).await?;
    let protocol = sniff::protocol(&head);
    let client = Rewind::new(head, client);
    match protocol {
        Protocol::Tls if !shared.config.never_intercept(&target.host_str()) => {
            intercept(shared, client, &target, peer).await
        }
        Protocol::Http => {
            let tunnel = Some(target.origin(false));
            serve_tunnelled(shared, client, ConnInfo { peer, tunnel }).await;
            Ok(())
        }
        _ => blind(&shared, client, &target, addrs).await,
    }
}

/// Terminates the client's TLS with a leaf for the name it asked for (SNI, else the CONNECT host), then
/// serves the decrypted stream like any connection.
async fn intercept<I>(
    shared: Arc<Shared>,
    client: I,
    target: &ConnectTarget,
    peer: SocketAddr,
) -> Result<(), TunnelError>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let acceptor = LazyConfigAcceptor::new(rustls::server::Acceptor::default(), client);
    let start = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor)
        .await
        .map_err(|_| TunnelError::HandshakeTimeout)?
        .map_err(TunnelError::Handshake)?;
    let origin = tls_origin(start.client_hello().server_name(), target);
    let config = shared.ca.server_config(&origin.host_str())?;
    let tls = tokio::time::timeout(HANDSHAKE_TIMEOUT, start.into_stream(config))
        .await
        .map_err(|_| TunnelError::HandshakeTimeout)?
        .map_err(TunnelError::Handshake)?;
    let tunnel = Some(origin);
    serve_tunnelled(shared, tls, ConnInfo { peer, tunnel }).await;
    Ok(())
}

/// The origin inside an intercepted tunnel: the SNI name when the client sent one (what its `Host` will
/// say, and what the upstream certificate must match), else the CONNECT host; the CONNECT port either way.
fn tls_origin(sni: Option<&str>, target: &ConnectTarget) -> TargetOrigin {
    let host = sni
        .and_then(|name| Host::parse(name).ok())
        .filter(|h| matches!(h, Host::Domain(_)))
        .unwrap_or_else(|| target.host.clone());
    TargetOrigin {
        secure: true,
        host,
        port: target.port,
    }
}

/// Bytes both ways, untouched, to the address the CONNECT was checked against. Ends on shutdown too.
async fn blind<I>(
    shared: &Shared,
    mut client: I,
    target: &ConnectTarget,
    addrs: Vec<SocketAddr>,
) -> Result<(), TunnelError>
where
    I: AsyncRead + AsyncWrite + Unpin,
{
    let mut upstream = shared
        .upstream
        .connect_addrs(&target.host_str(), addrs)
        .await?;
    tokio::select! {
        copied = tokio::io::copy_bidirectional(&mut client, &mut upstream) => { copied?; }
        () = shared.shutdown.cancelled() => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(uri: &str) -> Result<ConnectTarget, ProxyError> {
        ConnectTarget::parse(&uri.parse().unwrap())
    }

    #[test]
    fn connect_targets_are_host_and_port() {
        let t = parse("www.shop.test:443").unwrap();
        assert_eq!(t.host, Host::Domain("www.shop.test".to_owned()));
        assert_eq!(t.port, 443);
        let t = parse("[::1]:8443").unwrap();
        assert_eq!(t.host_str(), "::1");
        let t = parse("WWW.Shop.TEST:80").unwrap();
        assert_eq!(t.host_str(), "www.shop.test");
        assert!(parse("www.shop.test").is_err(), "port required");
        assert!(parse("/path").is_err());
        assert!(parse("http://www.shop.test:443/x").is_err());
    }

    #[test]
    fn sni_names_the_intercepted_origin() {
        let t = parse("1.2.3.4:8443").unwrap();
        let o = tls_origin(Some("www.shop.test"), &t);
        assert_eq!(o.ascii(), "https://www.shop.test:8443");
        assert_eq!(tls_origin(None, &t).ascii(), "https://1.2.3.4:8443");
        let t = parse("www.shop.test:443").unwrap();
        assert_eq!(tls_origin(None, &t).ascii(), "https://www.shop.test");
    }
}
