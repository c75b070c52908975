//! The store against a real file in a temporary folder, on a manual clock.

use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::cache::ManualClock;

const DAY: Duration = Duration::from_secs(24 * 3600);

struct Dir(PathBuf);

impl Dir {
    fn new() -> Dir {
        let name = format!(
            "cobrowse-store-unit-{}-{:016x}",
            std::process::id(),
            rand::random::<u64>()
        );
        Dir(std::env::temp_dir().join(name))
    }

    /// Every byte under the folder, so tests can look for what must not be there.
    fn bytes(&self) -> Vec<u8> {
        let mut all = Vec::new();
        for entry in std::fs::read_dir(&self.0).unwrap() {
            all.extend(std::fs::read(entry.unwrap().path()).unwrap());
        }
        all
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

fn session() -> SessionId {
    SessionId::random()
}

fn sighting<'a>(id: &'a SessionId, page: &'a Url, ua: &'a str) -> Sighting<'a> {
    Sighting {
        visitor: id,
        ip: Some("::ffff:203.0.113.9".parse().unwrap()),
        page: Some(page),
        user_agent: Some(ua),
        online: None,
    }
}

const UA: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:127.0) Gecko/20100101 Firefox/127.0";

#[tokio::test]
async fn a_sighting_is_stored_without_query_or_fragment() {
    let dir = Dir::new();
    let store = Store::open(&dir.0, Arc::new(ManualClock::new()), false).unwrap();
    let id = session();
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
    let bytes = dir.bytes();
    for secret in ["Q-SECRET", "F-SECRET", "pw@", "Gecko/20100101"] {
        assert!(!contains(&bytes, secret), "{secret} reached the disk");
    }
}

#[tokio::test]
async fn later_sightings_update_and_identities_merge() {
    let dir = Dir::new();
    let store = Store::open(&dir.0, Arc::new(ManualClock::new()), false).unwrap();
    let id = session();
    let identity = Identity {
        external_id: Some("crm-42".into()),
        identities: [("email".to_owned(), "v@example.com".to_owned())].into(),
    };
    store.identify(&id, identity.clone());
    let first = store.visitor(&id).await.unwrap().unwrap();
    assert_eq!(first.last_seen, None, "given, not yet seen");
    let page = Url::parse("https://www.shop.test/a").unwrap();
    store.seen(sighting(&id, &page, UA));
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

#[tokio::test]
async fn kept_across_a_restart_with_online_cleared() {
    let dir = Dir::new();
    let clock = Arc::new(ManualClock::new());
    let id = session();
    {
        let store = Store::open(&dir.0, clock.clone(), false).unwrap();
        let page = Url::parse("https://www.shop.test/").unwrap();
        store.seen(Sighting {
            online: Some(true),
            ..sighting(&id, &page, UA)
        });
        store.close().await;
    }
    let store = Store::open(&dir.0, clock, false).unwrap();
    let v = store.visitor(&id).await.unwrap().expect("survives");
    assert!(!v.online, "nobody is connected to a new process");
    store.close().await;
}

#[tokio::test]
async fn deleted_means_gone_from_the_file() {
    let dir = Dir::new();
    let store = Store::open(&dir.0, Arc::new(ManualClock::new()), true).unwrap();
    let id = session();
    let page = Url::parse("https://www.shop.test/deleted-page-marker").unwrap();
    store.seen(sighting(&id, &page, UA));
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
    let bytes = dir.bytes();
    for gone in [
        "EXT-DELETE-ME",
        "deleted-page-marker",
        id.as_str(),
        "203.0.113.9",
    ] {
        assert!(!contains(&bytes, gone), "{gone} is still in the file");
    }
}

#[tokio::test]
async fn visitors_expire_30_days_after_last_seen() {
    let dir = Dir::new();
    let clock = Arc::new(ManualClock::new());
    let store = Store::open(&dir.0, clock.clone(), false).unwrap();
    let (old, fresh) = (session(), session());
    let page = Url::parse("https://www.shop.test/").unwrap();
    store.seen(sighting(&old, &page, UA));
    clock.advance(10 * DAY);
    store.seen(sighting(&fresh, &page, UA));
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
    assert!(!contains(&dir.bytes(), old.as_str()), "swept off the disk");
}

#[tokio::test]
async fn an_expired_record_lends_nothing_to_a_new_sighting() {
    let dir = Dir::new();
    let clock = Arc::new(ManualClock::new());
    let store = Store::open(&dir.0, clock.clone(), false).unwrap();
    let id = session();
    store.identify(
        &id,
        Identity {
            external_id: Some("old".into()),
            ..Identity::default()
        },
    );
    clock.advance(31 * DAY);
    let page = Url::parse("https://www.shop.test/").unwrap();
    store.seen(sighting(&id, &page, UA));
    let v = store.visitor(&id).await.unwrap().unwrap();
    assert_eq!(v.external_id, None);
    store.close().await;
}

#[tokio::test]
async fn events_only_when_debugging_and_for_7_days() {
    let dir = Dir::new();
    let clock = Arc::new(ManualClock::new());
    let id = session();
    {
        let off = Store::open(&dir.0, clock.clone(), false).unwrap();
        off.event(&id, EventName::SessionCreated, None, None);
        assert!(off.events(&id).await.unwrap().is_empty());
        off.close().await;
    }
    let on = Store::open(&dir.0, clock.clone(), true).unwrap();
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

#[tokio::test]
async fn a_closed_store_says_so() {
    let dir = Dir::new();
    let store = Store::open(&dir.0, Arc::new(ManualClock::new()), false).unwrap();
    store.close().await;
    assert!(matches!(store.visitors().await, Err(StoreError::Closed)));
    let page = Url::parse("https://www.shop.test/").unwrap();
    store.seen(sighting(&session(), &page, UA));
}
