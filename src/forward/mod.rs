//! The forward proxy (absolute-form requests and CONNECT with TLS interception). So far: the local CA.
pub mod ca;
