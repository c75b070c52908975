use super::*;

fn public() -> PublicOrigin {
    PublicOrigin::parse("http://localhost:8080").unwrap()
}

fn sid() -> SessionId {
    SessionId::parse("k3x9q2m7wa").unwrap()
}

fn round_trip(target: &str) -> String {
    let url = Url::parse(target).unwrap();
    let origin = TargetOrigin::from_url(&url).unwrap();
    let host = public().proxy_host(&sid(), &origin);
    for label in host.split('.') {
        assert!(label.len() <= 63, "label over 63 bytes in {host}");
        assert!(!label.is_empty(), "empty label in {host}");
    }
    let (s, back) = public().decode_authority(&format!("{host}:8080")).unwrap();
    assert_eq!(s, sid());
    assert_eq!(back, origin, "round trip of {target} via {host}");
    host
}

#[test]
fn plain_https_origin() {
    assert_eq!(
        round_trip("https://www.shop.test/a"),
        "www.shop.test.k3x9q2m7wa-s.localhost"
    );
}

#[test]
fn http_with_port() {
    assert_eq!(
        round_trip("http://cdn.shop.test:8443/"),
        "cdn.shop.test.k3x9q2m7wa-h-8443.localhost"
    );
}

#[test]
fn default_ports_are_canonical() {
    assert_eq!(
        round_trip("https://a.test:443/"),
        round_trip("https://a.test/")
    );
    assert_eq!(
        round_trip("http://a.test:80/"),
        round_trip("http://a.test/")
    );
    assert_ne!(round_trip("http://a.test/"), round_trip("https://a.test/"));
    assert_ne!(
        round_trip("https://a.test:444/"),
        round_trip("https://a.test/")
    );
}

#[test]
fn long_host_names_keep_labels_short() {
    let label = "a".repeat(63);
    let host = format!("{label}.{label}.{label}.example");
    round_trip(&format!("https://{host}/"));
}

#[test]
fn idn_hosts_travel_as_punycode() {
    let host = round_trip("https://bücher.example/");
    assert!(host.starts_with("xn--bcher-kva.example."), "{host}");
}

#[test]
fn ip_literals() {
    assert_eq!(
        round_trip("http://[2001:db8::1]:8080/"),
        "2001-db8-0-0-0-0-0-1.k3x9q2m7wa-h6-8080.localhost"
    );
    round_trip("https://[::ffff:1.2.3.4]/");
    round_trip("https://[::]/");
    assert_eq!(
        round_trip("http://1.2.3.4/"),
        "1.2.3.4.k3x9q2m7wa-h.localhost"
    );
    // WHATWG IPv4 forms normalise before encoding.
    assert_eq!(
        round_trip("http://0x7f.1/"),
        "127.0.0.1.k3x9q2m7wa-h.localhost"
    );
}

#[test]
fn single_label_and_fqdn_hosts() {
    round_trip("http://intranet/");
    let fq = round_trip("https://shop.test./");
    assert_ne!(fq, round_trip("https://shop.test/"));
}

#[test]
fn non_canonical_or_foreign_hosts_are_refused() {
    let p = public();
    assert_eq!(
        p.decode_authority("localhost:8080"),
        Err(CodecError::NotProxyHost)
    );
    assert_eq!(
        p.decode_authority("x.test.k3x9q2m7wa-s.localhost:9090"),
        Err(CodecError::NotProxyHost)
    );
    assert_eq!(
        p.decode_authority("x.test.k3x9q2m7wa-s.evil.test:8080"),
        Err(CodecError::NotProxyHost)
    );
    assert_eq!(
        p.decode_authority("x.test.k3x9q2m7w-s.localhost:8080"),
        Err(CodecError::BadTag)
    );
    assert_eq!(
        p.decode_authority("x.test.k3x9q2m7wa-q.localhost:8080"),
        Err(CodecError::BadTag)
    );
    assert_eq!(
        p.decode_authority("x.test.k3x9q2m7wa-s-443.localhost:8080"),
        Err(CodecError::BadTargetHost)
    );
    assert_eq!(
        p.decode_authority("k3x9q2m7wa-s.localhost:8080"),
        Err(CodecError::BadTag)
    );
    assert!(p
        .decode_authority("0x7f.1.k3x9q2m7wa-s.localhost:8080")
        .is_err());
}

#[test]
fn origins_never_collide_with_console() {
    let p = public();
    assert!(p.is_public_authority("localhost:8080"));
    assert!(p.is_public_authority("LOCALHOST:8080"));
    assert!(!p.is_public_authority("localhost:8081"));
    assert!(!p.is_public_authority("www.shop.test.k3x9q2m7wa-s.localhost:8080"));
}

use crate::url_codec::test_map as map;

#[test]
fn references_that_need_no_work() {
    let base = Url::parse("https://www.shop.test/dir/page.html").unwrap();
    for r in [
        "/root.css",
        "rel.png",
        "../up",
        "?q=1",
        "#frag",
        "",
        "data:text/plain,hi",
        "blob:https://www.shop.test/uuid",
        "javascript:void(0)",
        "about:blank",
        "mailto:a@b.test",
        "tel:123",
        "c:d",
    ] {
        assert_eq!(map().rewrite_reference(&base, r), None, "{r}");
    }
}

/// What `needs_resolving` lets stand as written stays inside the proxy and lands, resolved on the proxy
/// host, on the same target as resolved on the target itself: with tabs, newlines and carriage returns (which the parser strips) put
/// at every position of references of every shape, and leading controls and spaces.
#[test]
fn what_needs_no_resolving_lands_on_the_same_target() {
    let m = map();
    let base = Url::parse("https://www.shop.test/dir/page.html").unwrap();
    let proxied_base = m.to_proxy(&base).unwrap();
    let shapes = [
        "//cdn.shop.test/a",
        "\\\\cdn.shop.test/a",
        "/\\cdn.shop.test/a",
        "https://cdn.shop.test/a",
        "HTTP://cdn.shop.test/a",
        "wss://api.shop.test/s",
        "file:///etc/x",
        "ftp://f.test/x",
        "http:x",
        "https:cdn",
        "/a/b",
        "a/b",
        "javascript:go()",
        "httpx://a/",
        "data:,hi",
        "?q",
        "#f",
    ];
    let mut checked = 0;
    for shape in shapes {
        let mut variants = vec![format!(" \u{1}{shape}")];
        for at in 0..=shape.len() {
            for c in ["\t", "\n", "\r", "\t\n"] {
                variants.push(format!("{}{c}{}", &shape[..at], &shape[at..]));
            }
        }
        for r in variants {
            if needs_resolving(&r) {
                continue;
            }
            checked += 1;
            let direct = base.join(&r).unwrap();
            let resolved = proxied_base.join(&r).unwrap();
            // A network URL must still be a proxy URL; anything else (`javascript:`, `data:`) is the
            // same whatever the base.
            let network = matches!(
                resolved.scheme(),
                "http" | "https" | "ws" | "wss" | "ftp" | "file"
            );
            let lands_on = if network {
                m.to_target(&resolved)
            } else {
                Some(resolved)
            };
            assert_eq!(lands_on, Some(direct), "{r:?}");
        }
    }
    assert!(checked > 100, "{checked}");
}

#[test]
fn references_to_other_origins_are_proxied() {
    let base = Url::parse("https://www.shop.test/dir/page.html").unwrap();
    let m = map();
    let cases = [
        (
            "https://cdn.shop.test/a.png",
            "http://cdn.shop.test.k3x9q2m7wa-s.localhost:8080/a.png",
        ),
        (
            "//cdn.shop.test/a.png",
            "http://cdn.shop.test.k3x9q2m7wa-s.localhost:8080/a.png",
        ),
        (
            "\\\\cdn.shop.test/a",
            "http://cdn.shop.test.k3x9q2m7wa-s.localhost:8080/a",
        ),
        (
            "/\\cdn.shop.test/a",
            "http://cdn.shop.test.k3x9q2m7wa-s.localhost:8080/a",
        ),
        (
            " HTTPS://CDN.shop.test/a ",
            "http://cdn.shop.test.k3x9q2m7wa-s.localhost:8080/a",
        ),
        (
            "h\tttps://cdn.shop.test/a",
            "http://cdn.shop.test.k3x9q2m7wa-s.localhost:8080/a",
        ),
        (
            "http:other.test/x",
            "http://other.test.k3x9q2m7wa-h.localhost:8080/x",
        ),
        (
            "https:same",
            "http://www.shop.test.k3x9q2m7wa-s.localhost:8080/dir/same",
        ),
        (
            "wss://api.shop.test/ws",
            "ws://api.shop.test.k3x9q2m7wa-s.localhost:8080/ws",
        ),
        (
            "https://www.shop.test/self",
            "http://www.shop.test.k3x9q2m7wa-s.localhost:8080/self",
        ),
    ];
    for (input, want) in cases {
        assert_eq!(
            m.rewrite_reference(&base, input).as_deref(),
            Some(want),
            "{input}"
        );
    }
}

#[test]
fn already_proxied_urls_are_left_alone() {
    let base = Url::parse("https://www.shop.test/").unwrap();
    let m = map();
    assert_eq!(
        m.rewrite_reference(&base, "http://cdn.shop.test.k3x9q2m7wa-s.localhost:8080/a"),
        None
    );
    assert_eq!(
        m.rewrite_reference(&base, "http://localhost:8080/agent.js"),
        None
    );
}

#[test]
fn proxy_urls_map_back() {
    let m = map();
    let target = Url::parse("https://cdn.shop.test:8443/a/b?c=d#e").unwrap();
    let proxied = m.to_proxy(&target).unwrap();
    assert_eq!(m.to_target(&proxied).unwrap(), target);
    let other = Url::parse("http://cdn.shop.test.aaaaaaaaaa-s.localhost:8080/").unwrap();
    assert_eq!(
        m.to_target(&other),
        None,
        "another session's host is not ours"
    );
}

/// The string-level path for absolute URLs must agree with the full parse wherever it answers.
#[test]
fn absolute_fast_path_agrees_with_the_parser() {
    let m = map();
    let base = Url::parse("https://www.shop.test/dir/page.html").unwrap();
    let slow = |r: &str| {
        let absolute = base.join(r).ok()?;
        m.to_proxy_string(&absolute)
    };
    let cases = [
        "https://cdn.shop.test/img/1.jpg",
        "http://cdn.shop.test/img/1.jpg?a=1&b=2#frag",
        "https://cdn.shop.test",
        "https://cdn.shop.test?q",
        "https://cdn.shop.test#f",
        "  https://cdn.shop.test/a  ",
        "https://a-b.c9.test/x;y=1/(z)*~!$,@:%20",
        "https://localhost:8080/a",
        "http://localhost/a",
        "https://x.localhost/a",
        "https://cdn.shop.test.k3x9q2m7wa-s.localhost:8080/a",
        "https://CDN.shop.test/a",
        "HTTPS://cdn.shop.test/a",
        "https://cdn.shop.test:443/a",
        "https://cdn.shop.test:8443/a",
        "https://u:p@cdn.shop.test/a",
        "https://xn--bcher-kva.test/a",
        "https://1.2.3.4/a",
        "https://cdn.0x10/a",
        "https://shop.test./a",
        "https://a..b/a",
        "https://cdn.shop.test/a/../b",
        "https://cdn.shop.test/a/./b",
        "https://cdn.shop.test/a/%2e%2E/b",
        "https://cdn.shop.test/a/.%2e",
        "https://cdn.shop.test/a/.hidden/..x",
        "https://cdn.shop.test/a b",
        "https://cdn.shop.test/a\\b",
        "https://cdn.shop.test/a?it's",
        "https://cdn.shop.test/a#`x`",
        "https://cdn.shop.test/ä",
        "https://bücher.test/a",
        "https://cdn.shop.test/a\tb",
        "https:cdn.shop.test/a",
        "https:///cdn.shop.test/a",
        "https://-a.test/b",
    ];
    for r in cases {
        if let Some(fast) = m.rewrite_absolute_fast(r) {
            assert_eq!(fast, slow(r), "{r:?}");
        }
    }
    // The common shapes must take the fast path at all.
    for r in [
        "https://cdn.shop.test/img/1.jpg",
        "http://a.test",
        "https://a.test/x.%2e/y",
    ] {
        assert!(m.rewrite_absolute_fast(r).is_some(), "{r}");
    }
    // And the whole corpus agrees.
    for page in ["shop-100k", "news-300k", "docs-1m"] {
        let path = format!("{}/fixtures/corpus/{page}.html", env!("CARGO_MANIFEST_DIR"));
        let text = std::fs::read_to_string(path).unwrap();
        for (i, _) in text.match_indices("http") {
            let r = &text[i..];
            let end = r.find(['"', '\'', ' ', '>', ')']).unwrap_or(r.len());
            let r = &r[..end];
            if let Some(fast) = m.rewrite_absolute_fast(r) {
                assert_eq!(fast, slow(r), "{r:?}");
            }
        }
    }
}
