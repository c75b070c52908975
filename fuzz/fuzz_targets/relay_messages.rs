//! Property: no text a visitor or an agent sends makes the relay's parsers panic; whatever they accept is
//! a JSON object; no token an outsider makes up verifies as a credential; and no bytes from the cluster
//! engine make the room-note decoder panic, while every note it accepts encodes back to the same note.
#![no_main]

use cobrowse_proxy::relay::bridge;
use cobrowse_proxy::relay::message::{parse_agent, parse_visitor};
use cobrowse_proxy::session::Credential;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(note) = bridge::decode(&bytes::Bytes::copy_from_slice(data)) {
        let text = note.text.as_ref().map(|t| t.as_str());
        let again = bridge::decode(&bridge::encode(note.node, &note.note, text)).expect("re-decodes");
        assert_eq!((again.node, &again.note), (note.node, &note.note));
        assert_eq!(again.text.as_ref().map(|t| t.as_str()), text);
    }
    let Ok(text) = std::str::from_utf8(data) else { return };
    let visitor = parse_visitor(text);
    let agent = parse_agent(text);
    if visitor.is_ok() || agent.is_ok() {
        // IgnoredAny, not Value: a number out of f64's range is valid JSON (browsers read it as
        // Infinity) but not representable as a Value.
        assert!(
            serde_json::from_str::<serde::de::IgnoredAny>(text).is_ok(),
            "accepted text is JSON"
        );
        assert!(text.trim_start().starts_with('{'), "accepted text is an object");
    }
    assert!(
        Credential::verify(text, std::time::SystemTime::now()).is_err(),
        "a made-up token never verifies"
    );
});
