// Real-browser tests of the demo app in front of latchkey: Debian's Chromium,
// headless, driven by playwright-core. Starts latchkey (access tokens of 5 s,
// grace window 10 s, SQLite in a temp dir) and the demo (verifier leeway 0 s)
// on free loopback ports.
//
//   npm ci --prefix tests/e2e && node --test tests/e2e/
//
// The binaries are taken from $LATCHKEY_BIN_DIR (default: target/debug of
// the repository; build them with `cargo build -p latchkey-server -p
// latchkey-demo`), or named one by one by LATCHKEY_BIN and LATCHKEY_DEMO_BIN.
// CHROMIUM_PATH overrides /usr/bin/chromium (Debian's `chromium` package);
// no browser is ever downloaded.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, '..', '..');
const binDir = resolve(root, process.env.LATCHKEY_BIN_DIR || join('target', 'debug'));
const latchkeyBin = process.env.LATCHKEY_BIN || join(binDir, 'latchkey');
const demoBin = process.env.LATCHKEY_DEMO_BIN || join(binDir, 'latchkey-demo');
const chromiumPath = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
const artifacts = join(here, 'artifacts');

const USERNAME = 'alice';
const PASSWORD = 'correct horse battery';
const ACCESS_TTL_MS = 5000;

const children = [];
let tmp;
let browser;
let demoUrl;

/** A free port on 127.0.0.1 (bound, read, released). */
function freePort() {
  return new Promise((ok, fail) => {
    const server = createServer();
    server.once('error', fail);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => ok(port));
    });
  });
}

/** Starts a process and resolves with the URL of its `listening on` line. */
function start(name, bin, args, env = {}) {
  return new Promise((ok, fail) => {
    const child = spawn(bin, args, {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, ...env },
    });
    children.push(child);
    let out = '';
    let err = '';
    const timer = setTimeout(() => fail(new Error(`${name} did not start: ${err}`)), 20000);
    child.stdout.on('data', (chunk) => {
      out += chunk;
      const match = /listening on (http:\/\/\S+)/.exec(out);
      if (match) {
        clearTimeout(timer);
        ok(match[1]);
      }
    });
    child.stderr.on('data', (chunk) => { err += chunk; });
    child.on('exit', (code) => {
      clearTimeout(timer);
      fail(new Error(`${name} exited with ${code}: ${err}`));
    });
    child.on('error', fail);
  });
}

const sleep = (ms) => new Promise((ok) => setTimeout(ok, ms));

before(async () => {
  tmp = mkdtempSync(join(tmpdir(), 'latchkey-e2e-'));
  mkdirSync(artifacts, { recursive: true });
  const databaseUrl = `sqlite://${join(tmp, 'latchkey.db')}`;
  const demoPort = await freePort();
  const demoOrigin = `http://127.0.0.1:${demoPort}`;
  const latchkeyUrl = await start('latchkey', latchkeyBin, [
    'serve',
    '--listen', '127.0.0.1:0',
    '--database-url', databaseUrl,
    '--access-ttl', '5s',
    '--refresh-reuse-grace', '10s',
    '--allowed-origins', demoOrigin,
    '--cookie-secure', 'false',
  ]);
  const added = spawnSync(latchkeyBin, ['user', 'add', USERNAME, '--database-url', databaseUrl], {
    input: `${PASSWORD}\n`,
    encoding: 'utf8',
  });
  assert.equal(added.status, 0, `user add: ${added.stderr}`);
  // The demo's API subscribes to the revocation feed as a client of its own.
  const client = spawnSync(latchkeyBin, ['client', 'add', 'demo-api', '--database-url', databaseUrl], {
    encoding: 'utf8',
  });
  assert.equal(client.status, 0, `client add: ${client.stderr}`);
  const feedSecret = JSON.parse(client.stdout).client_secret;
  demoUrl = await start('latchkey-demo', demoBin, [
    '--listen', `127.0.0.1:${demoPort}`,
    '--latchkey-url', latchkeyUrl,
    '--issuer', latchkeyUrl,
    '--leeway', '0s',
    '--feed-client-id', 'demo-api',
  ], { LATCHKEY_DEMO_FEED_SECRET: feedSecret });
  assert.equal(demoUrl, demoOrigin);
  browser = await chromium.launch({
    executablePath: chromiumPath,
    headless: true,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--no-first-run',
    ],
  });
});

after(async () => {
  await browser?.close();
  for (const child of children) child.kill('SIGTERM');
  await Promise.all(children.map((child) => (child.exitCode === null
    ? new Promise((ok) => { child.once('exit', ok); setTimeout(ok, 5000); })
    : null)));
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

/** Counts the refresh requests a page sends, and their answers. */
function watchRefreshes(page) {
  const seen = { requests: 0, statuses: [] };
  page.on('request', (request) => {
    if (request.method() === 'POST' && new URL(request.url()).pathname === '/v1/auth/refresh') {
      seen.requests += 1;
    }
  });
  page.on('response', (response) => {
    const request = response.request();
    if (request.method() === 'POST' && new URL(response.url()).pathname === '/v1/auth/refresh') {
      seen.statuses.push(response.status());
    }
  });
  return seen;
}

/** How many times the page has shown its login form. */
const loginShown = (page) => page.evaluate(() => Number(document.body.dataset.loginShown));

async function logIn(page) {
  await page.goto(demoUrl);
  await page.waitForSelector('#login-form', { state: 'visible' });
  await page.fill('#username', USERNAME);
  await page.fill('#password', PASSWORD);
  await page.click('#login-button');
  await page.waitForSelector('#feed article.post', { state: 'visible' });
  await page.waitForSelector('#device-list li', { state: 'visible' });
}

const likeCount = async (page, id) => Number(await page.textContent(`article.post[data-id="${id}"] .like-count`));

/** Clicks Like on post `id` and waits for the count to change from `before`. */
async function like(page, id) {
  const before = await likeCount(page, id);
  await page.click(`article.post[data-id="${id}"] .like-button`);
  await page.waitForFunction(
    ([postId, was]) => {
      const count = document.querySelector(`article.post[data-id="${postId}"] .like-count`);
      return count && Number(count.textContent) !== was;
    },
    [id, before],
  );
  return { before, after: await likeCount(page, id) };
}

test('log in, like a post, see the count change; a screenshot of the feed', async () => {
  const context = await browser.newContext();
  try {
    const page = await context.newPage();
    await logIn(page);
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
  const context = await browser.newContext();
  try {
    const page = await context.newPage();
    await logIn(page);
    const shown = await loginShown(page);
    const refreshes = watchRefreshes(page);
    await sleep(ACCESS_TTL_MS + 1000);
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
  const context = await browser.newContext();
  try {
    const tabA = await context.newPage();
    await logIn(tabA);
    const tabB = await context.newPage();
    await tabB.goto(demoUrl);
    await tabB.waitForSelector('#feed article.post', { state: 'visible' });
    const shownA = await loginShown(tabA);
    const shownB = await loginShown(tabB);
    assert.equal(shownB, 0, 'tab B opened on the feed');
    assert.equal(await tabB.evaluate(() => typeof navigator.locks?.request), 'function', 'Web Locks available');
    const refreshesA = watchRefreshes(tabA);
    const refreshesB = watchRefreshes(tabB);
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

test('"log out this device" in tab A: tab B\'s next action shows the login form', async () => {
  const context = await browser.newContext();
  try {
    const tabA = await context.newPage();
    await logIn(tabA);
    const tabB = await context.newPage();
    await tabB.goto(demoUrl);
    await tabB.waitForSelector('#feed article.post', { state: 'visible' });
    await tabA.click('#device-list li[data-current="true"] .logout-button');
    await tabA.waitForSelector('#login-form', { state: 'visible' });
    assert.deepEqual(await context.cookies(), [], 'logout cleared the cookies');
    assert.equal(await tabB.getAttribute('body', 'data-view'), 'feed');
    await tabB.click('article.post[data-id="1"] .like-button');
    await tabB.waitForSelector('#login-form', { state: 'visible' });
    assert.equal(await tabB.getAttribute('body', 'data-view'), 'login');
  } finally {
    await context.close();
  }
});

test('"Log out" on another device revokes that session (DELETE /v1/sessions/{sid})', async () => {
  const laptop = await browser.newContext();
  const phone = await browser.newContext();
  try {
    const a = await laptop.newPage();
    const b = await phone.newPage();
    await logIn(b);
    await logIn(a);
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
  } finally {
    await laptop.close();
    await phone.close();
  }
});

test('the cookies are HttpOnly and absent from document.cookie', async () => {
  const context = await browser.newContext();
  try {
    const page = await context.newPage();
    await logIn(page);
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
    const stored = await page.evaluate(() => JSON.stringify({ ...localStorage }) + JSON.stringify({ ...sessionStorage }));
    assert.equal(stored, '{}{}', 'nothing in web storage');
  } finally {
    await context.close();
  }
});

test('log out in tab A: tab B\'s still-unexpired access token is refused by the demo\'s API within a second', async () => {
  const context = await browser.newContext();
  try {
    const tabA = await context.newPage();
    await logIn(tabA);
    const tabB = await context.newPage();
    await tabB.goto(demoUrl);
    await tabB.waitForSelector('#feed article.post', { state: 'visible' });
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
