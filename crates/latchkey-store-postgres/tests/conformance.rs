//! The shared Store conformance suite, on a fresh PostgreSQL database per
//! test (`LATCHKEY_TEST_POSTGRES_URL`, by default
//! `postgres://root@127.0.0.1:5432/test`, names the server).

// Setup failures should stop the test; clippy only exempts `#[test]` bodies.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

latchkey_store_tests::conformance_suite!(common::fresh);

/// Passkeys, inserted in SQL (the trait cannot add one yet), are counted
/// with their user.
#[tokio::test]
async fn passkeys_are_counted_with_their_user() {
    use sqlx::Connection;

    let (store, db) = common::fresh().await;
    let alice = latchkey_core::store::UserRecord {
        id: latchkey_core::UserId::random(),
        username: "alice".into(),
        username_key: "alice".into(),
        password_hash: "$argon2id$x".into(),
        password_version: 0,
        created_at: time::OffsetDateTime::UNIX_EPOCH,
        disabled_at: None,
        email: None,
        second_factors: Default::default(),
    };
    store.create_user(&alice).await.unwrap();
    let mut conn = sqlx::PgConnection::connect(&db.url).await.unwrap();
    for id in ["pk-1", "pk-2", "pk-3"] {
        sqlx::query(
            "INSERT INTO passkeys (id, user_id, name, credential, created_at) \
             VALUES ($1, $2, 'phone', '{}', 0)",
        )
        .bind(id)
        .bind(alice.id.as_str())
        .execute(&mut conn)
        .await
        .unwrap();
    }
    conn.close().await.ok();
    latchkey_store_tests::passkeys_are_counted_with_their_user(store, &alice, 3).await;
}
