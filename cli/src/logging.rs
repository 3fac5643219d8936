//! Logs on stderr through `tracing`: readable text on a terminal, JSON lines for collectors.
//! `RUST_LOG` picks the level (default `info`, without lapin's returned-message dumps).

use tracing_subscriber::EnvFilter;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum LogFormat {
    /// One readable line per event.
    Text,
    /// One JSON object per line, with every field (event id, subject, request-id) as a key.
    Json,
}

pub(crate) fn init(format: LogFormat) {
    // lapin logs every returned message at WARN with its whole body. moss handles returns itself
    // (an unroutable event is a publish error and stays in the outbox; an outcome nobody listens
    // to is fine), so those lines are noise, and a body has no place in a log.
    let mut filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // Kept even under RUST_LOG: a returned message's body has no place in a log.
    if let Ok(directive) = "lapin::returned_messages=error".parse() {
        filter = filter.add_directive(directive);
    }
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .init(),
    }
}
