//! What never changes about a session and its user, kept in memory: with
//! it a refresh checks its token's MAC before any store access (a forged
//! string costs no I/O) and is decided by the store's compare-and-swap
//! alone, without a read before it. Nothing that can change (revocation,
//! expiry, a disabled user) is kept here: the swap checks those in the
//! store, so a cached session is never trusted past its revocation.

use std::sync::Arc;

use quick_cache::sync::Cache;

use time::OffsetDateTime;

use super::UserView;
use crate::ids::{SessionId, UserId};
use crate::store::{SessionRecord, UserRecord};

/// Sessions kept at most: room for the live set of a large app (each
/// entry is about 200 bytes). Past it the least useful entries go (S3-FIFO);
/// a miss costs one read, as without the cache.
pub(crate) const MAX_SESSIONS: usize = 262_144;

/// A session's immutable parts, and its user's.
#[derive(Debug)]
pub(crate) struct SessionFacts {
    pub(crate) salt: Vec<u8>,
    pub(crate) user_id: UserId,
    pub(crate) client_id: String,
    pub(crate) absolute_expires_at: OffsetDateTime,
    pub(crate) username: String,
    pub(crate) user_created_at: OffsetDateTime,
}

impl SessionFacts {
    pub(crate) fn of(session: &SessionRecord, user: &UserRecord) -> Self {
        Self {
            salt: session.salt.clone(),
            user_id: user.id.clone(),
            client_id: session.client_id.clone(),
            absolute_expires_at: session.absolute_expires_at,
            username: user.username.clone(),
            user_created_at: user.created_at,
        }
    }

    /// The user as a refresh that the store let through sees them: enabled.
    pub(crate) fn user(&self) -> UserView {
        UserView {
            id: self.user_id.clone(),
            username: self.username.clone(),
            created_at: self.user_created_at,
            disabled: false,
        }
    }
}

/// The bounded map of [`SessionFacts`] by session id.
pub(crate) struct FactsCache {
    sessions: Cache<SessionId, Arc<SessionFacts>>,
}

impl Default for FactsCache {
    fn default() -> Self {
        Self::with_capacity(MAX_SESSIONS)
    }
}

impl FactsCache {
    fn with_capacity(capacity: usize) -> Self {
        Self {
            sessions: Cache::new(capacity),
        }
    }

    pub(crate) fn get(&self, id: &SessionId) -> Option<Arc<SessionFacts>> {
        self.sessions.get(id)
    }

    /// Only genuine sessions come here (opened by a login, or named by a
    /// token whose MAC checked out): no request can fill it with junk.
    pub(crate) fn insert(&self, session: &SessionRecord, user: &UserRecord) {
        self.sessions.insert(
            session.id.clone(),
            Arc::new(SessionFacts::of(session, user)),
        );
    }

    pub(crate) fn forget(&self, id: &SessionId) {
        self.sessions.remove(id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records(i: usize) -> (SessionRecord, UserRecord) {
        let at = OffsetDateTime::UNIX_EPOCH;
        let user = UserRecord {
            id: UserId::from(format!("u{i}")),
            username: format!("user{i}"),
            username_key: format!("user{i}"),
            password_hash: String::new(),
            password_version: 0,
            created_at: at,
            disabled_at: None,
            email: None,
            second_factors: Default::default(),
        };
        let session = SessionRecord {
            id: SessionId::from(format!("s{i}")),
            user_id: user.id.clone(),
            client_id: "web".into(),
            scope: String::new(),
            salt: vec![1; 16],
            generation: 0,
            rotated_at: None,
            created_at: at,
            last_used_at: at,
            absolute_expires_at: at,
            revoked_at: None,
            revoked_reason: None,
            user_agent: None,
            ip: String::new(),
            amr: vec!["pwd".into()],
            auth_time: at,
        };
        (session, user)
    }

    #[test]
    fn the_cache_is_bounded() {
        let capacity = 1_000;
        let cache = FactsCache::with_capacity(capacity);
        for i in 0..10 * capacity {
            let (s, u) = records(i);
            cache.insert(&s, &u);
        }
        assert!(cache.sessions.len() <= capacity, "{}", cache.sessions.len());
        // The newest is kept, and read back whole.
        let (s, u) = records(10 * capacity);
        cache.insert(&s, &u);
        assert_eq!(
            cache.get(&s.id).map(|f| f.username.clone()).as_deref(),
            Some(u.username.as_str())
        );
        cache.forget(&s.id);
        assert!(cache.get(&s.id).is_none());
    }

    #[test]
    fn a_live_set_smaller_than_the_cache_stays_whole() {
        let capacity = 1_000;
        let cache = FactsCache::with_capacity(capacity);
        let live = capacity / 2;
        // Sessions used in turn, each only after all the others (as a large
        // app's refreshes come): after the first round, every one is known.
        for _ in 0..3 {
            for i in 0..live {
                let (s, u) = records(i);
                if cache.get(&s.id).is_none() {
                    cache.insert(&s, &u);
                }
            }
        }
        assert!((0..live).all(|i| cache.get(&records(i).0.id).is_some()));
    }
}
