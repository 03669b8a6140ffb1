//! What latchkey's two SQL stores (`latchkey-store-sqlite` and
//! `latchkey-store-postgres`) share, written once: how a row of their schema
//! reads into the records of [`latchkey_core::store`], how instants are kept,
//! and what the login limit's upsert answers.
//!
//! The two schemas name their columns alike and keep values alike (instants
//! as `BIGINT`/`INTEGER` milliseconds since the Unix epoch, counters as
//! signed 64-bit integers), so reading a row is the same logic on both
//! engines; only the call that fetches one typed column differs. That call is
//! [`Columns`], which each store implements for its engine's row type. The
//! SQL itself, connections, transactions and the mapping of engine errors to
//! [`StoreError`](latchkey_core::store::StoreError) stay in each store: the
//! dialects and the engines' guarantees differ, and this crate knows no
//! engine.

use latchkey_core::audit::AuditRecord;
use latchkey_core::clock::{from_unix_millis, unix_millis};
use latchkey_core::keys::KeyRecord;
use latchkey_core::mail::EmailRecord;
use latchkey_core::mfa::SecondFactors;
use latchkey_core::store::{
    ClientRecord, LoginAttempt, RevocationRecord, Revoked, SessionRecord, SessionWithUser,
    UserRecord,
};
use latchkey_core::{SessionId, UserId};
use time::OffsetDateTime;

mod mail;
mod mfa;
mod passkeys;

pub use mail::{mail_token_of, outbox_of};
pub use mfa::{mfa_login_of, totp_of};
pub use passkeys::{passkey_of, webauthn_challenge_of};

/// An instant as the stores keep it: milliseconds since the Unix epoch.
pub fn ms(t: OffsetDateTime) -> i64 {
    unix_millis(t)
}

/// [`ms`] of an optional instant (`NULL` for `None`).
pub fn opt_ms(t: Option<OffsetDateTime>) -> Option<i64> {
    t.map(unix_millis)
}

/// The typed reads of one row's columns, by position, that the mappings
/// below need. Positions, not names: a name is looked up by comparing it
/// with every column's, on every read of the hot path; the mappings read
/// the columns of their lists (the macros below) in order instead.
///
/// `S` is the store that reads the row: naming a type of its own crate lets
/// each store implement this for its engine's row type (`impl
/// Columns<SqliteStore> for rusqlite::Row<'_>`), which the orphan rule
/// forbids for a trait without one. With one implementation per row type,
/// callers never name `S`.
pub trait Columns<S> {
    /// The engine's error, which its store maps to a `StoreError`.
    type Error;

    fn text(&self, at: usize) -> Result<String, Self::Error>;
    fn opt_text(&self, at: usize) -> Result<Option<String>, Self::Error>;
    fn bytes(&self, at: usize) -> Result<Vec<u8>, Self::Error>;
    fn opt_bytes(&self, at: usize) -> Result<Option<Vec<u8>>, Self::Error>;
    fn int(&self, at: usize) -> Result<i64, Self::Error>;
    fn opt_int(&self, at: usize) -> Result<Option<i64>, Self::Error>;
    fn flag(&self, at: usize) -> Result<bool, Self::Error>;
    /// The error for the value at `at` (the column `name`), read but not
    /// one the record can hold; its store must map it to
    /// `StoreError::Corrupt`.
    fn corrupt(&self, at: usize, name: &str, message: String) -> Self::Error;
}

/// Reads a row's columns one after the other, from a first position: the
/// mappings say each column's name only for the messages of a corrupt one.
struct Cursor<'r, S, C: Columns<S>> {
    row: &'r C,
    next: usize,
    _store: std::marker::PhantomData<S>,
}

impl<'r, S, C: Columns<S>> Cursor<'r, S, C> {
    fn at(row: &'r C, first: usize) -> Self {
        Self {
            row,
            next: first,
            _store: std::marker::PhantomData,
        }
    }

    fn take(&mut self) -> usize {
        self.next += 1;
        self.next - 1
    }

    fn text(&mut self) -> Result<String, C::Error> {
        let at = self.take();
        self.row.text(at)
    }

    fn opt_text(&mut self) -> Result<Option<String>, C::Error> {
        let at = self.take();
        self.row.opt_text(at)
    }

    fn bytes(&mut self) -> Result<Vec<u8>, C::Error> {
        let at = self.take();
        self.row.bytes(at)
    }

    fn opt_bytes(&mut self) -> Result<Option<Vec<u8>>, C::Error> {
        let at = self.take();
        self.row.opt_bytes(at)
    }

    fn flag(&mut self) -> Result<bool, C::Error> {
        let at = self.take();
        self.row.flag(at)
    }

    /// An instant kept by [`ms`].
    fn time(&mut self) -> Result<OffsetDateTime, C::Error> {
        let at = self.take();
        self.row.int(at).map(from_unix_millis)
    }

    /// An optional instant kept by [`opt_ms`].
    fn opt_time(&mut self) -> Result<Option<OffsetDateTime>, C::Error> {
        let at = self.take();
        self.row.opt_int(at).map(|v| v.map(from_unix_millis))
    }

    /// A counter (a generation, a password version): never negative.
    fn counter(&mut self, name: &str) -> Result<u64, C::Error> {
        let at = self.take();
        let value = self.row.int(at)?;
        u64::try_from(value).map_err(|_| {
            self.row
                .corrupt(at, name, format!("negative {name} {value}"))
        })
    }
}

// Column lists as macros, so that queries are `&'static str` built by
// `concat!`: no formatting on the hot path, and each statement is prepared
// once per connection.

/// The columns [`user_of`] reads, from `users u`. The user's `id` and
/// `created_at` are aliased so that one row can hold a session and its user
/// (see [`session_cols!`]). Whether TOTP is on and how many passkeys the
/// user has come with it (two index probes), so that a login and
/// `GET /v1/me` stay one read.
#[macro_export]
macro_rules! user_cols {
    () => {
        "u.id AS u_id, u.username, u.username_key, u.password_hash, u.password_version, \
         u.created_at AS u_created_at, u.disabled_at, u.email, u.email_key, u.email_verified_at, \
         EXISTS (SELECT 1 FROM totp t WHERE t.user_id = u.id AND t.confirmed_at IS NOT NULL) \
         AS totp_on, (SELECT COUNT(*) FROM passkeys p WHERE p.user_id = u.id) AS passkeys"
    };
}

/// The columns [`session_of`] reads, from `sessions s`.
#[macro_export]
macro_rules! session_cols {
    () => {
        "s.id, s.user_id, s.client_id, s.scope, s.salt, s.generation, s.rotated_at, \
         s.created_at, s.last_used_at, s.absolute_expires_at, s.revoked_at, s.revoked_reason, \
         s.user_agent, s.ip, s.amr, s.auth_time"
    };
}

/// The columns [`key_of`] reads, from `signing_keys`.
#[macro_export]
macro_rules! key_cols {
    () => {
        "kid, alg, private_key, encrypted, public_jwk, created_at, activates_at, retired_at, \
         purged_at"
    };
}

/// The columns [`audit_of`] reads, from `audit_log`.
#[macro_export]
macro_rules! audit_cols {
    () => {
        "at, event, user_id, session_id, ip, detail"
    };
}

/// The columns [`client_of`] reads, from `clients`.
#[macro_export]
macro_rules! client_cols {
    () => {
        "id, secret_hash, scope, created_at"
    };
}

/// How many columns [`session_cols!`] names: a joined row's user starts there.
pub const SESSION_COLUMNS: usize = 16;

/// A user, from the columns of [`user_cols!`].
pub fn user_of<S, C: Columns<S>>(row: &C) -> Result<UserRecord, C::Error> {
    user_at(row, 0)
}

fn user_at<S, C: Columns<S>>(row: &C, first: usize) -> Result<UserRecord, C::Error> {
    let mut col = Cursor::at(row, first);
    Ok(UserRecord {
        id: UserId::from(col.text()?),
        username: col.text()?,
        username_key: col.text()?,
        password_hash: col.text()?,
        password_version: col.counter("password_version")?,
        created_at: col.time()?,
        disabled_at: col.opt_time()?,
        email: {
            let (email, key, verified_at) = (col.opt_text()?, col.opt_text()?, col.opt_time()?);
            match (email, key) {
                (Some(email), Some(email_key)) => Some(EmailRecord {
                    email,
                    email_key,
                    verified_at,
                }),
                _ => None,
            }
        },
        second_factors: SecondFactors {
            totp: col.flag()?,
            passkeys: col.counter("passkeys")?,
        },
    })
}

/// A session, from the columns of [`session_cols!`] (or a whole `sessions`
/// row: the table's own order is the list's).
pub fn session_of<S, C: Columns<S>>(row: &C) -> Result<SessionRecord, C::Error> {
    let mut col = Cursor::at(row, 0);
    let (id, user_id, client_id, scope, salt) = (
        col.text()?,
        col.text()?,
        col.text()?,
        col.text()?,
        col.bytes()?,
    );
    let (generation, rotated_at, created_at) =
        (col.counter("generation")?, col.opt_time()?, col.time()?);
    Ok(SessionRecord {
        id: SessionId::from(id),
        user_id: UserId::from(user_id),
        client_id,
        scope,
        salt,
        generation,
        rotated_at,
        created_at,
        last_used_at: col.time()?,
        absolute_expires_at: col.time()?,
        revoked_at: col.opt_time()?,
        revoked_reason: col.opt_text()?,
        user_agent: col.opt_text()?,
        ip: col.text()?,
        amr: latchkey_core::amr::split(&col.text()?),
        // NULL: a session older than the column, opened by its login.
        auth_time: col.opt_time()?.unwrap_or(created_at),
    })
}

/// A session and its user, from one joined row of [`session_cols!`] and
/// [`user_cols!`].
pub fn session_with_user_of<S, C: Columns<S>>(row: &C) -> Result<SessionWithUser, C::Error> {
    Ok(SessionWithUser {
        session: session_of(row)?,
        user: user_at(row, SESSION_COLUMNS)?,
    })
}

/// A signing key, from the columns of [`key_cols!`].
pub fn key_of<S, C: Columns<S>>(row: &C) -> Result<KeyRecord, C::Error> {
    let mut col = Cursor::at(row, 0);
    Ok(KeyRecord {
        kid: col.text()?,
        alg: col.text()?,
        private_key: col.bytes()?,
        encrypted: col.flag()?,
        public_jwk: col.text()?,
        created_at: col.time()?,
        activates_at: col.time()?,
        retired_at: col.opt_time()?,
        purged_at: col.opt_time()?,
    })
}

/// An audit row, from the columns of [`audit_cols!`].
pub fn audit_of<S, C: Columns<S>>(row: &C) -> Result<AuditRecord, C::Error> {
    let mut col = Cursor::at(row, 0);
    Ok(AuditRecord {
        at: col.time()?,
        event: col.text()?,
        user_id: col.opt_text()?,
        session_id: col.opt_text()?,
        ip: col.opt_text()?,
        detail: col.opt_text()?,
    })
}

/// An OAuth client, from the columns of [`client_cols!`].
pub fn client_of<S, C: Columns<S>>(row: &C) -> Result<ClientRecord, C::Error> {
    let mut col = Cursor::at(row, 0);
    Ok(ClientRecord {
        id: col.text()?,
        secret_hash: col.opt_bytes()?,
        scope: col.text()?,
        created_at: col.time()?,
    })
}

#[macro_export]
macro_rules! revocation_cols {
    () => {
        "seq, kind, subject, at"
    };
}

/// A revocation row; `None` for a kind this build does not know (a newer
/// node's: its own subscribers get it).
pub fn revocation_of<S, C: Columns<S>>(row: &C) -> Result<Option<RevocationRecord>, C::Error> {
    let mut col = Cursor::at(row, 0);
    let seq = col.counter("seq")?;
    let kind = col.text()?;
    let subject = col.text()?;
    let at = col.time()?;
    Ok(Revoked::from_row(&kind, subject).map(|revoked| RevocationRecord { seq, revoked, at }))
}

/// What the login limit's upsert answered (`RETURNING window_started_at,
/// refusals`, in that order). The upsert counts an attempt under the limit and leaves
/// `refusals` at 0; at the limit it counts a refusal instead, so the first
/// refusal of a window answers 1.
pub fn login_attempt_of<S, C: Columns<S>>(row: &C) -> Result<LoginAttempt, C::Error> {
    let mut col = Cursor::at(row, 0);
    let window_started_at = col.time()?;
    let refusals = row.int(col.take())?;
    Ok(if refusals == 0 {
        LoginAttempt::Allowed
    } else {
        LoginAttempt::Refused {
            window_started_at,
            first: refusals == 1,
        }
    })
}

#[cfg(test)]
mod tests {

    use super::*;

    /// A row of values by position, as a test engine.
    #[derive(Default)]
    struct Row(Vec<Value>);

    #[derive(Clone)]
    enum Value {
        Null,
        Int(i64),
        Text(&'static str),
    }

    struct Test;

    impl Row {
        fn with(mut self, value: Value) -> Self {
            self.0.push(value);
            self
        }

        fn get(&self, at: usize) -> Result<Value, String> {
            self.0.get(at).cloned().ok_or(format!("no column {at}"))
        }
    }

    impl Columns<Test> for Row {
        type Error = String;

        fn text(&self, at: usize) -> Result<String, String> {
            self.opt_text(at)?.ok_or(format!("{at} is null"))
        }
        fn opt_text(&self, at: usize) -> Result<Option<String>, String> {
            match self.get(at)? {
                Value::Null => Ok(None),
                Value::Text(s) => Ok(Some(s.to_owned())),
                Value::Int(_) => Err(format!("{at} is not text")),
            }
        }
        fn bytes(&self, at: usize) -> Result<Vec<u8>, String> {
            self.text(at).map(String::into_bytes)
        }
        fn opt_bytes(&self, at: usize) -> Result<Option<Vec<u8>>, String> {
            self.opt_text(at).map(|v| v.map(String::into_bytes))
        }
        fn int(&self, at: usize) -> Result<i64, String> {
            self.opt_int(at)?.ok_or(format!("{at} is null"))
        }
        fn opt_int(&self, at: usize) -> Result<Option<i64>, String> {
            match self.get(at)? {
                Value::Null => Ok(None),
                Value::Int(n) => Ok(Some(n)),
                Value::Text(_) => Err(format!("{at} is not an integer")),
            }
        }
        fn flag(&self, at: usize) -> Result<bool, String> {
            self.int(at).map(|n| n != 0)
        }
        fn corrupt(&self, at: usize, name: &str, message: String) -> String {
            format!("corrupt {name} (column {at}): {message}")
        }
    }

    fn user(version: i64) -> Row {
        Row::default()
            .with(Value::Text("u1"))
            .with(Value::Text("Alice"))
            .with(Value::Text("alice"))
            .with(Value::Text("$argon2id$x"))
            .with(Value::Int(version))
            .with(Value::Int(1_800_000_000_250))
            .with(Value::Null)
            .with(Value::Null)
            .with(Value::Null)
            .with(Value::Null)
            .with(Value::Int(1))
            .with(Value::Int(2))
    }

    #[test]
    fn a_user_reads_from_its_aliased_columns() {
        assert_eq!(
            user_of(&user(3)),
            Ok(UserRecord {
                id: "u1".into(),
                username: "Alice".into(),
                username_key: "alice".into(),
                password_hash: "$argon2id$x".into(),
                password_version: 3,
                created_at: from_unix_millis(1_800_000_000_250),
                disabled_at: None,
                email: None,
                second_factors: SecondFactors {
                    totp: true,
                    passkeys: 2,
                },
            })
        );
    }

    #[test]
    fn a_negative_counter_is_corrupt() {
        assert_eq!(
            user_of(&user(-1)),
            Err("corrupt password_version (column 4): negative password_version -1".to_owned())
        );
    }

    #[test]
    fn instants_keep_whole_milliseconds() {
        let t = from_unix_millis(1_800_000_000_250);
        assert_eq!(ms(t), 1_800_000_000_250);
        assert_eq!(opt_ms(Some(t)), Some(1_800_000_000_250));
        assert_eq!(opt_ms(None), None);
    }

    fn answer(refusals: i64) -> Result<LoginAttempt, String> {
        login_attempt_of(
            &Row::default()
                .with(Value::Int(1_000))
                .with(Value::Int(refusals)),
        )
    }

    #[test]
    fn the_login_limit_answer() {
        assert_eq!(answer(0), Ok(LoginAttempt::Allowed));
        let window_started_at = from_unix_millis(1_000);
        assert_eq!(
            answer(1),
            Ok(LoginAttempt::Refused {
                window_started_at,
                first: true
            })
        );
        assert_eq!(
            answer(2),
            Ok(LoginAttempt::Refused {
                window_started_at,
                first: false
            })
        );
    }
}
