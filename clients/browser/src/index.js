// latchkey in the browser: the cookie mode of latchkey's /v1 API.
//
// Tokens live only in latchkey's HttpOnly cookies: this module never reads,
// keeps or sends one itself. What it keeps in localStorage is not secret:
// when the access token expires and its lifetime, which also tells "never
// logged in" from "session ended".

const KEY = 'latchkey';
const LOCK = 'latchkey-refresh';
const V1 = '/v1/';

/**
 * @param {import('../index.js').Options} [options]
 * @returns {import('../index.js').Latchkey}
 */
export function createLatchkey(options = {}) {
  const o = options;
  const base = (o.baseUrl || '').replace(/\/+$/, '') + V1;
  // A same-origin page needs no more; another origin of the same site must
  // ask for the cookies (latchkey answers CORS with credentials).
  const credentials = o.baseUrl ? 'include' : 'same-origin';
  const http = o.fetch || fetch;
  const locks = 'locks' in o ? o.locks : globalThis.navigator?.locks;
  const Channel = 'BroadcastChannel' in o ? o.BroadcastChannel : globalThis.BroadcastChannel;
  const doc = 'document' in o ? o.document : globalThis.document;
  const subs = new Set(o.onChange ? [o.onChange] : []);
  let channel = Channel && new Channel(KEY);
  /** @type {import('../index.js').State} */
  let state = { status: 'unknown' };
  /** @type {any} */
  let timer;
  let chain = Promise.resolve();
  let queued = 0;

  /** @returns {Storage | null | undefined} */
  const storage = () => ('storage' in o ? o.storage : globalThis.localStorage);
  // localStorage may be missing or throw (disabled, sandboxed): then what
  // this tab knows stands in for it.
  const read = () => {
    try {
      return JSON.parse(/** @type {any} */ (storage()).getItem(KEY));
    } catch {
      return known;
    }
  };
  // What this tab last learned (its own answers, other tabs' messages):
  // { e: expiry, t: lifetime } in ms, or null. Another tab's write to
  // localStorage reaches this tab with some delay; its message may too.
  /** @type {any} */
  let known = null;
  known = read();
  /** @param {{ e: number, t: number } | null} value */
  const write = (value) => {
    known = value;
    try {
      if (value) storage()?.setItem(KEY, JSON.stringify(value));
      else storage()?.removeItem(KEY);
    } catch {}
  };
  const hidden = () => doc?.visibilityState == 'hidden';
  const fail = (code, message, status, retryAfter) => ({
    ok: false,
    error: { code, message, status, retryAfter },
  });
  const unreachable = () => fail('unavailable', 'The server cannot be reached.');

  /** @param {any} next @param {any} [remote] a message from another tab */
  function set(next, remote) {
    state = next;
    if (!remote) channel?.postMessage({ state: next, known });
    schedule();
    for (const f of subs) {
      try {
        f(next);
      } catch (e) {
        // A broken listener must not stop the others; the error still shows.
        setTimeout(() => {
          throw e;
        });
      }
    }
  }

  const signedOut = (reason) => {
    write(null);
    set({ status: 'loggedOut', reason });
  };

  /** @param {any} body a LoginResponse */
  const signedIn = (body) => {
    const t = body.expires_in * 1e3;
    const e = Date.now() + t;
    write({ e, t });
    set({ status: 'loggedIn', user: body.user, expiresAt: e });
    return { ok: true, user: body.user };
  };

  // Proactive refresh: shortly before expiry (a fifth of the lifetime, at
  // most a minute), only while visible; a tab shown after expiry refreshes
  // at once. The timer checks visibility again when it fires.
  function schedule() {
    clearTimeout(timer);
    const s = known;
    if (state.status != 'loggedIn' || !s || hidden()) return;
    const wait = s.e - Math.min(6e4, s.t / 5) - Date.now();
    timer = setTimeout(() => hidden() || refresh(s.e), Math.max(0, wait));
  }

  const send = async (url, init) => {
    try {
      return await http(url, { credentials, ...init });
    } catch {
      return null;
    }
  };

  /** A Response (or null: no answer) as a result value. */
  async function result(response) {
    if (!response) return unreachable();
    let data = null;
    if (/json/.test(response.headers.get('content-type') || '')) {
      data = await response.json().catch(() => null);
    }
    if (response.ok) return { ok: true, status: response.status, data, response };
    const status = response.status;
    const code = data?.error;
    return {
      ...fail(
        code == 'csrf_rejected' ? 'csrf' : status == 502 || status == 503 ? 'unavailable' : code || 'http_' + status,
        data?.error_description || 'HTTP ' + status,
        status,
        +(response.headers.get('retry-after') || '') || undefined,
      ),
      response,
    };
  }

  // One refresh at a time for all tabs. A tab that had to wait while
  // another refreshed takes that result instead of refreshing again; so
  // does one that finds the stored expiry moved since it last looked.
  // Without Web Locks, calls of this tab queue and latchkey's grace window
  // covers the other tabs.
  const lock = (f) => {
    if (locks) {
      return locks.request(LOCK, { ifAvailable: true }, (held) => (held ? f() : locks.request(LOCK, () => f(1))));
    }
    const waited = queued++;
    return (chain = chain.then(() => f(waited)).finally(() => queued--));
  };

  /** @param {number} seen the expiry this tab knew when it decided */
  const refresh = (seen) => lock(async (waited) => {
    const stored = read();
    const changed = (/** @type {any} */ x) => (x?.e || 0) != seen;
    if (!waited && (changed(stored) || changed(known))) {
      // Adopt the store's news unless a message brought newer.
      if (!changed(known)) {
        known = stored;
        if (!stored) set({ status: 'loggedOut', reason: 'ended' }, 1);
        else if (state.status == 'loggedIn') set({ ...state, expiresAt: stored.e }, 1);
      }
      waited = 1;
    }
    if (waited) return known || stored ? { ok: true } : fail('logged_out', 'Not logged in.');
    // A lost answer (the server rotated, the page never saw it) is sent
    // again: within latchkey's grace window (10 s by default) the same
    // refresh token gets the same successor, so the user stays logged in.
    const start = Date.now();
    let response;
    for (let i = 0; ; i++) {
      response = await send(base + 'auth/refresh', {
        method: 'POST',
        signal: AbortSignal.timeout?.(4e3),
      });
      if ((response && response.status < 502) || i > 2 || Date.now() - start > 6e3) break;
      await new Promise((ok) => setTimeout(ok, 300 << i));
    }
    const r = await result(response);
    if (r.ok) return signedIn(r.data);
    if (r.error.status == 401) {
      signedOut(stored || known ? 'ended' : 'never');
      return fail('logged_out', 'Your session has ended.', 401);
    }
    return r;
  }).catch(unreachable);

  /** Calls with the cookies; on a 401, one refresh and one retry. */
  async function call(url, init) {
    const seen = known?.e || 0;
    let response = await send(url, init);
    // A 401 may carry no error at all: the access cookie lives exactly as
    // long as its token, so an expired one is simply not sent. A step-up
    // refusal (RFC 9470) is not one a refresh can mend: it keeps the login.
    if (response?.status == 401 && !/insufficient_user/.test(response.headers.get('www-authenticate') || '')) {
      const refreshed = await refresh(seen);
      if (!refreshed.ok) return refreshed;
      response = await send(url, init);
    }
    return result(response);
  }

  /** @param {string} method @param {any} body */
  const json = (method, body) => ({
    method,
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });

  // Every public method resolves to a result value, never rejects.
  const safe = (f) => async (...args) => {
    try {
      return await f(...args);
    } catch (e) {
      return fail('client_error', String(e));
    }
  };
  const named = (name, f = (d) => d[name]) => async (r) => {
    r = await r;
    if (r.ok) r[name] = f(r.data);
    return r;
  };
  const withUser = named('user');

  if (channel) {
    channel.onmessage = ({ data }) => {
      known = data.known;
      set(data.state, 1);
    };
  }
  doc?.addEventListener('visibilitychange', schedule);

  return {
    get state() {
      return state;
    },
    onChange(f) {
      subs.add(f);
      return () => subs.delete(f);
    },
    // A user with a second factor: no session yet, `mfaToken` for
    // loginSecondStep().
    login: safe(async (username, password) => {
      const r = await result(await send(base + 'auth/login', json('POST', { username, password })));
      if (r.ok && r.data?.mfa_required) return { ...r, mfaRequired: true, mfaToken: r.data.mfa_token, methods: r.data.methods };
      return r.ok ? signedIn(r.data) : r;
    }),
    loginSecondStep: safe(async (mfaToken, factor) => {
      const r = await result(await send(base + 'auth/mfa', json('POST', { mfa_token: mfaToken, ...factor })));
      return r.ok ? signedIn(r.data) : r;
    }),
    logout: safe(async () => {
      const r = await result(await send(base + 'auth/logout', { method: 'POST' }));
      // 401: no session to end; the user is logged out all the same.
      if (!r.ok && r.error.status != 401) return r;
      signedOut('logout');
      return { ok: true };
    }),
    logoutEverywhere: safe(async () => {
      const r = await call(base + 'auth/logout-all', { method: 'POST' });
      if (r.ok) signedOut('logout');
      return r;
    }),
    me: safe(async () => {
      const r = await call(base + 'me');
      if (r.ok) {
        r.user = r.data;
        if (state.status != 'loggedIn' || state.user.id != r.user.id) {
          set({ status: 'loggedIn', user: r.user, expiresAt: known?.e }, 1);
        }
      }
      return r;
    }),
    sessions: safe(() => named('sessions')(call(base + 'sessions'))),
    revokeSession: safe((id) => call(base + 'sessions/' + encodeURIComponent(id), { method: 'DELETE' })),
    register: safe((username, password) => withUser(send(base + 'auth/register', json('POST', { username, password })).then(result))),
    changePassword: safe((current, next) =>
      call(base + 'me/password', json('POST', { current_password: current, new_password: next }))),
    fetch: safe((input, init) => call(input, init)),
    close() {
      clearTimeout(timer);
      channel?.close();
      channel = null;
      doc?.removeEventListener('visibilitychange', schedule);
      subs.clear();
    },
  };
}
