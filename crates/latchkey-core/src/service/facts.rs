//! What never changes about a session and its user, kept in memory: with
//! it a refresh checks its token's MAC before any store access (a forged
//! string costs no I/O) and is decided by the store's compare-and-swap
//! alone, without a read before it. Nothing that can change (revocation,
//! expiry, a disabled user) is kept here: the swap checks those in the
//! store, so a cached session is never trusted past its revocation.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use time::OffsetDateTime;

use super::UserView;
use crate::ids::{SessionId, UserId};
use crate::store::{SessionRecord, UserRecord};

/// Sessions kept at most; past it the cache starts again (a miss costs one
/// read, as without the cache).
const MAX_SESSIONS: usize = 65_536;

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
#[derive(Default)]
pub(crate) struct FactsCache {
    sessions: Mutex<HashMap<SessionId, Arc<SessionFacts>>>,
}

impl FactsCache {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<SessionId, Arc<SessionFacts>>> {
        self.sessions.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn get(&self, id: &SessionId) -> Option<Arc<SessionFacts>> {
        self.map().get(id).cloned()
    }

    /// Only genuine sessions come here (opened by a login, or named by a
    /// token whose MAC checked out): no request can fill it with junk.
    pub(crate) fn insert(&self, session: &SessionRecord, user: &UserRecord) {
        let mut map = self.map();
        if map.len() >= MAX_SESSIONS && !map.contains_key(&session.id) {
            map.clear();
        }
        map.insert(
            session.id.clone(),
            Arc::new(SessionFacts::of(session, user)),
        );
    }

    pub(crate) fn forget(&self, id: &SessionId) {
        self.map().remove(id);
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
        };
        (session, user)
    }

    #[test]
    fn the_cache_is_bounded() {
        let cache = FactsCache::default();
        for i in 0..MAX_SESSIONS {
            let (s, u) = records(i);
            cache.insert(&s, &u);
        }
        assert_eq!(cache.map().len(), MAX_SESSIONS);
        assert!(cache.get(&SessionId::from("s0")).is_some());
        let (s, u) = records(MAX_SESSIONS);
        cache.insert(&s, &u);
        assert_eq!(cache.map().len(), 1);
        assert_eq!(
            cache.get(&s.id).map(|f| f.username.clone()).as_deref(),
            Some(u.username.as_str())
        );
        cache.forget(&s.id);
        assert!(cache.get(&s.id).is_none());
    }
}
