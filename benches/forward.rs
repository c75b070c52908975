//! The forward proxy beside the origin direct, in the same run (read the ratios):
//! - a TLS handshake through CONNECT with a warm leaf cache (the same host again) and a cold one (a new host
//!   each time, so a leaf is signed), against a TLS handshake with the origin itself;
//! - one public asset over a kept-alive intercepted connection, against the same request to the origin.
//!
//! Everything runs on loopback: the fixture origin and the proxy are started here.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use cobrowse_proxy::config::{Config, FileConfig, Overrides};
use cobrowse_proxy::fixture::FixtureOrigin;
use criterion::{criterion_group, criterion_main, Criterion};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::runtime::Runtime;
use tokio_rustls::client::TlsStream;

/// A public, cacheable 4 KiB image: through the proxy it is a cache hit after the first request.
const ASSET: &str = "/_fx/cache?key=bench-asset&cc=public,max-age=3600&type=image/png&pad=4096";

struct Bench {
    origin: FixtureOrigin,
    proxy: SocketAddr,
    proxy_tls: tokio_rustls::TlsConnector,
    origin_tls: tokio_rustls::TlsConnector,
}

fn connector(ca_pem: &str) -> tokio_rustls::TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut ca_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let mut config = cobrowse_proxy::tls::client_config(roots).unwrap();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

async fn start() -> Bench {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/sites");
    let origin = FixtureOrigin::start(root).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxy = listener.local_addr().unwrap();
    let tmp = std::env::temp_dir().join(format!("cobrowse-bench-forward-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    let origin_ca = tmp.join("origin-ca.pem");
    std::fs::write(&origin_ca, &origin.ca_pem).unwrap();
    let over = Overrides {
        listen: Some(proxy),
        resolve: vec![origin.resolve_rule()],
        upstream_ca: vec![origin_ca],
        ca_dir: Some(tmp.join("ca")),
        data_dir: Some(tmp.join("data")),
        ..Overrides::default()
    };
    let config = Config::build(FileConfig::default(), over).unwrap();
    let (ca, _) =
        cobrowse_proxy::forward::ca::CertificateAuthority::load_or_create(&tmp.join("ca")).unwrap();
    let proxy_tls = connector(ca.cert_pem());
    tokio::spawn(cobrowse_proxy::run(
        config,
        listener,
        std::future::pending(),
    ));
    Bench {
        proxy_tls,
        origin_tls: connector(&origin.ca_pem),
        origin,
        proxy,
    }
}

async fn tunnel(proxy: SocketAddr, authority: &str) -> TcpStream {
    let mut s = TcpStream::connect(proxy).await.unwrap();
    s.set_nodelay(true).unwrap();
    let head = format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n\r\n");
    s.write_all(head.as_bytes()).await.unwrap();
    let mut got = Vec::new();
    let mut byte = [0u8; 1];
    while !got.ends_with(b"\r\n\r\n") {
        assert_eq!(s.read(&mut byte).await.unwrap(), 1, "proxy closed");
        got.push(byte[0]);
    }
    assert!(got.starts_with(b"HTTP/1.1 200"));
    s
}

async fn tls(
    connector: &tokio_rustls::TlsConnector,
    io: TcpStream,
    host: &str,
) -> TlsStream<TcpStream> {
    let name = rustls::pki_types::ServerName::try_from(host.to_owned()).unwrap();
    connector.connect(name, io).await.unwrap()
}

type Sender = hyper::client::conn::http1::SendRequest<Empty<Bytes>>;

async fn sender(io: TlsStream<TcpStream>) -> Sender {
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .unwrap();
    tokio::spawn(conn);
    sender
}

async fn fetch(sender: &mut Sender, host: &str) -> usize {
    let req = http::Request::get(ASSET)
        .header("host", host)
        .body(Empty::new())
        .unwrap();
    sender.ready().await.unwrap();
    let response = sender.send_request(req).await.unwrap();
    assert!(response.status().is_success());
    response
        .into_body()
        .collect()
        .await
        .unwrap()
        .to_bytes()
        .len()
}

fn handshakes(c: &mut Criterion) {
    let rt = Runtime::new().unwrap();
    let bench = rt.block_on(start());
    let origin = bench.origin.addr;
    let mut group = c.benchmark_group("forward_tls_handshake");
    group.bench_function("origin_direct", |b| {
        b.iter(|| {
            rt.block_on(async {
                let io = TcpStream::connect(origin).await.unwrap();
                tls(&bench.origin_tls, io, "cdn.shop.test").await
            })
        })
    });
    group.bench_function("proxy_warm_leaf", |b| {
        b.iter(|| {
            rt.block_on(async {
                let io = tunnel(bench.proxy, "cdn.shop.test:443").await;
                tls(&bench.proxy_tls, io, "cdn.shop.test").await
            })
        })
    });
    let fresh = AtomicU64::new(0);
    group.bench_function("proxy_cold_leaf", |b| {
        b.iter(|| {
            let host = format!("h{}.cold.test", fresh.fetch_add(1, Ordering::Relaxed));
            rt.block_on(async {
                let io = tunnel(bench.proxy, &format!("{host}:443")).await;
                tls(&bench.proxy_tls, io, &host).await
            })
        })
    });
    group.finish();
}

fn assets(c: &mut Criterion) {
    let rt = Runtime::new().unwrap();
    let bench = rt.block_on(start());
    let mut direct = rt.block_on(async {
        let io = TcpStream::connect(bench.origin.addr).await.unwrap();
        sender(tls(&bench.origin_tls, io, "cdn.shop.test").await).await
    });
    let mut proxied = rt.block_on(async {
        let io = tunnel(bench.proxy, "cdn.shop.test:443").await;
        sender(tls(&bench.proxy_tls, io, "cdn.shop.test").await).await
    });
    let direct_bytes = rt.block_on(fetch(&mut direct, "cdn.shop.test"));
    let proxied_bytes = rt.block_on(fetch(&mut proxied, "cdn.shop.test"));
    assert_eq!(direct_bytes, proxied_bytes, "the same asset both ways");
    let mut group = c.benchmark_group("forward_asset_keepalive");
    group.bench_function("origin_direct", |b| {
        b.iter(|| rt.block_on(fetch(&mut direct, "cdn.shop.test")))
    });
    group.bench_function("through_forward_proxy", |b| {
        b.iter(|| rt.block_on(fetch(&mut proxied, "cdn.shop.test")))
    });
    group.finish();
}

criterion_group!(benches, handshakes, assets);
criterion_main!(benches);
