// Real-browser tests of the demo app in front of latchkey: Debian's Chromium,
// headless, driven by playwright-core; the servers and helpers are in
// harness.js.
//
//   npm ci --prefix tests/e2e && node --test tests/e2e/
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import {
  ACCESS_TTL_MS, artifacts, DELETE_MAX_AGE_S, like, likeCount, logIn, loginShown, mailedLink, openLoggedIn,
  setVisible, sleep, totpCode, useStack, watchRefreshes,
} from './harness.js';

const stack = useStack();

test('log in, like a post, see the count change; a screenshot of the feed', async () => {
  const context = await stack.browser.newContext();
  try {
    const page = await context.newPage();
    await logIn(page, stack.demoUrl);
    assert.equal(await page.getAttribute('body', 'data-view'), 'feed');
    const { before, after } = await like(page, 1);
    assert.equal(after, before + 1);
    await page.fill('article.post[data-id="2"] .comment-input', 'Cookies only, as it should be.');
    await page.click('article.post[data-id="2"] .comment-button');
    await page.waitForSelector('article.post[data-id="2"] .comments li');
    assert.match(await page.textContent('article.post[data-id="2"] .comments li'), /alice.*Cookies only/);
    await page.screenshot({ path: join(artifacts, 'feed.png'), fullPage: true });
  } finally {
    await context.close();
  }
});

test('after the access token expires, one silent refresh and the like succeeds', async () => {
  const context = await stack.browser.newContext();
  try {
    const page = await context.newPage();
    await logIn(page, stack.demoUrl);
    const shown = await loginShown(page);
    const refreshes = watchRefreshes(page);
    // Hidden, the page does not refresh ahead of time: the like meets the
    // expired token (401), refreshes once and retries.
    await setVisible(page, false);
    await sleep(ACCESS_TTL_MS + 1000);
    assert.equal(refreshes.requests, 0, 'no refresh while hidden');
    const { before, after } = await like(page, 2);
    assert.equal(after, before + 1);
    assert.equal(refreshes.requests, 1, 'exactly one refresh request');
    assert.deepEqual(refreshes.statuses, [200]);
    assert.equal(await loginShown(page), shown, 'the login form never showed');
    assert.equal(await page.getAttribute('body', 'data-view'), 'feed');
    assert.equal(await page.isVisible('#login-form'), false);
  } finally {
    await context.close();
  }
});

test('two tabs with expired tokens act at once: both succeed, one refresh', async () => {
  const context = await stack.browser.newContext();
  try {
    const tabA = await context.newPage();
    await logIn(tabA, stack.demoUrl);
    const tabB = await context.newPage();
    await openLoggedIn(tabB, stack.demoUrl);
    const shownA = await loginShown(tabA);
    const shownB = await loginShown(tabB);
    assert.equal(shownB, 0, 'tab B opened on the feed');
    assert.equal(await tabB.evaluate(() => typeof navigator.locks?.request), 'function', 'Web Locks available');
    const refreshesA = watchRefreshes(tabA);
    const refreshesB = watchRefreshes(tabB);
    // Hidden: no refresh ahead of time, both likes meet the expired token.
    await setVisible(tabA, false);
    await setVisible(tabB, false);
    await sleep(ACCESS_TTL_MS + 1000);
    const before = await likeCount(tabA, 3);
    const [a, b] = await Promise.all([like(tabA, 3), like(tabB, 3)]);
    assert.ok(a.after > a.before && b.after > b.before, 'both likes succeeded');
    // Both likes counted, whichever answered first.
    const reload = await tabA.evaluate(async () => (await fetch('/api/posts', { credentials: 'same-origin' })).json());
    assert.equal(reload.posts.find((p) => p.id === 3).likes, before + 2);
    const requests = refreshesA.requests + refreshesB.requests;
    const statuses = [...refreshesA.statuses, ...refreshesB.statuses];
    // Web Locks: one refresh for both tabs (were there more, the grace
    // window would have to answer every one of them 200).
    assert.ok(requests >= 1, 'a refresh was sent');
    assert.ok(requests === 1 || statuses.every((s) => s === 200), `refreshes: ${statuses}`);
    assert.equal(requests, 1, 'the tabs coordinated on one refresh');
    assert.equal(await loginShown(tabA), shownA);
    assert.equal(await loginShown(tabB), shownB);
    assert.equal(await tabA.getAttribute('body', 'data-view'), 'feed');
    assert.equal(await tabB.getAttribute('body', 'data-view'), 'feed');
  } finally {
    await context.close();
  }
});

test('"log out this device" in tab A: tab B shows the login form by itself', async () => {
  const context = await stack.browser.newContext();
  try {
    const tabA = await context.newPage();
    await logIn(tabA, stack.demoUrl);
    const tabB = await context.newPage();
    await openLoggedIn(tabB, stack.demoUrl);
    await tabA.click('#device-list li[data-current="true"] .logout-button');
    await tabA.waitForSelector('#login-form', { state: 'visible' });
    assert.deepEqual(await context.cookies(), [], 'logout cleared the cookies');
    // The client tells every tab (BroadcastChannel): no action needed.
    await tabB.waitForSelector('#login-form', { state: 'visible', timeout: 1000 });
    assert.equal(await tabB.getAttribute('body', 'data-view'), 'login');
    assert.equal(await tabB.textContent('#login-error'), 'You are logged out.');
  } finally {
    await context.close();
  }
});

test('"Log out" on another device revokes that session (DELETE /v1/sessions/{sid})', async () => {
  const laptop = await stack.browser.newContext();
  const phone = await stack.browser.newContext();
  try {
    const a = await laptop.newPage();
    const b = await phone.newPage();
    await logIn(b, stack.demoUrl);
    await logIn(a, stack.demoUrl);
    await a.waitForFunction(() => document.querySelectorAll('#device-list li').length >= 2);
    const other = await b.evaluate(async () => (await (await fetch('/v1/sessions', { credentials: 'same-origin' })).json())
      .sessions.find((s) => s.current).id);
    const deleted = a.waitForResponse((r) => r.request().method() === 'DELETE' && r.url().endsWith(`/v1/sessions/${other}`));
    await a.click(`#device-list li[data-sid="${other}"] .logout-button`);
    assert.equal((await deleted).status(), 204);
    await a.waitForSelector(`#device-list li[data-sid="${other}"]`, { state: 'detached' });
    assert.equal(await a.getAttribute('body', 'data-view'), 'feed', 'the laptop stays logged in');
    // latchkey consults its store: the phone's next call to it ends its session.
    await b.click('#reload-devices');
    await b.waitForSelector('#login-form', { state: 'visible' });
    assert.equal(await b.textContent('#login-error'), 'Your session has ended: please log in again.');
  } finally {
    await laptop.close();
    await phone.close();
  }
});

test('the cookies are HttpOnly and absent from document.cookie', async () => {
  const context = await stack.browser.newContext();
  try {
    const page = await context.newPage();
    await logIn(page, stack.demoUrl);
    const cookies = await context.cookies();
    const names = cookies.map((c) => c.name).sort();
    assert.deepEqual(names, ['accessToken', 'refreshToken']);
    for (const cookie of cookies) {
      assert.equal(cookie.httpOnly, true, `${cookie.name} is HttpOnly`);
      assert.equal(cookie.domain, '127.0.0.1');
    }
    const documentCookie = await page.evaluate(() => document.cookie);
    for (const cookie of cookies) {
      assert.ok(!documentCookie.includes(cookie.name), `${cookie.name} not in document.cookie`);
      assert.ok(!documentCookie.includes(cookie.value), `${cookie.name}'s value not in document.cookie`);
    }
    // Web storage holds one non-secret entry: when the access token
    // expires and its lifetime (it tells "session ended" from "never
    // logged in"); no token.
    const stored = await page.evaluate(() => ({ local: { ...localStorage }, session: { ...sessionStorage } }));
    assert.deepEqual(stored.session, {});
    assert.deepEqual(Object.keys(stored.local), ['latchkey']);
    assert.deepEqual(Object.keys(JSON.parse(stored.local.latchkey)).sort(), ['e', 't']);
    for (const cookie of cookies) {
      assert.ok(!stored.local.latchkey.includes(cookie.value), `${cookie.name}'s value not in localStorage`);
    }
  } finally {
    await context.close();
  }
});

test('log out in tab A: tab B\'s still-unexpired access token is refused by the demo\'s API within a second', async () => {
  const context = await stack.browser.newContext();
  try {
    const tabA = await context.newPage();
    await logIn(tabA, stack.demoUrl);
    const tabB = await context.newPage();
    await openLoggedIn(tabB, stack.demoUrl);
    // Tab B's access token, kept from before the logout (a copy, as a
    // stolen or cached token would be).
    const kept = (await context.cookies()).find((c) => c.name === 'accessToken').value;
    const exp = JSON.parse(Buffer.from(kept.split('.')[1], 'base64url')).exp;
    const withKept = () => tabB.evaluate(async (token) => (await fetch('/api/posts', {
      headers: { authorization: `Bearer ${token}` },
      credentials: 'omit',
    })).status, kept);
    assert.equal(await withKept(), 200, 'the token passes before the logout');

    await tabA.click('#device-list li[data-current="true"] .logout-button');
    await tabA.waitForSelector('#login-form', { state: 'visible' });
    const loggedOut = Date.now();
    let status = await withKept();
    while (status !== 401 && Date.now() - loggedOut < 1000) {
      await sleep(50);
      status = await withKept();
    }
    const took = Date.now() - loggedOut;
    assert.equal(status, 401, 'refused within a second of the logout');
    assert.ok(took < 1000, `refused after ${took} ms`);
    assert.ok(Date.now() / 1000 < exp, 'while the token had not expired yet');
  } finally {
    await context.close();
  }
});

test('an address checked by its mailed link, then "forgot password" followed from the mail', async () => {
  const context = await stack.browser.newContext();
  const other = await stack.browser.newContext();
  try {
    const page = await context.newPage();
    await page.goto(stack.demoUrl);
    await page.waitForSelector('#login-form', { state: 'visible' });
    await page.click('#show-register');
    await page.fill('#new-username', 'mallory');
    await page.fill('#new-password', 'first passphrase');
    await page.fill('#new-email', 'mallory@example.com');
    await page.click('#register-button');
    await page.waitForSelector('#feed article.post', { state: 'visible' });
    await page.waitForFunction(() => /not verified/.test(document.querySelector('#email-status').textContent));
    // The check mail's link opens the demo; its button spends the token.
    const check = mailedLink(await stack.mail.waitFor('mallory@example.com', 1));
    assert.ok(check.startsWith(`${stack.demoUrl}/verify-email?token=`), check);
    await page.goto(check);
    await page.waitForSelector('#verify-button', { state: 'visible' });
    await page.click('#verify-button');
    await page.waitForSelector('#email-status[data-verified="true"]');
    // Another device stays logged in until the reset.
    const phone = await other.newPage();
    await logIn(phone, stack.demoUrl, 'mallory', 'first passphrase');
    await page.click('#logout-button');
    await page.waitForSelector('#login-form', { state: 'visible' });
    await page.click('#show-forgot');
    await page.fill('#forgot-login', 'mallory@example.com');
    await page.click('#forgot-button');
    await page.waitForFunction(() => /on its way/.test(document.querySelector('#forgot-notice').textContent));
    const reset = mailedLink(await stack.mail.waitFor('mallory@example.com', 2));
    assert.ok(reset.startsWith(`${stack.demoUrl}/reset-password?token=`), reset);
    // Opening the link (as a mail scanner would) spends nothing: the page
    // then sets the password with it.
    const scanner = await context.newPage();
    await scanner.goto(reset);
    await scanner.close();
    await page.goto(reset);
    await page.waitForSelector('#reset-form', { state: 'visible' });
    assert.equal(new URL(page.url()).search, '', 'the token left the address bar');
    await page.fill('#reset-password', 'second passphrase');
    await page.click('#reset-button');
    await page.waitForFunction(() => /password is changed/.test(document.querySelector('#login-error').textContent));
    await page.screenshot({ path: join(artifacts, 'reset-done.png'), fullPage: true });
    await page.fill('#username', 'mallory');
    await page.fill('#password', 'first passphrase');
    await page.click('#login-button');
    await page.waitForFunction(() => /Wrong username or password/.test(document.querySelector('#login-error').textContent));
    await logIn(page, stack.demoUrl, 'mallory', 'second passphrase');
    // The other device's session was revoked with the reset.
    const answer = await phone.evaluate(async () => (await fetch('/v1/sessions', { credentials: 'same-origin' })).status);
    assert.equal(answer, 401);
  } finally {
    await context.close();
    await other.close();
  }
});

test('two-step login: TOTP turned on from a QR code drawn in the page, the second step, and a fresh login to delete a post', async () => {
  const register = await fetch(`${stack.demoUrl}/v1/auth/register`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ username: 'carol', password: 'carol has a long password' }),
  });
  assert.equal(register.status, 201);
  const context = await stack.browser.newContext();
  try {
    const page = await context.newPage();
    await logIn(page, stack.demoUrl, 'carol', 'carol has a long password');
    await page.waitForSelector('#totp-status[data-on="false"]');

    // Turn it on: the QR code is an image the page drew from otpauth_uri.
    await page.click('#totp-start');
    await page.waitForSelector('#totp-setup', { state: 'visible' });
    const qr = await page.evaluate(() => {
      const img = document.querySelector('#totp-qr');
      return { src: img.src, width: img.naturalWidth, uri: img.dataset.uri };
    });
    assert.match(qr.src, /^data:image\/gif;base64,/);
    assert.ok(qr.width > 100, `a QR code of ${qr.width} px`);
    const secret = (await page.textContent('#totp-secret')).trim();
    assert.ok(qr.uri.startsWith('otpauth://totp/') && qr.uri.includes(`secret=${secret}`), qr.uri);
    await page.fill('#totp-code', totpCode(secret));
    await page.click('#totp-confirm');
    await page.waitForSelector('#recovery-box', { state: 'visible' });
    const recovery = await page.$$eval('#recovery-codes li', (items) => items.map((li) => li.textContent));
    assert.equal(recovery.length, 10);
    assert.equal(await page.getAttribute('#totp-status', 'data-on'), 'true');
    await page.screenshot({ path: join(artifacts, 'totp-on.png'), fullPage: true });
    await page.click('#recovery-done');

    // Log out and in: the password, then the second step.
    await page.click('#logout-button');
    await page.waitForSelector('#login-form', { state: 'visible' });
    await page.fill('#username', 'carol');
    await page.fill('#password', 'carol has a long password');
    await page.click('#login-button');
    await page.waitForSelector('#mfa-form', { state: 'visible' });
    // (No wrong code here: with this stack's limit of 2 attempts, the
    // password and one wrong code would use them up.) The next step's
    // code: the confirmation spent this step's.
    await page.fill('#mfa-code', totpCode(secret, Date.now() + 30000));
    await page.click('#mfa-button');
    await page.waitForSelector('#feed article.post', { state: 'visible' });
    assert.equal(await page.textContent('#whoami'), 'Logged in as carol');

    // Deleting a post wants a recent login: once it is old, the page asks
    // for the password and a second factor (a recovery code), then deletes.
    await sleep((DELETE_MAX_AGE_S + 1) * 1000);
    await page.click('article.post[data-id="3"] .delete-button');
    await page.waitForSelector('#reauth', { state: 'visible' });
    await page.fill('#reauth-password', 'carol has a long password');
    await page.click('#reauth-button');
    await page.waitForSelector('#reauth-code-label', { state: 'visible' });
    await page.fill('#reauth-code', recovery[0]);
    await page.click('#reauth-button');
    await page.waitForSelector('article.post[data-id="3"]', { state: 'detached' });
    assert.equal(await page.isVisible('#reauth'), false);
    // Within the window, a delete goes straight through.
    await page.click('article.post[data-id="2"] .delete-button');
    await page.waitForSelector('article.post[data-id="2"]', { state: 'detached' });
    assert.equal(await page.isVisible('#reauth'), false);
  } finally {
    await context.close();
  }
});
