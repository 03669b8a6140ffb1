// A fake latchkey (the /v1 rules the client depends on: cookies, rotation,
// the grace window, the login limit) and a fake browser (one cookie jar,
// localStorage, Web Locks and BroadcastChannel shared by its tabs; one
// document per tab), so that the state machine runs under node --test.
import { createLatchkey } from '../src/index.js';

export const sleep = (ms) => new Promise((ok) => setTimeout(ok, ms));

const json = (status, body, headers = {}) => new Response(body === null ? null : JSON.stringify(body), {
  status,
  headers: body === null ? headers : { 'content-type': 'application/json', ...headers },
});
const problem = (status, error, headers) => json(status, { error, error_description: `${error} (fake)` }, headers);

export class FakeServer {
  /** @param {{ accessTtl?: number, grace?: number, maxFailures?: number }} [options] */
  constructor({ accessTtl = 5, grace = 10000, maxFailures = 10 } = {}) {
    this.accessTtl = accessTtl; // seconds, may be fractional here
    this.grace = grace;
    this.maxFailures = maxFailures;
    this.users = new Map();
    this.sessions = new Map();
    this.failures = new Map();
    this.jar = new Map(); // name -> { value, expires }
    this.log = []; // "METHOD /path status"
    this.offline = false; // no answer, nothing done
    this.dropRefreshAnswers = 0; // refreshes done, answers lost
    this.refreshStatus = []; // forced statuses for the next refreshes
    this.csrf = false; // refuse cookie-authenticated writes
    this.seq = 0;
    this.waiting = new Map(); // mfa_token -> user entry
    this.fetch = this.fetch.bind(this);
  }

  addUser(username, password) {
    const user = { id: `u${++this.seq}`, username, created_at: new Date().toISOString() };
    this.users.set(username, { user, password });
    return user;
  }

  /** A new session of `entry`'s user, with its cookies. */
  open(entry) {
    const session = { id: `s${++this.seq}`, user: entry.user, gen: 1, rotatedAt: 0, revoked: false };
    this.sessions.set(session.id, session);
    return this.setCookies(session);
  }

  count(what) {
    return this.log.filter((line) => line.startsWith(what)).length;
  }

  cookie(name) {
    const c = this.jar.get(name);
    if (c && c.expires <= Date.now()) this.jar.delete(name);
    return this.jar.get(name)?.value;
  }

  /** Expires the access cookie now, as the browser does at its Max-Age. */
  expireAccess() {
    this.jar.delete('accessToken');
  }

  setCookies(session) {
    const expires = Date.now() + this.accessTtl * 1000;
    this.jar.set('accessToken', { value: `at.${session.id}.${++this.seq}`, expires });
    this.jar.set('refreshToken', { value: `rt.${session.id}.${session.gen}`, expires: Infinity });
    return json(200, {
      access_token: 'not read by the client',
      token_type: 'Bearer',
      expires_in: this.accessTtl,
      session_id: session.id,
      user: session.user,
    }, { 'cache-control': 'no-store' });
  }

  clearCookies() {
    this.jar.clear();
  }

  /** The live session of the access cookie, or undefined. */
  authed() {
    const token = this.cookie('accessToken');
    const session = token && this.sessions.get(token.split('.')[1]);
    return session && !session.revoked ? session : undefined;
  }

  async fetch(input, init = {}) {
    await sleep(2); // a network, however fast
    if (this.offline) throw new TypeError('Failed to fetch');
    const url = new URL(String(input), 'http://app.test');
    const method = init.method || 'GET';
    if (!['same-origin', 'include'].includes(init.credentials)) throw new Error(`credentials: ${init.credentials}`);
    let refreshLost = false;
    if (url.pathname === '/v1/auth/refresh' && this.dropRefreshAnswers > 0) {
      this.dropRefreshAnswers -= 1;
      refreshLost = true;
    }
    const jar = new Map(this.jar);
    const response = this.route(method, url.pathname, init.body ? JSON.parse(init.body) : undefined);
    this.log.push(`${method} ${url.pathname} ${refreshLost ? 'lost' : response.status}`);
    if (refreshLost) {
      // The server rotated; the browser never saw the new cookies.
      this.jar = jar;
      throw new TypeError('Failed to fetch');
    }
    return response;
  }

  route(method, path, body) {
    const key = `${method} ${path}`;
    if (this.csrf && method !== 'GET' && !['/v1/auth/login', '/v1/auth/register', '/v1/auth/mfa'].includes(path)) {
      return problem(403, 'csrf_rejected');
    }
    if (key === 'POST /v1/auth/register') {
      if (this.users.has(body.username)) return problem(409, 'username_taken');
      return json(201, { user: this.addUser(body.username, body.password) });
    }
    if (key === 'POST /v1/auth/login') {
      const failures = this.failures.get(body.username) || 0;
      if (failures >= this.maxFailures) return problem(429, 'rate_limited', { 'retry-after': '900' });
      const entry = this.users.get(body.username);
      if (!entry || entry.password !== body.password) {
        this.failures.set(body.username, failures + 1);
        return problem(401, 'invalid_credentials');
      }
      if (entry.totp) {
        const token = `mfa.${++this.seq}`;
        this.waiting.set(token, entry);
        return json(200, { mfa_required: true, mfa_token: token, methods: ['totp', 'recovery_code'] });
      }
      this.failures.delete(body.username);
      return this.open(entry);
    }
    if (key === 'POST /v1/auth/mfa') {
      const entry = this.waiting.get(body.mfa_token);
      if (!entry) return problem(401, 'invalid_token');
      if (body.code !== entry.totp) return problem(401, 'invalid_credentials');
      this.waiting.delete(body.mfa_token);
      return this.open(entry);
    }
    if (key === 'POST /v1/auth/refresh') {
      if (this.refreshStatus.length) {
        const status = this.refreshStatus.shift();
        return problem(status, status === 503 ? 'unavailable' : 'server_error', { 'retry-after': '1' });
      }
      const token = this.cookie('refreshToken');
      if (!token) return problem(401, 'invalid_token');
      const [, sid, gen] = token.split('.');
      const session = this.sessions.get(sid);
      const refuse = () => {
        this.clearCookies();
        return problem(401, 'invalid_token');
      };
      if (!session || session.revoked) return refuse();
      if (Number(gen) === session.gen) {
        session.gen += 1;
        session.rotatedAt = Date.now();
        return this.setCookies(session);
      }
      if (Number(gen) === session.gen - 1 && Date.now() - session.rotatedAt <= this.grace) {
        this.log.push('grace');
        return this.setCookies(session); // the same successor again
      }
      session.revoked = 'reuse';
      return refuse();
    }
    if (key === 'POST /v1/auth/logout') {
      const token = this.cookie('refreshToken');
      if (!token) return problem(401, 'invalid_token');
      const session = this.sessions.get(token.split('.')[1]);
      if (session) session.revoked = 'logout';
      this.clearCookies();
      return json(204, null);
    }
    const session = this.authed();
    if (!session) return problem(401, 'invalid_token', { 'www-authenticate': 'Bearer error="invalid_token"' });
    const mine = [...this.sessions.values()].filter((s) => s.user.id === session.user.id && !s.revoked);
    if (key === 'POST /v1/auth/logout-all') {
      for (const s of mine) s.revoked = 'logout_all';
      this.clearCookies();
      return json(204, null);
    }
    if (key === 'GET /v1/me') return json(200, session.user);
    if (key === 'POST /api/step-up') {
      return problem(401, 'insufficient_user_authentication', {
        'www-authenticate': 'Bearer error="insufficient_user_authentication", max_age="300"',
      });
    }
    if (key === 'GET /v1/sessions') {
      return json(200, { sessions: mine.map((s) => ({ id: s.id, current: s === session })) });
    }
    if (method === 'DELETE' && path.startsWith('/v1/sessions/')) {
      const target = mine.find((s) => s.id === decodeURIComponent(path.slice('/v1/sessions/'.length)));
      if (!target) return problem(404, 'not_found');
      target.revoked = 'revoked_by_user';
      return json(204, null);
    }
    if (key === 'POST /v1/me/password') {
      const entry = this.users.get(session.user.username);
      if (entry.password !== body.current_password) return problem(403, 'invalid_credentials');
      entry.password = body.new_password;
      for (const s of mine) if (s !== session) s.revoked = 'password_changed';
      return json(204, null);
    }
    if (key === 'GET /api/hello') return json(200, { hello: session.user.username });
    if (key === 'GET /api/text') return new Response('plain', { status: 200, headers: { 'content-type': 'text/plain' } });
    return problem(404, 'not_found');
  }
}

/** Web Locks, with `ifAvailable`, for the tabs of one browser. */
export class FakeLocks {
  constructor() {
    this.queues = new Map();
  }

  request(name, options, callback) {
    if (!callback) [options, callback] = [{}, options];
    let q = this.queues.get(name);
    if (!q) this.queues.set(name, (q = { tail: Promise.resolve(), pending: 0 }));
    if (options.ifAvailable && q.pending) return Promise.resolve().then(() => callback(null));
    q.pending += 1;
    const run = q.tail.then(() => callback({ name }));
    q.tail = run.then(() => { q.pending -= 1; }, () => { q.pending -= 1; });
    return run;
  }
}

/** One BroadcastChannel class per browser: messages reach its other tabs. */
export function fakeChannels() {
  const open = new Set();
  return class FakeBroadcastChannel {
    constructor(name) {
      this.name = name;
      this.onmessage = null;
      open.add(this);
    }

    postMessage(data) {
      const copy = structuredClone(data);
      for (const other of open) {
        if (other !== this && other.name === this.name) setTimeout(() => other.onmessage?.({ data: copy }), 1);
      }
    }

    close() {
      open.delete(this);
    }
  };
}

export class FakeStorage {
  constructor() {
    this.map = new Map();
  }

  getItem(key) {
    return this.map.has(key) ? this.map.get(key) : null;
  }

  setItem(key, value) {
    this.map.set(key, String(value));
  }

  removeItem(key) {
    this.map.delete(key);
  }
}

export class FakeDocument {
  constructor() {
    this.visibilityState = 'visible';
    this.listeners = new Set();
  }

  addEventListener(type, f) {
    if (type === 'visibilitychange') this.listeners.add(f);
  }

  removeEventListener(type, f) {
    this.listeners.delete(f);
  }

  show(visible) {
    this.visibilityState = visible ? 'visible' : 'hidden';
    for (const f of this.listeners) f();
  }
}

/** A browser: tabs share the server's cookie jar, storage, locks and channels. */
export class FakeBrowser {
  constructor(server, { locks = new FakeLocks(), storage = new FakeStorage(), channels = true } = {}) {
    this.server = server;
    this.locks = locks;
    this.storage = storage;
    this.BroadcastChannel = channels ? fakeChannels() : null;
    this.tabs = [];
  }

  tab(options = {}) {
    const document = new FakeDocument();
    const changes = [];
    const latchkey = createLatchkey({
      fetch: this.server.fetch,
      locks: this.locks,
      BroadcastChannel: this.BroadcastChannel,
      storage: this.storage,
      document,
      onChange: (state) => changes.push(state),
      ...options,
    });
    const tab = { latchkey, document, changes };
    this.tabs.push(tab);
    return tab;
  }

  close() {
    for (const tab of this.tabs) tab.latchkey.close();
  }
}
