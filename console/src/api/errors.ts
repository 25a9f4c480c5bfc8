// Every API error in words a person understands, from its google.rpc.ErrorInfo reason; the
// BadRequest field violations, keyed by field; and, for throttling, when to try again.

/** The google.rpc.Status JSON every Pinexa error is (README "Errors"). */
export interface RpcStatus {
  code?: number;
  message?: string;
  details?: Array<Record<string, unknown> & { "@type"?: string }>;
}

export interface Problem {
  /** HTTP status, or "FETCH_ERROR" when the request never got an answer. */
  status: number | string;
  /** The ErrorInfo reason (e.g. ETAG_MISMATCH), or "" when there is none. */
  reason: string;
  /** What to tell the person. */
  text: string;
  /** BadRequest field violations: the field's last path segment (`username`) -> description. */
  fields: Record<string, string>;
  /** Seconds until a retry may succeed (RetryInfo, else Retry-After), when throttled. */
  retryAfterSeconds?: number;
}

const REASONS: Record<string, string> = {
  INVALID_INPUT: "Some fields need fixing.",
  INVALID_REQUEST: "The request was not accepted. Check the fields and try again.",
  INVALID_FILTER: "The filter could not be understood.",
  FILTER_FIELD_ADMIN_ONLY: "Only an administrator may filter by owner.",
  ALREADY_EXISTS: "That is already taken.",
  ETAG_MISMATCH:
    "Someone else changed this in the meantime. Reload it to see their changes, then make yours again.",
  CONCURRENT_UPDATE: "Someone else changed this at the same moment. Reload it and try again.",
  INVALID_CREDENTIALS: "The username or password is wrong.",
  LOGIN_THROTTLED: "Too many failed sign-ins.",
  RATE_LIMITED: "Too many requests.",
  ACCOUNT_DELETED: "This account has been deleted.",
  ACCOUNT_NOT_FOUND: "There is no such account.",
  USER_NOT_FOUND: "There is no such account.",
  ITEM_NOT_FOUND: "This item does not exist, or it is not yours.",
  NOT_FOUND: "Not found.",
  ROUTE_NOT_FOUND: "The console asked for something the API does not have.",
  METHOD_NOT_ALLOWED: "The console asked for something the API does not allow.",
  ADMIN_ONLY: "Only an administrator may do this.",
  ROLE_CHANGE_FORBIDDEN: "Only an administrator may change roles.",
  PERMISSION_DENIED: "You are not allowed to do this.",
  TOKEN_MISSING: "Please sign in.",
  TOKEN_EXPIRED: "Your session has expired. Please sign in again.",
  TOKEN_INVALID: "Your session is no longer valid. Please sign in again.",
  REFRESH_TOKEN_EXPIRED: "Your session has expired. Please sign in again.",
  REFRESH_TOKEN_INVALID: "Your session is no longer valid. Please sign in again.",
  REFRESH_TOKEN_REVOKED: "This session was signed out. Please sign in again.",
  REFRESH_TOKEN_REUSED:
    "For your safety this session was ended (its sign-in was used twice). Please sign in again.",
  REQUEST_TOO_LARGE: "This is too large to save.",
  URI_TOO_LONG: "The filter or search is too long.",
  REQUEST_TIMEOUT: "The request took too long to send. Check your connection and try again.",
  UPSTREAM_TIMEOUT: "The service took too long to answer. Try again shortly.",
  UPSTREAM_UNAVAILABLE: "The service is unavailable right now. Try again shortly.",
  USERS_UNAVAILABLE: "Accounts are unavailable right now. Try again shortly.",
  DATABASE_UNAVAILABLE: "The database is unavailable right now. Try again shortly.",
  DATA_STORE_UNAVAILABLE: "Item storage is unavailable right now. Try again shortly.",
  SEARCH_INDEX_NOT_READY: "Search is still being prepared. Try again in a minute.",
  JWKS_UNAVAILABLE: "Sign-in checks are unavailable right now. Try again shortly.",
  INTERNAL: "Something went wrong on our side. Try again; if it keeps happening, tell us.",
  // The account lifecycle (issue 12): mail links, password change, sessions, disabled accounts.
  MAIL_TOKEN_INVALID: "This link is not valid. Check that you opened the whole link from the mail.",
  MAIL_TOKEN_USED: "This link was already used. Ask for a new one if you still need it.",
  MAIL_TOKEN_SUPERSEDED: "A newer link was sent since this one. Use the link in the latest mail.",
  MAIL_TOKEN_EXPIRED: "This link has expired. Ask for a new one.",
  TOO_MANY_MAILS: "Too many mails were asked for.",
  ALREADY_VERIFIED: "This e-mail address is already confirmed.",
  EMAIL_TAKEN: "Another account already uses this e-mail address.",
  EMAIL_NOT_VERIFIED:
    "Confirm your e-mail address first: open the link we mailed you. Lost it? “Forgot your password?” mails a link that confirms the address too.",
  ACCOUNT_DISABLED: "This account has been disabled. Ask an administrator.",
  CANNOT_DISABLE_SELF: "You cannot disable your own account.",
  NOT_YOUR_ACCOUNT: "Only the account itself may do this.",
  PASSWORD_NOT_UPDATABLE: "Change the password with the password form.",
  SESSION_NOT_FOUND: "This session has already ended.",
  SESSION_REVOKED: "This session was signed out. Please sign in again.",
  REFRESH_TOKEN_NOT_YOURS: "Your session is no longer valid. Please sign in again.",
  SELF_ONLY: "Only the account itself may do this.",
  INCOMPLETE_REQUEST: "The request arrived cut off. Try again.",
  UNAVAILABLE: "The service is unavailable right now. Try again shortly.",
  // The second factor (issue 13). The console has no code step yet: say so rather than "sign in".
  MFA_REQUIRED: "This account asks for a code from an authenticator app.",
  MFA_THROTTLED: "Too many wrong codes.",
  MFA_TOKEN_INVALID: "This sign-in took too long. Start again with your password.",
  INVALID_TOTP_CODE: "That code is not right. Enter the code your app shows now.",
  INVALID_SECOND_FACTOR: "That code is not right. Enter the code your app shows now, or a recovery code.",
  REAUTHENTICATION_REQUIRED: "This change needs a fresh code from your authenticator app.",
  TOTP_ALREADY_ENABLED: "A second factor is already set up for this account.",
  TOTP_NOT_ENABLED: "This account has no second factor.",
  TOTP_NOT_ENROLLED: "Start setting up the second factor first.",
};

/** By HTTP status, when the reason is unknown to this console. */
const BY_STATUS: Record<number, string> = {
  400: "The request was not accepted.",
  401: "Please sign in.",
  403: "You are not allowed to do this.",
  404: "Not found.",
  409: "This conflicts with a change made meanwhile. Reload and try again.",
  429: "Too many requests.",
  500: "Something went wrong on our side.",
  503: "The service is unavailable right now. Try again shortly.",
  504: "The service took too long to answer. Try again shortly.",
};

function detail(status: RpcStatus, type: string): Record<string, unknown> | undefined {
  return status.details?.find((d) => d["@type"] === `type.googleapis.com/google.rpc.${type}`);
}

/** "2.5s" (a google.protobuf.Duration in JSON) -> 2.5 */
function durationSeconds(value: unknown): number | undefined {
  if (typeof value !== "string" || !value.endsWith("s")) return undefined;
  const seconds = Number(value.slice(0, -1));
  return Number.isFinite(seconds) ? seconds : undefined;
}

function fieldName(path: string): string {
  const parts = path.split(".");
  return parts[parts.length - 1] ?? path;
}

export function retryText(seconds: number): string {
  const whole = Math.max(1, Math.ceil(seconds));
  if (whole < 90) return `Try again in ${whole} second${whole === 1 ? "" : "s"}.`;
  const minutes = Math.ceil(whole / 60);
  return `Try again in ${minutes} minutes.`;
}

/** A Problem from an HTTP status, the JSON body (a google.rpc.Status, or anything) and the
 * Retry-After header. `wording` overrides the sentence for some reasons, where a form knows
 * better (a wrong *current* password is not a wrong sign-in). */
export function problemFrom(
  status: number | string,
  body: unknown,
  retryAfterHeader?: string | null,
  wording: Record<string, string> = {},
): Problem {
  if (typeof status !== "number") {
    return { status, reason: "", fields: {}, text: "The service could not be reached. Check your connection and try again." };
  }
  const rpc: RpcStatus = body && typeof body === "object" ? (body as RpcStatus) : {};
  const info = detail(rpc, "ErrorInfo");
  const reason = typeof info?.reason === "string" ? info.reason : "";
  const fields: Record<string, string> = {};
  const badRequest = detail(rpc, "BadRequest");
  const violations = (badRequest?.field_violations ?? badRequest?.fieldViolations) as
    | Array<{ field?: string; description?: string }>
    | undefined;
  for (const violation of violations ?? []) {
    if (violation.field) fields[fieldName(violation.field)] = violation.description ?? "is not valid";
  }
  let retryAfterSeconds = durationSeconds(
    (detail(rpc, "RetryInfo")?.retry_delay ?? detail(rpc, "RetryInfo")?.retryDelay) as unknown,
  );
  if (retryAfterSeconds === undefined && retryAfterHeader && /^\d+$/.test(retryAfterHeader)) {
    retryAfterSeconds = Number(retryAfterHeader);
  }
  let text = wording[reason] ?? REASONS[reason] ?? BY_STATUS[status] ?? `The request failed (HTTP ${status}).`;
  // The filter's own message says what and where ("unexpected ')' at column 12").
  if (reason === "INVALID_FILTER" && rpc.message) text = `The filter could not be understood: ${rpc.message}`;
  if (status === 429 || retryAfterSeconds !== undefined) {
    text = `${text} ${retryText(retryAfterSeconds ?? 1)}`;
  }
  return { status, reason, text, fields, retryAfterSeconds };
}

/** RTK Query's error (FetchBaseQueryError, with our meta) or anything thrown -> a Problem. */
export function toProblem(error: unknown, wording: Record<string, string> = {}): Problem | null {
  if (!error) return null;
  if (typeof error === "object" && error !== null && "status" in error) {
    const e = error as { status: number | string; data?: unknown; originalStatus?: number };
    const data = e.data as (RpcStatus & { retryAfter?: string | null }) | undefined;
    const status = e.status === "PARSING_ERROR" && e.originalStatus ? e.originalStatus : e.status;
    return problemFrom(status, data, data?.retryAfter ?? null, wording);
  }
  return { status: "ERROR", reason: "", fields: {}, text: "Something went wrong in the console." };
}
