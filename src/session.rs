//! Live sessions: which session ids exist, what they were created for, and when they expire; and the
//! signed credentials that let a visitor or an agent join a session's relay room.
//! Memory only; an expired or removed session is gone, its proxy hosts stop answering and its room ends.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use url::Url;

use crate::url_codec::SessionId;

#[derive(Debug)]
pub struct Session {
    pub id: SessionId,
    /// The page the session was created for (the visitor link opens it).
    pub start: Url,
    pub expires_at: SystemTime,
}

/// Cheap to clone: the relay keeps a handle to check that a room's session still lives.
#[derive(Clone)]
pub struct Sessions {
    live: moka::sync::Cache<SessionId, Arc<Session>>,
    ttl: Duration,
}

impl Sessions {
    pub fn new(ttl: Duration) -> Sessions {
        Sessions {
            live: moka::sync::Cache::builder()
                .time_to_live(ttl)
                .max_capacity(1_000_000)
                .build(),
            ttl,
        }
    }

    pub fn create(&self, start: Url) -> Arc<Session> {
        let session = Arc::new(Session {
            id: SessionId::random(),
            start,
            expires_at: SystemTime::now() + self.ttl,
        });
        self.live.insert(session.id.clone(), session.clone());
        session
    }

    pub fn get(&self, id: &SessionId) -> Option<Arc<Session>> {
        self.live.get(id)
    }

    pub fn remove(&self, id: &SessionId) {
        self.live.invalidate(id);
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
pub fn visitor_credential(session: &SessionId, now: SystemTime) -> String {
    const HOUR: u64 = 3600;
    let at = unix(now) + VISITOR_CREDENTIAL_TTL.as_secs();
    let expires = at.div_ceil(HOUR) * HOUR;
    Credential {
        session: session.clone(),
        role: Role::Visitor,
        expires,
    }
    .sign()
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

/// The per-process signing key, one HMAC block long: credentials die with the process, like the
/// sessions they name.
fn key() -> &'static hmac::digest::Key<HmacSha256> {
    static KEY: OnceLock<hmac::digest::Key<HmacSha256>> = OnceLock::new();
    KEY.get_or_init(|| {
        let mut key = hmac::digest::Key::<HmacSha256>::default();
        rand::RngCore::fill_bytes(&mut rand::thread_rng(), key.as_mut_slice());
        key
    })
}

fn mac_of(body: &str) -> HmacSha256 {
    // A key of exactly the block size makes construction infallible.
    let mut mac = <HmacSha256 as hmac::digest::KeyInit>::new(key());
    mac.update(body.as_bytes());
    mac
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

    pub fn sign(&self) -> String {
        let body = self.body();
        let tag = mac_of(&body).finalize().into_bytes();
        let tag = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(tag);
        format!("{body}.{tag}")
    }

    /// Checks the signature first (constant time), then the expiry against `now`.
    pub fn verify(token: &str, now: SystemTime) -> Result<Credential, CredentialError> {
        let (body, tag) = token.rsplit_once('.').ok_or(CredentialError::Malformed)?;
        let tag = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(tag)
            .map_err(|_| CredentialError::Malformed)?;
        mac_of(body)
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
