//! Registered clients as the store last described them, for a few seconds,
//! so that a client calling the token or introspection endpoint over and
//! over costs no store read per call. Only what the store answered for an
//! existing client is kept (an unknown id always costs a read, and cannot
//! fill the map); `client remove` forgets at once on this node, and every
//! other node or process sees it within [`CLIENT_CACHE_TTL`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use time::OffsetDateTime;

use crate::store::ClientRecord;

/// How long a client read from the store is trusted without reading again:
/// the bound on a removal made by another node, or by the CLI.
pub const CLIENT_CACHE_TTL: Duration = Duration::from_secs(5);

/// Clients kept at most; past it the cache starts again.
const MAX_CLIENTS: usize = 1_024;

struct Entry {
    client: Arc<ClientRecord>,
    read_at: OffsetDateTime,
}

#[derive(Default)]
pub(crate) struct ClientCache {
    clients: Mutex<HashMap<String, Entry>>,
}

impl ClientCache {
    fn map(&self) -> MutexGuard<'_, HashMap<String, Entry>> {
        self.clients.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The client if it was read from the store less than the TTL before `now`.
    pub(crate) fn get(&self, id: &str, now: OffsetDateTime) -> Option<Arc<ClientRecord>> {
        let map = self.map();
        let entry = map.get(id)?;
        let age = now - entry.read_at;
        (age >= time::Duration::ZERO && age < CLIENT_CACHE_TTL).then(|| Arc::clone(&entry.client))
    }

    pub(crate) fn insert(&self, client: Arc<ClientRecord>, now: OffsetDateTime) {
        let mut map = self.map();
        if map.len() >= MAX_CLIENTS && !map.contains_key(&client.id) {
            map.clear();
        }
        map.insert(
            client.id.clone(),
            Entry {
                client,
                read_at: now,
            },
        );
    }

    pub(crate) fn forget(&self, id: &str) {
        self.map().remove(id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(i: usize) -> Arc<ClientRecord> {
        Arc::new(ClientRecord {
            id: format!("c{i}"),
            secret_hash: Some(vec![7; 32]),
            scope: String::new(),
            created_at: OffsetDateTime::UNIX_EPOCH,
        })
    }

    #[test]
    fn entries_expire_and_the_map_is_bounded() {
        let cache = ClientCache::default();
        let t0 = OffsetDateTime::UNIX_EPOCH + Duration::from_secs(1_000);
        cache.insert(client(0), t0);
        assert!(cache.get("c0", t0 + Duration::from_secs(4)).is_some());
        assert!(cache.get("c0", t0 + CLIENT_CACHE_TTL).is_none());
        // A clock that went back is no reason to trust an entry.
        assert!(cache.get("c0", t0 - Duration::from_secs(1)).is_none());
        cache.forget("c0");
        assert!(cache.get("c0", t0).is_none());

        for i in 0..MAX_CLIENTS {
            cache.insert(client(i), t0);
        }
        assert_eq!(cache.map().len(), MAX_CLIENTS);
        cache.insert(client(MAX_CLIENTS), t0);
        assert_eq!(cache.map().len(), 1);
        assert!(cache.get(&format!("c{MAX_CLIENTS}"), t0).is_some());
    }
}
