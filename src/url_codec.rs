//! Target origin + session ⇄ proxy host, and target URL ⇄ proxied URL.
//!
//! A proxied host keeps the target's own labels and adds one *tag* label that names the session and the
//! target's scheme and port, under the public host:
//!
//! ```text
//! https://www.shop.test/a?b        ->  http://www.shop.test.k3x9q2m7wa-s.localhost:8080/a?b
//! http://cdn.shop.test:8443/       ->  http://cdn.shop.test.k3x9q2m7wa-h-8443.localhost:8080/
//! https://[2001:db8::1]/           ->  http://2001-db8-0-0-0-0-0-1.k3x9q2m7wa-s6.localhost:8080/
//! ```
//!
//! Why this shape (see `docs/url-scheme.md`): every target origin gets its own browser origin, the target's
//! labels stay a DNS hierarchy so the browser itself applies cookie `Domain` semantics (a cookie for
//! `shop.test` becomes one for `shop.test.<tag>.<public>`), CSP wildcards keep working, and paths are untouched
//! so relative and root-relative URLs need no rewriting at all. Each target label is at most 63 bytes
//! already, and the tag is short, so no label ever exceeds the DNS limit.
//!
//! This module owns URL syntax only; headers and bodies call into it.

use std::fmt::Write as _;
use std::net::Ipv6Addr;

use url::{Host, Url};

/// Length of a session id: lowercase letters and digits, never `-`, so it is the tag's first field.
pub const SESSION_ID_LEN: usize = 10;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CodecError {
    #[error("host is not under the public host")]
    NotProxyHost,
    #[error("malformed proxy host tag")]
    BadTag,
    #[error("malformed target host in proxy host")]
    BadTargetHost,
    #[error("URL scheme {0:?} cannot be proxied")]
    UnsupportedScheme(String),
    #[error("URL has no host")]
    NoHost,
    #[error("not a valid DNS name (labels of 1-63 bytes, 253 in all) or port 0")]
    BadHostName,
    #[error("public URL must be http(s) with a domain name host")]
    BadPublicUrl,
}

/// A session identifier as it appears in proxy hosts.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId(String);

impl SessionId {
    /// Accepts exactly [`SESSION_ID_LEN`] lowercase ASCII letters or digits.
    pub fn parse(s: &str) -> Option<SessionId> {
        let ok = s.len() == SESSION_ID_LEN
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
        ok.then(|| SessionId(s.to_owned()))
    }

    pub fn random() -> SessionId {
        use rand::Rng;
        const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
        let mut rng = rand::thread_rng();
        let id = (0..SESSION_ID_LEN)
            .map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char)
            .collect();
        SessionId(id)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for SessionId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The origin of a proxied site: always http or https (ws/wss travel as their http twins).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TargetOrigin {
    pub secure: bool,
    pub host: Host<String>,
    pub port: u16,
}

/// A name a resolver can be asked for: a name that is not would only waste a DNS round trip (or hang
/// until the resolver's timeout) before failing.
fn is_dns_name(name: &str) -> bool {
    let name = name.strip_suffix('.').unwrap_or(name);
    name.len() <= 253 && name.split('.').all(|l| (1..=63).contains(&l.len()))
}

impl TargetOrigin {
    pub fn from_url(url: &Url) -> Result<TargetOrigin, CodecError> {
        let secure = match url.scheme() {
            "https" | "wss" => true,
            "http" | "ws" => false,
            other => return Err(CodecError::UnsupportedScheme(other.to_owned())),
        };
        let host = url.host().ok_or(CodecError::NoHost)?.to_owned();
        let port = url.port().unwrap_or_else(|| default_port(secure));
        let valid_name = match &host {
            Host::Domain(name) => is_dns_name(name),
            _ => true,
        };
        if !valid_name || port == 0 {
            return Err(CodecError::BadHostName);
        }
        Ok(TargetOrigin { secure, host, port })
    }

    pub fn scheme(&self) -> &'static str {
        if self.secure {
            "https"
        } else {
            "http"
        }
    }

    /// `host[:port]`, the port only when not the scheme's default.
    pub fn authority(&self) -> String {
        let mut s = match &self.host {
            Host::Ipv6(ip) => format!("[{ip}]"),
            other => other.to_string(),
        };
        if self.port != default_port(self.secure) {
            let _ = write!(s, ":{}", self.port);
        }
        s
    }

    /// The serialized origin, e.g. `https://www.shop.test`.
    pub fn ascii(&self) -> String {
        format!("{}://{}", self.scheme(), self.authority())
    }

    pub fn host_str(&self) -> String {
        match &self.host {
            Host::Ipv6(ip) => ip.to_string(),
            other => other.to_string(),
        }
    }
}

fn default_port(secure: bool) -> u16 {
    if secure {
        443
    } else {
        80
    }
}

/// Where the proxy itself lives (console, API, agent script): `--public-url`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicOrigin {
    secure: bool,
    host: String,
    port: u16,
    /// `:port` or empty when the port is the scheme's default; appended to every proxy host.
    port_suffix: String,
}

impl PublicOrigin {
    pub fn parse(public_url: &str) -> Result<PublicOrigin, CodecError> {
        let url = Url::parse(public_url).map_err(|_| CodecError::BadPublicUrl)?;
        let secure = match url.scheme() {
            "https" => true,
            "http" => false,
            _ => return Err(CodecError::BadPublicUrl),
        };
        // Proxy hosts are subdomains of the public host, which an IP literal cannot have.
        let Some(Host::Domain(host)) = url.host() else {
            return Err(CodecError::BadPublicUrl);
        };
        let port = url.port().unwrap_or_else(|| default_port(secure));
        let port_suffix = url.port().map(|p| format!(":{p}")).unwrap_or_default();
        Ok(PublicOrigin {
            secure,
            host: host.trim_end_matches('.').to_ascii_lowercase(),
            port,
            port_suffix,
        })
    }

    pub fn scheme(&self) -> &'static str {
        if self.secure {
            "https"
        } else {
            "http"
        }
    }

    pub fn is_secure(&self) -> bool {
        self.secure
    }

    pub fn host(&self) -> &str {
        &self.host
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `scheme://host[:port]` of the console and API.
    pub fn origin(&self) -> String {
        format!("{}://{}{}", self.scheme(), self.host, self.port_suffix)
    }

    /// Whether the browser treats this origin's hosts as secure contexts even over http
    /// (`localhost` and `*.localhost`), so `Secure` cookies still work.
    pub fn is_potentially_trustworthy(&self) -> bool {
        self.secure || self.host == "localhost" || self.host.ends_with(".localhost")
    }

    /// Splits a Host header into its name and port (default port when absent).
    fn split_authority<'a>(&self, authority: &'a str) -> Option<(&'a str, u16)> {
        match authority.rsplit_once(':') {
            Some((name, port)) if !name.ends_with(']') && !name.contains(':') => {
                Some((name, port.parse().ok()?))
            }
            Some(_) => None,
            None => Some((authority, default_port(self.secure))),
        }
    }

    /// Whether `authority` (a Host header) names the console/API origin itself.
    pub fn is_public_authority(&self, authority: &str) -> bool {
        match self.split_authority(authority) {
            Some((name, port)) => {
                port == self.port && name.trim_end_matches('.').eq_ignore_ascii_case(&self.host)
            }
            None => false,
        }
    }

    /// Whether `host` (no port) is the public host or one of its subdomains: a URL there is already proxied.
    pub fn covers_host(&self, host: &str) -> bool {
        let host = host.trim_end_matches('.');
        host.eq_ignore_ascii_case(&self.host)
            || (host.len() > self.host.len()
                && host.as_bytes()[host.len() - self.host.len() - 1] == b'.'
                && host[host.len() - self.host.len()..].eq_ignore_ascii_case(&self.host))
    }

    /// The proxy host name (no port) for a target origin in a session.
    pub fn proxy_host(&self, session: &SessionId, target: &TargetOrigin) -> String {
        let mut out = String::with_capacity(64);
        match &target.host {
            Host::Domain(d) => out.push_str(d.strip_suffix('.').unwrap_or(d)),
            Host::Ipv4(ip) => {
                let _ = write!(out, "{ip}");
            }
            Host::Ipv6(ip) => {
                let segments = ip.segments().map(|s| format!("{s:x}"));
                out.push_str(&segments.join("-"));
            }
        }
        out.push('.');
        out.push_str(session.as_str());
        out.push('-');
        out.push(if target.secure { 's' } else { 'h' });
        if matches!(target.host, Host::Ipv6(_)) {
            out.push('6');
        }
        if matches!(&target.host, Host::Domain(d) if d.ends_with('.')) {
            out.push('f');
        }
        if target.port != default_port(target.secure) {
            let _ = write!(out, "-{}", target.port);
        }
        out.push('.');
        out.push_str(&self.host);
        out
    }

    /// The proxy origin (`scheme://proxyhost[:port]`) for a target origin in a session.
    pub fn proxy_origin(&self, session: &SessionId, target: &TargetOrigin) -> String {
        format!(
            "{}://{}{}",
            self.scheme(),
            self.proxy_host(session, target),
            self.port_suffix
        )
    }

    /// Decodes a Host header of a proxied request back to its session and target origin.
    pub fn decode_authority(
        &self,
        authority: &str,
    ) -> Result<(SessionId, TargetOrigin), CodecError> {
        let (name, port) = self
            .split_authority(authority)
            .ok_or(CodecError::NotProxyHost)?;
        if port != self.port {
            return Err(CodecError::NotProxyHost);
        }
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        let inner = name
            .strip_suffix(&self.host)
            .and_then(|s| s.strip_suffix('.'))
            .ok_or(CodecError::NotProxyHost)?;
        let (target_labels, tag) = inner.rsplit_once('.').ok_or(CodecError::BadTag)?;
        let tag = Tag::parse(tag)?;
        let host = decode_target_host(target_labels, &tag)?;
        let target = TargetOrigin {
            secure: tag.secure,
            host,
            port: tag.port.unwrap_or_else(|| default_port(tag.secure)),
        };
        // Only the canonical spelling is accepted, so one origin has exactly one proxy host.
        if self.proxy_host(&tag.session, &target) != name {
            return Err(CodecError::BadTargetHost);
        }
        Ok((tag.session, target))
    }
}

struct Tag {
    session: SessionId,
    secure: bool,
    ipv6: bool,
    fqdn: bool,
    port: Option<u16>,
}

impl Tag {
    fn parse(tag: &str) -> Result<Tag, CodecError> {
        let mut parts = tag.split('-');
        let session = parts
            .next()
            .and_then(SessionId::parse)
            .ok_or(CodecError::BadTag)?;
        let kind = parts.next().ok_or(CodecError::BadTag)?;
        let port = match parts.next() {
            Some(p) => Some(p.parse::<u16>().map_err(|_| CodecError::BadTag)?),
            None => None,
        };
        if parts.next().is_some() {
            return Err(CodecError::BadTag);
        }
        let mut flags = kind.chars();
        let secure = match flags.next() {
            Some('s') => true,
            Some('h') => false,
            _ => return Err(CodecError::BadTag),
        };
        let rest: String = flags.collect();
        let (ipv6, fqdn) = match rest.as_str() {
            "" => (false, false),
            "6" => (true, false),
            "f" => (false, true),
            _ => return Err(CodecError::BadTag),
        };
        Ok(Tag {
            session,
            secure,
            ipv6,
            fqdn,
            port,
        })
    }
}

fn decode_target_host(labels: &str, tag: &Tag) -> Result<Host<String>, CodecError> {
    if tag.ipv6 {
        let mut segments = [0u16; 8];
        let mut count = 0;
        for part in labels.split('-') {
            let slot = segments.get_mut(count).ok_or(CodecError::BadTargetHost)?;
            *slot = u16::from_str_radix(part, 16).map_err(|_| CodecError::BadTargetHost)?;
            count += 1;
        }
        if count != 8 {
            return Err(CodecError::BadTargetHost);
        }
        return Ok(Host::Ipv6(Ipv6Addr::from(segments)));
    }
    let mut host = Host::parse(labels).map_err(|_| CodecError::BadTargetHost)?;
    if tag.fqdn {
        match &mut host {
            Host::Domain(d) => d.push('.'),
            _ => return Err(CodecError::BadTargetHost),
        }
    }
    Ok(host)
}

/// What every rewriter needs for one response: the public origin, the session, and the base URL to
/// resolve references against.
#[derive(Debug, Clone)]
pub struct ProxyMap {
    public: std::sync::Arc<PublicOrigin>,
    session: SessionId,
}

impl ProxyMap {
    pub fn new(public: std::sync::Arc<PublicOrigin>, session: SessionId) -> ProxyMap {
        ProxyMap { public, session }
    }

    pub fn public(&self) -> &PublicOrigin {
        &self.public
    }

    pub fn session(&self) -> &SessionId {
        &self.session
    }

    /// The proxied form of an absolute URL, or `None` when it is not an http(s)/ws(s) URL or already
    /// points inside the proxy.
    pub fn to_proxy(&self, target: &Url) -> Option<Url> {
        Url::parse(&self.to_proxy_string(target)?).ok()
    }

    /// [`to_proxy`](Self::to_proxy) as a string, built in one pass: this runs for every absolute URL in
    /// every page, and re-serialising a `Url` once per changed component costs several times more.
    pub fn to_proxy_string(&self, target: &Url) -> Option<String> {
        let origin = TargetOrigin::from_url(target).ok()?;
        if self.public.covers_host(&origin.host_str()) {
            return None;
        }
        let secure = self.public.secure;
        let scheme = match target.scheme() {
            "ws" | "wss" if secure => "wss",
            "ws" | "wss" => "ws",
            _ if secure => "https",
            _ => "http",
        };
        let rest = &target[url::Position::BeforePath..];
        let host = self.public.proxy_host(&self.session, &origin);
        let mut out = String::with_capacity(scheme.len() + 3 + host.len() + 6 + rest.len());
        out.push_str(scheme);
        out.push_str("://");
        out.push_str(&host);
        out.push_str(&self.public.port_suffix);
        out.push_str(rest);
        Some(out)
    }

    /// The target URL a proxied URL stands for, when it is a proxy URL of this session.
    pub fn to_target(&self, proxied: &Url) -> Option<Url> {
        let authority = match proxied.port() {
            Some(p) => format!("{}:{p}", proxied.host_str()?),
            None => proxied.host_str()?.to_owned(),
        };
        let (session, origin) = self.public.decode_authority(&authority).ok()?;
        if session != self.session {
            return None;
        }
        let mut out = Url::parse(&origin.ascii()).ok()?;
        out.set_path(proxied.path());
        out.set_query(proxied.query());
        out.set_fragment(proxied.fragment());
        if matches!(proxied.scheme(), "ws" | "wss") {
            out.set_scheme(if origin.secure { "wss" } else { "ws" })
                .ok()?;
        }
        Some(out)
    }

    /// The proxy origin for a target origin, e.g. for `Access-Control-Allow-Origin`.
    pub fn proxy_origin(&self, target: &TargetOrigin) -> String {
        self.public.proxy_origin(&self.session, target)
    }

    /// Rewrites a URL reference as written in a document whose base URL is `base`.
    ///
    /// Returns `None` when the reference already stays inside the proxy as written: relative and
    /// root-relative references (the proxy host shares the target's paths), fragments, and non-network
    /// schemes (`data:`, `blob:`, `javascript:`, `about:`, `mailto:` …). Only references that name another
    /// origin, or a scheme the browser would resolve differently on the proxy's scheme, are resolved.
    pub fn rewrite_reference(&self, base: &Url, reference: &str) -> Option<String> {
        if !needs_resolving(reference) {
            return None;
        }
        let mut out = String::new();
        self.write_reference(base, reference, &mut out)
            .then_some(out)
    }

    /// [`rewrite_reference`](Self::rewrite_reference) appending to `out`: returns whether `reference`
    /// needed rewriting, and only then writes its proxied form. For callers that build one value out of
    /// many URLs (`srcset`) or reuse one buffer, without a string per URL.
    pub fn write_reference(&self, base: &Url, reference: &str, out: &mut String) -> bool {
        if !needs_resolving(reference) {
            return false;
        }
        if let Some(changed) = self.write_absolute_fast(reference, out) {
            return changed;
        }
        let Some(proxied) = base
            .join(reference)
            .ok()
            .and_then(|absolute| self.to_proxy_string(&absolute))
        else {
            return false;
        };
        out.push_str(&proxied);
        true
    }
}

/// The fast path: can the browser resolve `reference` against the proxy URL and still land on the right
/// target? That holds for every reference that neither starts with a scheme of a special (network) URL nor
/// names an authority (`//host`, and its backslash spellings that browsers accept).
pub fn needs_resolving(reference: &str) -> bool {
    needs_resolving_bytes(reference.as_bytes())
}

/// [`needs_resolving`] over the bytes of a value as written, in UTF-8 or any ASCII-compatible encoding:
/// it looks only at ASCII, which those all spell the same, so no decoding is needed to answer.
///
/// Only the start of a reference can make it name a scheme or an authority, so only the start is read:
/// after the C0 controls and spaces the URL parser strips in front, with the tabs and newlines it strips
/// anywhere skipped (`h\ttps://` is a scheme, `/\t/host` an authority).
pub fn needs_resolving_bytes(reference: &[u8]) -> bool {
    let mut rest = reference
        .iter()
        .copied()
        .skip_while(|&b| b <= b' ')
        .filter(|&b| !matches!(b, b'\t' | b'\n' | b'\r'));
    match rest.next() {
        Some(b'/' | b'\\') => matches!(rest.next(), Some(b'/' | b'\\')),
        Some(first) if first.is_ascii_alphabetic() => has_special_scheme(first, rest),
        _ => false,
    }
}

/// The special (network) schemes, lowercase: a reference with one of them is resolved against the base
/// by its own rules, so it needs the rewriter's work.
pub const SPECIAL_SCHEMES: [&[u8]; 6] = [b"http", b"https", b"ws", b"wss", b"ftp", b"file"];

/// Whether a scheme starting with `first` and going on in `rest` up to its `:` is a special (network)
/// one. The longest is five letters, so no more than six bytes are read.
fn has_special_scheme(first: u8, rest: impl Iterator<Item = u8>) -> bool {
    let mut scheme = [first.to_ascii_lowercase(), 0, 0, 0, 0];
    for (len, b) in (1..).zip(rest) {
        if b == b':' {
            return SPECIAL_SCHEMES.contains(&&scheme[..len]);
        }
        let scheme_byte = b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.');
        let Some(slot) = scheme.get_mut(len).filter(|_| scheme_byte) else {
            return false;
        };
        *slot = b.to_ascii_lowercase();
    }
    false
}

/// The map unit tests share: public origin `http://localhost:8080`, session `k3x9q2m7wa`.
#[cfg(test)]
pub(crate) fn test_map() -> ProxyMap {
    #[allow(clippy::unwrap_used)]
    let public = PublicOrigin::parse("http://localhost:8080").unwrap();
    #[allow(clippy::unwrap_used)]
    let session = SessionId::parse("k3x9q2m7wa").unwrap();
    ProxyMap::new(std::sync::Arc::new(public), session)
}

mod fast;

#[cfg(test)]
mod tests;
