//! Passkeys' storage: the credentials, their counter's compare-and-swap,
//! and the WebAuthn challenges, spent once.

use latchkey_core::store::{ChallengePurpose, PasskeyRecord, WebauthnChallengeRecord};
use latchkey_core::PasskeyId;

use crate::prelude::*;

fn passkey(user: &UserRecord, credential_id: &str, sign_count: u32, made: i64) -> PasskeyRecord {
    PasskeyRecord {
        id: PasskeyId::random(),
        user_id: user.id.clone(),
        name: format!("Clé \"{credential_id}\""),
        credential_id: credential_id.to_owned(),
        credential: format!(r#"{{"cred_id":"{credential_id}","counter":{sign_count}}}"#),
        sign_count,
        created_at: at(made),
        last_used_at: None,
    }
}

async fn add_passkey(
    store: &dyn Store,
    user: &UserRecord,
    credential_id: &str,
    sign_count: u32,
    made: i64,
) -> PasskeyRecord {
    let p = passkey(user, credential_id, sign_count, made);
    store.insert_passkey(&p).await.unwrap();
    p
}

fn challenge(purpose: ChallengePurpose, made: i64) -> WebauthnChallengeRecord {
    WebauthnChallengeRecord {
        id: new_id(),
        purpose,
        state: r#"{"login":{"of":"anyone","state":"ünïcode"}}"#.to_owned(),
        created_at: at(made),
        expires_at: at(made + 300),
    }
}

pub async fn passkeys_round_trip_and_credential_ids_are_unique(store: Arc<dyn Store>) {
    let alice = add_user(&*store, "alice", 0).await;
    let bob = add_user(&*store, "bob", 1).await;
    assert_eq!(store.passkeys_of(&alice.id).await.unwrap(), vec![]);
    let later = add_passkey(&*store, &alice, "cred-b", 0, 20).await;
    let first = add_passkey(&*store, &alice, "cred-a", 7, 10).await;
    let bobs = add_passkey(&*store, &bob, "cred-c", 0, 15).await;
    // Oldest first, each user's own.
    assert_eq!(
        store.passkeys_of(&alice.id).await.unwrap(),
        vec![first.clone(), later.clone()]
    );
    assert_eq!(store.passkeys_of(&bob.id).await.unwrap(), vec![bobs]);
    assert_eq!(
        store.passkey_by_credential_id("cred-a").await.unwrap(),
        Some(first)
    );
    assert_eq!(
        store.passkey_by_credential_id("cred-z").await.unwrap(),
        None
    );
    // One authenticator's credential is one user's: not twice, not another's.
    for owner in [&alice, &bob] {
        assert!(matches!(
            store.insert_passkey(&passkey(owner, "cred-b", 0, 30)).await,
            Err(StoreError::Conflict(_))
        ));
    }
    assert_eq!(store.passkeys_of(&bob.id).await.unwrap().len(), 1);
}

pub async fn a_passkey_is_deleted_by_its_owner_only(store: Arc<dyn Store>) {
    let alice = add_user(&*store, "alice", 0).await;
    let bob = add_user(&*store, "bob", 1).await;
    let hers = add_passkey(&*store, &alice, "cred-a", 0, 10).await;
    let kept = add_passkey(&*store, &alice, "cred-b", 0, 11).await;
    assert!(!store.delete_passkey(&bob.id, &hers.id).await.unwrap());
    assert!(!store
        .delete_passkey(&alice.id, &PasskeyId::random())
        .await
        .unwrap());
    assert_eq!(store.passkeys_of(&alice.id).await.unwrap().len(), 2);
    assert!(store.delete_passkey(&alice.id, &hers.id).await.unwrap());
    assert!(!store.delete_passkey(&alice.id, &hers.id).await.unwrap());
    assert_eq!(store.passkeys_of(&alice.id).await.unwrap(), vec![kept]);
    assert_eq!(
        store.passkey_by_credential_id("cred-a").await.unwrap(),
        None
    );
    // Its credential id may be registered again.
    add_passkey(&*store, &bob, "cred-a", 0, 20).await;
}

pub async fn a_passkey_counter_only_moves_forward(store: Arc<dyn Store>) {
    let alice = add_user(&*store, "alice", 0).await;
    let counting = add_passkey(&*store, &alice, "counting", 5, 10).await;
    for stale in [0, 4, 5] {
        assert!(!store
            .record_passkey_use(&counting.id, stale, "{\"stale\":true}", at(20))
            .await
            .unwrap());
    }
    assert_eq!(
        store.passkey_by_credential_id("counting").await.unwrap(),
        Some(counting.clone())
    );
    assert!(store
        .record_passkey_use(&counting.id, 9, "{\"counter\":9}", at(30))
        .await
        .unwrap());
    assert_eq!(
        store.passkey_by_credential_id("counting").await.unwrap(),
        Some(PasskeyRecord {
            sign_count: 9,
            credential: "{\"counter\":9}".into(),
            last_used_at: Some(at(30)),
            ..counting.clone()
        })
    );
    assert!(!store
        .record_passkey_use(&counting.id, 9, "{}", at(31))
        .await
        .unwrap());

    // An authenticator that keeps no count stays at 0, every time.
    let uncounted = add_passkey(&*store, &alice, "uncounted", 0, 11).await;
    for when in [40, 41] {
        assert!(store
            .record_passkey_use(&uncounted.id, 0, "{\"backup\":true}", at(when))
            .await
            .unwrap());
    }
    let read = store
        .passkey_by_credential_id("uncounted")
        .await
        .unwrap()
        .unwrap();
    assert_eq!((read.sign_count, read.last_used_at), (0, Some(at(41))));
    assert_eq!(read.credential, "{\"backup\":true}");
    // Counts up to 32 bits are kept whole.
    assert!(store
        .record_passkey_use(&uncounted.id, u32::MAX, "{}", at(42))
        .await
        .unwrap());
    let read = store.passkeys_of(&alice.id).await.unwrap();
    assert_eq!(read[1].sign_count, u32::MAX);

    // A passkey gone is used by nobody.
    assert!(store.delete_passkey(&alice.id, &counting.id).await.unwrap());
    assert!(!store
        .record_passkey_use(&counting.id, 100, "{}", at(50))
        .await
        .unwrap());
}

pub async fn concurrent_uses_of_one_count_have_one_winner(store: Arc<dyn Store>) {
    const RACERS: usize = 16;
    let alice = add_user(&*store, "alice", 0).await;
    let p = add_passkey(&*store, &alice, "cloned", 3, 10).await;
    for round in 1..=3u32 {
        let barrier = Arc::new(Barrier::new(RACERS));
        let tasks: Vec<_> = (0..RACERS)
            .map(|i| {
                let (store, barrier, id) = (Arc::clone(&store), Arc::clone(&barrier), p.id.clone());
                let credential = format!("{{\"racer\":{i}}}");
                tokio::spawn(async move {
                    barrier.wait().await;
                    let won = store
                        .record_passkey_use(&id, 3 + round, &credential, at(100 + i as i64))
                        .await
                        .unwrap();
                    won.then_some(credential)
                })
            })
            .collect();
        let mut winners = Vec::new();
        for task in tasks {
            winners.extend(task.await.unwrap());
        }
        assert_eq!(winners.len(), 1, "round {round}: {winners:?}");
        let read = store
            .passkey_by_credential_id("cloned")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(read.sign_count, 3 + round);
        assert_eq!(read.credential, winners[0]);
    }
}

pub async fn webauthn_challenges_are_spent_once_before_they_expire(store: Arc<dyn Store>) {
    let login = challenge(ChallengePurpose::SpentLogin, 100);
    let registration = challenge(ChallengePurpose::Registration, 100);
    for c in [&login, &registration] {
        store.insert_webauthn_challenge(c).await.unwrap();
    }
    // Not for another purpose, and that leaves it there.
    assert_eq!(
        store
            .take_webauthn_challenge(&login.id, ChallengePurpose::Registration, at(101))
            .await
            .unwrap(),
        None
    );
    // Not at its expiry or after, and that leaves it too (the prune's).
    assert_eq!(
        store
            .take_webauthn_challenge(&registration.id, ChallengePurpose::Registration, at(400))
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store
            .take_webauthn_challenge(&login.id, ChallengePurpose::SpentLogin, at(399))
            .await
            .unwrap(),
        Some(login.clone())
    );
    assert_eq!(
        store
            .take_webauthn_challenge(&login.id, ChallengePurpose::SpentLogin, at(399))
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store
            .take_webauthn_challenge(&registration.id, ChallengePurpose::Registration, at(102))
            .await
            .unwrap(),
        Some(registration)
    );
    assert_eq!(
        store
            .take_webauthn_challenge("never-made", ChallengePurpose::SpentLogin, at(102))
            .await
            .unwrap(),
        None
    );
    // Ids are the caller's, and unique.
    let again = challenge(ChallengePurpose::SpentLogin, 200);
    store.insert_webauthn_challenge(&again).await.unwrap();
    assert!(matches!(
        store.insert_webauthn_challenge(&again).await,
        Err(StoreError::Conflict(_))
    ));
}

pub async fn concurrent_takes_of_a_challenge_have_one_winner(store: Arc<dyn Store>) {
    const RACERS: usize = 16;
    for round in 0..3 {
        let c = challenge(ChallengePurpose::SpentLogin, round * 1000);
        store.insert_webauthn_challenge(&c).await.unwrap();
        let barrier = Arc::new(Barrier::new(RACERS));
        let tasks: Vec<_> = (0..RACERS)
            .map(|_| {
                let (store, barrier, id) = (Arc::clone(&store), Arc::clone(&barrier), c.id.clone());
                tokio::spawn(async move {
                    barrier.wait().await;
                    store
                        .take_webauthn_challenge(
                            &id,
                            ChallengePurpose::SpentLogin,
                            at(round * 1000 + 1),
                        )
                        .await
                        .unwrap()
                })
            })
            .collect();
        let mut taken = Vec::new();
        for task in tasks {
            taken.extend(task.await.unwrap());
        }
        assert_eq!(taken, vec![c], "round {round}");
    }
}

/// A spent login challenge is a row added once: of many nodes adding one
/// id at once, one succeeds and the rest hear `Conflict`.
pub async fn concurrent_inserts_of_a_challenge_have_one_winner(store: Arc<dyn Store>) {
    const RACERS: usize = 16;
    for round in 0..3 {
        let c = challenge(ChallengePurpose::SpentLogin, round * 1000);
        let barrier = Arc::new(Barrier::new(RACERS));
        let tasks: Vec<_> = (0..RACERS)
            .map(|_| {
                let (store, barrier, c) = (Arc::clone(&store), Arc::clone(&barrier), c.clone());
                tokio::spawn(async move {
                    barrier.wait().await;
                    store.insert_webauthn_challenge(&c).await
                })
            })
            .collect();
        let mut added = 0;
        for task in tasks {
            match task.await.unwrap() {
                Ok(()) => added += 1,
                Err(StoreError::Conflict(_)) => {}
                Err(e) => panic!("round {round}: {e}"),
            }
        }
        assert_eq!(added, 1, "round {round}");
    }
}

pub async fn prune_webauthn_challenges_by_expiry_a_batch_at_a_time(store: Arc<dyn Store>) {
    // Made at 0..3, expiring at 300..303; one more expiring at 1300.
    let expired: Vec<_> = (0..4)
        .map(|i| challenge(ChallengePurpose::Registration, i))
        .collect();
    let live = challenge(ChallengePurpose::SpentLogin, 1000);
    for c in expired.iter().chain([&live]) {
        store.insert_webauthn_challenge(c).await.unwrap();
    }
    // At or before `before`: 300..=302 go, 303 stays.
    assert_eq!(
        store.prune_webauthn_challenges(at(302), 2).await.unwrap(),
        2
    );
    assert_eq!(
        store.prune_webauthn_challenges(at(302), 2).await.unwrap(),
        1
    );
    assert_eq!(
        store.prune_webauthn_challenges(at(302), 2).await.unwrap(),
        0
    );
    assert_eq!(
        store
            .take_webauthn_challenge(&expired[3].id, ChallengePurpose::Registration, at(302))
            .await
            .unwrap(),
        Some(expired[3].clone())
    );
    assert_eq!(
        store
            .prune_webauthn_challenges(at(1299), 100)
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        store
            .take_webauthn_challenge(&live.id, ChallengePurpose::SpentLogin, at(1299))
            .await
            .unwrap(),
        Some(live)
    );
}

/// Passkeys are counted with their user (the account view's one read) and
/// removed together (`user mfa-reset`).
pub async fn passkeys_are_counted_with_their_user(store: Arc<dyn Store>) {
    let alice = add_user(&*store, "alice", 0).await;
    let bob = add_user(&*store, "bob", 1).await;
    add_passkey(&*store, &alice, "cred-a", 0, 10).await;
    add_passkey(&*store, &alice, "cred-b", 3, 11).await;
    add_passkey(&*store, &bob, "cred-c", 0, 12).await;
    let count = |found: Option<UserRecord>| found.unwrap().second_factors.passkeys;
    assert_eq!(count(store.user_by_id(&alice.id).await.unwrap()), 2);
    let session = add_session(&*store, &alice.id, 20).await;
    let found = store.session_with_user(&session.id).await.unwrap().unwrap();
    assert_eq!(found.user.second_factors.passkeys, 2);
    assert_eq!(store.remove_passkeys(&alice.id).await.unwrap(), 2);
    assert_eq!(count(store.user_by_id(&alice.id).await.unwrap()), 0);
    assert_eq!(count(store.user_by_id(&bob.id).await.unwrap()), 1);
}
