// The benchmark's OAuth peer: panva's oidc-provider (9.13.3), a certified
// OpenID Provider for Node.js, with one confidential client and its default
// in-memory storage. latchkey's /oauth2/token and /oauth2/introspect are
// measured against its /token and /token/introspection.
//
// It is used only by scripts/bench.sh, and is not part of latchkey. Its
// routes and settings are in README.md beside this file.

import cluster from 'node:cluster';
import crypto from 'node:crypto';

import Provider from 'oidc-provider';

const env = process.env;

// A whole number from the environment, or `fallback` when unset; anything
// else stops the server before it listens.
function wholeNumber(name, fallback, min) {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  if (!/^[0-9]+$/.test(raw) || Number(raw) < min) {
    console.error(`oidc-provider: ${name} must be a whole number >= ${min}, got '${raw}'`);
    process.exit(2);
  }
  return Number(raw);
}

const HOST = env.HOST || '127.0.0.1';
// Not 0: the issuer names the port, so it must be known before listening.
const PORT = wholeNumber('PORT', 3000, 1);
const CLUSTER_WORKERS = wholeNumber('CLUSTER_WORKERS', 0, 0);
const CLIENT_SECRET = env.CLIENT_SECRET || 'bench-secret-0123456789abcdefghijklmnopqrst';

// One signing key for every worker (chosen before any fork, handed down
// through the environment). EC P-256, so that no RSA cost is imposed; the
// benchmark's tokens are opaque anyway, the key signs only ID tokens.
if (!env.BENCH_SIGNING_JWK) {
  const { privateKey } = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const jwk = privateKey.export({ format: 'jwk' });
  env.BENCH_SIGNING_JWK = JSON.stringify({ ...jwk, kid: crypto.randomUUID(), alg: 'ES256', use: 'sig' });
}

if (CLUSTER_WORKERS > 0 && cluster.isPrimary) {
  console.log(`primary ${process.pid}: starting ${CLUSTER_WORKERS} workers`);
  for (let i = 0; i < CLUSTER_WORKERS; i++) cluster.fork();
  // A measurement must not go on with fewer workers than it says: the first
  // worker that stops stops the whole server (no respawn).
  cluster.on('exit', (worker, code, signal) => {
    console.error(`worker ${worker.process.pid} stopped (${signal || code}); stopping`);
    for (const other of Object.values(cluster.workers)) other.process.kill('SIGTERM');
    process.exit(1);
  });
} else {
  serve().catch((err) => {
    console.error(err);
    process.exit(1);
  });
}

async function serve() {
  const issuer = `http://${HOST}:${PORT}`;
  const provider = new Provider(issuer, {
    clients: [
      {
        client_id: 'bench',
        client_secret: CLIENT_SECRET,
        grant_types: ['client_credentials', 'refresh_token', 'authorization_code'],
        redirect_uris: ['http://127.0.0.1/cb'],
        response_types: ['code'],
        token_endpoint_auth_method: 'client_secret_basic',
        scope: 'offline_access api',
        // The only key is EC; the default (RS256) would have none.
        id_token_signed_response_alg: 'ES256',
      },
    ],
    // `api` must be a scope the provider knows, or the client is invalid.
    scopes: ['openid', 'offline_access', 'api'],
    features: {
      clientCredentials: { enabled: true },
      introspection: { enabled: true },
      devInteractions: { enabled: false },
    },
    rotateRefreshToken: true,
    findAccount: async (ctx, id) => ({ accountId: id, claims: async () => ({ sub: id }) }),
    ttl: {
      AccessToken: 900,
      ClientCredentials: 900,
      RefreshToken: 7 * 24 * 3600,
    },
    jwks: { keys: [JSON.parse(env.BENCH_SIGNING_JWK)] },
  });

  // Errors only (the provider itself logs nothing per request).
  provider.on('server_error', (ctx, err) => console.error('server_error', err));

  // POST /bench/refresh-token: a refresh token as an authorization-code login
  // would leave it, for a fresh account, without the browser round trip. Its
  // scope has no `openid`, so refreshing it issues no ID token.
  const client = await provider.Client.find('bench');
  provider.use(async (ctx, next) => {
    if (ctx.path !== '/bench/refresh-token') return next();
    if (ctx.method !== 'POST') {
      ctx.status = 405;
      return undefined;
    }
    const accountId = crypto.randomUUID();
    const grant = new provider.Grant({ accountId, clientId: client.clientId });
    grant.addOIDCScope('offline_access');
    const grantId = await grant.save();
    const refreshToken = new provider.RefreshToken({
      accountId,
      client,
      grantId,
      scope: 'offline_access',
      gty: 'authorization_code',
    });
    ctx.body = { refresh_token: await refreshToken.save() };
    return undefined;
  });

  const server = provider.listen(PORT, HOST, () => {
    // scripts/bench.sh waits for this line, once per process that serves.
    console.log(`listening on http://${HOST}:${server.address().port}`);
  });
  server.on('error', (err) => {
    console.error(`oidc-provider: cannot listen on ${HOST}:${PORT}: ${err.message}`);
    process.exit(1);
  });
}
