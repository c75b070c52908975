//! A string-level path for the one kind of reference that needs work and is common: an absolute
//! `http(s)://host/…` URL already spelled the way `Url::parse` would serialise it. For those, mapping the
//! host is all the rewrite does, so the parse, the join against the base and the re-serialisation
//! (most of the cost of an absolute URL) are skipped. Anything outside that canonical shape (a port,
//! userinfo, upper case, IDNA, dot segments, characters the parser would percent-encode) returns `None`
//! and takes the full parse, so the answer is the same either way (`tests.rs` compares both).

use super::ProxyMap;

impl ProxyMap {
    /// `Some(answer)` when `reference` is a canonical absolute http(s) URL (`answer` is what
    /// `rewrite_reference` returns for it); `None` when the full parse must decide.
    pub(super) fn rewrite_absolute_fast(&self, reference: &str) -> Option<Option<String>> {
        let r = reference.trim_matches(|c: char| c <= ' ');
        let (secure, rest) = match r.strip_prefix("https://") {
            Some(rest) => (true, rest),
            None => (false, r.strip_prefix("http://")?),
        };
        let host_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (host, tail) = rest.split_at(host_end);
        if !is_plain_host(host) || !is_canonical_tail(tail) {
            return None;
        }
        if self.public.covers_host(host) {
            return Some(None);
        }
        let public = &self.public;
        let mut out = String::with_capacity(
            16 + host.len() + self.session.as_str().len() + public.host.len() + tail.len(),
        );
        out.push_str(public.scheme());
        out.push_str("://");
        // `PublicOrigin::proxy_host` for a domain with the scheme's default port and no trailing dot.
        out.push_str(host);
        out.push('.');
        out.push_str(self.session.as_str());
        out.push('-');
        out.push(if secure { 's' } else { 'h' });
        out.push('.');
        out.push_str(&public.host);
        out.push_str(&public.port_suffix);
        // An empty path serialises as `/`.
        if !tail.starts_with('/') {
            out.push('/');
        }
        out.push_str(tail);
        Some(Some(out))
    }
}

/// Lowercase ASCII DNS labels that IDNA and the IPv4 parser leave alone: 1–63 bytes of `[a-z0-9-]`
/// each, no `xn--` (punycode is validated), no trailing dot, and a last label that starts with a letter
/// (a numeric one makes the host an IPv4 address).
fn is_plain_host(host: &str) -> bool {
    if host.is_empty() || host.len() > 253 {
        return false;
    }
    let mut last = "";
    for label in host.split('.') {
        let plain = label
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !plain || !(1..=63).contains(&label.len()) || label.starts_with("xn--") {
            return false;
        }
        last = label;
    }
    last.as_bytes().first().is_some_and(u8::is_ascii_lowercase)
}

/// Path, query and fragment made only of bytes no part of the URL parser changes (nothing it would
/// percent-encode, no backslash, no `'`, which special-scheme queries encode), with no dot segments.
fn is_canonical_tail(tail: &str) -> bool {
    let plain = tail.bytes().all(|b| {
        b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'-' | b'.'
                    | b'_'
                    | b'~'
                    | b'!'
                    | b'$'
                    | b'&'
                    | b'('
                    | b')'
                    | b'*'
                    | b'+'
                    | b','
                    | b';'
                    | b'='
                    | b':'
                    | b'@'
                    | b'/'
                    | b'%'
                    | b'?'
                    | b'#'
            )
    });
    if !plain {
        return false;
    }
    let path_end = tail.find(['?', '#']).unwrap_or(tail.len());
    !tail[..path_end].split('/').any(is_dot_segment)
}

/// `.` and `..`, in any of the spellings the parser resolves (`%2e` for a dot, any case).
fn is_dot_segment(segment: &str) -> bool {
    let s = segment.as_bytes();
    let dot = |b: &[u8]| b == b"." || b.eq_ignore_ascii_case(b"%2e");
    match s.len() {
        1 | 3 => dot(s),
        2 => s == b"..",
        4 => (dot(&s[..1]) && dot(&s[1..])) || (dot(&s[..3]) && dot(&s[3..])),
        6 => dot(&s[..3]) && dot(&s[3..]),
        _ => false,
    }
}
