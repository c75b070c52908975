use std::sync::Arc;
use std::time::Duration;

use http::{HeaderValue, Request, Response};

use super::*;
use crate::cache::clock::ManualClock;
use crate::cache::policy;

fn stored(clock: &ManualClock, body: usize, variant: Option<&'static str>) -> Stored {
    let req = Request::get("https://cdn.shop.test/x")
        .body(())
        .unwrap()
        .into_parts()
        .0;
    let res = Response::builder()
        .header("cache-control", "max-age=60")
        .body(())
        .unwrap()
        .into_parts()
        .0;
    let now = clock.now();
    let policy = policy::admit(&req, &res, now).unwrap();
    Stored {
        status: StatusCode::OK,
        headers: res.headers,
        body: Bytes::from(vec![b'x'; body]),
        fresh_until: policy::fresh_until(&policy, now),
        policy,
        stored_at: now,
        variant: vec![variant.map(HeaderValue::from_static)],
    }
}

fn store(max_bytes: u64) -> (Store, Arc<ManualClock>, CacheMetrics) {
    let clock = Arc::new(ManualClock::new());
    let metrics = CacheMetrics::default();
    let limits = Limits {
        max_bytes,
        max_object_bytes: 64 << 10,
        max_age: Duration::from_secs(86_400),
    };
    (
        Store::new(limits, clock.clone(), metrics.clone()),
        clock,
        metrics,
    )
}

#[test]
fn stores_and_serves_until_the_absolute_cap() {
    let (s, clock, _) = store(1 << 20);
    s.put("u", stored(&clock, 10, None));
    assert_eq!(s.get("u").unwrap().list[0].body.len(), 10);
    clock.advance(Duration::from_secs(86_399));
    assert!(s.get("u").is_some(), "inside the cap");
    clock.advance(Duration::from_secs(2));
    assert!(
        s.get("u").is_none(),
        "past the cap, whatever the headers say"
    );
}

#[test]
fn objects_over_the_per_object_cap_are_not_stored() {
    let (s, clock, metrics) = store(1 << 20);
    s.put("big", stored(&clock, (64 << 10) + 1, None));
    assert!(s.get("big").is_none());
    s.put("fits", stored(&clock, 64 << 10, None));
    assert!(s.get("fits").is_some());
    assert_eq!(metrics.stored_bytes.get() as u64, s.weighted_size());
}

#[test]
fn the_byte_bound_evicts_and_counts() {
    let (s, clock, metrics) = store(100 << 10);
    for i in 0..10 {
        s.put(&format!("u{i}"), stored(&clock, 30 << 10, None));
    }
    assert!(s.weighted_size() <= 100 << 10);
    assert!(metrics.evictions.get() >= 7, "{}", metrics.evictions.get());
    let kept = (0..10)
        .filter(|i| s.get(&format!("u{i}")).is_some())
        .count();
    assert!((1..=3).contains(&kept), "{kept}");
    assert_eq!(metrics.stored_bytes.get() as u64, s.weighted_size());
}

#[test]
fn variants_replace_their_own_kind_and_are_bounded() {
    let (s, clock, metrics) = store(1 << 20);
    s.put("u", stored(&clock, 1, Some("fr")));
    s.put("u", stored(&clock, 2, Some("de")));
    s.put("u", stored(&clock, 3, Some("fr")));
    let v = s.get("u").unwrap();
    assert_eq!(v.list.len(), 2);
    assert_eq!(
        v.list[0].body.len(),
        3,
        "newest first, the old fr variant replaced"
    );
    for lang in ["a", "b", "c", "d", "e"] {
        s.put("u", stored(&clock, 1, Some(lang)));
    }
    assert_eq!(s.get("u").unwrap().list.len(), MAX_VARIANTS);
    assert_eq!(metrics.stored_bytes.get() as u64, s.weighted_size());
}

#[test]
fn refresh_keeps_the_body_and_remove_and_clear_forget() {
    let (s, clock, metrics) = store(1 << 20);
    s.put("u", stored(&clock, 5, None));
    let old = s.get("u").unwrap().list[0].clone();
    let mut new = stored(&clock, 5, None);
    new.headers
        .insert("etag", HeaderValue::from_static("\"v2\""));
    let refreshed = s.refresh("u", &old, new);
    assert_eq!(
        s.get("u").unwrap().list[0].headers.get("etag").unwrap(),
        "\"v2\""
    );
    assert!(Arc::ptr_eq(&s.get("u").unwrap().list[0], &refreshed));
    assert!(s.remove("u"));
    assert!(!s.remove("u"));
    s.put("a", stored(&clock, 1, None));
    s.put("b", stored(&clock, 1, None));
    s.clear();
    assert!(s.get("a").is_none() && s.get("b").is_none());
    assert_eq!(metrics.stored_bytes.get(), 0);
}
