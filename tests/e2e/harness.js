// What the real-browser test files share: latchkey (access tokens of 5 s,
// grace window 10 s, login limit 2 failures, SQLite in a temp dir, mail to
// a small SMTP sink of this file) and the demo (verifier leeway 0 s,
// subscribed to the revocation feed) on free loopback ports, headless
// Chromium, and page helpers. Each test file starts its own.
//
// The binaries are taken from $LATCHKEY_BIN_DIR (default: target/debug of
// the repository; build them with `cargo build -p latchkey-server -p
// latchkey-demo`), or named one by one by LATCHKEY_BIN and LATCHKEY_DEMO_BIN.
// CHROMIUM_PATH overrides /usr/bin/chromium (Debian's `chromium` package);
// no browser is ever downloaded.
import { after, before } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { createHmac } from 'node:crypto';
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
export const artifacts = join(here, 'artifacts');

export const USERNAME = 'alice';
export const PASSWORD = 'correct horse battery';
export const ACCESS_TTL_MS = 5000;
export const LOGIN_MAX_FAILURES = 2;
export const DELETE_MAX_AGE_S = 3;

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
function start(children, name, bin, args, env = {}) {
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

export const sleep = (ms) => new Promise((ok) => setTimeout(ok, ms));

/**
 * An SMTP server just big enough for latchkey's mails (EHLO, MAIL, RCPT,
 * DATA, RSET, NOOP, QUIT; no STARTTLS offered): it keeps what it receives.
 */
export function smtpSink() {
  const mails = [];
  const waiters = new Set();
  const server = createServer((socket) => {
    socket.setEncoding('utf8');
    let buffer = '';
    let data = null;
    let to = [];
    const reply = (line) => socket.write(`${line}\r\n`);
    reply('220 sink.test ESMTP');
    socket.on('data', (chunk) => {
      buffer += chunk;
      let end;
      while ((end = buffer.indexOf('\r\n')) >= 0) {
        const line = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        if (data !== null) {
          if (line === '.') {
            mails.push({ to, data: data.join('\r\n') });
            to = [];
            data = null;
            reply('250 OK queued');
            for (const wake of waiters) wake();
          } else {
            data.push(line.startsWith('.') ? line.slice(1) : line);
          }
          continue;
        }
        const verb = line.split(' ')[0].toUpperCase();
        if (verb === 'EHLO') reply('250-sink.test\r\n250 8BITMIME');
        else if (verb === 'HELO') reply('250 sink.test');
        else if (verb === 'MAIL') { to = []; reply('250 OK'); }
        else if (verb === 'RCPT') { to.push(/<([^>]*)>/.exec(line)?.[1] || ''); reply('250 OK'); }
        else if (verb === 'DATA') { data = []; reply('354 go ahead'); }
        else if (verb === 'RSET' || verb === 'NOOP') reply('250 OK');
        else if (verb === 'QUIT') { reply('221 bye'); socket.end(); }
        else reply('502 not implemented');
      }
    });
    socket.on('error', () => {});
  });
  return {
    listen: () => new Promise((ok) => server.listen(0, '127.0.0.1', () => ok(server.address().port))),
    close: () => new Promise((ok) => server.close(ok)),
    /** Resolves with the `n`-th mail to `address` (1 = the first). */
    async waitFor(address, n = 1, within = 15000) {
      const deadline = Date.now() + within;
      for (;;) {
        const got = mails.filter((m) => m.to.includes(address));
        if (got.length >= n) return got[n - 1];
        if (Date.now() > deadline) throw new Error(`no mail ${n} to ${address}`);
        await new Promise((ok) => { waiters.add(ok); setTimeout(ok, 200); });
      }
    },
  };
}

/** The first link with a token in a mail's plain-text part. */
export function mailedLink(mail) {
  let text = mail.data;
  const part = /Content-Type: text\/plain[\s\S]*?\r\n\r\n([\s\S]*?)\r\n--/.exec(text);
  if (part) text = part[1];
  const head = /Content-Type: text\/plain[\s\S]*?\r\n\r\n/.exec(mail.data)?.[0] || '';
  if (/quoted-printable/i.test(head)) {
    text = text.replace(/=\r\n/g, '').replace(/=([0-9A-F]{2})/g, (_, h) => String.fromCharCode(parseInt(h, 16)));
  } else if (/base64/i.test(head)) {
    text = Buffer.from(text.replace(/\s+/g, ''), 'base64').toString('utf8');
  }
  const link = /https?:\/\/\S*token=[A-Za-z0-9_-]+/.exec(text);
  if (!link) throw new Error(`no link in ${text}`);
  return link[0];
}

/**
 * Registers the before and after hooks of a test file; the returned object
 * holds `browser`, `demoUrl` and `latchkeyUrl` once `before` has run.
 * `host: 'localhost'` serves the page from http://localhost:PORT (the demo
 * still listens on 127.0.0.1), latchkey's WebAuthn relying party: browsers
 * refuse passkeys on an IP address.
 */
export function useStack({ host = '127.0.0.1' } = {}) {
  const stack = { browser: null, demoUrl: null, latchkeyUrl: null, mail: smtpSink() };
  const children = [];
  let tmp;
  before(async () => {
    tmp = mkdtempSync(join(tmpdir(), 'latchkey-e2e-'));
    mkdirSync(artifacts, { recursive: true });
    const databaseUrl = `sqlite://${join(tmp, 'latchkey.db')}`;
    const demoPort = await freePort();
    const demoOrigin = `http://${host}:${demoPort}`;
    const smtpPort = await stack.mail.listen();
    stack.latchkeyUrl = await start(children, 'latchkey', latchkeyBin, [
      'serve',
      '--listen', '127.0.0.1:0',
      '--database-url', databaseUrl,
      '--access-ttl', '5s',
      '--refresh-reuse-grace', '10s',
      '--login-max-failures', String(LOGIN_MAX_FAILURES),
      '--allowed-origins', demoOrigin,
      '--cookie-secure', 'false',
      // Mailed links open the demo's pages (the first allowed origin).
      '--smtp-url', `smtp://127.0.0.1:${smtpPort}`,
      ...(host === 'localhost' ? ['--webauthn-rp-id', 'localhost'] : []),
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
    const demoListens = await start(children, 'latchkey-demo', demoBin, [
      '--listen', `127.0.0.1:${demoPort}`,
      '--latchkey-url', stack.latchkeyUrl,
      '--issuer', stack.latchkeyUrl,
      '--leeway', '0s',
      '--feed-client-id', 'demo-api',
      // Deleting a post wants a login of the last few seconds (step-up).
      '--delete-max-age', `${DELETE_MAX_AGE_S}s`,
    ], { LATCHKEY_DEMO_FEED_SECRET: feedSecret });
    assert.equal(demoListens, `http://127.0.0.1:${demoPort}`);
    stack.demoUrl = demoOrigin;
    stack.browser = await chromium.launch({
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
    await stack.browser?.close();
    for (const child of children) child.kill('SIGTERM');
    await Promise.all(children.map((child) => (child.exitCode === null
      ? new Promise((ok) => { child.once('exit', ok); setTimeout(ok, 5000); })
      : null)));
    if (tmp) rmSync(tmp, { recursive: true, force: true });
    await stack.mail.close();
  });
  return stack;
}

const isRefresh = (request) => request.method() === 'POST'
  && new URL(request.url()).pathname === '/v1/auth/refresh';

/** Counts the refresh requests a page sends, and their answers. */
export function watchRefreshes(page) {
  const seen = { requests: 0, statuses: [], at: [] };
  page.on('request', (request) => {
    if (isRefresh(request)) {
      seen.requests += 1;
      seen.at.push(Date.now());
    }
  });
  page.on('response', (response) => {
    if (isRefresh(response.request())) seen.statuses.push(response.status());
  });
  return seen;
}

/** How many times the page has shown its login form. */
export const loginShown = (page) => page.evaluate(() => Number(document.body.dataset.loginShown));

/** Opens the demo and logs in with the form. */
export async function logIn(page, url, username = USERNAME, password = PASSWORD) {
  await page.goto(url);
  await page.waitForSelector('#login-form', { state: 'visible' });
  await page.fill('#username', username);
  await page.fill('#password', password);
  await page.click('#login-button');
  await page.waitForSelector('#feed article.post', { state: 'visible' });
  await page.waitForSelector('#device-list li', { state: 'visible' });
}

/** Opens the demo in a tab of a context that is logged in already. */
export async function openLoggedIn(page, url) {
  await page.goto(url);
  await page.waitForSelector('#feed article.post', { state: 'visible' });
}

export const likeCount = async (page, id) => Number(await page.textContent(`article.post[data-id="${id}"] .like-count`));

/** Clicks Like on post `id` and waits for the count to change from `before`. */
export async function like(page, id) {
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

/**
 * Makes the page believe it is hidden or shown: `document.visibilityState`
 * overridden, then the `visibilitychange` event, as a browser switching
 * tabs would send it (headless Chromium shows every page).
 */
export async function setVisible(page, visible) {
  await page.evaluate((shown) => {
    Object.defineProperty(document, 'visibilityState', { configurable: true, get: () => (shown ? 'visible' : 'hidden') });
    Object.defineProperty(document, 'hidden', { configurable: true, get: () => !shown });
    document.dispatchEvent(new Event('visibilitychange'));
  }, visible);
}

/** Bytes of an RFC 4648 base32 string (no padding). */
function base32(text) {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
  const out = [];
  let bits = 0;
  let value = 0;
  for (const c of text.replace(/=+$/, '')) {
    value = ((value << 5) | alphabet.indexOf(c)) & 0xffff;
    bits += 5;
    if (bits >= 8) {
      out.push((value >>> (bits - 8)) & 0xff);
      bits -= 8;
    }
  }
  return Buffer.from(out);
}

/** The authenticator app: the RFC 6238 code of `secret` at `at` (ms). */
export function totpCode(secret, at = Date.now()) {
  const counter = Buffer.alloc(8);
  counter.writeBigUInt64BE(BigInt(Math.floor(at / 30000)));
  const mac = createHmac('sha1', base32(secret)).update(counter).digest();
  const offset = mac[mac.length - 1] & 15;
  return String((mac.readUInt32BE(offset) & 0x7fffffff) % 1e6).padStart(6, '0');
}
