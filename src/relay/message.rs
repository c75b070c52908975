//! The relay's wire format: what each side may send, what the relay sends back, the close codes, and the
//! per-connection rate limit. Pure functions and data; no sockets (see `docs/RELAY.md`).
//!
//! Messages are JSON text frames with a `t` field. The relay reads only `t` (and `granted` on consent and
//! control messages); mirror content from the visitor is validated as JSON and forwarded byte for byte,
//! never kept.

use std::time::{Duration, Instant};

use serde::Deserialize;
use tokio_tungstenite::tungstenite::Utf8Bytes;

/// Close codes the relay uses (4000–4999 is the range RFC 6455 leaves to applications).
pub mod close {
    /// Normal end (the other side ended the session, or the server is shutting down).
    pub const NORMAL: u16 = 1000;
    /// A message above the role's size limit (RFC 6455's own code for it).
    pub const TOO_BIG: u16 = 1009;
    /// Not JSON, no `t`, or a message this role may not send (or mirror content before consent).
    pub const PROTOCOL: u16 = 4002;
    /// More messages than the role's rate allows.
    pub const RATE_LIMITED: u16 = 4008;
    /// Another visitor connection (a new page of the same session) took over.
    pub const REPLACED: u16 = 4009;
    /// The session was ended by the visitor or an agent.
    pub const ENDED: u16 = 4010;
    /// The session was revoked or expired.
    pub const REVOKED: u16 = 4011;
    /// The agent's connection could not keep up even with resynchronisation.
    pub const TOO_SLOW: u16 = 4012;
    /// The room already has its maximum number of agents.
    pub const ROOM_FULL: u16 = 4013;
}

pub use crate::session::Role;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MessageError {
    #[error("not a JSON object with a string field t")]
    Malformed,
    #[error("message type not allowed for this role")]
    NotAllowed,
}

impl MessageError {
    pub fn close_code(&self) -> u16 {
        close::PROTOCOL
    }
}

/// What the visitor's agent script sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FromVisitor {
    /// The consent prompt was answered.
    Consent { granted: bool },
    /// The visitor granted or revoked control (agent clicks).
    Control { granted: bool },
    /// The visitor ended the session.
    End,
    /// A full snapshot of the top document: every agent starts over from it.
    Snapshot,
    /// Anything else the mirror sends (mutations, values, scroll, pointer, frames, results of tools):
    /// forwarded to agents that are in sync.
    Delta,
    /// Keep-alive; not forwarded.
    Ping,
}

/// What an agent's view sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FromAgent {
    /// Pointer, highlight, scroll: forwarded to the visitor once consent is given.
    Tool,
    /// A click on the visitor's page: forwarded only while the visitor grants control.
    Click,
    /// The agent ended the session.
    End,
    Ping,
}

#[derive(Deserialize)]
struct Head<'a> {
    #[serde(borrow)]
    t: std::borrow::Cow<'a, str>,
    #[serde(default)]
    granted: Option<bool>,
}

/// Only a JSON object: serde would also take an array (`["snap"]`) as the struct's fields in order.
fn head(text: &str) -> Result<Head<'_>, MessageError> {
    if !text.trim_start().starts_with('{') {
        return Err(MessageError::Malformed);
    }
    serde_json::from_str::<Head>(text).map_err(|_| MessageError::Malformed)
}

/// A message type is a short lowercase word: it names a mirror event, never carries content.
fn is_type_name(t: &str) -> bool {
    (1..=16).contains(&t.len()) && t.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
}

pub fn parse_visitor(text: &str) -> Result<FromVisitor, MessageError> {
    let h = head(text)?;
    let granted = || h.granted.ok_or(MessageError::Malformed);
    Ok(match h.t.as_ref() {
        "consent" => FromVisitor::Consent {
            granted: granted()?,
        },
        "control" => FromVisitor::Control {
            granted: granted()?,
        },
        "end" => FromVisitor::End,
        "ping" => FromVisitor::Ping,
        "snap" => FromVisitor::Snapshot,
        // The relay's own message types travel only from the relay.
        "hello" | "presence" | "need_snap" | "tool" | "ended" | "refused" => {
            return Err(MessageError::NotAllowed)
        }
        t if is_type_name(t) => FromVisitor::Delta,
        _ => return Err(MessageError::Malformed),
    })
}

pub fn parse_agent(text: &str) -> Result<FromAgent, MessageError> {
    let h = head(text)?;
    Ok(match h.t.as_ref() {
        "ptr" | "hl" | "hl_clear" | "scroll" | "resync" => FromAgent::Tool,
        "click" => FromAgent::Click,
        "end" => FromAgent::End,
        "ping" => FromAgent::Ping,
        t if is_type_name(t) => return Err(MessageError::NotAllowed),
        _ => return Err(MessageError::Malformed),
    })
}

/// Consent as the room knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Consent {
    /// No answer yet: nothing but the prompt.
    Pending,
    Granted,
    Declined,
}

impl Consent {
    pub fn as_str(self) -> &'static str {
        match self {
            Consent::Pending => "pending",
            Consent::Granted => "granted",
            Consent::Declined => "declined",
        }
    }
}

/// What the room tells both sides whenever it changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Presence {
    pub visitor: bool,
    pub agents: usize,
    pub consent: Consent,
    pub control: bool,
}

/// Messages the relay itself composes. Small, content-free JSON.
/// `max` is the largest message the visitor may send, so its page never sends one that would cost it
/// the connection.
pub fn hello(role: Role, conn: u64, presence: &Presence, mask: &[String], max: usize) -> Utf8Bytes {
    let json = serde_json::json!({
        "t": "hello",
        "role": role.as_str(),
        "conn": conn,
        "presence": presence_json(presence),
        "mask": mask,
        "max": max,
    });
    json.to_string().into()
}

pub fn presence(p: &Presence) -> Utf8Bytes {
    let mut json = presence_json(p);
    json["t"] = "presence".into();
    json.to_string().into()
}

fn presence_json(p: &Presence) -> serde_json::Value {
    serde_json::json!({
        "visitor": p.visitor,
        "agents": p.agents,
        "consent": p.consent.as_str(),
        "control": p.control,
    })
}

/// Asks the visitor for a fresh snapshot (an agent joined or fell behind).
pub fn need_snapshot() -> Utf8Bytes {
    Utf8Bytes::from_static(r#"{"t":"need_snap"}"#)
}

/// An agent's tool message as the visitor receives it: the agent's own (already validated) JSON, wrapped
/// with who sent it. Spliced, not re-serialised.
pub fn tool(from: u64, raw: &str) -> Utf8Bytes {
    format!(r#"{{"t":"tool","from":{from},"m":{raw}}}"#).into()
}

pub fn refused(what: &str, reason: &str) -> Utf8Bytes {
    serde_json::json!({ "t": "refused", "what": what, "reason": reason })
        .to_string()
        .into()
}

pub fn ended(by: &str) -> Utf8Bytes {
    serde_json::json!({ "t": "ended", "by": by })
        .to_string()
        .into()
}

/// A token bucket: `rate` messages per second on average, bursts up to `burst`. Time is passed in, so
/// tests need no clock.
#[derive(Debug, Clone)]
pub struct RateLimit {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl RateLimit {
    pub fn new(rate: u32, burst: u32, now: Instant) -> RateLimit {
        RateLimit {
            rate: f64::from(rate),
            burst: f64::from(burst.max(1)),
            tokens: f64::from(burst.max(1)),
            last: now,
        }
    }

    /// Takes one token; `false` when the bucket is empty (the connection is over its rate).
    pub fn allow(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last);
        self.last = now;
        self.tokens = (self.tokens + elapsed.as_secs_f64() * self.rate).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// How long a visitor may be gone (between two pages, or a reload) before their consent is asked again.
pub const CONSENT_GRACE: Duration = Duration::from_secs(120);
/// Fewest seconds between two snapshot requests for resynchronisation (snapshots cost the visitor's CPU).
pub const RESYNC_INTERVAL: Duration = Duration::from_millis(500);

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by the `relay_messages` fuzz target: serde takes an array as a struct's fields in order.
    #[test]
    fn only_json_objects_are_messages() {
        assert_eq!(parse_visitor(r#"["z"]"#), Err(MessageError::Malformed));
        assert_eq!(parse_agent(r#" ["ptr"]"#), Err(MessageError::Malformed));
        assert_eq!(parse_visitor(r#" {"t":"ping"}"#), Ok(FromVisitor::Ping));
    }

    #[test]
    fn visitor_messages() {
        assert_eq!(
            parse_visitor(r#"{"t":"consent","granted":true}"#),
            Ok(FromVisitor::Consent { granted: true })
        );
        assert_eq!(
            parse_visitor(r#"{"t":"consent"}"#),
            Err(MessageError::Malformed)
        );
        assert_eq!(
            parse_visitor(r#"{"t":"snap","doc":{}}"#),
            Ok(FromVisitor::Snapshot)
        );
        assert_eq!(
            parse_visitor(r#"{"t":"mut","adds":[]}"#),
            Ok(FromVisitor::Delta)
        );
        assert_eq!(
            parse_visitor(r#"{"t":"presence"}"#),
            Err(MessageError::NotAllowed)
        );
        for bad in [
            "",
            "[]",
            "{}",
            r#"{"t":1}"#,
            r#"{"t":"Bad Type"}"#,
            "{\"t\":\"mut\"",
        ] {
            assert_eq!(parse_visitor(bad), Err(MessageError::Malformed), "{bad}");
        }
    }

    #[test]
    fn agent_messages() {
        assert_eq!(
            parse_agent(r#"{"t":"ptr","x":1,"y":2}"#),
            Ok(FromAgent::Tool)
        );
        assert_eq!(parse_agent(r#"{"t":"click","id":3}"#), Ok(FromAgent::Click));
        // An agent can never speak as the visitor.
        for t in ["snap", "mut", "consent", "control"] {
            let msg = format!(r#"{{"t":"{t}","granted":true}}"#);
            assert_eq!(parse_agent(&msg), Err(MessageError::NotAllowed), "{t}");
        }
    }

    #[test]
    fn tool_wrapping_is_valid_json() {
        let wrapped = tool(7, r#"{"t":"hl","id":4}"#);
        let v: serde_json::Value = serde_json::from_str(&wrapped).unwrap();
        assert_eq!(v["from"], 7);
        assert_eq!(v["m"]["id"], 4);
    }

    #[test]
    fn rate_limit_refills_over_time() {
        let t0 = Instant::now();
        let mut rl = RateLimit::new(10, 3, t0);
        assert!(rl.allow(t0) && rl.allow(t0) && rl.allow(t0));
        assert!(!rl.allow(t0));
        assert!(rl.allow(t0 + Duration::from_millis(110)));
        assert!(!rl.allow(t0 + Duration::from_millis(110)));
        // Refill is capped at the burst.
        let later = t0 + Duration::from_secs(60);
        assert!(rl.allow(later) && rl.allow(later) && rl.allow(later));
        assert!(!rl.allow(later));
    }
}
