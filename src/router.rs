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
    /// `CONNECT host:port`: open a tunnel (intercepted, served or blind; see `forward::connect`).
    Connect,
    /// A forward-proxy request for `target`: absolute-form, or any request inside a CONNECT tunnel.
    Forward { target: TargetOrigin },
    /// Any other host.
    Unknown,
}

impl Route {
    pub fn name(&self) -> &'static str {
        match self {
            Route::Console => "console",
            Route::Proxied { .. } => "proxied",
            Route::Connect => "connect",
            Route::Forward { .. } => "forward",
            Route::Unknown => "unknown",
        }
    }
}

/// `tunnel` is the origin a CONNECT tunnel was opened to, when the request arrived inside one: then every
/// request is for that origin, whatever its `Host` says.
pub fn classify<B>(
    req: &Request<B>,
    public: &PublicOrigin,
    tunnel: Option<&TargetOrigin>,
) -> Route {
    if let Some(target) = tunnel {
        // A CONNECT inside a tunnel would chain proxies through us; nothing legitimate needs it.
        if req.method() == Method::CONNECT {
            return Route::Unknown;
        }
        return Route::Forward {
            target: target.clone(),
        };
    }
    if req.method() == Method::CONNECT {
        return Route::Connect;
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
        Err(_) if absolute_form => forward_target(req.uri()),
        Err(_) => Route::Unknown,
    }
}

fn forward_target(uri: &http::Uri) -> Route {
    let origin = url::Url::parse(&uri.to_string())
        .ok()
        .and_then(|u| TargetOrigin::from_url(&u).ok());
    match origin {
        Some(target) => Route::Forward { target },
        None => Route::Unknown,
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
        classify(&b.body(()).unwrap(), &public, None)
    }

    fn origin(url: &str) -> TargetOrigin {
        TargetOrigin::from_url(&url::Url::parse(url).unwrap()).unwrap()
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
        assert_eq!(
            route("GET", "http://example.com/", None),
            Route::Forward {
                target: origin("http://example.com")
            }
        );
        assert_eq!(
            route("GET", "https://example.com:8443/x", None),
            Route::Forward {
                target: origin("https://example.com:8443")
            }
        );
        assert_eq!(route("CONNECT", "example.com:443", None), Route::Connect);
        assert_eq!(
            route("GET", "ftp://example.com/", None),
            Route::Unknown,
            "only http(s) is forwarded"
        );
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

    #[test]
    fn inside_a_tunnel_every_request_is_for_the_tunnel_origin() {
        let public = PublicOrigin::parse("http://localhost:8080").unwrap();
        let tunnel = origin("https://www.shop.test");
        let req = Request::get("/a")
            .header("host", "evil.test")
            .body(())
            .unwrap();
        assert_eq!(
            classify(&req, &public, Some(&tunnel)),
            Route::Forward {
                target: tunnel.clone()
            }
        );
        let req = Request::get("/")
            .header("host", "localhost:8080")
            .body(())
            .unwrap();
        assert!(matches!(
            classify(&req, &public, Some(&tunnel)),
            Route::Forward { .. }
        ));
        let nested = Request::connect("other.test:443").body(()).unwrap();
        assert_eq!(classify(&nested, &public, Some(&tunnel)), Route::Unknown);
    }
}
