//! Who may use the proxy for what, beyond the API token: the deployment's allow and deny lists of target
//! hosts, and per-client rate limits on session creation and relay joins (`docs/SECURITY.md`).

use std::net::IpAddr;
use std::num::NonZeroU32;

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use serde::Deserialize;

use crate::config::HostPattern;

/// The `[access]` section of the configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AccessConfig {
    /// When not empty, only these hosts (`host` or `*.suffix`) may be co-browsed or proxied to.
    pub allow_targets: Vec<String>,
    /// Hosts never co-browsed nor proxied to, whatever the allow list says.
    pub deny_targets: Vec<String>,
    /// Sessions one client address may create per minute (also the burst). Default 60.
    pub sessions_per_minute: u32,
    /// Relay joins (visitor or agent sockets) one client address may open per minute. Default 120.
    pub joins_per_minute: u32,
}

impl Default for AccessConfig {
    fn default() -> AccessConfig {
        AccessConfig {
            allow_targets: Vec::new(),
            deny_targets: Vec::new(),
            sessions_per_minute: 60,
            joins_per_minute: 120,
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("invalid target pattern {0:?}: expected a host or *.suffix")]
pub struct PatternError(pub String);

/// The compiled allow and deny lists.
#[derive(Debug, Clone, Default)]
pub struct TargetPolicy {
    allow: Vec<HostPattern>,
    deny: Vec<HostPattern>,
}

impl TargetPolicy {
    pub fn compile(allow: &[String], deny: &[String]) -> Result<TargetPolicy, PatternError> {
        let parse = |list: &[String]| {
            list.iter()
                .map(|s| HostPattern::parse(s).ok_or_else(|| PatternError(s.clone())))
                .collect::<Result<Vec<_>, _>>()
        };
        Ok(TargetPolicy {
            allow: parse(allow)?,
            deny: parse(deny)?,
        })
    }

    /// Whether the deployment lets the proxy reach `host`. Deny wins; an empty allow list allows all.
    pub fn permits(&self, host: &str) -> bool {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if self.deny.iter().any(|p| p.matches(host)) {
            return false;
        }
        self.allow.is_empty() || self.allow.iter().any(|p| p.matches(host))
    }
}

/// Per-client-address limits. Keys are the TCP peer's address: behind a load balancer that is the
/// balancer's, so the limits then apply to it as a whole (see docs/SECURITY.md).
pub struct ClientLimits {
    sessions: DefaultKeyedRateLimiter<IpAddr>,
    joins: DefaultKeyedRateLimiter<IpAddr>,
}

/// Keys kept before idle ones are dropped, so a flood of addresses cannot grow the maps without bound.
const MAX_TRACKED: usize = 100_000;

impl ClientLimits {
    pub fn new(config: &AccessConfig) -> ClientLimits {
        let per_minute = |n: u32| {
            let n = NonZeroU32::new(n.max(1)).unwrap_or(NonZeroU32::MIN);
            Quota::per_minute(n)
        };
        ClientLimits {
            sessions: RateLimiter::keyed(per_minute(config.sessions_per_minute)),
            joins: RateLimiter::keyed(per_minute(config.joins_per_minute)),
        }
    }

    /// True when `client` may create one more session now.
    pub fn allow_session(&self, client: IpAddr) -> bool {
        check(&self.sessions, client)
    }

    /// True when `client` may open one more relay socket now.
    pub fn allow_join(&self, client: IpAddr) -> bool {
        check(&self.joins, client)
    }
}

fn check(limiter: &DefaultKeyedRateLimiter<IpAddr>, client: IpAddr) -> bool {
    if limiter.len() > MAX_TRACKED {
        limiter.retain_recent();
    }
    limiter.check_key(&client).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn deny_wins_and_an_empty_allow_list_allows_everything_else() {
        let open = TargetPolicy::compile(&[], &strings(&["*.internal.test", "bad.test"])).unwrap();
        assert!(open.permits("www.shop.test"));
        assert!(!open.permits("db.internal.test"));
        assert!(!open.permits("BAD.test."));
        let closed =
            TargetPolicy::compile(&strings(&["*.shop.test"]), &strings(&["admin.shop.test"]))
                .unwrap();
        assert!(closed.permits("www.shop.test"));
        assert!(!closed.permits("admin.shop.test"));
        assert!(!closed.permits("example.com"));
        assert!(TargetPolicy::compile(&strings(&["*"]), &[]).is_err());
    }

    #[test]
    fn each_client_gets_its_own_budget() {
        let limits = ClientLimits::new(&AccessConfig {
            sessions_per_minute: 3,
            ..AccessConfig::default()
        });
        let a: IpAddr = "203.0.113.1".parse().unwrap();
        let b: IpAddr = "203.0.113.2".parse().unwrap();
        assert!((0..3).all(|_| limits.allow_session(a)));
        assert!(!limits.allow_session(a));
        assert!(limits.allow_session(b));
        assert!(limits.allow_join(a), "joins have their own budget");
    }
}
