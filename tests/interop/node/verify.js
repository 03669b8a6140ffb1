// latchkey's access tokens verified by a resource server written with the
// `jose` package: createRemoteJWKSet on the jwks_uri of the RFC 8414
// document, jwtVerify pinned to typ at+jwt (RFC 9068), EdDSA (or the
// server's LATCHKEY_SIGNING_ALG), the issuer and the audience; and the same
// token refused when the expected audience, issuer, typ, algorithm or
// signature is not latchkey's.
//
// Run by crates/latchkey-server/tests/api/interop.rs against a real
// `latchkey serve`; by hand, set the LATCHKEY_* variables read below.
// Exits non-zero, naming the first check that failed.

import assert from 'node:assert/strict';
import { createRemoteJWKSet, customFetch, errors, jwtVerify } from 'jose';

const TIMEOUT_MS = 10_000;
// The server's signing_alg, when not the default.
const ALG = process.env.LATCHKEY_SIGNING_ALG || 'EdDSA';
const env = Object.fromEntries(
  ['URL', 'AUDIENCE', 'USERNAME', 'PASSWORD', 'USER_ID', 'CLIENT_ID', 'CLIENT_SECRET', 'CLIENT_SCOPE'].map(
    (name) => {
      const value = process.env[`LATCHKEY_${name}`];
      if (!value) {
        console.error(`interop: set LATCHKEY_${name}`);
        process.exit(2);
      }
      return [name.toLowerCase(), value];
    },
  ),
);

const mediaType = (response) => (response.headers.get('content-type') ?? '').split(';')[0].trim().toLowerCase();

async function discover() {
  const url = `${env.url}/.well-known/oauth-authorization-server`;
  const response = await fetch(url, { signal: AbortSignal.timeout(TIMEOUT_MS) });
  assert.equal(response.status, 200, `GET ${url}`);
  assert.equal(mediaType(response), 'application/json', 'RFC 8414 §3.2: metadata Content-Type');
  const metadata = await response.json();
  assert.equal(metadata.issuer, env.url, 'RFC 8414 §3.3: issuer');
  assert.ok(metadata.jwks_uri, 'RFC 8414 §2: jwks_uri');
  assert.ok(metadata.token_endpoint, 'RFC 8414 §2: token_endpoint');
  return metadata;
}

const metadata = await discover();

// The JWKS responses jose fetched, to check what the server sent.
const jwksResponses = [];
const JWKS = createRemoteJWKSet(new URL(metadata.jwks_uri), {
  timeoutDuration: TIMEOUT_MS,
  [customFetch]: async (...args) => {
    const response = await fetch(...args);
    jwksResponses.push(response);
    return response;
  },
});

async function token(form) {
  const basic = Buffer.from(
    `${encodeURIComponent(env.client_id)}:${encodeURIComponent(env.client_secret)}`,
  ).toString('base64');
  const response = await fetch(metadata.token_endpoint, {
    method: 'POST',
    headers: { authorization: `Basic ${basic}` },
    body: new URLSearchParams(form),
    signal: AbortSignal.timeout(TIMEOUT_MS),
  });
  const body = await response.text();
  assert.equal(response.status, 200, `token endpoint: ${body}`);
  return JSON.parse(body);
}

const expected = (overrides = {}) => ({
  issuer: env.url,
  audience: env.audience,
  typ: 'at+jwt',
  algorithms: [ALG],
  // RFC 9068 §2.2, and latchkey's scope (docs/reference.md §8).
  requiredClaims: ['iss', 'sub', 'aud', 'exp', 'iat', 'nbf', 'jti', 'client_id', 'scope'],
  ...overrides,
});

async function refused(access, overrides, code, claim, what) {
  try {
    await jwtVerify(access, JWKS, expected(overrides));
  } catch (error) {
    assert.equal(error.code, code, `${what}: jose error code (${error.message})`);
    if (claim !== undefined) assert.equal(error.claim, claim, `${what}: the claim jose names`);
    return;
  }
  assert.fail(`${what}: jose accepted the token`);
}

const checks = [
  [
    'a password grant access token verifies',
    async () => {
      const issued = await token({
        grant_type: 'password',
        username: env.username,
        password: env.password,
        scope: 'read',
      });
      const { payload, protectedHeader } = await jwtVerify(issued.access_token, JWKS, expected());
      assert.equal(jwksResponses.length, 1, 'jose fetched the JWKS once');
      assert.ok(
        ['application/json', 'application/jwk-set+json'].includes(mediaType(jwksResponses[0])),
        `RFC 7517 §8.5: JWKS Content-Type ${jwksResponses[0].headers.get('content-type')}`,
      );
      assert.equal(protectedHeader.typ, 'at+jwt', 'RFC 9068 §2.1: typ');
      assert.equal(protectedHeader.alg, ALG, 'alg');
      assert.ok(protectedHeader.kid, 'kid');
      assert.equal(payload.sub, env.user_id, 'sub');
      assert.equal(payload.client_id, env.client_id, 'client_id');
      assert.equal(payload.scope, 'read', 'scope');
      assert.equal(typeof payload.sid, 'string', 'sid');
      assert.equal(typeof payload.jti, 'string', 'jti');
    },
  ],
  [
    'a client_credentials access token verifies',
    async () => {
      const issued = await token({ grant_type: 'client_credentials' });
      const { payload } = await jwtVerify(issued.access_token, JWKS, expected());
      assert.equal(payload.sub, env.client_id, 'sub');
      assert.equal(payload.scope, env.client_scope, 'scope');
      assert.equal(payload.sid, undefined, 'no sid');
    },
  ],
  [
    'the wrong audience, issuer, typ, algorithm or signature is refused',
    async () => {
      const { access_token: access } = await token({
        grant_type: 'password',
        username: env.username,
        password: env.password,
      });
      await refused(
        access,
        { audience: 'urn:latchkey:someone-else' },
        errors.JWTClaimValidationFailed.code,
        'aud',
        'another audience',
      );
      await refused(
        access,
        { issuer: 'https://someone-else.example' },
        errors.JWTClaimValidationFailed.code,
        'iss',
        'another issuer',
      );
      await refused(access, { typ: 'JWT' }, errors.JWTClaimValidationFailed.code, 'typ', 'another typ');
      const otherAlg = ALG === 'RS256' ? 'ES256' : 'RS256';
      await refused(access, { algorithms: [otherAlg] }, errors.JOSEAlgNotAllowed.code, undefined, 'another alg');
      const [head, body, signature] = access.split('.');
      const forged = [head, body, (signature[0] === 'A' ? 'B' : 'A') + signature.slice(1)].join('.');
      await refused(
        forged,
        {},
        errors.JWSSignatureVerificationFailed.code,
        undefined,
        'a changed signature',
      );
    },
  ],
];

for (const [description, check] of checks) {
  try {
    await check();
  } catch (error) {
    console.error(`FAIL jose: ${description}:`, error);
    process.exit(1);
  }
  console.log(`ok   jose: ${description}`);
}
console.log(`jose: all ${checks.length} checks passed`);
