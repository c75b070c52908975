//! The agent script: served from the public origin with a validator, and the `<script>` tag that every
//! proxied page gets. What the script does lives in `agent/`.

use http::{header, HeaderMap, HeaderValue, Response, StatusCode};
use sha2::{Digest, Sha256};

use crate::body::{empty, full, ProxyBody};
use crate::url_codec::{PublicOrigin, SessionId};

pub const PATH: &str = "/__cobrowse/agent.js";
/// The in-page runtime first (it must run before any page script), then the agent.
const SOURCE: &str = concat!(
    include_str!("../agent/runtime.js"),
    include_str!("../agent/agent.js")
);

/// The forward proxy's pages keep their real URLs, so they get the agent without the URL runtime.
const FORWARD_SOURCE: &str = include_str!("../agent/agent.js");

pub struct Agent {
    etag: HeaderValue,
    forward_etag: HeaderValue,
}

fn etag_of(source: &str) -> HeaderValue {
    let digest = Sha256::digest(source.as_bytes());
    let hex: String = digest.iter().take(12).map(|b| format!("{b:02x}")).collect();
    HeaderValue::from_str(&format!("\"{hex}\"")).unwrap_or(HeaderValue::from_static("\"0\""))
}

impl Agent {
    pub fn new() -> Agent {
        Agent {
            etag: etag_of(SOURCE),
            forward_etag: etag_of(FORWARD_SOURCE),
        }
    }

    /// Serves the script for proxy hosts. It is loaded cross-origin by every proxied page, including pages
    /// that demand CORP (`Cross-Origin-Embedder-Policy: require-corp`), so it may be embedded anywhere.
    pub fn serve(&self, request: &HeaderMap) -> Response<ProxyBody> {
        serve_script(request, SOURCE, &self.etag)
    }

    /// Serves the script under the reserved path of a forward-proxied origin.
    pub fn serve_forward(&self, request: &HeaderMap) -> Response<ProxyBody> {
        serve_script(request, FORWARD_SOURCE, &self.forward_etag)
    }
}

fn serve_script(
    request: &HeaderMap,
    source: &'static str,
    etag: &HeaderValue,
) -> Response<ProxyBody> {
    let fresh = request
        .get(header::IF_NONE_MATCH)
        .is_some_and(|v| v.as_bytes() == etag.as_bytes());
    let mut response = if fresh {
        let mut r = Response::new(empty());
        *r.status_mut() = StatusCode::NOT_MODIFIED;
        r
    } else {
        Response::new(full(source))
    };
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/javascript; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(header::ETAG, etag.clone());
    h.insert(
        "cross-origin-resource-policy",
        HeaderValue::from_static("cross-origin"),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

impl Default for Agent {
    fn default() -> Agent {
        Agent::new()
    }
}

const RUNTIME: &str = include_str!("../agent/runtime.js");

/// What goes in front of every worker script (see `rewrite::worker`): the session as a config line, then
/// the runtime itself. Inline, because a worker's script request does not say whether it is a classic
/// script (where only `importScripts` works) or a module (where only `import` does); inline text works in
/// both, and runs before the script's own code.
pub fn worker_bootstrap(public: &PublicOrigin, session: &SessionId) -> String {
    let config = serde_json::json!({ "session": session.as_str(), "public": public.origin() });
    format!("self.__cobrowseConfig = {config};\n{RUNTIME}")
}

/// The tag the forward proxy injects: the script from the page's own origin, under the reserved path, so
/// an https page loads no mixed content and `'self'` policies already allow it.
pub fn forward_script_tag(page_origin: &str, nonce: &str) -> String {
    format!(
        "<script src=\"{page_origin}{PATH}\" data-cobrowse-mode=\"forward\" nonce=\"{nonce}\"></script>"
    )
}

/// The tag injected into pages. Well-formed XML too, so XHTML pages stay valid. It carries a visitor
/// credential for the relay (the agent script takes it off the element before any page script runs).
pub fn script_tag(public: &PublicOrigin, session: &SessionId, nonce: &str) -> String {
    let token = crate::session::visitor_credential(session, std::time::SystemTime::now());
    script_tag_with(public, session, &token, nonce)
}

/// [`script_tag`] with a credential the caller signed (a node of a deployment signs with the shared key).
pub fn script_tag_with(
    public: &PublicOrigin,
    session: &SessionId,
    token: &str,
    nonce: &str,
) -> String {
    format!(
        "<script src=\"{}{PATH}\" data-cobrowse-session=\"{session}\" data-cobrowse-token=\"{token}\" \
         nonce=\"{nonce}\"></script>",
        public.origin()
    )
}
