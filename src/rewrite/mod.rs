//! The response body: decide from the headers whether it is rewritten (HTML, CSS) or passed through, then
//! stream it — decompressed with byte caps when rewritten, untouched otherwise.
//!
//! `plan` is the only place that decides *whether*; the transforms (`html`, `css`) only know *how*.

mod ahead;
pub mod css;
mod decode;
pub mod html;
mod importmap;
pub mod inject;
pub mod js;
pub mod script;
pub mod srcset;

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::Stream;
use http::{header, HeaderMap, Method, StatusCode};
use lol_html::AsciiCompatibleEncoding;

pub use ahead::read_ahead;
pub use decode::{decode, ByteStream, Coding, DecodeError, DecodeLimits};

#[derive(Debug, thiserror::Error)]
pub enum RewriteError {
    #[error("HTML rewriting stopped: {0}")]
    Html(String),
    #[error("too large to rewrite (over {limit} bytes); passed through as it is")]
    TooLarge { limit: usize },
    #[error("CSS rewriting stopped: {0}")]
    Css(#[from] css::CssError),
}

/// A streaming body transform: bytes in, bytes out, then a final flush.
pub trait Transform: Send {
    /// `chunk` is shared, not copied: the HTML rewriter keeps the last few to read attributes in place.
    fn write(&mut self, chunk: Bytes, out: &mut Vec<u8>) -> Result<(), RewriteError>;
    fn end(&mut self, out: &mut Vec<u8>) -> Result<(), RewriteError>;
}

/// What a response body is, for the proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Html(Charset),
    Css,
    /// A script (`worker`: a worker's script, classic or module, which gets the runtime in front).
    Script {
        worker: bool,
    },
    /// Anything else, and anything we cannot decode: passed through byte for byte.
    Pass,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    pub kind: Kind,
    pub coding: Coding,
}

impl Plan {
    pub fn changes_body(&self) -> bool {
        self.kind != Kind::Pass
    }

    /// The forward proxy rewrites no URLs: only HTML changes (the agent goes in); the rest passes.
    pub fn for_forward(self) -> Plan {
        match self.kind {
            Kind::Html(_) => self,
            _ => Plan {
                kind: Kind::Pass,
                coding: Coding::Identity,
            },
        }
    }
}

/// How an HTML body's bytes are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Charset {
    pub encoding: AsciiCompatibleEncoding,
    /// The Content-Type header named this (supported) encoding. The browser then reads the page in it
    /// whatever a `<meta charset>` says (HTML §13.2.3.1, confidence "certain"), and so must we: reading
    /// the rest of the page in another encoding than the browser would be a parsing differential.
    pub declared: bool,
}

/// What the browser will do with a response, from the request's `Sec-Fetch-Dest` and `Sec-Fetch-Mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Destination {
    /// A document or frame: without a `Content-Type` the browser sniffs it as HTML.
    Document,
    /// A worker's script, or a module a worker imports.
    Worker,
    /// A page's script (`<script src>`, module imports).
    Script,
    Other,
}

impl Destination {
    pub fn from_request(headers: &HeaderMap) -> Destination {
        let get = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
        };
        match get("sec-fetch-dest") {
            "document" | "iframe" | "frame" => Destination::Document,
            "worker" | "sharedworker" => Destination::Worker,
            "script" => Destination::Script,
            _ => Destination::Other,
        }
    }
}

/// Decides from the exchange's headers how the body travels.
pub fn plan(method: &Method, status: StatusCode, headers: &HeaderMap, dest: Destination) -> Plan {
    let pass = Plan {
        kind: Kind::Pass,
        coding: Coding::Identity,
    };
    let bodiless = method == Method::HEAD
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED;
    if bodiless {
        return pass;
    }
    let Some(coding) = Coding::from_headers(headers) else {
        return pass;
    };
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let (essence, charset) = parse_content_type(content_type);
    let essence = if essence.is_empty() && dest == Destination::Document {
        "text/html".to_owned()
    } else {
        essence
    };
    let kind = match essence.as_str() {
        "text/html" | "application/xhtml+xml" => match html_charset(charset) {
            Some(charset) => Kind::Html(charset),
            None => Kind::Pass,
        },
        "text/css" => Kind::Css,
        "text/javascript"
        | "application/javascript"
        | "application/x-javascript"
        | "text/ecmascript"
        | "application/ecmascript" => match dest {
            Destination::Worker => Kind::Script { worker: true },
            Destination::Script => Kind::Script { worker: false },
            _ => Kind::Pass,
        },
        _ => Kind::Pass,
    };
    Plan { kind, coding }
}

fn parse_content_type(value: &str) -> (String, Option<&str>) {
    let mut parts = value.split(';');
    let essence = parts.next().unwrap_or_default().trim().to_ascii_lowercase();
    let charset = parts
        .filter_map(|p| p.split_once('='))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("charset"))
        .map(|(_, v)| v.trim().trim_matches('"'));
    (essence, charset)
}

/// The declared charset when lol_html can parse it (every ASCII-compatible one); UTF-8 when none or an
/// unknown one is declared (a `<meta charset>` then switches it); `None` for UTF-16 and the like, which
/// pass through.
fn html_charset(label: Option<&str>) -> Option<Charset> {
    let declared = label.and_then(|l| encoding_rs::Encoding::for_label(l.as_bytes()));
    let encoding = AsciiCompatibleEncoding::new(declared.unwrap_or(encoding_rs::UTF_8))?;
    Some(Charset {
        encoding,
        declared: declared.is_some(),
    })
}

/// Drives a [`Transform`] over a stream of decoded chunks. A transform that fails mid-way leaves the rest
/// of the body to pass through as it is (the headers are already sent; see STYLE lesson 4).
pub struct TransformStream<S> {
    inner: S,
    transform: Box<dyn Transform>,
    passthrough: bool,
    done: bool,
    /// What the inner stream gave after the chunks gathered last time: its end or an error.
    held: Option<Option<io::Result<Bytes>>>,
}

/// The most bytes gathered for one `write`: whatever has already arrived, up to this.
const GATHER: usize = 256 << 10;

impl<S> TransformStream<S> {
    pub fn new(inner: S, transform: Box<dyn Transform>) -> TransformStream<S> {
        TransformStream {
            inner,
            transform,
            passthrough: false,
            done: false,
            held: None,
        }
    }
}

impl<S> TransformStream<S>
where
    S: Stream<Item = io::Result<Bytes>> + Unpin,
{
    /// `chunk` and every chunk already waiting behind it (read ahead: `ahead.rs`), as one: a larger
    /// piece can be rewritten on two cores (`html/split.rs`). Never waits for more.
    fn gather(&mut self, chunk: Bytes, cx: &mut Context<'_>) -> Bytes {
        let mut more: Vec<Bytes> = Vec::new();
        let mut total = chunk.len();
        while total < GATHER {
            match Pin::new(&mut self.inner).poll_next(cx) {
                Poll::Ready(Some(Ok(next))) => {
                    total += next.len();
                    more.push(next);
                }
                Poll::Ready(end_or_error) => {
                    self.held = Some(end_or_error);
                    break;
                }
                Poll::Pending => break,
            }
        }
        if more.is_empty() {
            return chunk;
        }
        let mut all = Vec::with_capacity(total);
        all.extend_from_slice(&chunk);
        for piece in more {
            all.extend_from_slice(&piece);
        }
        Bytes::from(all)
    }
}

impl<S> Stream for TransformStream<S>
where
    S: Stream<Item = io::Result<Bytes>> + Unpin,
{
    type Item = io::Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            if this.done {
                return Poll::Ready(None);
            }
            let mut out = Vec::new();
            let next = match this.held.take() {
                Some(held) => Poll::Ready(held),
                None => Pin::new(&mut this.inner).poll_next(cx),
            };
            match next {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Err(e))) => {
                    this.done = true;
                    return Poll::Ready(Some(Err(e)));
                }
                Poll::Ready(Some(Ok(chunk))) if this.passthrough => {
                    return Poll::Ready(Some(Ok(chunk)))
                }
                Poll::Ready(Some(Ok(chunk))) => {
                    let chunk = this.gather(chunk, cx);
                    if let Err(e) = this.transform.write(chunk, &mut out) {
                        tracing::warn!(error = %e, "rewriter gave up; passing the rest through");
                        this.passthrough = true;
                    }
                }
                Poll::Ready(None) => {
                    this.done = true;
                    if !this.passthrough {
                        if let Err(e) = this.transform.end(&mut out) {
                            tracing::warn!(error = %e, "rewriter failed at end of body");
                        }
                    }
                }
            }
            if !out.is_empty() {
                return Poll::Ready(Some(Ok(Bytes::from(out))));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn plan_for(ct: &str, ce: Option<&str>) -> Plan {
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_str(ct).unwrap());
        if let Some(ce) = ce {
            h.insert(header::CONTENT_ENCODING, HeaderValue::from_str(ce).unwrap());
        }
        plan(&Method::GET, StatusCode::OK, &h, Destination::Other)
    }

    #[test]
    fn kinds_from_content_type() {
        assert!(matches!(
            plan_for("text/html; charset=UTF-8", None).kind,
            Kind::Html(_)
        ));
        assert!(matches!(
            plan_for("TEXT/HTML", Some("gzip")).kind,
            Kind::Html(_)
        ));
        assert_eq!(plan_for("text/css", Some("br")).kind, Kind::Css);
        assert_eq!(plan_for("text/css", Some("br")).coding, Coding::Brotli);
        assert_eq!(plan_for("image/png", None).kind, Kind::Pass);
        assert_eq!(plan_for("text/html; charset=utf-16", None).kind, Kind::Pass);
        assert_eq!(plan_for("text/html", Some("compress")).kind, Kind::Pass);
        assert_eq!(plan_for("text/html", Some("gzip, br")).kind, Kind::Pass);
        let shift_jis = plan_for("text/html; charset=\"Shift_JIS\"", None);
        assert_eq!(
            shift_jis.kind,
            Kind::Html(Charset {
                encoding: AsciiCompatibleEncoding::new(encoding_rs::SHIFT_JIS).unwrap(),
                declared: true,
            })
        );
        let unknown = plan_for("text/html; charset=x-no-such-thing", None);
        assert_eq!(
            unknown.kind,
            Kind::Html(Charset {
                encoding: AsciiCompatibleEncoding::new(encoding_rs::UTF_8).unwrap(),
                declared: false,
            })
        );
    }

    #[test]
    fn bodiless_responses_pass() {
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html"));
        assert_eq!(
            plan(&Method::HEAD, StatusCode::OK, &h, Destination::Document).kind,
            Kind::Pass
        );
        assert_eq!(
            plan(
                &Method::GET,
                StatusCode::NOT_MODIFIED,
                &h,
                Destination::Document
            )
            .kind,
            Kind::Pass
        );
    }

    #[test]
    fn untyped_navigations_are_sniffed_as_html() {
        let h = HeaderMap::new();
        assert!(matches!(
            plan(&Method::GET, StatusCode::OK, &h, Destination::Document).kind,
            Kind::Html(_)
        ));
        assert_eq!(
            plan(&Method::GET, StatusCode::OK, &h, Destination::Other).kind,
            Kind::Pass
        );
    }
}
