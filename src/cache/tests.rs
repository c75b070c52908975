//! The facade driven by a fake origin, no sockets: what reaches the origin and what the client gets.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

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
