//! A string-level path for the one kind of reference that needs work and is common: an absolute
//! `http(s)://host/…` URL already spelled the way `Url::parse` would serialise it. For those, mapping the
//! host is all the rewrite does, so the parse, the join against the base and the re-serialisation
//! (most of the cost of an absolute URL) are skipped. Anything outside that canonical shape (a port,
//! userinfo, upper case, IDNA, dot segments, characters the parser would percent-encode) returns `None`
//! and takes the full parse, so the answer is the same either way (`tests.rs` compares both).

use super::ProxyMap;
use crate::byte_set::byte_set;

impl ProxyMap {
    /// `Some(changed)` when `reference` is a canonical absolute http(s) URL: `changed` says whether it
    /// needed rewriting, in which case its proxy form was appended to `out` (what `write_reference`
    /// does for it); `None` when the full parse must decide, and then `out` is untouched.
    pub(super) fn write_absolute_fast(&self, reference: &str, out: &mut String) -> Option<bool> {
        let r = trim_c0_and_space(reference);
        if !r.starts_with("http") {
            return None;
        }
        let (secure, rest) = match r.strip_prefix("https://") {
            Some(rest) => (true, rest),
            None => (false, r.strip_prefix("http://")?),
        };
        let host_end = rest
            .bytes()
            .position(|b| matches!(b, b'/' | b'?' | b'#'))
            .unwrap_or(rest.len());
        let (host, tail) = rest.split_at(host_end);
        if !is_plain_host(host) || !is_canonical_tail(tail) {
            return None;
        }
        if self.public.covers_host(host) {
            return Some(false);
        }
        let public = &self.public;
        out.reserve(16 + host.len() + self.session.as_str().len() + public.host.len() + tail.len());
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
        Some(true)
    }

    /// [`write_absolute_fast`](Self::write_absolute_fast) into a new string: `Some(answer)` is what
    /// `rewrite_reference` returns for `reference`.
    #[cfg(test)]
    pub(super) fn rewrite_absolute_fast(&self, reference: &str) -> Option<Option<String>> {
        let mut out = String::new();
        let changed = self.write_absolute_fast(reference, &mut out)?;
        Some(changed.then_some(out))
    }
}

/// Lowercase ASCII DNS labels that IDNA and the IPv4 parser leave alone: 1–63 bytes of `[a-z0-9-]`
/// each, no `xn--` (punycode is validated), no trailing dot, and a last label that starts with a letter
/// (a numeric one makes the host an IPv4 address). One pass over the bytes, a table lookup each: this
/// runs for every absolute URL of every page.
fn is_plain_host(host: &str) -> bool {
    let bytes = host.as_bytes();
    if bytes.is_empty() || bytes.len() > 253 {
        return false;
    }
    let mut label_start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        if HOST_BYTES[usize::from(b)] {
            continue;
        }
        if b != b'.' || !is_plain_label(&bytes[label_start..i]) {
            return false;
        }
        label_start = i + 1;
    }
    let last = &bytes[label_start..];
    is_plain_label(last) && last[0].is_ascii_lowercase()
}

fn is_plain_label(label: &[u8]) -> bool {
    (1..=63).contains(&label.len()) && !label.starts_with(b"xn--")
}

/// The bytes of a plain DNS label.
const HOST_BYTES: [bool; 256] = byte_set(b"abcdefghijklmnopqrstuvwxyz0123456789-");

/// The bytes [`is_canonical_tail`] lets through: nothing the URL parser would percent-encode in a
/// path, query or fragment, no backslash, no `'` (special-scheme queries encode it).
const TAIL_BYTES: [bool; 256] =
    byte_set(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~!$&()*+,;=:@/%?#");

/// Path, query and fragment made only of bytes no part of the URL parser changes, with no dot segments.
/// This runs for every absolute URL of every page: one tight pass over the bytes, and the segments are
/// looked at only when one could be a dot segment (one starts with `.` or `%`).
fn is_canonical_tail(tail: &str) -> bool {
    let bytes = tail.as_bytes();
    if !bytes.iter().all(|&b| TAIL_BYTES[usize::from(b)]) {
        return false;
    }
    let dot_segment_possible = bytes
        .windows(2)
        .any(|w| w[0] == b'/' && matches!(w[1], b'.' | b'%'));
    if !dot_segment_possible {
        return true;
    }
    let path_end = memchr::memchr2(b'?', b'#', bytes).unwrap_or(bytes.len());
    !bytes[..path_end].split(|&b| b == b'/').any(is_dot_segment)
}

/// `.` and `..`, in any of the spellings the parser resolves (`%2e` for a dot, any case).
fn is_dot_segment(s: &[u8]) -> bool {
    let dot = |b: &[u8]| b == b"." || b.eq_ignore_ascii_case(b"%2e");
    match s.len() {
        1 | 3 => dot(s),
        2 => s == b"..",
        4 => (dot(&s[..1]) && dot(&s[1..])) || (dot(&s[..3]) && dot(&s[3..])),
        6 => dot(&s[..3]) && dot(&s[3..]),
        _ => false,
    }
}

/// `s` without the C0 controls and spaces the URL parser strips from both ends (all ASCII, so the cut
/// falls on character boundaries).
fn trim_c0_and_space(s: &str) -> &str {
    let bytes = s.as_bytes();
    let start = bytes.iter().position(|&b| b > b' ').unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|&b| b > b' ')
        .map_or(start, |i| i + 1);
    s.get(start..end).unwrap_or_default()
}
