//! Visitor metadata: what a deployment may know about the visitor of a session, and nothing more. The
//! last IP, the last page (without its query or fragment) and when, device and browser families, whether
//! the visitor is online, and the external id and identities the deployer gave when creating the
//! session. Kept [`VISITOR_TTL`](super::retention::VISITOR_TTL) after the visitor was last seen.
//!
//! The visitor of a session is keyed by the session id (the visitor credential names nothing else).
//! The records and the reductions applied before anything is stored live here, apart from the SQL
//! (`sqlite/visitors.rs`, `postgres/visitors.rs`), so both backends keep exactly the same thing.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::SystemTime;

use url::Url;

use super::device::Device;
use super::retention::{self, VISITOR_TTL};
use super::StoreError;

/// Longest page URL kept; longer ones are cut (at a character boundary).
const MAX_URL: usize = 2048;
/// Most visitors one listing returns, most recently seen first.
pub const MAX_LIST: usize = 1000;

/// One observation of a visitor, ready to store: a page load, joining or leaving the relay. `None`
/// fields keep what is stored.
#[derive(Debug, Clone)]
pub struct Seen {
    pub visitor: String,
    pub at: i64,
    pub ip: Option<String>,
    pub page_url: Option<String>,
    pub device: Option<Device>,
    pub online: Option<bool>,
}

/// What the deployer says about a session's visitor (`POST /api/sessions` `visitor`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Identity {
    pub external_id: Option<String>,
    pub identities: BTreeMap<String, String>,
}

/// A stored visitor, as the API lists it. Times are Unix milliseconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VisitorRecord {
    pub id: String,
    pub created_at: i64,
    pub last_seen: Option<i64>,
    pub last_ip: Option<String>,
    pub last_page_url: Option<String>,
    pub last_page_at: Option<i64>,
    pub device: Option<String>,
    pub os: Option<String>,
    pub browser: Option<String>,
    pub online: bool,
    pub external_id: Option<String>,
    pub identities: BTreeMap<String, String>,
}

impl VisitorRecord {
    /// The time retention counts from: the last sighting, or the record's creation if never seen.
    pub fn touched(&self) -> i64 {
        self.last_seen.unwrap_or(self.created_at)
    }

    pub fn expires_at(&self) -> SystemTime {
        retention::expires_at(self.touched(), VISITOR_TTL)
    }
}

/// The page URL as stored: scheme, host, port and path. Query, fragment and user info never reach the
/// disk (they carry tokens, search terms, personal data).
pub fn page_url(url: &Url) -> String {
    let mut url = url.clone();
    url.set_query(None);
    url.set_fragment(None);
    let _ = url.set_username("");
    let _ = url.set_password(None);
    let mut text = String::from(url);
    if text.len() > MAX_URL {
        let mut end = MAX_URL;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

/// IPv4 clients on a dual-stack socket show as `::ffff:a.b.c.d`; stored as the IPv4 address.
pub fn ip_text(ip: IpAddr) -> String {
    ip.to_canonical().to_string()
}

/// Identities as stored: a JSON object, or nothing when there are none.
pub fn encode_identities(identity: &Identity) -> Result<Option<String>, StoreError> {
    (!identity.identities.is_empty())
        .then(|| serde_json::to_string(&identity.identities))
        .transpose()
        .map_err(|e| StoreError::Encode(e.to_string()))
}

/// Written by us as a JSON object; anything else reads as none rather than failing the list.
pub fn decode_identities(text: Option<String>) -> BTreeMap<String, String> {
    text.and_then(|text| serde_json::from_str(&text).ok())
        .unwrap_or_default()
}
