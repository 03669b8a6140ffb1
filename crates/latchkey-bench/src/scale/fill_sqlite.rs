//! The scale store on SQLite: migrated and given its secret by latchkey's
//! own store, then filled over one connection in large transactions.

use anyhow::{Context as _, Result};
use latchkey_core::store::Store as _;
use latchkey_store_sqlite::{SqliteSettings, SqliteStore};
use rusqlite::{params, Connection};

use super::fill::{SessionRow, UserRow, CLIENT_ID, IP, USER_AGENT};

pub struct Writer {
    conn: Connection,
}

fn path_of(url: &str) -> Result<&str> {
    url.strip_prefix("sqlite://")
        .filter(|p| !p.is_empty() && !p.starts_with(":memory:"))
        .context("--database-url: sqlite://PATH of a file")
}

impl Writer {
    /// Migrates the store; answers the writer and the refresh-token secret.
    pub async fn open(url: &str) -> Result<(Self, Vec<u8>)> {
        let path = path_of(url)?;
        let store = SqliteStore::connect(url, &SqliteSettings::default()).await?;
        store.migrate().await?;
        let secret = store.refresh_secret().await?;
        drop(store);
        let conn = Connection::open(path)?;
        // A bulk load: a large cache, and no sync until the end.
        conn.pragma_update(None, "synchronous", "OFF")?;
        conn.pragma_update(None, "cache_size", -4_000_000)?;
        conn.pragma_update(None, "foreign_keys", "OFF")?;
        Ok((Self { conn }, secret))
    }

    pub fn users(&mut self, rows: &[UserRow], password_hash: &str) -> Result<()> {
        let tx = self.conn.transaction()?;
        {
            let mut insert = tx.prepare_cached(
                "INSERT INTO users (id, username, username_key, password_hash, created_at, \
                 password_version) VALUES (?1, ?2, ?2, ?3, ?4, 0)",
            )?;
            for u in rows {
                insert.execute(params![u.id, u.username, password_hash, u.created_ms])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    pub fn sessions(&mut self, rows: &[SessionRow]) -> Result<()> {
        let tx = self.conn.transaction()?;
        {
            let mut insert = tx.prepare_cached(
                "INSERT INTO sessions (id, user_id, client_id, scope, salt, generation, \
                 created_at, last_used_at, absolute_expires_at, user_agent, ip) \
                 VALUES (?1, ?2, ?3, '', ?4, 0, ?5, ?6, ?7, ?8, ?9)",
            )?;
            for s in rows {
                insert.execute(params![
                    s.id,
                    s.user_id,
                    CLIENT_ID,
                    &s.salt[..],
                    s.created_ms,
                    s.last_used_ms,
                    s.absolute_expires_ms,
                    USER_AGENT,
                    IP
                ])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    pub fn finish(self) -> Result<()> {
        // No ANALYZE: latchkey's store never has statistics (with them, this
        // SQLite build re-prepares statements for their bound values).
        self.conn
            .execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")?;
        Ok(())
    }
}

/// About half of the sessions never refreshed (generation 0, so none of
/// the live set once it has been driven) made idle for 60 days.
pub fn expire(url: &str) -> Result<()> {
    let conn = Connection::open(path_of(url)?)?;
    conn.pragma_update(None, "cache_size", -4_000_000)?;
    let n = conn.execute(
        "UPDATE sessions SET last_used_at = last_used_at - 5184000000 \
         WHERE generation = 0 AND substr(id, 36, 1) < '8'",
        [],
    )?;
    conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")?;
    eprintln!("{n} sessions made dead");
    println!("{n}");
    Ok(())
}
