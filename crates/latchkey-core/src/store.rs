//! The storage contract. Every method is one atomic operation in the
//! database; the rules that decide *when* to call them live in the service.

use async_trait::async_trait;
use time::OffsetDateTime;

use crate::audit::AuditRecord;
use crate::keys::KeyRecord;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A uniqueness rule was broken (e.g. a taken username).
    #[error("conflict: {0}")]
    Conflict(String),
    /// The database could not be reached or answered an error.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// Data in the store is not what this version understands.
    #[error("corrupt data: {0}")]
    Corrupt(String),
}

pub type StoreResult<T> = Result<T, StoreError>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRecord {
    pub id: String,
    /// As entered, trimmed.
    pub username: String,
    /// NFC + lower case: the unique key.
    pub username_key: String,
    pub password_hash: String,
    pub created_at: OffsetDateTime,
    pub disabled_at: Option<OffsetDateTime>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRecord {
    pub id: String,
    pub user_id: String,
    pub client_id: String,
    pub scope: String,
    /// Random per session, part of every refresh token's MAC.
    pub salt: Vec<u8>,
    /// The generation whose refresh token is current.
    pub generation: u64,
    /// When the generation last moved (the previous token's first use).
    pub rotated_at: Option<OffsetDateTime>,
    pub created_at: OffsetDateTime,
    pub last_used_at: OffsetDateTime,
    pub absolute_expires_at: OffsetDateTime,
    pub revoked_at: Option<OffsetDateTime>,
    pub revoked_reason: Option<String>,
    pub user_agent: Option<String>,
    pub ip: String,
}

/// A session with its user, read together on the hot path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionWithUser {
    pub session: SessionRecord,
    pub user: UserRecord,
}

/// The result of the refresh compare-and-swap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Advance {
    /// The generation moved from `from` to `from + 1`: this caller won.
    Advanced(Box<SessionRecord>),
    /// The session was not at `from` (or is revoked): someone else won, or
    /// it is gone. Re-read it to decide.
    Lost,
}

/// Failed logins of one (username, client address) key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoginFailures {
    pub count: u32,
    pub window_started_at: OffsetDateTime,
}

/// An OAuth client registered with `latchkey client add`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientRecord {
    pub id: String,
    /// SHA-256 of the client secret; `None` for a public client.
    pub secret_hash: Option<Vec<u8>>,
    /// The scopes it may ask for, space-separated.
    pub scope: String,
    pub created_at: OffsetDateTime,
}

/// What a prune removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    pub sessions: u64,
    pub login_failures: u64,
    pub audit_rows: u64,
}

/// What a prune may remove: sessions revoked, absolutely expired
/// (`absolute_expires_at <= now`) or idle (`last_used_at <= idle_before`);
/// login-failure windows that started at or before `failures_before`;
/// audit rows at or before `audit_before`.
#[derive(Debug, Clone, Copy)]
pub struct PruneCutoffs {
    pub now: OffsetDateTime,
    pub idle_before: OffsetDateTime,
    pub failures_before: OffsetDateTime,
    pub audit_before: OffsetDateTime,
}

/// Which sessions to revoke, all in one statement.
#[derive(Debug, Clone, Copy)]
pub enum RevokeScope<'a> {
    One(&'a str),
    User {
        user_id: &'a str,
        except: Option<&'a str>,
    },
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Brings the schema up to date.
    async fn migrate(&self) -> StoreResult<()>;
    /// Answers when the database does.
    async fn ping(&self) -> StoreResult<()>;

    // Users.
    async fn create_user(&self, user: &UserRecord) -> StoreResult<()>;
    async fn user_by_key(&self, username_key: &str) -> StoreResult<Option<UserRecord>>;
    async fn user_by_id(&self, id: &str) -> StoreResult<Option<UserRecord>>;
    async fn list_users(&self) -> StoreResult<Vec<UserRecord>>;
    /// Replaces the hash; with `revoke`, also revokes sessions in the same transaction.
    async fn set_password_hash(
        &self,
        user_id: &str,
        hash: &str,
        revoke: Option<(RevokeScope<'_>, OffsetDateTime, &str)>,
    ) -> StoreResult<()>;
    /// Disables (revoking every session, atomically) or enables a user.
    /// Answers false when there is no such user.
    async fn set_user_disabled(
        &self,
        user_id: &str,
        disabled_at: Option<OffsetDateTime>,
    ) -> StoreResult<bool>;

    // Sessions.
    async fn create_session(&self, session: &SessionRecord) -> StoreResult<()>;
    async fn session(&self, id: &str) -> StoreResult<Option<SessionRecord>>;
    async fn session_with_user(&self, id: &str) -> StoreResult<Option<SessionWithUser>>;
    /// The refresh compare-and-swap: moves a live session from generation
    /// `from` to `from + 1`, stamping `rotated_at` and `last_used_at` with
    /// `now`, and appends `audit` in the same transaction when it wins.
    async fn advance_generation(
        &self,
        id: &str,
        from: u64,
        now: OffsetDateTime,
        audit: &AuditRecord,
    ) -> StoreResult<Advance>;
    /// Revokes live sessions; answers how many were live.
    async fn revoke_sessions(
        &self,
        scope: RevokeScope<'_>,
        now: OffsetDateTime,
        reason: &str,
    ) -> StoreResult<u64>;
    /// Sessions of a user (or all, for `None`) that are not revoked, not past
    /// `absolute_expires_at > now`, and used since `idle_since`; oldest first.
    async fn live_sessions(
        &self,
        user_id: Option<&str>,
        now: OffsetDateTime,
        idle_since: OffsetDateTime,
    ) -> StoreResult<Vec<SessionRecord>>;

    /// How many sessions [`Store::live_sessions`] would list for all users.
    async fn count_live_sessions(
        &self,
        now: OffsetDateTime,
        idle_since: OffsetDateTime,
    ) -> StoreResult<u64>;

    // Signing keys.
    async fn insert_key(&self, key: &KeyRecord) -> StoreResult<()>;
    async fn list_keys(&self) -> StoreResult<Vec<KeyRecord>>;
    /// Retires `kid` at `now` (unless already retired), purges it when asked,
    /// and makes `promote` sign from `now`, in one transaction.
    async fn retire_key(
        &self,
        kid: &str,
        now: OffsetDateTime,
        purge: bool,
        promote: Option<&str>,
    ) -> StoreResult<()>;

    // Server secrets (kept in the store by engines shared between nodes).
    /// Stores `candidate` under `name` unless a value is there; answers the stored one.
    async fn secret_or_insert(&self, name: &str, candidate: &[u8]) -> StoreResult<Vec<u8>>;

    // Login rate limit.
    /// Counts one failure; a window older than `window_start_after` restarts at `now`.
    async fn record_login_failure(
        &self,
        key: &str,
        now: OffsetDateTime,
        window_start_after: OffsetDateTime,
    ) -> StoreResult<LoginFailures>;
    async fn login_failures(&self, key: &str) -> StoreResult<Option<LoginFailures>>;
    async fn clear_login_failures(&self, key: &str) -> StoreResult<()>;

    // OAuth clients.
    /// Fails with `Conflict` when the id is taken.
    async fn insert_client(&self, client: &ClientRecord) -> StoreResult<()>;
    async fn client(&self, id: &str) -> StoreResult<Option<ClientRecord>>;
    /// Ordered by id.
    async fn list_clients(&self) -> StoreResult<Vec<ClientRecord>>;
    /// Answers whether there was such a client.
    async fn remove_client(&self, id: &str) -> StoreResult<bool>;

    /// Deletes what can no longer matter, so the store does not grow without end.
    async fn prune(&self, cutoffs: PruneCutoffs) -> StoreResult<Pruned>;

    // Audit log.
    async fn append_audit(&self, record: &AuditRecord) -> StoreResult<()>;
    /// The latest `limit` rows, newest first.
    async fn recent_audit(&self, limit: u32) -> StoreResult<Vec<AuditRecord>>;
}
