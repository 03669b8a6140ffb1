//! The rows of the scale benchmark's store: users and sessions shaped as
//! logins make them, generated in chunks and written by each engine in
//! bulk, and the refresh tokens of an evenly spread live set.

use std::io::Write as _;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context as _, Result};
use argon2::password_hash::{PasswordHasher as _, SaltString};
use latchkey_core::crypto::RefreshSecret;
use latchkey_core::ids::{SessionId, UserId};
use latchkey_core::policy::WEB_CLIENT_ID;
use latchkey_core::refresh;

use super::{fill_postgres, fill_sqlite, FillArgs};

/// Every user's password (one real Argon2id hash shared by all).
pub const PASSWORD: &str = "scale-benchmark-password";
/// Rows generated and written at a time.
const CHUNK: usize = 50_000;
const DAY_MS: i64 = 86_400_000;

pub struct UserRow {
    pub id: String,
    pub username: String,
    pub created_ms: i64,
}

pub struct SessionRow {
    pub id: String,
    pub user_id: String,
    pub salt: [u8; 16],
    pub created_ms: i64,
    pub last_used_ms: i64,
    pub absolute_expires_ms: i64,
}

/// The constant columns of every session row.
pub const CLIENT_ID: &str = WEB_CLIENT_ID;
pub const USER_AGENT: &str =
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/156.0 Safari/537.36";
pub const IP: &str = "127.0.0.1";

/// Where rows go: one engine's bulk path.
pub enum Writer {
    Sqlite(fill_sqlite::Writer),
    Postgres(fill_postgres::Writer),
}

impl Writer {
    async fn users(&mut self, rows: &[UserRow], password_hash: &str) -> Result<()> {
        match self {
            Writer::Sqlite(w) => w.users(rows, password_hash),
            Writer::Postgres(w) => w.users(rows, password_hash).await,
        }
    }

    async fn sessions(&mut self, rows: &[SessionRow]) -> Result<()> {
        match self {
            Writer::Sqlite(w) => w.sessions(rows),
            Writer::Postgres(w) => w.sessions(rows).await,
        }
    }

    async fn finish(self) -> Result<()> {
        match self {
            Writer::Sqlite(w) => w.finish(),
            Writer::Postgres(w) => w.finish().await,
        }
    }
}

/// splitmix64: spreads the sessions' times; nothing secret.
struct Spread(u64);

impl Spread {
    fn below(&mut self, n: i64) -> i64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z % n.max(1) as u64) as i64
    }
}

pub async fn run(args: FillArgs) -> Result<()> {
    if args.users == 0 || args.sessions < args.live || args.live == 0 {
        bail!("--users must be at least 1, and --sessions at least --live (at least 1)");
    }
    let (mut writer, secret) = if args.database_url.starts_with("sqlite:") {
        let (w, s) = fill_sqlite::Writer::open(&args.database_url).await?;
        (Writer::Sqlite(w), s)
    } else if args.database_url.starts_with("postgres") {
        let (w, s) = fill_postgres::Writer::open(&args.database_url).await?;
        (Writer::Postgres(w), s)
    } else {
        bail!("--database-url: sqlite://PATH or postgres://...");
    };
    let secret = RefreshSecret::new(&secret);
    let now_ms = i64::try_from(SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis())?;
    let started = Instant::now();
    let salt = SaltString::from_b64("c2NhbGViZW5jaG1hcmtzYWx0")
        .map_err(|e| anyhow::anyhow!("salt: {e}"))?;
    let password_hash = argon2::Argon2::default()
        .hash_password(PASSWORD.as_bytes(), &salt)
        .map_err(|e| anyhow::anyhow!("argon2: {e}"))?
        .to_string();

    let mut spread = Spread(0x5ca1e);
    let mut user_ids = Vec::with_capacity(usize::try_from(args.users)?);
    let mut chunk = Vec::with_capacity(CHUNK);
    for i in 0..args.users {
        let id = UserId::random().as_str().to_owned();
        user_ids.push(id.clone());
        chunk.push(UserRow {
            id,
            username: username(i),
            created_ms: now_ms - 30 * DAY_MS + spread.below(DAY_MS),
        });
        if chunk.len() == CHUNK || i + 1 == args.users {
            writer.users(&chunk, &password_hash).await?;
            chunk.clear();
        }
    }
    eprintln!(
        "{} users in {:.0} s",
        args.users,
        started.elapsed().as_secs_f64()
    );

    let mut tokens = std::io::BufWriter::new(
        std::fs::File::create(&args.tokens)
            .with_context(|| format!("creating {}", args.tokens.display()))?,
    );
    let stride = args.sessions / args.live;
    let mut live = 0;
    let mut chunk = Vec::with_capacity(CHUNK);
    let mut reported = Instant::now();
    for k in 0..args.sessions {
        // Opened in the last 6 days, used since: alive under the defaults
        // (7 days idle, 30 days in all).
        let created_ms = now_ms - 6 * DAY_MS + spread.below(6 * DAY_MS);
        let row = SessionRow {
            id: SessionId::random().as_str().to_owned(),
            user_id: user_ids[usize::try_from(k % args.users)?].clone(),
            salt: *uuid::Uuid::new_v4().as_bytes(),
            created_ms,
            last_used_ms: created_ms + spread.below(now_ms - created_ms),
            absolute_expires_ms: created_ms + 30 * DAY_MS,
        };
        if k % stride == 0 && live < args.live {
            let token = refresh::mint(&secret, &SessionId::from(row.id.as_str()), &row.salt, 0);
            writeln!(tokens, "{token}")?;
            live += 1;
        }
        chunk.push(row);
        if chunk.len() == CHUNK || k + 1 == args.sessions {
            writer.sessions(&chunk).await?;
            chunk.clear();
            if reported.elapsed().as_secs() >= 10 {
                reported = Instant::now();
                eprintln!(
                    "{} of {} sessions, {:.0} s",
                    k + 1,
                    args.sessions,
                    started.elapsed().as_secs_f64()
                );
            }
        }
    }
    tokens.flush()?;
    writer.finish().await?;
    eprintln!(
        "filled: {} users, {} sessions ({} live tokens in {}) in {:.0} s",
        args.users,
        args.sessions,
        live,
        args.tokens.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

pub fn username(i: u64) -> String {
    format!("scale-{i:08}")
}
