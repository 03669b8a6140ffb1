//! The conformance suite every latchkey `Store` implementation must pass.
//!
//! Each case is a `pub async fn` taking a fresh, migrated store; it knows
//! nothing of the engine behind it. An engine runs them all with
//! [`conformance_suite!`], from one of its integration tests:
//!
//! ```ignore
//! async fn fresh() -> (Arc<dyn Store>, TempDir) { /* connect + migrate */ }
//!
//! latchkey_store_tests::conformance_suite!(fresh);
//! ```
//!
//! Instants are built as whole milliseconds, the precision stores keep.

// This crate is test code: a failed step should stop the case loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use latchkey_core::audit::{AuditEvent, AuditRecord};
use latchkey_core::clock::from_unix_millis;
use latchkey_core::keys::{self, KeyRecord, SigningAlg};
use latchkey_core::store::{
    Advance, ClientRecord, DeadSessions, LoginAttempt, LoginLimit, RevokeScope, SessionRecord,
    SessionWithUser, SessionsPruned, Store, StoreError, UserRecord,
};
use latchkey_core::{SessionId, UserId};
use time::OffsetDateTime;
use tokio::sync::Barrier;

/// What a suite's `$make` gives: a store, plus anything that must outlive
/// the case (a temporary directory, say).
pub trait Fixture: Send + 'static {
    fn store(&self) -> Arc<dyn Store>;
}

impl Fixture for Arc<dyn Store> {
    fn store(&self) -> Arc<dyn Store> {
        Arc::clone(self)
    }
}

impl<G: Send + 'static> Fixture for (Arc<dyn Store>, G) {
    fn store(&self) -> Arc<dyn Store> {
        Arc::clone(&self.0)
    }
}

/// Expands to one `#[tokio::test]` per case. `$make` is an async function
/// or closure, called once per test, answering a fresh migrated store as a
/// [`Fixture`] (`Arc<dyn Store>`, or `(Arc<dyn Store>, guard)`). The calling
/// crate needs `tokio` (with the multi-threaded runtime) as a dev-dependency.
#[macro_export]
macro_rules! conformance_suite {
    (@tests $make:expr, $test:meta; $($case:ident),+ $(,)?) => {
        $(
            #[$test]
            async fn $case() {
                let fixture = ($make)().await;
                $crate::$case($crate::Fixture::store(&fixture)).await;
            }
        )+
    };
    ($make:expr) => {
        $crate::conformance_suite!(@tests $make, tokio::test;
            ping,
            users_round_trip,
            users_listed_oldest_first,
            duplicate_username_key_conflicts,
            rehash_keeps_sessions_and_needs_the_version,
            set_password_hash_revokes_all_but_one,
            create_session_needs_the_checked_password,
            set_user_disabled_revokes_every_session,
            sessions_round_trip,
            session_with_user_joins_its_user,
            advance_generation_moves_once,
            advance_generation_on_revoked_is_lost,
            revoke_one_session,
            revoke_user_sessions,
            live_sessions_filter_and_order,
            keys_round_trip,
            delete_keys_by_kid,
            retire_key_retires_purges_and_promotes,
            refresh_secret_is_made_once,
            login_attempts_reserved_up_to_the_limit,
            audit_newest_first,
            clients_round_trip,
            prune_removes_only_what_cannot_matter,
            prune_sessions_a_batch_at_a_time,
            prune_audit_and_failures_a_batch_at_a_time,
        );
        // Races need real threads to mean anything.
        $crate::conformance_suite!(@tests $make, tokio::test(flavor = "multi_thread", worker_threads = 4);
            concurrent_advances_have_one_winner,
            concurrent_refresh_secrets_agree,
            concurrent_login_attempts_stop_at_the_limit,
        );
    };
}

/// 2027-01-15T08:00:00.250Z plus `secs`: a non-zero millisecond part
/// catches a store that keeps whole seconds only.
fn at(secs: i64) -> OffsetDateTime {
    from_unix_millis(1_800_000_000_250 + secs * 1000)
}

const DAY: i64 = 86_400;

fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

fn new_user_id() -> UserId {
    UserId::random()
}

fn new_session_id() -> SessionId {
    SessionId::random()
}

fn user(username: &str, created: i64) -> UserRecord {
    UserRecord {
        id: new_user_id(),
        username: username.to_owned(),
        username_key: username.to_lowercase(),
        password_hash: format!("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA${username}"),
        password_version: 0,
        created_at: at(created),
        disabled_at: None,
    }
}

/// A live session created at `created`; every optional field is set, and the
/// salt holds bytes that text columns would mangle.
fn session(user_id: &UserId, created: i64) -> SessionRecord {
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
    }
}

async fn add_user(store: &dyn Store, username: &str, created: i64) -> UserRecord {
    let u = user(username, created);
    store.create_user(&u).await.unwrap();
    u
}

async fn add_session(store: &dyn Store, user_id: &UserId, created: i64) -> SessionRecord {
    let s = session(user_id, created);
    assert!(store.create_session(&s, 0).await.unwrap());
    s
}

async fn stored(store: &dyn Store, id: &SessionId) -> SessionRecord {
    store
        .session(id)
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("session {id} is gone"))
}

fn revoked(s: &SessionRecord, now: OffsetDateTime, reason: &str) -> SessionRecord {
    SessionRecord {
        revoked_at: Some(now),
        revoked_reason: Some(reason.to_owned()),
        ..s.clone()
    }
}

fn key(alg: SigningAlg, created: i64, activates: i64) -> KeyRecord {
    keys::generate(alg, at(created), at(activates), None).unwrap()
}

async fn keys_by_kid(store: &dyn Store) -> Vec<KeyRecord> {
    let mut keys = store.list_keys().await.unwrap();
    keys.sort_by(|a, b| a.kid.cmp(&b.kid));
    keys
}

pub async fn ping(store: Arc<dyn Store>) {
    store.ping().await.unwrap();
}

/// Every field comes back, by key and by id; unknown ones are `None`.
pub async fn users_round_trip(store: Arc<dyn Store>) {
    let alice = UserRecord {
        username: "Alice".to_owned(),
        ..user("alice", 0)
    };
    let bob = UserRecord {
        disabled_at: Some(at(DAY)),
        ..user("bob", 60)
    };
    store.create_user(&alice).await.unwrap();
    store.create_user(&bob).await.unwrap();

    for u in [&alice, &bob] {
        assert_eq!(
            store.user_by_key(&u.username_key).await.unwrap().as_ref(),
            Some(u)
        );
        assert_eq!(store.user_by_id(&u.id).await.unwrap().as_ref(), Some(u));
    }
    assert_eq!(store.user_by_key("carol").await.unwrap(), None);
    assert_eq!(store.user_by_id(&new_user_id()).await.unwrap(), None);
    // A key is not an id, nor the other way round.
    assert_eq!(
        store
            .user_by_id(&UserId::from(alice.username_key.as_str()))
            .await
            .unwrap(),
        None
    );
    assert_eq!(store.user_by_key(alice.id.as_str()).await.unwrap(), None);
}

pub async fn users_listed_oldest_first(store: Arc<dyn Store>) {
    assert_eq!(store.list_users().await.unwrap(), vec![]);
    // Neither insertion order nor id order is age order, so neither can pass for it.
    let (alice, bob, carol) = (user("alice", 10), user("bob", 20), user("carol", 30));
    let alice = UserRecord {
        id: format!("3-{}", alice.id).into(),
        ..alice
    };
    let bob = UserRecord {
        id: format!("2-{}", bob.id).into(),
        ..bob
    };
    let carol = UserRecord {
        id: format!("1-{}", carol.id).into(),
        ..carol
    };
    for u in [&carol, &alice, &bob] {
        store.create_user(u).await.unwrap();
    }
    assert_eq!(store.list_users().await.unwrap(), vec![alice, bob, carol]);
}

/// A taken `username_key` is a `Conflict`, and the first user stays as it was.
pub async fn duplicate_username_key_conflicts(store: Arc<dyn Store>) {
    let first = add_user(&*store, "alice", 0).await;
    let second = UserRecord {
        username: "ALICE".to_owned(),
        password_hash: "$argon2id$other".to_owned(),
        ..user("alice", 10)
    };
    let err = store.create_user(&second).await.unwrap_err();
    assert!(
        matches!(err, StoreError::Conflict(_)),
        "expected Conflict, got {err:?}"
    );

    assert_eq!(
        store.user_by_key("alice").await.unwrap(),
        Some(first.clone())
    );
    assert_eq!(store.user_by_id(&second.id).await.unwrap(), None);
    assert_eq!(store.list_users().await.unwrap(), vec![first]);
}

/// A rehash replaces the hash while the version is the one read, and
/// touches nothing else; after a password change it does nothing.
pub async fn rehash_keeps_sessions_and_needs_the_version(store: Arc<dyn Store>) {
    let alice = add_user(&*store, "alice", 0).await;
    let bob = add_user(&*store, "bob", 0).await;
    let a1 = add_session(&*store, &alice.id, 10).await;
    let a2 = add_session(&*store, &alice.id, 20).await;

    assert!(store
        .rehash_password(&alice.id, 0, "$argon2id$rehashed")
        .await
        .unwrap());
    let expected = UserRecord {
        password_hash: "$argon2id$rehashed".to_owned(),
        ..alice.clone()
    };
    assert_eq!(store.user_by_id(&alice.id).await.unwrap(), Some(expected));
    assert_eq!(store.user_by_id(&bob.id).await.unwrap(), Some(bob));
    assert_eq!(stored(&*store, &a1.id).await, a1);
    assert_eq!(stored(&*store, &a2.id).await, a2);

    let scope = RevokeScope::User {
        user_id: &alice.id,
        except: None,
    };
    store
        .set_password_hash(
            &alice.id,
            "$argon2id$changed",
            scope,
            at(30),
            "password_set",
        )
        .await
        .unwrap();
    // A login that read version 0 must not put the old password back.
    assert!(!store
        .rehash_password(&alice.id, 0, "$argon2id$stale")
        .await
        .unwrap());
    let user = store.user_by_id(&alice.id).await.unwrap().unwrap();
    assert_eq!(
        (user.password_hash.as_str(), user.password_version),
        ("$argon2id$changed", 1)
    );
}

/// A session opens only while its user is enabled and at the password
/// version the login checked.
pub async fn create_session_needs_the_checked_password(store: Arc<dyn Store>) {
    let alice = add_user(&*store, "alice", 0).await;
    let scope = RevokeScope::User {
        user_id: &alice.id,
        except: None,
    };
    store
        .set_password_hash(&alice.id, "$argon2id$new", scope, at(5), "password_set")
        .await
        .unwrap();
    let stale = session(&alice.id, 10);
    assert!(!store.create_session(&stale, 0).await.unwrap());
    assert_eq!(store.session(&stale.id).await.unwrap(), None);
    let fresh = session(&alice.id, 10);
    assert!(store.create_session(&fresh, 1).await.unwrap());
    assert_eq!(stored(&*store, &fresh.id).await, fresh);

    store
        .set_user_disabled(&alice.id, Some(at(20)))
        .await
        .unwrap();
    let disabled = session(&alice.id, 30);
    assert!(!store.create_session(&disabled, 1).await.unwrap());
    assert_eq!(store.session(&disabled.id).await.unwrap(), None);
    let nobody = session(&new_user_id(), 30);
    assert!(!store.create_session(&nobody, 0).await.unwrap());
}

/// With a `User` scope and `except`, every other session of that user is
/// revoked with the hash change; the excepted one and other users' stay.
pub async fn set_password_hash_revokes_all_but_one(store: Arc<dyn Store>) {
    let alice = add_user(&*store, "alice", 0).await;
    let bob = add_user(&*store, "bob", 0).await;
    let current = add_session(&*store, &alice.id, 10).await;
    let other1 = add_session(&*store, &alice.id, 20).await;
    let other2 = add_session(&*store, &alice.id, 30).await;
    let bobs = add_session(&*store, &bob.id, 40).await;
    let now = at(100);

    let scope = RevokeScope::User {
        user_id: &alice.id,
        except: Some(&current.id),
    };
    store
        .set_password_hash(&alice.id, "$argon2id$new", scope, now, "password_changed")
        .await
        .unwrap();

    let user = store.user_by_id(&alice.id).await.unwrap().unwrap();
    assert_eq!(user.password_hash, "$argon2id$new");
    assert_eq!(user.password_version, 1);
    assert_eq!(stored(&*store, &current.id).await, current);
    assert_eq!(
        stored(&*store, &other1.id).await,
        revoked(&other1, now, "password_changed")
    );
    assert_eq!(
        stored(&*store, &other2.id).await,
        revoked(&other2, now, "password_changed")
    );
    assert_eq!(stored(&*store, &bobs.id).await, bobs);
}

/// Disabling revokes every session of the user (keeping an earlier
/// revocation as it was); enabling brings none back; an unknown id is false.
pub async fn set_user_disabled_revokes_every_session(store: Arc<dyn Store>) {
    let alice = add_user(&*store, "alice", 0).await;
    let bob = add_user(&*store, "bob", 0).await;
    let s1 = add_session(&*store, &alice.id, 10).await;
    let s2 = add_session(&*store, &alice.id, 20).await;
    let gone = add_session(&*store, &alice.id, 30).await;
    let bobs = add_session(&*store, &bob.id, 40).await;
    store
        .revoke_sessions(RevokeScope::One(&gone.id), at(50), "logout")
        .await
        .unwrap();

    let disabled = at(100);
    assert!(store
        .set_user_disabled(&alice.id, Some(disabled))
        .await
        .unwrap());
    let user = store.user_by_id(&alice.id).await.unwrap().unwrap();
    assert_eq!(
        user,
        UserRecord {
            disabled_at: Some(disabled),
            ..alice.clone()
        }
    );
    for s in [&s1, &s2] {
        let now = stored(&*store, &s.id).await;
        assert_eq!(
            now.revoked_at,
            Some(disabled),
            "session {} not revoked",
            s.id
        );
        assert!(now.revoked_reason.is_some());
        assert_eq!(
            SessionRecord {
                revoked_at: None,
                revoked_reason: None,
                ..now
            },
            *s
        );
    }
    assert_eq!(
        stored(&*store, &gone.id).await,
        revoked(&gone, at(50), "logout")
    );
    assert_eq!(stored(&*store, &bobs.id).await, bobs);
    assert_eq!(store.user_by_id(&bob.id).await.unwrap(), Some(bob));

    let revoked_s1 = stored(&*store, &s1.id).await;
    assert!(store.set_user_disabled(&alice.id, None).await.unwrap());
    assert_eq!(
        store.user_by_id(&alice.id).await.unwrap(),
        Some(alice.clone())
    );
    assert_eq!(stored(&*store, &s1.id).await, revoked_s1);
    let live = store
        .live_sessions(Some(&alice.id), at(200), at(0))
        .await
        .unwrap();
    assert_eq!(live, vec![]);

    let nobody = new_user_id();
    assert!(!store
        .set_user_disabled(&nobody, Some(at(300)))
        .await
        .unwrap());
    assert!(!store.set_user_disabled(&nobody, None).await.unwrap());
    assert_eq!(store.user_by_id(&nobody).await.unwrap(), None);
}

/// Every field comes back as written, `None`s and `Some`s alike.
pub async fn sessions_round_trip(store: Arc<dyn Store>) {
    let alice = add_user(&*store, "alice", 0).await;
    let full = SessionRecord {
        generation: 7,
        rotated_at: Some(at(500)),
        last_used_at: at(500),
        ..session(&alice.id, 10)
    };
    let bare = SessionRecord {
        user_agent: None,
        salt: vec![0; 32],
        ..session(&alice.id, 20)
    };
    let ended = SessionRecord {
        ip: "2001:db8::1".to_owned(),
        ..revoked(&session(&alice.id, 30), at(40), "logout")
    };
    for s in [&full, &bare, &ended] {
        assert!(store.create_session(s, 0).await.unwrap());
    }
    for s in [&full, &bare, &ended] {
        assert_eq!(stored(&*store, &s.id).await, *s);
    }
    assert_eq!(store.session(&new_session_id()).await.unwrap(), None);
}

pub async fn session_with_user_joins_its_user(store: Arc<dyn Store>) {
    let alice = add_user(&*store, "alice", 0).await;
    // Disabled and created at another time, so a mixed-up column shows.
    let bob = add_user(&*store, "bob", 1).await;
    let alices = add_session(&*store, &alice.id, 10).await;
    let bobs = add_session(&*store, &bob.id, 20).await;
    store
        .set_user_disabled(&bob.id, Some(at(25)))
        .await
        .unwrap();
    let bob = UserRecord {
        disabled_at: Some(at(25)),
        ..bob
    };
    let bobs = revoked(&bobs, at(25), "user_disabled");

    let found = store.session_with_user(&bobs.id).await.unwrap();
    assert_eq!(
        found,
        Some(SessionWithUser {
            session: bobs,
            user: bob
        })
    );
    let found = store.session_with_user(&alices.id).await.unwrap();
    assert_eq!(
        found,
        Some(SessionWithUser {
            session: alices,
            user: alice
        })
    );
    assert_eq!(
        store.session_with_user(&new_session_id()).await.unwrap(),
        None
    );
}

/// The compare-and-swap moves only from the current generation, once.
/// The audit row a refresh commits with its compare-and-swap.
fn refreshed(now: OffsetDateTime) -> AuditRecord {
    AuditRecord::new(AuditEvent::Refreshed, now).detail("test")
}

pub async fn advance_generation_moves_once(store: Arc<dyn Store>) {
    let alice = add_user(&*store, "alice", 0).await;
    // Not at 0, so a store that resets or ignores the generation shows.
    let s = SessionRecord {
        generation: 3,
        ..session(&alice.id, 10)
    };
    assert!(store.create_session(&s, 0).await.unwrap());

    let moved = SessionRecord {
        generation: 4,
        rotated_at: Some(at(60)),
        last_used_at: at(60),
        ..s.clone()
    };
    assert_eq!(
        store
            .advance_generation(&s.id, 3, at(60), &refreshed(at(60)))
            .await
            .unwrap(),
        Advance::Advanced(Box::new(moved.clone()))
    );
    assert_eq!(stored(&*store, &s.id).await, moved);

    // The old generation again, and one not reached yet: both lose, nothing moves.
    assert_eq!(
        store
            .advance_generation(&s.id, 3, at(61), &refreshed(at(61)))
            .await
            .unwrap(),
        Advance::Lost
    );
    assert_eq!(
        store
            .advance_generation(&s.id, 5, at(62), &refreshed(at(62)))
            .await
            .unwrap(),
        Advance::Lost
    );
    assert_eq!(stored(&*store, &s.id).await, moved);

    let again = SessionRecord {
        generation: 5,
        rotated_at: Some(at(70)),
        last_used_at: at(70),
        ..s.clone()
    };
    assert_eq!(
        store
            .advance_generation(&s.id, 4, at(70), &refreshed(at(70)))
            .await
            .unwrap(),
        Advance::Advanced(Box::new(again.clone()))
    );
    assert_eq!(stored(&*store, &s.id).await, again);
    // Each win committed its audit row with it; the losses wrote none.
    let rows = store.recent_audit(10).await.unwrap();
    assert_eq!(rows, [refreshed(at(70)), refreshed(at(60))]);

    assert_eq!(
        store
            .advance_generation(&new_session_id(), 0, at(80), &refreshed(at(80)))
            .await
            .unwrap(),
        Advance::Lost
    );
}

pub async fn advance_generation_on_revoked_is_lost(store: Arc<dyn Store>) {
    let alice = add_user(&*store, "alice", 0).await;
    let s = add_session(&*store, &alice.id, 10).await;
    store
        .revoke_sessions(RevokeScope::One(&s.id), at(20), "logout")
        .await
        .unwrap();

    assert_eq!(
        store
            .advance_generation(&s.id, 0, at(30), &refreshed(at(30)))
            .await
            .unwrap(),
        Advance::Lost
    );
    assert_eq!(stored(&*store, &s.id).await, revoked(&s, at(20), "logout"));
}

/// 32 racers from one generation: exactly one wins, the generation moves
/// once, and the stored row is the winner's. Repeated to give a broken
/// implementation several chances to show.
pub async fn concurrent_advances_have_one_winner(store: Arc<dyn Store>) {
    const RACERS: usize = 32;
    let alice = add_user(&*store, "alice", 0).await;
    let s = add_session(&*store, &alice.id, 10).await;

    for round in 0..5u64 {
        let barrier = Arc::new(Barrier::new(RACERS));
        let tasks: Vec<_> = (0..RACERS)
            .map(|i| {
                let (store, barrier, id) = (Arc::clone(&store), Arc::clone(&barrier), s.id.clone());
                // Each racer stamps its own instant, so the stored row names the winner.
                let now = at(1000 * (round as i64 + 1) + i as i64);
                tokio::spawn(async move {
                    barrier.wait().await;
                    store
                        .advance_generation(&id, round, now, &refreshed(now))
                        .await
                        .unwrap()
                })
            })
            .collect();
        let mut winners = Vec::new();
        for task in tasks {
            if let Advance::Advanced(won) = task.await.unwrap() {
                winners.push(*won);
            }
        }
        assert_eq!(winners.len(), 1, "round {round}: {} winners", winners.len());
        let now = stored(&*store, &s.id).await;
        assert_eq!(now.generation, round + 1);
        assert_eq!(now, winners[0]);
    }
}

/// `One` revokes that session only; a second time counts 0 and keeps the
/// first time and reason.
pub async fn revoke_one_session(store: Arc<dyn Store>) {
    let alice = add_user(&*store, "alice", 0).await;
    let a = add_session(&*store, &alice.id, 10).await;
    let b = add_session(&*store, &alice.id, 20).await;

    assert_eq!(
        store
            .revoke_sessions(RevokeScope::One(&a.id), at(100), "logout")
            .await
            .unwrap(),
        1
    );
    assert_eq!(stored(&*store, &a.id).await, revoked(&a, at(100), "logout"));
    assert_eq!(stored(&*store, &b.id).await, b);

    assert_eq!(
        store
            .revoke_sessions(RevokeScope::One(&a.id), at(200), "again")
            .await
            .unwrap(),
        0
    );
    assert_eq!(stored(&*store, &a.id).await, revoked(&a, at(100), "logout"));
    assert_eq!(
        store
            .revoke_sessions(RevokeScope::One(&new_session_id()), at(200), "x")
            .await
            .unwrap(),
        0
    );
}

/// `User` revokes that user's live sessions, counting only those, sparing
/// `except` and other users.
pub async fn revoke_user_sessions(store: Arc<dyn Store>) {
    let alice = add_user(&*store, "alice", 0).await;
    let bob = add_user(&*store, "bob", 0).await;
    let a1 = add_session(&*store, &alice.id, 10).await;
    let a2 = add_session(&*store, &alice.id, 20).await;
    let a3 = add_session(&*store, &alice.id, 30).await;
    let b1 = add_session(&*store, &bob.id, 40).await;
    let b2 = add_session(&*store, &bob.id, 50).await;
    store
        .revoke_sessions(RevokeScope::One(&a3.id), at(60), "logout")
        .await
        .unwrap();

    let all_alices = RevokeScope::User {
        user_id: &alice.id,
        except: None,
    };
    assert_eq!(
        store
            .revoke_sessions(all_alices, at(100), "logout_all")
            .await
            .unwrap(),
        2
    );
    assert_eq!(
        stored(&*store, &a1.id).await,
        revoked(&a1, at(100), "logout_all")
    );
    assert_eq!(
        stored(&*store, &a2.id).await,
        revoked(&a2, at(100), "logout_all")
    );
    assert_eq!(
        stored(&*store, &a3.id).await,
        revoked(&a3, at(60), "logout")
    );
    assert_eq!(stored(&*store, &b1.id).await, b1);

    assert_eq!(
        store
            .revoke_sessions(all_alices, at(200), "again")
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        stored(&*store, &a1.id).await,
        revoked(&a1, at(100), "logout_all")
    );

    let bobs_but_b2 = RevokeScope::User {
        user_id: &bob.id,
        except: Some(&b2.id),
    };
    assert_eq!(
        store
            .revoke_sessions(bobs_but_b2, at(300), "logout_all")
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        stored(&*store, &b1.id).await,
        revoked(&b1, at(300), "logout_all")
    );
    assert_eq!(stored(&*store, &b2.id).await, b2);

    let nobody = RevokeScope::User {
        user_id: &UserId::from("no-such-user"),
        except: None,
    };
    assert_eq!(
        store.revoke_sessions(nobody, at(400), "x").await.unwrap(),
        0
    );
}

/// Revoked, absolutely expired (at `now` included) and idle (last used at
/// `idle_since` or before) sessions are left out; the rest come oldest first.
pub async fn live_sessions_filter_and_order(store: Arc<dyn Store>) {
    let alice = add_user(&*store, "alice", 0).await;
    let bob = add_user(&*store, "bob", 0).await;
    let (now, idle_since) = (at(1000), at(500));
    let live = |user: &UserRecord, created, last_used, expires| SessionRecord {
        last_used_at: at(last_used),
        absolute_expires_at: at(expires),
        ..session(&user.id, created)
    };

    // Neither insertion order nor id order is age order, so neither can pass for it.
    let late = SessionRecord {
        id: format!("1-{}", new_id()).into(),
        ..live(&alice, 300, 900, 2000)
    };
    // Just inside both bounds.
    let early = SessionRecord {
        id: format!("3-{}", new_id()).into(),
        ..live(&alice, 100, 501, 1001)
    };
    let bobs = SessionRecord {
        id: format!("2-{}", new_id()).into(),
        ..live(&bob, 200, 800, 5000)
    };
    let dead = [
        revoked(&live(&alice, 110, 900, 2000), at(600), "logout"),
        live(&alice, 120, 900, 1000), // expires exactly now
        live(&alice, 130, 900, 999),
        live(&alice, 140, 500, 2000), // last used exactly at idle_since
        live(&alice, 150, 200, 2000),
        revoked(&live(&bob, 160, 900, 2000), at(600), "logout"),
    ];
    for s in [&late, &early, &bobs].into_iter().chain(&dead) {
        assert!(store.create_session(s, 0).await.unwrap());
    }

    let alices = store
        .live_sessions(Some(&alice.id), now, idle_since)
        .await
        .unwrap();
    assert_eq!(alices, vec![early.clone(), late.clone()]);
    let everyone = store.live_sessions(None, now, idle_since).await.unwrap();
    assert_eq!(everyone, vec![early, bobs, late]);
    assert_eq!(store.count_live_sessions(now, idle_since).await.unwrap(), 3);
    let nobody = store
        .live_sessions(Some(&UserId::from("no-such-user")), now, idle_since)
        .await
        .unwrap();
    assert_eq!(nobody, vec![]);
}

/// Every field comes back, including the ones `generate` leaves unset.
pub async fn keys_round_trip(store: Arc<dyn Store>) {
    assert_eq!(store.list_keys().await.unwrap(), vec![]);
    let signing = key(SigningAlg::EdDsa, 0, 0);
    let pending = key(SigningAlg::Es256, 10, 3600);
    let old = KeyRecord {
        private_key: vec![0x00, 0xff, 0x00, 0x80],
        encrypted: true,
        retired_at: Some(at(-10)),
        purged_at: Some(at(-5)),
        ..key(SigningAlg::EdDsa, -100, -100)
    };
    for k in [&signing, &pending, &old] {
        store.insert_key(k).await.unwrap();
    }
    let mut expected = vec![signing.clone(), pending, old];
    expected.sort_by(|a, b| a.kid.cmp(&b.kid));
    assert_eq!(keys_by_kid(&*store).await, expected);

    let err = store.insert_key(&signing).await.unwrap_err();
    assert!(
        matches!(err, StoreError::Conflict(_)),
        "expected Conflict, got {err:?}"
    );
}

pub async fn delete_keys_by_kid(store: Arc<dyn Store>) {
    let keep = key(SigningAlg::EdDsa, 0, 0);
    let gone = key(SigningAlg::EdDsa, 10, 10);
    let also_gone = key(SigningAlg::Es256, 20, 20);
    for k in [&keep, &gone, &also_gone] {
        store.insert_key(k).await.unwrap();
    }
    let deleted = store
        .delete_keys(&[gone.kid.clone(), also_gone.kid.clone(), "unknown".into()])
        .await
        .unwrap();
    assert_eq!(deleted, 2);
    assert_eq!(store.list_keys().await.unwrap(), [keep]);
    assert_eq!(store.delete_keys(&[]).await.unwrap(), 0);
}

/// One call retires, purges when asked, and promotes the successor; a
/// second retirement keeps the first time.
pub async fn retire_key_retires_purges_and_promotes(store: Arc<dyn Store>) {
    let old = key(SigningAlg::EdDsa, 0, 0);
    let next = key(SigningAlg::EdDsa, 10, 3600);
    let bystander = key(SigningAlg::Es256, 20, 7200);
    for k in [&old, &next, &bystander] {
        store.insert_key(k).await.unwrap();
    }
    let find = |keys: &[KeyRecord], kid: &str| {
        keys.iter()
            .find(|k| k.kid == kid)
            .cloned()
            .unwrap_or_else(|| panic!("key {kid} is gone"))
    };

    store
        .retire_key(&old.kid, at(100), false, Some(&next.kid))
        .await
        .unwrap();
    let keys = keys_by_kid(&*store).await;
    assert_eq!(keys.len(), 3);
    assert_eq!(
        find(&keys, &old.kid),
        KeyRecord {
            retired_at: Some(at(100)),
            ..old.clone()
        }
    );
    assert_eq!(
        find(&keys, &next.kid),
        KeyRecord {
            activates_at: at(100),
            ..next.clone()
        }
    );
    assert_eq!(find(&keys, &bystander.kid), bystander);

    store
        .retire_key(&old.kid, at(200), true, None)
        .await
        .unwrap();
    let keys = keys_by_kid(&*store).await;
    let purged = KeyRecord {
        retired_at: Some(at(100)),
        purged_at: Some(at(200)),
        ..old.clone()
    };
    assert_eq!(find(&keys, &old.kid), purged);
    assert_eq!(
        find(&keys, &next.kid),
        KeyRecord {
            activates_at: at(100),
            ..next
        }
    );
    assert_eq!(find(&keys, &bystander.kid), bystander);

    // Retiring and purging at once.
    store
        .retire_key(&bystander.kid, at(300), true, None)
        .await
        .unwrap();
    let keys = keys_by_kid(&*store).await;
    let gone = KeyRecord {
        retired_at: Some(at(300)),
        purged_at: Some(at(300)),
        ..bystander.clone()
    };
    assert_eq!(find(&keys, &bystander.kid), gone);
}

/// The refresh secret is 32 bytes, made once: every call answers the same.
pub async fn refresh_secret_is_made_once(store: Arc<dyn Store>) {
    let first = store.refresh_secret().await.unwrap();
    assert_eq!(first.len(), 32);
    assert_ne!(first, vec![0; 32]);
    assert_eq!(store.refresh_secret().await.unwrap(), first);
}

/// Nodes starting together must agree on one secret.
pub async fn concurrent_refresh_secrets_agree(store: Arc<dyn Store>) {
    const RACERS: usize = 16;
    let barrier = Arc::new(Barrier::new(RACERS));
    let tasks: Vec<_> = (0..RACERS)
        .map(|_| {
            let (store, barrier) = (Arc::clone(&store), Arc::clone(&barrier));
            tokio::spawn(async move {
                barrier.wait().await;
                store.refresh_secret().await.unwrap()
            })
        })
        .collect();
    let mut answers = Vec::new();
    for task in tasks {
        answers.push(task.await.unwrap());
    }
    let first = answers[0].clone();
    assert!(
        answers.iter().all(|a| *a == first),
        "racers disagree: {answers:?}"
    );
    assert_eq!(store.refresh_secret().await.unwrap(), first);
}

/// Attempts are counted before they are checked: `max_attempts` of them
/// in a window are allowed, the rest refused (the first refusal said so);
/// a window restarts once its start is at or before `window_start_after`;
/// a clear starts the count again.
pub async fn login_attempts_reserved_up_to_the_limit(store: Arc<dyn Store>) {
    const WINDOW: i64 = 900;
    let (key, other) = ("alice|203.0.113.7", "alice|198.51.100.9");
    let attempt = |key: &'static str, now: i64| {
        let store = Arc::clone(&store);
        async move {
            store
                .reserve_login_attempt(LoginLimit {
                    key,
                    now: at(now),
                    window_start_after: at(now - WINDOW),
                    max_attempts: 3,
                })
                .await
                .unwrap()
        }
    };
    let refused = |start: i64, first: bool| LoginAttempt::Refused {
        window_started_at: at(start),
        first,
    };

    for now in [0, 10, WINDOW - 2] {
        assert_eq!(attempt(key, now).await, LoginAttempt::Allowed, "{now}");
    }
    assert_eq!(attempt(key, WINDOW - 1).await, refused(0, true));
    assert_eq!(attempt(key, WINDOW - 1).await, refused(0, false));
    assert_eq!(attempt(other, WINDOW - 1).await, LoginAttempt::Allowed);

    // The window start is exactly `window_start_after`: over.
    for now in [WINDOW, WINDOW + 1, WINDOW + 2] {
        assert_eq!(attempt(key, now).await, LoginAttempt::Allowed, "{now}");
    }
    assert_eq!(attempt(key, WINDOW + 3).await, refused(WINDOW, true));

    store.clear_login_failures(key).await.unwrap();
    store.clear_login_failures("never-failed").await.unwrap();
    for now in [WINDOW + 4, WINDOW + 5, WINDOW + 6] {
        assert_eq!(attempt(key, now).await, LoginAttempt::Allowed, "{now}");
    }
    assert_eq!(attempt(key, WINDOW + 7).await, refused(WINDOW + 4, true));
    // The other key kept its own count.
    assert_eq!(attempt(other, WINDOW + 7).await, LoginAttempt::Allowed);
    assert_eq!(attempt(other, WINDOW + 7).await, LoginAttempt::Allowed);
    assert_eq!(attempt(other, WINDOW + 7).await, refused(WINDOW - 1, true));
}

/// However many race, no more than the limit are allowed, and exactly one
/// refusal is the first.
pub async fn concurrent_login_attempts_stop_at_the_limit(store: Arc<dyn Store>) {
    let racers = 50;
    let barrier = Arc::new(Barrier::new(racers));
    let tasks: Vec<_> = (0..racers)
        .map(|_| {
            let (store, barrier) = (Arc::clone(&store), Arc::clone(&barrier));
            tokio::spawn(async move {
                barrier.wait().await;
                store
                    .reserve_login_attempt(LoginLimit {
                        key: "mallory|192.0.2.1",
                        now: at(0),
                        window_start_after: at(-900),
                        max_attempts: 10,
                    })
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut outcomes = Vec::new();
    for task in tasks {
        outcomes.push(task.await.unwrap());
    }
    let allowed = outcomes
        .iter()
        .filter(|o| **o == LoginAttempt::Allowed)
        .count();
    let first = outcomes
        .iter()
        .filter(|o| matches!(o, LoginAttempt::Refused { first: true, .. }))
        .count();
    assert_eq!((allowed, first), (10, 1), "{outcomes:?}");
}

/// Newest first (the later append first when instants tie), at most `limit`.
pub async fn audit_newest_first(store: Arc<dyn Store>) {
    assert_eq!(store.recent_audit(10).await.unwrap(), vec![]);
    let records = [
        AuditRecord::new(AuditEvent::Registered, at(0))
            .user(&UserId::from("u-1"))
            .ip("203.0.113.7"),
        AuditRecord::new(AuditEvent::KeyRotated, at(1)),
        AuditRecord::new(AuditEvent::ReuseStaleCopy, at(2))
            .user(&UserId::from("u-1"))
            .session(&SessionId::from("s-1"))
            .ip("2001:db8::1")
            .detail("generation 3 presented at 5: \"quoted\", ünïcode"),
        AuditRecord::new(AuditEvent::Logout, at(2))
            .user(&UserId::from("u-2"))
            .session(&SessionId::from("s-2")),
    ];
    for r in &records {
        store.append_audit(r).await.unwrap();
    }

    let newest_first: Vec<_> = records.iter().rev().cloned().collect();
    assert_eq!(store.recent_audit(10).await.unwrap(), newest_first);
    assert_eq!(store.recent_audit(4).await.unwrap(), newest_first);
    assert_eq!(store.recent_audit(2).await.unwrap(), newest_first[..2]);
    assert_eq!(store.recent_audit(0).await.unwrap(), vec![]);
}

/// Clients: public and confidential round-trip, ids are unique, listing is
/// by id, removal answers whether there was one.
pub async fn clients_round_trip(store: Arc<dyn Store>) {
    let confidential = ClientRecord {
        id: "reports".into(),
        secret_hash: Some(vec![0, 1, 2, 255]),
        scope: "read write".into(),
        created_at: at(10),
    };
    let public = ClientRecord {
        id: "mobile".into(),
        secret_hash: None,
        scope: String::new(),
        created_at: at(20),
    };
    store.insert_client(&confidential).await.unwrap();
    store.insert_client(&public).await.unwrap();
    assert_eq!(
        store.client("reports").await.unwrap(),
        Some(confidential.clone())
    );
    assert_eq!(store.client("mobile").await.unwrap(), Some(public.clone()));
    assert_eq!(store.client("nobody").await.unwrap(), None);
    let again = ClientRecord {
        scope: "other".into(),
        ..confidential.clone()
    };
    assert!(matches!(
        store.insert_client(&again).await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(
        store.list_clients().await.unwrap(),
        [public.clone(), confidential.clone()]
    );
    assert!(store.remove_client("reports").await.unwrap());
    assert!(!store.remove_client("reports").await.unwrap());
    assert_eq!(store.list_clients().await.unwrap(), [public]);
}

/// Prune deletes revoked, expired and idle sessions, old login-limit
/// windows and old audit rows, and nothing else.
pub async fn prune_removes_only_what_cannot_matter(store: Arc<dyn Store>) {
    let alice = add_user(&*store, "alice", 0).await;
    let live = add_session(&*store, &alice.id, 100 * DAY).await;
    let idle = add_session(&*store, &alice.id, 10 * DAY).await;
    let expired = SessionRecord {
        absolute_expires_at: at(90 * DAY),
        ..session(&alice.id, 80 * DAY)
    };
    assert!(store.create_session(&expired, 0).await.unwrap());
    let gone = add_session(&*store, &alice.id, 100 * DAY).await;
    store
        .revoke_sessions(RevokeScope::One(&gone.id), at(100 * DAY + 1), "logout")
        .await
        .unwrap();
    let attempt = |key: &'static str, now: i64| LoginLimit {
        key,
        now: at(now),
        window_start_after: at(0),
        max_attempts: 1,
    };
    store
        .reserve_login_attempt(attempt("old", 50 * DAY))
        .await
        .unwrap();
    store
        .reserve_login_attempt(attempt("new", 100 * DAY))
        .await
        .unwrap();
    store
        .append_audit(&AuditRecord::new(AuditEvent::Logout, at(10 * DAY)))
        .await
        .unwrap();
    let recent = AuditRecord::new(AuditEvent::Logout, at(99 * DAY));
    store.append_audit(&recent).await.unwrap();

    let dead = DeadSessions {
        now: at(100 * DAY + 10),
        idle_before: at(93 * DAY),
    };
    let first = store.prune_sessions(dead, None, 100).await.unwrap();
    assert_eq!(first.deleted, 3);
    assert!(first.next.is_some());
    let rest = store
        .prune_sessions(dead, first.next.as_deref(), 100)
        .await
        .unwrap();
    assert_eq!(
        rest,
        SessionsPruned {
            deleted: 0,
            next: None
        }
    );
    assert_eq!(
        store.prune_login_failures(at(99 * DAY), 100).await.unwrap(),
        1
    );
    assert_eq!(store.prune_audit(at(90 * DAY), 100).await.unwrap(), 1);

    assert_eq!(store.session(&live.id).await.unwrap(), Some(live.clone()));
    for dead in [&idle, &expired, &gone] {
        assert_eq!(store.session(&dead.id).await.unwrap(), None);
    }
    // "old" is gone: a new attempt opens a new window, allowed; "new" is
    // still at its limit of 1.
    assert_eq!(
        store
            .reserve_login_attempt(attempt("old", 100 * DAY))
            .await
            .unwrap(),
        LoginAttempt::Allowed
    );
    assert!(matches!(
        store
            .reserve_login_attempt(attempt("new", 100 * DAY))
            .await
            .unwrap(),
        LoginAttempt::Refused { .. }
    ));
    assert_eq!(store.recent_audit(10).await.unwrap(), [recent]);
    assert_eq!(store.user_by_id(&alice.id).await.unwrap(), Some(alice));
    // Nothing left to prune.
    let again = store.prune_sessions(dead, None, 100).await.unwrap();
    assert_eq!(again.deleted, 0);
    assert_eq!(
        store.prune_login_failures(at(99 * DAY), 100).await.unwrap(),
        0
    );
    assert_eq!(store.prune_audit(at(90 * DAY), 100).await.unwrap(), 0);
}

/// A sessions prune looks at `batch` sessions a call, walks the whole table
/// over the calls, and finds every dead one on the way.
pub async fn prune_sessions_a_batch_at_a_time(store: Arc<dyn Store>) {
    let alice = add_user(&*store, "alice", 0).await;
    let mut live = Vec::new();
    let mut dead = Vec::new();
    for i in 0..25 {
        let s = add_session(&*store, &alice.id, i).await;
        if i % 5 == 0 {
            store
                .revoke_sessions(RevokeScope::One(&s.id), at(100), "logout")
                .await
                .unwrap();
            dead.push(s);
        } else {
            live.push(s);
        }
    }
    let cutoff = DeadSessions {
        now: at(200),
        idle_before: at(-1),
    };
    let mut after: Option<String> = None;
    let (mut calls, mut deleted) = (0, 0);
    loop {
        let batch = store
            .prune_sessions(cutoff, after.as_deref(), 10)
            .await
            .unwrap();
        calls += 1;
        assert!(batch.deleted <= 10);
        deleted += batch.deleted;
        match batch.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    assert_eq!((calls, deleted), (4, 5));
    for s in &dead {
        assert_eq!(store.session(&s.id).await.unwrap(), None);
    }
    for s in &live {
        assert_eq!(stored(&*store, &s.id).await, *s);
    }
}

/// Audit rows go oldest first and login-limit windows `batch` at a time.
pub async fn prune_audit_and_failures_a_batch_at_a_time(store: Arc<dyn Store>) {
    let rows: Vec<AuditRecord> = (0..5)
        .map(|i| AuditRecord::new(AuditEvent::Logout, at(i * 10)))
        .collect();
    for row in &rows {
        store.append_audit(row).await.unwrap();
    }
    assert_eq!(store.prune_audit(at(30), 2).await.unwrap(), 2);
    assert_eq!(
        store.recent_audit(10).await.unwrap(),
        [rows[4].clone(), rows[3].clone(), rows[2].clone()]
    );
    assert_eq!(store.prune_audit(at(30), 2).await.unwrap(), 2);
    assert_eq!(store.prune_audit(at(30), 2).await.unwrap(), 0);
    assert_eq!(store.recent_audit(10).await.unwrap(), [rows[4].clone()]);

    for key in ["a", "b", "c"] {
        store
            .reserve_login_attempt(LoginLimit {
                key,
                now: at(0),
                window_start_after: at(-900),
                max_attempts: 5,
            })
            .await
            .unwrap();
    }
    assert_eq!(store.prune_login_failures(at(0), 2).await.unwrap(), 2);
    assert_eq!(store.prune_login_failures(at(0), 2).await.unwrap(), 1);
    assert_eq!(store.prune_login_failures(at(0), 2).await.unwrap(), 0);
}
