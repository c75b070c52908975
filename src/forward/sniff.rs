//! What a CONNECT tunnel carries, from its first bytes (no I/O in the decision): TLS is intercepted,
//! HTTP is served, anything else is tunnelled blind.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt};

/// Enough bytes to tell a TLS record from any HTTP request line (the longest common method token,
/// `PROPPATCH`, plus its space); every real HTTP request and TLS ClientHello is longer.
const DECIDE_AT: usize = 11;
/// Reads at most this many times while waiting for `DECIDE_AT` bytes.
const MAX_READS: usize = 8;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Tls,
    Http,
    /// Anything else, including a client that sends nothing and waits for the server to speak first.
    Other,
}

pub fn protocol(head: &[u8]) -> Protocol {
    match head {
        // A TLS handshake record: content type 22, protocol major version 3.
        [0x16, 0x03, ..] => Protocol::Tls,
        _ if looks_like_http(head) => Protocol::Http,
        _ => Protocol::Other,
    }
}

/// A request line starts with a method token and a space (`GET `, `OPTIONS `, `PRI ` for h2c).
fn looks_like_http(head: &[u8]) -> bool {
    let token = head.iter().take_while(|b| b.is_ascii_uppercase()).count();
    (3..=10).contains(&token) && head.get(token) == Some(&b' ')
}

/// Reads the tunnel's first bytes: until there are enough to decide, the client stops sending, or `wait`
/// passes (a protocol where the server speaks first). What was read is replayed to whoever takes over.
pub async fn read_head<R: AsyncRead + Unpin>(io: &mut R, wait: Duration) -> std::io::Result<Bytes> {
    let mut head = BytesMut::with_capacity(4096);
    let deadline = tokio::time::Instant::now() + wait;
    for _ in 0..MAX_READS {
        if head.len() >= DECIDE_AT {
            break;
        }
        match tokio::time::timeout_at(deadline, io.read_buf(&mut head)).await {
            Err(_) | Ok(Ok(0)) => break,
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(e),
        }
    }
    Ok(head.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_bytes_choose_the_protocol() {
        assert_eq!(protocol(&[0x16, 0x03, 0x01, 0x02, 0x00]), Protocol::Tls);
        assert_eq!(protocol(b"GET / HTTP/1.1\r\n"), Protocol::Http);
        assert_eq!(protocol(b"OPTIONS * HTTP/1.1"), Protocol::Http);
        assert_eq!(protocol(b"PROPPATCH /x HTTP/1.1"), Protocol::Http);
        assert_eq!(protocol(b"PRI * HTTP/2.0\r\n\r\nSM"), Protocol::Http);
        assert_eq!(protocol(b"SSH-2.0-OpenSSH_9.2"), Protocol::Other);
        assert_eq!(protocol(b"get / HTTP/1.1"), Protocol::Other);
        assert_eq!(protocol(b"GE"), Protocol::Other);
        assert_eq!(protocol(b"\x16"), Protocol::Other);
        assert_eq!(protocol(b""), Protocol::Other);
        assert_eq!(protocol(b"VERYLONGMETHOD / HTTP/1.1"), Protocol::Other);
    }

    #[tokio::test]
    async fn reads_until_it_can_decide_or_the_client_goes_quiet() {
        let (mut client, mut server) = tokio::io::duplex(64);
        use tokio::io::AsyncWriteExt;
        client.write_all(b"GET ").await.unwrap();
        let writer = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            client.write_all(b"/ HTTP/1.1\r\n").await.unwrap();
            client
        });
        let head = read_head(&mut server, Duration::from_secs(5))
            .await
            .unwrap();
        assert!(head.len() >= DECIDE_AT, "{head:?}");
        assert_eq!(protocol(&head), Protocol::Http);
        let _client = writer.await.unwrap();

        let (_quiet, mut server) = tokio::io::duplex(64);
        let head = read_head(&mut server, Duration::from_millis(30))
            .await
            .unwrap();
        assert!(head.is_empty());
        assert_eq!(protocol(&head), Protocol::Other);
    }
}
