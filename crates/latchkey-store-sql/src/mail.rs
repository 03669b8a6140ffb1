//! Rows of the mail tables (migration 0006): mailed tokens and the outbox
//! (users' addresses are read with the user, `user_cols!`).

use latchkey_core::mail::{MailTokenRecord, OutboxMail, TokenPurpose};
use latchkey_core::UserId;

use crate::{Columns, Cursor};

/// The columns [`mail_token_of`] reads, from `mail_tokens`.
#[macro_export]
macro_rules! mail_token_cols {
    () => {
        "hash, user_id, purpose, email, password_version, created_at, expires_at, spent_at"
    };
}

/// The columns [`outbox_of`] reads, from `mail_outbox`.
#[macro_export]
macro_rules! outbox_cols {
    () => {
        "id, recipient, subject, text_body, html_body, created_at, attempts"
    };
}

pub fn mail_token_of<S, C: Columns<S>>(row: &C) -> Result<MailTokenRecord, C::Error> {
    let mut col = Cursor::at(row, 0);
    let hash = col.bytes()?;
    let user_id = UserId::from(col.text()?);
    let at = col.take();
    let purpose = row.text(at)?;
    let purpose = TokenPurpose::from_column(&purpose)
        .ok_or_else(|| row.corrupt(at, "purpose", format!("unknown purpose {purpose}")))?;
    Ok(MailTokenRecord {
        hash,
        user_id,
        purpose,
        email: col.text()?,
        password_version: col.counter("password_version")?,
        created_at: col.time()?,
        expires_at: col.time()?,
        spent_at: col.opt_time()?,
    })
}

pub fn outbox_of<S, C: Columns<S>>(row: &C) -> Result<OutboxMail, C::Error> {
    let mut col = Cursor::at(row, 0);
    Ok(OutboxMail {
        id: col.text()?,
        recipient: col.text()?,
        subject: col.text()?,
        text_body: col.text()?,
        html_body: col.text()?,
        created_at: col.time()?,
        attempts: {
            let n = col.counter("attempts")?;
            u32::try_from(n).unwrap_or(u32::MAX)
        },
    })
}
