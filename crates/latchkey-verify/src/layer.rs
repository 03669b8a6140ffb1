//! The tower layer that lets only requests with a valid token through, and
//! the axum extractors handlers take the claims with.

use std::future::Future;
use std::marker::PhantomData;
use std::ops::Deref;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::{FromRequestParts, OptionalFromRequestParts};
use http::request::Parts;
use http::{Request, Response};
use tower::{Layer, Service};

use crate::claims::Claims;
use crate::request::{check_scopes, Rejection};
use crate::step_up::AuthRequirement;
use crate::verifier::Verifier;

/// A tower [`Layer`] that answers every request without a valid token
/// (see [`Rejection`]) and hands the others on with their [`Claims`] in the
/// request extensions, where the [`Claims`] extractor finds them.
///
/// Made by [`Verifier::layer`]. In axum, apply it with
/// [`Router::route_layer`](axum::Router::route_layer) so that unknown paths
/// still answer 404 rather than 401.
#[derive(Clone, Debug)]
#[must_use]
pub struct AuthLayer {
    verifier: Verifier,
    scopes: Arc<[String]>,
    login: Arc<AuthRequirement>,
}

impl Verifier {
    /// A layer that lets only requests with a valid token through.
    pub fn layer(&self) -> AuthLayer {
        AuthLayer {
            verifier: self.clone(),
            scopes: Arc::from(Vec::new()),
            login: Arc::new(AuthRequirement::default()),
        }
    }
}

impl AuthLayer {
    /// Also requires `scope`: a valid token without it is answered 403
    /// `insufficient_scope`. Calls add up (every scope is required).
    pub fn require_scope(self, scope: impl Into<String>) -> Self {
        let mut scopes = self.scopes.to_vec();
        scopes.push(scope.into());
        Self {
            scopes: scopes.into(),
            ..self
        }
    }

    /// Also requires that the user logged in with the method `amr` (RFC
    /// 8176, e.g. `"otp"`): a valid token without it is answered 401
    /// `insufficient_user_authentication` with `acr_values` (RFC 9470).
    /// Calls add up. For any second factor, not one,
    /// [`AuthLayer::require_second_factor`].
    pub fn require_amr(self, amr: impl Into<String>) -> Self {
        let login = (*self.login).clone().amr(amr);
        Self {
            login: Arc::new(login),
            ..self
        }
    }

    /// Also requires a login with more than a password: TOTP, a recovery
    /// code or a passkey, whichever (`amr` `otp`, `mfa` or `hwk`); a
    /// password alone is answered 401 `insufficient_user_authentication`
    /// with `acr_values="mfa"` (RFC 9470).
    pub fn require_second_factor(self) -> Self {
        let login = (*self.login).clone().second_factor();
        Self {
            login: Arc::new(login),
            ..self
        }
    }

    /// Also requires that the user logged in (`auth_time`) at most
    /// `max_age` ago: an older login is answered 401
    /// `insufficient_user_authentication` with `max_age` (RFC 9470).
    pub fn require_max_age(self, max_age: Duration) -> Self {
        let login = (*self.login).clone().max_age(max_age);
        Self {
            login: Arc::new(login),
            ..self
        }
    }
}

impl<S> Layer<S> for AuthLayer {
    type Service = Auth<S>;

    fn layer(&self, inner: S) -> Auth<S> {
        Auth {
            inner,
            verifier: self.verifier.clone(),
            scopes: self.scopes.clone(),
            login: self.login.clone(),
        }
    }
}

/// The service [`AuthLayer`] wraps around another.
#[derive(Clone, Debug)]
pub struct Auth<S> {
    inner: S,
    verifier: Verifier,
    scopes: Arc<[String]>,
    login: Arc<AuthRequirement>,
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for Auth<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    ReqBody: Send + 'static,
    ResBody: From<String>,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        // The ready service goes with this request; a clone stays for the
        // next (tower's usual dance).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let verifier = self.verifier.clone();
        let scopes = self.scopes.clone();
        let login = self.login.clone();
        // Only the parts are borrowed across the await: a body need not be
        // `Sync`.
        let (mut parts, body) = request.into_parts();
        Box::pin(async move {
            let checked = async {
                let claims = verifier.verify_request(&parts.headers).await?;
                check_scopes(&claims, &scopes)?;
                if !login.is_empty() {
                    login.check(&claims)?;
                }
                Ok::<_, Rejection>(claims)
            }
            .await;
            match checked {
                Ok(claims) => {
                    parts.extensions.insert(claims);
                    inner.call(Request::from_parts(parts, body)).await
                }
                Err(rejection) => Ok(rejection.to_response()),
            }
        })
    }
}

/// The claims the layer left, or (with an `Extension(verifier)` layer in
/// front instead) the token of this request verified now.
async fn claims_of(parts: &Parts) -> Result<Claims, Rejection> {
    if let Some(claims) = parts.extensions.get::<Claims>() {
        return Ok(claims.clone());
    }
    match parts.extensions.get::<Verifier>() {
        Some(verifier) => verifier.verify_request(&parts.headers).await,
        None => Err(Rejection::NotConfigured),
    }
}

/// A handler that takes `Claims` is only reached with a valid token.
///
/// The claims come from an [`AuthLayer`] in front of the route or, without
/// one, from verifying the request's token with the [`Verifier`] found in
/// the request extensions (`.layer(axum::Extension(verifier))`): then routes
/// whose handlers do not ask for `Claims` stay public.
impl<S: Send + Sync> FromRequestParts<S> for Claims {
    type Rejection = Rejection;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Rejection> {
        claims_of(parts).await
    }
}

/// `Option<Claims>`: `None` without a token, the claims with a valid one,
/// and still a 401 with a bad one.
impl<S: Send + Sync> OptionalFromRequestParts<S> for Claims {
    type Rejection = Rejection;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Option<Self>, Rejection> {
        match claims_of(parts).await {
            Ok(claims) => Ok(Some(claims)),
            Err(Rejection::MissingToken) => Ok(None),
            Err(other) => Err(other),
        }
    }
}

/// A scope, named by a type, for [`RequireScope`]; [`scope!`](crate::scope)
/// declares one.
pub trait Scope {
    /// The scope as it appears in the token's `scope` claim.
    const NAME: &'static str;
}

/// Declares a type naming a scope, for [`RequireScope`]:
/// `latchkey_verify::scope!(pub PostsWrite = "posts:write");`.
#[macro_export]
macro_rules! scope {
    ($vis:vis $name:ident = $scope:literal) => {
        #[doc = concat!("The `", $scope, "` scope.")]
        #[derive(Debug, Clone, Copy)]
        $vis struct $name;
        impl $crate::Scope for $name {
            const NAME: &'static str = $scope;
        }
    };
}

/// An extractor for claims that hold the scope `S`: 401 as [`Claims`] does
/// without a valid token, then 403 `insufficient_scope` without the scope.
/// Dereferences to the [`Claims`].
pub struct RequireScope<S> {
    /// The token's claims.
    pub claims: Claims,
    scope: PhantomData<fn() -> S>,
}

impl<S> Deref for RequireScope<S> {
    type Target = Claims;

    fn deref(&self) -> &Claims {
        &self.claims
    }
}

impl<S> std::fmt::Debug for RequireScope<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("RequireScope").field(&self.claims).finish()
    }
}

impl<St: Send + Sync, S: Scope> FromRequestParts<St> for RequireScope<S> {
    type Rejection = Rejection;

    async fn from_request_parts(parts: &mut Parts, _state: &St) -> Result<Self, Rejection> {
        let claims = claims_of(parts).await?;
        claims.require_scope(S::NAME)?;
        Ok(Self {
            claims,
            scope: PhantomData,
        })
    }
}
