//! The room as a playbook: events in, actions out, no sockets.

use std::time::Duration;

use super::*;

const V: ConnId = 1;
const A: ConnId = 2;
const B: ConnId = 3;

struct Play {
    room: Room,
    now: Instant,
}

impl Play {
    fn new() -> Play {
        Play {
            room: Room::new(2, Arc::from(vec![".secret".to_owned()]), 1 << 20),
            now: Instant::now(),
        }
    }

    fn at(&mut self, later: Duration) -> &mut Play {
        self.now += later;
        self
    }

    fn join(&mut self, conn: ConnId, role: Role) -> Vec<Action> {
        self.room.handle(Event::Join {
            conn,
            role,
            now: self.now,
        })
    }

    fn leave(&mut self, conn: ConnId) -> Vec<Action> {
        self.room.handle(Event::Leave {
            conn,
            now: self.now,
        })
    }

    fn visitor(&mut self, conn: ConnId, raw: &str) -> Vec<Action> {
        let text = Utf8Bytes::from(raw);
        let msg = message::parse_visitor(raw).unwrap();
        self.room.handle(Event::Visitor {
            conn,
            msg,
            text: &text,
            now: self.now,
        })
    }

    fn agent(&mut self, conn: ConnId, raw: &str) -> Vec<Action> {
        let text = Utf8Bytes::from(raw);
        let msg = message::parse_agent(raw).unwrap();
        self.room.handle(Event::Agent {
            conn,
            msg,
            text: &text,
            now: self.now,
        })
    }

    fn lagged(&mut self, conn: ConnId) -> Vec<Action> {
        self.room.handle(Event::Lagged {
            conn,
            now: self.now,
        })
    }

    fn tick(&mut self) -> Vec<Action> {
        self.room.handle(Event::Tick { now: self.now })
    }

    /// Visitor and one agent joined, consent given, first snapshot delivered.
    fn live() -> Play {
        let mut p = Play::new();
        p.join(V, Role::Visitor);
        p.join(A, Role::Agent);
        p.visitor(V, r#"{"t":"consent","granted":true}"#);
        p.visitor(V, r#"{"t":"snap","doc":1}"#);
        p
    }
}

/// Every message sent to `to`, parsed.
fn sent_to(actions: &[Action], to: ConnId) -> Vec<serde_json::Value> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Send { to: t, text } if *t == to => Some(serde_json::from_str(text).unwrap()),
            _ => None,
        })
        .collect()
}

fn types(actions: &[Action], to: ConnId) -> Vec<String> {
    sent_to(actions, to)
        .iter()
        .map(|m| m["t"].as_str().unwrap().to_owned())
        .collect()
}

fn closes(actions: &[Action]) -> Vec<(ConnId, u16)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Close { to, code, .. } => Some((*to, *code)),
            _ => None,
        })
        .collect()
}

#[test]
fn join_says_hello_and_pushes_presence_to_the_others() {
    let mut p = Play::new();
    let out = p.join(V, Role::Visitor);
    let hello = &sent_to(&out, V)[0];
    assert_eq!(hello["t"], "hello");
    assert_eq!(hello["role"], "visitor");
    assert_eq!(hello["mask"][0], ".secret");
    assert_eq!(hello["max"], 1 << 20);
    assert_eq!(hello["presence"]["consent"], "pending");

    let out = p.join(A, Role::Agent);
    assert_eq!(types(&out, A), ["hello"]);
    let presence = &sent_to(&out, V)[0];
    assert_eq!(presence["t"], "presence");
    assert_eq!(presence["agents"], 1);
    assert_eq!(presence["visitor"], true);
    // No snapshot is asked for before consent.
    assert!(!types(&out, V).contains(&"need_snap".to_owned()));
}

#[test]
fn nothing_of_the_page_flows_before_consent() {
    let mut p = Play::new();
    p.join(V, Role::Visitor);
    p.join(A, Role::Agent);
    let out = p.visitor(V, r#"{"t":"mut","adds":[]}"#);
    assert_eq!(closes(&out), [(V, close::PROTOCOL)]);
    assert!(sent_to(&out, A).is_empty());
    // Nor does the agent's pointer reach the visitor's page.
    let out = p.agent(A, r#"{"t":"ptr","x":1,"y":1}"#);
    assert!(out.is_empty());
}

#[test]
fn consent_then_snapshot_then_deltas() {
    let mut p = Play::new();
    p.join(V, Role::Visitor);
    p.join(A, Role::Agent);
    let out = p.visitor(V, r#"{"t":"consent","granted":true}"#);
    assert_eq!(sent_to(&out, A)[0]["consent"], "granted");
    // A delta before any snapshot is of no use to the agent.
    let out = p.visitor(V, r#"{"t":"mut","n":0}"#);
    assert!(sent_to(&out, A).is_empty());
    let out = p.visitor(V, r#"{"t":"snap","doc":1}"#);
    assert_eq!(types(&out, A), ["snap"]);
    let out = p.visitor(V, r#"{"t":"mut","n":1}"#);
    assert_eq!(sent_to(&out, A)[0]["n"], 1);
}

#[test]
fn a_late_agent_gets_a_snapshot_requested() {
    let mut p = Play::live();
    let out = p.join(B, Role::Agent);
    assert_eq!(types(&out, V), ["need_snap", "presence"]);
    // B sees no deltas until the snapshot; A keeps getting them.
    let out = p.visitor(V, r#"{"t":"mut","n":2}"#);
    assert_eq!(types(&out, A), ["mut"]);
    assert!(sent_to(&out, B).is_empty());
    let out = p.visitor(V, r#"{"t":"snap","doc":2}"#);
    assert_eq!(types(&out, B), ["snap"]);
}

#[test]
fn a_lagging_agent_is_resynchronised_not_buffered() {
    let mut p = Play::live();
    p.join(B, Role::Agent);
    p.visitor(V, r#"{"t":"snap","doc":2}"#);
    p.at(Duration::from_secs(1));
    let out = p.lagged(A);
    assert_eq!(types(&out, V), ["need_snap"]);
    // While it waits, A gets nothing; B is unaffected.
    let out = p.visitor(V, r#"{"t":"mut","n":3}"#);
    assert!(sent_to(&out, A).is_empty());
    assert_eq!(types(&out, B), ["mut"]);
    // A second lag right away asks no second snapshot; a tick later does, if still unanswered.
    assert!(p.lagged(A).is_empty());
    p.at(RESYNC_INTERVAL);
    assert_eq!(types(&p.tick(), V), ["need_snap"]);
    let out = p.visitor(V, r#"{"t":"snap","doc":3}"#);
    assert_eq!(types(&out, A), ["snap"]);
    let out = p.visitor(V, r#"{"t":"mut","n":4}"#);
    assert_eq!(types(&out, A), ["mut"]);
    assert!(p.tick().is_empty(), "nobody waits any more");
}

#[test]
fn clicks_need_control_and_tools_are_tagged_with_the_agent() {
    let mut p = Play::live();
    let out = p.agent(A, r#"{"t":"click","f":"","id":5}"#);
    assert_eq!(sent_to(&out, A)[0]["t"], "refused");
    assert!(sent_to(&out, V).is_empty());
    p.visitor(V, r#"{"t":"control","granted":true}"#);
    let out = p.agent(A, r#"{"t":"click","f":"","id":5}"#);
    let tool = &sent_to(&out, V)[0];
    assert_eq!(
        (tool["t"].as_str(), tool["from"].as_u64()),
        (Some("tool"), Some(A))
    );
    assert_eq!(tool["m"]["id"], 5);
    // Revoked from the prompt: refused again.
    p.visitor(V, r#"{"t":"control","granted":false}"#);
    let out = p.agent(A, r#"{"t":"click","f":"","id":5}"#);
    assert_eq!(types(&out, A), ["refused"]);
    let out = p.agent(A, r#"{"t":"hl","f":"","id":5}"#);
    assert_eq!(types(&out, V), ["tool"]);
}

#[test]
fn declining_consent_also_drops_control() {
    let mut p = Play::live();
    p.visitor(V, r#"{"t":"control","granted":true}"#);
    let out = p.visitor(V, r#"{"t":"consent","granted":false}"#);
    let presence = &sent_to(&out, A)[0];
    assert_eq!(presence["consent"], "declined");
    assert_eq!(presence["control"], false);
    let out = p.visitor(V, r#"{"t":"mut"}"#);
    assert_eq!(closes(&out), [(V, close::PROTOCOL)]);
}

#[test]
fn navigation_keeps_consent_and_replaces_the_page() {
    let mut p = Play::live();
    let out = p.leave(V);
    assert_eq!(sent_to(&out, A)[0]["visitor"], false);
    p.at(Duration::from_secs(2));
    let out = p.join(4, Role::Visitor);
    assert_eq!(sent_to(&out, 4)[0]["presence"]["consent"], "granted");
    // The agent waits for the new page's snapshot, which the page sends by itself.
    let out = p.visitor(4, r#"{"t":"mut"}"#);
    assert!(sent_to(&out, A).is_empty());
    let out = p.visitor(4, r#"{"t":"snap"}"#);
    assert_eq!(types(&out, A), ["snap"]);
    // A second page of the same visitor replaces the first.
    let out = p.join(5, Role::Visitor);
    assert_eq!(closes(&out), [(4, close::REPLACED)]);
    assert!(
        p.visitor(4, r#"{"t":"snap"}"#).is_empty(),
        "the old page is not heard"
    );
}

#[test]
fn consent_is_asked_again_after_a_long_absence() {
    let mut p = Play::live();
    p.leave(V);
    p.at(CONSENT_GRACE + Duration::from_secs(1));
    let out = p.join(4, Role::Visitor);
    assert_eq!(sent_to(&out, 4)[0]["presence"]["consent"], "pending");
}

#[test]
fn room_size_is_capped() {
    let mut p = Play::live();
    p.join(B, Role::Agent);
    let out = p.join(9, Role::Agent);
    assert_eq!(closes(&out), [(9, close::ROOM_FULL)]);
    assert_eq!(p.room.presence().agents, 2);
    // Its leave afterwards changes nothing.
    assert!(p.leave(9).is_empty());
}

#[test]
fn either_side_ends_the_session() {
    let mut p = Play::live();
    let out = p.agent(A, r#"{"t":"end"}"#);
    assert_eq!(sent_to(&out, V)[0]["by"], "agent");
    assert_eq!(closes(&out), [(V, close::ENDED), (A, close::ENDED)]);
    assert!(out.contains(&Action::EndSession));
    assert!(p.room.is_ended());
    let out = p.join(7, Role::Visitor);
    assert_eq!(closes(&out), [(7, close::ENDED)]);

    let mut p = Play::live();
    let out = p.visitor(V, r#"{"t":"end"}"#);
    assert_eq!(sent_to(&out, A)[0]["by"], "visitor");
    assert!(out.contains(&Action::EndSession));
}

#[test]
fn revocation_closes_everyone() {
    let mut p = Play::live();
    let out = p.room.handle(Event::Revoked);
    assert_eq!(closes(&out), [(V, close::REVOKED), (A, close::REVOKED)]);
    assert!(
        !out.contains(&Action::EndSession),
        "the session is already gone"
    );
}

#[test]
fn idle_rooms_can_go_once_the_grace_is_over() {
    let mut p = Play::live();
    assert!(!p.room.is_idle(p.now));
    p.leave(A);
    p.leave(V);
    assert!(!p.room.is_idle(p.now));
    p.at(CONSENT_GRACE + Duration::from_secs(1));
    assert!(p.room.is_idle(p.now));
}

/// Property, over many random sequences of joins, leaves, messages, lags and ticks: page content reaches
/// an agent only while consent is granted, only agents receive it, and the room never panics.
#[test]
fn page_content_never_reaches_an_agent_without_consent() {
    use rand::{Rng, SeedableRng};
    const MESSAGES: &[&str] = &[
        r#"{"t":"consent","granted":true}"#,
        r#"{"t":"consent","granted":false}"#,
        r#"{"t":"control","granted":true}"#,
        r#"{"t":"snap","doc":"PAGE"}"#,
        r#"{"t":"mut","x":"PAGE"}"#,
        r#"{"t":"click","id":1}"#,
        r#"{"t":"ptr","x":1}"#,
        r#"{"t":"end"}"#,
    ];
    let mut rng = rand::rngs::StdRng::seed_from_u64(5);
    for _ in 0..2000 {
        let mut room = Room::new(3, Arc::from(Vec::<String>::new()), 1 << 20);
        let mut now = Instant::now();
        let mut agents = std::collections::BTreeSet::new();
        for _ in 0..rng.gen_range(1..40) {
            let conn: ConnId = rng.gen_range(1..5);
            now += Duration::from_millis(rng.gen_range(0..2000));
            let raw = MESSAGES[rng.gen_range(0..MESSAGES.len())];
            let text = Utf8Bytes::from(raw);
            let consented = room.presence().consent == Consent::Granted;
            let event = match rng.gen_range(0..8) {
                0 => Event::Join {
                    conn,
                    role: Role::Visitor,
                    now,
                },
                1 => {
                    agents.insert(conn);
                    Event::Join {
                        conn,
                        role: Role::Agent,
                        now,
                    }
                }
                2 => Event::Leave { conn, now },
                3 | 4 => match message::parse_visitor(raw) {
                    Ok(msg) => Event::Visitor {
                        conn,
                        msg,
                        text: &text,
                        now,
                    },
                    Err(_) => continue,
                },
                5 => match message::parse_agent(raw) {
                    Ok(msg) => Event::Agent {
                        conn,
                        msg,
                        text: &text,
                        now,
                    },
                    Err(_) => continue,
                },
                6 => Event::Lagged { conn, now },
                _ => Event::Tick { now },
            };
            let content = matches!(
                &event,
                Event::Visitor {
                    msg: FromVisitor::Snapshot | FromVisitor::Delta,
                    ..
                }
            );
            for action in room.handle(event) {
                if let Action::Send { to, text } = action {
                    if text.contains("PAGE") {
                        assert!(
                            content && consented,
                            "page content forwarded without consent"
                        );
                        assert!(agents.contains(&to), "page content sent to a non-agent");
                    }
                }
            }
        }
    }
}

/// Scale-out: conns of another node (node 7) as the room on this node sees them.
const FAR_V: ConnId = 7 << 32 | 1;
const FAR_A: ConnId = 7 << 32 | 2;

impl Play {
    fn announce(
        &mut self,
        members: &[(ConnId, Role)],
        consent: Consent,
        authoritative: bool,
    ) -> Vec<Action> {
        self.room.handle(Event::Announce {
            node: 7,
            members,
            consent,
            control: false,
            authoritative,
            now: self.now,
        })
    }
}

#[test]
fn an_announce_from_the_visitors_node_brings_its_members_and_consent() {
    let mut p = Play::new();
    p.join(A, Role::Agent);
    let out = p.announce(&[(FAR_V, Role::Visitor)], Consent::Granted, true);
    let presence = message::presence(&p.room.presence());
    assert!(out.contains(&Action::Send {
        to: A,
        text: presence
    }));
    assert_eq!(p.room.visitor(), Some(FAR_V));
    assert_eq!(p.room.presence().consent, Consent::Granted);
    // The far visitor's snapshot now reaches the local agent.
    let out = p.visitor(FAR_V, r#"{"t":"snap","doc":{}}"#);
    assert!(out
        .iter()
        .any(|a| matches!(a, Action::Send { to, .. } if *to == A)));
}

#[test]
fn an_announce_is_that_nodes_whole_list_and_a_bystander_does_not_override_consent() {
    let mut p = Play::new();
    p.join(V, Role::Visitor);
    p.visitor(V, r#"{"t":"consent","granted":true}"#);
    p.announce(&[(FAR_A, Role::Agent)], Consent::Pending, false);
    assert_eq!(p.room.agents().collect::<Vec<_>>(), vec![FAR_A]);
    assert_eq!(
        p.room.presence().consent,
        Consent::Granted,
        "the visitor's own answer stands"
    );
    // Its agent left while the engine was away: the next list without it removes it.
    p.announce(&[], Consent::Pending, false);
    assert_eq!(p.room.agents().count(), 0);
    assert_eq!(
        p.room.visitor(),
        Some(V),
        "other nodes' members are untouched"
    );
}
