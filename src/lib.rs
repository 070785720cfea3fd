//! authgate: a reverse-proxy authentication gateway for the GWOS and ioGates auth-token protocols.
//!
//! `main.rs` and the integration tests share one wiring path: [`server::build_server`].

pub mod api;
pub mod auth;
pub mod cache;
pub mod clock;
pub mod config;
pub mod connections;
pub mod forward_auth;
pub mod forwarded;
pub mod listening;
pub mod log_output;
pub mod metrics;
pub mod proxy;
pub mod reply;
pub mod server;
pub mod store;
pub mod target;
pub mod telemetry;
pub mod token;
pub mod url_token;

pub use config::Config;
pub use server::{build_server, build_server_with_clock, Built};
