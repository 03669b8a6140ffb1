//! The audit log and OAuth clients.

use crate::prelude::*;

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
    assert!(store.remove_client("reports", at(30)).await.unwrap());
    assert!(!store.remove_client("reports", at(40)).await.unwrap());
    assert_eq!(store.list_clients().await.unwrap(), [public]);
}

/// Removing a client revokes the live sessions it opened, and no other.
pub async fn removing_a_client_revokes_its_sessions(store: Arc<dyn Store>) {
    let alice = add_user(&*store, "alice", 0).await;
    store
        .insert_client(&ClientRecord {
            id: "reader".into(),
            secret_hash: None,
            scope: String::new(),
            created_at: at(0),
        })
        .await
        .unwrap();
    let readers = SessionRecord {
        client_id: "reader".into(),
        ..session(&alice.id, 10)
    };
    assert!(store.create_session(&readers, 0).await.unwrap());
    let others = add_session(&*store, &alice.id, 20).await;
    assert!(store.remove_client("reader", at(30)).await.unwrap());
    assert_eq!(
        stored(&*store, &readers.id).await,
        revoked(&readers, at(30), "client_removed")
    );
    assert_eq!(stored(&*store, &others.id).await, others);
}
