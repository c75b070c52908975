//! The public asset cache over real sockets: the fixture origin counts what reaches it, so a hit is an
//! answer the origin never saw. One test per rule of the cache issue; time moves by an injected clock.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use cobrowse_proxy::cache::ManualClock;
use cobrowse_proxy::config::{CacheConfig, FileConfig};
use http::{Method, StatusCode};
use support::{start_with, Options, Reply, Stack};

const CDN: &str = "https://cdn.shop.test";

fn q(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// The target URL of a `/_fx/cache` resource. `key` comes first and is followed by `&`, so counts by
/// `key=K&` never mix resources.
fn resource(key: &str, params: &[(&str, &str)]) -> String {
    let mut url = format!("{CDN}/_fx/cache?key={key}&v=1");
    for (k, v) in params {
        url.push_str(&format!("&{k}={}", q(v)));
    }
    url
}

struct Cached {
    stack: Stack,
    session: String,
    clock: Arc<ManualClock>,
}

impl Cached {
    async fn start() -> Cached {
        Cached::with(CacheConfig::default(), FileConfig::default()).await
    }

    async fn with(cache: CacheConfig, mut file: FileConfig) -> Cached {
        let clock = Arc::new(ManualClock::new());
        file.cache = cache;
        let stack = start_with(Options {
            file,
            clock: Some(clock.clone()),
            ..Options::default()
        })
        .await;
        let (session, _) = stack.session(&format!("{CDN}/")).await;
        Cached {
            stack,
            session,
            clock,
        }
    }

    async fn get(&self, target: &str) -> Reply {
        self.send(Method::GET, target, &[]).await
    }

    async fn send(&self, method: Method, target: &str, headers: &[(&str, &str)]) -> Reply {
        let url = self.stack.proxied(&self.session, target);
        self.stack.request(method, &url, headers, "").await
    }

    /// Requests for `key` that reached the origin.
    fn origin_saw(&self, key: &str) -> usize {
        self.stack
            .origin
            .count_matching("/_fx/cache", &format!("key={key}&"))
    }

    fn advance(&self, secs: u64) {
        self.clock.advance(Duration::from_secs(secs));
    }

    async fn metric(&self, name: &str) -> f64 {
        let text = self
            .stack
            .get(&format!("{}/metrics", self.stack.public))
            .await
            .text();
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
            .unwrap_or_else(|| panic!("{name} in {text}"))
    }
}

fn status(reply: &Reply) -> String {
    reply
        .headers
        .get_all("cache-status")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect::<Vec<_>>()
        .join(", ")
}

fn assert_hit(reply: &Reply) {
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert!(
        status(reply).starts_with("cobrowse-proxy; hit"),
        "{}",
        status(reply)
    );
}

fn assert_not_hit(reply: &Reply) {
    assert!(!status(reply).contains("; hit"), "{}", status(reply));
}

#[tokio::test]
async fn a_hit_never_reaches_the_origin_and_says_so() {
    let c = Cached::start().await;
    let url = resource("plain", &[("cc", "max-age=600")]);
    let first = c.get(&url).await;
    assert_eq!(first.status, StatusCode::OK);
    assert_eq!(
        status(&first),
        "cobrowse-proxy; fwd=uri-miss; stored; ttl=600"
    );
    assert!(first.text().starts_with("body n=1"));
    c.advance(7);
    let second = c.get(&url).await;
    assert_eq!(status(&second), "cobrowse-proxy; hit; ttl=593");
    assert_eq!(second.text(), first.text());
    assert_eq!(second.header("age").as_deref(), Some("7"));
    assert_eq!(
        second.header("cache-control").as_deref(),
        Some("max-age=600")
    );
    assert_eq!(c.origin_saw("plain"), 1);
    c.stack.stop().await;
}

#[tokio::test]
async fn hits_carry_the_origin_age_plus_time_stored() {
    let c = Cached::start().await;
    let url = resource("aged", &[("cc", "max-age=600"), ("h", "Age:100")]);
    c.get(&url).await;
    c.advance(10);
    let hit = c.get(&url).await;
    assert_hit(&hit);
    assert_eq!(hit.header("age").as_deref(), Some("110"));
    assert_eq!(status(&hit), "cobrowse-proxy; hit; ttl=490");
    c.stack.stop().await;
}

#[tokio::test]
async fn private_no_store_set_cookie_and_authorization_reach_the_origin_every_time() {
    let c = Cached::start().await;
    let cases = [
        (
            "private",
            vec![("cc", "private, max-age=600")],
            vec![],
            "detail=private",
        ),
        (
            "nostore",
            vec![("cc", "no-store")],
            vec![],
            "detail=no-store",
        ),
        (
            "cookie",
            vec![("cc", "public, max-age=600"), ("h", "Set-Cookie:a=1")],
            vec![],
            "detail=set-cookie",
        ),
        (
            "auth",
            vec![("cc", "public, max-age=600")],
            vec![("authorization", "Bearer user-a")],
            "fwd=bypass; detail=authorization",
        ),
        (
            "asks",
            vec![("cc", "max-age=600")],
            vec![("cache-control", "no-store")],
            "detail=no-store",
        ),
    ];
    for (key, params, headers, expected) in cases {
        let url = resource(key, &params);
        for n in 1..=3 {
            let reply = c.send(Method::GET, &url, &headers).await;
            assert_eq!(reply.status, StatusCode::OK, "{key}");
            assert!(
                reply.text().starts_with(&format!("body n={n}")),
                "{key}: {}",
                reply.text()
            );
            assert!(
                status(&reply).contains(expected),
                "{key}: {}",
                status(&reply)
            );
        }
        assert_eq!(c.origin_saw(key), 3, "{key}");
    }
    c.stack.stop().await;
}

#[tokio::test]
async fn a_request_with_cookies_is_stored_only_with_explicit_shared_freshness() {
    let c = Cached::start().await;
    let cookie = [("cookie", "sid=visitor-a")];
    let heuristic = resource("heur", &[("lm", "Wed, 21 Oct 2015 07:28:00 GMT")]);
    for _ in 0..2 {
        assert_not_hit(&c.send(Method::GET, &heuristic, &cookie).await);
    }
    assert_eq!(c.origin_saw("heur"), 2);
    // Without cookies, heuristic freshness (10% of the time since Last-Modified) applies.
    c.get(&heuristic).await;
    assert_hit(&c.get(&heuristic).await);
    assert_eq!(c.origin_saw("heur"), 3);
    let explicit = resource("expl", &[("cc", "max-age=600")]);
    c.send(Method::GET, &explicit, &cookie).await;
    assert_hit(
        &c.send(Method::GET, &explicit, &[("cookie", "sid=visitor-b")])
            .await,
    );
    assert_eq!(c.origin_saw("expl"), 1);
    c.stack.stop().await;
}

#[tokio::test]
async fn expiry_then_etag_revalidation_refreshes_the_entry() {
    let c = Cached::start().await;
    let url = resource("etag", &[("cc", "max-age=10"), ("etag", "v1")]);
    let first = c.get(&url).await;
    c.advance(5);
    assert_hit(&c.get(&url).await);
    c.advance(10);
    let revalidated = c.get(&url).await;
    assert_eq!(revalidated.status, StatusCode::OK);
    assert_eq!(
        revalidated.text(),
        first.text(),
        "the stored body, not a new one"
    );
    assert_eq!(
        status(&revalidated),
        "cobrowse-proxy; fwd=stale; fwd-status=304; ttl=10"
    );
    assert_eq!(c.origin_saw("etag"), 2);
    c.advance(5);
    let refreshed = c.get(&url).await;
    assert_hit(&refreshed);
    assert_eq!(
        refreshed.header("age").as_deref(),
        Some("5"),
        "the 304 restarted the age"
    );
    assert_eq!(c.origin_saw("etag"), 2);
    c.stack.stop().await;
}

#[tokio::test]
async fn expiry_then_last_modified_revalidation_refreshes_the_entry() {
    let c = Cached::start().await;
    let lm = "Wed, 21 Oct 2015 07:28:00 GMT";
    let url = resource("lm", &[("cc", "max-age=10"), ("lm", lm)]);
    let first = c.get(&url).await;
    c.advance(11);
    let revalidated = c.get(&url).await;
    assert_eq!(revalidated.text(), first.text());
    assert!(
        status(&revalidated).contains("fwd-status=304"),
        "{}",
        status(&revalidated)
    );
    assert_hit(&c.get(&url).await);
    assert_eq!(c.origin_saw("lm"), 2);
    c.stack.stop().await;
}

#[tokio::test]
async fn no_cache_is_stored_but_revalidated_on_every_use() {
    let c = Cached::start().await;
    let url = resource("nocache", &[("cc", "no-cache"), ("etag", "v1")]);
    let first = c.get(&url).await;
    for n in 2..=3 {
        let reply = c.get(&url).await;
        assert_eq!(reply.text(), first.text());
        assert!(
            status(&reply).contains("fwd=stale; fwd-status=304"),
            "{}",
            status(&reply)
        );
        assert_eq!(c.origin_saw("nocache"), n);
    }
    c.stack.stop().await;
}

#[tokio::test]
async fn vary_selects_a_variant_and_vary_star_is_never_reused() {
    let c = Cached::start().await;
    let url = resource(
        "vary",
        &[
            ("cc", "max-age=600"),
            ("h", "Vary:Accept-Language"),
            ("echo", "accept-language"),
        ],
    );
    let lang = |l: &'static str| [("accept-language", l)];
    let fr = c.send(Method::GET, &url, &lang("fr")).await;
    assert!(fr.text().contains("echo=fr"));
    let de = c.send(Method::GET, &url, &lang("de")).await;
    assert!(de.text().contains("echo=de"));
    assert!(status(&de).contains("fwd=vary-miss"), "{}", status(&de));
    let fr_again = c.send(Method::GET, &url, &lang("fr")).await;
    assert_hit(&fr_again);
    assert_eq!(fr_again.text(), fr.text());
    let de_again = c.send(Method::GET, &url, &lang("de")).await;
    assert_hit(&de_again);
    assert_eq!(de_again.text(), de.text());
    assert_eq!(c.origin_saw("vary"), 2);

    let star = resource("star", &[("cc", "max-age=600"), ("h", "Vary:*")]);
    for _ in 0..2 {
        let reply = c.get(&star).await;
        assert!(
            status(&reply).contains("detail=vary-star"),
            "{}",
            status(&reply)
        );
    }
    assert_eq!(c.origin_saw("star"), 2);
    c.stack.stop().await;
}

#[tokio::test]
async fn head_is_answered_from_a_stored_get_but_never_stored_itself() {
    let c = Cached::start().await;
    let url = resource("head", &[("cc", "max-age=600")]);
    let get = c.get(&url).await;
    let head = c.send(Method::HEAD, &url, &[]).await;
    assert_hit(&head);
    assert!(head.body.is_empty());
    assert_eq!(
        head.header("content-length"),
        Some(get.body.len().to_string())
    );
    assert_eq!(c.origin_saw("head"), 1);

    let url = resource("head-first", &[("cc", "max-age=600")]);
    assert_not_hit(&c.send(Method::HEAD, &url, &[]).await);
    assert_not_hit(&c.get(&url).await);
    assert_eq!(c.origin_saw("head-first"), 2);
    c.stack.stop().await;
}

#[tokio::test]
async fn unsafe_methods_invalidate_the_url_and_its_same_origin_locations() {
    let c = Cached::start().await;
    for (i, method) in [Method::POST, Method::PUT, Method::DELETE]
        .into_iter()
        .enumerate()
    {
        let key = format!("unsafe{i}");
        let url = resource(&key, &[("cc", "max-age=600")]);
        c.get(&url).await;
        assert_hit(&c.get(&url).await);
        let changed = c.send(method.clone(), &url, &[]).await;
        assert!(
            status(&changed).contains("fwd=method"),
            "{}",
            status(&changed)
        );
        assert_not_hit(&c.get(&url).await);
        assert_eq!(c.origin_saw(&key), 3, "{method}");
    }
    let target = resource("located", &[("cc", "max-age=600")]);
    c.get(&target).await;
    let poster = resource("poster", &[("h", &format!("Content-Location:{target}"))]);
    c.send(Method::POST, &poster, &[]).await;
    assert_not_hit(&c.get(&target).await);
    assert_eq!(c.origin_saw("located"), 2);
    c.stack.stop().await;
}

#[tokio::test]
async fn s_maxage_beats_max_age() {
    let c = Cached::start().await;
    let long_shared = resource("smax-long", &[("cc", "max-age=1, s-maxage=600")]);
    let short_shared = resource("smax-short", &[("cc", "max-age=600, s-maxage=1")]);
    c.get(&long_shared).await;
    c.get(&short_shared).await;
    c.advance(5);
    assert_hit(&c.get(&long_shared).await);
    assert_not_hit(&c.get(&short_shared).await);
    assert_eq!(c.origin_saw("smax-long"), 1);
    assert_eq!(c.origin_saw("smax-short"), 2);
    c.stack.stop().await;
}

#[tokio::test]
async fn stale_while_revalidate_answers_at_once_and_refreshes_in_the_background() {
    let c = Cached::start().await;
    let url = resource("swr", &[("cc", "max-age=1, stale-while-revalidate=60")]);
    c.get(&url).await;
    c.advance(5);
    let stale = c.get(&url).await;
    assert_eq!(
        status(&stale),
        "cobrowse-proxy; hit; ttl=-4; detail=stale-while-revalidate"
    );
    assert!(stale.text().starts_with("body n=1"));
    assert_eq!(stale.header("age").as_deref(), Some("5"));
    // The background revalidation stores the origin's second answer; wait for it, bounded.
    let mut refreshed = None;
    for _ in 0..100 {
        let reply = c.get(&url).await;
        if reply.text().starts_with("body n=2") {
            refreshed = Some(reply);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let refreshed = refreshed.expect("the background revalidation refreshed the entry");
    assert_hit(&refreshed);
    assert!(c.origin_saw("swr") >= 2);

    // Past the window it is an ordinary stale entry.
    c.advance(120);
    assert_not_hit(&c.get(&url).await);
    c.stack.stop().await;
}

#[tokio::test]
async fn stale_if_error_answers_when_the_origin_fails_unless_revalidation_is_required() {
    let c = Cached::start().await;
    let url = resource(
        "sie",
        &[("cc", "max-age=1, stale-if-error=600"), ("then", "503")],
    );
    let first = c.get(&url).await;
    c.advance(5);
    let rescued = c.get(&url).await;
    assert_eq!(rescued.status, StatusCode::OK);
    assert_eq!(rescued.text(), first.text());
    assert_eq!(
        status(&rescued),
        "cobrowse-proxy; fwd=stale; fwd-status=503; ttl=-4; detail=stale-if-error"
    );
    assert_eq!(c.origin_saw("sie"), 2);

    let strict = resource(
        "sie-strict",
        &[
            ("cc", "max-age=1, must-revalidate, stale-if-error=600"),
            ("then", "503"),
        ],
    );
    let plain = resource("sie-none", &[("cc", "max-age=1"), ("then", "503")]);
    c.get(&strict).await;
    c.get(&plain).await;
    c.advance(5);
    assert_eq!(c.get(&strict).await.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(c.get(&plain).await.status, StatusCode::SERVICE_UNAVAILABLE);
    c.stack.stop().await;
}

#[tokio::test]
async fn concurrent_misses_make_one_origin_request() {
    let c = Arc::new(Cached::start().await);
    let url = resource("herd", &[("cc", "max-age=600"), ("delay_ms", "500")]);
    let replies = futures_util::future::join_all((0..8).map(|_| {
        let c = c.clone();
        let url = url.clone();
        async move { c.get(&url).await }
    }))
    .await;
    for reply in &replies {
        assert_eq!(reply.status, StatusCode::OK);
        assert!(reply.text().starts_with("body n=1"), "{}", reply.text());
    }
    assert_eq!(c.origin_saw("herd"), 1);
    let collapsed = replies
        .iter()
        .filter(|r| status(r).contains("; collapsed"))
        .count();
    assert!(collapsed >= 1, "followers say they were collapsed");

    // A response that turns out private: every waiting request goes to the origin itself.
    let private = resource("herd-private", &[("cc", "private"), ("delay_ms", "300")]);
    let replies = futures_util::future::join_all((0..4).map(|_| {
        let c = c.clone();
        let url = private.clone();
        async move { c.get(&url).await }
    }))
    .await;
    assert!(replies.iter().all(|r| r.status == StatusCode::OK));
    assert_eq!(c.origin_saw("herd-private"), 4);
    drop(replies);
    if let Ok(c) = Arc::try_unwrap(c) {
        c.stack.stop().await;
    }
}

#[tokio::test]
async fn bodies_over_the_per_object_cap_are_not_stored() {
    let cache = CacheConfig {
        max_object_bytes: 4096,
        ..CacheConfig::default()
    };
    let c = Cached::with(cache, FileConfig::default()).await;
    let big = resource("big", &[("cc", "max-age=600"), ("pad", "5000")]);
    let small = resource("small", &[("cc", "max-age=600"), ("pad", "3000")]);
    for _ in 0..2 {
        let reply = c.get(&big).await;
        assert_eq!(reply.body.len(), 5000 + "body n=1".len());
        assert!(
            status(&reply).contains("detail=too-large"),
            "{}",
            status(&reply)
        );
        c.get(&small).await;
    }
    assert_eq!(c.origin_saw("big"), 2);
    assert_eq!(c.origin_saw("small"), 1);
    c.stack.stop().await;
}

#[tokio::test]
async fn the_byte_bound_evicts() {
    let cache = CacheConfig {
        max_bytes: 64 << 10,
        ..CacheConfig::default()
    };
    let c = Cached::with(cache, FileConfig::default()).await;
    let urls: Vec<String> = (0..6)
        .map(|i| {
            resource(
                &format!("bound{i}"),
                &[("cc", "max-age=600"), ("pad", "20000")],
            )
        })
        .collect();
    for url in &urls {
        c.get(url).await;
    }
    assert!(c.metric("cobrowse_cache_evictions_total").await >= 1.0);
    assert!(c.metric("cobrowse_cache_stored_bytes").await <= f64::from(64 << 10));
    for url in &urls {
        c.get(url).await;
    }
    let seen: usize = (0..6).map(|i| c.origin_saw(&format!("bound{i}"))).sum();
    assert!(seen > 6, "at most three 20 KB bodies fit in 64 KiB: {seen}");
    c.stack.stop().await;
}

#[tokio::test]
async fn one_entry_serves_every_session_rewritten_for_each() {
    let c = Cached::start().await;
    let (other, _) = c.stack.session(&format!("{CDN}/")).await;
    let css = "@import url(\"https://cdn.shop.test/css/imported.css\"); a { background: url(//www.shop.test/x.png) }";
    let url = resource(
        "css",
        &[("cc", "max-age=600"), ("type", "text/css"), ("body", css)],
    );
    let a = c.get(&url).await;
    let b_url = c.stack.proxied(&other, &url);
    let b = c.stack.get(&b_url).await;
    assert_hit(&b);
    assert_eq!(c.origin_saw("css"), 1);
    let a_cdn = c.stack.proxied(&c.session, "https://cdn.shop.test/");
    let b_cdn = c.stack.proxied(&other, "https://cdn.shop.test/");
    let b_www = c.stack.proxied(&other, "https://www.shop.test/");
    let a_host = url::Url::parse(&a_cdn)
        .unwrap()
        .host_str()
        .unwrap()
        .to_owned();
    assert!(
        a.text().contains(&format!("{a_cdn}css/imported.css")),
        "{}",
        a.text()
    );
    assert!(
        b.text().contains(&format!("{b_cdn}css/imported.css")),
        "{}",
        b.text()
    );
    let b_www_host = url::Url::parse(&b_www)
        .unwrap()
        .host_str()
        .unwrap()
        .to_owned();
    assert!(b.text().contains(&b_www_host), "{}", b.text());
    assert!(
        !b.text().contains(&a_host),
        "session A's host never reaches B: {}",
        b.text()
    );
    c.stack.stop().await;
}

#[tokio::test]
async fn no_entry_is_served_24_hours_after_it_was_stored() {
    let c = Cached::start().await;
    let url = resource("day", &[("cc", "public, max-age=172800, immutable")]);
    let first = c.get(&url).await;
    assert_eq!(
        status(&first),
        "cobrowse-proxy; fwd=uri-miss; stored; ttl=86400"
    );
    c.advance(23 * 3600);
    let hit = c.get(&url).await;
    assert_hit(&hit);
    assert_eq!(
        hit.header("cache-control").as_deref(),
        Some("public, max-age=172800, immutable")
    );
    assert_eq!(hit.header("age").as_deref(), Some("82800"));
    c.advance(2 * 3600);
    let after = c.get(&url).await;
    assert_eq!(
        status(&after),
        "cobrowse-proxy; fwd=uri-miss; stored; ttl=86400"
    );
    assert!(after.text().starts_with("body n=2"));

    // Not even stale-if-error brings an entry back past the cap.
    let rescue = resource(
        "day-sie",
        &[("cc", "max-age=1, stale-if-error=999999"), ("then", "503")],
    );
    c.get(&rescue).await;
    c.advance(25 * 3600);
    assert_eq!(c.get(&rescue).await.status, StatusCode::SERVICE_UNAVAILABLE);
    c.stack.stop().await;
}

#[tokio::test]
async fn cache_status_names_what_was_bypassed() {
    let c = Cached::start().await;
    let url = resource("bypass", &[("cc", "max-age=600")]);
    c.get(&url).await;
    let ranged = c.send(Method::GET, &url, &[("range", "bytes=0-3")]).await;
    assert_eq!(status(&ranged), "cobrowse-proxy; fwd=bypass; detail=range");
    let options = c.send(Method::OPTIONS, &url, &[]).await;
    assert_eq!(status(&options), "cobrowse-proxy; fwd=method");
    let refused = c
        .send(Method::GET, &url, &[("cache-control", "no-cache")])
        .await;
    assert!(
        status(&refused).starts_with("cobrowse-proxy; fwd=request"),
        "{}",
        status(&refused)
    );
    c.stack.stop().await;
}

#[tokio::test]
async fn purge_forgets_one_url_or_everything() {
    let c = Cached::start().await;
    let a = resource("purge-a", &[("cc", "max-age=600")]);
    let b = resource("purge-b", &[("cc", "max-age=600")]);
    c.get(&a).await;
    c.get(&b).await;
    let purge = format!("{}/api/cache/purge", c.stack.public);
    let json = [("content-type", "application/json")];
    let body = serde_json::json!({ "url": a }).to_string();
    let reply = c
        .stack
        .request(Method::POST, &purge, &json, body.clone())
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(reply.json()["purged"], 1);
    assert_not_hit(&c.get(&a).await);
    assert_hit(&c.get(&b).await);
    let plain = [("content-type", "text/plain")];
    let refused = c.stack.request(Method::POST, &purge, &plain, body).await;
    assert_eq!(
        refused.status,
        StatusCode::BAD_REQUEST,
        "no CORS-simple purge"
    );
    let all = c
        .stack
        .request(Method::POST, &purge, &json, r#"{"all": true}"#)
        .await;
    assert_eq!(all.status, StatusCode::OK);
    assert_not_hit(&c.get(&b).await);
    c.stack.stop().await;
}

#[tokio::test]
async fn purge_requires_the_api_token_when_one_is_configured() {
    let file = FileConfig {
        api_token: Some("s3cret".into()),
        ..FileConfig::default()
    };
    let clock = Arc::new(ManualClock::new());
    let stack = start_with(Options {
        file,
        clock: Some(clock),
        ..Options::default()
    })
    .await;
    let purge = format!("{}/api/cache/purge", stack.public);
    let body = r#"{"all": true}"#;
    let anonymous = [("content-type", "application/json")];
    let wrong = [
        ("content-type", "application/json"),
        ("authorization", "Bearer nope"),
    ];
    let right = [
        ("content-type", "application/json"),
        ("authorization", "Bearer s3cret"),
    ];
    assert_eq!(
        stack
            .request(Method::POST, &purge, &anonymous, body)
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        stack
            .request(Method::POST, &purge, &wrong, body)
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        stack
            .request(Method::POST, &purge, &right, body)
            .await
            .status,
        StatusCode::OK
    );
    stack.stop().await;
}

#[tokio::test]
async fn metrics_count_hits_misses_and_bytes() {
    let c = Cached::start().await;
    let url = resource("metrics", &[("cc", "max-age=600"), ("pad", "1000")]);
    c.get(&url).await;
    c.get(&url).await;
    c.get(&url).await;
    assert_eq!(c.metric("cobrowse_cache_hits_total").await, 2.0);
    assert_eq!(c.metric("cobrowse_cache_misses_total").await, 1.0);
    assert!(c.metric("cobrowse_cache_stored_bytes").await >= 1000.0);
    assert_eq!(c.metric("cobrowse_cache_evictions_total").await, 0.0);
    c.stack.stop().await;
}

/// An HTTP date `secs` from now.
fn http_date_in(secs: u64) -> String {
    let t = time::OffsetDateTime::now_utc() + Duration::from_secs(secs);
    let f = time::macros::format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    t.format(&f).unwrap()
}

#[tokio::test]
async fn expires_gives_freshness_and_max_age_overrides_it() {
    let c = Cached::start().await;
    let expires = format!("Expires:{}", http_date_in(3600));
    let url = resource("expires", &[("h", &expires)]);
    let first = c.get(&url).await;
    let ttl: i64 = status(&first)
        .rsplit("ttl=")
        .next()
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("{}", status(&first)));
    assert!((3500..=3600).contains(&ttl), "{}", status(&first));
    c.advance(1800);
    assert_hit(&c.get(&url).await);
    c.advance(1900);
    assert_not_hit(&c.get(&url).await);

    let overridden = resource("expires-max-age", &[("h", &expires), ("cc", "max-age=5")]);
    c.get(&overridden).await;
    c.advance(10);
    assert_not_hit(&c.get(&overridden).await);
    assert_eq!(c.origin_saw("expires"), 2);
    c.stack.stop().await;
}

#[tokio::test]
async fn the_first_client_streams_while_the_body_is_stored() {
    use http_body_util::BodyExt;
    let c = Cached::start().await;
    let url = resource(
        "tee",
        &[("cc", "max-age=600"), ("pad", "1000"), ("hold", "1")],
    );
    let proxied = c.stack.proxied(&c.session, &url);
    let response = c.stack.send(Method::GET, &proxied, &[], "").await;
    let mut body = response.into_body();
    // The origin holds the rest of its body until released (or 10 s): the first bytes must arrive first.
    let first = tokio::time::timeout(Duration::from_secs(5), body.frame())
        .await
        .expect("the first bytes arrive before the origin's body ends")
        .unwrap()
        .unwrap()
        .into_data()
        .unwrap();
    assert_eq!(first, "body n=1");
    c.get(&format!("{CDN}/_fx/cache-release?key=tee")).await;
    let rest = tokio::time::timeout(Duration::from_secs(10), body.collect())
        .await
        .unwrap()
        .unwrap()
        .to_bytes();
    assert_eq!(rest.len(), 1000);
    let hit = c.get(&url).await;
    assert_hit(&hit);
    assert_eq!(hit.body.len(), "body n=1".len() + 1000);
    assert_eq!(c.origin_saw("tee"), 1);
    c.stack.stop().await;
}

#[tokio::test]
async fn a_conditional_request_is_answered_304_from_a_fresh_entry() {
    let c = Cached::start().await;
    let url = resource("cond", &[("cc", "max-age=60"), ("etag", "v1")]);
    c.get(&url).await;
    let reply = c
        .send(Method::GET, &url, &[("if-none-match", "\"v1\"")])
        .await;
    assert_eq!(reply.status, StatusCode::NOT_MODIFIED);
    assert_eq!(reply.header("etag").as_deref(), Some("\"v1\""));
    assert!(
        status(&reply).starts_with("cobrowse-proxy; hit"),
        "{}",
        status(&reply)
    );
    let other = c
        .send(Method::GET, &url, &[("if-none-match", "\"v0\"")])
        .await;
    assert_eq!(other.status, StatusCode::OK);
    assert_eq!(c.origin_saw("cond"), 1, "both answered from the entry");
    c.stack.stop().await;
}
