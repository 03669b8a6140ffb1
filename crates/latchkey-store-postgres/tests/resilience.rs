//! What the store does when the database is away, slow or restarted, and
//! when several nodes start together.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use latchkey_core::audit::{AuditEvent, AuditRecord};
use latchkey_core::clock::from_unix_millis;
use latchkey_core::store::{Advance, SessionRecord, Store, StoreError, UserRecord};
use latchkey_core::{SessionId, UserId};
use latchkey_store_postgres::{PostgresSettings, PostgresStore};
use sqlx::{Connection, PgConnection};

use common::{fresh_with, TestDb};

fn short() -> PostgresSettings {
    PostgresSettings {
        max_connections: 4,
        acquire_timeout: Duration::from_secs(1),
        statement_timeout: Duration::from_secs(1),
    }
}

fn at(secs: i64) -> time::OffsetDateTime {
    from_unix_millis(1_800_000_000_250 + secs * 1000)
}

fn assert_unavailable<T: std::fmt::Debug>(what: &str, result: Result<T, StoreError>) {
    match result {
        Err(StoreError::Unavailable(_)) => {}
        other => panic!("{what}: expected Unavailable, got {other:?}"),
    }
}

async fn user_and_session(store: &dyn Store) -> SessionRecord {
    let user = UserRecord {
        id: UserId::random(),
        username: "alice".into(),
        username_key: "alice".into(),
        password_hash: "$argon2id$x".into(),
        password_version: 0,
        created_at: at(0),
        disabled_at: None,
        email: None,
        second_factors: Default::default(),
    };
    store.create_user(&user).await.unwrap();
    let session = SessionRecord {
        id: SessionId::random(),
        user_id: user.id,
        client_id: "latchkey-web".into(),
        scope: "openid".into(),
        salt: vec![1; 32],
        generation: 0,
        rotated_at: None,
        created_at: at(0),
        last_used_at: at(0),
        absolute_expires_at: at(86_400),
        revoked_at: None,
        revoked_reason: None,
        user_agent: None,
        ip: "127.0.0.1".into(),
        amr: vec!["pwd".into()],
        auth_time: at(0),
    };
    assert!(store.create_session(&session, 0).await.unwrap());
    session
}

fn refreshed(secs: i64) -> AuditRecord {
    AuditRecord::new(AuditEvent::Refreshed, at(secs))
}

/// Nothing listens on port 1: `connect` and every operation of a lazily
/// connected store answer `Unavailable` by the acquire timeout, never later,
/// several at once too.
#[tokio::test]
async fn nothing_listening_is_unavailable_quickly() {
    let settings = short();
    // Well under acquire_timeout + statement_timeout (2 s); the pool retries
    // a refused connection until acquire_timeout (1 s).
    let bound = Duration::from_millis(1600);
    let url = "postgres://root@127.0.0.1:1/latchkey";

    let started = Instant::now();
    assert_unavailable("connect", PostgresStore::connect(url, &settings).await);
    let took = started.elapsed();
    assert!(took < bound, "connect took {took:?}");

    let store = Arc::new(PostgresStore::connect_lazy(url, &settings).unwrap());
    let record = refreshed(1);
    let started = Instant::now();
    let sid = SessionId::from("s");
    let (ping, session, advance, audit) = tokio::join!(
        store.ping(),
        store.session(&sid),
        store.advance_generation(&sid, 0, at(1), time::OffsetDateTime::UNIX_EPOCH, &record),
        store.append_audit(&record),
    );
    let took = started.elapsed();
    assert_unavailable("ping", ping);
    assert_unavailable("session", session);
    assert_unavailable("advance_generation", advance);
    assert_unavailable("append_audit", audit);
    assert!(took < bound, "operations took {took:?}");

    // Still so on the next call: nothing stuck in the pool.
    let started = Instant::now();
    assert_unavailable("ping again", store.ping().await);
    assert!(started.elapsed() < bound, "took {:?}", started.elapsed());
}

/// A refresh stuck behind a row lock (another node's open transaction)
/// answers `Unavailable` at the statement timeout, and works once the lock
/// is gone.
#[tokio::test]
async fn statement_timeout_bounds_a_lock_wait() {
    let (store, db) = fresh_with(&short()).await;
    let session = user_and_session(&store).await;

    let mut holder = PgConnection::connect(&db.url).await.unwrap();
    let mut tx = holder.begin().await.unwrap();
    sqlx::query("SELECT id FROM sessions WHERE id = $1 FOR UPDATE")
        .bind(session.id.as_str())
        .fetch_one(&mut *tx)
        .await
        .unwrap();

    let started = Instant::now();
    let stuck = store
        .advance_generation(
            &session.id,
            0,
            at(1),
            time::OffsetDateTime::UNIX_EPOCH,
            &refreshed(1),
        )
        .await;
    let took = started.elapsed();
    assert_unavailable("advance_generation behind a lock", stuck);
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_millis(1800),
        "took {took:?}"
    );

    tx.rollback().await.unwrap();
    assert!(matches!(
        store
            .advance_generation(
                &session.id,
                0,
                at(2),
                time::OffsetDateTime::UNIX_EPOCH,
                &refreshed(2)
            )
            .await
            .unwrap(),
        Advance::Advanced(_)
    ));
    // The timed-out attempt left no audit row behind.
    assert_eq!(store.recent_audit(10).await.unwrap(), [refreshed(2)]);
    holder.close().await.ok();
}

/// Connections cut under the store's feet (a database restart, a failover)
/// are replaced without an error reaching the caller.
#[tokio::test]
async fn resumes_after_connections_are_cut() {
    let (store, db) = fresh_with(&short()).await;
    let session = user_and_session(&store).await;
    // Open a few pooled connections.
    let reads = tokio::join!(
        store.session(&session.id),
        store.session(&session.id),
        store.session(&session.id),
        store.session(&session.id),
    );
    for read in [reads.0, reads.1, reads.2, reads.3] {
        assert!(read.unwrap().is_some());
    }

    assert!(db.terminate_backends().await > 0);

    for round in 0..3u64 {
        store.ping().await.unwrap();
        let now = i64::try_from(round).unwrap() + 10;
        assert!(matches!(
            store
                .advance_generation(
                    &session.id,
                    round,
                    at(now),
                    time::OffsetDateTime::UNIX_EPOCH,
                    &refreshed(now)
                )
                .await
                .unwrap(),
            Advance::Advanced(_)
        ));
    }
}

/// Nodes starting together on an empty database all migrate without error.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_migrations_agree() {
    let db = TestDb::create().await;
    let mut stores = Vec::new();
    for _ in 0..4 {
        stores.push(Arc::new(
            PostgresStore::connect(&db.url, &short()).await.unwrap(),
        ));
    }
    let tasks: Vec<_> = stores
        .iter()
        .map(|store| {
            let store = Arc::clone(store);
            tokio::spawn(async move { store.migrate().await })
        })
        .collect();
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    // Migrating again is a no-op.
    stores[0].migrate().await.unwrap();
    let session = user_and_session(&*stores[1]).await;
    assert_eq!(stores[2].session(&session.id).await.unwrap(), Some(session));
}
