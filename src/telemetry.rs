//! tracing setup: JSON for machines, pretty for people; pingora's `log` records are bridged in.

use crate::config::{LogConfig, LogFormat};
use tracing::{Level, Metadata};
use tracing_subscriber::filter::{filter_fn, EnvFilter};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

/// The filter: `RUST_LOG` when set, else the configured level.
pub fn filter(config: &LogConfig) -> EnvFilter {
    EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&config.level))
}

/// pingora prints whole request headers (credentials included) at debug and trace: whatever the
/// configured level, nothing below `info` from pingora is ever written.
pub fn below_secret_ceiling(meta: &Metadata<'_>) -> bool {
    !(meta.target().starts_with("pingora") && *meta.level() > Level::INFO)
}

/// Install the global subscriber (once per process; later calls are ignored).
pub fn init(config: &LogConfig) {
    let output = match config.format {
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .boxed(),
        LogFormat::Pretty => tracing_subscriber::fmt::layer().boxed(),
    };
    let _ = tracing_subscriber::registry()
        .with(
            output
                .with_filter(filter(config))
                .with_filter(filter_fn(below_secret_ceiling)),
        )
        .try_init();
}
