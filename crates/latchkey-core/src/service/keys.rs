//! Signing keys: the ring in memory, rotation and retirement.

use std::sync::Arc;

use latchkey_proto::PublicJwk;

use super::{KeyView, Service};
use crate::audit::{AuditEvent, AuditRecord};
use crate::error::ServiceError;
use crate::keys::{self, KeyRing, KeyState};
use crate::policy::KEY_PICKUP_INTERVAL;

impl Service {
    pub(super) fn ring(&self) -> Arc<KeyRing> {
        self.ring.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Re-reads the signing keys from the store (what another node or the
    /// CLI changed shows up here).
    pub async fn reload_keys(&self) -> Result<(), ServiceError> {
        let records = self.store.list_keys().await?;
        if self.ring().records().eq(records.iter()) {
            return Ok(());
        }
        let ring = KeyRing::load(records, self.master_key.as_ref())?;
        *self.ring.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(ring);
        // A retired or purged key must not live on in verified tokens.
        self.verified.clear();
        Ok(())
    }

    /// Loads the keys, making a first one when none signs.
    pub async fn ensure_signing_key(&self) -> Result<(), ServiceError> {
        self.reload_keys().await?;
        let now = self.now();
        if self.ring().signing_key(now).is_none() {
            let key = keys::generate(self.policy.signing_alg, now, now, self.master_key.as_ref())?;
            self.store.insert_key(&key).await?;
            self.reload_keys().await?;
        }
        Ok(())
    }

    /// Keys stored in clear that a token may still need or that may sign:
    /// made before a master key was set.
    pub async fn unencrypted_live_keys(&self) -> Result<Vec<String>, ServiceError> {
        Ok(self
            .list_keys()
            .await?
            .into_iter()
            .filter(|k| !k.encrypted)
            .filter(|k| {
                matches!(
                    k.state,
                    KeyState::Signing | KeyState::Pending | KeyState::Retired
                )
            })
            .map(|k| k.kid)
            .collect())
    }

    /// The public keys of the JWKS.
    pub fn jwks(&self) -> Vec<PublicJwk> {
        self.ring().published(self.now(), self.policy.access_ttl)
    }

    /// Every stored key and where it stands now, in the order they sign.
    pub async fn list_keys(&self) -> Result<Vec<KeyView>, ServiceError> {
        let records = self.store.list_keys().await?;
        let now = self.now();
        let all: Vec<_> = records.iter().collect();
        let mut out: Vec<KeyView> = records
            .iter()
            .map(|r| KeyView::of(r, keys::state_of(r, &all, now, self.policy.access_ttl)))
            .collect();
        out.sort_by_key(|k| (k.activates_at, k.created_at));
        Ok(out)
    }

    /// Adds a key: published at once, signing after every verifier has had
    /// time to fetch it (`jwks_max_age` + the pick-up interval), or at once
    /// with `now` (an emergency).
    pub async fn rotate_key(&self, now_flag: bool) -> Result<KeyView, ServiceError> {
        let now = self.now();
        let activates_at = if now_flag {
            now
        } else {
            now + self.policy.jwks_max_age + KEY_PICKUP_INTERVAL
        };
        let key = keys::generate(
            self.policy.signing_alg,
            now,
            activates_at,
            self.master_key.as_ref(),
        )?;
        self.store.insert_key(&key).await?;
        self.audit(
            AuditRecord::new(AuditEvent::KeyRotated, now)
                .detail(format!("kid={} alg={} now={now_flag}", key.kid, key.alg)),
        )
        .await;
        let state = if now_flag {
            KeyState::Signing
        } else {
            KeyState::Pending
        };
        Ok(KeyView::of(&key, state))
    }

    /// Retires a key; retiring the signing key hands signing to the newest
    /// published key at once, and is refused when there is none.
    pub async fn retire_key(&self, kid: &str, purge: bool) -> Result<KeyView, ServiceError> {
        let now = self.now();
        let keys = self.list_keys().await?;
        let target = keys
            .iter()
            .find(|k| k.kid == kid)
            .ok_or_else(|| ServiceError::NotFound(format!("no key {kid}")))?;
        let promote = if target.state == KeyState::Signing {
            let successor = keys
                .iter()
                .filter(|k| k.state == KeyState::Pending)
                .max_by_key(|k| k.created_at)
                .ok_or_else(|| {
                    ServiceError::Conflict(
                        "this key signs and no other key is published to take over: run `key rotate` first"
                            .into(),
                    )
                })?;
            Some(successor.kid.clone())
        } else {
            None
        };
        self.store
            .retire_key(kid, now, purge, promote.as_deref())
            .await?;
        self.wake_feed();
        self.audit(
            AuditRecord::new(AuditEvent::KeyRetired, now)
                .detail(format!("kid={kid} purge={purge}")),
        )
        .await;
        self.reload_keys().await?;
        self.list_keys()
            .await?
            .into_iter()
            .find(|k| k.kid == kid)
            .ok_or_else(|| ServiceError::NotFound(format!("no key {kid}")))
    }
}
