//! The login limit.

use crate::prelude::*;

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
