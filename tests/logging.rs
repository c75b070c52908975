//! Logs carry method, target host, status, size and time, and never a body, cookie, query, path or secret
//! header value; and nothing of the kind reaches the data folder either. Both tests log at `trace`
//! through the subscriber the binary installs (`cobrowse_proxy::logging`). (Its own test binary: it owns
//! the process's log subscriber.)
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use http::{Method, StatusCode};
use support::ws;
use tracing_subscriber::util::SubscriberInitExt;

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap_or_else(|p| p.into_inner())).into_owned()
    }
}

/// Everything logged by this process, at `trace`, for every crate: installed once for both tests.
fn captured() -> Captured {
    static CAPTURED: OnceLock<Captured> = OnceLock::new();
    CAPTURED
        .get_or_init(|| {
            let captured = Captured::default();
            let writer = captured.clone();
            cobrowse_proxy::logging::subscriber("trace", move || writer.clone(), false).init();
            captured
        })
        .clone()
}

#[tokio::test]
async fn logs_hold_no_content() {
    let captured = captured();

    let stack = support::start().await;
    let (id, _) = stack.session("https://www.shop.test/").await;
    let secret = "S3CR3T-7f1c";
    let url = stack.proxied(
        &id,
        &format!("https://api.shop.test/_fx/echo?token={secret}"),
    );
    let reply = stack
        .request(
            Method::POST,
            &url,
            &[
                ("cookie", &format!("sid={secret}")),
                ("authorization", &format!("Bearer {secret}")),
            ],
            format!("{{\"password\":\"{secret}\"}}"),
        )
        .await;
    assert!(
        reply.text().contains(secret),
        "the echo did see the secret, so the test means something"
    );
    let query = format!(
        "h={}",
        url::form_urlencoded::byte_serialize(
            format!("Set-Cookie:s={secret}; Domain=evil.test").as_bytes()
        )
        .collect::<String>()
    );
    let _ = stack
        .get(&stack.proxied(&id, &format!("https://www.shop.test/_fx/respond?{query}")))
        .await;
    let _ = stack
        .get(&stack.proxied(&id, &format!("https://www.shop.test/private/{secret}/page")))
        .await;
    stack.stop().await;

    let logs = captured.text();
    assert!(
        logs.contains("route=\"proxied\"") && logs.contains("host=api.shop.test"),
        "{logs}"
    );
    assert!(
        logs.contains("status=200") && logs.contains("bytes="),
        "{logs}"
    );
    assert!(
        logs.contains("dropped a Set-Cookie"),
        "the rejected cookie is noted, without its value: {logs}"
    );
    assert!(!logs.contains(secret), "a secret reached the log:\n{logs}");
    assert!(
        !logs.contains("_fx/echo") && !logs.contains("/private/"),
        "a path reached the log:\n{logs}"
    );
}

/// Strings that stand for content: the fixture site's own markers (upper-case words joined by hyphens,
/// such as the masked card number) and its script identifiers (camelCase words of 12 or more letters),
/// leaving out anything that is part of a file's path (paths are allowed in the stored page URL).
fn fixture_markers(root: &Path, files: &[(String, PathBuf)]) -> Vec<String> {
    let paths: String = files.iter().map(|(rel, _)| format!("{rel} ")).collect();
    let mut markers = std::collections::BTreeSet::new();
    for (_, file) in files {
        let Ok(text) = std::fs::read_to_string(root.join(file)) else {
            continue;
        };
        let words = text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_'));
        for word in words {
            let shouting = word.len() >= 8
                && word.contains('-')
                && word
                    .chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '-')
                && word.chars().any(|c| c.is_ascii_uppercase());
            let camel = word.len() >= 12
                && word.chars().all(|c| c.is_ascii_alphanumeric())
                && word.chars().any(|c| c.is_ascii_uppercase())
                && word.starts_with(|c: char| c.is_ascii_lowercase());
            if (shouting || camel) && !paths.contains(word) {
                markers.insert(word.to_owned());
            }
        }
    }
    markers.into_iter().collect()
}

/// Every fixture file as (`host/path`, path under the sites folder).
fn fixture_files(root: &Path) -> Vec<(String, PathBuf)> {
    let mut out = Vec::new();
    let mut todo = vec![PathBuf::new()];
    while let Some(dir) = todo.pop() {
        for entry in std::fs::read_dir(root.join(&dir)).unwrap() {
            let entry = entry.unwrap();
            let rel = dir.join(entry.file_name());
            if entry.file_type().unwrap().is_dir() {
                todo.push(rel);
            } else {
                out.push((rel.to_string_lossy().replace('\\', "/"), rel));
            }
        }
    }
    out.sort();
    out
}

fn bytes_under(dir: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(bytes_under(&path));
        } else {
            out.extend(std::fs::read(&path).unwrap());
        }
    }
    out
}

/// Removes the test's data folder however the test ends.
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn holds(bytes: &[u8], needle: &str) -> bool {
    bytes.windows(needle.len()).any(|w| w == needle.as_bytes())
}

/// The whole fixture site through the proxy with trace logging and the debug event log on: every file,
/// with a query string, a cookie and credentials on each request; request and response bodies and
/// cookies of our own; the page's markers relayed to an agent after consent. None of it may appear in
/// the log or anywhere under the data folder.
#[tokio::test]
async fn browsing_the_fixture_site_leaves_no_content_in_logs_or_on_disk() {
    let captured = captured();
    let data_dir = std::env::temp_dir().join(format!(
        "cobrowse-logging-data-{}-{:08x}",
        std::process::id(),
        rand::random::<u32>()
    ));
    let _cleanup = RemoveOnDrop(data_dir.clone());
    let stack = support::start_with(support::Options {
        file: cobrowse_proxy::config::FileConfig {
            debug_events: Some(true),
            ..Default::default()
        },
        data_dir: Some(data_dir.clone()),
        ..support::Options::default()
    })
    .await;
    let root = support::sites_root();
    let files = fixture_files(&root);
    let mut markers = fixture_markers(&root, &files);
    assert!(
        markers.iter().any(|m| m == "SECRET-CARD-4242") && markers.len() > 20,
        "the fixture's markers were found: {markers:?}"
    );
    let ours = [
        "QUERY-MK-5d1",
        "COOKIE-MK-9e2",
        "AUTH-MK-3c7",
        "BODY-MK-8a4",
        "SETCOOKIE-MK-2b6",
        "PAGE-MK-7f3",
        "RELAY-MK-1d9",
        "UA-MK-6c2",
    ];
    markers.extend(ours.iter().map(|m| (*m).to_owned()));

    let body = serde_json::json!({
        "url": "https://www.shop.test/",
        "visitor": { "external_id": "ext-logging" },
    });
    let reply = stack
        .request(
            Method::POST,
            &format!("{}/api/sessions", stack.public),
            &[("content-type", "application/json")],
            body.to_string(),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED);
    let links = ws::Links::from_json(&reply.json());
    let id = links.id.clone();

    let cookie = "sid=COOKIE-MK-9e2";
    let auth = "Bearer AUTH-MK-3c7";
    let ua = "Mozilla/5.0 (X11; Linux x86_64) Firefox/127.0 UA-MK-6c2";
    let mut seen = 0;
    for (rel, _) in &files {
        let target = format!("https://{rel}?q=QUERY-MK-5d1&x=1#frag");
        let headers = [
            ("cookie", cookie),
            ("authorization", auth),
            ("user-agent", ua),
        ];
        let reply = stack
            .request(Method::GET, &stack.proxied(&id, &target), &headers, "")
            .await;
        if reply.status == StatusCode::OK {
            seen += 1;
        }
    }
    assert!(
        seen * 2 > files.len(),
        "most of the site loaded: {seen}/{}",
        files.len()
    );

    let echo = stack.proxied(&id, "https://api.shop.test/_fx/echo?q=QUERY-MK-5d1");
    let reply = stack
        .request(
            Method::POST,
            &echo,
            &[("cookie", cookie)],
            "{\"p\":\"BODY-MK-8a4\"}",
        )
        .await;
    // The echo reports the body's length, not the body: it went through the proxy to the origin.
    assert!(
        reply.text().contains("\"content-length\":\"19\""),
        "{}",
        reply.text()
    );
    let set_cookie = url::form_urlencoded::byte_serialize(b"Set-Cookie:s=SETCOOKIE-MK-2b6; Path=/")
        .collect::<String>();
    let page = url::form_urlencoded::byte_serialize(b"<p>PAGE-MK-7f3</p>").collect::<String>();
    let respond =
        format!("https://www.shop.test/_fx/respond?type=text/html&body={page}&h={set_cookie}");
    let reply = stack.get(&stack.proxied(&id, &respond)).await;
    assert!(reply.text().contains("PAGE-MK-7f3"));

    // The page's content, relayed: every marker in one snapshot, and a delta.
    let origin = stack
        .proxied(&id, "https://www.shop.test/")
        .trim_end_matches('/')
        .to_owned();
    let mut visitor = ws::open(
        &stack,
        &links.visitor,
        &[("origin", &origin), ("user-agent", ua)],
    )
    .await;
    ws::until(&mut visitor, "hello").await;
    let mut agent = ws::open(&stack, &links.agent, &[]).await;
    ws::until(&mut agent, "hello").await;
    ws::send(&mut visitor, r#"{"t":"consent","granted":true}"#).await;
    let snap =
        serde_json::json!({ "t": "snap", "f": "", "doc": { "i": 1, "x": markers.join(" ") } });
    ws::send(&mut visitor, &snap.to_string()).await;
    let got = ws::until(&mut agent, "snap").await;
    assert!(got["doc"]["x"].as_str().unwrap().contains("RELAY-MK-1d9"));
    ws::send(
        &mut visitor,
        r#"{"t":"mut","f":"","text":[[1,"RELAY-MK-1d9 again"]]}"#,
    )
    .await;
    ws::until(&mut agent, "mut").await;
    ws::send(&mut agent, r#"{"t":"ptr","x":1,"y":2}"#).await;
    ws::close(visitor).await;
    ws::close(agent).await;
    stack.stop().await;

    let logs = captured.text();
    let disk = bytes_under(&data_dir);
    assert!(
        holds(&disk, "www.shop.test") && holds(&disk, "relay.message"),
        "the store did record the visit and the events, so the check below means something"
    );
    assert!(
        logs.contains("relay connection ended"),
        "trace logging was on"
    );
    for marker in &markers {
        assert!(!logs.contains(marker.as_str()), "{marker} reached the log");
        assert!(!holds(&disk, marker), "{marker} reached the data folder");
    }
}
