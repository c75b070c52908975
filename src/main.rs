//! The `cobrowse-proxy` command: parse the CLI, build the configuration, run. Nothing else lives here.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use cobrowse_proxy::config::{Config, FileConfig, Overrides};

#[derive(Parser)]
#[command(
    name = "cobrowse-proxy",
    version,
    about = "A universal co-browsing proxy"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the proxy: console, API, relay and every proxied site on one listener.
    Serve(Box<ServeArgs>),
    /// Ask a running server for a session and print the visitor and agent links.
    Link {
        /// The page to co-browse.
        url: String,
        /// The server's public URL.
        #[arg(long, env = "COBROWSE_SERVER", default_value = "http://localhost:8080")]
        server: String,
        /// API token, when the server requires one.
        #[arg(long, env = "COBROWSE_API_TOKEN")]
        api_token: Option<String>,
    },
    /// Measure the proxy against the fixture origin direct, on loopback (see `docs/PERFORMANCE.md`).
    Loadtest(LoadtestArgs),
    /// The local certificate authority used to intercept TLS in the forward proxy.
    Ca {
        #[command(subcommand)]
        command: CaCommand,
        /// Folder holding `ca.pem` and its private key.
        #[arg(long, env = "COBROWSE_CA_DIR", default_value = "certs", global = true)]
        dir: PathBuf,
    },
}

#[derive(Subcommand)]
enum CaCommand {
    /// Create the CA in the folder unless it exists.
    Init,
    /// Print the CA certificate's path (creating the CA first if needed), for `curl --cacert`.
    Path,
    /// Print the CA key's SPKI hash, for Chromium's `--ignore-certificate-errors-spki-list`.
    Spki,
}

#[derive(Args)]
struct ServeArgs {
    /// Address to listen on [default: 127.0.0.1:8080].
    #[arg(long, env = "COBROWSE_LISTEN")]
    listen: Option<SocketAddr>,
    /// The proxy's own origin [default: http://localhost:<port>]; sites are served on its subdomains.
    #[arg(long, env = "COBROWSE_PUBLIC_URL")]
    public_url: Option<String>,
    /// Map a host or *.suffix to an address for upstream connections: PATTERN=IP or PATTERN=IP:PORT.
    #[arg(long, env = "COBROWSE_RESOLVE", value_delimiter = ',')]
    resolve: Vec<String>,
    /// Extra trusted root certificates (PEM) for upstream TLS.
    #[arg(long, env = "COBROWSE_UPSTREAM_CA", value_delimiter = ',')]
    upstream_ca: Vec<PathBuf>,
    /// Token required for the API (mandatory when listening off loopback).
    #[arg(long, env = "COBROWSE_API_TOKEN")]
    api_token: Option<String>,
    /// Folder of the local CA for TLS interception (created on first start) [default: certs].
    #[arg(long, env = "COBROWSE_CA_DIR")]
    ca_dir: Option<PathBuf>,
    /// Hosts the forward proxy tunnels blind instead of intercepting (HOST or *.suffix; repeatable).
    #[arg(long, env = "COBROWSE_NO_INTERCEPT", value_delimiter = ',')]
    no_intercept: Vec<String>,
    /// Only these target hosts may be co-browsed or proxied to (HOST or *.suffix; repeatable).
    #[arg(long, env = "COBROWSE_ALLOW_TARGET", value_delimiter = ',')]
    allow_target: Vec<String>,
    /// Target hosts never co-browsed nor proxied to; wins over --allow-target (repeatable).
    #[arg(long, env = "COBROWSE_DENY_TARGET", value_delimiter = ',')]
    deny_target: Vec<String>,
    /// Folder of the embedded store: visitor metadata and the debug event log [default: data].
    #[arg(long, env = "COBROWSE_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Keep the content-free event log (names, sizes, times; 7 days) for debugging this deployment.
    #[arg(long, env = "COBROWSE_DEBUG_EVENTS")]
    debug_events: bool,
    /// Scale-out: the NATS server(s) all nodes share (docs/SCALING.md); off when unset.
    #[arg(long, env = "COBROWSE_NATS_URL")]
    nats_url: Option<String>,
    /// Scale-out: the credential signing key every node shares (at least 32 bytes).
    #[arg(long, env = "COBROWSE_SIGNING_KEY", hide_env_values = true)]
    signing_key: Option<String>,
    /// Scale-out: PostgreSQL for visitor metadata and the event log, instead of the embedded store.
    #[arg(long, env = "COBROWSE_POSTGRES_URL", hide_env_values = true)]
    postgres_url: Option<String>,
    /// Scale-out: this node's name in logs and on the engine [default: host name and process id].
    #[arg(long, env = "COBROWSE_NODE_NAME")]
    node_name: Option<String>,
    /// TOML configuration file; every flag has a key of the same name (with underscores; the
    /// scale-out ones under [cluster]).
    #[arg(long, env = "COBROWSE_CONFIG")]
    config: Option<PathBuf>,
}

#[derive(Args)]
struct LoadtestArgs {
    /// Concurrent virtual visitors, each loading a page and its assets over up to six connections.
    #[arg(long, default_value_t = 8)]
    visitors: usize,
    /// Seconds measured per side (proxied and direct) in each round of a variant.
    #[arg(long, default_value_t = 4.0)]
    duration: f64,
    /// Rounds of both sides per variant, alternating which goes first; ratios are their medians.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=100))]
    rounds: u32,
    /// Unmeasured seconds before each side of the first round (connections made, caches filled).
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// Pages per second offered in all by the page-paced variant's visitors (on each side).
    #[arg(long, default_value_t = 500.0)]
    rate: f64,
    /// page, page-paced, cache-hit, rewrite, forward, forward-tls, cache-cold, cache-warm or all
    /// (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "all")]
    variant: Vec<String>,
    /// Also measure the proxy's memory (a proxy process of its own): idle, idle connections, streaming.
    #[arg(long)]
    memory: bool,
    /// Idle keep-alive connections held for the memory measurement.
    #[arg(long, default_value_t = 10_000)]
    idle_connections: usize,
    /// MiB streamed through each proxy mode for the memory measurement.
    #[arg(long, default_value_t = 1024)]
    stream_mib: u64,
    /// The fixture sites.
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/sites"))]
    sites: PathBuf,
    /// Print the report as JSON instead of a table.
    #[arg(long)]
    json: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The load test's proxy would log every request it measures; its figures are of the proxy, not of
    // writing access logs to a terminal, so it logs warnings only unless COBROWSE_LOG says otherwise.
    let default_level = match cli.command {
        Command::Loadtest(_) => "warn",
        _ => "info",
    };
    init_logging(default_level);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .on_thread_park(cobrowse_proxy::busy::parked)
        .on_thread_unpark(cobrowse_proxy::busy::unparked)
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(&format!("cannot start the runtime: {e}")),
    };
    let result = match cli.command {
        Command::Serve(args) => runtime.block_on(serve(*args)),
        Command::Link {
            url,
            server,
            api_token,
        } => runtime.block_on(cobrowse_proxy_cli::link(
            &url,
            &server,
            api_token.as_deref(),
        )),
        Command::Loadtest(args) => runtime.block_on(loadtest(args)),
        Command::Ca { command, dir } => ca(command, &dir),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => fail(&message),
    }
}

async fn serve(args: ServeArgs) -> Result<(), String> {
    let file = match &args.config {
        Some(path) => FileConfig::load(path).map_err(|e| e.to_string())?,
        None => FileConfig::default(),
    };
    let overrides = Overrides {
        listen: args.listen,
        public_url: args.public_url,
        resolve: args.resolve,
        upstream_ca: args.upstream_ca,
        api_token: args.api_token,
        ca_dir: args.ca_dir,
        no_intercept: args.no_intercept,
        allow_targets: args.allow_target,
        deny_targets: args.deny_target,
        data_dir: args.data_dir,
        debug_events: args.debug_events,
        nats_url: args.nats_url,
        signing_key: args.signing_key,
        postgres_url: args.postgres_url,
        node_name: args.node_name,
    };
    let config = Config::build(file, overrides).map_err(|e| e.to_string())?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", config.listen))?;
    eprintln!(
        "cobrowse-proxy listening on {}; console at {}/",
        config.listen,
        config.public.origin()
    );
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    cobrowse_proxy::run(config, listener, shutdown)
        .await
        .map_err(|e| e.to_string())
}

async fn loadtest(args: LoadtestArgs) -> Result<(), String> {
    use cobrowse_proxy::loadtest::{self, Variant};
    let mut variants = Vec::new();
    for name in &args.variant {
        if name == "all" {
            variants.extend(Variant::ALL);
        } else if name != "none" {
            variants.push(name.parse::<Variant>()?);
        }
    }
    let seconds = |s: f64| std::time::Duration::try_from_secs_f64(s).map_err(|e| e.to_string());
    let options = loadtest::Options {
        visitors: args.visitors.max(1),
        duration: seconds(args.duration)?,
        rounds: args.rounds as usize,
        warmup: seconds(args.warmup)?,
        rate: args.rate,
        variants,
        sites: args.sites.clone(),
    };
    let mut report = loadtest::run(&options).await.map_err(|e| e.to_string())?;
    if args.memory {
        let exe = std::env::current_exe().map_err(|e| format!("cannot find this binary: {e}"))?;
        let memory = loadtest::MemoryOptions {
            proxy_exe: exe,
            sites: args.sites,
            idle_connections: args.idle_connections,
            stream_mib: args.stream_mib,
        };
        report.memory = Some(
            loadtest::measure_memory(&memory)
                .await
                .map_err(|e| e.to_string())?,
        );
    }
    if args.json {
        let json = serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?;
        println!("{json}");
    } else {
        print!("{}", report.table());
    }
    Ok(())
}

fn ca(command: CaCommand, dir: &std::path::Path) -> Result<(), String> {
    use cobrowse_proxy::forward::ca::{cert_path, CertificateAuthority};
    let (authority, created) =
        CertificateAuthority::load_or_create(dir).map_err(|e| e.to_string())?;
    let path = cert_path(dir);
    let path = std::fs::canonicalize(&path).unwrap_or(path);
    match command {
        CaCommand::Init if created => println!("created {}", path.display()),
        CaCommand::Init => println!("already present: {}", path.display()),
        CaCommand::Path => {
            if created {
                eprintln!("created the local CA");
            }
            println!("{}", path.display());
        }
        CaCommand::Spki => println!("{}", authority.spki_sha256()),
    }
    Ok(())
}

fn init_logging(default_level: &str) {
    use tracing_subscriber::util::SubscriberInitExt;
    let directives = std::env::var("COBROWSE_LOG").unwrap_or_else(|_| default_level.to_owned());
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    cobrowse_proxy::logging::subscriber(&directives, std::io::stderr, ansi).init();
}

fn fail(message: &str) -> ExitCode {
    eprintln!("cobrowse-proxy: {message}");
    ExitCode::FAILURE
}

/// The `link` subcommand: a tiny API client.
mod cobrowse_proxy_cli {
    use http_body_util::{BodyExt, Full};
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;

    pub async fn link(url: &str, server: &str, token: Option<&str>) -> Result<(), String> {
        let client = Client::builder(TokioExecutor::new()).build_http::<Full<bytes::Bytes>>();
        let body = serde_json::json!({ "url": url }).to_string();
        let endpoint = format!("{}/api/sessions", server.trim_end_matches('/'));
        let mut req =
            http::Request::post(endpoint.as_str()).header("content-type", "application/json");
        if let Some(token) = token {
            req = req.header("authorization", format!("Bearer {token}"));
        }
        let req = req
            .body(Full::new(bytes::Bytes::from(body)))
            .map_err(|e| format!("bad server URL {endpoint}: {e}"))?;
        let response = client
            .request(req)
            .await
            .map_err(|e| format!("cannot reach {endpoint}: {e}"))?;
        let status = response.status();
        let bytes = response
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        let json: serde_json::Value = serde_json::from_slice(&bytes)
            .map_err(|_| format!("server answered {status} with no JSON"))?;
        if !status.is_success() {
            return Err(json["error"]
                .as_str()
                .unwrap_or("request failed")
                .to_owned());
        }
        println!(
            "visitor: {}",
            json["visitor_url"].as_str().unwrap_or_default()
        );
        println!(
            "agent:   {}",
            json["agent_url"].as_str().unwrap_or_default()
        );
        println!(
            "expires: {}",
            json["expires_at"].as_str().unwrap_or_default()
        );
        Ok(())
    }
}
