//! cobrowse-proxy: a universal co-browsing proxy.
pub mod url_codec;
