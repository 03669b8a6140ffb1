"""latchkey's access tokens verified offline as a resource server would, with
PyJWT's `PyJWKClient`: the JWKS URL comes from the RFC 8414 document, the
token must be an RFC 9068 JWT (`typ: at+jwt`, EdDSA or the server's
LATCHKEY_SIGNING_ALG, the right `iss` and `aud`, the claims of §2.2 and
latchkey's `sid` and `scope`).

Exits non-zero, naming the first check that failed.
"""

import base64
import json
import urllib.request

import jwt
import requests

from interop_common import TIMEOUT, check, discover, equal, media_type, run, settings

S = settings()
META = discover(S["url"])
JWKS = None
PRIVATE_MEMBERS = {"d", "p", "q", "dp", "dq", "qi", "oth", "k"}
# RFC 9068 §2.2 and docs/reference.md §8.
REQUIRED = ["iss", "sub", "aud", "exp", "iat", "nbf", "jti", "client_id", "scope"]


def token(grant_type, **form):
    """A token straight from the token endpoint, the client authenticated
    with HTTP Basic."""
    r = requests.post(
        META["token_endpoint"],
        data={"grant_type": grant_type, **form},
        auth=(S["client_id"], S["client_secret"]),
        timeout=TIMEOUT,
    )
    equal(r.status_code, 200, f"{grant_type} grant status ({r.text})")
    return r.json()


def verify(access_token, audience=None, issuer=None, algorithms=None):
    """PyJWT's verification, keys from the discovered JWKS URL."""
    key = JWKS.get_signing_key_from_jwt(access_token)
    return jwt.decode_complete(
        access_token,
        key,
        algorithms=list(algorithms or [S["alg"]]),
        audience=audience or S["audience"],
        issuer=issuer or S["url"],
        options={"require": REQUIRED},
    )


def octets(jwk, member):
    value = jwk.get(member)
    check(isinstance(value, str) and "=" not in value,
          f"RFC 7515 §2: {member} must be unpadded base64url: {jwk}")
    return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))


def key_sizes(jwk):
    """The fixed and minimal lengths of RFC 7518 §6 and RFC 8037 §2, which
    some libraries enforce and a server gets wrong only for some keys."""
    kty = jwk.get("kty")
    if kty == "OKP":
        equal(jwk.get("crv"), "Ed25519", "RFC 8037 §2 crv")
        equal(len(octets(jwk, "x")), 32, "RFC 8037 §2: Ed25519 x length")
    elif kty == "EC":
        equal(jwk.get("crv"), "P-256", "RFC 7518 §6.2.1.1 crv")
        for member in ("x", "y"):
            equal(len(octets(jwk, member)), 32, f"RFC 7518 §6.2.1.2/3: P-256 {member} is the full 32 octets")
    elif kty == "RSA":
        n, e = octets(jwk, "n"), octets(jwk, "e")
        check(n[0] != 0 and e[0] != 0, "RFC 7518 §6.3.1.1/2: n and e use the minimum number of octets")
        check(len(n) >= 256, f"RFC 7518 §3.3: an RSA key of at least 2048 bits, got {len(n) * 8}")
    else:
        raise AssertionError(f"unexpected kty {kty!r}: {jwk}")


def jwks_document():
    """RFC 7517: a JSON key set with public keys only, each with a `kid`."""
    global JWKS
    with urllib.request.urlopen(META["jwks_uri"], timeout=TIMEOUT) as response:
        equal(response.status, 200, "JWKS status")
        check(
            media_type(response.headers) in ("application/json", "application/jwk-set+json"),
            f"RFC 7517 §8.5: JWKS Content-Type {response.headers.get('Content-Type')!r}",
        )
        document = json.load(response)
    keys = document.get("keys")
    check(isinstance(keys, list) and keys, f"RFC 7517 §5: no keys: {document}")
    kids = [k.get("kid") for k in keys]
    check(all(isinstance(k, str) and k for k in kids), f"a key without kid: {keys}")
    equal(len(set(kids)), len(kids), "distinct kids")
    for k in keys:
        leaked = PRIVATE_MEMBERS & set(k)
        check(not leaked, f"the JWKS publishes private key members {sorted(leaked)}: {k}")
        check(k.get("use", "sig") == "sig", f"RFC 7517 §4.2: use of a signing key: {k}")
        key_sizes(k)
    JWKS = jwt.PyJWKClient(META["jwks_uri"], timeout=TIMEOUT)
    check(len(JWKS.get_signing_keys()) == len(keys), "PyJWT could not use every key of the JWKS")


def password_grant_token():
    issued = token("password", username=S["username"], password=S["password"], scope="read")
    decoded = verify(issued["access_token"])
    header, claims = decoded["header"], decoded["payload"]
    # RFC 9068 §2.1 and §4: typ is at+jwt (or its full media type).
    check(
        str(header.get("typ")).lower() in ("at+jwt", "application/at+jwt"),
        f"RFC 9068 §2.1: header typ must be at+jwt, got {header.get('typ')!r}",
    )
    equal(header.get("alg"), S["alg"], "header alg")
    check(header.get("kid"), f"no kid in the header: {header}")
    equal(claims["sub"], S["user_id"], "sub (the user)")
    equal(claims["client_id"], S["client_id"], "RFC 9068 §2.2 client_id")
    equal(claims["scope"], "read", "RFC 9068 §2.2.3 scope")
    check(isinstance(claims.get("sid"), str) and claims["sid"], f"no sid: {claims}")
    check(isinstance(claims["jti"], str) and claims["jti"], f"jti: {claims['jti']!r}")
    for claim in ("exp", "iat", "nbf"):
        check(isinstance(claims[claim], int), f"{claim} must be a NumericDate: {claims[claim]!r}")
    check(abs(claims["exp"] - claims["iat"] - issued["expires_in"]) <= 1,
          f"exp - iat = {claims['exp'] - claims['iat']}, expires_in = {issued['expires_in']}")

    again = verify(token("password", username=S["username"], password=S["password"])["access_token"])
    check(again["payload"]["jti"] != claims["jti"], "two tokens share a jti (RFC 9068 §2.2)")
    check(again["payload"]["sid"] != claims["sid"], "two logins share a session")
    equal(again["payload"]["scope"], S["client_scope"], "scope when none was asked for")


def client_credentials_token():
    claims = verify(token("client_credentials")["access_token"])["payload"]
    equal(claims["sub"], S["client_id"], "client_credentials sub")
    equal(claims["client_id"], S["client_id"], "client_credentials client_id")
    check("sid" not in claims, f"client_credentials token has a sid: {claims}")


def refused(error_class, call, what):
    try:
        call()
    except error_class:
        return
    except jwt.PyJWTError as other:
        raise AssertionError(f"{what}: expected {error_class.__name__}, got {other!r}") from other
    raise AssertionError(f"{what}: PyJWT accepted it")


def verification_is_real():
    access = token("password", username=S["username"], password=S["password"])["access_token"]
    refused(jwt.InvalidAudienceError, lambda: verify(access, audience="https://other.example"),
            "another audience")
    refused(jwt.InvalidIssuerError, lambda: verify(access, issuer="https://other.example"),
            "another issuer")
    other = "RS256" if S["alg"] != "RS256" else "ES256"
    refused(jwt.InvalidAlgorithmError, lambda: verify(access, algorithms=(other,)),
            "an algorithm other than the key's")
    head, body, signature = access.split(".")
    forged = ".".join([head, body, ("A" if signature[0] != "A" else "B") + signature[1:]])
    refused(jwt.InvalidSignatureError, lambda: verify(forged), "a changed signature")


run("pyjwt", [
    ("the JWKS found through RFC 8414", jwks_document),
    ("a password grant's access token", password_grant_token),
    ("a client_credentials access token", client_credentials_token),
    ("wrong audience, issuer, algorithm and signature are refused", verification_is_real),
])
