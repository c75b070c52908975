//! cobrowse-proxy: a universal co-browsing proxy.
//!
//! ```text
//! server::serve ──► router::classify ──► api::handle            (public origin: console, API, agent.js)
//!                                   │       └► relay            (co-browsing rooms, WebSocket)
//!                                   ├──► forward::connect       (CONNECT: sniff, intercept TLS, re-serve)
//!                                   ├──► forward::handle        (absolute-form and tunnelled requests)
//!                                   └──► proxy::handle          (per-origin proxy hosts; forward mode too)
//!                                          1 headers::request   map Origin/Referer/cookies back
//!                                          2 cache::fetch       public asset cache (RFC 9111), else
//!                                            upstream::send     pooled h1/h2 client, private-address guard
//!                                          3 headers::response  Location, Set-Cookie, CSP, CORS, …
//!                                          4 rewrite            html (lol_html) | css (cssparser) | pass
//!          Err(ProxyError) anywhere ──► error::respond          (the single error edge)
//! ```
//!
//! `url_codec` owns the mapping between target origins and proxy hosts that every step relies on.
//! `store` is the only thing written to disk besides the local CA: visitor metadata and, when debugging,
//! a content-free event log, each with its retention (`docs/DATA-POLICY.md`).
//! `cluster` joins several nodes through a NATS server when `[cluster]` says so (`docs/SCALING.md`).

pub mod access;
pub mod access_log;
pub mod agent;
pub mod api;
pub mod body;
pub mod busy;
pub mod byte_set;
pub mod cache;
pub mod cluster;
pub mod config;
pub mod data_api;
pub mod error;
pub mod fixture;
pub mod forward;
pub mod headers;
pub mod loadtest;
pub mod logging;
pub mod metrics;
pub mod proxy;
pub mod relay;
pub mod rewrite;
pub mod router;
pub mod secret;
pub mod server;
pub mod session;
pub mod store;
pub mod tls;
pub mod upstream;
pub mod url_codec;

use std::future::Future;
use std::sync::Arc;

use sha2::{Digest, Sha256};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

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
    /// Public assets from memory (`docs/cache.md`); it stores upstream responses, never rewritten ones.
    pub cache: cache::Cache,
    /// Visitor metadata and the debug event log, on disk (`docs/DATA-POLICY.md`).
    pub store: store::Store,
    /// Rewritten scripts by content hash, so each distinct script is parsed once.
    pub scripts: Arc<rewrite::script::ScriptCache>,
    /// The local CA that signs a leaf per intercepted host.
    pub ca: forward::ca::CertificateAuthority,
    /// This process's name in `Via`: a request that already carries it has looped back to us.
    pub via: String,
    /// The `Via` member every request going upstream gets (`headers::request::via_value` of `via`).
    pub via_header: Option<http::HeaderValue>,
    /// The link to the other nodes, when scale-out is on.
    pub cluster: Option<Arc<cluster::Cluster>>,
    /// Per-client-address rate limits on session creation and relay joins.
    pub client_limits: access::ClientLimits,
    /// Connection slots shared by accepted connections and the connections served inside CONNECT tunnels.
    pub slots: Arc<Semaphore>,
    /// Cancelled when shutdown begins, so connections served inside tunnels drain too.
    pub shutdown: CancellationToken,
    /// Per-process secret for values that must be unguessable but stable within a session (CSP nonces).
    secret: [u8; 32],
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Upstream(#[from] upstream::UpstreamError),
    #[error("local CA: {0}")]
    Ca(#[from] forward::ca::CaError),
    #[error(transparent)]
    Store(#[from] store::StoreError),
    #[error(transparent)]
    Cluster(#[from] cluster::ClusterError),
}

impl Shared {
    pub fn new(config: Config) -> Result<Arc<Shared>, StartError> {
        Shared::with_clock(config, Arc::new(cache::SystemClock))
    }

    /// Like [`Shared::new`], with the clock the cache decides freshness and its 24-hour cap by, and the
    /// store its retention (tests). One node only: [`Shared::start`] also joins a cluster.
    pub fn with_clock(
        config: Config,
        clock: Arc<dyn cache::Clock>,
    ) -> Result<Arc<Shared>, StartError> {
        let store = store::Store::open(&config.data_dir, clock.clone(), config.debug_events)?;
        Shared::build(config, clock, store, None)
    }

    /// Everything a node needs, joining the cluster and opening the shared store when `[cluster]`
    /// asks for them.
    pub async fn start(
        config: Config,
        clock: Arc<dyn cache::Clock>,
    ) -> Result<Arc<Shared>, StartError> {
        let store = match &config.cluster.postgres_url {
            Some(url) => {
                store::Store::open_postgres(url, clock.clone(), config.debug_events).await?
            }
            None => store::Store::open(&config.data_dir, clock.clone(), config.debug_events)?,
        };
        let cluster = match config.cluster.enabled() {
            true => Some(cluster::Cluster::connect(&config.cluster, config.session_ttl).await?),
            false => None,
        };
        let shared = Shared::build(config, clock, store, cluster.clone())?;
        if let Some(cluster) = &cluster {
            cluster.attach(&shared);
        }
        Ok(shared)
    }

    fn build(
        config: Config,
        clock: Arc<dyn cache::Clock>,
        store: store::Store,
        cluster: Option<Arc<cluster::Cluster>>,
    ) -> Result<Arc<Shared>, StartError> {
        let upstream = upstream::Upstream::new(&config)?;
        let public = Arc::new(config.public.clone());
        let key = match &config.cluster.signing_key {
            Some(secret) => session::SigningKey::shared(secret),
            None => session::SigningKey::process(),
        };
        let session_link = cluster.as_ref().map(|c| c.sessions.clone());
        let sessions = session::Sessions::with(config.session_ttl, key, session_link);
        let relay = relay::Relay::new(
            config.relay.clone(),
            sessions.clone(),
            public.clone(),
            store.clone(),
            cluster.as_ref().map(|c| c.rooms.clone()),
        );
        // Created on first start, so `ca path` and browsers have it at once.
        let (ca, _) = forward::ca::CertificateAuthority::load_or_create(&config.ca_dir)?;
        let via = format!("cobrowse-{:08x}", rand::random::<u32>());
        let metrics = metrics::Metrics::new();
        let cache = cache::Cache::new(
            &config.cache,
            config.upstream.headers(),
            clock,
            metrics.cache.clone(),
        );
        Ok(Arc::new(Shared {
            public,
            sessions,
            relay,
            upstream,
            agent: agent::Agent::new(),
            metrics,
            cache,
            store,
            scripts: Arc::new(rewrite::script::ScriptCache::new(
                config.limits.script_cache,
            )),
            ca,
            via_header: headers::request::via_value(&via),
            via,
            cluster,
            client_limits: access::ClientLimits::new(&config.access),
            slots: Arc::new(Semaphore::new(config.limits.max_connections)),
            shutdown: CancellationToken::new(),
            secret: rand::random(),
            config,
        }))
    }

    /// The agent's CSP nonce for a forward-proxied origin: stable per origin, unguessable without the secret.
    pub fn forward_nonce(&self, origin: &url_codec::TargetOrigin) -> String {
        self.keyed_nonce(b"forward", &origin.ascii())
    }

    /// The agent's CSP nonce for a session. Stable within the session so a cached page and a fresh
    /// policy (a 304 revalidation carries new headers) still agree; unguessable without the secret.
    pub fn nonce_for(&self, session: &SessionId) -> String {
        self.keyed_nonce(b"session", session.as_str())
    }

    fn keyed_nonce(&self, domain: &[u8], value: &str) -> String {
        use base64::Engine;
        let digest = Sha256::new()
            .chain_update(self.secret)
            .chain_update(domain)
            .chain_update(value)
            .finalize();
        base64::engine::general_purpose::STANDARD.encode(&digest[..18])
    }
}

/// Runs the proxy on `listener` until `shutdown` resolves (tests pass their own listener and signal).
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> Result<(), StartError> {
    run_with_clock(config, Arc::new(cache::SystemClock), listener, shutdown).await
}

/// [`run`] with the clock injected, so tests can move time past the cache's 24-hour cap and the store's
/// retention periods. The store is closed once the server has drained.
pub async fn run_with_clock(
    config: Config,
    clock: Arc<dyn cache::Clock>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> Result<(), StartError> {
    let shared = Shared::start(config, clock).await?;
    shared.store.spawn_sweeper(shared.shutdown.clone());
    server::serve(shared.clone(), listener, shutdown).await;
    shared.store.close().await;
    Ok(())
}
