//! The latchkey server: HTTP at the edge, the service in the middle, the
//! store behind a trait. The `latchkey` binary is `main.rs`.

pub mod app;
pub mod cli;
pub mod config;
pub mod http;
pub mod mail;
pub mod metrics;
pub mod telemetry;
