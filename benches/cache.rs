//! A cache hit end to end over a socket, beside the origin asked directly and the proxy without the cache
//! (a `no-store` asset), in one criterion group: read the ratios, not the numbers. Loopback only.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use cobrowse_proxy::config::{Config, FileConfig, Overrides};
use cobrowse_proxy::fixture::FixtureOrigin;
use cobrowse_proxy::url_codec::{ProxyMap, SessionId};
use criterion::{criterion_group, criterion_main, Criterion};
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;

type HttpClient = Client<HttpConnector, Full<Bytes>>;

struct Bench {
    client: HttpClient,
    origin_addr: String,
    proxy_addr: String,
    map: ProxyMap,
    _origin: FixtureOrigin,
}

/// A 4 KiB stylesheet-sized asset.
fn asset(key: &str, cc: &str) -> String {
    format!("http://cdn.shop.test/_fx/cache?key={key}&cc={cc}&pad=4096&type=image/png")
}

async fn setup() -> Bench {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/sites");
    let origin = FixtureOrigin::start(root).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxy = listener.local_addr().unwrap();
    let scratch = std::env::temp_dir().join(format!("cobrowse-bench-cache-{}", std::process::id()));
    let over = Overrides {
        listen: Some(proxy),
        resolve: vec![origin.resolve_rule()],
        ca_dir: Some(scratch.join("ca")),
        data_dir: Some(scratch.join("data")),
        ..Overrides::default()
    };
    let config = Config::build(FileConfig::default(), over).unwrap();
    let public = config.public.clone();
    tokio::spawn(cobrowse_proxy::run(
        config,
        listener,
        std::future::pending(),
    ));
    let client: HttpClient = Client::builder(TokioExecutor::new()).build_http();
    let body = r#"{"url": "http://cdn.shop.test/"}"#;
    let req = Request::post(format!("http://{proxy}/api/sessions"))
        .header("host", format!("localhost:{}", proxy.port()))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .unwrap();
    let reply = client.request(req).await.unwrap();
    let json: serde_json::Value =
        serde_json::from_slice(&reply.into_body().collect().await.unwrap().to_bytes()).unwrap();
    let id = SessionId::parse(json["id"].as_str().unwrap()).unwrap();
    Bench {
        client,
        origin_addr: origin.addr.to_string(),
        proxy_addr: proxy.to_string(),
        map: ProxyMap::new(Arc::new(public), id),
        _origin: origin,
    }
}

impl Bench {
    /// GET `target` through the proxy (`via_proxy`) or straight from the origin; returns the body length.
    async fn get(&self, target: &str, via_proxy: bool) -> usize {
        let (addr, url) = if via_proxy {
            let proxied = self
                .map
                .to_proxy(&url::Url::parse(target).unwrap())
                .unwrap();
            (&self.proxy_addr, proxied)
        } else {
            (&self.origin_addr, url::Url::parse(target).unwrap())
        };
        let host = match url.port() {
            Some(p) => format!("{}:{p}", url.host_str().unwrap()),
            None => url.host_str().unwrap().to_owned(),
        };
        let path = &url[url::Position::BeforePath..];
        let req = Request::get(format!("http://{addr}{path}"))
            .header("host", host)
            .body(Full::new(Bytes::new()))
            .unwrap();
        let res = self.client.request(req).await.unwrap();
        assert!(res.status().is_success());
        res.into_body().collect().await.unwrap().to_bytes().len()
    }
}

fn cache_hit_vs_origin(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let bench = rt.block_on(setup());
    let cached = asset("hit", "max-age%3D600");
    let uncached = asset("nostore", "no-store");
    rt.block_on(bench.get(&cached, true));
    let mut group = c.benchmark_group("cache_hit_vs_origin");
    group.bench_function("origin_direct", |b| {
        b.iter(|| rt.block_on(bench.get(&uncached, false)))
    });
    group.bench_function("proxy_cache_hit", |b| {
        b.iter(|| rt.block_on(bench.get(&cached, true)))
    });
    group.bench_function("proxy_uncached", |b| {
        b.iter(|| rt.block_on(bench.get(&uncached, true)))
    });
    group.finish();
}

criterion_group!(benches, cache_hit_vs_origin);
criterion_main!(benches);
