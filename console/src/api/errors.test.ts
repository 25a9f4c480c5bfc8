import { describe, expect, it } from "vitest";

import { problemFrom, toProblem } from "./errors";

const info = (reason: string, domain = "pinexa.data") => ({
  "@type": "type.googleapis.com/google.rpc.ErrorInfo",
  reason,
  domain,
  metadata: {},
});

describe("problemFrom", () => {
  it("words an etag conflict from its ErrorInfo reason", () => {
    const problem = problemFrom(409, { code: 10, message: "etag mismatch", details: [info("ETAG_MISMATCH")] });
    expect(problem.reason).toBe("ETAG_MISMATCH");
    expect(problem.text).toMatch(/changed this in the meantime/);
  });

  it("keys BadRequest field violations by the field's last segment", () => {
    const problem = problemFrom(400, {
      code: 3,
      message: "invalid",
      details: [
        info("INVALID_INPUT", "pinexa.users"),
        {
          "@type": "type.googleapis.com/google.rpc.BadRequest",
          field_violations: [
            { field: "user.username", description: "must be 3 to 32 characters" },
            { field: "user.password", description: "must be at least 10 characters" },
          ],
        },
      ],
    });
    expect(problem.fields).toEqual({ username: "must be 3 to 32 characters", password: "must be at least 10 characters" });
    expect(problem.text).toBe("Some fields need fixing.");
  });

  it("says when to try again from RetryInfo", () => {
    const problem = problemFrom(429, {
      code: 8,
      details: [info("LOGIN_THROTTLED", "pinexa.auth"), { "@type": "type.googleapis.com/google.rpc.RetryInfo", retry_delay: "7s" }],
    });
    expect(problem.retryAfterSeconds).toBe(7);
    expect(problem.text).toBe("Too many failed sign-ins. Try again in 7 seconds.");
  });

  it("falls back to Retry-After, and to the HTTP status for an unknown reason", () => {
    expect(problemFrom(429, { details: [info("RATE_LIMITED", "envoy")] }, "1").text).toBe(
      "Too many requests. Try again in 1 second.",
    );
    expect(problemFrom(503, { details: [info("SOMETHING_NEW")] }).text).toMatch(/unavailable/);
    expect(problemFrom(418, "not json").text).toBe("The request failed (HTTP 418).");
  });

  it("quotes the filter's own message, which says where the problem is", () => {
    const problem = problemFrom(400, { code: 3, message: "unexpected end at column 9", details: [info("INVALID_FILTER")] });
    expect(problem.text).toBe("The filter could not be understood: unexpected end at column 9");
  });

  it("explains an unreachable service", () => {
    expect(toProblem({ status: "FETCH_ERROR", error: "TypeError: Failed to fetch" })?.text).toMatch(/could not be reached/);
  });
});

describe("the account-lifecycle reasons", () => {
  it("words a throttled mail request with its wait, and a sign-in the console cannot finish", () => {
    const throttled = problemFrom(
      429,
      { code: 8, message: "too many", details: [info("TOO_MANY_MAILS", "pinexa.users"), { "@type": "type.googleapis.com/google.rpc.RetryInfo", retry_delay: "3540s" }] },
      "3540",
    );
    expect(throttled.text).toBe("Too many mails were asked for. Try again in 59 minutes.");
    expect(problemFrom(401, { code: 16, message: "mfa", details: [info("MFA_REQUIRED", "pinexa.auth")] }).text).toBe(
      "This account asks for a code from an authenticator app.",
    );
  });

  it("lets a form word a reason its own way", () => {
    const body = { code: 3, message: "wrong", details: [info("INVALID_CREDENTIALS", "pinexa.auth")] };
    expect(problemFrom(400, body).text).toBe("The username or password is wrong.");
    expect(problemFrom(400, body, null, { INVALID_CREDENTIALS: "Your current password is not right." }).text).toBe(
      "Your current password is not right.",
    );
  });
});
