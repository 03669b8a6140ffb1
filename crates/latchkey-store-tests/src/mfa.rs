//! Second factors: TOTP and its replay guard, recovery codes, logins
//! waiting for a second factor.

use latchkey_core::mfa::{MfaLoginRecord, SecondFactors, TotpRecord};

use crate::prelude::*;

fn totp(user_id: &UserId, secret: &[u8], created: i64) -> TotpRecord {
    TotpRecord {
        user_id: user_id.clone(),
        // Bytes that text columns would mangle.
        secret: [&[0x00, 0xff, 0x80][..], secret].concat(),
        encrypted: true,
        created_at: at(created),
        confirmed_at: None,
        last_step: None,
    }
}

fn waiting(user: &UserRecord, hash: &[u8], created: i64) -> MfaLoginRecord {
    MfaLoginRecord {
        hash: hash.to_vec(),
        user_id: user.id.clone(),
        client_id: "web".to_owned(),
        scope: "openid profile".to_owned(),
        password_version: user.password_version,
        created_at: at(created),
        expires_at: at(created + 300),
        failures: 0,
    }
}

async fn factors(store: &dyn Store, user: &UserRecord) -> SecondFactors {
    store
        .user_by_id(&user.id)
        .await
        .unwrap()
        .unwrap()
        .second_factors
}

/// An enrolment is replaced until confirmed, confirmed only with the
/// secret it was read with, and then left alone; TOTP shows on the user
/// once confirmed, and comes off with its codes.
pub async fn totp_enrolment_is_replaced_until_confirmed(store: Arc<dyn Store>) {
    let alice = add_user(&*store, "alice", 0).await;
    let bob = add_user(&*store, "bob", 0).await;
    assert_eq!(store.totp(&alice.id).await.unwrap(), None);
    let first = totp(&alice.id, b"first", 10);
    assert!(store.begin_totp(&first).await.unwrap());
    assert_eq!(store.totp(&alice.id).await.unwrap(), Some(first.clone()));
    let second = totp(&alice.id, b"second", 20);
    assert!(store.begin_totp(&second).await.unwrap());
    assert_eq!(store.totp(&alice.id).await.unwrap(), Some(second.clone()));
    assert_eq!(factors(&*store, &alice).await, SecondFactors::default());
    // Not on yet: no step can be used.
    assert!(!store.use_totp_step(&alice.id, 5).await.unwrap());

    let codes = vec![vec![1u8; 32], vec![2u8; 32], vec![3u8; 32]];
    assert!(!store
        .confirm_totp(&alice.id, &first.secret, 100, &codes, at(30))
        .await
        .unwrap());
    assert!(store
        .confirm_totp(&alice.id, &second.secret, 100, &codes, at(30))
        .await
        .unwrap());
    let on = TotpRecord {
        confirmed_at: Some(at(30)),
        last_step: Some(100),
        ..second.clone()
    };
    assert_eq!(store.totp(&alice.id).await.unwrap(), Some(on.clone()));
    assert!(factors(&*store, &alice).await.totp);
    assert!(!factors(&*store, &bob).await.totp);
    let session = add_session(&*store, &alice.id, 40).await;
    let found = store.session_with_user(&session.id).await.unwrap().unwrap();
    assert!(found.user.second_factors.totp);

    // On is on: neither a new enrolment nor a second confirmation changes it.
    assert!(!store
        .begin_totp(&totp(&alice.id, b"third", 50))
        .await
        .unwrap());
    assert!(!store
        .confirm_totp(&alice.id, &second.secret, 200, &[], at(50))
        .await
        .unwrap());
    assert_eq!(store.totp(&alice.id).await.unwrap(), Some(on));
    let mut stored = store.recovery_codes(&alice.id).await.unwrap();
    stored.sort();
    assert_eq!(stored, codes);
    assert!(store.recovery_codes(&bob.id).await.unwrap().is_empty());

    assert!(store.remove_totp(&alice.id).await.unwrap());
    assert_eq!(store.totp(&alice.id).await.unwrap(), None);
    assert!(store.recovery_codes(&alice.id).await.unwrap().is_empty());
    assert!(!factors(&*store, &alice).await.totp);
    assert!(!store.remove_totp(&alice.id).await.unwrap());
    // Off, it can start again.
    assert!(store.begin_totp(&first).await.unwrap());
}

/// A step is used once, and no earlier step after it.
pub async fn totp_steps_are_used_once_and_in_order(store: Arc<dyn Store>) {
    let alice = add_user(&*store, "alice", 0).await;
    let t = totp(&alice.id, b"secret", 10);
    assert!(store.begin_totp(&t).await.unwrap());
    assert!(store
        .confirm_totp(&alice.id, &t.secret, 100, &[], at(20))
        .await
        .unwrap());
    assert!(!store.use_totp_step(&alice.id, 100).await.unwrap());
    assert!(!store.use_totp_step(&alice.id, 99).await.unwrap());
    assert!(store.use_totp_step(&alice.id, 101).await.unwrap());
    assert!(!store.use_totp_step(&alice.id, 101).await.unwrap());
    assert!(store.use_totp_step(&alice.id, 103).await.unwrap());
    assert!(!store.use_totp_step(&alice.id, 102).await.unwrap());
    assert_eq!(
        store.totp(&alice.id).await.unwrap().unwrap().last_step,
        Some(103)
    );
    // Another user's TOTP is not involved.
    let bob = add_user(&*store, "bob", 0).await;
    assert!(!store.use_totp_step(&bob.id, 500).await.unwrap());
}

/// Of many requests using one step at once, one wins.
pub async fn concurrent_totp_steps_have_one_winner(store: Arc<dyn Store>) {
    let alice = add_user(&*store, "alice", 0).await;
    let t = totp(&alice.id, b"secret", 10);
    assert!(store.begin_totp(&t).await.unwrap());
    assert!(store
        .confirm_totp(&alice.id, &t.secret, 100, &[], at(20))
        .await
        .unwrap());
    let barrier = Arc::new(Barrier::new(16));
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let (store, barrier, id) = (Arc::clone(&store), Arc::clone(&barrier), alice.id.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                store.use_totp_step(&id, 101).await.unwrap()
            })
        })
        .collect();
    let mut won = 0;
    for task in tasks {
        won += usize::from(task.await.unwrap());
    }
    assert_eq!(won, 1);
}

/// A recovery code is spent once, and only the user's own.
pub async fn recovery_codes_are_spent_once(store: Arc<dyn Store>) {
    let alice = add_user(&*store, "alice", 0).await;
    let bob = add_user(&*store, "bob", 0).await;
    let t = totp(&alice.id, b"secret", 10);
    assert!(store.begin_totp(&t).await.unwrap());
    let codes = vec![vec![7u8; 32], vec![8u8; 32]];
    assert!(store
        .confirm_totp(&alice.id, &t.secret, 1, &codes, at(20))
        .await
        .unwrap());
    assert!(!store.spend_recovery_code(&bob.id, &codes[0]).await.unwrap());
    assert!(store
        .spend_recovery_code(&alice.id, &codes[0])
        .await
        .unwrap());
    assert!(!store
        .spend_recovery_code(&alice.id, &codes[0])
        .await
        .unwrap());
    assert_eq!(
        store.recovery_codes(&alice.id).await.unwrap(),
        vec![codes[1].clone()]
    );
    // Confirming again (after a removal) replaces them all.
    assert!(store.remove_totp(&alice.id).await.unwrap());
    assert!(store.begin_totp(&t).await.unwrap());
    let fresh = vec![vec![9u8; 32]];
    assert!(store
        .confirm_totp(&alice.id, &t.secret, 1, &fresh, at(30))
        .await
        .unwrap());
    assert_eq!(store.recovery_codes(&alice.id).await.unwrap(), fresh);
}

/// A waiting login: tries counted up to the limit, dead at its expiry,
/// spent once, gone with a disable, a TOTP removal or its prune.
pub async fn mfa_logins_count_tries_expire_and_are_spent_once(store: Arc<dyn Store>) {
    let alice = add_user(&*store, "alice", 0).await;
    let login = waiting(&alice, &[1u8; 32], 100);
    store.insert_mfa_login(&login).await.unwrap();
    for tried in 1..=3 {
        assert_eq!(
            store
                .reserve_mfa_attempt(&login.hash, at(150), 3)
                .await
                .unwrap(),
            Some(MfaLoginRecord {
                failures: tried,
                ..login.clone()
            })
        );
    }
    assert_eq!(
        store
            .reserve_mfa_attempt(&login.hash, at(150), 3)
            .await
            .unwrap(),
        None,
        "out of tries"
    );
    assert!(store.spend_mfa_login(&login.hash).await.unwrap());
    assert!(!store.spend_mfa_login(&login.hash).await.unwrap());

    let expiring = waiting(&alice, &[2u8; 32], 100);
    store.insert_mfa_login(&expiring).await.unwrap();
    assert!(store
        .reserve_mfa_attempt(&expiring.hash, at(399), 5)
        .await
        .unwrap()
        .is_some());
    assert_eq!(
        store
            .reserve_mfa_attempt(&expiring.hash, at(400), 5)
            .await
            .unwrap(),
        None,
        "expired"
    );
    assert_eq!(
        store
            .reserve_mfa_attempt(&[3u8; 32], at(150), 5)
            .await
            .unwrap(),
        None,
        "unknown"
    );
    let later = waiting(&alice, &[4u8; 32], 1_000);
    store.insert_mfa_login(&later).await.unwrap();
    assert_eq!(store.prune_mfa_logins(at(400), 10).await.unwrap(), 1);
    assert_eq!(store.prune_mfa_logins(at(400), 10).await.unwrap(), 0);
    assert!(store
        .reserve_mfa_attempt(&later.hash, at(1_010), 5)
        .await
        .unwrap()
        .is_some());

    // A disable deletes them (an enable brings none back), so does
    // turning TOTP off.
    store
        .set_user_disabled(&alice.id, Some(at(1_020)))
        .await
        .unwrap();
    store.set_user_disabled(&alice.id, None).await.unwrap();
    assert!(!store.spend_mfa_login(&later.hash).await.unwrap());
    let again = waiting(&alice, &[5u8; 32], 1_030);
    store.insert_mfa_login(&again).await.unwrap();
    store.remove_totp(&alice.id).await.unwrap();
    assert!(!store.spend_mfa_login(&again.hash).await.unwrap());
    assert_eq!(store.remove_passkeys(&alice.id).await.unwrap(), 0);
}

/// However many codes race with one token, at most the limit are tried.
pub async fn concurrent_mfa_attempts_stop_at_the_limit(store: Arc<dyn Store>) {
    let alice = add_user(&*store, "alice", 0).await;
    let login = waiting(&alice, &[1u8; 32], 100);
    store.insert_mfa_login(&login).await.unwrap();
    let barrier = Arc::new(Barrier::new(20));
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let (store, barrier, hash) =
                (Arc::clone(&store), Arc::clone(&barrier), login.hash.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                store
                    .reserve_mfa_attempt(&hash, at(150), 5)
                    .await
                    .unwrap()
                    .is_some()
            })
        })
        .collect();
    let mut allowed = 0;
    for task in tasks {
        allowed += usize::from(task.await.unwrap());
    }
    assert_eq!(allowed, 5);
}
