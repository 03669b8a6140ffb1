//! The HTTP side: finding the token in a request, and answering a refusal
//! the way RFC 6750 §3 says (status, `WWW-Authenticate`, a JSON body).

use std::fmt;

use http::header::{AUTHORIZATION, CONTENT_TYPE, COOKIE, RETRY_AFTER, WWW_AUTHENTICATE};
use http::{HeaderMap, HeaderValue, StatusCode};

use crate::claims::Claims;
use crate::error::Error;
use crate::verifier::Verifier;

/// Why a request was refused, ready to become a response: 401 without a
/// token or with a bad one (a revoked session's included), 400 for a
/// malformed `Authorization` header, 403 when a scope is missing, 401 when
/// the login is not the kind or not as recent as the route needs, 503 when
/// the issuer's keys cannot be had or the revocation feed is down under
/// [`RefuseAll`](crate::FeedOutagePolicy::RefuseAll), 500 when the app was
/// wired without a verifier.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Rejection {
    /// No token at all: 401 with a bare `Bearer` challenge (RFC 6750 §3.1).
    MissingToken,
    /// Two `Authorization` headers, or `Bearer` without a token: 400
    /// `invalid_request`.
    InvalidRequest(&'static str),
    /// The token was refused: 401 `invalid_token`.
    InvalidToken(Error),
    /// The token lacks these (space-separated) scopes: 403
    /// `insufficient_scope`.
    InsufficientScope(String),
    /// The user's login is not enough for this route (RFC 9470): 401
    /// `insufficient_user_authentication`, the challenge naming the
    /// methods missing (`acr_values`, the `amr` values to log in with) and
    /// the oldest login allowed (`max_age`, seconds).
    InsufficientUserAuthentication {
        /// The `amr` methods the login lacks (empty: none).
        acr_values: Vec<String>,
        /// The oldest login allowed, in seconds, when it was too old.
        max_age: Option<u64>,
    },
    /// The issuer's keys cannot be fetched, or the revocation feed cannot
    /// be trusted and the policy refuses every token: 503, try again.
    Unavailable(Error),
    /// A [`Claims`] extractor ran with neither an [`AuthLayer`](crate::AuthLayer)
    /// in front of it nor a [`Verifier`] extension: 500.
    NotConfigured,
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::MissingToken => f.write_str("no access token"),
            Self::InvalidRequest(why) => f.write_str(why),
            Self::InvalidToken(e) | Self::Unavailable(e) => e.fmt(f),
            Self::InsufficientScope(scope) => write!(f, "the token lacks the scope {scope:?}"),
            Self::InsufficientUserAuthentication { .. } => f.write_str(&self.description()),
            Self::NotConfigured => {
                f.write_str("no AuthLayer or Verifier extension is in front of this handler")
            }
        }
    }
}

impl std::error::Error for Rejection {}

impl From<Error> for Rejection {
    fn from(e: Error) -> Self {
        if e.is_invalid_token() {
            Self::InvalidToken(e)
        } else {
            Self::Unavailable(e)
        }
    }
}

impl Rejection {
    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::MissingToken
            | Self::InvalidToken(_)
            | Self::InsufficientUserAuthentication { .. } => StatusCode::UNAUTHORIZED,
            Self::InvalidRequest(_) => StatusCode::BAD_REQUEST,
            Self::InsufficientScope(_) => StatusCode::FORBIDDEN,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::NotConfigured => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The `error` code of the body.
    pub fn code(&self) -> &'static str {
        match self {
            Self::MissingToken | Self::InvalidToken(_) => "invalid_token",
            Self::InvalidRequest(_) => "invalid_request",
            Self::InsufficientScope(_) => "insufficient_scope",
            Self::InsufficientUserAuthentication { .. } => "insufficient_user_authentication",
            Self::Unavailable(_) => "temporarily_unavailable",
            Self::NotConfigured => "server_error",
        }
    }

    /// The `error_description` of the body: fixed texts that never echo
    /// what the request sent.
    pub fn description(&self) -> String {
        match self {
            Self::MissingToken => "an access token is required".into(),
            Self::InvalidRequest(why) => (*why).into(),
            Self::InvalidToken(e) | Self::Unavailable(e) => e.description().into(),
            Self::InsufficientScope(scope) => format!("the access token lacks the scope {scope}"),
            Self::InsufficientUserAuthentication { acr_values, .. } if !acr_values.is_empty() => {
                format!("a login with {} is required", acr_values.join(" "))
            }
            Self::InsufficientUserAuthentication { .. } => "a more recent login is required".into(),
            Self::NotConfigured => "internal error".into(),
        }
    }

    /// The `WWW-Authenticate` challenge, if the status has one.
    pub fn challenge(&self) -> Option<String> {
        match self {
            Self::MissingToken => Some("Bearer".into()),
            Self::InvalidRequest(_) => Some(r#"Bearer error="invalid_request""#.into()),
            Self::InvalidToken(e) => Some(format!(
                r#"Bearer error="invalid_token", error_description="{}""#,
                e.description()
            )),
            Self::InsufficientScope(scope) => Some(format!(
                r#"Bearer error="insufficient_scope", scope="{scope}""#
            )),
            Self::InsufficientUserAuthentication {
                acr_values,
                max_age,
            } => {
                let mut challenge = format!(
                    r#"Bearer error="insufficient_user_authentication", error_description="{}""#,
                    self.description()
                );
                if !acr_values.is_empty() {
                    challenge.push_str(&format!(r#", acr_values="{}""#, acr_values.join(" ")));
                }
                if let Some(max_age) = max_age {
                    challenge.push_str(&format!(r#", max_age="{max_age}""#));
                }
                Some(challenge)
            }
            Self::Unavailable(_) | Self::NotConfigured => None,
        }
    }

    /// The whole response, for any body type made from a `String` (axum's
    /// `Body`, `http_body_util::Full`, ...).
    pub fn to_response<B: From<String>>(&self) -> http::Response<B> {
        match self {
            Self::InvalidToken(e) => tracing::debug!(error = %e, "access token refused"),
            Self::Unavailable(e) => tracing::warn!(error = %e, "access token not checked"),
            Self::NotConfigured => tracing::error!("{self}"),
            _ => {}
        }
        let body = serde_json::json!({
            "error": self.code(),
            "error_description": self.description(),
        })
        .to_string();
        let mut response = http::Response::new(B::from(body));
        *response.status_mut() = self.status();
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if let Some(challenge) = self.challenge() {
            if let Ok(value) = HeaderValue::from_str(&challenge) {
                headers.insert(WWW_AUTHENTICATE, value);
            }
        }
        if matches!(self, Self::Unavailable(_)) {
            headers.insert(RETRY_AFTER, HeaderValue::from_static("5"));
        }
        response
    }
}

impl axum::response::IntoResponse for Rejection {
    fn into_response(self) -> axum::response::Response {
        self.to_response()
    }
}

/// Finds the token: the `Authorization: Bearer` header (RFC 6750 §2.1),
/// else the cookie named `cookie`. `Ok(None)` when there is none.
pub(crate) fn find_token<'h>(
    headers: &'h HeaderMap,
    cookie: Option<&str>,
) -> Result<Option<&'h str>, Rejection> {
    let mut authorization = headers.get_all(AUTHORIZATION).iter();
    if let Some(value) = authorization.next() {
        if authorization.next().is_some() {
            return Err(Rejection::InvalidRequest(
                "more than one Authorization header",
            ));
        }
        let text = value
            .to_str()
            .map_err(|_| Rejection::InvalidRequest("the Authorization header is not ASCII"))?;
        let (scheme, rest) = text.split_once(' ').unwrap_or((text, ""));
        if scheme.eq_ignore_ascii_case("bearer") {
            let token = rest.trim();
            if token.is_empty() || token.contains(' ') {
                return Err(Rejection::InvalidRequest(
                    "the Authorization header has no single bearer token",
                ));
            }
            return Ok(Some(token));
        }
        // Another scheme: not ours to judge; a cookie may still carry one.
    }
    let Some(name) = cookie else {
        return Ok(None);
    };
    for value in headers.get_all(COOKIE) {
        let Ok(text) = value.to_str() else { continue };
        for pair in text.split(';') {
            if let Some((k, v)) = pair.trim().split_once('=') {
                if k == name && !v.is_empty() {
                    return Ok(Some(v.trim_matches('"')));
                }
            }
        }
    }
    Ok(None)
}

impl Verifier {
    /// Finds the request's token (see
    /// [`token_cookie`](crate::VerifierBuilder::token_cookie)) and verifies
    /// it; what the layer and the extractors do, for other frameworks.
    ///
    /// # Errors
    ///
    /// The refusal, ready to answer.
    pub async fn verify_request(&self, headers: &HeaderMap) -> Result<Claims, Rejection> {
        match find_token(headers, self.token_cookie())? {
            Some(token) => Ok(self.verify(token).await?),
            None => Err(Rejection::MissingToken),
        }
    }
}

/// Checks that `claims` hold every scope of `scopes`; the refusal names
/// them all (RFC 6750 §3 `scope`).
pub(crate) fn check_scopes(claims: &Claims, scopes: &[String]) -> Result<(), Rejection> {
    if scopes.iter().all(|s| claims.has_scope(s)) {
        Ok(())
    } else {
        Err(Rejection::InsufficientScope(scopes.join(" ")))
    }
}

impl Claims {
    /// `Ok` when the token has `scope`; else the 403 `insufficient_scope`
    /// refusal, so that a handler can say `claims.require_scope("x")?;`.
    ///
    /// # Errors
    ///
    /// [`Rejection::InsufficientScope`].
    pub fn require_scope(&self, scope: &str) -> Result<(), Rejection> {
        if self.has_scope(scope) {
            Ok(())
        } else {
            Err(Rejection::InsufficientScope(scope.to_owned()))
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.append(*k, HeaderValue::from_static(v));
        }
        map
    }

    #[test]
    fn the_token_is_found_in_the_header_then_the_cookie() {
        let c = Some("accessToken");
        let h = headers(&[("authorization", "Bearer abc")]);
        assert_eq!(find_token(&h, c).unwrap(), Some("abc"));
        let h = headers(&[("authorization", "bearer  abc ")]);
        assert_eq!(find_token(&h, None).unwrap(), Some("abc"));
        let h = headers(&[
            ("authorization", "Bearer abc"),
            ("cookie", "accessToken=xyz"),
        ]);
        assert_eq!(find_token(&h, c).unwrap(), Some("abc"));
        let h = headers(&[("cookie", "a=1; accessToken=xyz; b=2")]);
        assert_eq!(find_token(&h, c).unwrap(), Some("xyz"));
        assert_eq!(find_token(&h, None).unwrap(), None);
        assert_eq!(find_token(&h, Some("other")).unwrap(), None);
        let h = headers(&[("authorization", "Basic dXNlcjpwYXNz")]);
        assert_eq!(find_token(&h, c).unwrap(), None);
        assert_eq!(find_token(&HeaderMap::new(), c).unwrap(), None);
    }

    #[test]
    fn malformed_authorization_is_a_bad_request() {
        for h in [
            headers(&[("authorization", "Bearer")]),
            headers(&[("authorization", "Bearer a b")]),
            headers(&[("authorization", "Bearer a"), ("authorization", "Bearer b")]),
        ] {
            let r = find_token(&h, None).unwrap_err();
            assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        }
    }

    #[test]
    fn refusals_follow_rfc_6750() {
        let r: http::Response<String> = Rejection::MissingToken.to_response();
        assert_eq!(r.status(), 401);
        assert_eq!(r.headers()[WWW_AUTHENTICATE], "Bearer");
        let body: serde_json::Value = serde_json::from_str(r.body()).unwrap();
        assert_eq!(body["error"], "invalid_token");
        assert_eq!(body.as_object().unwrap().len(), 2);

        let r: http::Response<String> = Rejection::from(Error::Expired).to_response();
        assert_eq!(r.status(), 401);
        let challenge = r.headers()[WWW_AUTHENTICATE].to_str().unwrap();
        assert!(challenge.starts_with(r#"Bearer error="invalid_token""#));

        let r: http::Response<String> =
            Rejection::InsufficientScope("posts:write".into()).to_response();
        assert_eq!(r.status(), 403);
        assert_eq!(
            r.headers()[WWW_AUTHENTICATE],
            r#"Bearer error="insufficient_scope", scope="posts:write""#
        );

        let unavailable = Error::KeysUnavailable(crate::FetchError::NoUsableKeys {
            url: "http://x".into(),
        });
        let r: http::Response<String> = Rejection::from(unavailable).to_response();
        assert_eq!(r.status(), 503);
        assert!(r.headers().get(WWW_AUTHENTICATE).is_none());
    }
}
