//! The storage contract. Every method is one atomic operation in the
//! database; the rules that decide *when* to call them live in the service.

use std::fmt;

use async_trait::async_trait;
use time::OffsetDateTime;

use crate::audit::AuditRecord;
use crate::ids::{PasskeyId, SessionId, UserId};
use crate::mail::{EmailRecord, MailTokenRecord, OutboxMail};
use crate::mfa::{MfaLoginRecord, SecondFactors, TotpRecord};

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
    /// The store's files are not safe to use (a secret others can read).
    #[error("{0}")]
    Unsafe(String),
}

pub type StoreResult<T> = Result<T, StoreError>;

#[derive(Clone, PartialEq, Eq)]
pub struct UserRecord {
    pub id: UserId,
    /// As entered, trimmed.
    pub username: String,
    /// NFC + lower case: the unique key.
    pub username_key: String,
    pub password_hash: String,
    /// Moves on every password change (not on a rehash), so that a login
    /// checked against an older password opens no session.
    pub password_version: u64,
    pub created_at: OffsetDateTime,
    pub disabled_at: Option<OffsetDateTime>,
    /// The account's address; written by [`Store::set_user_email`] and the
    /// token that verifies it, read with the user.
    pub email: Option<EmailRecord>,
    /// Read with the user from the tables of TOTP and passkeys; writing a
    /// user ignores it.
    pub second_factors: SecondFactors,
}

#[derive(Clone, PartialEq, Eq)]
pub struct SessionRecord {
    pub id: SessionId,
    pub user_id: UserId,
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
    /// How the login that opened it was made (RFC 8176, see [`crate::amr`]);
    /// a refresh keeps it.
    pub amr: Vec<String>,
    /// When that login was made (its last step); a refresh keeps it.
    pub auth_time: OffsetDateTime,
}

/// A signing key as the store keeps it.
#[derive(Clone, PartialEq, Eq)]
pub struct KeyRecord {
    pub kid: String,
    pub alg: String,
    /// PKCS#8 DER, sealed under the master key when `encrypted`.
    pub private_key: Vec<u8>,
    pub encrypted: bool,
    /// The public JWK, as JSON.
    pub public_jwk: String,
    pub created_at: OffsetDateTime,
    /// When it starts signing (published before that).
    pub activates_at: OffsetDateTime,
    pub retired_at: Option<OffsetDateTime>,
    /// Purged keys leave the JWKS at once.
    pub purged_at: Option<OffsetDateTime>,
}

// Debug output (logs, panics) never shows a hash, a salt or a private key.
const REDACTED: &str = "<redacted>";

impl fmt::Debug for UserRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UserRecord")
            .field("id", &self.id)
            .field("username", &self.username)
            .field("username_key", &self.username_key)
            .field("password_hash", &REDACTED)
            .field("password_version", &self.password_version)
            .field("created_at", &self.created_at)
            .field("disabled_at", &self.disabled_at)
            .field("email", &self.email)
            .field("second_factors", &self.second_factors)
            .finish()
    }
}

impl fmt::Debug for SessionRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionRecord")
            .field("id", &self.id)
            .field("user_id", &self.user_id)
            .field("client_id", &self.client_id)
            .field("scope", &self.scope)
            .field("salt", &REDACTED)
            .field("generation", &self.generation)
            .field("rotated_at", &self.rotated_at)
            .field("created_at", &self.created_at)
            .field("last_used_at", &self.last_used_at)
            .field("absolute_expires_at", &self.absolute_expires_at)
            .field("revoked_at", &self.revoked_at)
            .field("revoked_reason", &self.revoked_reason)
            .field("user_agent", &self.user_agent)
            .field("ip", &self.ip)
            .field("amr", &self.amr)
            .field("auth_time", &self.auth_time)
            .finish()
    }
}

impl fmt::Debug for KeyRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyRecord")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .field("private_key", &REDACTED)
            .field("encrypted", &self.encrypted)
            .field("public_jwk", &self.public_jwk)
            .field("created_at", &self.created_at)
            .field("activates_at", &self.activates_at)
            .field("retired_at", &self.retired_at)
            .field("purged_at", &self.purged_at)
            .finish()
    }
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

/// The answer to a login attempt's reservation in the login limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginAttempt {
    /// Counted as a failure in advance: a success clears it.
    Allowed,
    /// The limit is reached for the window that started then.
    Refused {
        window_started_at: OffsetDateTime,
        /// The first refusal of this window (the one worth an audit row).
        first: bool,
    },
}

/// What a login attempt is counted against: one (username, address) key,
/// its window and its limit.
#[derive(Debug, Clone, Copy)]
pub struct LoginLimit<'a> {
    pub key: &'a str,
    pub now: OffsetDateTime,
    /// A window that started at or before this is over: a new one starts.
    pub window_start_after: OffsetDateTime,
    pub max_attempts: u32,
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
    /// Logins that waited for a second factor until they expired.
    pub mfa_logins: u64,
    pub audit_rows: u64,
    pub keys: u64,
    pub revocations: u64,
    pub webauthn_challenges: u64,
    /// The longest any one batch held the store (the writer, on SQLite).
    pub longest_batch: std::time::Duration,
    /// The whole prune, pauses between batches included.
    pub took: std::time::Duration,
}

/// Which sessions are dead: revoked, absolutely expired
/// (`absolute_expires_at <= now`) or idle (`last_used_at <= idle_before`).
#[derive(Debug, Clone, Copy)]
pub struct DeadSessions {
    pub now: OffsetDateTime,
    pub idle_before: OffsetDateTime,
}

/// One batch of the sessions prune: what it deleted, and where the next
/// batch starts (`None`: the table is done).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionsPruned {
    pub deleted: u64,
    pub next: Option<String>,
}

/// What the revocation feed tells verifiers, as the store recorded it: in
/// the transaction that revoked the session or purged the key, numbered by
/// `seq` in the order the writes committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevocationRecord {
    pub seq: u64,
    pub revoked: Revoked,
    pub at: OffsetDateTime,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Revoked {
    Session(SessionId),
    /// A signing key purged: tokens it signed must not pass any more.
    Key(String),
}

impl Revoked {
    /// The `kind` column.
    pub fn kind(&self) -> &'static str {
        match self {
            Revoked::Session(_) => "revoked",
            Revoked::Key(_) => "key_purged",
        }
    }

    pub fn from_row(kind: &str, subject: String) -> Option<Self> {
        match kind {
            "revoked" => Some(Revoked::Session(SessionId::from(subject))),
            "key_purged" => Some(Revoked::Key(subject)),
            _ => None,
        }
    }
}

/// How many tokens of one purpose a user may be mailed in a window.
#[derive(Debug, Clone, Copy)]
pub struct MailLimit {
    /// Tokens made after this count.
    pub since: OffsetDateTime,
    pub max: u32,
}

/// What the outbox's sender asks for: up to `limit` mails due at `now`,
/// each leased to it until `lease_until` (another node takes a mail whose
/// lease ran out: its sender died), and given up at `deliver_by` when its
/// first attempt sets none yet.
#[derive(Debug, Clone, Copy)]
pub struct MailClaim {
    pub now: OffsetDateTime,
    pub lease_until: OffsetDateTime,
    pub deliver_by: OffsetDateTime,
    pub limit: u32,
}

/// A passkey: a user's WebAuthn credential (API.md §10).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasskeyRecord {
    pub id: PasskeyId,
    pub user_id: UserId,
    /// The user's name for it.
    pub name: String,
    /// The authenticator's credential id, base64url: unique among all users'.
    pub credential_id: String,
    /// The public key and what the authenticator said of itself, as
    /// webauthn-rs keeps a credential (JSON): nothing secret.
    pub credential: String,
    /// The authenticator's signature counter at the last login (0: it
    /// keeps none). The column is the truth; the copy in `credential`
    /// follows it.
    pub sign_count: u32,
    pub created_at: OffsetDateTime,
    pub last_used_at: Option<OffsetDateTime>,
}

/// What a row of `webauthn_challenges` is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChallengePurpose {
    /// A passkey registration begun: its state, to finish it.
    Registration,
    /// A login challenge spent. Its state is in the client's hands
    /// (sealed); the row, under the digest of that text, only keeps it
    /// from being spent twice, and needs no state.
    SpentLogin,
}

impl ChallengePurpose {
    /// The `purpose` column.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Registration => "registration",
            Self::SpentLogin => "login-spent",
        }
    }

    pub fn from_column(text: &str) -> Option<Self> {
        match text {
            "registration" => Some(Self::Registration),
            "login-spent" => Some(Self::SpentLogin),
            _ => None,
        }
    }
}

/// A WebAuthn challenge, kept in the store so that any node can finish
/// its ceremony (a registration) or refuse it a second time (a login).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebauthnChallengeRecord {
    /// A registration's `challenge_id` (random), or the SHA-256 of a spent
    /// login's (base64url, as long).
    pub id: String,
    pub purpose: ChallengePurpose,
    /// The ceremony's state: JSON the service writes and reads.
    pub state: String,
    pub created_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
}

/// Which sessions to revoke, all in one statement.
#[derive(Debug, Clone, Copy)]
pub enum RevokeScope<'a> {
    One(&'a SessionId),
    User {
        user_id: &'a UserId,
        except: Option<&'a SessionId>,
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
    async fn user_by_id(&self, id: &UserId) -> StoreResult<Option<UserRecord>>;
    async fn list_users(&self) -> StoreResult<Vec<UserRecord>>;
    /// A password change: replaces the hash, moves `password_version` on
    /// and revokes `revoke` (reason, at `now`) in the same transaction.
    async fn set_password_hash(
        &self,
        user_id: &UserId,
        hash: &str,
        revoke: RevokeScope<'_>,
        now: OffsetDateTime,
        reason: &str,
    ) -> StoreResult<()>;
    /// The same password under new hashing parameters: replaces the hash
    /// only while `password_version` is still `version`. Answers whether it did.
    async fn rehash_password(
        &self,
        user_id: &UserId,
        version: u64,
        hash: &str,
    ) -> StoreResult<bool>;
    /// Disables (revoking every session and deleting the logins waiting for
    /// a second factor, atomically) or enables a user. Answers false when
    /// there is no such user.
    async fn set_user_disabled(
        &self,
        user_id: &UserId,
        disabled_at: Option<OffsetDateTime>,
    ) -> StoreResult<bool>;

    // Sessions.
    /// Opens a session only while its user is enabled and still at
    /// `password_version` (the password the login checked). Answers whether
    /// it did.
    async fn create_session(
        &self,
        session: &SessionRecord,
        password_version: u64,
    ) -> StoreResult<bool>;
    async fn session(&self, id: &SessionId) -> StoreResult<Option<SessionRecord>>;
    async fn session_with_user(&self, id: &SessionId) -> StoreResult<Option<SessionWithUser>>;
    /// The refresh compare-and-swap: moves a session from generation `from`
    /// to `from + 1`, stamping `rotated_at` and `last_used_at` with `now`,
    /// and appends `audit` in the same transaction when it wins. It wins
    /// only while the session is live: not revoked (disabling a user
    /// revokes their sessions), not past `absolute_expires_at` at `now`,
    /// and used after `idle_before`; so the swap alone decides a refresh
    /// that goes well, without a read before it.
    async fn advance_generation(
        &self,
        id: &SessionId,
        from: u64,
        now: OffsetDateTime,
        idle_before: OffsetDateTime,
        audit: &AuditRecord,
    ) -> StoreResult<Advance>;
    /// Revokes live sessions; answers how many were live. Every way a
    /// session is revoked (here, a password change, a disabled user, a
    /// removed client) records one [`RevocationRecord`] per session it
    /// revoked, in the same transaction; so does a key purged by
    /// [`Store::retire_key`].
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
        user_id: Option<&UserId>,
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

    /// Deletes keys by kid (those no live token can need any more).
    async fn delete_keys(&self, kids: &[String]) -> StoreResult<u64>;

    // Server secrets.
    /// The refresh-token MAC secret for when no master key is set: 32
    /// random bytes, made on first use and kept where this engine keeps
    /// secrets; every call, on every node, answers the same.
    async fn refresh_secret(&self) -> StoreResult<Vec<u8>>;

    // Login rate limit.
    /// Counts an attempt before its password is checked, atomically: under
    /// `max_attempts` in the window it is counted and allowed; at the limit
    /// it is refused and not counted. A window that started at or before
    /// `window_start_after` restarts at `now`.
    async fn reserve_login_attempt(&self, limit: LoginLimit<'_>) -> StoreResult<LoginAttempt>;
    /// A success: the key's count starts again.
    async fn clear_login_failures(&self, key: &str) -> StoreResult<()>;

    // OAuth clients.
    /// Fails with `Conflict` when the id is taken.
    async fn insert_client(&self, client: &ClientRecord) -> StoreResult<()>;
    async fn client(&self, id: &str) -> StoreResult<Option<ClientRecord>>;
    /// Ordered by id.
    async fn list_clients(&self) -> StoreResult<Vec<ClientRecord>>;
    /// Removes a client and, in the same transaction, revokes every live
    /// session it opened (at `now`, reason `client_removed`). Answers
    /// whether there was such a client.
    async fn remove_client(&self, id: &str, now: OffsetDateTime) -> StoreResult<bool>;

    // Email addresses and the tokens mailed to them (API.md §11).
    /// The user whose *verified* address has this key.
    async fn user_by_verified_email(&self, email_key: &str) -> StoreResult<Option<UserRecord>>;
    /// Sets (or replaces) a user's address and spends every live mailed
    /// token of theirs, in one transaction. `Conflict` when the address is
    /// verified and another user's verified address has its key.
    async fn set_user_email(
        &self,
        user_id: &UserId,
        email: &EmailRecord,
        now: OffsetDateTime,
    ) -> StoreResult<()>;
    /// Makes a token and queues its mail, in one transaction, unless the
    /// user already had `limit.max` tokens of this purpose made since
    /// `limit.since` (then nothing is written; answers false). The user's
    /// older live tokens of the purpose are spent (superseded).
    async fn issue_mail_token(
        &self,
        token: &MailTokenRecord,
        mail: &OutboxMail,
        limit: MailLimit,
    ) -> StoreResult<bool>;
    async fn mail_token(&self, hash: &[u8]) -> StoreResult<Option<MailTokenRecord>>;
    /// The password reset: spends the token when it is a live reset token
    /// (unspent, not expired at `now`, made at the user's current
    /// `password_version`), sets the password (moving the version on, which
    /// kills every other reset token) and revokes every session of the user
    /// (reason `password_reset`, on the revocation feed), in one
    /// transaction. Answers the user, or `None` for a token that is not live.
    async fn reset_password_with_token(
        &self,
        hash: &[u8],
        password_hash: &str,
        now: OffsetDateTime,
    ) -> StoreResult<Option<UserId>>;
    /// Spends a live verification token of `user_id` and marks the address
    /// it was mailed to verified, if it is still the user's. Answers
    /// whether it did; `Conflict` when another user has that address
    /// verified (then nothing changes).
    async fn verify_email_with_token(
        &self,
        hash: &[u8],
        user_id: &UserId,
        now: OffsetDateTime,
    ) -> StoreResult<bool>;

    // Second factors (API.md §10).
    async fn totp(&self, user_id: &UserId) -> StoreResult<Option<TotpRecord>>;
    /// Starts (or restarts) an enrolment: stores `totp` unconfirmed,
    /// replacing an unconfirmed one. Answers false, changing nothing, when
    /// the user's TOTP is on (confirmed).
    async fn begin_totp(&self, totp: &TotpRecord) -> StoreResult<bool>;
    /// Turns TOTP on: confirms the user's unconfirmed TOTP while its secret
    /// is still `secret` (a restarted enrolment replaced it otherwise),
    /// records `step` as used, and replaces the user's recovery codes with
    /// `recovery_codes` (hashes), in one transaction. Answers whether it did.
    async fn confirm_totp(
        &self,
        user_id: &UserId,
        secret: &[u8],
        step: u64,
        recovery_codes: &[Vec<u8>],
        now: OffsetDateTime,
    ) -> StoreResult<bool>;
    /// The replay guard: records `step` as the latest used by the user's
    /// confirmed TOTP, only when it is later than the last one. Answers
    /// whether it did: of two nodes presented the same code, one wins.
    async fn use_totp_step(&self, user_id: &UserId, step: u64) -> StoreResult<bool>;
    /// Turns TOTP off: deletes it (confirmed or not), the recovery codes and
    /// the logins waiting for a second factor, in one transaction. Answers
    /// whether there was a TOTP.
    async fn remove_totp(&self, user_id: &UserId) -> StoreResult<bool>;
    /// The hashes of the user's unused recovery codes.
    async fn recovery_codes(&self, user_id: &UserId) -> StoreResult<Vec<Vec<u8>>>;
    /// Spends one: answers whether it was there (of two uses, one wins).
    async fn spend_recovery_code(&self, user_id: &UserId, hash: &[u8]) -> StoreResult<bool>;
    /// Deletes every passkey of the user; answers how many.
    async fn remove_passkeys(&self, user_id: &UserId) -> StoreResult<u64>;
    async fn insert_mfa_login(&self, login: &MfaLoginRecord) -> StoreResult<()>;
    /// Counts one more code tried with a waiting login, before the code is
    /// checked: only while it is unexpired at `now` and under `max_codes`
    /// tries, so that however many race, at most `max_codes` codes are
    /// checked. Answers the login as counted, or `None` (unknown, expired,
    /// spent or out of tries).
    async fn reserve_mfa_attempt(
        &self,
        hash: &[u8],
        now: OffsetDateTime,
        max_codes: u32,
    ) -> StoreResult<Option<MfaLoginRecord>>;
    /// Spends a waiting login (its second factor was right): answers
    /// whether it was there (of two, one wins).
    async fn spend_mfa_login(&self, hash: &[u8]) -> StoreResult<bool>;
    /// Deletes up to `batch` waiting logins that expired at or before `before`.
    async fn prune_mfa_logins(&self, before: OffsetDateTime, batch: u32) -> StoreResult<u64>;

    // The mail outbox.
    async fn enqueue_mail(&self, mail: &OutboxMail) -> StoreResult<()>;
    /// Leases the mails due: never sent, not given up, `next_attempt_at`
    /// reached, and not leased to another sender; on PostgreSQL several
    /// nodes claiming at once each get different mails.
    async fn claim_mail(&self, claim: MailClaim) -> StoreResult<Vec<OutboxMail>>;
    /// Sent: the bodies (which may hold a live token) are wiped.
    async fn mail_sent(&self, id: &str, now: OffsetDateTime) -> StoreResult<()>;
    /// An attempt failed: retried from `retry_at` unless that is past the
    /// mail's `deliver_by` (or `None`), then given up and its bodies wiped.
    async fn mail_failed(
        &self,
        id: &str,
        now: OffsetDateTime,
        retry_at: Option<OffsetDateTime>,
        error: &str,
    ) -> StoreResult<()>;
    /// Deletes up to `batch` mails sent or given up at or before `before`,
    /// and up to `batch` mailed tokens made at or before `before`.
    async fn prune_mail(&self, before: OffsetDateTime, batch: u32) -> StoreResult<u64>;

    // Pruning, in batches so that no call holds the database for long.
    /// Looks at the next `batch` sessions by id after `after` and deletes
    /// the dead among them.
    async fn prune_sessions(
        &self,
        dead: DeadSessions,
        after: Option<&str>,
        batch: u32,
    ) -> StoreResult<SessionsPruned>;
    /// Deletes up to `batch` login-limit windows that started at or before `before`.
    async fn prune_login_failures(&self, before: OffsetDateTime, batch: u32) -> StoreResult<u64>;
    /// Deletes up to `batch` of the oldest audit rows at or before `before`.
    async fn prune_audit(&self, before: OffsetDateTime, batch: u32) -> StoreResult<u64>;

    // The revocation feed.
    /// Up to `limit` revocations numbered after `after` and made at or after
    /// `since`, in order.
    async fn revocations_after(
        &self,
        after: u64,
        since: OffsetDateTime,
        limit: u32,
    ) -> StoreResult<Vec<RevocationRecord>>;
    /// The number of the latest revocation ever recorded (0: none yet).
    async fn last_revocation(&self) -> StoreResult<u64>;
    /// Deletes up to `batch` of the oldest revocations made at or before `before`.
    async fn prune_revocations(&self, before: OffsetDateTime, batch: u32) -> StoreResult<u64>;
    /// Resolves when another process may just have recorded revocations
    /// (an engine that can tell, e.g. by a notification), or after `within`
    /// (the others: the caller then looks anyway).
    async fn await_revocations(&self, within: std::time::Duration) {
        tokio::time::sleep(within).await;
    }

    // Audit log.
    async fn append_audit(&self, record: &AuditRecord) -> StoreResult<()>;
    /// The latest `limit` rows, newest first.
    async fn recent_audit(&self, limit: u32) -> StoreResult<Vec<AuditRecord>>;

    // Passkeys and their WebAuthn challenges (API.md §10).
    /// Adds a passkey; `Conflict` when its `credential_id` is registered
    /// already, to this user or another.
    async fn insert_passkey(&self, passkey: &PasskeyRecord) -> StoreResult<()>;
    /// A user's passkeys, oldest first.
    async fn passkeys_of(&self, user_id: &UserId) -> StoreResult<Vec<PasskeyRecord>>;
    /// The passkey of an authenticator's credential id, whoever's it is.
    async fn passkey_by_credential_id(
        &self,
        credential_id: &str,
    ) -> StoreResult<Option<PasskeyRecord>>;
    /// Deletes one passkey of the user's; answers whether there was one of
    /// that id that was theirs.
    async fn delete_passkey(&self, user_id: &UserId, id: &PasskeyId) -> StoreResult<bool>;
    /// A login with the passkey `id`: stores `credential` and `sign_count`
    /// and stamps `last_used_at`, only while the stored count is below
    /// `sign_count`, or both are 0 (an authenticator that keeps no count);
    /// so of two logins that present the same count, on any nodes, one
    /// passes. Answers whether it did (false too for a passkey gone).
    async fn record_passkey_use(
        &self,
        id: &PasskeyId,
        sign_count: u32,
        credential: &str,
        now: OffsetDateTime,
    ) -> StoreResult<bool>;
    /// Adds a challenge; `Conflict` when one of that id is there (of any
    /// purpose), so that of several nodes adding one id at once one does.
    async fn insert_webauthn_challenge(
        &self,
        challenge: &WebauthnChallengeRecord,
    ) -> StoreResult<()>;
    /// Spends a challenge: deletes and answers it when it is of `purpose`
    /// and `expires_at` is after `now`, in one statement, so that it is
    /// answered once on all nodes together; else `None`, and nothing changes.
    async fn take_webauthn_challenge(
        &self,
        id: &str,
        purpose: ChallengePurpose,
        now: OffsetDateTime,
    ) -> StoreResult<Option<WebauthnChallengeRecord>>;
    /// Deletes up to `batch` challenges that expired at or before `before`.
    async fn prune_webauthn_challenges(
        &self,
        before: OffsetDateTime,
        batch: u32,
    ) -> StoreResult<u64>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_shows_no_secret() {
        let at = OffsetDateTime::UNIX_EPOCH;
        let user = UserRecord {
            id: "u".into(),
            username: "alice".into(),
            username_key: "alice".into(),
            password_hash: "$argon2id$secret-hash".into(),
            password_version: 0,
            created_at: at,
            disabled_at: None,
            email: None,
            second_factors: SecondFactors::default(),
        };
        let session = SessionRecord {
            id: "s".into(),
            user_id: "u".into(),
            client_id: "web".into(),
            scope: String::new(),
            salt: vec![0xab; 16],
            generation: 0,
            rotated_at: None,
            created_at: at,
            last_used_at: at,
            absolute_expires_at: at,
            revoked_at: None,
            revoked_reason: None,
            user_agent: None,
            ip: "192.0.2.1".into(),
            amr: vec!["pwd".into()],
            auth_time: at,
        };
        let key = KeyRecord {
            kid: "k".into(),
            alg: "EdDSA".into(),
            private_key: vec![0xcd; 8],
            encrypted: false,
            public_jwk: "{}".into(),
            created_at: at,
            activates_at: at,
            retired_at: None,
            purged_at: None,
        };
        let shown = format!("{user:?} {session:?} {key:?}");
        assert!(!shown.contains("secret-hash"), "{shown}");
        assert!(!shown.contains("171, 171"), "{shown}");
        assert!(!shown.contains("205, 205"), "{shown}");
        assert_eq!(shown.matches(REDACTED).count(), 3);
    }
}
