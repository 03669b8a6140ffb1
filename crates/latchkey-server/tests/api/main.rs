//! The HTTP contract of docs/reference.md, spoken to a real server on a free port.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod account;
mod auth;
mod authenticator;
mod binary;
mod csrf;
mod errors;
mod feed;
mod helpers;
mod interop;
mod keys;
mod limits;
mod mail;
mod mfa;
mod nodes;
mod oauth;
mod operations;
mod passkeys;
mod refresh;
mod schema_fuzz;
mod settings;
mod smtp;
