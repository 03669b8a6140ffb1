//! Users: round trips, uniqueness, passwords and disabling.

use crate::prelude::*;

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
