//! The private-address guard over real sockets, at every entry point (a session, an absolute-form
//! forward request, CONNECT), against a table of tricky targets, redirects that lead to them, and a
//! scripted DNS server whose answers name them or change between lookups. Loopback targets use the
//! fixture origin's port, so a guard that let one through would show up as a request the origin saw.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use cobrowse_proxy::config::{FileConfig, UpstreamTimeouts};
use hickory_proto::op::{Message, MessageType};
use hickory_proto::rr::{rdata::A, RData, Record, RecordType};
use http::StatusCode;
use support::{forward, header_params, start_with, Options, Stack};
use tokio::net::UdpSocket;

/// Hosts (with `{port}` for the origin's port where a port matters) that must never be reached.
fn tricky_hosts() -> Vec<&'static str> {
    vec![
        // IPv4 loopback, private, link-local, CGNAT, multicast, broadcast, unspecified.
        "127.0.0.1:{port}",
        "127.8.9.10:{port}",
        "0.0.0.0:{port}",
        "0:{port}",
        "10.0.0.1",
        "172.16.0.1",
        "172.31.255.254",
        "192.168.1.1",
        "169.254.169.254",
        "100.64.0.1",
        "100.127.255.254",
        "224.0.0.251",
        "239.255.255.250",
        "255.255.255.255",
        "240.0.0.1",
        // Other spellings of 127.0.0.1: decimal, octal, hex, short forms.
        "2130706433:{port}",
        "0177.0.0.1:{port}",
        "0x7f.0.0.1:{port}",
        "0x7f000001:{port}",
        "017700000001:{port}",
        "127.1:{port}",
        "127.0.1:{port}",
        // IPv6 loopback, unspecified, unique-local, link-local, multicast.
        "[::1]:{port}",
        "[::]:{port}",
        "[fd00::1]",
        "[fe80::1]",
        "[ff02::1]",
        // IPv6 forms that carry an IPv4 address: mapped, compatible, NAT64, 6to4.
        "[::ffff:127.0.0.1]:{port}",
        "[::ffff:7f00:1]:{port}",
        "[::ffff:169.254.169.254]",
        "[::127.0.0.1]:{port}",
        "[64:ff9b::7f00:1]:{port}",
        "[64:ff9b::a9fe:a9fe]",
        "[2002:7f00:1::1]:{port}",
        // Names that resolve to loopback.
        "localhost:{port}",
        "LOCALHOST.:{port}",
        "shop.localhost:{port}",
    ]
}

fn host_for(template: &str, stack: &Stack) -> String {
    template.replace("{port}", &stack.origin.addr.port().to_string())
}

/// A refusal that says why: 403 from the guard, or (for the proxy's own host names) the proxy's own
/// answer that the target is itself.
fn assert_refused(status: StatusCode, text: &str, what: &str) {
    assert!(
        status == StatusCode::FORBIDDEN || status == StatusCode::LOOP_DETECTED,
        "{what}: {status} {text}"
    );
}

#[tokio::test]
async fn every_tricky_target_is_refused_at_every_entry_point() {
    let stack = start_with(Options {
        file: FileConfig {
            access: cobrowse_proxy::access::AccessConfig {
                sessions_per_minute: 1000,
                ..Default::default()
            },
            ..FileConfig::default()
        },
        ..Options::default()
    })
    .await;
    let hosts = tricky_hosts();
    assert!(hosts.len() >= 30, "the table has {} targets", hosts.len());
    for template in hosts {
        let host = host_for(template, &stack);
        let url = format!("http://{host}/latest/meta-data/");

        let created = stack.create_session(&url).await;
        if created.status == StatusCode::CREATED {
            let visitor = created.json()["visitor_url"].as_str().unwrap().to_owned();
            let page = stack.get(&visitor).await;
            assert_refused(page.status, &page.text(), &format!("session {url}"));
        } else {
            assert_refused(created.status, &created.text(), &format!("create {url}"));
        }

        let socket = tokio::net::TcpStream::connect(stack.proxy).await.unwrap();
        let absolute = forward::http1(socket, forward::get(&url)).await;
        assert_refused(absolute.status, &absolute.text(), &format!("forward {url}"));

        let authority = if host.contains("]:") || (!host.starts_with('[') && host.contains(':')) {
            host.clone()
        } else {
            format!("{host}:80")
        };
        let (code, _) = forward::connect(stack.proxy, &authority, None).await;
        assert_refused(code, "", &format!("CONNECT {authority}"));
    }
    assert!(
        stack.origin.requests().is_empty(),
        "nothing reached the loopback origin: {:?}",
        stack.origin.requests()
    );
    stack.stop().await;
}

#[tokio::test]
async fn a_redirect_to_a_private_address_is_refused_when_followed() {
    let stack = support::start().await;
    let port = stack.origin.addr.port();
    let (id, _) = stack.session("https://www.shop.test/").await;
    let location = format!("Location:http://127.0.0.1:{port}/_fx/echo");
    let url = format!(
        "https://www.shop.test/_fx/respond?status=302{}",
        header_params(&[&location])
    );
    let redirect = stack.get(&stack.proxied(&id, &url)).await;
    assert_eq!(redirect.status, StatusCode::FOUND);
    let next = redirect.header("location").unwrap();
    assert!(
        !next.contains("127.0.0.1:"),
        "the Location stays inside the proxy: {next}"
    );
    let followed = stack.get(&next).await;
    assert_eq!(
        followed.status,
        StatusCode::FORBIDDEN,
        "{}",
        followed.text()
    );
    assert_eq!(
        stack.origin.request_count("127.0.0.1"),
        0,
        "the redirect target was never fetched"
    );
    stack.stop().await;
}

/// A DNS server on loopback that answers A queries with `answers[n % len]` for the n-th query.
async fn dns_server(answers: Vec<Vec<Ipv4Addr>>) -> (SocketAddr, Arc<AtomicUsize>) {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    let queries = Arc::new(AtomicUsize::new(0));
    let count = queries.clone();
    tokio::spawn(async move {
        let mut buf = [0u8; 1500];
        for _ in 0..10_000 {
            let Ok((n, peer)) = socket.recv_from(&mut buf).await else {
                return;
            };
            let Ok(query) = Message::from_vec(&buf[..n]) else {
                continue;
            };
            let mut reply = Message::new();
            reply
                .set_id(query.id())
                .set_message_type(MessageType::Response)
                .set_op_code(query.op_code())
                .set_recursion_desired(true)
                .set_recursion_available(true)
                .add_queries(query.queries().to_vec());
            for q in query.queries() {
                if q.query_type() != RecordType::A {
                    continue;
                }
                let k = count.fetch_add(1, Ordering::SeqCst);
                for ip in &answers[k % answers.len()] {
                    reply.add_answer(Record::from_rdata(q.name().clone(), 0, RData::A(A(*ip))));
                }
            }
            let _ = socket.send_to(&reply.to_vec().unwrap(), peer).await;
        }
    });
    (addr, queries)
}

async fn stack_with_dns(dns: SocketAddr) -> Stack {
    start_with(Options {
        file: FileConfig {
            dns_servers: vec![dns],
            upstream: UpstreamTimeouts {
                connect_ms: 300,
                ..UpstreamTimeouts::default()
            },
            ..FileConfig::default()
        },
        ..Options::default()
    })
    .await
}

#[tokio::test]
async fn names_whose_dns_answers_are_private_or_mixed_are_refused() {
    let private = vec![Ipv4Addr::new(10, 1, 2, 3)];
    let mixed = vec![Ipv4Addr::new(8, 8, 8, 8), Ipv4Addr::LOCALHOST];
    for answer in [private, mixed] {
        let (dns, queries) = dns_server(vec![answer.clone()]).await;
        let stack = stack_with_dns(dns).await;
        let port = stack.origin.addr.port();
        let (_, visitor) = stack
            .session(&format!("http://inside.example:{port}/"))
            .await;
        let reply = stack.get(&visitor).await;
        assert_eq!(
            reply.status,
            StatusCode::FORBIDDEN,
            "{answer:?}: {}",
            reply.text()
        );
        assert!(
            reply.text().contains("not a public address"),
            "{}",
            reply.text()
        );
        assert!(
            queries.load(Ordering::SeqCst) >= 1,
            "the scripted server was asked"
        );
        assert!(stack.origin.requests().is_empty());
        stack.stop().await;
    }
}

#[tokio::test]
async fn a_name_that_rebinds_between_lookups_never_reaches_loopback() {
    // Public, then loopback, alternating: a check on one answer and a connect on the next would let the
    // second through. The public address is unreachable here, so those attempts fail as 502/504.
    let (dns, queries) = dns_server(vec![
        vec![Ipv4Addr::new(8, 8, 8, 8)],
        vec![Ipv4Addr::LOCALHOST],
    ])
    .await;
    let stack = stack_with_dns(dns).await;
    let port = stack.origin.addr.port();
    let (id, _) = stack
        .session(&format!("http://rebind.example:{port}/"))
        .await;
    let mut refused = 0;
    for n in 0..6 {
        let url = stack.proxied(&id, &format!("http://rebind.example:{port}/_fx/echo?n={n}"));
        let reply = stack.get(&url).await;
        match reply.status {
            StatusCode::FORBIDDEN => refused += 1,
            StatusCode::BAD_GATEWAY | StatusCode::GATEWAY_TIMEOUT => {}
            other => panic!("attempt {n}: {other} {}", reply.text()),
        }
    }
    assert!(refused >= 1, "the loopback answers were refused");
    assert!(
        queries.load(Ordering::SeqCst) >= 2,
        "the name was looked up again"
    );
    assert!(
        stack.origin.requests().is_empty(),
        "nothing reached loopback: {:?}",
        stack.origin.requests()
    );
    stack.stop().await;
}
