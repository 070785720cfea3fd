//! tracing setup: JSON for machines, pretty for people; pingora's `log` records are bridged in.

use crate::config::{LogConfig, LogFormat};
use tracing_subscriber::EnvFilter;

/// The filter: `RUST_LOG` when set, else the configured level.
pub fn filter(config: &LogConfig) -> EnvFilter {
    EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&config.level))
}

/// Install the global subscriber (once per process; later calls are ignored).
pub fn init(config: &LogConfig) {
    let builder = tracing_subscriber::fmt().with_env_filter(filter(config));
    let _ = match config.format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Pretty => builder.try_init(),
    };
}
