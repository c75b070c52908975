//! The fixture site in real headless Chromium, directly and through the proxy: every request the proxied page
//! makes goes to proxy hosts, the page's own feature checks pass as they do directly, the agent is present,
//! and there are no new console errors.
//!
//! Needs Debian's `chromium` and `tests/browser/node_modules` (`npm ci --prefix tests/browser`); `.ci/run`
//! installs both. Without them the test says so and skips, unless `COBROWSE_REQUIRE_BROWSER=1` (CI).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use support::browser::{browser_ready, node};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fixture_site_works_through_the_proxy_as_it_does_directly() {
    if browser_ready() {
        direct_and_proxied_agree("https://www.shop.test/").await;
    }
}

/// Script-built URLs (the in-page runtime's job): fetch, XHR, WebSocket, EventSource, Worker, element
/// setters, innerHTML, styles, history, postMessage, cookies, and reads of the page's own URLs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn script_built_urls_stay_inside_the_proxy_and_read_back_as_the_site() {
    if browser_ready() {
        direct_and_proxied_agree("https://www.shop.test/js.html").await;
    }
}

/// Loads `page` directly and through the proxy: all its checks pass both ways, the agent is present only
/// through the proxy, no proxied request leaves the proxy's hosts, and there are no new console errors.
async fn direct_and_proxied_agree(page: &str) {
    let stack = support::start().await;
    let (session, visitor) = stack.session(page).await;
    let args = [
        stack.origin.addr.port().to_string(),
        page.to_owned(),
        visitor,
    ];
    let result = node("check_site.mjs", &args).await;
    assert!(
        result.get("error").is_none(),
        "browser run failed: {}",
        result["error"]
    );
    let direct = &result["direct"];
    let proxied = &result["proxied"];
    // Reported, never asserted: timings on a shared machine are not a pass/fail criterion.
    eprintln!(
        "{page}: load timing direct {} proxied {}",
        direct["timing"], proxied["timing"]
    );

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
        "fixture checks fail even directly: {failed_direct:?}; why: {}; console errors: {}; failed \
         responses: {}",
        direct["why"],
        direct["consoleErrors"],
        direct["failedResponses"]
    );
    assert_eq!(
        &proxied["checks"], &direct["checks"],
        "checks through the proxy differ from direct; why through the proxy: {}",
        proxied["why"]
    );

    // The runtime hooked its APIs and met no URL it could not map.
    assert!(
        proxied["runtime"]["hooked"].as_u64().unwrap_or(0) > 40,
        "{}",
        proxied["runtime"]
    );
    assert_eq!(
        proxied["runtime"]["unmapped"], 0,
        "URLs the runtime could not map"
    );
    assert!(direct["runtime"].is_null());

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
    assert!(requests.len() >= 10, "{requests:?}");
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
        "new console errors through the proxy: {new_errors:?}\nfailed responses direct: {}\nproxied: {}",
        direct["failedResponses"],
        proxied["failedResponses"]
    );
    stack.stop().await;
}

/// Runs `check_cookies.mjs` over `steps` and returns what each step showed.
async fn browse(steps: serde_json::Value) -> Vec<serde_json::Value> {
    let shown = node("check_cookies.mjs", &[steps.to_string()]).await;
    shown.as_array().cloned().unwrap_or_default()
}

/// The Cookie header an echo page reported.
fn cookie_seen(shown: &serde_json::Value) -> String {
    let text = shown
        .as_str()
        .unwrap_or_else(|| panic!("step failed: {shown}"));
    let echo: serde_json::Value =
        serde_json::from_str(text).unwrap_or_else(|_| panic!("not an echo: {text}"));
    echo["headers"]["cookie"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cookies_follow_domain_path_and_host_only_rules_and_never_cross_sites() {
    if !browser_ready() {
        return;
    }
    let stack = support::start().await;
    let (id, _) = stack.session("https://www.shop.test/").await;
    let set = [
        "Set-Cookie:shared=1; Domain=shop.test; Path=/",
        "Set-Cookie:hostonly=2; Path=/",
        "Set-Cookie:account=3; Path=/account",
        "Set-Cookie:fx=5; Path=/_fx",
        "Set-Cookie:foreign=4; Domain=other.test; Path=/",
    ];
    let query = support::header_params(&set);
    let steps = serde_json::json!([
        { "url": stack.proxied(&id, &format!("https://login.shop.test/_fx/respond?type=text/plain&body=set{query}")) },
        { "url": stack.proxied(&id, "https://login.shop.test/_fx/echo") },
        { "url": stack.proxied(&id, "https://www.shop.test/_fx/echo") },
        { "url": stack.proxied(&id, "https://www.other.test/_fx/echo") },
        { "url": format!("{}/", stack.public), "script": "document.cookie = 'console=5; path=/'; document.cookie" },
        { "url": stack.proxied(&id, "https://www.shop.test/_fx/echo") },
        { "url": stack.proxied(&id, "https://www.shop.test/"), "script": "document.cookie" },
    ]);
    let shown = browse(steps).await;
    assert_eq!(shown.len(), 7, "{shown:?}");
    assert_eq!(
        cookie_set(&cookie_seen(&shown[1])),
        cookie_set("fx=5; shared=1; hostonly=2"),
        "the setting host sees its host-only, Domain and matching-Path cookies, not Path=/account"
    );
    assert_eq!(
        cookie_seen(&shown[2]),
        "shared=1",
        "a sibling sees only the Domain cookie"
    );
    assert_eq!(cookie_seen(&shown[3]), "", "another site sees nothing");
    assert_eq!(shown[4], "console=5", "the console's own cookie exists");
    assert_eq!(
        cookie_seen(&shown[5]),
        "shared=1",
        "the console's cookie never reaches a proxied site"
    );
    assert_eq!(
        shown[6], "shared=1",
        "and page script sees the same cookie jar"
    );
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strict_csp_pages_run_the_agent_and_keep_their_protections() {
    if !browser_ready() {
        return;
    }
    let stack = support::start().await;
    let (id, _) = stack.session("https://www.shop.test/").await;
    let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    let body = "<!doctype html><html><head><script nonce=abc>window.pageOk = 1</script>\
                <script>window.unsafeInline = 1</script></head><body>csp</body></html>";
    let page = |csp: &str| {
        stack.proxied(
            &id,
            &format!(
                "https://www.shop.test/_fx/respond?type=text/html&body={}&h={}",
                enc(body),
                enc(&format!("Content-Security-Policy:{csp}"))
            ),
        )
    };
    let probe = "JSON.stringify([!!window.__cobrowse, window.pageOk === 1, window.unsafeInline === undefined])";
    let shown = browse(serde_json::json!([
        { "url": page("script-src 'nonce-abc' 'strict-dynamic'; object-src 'none'; base-uri 'none'"), "script": probe },
        { "url": page("default-src 'self'"), "script": "JSON.stringify([!!window.__cobrowse, window.pageOk === undefined, window.unsafeInline === undefined])" },
    ]))
    .await;
    assert_eq!(
        shown[0], "[true,true,true]",
        "nonce policy: agent runs, nonce'd script runs, inline blocked"
    );
    assert_eq!(
        shown[1], "[true,true,true]",
        "self-only policy: agent runs, inline scripts stay blocked"
    );
    stack.stop().await;
}

fn cookie_set(header: &str) -> std::collections::BTreeSet<String> {
    header
        .split("; ")
        .filter(|c| !c.is_empty())
        .map(str::to_owned)
        .collect()
}

fn errors(run: &serde_json::Value) -> Vec<String> {
    run["consoleErrors"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e.as_str())
        .map(|e| {
            e.split_whitespace()
                .map(|w| if w.contains("://") { "<url>" } else { w })
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect()
}

/// Co-browsing end to end: a visitor context on the proxied page and an agent context on the agent view.
/// Nothing is sent before consent; then the agent sees the page, typing, scrolling, a cross-origin frame,
/// shadow DOM and CSSOM rules, follows navigation across pages and origins; highlight and (granted) click
/// reach the visitor; a click on a masked element is refused; masked content never leaves the page.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_sees_the_visitors_page_live_and_masked_content_never_leaves_it() {
    if !browser_ready() {
        return;
    }
    let stack = support::start().await;
    let body = serde_json::json!({ "url": "https://www.shop.test/cobrowse.html" }).to_string();
    let created = stack
        .request(
            http::Method::POST,
            &format!("{}/api/sessions", stack.public),
            &[("content-type", "application/json")],
            body,
        )
        .await
        .json();
    let visitor = created["visitor_url"].as_str().unwrap().to_owned();
    let agent = created["agent_url"].as_str().unwrap().to_owned();
    let result = node("check_cobrowse.mjs", &[visitor, agent]).await;
    let steps = support::browser::cobrowse_steps(
        &result,
        &[
            "agentWaitsForVisitor",
            "agentWaitsForConsent",
            "consentGiven",
            "agentSeesPage",
            "agentSeesCrossOriginFrame",
            "agentSeesShadowDom",
            "agentSeesCssomRule",
            "agentSeesTyping",
            "agentSeesScriptSetValue",
            "agentSeesMutation",
            "agentFollowsScroll",
            "agentSeesVisitorPointer",
            "visitorSeesHighlight",
            "controlGranted",
            "agentClickReachesVisitor",
            "agentSeesClickEffect",
            "maskedClickRefused",
            "agentFollowsNavigation",
            "agentFollowsOtherOrigin",
            "visitorLeaves",
        ],
    );

    // Before consent the visitor's page sent nothing at all, and the agent's mirror stayed empty.
    assert_eq!(result["framesBeforeConsent"], serde_json::json!([]));
    assert_eq!(result["mirrorBeforeConsent"], "");
    // After it, the page went out: the first frames are the answer and a snapshot.
    let frames: Vec<String> = result["framesSent"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap().to_owned())
        .collect();
    let kinds: Vec<String> = frames
        .iter()
        .map(|f| {
            serde_json::from_str::<serde_json::Value>(f).unwrap()["t"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(
        kinds.first().map(String::as_str),
        Some("consent"),
        "{kinds:?}"
    );
    assert_eq!(kinds.get(1).map(String::as_str), Some("snap"), "{kinds:?}");
    assert!(frames
        .iter()
        .any(|f| f.contains("Welcome to the fixture shop")));
    assert!(
        frames.iter().any(|f| f.contains("FRAME-TEXT-OTHER-ORIGIN")),
        "the frame's content goes through its parent"
    );

    // Masked content never appears in any frame sent, whatever it became.
    for secret in [
        "SECRET-CARD-4242",
        "SECRET-CARD-5555",
        "exp 12/29",
        "PREFILLED-PW-31",
        "hunter2-TYPED-PW",
        "SCRIPT-SET-PW-8",
        "HIDDEN-TOKEN-77",
        "FRAME-SECRET-99",
        "Delete account",
    ] {
        let leaked: Vec<&String> = frames.iter().filter(|f| f.contains(secret)).collect();
        assert!(leaked.is_empty(), "{secret} left the page: {leaked:?}");
    }
    // The mirror shows masks of a fixed length instead.
    assert_eq!(result["maskedInMirror"]["card"], "\u{2022}".repeat(6));
    assert_eq!(result["maskedInMirror"]["password"], "\u{2022}".repeat(6));

    assert_eq!(result["agentState"], "live");
    assert_eq!(
        result["clickToolBeforeControl"], true,
        "no click before the visitor allows it"
    );
    assert_eq!(
        result["maskedClicked"], false,
        "a masked element was clicked"
    );
    assert!(
        steps["maskedClickRefused"]
            .as_str()
            .unwrap_or_default()
            .contains("masked"),
        "{}",
        steps["maskedClickRefused"]
    );
    assert_eq!(result["finalState"], "live");
    stack.stop().await;
}

/// The forward proxy in a real browser: Chromium with `--proxy-server` and the proxy's CA trusted by its
/// SPKI hash loads the HTTPS fixture page with the agent present, and the page's checks pass as directly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_page_through_the_forward_proxy_has_the_agent_and_works_as_directly() {
    if !browser_ready() {
        return;
    }
    let stack = support::start().await;
    let (ca, _) =
        cobrowse_proxy::forward::ca::CertificateAuthority::load_or_create(&stack.ca_dir).unwrap();
    let args = [
        stack.origin.addr.port().to_string(),
        stack.proxy.port().to_string(),
        ca.spki_sha256(),
        "https://www.shop.test/".to_owned(),
    ];
    let result = node("check_forward.mjs", &args).await;
    assert!(
        result.get("error").is_none(),
        "browser run failed: {}",
        result["error"]
    );
    let (direct, forward) = (&result["direct"], &result["forward"]);
    let direct_checks = direct["checks"].as_object().expect("direct checks");
    assert!(direct_checks.len() >= 15, "{direct_checks:?}");
    assert!(
        direct_checks.values().all(|v| *v == true),
        "{direct_checks:?}; why: {}",
        direct["why"]
    );
    assert_eq!(
        &forward["checks"], &direct["checks"],
        "checks through the forward proxy differ from direct"
    );
    assert_eq!(forward["agent"]["mode"], "forward");
    assert_eq!(forward["agent"]["origin"], "https://www.shop.test");
    assert_eq!(forward["agentTags"], 1);
    assert!(direct["agent"].is_null());
    assert_eq!(forward["finalUrl"], "https://www.shop.test/");
    let known = errors(direct);
    let new_errors: Vec<String> = errors(forward)
        .into_iter()
        .filter(|e| !known.contains(e))
        .collect();
    assert!(
        new_errors.is_empty(),
        "new console errors through the forward proxy: {new_errors:?}\nfailed: {}",
        forward["failedResponses"]
    );
    assert!(
        stack.origin.request_count("www.shop.test") >= 1,
        "the page came from the origin, through the proxy"
    );
    stack.stop().await;
}
