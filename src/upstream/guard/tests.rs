use super::*;

fn refused(s: &str) -> bool {
    classify(s.parse().unwrap()).is_some()
}

#[test]
fn private_and_special_addresses_are_refused() {
    for ip in [
        "127.0.0.1",
        "127.255.255.254",
        "0.0.0.0",
        "0.1.2.3",
        "10.0.0.1",
        "172.16.0.1",
        "172.31.255.255",
        "192.168.1.1",
        "169.254.169.254",
        "100.64.0.1",
        "100.127.255.255",
        "224.0.0.1",
        "239.255.255.250",
        "255.255.255.255",
        "240.0.0.1",
        "192.0.2.1",
        "198.51.100.7",
        "203.0.113.9",
        "198.18.0.1",
        "192.0.0.8",
        "::",
        "::1",
        "fc00::1",
        "fd12:3456::1",
        "fe80::1",
        "fec0::1",
        "ff02::1",
        "::ffff:127.0.0.1",
        "::ffff:10.0.0.1",
        "::ffff:169.254.169.254",
        "::127.0.0.1",
        "64:ff9b::7f00:1",
        "64:ff9b::a00:1",
        "64:ff9b:1::1",
        "2002:7f00:1::",
        "2002:c0a8:101::1",
        "2001:db8::1",
        "2001::1",
        "100::1",
    ] {
        assert!(refused(ip), "{ip} must be refused");
    }
}

#[test]
fn public_addresses_pass() {
    for ip in [
        "1.1.1.1",
        "8.8.8.8",
        "93.184.216.34",
        "172.15.255.255",
        "172.32.0.1",
        "100.63.255.255",
        "100.128.0.1",
        "2606:4700::1111",
        "2a00:1450:4001::1",
        "::ffff:8.8.8.8",
        "64:ff9b::808:808",
        "2002:808:808::1",
    ] {
        assert!(!refused(ip), "{ip} must pass");
    }
}

#[tokio::test]
async fn resolve_rules_bypass_the_guard_and_keep_their_port() {
    let rules: Arc<[ResolveRule]> =
        vec![ResolveRule::parse("*.test=127.0.0.1:9000").unwrap()].into();
    let r = GuardedResolver::new(rules, &[]);
    let addrs: Vec<_> = r
        .clone()
        .lookup("www.shop.test".into())
        .await
        .unwrap()
        .collect();
    assert_eq!(addrs, vec!["127.0.0.1:9000".parse().unwrap()]);
}

#[tokio::test]
async fn names_resolving_to_loopback_are_refused() {
    let r = GuardedResolver::new(Vec::new().into(), &[]);
    // `localhost` resolves from /etc/hosts without any network.
    match r.lookup("localhost".into()).await {
        Err(ResolveError::Refused(refused)) => assert!(refused.addr.is_loopback()),
        Err(other) => panic!("expected a guard refusal, got {other}"),
        Ok(addrs) => panic!(
            "localhost resolved and passed: {:?}",
            addrs.collect::<Vec<_>>()
        ),
    }
}
