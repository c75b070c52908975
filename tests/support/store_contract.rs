//! What every store backend owes, whichever database is behind the handle: the data policy's rules for
//! visitor metadata and the event log (`docs/DATA-POLICY.md`). Written once, run by
//! `src/store/tests.rs` against SQLite and by `tests/store_postgres.rs` against a real PostgreSQL, so
//! the two cannot drift apart. Names come from the including module (`use super::*`): the crate's
//! own paths differ between a unit test and an integration test.
//!
//! [`store_contract!`] turns every check into a `#[tokio::test]` for one backend.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::*;

pub const DAY: Duration = Duration::from_secs(24 * 3600);
pub const UA: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:127.0) Gecko/20100101 Firefox/127.0";

/// One backend's storage: every `open` reaches the same data, so a second open is a restart.
#[allow(async_fn_in_trait)]
pub trait Backend {
    async fn open(&self, clock: Arc<ManualClock>, debug_events: bool) -> Store;
    /// Fails when any of `needles` is still stored anywhere; called once the stores are closed.
    async fn assert_absent(&self, needles: &[&str]);
}

/// One `#[tokio::test]` per check below; `$backend` is an async block giving `Option<impl Backend>`
/// (`None`: the backend is not available here and the test is skipped).
macro_rules! store_contract {
    ($backend:expr) => {
        store_contract!(@each $backend;
            a_sighting_is_stored_without_query_or_fragment,
            later_sightings_update_and_identities_merge,
            kept_across_a_restart_with_online_cleared,
            deleted_means_gone,
            visitors_expire_30_days_after_last_seen,
            an_expired_record_lends_nothing_to_a_new_sighting,
            events_only_when_debugging_and_for_7_days,
            a_closed_store_says_so
        );
    };
    (@each $backend:expr; $($name:ident),*) => {
        $(
            #[tokio::test]
            async fn $name() {
                if let Some(backend) = $backend.await {
                    contract::$name(&backend).await;
                }
            }
        )*
    };
}

pub fn sighting<'a>(id: &'a SessionId, page: &'a Url, ua: &'a str) -> Sighting<'a> {
    Sighting {
        visitor: id,
        ip: Some("::ffff:203.0.113.9".parse().unwrap()),
        page: Some(page),
        user_agent: Some(ua),
        online: None,
    }
}

fn clock() -> Arc<ManualClock> {
    Arc::new(ManualClock::new())
}

fn page(path: &str) -> Url {
    Url::parse("https://www.shop.test/")
        .unwrap()
        .join(path)
        .unwrap()
}

pub async fn a_sighting_is_stored_without_query_or_fragment(b: &impl Backend) {
    let store = b.open(clock(), false).await;
    let id = SessionId::random();
    let page = Url::parse("https://user:pw@www.shop.test/cart?token=Q-SECRET#F-SECRET").unwrap();
    store.seen(sighting(&id, &page, UA));
    let list = store.visitors().await.unwrap();
    assert_eq!(list.len(), 1);
    let v = &list[0];
    assert_eq!(v.id, id.as_str());
    assert_eq!(v.last_ip.as_deref(), Some("203.0.113.9"));
    assert_eq!(
        v.last_page_url.as_deref(),
        Some("https://www.shop.test/cart")
    );
    assert_eq!(v.browser.as_deref(), Some("Firefox"));
    assert_eq!(v.device.as_deref(), Some("desktop"));
    assert!(!v.online);
    store.close().await;
    b.assert_absent(&["Q-SECRET", "F-SECRET", "pw@", "Gecko/20100101"])
        .await;
}

pub async fn later_sightings_update_and_identities_merge(b: &impl Backend) {
    let store = b.open(clock(), false).await;
    let id = SessionId::random();
    let identity = Identity {
        external_id: Some("crm-42".into()),
        identities: [("email".to_owned(), "v@example.com".to_owned())].into(),
    };
    store.identify(&id, identity.clone());
    let first = store.visitor(&id).await.unwrap().unwrap();
    assert_eq!(first.last_seen, None, "given, not yet seen");
    store.seen(sighting(&id, &page("a"), UA));
    store.seen(Sighting {
        visitor: &id,
        ip: None,
        page: None,
        user_agent: None,
        online: Some(true),
    });
    let v = store.visitor(&id).await.unwrap().unwrap();
    assert!(v.online);
    assert_eq!(v.last_page_url.as_deref(), Some("https://www.shop.test/a"));
    assert_eq!(v.external_id.as_deref(), Some("crm-42"));
    assert_eq!(v.identities, identity.identities);
    assert!(v.last_seen.is_some());
    store.close().await;
}

pub async fn kept_across_a_restart_with_online_cleared(b: &impl Backend) {
    let clock = clock();
    let id = SessionId::random();
    {
        let store = b.open(clock.clone(), false).await;
        store.seen(Sighting {
            online: Some(true),
            ..sighting(&id, &page("/"), UA)
        });
        store.close().await;
    }
    let store = b.open(clock, false).await;
    let v = store.visitor(&id).await.unwrap().expect("survives");
    assert!(!v.online, "nobody is connected to a new process");
    store.close().await;
}

pub async fn deleted_means_gone(b: &impl Backend) {
    let store = b.open(clock(), true).await;
    let id = SessionId::random();
    store.seen(sighting(&id, &page("deleted-page-marker"), UA));
    store.identify(
        &id,
        Identity {
            external_id: Some("EXT-DELETE-ME".into()),
            ..Identity::default()
        },
    );
    store.event(&id, EventName::RelayJoin, Some("visitor"), None);
    assert_eq!(store.events(&id).await.unwrap().len(), 1);
    assert!(store.delete_visitor(&id).await.unwrap());
    assert!(
        !store.delete_visitor(&id).await.unwrap(),
        "a second time: 404"
    );
    assert!(store.visitor(&id).await.unwrap().is_none());
    assert!(store.events(&id).await.unwrap().is_empty(), "events go too");
    store.close().await;
    b.assert_absent(&[
        "EXT-DELETE-ME",
        "deleted-page-marker",
        id.as_str(),
        "203.0.113.9",
    ])
    .await;
}

pub async fn visitors_expire_30_days_after_last_seen(b: &impl Backend) {
    let clock = clock();
    let store = b.open(clock.clone(), false).await;
    let (old, fresh) = (SessionId::random(), SessionId::random());
    store.seen(sighting(&old, &page("/"), UA));
    clock.advance(10 * DAY);
    store.seen(sighting(&fresh, &page("/"), UA));
    clock.advance(19 * DAY);
    assert_eq!(store.visitors().await.unwrap().len(), 2, "29 days: kept");
    clock.advance(DAY);
    let left: Vec<_> = store.visitors().await.unwrap();
    assert_eq!(left.len(), 1, "30 days: filtered before any sweep");
    assert_eq!(left[0].id, fresh.as_str());
    assert!(store.visitor(&old).await.unwrap().is_none());
    let swept = store.sweep().await.unwrap();
    assert_eq!(swept.visitors, 1);
    store.close().await;
    b.assert_absent(&[old.as_str()]).await;
}

pub async fn an_expired_record_lends_nothing_to_a_new_sighting(b: &impl Backend) {
    let clock = clock();
    let store = b.open(clock.clone(), false).await;
    let id = SessionId::random();
    store.identify(
        &id,
        Identity {
            external_id: Some("old".into()),
            ..Identity::default()
        },
    );
    clock.advance(31 * DAY);
    store.seen(sighting(&id, &page("/"), UA));
    let v = store.visitor(&id).await.unwrap().unwrap();
    assert_eq!(v.external_id, None);
    store.close().await;
}

pub async fn events_only_when_debugging_and_for_7_days(b: &impl Backend) {
    let clock = clock();
    let id = SessionId::random();
    {
        let off = b.open(clock.clone(), false).await;
        off.event(&id, EventName::SessionCreated, None, None);
        assert!(off.events(&id).await.unwrap().is_empty());
        off.close().await;
    }
    let on = b.open(clock.clone(), true).await;
    on.event(&id, EventName::RelayMessage, Some("visitor"), Some(512));
    let events = on.events(&id).await.unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].name, "relay.message");
    assert_eq!(events[0].bytes, Some(512));
    clock.advance(6 * DAY);
    assert_eq!(on.events(&id).await.unwrap().len(), 1);
    clock.advance(DAY);
    assert!(on.events(&id).await.unwrap().is_empty());
    assert_eq!(on.sweep().await.unwrap().events, 1);
    on.close().await;
}

pub async fn a_closed_store_says_so(b: &impl Backend) {
    let store = b.open(clock(), false).await;
    store.close().await;
    assert!(matches!(store.visitors().await, Err(StoreError::Closed)));
    store.seen(sighting(&SessionId::random(), &page("/"), UA));
}
