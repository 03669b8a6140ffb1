//! Sessions: round trips, the refresh compare-and-swap, revocation, the live list.

use crate::prelude::*;

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
        amr: vec!["pwd".to_owned()],
        ..session(&alice.id, 20)
    };
    let ended = SessionRecord {
        ip: "2001:db8::1".to_owned(),
        amr: vec!["hwk".to_owned(), "user".to_owned()],
        auth_time: at(31),
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
            .advance_generation(
                &s.id,
                3,
                at(60),
                OffsetDateTime::UNIX_EPOCH,
                &refreshed(at(60))
            )
            .await
            .unwrap(),
        Advance::Advanced(Box::new(moved.clone()))
    );
    assert_eq!(stored(&*store, &s.id).await, moved);

    // The old generation again, and one not reached yet: both lose, nothing moves.
    assert_eq!(
        store
            .advance_generation(
                &s.id,
                3,
                at(61),
                OffsetDateTime::UNIX_EPOCH,
                &refreshed(at(61))
            )
            .await
            .unwrap(),
        Advance::Lost
    );
    assert_eq!(
        store
            .advance_generation(
                &s.id,
                5,
                at(62),
                OffsetDateTime::UNIX_EPOCH,
                &refreshed(at(62))
            )
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
            .advance_generation(
                &s.id,
                4,
                at(70),
                OffsetDateTime::UNIX_EPOCH,
                &refreshed(at(70))
            )
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
            .advance_generation(
                &new_session_id(),
                0,
                at(80),
                OffsetDateTime::UNIX_EPOCH,
                &refreshed(at(80))
            )
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
            .advance_generation(
                &s.id,
                0,
                at(30),
                OffsetDateTime::UNIX_EPOCH,
                &refreshed(at(30))
            )
            .await
            .unwrap(),
        Advance::Lost
    );
    assert_eq!(stored(&*store, &s.id).await, revoked(&s, at(20), "logout"));
}

/// The swap moves only a live session: not one past its absolute expiry,
/// nor one idle since `idle_before`, nor one of a user disabled since
/// (disabling revokes); none of them changes.
pub async fn advance_generation_on_dead_is_lost(store: Arc<dyn Store>) {
    let alice = add_user(&*store, "alice", 0).await;
    let bob = add_user(&*store, "bob", 0).await;
    let expired = SessionRecord {
        absolute_expires_at: at(50),
        ..session(&alice.id, 10)
    };
    assert!(store.create_session(&expired, 0).await.unwrap());
    let idle = add_session(&*store, &alice.id, 20).await;
    let bobs = add_session(&*store, &bob.id, 30).await;
    let swap = |id: SessionId, now: i64, idle_before: i64| {
        let store = Arc::clone(&store);
        async move {
            store
                .advance_generation(&id, 0, at(now), at(idle_before), &refreshed(at(now)))
                .await
                .unwrap()
        }
    };
    // At its absolute expiry exactly: dead.
    assert_eq!(swap(expired.id.clone(), 50, 0).await, Advance::Lost);
    // Last used exactly at `idle_before`: dead.
    assert_eq!(swap(idle.id.clone(), 40, 20).await, Advance::Lost);
    assert_eq!(stored(&*store, &expired.id).await, expired);
    assert_eq!(stored(&*store, &idle.id).await, idle);
    store
        .set_user_disabled(&bob.id, Some(at(35)))
        .await
        .unwrap();
    assert_eq!(swap(bobs.id.clone(), 40, 0).await, Advance::Lost);
    // The same calls on a live session win.
    assert!(matches!(
        swap(idle.id.clone(), 40, 19).await,
        Advance::Advanced(_)
    ));
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
                        .advance_generation(
                            &id,
                            round,
                            now,
                            OffsetDateTime::UNIX_EPOCH,
                            &refreshed(now),
                        )
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
