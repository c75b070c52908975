//! `<script type="importmap">`: module specifiers map to URLs, and scopes are URL prefixes; both move to
//! proxy hosts. Specifier keys that are absolute URLs move too, since the page's own imports of them are
//! proxied. An `integrity` section is dropped: proxied modules may change.

use serde_json::{Map, Value};
use url::Url;

use crate::url_codec::ProxyMap;

pub fn rewrite(text: &str, map: &ProxyMap, base: &Url) -> Option<String> {
    let Ok(Value::Object(mut root)) = serde_json::from_str::<Value>(text) else {
        return None;
    };
    let mut changed = root.remove("integrity").is_some();
    if let Some(Value::Object(imports)) = root.get_mut("imports") {
        changed |= rewrite_specifier_map(imports, map, base);
    }
    if let Some(Value::Object(scopes)) = root.get_mut("scopes") {
        let old = std::mem::take(scopes);
        for (prefix, mut value) in old {
            if let Value::Object(inner) = &mut value {
                changed |= rewrite_specifier_map(inner, map, base);
            }
            let key = rewrite_str(&prefix, map, base, &mut changed);
            scopes.insert(key, value);
        }
    }
    if !changed {
        return None;
    }
    serde_json::to_string(&Value::Object(root)).ok()
}

fn rewrite_specifier_map(entries: &mut Map<String, Value>, map: &ProxyMap, base: &Url) -> bool {
    let mut changed = false;
    let old = std::mem::take(entries);
    for (key, value) in old {
        let key = rewrite_str(&key, map, base, &mut changed);
        let value = match value {
            Value::String(s) => Value::String(rewrite_str(&s, map, base, &mut changed)),
            other => other,
        };
        entries.insert(key, value);
    }
    changed
}

fn rewrite_str(s: &str, map: &ProxyMap, base: &Url, changed: &mut bool) -> String {
    match map.rewrite_reference(base, s) {
        Some(new) => {
            *changed = true;
            new
        }
        None => s.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::url_codec::{PublicOrigin, SessionId};
    use std::sync::Arc;

    #[test]
    fn imports_and_scopes_are_proxied() {
        let map = ProxyMap::new(
            Arc::new(PublicOrigin::parse("http://localhost:8080").unwrap()),
            SessionId::parse("k3x9q2m7wa").unwrap(),
        );
        let base = Url::parse("https://www.shop.test/").unwrap();
        let text = r#"{"imports":{"util":"https://cdn.shop.test/u.mjs","local":"/l.mjs","https://cdn.shop.test/x.mjs":"/x.mjs"},"scopes":{"https://cdn.shop.test/":{"a":"./a.mjs"}},"integrity":{"/l.mjs":"sha384-x"}}"#;
        let out: Value = serde_json::from_str(&rewrite(text, &map, &base).unwrap()).unwrap();
        let p = "http://cdn.shop.test.k3x9q2m7wa-s.localhost:8080";
        assert_eq!(out["imports"]["util"], format!("{p}/u.mjs"));
        assert_eq!(out["imports"]["local"], "/l.mjs");
        assert_eq!(out["imports"][format!("{p}/x.mjs")], "/x.mjs");
        assert_eq!(out["scopes"][format!("{p}/")]["a"], "./a.mjs");
        assert!(out.get("integrity").is_none());
        assert_eq!(rewrite(r#"{"imports":{"a":"/a.mjs"}}"#, &map, &base), None);
        assert_eq!(rewrite("not json", &map, &base), None);
    }
}
