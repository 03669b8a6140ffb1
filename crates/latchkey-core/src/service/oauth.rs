//! The OAuth 2.0 door into the same rules: clients, the token endpoint's
//! grants, revocation (RFC 7009) and introspection (RFC 7662).

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use latchkey_proto::Introspection;

use super::{ClientView, Issued, LoginOutcome, RequestContext, Service};
use crate::audit::{AuditEvent, AuditRecord};
use crate::crypto::{random_bytes, B64};
use crate::error::ServiceError;
use crate::ids::{SessionId, UserId};
use crate::policy::WEB_CLIENT_ID;
use crate::store::{ClientRecord, StoreError};

/// The built-in public client of token requests that name none.
pub const PUBLIC_CLIENT_ID: &str = "public";

const CLIENT_ID_MAX: usize = 128;

/// A client that authenticated (or a public one that named itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientAuth {
    pub id: String,
    pub confidential: bool,
    /// The scopes it may ask for, space-separated.
    pub scope: String,
}

/// `latchkey client add`'s answer: the secret is shown this once.
#[derive(Debug, Clone)]
pub struct NewClient {
    pub client: ClientView,
    pub secret: Option<String>,
}

fn secret_hash(secret: &str) -> Vec<u8> {
    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, secret.as_bytes())
        .as_ref()
        .to_vec()
}

/// Every requested scope must be among the allowed ones; none asked: all of them.
pub fn grant_scope(requested: Option<&str>, allowed: &str) -> Result<String, ServiceError> {
    let Some(requested) = requested else {
        return Ok(allowed.split_whitespace().collect::<Vec<_>>().join(" "));
    };
    let allowed: Vec<&str> = allowed.split_whitespace().collect();
    let mut granted: Vec<&str> = Vec::new();
    for scope in requested.split_whitespace() {
        if !allowed.contains(&scope) {
            return Err(ServiceError::InvalidScope);
        }
        if !granted.contains(&scope) {
            granted.push(scope);
        }
    }
    Ok(granted.join(" "))
}

impl Service {
    fn public_client(&self, id: &str) -> ClientAuth {
        ClientAuth {
            id: id.to_owned(),
            confidential: false,
            scope: self.policy.default_scope.clone(),
        }
    }

    /// Authenticates a token-endpoint caller: a confidential client by its
    /// secret (compared as SHA-256, in constant time), a public one by its
    /// id alone, and a request that names no client as `public`.
    pub async fn authenticate_client(
        &self,
        client_id: Option<&str>,
        secret: Option<&str>,
    ) -> Result<ClientAuth, ServiceError> {
        let Some(id) = client_id else {
            return match secret {
                None => Ok(self.public_client(PUBLIC_CLIENT_ID)),
                Some(_) => Err(ServiceError::InvalidClient("a secret without a client_id")),
            };
        };
        if id == WEB_CLIENT_ID || id == PUBLIC_CLIENT_ID {
            return match secret {
                None => Ok(self.public_client(id)),
                Some(_) => Err(ServiceError::InvalidClient("a public client has no secret")),
            };
        }
        let record = self
            .registered_client(id)
            .await?
            .ok_or(ServiceError::InvalidClient("unknown client"))?;
        match (&record.secret_hash, secret) {
            (None, None) => Ok(ClientAuth {
                id: record.id.clone(),
                confidential: false,
                scope: record.scope.clone(),
            }),
            (None, Some(_)) => Err(ServiceError::InvalidClient("a public client has no secret")),
            (Some(_), None) => Err(ServiceError::InvalidClient(
                "client authentication required",
            )),
            (Some(stored), Some(given)) => {
                let ok: bool =
                    subtle::ConstantTimeEq::ct_eq(stored.as_slice(), secret_hash(given).as_slice())
                        .into();
                if ok {
                    Ok(ClientAuth {
                        id: record.id.clone(),
                        confidential: true,
                        scope: record.scope.clone(),
                    })
                } else {
                    Err(ServiceError::InvalidClient("client authentication failed"))
                }
            }
        }
    }

    /// A registered client, from the cache when it was read from the store
    /// in the last few seconds.
    async fn registered_client(&self, id: &str) -> Result<Option<Arc<ClientRecord>>, ServiceError> {
        // A name no client could have is unknown without a lookup (and
        // PostgreSQL refuses a NUL byte in text with an error).
        if !is_client_id(id) {
            return Ok(None);
        }
        let now = self.now();
        if let Some(client) = self.clients.get(id, now) {
            return Ok(Some(client));
        }
        let Some(client) = self.store.client(id).await? else {
            return Ok(None);
        };
        let client = Arc::new(client);
        self.clients.insert(Arc::clone(&client), now);
        Ok(Some(client))
    }

    /// `grant_type=password`: a session like a `/v1` login's, of this
    /// client, or the second factor asked for.
    pub async fn password_grant(
        &self,
        client: &ClientAuth,
        username: &str,
        password: &str,
        scope: Option<&str>,
        ctx: &RequestContext,
    ) -> Result<LoginOutcome, ServiceError> {
        let scope = grant_scope(scope, &client.scope)?;
        self.password_login(username, password, ctx, &client.id, scope)
            .await
    }

    /// `grant_type=refresh_token`: the same rotation, grace and reuse rules
    /// as `/v1`. A narrower `scope` may not be asked: the session keeps its own.
    pub async fn refresh_grant(
        &self,
        client: &ClientAuth,
        refresh_token: &str,
        scope: Option<&str>,
        ctx: &RequestContext,
    ) -> Result<Issued, ServiceError> {
        let issued = self.refresh_for(refresh_token, ctx, &client.id).await?;
        if let Some(asked) = scope {
            // Checked after: the token is spent either way, as a retry would be.
            grant_scope(Some(asked), &issued.session.scope)?;
        }
        Ok(issued)
    }

    /// `grant_type=client_credentials`: an access token whose subject is
    /// the client itself, no session, no refresh token.
    pub async fn client_credentials_grant(
        &self,
        client: &ClientAuth,
        scope: Option<&str>,
    ) -> Result<(String, Duration, String), ServiceError> {
        if !client.confidential {
            return Err(ServiceError::InvalidClient(
                "client_credentials needs a confidential client",
            ));
        }
        let scope = grant_scope(scope, &client.scope)?;
        let now = self.now();
        let claims = self.access_claims(&client.id, None, &client.id, &scope, now);
        Ok((self.sign(&claims, now)?, self.policy.access_ttl, scope))
    }

    /// RFC 7009: a refresh token revokes its session; so does an access
    /// token (its session, named by `sid`). Unknown tokens are fine; a token
    /// of another client is refused and stays alive.
    pub async fn revoke_token(
        &self,
        client: &ClientAuth,
        token: &str,
        ctx: &RequestContext,
    ) -> Result<(), ServiceError> {
        let target = if let Some((_, found)) = self.presented_session(token).await? {
            Some((
                found.session.client_id,
                Some(found.session.id),
                found.session.user_id,
            ))
        } else if let Ok(claims) = self.verified_claims(token, self.now()) {
            let sid = claims.sid.map(SessionId::from);
            Some((claims.client_id, sid, UserId::from(claims.sub)))
        } else {
            None
        };
        let Some((owner, sid, user_id)) = target else {
            return Ok(());
        };
        if owner != client.id {
            return Err(ServiceError::UnauthorizedClient(
                "this token was issued to another client",
            ));
        }
        if let Some(sid) = sid {
            self.end_session(&sid, &user_id, ctx).await?;
        }
        Ok(())
    }

    /// RFC 7662, for a confidential client: whether a token is live, now.
    pub async fn introspect(&self, token: &str) -> Result<Introspection, ServiceError> {
        let now = self.now();
        let inactive = Introspection::default();
        if let Some((presented, found)) = self.presented_session(token).await? {
            if presented.generation != found.session.generation
                || self.check_live(&found, now).is_err()
            {
                return Ok(inactive);
            }
            let session = &found.session;
            return Ok(Introspection {
                active: true,
                sub: Some(found.user.id.as_str().to_owned()),
                sid: Some(session.id.as_str().to_owned()),
                exp: Some(self.session_expires_at(session).unix_timestamp()),
                iat: Some(
                    session
                        .rotated_at
                        .unwrap_or(session.created_at)
                        .unix_timestamp(),
                ),
                iss: Some(self.policy.issuer.clone()),
                scope: Some(session.scope.clone()),
                client_id: Some(session.client_id.clone()),
                username: Some(found.user.username.clone()),
                amr: Some(session.amr.clone()),
                auth_time: Some(session.auth_time.unix_timestamp()),
                ..inactive
            });
        }
        let Ok(claims) = self.verified_claims(token, now) else {
            return Ok(inactive);
        };
        let username = match &claims.sid {
            Some(sid) => match self
                .store
                .session_with_user(&SessionId::from(sid.as_str()))
                .await?
            {
                Some(found)
                    if found.user.id.as_str() == claims.sub
                        && self.check_live(&found, now).is_ok() =>
                {
                    Some(found.user.username)
                }
                _ => return Ok(inactive),
            },
            None => {
                // A client_credentials token lives as long as its client.
                if self.registered_client(&claims.client_id).await?.is_none() {
                    return Ok(inactive);
                }
                None
            }
        };
        Ok(Introspection {
            active: true,
            sub: Some(claims.sub),
            sid: claims.sid,
            exp: Some(claims.exp),
            iat: Some(claims.iat),
            iss: Some(claims.iss),
            aud: Some(claims.aud),
            scope: Some(claims.scope),
            client_id: Some(claims.client_id),
            username,
            token_type: Some("Bearer".into()),
            amr: (!claims.amr.is_empty()).then_some(claims.amr),
            auth_time: claims.auth_time,
        })
    }

    /// `latchkey client add`: a confidential client gets a 256-bit secret,
    /// shown once and stored as its SHA-256.
    pub async fn add_client(
        &self,
        id: &str,
        public: bool,
        scope: &str,
    ) -> Result<NewClient, ServiceError> {
        if !is_client_id(id) {
            return Err(ServiceError::invalid_request(
                "a client id is 1 to 128 characters of letters, digits, '.', '_' and '-'",
            ));
        }
        if id == WEB_CLIENT_ID || id == PUBLIC_CLIENT_ID {
            return Err(ServiceError::Conflict(format!("{id} is a built-in client")));
        }
        let secret = (!public)
            .then(|| random_bytes::<32>().map(|b| B64.encode(b)))
            .transpose()?;
        let record = ClientRecord {
            id: id.to_owned(),
            secret_hash: secret.as_deref().map(secret_hash),
            scope: scope.split_whitespace().collect::<Vec<_>>().join(" "),
            created_at: self.now(),
        };
        match self.store.insert_client(&record).await {
            Err(StoreError::Conflict(_)) => {
                Err(ServiceError::Conflict(format!("client {id} exists")))
            }
            other => other.map_err(Into::into),
        }?;
        Ok(NewClient {
            client: ClientView::from(&record),
            secret,
        })
    }

    pub async fn list_clients(&self) -> Result<Vec<ClientView>, ServiceError> {
        Ok(self
            .store
            .list_clients()
            .await?
            .iter()
            .map(ClientView::from)
            .collect())
    }

    /// `latchkey client remove`: the client and every session it opened go.
    pub async fn remove_client(&self, id: &str) -> Result<(), ServiceError> {
        let now = self.now();
        let removed = self.store.remove_client(id, now).await?;
        self.wake_feed();
        self.clients.forget(id);
        if !removed {
            return Err(ServiceError::NotFound(format!("no client {id}")));
        }
        self.audit(
            AuditRecord::new(AuditEvent::ClientRemoved, now)
                .detail(format!("client_id={id}; its sessions are revoked")),
        )
        .await;
        Ok(())
    }
}

/// What `client add` accepts as a client id: 1 to 128 letters, digits, '.',
/// '_' and '-'.
fn is_client_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= CLIENT_ID_MAX
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_must_lie_within_the_allowed() {
        assert_eq!(grant_scope(None, " a  b ").unwrap(), "a b");
        assert_eq!(grant_scope(Some("b"), "a b").unwrap(), "b");
        assert_eq!(grant_scope(Some("b b a"), "a b").unwrap(), "b a");
        assert_eq!(grant_scope(Some(""), "a b").unwrap(), "");
        assert!(matches!(
            grant_scope(Some("c"), "a b"),
            Err(ServiceError::InvalidScope)
        ));
        assert!(matches!(
            grant_scope(Some("a"), ""),
            Err(ServiceError::InvalidScope)
        ));
    }
}
