//! The shared Store conformance suite, on a fresh PostgreSQL database per
//! test (`LATCHKEY_TEST_POSTGRES_URL`, by default
//! `postgres://root@127.0.0.1:5432/test`, names the server).

// Setup failures should stop the test; clippy only exempts `#[test]` bodies.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

latchkey_store_tests::conformance_suite!(common::fresh);
