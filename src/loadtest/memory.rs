//! Resident memory of the proxy: idle, per idle keep-alive connection, and while a large body streams
//! through the rewriting and the forward proxy. The proxy runs as its own process (this binary's `serve`),
//! so its figures hold nothing of the load generator or the fixture origin.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use http_body_util::{BodyExt, Empty};
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::stack::{create_session, scratch_dir, write_origin_ca};
use super::target::{Target, Via};
use super::LoadError;
use crate::fixture::FixtureOrigin;
use crate::url_codec::{ProxyMap, PublicOrigin};

/// How long the child proxy may take to start listening.
const START_LIMIT: Duration = Duration::from_secs(20);
/// Idle connections opened at once (the listener's backlog is larger).
const OPEN_CONCURRENCY: usize = 200;
/// How often RSS is sampled while a body streams.
const SAMPLE_EVERY: Duration = Duration::from_millis(50);
/// Longest a streamed body may take.
const STREAM_LIMIT: Duration = Duration::from_secs(300);

#[derive(Debug, Clone)]
pub struct MemoryOptions {
    /// The `cobrowse-proxy` binary to run as the measured proxy.
    pub proxy_exe: PathBuf,
    pub sites: PathBuf,
    pub idle_connections: usize,
    /// Size of the streamed body, in MiB.
    pub stream_mib: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct MemoryReport {
    /// Right after start-up.
    pub idle_kib: u64,
    /// After a short page load warm-up (allocator pools and caches in use).
    pub warm_kib: u64,
    pub idle_connections_requested: usize,
    pub idle_connections_open: usize,
    pub with_connections_kib: u64,
    pub per_connection_bytes: f64,
    pub after_close_kib: u64,
    pub rewrite_stream: StreamReport,
    pub forward_stream: StreamReport,
}

/// One large body streamed through the proxy, RSS sampled all along.
#[derive(Debug, Clone, Serialize)]
pub struct StreamReport {
    pub mib: u64,
    pub received_bytes: u64,
    pub seconds: f64,
    pub before_kib: u64,
    pub peak_kib: u64,
    pub after_kib: u64,
}

impl MemoryReport {
    pub(super) fn table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "memory (proxy process RSS)");
        let _ = writeln!(out, "  idle after start   {:>8} KiB", self.idle_kib);
        let _ = writeln!(out, "  idle after warm-up {:>8} KiB", self.warm_kib);
        let _ = writeln!(
            out,
            "  {} of {} idle keep-alive connections: {} KiB, {:.0} bytes each; {} KiB once closed",
            self.idle_connections_open,
            self.idle_connections_requested,
            self.with_connections_kib,
            self.per_connection_bytes,
            self.after_close_kib
        );
        for (name, s) in [
            ("rewrite", &self.rewrite_stream),
            ("forward", &self.forward_stream),
        ] {
            let _ = writeln!(
                out,
                "  {} MiB through {name}: {:.1} s ({:.0} MB/s), RSS {} KiB before, peak {} KiB, {} KiB after",
                s.mib,
                s.seconds,
                s.received_bytes as f64 / s.seconds.max(1e-9) / 1e6,
                s.before_kib,
                s.peak_kib,
                s.after_kib
            );
        }
        out
    }
}

/// The resident set of process `pid`, in KiB (`VmRSS` in `/proc/PID/status`).
pub fn rss_kib(pid: u32) -> Result<u64, LoadError> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| LoadError::Setup("no VmRSS in /proc status".into()))
}

pub async fn measure(opts: &MemoryOptions) -> Result<MemoryReport, LoadError> {
    // Each process needs a descriptor per idle connection; the hard limit is what we may raise to.
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let origin = FixtureOrigin::start(opts.sites.clone()).await?;
    let scratch = scratch_dir().join("memory");
    let result = with_origin(opts, &origin, &scratch).await;
    let _ = std::fs::remove_dir_all(&scratch);
    origin.stop().await;
    result
}

async fn with_origin(
    opts: &MemoryOptions,
    origin: &FixtureOrigin,
    scratch: &Path,
) -> Result<MemoryReport, LoadError> {
    let addr = free_port().await?;
    let mut child = spawn_proxy(opts, origin, scratch, addr)?;
    let result = measure_child(opts, &child, addr).await;
    // Ends only the process started above, by its handle.
    let _ = child.kill().await;
    result
}

async fn free_port() -> Result<SocketAddr, LoadError> {
    let probe = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    Ok(probe.local_addr()?)
}

fn spawn_proxy(
    opts: &MemoryOptions,
    origin: &FixtureOrigin,
    scratch: &Path,
    addr: SocketAddr,
) -> Result<tokio::process::Child, LoadError> {
    let origin_ca = write_origin_ca(scratch, origin)?;
    let config = scratch.join("proxy.toml");
    // Room for the idle connections beside the measuring ones.
    let cap = opts.idle_connections + 1000;
    std::fs::write(&config, format!("[limits]\nmax_connections = {cap}\n"))?;
    let child = tokio::process::Command::new(&opts.proxy_exe)
        .arg("serve")
        .arg("--listen")
        .arg(addr.to_string())
        .arg("--resolve")
        .arg(origin.resolve_rule())
        .arg("--upstream-ca")
        .arg(&origin_ca)
        .arg("--ca-dir")
        .arg(scratch.join("proxy-ca"))
        .arg("--config")
        .arg(&config)
        .env("COBROWSE_LOG", "error")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    Ok(child)
}

async fn measure_child(
    opts: &MemoryOptions,
    child: &tokio::process::Child,
    addr: SocketAddr,
) -> Result<MemoryReport, LoadError> {
    let pid = child
        .id()
        .ok_or_else(|| LoadError::Setup("proxy exited at once".into()))?;
    wait_listening(addr).await?;
    let public = Arc::new(
        PublicOrigin::parse(&format!("http://localhost:{}", addr.port()))
            .map_err(|e| LoadError::Setup(e.to_string()))?,
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let idle_kib = rss_kib(pid)?;
    let site = format!("http://{}/", super::SITE);
    let session = create_session(addr, &public, &site).await?;
    let map = ProxyMap::new(public.clone(), session);
    let proxied = map
        .to_proxy(&url::Url::parse(&site).map_err(|e| LoadError::Setup(e.to_string()))?)
        .ok_or_else(|| LoadError::Setup("no proxy host".into()))?;
    let host = super::stack::authority(&proxied)?;
    let target = Arc::new(Target {
        addr,
        host: host.clone(),
        via: Via::Plain,
        also: vec![format!("localhost:{}", addr.port())],
        bust: false,
        assets: true,
    });
    let warm = super::Load {
        target: &target,
        path: "/",
        visitors: 4,
        rate: None,
        duration: Duration::from_secs(2),
    };
    let _ = warm.run().await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let warm_kib = rss_kib(pid)?;
    let (open, with_connections_kib, after_close_kib) =
        idle_connections(addr, pid, opts.idle_connections).await?;
    let per_connection_bytes = if open > 0 {
        (with_connections_kib.saturating_sub(warm_kib) * 1024) as f64 / open as f64
    } else {
        0.0
    };
    let path = format!("/_fx/big?mb={}&type=text/html", opts.stream_mib);
    let rewrite_stream = stream(addr, pid, &host, &path, false, opts.stream_mib).await?;
    let forward_stream = stream(addr, pid, super::SITE, &path, true, opts.stream_mib).await?;
    Ok(MemoryReport {
        idle_kib,
        warm_kib,
        idle_connections_requested: opts.idle_connections,
        idle_connections_open: open,
        with_connections_kib,
        per_connection_bytes,
        after_close_kib,
        rewrite_stream,
        forward_stream,
    })
}

async fn wait_listening(addr: SocketAddr) -> Result<(), LoadError> {
    let started = Instant::now();
    while started.elapsed() < START_LIMIT {
        if TcpStream::connect(addr).await.is_ok() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(LoadError::Timeout("proxy start"))
}

/// Opens `n` connections that each complete one request (`/healthz`) and then stay open, idle; returns
/// how many stayed open, the RSS with them, and the RSS a second after closing them.
async fn idle_connections(
    addr: SocketAddr,
    pid: u32,
    n: usize,
) -> Result<(usize, u64, u64), LoadError> {
    let request = format!(
        "GET /healthz HTTP/1.1\r\nHost: localhost:{}\r\n\r\n",
        addr.port()
    );
    let request = request.as_str();
    let opened: Vec<TcpStream> = futures_util::stream::iter(0..n)
        .map(|_| async move {
            let mut s = TcpStream::connect(addr).await.ok()?;
            s.write_all(request.as_bytes()).await.ok()?;
            let mut buf = [0u8; 1024];
            let got = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf)).await;
            matches!(got, Ok(Ok(1..))).then_some(s)
        })
        .buffer_unordered(OPEN_CONCURRENCY)
        .filter_map(|s| async move { s })
        .collect()
        .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let with = rss_kib(pid)?;
    let open = still_open(&opened).await;
    drop(opened);
    tokio::time::sleep(Duration::from_secs(1)).await;
    Ok((open, with, rss_kib(pid)?))
}

/// Connections the proxy has not closed (a read would see the end of stream at once if it had).
async fn still_open(streams: &[TcpStream]) -> usize {
    let mut open = 0;
    for s in streams {
        let mut buf = [0u8; 1];
        match s.try_read(&mut buf) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => open += 1,
            _ => {}
        }
    }
    open
}

/// Streams one `mib` MiB body (`path` on `host`) through the proxy at `addr`, sampling its RSS.
async fn stream(
    addr: SocketAddr,
    pid: u32,
    host: &str,
    path: &str,
    absolute: bool,
    mib: u64,
) -> Result<StreamReport, LoadError> {
    let before_kib = rss_kib(pid)?;
    let tcp = TcpStream::connect(addr).await?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp)).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let uri = if absolute {
        format!("http://{host}{path}")
    } else {
        path.to_owned()
    };
    let req = http::Request::get(uri)
        .header("host", host)
        .body(Empty::<Bytes>::new())
        .map_err(|e| LoadError::Setup(e.to_string()))?;
    let started = Instant::now();
    let mut peak_kib = before_kib;
    let mut received: u64 = 0;
    let transfer = async {
        let res = sender.send_request(req).await?;
        if !res.status().is_success() {
            return Err(LoadError::Status(res.status().as_u16(), path.to_owned()));
        }
        let mut body = res.into_body();
        let mut sampled = Instant::now();
        while let Some(frame) = body.frame().await {
            if let Ok(data) = frame?.into_data() {
                received += data.len() as u64;
            }
            if sampled.elapsed() >= SAMPLE_EVERY {
                peak_kib = peak_kib.max(rss_kib(pid)?);
                sampled = Instant::now();
            }
        }
        Ok(())
    };
    tokio::time::timeout(STREAM_LIMIT, transfer)
        .await
        .map_err(|_| LoadError::Timeout("streamed body"))??;
    let seconds = started.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_millis(300)).await;
    Ok(StreamReport {
        mib,
        received_bytes: received,
        seconds,
        before_kib,
        peak_kib,
        after_kib: rss_kib(pid)?,
    })
}
