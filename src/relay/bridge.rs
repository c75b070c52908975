//! What one node tells the others about a session's room when scale-out is on (`docs/SCALING.md`).
//! Every node with clients in a session runs its own replica of the room; each replica hears the
//! events of the others' connections (joins, leaves, messages, lag) and delivers only to its own.
//! A node's notes for one session travel in the order its room took them (one publisher per node),
//! which is the only order the room needs: a visitor's messages come from one node.
//!
//! Wire form: one JSON line (the envelope), then, for relayed messages, the message text as it came.
//! The text is not re-encoded, so a page snapshot costs one copy, not a JSON escape.

use bytes::{BufMut, Bytes, BytesMut};
use serde::{Deserialize, Serialize};
use tokio_tungstenite::tungstenite::Utf8Bytes;

use super::message::{Consent, Role};
use super::room::ConnId;

/// Connection ids carry their node in the bits above this, so every node can tell whose a member is.
/// Node numbers stay under 2^20, so ids stay under 2^52 and survive a JavaScript number.
pub const NODE_SHIFT: u32 = 32;
pub const MAX_NODE: u64 = 1 << 20;

pub fn node_of(conn: ConnId) -> u64 {
    conn >> NODE_SHIFT
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Side {
    Visitor,
    Agent,
}

impl From<Role> for Side {
    fn from(role: Role) -> Side {
        match role {
            Role::Visitor => Side::Visitor,
            Role::Agent => Side::Agent,
        }
    }
}

impl From<Side> for Role {
    fn from(side: Side) -> Role {
        match side {
            Side::Visitor => Role::Visitor,
            Side::Agent => Role::Agent,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConsentState {
    Pending,
    Granted,
    Declined,
}

impl From<Consent> for ConsentState {
    fn from(c: Consent) -> ConsentState {
        match c {
            Consent::Pending => ConsentState::Pending,
            Consent::Granted => ConsentState::Granted,
            Consent::Declined => ConsentState::Declined,
        }
    }
}

impl From<ConsentState> for Consent {
    fn from(c: ConsentState) -> Consent {
        match c {
            ConsentState::Pending => Consent::Pending,
            ConsentState::Granted => Consent::Granted,
            ConsentState::Declined => Consent::Declined,
        }
    }
}

/// One note about a room.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "k", rename_all = "snake_case")]
pub enum Note {
    Join {
        conn: ConnId,
        role: Side,
    },
    Leave {
        conn: ConnId,
    },
    /// A visitor's message; its text follows the envelope.
    Visitor {
        conn: ConnId,
    },
    /// An agent's message; its text follows the envelope.
    Agent {
        conn: ConnId,
    },
    Lagged {
        conn: ConnId,
    },
    /// Everyone the sending node has in the room (its whole list: members it no longer names have
    /// left), and the room's state as it sees it. Sent in answer to a join from elsewhere, and by a
    /// node that reconnected to the engine (`reply`: the others answer with theirs).
    Announce {
        members: Vec<(ConnId, Side)>,
        consent: ConsentState,
        control: bool,
        /// The sender hosts the visitor, so its consent and control are the room's.
        authoritative: bool,
        reply: bool,
    },
}

#[derive(Serialize, Deserialize)]
struct Envelope {
    node: u64,
    #[serde(flatten)]
    note: Note,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BridgeError {
    #[error("a room note without its envelope line")]
    NoEnvelope,
    #[error("a room note with a bad envelope: {0}")]
    Envelope(String),
    #[error("a relayed message that is not UTF-8")]
    NotText,
    #[error("a relayed message without its text")]
    MissingText,
}

/// A note as it arrived: who sent it, what it says, and the text it carries, if any.
#[derive(Debug)]
pub struct Received {
    pub node: u64,
    pub note: Note,
    pub text: Option<Utf8Bytes>,
}

pub fn encode(node: u64, note: &Note, text: Option<&str>) -> Bytes {
    let envelope = Envelope {
        node,
        note: note.clone(),
    };
    // Serialising plain structs of numbers and enums cannot fail; an empty line would be refused on
    // the other side rather than misread.
    let head = serde_json::to_vec(&envelope).unwrap_or_default();
    let text = text.unwrap_or_default();
    let mut out = BytesMut::with_capacity(head.len() + 1 + text.len());
    out.put_slice(&head);
    out.put_u8(b'\n');
    out.put_slice(text.as_bytes());
    out.freeze()
}

pub fn decode(payload: &Bytes) -> Result<Received, BridgeError> {
    let split = memchr::memchr(b'\n', payload).ok_or(BridgeError::NoEnvelope)?;
    let envelope: Envelope = serde_json::from_slice(&payload[..split])
        .map_err(|e| BridgeError::Envelope(e.to_string()))?;
    let carries_text = matches!(envelope.note, Note::Visitor { .. } | Note::Agent { .. });
    let text = if carries_text {
        let body = payload.slice(split + 1..);
        if body.is_empty() {
            return Err(BridgeError::MissingText);
        }
        Some(Utf8Bytes::try_from(body).map_err(|_| BridgeError::NotText)?)
    } else {
        None
    };
    Ok(Received {
        node: envelope.node,
        note: envelope.note,
        text,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notes_round_trip_with_their_text_untouched() {
        let text = "{\"t\":\"snapshot\",\"html\":\"<p>a\\nb \\\"q\\\"</p>\"}\n";
        let note = Note::Visitor { conn: 7 << 32 | 3 };
        let got = decode(&encode(7, &note, Some(text))).unwrap();
        assert_eq!((got.node, got.note), (7, note));
        assert_eq!(got.text.unwrap().as_str(), text);

        let announce = Note::Announce {
            members: vec![(1 << 32 | 1, Side::Visitor), (1 << 32 | 2, Side::Agent)],
            consent: ConsentState::Granted,
            control: true,
            authoritative: true,
            reply: false,
        };
        let got = decode(&encode(1, &announce, None)).unwrap();
        assert_eq!(got.note, announce);
        assert!(got.text.is_none());
    }

    #[test]
    fn garbage_is_refused_not_misread() {
        for bad in [
            &b""[..],
            b"no newline",
            b"{}\n",
            b"{\"node\":1,\"k\":\"nope\"}\n",
            b"{\"node\":1,\"k\":\"visitor\",\"conn\":1}\n",
            b"{\"node\":1,\"k\":\"agent\",\"conn\":1}\n\xff\xfe",
        ] {
            assert!(decode(&Bytes::copy_from_slice(bad)).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn ids_keep_their_node() {
        let conn = (MAX_NODE - 1) << NODE_SHIFT | 12345;
        assert_eq!(node_of(conn), MAX_NODE - 1);
        assert!(conn < 1 << 53, "an id must survive a JavaScript number");
    }
}
