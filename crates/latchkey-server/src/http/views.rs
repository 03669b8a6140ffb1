//! The service's views as the API shows them.

use latchkey_core::clock::rfc3339;
use latchkey_core::mail::EmailRecord;
use latchkey_core::mfa::SecondFactors;
use latchkey_core::service::{SessionView, UserView};
use latchkey_core::SessionId;
use latchkey_proto::{Me, MfaStatus, Session, User};

pub fn user(u: &UserView) -> User {
    User {
        id: u.id.as_str().to_owned(),
        username: u.username.clone(),
        created_at: rfc3339(u.created_at),
    }
}

pub fn me(u: &UserView, email: Option<&EmailRecord>, second: SecondFactors) -> Me {
    Me {
        id: u.id.as_str().to_owned(),
        username: u.username.clone(),
        created_at: rfc3339(u.created_at),
        email: email.map(|e| e.email.clone()),
        email_verified: email.is_some_and(|e| e.verified_at.is_some()),
        mfa: MfaStatus {
            totp: second.totp,
            passkeys: second.passkeys,
        },
    }
}

pub fn session(s: &SessionView, current_sid: Option<&SessionId>) -> Session {
    Session {
        id: s.id.as_str().to_owned(),
        created_at: rfc3339(s.created_at),
        last_used_at: rfc3339(s.last_used_at),
        expires_at: rfc3339(s.expires_at),
        user_agent: s.user_agent.clone(),
        ip: s.ip.clone(),
        current: current_sid == Some(&s.id),
        amr: s.amr.clone(),
        auth_time: rfc3339(s.auth_time),
    }
}
