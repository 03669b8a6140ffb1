//! The scale store on PostgreSQL: migrated and given its secret by
//! latchkey's own store, then filled with `COPY`.

use anyhow::Result;
use latchkey_core::store::Store as _;
use latchkey_store_postgres::{PostgresSettings, PostgresStore};
use sqlx::postgres::PgPoolOptions;
use sqlx::{Connection as _, PgConnection};

use super::fill::{SessionRow, UserRow, CLIENT_ID, IP, USER_AGENT};

pub struct Writer {
    conn: PgConnection,
}

impl Writer {
    /// Migrates the store; answers the writer and the refresh-token secret.
    pub async fn open(url: &str) -> Result<(Self, Vec<u8>)> {
        let store = PostgresStore::connect_lazy(url, &PostgresSettings::default())?;
        store.migrate().await?;
        let secret = store.refresh_secret().await?;
        drop(store);
        let mut conn = PgConnection::connect(url).await?;
        sqlx::query("SET synchronous_commit = off")
            .execute(&mut conn)
            .await?;
        Ok((Self { conn }, secret))
    }

    async fn copy(&mut self, statement: &str, data: String) -> Result<()> {
        let mut copy = self.conn.copy_in_raw(statement).await?;
        copy.send(data.into_bytes()).await?;
        copy.finish().await?;
        Ok(())
    }

    pub async fn users(&mut self, rows: &[UserRow], password_hash: &str) -> Result<()> {
        let mut data = String::with_capacity(rows.len() * 200);
        for u in rows {
            data.push_str(&format!(
                "{}\t{}\t{}\t{}\t{}\t0\n",
                u.id, u.username, u.username, password_hash, u.created_ms
            ));
        }
        self.copy(
            "COPY users (id, username, username_key, password_hash, created_at, \
             password_version) FROM STDIN",
            data,
        )
        .await
    }

    pub async fn sessions(&mut self, rows: &[SessionRow]) -> Result<()> {
        let mut data = String::with_capacity(rows.len() * 300);
        for s in rows {
            let salt: String = s.salt.iter().map(|b| format!("{b:02x}")).collect();
            data.push_str(&format!(
                "{}\t{}\t{CLIENT_ID}\t\t\\\\x{salt}\t0\t{}\t{}\t{}\t{USER_AGENT}\t{IP}\n",
                s.id, s.user_id, s.created_ms, s.last_used_ms, s.absolute_expires_ms
            ));
        }
        self.copy(
            "COPY sessions (id, user_id, client_id, scope, salt, generation, created_at, \
             last_used_at, absolute_expires_at, user_agent, ip) FROM STDIN",
            data,
        )
        .await
    }

    pub async fn finish(mut self) -> Result<()> {
        sqlx::query("VACUUM ANALYZE users")
            .execute(&mut self.conn)
            .await?;
        sqlx::query("VACUUM ANALYZE sessions")
            .execute(&mut self.conn)
            .await?;
        self.conn.close().await?;
        Ok(())
    }
}

/// About half of the sessions never refreshed (generation 0, so none of
/// the live set once it has been driven) made idle for 60 days.
pub async fn expire(url: &str) -> Result<()> {
    let pool = PgPoolOptions::new().max_connections(1).connect(url).await?;
    let n = sqlx::query(
        "UPDATE sessions SET last_used_at = last_used_at - 5184000000 \
         WHERE generation = 0 AND substr(id, 36, 1) < '8'",
    )
    .execute(&pool)
    .await?
    .rows_affected();
    sqlx::query("VACUUM ANALYZE sessions")
        .execute(&pool)
        .await?;
    eprintln!("{n} sessions made dead");
    println!("{n}");
    Ok(())
}
