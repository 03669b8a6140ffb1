//! The shared Store conformance suite, on a fresh PostgreSQL database per
//! test (`LATCHKEY_TEST_POSTGRES_URL`, by default
//! `postgres://root@127.0.0.1:5432/test`, names the server).

// Setup failures should stop the test; clippy only exempts `#[test]` bodies.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

latchkey_store_tests::conformance_suite!(common::fresh);

/// A refresh's rewrite of its session stays on the row's page (a HOT
/// update: no index entry, one page dirtied), because the sessions table
/// keeps room on its pages. With full pages, a refresh moved its row to
/// another page.
#[tokio::test]
async fn refreshes_rewrite_sessions_in_their_page() {
    use latchkey_core::audit::{AuditEvent, AuditRecord};
    use latchkey_core::store::{Advance, SessionRecord, Store, UserRecord};
    use latchkey_core::{SessionId, UserId};
    use sqlx::Connection;
    use time::{Duration, OffsetDateTime};

    // One connection: rows are laid out in the order they were inserted
    // (each pooled connection fills a page of its own).
    let settings = latchkey_store_postgres::PostgresSettings {
        max_connections: 1,
        ..Default::default()
    };
    let (store, db) = common::fresh_with(&settings).await;
    let now = OffsetDateTime::now_utc();
    let user = UserRecord {
        id: UserId::random(),
        username: "alice".into(),
        username_key: "alice".into(),
        password_hash: "$argon2id$x".into(),
        password_version: 0,
        created_at: now,
        disabled_at: None,
        email: None,
        second_factors: Default::default(),
    };
    store.create_user(&user).await.unwrap();
    let mut ids = Vec::new();
    for _ in 0..200 {
        let session = SessionRecord {
            id: SessionId::random(),
            user_id: user.id.clone(),
            client_id: "latchkey-web".into(),
            scope: "openid".into(),
            salt: vec![7; 16],
            generation: 0,
            rotated_at: None,
            created_at: now,
            last_used_at: now,
            absolute_expires_at: now + Duration::days(30),
            revoked_at: None,
            revoked_reason: None,
            user_agent: Some("Mozilla/5.0 (X11; Linux x86_64) Chrome/131.0".into()),
            ip: "203.0.113.7".into(),
            amr: vec!["pwd".into()],
            auth_time: now,
        };
        assert!(store.create_session(&session, 0).await.unwrap());
        ids.push(session.id);
    }
    let mut conn = sqlx::PgConnection::connect(&db.url).await.unwrap();
    let pages = "SELECT id, (ctid::text::point)[0]::bigint FROM sessions ORDER BY id";
    let before: Vec<(String, i64)> = sqlx::query_as(pages).fetch_all(&mut conn).await.unwrap();
    let audit = AuditRecord::new(AuditEvent::Refreshed, now);
    // One in four, as a live set spread over a large table: the room a
    // page keeps holds their new versions without a prune. Full pages hold
    // about one.
    for id in ids.iter().step_by(4) {
        let advanced = store
            .advance_generation(id, 0, now, now - Duration::days(1), &audit)
            .await
            .unwrap();
        assert!(matches!(advanced, Advance::Advanced(_)));
    }
    let after: Vec<(String, i64)> = sqlx::query_as(pages).fetch_all(&mut conn).await.unwrap();
    conn.close().await.ok();
    assert_eq!(before.len(), ids.len());
    let moved = before.iter().zip(&after).filter(|(b, a)| b != a).count();
    assert_eq!(moved, 0, "sessions moved to another page by a refresh");
}
