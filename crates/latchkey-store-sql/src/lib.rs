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
use latchkey_core::store::{
    ClientRecord, LoginAttempt, SessionRecord, SessionWithUser, UserRecord,
};
use latchkey_core::{SessionId, UserId};
use time::OffsetDateTime;

/// An instant as the stores keep it: milliseconds since the Unix epoch.
pub fn ms(t: OffsetDateTime) -> i64 {
    unix_millis(t)
}

/// [`ms`] of an optional instant (`NULL` for `None`).
pub fn opt_ms(t: Option<OffsetDateTime>) -> Option<i64> {
    t.map(unix_millis)
}

/// The typed reads of one row's columns, by name, that the mappings below
/// need.
///
/// `S` is the store that reads the row: naming a type of its own crate lets
/// each store implement this for its engine's row type (`impl
/// Columns<SqliteStore> for rusqlite::Row<'_>`), which the orphan rule
/// forbids for a trait without one. With one implementation per row type,
/// callers never name `S`.
pub trait Columns<S> {
    /// The engine's error, which its store maps to a `StoreError`.
    type Error;

    fn text(&self, col: &str) -> Result<String, Self::Error>;
    fn opt_text(&self, col: &str) -> Result<Option<String>, Self::Error>;
    fn bytes(&self, col: &str) -> Result<Vec<u8>, Self::Error>;
    fn opt_bytes(&self, col: &str) -> Result<Option<Vec<u8>>, Self::Error>;
    fn int(&self, col: &str) -> Result<i64, Self::Error>;
    fn opt_int(&self, col: &str) -> Result<Option<i64>, Self::Error>;
    fn flag(&self, col: &str) -> Result<bool, Self::Error>;
    /// The error for a value of `col` that was read but is not one the record
    /// can hold; its store must map it to `StoreError::Corrupt`.
    fn corrupt(&self, col: &str, message: String) -> Self::Error;

    /// An instant kept by [`ms`].
    fn time(&self, col: &str) -> Result<OffsetDateTime, Self::Error> {
        self.int(col).map(from_unix_millis)
    }

    /// An optional instant kept by [`opt_ms`].
    fn opt_time(&self, col: &str) -> Result<Option<OffsetDateTime>, Self::Error> {
        self.opt_int(col).map(|v| v.map(from_unix_millis))
    }

    /// A counter (a generation, a password version): never negative.
    fn counter(&self, col: &str) -> Result<u64, Self::Error> {
        let value = self.int(col)?;
        u64::try_from(value).map_err(|_| self.corrupt(col, format!("negative {col} {value}")))
    }
}

// Column lists as macros, so that queries are `&'static str` built by
// `concat!`: no formatting on the hot path, and each statement is prepared
// once per connection.

/// The columns [`user_of`] reads, from `users u`. The user's `id` and
/// `created_at` are aliased so that one row can hold a session and its user
/// (see [`session_cols!`]).
#[macro_export]
macro_rules! user_cols {
    () => {
        "u.id AS u_id, u.username, u.username_key, u.password_hash, u.password_version, \
         u.created_at AS u_created_at, u.disabled_at"
    };
}

/// The columns [`session_of`] reads, from `sessions s`.
#[macro_export]
macro_rules! session_cols {
    () => {
        "s.id, s.user_id, s.client_id, s.scope, s.salt, s.generation, s.rotated_at, \
         s.created_at, s.last_used_at, s.absolute_expires_at, s.revoked_at, s.revoked_reason, \
         s.user_agent, s.ip"
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

/// A user, from the columns of [`user_cols!`].
pub fn user_of<S, C: Columns<S>>(row: &C) -> Result<UserRecord, C::Error> {
    Ok(UserRecord {
        id: UserId::from(row.text("u_id")?),
        username: row.text("username")?,
        username_key: row.text("username_key")?,
        password_hash: row.text("password_hash")?,
        password_version: row.counter("password_version")?,
        created_at: row.time("u_created_at")?,
        disabled_at: row.opt_time("disabled_at")?,
    })
}

/// A session, from the columns of [`session_cols!`] (or a whole `sessions` row).
pub fn session_of<S, C: Columns<S>>(row: &C) -> Result<SessionRecord, C::Error> {
    Ok(SessionRecord {
        id: SessionId::from(row.text("id")?),
        user_id: UserId::from(row.text("user_id")?),
        client_id: row.text("client_id")?,
        scope: row.text("scope")?,
        salt: row.bytes("salt")?,
        generation: row.counter("generation")?,
        rotated_at: row.opt_time("rotated_at")?,
        created_at: row.time("created_at")?,
        last_used_at: row.time("last_used_at")?,
        absolute_expires_at: row.time("absolute_expires_at")?,
        revoked_at: row.opt_time("revoked_at")?,
        revoked_reason: row.opt_text("revoked_reason")?,
        user_agent: row.opt_text("user_agent")?,
        ip: row.text("ip")?,
    })
}

/// A session and its user, from one joined row of [`session_cols!`] and
/// [`user_cols!`].
pub fn session_with_user_of<S, C: Columns<S>>(row: &C) -> Result<SessionWithUser, C::Error> {
    Ok(SessionWithUser {
        session: session_of(row)?,
        user: user_of(row)?,
    })
}

/// A signing key, from the columns of [`key_cols!`] (or a whole `signing_keys` row).
pub fn key_of<S, C: Columns<S>>(row: &C) -> Result<KeyRecord, C::Error> {
    Ok(KeyRecord {
        kid: row.text("kid")?,
        alg: row.text("alg")?,
        private_key: row.bytes("private_key")?,
        encrypted: row.flag("encrypted")?,
        public_jwk: row.text("public_jwk")?,
        created_at: row.time("created_at")?,
        activates_at: row.time("activates_at")?,
        retired_at: row.opt_time("retired_at")?,
        purged_at: row.opt_time("purged_at")?,
    })
}

/// An audit row, from `at, event, user_id, session_id, ip, detail`.
pub fn audit_of<S, C: Columns<S>>(row: &C) -> Result<AuditRecord, C::Error> {
    Ok(AuditRecord {
        at: row.time("at")?,
        event: row.text("event")?,
        user_id: row.opt_text("user_id")?,
        session_id: row.opt_text("session_id")?,
        ip: row.opt_text("ip")?,
        detail: row.opt_text("detail")?,
    })
}

/// An OAuth client, from `id, secret_hash, scope, created_at`.
pub fn client_of<S, C: Columns<S>>(row: &C) -> Result<ClientRecord, C::Error> {
    Ok(ClientRecord {
        id: row.text("id")?,
        secret_hash: row.opt_bytes("secret_hash")?,
        scope: row.text("scope")?,
        created_at: row.time("created_at")?,
    })
}

/// What the login limit's upsert answered (`RETURNING window_started_at,
/// refusals`). The upsert counts an attempt under the limit and leaves
/// `refusals` at 0; at the limit it counts a refusal instead, so the first
/// refusal of a window answers 1.
pub fn login_attempt_of<S, C: Columns<S>>(row: &C) -> Result<LoginAttempt, C::Error> {
    let refusals = row.int("refusals")?;
    Ok(if refusals == 0 {
        LoginAttempt::Allowed
    } else {
        LoginAttempt::Refused {
            window_started_at: row.time("window_started_at")?,
            first: refusals == 1,
        }
    })
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    /// A row of named values, as a test engine.
    #[derive(Default)]
    struct Row(HashMap<&'static str, Value>);

    #[derive(Clone)]
    enum Value {
        Null,
        Int(i64),
        Text(&'static str),
    }

    struct Test;

    impl Row {
        fn with(mut self, col: &'static str, value: Value) -> Self {
            self.0.insert(col, value);
            self
        }

        fn get(&self, col: &str) -> Result<Value, String> {
            self.0.get(col).cloned().ok_or(format!("no column {col}"))
        }
    }

    impl Columns<Test> for Row {
        type Error = String;

        fn text(&self, col: &str) -> Result<String, String> {
            self.opt_text(col)?.ok_or(format!("{col} is null"))
        }
        fn opt_text(&self, col: &str) -> Result<Option<String>, String> {
            match self.get(col)? {
                Value::Null => Ok(None),
                Value::Text(s) => Ok(Some(s.to_owned())),
                Value::Int(_) => Err(format!("{col} is not text")),
            }
        }
        fn bytes(&self, col: &str) -> Result<Vec<u8>, String> {
            self.text(col).map(String::into_bytes)
        }
        fn opt_bytes(&self, col: &str) -> Result<Option<Vec<u8>>, String> {
            self.opt_text(col).map(|v| v.map(String::into_bytes))
        }
        fn int(&self, col: &str) -> Result<i64, String> {
            self.opt_int(col)?.ok_or(format!("{col} is null"))
        }
        fn opt_int(&self, col: &str) -> Result<Option<i64>, String> {
            match self.get(col)? {
                Value::Null => Ok(None),
                Value::Int(n) => Ok(Some(n)),
                Value::Text(_) => Err(format!("{col} is not an integer")),
            }
        }
        fn flag(&self, col: &str) -> Result<bool, String> {
            self.int(col).map(|n| n != 0)
        }
        fn corrupt(&self, col: &str, message: String) -> String {
            format!("corrupt {col}: {message}")
        }
    }

    fn user(version: i64) -> Row {
        Row::default()
            .with("u_id", Value::Text("u1"))
            .with("username", Value::Text("Alice"))
            .with("username_key", Value::Text("alice"))
            .with("password_hash", Value::Text("$argon2id$x"))
            .with("password_version", Value::Int(version))
            .with("u_created_at", Value::Int(1_800_000_000_250))
            .with("disabled_at", Value::Null)
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
            })
        );
    }

    #[test]
    fn a_negative_counter_is_corrupt() {
        assert_eq!(
            user_of(&user(-1)),
            Err("corrupt password_version: negative password_version -1".to_owned())
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
                .with("refusals", Value::Int(refusals))
                .with("window_started_at", Value::Int(1_000)),
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
