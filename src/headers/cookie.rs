//! Cookies stay in the visitor's browser, under proxy hosts that keep the target's DNS hierarchy, so the
//! browser itself applies Domain, Path, expiry and host-only rules. The proxy only moves a `Domain`
//! attribute under the session's tag (`Domain=shop.test` → `Domain=shop.test.<tag>.<public>`) after the
//! checks a browser makes, so a site can never place a cookie on another site, the console, or a public
//! suffix. Paths need no change: proxy hosts serve the target's own paths.

use http::header::{HeaderMap, HeaderValue, COOKIE};
use url::Host;

use crate::url_codec::{ProxyMap, TargetOrigin};

/// Cookie names the proxy keeps for itself; a site can neither set nor read them.
pub const RESERVED_PREFIX: &str = "__cobrowse";

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum Rejected {
    #[error("unparseable cookie")]
    Unparseable,
    #[error("reserved cookie name")]
    Reserved,
    #[error("Domain does not cover the setting host")]
    ForeignDomain,
    #[error("Domain is a public suffix")]
    PublicSuffix,
}

/// Rewrites one `Set-Cookie` value from `target`. `Ok(None)` means "forward unchanged".
pub fn rewrite_set_cookie(
    value: &str,
    target: &TargetOrigin,
    map: &ProxyMap,
) -> Result<Option<String>, Rejected> {
    let parsed = cookie::Cookie::parse(value).map_err(|_| Rejected::Unparseable)?;
    if parsed.name().starts_with(RESERVED_PREFIX) {
        return Err(Rejected::Reserved);
    }
    let new_domain = match parsed
        .domain()
        .map(|d| d.trim_matches('.').to_ascii_lowercase())
    {
        Some(d) if !d.is_empty() => Some(proxy_domain(&d, target, map)?),
        _ => None,
    };
    let drop_secure = parsed.secure() == Some(true) && !map.public().is_potentially_trustworthy();
    if new_domain.is_none() && !drop_secure {
        return Ok(None);
    }
    Ok(Some(rebuild(value, new_domain.as_deref(), drop_secure)))
}

/// The proxy-side Domain for a target Domain attribute, after the browser's own checks.
fn proxy_domain(domain: &str, target: &TargetOrigin, map: &ProxyMap) -> Result<String, Rejected> {
    let host = match &target.host {
        Host::Domain(d) => d.trim_end_matches('.').to_ascii_lowercase(),
        // An IP host may only name itself, which is a host-only cookie in effect.
        _ if target.host_str() == domain => return Ok(proxy_host(target, map)),
        _ => return Err(Rejected::ForeignDomain),
    };
    let covers = host == domain
        || (host.len() > domain.len()
            && host.ends_with(domain)
            && host.as_bytes()[host.len() - domain.len() - 1] == b'.');
    if !covers {
        return Err(Rejected::ForeignDomain);
    }
    if is_public_suffix(domain) {
        // Browsers accept a public-suffix Domain only from that very host, as a host-only cookie.
        return if host == domain {
            Ok(proxy_host(target, map))
        } else {
            Err(Rejected::PublicSuffix)
        };
    }
    let proxied = proxy_host(target, map);
    let tail = &proxied[host.len()..];
    Ok(format!("{domain}{tail}"))
}

fn proxy_host(target: &TargetOrigin, map: &ProxyMap) -> String {
    map.public().proxy_host(map.session(), target)
}

/// Unknown top-level names (like `test`) count as public suffixes, as in browsers.
fn is_public_suffix(domain: &str) -> bool {
    match psl::suffix_str(domain) {
        Some(suffix) => suffix.len() == domain.len(),
        None => true,
    }
}

/// Re-emits the cookie with its Domain replaced (and Secure dropped when the proxy origin cannot keep it),
/// leaving every other attribute as the site wrote it.
fn rebuild(value: &str, domain: Option<&str>, drop_secure: bool) -> String {
    let mut parts = value.split(';');
    let mut out = String::with_capacity(value.len() + 48);
    out.push_str(parts.next().unwrap_or_default().trim());
    for attr in parts {
        let name = attr.split('=').next().unwrap_or_default().trim();
        let is_domain = name.eq_ignore_ascii_case("domain");
        let is_secure = name.eq_ignore_ascii_case("secure");
        let is_samesite_none = name.eq_ignore_ascii_case("samesite")
            && attr
                .split_once('=')
                .is_some_and(|(_, v)| v.trim().eq_ignore_ascii_case("none"));
        if is_domain || (drop_secure && (is_secure || is_samesite_none)) {
            continue;
        }
        out.push(';');
        out.push_str(attr);
    }
    if let Some(domain) = domain {
        out.push_str("; Domain=");
        out.push_str(domain);
    }
    out
}

/// Removes the proxy's own cookies from a request before it goes upstream.
pub fn strip_reserved(headers: &mut HeaderMap) {
    let values: Vec<HeaderValue> = headers.get_all(COOKIE).iter().cloned().collect();
    if values.is_empty() {
        return;
    }
    let kept: Vec<&str> = values
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .map(str::trim)
        .filter(|pair| !pair.is_empty() && !pair.starts_with(RESERVED_PREFIX))
        .collect();
    headers.remove(COOKIE);
    if kept.is_empty() {
        return;
    }
    if let Ok(v) = HeaderValue::from_str(&kept.join("; ")) {
        headers.insert(COOKIE, v);
    }
}

#[cfg(test)]
mod tests;
