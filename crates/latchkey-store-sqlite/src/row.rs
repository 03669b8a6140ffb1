//! Rows to records: rusqlite's typed reads behind the mapping shared with
//! the PostgreSQL store ([`latchkey_store_sql`]).

use latchkey_store_sql::Columns;
use rusqlite::types::Type;
use rusqlite::Row;

use crate::SqliteStore;

impl Columns<SqliteStore> for Row<'_> {
    type Error = rusqlite::Error;

    fn text(&self, col: &str) -> rusqlite::Result<String> {
        self.get(col)
    }

    fn opt_text(&self, col: &str) -> rusqlite::Result<Option<String>> {
        self.get(col)
    }

    fn bytes(&self, col: &str) -> rusqlite::Result<Vec<u8>> {
        self.get(col)
    }

    fn opt_bytes(&self, col: &str) -> rusqlite::Result<Option<Vec<u8>>> {
        self.get(col)
    }

    fn int(&self, col: &str) -> rusqlite::Result<i64> {
        self.get(col)
    }

    fn opt_int(&self, col: &str) -> rusqlite::Result<Option<i64>> {
        self.get(col)
    }

    fn flag(&self, col: &str) -> rusqlite::Result<bool> {
        self.get(col)
    }

    /// A conversion failure, which `store_error` answers as `Corrupt`.
    fn corrupt(&self, col: &str, message: String) -> rusqlite::Error {
        let index = self.as_ref().column_index(col).unwrap_or_default();
        let found = self.get_ref(index).map_or(Type::Null, |v| v.data_type());
        rusqlite::Error::FromSqlConversionFailure(index, found, message.into())
    }
}

/// A counter as SQLite's 64-bit INTEGER.
pub(crate) fn i64_param(value: u64) -> rusqlite::Result<i64> {
    i64::try_from(value)
        .map_err(|_| rusqlite::Error::ToSqlConversionFailure("counter out of range".into()))
}
