//! Second factors (API.md §10): TOTP enrolment and removal, recovery codes,
//! and the second step of a login whose user has TOTP on.

use std::time::Duration;

use time::OffsetDateTime;

use super::{Authenticated, ClientAuth, Issued, RequestContext, Service};
use crate::amr;
use crate::audit::{AuditEvent, AuditRecord};
use crate::crypto::Sealed;
use crate::error::ServiceError;
use crate::ids::UserId;
use crate::mail::{new_token, token_hash, TOKEN_MAX_CHARS};
use crate::mfa::{
    self, MfaLoginRecord, SecondFactors, TotpRecord, TotpSecret, CODE_MAX_CHARS, RECOVERY_CODES,
};
use crate::policy::WEB_CLIENT_ID;
use crate::store::UserRecord;
use crate::validate::{LoginPassword, Username};

/// A login waits this long for its second factor.
pub const MFA_TOKEN_TTL: Duration = Duration::from_secs(5 * 60);
/// Codes one `mfa_token` may try; the last wrong one kills it.
pub const MFA_MAX_CODES: u32 = 5;
/// What the second step takes, as `POST /v1/auth/mfa` names them.
pub const MFA_METHODS: [&str; 2] = ["totp", "recovery_code"];

/// `POST /v1/me/totp`'s answer: the secret to type in, or to scan.
#[derive(Debug, Clone)]
pub struct TotpEnrolment {
    /// Base32, no padding.
    pub secret: String,
    pub otpauth_uri: String,
}

/// A right password whose user has a second factor to give.
#[derive(Debug, Clone)]
pub struct MfaChallenge {
    pub mfa_token: String,
    pub methods: Vec<String>,
}

/// What a password login ends with.
#[derive(Debug, Clone)]
pub enum LoginOutcome {
    Session(Box<Issued>),
    MfaRequired(MfaChallenge),
}

/// The second factor a login's second step presents.
#[derive(Debug, Clone, Copy)]
pub enum SecondFactor<'a> {
    Totp(&'a str),
    RecoveryCode(&'a str),
}

/// `latchkey user mfa`: what a user has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MfaSummary {
    pub totp: bool,
    /// An enrolment started and not confirmed.
    pub totp_pending: bool,
    pub recovery_codes: usize,
    pub passkeys: u64,
}

fn bounded_code(code: &str) -> Result<&str, ServiceError> {
    if code.is_empty() || code.chars().count() > CODE_MAX_CHARS {
        return Err(ServiceError::invalid_request(format!(
            "a code must be 1 to {CODE_MAX_CHARS} characters"
        )));
    }
    Ok(code)
}

fn unix_secs(t: OffsetDateTime) -> u64 {
    u64::try_from(t.unix_timestamp()).unwrap_or(0)
}

impl Service {
    /// The secret of a stored TOTP, opened with the master key when sealed.
    fn totp_secret(&self, totp: &TotpRecord) -> Result<TotpSecret, ServiceError> {
        if !totp.encrypted {
            return Ok(TotpSecret::from_bytes(totp.secret.clone()));
        }
        let master = self.master_key.as_ref().ok_or_else(|| {
            ServiceError::Internal("a TOTP secret is encrypted but no master_key is set".into())
        })?;
        let label = mfa::seal_label(totp.user_id.as_str());
        let plain = master.open_for(Sealed::TotpSecret, &label, &totp.secret)?;
        Ok(TotpSecret::from_bytes(plain.to_vec()))
    }

    /// `POST /v1/me/totp`: a new secret, waiting for its first code; starting
    /// again before that replaces it. Refused while TOTP is on.
    pub async fn start_totp(&self, auth: &Authenticated) -> Result<TotpEnrolment, ServiceError> {
        auth.require_account_access()?;
        let secret = TotpSecret::random()?;
        let label = mfa::seal_label(auth.user.id.as_str());
        let (stored, encrypted) = match &self.master_key {
            Some(master) => (
                master.seal_for(Sealed::TotpSecret, &label, secret.expose())?,
                true,
            ),
            None => (secret.expose().to_vec(), false),
        };
        let record = TotpRecord {
            user_id: auth.user.id.clone(),
            secret: stored,
            encrypted,
            created_at: self.now(),
            confirmed_at: None,
            last_step: None,
        };
        if !self.store.begin_totp(&record).await? {
            return Err(ServiceError::TotpAlreadyEnabled);
        }
        let issuer = mfa::issuer_name(&self.policy.issuer);
        Ok(TotpEnrolment {
            secret: secret.base32(),
            otpauth_uri: secret.otpauth_uri(&issuer, &auth.user.username),
        })
    }

    /// `POST /v1/me/totp/confirm`: the first code turns TOTP on and makes
    /// the recovery codes, shown this once.
    pub async fn confirm_totp(
        &self,
        auth: &Authenticated,
        code: &str,
        ctx: &RequestContext,
    ) -> Result<Vec<String>, ServiceError> {
        auth.require_account_access()?;
        let code = bounded_code(code)?;
        let totp = match self.store.totp(&auth.user.id).await? {
            None => {
                return Err(ServiceError::invalid_request(
                    "no TOTP enrolment is waiting: start one with POST /v1/me/totp",
                ))
            }
            Some(t) if t.confirmed_at.is_some() => return Err(ServiceError::TotpAlreadyEnabled),
            Some(t) => t,
        };
        let now = self.now();
        let step = self
            .totp_secret(&totp)?
            .step_of(code, unix_secs(now))
            .ok_or(ServiceError::WrongCode)?;
        let codes = (0..RECOVERY_CODES)
            .map(|_| mfa::new_recovery_code())
            .collect::<Result<Vec<_>, _>>()?;
        let hashes: Vec<Vec<u8>> = codes.iter().map(|c| mfa::recovery_code_hash(c)).collect();
        // The secret as it was read: a restarted enrolment meanwhile wins.
        if !self
            .store
            .confirm_totp(&auth.user.id, &totp.secret, step, &hashes, now)
            .await?
        {
            return Err(ServiceError::Conflict(
                "the enrolment changed meanwhile: start again".into(),
            ));
        }
        self.audit(
            AuditRecord::new(AuditEvent::TotpEnabled, now)
                .user(&auth.user.id)
                .session(&auth.session.id)
                .ip(&ctx.ip),
        )
        .await;
        Ok(codes)
    }

    /// `DELETE /v1/me/totp`: with the current password (an attempt of the
    /// login limit), turns TOTP off and deletes the recovery codes.
    pub async fn disable_totp(
        &self,
        auth: &Authenticated,
        current_password: &str,
        ctx: &RequestContext,
    ) -> Result<(), ServiceError> {
        auth.require_account_access()?;
        let current = LoginPassword::parse(current_password)?;
        let (user, hashing) = self
            .confirm_current_password(auth, &current, ctx, Some("turning TOTP off"))
            .await?;
        drop(hashing);
        if !self.store.remove_totp(&user.id).await? {
            return Err(ServiceError::NotFound("TOTP is not on".into()));
        }
        self.audit(
            AuditRecord::new(AuditEvent::TotpDisabled, self.now())
                .user(&user.id)
                .session(&auth.session.id)
                .ip(&ctx.ip),
        )
        .await;
        Ok(())
    }

    /// The first step of a login whose password was right and whose user
    /// has TOTP on: a token for the second step, good for 5 minutes.
    pub(super) async fn mfa_challenge(
        &self,
        user: &UserRecord,
        client_id: &str,
        scope: String,
        ctx: &RequestContext,
    ) -> Result<MfaChallenge, ServiceError> {
        let (token, hash) = new_token()?;
        let now = self.now();
        let login = MfaLoginRecord {
            hash,
            user_id: user.id.clone(),
            client_id: client_id.to_owned(),
            scope,
            password_version: user.password_version,
            created_at: now,
            expires_at: now + MFA_TOKEN_TTL,
            failures: 0,
        };
        self.store.insert_mfa_login(&login).await?;
        self.audit(
            AuditRecord::new(AuditEvent::LoginSecondFactorRequired, now)
                .user(&user.id)
                .ip(&ctx.ip),
        )
        .await;
        Ok(MfaChallenge {
            mfa_token: token,
            methods: MFA_METHODS.iter().map(|m| (*m).to_owned()).collect(),
        })
    }

    /// `POST /v1/auth/mfa`: the second step of a `/v1` login.
    pub async fn login_second_step(
        &self,
        mfa_token: &str,
        factor: SecondFactor<'_>,
        ctx: &RequestContext,
    ) -> Result<Issued, ServiceError> {
        self.second_step(mfa_token, factor, WEB_CLIENT_ID, ctx)
            .await
    }

    /// The grant `urn:latchkey:params:oauth:grant-type:mfa`: the second
    /// step of a password grant, by the client that made it.
    pub async fn mfa_grant(
        &self,
        client: &ClientAuth,
        mfa_token: &str,
        factor: SecondFactor<'_>,
        ctx: &RequestContext,
    ) -> Result<Issued, ServiceError> {
        self.second_step(mfa_token, factor, &client.id, ctx).await
    }

    /// Checks a second factor against a waiting login and opens its
    /// session. Every code tried counts twice before it is checked: as one
    /// of the token's 5 and as an attempt of the login limit (the user's
    /// name and this address, as the password's).
    async fn second_step(
        &self,
        mfa_token: &str,
        factor: SecondFactor<'_>,
        client_id: &str,
        ctx: &RequestContext,
    ) -> Result<Issued, ServiceError> {
        if mfa_token.is_empty() || mfa_token.chars().count() > TOKEN_MAX_CHARS {
            return Err(ServiceError::invalid_request(
                "mfa_token must be 1 to 128 characters",
            ));
        }
        let (SecondFactor::Totp(code) | SecondFactor::RecoveryCode(code)) = factor;
        bounded_code(code)?;
        let hash = token_hash(mfa_token);
        let now = self.now();
        let login = self
            .store
            .reserve_mfa_attempt(&hash, now, MFA_MAX_CODES)
            .await?
            .ok_or(ServiceError::InvalidMfaToken)?;
        if login.client_id != client_id {
            return Err(ServiceError::InvalidMfaToken);
        }
        let user = self
            .store
            .user_by_id(&login.user_id)
            .await?
            .filter(|u| u.disabled_at.is_none() && u.password_version == login.password_version)
            .ok_or(ServiceError::InvalidMfaToken)?;
        let rate_key = Self::rate_key(&Username::parse(&user.username)?, ctx);
        self.reserve_attempt(&rate_key, now, ctx).await?;
        // A recovery code is found now and spent once the token is: its
        // hash, and how many the user will have left.
        let (amr, recovery) = match factor {
            SecondFactor::Totp(code) => {
                self.check_totp(&user.id, code, now, ctx).await?;
                (amr::of(&[amr::PWD, amr::OTP]), None)
            }
            SecondFactor::RecoveryCode(code) => {
                let code_hash = mfa::recovery_code_hash(code);
                let stored = self.store.recovery_codes(&user.id).await?;
                if mfa::find_hash(&stored, &code_hash).is_none() {
                    return Err(self.wrong_second_factor(&user.id, now, ctx).await);
                }
                let left = stored.len() - 1;
                (amr::of(&[amr::PWD, amr::MFA]), Some((code_hash, left)))
            }
        };
        // Of two right answers with one token, one opens a session.
        if !self.store.spend_mfa_login(&hash).await? {
            return Err(ServiceError::InvalidMfaToken);
        }
        if let Some((code_hash, left)) = recovery {
            if !self.store.spend_recovery_code(&user.id, &code_hash).await? {
                return Err(self.wrong_second_factor(&user.id, now, ctx).await);
            }
            self.audit(
                AuditRecord::new(AuditEvent::RecoveryCodeUsed, now)
                    .user(&user.id)
                    .ip(&ctx.ip)
                    .detail(format!("{left} left")),
            )
            .await;
        }
        self.store.clear_login_failures(&rate_key).await?;
        self.open_session(user, &login.client_id, login.scope, amr, ctx)
            .await
    }

    /// A TOTP code of the user's, of a step never used before (the store
    /// decides, so that two nodes cannot both accept one code).
    async fn check_totp(
        &self,
        user_id: &UserId,
        code: &str,
        now: OffsetDateTime,
        ctx: &RequestContext,
    ) -> Result<(), ServiceError> {
        let totp = self
            .store
            .totp(user_id)
            .await?
            .filter(|t| t.confirmed_at.is_some());
        let step = match &totp {
            Some(totp) => self.totp_secret(totp)?.step_of(code, unix_secs(now)),
            None => None,
        };
        match step {
            Some(step) if self.store.use_totp_step(user_id, step).await? => Ok(()),
            _ => Err(self.wrong_second_factor(user_id, now, ctx).await),
        }
    }

    async fn wrong_second_factor(
        &self,
        user_id: &UserId,
        now: OffsetDateTime,
        ctx: &RequestContext,
    ) -> ServiceError {
        self.audit(
            AuditRecord::new(AuditEvent::LoginFailed, now)
                .user(user_id)
                .ip(&ctx.ip)
                .detail("wrong second factor"),
        )
        .await;
        ServiceError::InvalidCredentials
    }

    /// `latchkey user mfa`: what second factors a user has.
    pub async fn mfa_summary(&self, username: &str) -> Result<MfaSummary, ServiceError> {
        let user = self.user_record(username).await?;
        self.summary_of(&user).await
    }

    async fn summary_of(&self, user: &UserRecord) -> Result<MfaSummary, ServiceError> {
        let totp = self.store.totp(&user.id).await?;
        let SecondFactors { totp: on, passkeys } = user.second_factors;
        Ok(MfaSummary {
            totp: on,
            totp_pending: totp.is_some_and(|t| t.confirmed_at.is_none()),
            recovery_codes: self.store.recovery_codes(&user.id).await?.len(),
            passkeys,
        })
    }

    /// `latchkey user mfa-reset`: removes TOTP, recovery codes and passkeys
    /// (a user who lost them all); answers what there was.
    pub async fn reset_mfa(&self, username: &str) -> Result<MfaSummary, ServiceError> {
        let user = self.user_record(username).await?;
        let had = self.summary_of(&user).await?;
        self.store.remove_totp(&user.id).await?;
        let passkeys = self.store.remove_passkeys(&user.id).await?;
        self.audit(
            AuditRecord::new(AuditEvent::MfaReset, self.now())
                .user(&user.id)
                .detail(format!(
                    "by an operator: TOTP {}, {} recovery codes, {passkeys} passkeys",
                    if had.totp { "on" } else { "off" },
                    had.recovery_codes
                )),
        )
        .await;
        Ok(MfaSummary { passkeys, ..had })
    }
}
