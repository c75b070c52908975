//! The `Cache-Status` response field (RFC 9211): how this cache handled one response.

use http::header::{HeaderMap, HeaderName, HeaderValue};

/// The cache's name in `Cache-Status`.
pub const NAME: &str = "cobrowse-proxy";
pub const CACHE_STATUS: HeaderName = HeaderName::from_static("cache-status");

/// Why the request went forward (the `fwd` parameter).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fwd {
    /// Not handled by the cache at all (upgrades, Authorization, Range, the cache disabled).
    Bypass,
    /// The method is not one the cache serves (anything but GET and HEAD).
    Method,
    /// Nothing stored for the URL.
    UriMiss,
    /// Something stored for the URL, but for other values of the `Vary`'d headers.
    VaryMiss,
    /// The stored response was stale.
    Stale,
    /// A fresh response was stored, but the request's own directives did not allow it.
    Request,
}

impl Fwd {
    fn token(self) -> &'static str {
        match self {
            Fwd::Bypass => "bypass",
            Fwd::Method => "method",
            Fwd::UriMiss => "uri-miss",
            Fwd::VaryMiss => "vary-miss",
            Fwd::Stale => "stale",
            Fwd::Request => "request",
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CacheStatus {
    pub hit: bool,
    pub fwd: Option<Fwd>,
    pub fwd_status: Option<u16>,
    pub stored: bool,
    /// `Some(true)`: collapsed into another request and served from its result; `Some(false)`: collapsed,
    /// but that result could not be used.
    pub collapsed: Option<bool>,
    /// Seconds of freshness left, negative when stale.
    pub ttl: Option<i64>,
    pub detail: Option<&'static str>,
}

impl CacheStatus {
    pub fn hit(ttl: i64) -> CacheStatus {
        CacheStatus {
            hit: true,
            ttl: Some(ttl),
            ..CacheStatus::default()
        }
    }

    pub fn forward(fwd: Fwd) -> CacheStatus {
        CacheStatus {
            fwd: Some(fwd),
            ..CacheStatus::default()
        }
    }

    pub fn with_detail(mut self, detail: &'static str) -> CacheStatus {
        self.detail = Some(detail);
        self
    }

    /// The member this cache adds, e.g. `cobrowse-proxy; fwd=uri-miss; stored; ttl=60`.
    pub fn to_field(&self) -> String {
        use std::fmt::Write;
        // One string for the whole member: it is written on every proxied response.
        let mut out = String::with_capacity(64);
        out.push_str(NAME);
        if self.hit {
            out.push_str("; hit");
        }
        if let Some(fwd) = self.fwd {
            out.push_str("; fwd=");
            out.push_str(fwd.token());
        }
        if let Some(status) = self.fwd_status {
            let _ = write!(out, "; fwd-status={status}");
        }
        if self.stored {
            out.push_str("; stored");
        }
        match self.collapsed {
            Some(true) => out.push_str("; collapsed"),
            Some(false) => out.push_str("; collapsed=?0"),
            None => {}
        }
        if let Some(ttl) = self.ttl {
            let _ = write!(out, "; ttl={ttl}");
        }
        if let Some(detail) = self.detail {
            out.push_str("; detail=");
            out.push_str(detail);
        }
        out
    }

    /// Adds this cache's member after any the origin (or caches before it) sent: RFC 9211 lists caches
    /// from the origin towards the user.
    pub fn append_to(&self, headers: &mut HeaderMap) {
        // From the string itself, not a copy of it.
        if let Ok(value) = HeaderValue::try_from(self.to_field()) {
            headers.append(CACHE_STATUS, value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_follow_rfc_9211() {
        assert_eq!(
            CacheStatus::hit(42).to_field(),
            "cobrowse-proxy; hit; ttl=42"
        );
        let mut s = CacheStatus::forward(Fwd::Stale);
        s.fwd_status = Some(304);
        s.ttl = Some(-3);
        assert_eq!(
            s.to_field(),
            "cobrowse-proxy; fwd=stale; fwd-status=304; ttl=-3"
        );
        let mut s = CacheStatus::forward(Fwd::UriMiss);
        s.stored = true;
        s.collapsed = Some(false);
        assert_eq!(
            s.to_field(),
            "cobrowse-proxy; fwd=uri-miss; stored; collapsed=?0"
        );
        let s = CacheStatus::forward(Fwd::Bypass).with_detail("authorization");
        assert_eq!(
            s.to_field(),
            "cobrowse-proxy; fwd=bypass; detail=authorization"
        );
        let mut h = HeaderMap::new();
        h.insert(CACHE_STATUS, HeaderValue::from_static("OriginCache; hit"));
        CacheStatus::hit(1).append_to(&mut h);
        let all: Vec<_> = h.get_all(CACHE_STATUS).iter().collect();
        assert_eq!(all, ["OriginCache; hit", "cobrowse-proxy; hit; ttl=1"]);
    }
}
