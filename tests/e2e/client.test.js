// Real-browser tests of the browser client (clients/browser) through the
// demo's page: one refresh for ten tabs, a lost refresh answer, logout
// reaching every tab, the proactive timer and visibility, the login limit,
// and what a first-time visitor sees. Servers and helpers: harness.js.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import {
  ACCESS_TTL_MS, artifacts, LOGIN_MAX_FAILURES, like, logIn, loginShown, openLoggedIn, setVisible, sleep, useStack,
} from './harness.js';

const stack = useStack();

/** Every refresh and every 401 of the app's API, in all tabs of a context. */
function watchContext(context) {
  const seen = { refreshes: [], failed: [], api401: 0 };
  const isRefresh = (request) => request.method() === 'POST'
    && new URL(request.url()).pathname === '/v1/auth/refresh';
  context.on('request', (request) => {
    if (isRefresh(request)) seen.refreshes.push({ at: Date.now(), status: null });
  });
  context.on('response', (response) => {
    const request = response.request();
    if (isRefresh(request)) {
      const pending = seen.refreshes.find((r) => r.status === null);
      if (pending) pending.status = response.status();
    }
    if (new URL(response.url()).pathname.startsWith('/api/') && response.status() === 401) seen.api401 += 1;
  });
  context.on('requestfailed', (request) => {
    if (isRefresh(request)) {
      seen.failed.push(request.failure()?.errorText);
      const pending = seen.refreshes.find((r) => r.status === null);
      if (pending) pending.status = 'failed';
    }
  });
  return seen;
}

const expiresAt = async (page) => Number(await page.getAttribute('body', 'data-expires-at'));

/** Waits until `check()` is true, or fails after `ms`. */
async function until(check, ms, what) {
  const end = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > end) assert.fail(`timed out after ${ms} ms waiting for ${what}`);
    await sleep(25);
  }
}

/** A user made through latchkey's API (the demo proxies /v1). */
async function register(username, password) {
  const response = await fetch(`${stack.demoUrl}/v1/auth/register`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ username, password }),
  });
  assert.equal(response.status, 201, `register ${username}`);
}

test('a first-time visitor: no "session ended"; registers, logs out from the header; a session ended elsewhere says so', async () => {
  const context = await stack.browser.newContext();
  try {
    const page = await context.newPage();
    await page.goto(stack.demoUrl);
    await page.waitForSelector('#login-form', { state: 'visible' });
    assert.equal(await page.textContent('#login-error'), '', 'no "session ended" for someone who never logged in');
    assert.equal(await page.isVisible('#logout-button'), false);
    await page.screenshot({ path: join(artifacts, 'first-visit.png') });

    await page.click('#show-register');
    await page.waitForSelector('#register-form', { state: 'visible' });
    await page.fill('#new-username', 'bob');
    await page.fill('#new-password', 'bob likes long passwords');
    await page.click('#register-button');
    await page.waitForSelector('#feed article.post', { state: 'visible' });
    assert.equal(await page.textContent('#whoami'), 'Logged in as bob');

    await page.click('#logout-button');
    await page.waitForSelector('#login-form', { state: 'visible' });
    assert.equal(await page.textContent('#login-error'), 'You are logged out.');
    assert.deepEqual(await context.cookies(), []);
    await page.reload();
    await page.waitForSelector('#login-form', { state: 'visible' });
    assert.equal(await page.textContent('#login-error'), '', 'after a logout, a visit starts afresh');

    // The name is taken now.
    await page.click('#show-register');
    await page.fill('#new-username', 'BOB');
    await page.fill('#new-password', 'another long password');
    await page.click('#register-button');
    await page.waitForFunction(() => document.querySelector('#register-error').textContent !== '');
    assert.equal(await page.textContent('#register-error'), 'That username is taken.');
    await page.click('#show-login');

    // A session revoked without this browser logging out: "ended".
    await logIn(page, stack.demoUrl, 'bob', 'bob likes long passwords');
    const status = await page.evaluate(async () => {
      const { sessions } = await (await fetch('/v1/sessions')).json();
      const sid = sessions.find((s) => s.current).id;
      return (await fetch(`/v1/sessions/${sid}`, { method: 'DELETE' })).status;
    });
    assert.equal(status, 204);
    await page.reload();
    await page.waitForSelector('#login-form', { state: 'visible' });
    assert.equal(await page.textContent('#login-error'), 'Your session has ended: please log in again.');
  } finally {
    await context.close();
  }
});

test('ten tabs whose tokens expire together send one refresh before expiry, and all stay logged in', async () => {
  const context = await stack.browser.newContext();
  try {
    const tabs = [await context.newPage()];
    await logIn(tabs[0], stack.demoUrl);
    const seen = watchContext(context);
    const first = await expiresAt(tabs[0]);
    for (let i = 1; i < 10; i++) {
      const tab = await context.newPage();
      await openLoggedIn(tab, stack.demoUrl);
      tabs.push(tab);
    }
    assert.ok(Date.now() < first, 'ten tabs open before the token expires');
    for (const tab of tabs) {
      assert.equal(await tab.evaluate(() => document.visibilityState), 'visible');
      assert.equal(await expiresAt(tab), first, 'every tab knows when the token expires');
    }
    // Past the expiry of the first token: its cookie is gone by now.
    await sleep(first + 1000 - Date.now());
    assert.deepEqual(seen.refreshes.map((r) => r.status), [200], 'one refresh for ten tabs');
    assert.ok(seen.refreshes[0].at < first, 'sent before the token expired');
    const next = await expiresAt(tabs[0]);
    assert.ok(next > first);
    for (const [i, tab] of tabs.entries()) {
      assert.equal(await tab.getAttribute('body', 'data-view'), 'feed', `tab ${i} on the feed`);
      assert.equal(await loginShown(tab), i === 0 ? 1 : 0, `tab ${i} never showed the login form again`);
      assert.equal(await expiresAt(tab), next, `tab ${i} learned of the refresh`);
    }
    for (const tab of tabs) await like(tab, 1);
    assert.equal(seen.api401, 0, 'no call met an expired token');
  } finally {
    await context.close();
  }
});

test('a refresh answer lost on the way (the server rotated, the page never saw it): the user stays logged in', async () => {
  const context = await stack.browser.newContext();
  try {
    const page = await context.newPage();
    await logIn(page, stack.demoUrl);
    // From here: before the login, a first visit tries one refresh (401).
    const seen = watchContext(context);
    const shown = await loginShown(page);
    let lost = null;
    await context.route('**/v1/auth/refresh', async (route) => {
      if (lost) return route.continue();
      lost = {};
      // The refresh reaches latchkey with the page's cookies (sent from
      // here, so that its Set-Cookie never reaches the browser's jar),
      // then the page's request fails as a dropped connection would.
      const url = route.request().url();
      const cookie = (await context.cookies(url)).map((c) => `${c.name}=${c.value}`).join('; ');
      const answer = await fetch(url, { method: 'POST', headers: { cookie, origin: stack.demoUrl } });
      lost.status = answer.status;
      lost.successor = /refreshToken=([^;]*)/.exec(answer.headers.getSetCookie().join('\n'))?.[1];
      return route.abort('connectionreset');
    });
    // The proactive refresh comes shortly before expiry.
    await until(() => seen.refreshes.length >= 2 && seen.refreshes[1].status !== null, ACCESS_TTL_MS + 3000,
      'the retried refresh');
    assert.equal(lost.status, 200, 'latchkey rotated the token of the lost answer');
    assert.deepEqual(seen.refreshes.map((r) => r.status), ['failed', 200]);
    const jar = (await context.cookies()).find((c) => c.name === 'refreshToken').value;
    assert.equal(jar, lost.successor, 'the retry got the same successor (grace window)');
    assert.equal(await page.getAttribute('body', 'data-view'), 'feed');
    assert.equal(await loginShown(page), shown);
    await like(page, 2);
    // The successor is the session's current token: the next rotation works.
    await until(() => seen.refreshes.length >= 3 && seen.refreshes[2].status !== null, ACCESS_TTL_MS + 3000,
      'the next refresh');
    assert.equal(seen.refreshes[2].status, 200);
    assert.equal(await page.getAttribute('body', 'data-view'), 'feed');
  } finally {
    await context.close();
  }
});

test('log out in one tab: the login form shows in all of them within a second', async () => {
  const context = await stack.browser.newContext();
  try {
    const tabs = [await context.newPage()];
    await logIn(tabs[0], stack.demoUrl);
    for (let i = 1; i < 5; i++) {
      const tab = await context.newPage();
      await openLoggedIn(tab, stack.demoUrl);
      tabs.push(tab);
    }
    const clicked = Date.now();
    const shown = tabs.map((tab) => tab.waitForSelector('#login-form', { state: 'visible', timeout: 1000 })
      .then(() => Date.now() - clicked));
    await tabs[2].click('#logout-button');
    const took = await Promise.all(shown);
    assert.ok(took.every((ms) => ms < 1000), `shown after ${took} ms`);
    for (const tab of tabs) assert.equal(await tab.textContent('#login-error'), 'You are logged out.');
    assert.deepEqual(await context.cookies(), []);
  } finally {
    await context.close();
  }
});

test('the proactive timer: a visible tab refreshes before expiry with no action; a hidden one only when shown', async () => {
  const context = await stack.browser.newContext();
  try {
    const page = await context.newPage();
    await logIn(page, stack.demoUrl);
    // From here: before the login, a first visit tries one refresh (401).
    const seen = watchContext(context);
    const first = await expiresAt(page);
    await until(() => seen.refreshes.length === 1, ACCESS_TTL_MS, 'the proactive refresh');
    assert.ok(seen.refreshes[0].at < first, 'before the token expired');
    await until(async () => (await expiresAt(page)) > first, 1000, 'the new expiry');

    // Hidden past the expiry of the new token: nothing is sent.
    const second = await expiresAt(page);
    await setVisible(page, false);
    await sleep(second + 1000 - Date.now());
    assert.equal(seen.refreshes.length, 1, 'no refresh while hidden');
    const cookies = (await context.cookies()).map((c) => c.name);
    assert.ok(!cookies.includes('accessToken'), 'the access cookie has expired');
    const shownAt = Date.now();
    await setVisible(page, true);
    await until(() => seen.refreshes.length === 2 && seen.refreshes[1].status === 200, 2000, 'the refresh on show');
    assert.ok(seen.refreshes[1].at - shownAt < 500, `at once (${seen.refreshes[1].at - shownAt} ms)`);
    await like(page, 3);
    assert.equal(seen.api401, 0, 'the like never met the expired token');
    assert.equal(await page.getAttribute('body', 'data-view'), 'feed');
  } finally {
    await context.close();
  }
});

test('the login limit: a 429 shows its retry time', async () => {
  await register('dave', 'dave has a password');
  const context = await stack.browser.newContext();
  try {
    const page = await context.newPage();
    await page.goto(stack.demoUrl);
    await page.waitForSelector('#login-form', { state: 'visible' });
    const statuses = [];
    let limited;
    for (let i = 0; i <= LOGIN_MAX_FAILURES + 1 && !limited; i++) {
      await page.fill('#username', 'dave');
      await page.fill('#password', `wrong ${i}`);
      const answer = page.waitForResponse((r) => new URL(r.url()).pathname === '/v1/auth/login');
      await page.click('#login-button');
      const response = await answer;
      statuses.push(response.status());
      if (response.status() === 429) limited = response;
      else {
        await page.waitForFunction(() => document.querySelector('#login-error').textContent !== '');
        assert.equal(await page.textContent('#login-error'), 'Wrong username or password.');
      }
    }
    assert.deepEqual(statuses, [...Array(LOGIN_MAX_FAILURES).fill(401), 429]);
    const retryAfter = Number(await limited.headerValue('retry-after'));
    assert.ok(retryAfter > 0, `Retry-After: ${retryAfter}`);
    await page.waitForFunction(() => /Too many/.test(document.querySelector('#login-error').textContent));
    assert.equal(await page.getAttribute('#login-error', 'data-retry-after'), String(retryAfter));
    const minutes = Math.ceil(retryAfter / 60);
    assert.equal(await page.textContent('#login-error'),
      `Too many failed attempts: try again in ${minutes} minutes.`);
    assert.equal(await page.getAttribute('body', 'data-view'), 'login');
  } finally {
    await context.close();
  }
});
