"""latchkey as an OAuth 2.0 authorization server, driven by Authlib's client
(`authlib.integrations.requests_client.OAuth2Session`): the password grant
with client_secret_basic and client_secret_post, refresh with rotation,
revocation (RFC 7009) seen through introspection (RFC 7662), the public and
client_credentials cases, and the RFC 6749 §5.2 error names, statuses and
content types a client library relies on.

Exits non-zero, naming the first check that failed.
"""

import base64
from urllib.parse import parse_qs

from authlib.integrations.base_client import OAuthError
from authlib.integrations.requests_client import OAuth2Session

from interop_common import TIMEOUT, check, discover, equal, media_type, run, settings

S = settings()
META = discover(S["url"])
TOKEN = META["token_endpoint"]
REVOKE = META["revocation_endpoint"]
INTROSPECT = META["introspection_endpoint"]


def session(client_id, client_secret=None, method="client_secret_basic", **kwargs):
    """An Authlib session that keeps every response it gets in `.seen`."""
    s = OAuth2Session(
        client_id,
        client_secret,
        token_endpoint_auth_method=method,
        revocation_endpoint_auth_method=method,
        default_timeout=TIMEOUT,
        **kwargs,
    )
    s.seen = []
    s.hooks["response"].append(lambda r, *a, **k: s.seen.append(r))
    return s


def confidential(method, **kwargs):
    return session(S["client_id"], S["client_secret"], method, **kwargs)


def token_response(s, what):
    """RFC 6749 §5.1: 200, application/json, never cached."""
    r = s.seen[-1]
    equal(r.status_code, 200, f"{what}: status")
    equal(media_type(r.headers), "application/json", f"{what}: RFC 6749 §5.1 Content-Type")
    cache = [d.strip().lower() for d in r.headers.get("Cache-Control", "").split(",")]
    check("no-store" in cache, f"{what}: RFC 6749 §5.1 wants Cache-Control: no-store, got {cache}")
    equal(r.headers.get("Pragma", "").lower(), "no-cache", f"{what}: RFC 6749 §5.1 Pragma")
    return r


def issued(token, what, scope, refresh=True):
    """The members of a successful token response (RFC 6749 §5.1)."""
    check(isinstance(token.get("access_token"), str) and token["access_token"],
          f"{what}: no access_token")
    # §7.1 / RFC 6750 §4: the type name is case-insensitive.
    equal(str(token.get("token_type")).lower(), "bearer", f"{what}: token_type")
    check(isinstance(token.get("expires_in"), int) and token["expires_in"] > 0,
          f"{what}: expires_in should be a positive integer, got {token.get('expires_in')!r}")
    if refresh:
        check(isinstance(token.get("refresh_token"), str) and token["refresh_token"],
              f"{what}: no refresh_token")
    else:
        # RFC 6749 §4.4.3: a refresh token SHOULD NOT be included.
        check("refresh_token" not in token, f"{what}: client_credentials gave a refresh_token")
    equal(token.get("scope"), scope, f"{what}: scope")


def client_auth_sent(s, method):
    """The request really authenticated the way `method` says."""
    request = s.seen[-1].request
    body = parse_qs(request.body if isinstance(request.body, str) else request.body.decode())
    header = request.headers.get("Authorization", "")
    if method == "client_secret_basic":
        check(header.startswith("Basic "), f"Authlib sent no HTTP Basic header: {header!r}")
        check("client_secret" not in body, "client_secret_basic also sent a body secret")
        ident, _, _ = base64.b64decode(header[6:]).decode().partition(":")
        equal(ident, s.client_id, "HTTP Basic user")
    else:
        check(not header, f"{method} sent an Authorization header {header!r}")
        equal(body.get("client_id"), [s.client_id], "client_id in the body")
        check(("client_secret" in body) == (method == "client_secret_post"),
              f"{method}: client_secret in the body is {'client_secret' in body}")


def introspect(token):
    """RFC 7662 §2.2: 200, application/json, a boolean `active`."""
    s = confidential("client_secret_basic")
    r = s.introspect_token(INTROSPECT, token=token)
    equal(r.status_code, 200, "introspection status")
    equal(media_type(r.headers), "application/json", "RFC 7662 §2.2 Content-Type")
    answer = r.json()
    check(isinstance(answer.get("active"), bool),
          f"RFC 7662 §2.2: active must be a boolean, got {answer.get('active')!r}")
    if not answer["active"]:
        # RFC 7662 §2.2: SHOULD NOT say more about a token that is not active.
        equal(answer, {"active": False}, "RFC 7662 §2.2: an inactive token's answer")
    return answer


def oauth_error(s, expected, status, call, what):
    """The call must raise Authlib's OAuthError named `expected`, from a
    response RFC 6749 §5.2 allows."""
    try:
        call()
    except OAuthError as error:
        equal(error.error, expected, f"{what}: RFC 6749 §5.2 error code")
        r = s.seen[-1]
        equal(r.status_code, status, f"{what}: RFC 6749 §5.2 status")
        equal(media_type(r.headers), "application/json", f"{what}: RFC 6749 §5.2 Content-Type")
        check(set(r.json()) <= {"error", "error_description", "error_uri"},
              f"{what}: RFC 6749 §5.2 names only error, error_description, error_uri: {r.json()}")
        return r
    raise AssertionError(f"{what}: Authlib raised no OAuthError (expected {expected!r})")


def password_refresh_revoke(method):
    s = confidential(method, scope="read")
    first = s.fetch_token(TOKEN, grant_type="password", username=S["username"], password=S["password"])
    token_response(s, f"{method} password grant")
    client_auth_sent(s, method)
    issued(first, f"{method} password grant", "read")

    info = introspect(first["access_token"])
    equal(info["active"], True, "a fresh access token is active")
    equal(info.get("client_id"), S["client_id"], "introspection client_id")
    equal(info.get("username"), S["username"], "introspection username")
    equal(info.get("sub"), S["user_id"], "introspection sub")
    equal(info.get("scope"), "read", "introspection scope")
    equal(info.get("iss"), S["url"], "introspection iss")
    equal(str(info.get("token_type")).lower(), "bearer", "introspection token_type")
    for claim in ("exp", "iat"):
        check(isinstance(info.get(claim), int), f"RFC 7662 §2.2: {claim} must be a number: {info}")
    sid = info.get("sid")
    check(isinstance(sid, str) and sid, f"introspection has no sid: {info}")
    equal(introspect(first["refresh_token"])["active"], True, "a fresh refresh token is active")

    # Authlib as a client of a protected resource (RFC 6750 §2.1 header).
    r = s.get(f"{S['url']}/v1/me")
    equal(r.status_code, 200, f"GET /v1/me with the token ({r.text})")
    equal(r.json().get("id"), S["user_id"], "GET /v1/me id")

    second = s.refresh_token(TOKEN, refresh_token=first["refresh_token"])
    token_response(s, f"{method} refresh")
    client_auth_sent(s, method)
    issued(second, f"{method} refresh", "read")
    check(second["refresh_token"] != first["refresh_token"], "refresh did not rotate the refresh token")
    check(second["access_token"] != first["access_token"], "refresh gave the same access token")
    equal(introspect(second["access_token"]).get("sid"), sid, "the refreshed token's session")

    r = s.revoke_token(REVOKE, token=second["refresh_token"], token_type_hint="refresh_token")
    equal(r.status_code, 200, "RFC 7009 §2.2 revocation status")
    client_auth_sent(s, method)
    equal(introspect(second["refresh_token"])["active"], False, "a revoked refresh token is inactive")
    equal(introspect(second["access_token"])["active"], False,
          "the access token of a revoked session is inactive (docs/reference.md §7: at once)")
    oauth_error(s, "invalid_grant", 400,
                lambda: s.refresh_token(TOKEN, refresh_token=second["refresh_token"]),
                "refresh with a revoked token")
    s.token = second
    r = s.get(f"{S['url']}/v1/me")
    equal(r.status_code, 401, "RFC 6750 §3.1: a revoked session's token at /v1/me")
    challenge = r.headers.get("WWW-Authenticate", "")
    check(challenge.startswith("Bearer") and 'error="invalid_token"' in challenge,
          f'RFC 6750 §3.1: WWW-Authenticate should be Bearer error="invalid_token", got {challenge!r}')

    # RFC 7009 §2.2: an unknown or already revoked token is still 200.
    r = s.revoke_token(REVOKE, token=second["refresh_token"], token_type_hint="refresh_token")
    equal(r.status_code, 200, "RFC 7009 §2.2: revoking again")
    r = s.revoke_token(REVOKE, token="not-a-token")
    equal(r.status_code, 200, "RFC 7009 §2.2: revoking an unknown token")


def revoke_access_token():
    s = confidential("client_secret_basic")
    token = s.fetch_token(TOKEN, grant_type="password", username=S["username"], password=S["password"])
    r = s.revoke_token(REVOKE, token=token["access_token"], token_type_hint="access_token")
    equal(r.status_code, 200, "RFC 7009 §2.2 status")
    equal(introspect(token["access_token"])["active"], False, "a revoked access token is inactive")


def wrong_password():
    s = confidential("client_secret_basic")
    oauth_error(s, "invalid_grant", 400,
                lambda: s.fetch_token(TOKEN, grant_type="password", username=S["username"],
                                      password=S["password"] + "!"),
                "wrong password")
    oauth_error(s, "invalid_grant", 400,
                lambda: s.fetch_token(TOKEN, grant_type="password", username="nobody-" + S["username"],
                                      password=S["password"]),
                "unknown user")


def bad_client_secret():
    for method in ("client_secret_basic", "client_secret_post"):
        s = session(S["client_id"], S["client_secret"] + "x", method)
        r = oauth_error(s, "invalid_client", 401,
                        lambda: s.fetch_token(TOKEN, grant_type="password", username=S["username"],
                                              password=S["password"]),
                        f"bad client secret ({method})")
        if method == "client_secret_basic":
            # RFC 6749 §5.2: MUST answer 401 with WWW-Authenticate matching
            # the scheme the client used.
            challenge = r.headers.get("WWW-Authenticate", "")
            check(challenge.lower().startswith("basic"),
                  f"RFC 6749 §5.2: WWW-Authenticate should be a Basic challenge, got {challenge!r}")
    s = session("no-such-client", "secret", "client_secret_basic")
    oauth_error(s, "invalid_client", 401,
                lambda: s.fetch_token(TOKEN, grant_type="client_credentials"),
                "unknown client")


def clients_stay_apart():
    """A client may neither refresh nor revoke another client's token, nor
    introspect without proving who it is."""
    mine = confidential("client_secret_basic")
    token = mine.fetch_token(TOKEN, grant_type="password", username=S["username"], password=S["password"])
    other = session(S["public_client_id"], None, "none")
    # RFC 6749 §6 and §5.2: the refresh token was issued to another client.
    oauth_error(other, "invalid_grant", 400,
                lambda: other.refresh_token(TOKEN, refresh_token=token["refresh_token"]),
                "refreshing another client's token")
    # RFC 7009 §2.1: the token was not issued to the client asking.
    r = other.revoke_token(REVOKE, token=token["refresh_token"])
    equal(r.status_code, 400, f"RFC 7009 §2.1: revoking another client's token ({r.text})")
    equal(r.json().get("error"), "unauthorized_client", "RFC 7009 §2.2.1 error")
    equal(introspect(token["access_token"])["active"], True, "a refused revocation changes nothing")
    # RFC 7009 §2.1: client credentials are checked first.
    wrong = session(S["client_id"], S["client_secret"] + "x", "client_secret_basic")
    r = wrong.revoke_token(REVOKE, token=token["refresh_token"])
    equal(r.status_code, 401, "RFC 7009 §2.1 / RFC 6749 §5.2: revocation with a bad secret")
    equal(r.json().get("error"), "invalid_client", "revocation with a bad secret")
    equal(introspect(token["refresh_token"])["active"], True, "a refused revocation changes nothing")
    # RFC 7662 §2.1 and §2.3: the caller must be authorized; bad credentials are 401.
    r = wrong.introspect_token(INTROSPECT, token=token["access_token"])
    equal(r.status_code, 401, "RFC 7662 §2.3: introspection with a bad secret")
    equal(r.json().get("error"), "invalid_client", "introspection with a bad secret")
    check(not r.json().get("active"), f"introspection with a bad secret answered {r.json()}")
    mine.revoke_token(REVOKE, token=token["refresh_token"])


def other_errors():
    s = confidential("client_secret_basic")
    oauth_error(s, "unsupported_grant_type", 400,
                lambda: s.fetch_token(TOKEN, grant_type="urn:ietf:params:oauth:grant-type:device_code",
                                      device_code="x"),
                "a grant latchkey does not do")
    oauth_error(s, "invalid_scope", 400,
                lambda: s.fetch_token(TOKEN, grant_type="password", username=S["username"],
                                      password=S["password"], scope="read not-granted"),
                "a scope the client may not have")
    oauth_error(s, "invalid_request", 400,
                lambda: s.fetch_token(TOKEN, grant_type="password", username=S["username"]),
                "password grant without a password")


def client_credentials():
    s = confidential("client_secret_post")
    token = s.fetch_token(TOKEN, grant_type="client_credentials")
    token_response(s, "client_credentials")
    issued(token, "client_credentials", S["client_scope"], refresh=False)
    info = introspect(token["access_token"])
    equal(info["active"], True, "a client_credentials token is active")
    equal(info.get("sub"), S["client_id"], "client_credentials sub")
    check("sid" not in info and "username" not in info, f"client_credentials: no sid, no username: {info}")


def public_client():
    s = session(S["public_client_id"], None, "none")
    token = s.fetch_token(TOKEN, grant_type="password", username=S["username"], password=S["password"])
    token_response(s, "public password grant")
    client_auth_sent(s, "none")
    check(token.get("access_token") and token.get("refresh_token"), f"public client: {token}")
    equal(introspect(token["access_token"]).get("client_id"), S["public_client_id"], "public client_id")
    second = s.refresh_token(TOKEN, refresh_token=token["refresh_token"])
    token_response(s, "public refresh")
    r = s.revoke_token(REVOKE, token=second["refresh_token"])
    equal(r.status_code, 200, "public revocation status")
    equal(introspect(second["access_token"])["active"], False, "after a public client's revocation")
    # RFC 6749 §4.4.2: client_credentials needs an authenticated client.
    oauth_error(s, "invalid_client", 401,
                lambda: s.fetch_token(TOKEN, grant_type="client_credentials"),
                "client_credentials for a public client")


run("authlib", [
    ("password, refresh, revoke with client_secret_basic",
     lambda: password_refresh_revoke("client_secret_basic")),
    ("password, refresh, revoke with client_secret_post",
     lambda: password_refresh_revoke("client_secret_post")),
    ("revoking an access token", revoke_access_token),
    ("a wrong password is invalid_grant", wrong_password),
    ("a bad client secret is invalid_client", bad_client_secret),
    ("clients cannot use one another's tokens", clients_stay_apart),
    ("unsupported_grant_type, invalid_scope, invalid_request", other_errors),
    ("client_credentials", client_credentials),
    ("a public client (auth method none)", public_client),
])
