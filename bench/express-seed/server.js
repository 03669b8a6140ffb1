'use strict';
// The benchmark's baseline: the seed tutorial's Express server, made to work.
//
// This is the stack latchkey replaces, kept as the tutorial wrote it where it
// worked: Express 4, `jsonwebtoken` (HS256 access and refresh JWTs), and
// `cookie-parser` (both tokens in httpOnly cookies), bcrypt for passwords.
// Only two things differ on purpose: users live in memory instead of MongoDB
// (mongoose), and whatever kept the tutorial's code from running is fixed:
//
//   - `secretKey` was used but never defined: the secrets are
//     ACCESS_TOKEN_SECRET and REFRESH_TOKEN_SECRET (random per start if unset);
//   - `this._id` inside arrow functions is undefined: the token generators
//     take the user as an argument;
//   - `await` inside handlers that were not `async` is a SyntaxError: the
//     handlers and the verifyJWT middleware are `async`, each with its own
//     try/catch (Express 4 does not catch a rejected promise);
//   - `token` was read without being declared: it comes from the
//     `accessToken` cookie, or else from `Authorization: Bearer`;
//   - `throw new error(...)` is a ReferenceError: `new Error(...)`, and a
//     failed check answers 401 instead of crashing the request.
//
// It is used only by scripts/bench.sh, and is not part of latchkey. Its
// routes and settings are in README.md beside this file.

const cluster = require('node:cluster');
const crypto = require('node:crypto');

const env = process.env;

// A whole number from the environment, or `fallback` when unset; anything
// else stops the server before it listens.
function wholeNumber(name, fallback, min) {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  if (!/^[0-9]+$/.test(raw) || Number(raw) < min) {
    console.error(`express-seed: ${name} must be a whole number >= ${min}, got '${raw}'`);
    process.exit(2);
  }
  return Number(raw);
}

const HOST = env.HOST || '127.0.0.1';
const PORT = wholeNumber('PORT', 3000, 0);
const CLUSTER_WORKERS = wholeNumber('CLUSTER_WORKERS', 0, 0);
const N_USERS = wholeNumber('N_USERS', 10000, 1);
const BCRYPT_COST = wholeNumber('BCRYPT_COST', 10, 4);
const ROTATE = env.ROTATE === '1';
const SECRET_KEYOBJECT = env.SECRET_KEYOBJECT === '1';
const COOKIE_SECURE = env.COOKIE_SECURE === '1';
const LOG = env.LOG === '1';
const ACCESS_TOKEN_EXPIRY = env.ACCESS_TOKEN_EXPIRY || '15m';
const REFRESH_TOKEN_EXPIRY = env.REFRESH_TOKEN_EXPIRY || '7d';

// Every cluster worker must sign and verify with the same secrets: they are
// chosen here, before any fork, and reach the workers through the environment.
for (const name of ['ACCESS_TOKEN_SECRET', 'REFRESH_TOKEN_SECRET']) {
  if (!env[name]) env[name] = crypto.randomBytes(32).toString('hex');
}

if (CLUSTER_WORKERS > 0 && cluster.isPrimary) {
  console.log(`primary ${process.pid}: starting ${CLUSTER_WORKERS} workers, ROTATE=${ROTATE ? 1 : 0}`);
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
  const express = require('express');
  const cookieParser = require('cookie-parser');
  const jwt = require('jsonwebtoken');
  const bcrypt = require('bcrypt');

  // The tutorial passes the secrets to jsonwebtoken as strings. jsonwebtoken 9
  // then tries to read each string as a PEM key first, which fails inside
  // OpenSSL 3 and costs far more than the HMAC itself (auth0/node-jsonwebtoken
  // #944, #966, #1046). SECRET_KEYOBJECT=1 hands it KeyObjects instead: not
  // the tutorial's code, but the strongest honest form of this stack.
  const secret = (name) =>
    SECRET_KEYOBJECT ? crypto.createSecretKey(Buffer.from(env[name])) : env[name];
  const accessSecret = secret('ACCESS_TOKEN_SECRET');
  const refreshSecret = secret('REFRESH_TOKEN_SECRET');

  // ---- The user "model", in memory -----------------------------------------
  // `alice`, then `user00001` ... : all with the password `password123`. One
  // bcrypt hash is computed and shared by every user (hashing 10,000 would
  // take minutes); a login still pays the full bcrypt.compare.
  const byName = new Map();
  const byId = new Map();
  const started = Date.now();
  const passwordHash = await bcrypt.hash('password123', BCRYPT_COST);
  const createdAt = new Date(started).toISOString();
  for (let i = 0; i < N_USERS; i++) {
    const username = i === 0 ? 'alice' : `user${String(i).padStart(5, '0')}`;
    const user = {
      _id: i.toString(16).padStart(24, '0'), // shaped like a MongoDB ObjectId
      username,
      email: `${username}@example.com`,
      fullName: i === 0 ? 'Alice Example' : `User ${i}`,
      password: passwordHash,
      refreshTokenJti: null, // the one refresh token accepted when ROTATE=1
      createdAt,
    };
    byName.set(username, user);
    byId.set(user._id, user);
  }
  const seededMs = Date.now() - started;

  const publicUser = ({ _id, username, email, fullName, createdAt }) => ({
    _id,
    username,
    email,
    fullName,
    createdAt,
  });

  // The tutorial's userSchema.methods, as functions of the user.
  const isPasswordCorrect = (user, password) => bcrypt.compare(password, user.password);

  const generateAccessToken = (user) =>
    jwt.sign(
      { _id: user._id, email: user.email, username: user.username, fullName: user.fullName },
      accessSecret,
      { expiresIn: ACCESS_TOKEN_EXPIRY } // HS256, jsonwebtoken's default
    );

  const generateRefreshToken = (user) => {
    const jti = crypto.randomUUID();
    const token = jwt.sign({ _id: user._id }, refreshSecret, {
      expiresIn: REFRESH_TOKEN_EXPIRY,
      jwtid: jti,
    });
    return { token, jti };
  };

  const cookieOptions = { httpOnly: true, secure: COOKIE_SECURE, sameSite: 'strict', path: '/' };

  // ---- The app -------------------------------------------------------------
  const app = express();
  app.disable('x-powered-by');
  app.use(express.json());
  app.use(cookieParser());
  if (LOG) {
    app.use((req, res, next) => {
      const t0 = process.hrtime.bigint();
      res.on('finish', () => {
        const ms = Number(process.hrtime.bigint() - t0) / 1e6;
        console.log(`${req.method} ${req.url} ${res.statusCode} ${ms.toFixed(2)} ms`);
      });
      next();
    });
  }

  // The tutorial's verifyJWT middleware.
  const verifyJWT = async (req, res, next) => {
    try {
      const authorization = req.header('Authorization');
      const token =
        req.cookies?.accessToken ||
        (authorization?.startsWith('Bearer ') ? authorization.slice(7) : undefined);
      if (!token) {
        return res.status(401).json({ message: 'Unauthorized request' });
      }
      const decoded = jwt.verify(token, accessSecret, { algorithms: ['HS256'] });
      const user = byId.get(decoded?._id);
      if (!user) {
        throw new Error('Invalid access token');
      }
      req.user = user;
      return next();
    } catch (error) {
      return res.status(401).json({ message: error?.message || 'Invalid access token' });
    }
  };

  app.post('/login', async (req, res) => {
    try {
      const { username, password } = req.body || {};
      if (!username || !password) {
        return res.status(400).json({ message: 'username and password are required' });
      }
      const user = byName.get(String(username));
      if (!user) {
        return res.status(404).json({ message: 'User does not exist' });
      }
      if (!(await isPasswordCorrect(user, String(password)))) {
        return res.status(401).json({ message: 'Invalid user credentials' });
      }
      const accessToken = generateAccessToken(user);
      const { token: refreshToken, jti } = generateRefreshToken(user);
      user.refreshTokenJti = jti; // the tutorial: user.refreshToken = ...; await user.save()
      return res
        .status(200)
        .cookie('accessToken', accessToken, cookieOptions)
        .cookie('refreshToken', refreshToken, cookieOptions)
        .json({ user: publicUser(user), accessToken, refreshToken, message: 'User logged in successfully' });
    } catch (error) {
      return res.status(500).json({ message: error?.message || 'Login failed' });
    }
  });

  app.post('/refresh-token', async (req, res) => {
    try {
      const incoming = req.cookies?.refreshToken || req.body?.refreshToken;
      if (!incoming) {
        return res.status(401).json({ message: 'Unauthorized request' });
      }
      let decoded;
      try {
        decoded = jwt.verify(incoming, refreshSecret, { algorithms: ['HS256'] });
      } catch {
        return res.status(401).json({ message: 'Invalid refresh token' });
      }
      const user = byId.get(decoded?._id);
      if (!user) {
        return res.status(401).json({ message: 'Invalid refresh token' });
      }
      if (!ROTATE) {
        // The tutorial's refresh: a new access token, the same refresh token.
        const accessToken = generateAccessToken(user);
        return res
          .status(200)
          .cookie('accessToken', accessToken, cookieOptions)
          .json({ accessToken, message: 'Access token refreshed' });
      }
      // Rotation: only the latest refresh token of the user is accepted, and
      // each use replaces it.
      if (decoded.jti !== user.refreshTokenJti) {
        return res.status(401).json({ message: 'Refresh token is expired or used' });
      }
      const accessToken = generateAccessToken(user);
      const { token: refreshToken, jti } = generateRefreshToken(user);
      user.refreshTokenJti = jti;
      return res
        .status(200)
        .cookie('accessToken', accessToken, cookieOptions)
        .cookie('refreshToken', refreshToken, cookieOptions)
        .json({ accessToken, refreshToken, message: 'Access token refreshed' });
    } catch (error) {
      return res.status(500).json({ message: error?.message || 'Refresh failed' });
    }
  });

  app.get('/me', verifyJWT, (req, res) => {
    res.status(200).json({ user: publicUser(req.user) });
  });

  app.post('/logout', verifyJWT, (req, res) => {
    req.user.refreshTokenJti = null;
    res
      .status(200)
      .clearCookie('accessToken', cookieOptions)
      .clearCookie('refreshToken', cookieOptions)
      .json({ message: 'User logged out' });
  });

  const server = app.listen(PORT, HOST, () => {
    const { port } = server.address();
    const who = cluster.isWorker ? `worker ${process.pid}` : `pid ${process.pid}`;
    const version = require('express/package.json').version;
    // scripts/bench.sh waits for one line ending in "listening on http://HOST:PORT"
    // per process that serves.
    console.log(
      `${who}: express ${version}, ${N_USERS} users seeded in ${seededMs} ms, ` +
        `ROTATE=${ROTATE ? 1 : 0}, secrets as ${SECRET_KEYOBJECT ? 'KeyObject' : 'string'}, ` +
        `listening on http://${HOST}:${port}`
    );
  });
  server.on('error', (err) => {
    console.error(`express-seed: cannot listen on ${HOST}:${PORT}: ${err.message}`);
    process.exit(1);
  });
}
