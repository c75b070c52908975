//! One session's room as a sans-io state machine: events in (joins, leaves, parsed messages, a lagging
//! outbox, ticks, revocation), actions out (send this text to that connection, close it, end the
//! session). No sockets, no clock, no storage: `relay/mod.rs` owns the I/O and feeds time in.
//!
//! The room holds state only (who is here, consent, control, who is in sync), never content: mirror
//! messages pass through it to the agents' outboxes and are gone.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use tokio_tungstenite::tungstenite::Utf8Bytes;

use super::bridge::node_of;
use super::message::{
    self, close, Consent, FromAgent, FromVisitor, Presence, Role, CONSENT_GRACE, RESYNC_INTERVAL,
};

/// A connection's number, unique within the deployment: its node's number is in the high bits.
pub type ConnId = u64;

#[derive(Debug)]
pub enum Event<'a> {
    Join {
        conn: ConnId,
        role: Role,
        now: Instant,
    },
    Leave {
        conn: ConnId,
        now: Instant,
    },
    Visitor {
        conn: ConnId,
        msg: FromVisitor,
        text: &'a Utf8Bytes,
        now: Instant,
    },
    Agent {
        conn: ConnId,
        msg: FromAgent,
        text: &'a Utf8Bytes,
        now: Instant,
    },
    /// A connection's outbox overflowed and was emptied.
    Lagged {
        conn: ConnId,
        now: Instant,
    },
    /// Periodic: retries snapshot requests that went unanswered or were held back.
    Tick {
        now: Instant,
    },
    /// The session is gone (removed or expired).
    Revoked,
    /// Another node's whole list of members and its view of the room's state (scale-out).
    Announce {
        node: u64,
        members: &'a [(ConnId, Role)],
        consent: Consent,
        control: bool,
        /// The sender hosts the visitor, so its consent and control stand.
        authoritative: bool,
        now: Instant,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Send {
        to: ConnId,
        text: Utf8Bytes,
    },
    Close {
        to: ConnId,
        code: u16,
        reason: &'static str,
    },
    /// Remove the session, so its proxy hosts stop answering too.
    EndSession,
}

/// Whether an agent's view can take incremental changes, or must wait for the next full snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AgentSync {
    Live,
    AwaitingSnapshot,
}

#[derive(Debug)]
pub struct Room {
    visitor: Option<ConnId>,
    agents: BTreeMap<ConnId, AgentSync>,
    consent: Consent,
    control: bool,
    visitor_left: Option<Instant>,
    last_snapshot_request: Option<Instant>,
    max_agents: usize,
    /// Extra masking selectors the visitor's agent applies on top of its built-in ones.
    mask: Arc<[String]>,
    /// The visitor's message size limit, told to its page in `hello`.
    max_message: usize,
    ended: bool,
    /// Whether consent and control come from the visitor (or the node hosting it) rather than being
    /// the defaults of a room this node only just opened.
    state_known: bool,
}

impl Room {
    pub fn new(max_agents: usize, mask: Arc<[String]>, max_message: usize) -> Room {
        Room {
            visitor: None,
            agents: BTreeMap::new(),
            consent: Consent::Pending,
            control: false,
            visitor_left: None,
            last_snapshot_request: None,
            max_agents,
            mask,
            max_message,
            ended: false,
            state_known: false,
        }
    }

    /// Everyone in the room, on any node.
    pub fn members(&self) -> impl Iterator<Item = (ConnId, Role)> + '_ {
        let visitor = self.visitor.map(|v| (v, Role::Visitor));
        let agents = self.agents.keys().map(|a| (*a, Role::Agent));
        visitor.into_iter().chain(agents)
    }

    pub fn visitor(&self) -> Option<ConnId> {
        self.visitor
    }

    pub fn agents(&self) -> impl Iterator<Item = ConnId> + '_ {
        self.agents.keys().copied()
    }

    pub fn presence(&self) -> Presence {
        Presence {
            visitor: self.visitor.is_some(),
            agents: self.agents.len(),
            consent: self.consent,
            control: self.control,
        }
    }

    pub fn is_ended(&self) -> bool {
        self.ended
    }

    /// Nobody is here and the consent grace has run out: the room may be dropped.
    pub fn is_idle(&self, now: Instant) -> bool {
        self.visitor.is_none()
            && self.agents.is_empty()
            && self
                .visitor_left
                .is_none_or(|left| now.saturating_duration_since(left) > CONSENT_GRACE)
    }

    pub fn handle(&mut self, event: Event<'_>) -> Vec<Action> {
        let mut out = Vec::new();
        if self.ended {
            if let Event::Join { conn, .. } = event {
                out.push(close_action(conn, close::ENDED, "session ended"));
            }
            return out;
        }
        match event {
            Event::Join { conn, role, now } => self.join(conn, role, now, &mut out),
            Event::Leave { conn, now } => self.leave(conn, now, &mut out),
            Event::Visitor {
                conn, msg, text, ..
            } => self.on_visitor(conn, msg, text, &mut out),
            Event::Agent {
                conn, msg, text, ..
            } => self.on_agent(conn, msg, text, &mut out),
            Event::Lagged { conn, now } => self.lagged(conn, now, &mut out),
            Event::Tick { now } => self.tick(now, &mut out),
            Event::Revoked => self.end("revoked", close::REVOKED, &mut out),
            Event::Announce {
                node,
                members,
                consent,
                control,
                authoritative,
                now,
            } => {
                let state = (consent, control, authoritative);
                self.announce(node, members, state, now, &mut out)
            }
        }
        out
    }

    /// Takes another node's list as the truth about that node's members (a leave lost while the
    /// engine was away is healed here), adds members it did not know, and adopts the sender's consent
    /// and control when the sender hosts the visitor or this room knows nothing better.
    fn announce(
        &mut self,
        node: u64,
        members: &[(ConnId, Role)],
        (consent, control, authoritative): (Consent, bool, bool),
        now: Instant,
        out: &mut Vec<Action>,
    ) {
        let named = |conn: ConnId, role: Role| members.contains(&(conn, role));
        let mut changed = false;
        let visitor_gone = self
            .visitor
            .is_some_and(|v| node_of(v) == node && !named(v, Role::Visitor));
        if visitor_gone {
            self.visitor = None;
            self.visitor_left = Some(now);
            changed = true;
        }
        let before = self.agents.len();
        self.agents
            .retain(|a, _| node_of(*a) != node || named(*a, Role::Agent));
        changed |= self.agents.len() != before;
        for &(conn, role) in members {
            match role {
                Role::Visitor if self.visitor.is_none() => {
                    self.visitor = Some(conn);
                    self.visitor_left = None;
                    changed = true;
                }
                Role::Agent
                    if !self.agents.contains_key(&conn) && self.agents.len() < self.max_agents =>
                {
                    // Whether it saw everything is unknown: the next snapshot brings it up to date.
                    self.agents.insert(conn, AgentSync::AwaitingSnapshot);
                    changed = true;
                }
                _ => {}
            }
        }
        if authoritative || !self.state_known {
            changed |= (self.consent, self.control) != (consent, control);
            self.consent = consent;
            self.control = control && consent == Consent::Granted;
            self.state_known = true;
        }
        if changed {
            self.broadcast_presence(None, out);
        }
    }

    fn join(&mut self, conn: ConnId, role: Role, now: Instant, out: &mut Vec<Action>) {
        match role {
            Role::Visitor => {
                if let Some(old) = self.visitor.replace(conn) {
                    out.push(close_action(
                        old,
                        close::REPLACED,
                        "replaced by a newer page",
                    ));
                }
                let away_too_long = self
                    .visitor_left
                    .is_some_and(|left| now.saturating_duration_since(left) > CONSENT_GRACE);
                if away_too_long {
                    self.consent = Consent::Pending;
                    self.control = false;
                }
                // A new page sends its own snapshot once it knows consent stands; until then every
                // agent keeps the last view but takes no changes.
                self.agents
                    .values_mut()
                    .for_each(|s| *s = AgentSync::AwaitingSnapshot);
                self.last_snapshot_request = None;
            }
            Role::Agent => {
                if self.agents.len() >= self.max_agents {
                    out.push(close_action(conn, close::ROOM_FULL, "room is full"));
                    return;
                }
                self.agents.insert(conn, AgentSync::AwaitingSnapshot);
                self.request_snapshot(now, true, out);
            }
        }
        let hello = message::hello(role, conn, &self.presence(), &self.mask, self.max_message);
        out.push(Action::Send {
            to: conn,
            text: hello,
        });
        self.broadcast_presence(Some(conn), out);
    }

    fn leave(&mut self, conn: ConnId, now: Instant, out: &mut Vec<Action>) {
        if self.visitor == Some(conn) {
            self.visitor = None;
            self.visitor_left = Some(now);
        } else if self.agents.remove(&conn).is_none() {
            return; // a replaced visitor or a refused agent: not in the room any more
        }
        self.broadcast_presence(None, out);
    }

    fn on_visitor(
        &mut self,
        conn: ConnId,
        msg: FromVisitor,
        text: &Utf8Bytes,
        out: &mut Vec<Action>,
    ) {
        if self.visitor != Some(conn) {
            return; // in flight from a page that has been replaced
        }
        match msg {
            FromVisitor::Consent { granted } => {
                self.state_known = true;
                self.consent = if granted {
                    Consent::Granted
                } else {
                    Consent::Declined
                };
                self.control &= granted;
                self.broadcast_presence(None, out);
            }
            FromVisitor::Control { granted } => {
                self.state_known = true;
                self.control = granted && self.consent == Consent::Granted;
                self.broadcast_presence(None, out);
            }
            FromVisitor::End => self.end("visitor", close::ENDED, out),
            FromVisitor::Snapshot | FromVisitor::Delta if self.consent != Consent::Granted => {
                out.push(close_action(
                    conn,
                    close::PROTOCOL,
                    "content before consent",
                ));
            }
            FromVisitor::Snapshot => self.snapshot(text, out),
            FromVisitor::Delta => self.delta(text, out),
            FromVisitor::Ping => {}
        }
    }

    /// A snapshot resets every agent's view, so all of them are in sync after it.
    fn snapshot(&mut self, text: &Utf8Bytes, out: &mut Vec<Action>) {
        self.last_snapshot_request = None;
        for (conn, sync) in self.agents.iter_mut() {
            *sync = AgentSync::Live;
            out.push(Action::Send {
                to: *conn,
                text: text.clone(),
            });
        }
    }

    fn delta(&self, text: &Utf8Bytes, out: &mut Vec<Action>) {
        for (conn, sync) in &self.agents {
            if *sync == AgentSync::Live {
                out.push(Action::Send {
                    to: *conn,
                    text: text.clone(),
                });
            }
        }
    }

    fn on_agent(&mut self, conn: ConnId, msg: FromAgent, text: &Utf8Bytes, out: &mut Vec<Action>) {
        if !self.agents.contains_key(&conn) {
            return;
        }
        let live = self.consent == Consent::Granted;
        match (msg, self.visitor) {
            (FromAgent::End, _) => self.end("agent", close::ENDED, out),
            (FromAgent::Ping, _) => {}
            (FromAgent::Click, _) if !(live && self.control) => out.push(Action::Send {
                to: conn,
                text: message::refused("click", "control not granted"),
            }),
            (FromAgent::Tool | FromAgent::Click, Some(visitor)) if live => out.push(Action::Send {
                to: visitor,
                text: message::tool(conn, text),
            }),
            // Before consent (or with no visitor) the visitor's page shows nothing of the agent.
            (FromAgent::Tool | FromAgent::Click, _) => {}
        }
    }

    fn lagged(&mut self, conn: ConnId, now: Instant, out: &mut Vec<Action>) {
        if let Some(sync) = self.agents.get_mut(&conn) {
            // Its queued changes were dropped; it needs a whole new view, not the backlog.
            *sync = AgentSync::AwaitingSnapshot;
            self.request_snapshot(now, false, out);
        } else if self.visitor == Some(conn) {
            // Only agents' pointers and highlights were lost; restate where the room stands.
            out.push(Action::Send {
                to: conn,
                text: message::presence(&self.presence()),
            });
        }
    }

    fn tick(&mut self, now: Instant, out: &mut Vec<Action>) {
        let waiting = self
            .agents
            .values()
            .any(|s| *s == AgentSync::AwaitingSnapshot);
        if waiting {
            self.request_snapshot(now, false, out);
        }
    }

    /// Asks the visitor for a snapshot, at most once per `RESYNC_INTERVAL` unless `now_please`
    /// (an agent just joined). Nothing is asked before consent: the visitor sends none then.
    fn request_snapshot(&mut self, now: Instant, now_please: bool, out: &mut Vec<Action>) {
        let (Some(visitor), Consent::Granted) = (self.visitor, self.consent) else {
            return;
        };
        let recent = self
            .last_snapshot_request
            .is_some_and(|at| now.saturating_duration_since(at) < RESYNC_INTERVAL);
        if recent && !now_please {
            return;
        }
        self.last_snapshot_request = Some(now);
        out.push(Action::Send {
            to: visitor,
            text: message::need_snapshot(),
        });
    }

    fn end(&mut self, by: &str, code: u16, out: &mut Vec<Action>) {
        let ended = message::ended(by);
        for conn in self.visitor.iter().chain(self.agents.keys()) {
            out.push(Action::Send {
                to: *conn,
                text: ended.clone(),
            });
            out.push(close_action(*conn, code, "session ended"));
        }
        if code == close::ENDED {
            out.push(Action::EndSession);
        }
        self.visitor = None;
        self.agents.clear();
        self.ended = true;
    }

    fn broadcast_presence(&self, except: Option<ConnId>, out: &mut Vec<Action>) {
        let text = message::presence(&self.presence());
        for conn in self.visitor.iter().chain(self.agents.keys()) {
            if Some(*conn) != except {
                out.push(Action::Send {
                    to: *conn,
                    text: text.clone(),
                });
            }
        }
    }
}

fn close_action(to: ConnId, code: u16, reason: &'static str) -> Action {
    Action::Close { to, code, reason }
}

#[cfg(test)]
#[path = "room_tests.rs"]
mod tests;
