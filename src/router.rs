//! Which part of the proxy answers a request, from its method and authority alone (no I/O).

use http::{Method, Request, Version};

use crate::url_codec::{PublicOrigin, SessionId, TargetOrigin};

#[derive(Debug, PartialEq, Eq)]
pub enum Route {
    /// The public origin: console, API, agent script, health and metrics.
    Console,
    /// A per-origin proxy host of a session.
    Proxied {
        session: SessionId,
        target: TargetOrigin,
    },
    /// Absolute-form or CONNECT: a forward-proxy request.
    Forward,
    /// Any other host.
    Unknown,
}

impl Route {
    pub fn name(&self) -> &'static str {
        match self {
            Route::Console => "console",
            Route::Proxied { .. } => "proxied",
            Route::Forward => "forward",
            Route::Unknown => "unknown",
        }
    }
}

pub fn classify<B>(req: &Request<B>, public: &PublicOrigin) -> Route {
    if req.method() == Method::CONNECT {
        return Route::Forward;
    }
    // HTTP/2 always carries an authority in the URI; only an HTTP/1 absolute-form URI means "forward".
    let absolute_form = req.version() < Version::HTTP_2 && req.uri().scheme().is_some();
    let authority = req.uri().authority().map(|a| a.as_str()).or_else(|| {
        req.headers()
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
    });
    let Some(authority) = authority else {
        return Route::Unknown;
    };
    if public.is_public_authority(authority) {
        return Route::Console;
    }
    match public.decode_authority(authority) {
        Ok((session, target)) => Route::Proxied { session, target },
        Err(_) if absolute_form => Route::Forward,
        Err(_) => Route::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(method: &str, uri: &str, host: Option<&str>) -> Route {
        let public = PublicOrigin::parse("http://localhost:8080").unwrap();
        let mut b = Request::builder().method(method).uri(uri);
        if let Some(h) = host {
            b = b.header("host", h);
        }
        classify(&b.body(()).unwrap(), &public)
    }

    #[test]
    fn routes() {
        assert_eq!(
            route("GET", "/api/sessions", Some("localhost:8080")),
            Route::Console
        );
        assert!(matches!(
            route(
                "GET",
                "/",
                Some("www.shop.test.k3x9q2m7wa-s.localhost:8080")
            ),
            Route::Proxied { .. }
        ));
        assert_eq!(route("GET", "http://example.com/", None), Route::Forward);
        assert_eq!(route("CONNECT", "example.com:443", None), Route::Forward);
        assert_eq!(route("GET", "/", Some("example.com")), Route::Unknown);
        assert_eq!(route("GET", "/", None), Route::Unknown);
        assert!(matches!(
            route(
                "GET",
                "http://www.shop.test.k3x9q2m7wa-s.localhost:8080/",
                None
            ),
            Route::Proxied { .. }
        ));
    }
}
