//! The relay across nodes (scale-out, `docs/SCALING.md`): following a session's subject, taking other
//! nodes' notes into this node's replica of the room, announcing this node's members, and healing after
//! the engine comes back or a node goes quiet. The wire form is `bridge`; the transport `cluster::rooms`.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use super::bridge::{self, node_of, Note, Received, Side};
use super::message::{self, Role};
use super::room::{ConnId, Event};
use super::{lock, Entry, Relay, ANNOUNCE_EVERY, NODE_SILENCE};
use crate::url_codec::SessionId;

impl Relay {
    /// Scale-out: starts hearing the session's other nodes, before this node says anything about it.
    pub(super) async fn follow(&self, session: &SessionId) {
        let Some(link) = &self.inner.link else {
            return;
        };
        let weak = Arc::downgrade(&self.inner);
        let id = session.clone();
        let deliver = move |note: bytes::Bytes| {
            if let Some(inner) = weak.upgrade() {
                Relay { inner }.remote(&id, &note);
            }
        };
        link.watch(session, deliver).await;
    }

    /// A note from another node about one of this node's rooms.
    fn remote(&self, session: &SessionId, payload: &bytes::Bytes) {
        let received = match bridge::decode(payload) {
            Ok(received) => received,
            Err(e) => return tracing::debug!("relay: a bad note from another node: {e}"),
        };
        let Some(entry) = lock(&self.inner.rooms).get(session).cloned() else {
            return;
        };
        let Received { node, note, text } = received;
        if node == self.inner.node || !note_is_from(&note, node) {
            return;
        }
        let now = Instant::now();
        lock(&entry).heard.insert(node, now);
        let members: Vec<(ConnId, Role)>;
        let event = match &note {
            Note::Join { conn, role } => Event::Join {
                conn: *conn,
                role: (*role).into(),
                now,
            },
            Note::Leave { conn } => Event::Leave { conn: *conn, now },
            Note::Lagged { conn } => Event::Lagged { conn: *conn, now },
            Note::Visitor { conn } | Note::Agent { conn } => {
                let Some(text) = &text else { return };
                let visitor = matches!(note, Note::Visitor { .. });
                let Some(event) = relayed_event(*conn, visitor, text, now) else {
                    return;
                };
                self.apply(&entry, session, event, None, false);
                return;
            }
            Note::Announce {
                members: named,
                consent,
                control,
                authoritative,
                ..
            } => {
                members = named.iter().map(|(c, s)| (*c, (*s).into())).collect();
                Event::Announce {
                    node,
                    members: &members,
                    consent: (*consent).into(),
                    control: *control,
                    authoritative: *authoritative,
                    now,
                }
            }
        };
        self.apply(&entry, session, event, None, false);
        let answer = matches!(note, Note::Join { .. } | Note::Announce { reply: true, .. });
        if answer {
            self.announce(&entry, session, false);
        }
    }

    /// Tells the session's other nodes who this node has in the room and how it stands.
    fn announce(&self, entry: &Arc<Mutex<Entry>>, session: &SessionId, reply: bool) {
        let Some(link) = &self.inner.link else {
            return;
        };
        let mut guard = lock(entry);
        guard.announced = Some(Instant::now());
        let own = |conn: ConnId| node_of(conn) == self.inner.node;
        let members = guard
            .room
            .members()
            .filter(|(conn, _)| own(*conn))
            .map(|(conn, role)| (conn, Side::from(role)))
            .collect();
        let presence = guard.room.presence();
        let note = Note::Announce {
            members,
            consent: presence.consent.into(),
            control: presence.control,
            authoritative: guard.room.visitor().is_some_and(own),
            reply,
        };
        link.publish(session, bridge::encode(self.inner.node, &note, None));
    }

    /// After the engine came back: every room is announced afresh (asking the others for theirs) and
    /// this node's agents wait for a new snapshot, since changes may have been lost meanwhile.
    pub fn resync(&self) {
        if self.inner.link.is_none() {
            return;
        }
        let rooms = self.all_rooms();
        let now = Instant::now();
        for (session, entry) in rooms {
            self.announce(&entry, &session, true);
            let own_agents: Vec<ConnId> = {
                let guard = lock(&entry);
                let agents = guard.room.agents();
                agents.filter(|a| guard.outboxes.contains_key(a)).collect()
            };
            for conn in own_agents {
                self.apply(&entry, &session, Event::Lagged { conn, now }, None, true);
            }
        }
    }

    /// Scale-out upkeep of one room: restate this node's members now and then, and drop the members of
    /// nodes that have gone quiet (a node that died cannot say its clients left).
    pub(super) fn keep_nodes_current(
        &self,
        entry: &Arc<Mutex<Entry>>,
        session: &SessionId,
        now: Instant,
    ) {
        let (due, silent) = {
            let mut guard = lock(entry);
            let due = guard
                .announced
                .is_none_or(|at| now.saturating_duration_since(at) >= ANNOUNCE_EVERY);
            let silent: Vec<u64> = guard
                .heard
                .iter()
                .filter(|(_, at)| now.saturating_duration_since(**at) > NODE_SILENCE)
                .map(|(node, _)| *node)
                .collect();
            silent.iter().for_each(|node| {
                guard.heard.remove(node);
            });
            (due, silent)
        };
        if due {
            self.announce(entry, session, false);
        }
        for node in silent {
            let presence = lock(entry).room.presence();
            let gone = Event::Announce {
                node,
                members: &[],
                consent: presence.consent,
                control: presence.control,
                authoritative: false,
                now,
            };
            self.apply(entry, session, gone, None, false);
        }
    }
}

/// What the other nodes hear of a local event (ticks and revocations are each node's own).
pub(super) fn note_of(event: &Event<'_>) -> Option<Note> {
    Some(match *event {
        Event::Join { conn, role, .. } => Note::Join {
            conn,
            role: role.into(),
        },
        Event::Leave { conn, .. } => Note::Leave { conn },
        Event::Visitor { conn, .. } => Note::Visitor { conn },
        Event::Agent { conn, .. } => Note::Agent { conn },
        Event::Lagged { conn, .. } => Note::Lagged { conn },
        Event::Tick { .. } | Event::Revoked | Event::Announce { .. } => return None,
    })
}

pub(super) fn relayed_text<'e>(event: &Event<'e>) -> Option<&'e str> {
    match event {
        Event::Visitor { text, .. } | Event::Agent { text, .. } => Some(text.as_str()),
        _ => None,
    }
}

/// A relayed message from another node, parsed again: that node checked it, this one trusts no
/// bytes it did not parse itself.
fn relayed_event(
    conn: ConnId,
    visitor: bool,
    text: &tokio_tungstenite::tungstenite::Utf8Bytes,
    now: Instant,
) -> Option<Event<'_>> {
    if visitor {
        let msg = message::parse_visitor(text).ok()?;
        Some(Event::Visitor {
            conn,
            msg,
            text,
            now,
        })
    } else {
        let msg = message::parse_agent(text).ok()?;
        Some(Event::Agent {
            conn,
            msg,
            text,
            now,
        })
    }
}

/// A node speaks only for its own connections.
fn note_is_from(note: &Note, node: u64) -> bool {
    match note {
        Note::Join { conn, .. }
        | Note::Leave { conn }
        | Note::Visitor { conn }
        | Note::Agent { conn }
        | Note::Lagged { conn } => node_of(*conn) == node,
        Note::Announce { members, .. } => members.iter().all(|(c, _)| node_of(*c) == node),
    }
}
