//! Content-coding decoders for bodies we rewrite, with byte caps so a compression bomb is cut off instead of
//! filling memory or burning CPU.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use async_compression::tokio::bufread::{BrotliDecoder, GzipDecoder, ZlibDecoder, ZstdDecoder};
use bytes::Bytes;
use futures_util::{Stream, StreamExt, TryStreamExt};
use http::{header, HeaderMap};
use tokio::io::AsyncRead;
use tokio_util::io::{ReaderStream, StreamReader};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Coding {
    Identity,
    Gzip,
    Deflate,
    Brotli,
    Zstd,
}

impl Coding {
    /// The body's single content coding, or `None` when it has one we cannot decode or several stacked.
    pub fn from_headers(headers: &HeaderMap) -> Option<Coding> {
        let mut codings = headers
            .get_all(header::CONTENT_ENCODING)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(|c| c.trim().to_ascii_lowercase())
            .filter(|c| !c.is_empty() && c != "identity");
        let first = codings.next();
        if codings.next().is_some() {
            return None;
        }
        match first.as_deref() {
            None => Some(Coding::Identity),
            Some("gzip" | "x-gzip") => Some(Coding::Gzip),
            Some("deflate") => Some(Coding::Deflate),
            Some("br") => Some(Coding::Brotli),
            Some("zstd") => Some(Coding::Zstd),
            Some(_) => None,
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct DecodeLimits {
    pub max_output: u64,
    pub max_ratio: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("decompressed body exceeds {limit} bytes; cut off")]
    TooLarge { limit: u64 },
    #[error("body expands more than {ratio}:1 when decompressed (a compression bomb); cut off")]
    Bomb { ratio: u64 },
}

/// Below this many decoded bytes the ratio is not judged: small, highly repetitive pages are normal.
const RATIO_GRACE: u64 = 1 << 20;

pub type ByteStream = Pin<Box<dyn Stream<Item = io::Result<Bytes>> + Send>>;

/// Decodes `input` (the body as it came from upstream) according to `coding`.
pub fn decode(input: ByteStream, coding: Coding, limits: DecodeLimits) -> ByteStream {
    if coding == Coding::Identity {
        return input;
    }
    let consumed = Arc::new(AtomicU64::new(0));
    let counter = consumed.clone();
    let counted = input.inspect_ok(move |b| {
        counter.fetch_add(b.len() as u64, Ordering::Relaxed);
    });
    let reader = StreamReader::new(counted);
    let decoder: Pin<Box<dyn AsyncRead + Send>> = match coding {
        Coding::Gzip => {
            let mut d = GzipDecoder::new(reader);
            d.multiple_members(true);
            Box::pin(d)
        }
        // HTTP's "deflate" is the zlib format (RFC 9110 §8.4.1.2).
        Coding::Deflate => Box::pin(ZlibDecoder::new(reader)),
        Coding::Brotli => Box::pin(BrotliDecoder::new(reader)),
        Coding::Zstd => Box::pin(ZstdDecoder::new(reader)),
        Coding::Identity => return Box::pin(futures_util::stream::empty()),
    };
    let mut produced = 0u64;
    let stream = ReaderStream::with_capacity(decoder, 32 << 10).map(move |item| {
        let chunk = item?;
        produced += chunk.len() as u64;
        check(produced, consumed.load(Ordering::Relaxed), limits)?;
        Ok(chunk)
    });
    Box::pin(stream)
}

fn check(produced: u64, consumed: u64, limits: DecodeLimits) -> io::Result<()> {
    if produced > limits.max_output {
        return Err(io::Error::other(DecodeError::TooLarge {
            limit: limits.max_output,
        }));
    }
    if produced > RATIO_GRACE && produced > consumed.saturating_mul(limits.max_ratio) {
        return Err(io::Error::other(DecodeError::Bomb {
            ratio: limits.max_ratio,
        }));
    }
    Ok(())
}
