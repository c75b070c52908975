//! One virtual visitor, as a browser with an empty cache: load the page, read the assets it names
//! (stylesheets, scripts, images), load them over up to six kept-alive connections, and again, until the
//! time is up: back to back, or each page when its [`Pace`] says it is due.

use std::sync::Arc;
use std::time::Duration;

use http_body_util::BodyExt;
use tokio::time::Instant;

use super::pace::Pace;
use super::stats::Stats;
use super::target::{Sender, Target};
use super::LoadError;
use crate::headers::timing::{self, Phases};

/// Connections a visitor keeps per site, as browsers do for HTTP/1.1.
pub(super) const CONNECTIONS: usize = 6;
/// Longest one request may take before it counts as an error.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Pause after a failed page load, so a broken target cannot turn the loop into a spin.
const ERROR_PAUSE: Duration = Duration::from_millis(50);

/// One asset: its host when it is not the page's, and its path with query.
type Asset = (Option<String>, String);

/// Loads `page` with its assets until `deadline`, back to back or paced.
pub(super) async fn run(
    target: Arc<Target>,
    page: String,
    deadline: Instant,
    stats: Arc<Stats>,
    id: u64,
    mut pace: Option<Pace>,
) {
    let mut slots: Vec<Option<Sender>> = (0..CONNECTIONS).map(|_| None).collect();
    let mut n: u64 = 0;
    while Instant::now() < deadline {
        let mut paced = None;
        if let Some(pace) = pace.as_mut() {
            let Some(due) = pace.next_before(deadline) else {
                break;
            };
            tokio::time::sleep_until(due).await;
            paced = Some((pace, due));
        }
        n += 1;
        let unique = id << 32 | n;
        let document = load_document(&target, &mut slots[0], &page, unique, &stats, paced);
        let Some(body) = document.await else {
            tokio::time::sleep(ERROR_PAUSE).await;
            continue;
        };
        if !target.assets || load_assets(&target, &mut slots, &body, unique, &stats).await {
            stats.page_loaded();
        }
    }
}

/// The document, its latency recorded (as if sent when due, when paced); `None` if it failed.
async fn load_document(
    target: &Target,
    slot: &mut Option<Sender>,
    page: &str,
    unique: u64,
    stats: &Stats,
    paced: Option<(&mut Pace, Instant)>,
) -> Option<bytes::Bytes> {
    match fetch(target, slot, None, page, unique, true).await {
        Ok(got) => {
            let took = match paced {
                Some((pace, due)) => {
                    let (latency, waited) = pace.latency(due, got.took);
                    if waited {
                        stats.waited();
                    }
                    latency
                }
                None => got.took,
            };
            stats.response(took, got.len, true);
            stats.page_phases(got.phases);
            Some(got.body)
        }
        Err(e) => {
            if let Some((pace, _)) = paced {
                pace.failed();
            }
            stats.error(e.to_string());
            None
        }
    }
}

/// The assets `body` names, spread over the visitor's connections; whether all of them loaded.
async fn load_assets(
    target: &Target,
    slots: &mut [Option<Sender>],
    body: &[u8],
    unique: u64,
    stats: &Stats,
) -> bool {
    let mut lists: Vec<Vec<Asset>> = (0..slots.len()).map(|_| Vec::new()).collect();
    for (i, asset) in assets(body, target).into_iter().enumerate() {
        lists[i % slots.len()].push(asset);
    }
    let loads = slots.iter_mut().zip(lists).map(|(slot, list)| async move {
        let mut ok = true;
        for (host, path) in list {
            match fetch(target, slot, host.as_deref(), &path, unique, false).await {
                Ok(got) => stats.response(got.took, got.len, false),
                Err(e) => {
                    stats.error(e.to_string());
                    ok = false;
                }
            }
        }
        ok
    });
    futures_util::future::join_all(loads)
        .await
        .into_iter()
        .all(|ok| ok)
}

/// One response read to its end.
struct Fetched {
    /// The body when it was kept (a page whose assets are to be loaded).
    body: bytes::Bytes,
    len: usize,
    /// From the request's first byte sent to the response's last byte read.
    took: Duration,
    /// What the proxy's `Server-Timing` said of its own phases: for the document only, and nothing direct.
    phases: Phases,
}

/// One GET on the connection in `slot` (made, or made again, as needed); `page` for the document.
async fn fetch(
    target: &Target,
    slot: &mut Option<Sender>,
    host: Option<&str>,
    path: &str,
    unique: u64,
    page: bool,
) -> Result<Fetched, LoadError> {
    let sender = ready(target, slot).await?;
    let req = target.request(host, path, unique)?;
    let started = Instant::now();
    // Only a page whose assets are to be loaded is kept; anything else is counted as it arrives, as a
    // browser's cache-less load would not copy it whole (and the generator shares the proxy's cores).
    let keep = page && target.assets;
    let exchange = async {
        let res = sender.send_request(req).await?;
        let status = res.status();
        // Read for the document only: an asset's would go unused, and the generator shares the cores.
        let phases = if page {
            timing::parse(
                res.headers()
                    .get_all("server-timing")
                    .iter()
                    .filter_map(|v| v.to_str().ok()),
            )
        } else {
            Phases::default()
        };
        let body = read_body(res.into_body(), keep).await?;
        Ok::<_, LoadError>((status, body, phases))
    };
    let result = tokio::time::timeout(REQUEST_TIMEOUT, exchange).await;
    let (status, body, phases) = match result {
        Ok(Ok(done)) => done,
        Ok(Err(e)) => {
            *slot = None;
            return Err(e);
        }
        Err(_) => {
            *slot = None;
            return Err(LoadError::Timeout("request"));
        }
    };
    if !status.is_success() {
        return Err(LoadError::Status(status.as_u16(), path.to_owned()));
    }
    Ok(Fetched {
        took: started.elapsed(),
        len: body.len,
        body: body.kept,
        phases,
    })
}

/// A response body read to its end: its length, and its bytes when asked to keep them.
struct ReadBody {
    len: usize,
    kept: bytes::Bytes,
}

async fn read_body(mut body: hyper::body::Incoming, keep: bool) -> Result<ReadBody, LoadError> {
    if keep {
        let kept = body.collect().await?.to_bytes();
        return Ok(ReadBody {
            len: kept.len(),
            kept,
        });
    }
    let mut len = 0;
    while let Some(frame) = body.frame().await {
        if let Some(data) = frame?.data_ref() {
            len += data.len();
        }
    }
    Ok(ReadBody {
        len,
        kept: bytes::Bytes::new(),
    })
}

/// The slot's connection once it can take a request; a closed one is replaced.
async fn ready<'s>(
    target: &Target,
    slot: &'s mut Option<Sender>,
) -> Result<&'s mut Sender, LoadError> {
    if let Some(sender) = slot.as_mut() {
        if sender.ready().await.is_err() {
            *slot = None;
        }
    }
    let sender = match slot {
        Some(sender) => sender,
        None => slot.insert(target.connect().await?),
    };
    Ok(sender)
}

/// The assets a browser would load from `page`: `src` of `<img>` and `<script>`, `href` of stylesheet
/// `<link>`s; only those on hosts this target serves, each once. A scan, not a parse: the fixture page
/// is known, and the load generator shares the CPU with what it measures.
fn assets(page: &[u8], target: &Target) -> Vec<Asset> {
    let mut out: Vec<Asset> = Vec::new();
    let mut rest = page;
    while let Some(at) = memchr::memchr(b'<', rest) {
        rest = &rest[at + 1..];
        let end = memchr::memchr(b'>', rest).unwrap_or(rest.len());
        let tag = &rest[..end];
        let attr: &[u8] = if tag.starts_with(b"img ") || tag.starts_with(b"script ") {
            b" src=\""
        } else if tag.starts_with(b"link ") && memchr::memmem::find(tag, b"stylesheet").is_some() {
            b" href=\""
        } else {
            continue;
        };
        let Some(value) = attribute(tag, attr) else {
            continue;
        };
        if let Some(asset) = locate(&value, target) {
            if !out.contains(&asset) {
                out.push(asset);
            }
        }
    }
    out
}

fn attribute(tag: &[u8], attr: &[u8]) -> Option<String> {
    let start = memchr::memmem::find(tag, attr)? + attr.len();
    let len = memchr::memchr(b'"', &tag[start..])?;
    let raw = std::str::from_utf8(&tag[start..start + len]).ok()?;
    Some(raw.replace("&amp;", "&"))
}

/// A root-relative URL stays on the page's host; an absolute one must name a host the target serves.
fn locate(value: &str, target: &Target) -> Option<Asset> {
    if value.starts_with('/') && !value.starts_with("//") {
        return Some((None, value.to_owned()));
    }
    let url = url::Url::parse(value).ok()?;
    let host = match url.port() {
        Some(port) => format!("{}:{port}", url.host_str()?),
        None => url.host_str()?.to_owned(),
    };
    if !target.serves(&host) {
        return None;
    }
    let path = url[url::Position::BeforePath..url::Position::AfterQuery].to_owned();
    let host = (host != target.host).then_some(host);
    Some((host, path))
}
