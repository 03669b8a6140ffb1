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

/// What only the SQLite engine promises.
mod sqlite {
    #![allow(clippy::unwrap_used)]

    use std::os::unix::fs::PermissionsExt;
    use std::sync::atomic::{AtomicBool, Ordering};

    use latchkey_core::store::Store;
    use latchkey_store_sqlite::{SqliteSettings, SqliteStore};

    fn mode(path: &std::path::Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    /// The database and the `-wal` and `-shm` files beside it are the
    /// owner's only; a looser database is tightened.
    #[tokio::test]
    async fn files_are_readable_by_their_owner_only() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("latchkey.db");
        let url = format!("sqlite://{}", db.display());
        let store = SqliteStore::connect(&url, &SqliteSettings::default())
            .await
            .unwrap();
        store.migrate().await.unwrap();
        for file in ["latchkey.db", "latchkey.db-wal", "latchkey.db-shm"] {
            assert_eq!(mode(&dir.path().join(file)), 0o600, "{file}");
        }
        store.close();
        drop(store);

        std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644)).unwrap();
        let again = SqliteStore::connect(&url, &SqliteSettings::default())
            .await
            .unwrap();
        again.ping().await.unwrap();
        assert_eq!(mode(&db), 0o600);
    }

    /// Committed writes reach the database file itself without any commit
    /// waiting for it: the checkpointer copies the WAL in the background,
    /// long before the writer's own fallback (64 MiB of WAL) would.
    #[tokio::test]
    async fn the_checkpointer_copies_the_wal_into_the_database() {
        use latchkey_core::audit::{AuditEvent, AuditRecord};

        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("latchkey.db");
        let url = format!("sqlite://{}", db.display());
        let settings = SqliteSettings {
            checkpoint_interval: std::time::Duration::from_millis(20),
            ..SqliteSettings::default()
        };
        let store = SqliteStore::connect(&url, &settings).await.unwrap();
        store.migrate().await.unwrap();
        let at = time::OffsetDateTime::now_utc();
        for _ in 0..500 {
            let record = AuditRecord::new(AuditEvent::LoginFailed, at).ip("192.0.2.1");
            store.append_audit(&record).await.unwrap();
        }
        // The database file alone (no WAL beside it) holds every row.
        let copy = dir.path().join("copy.db");
        let mut rows = 0;
        for _ in 0..100 {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            std::fs::copy(&db, &copy).unwrap();
            let conn = rusqlite::Connection::open(&copy).unwrap();
            rows = conn
                .query_row("SELECT COUNT(*) FROM audit_log", [], |r| r.get::<_, i64>(0))
                .unwrap_or(0);
            if rows == 500 {
                break;
            }
        }
        assert_eq!(rows, 500);
        // And the WAL stays short.
        let wal = std::fs::metadata(dir.path().join("latchkey.db-wal"))
            .unwrap()
            .len();
        assert!(wal < 16 << 20, "{wal} bytes of WAL");
    }

    /// Runs `op` while the runtime's only blocking thread is held by a task
    /// that the other side of the join releases: `op` can finish only after
    /// that release if it runs on the blocking pool, and finishes at its first
    /// poll, before the release, if it runs inline on the async worker.
    async fn left_the_worker<F: std::future::Future>(op: F) -> bool {
        let (release, held) = std::sync::mpsc::channel::<()>();
        let holder = tokio::task::spawn_blocking(move || held.recv().ok());
        let released = AtomicBool::new(false);
        let (after_release, ()) = tokio::join!(
            async {
                op.await;
                released.load(Ordering::SeqCst)
            },
            async {
                released.store(true, Ordering::SeqCst);
                release.send(()).ok();
            }
        );
        holder.await.ok();
        after_release
    }

    /// A read of many rows runs off the async worker (a point read may run
    /// inline: one indexed lookup).
    #[test]
    fn scans_leave_the_async_worker_free() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .max_blocking_threads(1)
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let (store, _dir) = super::fresh().await;
            let now = time::OffsetDateTime::now_utc();
            assert!(left_the_worker(store.list_users()).await, "list_users");
            assert!(
                left_the_worker(store.live_sessions(None, now, now)).await,
                "live_sessions"
            );
            assert!(
                left_the_worker(store.count_live_sessions(now, now)).await,
                "count_live_sessions"
            );
            assert!(left_the_worker(store.list_keys()).await, "list_keys");
            assert!(left_the_worker(store.list_clients()).await, "list_clients");
            assert!(
                left_the_worker(store.recent_audit(10)).await,
                "recent_audit"
            );
            // A point read runs inline: it finishes before the release.
            assert!(!left_the_worker(store.user_by_key("alice")).await);
        });
    }

    #[tokio::test]
    async fn a_schema_newer_than_this_build_is_refused() {
        let (store, dir) = super::fresh().await;
        drop(store);
        let path = dir.path().join("latchkey.db");
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.pragma_update(None, "user_version", 999).unwrap();
        drop(conn);
        let url = format!("sqlite://{}", path.display());
        let store = SqliteStore::connect(&url, &SqliteSettings::default())
            .await
            .unwrap();
        let err = store.migrate().await.unwrap_err();
        assert!(
            matches!(err, latchkey_core::store::StoreError::Corrupt(ref m) if m.contains("999")),
            "{err:?}"
        );
    }
}
