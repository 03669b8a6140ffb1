//! Rows to records: sqlx's typed reads behind the row mapping shared with
//! the SQLite store ([`latchkey_store_sql`]).

use latchkey_core::store::{StoreError, StoreResult};
use latchkey_store_sql::Columns;
use sqlx::postgres::PgRow;
use sqlx::Row;

use crate::PostgresStore;

impl Columns<PostgresStore> for PgRow {
    type Error = sqlx::Error;

    fn text(&self, col: &str) -> Result<String, sqlx::Error> {
        self.try_get(col)
    }

    fn opt_text(&self, col: &str) -> Result<Option<String>, sqlx::Error> {
        self.try_get(col)
    }

    fn bytes(&self, col: &str) -> Result<Vec<u8>, sqlx::Error> {
        self.try_get(col)
    }

    fn opt_bytes(&self, col: &str) -> Result<Option<Vec<u8>>, sqlx::Error> {
        self.try_get(col)
    }

    fn int(&self, col: &str) -> Result<i64, sqlx::Error> {
        self.try_get(col)
    }

    fn opt_int(&self, col: &str) -> Result<Option<i64>, sqlx::Error> {
        self.try_get(col)
    }

    fn flag(&self, col: &str) -> Result<bool, sqlx::Error> {
        self.try_get(col)
    }

    /// A column decode error, which `store_error` answers as `Corrupt`.
    fn corrupt(&self, col: &str, message: String) -> sqlx::Error {
        sqlx::Error::ColumnDecode {
            index: format!("{col:?}"),
            source: message.into(),
        }
    }
}

/// A counter as PostgreSQL's BIGINT.
pub(crate) fn i64_param(value: u64) -> StoreResult<i64> {
    i64::try_from(value).map_err(|_| StoreError::Corrupt(format!("counter {value} too large")))
}
