//! Bodies stream: a rewritten page's first bytes arrive before the upstream has finished, and a 100 MB
//! download passes with flat memory. (Its own test binary, so no other test shares the process's memory.)
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use http::{Method, StatusCode};
use http_body_util::BodyExt;

fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[tokio::test]
async fn streaming_first_bytes_then_a_100_mb_download_with_flat_memory() {
    let stack = support::start().await;
    let (id, _) = stack.session("https://www.shop.test/").await;

    // A page sent in five parts, 400 ms apart: the first rewritten part must arrive on its own.
    let url = stack.proxied(
        &id,
        "https://www.shop.test/_fx/slow?parts=5&delay_ms=400&type=text/html",
    );
    let response = stack.send(Method::GET, &url, &[], "").await;
    assert_eq!(response.status(), StatusCode::OK);
    let mut body = response.into_body();
    let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
    let first = String::from_utf8_lossy(&first);
    assert!(
        first.contains("id=first") && first.contains("agent.js"),
        "{first}"
    );
    assert!(
        !first.contains("part 4"),
        "the proxy waited for the whole body: {first}"
    );
    let rest = body.collect().await.unwrap().to_bytes();
    assert!(String::from_utf8_lossy(&rest).contains("part 4"));

    // 100 MiB through the proxy; the process's peak memory must not grow with it.
    let before = peak_rss_kib();
    let url = stack.proxied(&id, "https://cdn.shop.test/_fx/big?mb=100");
    let response = stack.send(Method::GET, &url, &[], "").await;
    assert_eq!(response.status(), StatusCode::OK);
    let mut body = response.into_body();
    let mut total = 0u64;
    while let Some(frame) = body.frame().await {
        total += frame.unwrap().data_ref().map_or(0, |d| d.len() as u64);
    }
    assert_eq!(total, 100 << 20);
    let grown_mib = (peak_rss_kib().saturating_sub(before)) / 1024;
    eprintln!("peak RSS grew by {grown_mib} MiB while streaming 100 MiB");
    assert!(
        grown_mib < 40,
        "memory grew by {grown_mib} MiB: the body was buffered"
    );
    stack.stop().await;
}
