//! Store records as the API shows them.

use latchkey_core::clock::rfc3339;
use latchkey_core::store::{SessionRecord, UserRecord};
use latchkey_core::Service;
use latchkey_proto::{Session, User};

pub fn user(u: &UserRecord) -> User {
    User {
        id: u.id.clone(),
        username: u.username.clone(),
        created_at: rfc3339(u.created_at),
    }
}

pub fn session(service: &Service, s: &SessionRecord, current_sid: Option<&str>) -> Session {
    Session {
        id: s.id.clone(),
        created_at: rfc3339(s.created_at),
        last_used_at: rfc3339(s.last_used_at),
        expires_at: rfc3339(service.session_expires_at(s)),
        user_agent: s.user_agent.clone(),
        ip: s.ip.clone(),
        current: current_sid == Some(s.id.as_str()),
    }
}
