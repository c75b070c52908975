//! A client for the forward proxy, as curl or a browser would use it: absolute-form requests, CONNECT,
//! TLS over the tunnel trusting a chosen CA (the proxy's or the origin's), then HTTP/1.1 or HTTP/2.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use super::Reply;

const WAIT: Duration = Duration::from_secs(30);

/// Sends `CONNECT authority` (with `Proxy-Authorization` when given) and returns the status line's code
/// and the stream, positioned after the response head.
pub async fn connect(
    proxy: SocketAddr,
    authority: &str,
    auth: Option<&str>,
) -> (StatusCode, TcpStream) {
    let mut stream = TcpStream::connect(proxy).await.expect("proxy accepts");
    let mut head = format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n");
    if let Some(auth) = auth {
        head.push_str(&format!("Proxy-Authorization: {auth}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await.unwrap();
    let response = read_head(&mut stream).await;
    let code: u16 = response
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status line: {response:?}"));
    (StatusCode::from_u16(code).unwrap(), stream)
}

/// Reads one response head (up to the blank line) byte by byte, so nothing after it is consumed.
pub async fn read_head<S: AsyncRead + Unpin>(stream: &mut S) -> String {
    let mut head = Vec::new();
    let read = async {
        while !head.ends_with(b"\r\n\r\n") && head.len() < 64 << 10 {
            let mut byte = [0u8; 1];
            if stream.read(&mut byte).await.unwrap() == 0 {
                break;
            }
            head.push(byte[0]);
        }
    };
    tokio::time::timeout(WAIT, read)
        .await
        .expect("response head in time");
    String::from_utf8_lossy(&head).into_owned()
}

/// TLS over `stream` for `server_name`, trusting only `ca_pem`, offering `alpn`.
pub async fn tls<S>(
    stream: S,
    server_name: &str,
    ca_pem: &str,
    alpn: &[&[u8]],
) -> std::io::Result<TlsStream<S>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut ca_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let mut config = cobrowse_proxy::tls::client_config(roots).unwrap();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let name = rustls::pki_types::ServerName::try_from(server_name.to_owned()).unwrap();
    tokio::time::timeout(WAIT, connector.connect(name, stream))
        .await
        .expect("TLS handshake in time")
}

/// One request over an HTTP/1.1 connection on `io`. `uri` may be absolute (absolute-form) or a path.
pub async fn http1<S>(io: S, req: Request<Full<Bytes>>) -> Reply
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .expect("h1 handshake");
    tokio::spawn(conn.with_upgrades());
    let response = tokio::time::timeout(WAIT, sender.send_request(req))
        .await
        .expect("response in time")
        .expect("response");
    collect(response).await
}

/// One request over an HTTP/2 connection on `io`; `uri` must be absolute (it carries `:authority`).
pub async fn http2<S>(io: S, req: Request<Full<Bytes>>) -> Reply
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(io))
            .await
            .expect("h2 handshake");
    tokio::spawn(conn);
    let response = tokio::time::timeout(WAIT, sender.send_request(req))
        .await
        .expect("response in time")
        .expect("response");
    collect(response).await
}

async fn collect(response: http::Response<hyper::body::Incoming>) -> Reply {
    let status = response.status();
    let headers = response.headers().clone();
    let body = tokio::time::timeout(WAIT, response.into_body().collect())
        .await
        .expect("body in time")
        .expect("body completes")
        .to_bytes();
    Reply {
        status,
        headers,
        body,
    }
}

/// A GET request for `uri` with `Host` set from it.
pub fn get(uri: &str) -> Request<Full<Bytes>> {
    let host = uri
        .parse::<http::Uri>()
        .ok()
        .and_then(|u| u.authority().map(|a| a.to_string()));
    let mut req = Request::get(uri);
    if let Some(host) = host {
        req = req.header("host", host);
    }
    req.body(Full::new(Bytes::new())).unwrap()
}

/// An origin-form GET (`GET /path`, `Host: host`), as a client sends it inside a tunnel.
pub fn origin_form(path: &str, host: &str) -> Request<Full<Bytes>> {
    Request::get(path)
        .header("host", host)
        .body(Full::new(Bytes::new()))
        .unwrap()
}

/// `Basic` credentials for `Proxy-Authorization`.
pub fn basic(user: &str, password: &str) -> String {
    use base64::Engine;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}
