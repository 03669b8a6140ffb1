// The client's state machine against a fake latchkey and a fake browser
// (test/fake.js). Access tokens live a fraction of a second here, so the
// proactive timer runs in real time.
import { afterEach, test } from 'node:test';
import assert from 'node:assert/strict';
import { FakeBrowser, FakeServer, sleep } from './fake.js';

const PASSWORD = 'correct horse battery';
let browsers = [];

function setup(serverOptions, browserOptions) {
  const server = new FakeServer(serverOptions);
  server.addUser('alice', PASSWORD);
  const browser = new FakeBrowser(server, browserOptions);
  browsers.push(browser);
  return { server, browser };
}

afterEach(() => {
  for (const browser of browsers) browser.close();
  browsers = [];
});

/** Waits until `check()` is true, or fails after `ms`. */
async function until(check, ms = 2000, what = 'the condition') {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) assert.fail(`timed out waiting for ${what}`);
    await sleep(5);
  }
}

const REFRESH = 'POST /v1/auth/refresh';

test('login: the tab and every other tab turn loggedIn; storage holds no token', async () => {
  const { server, browser } = setup();
  const a = browser.tab();
  const b = browser.tab();
  const r = await a.latchkey.login('alice', PASSWORD);
  assert.equal(r.ok, true);
  assert.equal(r.user.username, 'alice');
  assert.equal(a.latchkey.state.status, 'loggedIn');
  assert.equal(a.latchkey.state.user.username, 'alice');
  assert.ok(a.latchkey.state.expiresAt > Date.now());
  await until(() => b.latchkey.state.status === 'loggedIn', 500, 'tab B');
  assert.equal(b.latchkey.state.user.username, 'alice');
  assert.equal(b.changes.at(-1).status, 'loggedIn');
  const stored = [...browser.storage.map.values()].join();
  for (const { value } of server.jar.values()) assert.ok(!stored.includes(value), 'no token in storage');
  assert.deepEqual(Object.keys(JSON.parse(browser.storage.getItem('latchkey'))).sort(), ['e', 't']);
});

test('login with a second factor: no session until the second step, then every tab turns loggedIn', async () => {
  const { server, browser } = setup();
  server.users.get('alice').totp = '123456';
  const a = browser.tab();
  const b = browser.tab();
  const first = await a.latchkey.login('alice', PASSWORD);
  assert.equal(first.ok, true);
  assert.equal(first.mfaRequired, true);
  assert.deepEqual(first.methods, ['totp', 'recovery_code']);
  assert.notEqual(a.latchkey.state.status, 'loggedIn');
  assert.equal(server.cookie('refreshToken'), undefined, 'no cookie yet');
  const wrong = await a.latchkey.loginSecondStep(first.mfaToken, { code: '000000' });
  assert.equal(wrong.ok, false);
  assert.equal(wrong.error.code, 'invalid_credentials');
  const r = await a.latchkey.loginSecondStep(first.mfaToken, { code: '123456' });
  assert.equal(r.ok, true);
  assert.equal(r.user.username, 'alice');
  assert.equal(a.latchkey.state.status, 'loggedIn');
  await until(() => b.latchkey.state.status === 'loggedIn', 500, 'tab B');
});

test('a step-up refusal (RFC 9470) is answered as it is, without a refresh', async () => {
  const { server, browser } = setup();
  const { latchkey } = browser.tab();
  await latchkey.login('alice', PASSWORD);
  const r = await latchkey.fetch('/api/step-up', { method: 'POST' });
  assert.equal(r.ok, false);
  assert.equal(r.error.code, 'insufficient_user_authentication');
  assert.equal(r.error.status, 401);
  assert.equal(server.count(REFRESH), 0);
  assert.equal(latchkey.state.status, 'loggedIn');
});

test('login errors are values: invalid_credentials, rate_limited with its retry time, unavailable, csrf', async () => {
  const { server, browser } = setup({ maxFailures: 2 });
  const { latchkey } = browser.tab();
  for (let i = 0; i < 2; i++) {
    const r = await latchkey.login('alice', 'wrong password');
    assert.equal(r.ok, false);
    assert.equal(r.error.code, 'invalid_credentials');
    assert.equal(r.error.status, 401);
    assert.ok(r.error.message);
  }
  const limited = await latchkey.login('alice', PASSWORD);
  assert.equal(limited.error.code, 'rate_limited');
  assert.equal(limited.error.status, 429);
  assert.equal(limited.error.retryAfter, 900);
  assert.equal(server.count(REFRESH), 0, 'a failed login never refreshes');
  server.offline = true;
  const down = await latchkey.login('bob', PASSWORD);
  assert.equal(down.error.code, 'unavailable');
  assert.equal(down.error.status, undefined);
  server.offline = false;
  server.addUser('bob', PASSWORD);
  assert.equal((await latchkey.login('bob', PASSWORD)).ok, true);
  server.csrf = true;
  const csrf = await latchkey.logout();
  assert.equal(csrf.error.code, 'csrf');
  assert.equal(csrf.error.status, 403);
  assert.equal(latchkey.state.status, 'loggedIn', 'a refused logout changes nothing');
});

test('fetch: on a 401 one refresh and one retry; then no more refreshes', async () => {
  const { server, browser } = setup();
  const { latchkey } = browser.tab();
  await latchkey.login('alice', PASSWORD);
  assert.deepEqual((await latchkey.fetch('/api/hello')).data, { hello: 'alice' });
  server.expireAccess();
  const r = await latchkey.fetch('/api/hello');
  assert.equal(r.ok, true);
  assert.equal(r.status, 200);
  assert.deepEqual(r.data, { hello: 'alice' });
  assert.equal(server.count(REFRESH), 1);
  assert.equal(server.count('GET /api/hello 401'), 1);
  assert.equal((await latchkey.fetch('/api/hello')).ok, true);
  assert.equal(server.count(REFRESH), 1);
  const text = await latchkey.fetch('/api/text');
  assert.equal(text.data, null, 'a body that is not JSON is left unread');
  assert.equal(await text.response.text(), 'plain');
  const missing = await latchkey.fetch('/api/nothing');
  assert.equal(missing.ok, false);
  assert.equal(missing.error.code, 'not_found');
});

test('a session ended elsewhere: logged_out, the reason "ended" in every tab; the next visit after a logout is "never"', async () => {
  const { server, browser } = setup();
  const a = browser.tab();
  const b = browser.tab();
  await a.latchkey.login('alice', PASSWORD);
  for (const s of server.sessions.values()) s.revoked = 'revoked_by_user';
  const r = await a.latchkey.fetch('/api/hello');
  assert.equal(r.ok, false);
  assert.equal(r.error.code, 'logged_out');
  assert.equal(server.count(REFRESH), 1, 'refreshed once');
  assert.equal(server.count('GET /api/hello'), 1, 'no retry after a failed refresh');
  assert.deepEqual(a.latchkey.state, { status: 'loggedOut', reason: 'ended' });
  await until(() => b.latchkey.state.status === 'loggedOut', 500, 'tab B');
  assert.equal(b.latchkey.state.reason, 'ended');
  assert.equal(browser.storage.getItem('latchkey'), null);
  // A new tab later: nothing to tell, the flag is gone.
  const c = browser.tab();
  assert.equal((await c.latchkey.me()).error.code, 'logged_out');
  assert.deepEqual(c.latchkey.state, { status: 'loggedOut', reason: 'never' });
});

test('me() on a first visit says "never"; with a live session it says who', async () => {
  const { server, browser } = setup();
  const first = browser.tab();
  assert.equal(first.latchkey.state.status, 'unknown');
  const r = await first.latchkey.me();
  assert.equal(r.ok, false);
  assert.deepEqual(first.latchkey.state, { status: 'loggedOut', reason: 'never' });
  assert.deepEqual(first.changes, [{ status: 'loggedOut', reason: 'never' }]);
  await first.latchkey.login('alice', PASSWORD);
  const second = browser.tab();
  const me = await second.latchkey.me();
  assert.equal(me.ok, true);
  assert.equal(me.user.username, 'alice');
  assert.equal(second.latchkey.state.status, 'loggedIn');
  assert.equal(second.latchkey.state.expiresAt, first.latchkey.state.expiresAt);
  // A session that expired while the browser was away: "ended".
  server.expireAccess();
  for (const s of server.sessions.values()) s.revoked = 'expired';
  const third = browser.tab();
  await third.latchkey.me();
  assert.deepEqual(third.latchkey.state, { status: 'loggedOut', reason: 'ended' });
});

test('ten tabs whose tokens expired call at once: one refresh, all succeed', async () => {
  const { server, browser } = setup({ accessTtl: 60 });
  const tabs = Array.from({ length: 10 }, () => browser.tab());
  await tabs[0].latchkey.login('alice', PASSWORD);
  await until(() => tabs.every((t) => t.latchkey.state.status === 'loggedIn'), 500, 'every tab');
  server.expireAccess();
  const results = await Promise.all(tabs.map((t) => t.latchkey.fetch('/api/hello')));
  assert.deepEqual(results.map((r) => r.ok), Array(10).fill(true));
  assert.equal(server.count(REFRESH), 1);
  assert.equal(server.count('grace'), 0, 'not even a grace-window retry');
});

test('without Web Locks, calls of one tab still share one refresh', async () => {
  const { server, browser } = setup({ accessTtl: 60 }, { locks: null });
  const { latchkey } = browser.tab({ locks: null });
  await latchkey.login('alice', PASSWORD);
  server.expireAccess();
  const results = await Promise.all(Array.from({ length: 5 }, () => latchkey.fetch('/api/hello')));
  assert.ok(results.every((r) => r.ok));
  assert.equal(server.count(REFRESH), 1);
});

test('without Web Locks, two tabs racing are saved by the grace window', async () => {
  const { server, browser } = setup({ accessTtl: 60 }, { locks: null });
  const a = browser.tab({ locks: null });
  const b = browser.tab({ locks: null });
  await a.latchkey.login('alice', PASSWORD);
  server.expireAccess();
  const results = await Promise.all([a.latchkey.fetch('/api/hello'), b.latchkey.fetch('/api/hello')]);
  assert.ok(results.every((r) => r.ok));
  assert.ok(server.count(REFRESH) <= 2);
  assert.equal(server.count('POST /v1/auth/refresh 401'), 0);
});

test('a lost refresh answer is sent again and gets the same successor: still logged in', async () => {
  const { server, browser } = setup({ accessTtl: 60 });
  const { latchkey } = browser.tab();
  await latchkey.login('alice', PASSWORD);
  server.expireAccess();
  server.dropRefreshAnswers = 1;
  const r = await latchkey.fetch('/api/hello');
  assert.equal(r.ok, true);
  assert.deepEqual(server.log.filter((l) => l.startsWith(REFRESH) || l === 'grace'),
    [`${REFRESH} lost`, 'grace', `${REFRESH} 200`]);
  const [session] = server.sessions.values();
  assert.equal(session.revoked, false);
  assert.equal(latchkey.state.status, 'loggedIn');
  // The successor is the session's current token: the next rotation works.
  server.expireAccess();
  assert.equal((await latchkey.fetch('/api/hello')).ok, true);
  assert.equal(server.count(`${REFRESH} 200`), 2);
});

test('a 503 on refresh is retried; no answer at all is "unavailable" and keeps the session', async () => {
  const { server, browser } = setup({ accessTtl: 60 });
  const { latchkey } = browser.tab();
  await latchkey.login('alice', PASSWORD);
  server.expireAccess();
  server.refreshStatus = [503];
  assert.equal((await latchkey.fetch('/api/hello')).ok, true);
  assert.equal(server.count(REFRESH), 2);
  server.expireAccess();
  server.refreshStatus = [503, 503, 503, 503];
  const r = await latchkey.fetch('/api/hello');
  assert.equal(r.error.code, 'unavailable');
  assert.equal(r.error.status, 503);
  assert.equal(r.error.retryAfter, 1);
  assert.equal(latchkey.state.status, 'loggedIn', 'an outage does not log out');
});

test('proactive refresh shortly before expiry, while visible, in one tab for all', async () => {
  const { server, browser } = setup({ accessTtl: 0.5 });
  const tabs = Array.from({ length: 10 }, () => browser.tab());
  await tabs[0].latchkey.login('alice', PASSWORD);
  const expiresAt = tabs[0].latchkey.state.expiresAt;
  await Promise.all(tabs.slice(1).map((t) => t.latchkey.me()));
  await until(() => server.count(REFRESH) > 0, 1000, 'the refresh');
  assert.ok(Date.now() < expiresAt, 'before the token expired');
  await sleep(150);
  assert.equal(server.count(REFRESH), 1, 'one refresh for ten tabs');
  for (const t of tabs) assert.ok(t.latchkey.state.expiresAt > expiresAt, 'every tab learned the new expiry');
});

test('no refresh while hidden; at once when shown after expiry', async () => {
  const { server, browser } = setup({ accessTtl: 0.3 });
  const tab = browser.tab();
  await tab.latchkey.login('alice', PASSWORD);
  tab.document.show(false);
  await sleep(500);
  assert.equal(server.count(REFRESH), 0, 'none while hidden');
  assert.equal(tab.latchkey.state.status, 'loggedIn');
  const shown = Date.now();
  tab.document.show(true);
  await until(() => server.count(`${REFRESH} 200`) === 1, 500, 'the refresh');
  assert.ok(Date.now() - shown < 100, 'at once');
  assert.ok(tab.latchkey.state.expiresAt > Date.now());
  // Shown again before the next lead time: nothing at once.
  tab.document.show(false);
  tab.document.show(true);
  await sleep(20);
  assert.equal(server.count(REFRESH), 1);
});

test('logout: every tab turns loggedOut ("logout"); the cookies and the flag are gone', async () => {
  const { server, browser } = setup();
  const tabs = Array.from({ length: 4 }, () => browser.tab());
  await tabs[0].latchkey.login('alice', PASSWORD);
  await until(() => tabs.every((t) => t.latchkey.state.status === 'loggedIn'), 500, 'every tab in');
  assert.deepEqual(await tabs[2].latchkey.logout(), { ok: true });
  await until(() => tabs.every((t) => t.latchkey.state.status === 'loggedOut'), 500, 'every tab out');
  for (const t of tabs) assert.equal(t.latchkey.state.reason, 'logout');
  assert.equal(server.jar.size, 0);
  assert.equal(browser.storage.getItem('latchkey'), null);
  // Logging out again (no cookies: 401) is still a success.
  assert.equal((await tabs[1].latchkey.logout()).ok, true);
});

test('sessions, revokeSession, logoutEverywhere', async () => {
  const { server, browser } = setup();
  const phone = new FakeBrowser(server);
  browsers.push(phone);
  await phone.tab().latchkey.login('alice', PASSWORD);
  const { latchkey } = browser.tab();
  // One jar for the fake server: the phone's cookies are replaced by ours.
  await latchkey.login('alice', PASSWORD);
  const listed = await latchkey.sessions();
  assert.equal(listed.ok, true);
  assert.equal(listed.sessions.length, 2);
  const other = listed.sessions.find((s) => !s.current);
  assert.deepEqual((await latchkey.revokeSession(other.id)).status, 204);
  assert.equal((await latchkey.revokeSession(other.id)).error.code, 'not_found');
  assert.equal((await latchkey.sessions()).sessions.length, 1);
  await latchkey.login('alice', PASSWORD);
  const everywhere = await latchkey.logoutEverywhere();
  assert.equal(everywhere.ok, true);
  assert.deepEqual(latchkey.state, { status: 'loggedOut', reason: 'logout' });
  assert.ok([...server.sessions.values()].every((s) => s.revoked));
});

test('register and changePassword', async () => {
  const { server, browser } = setup();
  const { latchkey } = browser.tab();
  const created = await latchkey.register('carol', 'a long password');
  assert.equal(created.ok, true);
  assert.equal(created.status, 201);
  assert.equal(created.user.username, 'carol');
  assert.equal(latchkey.state.status, 'unknown', 'registering does not log in');
  assert.equal((await latchkey.register('carol', 'a long password')).error.code, 'username_taken');
  await latchkey.login('carol', 'a long password');
  const wrong = await latchkey.changePassword('not it', 'another password');
  assert.equal(wrong.error.code, 'invalid_credentials');
  assert.equal(wrong.error.status, 403);
  assert.equal(server.count(REFRESH), 0, 'a 403 is not taken for an expired token');
  assert.equal((await latchkey.changePassword('a long password', 'another password')).ok, true);
  assert.equal((await latchkey.login('carol', 'another password')).ok, true);
});

test('no localStorage, no BroadcastChannel, no document: it still logs in and refreshes', async () => {
  const { server } = setup({ accessTtl: 60 });
  const browser = new FakeBrowser(server, { channels: false });
  browsers.push(browser);
  const { latchkey } = browser.tab({ storage: null, document: null });
  await latchkey.login('alice', PASSWORD);
  server.expireAccess();
  assert.equal((await latchkey.fetch('/api/hello')).ok, true);
  assert.equal(server.count(REFRESH), 1);
  assert.equal((await latchkey.logout()).ok, true);
  assert.equal(latchkey.state.status, 'loggedOut');
});

test('never a rejection: a throwing fetch, a bad argument, a broken body', async () => {
  const broken = new FakeBrowser(new FakeServer());
  browsers.push(broken);
  const thrower = broken.tab({
    fetch: () => {
      throw new Error('synchronous');
    },
  });
  assert.equal((await thrower.latchkey.login('a', 'b')).error.code, 'unavailable');
  assert.equal((await thrower.latchkey.fetch('/api/hello')).error.code, 'unavailable');
  const garbage = broken.tab({
    fetch: async () => new Response('{not json', { status: 200, headers: { 'content-type': 'application/json' } }),
  });
  const r = await garbage.latchkey.login('a', 'b');
  assert.equal(r.ok, false);
  assert.equal(r.error.code, 'client_error');
  const lone = await garbage.latchkey.revokeSession('\ud800');
  assert.equal(lone.error.code, 'client_error');
});
