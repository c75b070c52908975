//! The private-address guard: which IP addresses a proxied request may reach, and a resolver that enforces
//! it on the very addresses the connector will dial (so a DNS answer cannot change between check and use).
//!
//! Hosts mapped with `--resolve` are an explicit opt-in and bypass the guard; nothing else does.

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use hickory_resolver::TokioResolver;
use hyper_util::client::legacy::connect::dns::Name;

use crate::config::ResolveRule;

/// Why a target address is refused.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("{addr} is a {kind} address")]
pub struct Refused {
    pub addr: IpAddr,
    pub kind: &'static str,
}

/// Returns why `ip` must not be reached from a public proxy, or `None` when it is a public unicast address.
pub fn classify(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

pub fn check(ip: IpAddr) -> Result<(), Refused> {
    match classify(ip) {
        Some(kind) => Err(Refused { addr: ip, kind }),
        None => Ok(()),
    }
}

fn classify_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, _] = ip.octets();
    let kind = match (a, b, c) {
        (0, _, _) => "unspecified (this-network)",
        (127, _, _) => "loopback",
        (10, _, _) => "private",
        (172, 16..=31, _) => "private",
        (192, 168, _) => "private",
        (169, 254, _) => "link-local",
        (100, 64..=127, _) => "shared (CGNAT)",
        (192, 0, 0) => "IETF protocol assignment",
        (192, 0, 2) | (198, 51, 100) | (203, 0, 113) => "documentation",
        (198, 18..=19, _) => "benchmarking",
        (192, 88, 99) => "6to4 relay anycast",
        (224..=239, _, _) => "multicast",
        (240..=255, _, _) => "reserved or broadcast",
        _ => return None,
    };
    Some(kind)
}

fn classify_v6(ip: Ipv6Addr) -> Option<&'static str> {
    // An IPv6 form that carries an IPv4 address reaches that address: judge it as IPv4.
    if let Some(v4) = embedded_v4(ip) {
        return classify_v4(v4);
    }
    let s = ip.segments();
    let kind = match s[0] {
        _ if ip.is_unspecified() => "unspecified",
        _ if ip.is_loopback() => "loopback",
        0xfc00..=0xfdff => "unique-local",
        0xfe80..=0xfebf => "link-local",
        0xfec0..=0xfeff => "site-local",
        0xff00..=0xffff => "multicast",
        0x0100 if s[1..4] == [0, 0, 0] => "discard-only",
        0x2001 if s[1] == 0x0db8 => "documentation",
        0x2001 if s[1] == 0 => "Teredo",
        0x2001 if s[1] < 0x0200 => "IETF protocol assignment",
        0x0064 if s[1] == 0xff9b && s[2] == 1 => "local-use NAT64",
        0x3fff if s[1] < 0x1000 => "documentation",
        0x5f00 => "segment routing",
        _ => return None,
    };
    Some(kind)
}

/// IPv4 addresses carried inside IPv6 forms that reach them: mapped, compatible, NAT64 and 6to4.
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = ip.segments();
    let tail = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    match s {
        [0, 0, 0, 0, 0, 0xffff, _, _] => Some(tail),
        // IPv4-compatible (deprecated), but not :: and ::1 which are classified on their own.
        [0, 0, 0, 0, 0, 0, _, _] if u32::from(tail) > 1 => Some(tail),
        [0x64, 0xff9b, 0, 0, 0, 0, _, _] => Some(tail),
        [0x2002, hi, lo, ..] => Some(Ipv4Addr::new(
            (hi >> 8) as u8,
            hi as u8,
            (lo >> 8) as u8,
            lo as u8,
        )),
        _ => None,
    }
}

/// The `--resolve` rules plus the real resolver, as one lookup used by the connector.
#[derive(Clone)]
pub struct GuardedResolver {
    rules: Arc<[ResolveRule]>,
    dns: Arc<TokioResolver>,
}

impl GuardedResolver {
    /// `servers`: the DNS servers to ask (UDP); the system's configuration when empty.
    pub fn new(rules: Arc<[ResolveRule]>, servers: &[SocketAddr]) -> GuardedResolver {
        let dns = if servers.is_empty() {
            system_resolver()
        } else {
            resolver_for(servers)
        };
        GuardedResolver {
            rules,
            dns: Arc::new(dns),
        }
    }

    /// The rule mapping `host`, if any.
    pub fn rule_for(&self, host: &str) -> Option<&ResolveRule> {
        self.rules.iter().find(|r| r.matches(host))
    }

    /// The addresses `host` may be reached at (port 0 unless a `--resolve` rule names one).
    pub async fn lookup(
        self,
        host: String,
    ) -> Result<std::vec::IntoIter<SocketAddr>, ResolveError> {
        if let Some(rule) = self.rule_for(&host) {
            let addr = SocketAddr::new(rule.addr, rule.port.unwrap_or(0));
            return Ok(vec![addr].into_iter());
        }
        let answer = self
            .dns
            .lookup_ip(host.as_str())
            .await
            .map_err(|e| ResolveError::Dns(e.to_string()))?;
        let addrs: Vec<SocketAddr> = answer.iter().map(|ip| SocketAddr::new(ip, 0)).collect();
        if addrs.is_empty() {
            return Err(ResolveError::Dns(format!("no addresses for {host}")));
        }
        // Any private answer refuses the whole name: a rebinding name must not get a second chance.
        for addr in &addrs {
            check(addr.ip()).map_err(ResolveError::Refused)?;
        }
        Ok(addrs.into_iter())
    }
}

fn resolver_for(servers: &[SocketAddr]) -> TokioResolver {
    use hickory_resolver::config::{NameServerConfig, ResolverConfig};
    let mut config = ResolverConfig::new();
    for addr in servers {
        config.add_name_server(NameServerConfig::new(
            *addr,
            hickory_resolver::proto::xfer::Protocol::Udp,
        ));
    }
    TokioResolver::builder_with_config(
        config,
        hickory_resolver::name_server::TokioConnectionProvider::default(),
    )
    .build()
}

fn system_resolver() -> TokioResolver {
    match TokioResolver::builder_tokio() {
        Ok(builder) => builder.build(),
        Err(_) => TokioResolver::builder_with_config(
            hickory_resolver::config::ResolverConfig::default(),
            hickory_resolver::name_server::TokioConnectionProvider::default(),
        )
        .build(),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error("DNS lookup failed: {0}")]
    Dns(String),
    #[error("refused: {0}")]
    Refused(Refused),
}

impl tower_service::Service<Name> for GuardedResolver {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = ResolveError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let this = self.clone();
        let host = name.as_str().to_owned();
        Box::pin(this.lookup(host))
    }
}

#[cfg(test)]
mod tests;
