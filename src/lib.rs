//! cobrowse-proxy: a universal co-browsing proxy.
//!
//! ```text
//! server::serve ──► router::classify ──► api::handle            (public origin: console, API, agent.js)
//!                                   │       └► relay              (co-browsing rooms, WebSocket)
//!                                   └──► proxy::handle          (per-origin proxy hosts)
//!                                          1 headers::request   map Origin/Referer/cookies back
//!                                          2 upstream::send     pooled h1/h2 client, private-address guard
//!                                          3 headers::response  Location, Set-Cookie, CSP, CORS, …
//!                                          4 rewrite            html (lol_html) | css (cssparser) | pass
//!          Err(ProxyError) anywhere ──► error::respond          (the single error edge)
//! ```
//!
//! `url_codec` owns the mapping between target origins and proxy hosts that every step relies on.

pub mod access_log;
pub mod agent;
pub mod api;
pub mod body;
pub mod config;
pub mod error;
pub mod fixture;
pub mod forward;
pub mod headers;
pub mod metrics;
pub mod proxy;
pub mod relay;
pub mod rewrite;
pub mod router;
pub mod server;
pub mod session;
pub mod tls;
pub mod upstream;
pub mod url_codec;

use std::future::Future;
use std::sync::Arc;

use sha2::{Digest, Sha256};
use tokio::net::TcpListener;

use config::Config;
use url_codec::{PublicOrigin, SessionId};

/// Everything requests share, built once at start-up.
pub struct Shared {
    pub config: Config,
    pub public: Arc<PublicOrigin>,
    pub sessions: session::Sessions,
    /// The co-browsing relay (WebSocket rooms per session) on the public origin.
    pub relay: relay::Relay,
    pub upstream: upstream::Upstream,
    pub agent: agent::Agent,
    pub metrics: metrics::Metrics,
    /// Rewritten scripts by content hash, so each distinct script is parsed once.
    pub scripts: Arc<rewrite::script::ScriptCache>,
    /// Per-process secret for values that must be unguessable but stable within a session (CSP nonces).
    secret: [u8; 32],
}

impl Shared {
    pub fn new(config: Config) -> Result<Arc<Shared>, upstream::UpstreamError> {
        let upstream = upstream::Upstream::new(&config)?;
        let public = Arc::new(config.public.clone());
        let sessions = session::Sessions::new(config.session_ttl);
        let relay = relay::Relay::new(config.relay.clone(), sessions.clone(), public.clone());
        Ok(Arc::new(Shared {
            public,
            sessions,
            relay,
            upstream,
            agent: agent::Agent::new(),
            metrics: metrics::Metrics::new(),
            scripts: Arc::new(rewrite::script::ScriptCache::new(
                config.limits.script_cache,
            )),
            secret: rand::random(),
            config,
        }))
    }

    /// The agent's CSP nonce for a session. Stable within the session so a cached page and a fresh
    /// policy (a 304 revalidation carries new headers) still agree; unguessable without the secret.
    pub fn nonce_for(&self, session: &SessionId) -> String {
        use base64::Engine;
        let digest = Sha256::new()
            .chain_update(self.secret)
            .chain_update(session.as_str())
            .finalize();
        base64::engine::general_purpose::STANDARD.encode(&digest[..18])
    }
}

/// Runs the proxy on `listener` until `shutdown` resolves (tests pass their own listener and signal).
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> Result<(), upstream::UpstreamError> {
    let shared = Shared::new(config)?;
    server::serve(shared, listener, shutdown).await;
    Ok(())
}
