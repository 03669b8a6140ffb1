//! Signing keys and the refresh secret.

use crate::prelude::*;

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
