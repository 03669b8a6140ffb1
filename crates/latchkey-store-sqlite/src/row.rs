//! Rows to records: rusqlite's typed reads behind the mapping shared with
//! the PostgreSQL store ([`latchkey_store_sql`]).

use latchkey_store_sql::Columns;
use rusqlite::types::Type;
use rusqlite::Row;

use crate::SqliteStore;

impl Columns<SqliteStore> for Row<'_> {
    type Error = rusqlite::Error;

    fn text(&self, at: usize) -> rusqlite::Result<String> {
        self.get(at)
    }

    fn opt_text(&self, at: usize) -> rusqlite::Result<Option<String>> {
        self.get(at)
    }

    fn bytes(&self, at: usize) -> rusqlite::Result<Vec<u8>> {
        self.get(at)
    }

    fn opt_bytes(&self, at: usize) -> rusqlite::Result<Option<Vec<u8>>> {
        self.get(at)
    }

    fn int(&self, at: usize) -> rusqlite::Result<i64> {
        self.get(at)
    }

    fn opt_int(&self, at: usize) -> rusqlite::Result<Option<i64>> {
        self.get(at)
    }

    fn flag(&self, at: usize) -> rusqlite::Result<bool> {
        self.get(at)
    }

    /// A conversion failure, which `store_error` answers as `Corrupt`.
    fn corrupt(&self, at: usize, name: &str, message: String) -> rusqlite::Error {
        let found = self.get_ref(at).map_or(Type::Null, |v| v.data_type());
        rusqlite::Error::FromSqlConversionFailure(at, found, format!("{name}: {message}").into())
    }
}

/// A counter as SQLite's 64-bit INTEGER.
pub(crate) fn i64_param(value: u64) -> rusqlite::Result<i64> {
    i64::try_from(value)
        .map_err(|_| rusqlite::Error::ToSqlConversionFailure("counter out of range".into()))
}
