//! latchkey-verify against a real latchkey server and against a JWKS
//! server of the test's own.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod feed;
mod feed_server;
mod helpers;
mod http;
mod https;
mod jwks;
mod latchkey;
mod tokens;
