"""Second factors (API.md §10) driven by third-party code: pyotp is the
authenticator app, requests the browser-less /v1 client, Authlib the OAuth
client. Enrolment from the otpauth:// URI, confirmation, the two-step /v1
login, a replayed code refused, a recovery code used once, and the token
endpoint's mfa_required answered with the mfa grant.

Exits non-zero, naming the first check that failed.
"""

import base64
import json
import time

import pyotp
import requests
from authlib.integrations.base_client import OAuthError
from authlib.integrations.requests_client import OAuth2Session

from interop_common import TIMEOUT, check, discover, equal, run, settings

S = settings()
URL = S["url"]
META = discover(URL)
TOKEN = META["token_endpoint"]
MFA_GRANT = "urn:latchkey:params:oauth:grant-type:mfa"
STATE = {}


def claims(jwt):
    """The payload of a JWT, unverified: these checks read what was signed."""
    payload = jwt.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def post(path, body, token=None):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return requests.post(f"{URL}{path}", json=body, headers=headers, timeout=TIMEOUT)


def password_login():
    r = post("/v1/auth/login", {"username": S["username"], "password": S["password"]})
    equal(r.status_code, 200, "login status")
    return r


def enrol():
    r = password_login()
    STATE["access"] = r.json()["access_token"]
    r = requests.post(f"{URL}/v1/me/totp", headers={"Authorization": f"Bearer {STATE['access']}"},
                      timeout=TIMEOUT)
    equal(r.status_code, 200, "POST /v1/me/totp status")
    body = r.json()
    app = pyotp.parse_uri(body["otpauth_uri"])
    check(isinstance(app, pyotp.TOTP), f"not a TOTP URI: {body['otpauth_uri']}")
    equal(app.secret, body["secret"], "the URI's secret is the one shown")
    equal(app.name, S["username"], "the URI's account")
    equal(app.issuer, "127.0.0.1", "the URI's issuer: the issuer's host")
    equal((app.digits, app.interval), (6, 30), "RFC 6238 defaults")
    STATE["app"] = app


def confirm():
    app = STATE["app"]
    # The previous step's code (one step of skew): the two logins below
    # then each have a step of their own, now's and the next.
    r = post("/v1/me/totp/confirm", {"code": app.at(time.time() - 30)}, STATE["access"])
    equal(r.status_code, 200, "confirm status")
    codes = r.json()["recovery_codes"]
    equal(len(codes), 10, "recovery codes")
    equal(len(set(codes)), 10, "distinct recovery codes")
    STATE["recovery"] = codes
    me = requests.get(f"{URL}/v1/me", headers={"Authorization": f"Bearer {STATE['access']}"},
                      timeout=TIMEOUT).json()
    equal(me["mfa"], {"totp": True, "passkeys": 0}, "GET /v1/me mfa")


def mfa_token():
    r = password_login()
    body = r.json()
    equal(body.get("mfa_required"), True, "a right password asks for the second step")
    equal(body.get("methods"), ["totp", "recovery_code"], "methods")
    check("set-cookie" not in {k.lower() for k in r.headers}, "no cookie before the second step")
    return body["mfa_token"]


def two_step_login():
    code = STATE["app"].now()
    r = post("/v1/auth/mfa", {"mfa_token": mfa_token(), "code": code})
    equal(r.status_code, 200, "second step status")
    check("accessToken" in r.cookies and "refreshToken" in r.cookies, "both cookies after the second step")
    equal(claims(r.json()["access_token"])["amr"], ["pwd", "otp"], "amr of a TOTP login")
    STATE["used"] = code


def replay_refused():
    r = post("/v1/auth/mfa", {"mfa_token": mfa_token(), "code": STATE["used"]})
    equal(r.status_code, 401, "a code used once, again")
    equal(r.json()["error"], "invalid_credentials", "a replayed code's error")


def recovery_code_once():
    code = STATE["recovery"][0]
    r = post("/v1/auth/mfa", {"mfa_token": mfa_token(), "recovery_code": code})
    equal(r.status_code, 200, "a recovery code's second step")
    equal(claims(r.json()["access_token"])["amr"], ["pwd", "mfa"], "amr of a recovery code")
    r = post("/v1/auth/mfa", {"mfa_token": mfa_token(), "recovery_code": code})
    equal(r.status_code, 401, "a recovery code used once, again")


def authlib_mfa_grant():
    s = OAuth2Session(S["public_client_id"], None, token_endpoint_auth_method="none",
                      default_timeout=TIMEOUT)
    seen = []
    s.hooks["response"].append(lambda r, *a, **k: seen.append(r))
    try:
        s.fetch_token(TOKEN, grant_type="password", username=S["username"], password=S["password"])
        raise AssertionError("the password grant of a user with TOTP gave tokens")
    except OAuthError as error:
        equal(error.error, "mfa_required", "the password grant's error")
    equal(seen[-1].status_code, 403, "mfa_required status")
    mfa = seen[-1].json()["mfa_token"]
    try:
        s.fetch_token(TOKEN, grant_type=MFA_GRANT, mfa_token=mfa, code="000000")
        raise AssertionError("a wrong code gave tokens")
    except OAuthError as error:
        equal(error.error, "invalid_grant", "a wrong code at the token endpoint")
    token = s.fetch_token(TOKEN, grant_type=MFA_GRANT, mfa_token=mfa,
                          code=STATE["app"].at(time.time() + 30))
    check(token.get("access_token") and token.get("refresh_token"), f"no tokens: {token}")
    equal(claims(token["access_token"])["amr"], ["pwd", "otp"], "amr at the token endpoint")
    # Authlib refreshes it like any other; the refresh keeps amr.
    again = s.refresh_token(TOKEN, refresh_token=token["refresh_token"])
    equal(claims(again["access_token"])["amr"], ["pwd", "otp"], "amr after a refresh")


run("mfa", [
    ("enrolment: the otpauth URI as pyotp reads it", enrol),
    ("confirmation: ten recovery codes, TOTP on", confirm),
    ("the two-step /v1 login with pyotp's code", two_step_login),
    ("a code is never accepted twice", replay_refused),
    ("a recovery code stands in once", recovery_code_once),
    ("Authlib: 403 mfa_required, then the mfa grant", authlib_mfa_grant),
])
