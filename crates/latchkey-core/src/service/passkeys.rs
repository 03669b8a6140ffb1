//! Passkeys (API.md §10): adding one to a logged-in account, listing and
//! removing them, and logging in with one, with or without a username.
//! The ceremonies' checks are [`crate::webauthn`]'s; this file keeps their
//! state between the two halves (a registration's in the store, a login's
//! sealed in its `challenge_id`) and decides who logs in.

use aws_lc_rs::digest;
use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;
use webauthn_rs_core::error::WebauthnError;
use webauthn_rs_core::proto::AuthenticationState;

use super::{Authenticated, Issued, RequestContext, Service};
use crate::amr;
use crate::audit::{AuditEvent, AuditRecord};
use crate::clock::{from_unix_millis, unix_millis};
use crate::crypto::{random_bytes, B64};
use crate::error::ServiceError;
use crate::ids::{PasskeyId, UserId};
use crate::policy::WEB_CLIENT_ID;
use crate::store::{
    ChallengePurpose, PasskeyRecord, StoreError, UserRecord, WebauthnChallengeRecord,
};
use crate::validate::{PasskeyName, Username};
use crate::webauthn::{self, Allowed, Ceremony, LoginOf, CEREMONY_TTL};

/// Random bytes of a registration's `challenge_id`.
const CHALLENGE_ID_BYTES: usize = 32;
/// Their base64url length: a longer one is no challenge of ours.
const CHALLENGE_ID_CHARS: usize = 43;
/// The key of sealed logins is for this alone.
pub(super) const LOGIN_SEAL_PURPOSE: &str = "passkey login";
/// Bound to each sealed login as AAD: what the text is.
const LOGIN_SEAL_LABEL: &str = "passkey login ceremony v1";
/// A sealed login's `challenge_id` is a few hundred characters; a much
/// longer one is no challenge of ours, and is not decoded.
const SEALED_LOGIN_MAX_CHARS: usize = 4096;
/// Bytes of a decoy credential id (a common length of real ones).
const DECOY_ID_BYTES: usize = 32;
/// The name of a passkey registered without one.
const DEFAULT_NAME: &str = "Passkey";

/// A passkey as its owner sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasskeyView {
    pub id: PasskeyId,
    pub name: String,
    pub created_at: OffsetDateTime,
    pub last_used_at: Option<OffsetDateTime>,
}

impl From<&PasskeyRecord> for PasskeyView {
    fn from(p: &PasskeyRecord) -> Self {
        Self {
            id: p.id.clone(),
            name: p.name.clone(),
            created_at: p.created_at,
            last_used_at: p.last_used_at,
        }
    }
}

/// The first half of a ceremony: the options for the browser's
/// `navigator.credentials`, and the id that finishes it.
#[derive(Debug, Clone)]
pub struct CeremonyStart {
    /// `PublicKeyCredentialCreationOptions` or `...RequestOptions`, binary
    /// members base64url (as `toJSON()` writes them).
    pub options: Value,
    pub challenge_id: String,
}

fn stale_challenge() -> ServiceError {
    ServiceError::invalid_request("the challenge is unknown, used or expired: start again")
}

/// A login ceremony as its `challenge_id` carries it: anyone may start a
/// login, as often as they like, so its start leaves nothing in the store.
#[derive(Serialize, Deserialize)]
struct SealedLogin<C> {
    /// Unix milliseconds.
    expires_at: i64,
    ceremony: C,
}

/// Why a passkey login was refused: the audit row's facts. The caller
/// learns only `invalid_credentials`.
struct Refused {
    user: Option<UserId>,
    event: AuditEvent,
    why: String,
}

/// A passkey login that did not go through: refused (audited), or an
/// error of the store or the service.
enum LoginFailure {
    Refused(Refused),
    Failed(ServiceError),
}

impl From<ServiceError> for LoginFailure {
    fn from(e: ServiceError) -> Self {
        Self::Failed(e)
    }
}

impl From<StoreError> for LoginFailure {
    fn from(e: StoreError) -> Self {
        Self::Failed(e.into())
    }
}

fn refused(user: Option<&UserId>, why: impl Into<String>) -> LoginFailure {
    LoginFailure::Refused(Refused {
        user: user.cloned(),
        event: AuditEvent::LoginFailed,
        why: why.into(),
    })
}

impl Service {
    /// `POST /v1/me/passkeys/register/start`: options for a new passkey of
    /// the caller's, which none of their authenticators with a passkey
    /// already may make.
    pub async fn start_passkey_registration(
        &self,
        auth: &Authenticated,
    ) -> Result<CeremonyStart, ServiceError> {
        let user = &auth.user;
        let existing = self.store.passkeys_of(&user.id).await?;
        let exclude: Vec<&str> = existing.iter().map(|p| p.credential_id.as_str()).collect();
        let (options, state) =
            self.relying_party
                .start_registration(&user.id, &user.username, &exclude)?;
        let ceremony = Ceremony::Registration {
            user_id: user.id.to_string(),
            state,
        };
        self.keep_registration(&ceremony, options).await
    }

    /// `POST /v1/me/passkeys/register/finish`: the authenticator's answer
    /// to a registration the caller started becomes a passkey of theirs.
    pub async fn finish_passkey_registration(
        &self,
        auth: &Authenticated,
        challenge_id: &str,
        credential: Value,
        name: Option<&str>,
        ctx: &RequestContext,
    ) -> Result<PasskeyView, ServiceError> {
        // The input first: a typo must not spend the challenge.
        let name = PasskeyName::parse(name.unwrap_or(DEFAULT_NAME))?;
        let answer = webauthn::registration_answer(credential)?;
        let Ceremony::Registration { user_id, state } =
            self.spend_registration(challenge_id).await?
        else {
            return Err(stale_challenge());
        };
        // Another user's challenge is as good as none.
        if user_id != auth.user.id.as_str() {
            return Err(stale_challenge());
        }
        let credential = self
            .relying_party
            .finish_registration(&answer, &state)
            .map_err(|e| {
                ServiceError::invalid_request(format!("the passkey does not verify: {e}"))
            })?;
        let now = self.now();
        let passkey = PasskeyRecord {
            id: PasskeyId::random(),
            user_id: auth.user.id.clone(),
            name: name.as_str().to_owned(),
            credential_id: webauthn::credential_key(credential.cred_id.as_ref()),
            credential: webauthn::credential_json(&credential)?,
            sign_count: credential.counter,
            created_at: now,
            last_used_at: None,
        };
        match self.store.insert_passkey(&passkey).await {
            Err(StoreError::Conflict(_)) => {
                return Err(ServiceError::Conflict(
                    "this passkey is registered already".into(),
                ))
            }
            other => other?,
        }
        self.audit(
            AuditRecord::new(AuditEvent::PasskeyAdded, now)
                .user(&auth.user.id)
                .session(&auth.session.id)
                .ip(&ctx.ip)
                .detail(format!("passkey {}", passkey.id)),
        )
        .await;
        Ok(PasskeyView::from(&passkey))
    }

    /// `GET /v1/me/passkeys`: the caller's, oldest first.
    pub async fn passkeys(&self, auth: &Authenticated) -> Result<Vec<PasskeyView>, ServiceError> {
        let passkeys = self.store.passkeys_of(&auth.user.id).await?;
        Ok(passkeys.iter().map(PasskeyView::from).collect())
    }

    /// `DELETE /v1/me/passkeys/{id}`: one of the caller's, else not found.
    pub async fn remove_passkey(
        &self,
        auth: &Authenticated,
        id: &PasskeyId,
        ctx: &RequestContext,
    ) -> Result<(), ServiceError> {
        if !id.is_well_formed() || !self.store.delete_passkey(&auth.user.id, id).await? {
            return Err(ServiceError::NotFound("no such passkey".into()));
        }
        self.audit(
            AuditRecord::new(AuditEvent::PasskeyRemoved, self.now())
                .user(&auth.user.id)
                .session(&auth.session.id)
                .ip(&ctx.ip)
                .detail(format!("passkey {id}")),
        )
        .await;
        Ok(())
    }

    /// `POST /v1/auth/passkey/start`: options for a login with a passkey of
    /// `username`'s, or without one with any discoverable passkey. A
    /// username of nobody with a passkey (unknown, disabled, or without
    /// one) gets options of the same shape that no authenticator answers.
    pub async fn start_passkey_login(
        &self,
        username: Option<&str>,
    ) -> Result<CeremonyStart, ServiceError> {
        let (of, allowed) = match username {
            None => (LoginOf::Anyone, Allowed::Discoverable),
            Some(name) => {
                let name = Username::parse(name)?;
                let user = self
                    .store
                    .user_by_key(name.key())
                    .await?
                    .filter(|u| u.disabled_at.is_none());
                // Looked up for nobody too, so that both take one more read.
                let owner = user.as_ref().map_or_else(UserId::random, |u| u.id.clone());
                let passkeys = self.store.passkeys_of(&owner).await?;
                match user {
                    Some(user) if !passkeys.is_empty() => {
                        let credentials = passkeys
                            .iter()
                            .map(|p| webauthn::stored_credential(&p.credential, p.sign_count))
                            .collect::<Result<Vec<_>, _>>()?;
                        (
                            LoginOf::User(user.id.to_string()),
                            Allowed::Credentials(credentials),
                        )
                    }
                    _ => (LoginOf::Nobody, Allowed::Decoys(vec![self.decoy_id(&name)])),
                }
            }
        };
        let (options, state) = self.relying_party.start_login(allowed)?;
        let sealed = SealedLogin {
            expires_at: unix_millis(self.now() + CEREMONY_TTL),
            ceremony: &Ceremony::Login { of, state },
        };
        let plain = serde_json::to_vec(&sealed)
            .map_err(|e| ServiceError::Internal(format!("a WebAuthn state: {e}")))?;
        Ok(CeremonyStart {
            options,
            challenge_id: B64.encode(self.login_seal.seal(LOGIN_SEAL_LABEL, &plain)?),
        })
    }

    /// `POST /v1/auth/passkey/finish`: a checked answer to a login started
    /// by `start_passkey_login` opens a session of the `web` client, as a
    /// password login does, with `amr` `["hwk", "user"]`. Each attempt
    /// counts toward the login limit of the client's address (a success
    /// clears it); a refusal is audited and answers `invalid_credentials`.
    pub async fn finish_passkey_login(
        &self,
        challenge_id: &str,
        credential: Value,
        ctx: &RequestContext,
    ) -> Result<Issued, ServiceError> {
        let answer = webauthn::login_answer(credential)?;
        let now = self.now();
        let rate_key = Self::passkey_rate_key(ctx);
        self.reserve_attempt(&rate_key, now, ctx).await?;
        let (of, state) = self.spend_sealed_login(challenge_id).await?;
        let user = match self.check_passkey_login(&answer, of, state, now).await {
            Ok(user) => user,
            Err(LoginFailure::Failed(e)) => return Err(e),
            Err(LoginFailure::Refused(refused)) => {
                let mut row = AuditRecord::new(refused.event, now)
                    .ip(&ctx.ip)
                    .detail(format!("passkey: {}", refused.why));
                if let Some(user) = &refused.user {
                    row = row.user(user);
                }
                self.audit(row).await;
                return Err(ServiceError::InvalidCredentials);
            }
        };
        self.store.clear_login_failures(&rate_key).await?;
        let scope = self.policy.default_scope.clone();
        self.open_session(
            user,
            WEB_CLIENT_ID,
            scope,
            amr::of(&[amr::HWK, amr::USER]),
            ctx,
        )
        .await
    }

    /// Whose passkey signed `answer`, if it checks out; its counter and
    /// backup state are stored as the login's.
    async fn check_passkey_login(
        &self,
        answer: &webauthn_rs_core::proto::PublicKeyCredential,
        of: LoginOf,
        state: AuthenticationState,
        now: OffsetDateTime,
    ) -> Result<UserRecord, LoginFailure> {
        let key = webauthn::credential_key(answer.get_credential_id());
        let Some(passkey) = self.store.passkey_by_credential_id(&key).await? else {
            return Err(refused(None, "unknown credential"));
        };
        let owner = Some(&passkey.user_id);
        // The user handle, when the authenticator gives one, must be the
        // owner's; without a username it is what names the user.
        let handle = webauthn::user_handle(&passkey.user_id)?;
        let handle_matches = answer
            .get_user_unique_id()
            .map(|presented| presented == handle.as_slice());
        let expected = match &of {
            LoginOf::Anyone => handle_matches == Some(true),
            LoginOf::User(id) => *id == passkey.user_id.as_str() && handle_matches != Some(false),
            LoginOf::Nobody => false,
        };
        if !expected {
            return Err(refused(owner, "not a credential of the user logging in"));
        }
        let user = match self.store.user_by_id(&passkey.user_id).await? {
            Some(user) if user.disabled_at.is_none() => user,
            _ => return Err(refused(owner, "the user is disabled")),
        };
        let stored = webauthn::stored_credential(&passkey.credential, passkey.sign_count)?;
        let result = match self
            .relying_party
            .finish_login(answer, state, stored.clone())
        {
            Ok(result) => result,
            Err(WebauthnError::CredentialPossibleCompromise) => {
                return Err(counter_refused(owner, passkey.sign_count))
            }
            Err(e) => return Err(refused(owner, e.to_string())),
        };
        let used = webauthn::after_login(stored, &result);
        let text = webauthn::credential_json(&used)?;
        // The compare-and-swap of the counter: a login that raced with
        // this one and presented the same count (a clone) loses here.
        if !self
            .store
            .record_passkey_use(&passkey.id, used.counter, &text, now)
            .await?
        {
            return Err(counter_refused(owner, passkey.sign_count));
        }
        Ok(user)
    }

    /// Opens a sealed login and spends it: at most once, on any node,
    /// within [`CEREMONY_TTL`]. The store keeps the digest of each spent
    /// one until it would have expired; only a finish, which the login
    /// limit counts, adds one.
    async fn spend_sealed_login(
        &self,
        challenge_id: &str,
    ) -> Result<(LoginOf, AuthenticationState), ServiceError> {
        if challenge_id.len() > SEALED_LOGIN_MAX_CHARS {
            return Err(stale_challenge());
        }
        let sealed = B64.decode(challenge_id).map_err(|_| stale_challenge())?;
        let plain = self
            .login_seal
            .open(LOGIN_SEAL_LABEL, &sealed)
            .ok_or_else(stale_challenge)?;
        // Ours, so it parses; unless another version sealed it.
        let SealedLogin {
            expires_at,
            ceremony,
        } = serde_json::from_slice::<SealedLogin<Ceremony>>(&plain)
            .map_err(|_| stale_challenge())?;
        let expires_at = from_unix_millis(expires_at);
        let now = self.now();
        let Ceremony::Login { of, state } = ceremony else {
            return Err(stale_challenge());
        };
        if now >= expires_at {
            return Err(stale_challenge());
        }
        let spent = WebauthnChallengeRecord {
            id: B64.encode(digest::digest(&digest::SHA256, &sealed)),
            purpose: ChallengePurpose::SpentLogin,
            state: String::new(),
            created_at: now,
            expires_at,
        };
        match self.store.insert_webauthn_challenge(&spent).await {
            Ok(()) => Ok((of, state)),
            Err(StoreError::Conflict(_)) => Err(stale_challenge()),
            Err(e) => Err(e.into()),
        }
    }

    /// Keeps a registration's state for [`CEREMONY_TTL`] under a new
    /// random id (a login's travels sealed instead).
    async fn keep_registration(
        &self,
        ceremony: &Ceremony,
        options: Value,
    ) -> Result<CeremonyStart, ServiceError> {
        let now = self.now();
        let challenge_id = B64.encode(random_bytes::<CHALLENGE_ID_BYTES>()?);
        self.store
            .insert_webauthn_challenge(&WebauthnChallengeRecord {
                id: challenge_id.clone(),
                purpose: ChallengePurpose::Registration,
                state: ceremony.to_json()?,
                created_at: now,
                expires_at: now + CEREMONY_TTL,
            })
            .await?;
        Ok(CeremonyStart {
            options,
            challenge_id,
        })
    }

    /// Spends the registration challenge `id` and answers its ceremony: at
    /// most once, on any node, within [`CEREMONY_TTL`].
    async fn spend_registration(&self, id: &str) -> Result<Ceremony, ServiceError> {
        let base64url = |b: u8| b.is_ascii_alphanumeric() || b == b'-' || b == b'_';
        if id.len() != CHALLENGE_ID_CHARS || !id.bytes().all(base64url) {
            return Err(stale_challenge());
        }
        let record = self
            .store
            .take_webauthn_challenge(id, ChallengePurpose::Registration, self.now())
            .await?
            .ok_or_else(stale_challenge)?;
        Ceremony::from_json(&record.state)
    }

    /// The login limit's key for passkey logins: the client's address
    /// alone (a login without a username names no one), under a key no
    /// username can make (they hold no control character).
    fn passkey_rate_key(ctx: &RequestContext) -> String {
        format!("\u{1f}passkey\u{1f}{}", Self::address_key(ctx))
    }

    /// The credential id a username of nobody with a passkey is shown:
    /// the same on every node and every time, and not one an outsider can
    /// compute to tell it from a real one.
    fn decoy_id(&self, name: &Username) -> Vec<u8> {
        let tag = self
            .refresh_secret
            .sign(&[b"passkey decoy", name.key().as_bytes()]);
        tag.as_ref().iter().copied().take(DECOY_ID_BYTES).collect()
    }
}

fn counter_refused(owner: Option<&UserId>, stored: u32) -> LoginFailure {
    LoginFailure::Refused(Refused {
        user: owner.cloned(),
        event: AuditEvent::PasskeyCounterRejected,
        why: format!("the signature counter did not move past {stored}: a cloned authenticator?"),
    })
}
