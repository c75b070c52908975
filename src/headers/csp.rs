//! Content-Security-Policy rewriting: the policy keeps its protections, expressed in proxy hosts, and lets
//! exactly the agent script and its relay connection through.
//!
//! - host sources (`https://cdn.shop.test`, `*.shop.test`, scheme-less) become the same hosts under the
//!   session tag; wildcards still work because proxy hosts keep the target's DNS hierarchy;
//! - `'self'`, nonces, hashes and keywords need nothing: the page's proxy origin *is* its own origin;
//! - the agent script is allowed by a nonce when the policy uses nonces or hashes (adding a host would be
//!   ignored there, and adding a nonce elsewhere would disable `'unsafe-inline'`), else by the public origin;
//! - `upgrade-insecure-requests` is dropped when the proxy itself is served over plain http.

use url::{Host, Url};

use crate::url_codec::{ProxyMap, TargetOrigin};

/// [`AgentSources`] as the response path holds them: worked out on first use. Only a response that
/// carries a policy to amend or gets the agent needs them, and most responses (assets) do neither, while
/// working them out costs a SHA-256 (the nonce) and a string on every request.
pub type LazyAgentSources<'a> = dyn std::ops::Deref<Target = AgentSources> + Sync + 'a;

/// What the agent needs from a page's policy.
#[derive(Debug, Clone)]
pub struct AgentSources {
    /// Per-session (or per forward-proxied origin) nonce carried by the injected `<script>`.
    pub nonce: String,
    /// Where the agent script and its relay connection live: the public origin for proxy hosts, the
    /// page's own origin in the forward proxy (served under a reserved path, so https pages get no mixed
    /// content).
    pub origin: String,
}

const FETCH_LIKE: &[&str] = &[
    "default-src",
    "script-src",
    "script-src-elem",
    "script-src-attr",
    "style-src",
    "style-src-elem",
    "style-src-attr",
    "img-src",
    "font-src",
    "connect-src",
    "media-src",
    "object-src",
    "frame-src",
    "child-src",
    "worker-src",
    "manifest-src",
    "prefetch-src",
    "form-action",
    "frame-ancestors",
    "base-uri",
    "navigate-to",
    "fenced-frame-src",
];

/// Rewrites a whole header value (possibly several comma-separated policies).
pub fn rewrite(
    value: &str,
    map: &ProxyMap,
    page: &TargetOrigin,
    base: &Url,
    agent: &AgentSources,
) -> String {
    rewrite_value(value, Some(map), page, base, agent)
}

/// The forward proxy's version: the page keeps its own hosts, so only the agent is let in.
pub fn allow_agent_only(
    value: &str,
    page: &TargetOrigin,
    base: &Url,
    agent: &AgentSources,
) -> String {
    rewrite_value(value, None, page, base, agent)
}

/// Each comma-separated policy of a header value, rewritten on its own.
fn rewrite_value(
    value: &str,
    map: Option<&ProxyMap>,
    page: &TargetOrigin,
    base: &Url,
    agent: &AgentSources,
) -> String {
    value
        .split(',')
        .map(|policy| rewrite_policy(policy, map, page, base, agent))
        .collect::<Vec<_>>()
        .join(", ")
}

struct Directive {
    name: String,
    values: Vec<String>,
}

/// `map` is `None` in the forward proxy, where sources and report URIs already name the right hosts.
fn rewrite_policy(
    policy: &str,
    map: Option<&ProxyMap>,
    page: &TargetOrigin,
    base: &Url,
    agent: &AgentSources,
) -> String {
    let mut directives: Vec<Directive> = Vec::new();
    for raw in policy.split(';') {
        let mut tokens = raw.split_ascii_whitespace();
        let Some(name) = tokens.next().map(str::to_ascii_lowercase) else {
            continue;
        };
        let Some(map) = map else {
            directives.push(Directive {
                name,
                values: tokens.map(str::to_owned).collect(),
            });
            continue;
        };
        let values: Vec<String> = match name.as_str() {
            "upgrade-insecure-requests" | "block-all-mixed-content"
                if !map.public().is_secure() =>
            {
                continue
            }
            "report-uri" => tokens
                .map(|t| {
                    map.rewrite_reference(base, t)
                        .unwrap_or_else(|| t.to_owned())
                })
                .collect(),
            n if FETCH_LIKE.contains(&n) => tokens.flat_map(|t| map_source(t, map, page)).collect(),
            _ => tokens.map(str::to_owned).collect(),
        };
        directives.push(Directive { name, values });
    }
    allow_agent(&mut directives, agent);
    directives
        .iter()
        .map(|d| {
            if d.values.is_empty() {
                d.name.clone()
            } else {
                format!("{} {}", d.name, d.values.join(" "))
            }
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// Adds the agent script and the relay connection where the policy restricts them.
fn allow_agent(directives: &mut Vec<Directive>, agent: &AgentSources) {
    let public = agent.origin.clone();
    let ws_public = public.replacen("http", "ws", 1);
    let script_like = ["script-src", "script-src-elem"];
    derive_from_default(directives, "script-src", &script_like);
    derive_from_default(directives, "connect-src", &["connect-src"]);
    for d in directives.iter_mut() {
        if script_like.contains(&d.name.as_str()) {
            let uses_nonces = d.values.iter().any(|v| {
                let v = v.to_ascii_lowercase();
                v.starts_with("'nonce-") || v.starts_with("'sha") || v == "'strict-dynamic'"
            });
            let source = if uses_nonces {
                format!("'nonce-{}'", agent.nonce)
            } else {
                public.clone()
            };
            add_source(&mut d.values, source);
        } else if d.name == "connect-src" {
            add_source(&mut d.values, public.clone());
            add_source(&mut d.values, ws_public.clone());
        }
    }
}

/// When a policy restricts `default-src` but not `name` (nor any of `family`), `name` inherits default-src;
/// make that explicit so the agent can be added to it without widening every other fetch directive.
fn derive_from_default(directives: &mut Vec<Directive>, name: &str, family: &[&str]) {
    if directives.iter().any(|d| family.contains(&d.name.as_str())) {
        return;
    }
    if let Some(default) = directives.iter().find(|d| d.name == "default-src") {
        let values = default.values.clone();
        directives.push(Directive {
            name: name.to_owned(),
            values,
        });
    }
}

fn add_source(values: &mut Vec<String>, source: String) {
    values.retain(|v| !v.eq_ignore_ascii_case("'none'"));
    if !values.contains(&source) {
        values.push(source);
    }
}

/// One source expression in target terms → the same in proxy terms.
fn map_source(source: &str, map: &ProxyMap, page: &TargetOrigin) -> Vec<String> {
    if source.starts_with('\'') || source == "*" {
        return vec![source.to_owned()];
    }
    if let Some(scheme) = scheme_source(source) {
        return match scheme_wildcard(&scheme, map) {
            Some(wild) => vec![source.to_owned(), wild],
            None => vec![source.to_owned()],
        };
    }
    match HostSource::parse(source) {
        Some(hs) => hs.to_proxy(map, page),
        None => vec![source.to_owned()],
    }
}

fn scheme_source(source: &str) -> Option<String> {
    let scheme = source.strip_suffix(':')?;
    let mut chars = scheme.chars();
    let ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    ok.then(|| scheme.to_ascii_lowercase())
}

/// `https:` allows any https URL; in proxy terms that is any proxy host.
fn scheme_wildcard(scheme: &str, map: &ProxyMap) -> Option<String> {
    let public = map.public();
    let port = match public.port() {
        80 if !public.is_secure() => String::new(),
        443 if public.is_secure() => String::new(),
        p => format!(":{p}"),
    };
    let proxy_scheme = match (scheme, public.is_secure()) {
        ("http" | "https", true) => "https",
        ("http" | "https", false) => "http",
        ("ws" | "wss", true) => "wss",
        ("ws" | "wss", false) => "ws",
        _ => return None,
    };
    Some(format!("{proxy_scheme}://*.{}{port}", public.host()))
}

struct HostSource<'a> {
    scheme: Option<String>,
    wildcard: bool,
    host: &'a str,
    port: Option<&'a str>,
    path: &'a str,
}

impl<'a> HostSource<'a> {
    fn parse(source: &'a str) -> Option<HostSource<'a>> {
        let (scheme, rest) = match source.split_once("://") {
            Some((s, r)) => (Some(s.to_ascii_lowercase()), r),
            None => (None, source),
        };
        let path_at = rest.find('/').unwrap_or(rest.len());
        let (authority, path) = rest.split_at(path_at);
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || authority.starts_with('[') => (h, Some(p)),
            _ => (authority, None),
        };
        let (wildcard, host) = match host.strip_prefix("*.") {
            Some(h) => (true, h),
            None => (false, host),
        };
        if host.is_empty() || host == "*" {
            return None;
        }
        Some(HostSource {
            scheme,
            wildcard,
            host,
            port,
            path,
        })
    }

    fn to_proxy(&self, map: &ProxyMap, page: &TargetOrigin) -> Vec<String> {
        let secures: &[bool] = match self.scheme.as_deref() {
            Some("https" | "wss") => &[true],
            Some("http" | "ws") => &[false],
            Some(_) => return vec![self.original()],
            // Scheme-less sources match the page's scheme, and https too when the page is http.
            None if page.secure => &[true],
            None => &[true, false],
        };
        let Ok(host) = Host::parse(self.host) else {
            return vec![self.original()];
        };
        secures
            .iter()
            .filter_map(|&secure| {
                let port = match self.port {
                    None | Some("*") => {
                        if secure {
                            443
                        } else {
                            80
                        }
                    }
                    Some(p) => p.parse().ok()?,
                };
                let origin = TargetOrigin {
                    secure,
                    host: host.clone(),
                    port,
                };
                let proxied = map.proxy_origin(&origin);
                let (scheme, rest) = proxied.split_once("://")?;
                let scheme = match self.scheme.as_deref() {
                    Some("ws" | "wss") => scheme.replacen("http", "ws", 1),
                    _ => scheme.to_owned(),
                };
                let star = if self.wildcard { "*." } else { "" };
                Some(format!("{scheme}://{star}{rest}{}", self.path))
            })
            .collect()
    }

    fn original(&self) -> String {
        let scheme = self
            .scheme
            .as_deref()
            .map(|s| format!("{s}://"))
            .unwrap_or_default();
        let star = if self.wildcard { "*." } else { "" };
        let port = self.port.map(|p| format!(":{p}")).unwrap_or_default();
        format!("{scheme}{star}{}{port}{}", self.host, self.path)
    }
}

#[cfg(test)]
mod tests;
