// Passkeys in a real browser (latchkey's API.md §10): Chromium's virtual
// authenticator (the DevTools protocol's WebAuthn domain) stands in for a
// platform authenticator with resident keys and user verification. The
// page is served from http://localhost: browsers refuse an IP address as a
// relying party, and localhost is a secure context without TLS.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { artifacts, logIn, useStack, USERNAME } from './harness.js';

const stack = useStack({ host: 'localhost' });

/** A virtual platform authenticator for `page`: it verifies its user and keeps discoverable credentials. */
async function addAuthenticator(page) {
  const cdp = await page.context().newCDPSession(page);
  await cdp.send('WebAuthn.enable');
  const { authenticatorId } = await cdp.send('WebAuthn.addVirtualAuthenticator', {
    options: {
      protocol: 'ctap2',
      transport: 'internal',
      hasResidentKey: true,
      hasUserVerification: true,
      isUserVerified: true,
      automaticPresenceSimulation: true,
    },
  });
  return {
    credentials: async () => (await cdp.send('WebAuthn.getCredentials', { authenticatorId })).credentials,
  };
}

const claimsOf = (jwt) => JSON.parse(Buffer.from(jwt.split('.')[1], 'base64url'));

/** Registers a passkey named `name` from the logged-in page's panel. */
async function registerPasskey(page, name) {
  const before = await page.locator('#passkey-list li').count();
  await page.fill('#passkey-name', name);
  await page.click('#passkey-register-button');
  await page.waitForFunction((n) => document.querySelectorAll('#passkey-list li').length === n, before + 1);
  assert.match(await page.textContent('#passkey-notice'), new RegExp(`Registered ${name}`));
}

async function logOut(page) {
  await page.click('#logout-button');
  await page.waitForSelector('#login-form', { state: 'visible' });
}

/** Clicks "Log in with a passkey" (with `username`, or none) and answers latchkey's finish. */
async function passkeyLogIn(page, username) {
  await page.fill('#username', username || '');
  const finished = page.waitForResponse((r) => new URL(r.url()).pathname === '/v1/auth/passkey/finish');
  await page.click('#passkey-login-button');
  return finished;
}

/** The page's own view of latchkey: the status of GET /v1/me with its cookies. */
const meStatus = (page) => page.evaluate(async () => (await fetch('/v1/me')).status);

test('register a passkey, then log in with it with and without the username', async () => {
  const context = await stack.browser.newContext();
  try {
    const page = await context.newPage();
    const authenticator = await addAuthenticator(page);
    await logIn(page, stack.demoUrl);
    await registerPasskey(page, 'Laptop');
    assert.equal(await page.textContent('#passkey-list li .passkey-name'), 'Laptop');
    // A discoverable credential of the relying party "localhost", with
    // alice's id as its user handle.
    const [credential, ...more] = await authenticator.credentials();
    assert.equal(more.length, 0);
    assert.equal(credential.isResidentCredential, true);
    assert.equal(credential.rpId, 'localhost');
    const me = await page.evaluate(async () => (await fetch('/v1/me')).json());
    const handle = Buffer.from(credential.userHandle, 'base64').toString('hex');
    assert.equal(handle, me.id.replaceAll('-', ''));

    for (const username of [USERNAME, '']) {
      await logOut(page);
      assert.equal(await meStatus(page), 401);
      const response = await passkeyLogIn(page, username);
      assert.equal(response.status(), 200, `with username "${username}"`);
      const body = await response.json();
      assert.equal(body.user.username, USERNAME);
      const claims = claimsOf(body.access_token);
      assert.deepEqual(claims.amr, ['hwk', 'user']);
      assert.equal(claims.auth_time, claims.iat);
      await page.waitForSelector('#feed article.post', { state: 'visible' });
      assert.equal(await page.textContent('#whoami'), `Logged in as ${USERNAME}`);
      assert.equal(await meStatus(page), 200);
    }
    // The list shows it used.
    await page.waitForSelector('#passkey-list li');
    assert.match(await page.textContent('#passkey-list li .meta'), /last used/);
    assert.equal((await authenticator.credentials())[0].signCount >= 2, true);
    await page.screenshot({ path: join(artifacts, 'passkeys.png'), fullPage: true });
  } finally {
    await context.close();
  }
});

test('a browser profile without the credential is refused; a removed passkey logs nobody in', async () => {
  const owner = await stack.browser.newContext();
  const stranger = await stack.browser.newContext();
  try {
    const page = await owner.newPage();
    const authenticator = await addAuthenticator(page);
    await logIn(page, stack.demoUrl);
    await registerPasskey(page, 'Phone');
    assert.equal((await authenticator.credentials()).length, 1);

    // Another profile: its authenticator holds no passkey of this site.
    const other = await stranger.newPage();
    const empty = await addAuthenticator(other);
    await other.goto(stack.demoUrl);
    await other.waitForSelector('#login-form', { state: 'visible' });
    for (const username of ['', USERNAME]) {
      await other.fill('#username', username);
      await other.click('#passkey-login-button');
      await other.waitForFunction(() => document.querySelector('#passkey-login-error').textContent !== '');
      assert.match(await other.textContent('#passkey-login-error'), /No passkey was used/);
      assert.equal(await other.getAttribute('body', 'data-view'), 'login');
      assert.equal(await meStatus(other), 401);
      await other.evaluate(() => { document.querySelector('#passkey-login-error').textContent = ''; });
    }
    assert.equal((await empty.credentials()).length, 0);

    // Removed on the account, the passkey the authenticator still holds
    // is refused by latchkey.
    const item = page.locator('#passkey-list li', { hasText: 'Phone' });
    await item.locator('.passkey-remove').click();
    await page.waitForFunction(() => ![...document.querySelectorAll('#passkey-list .passkey-name')]
      .some((n) => n.textContent === 'Phone'));
    await logOut(page);
    const response = await passkeyLogIn(page, '');
    assert.equal(response.status(), 401);
    assert.equal((await response.json()).error, 'invalid_credentials');
    await page.waitForFunction(() => document.querySelector('#passkey-login-error').textContent !== '');
    assert.match(await page.textContent('#passkey-login-error'), /not accepted/);
    assert.equal(await page.getAttribute('body', 'data-view'), 'login');
    assert.equal(await meStatus(page), 401);
    assert.equal((await authenticator.credentials()).length, 1, 'the authenticator still holds it');
  } finally {
    await owner.close();
    await stranger.close();
  }
});
