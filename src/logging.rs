//! The process's log subscriber, shared by the binary and the tests that check what logs may hold.
//!
//! Our own log lines carry route, method, host, status, sizes and times only (`access_log.rs`). Some
//! libraries are not so careful at their most verbose levels: tungstenite prints every WebSocket frame
//! and message at `trace` (the relay's page content) and client close reasons at `debug`. Their lines
//! below `info` are dropped here whatever `COBROWSE_LOG` asks for, so no filter spelling (a more specific
//! target, a span directive) can let relayed content into the log.

use tracing::{Level, Metadata, Subscriber};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::EnvFilter;

/// Crates (log targets) that print message contents below `info`.
const VERBOSE_WITH_CONTENT: [&str; 2] = ["tungstenite", "tokio_tungstenite"];

/// The subscriber for `directives` (`EnvFilter` syntax, e.g. `info` or `trace`), writing to `writer`.
/// Install it with `tracing_subscriber::util::SubscriberInitExt::init`, which also routes `log` records.
pub fn subscriber<W>(directives: &str, writer: W, ansi: bool) -> impl Subscriber + Send + Sync
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::new(directives))
        .with_ansi(ansi)
        .with_writer(writer)
        .finish()
        .with(tracing_subscriber::filter::filter_fn(allowed))
}

/// Whether a line may be logged at all, before the user's filter is asked.
pub fn allowed(meta: &Metadata<'_>) -> bool {
    *meta.level() <= Level::INFO || !carries_content(meta.target())
}

fn carries_content(target: &str) -> bool {
    VERBOSE_WITH_CONTENT.iter().any(|krate| {
        target
            .strip_prefix(krate)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with("::"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_printing_targets_are_recognised() {
        assert!(carries_content("tungstenite"));
        assert!(carries_content("tungstenite::protocol"));
        assert!(carries_content("tokio_tungstenite::compat"));
        assert!(!carries_content("tungstenite_other"));
        assert!(!carries_content("cobrowse_proxy::relay"));
    }
}
