//! The revocation feed's records: one per session revoked, whichever way,
//! and one per key purged; in order, after a cursor, pruned by age.

use latchkey_core::store::{RevocationRecord, Revoked};

use crate::prelude::*;

/// Every revocation recorded so far, oldest first.
async fn all(store: &dyn Store) -> Vec<RevocationRecord> {
    store
        .revocations_after(0, OffsetDateTime::UNIX_EPOCH, 10_000)
        .await
        .unwrap()
}

fn sessions_of(records: &[RevocationRecord]) -> Vec<(SessionId, OffsetDateTime)> {
    records
        .iter()
        .filter_map(|r| match &r.revoked {
            Revoked::Session(id) => Some((id.clone(), r.at)),
            Revoked::Key(_) => None,
        })
        .collect()
}

pub async fn every_revocation_is_recorded_once(store: Arc<dyn Store>) {
    assert_eq!(store.last_revocation().await.unwrap(), 0);
    let alice = add_user(&*store, "alice", 0).await;
    let bob = add_user(&*store, "bob", 0).await;
    let carol = add_user(&*store, "carol", 0).await;
    let a1 = add_session(&*store, &alice.id, 1).await;
    let a2 = add_session(&*store, &alice.id, 2).await;
    let a3 = add_session(&*store, &alice.id, 3).await;
    let b1 = add_session(&*store, &bob.id, 4).await;
    let c1 = add_session(&*store, &carol.id, 5).await;
    store
        .insert_client(&ClientRecord {
            id: "reader".into(),
            secret_hash: None,
            scope: String::new(),
            created_at: at(0),
        })
        .await
        .unwrap();
    let r1 = SessionRecord {
        client_id: "reader".into(),
        ..session(&carol.id, 6)
    };
    assert!(store.create_session(&r1, 0).await.unwrap());

    // Logout; then again: already revoked, nothing more.
    store
        .revoke_sessions(RevokeScope::One(&a1.id), at(10), "logout")
        .await
        .unwrap();
    store
        .revoke_sessions(RevokeScope::One(&a1.id), at(11), "logout")
        .await
        .unwrap();
    // Logout everywhere else: a2 and a3 but not a1 again, nor the caller's.
    store
        .revoke_sessions(
            RevokeScope::User {
                user_id: &alice.id,
                except: Some(&a3.id),
            },
            at(12),
            "logout_all",
        )
        .await
        .unwrap();
    // A password change, a disabled user, a removed client.
    store
        .set_password_hash(
            &alice.id,
            "$argon2id$new",
            RevokeScope::User {
                user_id: &alice.id,
                except: None,
            },
            at(13),
            "password_changed",
        )
        .await
        .unwrap();
    assert!(store
        .set_user_disabled(&bob.id, Some(at(14)))
        .await
        .unwrap());
    assert!(store.remove_client("reader", at(15)).await.unwrap());
    // Enabling bob again revokes nothing.
    assert!(store.set_user_disabled(&bob.id, None).await.unwrap());

    let records = all(&*store).await;
    assert_eq!(
        sessions_of(&records),
        [
            (a1.id.clone(), at(10)),
            (a2.id.clone(), at(12)),
            (a3.id.clone(), at(13)),
            (b1.id.clone(), at(14)),
            (r1.id.clone(), at(15)),
        ]
    );
    let seqs: Vec<u64> = records.iter().map(|r| r.seq).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "in order: {seqs:?}");
    assert_eq!(
        store.last_revocation().await.unwrap(),
        *seqs.last().unwrap()
    );
    // carol's own session is untouched.
    assert!(stored(&*store, &c1.id).await.revoked_at.is_none());
}

pub async fn a_purged_key_is_recorded_once(store: Arc<dyn Store>) {
    let old = key(SigningAlg::EdDsa, 0, 0);
    let next = key(SigningAlg::EdDsa, 10, 20);
    store.insert_key(&old).await.unwrap();
    store.insert_key(&next).await.unwrap();
    // Retiring alone tells verifiers nothing: tokens it signed stay good.
    store
        .retire_key(&old.kid, at(30), false, Some(&next.kid))
        .await
        .unwrap();
    assert!(all(&*store).await.is_empty());
    store
        .retire_key(&old.kid, at(40), true, None)
        .await
        .unwrap();
    store
        .retire_key(&old.kid, at(50), true, None)
        .await
        .unwrap();
    let records = all(&*store).await;
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0].revoked, Revoked::Key(old.kid.clone()));
    assert_eq!(records[0].at, at(40));
}

pub async fn revocations_after_a_cursor_since_a_time(store: Arc<dyn Store>) {
    let alice = add_user(&*store, "alice", 0).await;
    let mut ids = Vec::new();
    for i in 0..5 {
        let s = add_session(&*store, &alice.id, i).await;
        store
            .revoke_sessions(RevokeScope::One(&s.id), at(100 + i), "logout")
            .await
            .unwrap();
        ids.push(s.id);
    }
    let records = all(&*store).await;
    let seq = |i: usize| records[i].seq;
    let after = |cursor: u64, since: i64, limit: u32| {
        let store = Arc::clone(&store);
        async move {
            sessions_of(
                &store
                    .revocations_after(cursor, at(since), limit)
                    .await
                    .unwrap(),
            )
            .into_iter()
            .map(|(id, _)| id)
            .collect::<Vec<_>>()
        }
    };
    assert_eq!(after(seq(1), 0, 100).await, ids[2..]);
    assert_eq!(after(seq(1), 0, 2).await, ids[2..4]);
    assert_eq!(after(0, 103, 100).await, ids[3..]);
    assert!(after(seq(4), 0, 100).await.is_empty());
}

pub async fn prune_revocations_by_age_keeps_the_count(store: Arc<dyn Store>) {
    let alice = add_user(&*store, "alice", 0).await;
    for i in 0..5 {
        let s = add_session(&*store, &alice.id, i).await;
        store
            .revoke_sessions(RevokeScope::One(&s.id), at(100 + i), "logout")
            .await
            .unwrap();
    }
    let last = store.last_revocation().await.unwrap();
    assert_eq!(store.prune_revocations(at(102), 2).await.unwrap(), 2);
    assert_eq!(store.prune_revocations(at(102), 2).await.unwrap(), 1);
    assert_eq!(store.prune_revocations(at(102), 2).await.unwrap(), 0);
    let left: Vec<OffsetDateTime> = all(&*store).await.iter().map(|r| r.at).collect();
    assert_eq!(left, [at(103), at(104)]);
    assert_eq!(store.prune_revocations(at(1_000), 100).await.unwrap(), 2);
    assert!(all(&*store).await.is_empty());
    // The numbering goes on after an empty table.
    assert_eq!(store.last_revocation().await.unwrap(), last);
    let s = add_session(&*store, &alice.id, 200).await;
    store
        .revoke_sessions(RevokeScope::One(&s.id), at(201), "logout")
        .await
        .unwrap();
    assert_eq!(store.last_revocation().await.unwrap(), last + 1);
}

/// Revocations made at once by many writers come out numbered in the order
/// they became visible: a reader following the numbers misses none.
pub async fn concurrent_revocations_are_read_without_gaps(store: Arc<dyn Store>) {
    let alice = add_user(&*store, "alice", 0).await;
    let mut sessions = Vec::new();
    for i in 0..64 {
        sessions.push(add_session(&*store, &alice.id, i).await);
    }
    let reader = {
        let store = Arc::clone(&store);
        tokio::spawn(async move {
            let mut cursor = 0;
            let mut seen = Vec::new();
            while seen.len() < 64 {
                let page = store
                    .revocations_after(cursor, OffsetDateTime::UNIX_EPOCH, 7)
                    .await
                    .unwrap();
                if let Some(last) = page.last() {
                    cursor = last.seq;
                }
                seen.extend(sessions_of(&page).into_iter().map(|(id, _)| id));
                tokio::task::yield_now().await;
            }
            seen
        })
    };
    let writers: Vec<_> = sessions
        .iter()
        .map(|s| {
            let (store, id) = (Arc::clone(&store), s.id.clone());
            tokio::spawn(async move {
                store
                    .revoke_sessions(RevokeScope::One(&id), at(100), "logout")
                    .await
                    .unwrap();
            })
        })
        .collect();
    for w in writers {
        w.await.unwrap();
    }
    let seen = tokio::time::timeout(std::time::Duration::from_secs(30), reader)
        .await
        .expect("the reader saw every revocation")
        .unwrap();
    let mut seen_sorted = seen.clone();
    seen_sorted.sort();
    seen_sorted.dedup();
    assert_eq!(seen_sorted.len(), 64, "each once: {seen:?}");
}
