//! Which HTTP a connection speaks, from its first bytes, and those bytes handed back to hyper in one
//! piece. hyper-util's `auto` does the same check but passes hyper only the 24 bytes it compared, so
//! hyper sees a partial head and doubles its read buffer to 16 KiB on every connection
//! (`docs/PERFORMANCE.md`, idle connections); reading once here keeps it at 8 KiB.

use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt};

use super::rewind::Rewind;

/// The client connection preface of HTTP/2 with prior knowledge (RFC 9113 §3.4).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// The first read takes up to this much; a request head usually fits whole.
const FIRST_READ: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    H1,
    H2,
}

/// Reads until the bytes decide (the h2 preface, or anything that departs from it), within `timeout`.
/// `None`: the client closed or stayed silent first; there is nothing to answer.
pub async fn sniff<I>(mut io: I, timeout: Duration) -> Option<(Version, Rewind<I>)>
where
    I: AsyncRead + Unpin,
{
    let mut first = BytesMut::with_capacity(FIRST_READ);
    let read = async {
        loop {
            let n = io.read_buf(&mut first).await.ok()?;
            let seen = &first[..];
            let same = seen.len().min(H2_PREFACE.len());
            if seen[..same] != H2_PREFACE[..same] {
                return Some(Version::H1);
            }
            if seen.len() >= H2_PREFACE.len() {
                return Some(Version::H2);
            }
            // Only a prefix of the preface so far: read on, unless the client is gone.
            if n == 0 {
                return None;
            }
        }
    };
    let version = tokio::time::timeout(timeout, read).await.ok()??;
    Some((version, Rewind::new(first.freeze(), io)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    async fn sniffed(chunks: &[&[u8]]) -> Option<(Version, Vec<u8>)> {
        let (mut client, server) = tokio::io::duplex(1 << 16);
        for chunk in chunks {
            client.write_all(chunk).await.unwrap();
        }
        drop(client);
        let (version, mut io) = sniff(server, Duration::from_secs(5)).await?;
        let mut all = Vec::new();
        io.read_to_end(&mut all).await.unwrap();
        Some((version, all))
    }

    #[tokio::test]
    async fn h1_and_h2_are_told_apart_and_no_byte_is_lost() {
        let get = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n";
        assert_eq!(sniffed(&[get]).await, Some((Version::H1, get.to_vec())));
        let mut h2 = H2_PREFACE.to_vec();
        h2.extend_from_slice(b"\0\0\0\x04\0\0\0\0\0");
        assert_eq!(sniffed(&[&h2]).await, Some((Version::H2, h2.clone())));
        // The preface split across reads still counts, and so does an h1 request starting with "P".
        let (a, b) = H2_PREFACE.split_at(5);
        assert_eq!(sniffed(&[a, b]).await.map(|s| s.0), Some(Version::H2));
        let put = b"PUT / HTTP/1.1\r\nHost: a\r\n\r\n";
        assert_eq!(sniffed(&[put]).await, Some((Version::H1, put.to_vec())));
    }

    #[tokio::test]
    async fn silence_and_empty_connections_are_not_served() {
        assert_eq!(sniffed(&[]).await, None);
        // A bare prefix of the preface then the end: undecided, and nobody is left to answer.
        assert_eq!(sniffed(&[b"PRI * "]).await, None);
        let (_client, server) = tokio::io::duplex(64);
        let waited = sniff(server, Duration::from_millis(50)).await;
        assert!(
            waited.is_none(),
            "a silent client is dropped at the header timeout"
        );
    }
}
