//! The fixture site in real headless Chromium, directly and through the proxy: every request the proxied page
//! makes goes to proxy hosts, the page's own feature checks pass as they do directly, the agent is present,
//! and there are no new console errors.
//!
//! Needs Debian's `chromium` and `tests/browser/node_modules` (`npm ci --prefix tests/browser`); `.ci/run`
//! installs both. Without them the test says so and skips, unless `COBROWSE_REQUIRE_BROWSER=1` (CI).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::path::Path;
use std::time::Duration;

fn browser_tools_missing() -> Option<String> {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    let modules =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser/node_modules/playwright-core");
    if !Path::new(&chromium).exists() {
        return Some(format!("{chromium} is missing (apt-get install chromium)"));
    }
    if !modules.exists() {
        return Some(
            "tests/browser/node_modules is missing (npm ci --prefix tests/browser)".into(),
        );
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fixture_site_works_through_the_proxy_as_it_does_directly() {
    if let Some(missing) = browser_tools_missing() {
        assert!(
            std::env::var("COBROWSE_REQUIRE_BROWSER").is_err(),
            "browser test required but {missing}"
        );
        eprintln!("SKIPPED browser test: {missing}");
        return;
    }
    let stack = support::start().await;
    let (session, visitor) = stack.session("https://www.shop.test/").await;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser/check_site.mjs");
    let run = tokio::process::Command::new("node")
        .arg(&script)
        .arg(stack.origin.addr.port().to_string())
        .arg("https://www.shop.test/")
        .arg(&visitor)
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(120), run)
        .await
        .expect("browser run within 120 s")
        .expect("node starts");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let result: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
        panic!(
            "bad output ({e}): {stdout}\n{}",
            String::from_utf8_lossy(&output.stderr)
        )
    });
    assert!(
        result.get("error").is_none(),
        "browser run failed: {}",
        result["error"]
    );
    let direct = &result["direct"];
    let proxied = &result["proxied"];

    // The page's own checks: all pass directly, and the same through the proxy.
    let direct_checks = direct["checks"].as_object().expect("direct checks");
    assert!(
        direct_checks.len() >= 15,
        "the fixture runs its checks: {direct_checks:?}"
    );
    let failed_direct: Vec<_> = direct_checks
        .iter()
        .filter(|(_, v)| **v != true)
        .map(|(k, _)| k)
        .collect();
    assert!(
        failed_direct.is_empty(),
        "fixture checks fail even directly: {failed_direct:?}"
    );
    assert_eq!(
        &proxied["checks"], &direct["checks"],
        "checks through the proxy differ from direct"
    );

    // The agent identified the session.
    assert_eq!(proxied["agent"], session.as_str());
    assert!(direct["agent"].is_null());

    // Every request went to the proxy's own hosts.
    let port = format!(":{}", stack.proxy.port());
    let requests: Vec<&str> = proxied["requests"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r.as_str())
        .collect();
    assert!(requests.len() >= 15, "{requests:?}");
    let escaped: Vec<&&str> = requests
        .iter()
        .filter(|u| !(u.starts_with("data:") || u.starts_with("blob:")))
        .filter(|u| {
            let parsed = url::Url::parse(u).unwrap();
            let host = parsed.host_str().unwrap_or_default();
            !((host == "localhost" || host.ends_with(".localhost")) && u.contains(&port))
        })
        .collect();
    assert!(
        escaped.is_empty(),
        "requests escaped the proxy: {escaped:?}"
    );

    // No console errors the direct load did not have (compared with their URLs masked, since the same error
    // names proxy URLs in one run and target URLs in the other).
    let known: Vec<String> = errors(direct);
    let new_errors: Vec<String> = errors(proxied)
        .into_iter()
        .filter(|e| !known.contains(e))
        .collect();
    assert!(
        new_errors.is_empty(),
        "new console errors through the proxy: {new_errors:?}"
    );
    stack.stop().await;
}

fn errors(run: &serde_json::Value) -> Vec<String> {
    run["consoleErrors"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e.as_str())
        .map(|e| {
            e.split_whitespace()
                .map(|w| {
                    if w.starts_with("http://") || w.starts_with("https://") {
                        "<url>"
                    } else {
                        w
                    }
                })
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect()
}
