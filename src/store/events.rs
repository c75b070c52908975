//! The content-free debug event log: what happened in a session, when, and how many bytes, never what
//! was in it. Names are a closed set ([`EventName`]), so no caller can put text of its own into the log.
//! Written only when `debug_events` is on; kept [`EVENT_TTL`](super::retention::EVENT_TTL).

/// Most events one listing returns, oldest first.
pub const MAX_LIST: usize = 1000;

/// Every event the log can hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventName {
    SessionCreated,
    SessionEnded,
    /// A page of the session was loaded (no URL is kept here).
    PageView,
    RelayJoin,
    /// One relay message; `bytes` is its size.
    RelayMessage,
    RelayLeave,
}

impl EventName {
    pub fn as_str(self) -> &'static str {
        match self {
            EventName::SessionCreated => "session.created",
            EventName::SessionEnded => "session.ended",
            EventName::PageView => "page.view",
            EventName::RelayJoin => "relay.join",
            EventName::RelayMessage => "relay.message",
            EventName::RelayLeave => "relay.leave",
        }
    }
}

/// An event to store.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub at: i64,
    pub session: String,
    pub name: EventName,
    /// `visitor` or `agent`, for relay events.
    pub role: Option<&'static str>,
    pub bytes: Option<u64>,
}

/// A stored event, as the API lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventRecord {
    pub at: i64,
    pub session: String,
    pub name: String,
    pub role: Option<String>,
    pub bytes: Option<u64>,
}

/// A byte count as stored (a signed 64-bit column in both backends).
pub fn bytes_column(bytes: Option<u64>) -> Option<i64> {
    bytes.map(|b| i64::try_from(b).unwrap_or(i64::MAX))
}

pub fn bytes_from_column(bytes: Option<i64>) -> Option<u64> {
    bytes.and_then(|b| u64::try_from(b).ok())
}
