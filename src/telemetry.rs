//! tracing setup: JSON for machines, pretty for people; pingora's `log` records are bridged in.

use crate::config::{LogConfig, LogFormat};
use tracing::level_filters::LevelFilter;
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
    let filter = filter(config);
    let log_ceiling = log_crate_ceiling(filter.max_level_hint());
    let installed = tracing_subscriber::registry()
        .with(
            output
                .with_filter(filter)
                .with_filter(filter_fn(below_secret_ceiling)),
        )
        .try_init();
    if installed.is_ok() {
        log::set_max_level(log_ceiling);
    }
}

/// The most verbose `log` record worth producing. Records of the `log` crate (pingora's) pass
/// through the bridge before any filter sees them; a low max level lets the `debug!` calls on
/// pingora's request path return at once instead (≈1.5 % of a proxied request's CPU in `perf`).
pub fn log_crate_ceiling(hint: Option<LevelFilter>) -> log::LevelFilter {
    match hint.unwrap_or(LevelFilter::TRACE).min(LevelFilter::INFO) {
        LevelFilter::OFF => log::LevelFilter::Off,
        LevelFilter::ERROR => log::LevelFilter::Error,
        LevelFilter::WARN => log::LevelFilter::Warn,
        _ => log::LevelFilter::Info,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_records_never_go_below_info_nor_above_the_filter() {
        assert_eq!(log_crate_ceiling(None), log::LevelFilter::Info);
        assert_eq!(
            log_crate_ceiling(Some(LevelFilter::TRACE)),
            log::LevelFilter::Info
        );
        assert_eq!(
            log_crate_ceiling(Some(LevelFilter::WARN)),
            log::LevelFilter::Warn
        );
        assert_eq!(
            log_crate_ceiling(Some(LevelFilter::OFF)),
            log::LevelFilter::Off
        );
    }
}
