//! Rows of the passkey tables (migrations 0007 and 0008): users' passkeys
//! and the WebAuthn challenges of ceremonies under way.

use latchkey_core::store::{ChallengePurpose, PasskeyRecord, WebauthnChallengeRecord};
use latchkey_core::{PasskeyId, UserId};

use crate::{Columns, Cursor};

/// The columns [`passkey_of`] reads, from `passkeys`.
#[macro_export]
macro_rules! passkey_cols {
    () => {
        "id, user_id, name, credential_id, credential, sign_count, created_at, last_used_at"
    };
}

/// The columns [`webauthn_challenge_of`] reads, from `webauthn_challenges`.
#[macro_export]
macro_rules! webauthn_challenge_cols {
    () => {
        "id, purpose, state, created_at, expires_at"
    };
}

pub fn passkey_of<S, C: Columns<S>>(row: &C) -> Result<PasskeyRecord, C::Error> {
    let mut col = Cursor::at(row, 0);
    let (id, user_id, name, credential_id, credential) = (
        col.text()?,
        col.text()?,
        col.text()?,
        col.text()?,
        col.text()?,
    );
    let at = col.next;
    let sign_count = col.counter("sign_count")?;
    let sign_count = u32::try_from(sign_count)
        .map_err(|_| row.corrupt(at, "sign_count", format!("{sign_count} is over 32 bits")))?;
    Ok(PasskeyRecord {
        id: PasskeyId::from(id),
        user_id: UserId::from(user_id),
        name,
        credential_id,
        credential,
        sign_count,
        created_at: col.time()?,
        last_used_at: col.opt_time()?,
    })
}

pub fn webauthn_challenge_of<S, C: Columns<S>>(
    row: &C,
) -> Result<WebauthnChallengeRecord, C::Error> {
    let mut col = Cursor::at(row, 0);
    let id = col.text()?;
    let at = col.take();
    let purpose = row.text(at)?;
    let purpose = ChallengePurpose::from_column(&purpose)
        .ok_or_else(|| row.corrupt(at, "purpose", format!("unknown purpose {purpose}")))?;
    Ok(WebauthnChallengeRecord {
        id,
        purpose,
        state: col.text()?,
        created_at: col.time()?,
        expires_at: col.time()?,
    })
}
