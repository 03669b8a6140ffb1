//! The shared Store conformance suite, on a fresh SQLite file per test.

// Setup failures should stop the test; clippy only exempts `#[test]` bodies.
#![allow(clippy::expect_used)]

use std::sync::Arc;

use latchkey_core::store::Store;
use latchkey_store_sqlite::{SqliteSettings, SqliteStore};
use tempfile::TempDir;

/// A migrated store on a new file; the directory goes when the test drops it.
async fn fresh() -> (Arc<dyn Store>, TempDir) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let url = format!("sqlite://{}", dir.path().join("latchkey.db").display());
    let store = SqliteStore::connect(&url, &SqliteSettings::default())
        .await
        .expect("connect");
    store.migrate().await.expect("migrate");
    (Arc::new(store), dir)
}

latchkey_store_tests::conformance_suite!(fresh);
