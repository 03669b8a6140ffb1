//! Pruning, a batch at a time.

use crate::prelude::*;

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

/// One call deletes every dead session of its window, however many (a
/// store may delete them in several writes).
pub async fn prune_sessions_deletes_a_whole_window_of_dead_ones(store: Arc<dyn Store>) {
    let alice = add_user(&*store, "alice", 0).await;
    let mut live = Vec::new();
    let mut dead = 0;
    for i in 0..150 {
        let s = add_session(&*store, &alice.id, i).await;
        if i % 10 < 7 {
            store
                .revoke_sessions(RevokeScope::One(&s.id), at(100), "logout")
                .await
                .unwrap();
            dead += 1;
        } else {
            live.push(s);
        }
    }
    let cutoff = DeadSessions {
        now: at(200),
        idle_before: at(-1),
    };
    let batch = store.prune_sessions(cutoff, None, 150).await.unwrap();
    assert_eq!(batch.deleted, dead);
    let again = store
        .prune_sessions(cutoff, batch.next.as_deref(), 150)
        .await
        .unwrap();
    assert_eq!((again.deleted, again.next), (0, None));
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
