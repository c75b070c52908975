use std::sync::Arc;

use cobrowse_proxy::url_codec::{ProxyMap, PublicOrigin, SessionId};

pub fn map() -> ProxyMap {
    let public = PublicOrigin::parse("http://localhost:8080").expect("fixed public URL");
    ProxyMap::new(Arc::new(public), SessionId::parse("k3x9q2m7wa").expect("fixed id"))
}

/// Splits `data` into chunks whose sizes come from `sizes` (cycled), so a target checks every boundary.
#[allow(dead_code)] // used by some targets, not all
pub fn chunks<'a>(data: &'a [u8], sizes: &[u8]) -> Vec<&'a [u8]> {
    let mut out = Vec::new();
    let mut rest = data;
    let mut i = 0;
    while !rest.is_empty() {
        let n = (*sizes.get(i % sizes.len().max(1)).unwrap_or(&7) as usize).clamp(1, rest.len());
        out.push(&rest[..n]);
        rest = &rest[n..];
        i += 1;
    }
    out
}
