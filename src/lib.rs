//! authgate: a reverse-proxy authentication gateway for the GWOS and ioGates auth-token protocols.
//!
//! `main.rs` and the integration tests share one wiring path: [`server::build_server`].

pub mod admin;
pub mod api;
pub mod auth;
pub mod cache;
pub mod config;
pub mod demo;
pub mod forwarded;
pub mod metrics;
pub mod proxy;
pub mod server;
pub mod shutdown;
pub mod store;
pub mod target;
pub mod telemetry;
pub mod upstream;
pub mod users_reload;

pub use config::Config;
pub use server::{build_server, Built};
