// Types of @latchkey/browser (the source is plain JavaScript: src/index.js).

/** A latchkey user, as `/v1` answers it. */
export interface User {
  id: string;
  username: string;
  /** RFC 3339, UTC. */
  created_at: string;
}

/** One login on one device (`GET /v1/sessions`). */
export interface Session {
  id: string;
  created_at: string;
  last_used_at: string;
  expires_at: string;
  user_agent: string | null;
  ip: string;
  /** The session of this browser. */
  current: boolean;
}

/**
 * Why there is no session:
 * - `never`: this browser has not logged in (or logged out before this
 *   library was used);
 * - `ended`: it was logged in, and the session ended without a logout here
 *   (expired, revoked from another device, password changed);
 * - `logout`: logged out in this tab or another of this browser.
 */
export type LoggedOutReason = 'never' | 'ended' | 'logout';

export type State =
  /** Before the first answer (call `me()` on page load). */
  | { status: 'unknown' }
  | {
      status: 'loggedIn';
      user: User;
      /** When the access token expires (ms since the epoch), when known. */
      expiresAt?: number;
    }
  | { status: 'loggedOut'; reason: LoggedOutReason };

/**
 * `code` is latchkey's `error` (`invalid_credentials`, `rate_limited`,
 * `username_taken`, `registration_closed`, `invalid_request`, `not_found`,
 * `insufficient_scope`, ...) or the app's, with these from the library:
 * - `unavailable`: no answer (network, timeout), or a 502 or 503;
 * - `csrf`: latchkey refused the request's origin (403 `csrf_rejected`);
 * - `logged_out`: no session, even after a refresh;
 * - `http_<status>`: an error answer without a JSON `error`;
 * - `client_error`: a bug or an unusable argument (never thrown).
 */
export interface LatchkeyError {
  code: string;
  /** For a person: latchkey's `error_description` when there is one. */
  message: string;
  /** The HTTP status, when there was an answer. */
  status?: number;
  /** Seconds to wait, from `Retry-After` (429 `rate_limited`, 503). */
  retryAfter?: number;
}

export interface Failure {
  ok: false;
  error: LatchkeyError;
  /** The answer, when there was one. */
  response?: Response;
}

/** A successful answer: `data` is its JSON body (null when not JSON). */
export interface Success<T = any> {
  ok: true;
  status: number;
  data: T;
  response: Response;
}

export type Result<T extends object = {}> = (Success & T) | Failure;

export interface Options {
  /** latchkey's origin when it is not the page's (same site); default: the page's. */
  baseUrl?: string;
  /** Called in every tab on every change of state (logins, refreshes, logouts). */
  onChange?: (state: State) => void;
  /** Overrides for tests or unusual hosts; `null` turns a feature off. */
  fetch?: typeof fetch;
  locks?: LockManager | null;
  BroadcastChannel?: typeof BroadcastChannel | null;
  storage?: Storage | null;
  document?: Pick<Document, 'visibilityState' | 'addEventListener' | 'removeEventListener'> | null;
}

export interface Latchkey {
  /** The current state of this tab. */
  readonly state: State;
  /** Adds a listener of state changes; returns a function that removes it. */
  onChange(listener: (state: State) => void): () => void;
  /**
   * Logs in: on success every tab turns `loggedIn`. For a user with TOTP on,
   * the right password answers `mfaRequired` and no session: finish with
   * `loginSecondStep`.
   */
  login(
    username: string,
    password: string,
  ): Promise<Result<{ user: User; mfaRequired?: undefined } | { mfaRequired: true; mfaToken: string; methods: string[] }>>;
  /** The second step of a login: a TOTP `code` or a `recovery_code`. */
  loginSecondStep(
    mfaToken: string,
    factor: { code: string } | { recovery_code: string },
  ): Promise<Result<{ user: User }>>;
  /** Ends this session (both cookies cleared); every tab turns `loggedOut` (`logout`). */
  logout(): Promise<Result | { ok: true }>;
  /** Ends every session of the user, on every device. */
  logoutEverywhere(): Promise<Result>;
  /** Who is logged in; on page load, this also sets the state. */
  me(): Promise<Result<{ user: User }>>;
  /** The user's live sessions, oldest first. */
  sessions(): Promise<Result<{ sessions: Session[] }>>;
  /** Ends one session of the user (use `logout()` for this one). */
  revokeSession(id: string): Promise<Result>;
  /** Creates a user; does not log in. */
  register(username: string, password: string): Promise<Result<{ user: User }>>;
  /** Changes the password; every other session of the user ends. */
  changePassword(currentPassword: string, newPassword: string): Promise<Result>;
  /**
   * `fetch` with the cookies, for the app's own API: on a 401 it refreshes
   * once and retries once. The body must be one that can be sent twice (a
   * string, `FormData`, `URLSearchParams`, a `Blob`), not a stream.
   */
  fetch(input: string | URL, init?: RequestInit): Promise<Result>;
  /** Stops the timer and the channel (tests, single-page app teardown). */
  close(): void;
}

export function createLatchkey(options?: Options): Latchkey;
