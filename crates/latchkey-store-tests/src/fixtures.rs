//! The records and helpers every case builds on.

use latchkey_core::clock::from_unix_millis;
use latchkey_core::keys;

use crate::prelude::*;

/// 2027-01-15T08:00:00.250Z plus `secs`: a non-zero millisecond part
/// catches a store that keeps whole seconds only.
pub(crate) fn at(secs: i64) -> OffsetDateTime {
    from_unix_millis(1_800_000_000_250 + secs * 1000)
}

pub(crate) const DAY: i64 = 86_400;

pub(crate) fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

pub(crate) fn new_user_id() -> UserId {
    UserId::random()
}

pub(crate) fn new_session_id() -> SessionId {
    SessionId::random()
}

pub(crate) fn user(username: &str, created: i64) -> UserRecord {
    UserRecord {
        id: new_user_id(),
        username: username.to_owned(),
        username_key: username.to_lowercase(),
        password_hash: format!("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA${username}"),
        password_version: 0,
        created_at: at(created),
        disabled_at: None,
        email: None,
        second_factors: Default::default(),
    }
}

/// A live session created at `created`; every optional field is set, and the
/// salt holds bytes that text columns would mangle.
pub(crate) fn session(user_id: &UserId, created: i64) -> SessionRecord {
    let mut salt = vec![0x00, 0xff, 0x80, 0x0a];
    salt.extend_from_slice(uuid::Uuid::new_v4().as_bytes());
    SessionRecord {
        id: new_session_id(),
        user_id: user_id.clone(),
        client_id: "latchkey-web".to_owned(),
        scope: "openid profile".to_owned(),
        salt,
        generation: 0,
        rotated_at: None,
        created_at: at(created),
        last_used_at: at(created),
        absolute_expires_at: at(created + 30 * DAY),
        revoked_at: None,
        revoked_reason: None,
        user_agent: Some("Mozilla/5.0 (X11; Linux x86_64) \"quoted\" ünïcode".to_owned()),
        ip: "203.0.113.7".to_owned(),
        amr: vec!["pwd".to_owned(), "otp".to_owned()],
        // After `created_at`, so that a store reading one for the other shows.
        auth_time: at(created + 1),
    }
}

pub(crate) async fn add_user(store: &dyn Store, username: &str, created: i64) -> UserRecord {
    let u = user(username, created);
    store.create_user(&u).await.unwrap();
    u
}

pub(crate) async fn add_session(
    store: &dyn Store,
    user_id: &UserId,
    created: i64,
) -> SessionRecord {
    let s = session(user_id, created);
    assert!(store.create_session(&s, 0).await.unwrap());
    s
}

pub(crate) async fn stored(store: &dyn Store, id: &SessionId) -> SessionRecord {
    store
        .session(id)
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("session {id} is gone"))
}

pub(crate) fn revoked(s: &SessionRecord, now: OffsetDateTime, reason: &str) -> SessionRecord {
    SessionRecord {
        revoked_at: Some(now),
        revoked_reason: Some(reason.to_owned()),
        ..s.clone()
    }
}

pub(crate) fn key(alg: SigningAlg, created: i64, activates: i64) -> KeyRecord {
    keys::generate(alg, at(created), at(activates), None).unwrap()
}

pub(crate) async fn keys_by_kid(store: &dyn Store) -> Vec<KeyRecord> {
    let mut keys = store.list_keys().await.unwrap();
    keys.sort_by(|a, b| a.kid.cmp(&b.kid));
    keys
}

/// The audit row a refresh commits with its compare-and-swap.
pub(crate) fn refreshed(now: OffsetDateTime) -> AuditRecord {
    AuditRecord::new(AuditEvent::Refreshed, now).detail("test")
}
