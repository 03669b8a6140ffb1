//! Fresh PostgreSQL databases for tests, dropped after them.

// Each test binary uses its own share of these helpers.
#![allow(dead_code)]

use std::sync::Arc;

use latchkey_core::store::Store;
use latchkey_store_postgres::{PostgresSettings, PostgresStore};
use sqlx::{Connection, Executor, PgConnection};

/// Where tests create their databases: any database the user may connect
/// to, with the right to create others.
pub fn admin_url() -> String {
    std::env::var("LATCHKEY_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://root@127.0.0.1:5432/test".to_owned())
}

/// `url` naming database `name` instead (its query string kept).
pub fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let authority_at = base.find("://").map_or(0, |i| i + 3);
    let server = match base[authority_at..].find('/') {
        Some(slash) => &base[..authority_at + slash],
        None => base,
    };
    match query {
        Some(query) => format!("{server}/{name}?{query}"),
        None => format!("{server}/{name}"),
    }
}

/// A new, empty database; dropped (its connections cut) when this is.
pub struct TestDb {
    pub name: String,
    pub url: String,
}

impl TestDb {
    pub async fn create() -> Self {
        let name = format!("latchkey_test_{}", uuid::Uuid::new_v4().simple());
        let admin = admin_url();
        let mut conn = PgConnection::connect(&admin)
            .await
            .unwrap_or_else(|e| panic!("cannot reach PostgreSQL at {admin}: {e}"));
        conn.execute(sqlx::raw_sql(&format!("CREATE DATABASE \"{name}\"")))
            .await
            .expect("create the test database");
        conn.close().await.ok();
        let url = with_database(&admin, &name);
        Self { name, url }
    }

    /// Cuts every connection to this database but the caller's own.
    pub async fn terminate_backends(&self) -> u64 {
        let mut conn = PgConnection::connect(&admin_url()).await.expect("connect");
        let n: i64 = sqlx::query_scalar(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
             WHERE datname = $1 AND pid <> pg_backend_pid()",
        )
        .bind(&self.name)
        .fetch_one(&mut conn)
        .await
        .expect("terminate backends");
        conn.close().await.ok();
        u64::try_from(n).unwrap_or(0)
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        // `Drop` cannot await, and may run on a runtime that is busy or
        // single-threaded: drop the database from a thread of its own.
        let (admin, name) = (admin_url(), self.name.clone());
        let dropped = std::thread::spawn(move || -> Result<(), String> {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            runtime.block_on(async {
                let mut conn = PgConnection::connect(&admin)
                    .await
                    .map_err(|e| e.to_string())?;
                conn.execute(sqlx::raw_sql(&format!(
                    "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
                )))
                .await
                .map_err(|e| e.to_string())?;
                conn.close().await.ok();
                Ok(())
            })
        })
        .join();
        match dropped {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("could not drop test database {}: {e}", self.name),
            Err(_) => eprintln!(
                "could not drop test database {}: the thread panicked",
                self.name
            ),
        }
    }
}

/// A migrated store on a fresh database, with the default settings.
pub async fn fresh() -> (Arc<dyn Store>, TestDb) {
    let (store, db) = fresh_with(&PostgresSettings::default()).await;
    (Arc::new(store), db)
}

pub async fn fresh_with(settings: &PostgresSettings) -> (PostgresStore, TestDb) {
    let db = TestDb::create().await;
    let store = PostgresStore::connect(&db.url, settings)
        .await
        .expect("connect");
    store.migrate().await.expect("migrate");
    (store, db)
}
