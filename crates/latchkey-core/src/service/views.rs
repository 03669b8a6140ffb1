//! What the service answers about users, sessions, keys and clients: the
//! stored records without what only the store should see (password hashes,
//! session salts, private keys, secret hashes).

use time::OffsetDateTime;

use crate::ids::{SessionId, UserId};
use crate::keys::KeyState;
use crate::store::{ClientRecord, KeyRecord, SessionRecord, UserRecord};

/// A user, as anyone may be told of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserView {
    pub id: UserId,
    pub username: String,
    pub created_at: OffsetDateTime,
    pub disabled: bool,
}

impl From<&UserRecord> for UserView {
    fn from(u: &UserRecord) -> Self {
        Self {
            id: u.id.clone(),
            username: u.username.clone(),
            created_at: u.created_at,
            disabled: u.disabled_at.is_some(),
        }
    }
}

impl From<UserRecord> for UserView {
    fn from(u: UserRecord) -> Self {
        Self {
            id: u.id,
            username: u.username,
            created_at: u.created_at,
            disabled: u.disabled_at.is_some(),
        }
    }
}

/// A session: one login on one device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionView {
    pub id: SessionId,
    pub user_id: UserId,
    pub client_id: String,
    pub scope: String,
    pub created_at: OffsetDateTime,
    /// The login or the latest refresh.
    pub last_used_at: OffsetDateTime,
    /// The earlier of the idle and the absolute expiry.
    pub expires_at: OffsetDateTime,
    pub user_agent: Option<String>,
    pub ip: String,
    /// How its login was made (RFC 8176).
    pub amr: Vec<String>,
    pub auth_time: OffsetDateTime,
}

impl SessionView {
    /// The view of a session record it consumes (the hot paths own theirs).
    pub(crate) fn of(s: SessionRecord, expires_at: OffsetDateTime) -> Self {
        Self {
            id: s.id,
            user_id: s.user_id,
            client_id: s.client_id,
            scope: s.scope,
            created_at: s.created_at,
            last_used_at: s.last_used_at,
            expires_at,
            user_agent: s.user_agent,
            ip: s.ip,
            amr: s.amr,
            auth_time: s.auth_time,
        }
    }
}

/// A signing key and where it stands, for `key list`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyView {
    pub kid: String,
    pub alg: String,
    pub state: KeyState,
    pub created_at: OffsetDateTime,
    pub activates_at: OffsetDateTime,
    pub retired_at: Option<OffsetDateTime>,
    pub encrypted: bool,
}

impl KeyView {
    pub(crate) fn of(k: &KeyRecord, state: KeyState) -> Self {
        Self {
            kid: k.kid.clone(),
            alg: k.alg.clone(),
            state,
            created_at: k.created_at,
            activates_at: k.activates_at,
            retired_at: k.retired_at,
            encrypted: k.encrypted,
        }
    }
}

/// An OAuth client registered with `latchkey client add`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientView {
    pub id: String,
    /// No secret: it cannot use `client_credentials` or introspection.
    pub public: bool,
    pub scope: String,
    pub created_at: OffsetDateTime,
}

impl From<&ClientRecord> for ClientView {
    fn from(c: &ClientRecord) -> Self {
        Self {
            id: c.id.clone(),
            public: c.secret_hash.is_none(),
            scope: c.scope.clone(),
            created_at: c.created_at,
        }
    }
}
