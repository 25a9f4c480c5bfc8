// The session of this tab: the access token lives here, in memory only (never localStorage or
// sessionStorage). The refresh token is an HttpOnly cookie the page cannot read: auth sets it
// on sign-in in "cookie mode" (the x-pinexa-session header) and the browser sends it only to
// /api/v1/auth/refresh and /api/v1/auth/logout.
//
// Several tabs share that one cookie. A refresh spends it and sets the next one, so two tabs
// refreshing at once could present the same token twice. They don't:
// - a Web Lock ("pinexa-refresh") lets one tab refresh at a time, each with the newest cookie;
// - the tab that refreshed tells the others the new access token over a BroadcastChannel, so a
//   tab that waited for the lock uses it instead of refreshing again;
// - where neither API exists, auth's grace window (REFRESH_REUSE_GRACE_SECONDS, 10 s) still
//   honours a token presented twice at the same moment.
// Signing out in one tab signs out every tab (the same channel).
import { problemFrom, type Problem } from "../api/errors";

export const SESSION_HEADER = { "x-pinexa-session": "cookie" } as const;
const LOCK = "pinexa-refresh";

type Listener = () => void;
type Message = { type: "token"; token: string; at: number } | { type: "signed-out" };

let accessToken: string | null = null;
let ready = false; // the first refresh (restoring a session from the cookie) has answered
let lastTokenAt = 0;
const listeners = new Set<Listener>();
const channel: BroadcastChannel | null =
  typeof BroadcastChannel === "undefined" ? null : new BroadcastChannel("pinexa-session");

function emit(): void {
  for (const listener of listeners) listener();
}

function setToken(token: string | null, broadcast: boolean): void {
  accessToken = token;
  ready = true;
  if (token) lastTokenAt = Date.now();
  if (broadcast && channel) {
    channel.postMessage(token ? ({ type: "token", token, at: lastTokenAt } satisfies Message) : { type: "signed-out" });
  }
  emit();
}

channel?.addEventListener("message", (event: MessageEvent<Message>) => {
  const message = event.data;
  if (message.type === "token") {
    accessToken = message.token;
    lastTokenAt = Math.max(lastTokenAt, message.at);
    ready = true;
    emit();
  } else if (message.type === "signed-out") {
    setToken(null, false);
  }
});

export function subscribe(listener: Listener): () => void {
  listeners.add(listener);
  return () => listeners.delete(listener);
}

export function getAccessToken(): string | null {
  return accessToken;
}

export function isReady(): boolean {
  return ready;
}

/** The error a failed auth call throws: a Problem the pages show as is. */
export class SessionError extends Error {
  constructor(readonly problem: Problem) {
    super(problem.text);
  }
}

async function post(path: string, body: unknown): Promise<Response> {
  try {
    return await fetch(path, {
      method: "POST",
      credentials: "same-origin",
      headers: { "content-type": "application/json", ...SESSION_HEADER },
      body: JSON.stringify(body),
    });
  } catch {
    throw new SessionError(problemFrom("FETCH_ERROR", null));
  }
}

async function failure(response: Response): Promise<SessionError> {
  const body = await response.json().catch(() => null);
  return new SessionError(problemFrom(response.status, body, response.headers.get("retry-after")));
}

export interface Credentials {
  username: string;
  password: string;
}

/** What signing in with a password gave: a session, or the second step an account with a
 * second factor needs (Login's 401 MFA_REQUIRED carries the mfa_token in its ErrorInfo). */
export type SignInResult = { signedIn: true } | { signedIn: false; mfaToken: string };

function mfaTokenOf(status: number, body: unknown): string | null {
  if (status !== 401 || !body || typeof body !== "object") return null;
  const details = (body as { details?: Array<Record<string, unknown>> }).details ?? [];
  for (const detail of details) {
    const metadata = detail.metadata as Record<string, unknown> | undefined;
    if (detail.reason === "MFA_REQUIRED" && typeof metadata?.mfa_token === "string") return metadata.mfa_token;
  }
  return null;
}

/** Sign in with a password, in cookie mode. When the account has a second factor, nothing is
 * signed in yet: the caller asks for a code and calls signInWithSecondFactor. */
export async function signIn(credentials: Credentials): Promise<SignInResult> {
  const response = await post("/api/v1/auth/login", credentials);
  if (!response.ok) {
    const body: unknown = await response.json().catch(() => null);
    const mfaToken = mfaTokenOf(response.status, body);
    if (mfaToken) return { signedIn: false, mfaToken };
    throw new SessionError(problemFrom(response.status, body, response.headers.get("retry-after")));
  }
  const body = (await response.json()) as { access_token: string };
  setToken(body.access_token, true);
  return { signedIn: true };
}

/** The code from an authenticator app, or one of the account's recovery codes (each works once). */
export type SecondFactor = { code: string } | { recovery_code: string };

/** The second step of a sign-in: login:mfa with Login's mfa_token, in the same cookie mode. */
export async function signInWithSecondFactor(mfaToken: string, factor: SecondFactor): Promise<void> {
  const response = await post("/api/v1/auth/login:mfa", { mfa_token: mfaToken, ...factor });
  if (!response.ok) throw await failure(response);
  const body = (await response.json()) as { access_token: string };
  setToken(body.access_token, true);
}

/** Step-up: a fresh second factor for this session (POST /api/v1/auth/reauthenticate), which
 * answers with a new access token of the same session; every tab takes it. */
export async function reauthenticate(factor: SecondFactor): Promise<void> {
  let response: Response;
  try {
    response = await fetch("/api/v1/auth/reauthenticate", {
      method: "POST",
      credentials: "same-origin",
      headers: { "content-type": "application/json", authorization: `Bearer ${accessToken ?? ""}` },
      body: JSON.stringify(factor),
    });
  } catch {
    throw new SessionError(problemFrom("FETCH_ERROR", null));
  }
  if (!response.ok) throw await failure(response);
  const body = (await response.json()) as { access_token: string };
  setToken(body.access_token, true);
}

/** The `amr` claim of this tab's access token (RFC 8176 names: "pwd", "otp"), for what the
 * console shows only; the services verify the token themselves. */
export function authMethods(): string[] {
  const payload = accessToken?.split(".")[1];
  if (!payload) return [];
  try {
    const json = atob(payload.replace(/-/g, "+").replace(/_/g, "/"));
    const amr = (JSON.parse(json) as { amr?: unknown }).amr;
    return Array.isArray(amr) ? amr.filter((m): m is string => typeof m === "string") : [];
  } catch {
    return [];
  }
}

function withLock<T>(work: () => Promise<T>): Promise<T> {
  const locks = typeof navigator !== "undefined" ? navigator.locks : undefined;
  return locks ? locks.request(LOCK, work) : work();
}

let inFlight: Promise<string | null> | null = null;

/** A fresh access token from the refresh cookie, or null when there is no session any more.
 * Throws a SessionError when auth could not answer (503 and the like): the session may well
 * still be good, so it is kept. */
export function refresh(): Promise<string | null> {
  if (inFlight) return inFlight;
  const asked = Date.now();
  inFlight = withLock(async () => {
    // Another tab refreshed while this one waited for the lock: its token is ours too.
    if (accessToken && lastTokenAt > asked) return accessToken;
    const response = await post("/api/v1/auth/refresh", {});
    if (response.status === 401 || response.status === 400) {
      setToken(null, false);
      return null;
    }
    if (!response.ok) throw await failure(response);
    const body = (await response.json()) as { access_token: string };
    setToken(body.access_token, true);
    return body.access_token;
  }).finally(() => {
    inFlight = null;
  });
  return inFlight;
}

/** Restore the session at start-up from the cookie, if there is one. */
export async function restore(): Promise<void> {
  try {
    await refresh();
  } catch {
    ready = true;
    emit();
  }
}

/** Forget this tab's session without asking auth (which has ended it already: a password
 * reset, an ended session); every tab signs out. */
export function endLocalSession(): void {
  setToken(null, true);
}

/** Sign out: auth revokes the session and clears the cookie; every tab signs out. */
export async function signOut(): Promise<void> {
  try {
    await post("/api/v1/auth/logout", {});
  } finally {
    setToken(null, true);
  }
}
