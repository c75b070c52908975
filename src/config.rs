//! Configuration: embedded defaults, an optional TOML file, `COBROWSE_*` environment variables and CLI flags,
//! in rising priority. Everything is validated once here so the rest of the crate gets typed values.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::access::{AccessConfig, TargetPolicy};
use crate::url_codec::{CodecError, PublicOrigin};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid config file {path}: {source}")]
    Parse {
        path: PathBuf,
        source: toml::de::Error,
    },
    #[error("invalid --resolve {0:?}: expected PATTERN=IP or PATTERN=IP:PORT (PATTERN: host or *.suffix)")]
    Resolve(String),
    #[error("invalid --public-url: {0}")]
    PublicUrl(#[from] CodecError),
    #[error("listening on non-loopback address {0} requires an API token (--api-token)")]
    TokenRequired(SocketAddr),
    #[error("invalid --no-intercept {0:?}: expected a host or *.suffix")]
    NoIntercept(String),
    #[error(transparent)]
    Target(#[from] crate::access::PatternError),
    #[error("[cluster] nats_url is set, so a shared signing_key of at least 32 bytes is required (every node must verify the others' credentials)")]
    SigningKeyRequired,
    #[error("[cluster] subject_prefix {0:?}: expected letters, digits, '-' or '_'")]
    SubjectPrefix(String),
}

/// The file form of the configuration: every key is optional and defaults as documented on [`Config`].
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FileConfig {
    pub listen: Option<SocketAddr>,
    pub public_url: Option<String>,
    pub resolve: Vec<String>,
    pub upstream_ca: Vec<PathBuf>,
    pub api_token: Option<String>,
    pub limits: Limits,
    pub upstream: UpstreamTimeouts,
    pub session_ttl_secs: Option<u64>,
    pub ca_dir: Option<PathBuf>,
    pub no_intercept: Vec<String>,
    pub cache: CacheConfig,
    pub relay: RelayConfig,
    pub access: AccessConfig,
    /// DNS servers (`IP:PORT`, UDP) for upstream names instead of the system's resolver configuration.
    pub dns_servers: Vec<SocketAddr>,
    pub data_dir: Option<PathBuf>,
    pub debug_events: Option<bool>,
    pub cluster: ClusterConfig,
}

impl FileConfig {
    pub fn load(path: &Path) -> Result<FileConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        toml::from_str(&text).map_err(|source| ConfigError::Parse {
            path: path.to_owned(),
            source,
        })
    }
}

/// Byte and count limits that keep memory bounded whatever a client or upstream sends.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Most decompressed bytes of one body we rewrite; past it the stream is cut (compression bombs).
    /// Default 256 MiB.
    pub max_decoded_body: u64,
    /// Most decompressed bytes per compressed byte before a body counts as a bomb. Default 1000.
    pub max_decode_ratio: u64,
    /// Memory lol_html may use for one document before it bails out to passthrough. Default 16 MiB.
    pub html_memory: usize,
    /// Most bytes of one `<style>` or import map buffered for rewriting. Default 4 MiB.
    pub inline_buffer: usize,
    /// Most bytes a stylesheet rewriter carries between chunks. Default 4 MiB.
    pub css_carry: usize,
    /// Most bytes of one script held to be parsed and rewritten; larger ones pass as they are. Default 8 MiB.
    pub script_buffer: usize,
    /// Bytes of rewritten scripts kept, by content hash. Default 64 MiB.
    pub script_cache: u64,
    /// Most concurrent client connections. Default 10,000.
    pub max_connections: usize,
    /// Most bytes of a JSON API request body. Default 16 KiB.
    pub max_api_body: usize,
    /// How long a client may take to send a request's headers before the connection is closed.
    /// Default 30 s (slowloris).
    pub client_header_timeout_ms: u64,
    /// Longest silence between two chunks of a request body a client uploads; the request then fails.
    /// Default 60 s.
    pub client_body_idle_ms: u64,
    /// Largest request head (request line plus headers) on HTTP/1.1; larger gets 431. Default 64 KiB.
    pub max_request_head: usize,
    /// Concurrent streams per HTTP/2 connection. Default 100.
    pub h2_max_streams: u32,
}

impl Limits {
    pub fn client_header_timeout(&self) -> Duration {
        Duration::from_millis(self.client_header_timeout_ms)
    }
    pub fn client_body_idle(&self) -> Duration {
        Duration::from_millis(self.client_body_idle_ms)
    }
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_decoded_body: 256 << 20,
            max_decode_ratio: 1000,
            html_memory: 16 << 20,
            inline_buffer: 4 << 20,
            css_carry: 4 << 20,
            script_buffer: 8 << 20,
            script_cache: 64 << 20,
            max_connections: 10_000,
            max_api_body: 16 << 10,
            client_header_timeout_ms: 30_000,
            client_body_idle_ms: 60_000,
            max_request_head: 64 << 10,
            h2_max_streams: 100,
        }
    }
}

/// Scale-out (`docs/SCALING.md`): unset, the proxy is one self-contained node, exactly as without it.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterConfig {
    /// The NATS server(s) every node talks to (`nats://host:4222`, comma-separated for several);
    /// setting it turns scale-out on. The server needs JetStream (`nats-server -js`) for shared sessions.
    pub nats_url: Option<String>,
    /// The HMAC key every node signs and checks session credentials with, at least 32 bytes.
    /// Required with `nats_url`; without it each process has its own random key.
    pub signing_key: Option<String>,
    /// The shared store (PostgreSQL) for visitor metadata and the debug event log, instead of the
    /// embedded one: a libpq connection string or `postgres://` URL.
    pub postgres_url: Option<String>,
    /// This node's name in logs and on the engine; default the host name and process id.
    pub node_name: Option<String>,
    /// First token of every subject and bucket, so several deployments can share one engine.
    /// Default `cobrowse`.
    pub subject_prefix: Option<String>,
    /// Extra root certificate(s) (PEM) for a `tls://` engine URL signed by a private CA.
    pub nats_ca: Option<PathBuf>,
}

impl ClusterConfig {
    pub fn enabled(&self) -> bool {
        self.nats_url.is_some()
    }

    pub fn prefix(&self) -> &str {
        self.subject_prefix.as_deref().unwrap_or("cobrowse")
    }

    fn validate(self) -> Result<ClusterConfig, ConfigError> {
        let clean = |v: Option<String>| v.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty());
        let cluster = ClusterConfig {
            nats_url: clean(self.nats_url),
            signing_key: clean(self.signing_key),
            postgres_url: clean(self.postgres_url),
            node_name: clean(self.node_name),
            subject_prefix: clean(self.subject_prefix),
            nats_ca: self.nats_ca,
        };
        let key_ok = cluster.signing_key.as_ref().is_some_and(|k| k.len() >= 32);
        let key_needed = cluster.signing_key.is_some() || cluster.enabled();
        if key_needed && !key_ok {
            return Err(ConfigError::SigningKeyRequired);
        }
        let prefix = cluster.prefix();
        let prefix_ok = prefix
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !prefix_ok {
            return Err(ConfigError::SubjectPrefix(prefix.to_owned()));
        }
        Ok(cluster)
    }
}

/// The co-browsing relay's limits (see `docs/RELAY.md`).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RelayConfig {
    /// Largest message from a visitor (a page snapshot). Default 8 MiB.
    pub max_visitor_message: usize,
    /// Largest message from an agent (tools only). Default 16 KiB.
    pub max_agent_message: usize,
    /// Visitor messages per second on average, and the burst allowed. Default 200 and 400.
    pub visitor_rate: u32,
    pub visitor_burst: u32,
    /// Agent messages per second on average, and the burst allowed. Default 60 and 120.
    pub agent_rate: u32,
    pub agent_burst: u32,
    /// Most agents watching one session. Default 8.
    pub max_agents: usize,
    /// Most messages and bytes queued for one connection before it counts as lagging. Default 1024 and
    /// 24 MiB (three largest snapshots).
    pub queue_messages: usize,
    pub queue_bytes: usize,
    /// Longest one message may take to reach a client before the connection is closed. Default 15 s.
    pub send_timeout_ms: u64,
    /// Extra CSS selectors masked in the visitor's browser, on top of `.no-cobrowse`, password and
    /// hidden inputs. Default none.
    pub mask_selectors: Vec<String>,
}

impl Default for RelayConfig {
    fn default() -> RelayConfig {
        RelayConfig {
            max_visitor_message: 8 << 20,
            max_agent_message: 16 << 10,
            visitor_rate: 200,
            visitor_burst: 400,
            agent_rate: 60,
            agent_burst: 120,
            max_agents: 8,
            queue_messages: 1024,
            queue_bytes: 24 << 20,
            send_timeout_ms: 15_000,
            mask_selectors: Vec::new(),
        }
    }
}

/// Upstream timeouts, in milliseconds in the file.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UpstreamTimeouts {
    /// TCP + TLS connect. Default 10 s.
    pub connect_ms: u64,
    /// From request sent to response headers. Default 30 s.
    pub headers_ms: u64,
    /// Longest silence between two body chunks. Default 60 s.
    pub body_idle_ms: u64,
}

impl Default for UpstreamTimeouts {
    fn default() -> UpstreamTimeouts {
        UpstreamTimeouts {
            connect_ms: 10_000,
            headers_ms: 30_000,
            body_idle_ms: 60_000,
        }
    }
}

impl UpstreamTimeouts {
    pub fn connect(&self) -> Duration {
        Duration::from_millis(self.connect_ms)
    }
    pub fn headers(&self) -> Duration {
        Duration::from_millis(self.headers_ms)
    }
    pub fn body_idle(&self) -> Duration {
        Duration::from_millis(self.body_idle_ms)
    }
}

/// The public asset cache (`docs/cache.md`), the `[cache]` table in the file.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CacheConfig {
    /// Whether responses are cached at all. Default true.
    pub enabled: bool,
    /// Most bytes held (bodies, headers and a small per-entry overhead). Default 256 MiB.
    pub max_bytes: u64,
    /// Largest body stored; larger ones stream through uncached. Default 16 MiB.
    pub max_object_bytes: u64,
    /// Longest an entry is served after it was stored, whatever its headers say. Default 86400 (24 h),
    /// which is also the most it can be set to.
    pub max_age_secs: u64,
}

impl Default for CacheConfig {
    fn default() -> CacheConfig {
        CacheConfig {
            enabled: true,
            max_bytes: 256 << 20,
            max_object_bytes: 16 << 20,
            max_age_secs: CacheConfig::MAX_AGE_CAP,
        }
    }
}

impl CacheConfig {
    /// The absolute cap: no entry is served more than 24 hours after it was stored.
    pub const MAX_AGE_CAP: u64 = 24 * 3600;

    pub fn max_age(&self) -> Duration {
        Duration::from_secs(self.max_age_secs.min(CacheConfig::MAX_AGE_CAP))
    }
}

/// A `--resolve` rule: upstream connections to matching hosts go to `addr` (and `port`, when given).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolveRule {
    pattern: HostPattern,
    pub addr: IpAddr,
    pub port: Option<u16>,
}

/// A host name, or `*.suffix` for every name under the suffix (not the suffix itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostPattern {
    Exact(String),
    /// `*.test` matches every name ending in `.test` (not `test` itself); stored as `.test`.
    Suffix(String),
}

impl HostPattern {
    pub fn parse(pattern: &str) -> Option<HostPattern> {
        let pattern = pattern.trim().trim_end_matches('.').to_ascii_lowercase();
        match pattern.strip_prefix("*.") {
            Some(suffix) if !suffix.is_empty() && !suffix.contains('*') => {
                Some(HostPattern::Suffix(format!(".{suffix}")))
            }
            Some(_) => None,
            None if !pattern.is_empty() && !pattern.contains('*') => {
                Some(HostPattern::Exact(pattern))
            }
            None => None,
        }
    }

    pub fn matches(&self, host: &str) -> bool {
        let host = host.trim_end_matches('.');
        match self {
            HostPattern::Exact(h) => host.eq_ignore_ascii_case(h),
            HostPattern::Suffix(s) => {
                host.len() > s.len()
                    && host.is_char_boundary(host.len() - s.len())
                    && host[host.len() - s.len()..].eq_ignore_ascii_case(s)
            }
        }
    }
}

impl ResolveRule {
    pub fn parse(spec: &str) -> Result<ResolveRule, ConfigError> {
        let bad = || ConfigError::Resolve(spec.to_owned());
        let (pattern, addr) = spec.split_once('=').ok_or_else(bad)?;
        let pattern = HostPattern::parse(pattern).ok_or_else(bad)?;
        let addr = addr.trim();
        let (addr, port) = match addr.parse::<SocketAddr>() {
            Ok(sa) => (sa.ip(), Some(sa.port())),
            Err(_) => (addr.parse::<IpAddr>().map_err(|_| bad())?, None),
        };
        Ok(ResolveRule {
            pattern,
            addr,
            port,
        })
    }

    pub fn matches(&self, host: &str) -> bool {
        self.pattern.matches(host)
    }
}

/// The validated configuration the server runs with.
#[derive(Debug, Clone)]
pub struct Config {
    /// Default `127.0.0.1:8080`.
    pub listen: SocketAddr,
    /// Default `http://localhost:<listen port>`.
    pub public: PublicOrigin,
    pub resolve: Vec<ResolveRule>,
    pub upstream_ca: Vec<PathBuf>,
    pub api_token: Option<String>,
    pub limits: Limits,
    pub upstream: UpstreamTimeouts,
    /// How long a session's links work. Default 24 h.
    pub session_ttl: Duration,
    /// Folder of the local CA for TLS interception. Default `certs`.
    pub ca_dir: PathBuf,
    /// Hosts the forward proxy never intercepts: CONNECT to them is tunnelled blind (pinned apps).
    pub no_intercept: Vec<HostPattern>,
    pub cache: CacheConfig,
    pub relay: RelayConfig,
    /// Rate limits per client address (the target lists are compiled into `targets`).
    pub access: AccessConfig,
    /// Which target hosts the deployment allows (`--allow-target`, `--deny-target`).
    pub targets: TargetPolicy,
    /// DNS servers for upstream names; the system's configuration when empty.
    pub dns_servers: Vec<SocketAddr>,
    /// Folder of the embedded store (visitor metadata, the debug event log; `docs/DATA-POLICY.md`).
    /// Default `data`.
    pub data_dir: PathBuf,
    /// Whether the content-free event log is written (debugging a deployment). Default false.
    pub debug_events: bool,
    /// Scale-out across nodes; off by default.
    pub cluster: ClusterConfig,
}

/// Values given on the command line or in the environment; `None` means "not given".
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub listen: Option<SocketAddr>,
    pub public_url: Option<String>,
    pub resolve: Vec<String>,
    pub upstream_ca: Vec<PathBuf>,
    pub api_token: Option<String>,
    pub ca_dir: Option<PathBuf>,
    pub no_intercept: Vec<String>,
    pub allow_targets: Vec<String>,
    pub deny_targets: Vec<String>,
    pub data_dir: Option<PathBuf>,
    /// `--debug-events` given: on whatever the file says (a flag can only switch it on).
    pub debug_events: bool,
    pub nats_url: Option<String>,
    pub signing_key: Option<String>,
    pub postgres_url: Option<String>,
    pub node_name: Option<String>,
}

impl Config {
    /// Defaults, then the file, then the overrides (CLI flags, which clap already merged with `COBROWSE_*`).
    pub fn build(file: FileConfig, over: Overrides) -> Result<Config, ConfigError> {
        let listen = over
            .listen
            .or(file.listen)
            .unwrap_or(SocketAddr::from(([127, 0, 0, 1], 8080)));
        let public_url = over
            .public_url
            .or(file.public_url)
            .unwrap_or_else(|| format!("http://localhost:{}", listen.port()));
        let resolve_specs = if over.resolve.is_empty() {
            file.resolve
        } else {
            over.resolve
        };
        let resolve = resolve_specs
            .iter()
            .map(|s| ResolveRule::parse(s))
            .collect::<Result<_, _>>()?;
        let upstream_ca = if over.upstream_ca.is_empty() {
            file.upstream_ca
        } else {
            over.upstream_ca
        };
        let api_token = over.api_token.or(file.api_token).filter(|t| !t.is_empty());
        if !listen.ip().is_loopback() && api_token.is_none() {
            return Err(ConfigError::TokenRequired(listen));
        }
        let no_intercept_specs = if over.no_intercept.is_empty() {
            file.no_intercept
        } else {
            over.no_intercept
        };
        let no_intercept = no_intercept_specs
            .iter()
            .map(|s| HostPattern::parse(s).ok_or_else(|| ConfigError::NoIntercept(s.clone())))
            .collect::<Result<_, _>>()?;
        let mut access = file.access;
        if !over.allow_targets.is_empty() {
            access.allow_targets = over.allow_targets;
        }
        if !over.deny_targets.is_empty() {
            access.deny_targets = over.deny_targets;
        }
        let targets = TargetPolicy::compile(&access.allow_targets, &access.deny_targets)?;
        let mut cluster = file.cluster;
        cluster.nats_url = over.nats_url.or(cluster.nats_url);
        cluster.signing_key = over.signing_key.or(cluster.signing_key);
        cluster.postgres_url = over.postgres_url.or(cluster.postgres_url);
        cluster.node_name = over.node_name.or(cluster.node_name);
        let cluster = cluster.validate()?;
        Ok(Config {
            listen,
            public: PublicOrigin::parse(&public_url)?,
            resolve,
            upstream_ca,
            api_token,
            limits: file.limits,
            upstream: file.upstream,
            session_ttl: Duration::from_secs(file.session_ttl_secs.unwrap_or(24 * 3600)),
            ca_dir: over
                .ca_dir
                .or(file.ca_dir)
                .unwrap_or_else(|| PathBuf::from("certs")),
            no_intercept,
            cache: file.cache,
            relay: file.relay,
            access,
            targets,
            dns_servers: file.dns_servers,
            data_dir: over
                .data_dir
                .or(file.data_dir)
                .unwrap_or_else(|| PathBuf::from("data")),
            debug_events: over.debug_events || file.debug_events.unwrap_or(false),
            cluster,
        })
    }

    /// Whether forward-proxy clients must send `Proxy-Authorization`: whenever an API token is set, which
    /// is always the case off loopback (see [`ConfigError::TokenRequired`]).
    pub fn proxy_auth_required(&self) -> bool {
        self.api_token.is_some()
    }

    /// Whether CONNECT to `host` is tunnelled blind rather than intercepted.
    pub fn never_intercept(&self, host: &str) -> bool {
        self.no_intercept.iter().any(|p| p.matches(host))
    }

    /// A configuration for tests and tools: defaults on the given listener.
    /// The CA and the store go to a scratch folder, so tools never write into the working directory.
    pub fn for_listener(listen: SocketAddr) -> Result<Config, ConfigError> {
        let scratch =
            std::env::temp_dir().join(format!("cobrowse-{}-{}", std::process::id(), listen.port()));
        let over = Overrides {
            listen: Some(listen),
            ca_dir: Some(scratch.join("ca")),
            data_dir: Some(scratch.join("data")),
            ..Overrides::default()
        };
        Config::build(FileConfig::default(), over)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolve_rules() {
        let r = ResolveRule::parse("*.test=127.0.0.1:9000").unwrap();
        assert!(r.matches("www.shop.test"));
        assert!(r.matches("WWW.SHOP.TEST."));
        assert!(!r.matches("test"));
        assert!(!r.matches("atest"));
        assert_eq!(r.port, Some(9000));
        let r = ResolveRule::parse("www.shop.test=::1").unwrap();
        assert!(r.matches("www.shop.test"));
        assert!(!r.matches("x.www.shop.test"));
        assert_eq!(r.port, None);
        let r = ResolveRule::parse("a.test=[::1]:80").unwrap();
        assert_eq!(r.port, Some(80));
        for bad in [
            "",
            "x",
            "*=1.2.3.4",
            "*.=1.2.3.4",
            "a.test=nope",
            "a*b=1.2.3.4",
        ] {
            assert!(ResolveRule::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn overrides_beat_file_and_defaults_fill_in() {
        let file: FileConfig = toml::from_str(
            "public_url = \"http://file.localhost:1\"\nresolve = [\"a.test=1.2.3.4\"]",
        )
        .unwrap();
        let over = Overrides {
            public_url: Some("http://cli.localhost:2".into()),
            ..Overrides::default()
        };
        let c = Config::build(file, over).unwrap();
        assert_eq!(c.public.host(), "cli.localhost");
        assert_eq!(c.resolve.len(), 1);
        assert_eq!(c.listen.port(), 8080);
    }

    #[test]
    fn public_listener_needs_a_token() {
        let over = Overrides {
            listen: Some("0.0.0.0:8080".parse().unwrap()),
            ..Overrides::default()
        };
        assert!(matches!(
            Config::build(FileConfig::default(), over),
            Err(ConfigError::TokenRequired(_))
        ));
    }

    #[test]
    fn cache_defaults_and_the_absolute_cap() {
        let c = Config::for_listener("127.0.0.1:0".parse().unwrap()).unwrap();
        assert!(c.cache.enabled);
        assert_eq!(c.cache.max_bytes, 256 << 20);
        assert_eq!(c.cache.max_age(), Duration::from_secs(86_400));
        let file: FileConfig =
            toml::from_str("[cache]\nmax_age_secs = 999999\nmax_bytes = 1024").unwrap();
        assert_eq!(file.cache.max_bytes, 1024);
        assert_eq!(
            file.cache.max_age(),
            Duration::from_secs(86_400),
            "never past 24 h"
        );
    }

    #[test]
    fn data_defaults_and_overrides() {
        let c = Config::build(FileConfig::default(), Overrides::default()).unwrap();
        assert_eq!(c.data_dir, PathBuf::from("data"));
        assert!(!c.debug_events, "the event log is off unless asked for");
        let file: FileConfig =
            toml::from_str("data_dir = \"/var/lib/x\"\ndebug_events = true").unwrap();
        let over = Overrides {
            data_dir: Some("/tmp/y".into()),
            ..Overrides::default()
        };
        let c = Config::build(file, over).unwrap();
        assert_eq!(c.data_dir, PathBuf::from("/tmp/y"));
        assert!(c.debug_events);
    }

    #[test]
    fn unknown_file_keys_are_errors() {
        assert!(toml::from_str::<FileConfig>("lisen = \"x\"").is_err());
    }
}
