//! Rows to records: sqlx's typed reads behind the row mapping shared with
//! the SQLite store ([`latchkey_store_sql`]).

use latchkey_core::store::{StoreError, StoreResult};
use latchkey_store_sql::Columns;
use sqlx::postgres::PgRow;
use sqlx::Row;

use crate::PostgresStore;

impl Columns<PostgresStore> for PgRow {
    type Error = sqlx::Error;

    fn text(&self, at: usize) -> Result<String, sqlx::Error> {
        self.try_get(at)
    }

    fn opt_text(&self, at: usize) -> Result<Option<String>, sqlx::Error> {
        self.try_get(at)
    }

    fn bytes(&self, at: usize) -> Result<Vec<u8>, sqlx::Error> {
        self.try_get(at)
    }

    fn opt_bytes(&self, at: usize) -> Result<Option<Vec<u8>>, sqlx::Error> {
        self.try_get(at)
    }

    fn int(&self, at: usize) -> Result<i64, sqlx::Error> {
        self.try_get(at)
    }

    fn opt_int(&self, at: usize) -> Result<Option<i64>, sqlx::Error> {
        self.try_get(at)
    }

    fn flag(&self, at: usize) -> Result<bool, sqlx::Error> {
        self.try_get(at)
    }

    /// A column decode error, which `store_error` answers as `Corrupt`.
    fn corrupt(&self, at: usize, name: &str, message: String) -> sqlx::Error {
        sqlx::Error::ColumnDecode {
            index: format!("{at} ({name})"),
            source: message.into(),
        }
    }
}

/// A counter as PostgreSQL's BIGINT.
pub(crate) fn i64_param(value: u64) -> StoreResult<i64> {
    i64::try_from(value).map_err(|_| StoreError::Corrupt(format!("counter {value} too large")))
}
