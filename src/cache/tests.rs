//! The facade driven by a fake origin, no sockets: what reaches the origin and what the client gets.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;
use http_body_util::BodyExt;

use super::*;

/// Answers every request with the same headers and a body naming its request number; sleeps first.
struct Fake {
    calls: AtomicUsize,
    headers: Vec<(&'static str, &'static str)>,
    delay: Duration,
}

impl Fake {
    fn new(headers: &[(&'static str, &'static str)]) -> Arc<Fake> {
        Arc::new(Fake {
            calls: AtomicUsize::new(0),
            headers: headers.to_vec(),
            delay: Duration::ZERO,
        })
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

impl Origin for Fake {
    async fn send(
        &self,
        _req: Request<ProxyBody>,
        _upgrade: bool,
    ) -> Result<Response<ProxyBody>, UpstreamError> {
        let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        tokio::time::sleep(self.delay).await;
        let mut b = Response::builder();
        for (k, v) in &self.headers {
            b = b.header(*k, *v);
        }
        Ok(b.body(full(format!("n={n}"))).unwrap())
    }
}

fn cache() -> (Cache, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new());
    let config = CacheConfig::default();
    let cache = Cache::new(
        &config,
        Duration::from_secs(10),
        clock.clone(),
        CacheMetrics::default(),
    );
    (cache, clock)
}

fn request(method: Method) -> Request<ProxyBody> {
    Request::builder()
        .method(method)
        .uri("https://cdn.shop.test/a.css")
        .body(empty())
        .unwrap()
}

async fn text(cache: &Cache, origin: &Arc<Fake>, method: Method) -> (String, CacheStatus) {
    let (res, status) = cache.fetch(request(method), origin, false).await.unwrap();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    (String::from_utf8_lossy(&body).into_owned(), status)
}

#[tokio::test]
async fn a_stored_response_is_served_without_the_origin() {
    let (cache, _) = cache();
    let origin = Fake::new(&[("cache-control", "max-age=60")]);
    let (first, status) = text(&cache, &origin, Method::GET).await;
    assert!(status.stored);
    let (second, status) = text(&cache, &origin, Method::GET).await;
    assert!(status.hit);
    assert_eq!((first.as_str(), second.as_str()), ("n=1", "n=1"));
    assert_eq!(origin.calls(), 1);
}

#[tokio::test]
async fn websocket_and_disabled_caches_bypass() {
    let (cache, _) = cache();
    let origin = Fake::new(&[("cache-control", "max-age=60")]);
    let (_, status) = cache
        .fetch(request(Method::GET), &origin, true)
        .await
        .unwrap();
    assert_eq!(status.fwd, Some(Fwd::Bypass));
    let disabled = CacheConfig {
        enabled: false,
        ..CacheConfig::default()
    };
    let off = Cache::new(
        &disabled,
        Duration::from_secs(1),
        Arc::new(SystemClock),
        CacheMetrics::default(),
    );
    for _ in 0..2 {
        let (_, status) = text(&off, &origin, Method::GET).await;
        assert_eq!(status.fwd, Some(Fwd::Bypass));
    }
    assert_eq!(origin.calls(), 3);
}

#[tokio::test]
async fn concurrent_misses_share_one_origin_request() {
    let (cache, _) = cache();
    let origin = Arc::new(Fake {
        calls: AtomicUsize::new(0),
        headers: vec![("cache-control", "max-age=60")],
        delay: Duration::from_millis(200),
    });
    let all =
        futures_util::future::join_all((0..5).map(|_| text(&cache, &origin, Method::GET))).await;
    assert!(all.iter().all(|(body, _)| body == "n=1"));
    assert_eq!(origin.calls(), 1);
}

#[tokio::test]
async fn a_post_invalidates_and_the_cap_ends_an_entry() {
    let (cache, clock) = cache();
    let origin = Fake::new(&[("cache-control", "max-age=172800")]);
    text(&cache, &origin, Method::GET).await;
    text(&cache, &origin, Method::POST).await;
    let (_, status) = text(&cache, &origin, Method::GET).await;
    assert_eq!(status.fwd, Some(Fwd::UriMiss));
    clock.advance(Duration::from_secs(86_401));
    let (body, status) = text(&cache, &origin, Method::GET).await;
    assert_eq!((body.as_str(), status.fwd), ("n=4", Some(Fwd::UriMiss)));
}

/// One scripted answer: a status and headers, or a failed connection.
#[derive(Clone)]
enum Step {
    Answer(u16, Vec<(&'static str, &'static str)>),
    Fail,
}

/// Answers call n with step n (the last step repeats) and remembers each request's headers.
struct Script {
    steps: Vec<Step>,
    seen: std::sync::Mutex<Vec<HeaderMap>>,
}

impl Script {
    fn new(steps: Vec<Step>) -> Arc<Script> {
        Arc::new(Script {
            steps,
            seen: std::sync::Mutex::new(Vec::new()),
        })
    }

    fn seen(&self) -> Vec<HeaderMap> {
        self.seen.lock().unwrap().clone()
    }
}

impl Origin for Script {
    async fn send(
        &self,
        req: Request<ProxyBody>,
        _upgrade: bool,
    ) -> Result<Response<ProxyBody>, UpstreamError> {
        let n = {
            let mut seen = self.seen.lock().unwrap();
            seen.push(req.headers().clone());
            seen.len()
        };
        let step = self.steps[(n - 1).min(self.steps.len() - 1)].clone();
        let Step::Answer(status, headers) = step else {
            return Err(UpstreamError::Failed {
                host: "cdn.shop.test".into(),
                detail: "closed".into(),
            });
        };
        let mut b = Response::builder().status(status);
        for (k, v) in headers {
            b = b.header(k, v);
        }
        Ok(b.body(full(format!("n={n}"))).unwrap())
    }
}

async fn send_with(
    cache: &Cache,
    origin: &Arc<Script>,
    headers: &[(&str, &str)],
) -> (StatusCode, String, CacheStatus) {
    let mut req = request(Method::GET);
    for (k, v) in headers {
        req.headers_mut().append(
            http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    let (res, status) = cache.fetch(req, origin, false).await.unwrap();
    let code = res.status();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    (code, String::from_utf8_lossy(&body).into_owned(), status)
}

#[tokio::test]
async fn a_304_without_validators_answers_ours_and_the_client_gets_the_stored_200() {
    let (cache, clock) = cache();
    let stored = vec![
        ("cache-control", "max-age=2, must-revalidate"),
        ("etag", "\"abcd\""),
    ];
    let origin = Script::new(vec![Step::Answer(200, stored), Step::Answer(304, vec![])]);
    send_with(&cache, &origin, &[]).await;
    clock.advance(Duration::from_secs(5));
    let (code, body, status) = send_with(&cache, &origin, &[]).await;
    assert_eq!((code, body.as_str()), (StatusCode::OK, "n=1"));
    assert_eq!(status.fwd_status, Some(304));
    assert_eq!(origin.seen()[1]["if-none-match"], "\"abcd\"");
}

#[tokio::test]
async fn a_304_for_another_representation_sends_the_client_request_on() {
    let (cache, clock) = cache();
    let origin = Script::new(vec![
        Step::Answer(200, vec![("cache-control", "max-age=1"), ("etag", "\"a\"")]),
        Step::Answer(304, vec![("etag", "\"b\"")]),
        Step::Answer(
            200,
            vec![("cache-control", "max-age=60"), ("etag", "\"b\"")],
        ),
    ]);
    send_with(&cache, &origin, &[]).await;
    clock.advance(Duration::from_secs(5));
    let (code, body, status) = send_with(&cache, &origin, &[]).await;
    assert_eq!((code, body.as_str()), (StatusCode::OK, "n=3"));
    assert_eq!(status.detail, Some("validator-mismatch"));
    assert!(!origin.seen()[2].contains_key("if-none-match"));
}

#[tokio::test]
async fn conditional_clients_get_a_304_from_a_fresh_entry() {
    let (cache, _) = cache();
    let lm = "Sun, 06 Nov 1994 08:49:37 GMT";
    let origin = Script::new(vec![Step::Answer(
        200,
        vec![
            ("cache-control", "max-age=60"),
            ("etag", "\"v1\""),
            ("last-modified", lm),
        ],
    )]);
    send_with(&cache, &origin, &[]).await;
    let (code, body, status) = send_with(&cache, &origin, &[("if-none-match", "\"v1\"")]).await;
    assert_eq!((code, body.as_str()), (StatusCode::NOT_MODIFIED, ""));
    assert!(status.hit);
    let (code, ..) = send_with(&cache, &origin, &[("if-modified-since", lm)]).await;
    assert_eq!(code, StatusCode::NOT_MODIFIED);
    let (code, body, _) = send_with(&cache, &origin, &[("if-none-match", "\"v0\"")]).await;
    assert_eq!((code, body.as_str()), (StatusCode::OK, "n=1"));
    assert_eq!(origin.seen().len(), 1, "all answered from the entry");
}

#[tokio::test]
async fn error_statuses_with_explicit_freshness_are_stored_and_expire() {
    let (cache, clock) = cache();
    let origin = Script::new(vec![Step::Answer(
        500,
        vec![("cache-control", "max-age=10")],
    )]);
    send_with(&cache, &origin, &[]).await;
    let (code, body, status) = send_with(&cache, &origin, &[]).await;
    assert_eq!(
        (code, body.as_str()),
        (StatusCode::INTERNAL_SERVER_ERROR, "n=1")
    );
    assert!(status.hit);
    clock.advance(Duration::from_secs(11));
    let (_, body, _) = send_with(&cache, &origin, &[]).await;
    assert_eq!(body, "n=2");
    let (other, _) = self::cache();
    let plain = Script::new(vec![Step::Answer(500, vec![])]);
    send_with(&other, &plain, &[]).await;
    send_with(&other, &plain, &[]).await;
    assert_eq!(plain.seen().len(), 2, "no explicit freshness: never stored");
}

#[tokio::test]
async fn an_unreachable_origin_gets_the_stale_entry_unless_revalidation_is_required() {
    for (cc, rescued) in [("max-age=1", true), ("max-age=1, must-revalidate", false)] {
        let (cache, clock) = cache();
        let origin = Script::new(vec![
            Step::Answer(200, vec![("cache-control", cc)]),
            Step::Fail,
        ]);
        send_with(&cache, &origin, &[]).await;
        clock.advance(Duration::from_secs(5));
        let mut req = request(Method::GET);
        req.headers_mut().clear();
        let result = cache.fetch(req, &origin, false).await;
        match result {
            Ok((_, status)) => {
                assert!(rescued, "{cc}");
                assert_eq!(status.detail, Some("stale-disconnected"));
            }
            Err(_) => assert!(!rescued, "{cc}"),
        }
    }
}

#[tokio::test]
async fn directive_names_and_age_lists_are_read_as_the_rfc_says() {
    let (first, _) = cache();
    let no_cache = Script::new(vec![Step::Answer(
        200,
        vec![("cache-control", "No-CaChE, max-age=60"), ("etag", "\"x\"")],
    )]);
    send_with(&first, &no_cache, &[]).await;
    let (_, _, status) = send_with(&first, &no_cache, &[]).await;
    assert!(!status.hit, "No-CaChE means no-cache");
    let (cache, _) = cache();
    let aged = Script::new(vec![Step::Answer(
        200,
        vec![("cache-control", "max-age=3600"), ("age", "7200, 0")],
    )]);
    send_with(&cache, &aged, &[]).await;
    let (_, _, status) = send_with(&cache, &aged, &[]).await;
    assert!(!status.hit, "the first Age member counts");
}
