//! Rows of the second-factor tables (migration 0007): TOTP and logins
//! waiting for a second factor (whether TOTP is on and the passkey count
//! are read with the user, `user_cols!`).

use latchkey_core::mfa::{MfaLoginRecord, TotpRecord};
use latchkey_core::UserId;

use crate::{Columns, Cursor};

/// The columns [`totp_of`] reads, from `totp`.
#[macro_export]
macro_rules! totp_cols {
    () => {
        "user_id, secret, encrypted, created_at, confirmed_at, last_step"
    };
}

/// The columns [`mfa_login_of`] reads, from `mfa_logins`.
#[macro_export]
macro_rules! mfa_login_cols {
    () => {
        "hash, user_id, client_id, scope, password_version, created_at, expires_at, failures"
    };
}

pub fn totp_of<S, C: Columns<S>>(row: &C) -> Result<TotpRecord, C::Error> {
    let mut col = Cursor::at(row, 0);
    Ok(TotpRecord {
        user_id: UserId::from(col.text()?),
        secret: col.bytes()?,
        encrypted: col.flag()?,
        created_at: col.time()?,
        confirmed_at: col.opt_time()?,
        last_step: {
            let at = col.take();
            match row.opt_int(at)? {
                None => None,
                Some(step) => Some(u64::try_from(step).map_err(|_| {
                    row.corrupt(at, "last_step", format!("negative last_step {step}"))
                })?),
            }
        },
    })
}

pub fn mfa_login_of<S, C: Columns<S>>(row: &C) -> Result<MfaLoginRecord, C::Error> {
    let mut col = Cursor::at(row, 0);
    Ok(MfaLoginRecord {
        hash: col.bytes()?,
        user_id: UserId::from(col.text()?),
        client_id: col.text()?,
        scope: col.text()?,
        password_version: col.counter("password_version")?,
        created_at: col.time()?,
        expires_at: col.time()?,
        failures: {
            let n = col.counter("failures")?;
            u32::try_from(n).unwrap_or(u32::MAX)
        },
    })
}
