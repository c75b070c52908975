//! Live sessions: which session ids exist, what they were created for, and when they expire; and the
//! signed credentials that let a visitor or an agent join a session's relay room.
//! Memory only on one node; an expired or removed session is gone, its proxy hosts stop answering and its
//! room ends. With scale-out on (`docs/SCALING.md`) the memory is a replica: creations and removals go
//! through the engine to every node, and a node that has not heard of a session asks the engine.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256, Sha512};
use url::Url;

use crate::cluster::SessionLink;
use crate::url_codec::SessionId;

#[derive(Debug)]
pub struct Session {
    pub id: SessionId,
    /// The page the session was created for (the visitor link opens it).
    pub start: Url,
    pub expires_at: SystemTime,
}

impl Session {
    fn is_live(&self, now: SystemTime) -> bool {
        self.expires_at > now
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("the cluster engine did not take the new session: {0}")]
    Cluster(String),
}

/// Cheap to clone: the relay keeps a handle to check that a room's session still lives.
#[derive(Clone)]
pub struct Sessions {
    live: moka::sync::Cache<SessionId, Arc<Session>>,
    /// Ids just asked of the engine and not found, so a flood of made-up ids costs one lookup each.
    unknown: moka::sync::Cache<SessionId, ()>,
    /// Ids that ended, for as long as they could have lived: a late lookup or a stale note from another
    /// node can never bring one back.
    ended: moka::sync::Cache<SessionId, ()>,
    ttl: Duration,
    key: SigningKey,
    shared: Option<Arc<SessionLink>>,
}

impl Sessions {
    /// One node's sessions, signed with this process's own key.
    pub fn new(ttl: Duration) -> Sessions {
        Sessions::with(ttl, SigningKey::process(), None)
    }

    /// Sessions signed with `key` and, when `shared` is given, replicated through the engine.
    pub fn with(ttl: Duration, key: SigningKey, shared: Option<Arc<SessionLink>>) -> Sessions {
        Sessions {
            live: moka::sync::Cache::builder()
                .time_to_live(ttl)
                .max_capacity(1_000_000)
                .build(),
            unknown: moka::sync::Cache::builder()
                .time_to_live(Duration::from_secs(1))
                .max_capacity(100_000)
                .build(),
            ended: moka::sync::Cache::builder()
                .time_to_live(ttl)
                .max_capacity(1_000_000)
                .build(),
            ttl,
            key,
            shared,
        }
    }

    /// A new session. With scale-out on, it exists once the engine has it, so its link works on
    /// every node at once; without the engine it is refused rather than half-created.
    pub async fn create(&self, start: Url) -> Result<Arc<Session>, SessionError> {
        let session = Arc::new(Session {
            id: SessionId::random(),
            start,
            expires_at: SystemTime::now() + self.ttl,
        });
        if let Some(shared) = &self.shared {
            shared
                .created(&session)
                .await
                .map_err(|e| SessionError::Cluster(e.to_string()))?;
        }
        self.live.insert(session.id.clone(), session.clone());
        Ok(session)
    }

    /// A session this node knows of, if it still lives (no engine round trip).
    pub fn get(&self, id: &SessionId) -> Option<Arc<Session>> {
        self.live.get(id).filter(|s| s.is_live(SystemTime::now()))
    }

    /// Like [`Sessions::get`], but asks the engine about a session this node has not heard of
    /// (created on another node before this one subscribed).
    pub async fn find(&self, id: &SessionId) -> Option<Arc<Session>> {
        if let Some(session) = self.get(id) {
            return Some(session);
        }
        let shared = self.shared.as_ref()?;
        if self.unknown.contains_key(id) || self.ended.contains_key(id) {
            return None;
        }
        match shared.lookup(id).await {
            Some(session) => {
                let session = Arc::new(session);
                self.learn(session.clone());
                self.get(id)
            }
            None => {
                self.unknown.insert(id.clone(), ());
                None
            }
        }
    }

    /// Ends a session everywhere: here at once, on other nodes through the engine.
    pub fn remove(&self, id: &SessionId) {
        self.forget(id);
        if let Some(shared) = &self.shared {
            shared.ended(id);
        }
    }

    /// Another node created a session.
    pub fn learn(&self, session: Arc<Session>) {
        if session.is_live(SystemTime::now()) && !self.ended.contains_key(&session.id) {
            self.unknown.invalidate(&session.id);
            self.live.insert(session.id.clone(), session);
        }
    }

    /// Another node ended a session (or the engine no longer has it).
    pub fn forget(&self, id: &SessionId) {
        self.ended.insert(id.clone(), ());
        self.live.invalidate(id);
    }

    /// The ids this node holds, for checking them against the engine after an outage.
    pub fn known_ids(&self) -> Vec<SessionId> {
        self.live.iter().map(|(id, _)| (*id).clone()).collect()
    }

    pub fn sign(&self, credential: &Credential) -> String {
        credential.sign_with(&self.key)
    }

    pub fn verify(&self, token: &str, now: SystemTime) -> Result<Credential, CredentialError> {
        Credential::verify_with(token, now, &self.key)
    }

    /// The visitor credential minted into pages (see [`visitor_credential`]).
    pub fn visitor_credential(&self, session: &SessionId, now: SystemTime) -> String {
        self.sign(&visitor_credential_for(session, now))
    }
}

/// Which side of a session a credential admits; signed into it, so one can never pass for the other.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    Visitor,
    Agent,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Visitor => "visitor",
            Role::Agent => "agent",
        }
    }

    fn letter(self) -> &'static str {
        match self {
            Role::Visitor => "v",
            Role::Agent => "a",
        }
    }
}

/// How long a visitor credential minted into a page's agent tag stays valid. The relay also requires
/// the session itself to be live, so a credential is never worth more than its session.
pub const VISITOR_CREDENTIAL_TTL: Duration = Duration::from_secs(24 * 3600);

/// The visitor credential minted into pages at `now`. Its expiry is rounded up to the hour, so every page
/// of a session served within the same hour carries the same tag: rewritten HTML stays byte-identical
/// (the chunking tests compare it, a cache may share it) and the credential lives 24 to 25 hours.
/// Signed with this process's own key; a node uses [`Sessions::visitor_credential`].
pub fn visitor_credential(session: &SessionId, now: SystemTime) -> String {
    visitor_credential_for(session, now).sign()
}

/// The credential [`visitor_credential`] signs, for signing with another key.
pub fn visitor_credential_for(session: &SessionId, now: SystemTime) -> Credential {
    const HOUR: u64 = 3600;
    let at = unix(now) + VISITOR_CREDENTIAL_TTL.as_secs();
    let expires = at.div_ceil(HOUR) * HOUR;
    Credential {
        session: session.clone(),
        role: Role::Visitor,
        expires,
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CredentialError {
    #[error("malformed credential")]
    Malformed,
    #[error("credential signature does not match")]
    BadSignature,
    #[error("credential has expired")]
    Expired,
}

/// A signed statement "this bearer may join session S as role R until T":
/// `v1.<v|a>.<session>.<unix expiry>.<HMAC-SHA256, base64url>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credential {
    pub session: SessionId,
    pub role: Role,
    /// Seconds since the Unix epoch.
    pub expires: u64,
}

type HmacSha256 = Hmac<Sha256>;

/// An HMAC key one block long, so building a MAC from it cannot fail.
#[derive(Clone)]
pub struct SigningKey(Arc<hmac::digest::Key<HmacSha256>>);

impl SigningKey {
    /// The per-process key: credentials die with the process, like the sessions they name.
    pub fn process() -> SigningKey {
        static KEY: OnceLock<SigningKey> = OnceLock::new();
        KEY.get_or_init(|| {
            let mut key = hmac::digest::Key::<HmacSha256>::default();
            rand::RngCore::fill_bytes(&mut rand::thread_rng(), key.as_mut_slice());
            SigningKey(Arc::new(key))
        })
        .clone()
    }

    /// The key every node of a deployment derives from the configured secret (SHA-512 of it is
    /// exactly one SHA-256 block, so any secret length works).
    pub fn shared(secret: &str) -> SigningKey {
        let digest = Sha512::digest(secret.as_bytes());
        let mut key = hmac::digest::Key::<HmacSha256>::default();
        key.copy_from_slice(&digest);
        SigningKey(Arc::new(key))
    }

    fn mac_of(&self, body: &str) -> HmacSha256 {
        let mut mac = <HmacSha256 as hmac::digest::KeyInit>::new(&self.0);
        mac.update(body.as_bytes());
        mac
    }
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

impl Credential {
    pub fn new(session: SessionId, role: Role, expires_at: SystemTime) -> Credential {
        Credential {
            session,
            role,
            expires: unix(expires_at),
        }
    }

    fn body(&self) -> String {
        format!(
            "v1.{}.{}.{}",
            self.role.letter(),
            self.session,
            self.expires
        )
    }

    /// Signed with this process's own key.
    pub fn sign(&self) -> String {
        self.sign_with(&SigningKey::process())
    }

    pub fn sign_with(&self, key: &SigningKey) -> String {
        let body = self.body();
        let tag = key.mac_of(&body).finalize().into_bytes();
        let tag = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(tag);
        format!("{body}.{tag}")
    }

    /// Checked against this process's own key.
    pub fn verify(token: &str, now: SystemTime) -> Result<Credential, CredentialError> {
        Credential::verify_with(token, now, &SigningKey::process())
    }

    /// Checks the signature first (constant time), then the expiry against `now`.
    pub fn verify_with(
        token: &str,
        now: SystemTime,
        key: &SigningKey,
    ) -> Result<Credential, CredentialError> {
        let (body, tag) = token.rsplit_once('.').ok_or(CredentialError::Malformed)?;
        let tag = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(tag)
            .map_err(|_| CredentialError::Malformed)?;
        key.mac_of(body)
            .verify_slice(&tag)
            .map_err(|_| CredentialError::BadSignature)?;
        let credential = Credential::parse_body(body)?;
        if credential.expires <= unix(now) {
            return Err(CredentialError::Expired);
        }
        Ok(credential)
    }

    fn parse_body(body: &str) -> Result<Credential, CredentialError> {
        let mut parts = body.split('.');
        let (Some("v1"), Some(role), Some(session), Some(expires), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return Err(CredentialError::Malformed);
        };
        let role = match role {
            "v" => Role::Visitor,
            "a" => Role::Agent,
            _ => return Err(CredentialError::Malformed),
        };
        Ok(Credential {
            session: SessionId::parse(session).ok_or(CredentialError::Malformed)?,
            role,
            expires: expires.parse().map_err(|_| CredentialError::Malformed)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id() -> SessionId {
        SessionId::parse("k3x9q2m7wa").unwrap()
    }

    #[test]
    fn round_trip_and_role_is_signed() {
        let later = SystemTime::now() + Duration::from_secs(60);
        let token = Credential::new(id(), Role::Visitor, later).sign();
        let back = Credential::verify(&token, SystemTime::now()).unwrap();
        assert_eq!(back.role, Role::Visitor);
        assert_eq!(back.session, id());
        // Turning a visitor credential into an agent one breaks the signature.
        let forged = token.replacen("v1.v.", "v1.a.", 1);
        assert_eq!(
            Credential::verify(&forged, SystemTime::now()),
            Err(CredentialError::BadSignature)
        );
        // So does moving it to another session or extending it.
        let other = token.replacen("k3x9q2m7wa", "aaaaaaaaaa", 1);
        assert_eq!(
            Credential::verify(&other, SystemTime::now()),
            Err(CredentialError::BadSignature)
        );
    }

    #[test]
    fn page_credentials_are_stable_within_the_hour() {
        let t = UNIX_EPOCH + Duration::from_secs(1_800_000_100);
        let a = visitor_credential(&id(), t);
        assert_eq!(a, visitor_credential(&id(), t + Duration::from_secs(1)));
        let c = Credential::verify(&a, t).unwrap();
        assert_eq!(c.role, Role::Visitor);
        let lives = c.expires - unix(t);
        assert!((24 * 3600..=25 * 3600).contains(&lives), "{lives}");
    }

    #[test]
    fn a_shared_key_signs_alike_on_every_node_and_unlike_the_process_key() {
        let later = SystemTime::now() + Duration::from_secs(60);
        let credential = Credential::new(id(), Role::Agent, later);
        let a = SigningKey::shared("a deployment secret of at least thirty-two bytes");
        let b = SigningKey::shared("a deployment secret of at least thirty-two bytes");
        let token = credential.sign_with(&a);
        assert_eq!(
            Credential::verify_with(&token, SystemTime::now(), &b),
            Ok(credential)
        );
        assert_eq!(
            Credential::verify(&token, SystemTime::now()),
            Err(CredentialError::BadSignature)
        );
        let other = SigningKey::shared("another deployment secret, also long enough");
        assert_eq!(
            Credential::verify_with(&token, SystemTime::now(), &other),
            Err(CredentialError::BadSignature)
        );
    }

    #[test]
    fn an_ended_session_is_never_learnt_again_and_expired_ones_are_not_live() {
        let sessions = Sessions::new(Duration::from_secs(3600));
        let session = Arc::new(Session {
            id: id(),
            start: Url::parse("https://www.shop.test/").unwrap(),
            expires_at: SystemTime::now() + Duration::from_secs(60),
        });
        sessions.learn(session.clone());
        assert!(sessions.get(&id()).is_some());
        sessions.forget(&id());
        sessions.learn(session);
        assert!(
            sessions.get(&id()).is_none(),
            "a stale note cannot revive it"
        );
        let old = SessionId::parse("aaaaaaaaaa").unwrap();
        sessions.learn(Arc::new(Session {
            id: old.clone(),
            start: Url::parse("https://www.shop.test/").unwrap(),
            expires_at: SystemTime::now() - Duration::from_secs(1),
        }));
        assert!(sessions.get(&old).is_none());
    }

    #[test]
    fn expiry_and_garbage() {
        let past = SystemTime::now() - Duration::from_secs(1);
        let token = Credential::new(id(), Role::Agent, past).sign();
        assert_eq!(
            Credential::verify(&token, SystemTime::now()),
            Err(CredentialError::Expired)
        );
        for bad in [
            "",
            "x",
            "v1.a.k3x9q2m7wa.1",
            "a.b.c.d.e.f",
            "v1.a.k3x9q2m7wa.1.!!",
        ] {
            assert!(Credential::verify(bad, SystemTime::now()).is_err(), "{bad}");
        }
    }
}
