//! latchkey's [`Store`] on an embedded SQLite database (WAL mode).
//!
//! Writes go to one writer thread that owns the only writing connection and
//! commits whatever has queued up in one transaction (group commit), each
//! operation inside its own savepoint, answering only after the commit.
//! Reads run on pooled read connections in the calling task: they are
//! indexed point reads served from the page cache, cheaper than a hand-off
//! to another thread, and in WAL mode they never wait for the writer.
//!
//! # Layout
//!
//! - `connection.rs`: settings, the file and its mode, the writer thread,
//!   the read pool, `write`/`read`/`scan`, migrations, and what engine
//!   errors mean (`store_error`);
//! - `row.rs`: rusqlite's reads behind the row mapping shared with the
//!   PostgreSQL store (`latchkey-store-sql`);
//! - one file per domain, with its statements: `users.rs`, `sessions.rs`,
//!   `login_limit.rs`, `keys.rs` (with the server secrets), `clients.rs`,
//!   `audit.rs`, `recovery.rs` (addresses and mailed tokens), `mail.rs`
//!   (the outbox), `mfa.rs` (second factors), `passkeys.rs` (WebAuthn
//!   credentials and challenges); each prune lives with its table's domain.

mod audit;
mod clients;
mod connection;
mod keys;
mod login_limit;
mod mail;
mod mfa;
mod passkeys;
mod recovery;
mod revocations;
mod row;
mod secrets;
mod sessions;
mod users;

use async_trait::async_trait;
use latchkey_core::audit::AuditRecord;
use latchkey_core::keys::KeyRecord;
use latchkey_core::mail::{EmailRecord, MailTokenRecord, OutboxMail};
use latchkey_core::mfa::{MfaLoginRecord, TotpRecord};
use latchkey_core::store::{
    Advance, ChallengePurpose, ClientRecord, DeadSessions, LoginAttempt, LoginLimit, MailClaim,
    MailLimit, PasskeyRecord, RevocationRecord, RevokeScope, SessionRecord, SessionWithUser,
    SessionsPruned, Store, StoreResult, UserRecord, WebauthnChallengeRecord,
};
use latchkey_core::{PasskeyId, SessionId, UserId};
use time::OffsetDateTime;

pub use connection::{database_path, Durability, SqliteSettings, SqliteStore};

#[async_trait]
impl Store for SqliteStore {
    async fn migrate(&self) -> StoreResult<()> {
        connection::migrate(self).await
    }

    async fn ping(&self) -> StoreResult<()> {
        connection::ping(self).await
    }

    async fn create_user(&self, user: &UserRecord) -> StoreResult<()> {
        users::create(self, user).await
    }

    async fn user_by_key(&self, username_key: &str) -> StoreResult<Option<UserRecord>> {
        users::by_key(self, username_key).await
    }

    async fn user_by_id(&self, id: &UserId) -> StoreResult<Option<UserRecord>> {
        users::by_id(self, id.as_str()).await
    }

    async fn list_users(&self) -> StoreResult<Vec<UserRecord>> {
        users::list(self).await
    }

    async fn set_password_hash(
        &self,
        user_id: &UserId,
        hash: &str,
        revoke: RevokeScope<'_>,
        now: OffsetDateTime,
        reason: &str,
    ) -> StoreResult<()> {
        users::set_password_hash(self, user_id.as_str(), hash, revoke, now, reason).await
    }

    async fn rehash_password(
        &self,
        user_id: &UserId,
        version: u64,
        hash: &str,
    ) -> StoreResult<bool> {
        users::rehash_password(self, user_id.as_str(), version, hash).await
    }

    async fn set_user_disabled(
        &self,
        user_id: &UserId,
        disabled_at: Option<OffsetDateTime>,
    ) -> StoreResult<bool> {
        users::set_disabled(self, user_id.as_str(), disabled_at).await
    }

    async fn create_session(
        &self,
        session: &SessionRecord,
        password_version: u64,
    ) -> StoreResult<bool> {
        sessions::create(self, session, password_version).await
    }

    async fn session(&self, id: &SessionId) -> StoreResult<Option<SessionRecord>> {
        sessions::get(self, id.as_str()).await
    }

    async fn session_with_user(&self, id: &SessionId) -> StoreResult<Option<SessionWithUser>> {
        sessions::with_user(self, id.as_str()).await
    }

    async fn advance_generation(
        &self,
        id: &SessionId,
        from: u64,
        now: OffsetDateTime,
        idle_before: OffsetDateTime,
        audit: &AuditRecord,
    ) -> StoreResult<Advance> {
        sessions::advance_generation(self, id.as_str(), from, now, idle_before, audit).await
    }

    async fn revoke_sessions(
        &self,
        scope: RevokeScope<'_>,
        now: OffsetDateTime,
        reason: &str,
    ) -> StoreResult<u64> {
        sessions::revoke(self, scope, now, reason).await
    }

    async fn live_sessions(
        &self,
        user_id: Option<&UserId>,
        now: OffsetDateTime,
        idle_since: OffsetDateTime,
    ) -> StoreResult<Vec<SessionRecord>> {
        sessions::live(self, user_id.map(UserId::as_str), now, idle_since).await
    }

    async fn count_live_sessions(
        &self,
        now: OffsetDateTime,
        idle_since: OffsetDateTime,
    ) -> StoreResult<u64> {
        sessions::count_live(self, now, idle_since).await
    }

    async fn insert_key(&self, key: &KeyRecord) -> StoreResult<()> {
        keys::insert(self, key).await
    }

    async fn list_keys(&self) -> StoreResult<Vec<KeyRecord>> {
        keys::list(self).await
    }

    async fn retire_key(
        &self,
        kid: &str,
        now: OffsetDateTime,
        purge: bool,
        promote: Option<&str>,
    ) -> StoreResult<()> {
        keys::retire(self, kid, now, purge, promote).await
    }

    async fn delete_keys(&self, kids: &[String]) -> StoreResult<u64> {
        keys::delete(self, kids).await
    }

    async fn refresh_secret(&self) -> StoreResult<Vec<u8>> {
        secrets::refresh_secret(self).await
    }

    async fn reserve_login_attempt(&self, limit: LoginLimit<'_>) -> StoreResult<LoginAttempt> {
        login_limit::reserve(self, limit).await
    }

    async fn clear_login_failures(&self, key: &str) -> StoreResult<()> {
        login_limit::clear(self, key).await
    }

    async fn insert_client(&self, client: &ClientRecord) -> StoreResult<()> {
        clients::insert(self, client).await
    }

    async fn client(&self, id: &str) -> StoreResult<Option<ClientRecord>> {
        clients::get(self, id).await
    }

    async fn list_clients(&self) -> StoreResult<Vec<ClientRecord>> {
        clients::list(self).await
    }

    async fn remove_client(&self, id: &str, now: OffsetDateTime) -> StoreResult<bool> {
        clients::remove(self, id, now).await
    }

    async fn user_by_verified_email(&self, email_key: &str) -> StoreResult<Option<UserRecord>> {
        recovery::user_by_verified_email(self, email_key).await
    }

    async fn set_user_email(
        &self,
        user_id: &UserId,
        email: &EmailRecord,
        now: OffsetDateTime,
    ) -> StoreResult<()> {
        recovery::set_email(self, user_id, email, now).await
    }

    async fn issue_mail_token(
        &self,
        token: &MailTokenRecord,
        mail: &OutboxMail,
        limit: MailLimit,
    ) -> StoreResult<bool> {
        recovery::issue_token(self, token, mail, limit).await
    }

    async fn mail_token(&self, hash: &[u8]) -> StoreResult<Option<MailTokenRecord>> {
        recovery::token(self, hash).await
    }

    async fn reset_password_with_token(
        &self,
        hash: &[u8],
        password_hash: &str,
        now: OffsetDateTime,
    ) -> StoreResult<Option<UserId>> {
        recovery::reset_password(self, hash, password_hash, now).await
    }

    async fn verify_email_with_token(
        &self,
        hash: &[u8],
        user_id: &UserId,
        now: OffsetDateTime,
    ) -> StoreResult<bool> {
        recovery::verify_email(self, hash, user_id, now).await
    }

    async fn totp(&self, user_id: &UserId) -> StoreResult<Option<TotpRecord>> {
        mfa::totp(self, user_id).await
    }

    async fn begin_totp(&self, totp: &TotpRecord) -> StoreResult<bool> {
        mfa::begin_totp(self, totp).await
    }

    async fn confirm_totp(
        &self,
        user_id: &UserId,
        secret: &[u8],
        step: u64,
        recovery_codes: &[Vec<u8>],
        now: OffsetDateTime,
    ) -> StoreResult<bool> {
        mfa::confirm_totp(self, user_id, secret, step, recovery_codes, now).await
    }

    async fn use_totp_step(&self, user_id: &UserId, step: u64) -> StoreResult<bool> {
        mfa::use_totp_step(self, user_id, step).await
    }

    async fn remove_totp(&self, user_id: &UserId) -> StoreResult<bool> {
        mfa::remove_totp(self, user_id).await
    }

    async fn recovery_codes(&self, user_id: &UserId) -> StoreResult<Vec<Vec<u8>>> {
        mfa::recovery_codes(self, user_id).await
    }

    async fn spend_recovery_code(&self, user_id: &UserId, hash: &[u8]) -> StoreResult<bool> {
        mfa::spend_recovery_code(self, user_id, hash).await
    }

    async fn remove_passkeys(&self, user_id: &UserId) -> StoreResult<u64> {
        mfa::remove_passkeys(self, user_id).await
    }

    async fn insert_mfa_login(&self, login: &MfaLoginRecord) -> StoreResult<()> {
        mfa::insert_mfa_login(self, login).await
    }

    async fn reserve_mfa_attempt(
        &self,
        hash: &[u8],
        now: OffsetDateTime,
        max_codes: u32,
    ) -> StoreResult<Option<MfaLoginRecord>> {
        mfa::reserve_mfa_attempt(self, hash, now, max_codes).await
    }

    async fn spend_mfa_login(&self, hash: &[u8]) -> StoreResult<bool> {
        mfa::spend_mfa_login(self, hash).await
    }

    async fn prune_mfa_logins(&self, before: OffsetDateTime, batch: u32) -> StoreResult<u64> {
        self.delete_batch(mfa::PRUNE_LOGINS, before, batch).await
    }

    async fn enqueue_mail(&self, mail: &OutboxMail) -> StoreResult<()> {
        mail::enqueue(self, mail).await
    }

    async fn claim_mail(&self, claim: MailClaim) -> StoreResult<Vec<OutboxMail>> {
        mail::claim(self, claim).await
    }

    async fn mail_sent(&self, id: &str, now: OffsetDateTime) -> StoreResult<()> {
        mail::sent(self, id, now).await
    }

    async fn mail_failed(
        &self,
        id: &str,
        now: OffsetDateTime,
        retry_at: Option<OffsetDateTime>,
        error: &str,
    ) -> StoreResult<()> {
        mail::failed(self, id, now, retry_at, error).await
    }

    async fn prune_mail(&self, before: OffsetDateTime, batch: u32) -> StoreResult<u64> {
        mail::prune(self, before, batch).await
    }

    async fn prune_sessions(
        &self,
        dead: DeadSessions,
        after: Option<&str>,
        batch: u32,
    ) -> StoreResult<SessionsPruned> {
        sessions::prune(self, dead, after, batch).await
    }

    async fn prune_login_failures(&self, before: OffsetDateTime, batch: u32) -> StoreResult<u64> {
        self.delete_batch(login_limit::PRUNE, before, batch).await
    }

    async fn prune_audit(&self, before: OffsetDateTime, batch: u32) -> StoreResult<u64> {
        self.delete_batch(audit::PRUNE, before, batch).await
    }

    async fn append_audit(&self, record: &AuditRecord) -> StoreResult<()> {
        audit::append(self, record).await
    }

    async fn recent_audit(&self, limit: u32) -> StoreResult<Vec<AuditRecord>> {
        audit::recent(self, limit).await
    }

    async fn revocations_after(
        &self,
        after: u64,
        since: OffsetDateTime,
        limit: u32,
    ) -> StoreResult<Vec<RevocationRecord>> {
        revocations::after(self, after, since, limit).await
    }

    async fn last_revocation(&self) -> StoreResult<u64> {
        revocations::last(self).await
    }

    async fn prune_revocations(&self, before: OffsetDateTime, batch: u32) -> StoreResult<u64> {
        self.delete_batch(revocations::PRUNE, before, batch).await
    }

    async fn insert_passkey(&self, passkey: &PasskeyRecord) -> StoreResult<()> {
        passkeys::insert(self, passkey).await
    }

    async fn passkeys_of(&self, user_id: &UserId) -> StoreResult<Vec<PasskeyRecord>> {
        passkeys::of_user(self, user_id).await
    }

    async fn passkey_by_credential_id(
        &self,
        credential_id: &str,
    ) -> StoreResult<Option<PasskeyRecord>> {
        passkeys::by_credential_id(self, credential_id).await
    }

    async fn delete_passkey(&self, user_id: &UserId, id: &PasskeyId) -> StoreResult<bool> {
        passkeys::delete(self, user_id, id).await
    }

    async fn record_passkey_use(
        &self,
        id: &PasskeyId,
        sign_count: u32,
        credential: &str,
        now: OffsetDateTime,
    ) -> StoreResult<bool> {
        passkeys::record_use(self, id, sign_count, credential, now).await
    }

    async fn insert_webauthn_challenge(
        &self,
        challenge: &WebauthnChallengeRecord,
    ) -> StoreResult<()> {
        passkeys::insert_challenge(self, challenge).await
    }

    async fn take_webauthn_challenge(
        &self,
        id: &str,
        purpose: ChallengePurpose,
        now: OffsetDateTime,
    ) -> StoreResult<Option<WebauthnChallengeRecord>> {
        passkeys::take_challenge(self, id, purpose, now).await
    }

    async fn prune_webauthn_challenges(
        &self,
        before: OffsetDateTime,
        batch: u32,
    ) -> StoreResult<u64> {
        self.delete_batch(passkeys::PRUNE_CHALLENGES, before, batch)
            .await
    }
}
