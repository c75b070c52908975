//! CI's short pass of the load test: every variant in two rounds of under a second per side with a few
//! visitors, asserting that requests were made and none failed. No timing is asserted: the machine is
//! shared.

use std::time::Duration;

use cobrowse_proxy::loadtest::{self, Variant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_variant_runs_without_errors() {
    let options = loadtest::Options {
        visitors: 2,
        duration: Duration::from_millis(750),
        rounds: 2,
        warmup: Duration::from_millis(200),
        rate: 200.0,
        variants: Variant::ALL.to_vec(),
        sites: std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/sites"),
    };
    let report = loadtest::run(&options).await.expect("load test runs");
    println!("{}", report.table());
    assert_eq!(report.variants.len(), Variant::ALL.len());
    for v in &report.variants {
        for (side, s) in [("proxied", &v.proxied), ("direct", &v.direct)] {
            let name = v.variant.name();
            assert_eq!(s.errors, 0, "{name} {side}: {:?}", s.error_samples);
            assert!(s.requests > 0, "{name} {side} made no request");
            assert!(s.pages > 0, "{name} {side} loaded no page");
        }
        // The core speed was read before the first round and after each (lol_html passing the page).
        assert_eq!(
            v.core_speed_mb_per_s.len(),
            3,
            "{:?}",
            v.core_speed_mb_per_s
        );
        assert!(v.core_speed_mb_per_s.iter().all(|&s| s > 0.0));
        // Two rounds, the order alternating; each side's figures pool both rounds.
        let order: Vec<bool> = v.rounds.iter().map(|r| r.proxied_first).collect();
        assert_eq!(order, [true, false]);
        for (side, pooled, of_round) in [
            (
                "proxied",
                &v.proxied,
                v.rounds.iter().map(|r| &r.proxied).collect::<Vec<_>>(),
            ),
            (
                "direct",
                &v.direct,
                v.rounds.iter().map(|r| &r.direct).collect(),
            ),
        ] {
            let name = v.variant.name();
            assert!(
                of_round.iter().all(|s| s.requests > 0),
                "{name} {side}: a round made no request"
            );
            let sum: u64 = of_round.iter().map(|s| s.requests).sum();
            assert_eq!(pooled.requests, sum, "{name} {side}");
        }
    }
    // The page names its stylesheets, scripts and images: a visitor loads more than the document.
    let find = |v: Variant| {
        report
            .variants
            .iter()
            .find(|r| r.variant == v)
            .expect("variant ran")
    };
    let rewrite = find(Variant::Rewrite);
    assert!(rewrite.proxied.requests > rewrite.proxied.pages);
    // The page variant loads the document alone.
    let page = find(Variant::Page);
    assert_eq!(page.proxied.requests, page.proxied.pages);
    // Paced visitors send no more than their schedule: 200 pages/s for 2 × 0.75 s is about 300 (back to
    // back, the direct side alone loads thousands).
    let paced = find(Variant::PagePaced);
    assert_eq!(paced.offered_pages_per_s, Some(200.0));
    assert_eq!(paced.direct.requests, paced.direct.pages);
    assert!(
        paced.direct.pages <= 450,
        "{} paced pages",
        paced.direct.pages
    );
    // Every proxied page told the proxy's own timing (`Server-Timing`), the rewrite included; the
    // origin direct tells none.
    for v in [page, paced, rewrite] {
        let name = v.variant.name();
        let (fetch, rewrite) = (v.proxied.page_fetch, v.proxied.page_rewrite);
        let (fetch, rewrite) = (fetch.expect(name), rewrite.expect(name));
        assert!(
            fetch.pages >= v.proxied.pages && rewrite.pages >= v.proxied.pages,
            "{name}"
        );
        assert!(
            v.direct.page_fetch.is_none() && v.direct.page_rewrite.is_none(),
            "{name}"
        );
    }
    assert!(report
        .table()
        .contains("proxied pages by the proxy's Server-Timing"));
    let json = serde_json::to_value(&report).expect("report serialises");
    assert!(json["variants"][0]["proxied"]["page_fetch"]["p50_ms"].is_number());
    assert!(json["variants"][0]["ratio"]["requests_per_s"].is_number());
}

#[tokio::test]
async fn a_paced_rate_that_is_not_a_positive_number_is_refused_before_anything_runs() {
    for rate in [0.0, -1.0, f64::NAN, f64::INFINITY] {
        // No fixture sites here, and the back-to-back variant first: anything that read the page, started
        // the servers or ran `page` would fail on that first, with another message.
        let options = loadtest::Options {
            visitors: 2,
            duration: Duration::from_secs(1),
            rounds: 1,
            warmup: Duration::ZERO,
            rate,
            variants: vec![Variant::Page, Variant::PagePaced],
            sites: std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("no-such-sites"),
        };
        let refused = loadtest::run(&options)
            .await
            .expect_err("a bad rate is refused");
        assert!(
            refused.to_string().contains("page-paced rate"),
            "{rate}: {refused}"
        );
    }
}
