// Compiled (never run) by `npm run types`: the declarations describe a
// typical use, and the wrong ones fail.
import { createLatchkey, type State, type User } from '@latchkey/browser';

const latchkey = createLatchkey({
  onChange(state: State) {
    if (state.status === 'loggedIn') show(state.user);
    else if (state.status === 'loggedOut' && state.reason === 'ended') warn('Your session has ended.');
  },
});

function show(user: User): string {
  return user.username;
}
function warn(text: string): void {
  void text;
}

async function page(): Promise<void> {
  const login = await latchkey.login('alice', 'correct horse battery');
  if (login.ok && login.mfaRequired) {
    const second = await latchkey.loginSecondStep(login.mfaToken, { code: '123456' });
    if (second.ok) show(second.user);
    await latchkey.loginSecondStep(login.mfaToken, { recovery_code: 'abcd-efgh-ijkm-npqr' });
    // @ts-expect-error one factor, named
    await latchkey.loginSecondStep(login.mfaToken, '123456');
  } else if (login.ok) show(login.user);
  else if (login.error.code === 'rate_limited') warn(`wait ${login.error.retryAfter ?? '?'} s`);
  const posts = await latchkey.fetch('/api/posts', { method: 'GET' });
  if (posts.ok) void (posts.data as { posts: unknown[] }).posts;
  const sessions = await latchkey.sessions();
  if (sessions.ok) for (const s of sessions.sessions) if (!s.current) await latchkey.revokeSession(s.id);
  await latchkey.changePassword('old password', 'new password');
  await latchkey.logoutEverywhere();
  const off = latchkey.onChange(() => {});
  off();
  // @ts-expect-error a password is required
  await latchkey.login('alice');
  // @ts-expect-error no user on a failure before narrowing
  void login.user;
  await latchkey.logout();
  latchkey.close();
}
void page;
