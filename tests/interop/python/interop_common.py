"""What the interop scripts share: the server and credentials to use, checks
that stop the run with a clear message, and the RFC 8414 discovery step.

The scripts are run by crates/latchkey-server/tests/api/interop.rs against a
real `latchkey serve`; by hand, set the LATCHKEY_* variables named in ENV.
"""

import json
import os
import sys
import traceback
import urllib.request

ENV = {
    "url": "LATCHKEY_URL",
    "audience": "LATCHKEY_AUDIENCE",
    "username": "LATCHKEY_USERNAME",
    "password": "LATCHKEY_PASSWORD",
    "user_id": "LATCHKEY_USER_ID",
    "client_id": "LATCHKEY_CLIENT_ID",
    "client_secret": "LATCHKEY_CLIENT_SECRET",
    "client_scope": "LATCHKEY_CLIENT_SCOPE",
    "public_client_id": "LATCHKEY_PUBLIC_CLIENT_ID",
}

INSTALL = "pip install -r tests/interop/requirements.txt"
TIMEOUT = 10


class Failure(Exception):
    """A check failed: latchkey (or the test) departs from the standard."""


def settings():
    missing = [var for var in ENV.values() if not os.environ.get(var)]
    if missing:
        sys.exit(f"interop: set {', '.join(missing)} (see interop_common.py)")
    found = {key: os.environ[var] for key, var in ENV.items()}
    # The server's signing_alg, when not the default.
    found["alg"] = os.environ.get("LATCHKEY_SIGNING_ALG") or "EdDSA"
    return found


def check(condition, message):
    if not condition:
        raise Failure(message)


def equal(actual, expected, what):
    check(actual == expected, f"{what}: expected {expected!r}, got {actual!r}")


def media_type(headers):
    """The media type of a Content-Type header, without its parameters."""
    value = headers.get("Content-Type") or ""
    return value.split(";")[0].strip().lower()


def discover(url):
    """The RFC 8414 metadata of the issuer `url`, checked (§3.2, §3.3)."""
    well_known = f"{url}/.well-known/oauth-authorization-server"
    with urllib.request.urlopen(well_known, timeout=TIMEOUT) as response:
        equal(response.status, 200, f"GET {well_known} status")
        equal(
            media_type(response.headers),
            "application/json",
            "RFC 8414 §3.2: metadata Content-Type",
        )
        metadata = json.load(response)
    # RFC 8414 §3.3: the issuer MUST be identical to the one the URL was
    # built from, or clients must not use the metadata.
    equal(metadata.get("issuer"), url, "RFC 8414 §3.3: issuer")
    for member in (
        "token_endpoint",
        "revocation_endpoint",
        "introspection_endpoint",
        "jwks_uri",
        "grant_types_supported",
        "token_endpoint_auth_methods_supported",
    ):
        check(member in metadata, f"RFC 8414 §2: metadata has no {member!r}")
    return metadata


def run(name, checks):
    """Runs `checks` (a list of (description, function)) in order and exits
    non-zero at the first failure, naming it."""
    for description, function in checks:
        try:
            function()
        except Failure as failure:
            print(f"FAIL {name}: {description}: {failure}", file=sys.stderr)
            sys.exit(1)
        except Exception as error:  # a library refused what latchkey sent
            traceback.print_exc()
            print(
                f"FAIL {name}: {description}: {type(error).__module__}."
                f"{type(error).__name__}: {error}",
                file=sys.stderr,
            )
            sys.exit(1)
        print(f"ok   {name}: {description}")
    print(f"{name}: all {len(checks)} checks passed")
