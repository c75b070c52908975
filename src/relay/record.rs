//! What the relay tells the store: a visitor's connection as visitor metadata (online, last seen, IP,
//! device), and joins, leaves and message sizes to the debug event log. Never a message's content.

use http::{header, Request};

use crate::session::Role;
use crate::store::{EventName, Sighting, Store};
use crate::url_codec::SessionId;

/// Who opened a relay connection: the socket's peer (no forwarding header is trusted) and the
/// User-Agent header, which the store reduces to device and browser families.
pub struct Client {
    ip: Option<std::net::IpAddr>,
    user_agent: Option<String>,
}

impl Client {
    pub fn of<B>(req: &Request<B>) -> Client {
        Client {
            ip: req
                .extensions()
                .get::<crate::server::ClientAddr>()
                .map(|a| a.0),
            user_agent: req
                .headers()
                .get(header::USER_AGENT)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
        }
    }
}

/// A join or leave (`name`); `online` is whether the room has a visitor after it.
pub fn presence(
    store: &Store,
    session: &SessionId,
    role: Role,
    client: &Client,
    online: bool,
    name: EventName,
) {
    store.event(session, name, Some(role.as_str()), None);
    if role != Role::Visitor {
        return;
    }
    store.seen(Sighting {
        visitor: session,
        ip: client.ip,
        page: None,
        user_agent: client.user_agent.as_deref(),
        online: Some(online),
    });
}

/// One message relayed (or refused by the room): its size only.
pub fn message(store: &Store, session: &SessionId, role: Role, len: usize) {
    let bytes = u64::try_from(len).unwrap_or(u64::MAX);
    store.event(
        session,
        EventName::RelayMessage,
        Some(role.as_str()),
        Some(bytes),
    );
}
