// Component tests of the account-lifecycle pages in jsdom. There is no server here, so `fetch`
// answers as the API does through Envoy; the Playwright journeys (e2e/) drive the real stack.
import { render, screen } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import type { ReactNode } from "react";
import { Provider } from "react-redux";
import { MemoryRouter } from "react-router-dom";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";

import { makeStore } from "../store";
import { ChangePasswordForm } from "./ChangePasswordForm";
import { ForgotPassword } from "./ForgotPassword";
import { ResetPasswordPage } from "./ResetPasswordPage";
import { describeAgent } from "./SessionsPanel";

const info = (reason: string) => ({ "@type": "type.googleapis.com/google.rpc.ErrorInfo", reason, domain: "pinexa.auth" });
const violations = (...pairs: Array<[string, string]>) => ({
  "@type": "type.googleapis.com/google.rpc.BadRequest",
  field_violations: pairs.map(([field, description]) => ({ field, description })),
});

function answer(status: number, body: unknown, headers: Record<string, string> = {}) {
  return vi.fn(
    async (_input: RequestInfo | URL, _init?: RequestInit) =>
      new Response(JSON.stringify(body), { status, headers: { "content-type": "application/json", ...headers } }),
  );
}

/** What RTK Query sent: its fetch gets a Request. */
async function sent(fetch: ReturnType<typeof answer>): Promise<{ url: string; method: string; body: unknown }> {
  const request = fetch.mock.calls[0]![0] as Request;
  return { url: new URL(request.url).pathname, method: request.method, body: await request.clone().json() };
}

function show(children: ReactNode, at = "/") {
  return render(
    <Provider store={makeStore()}>
      <MemoryRouter initialEntries={[at]}>{children}</MemoryRouter>
    </Provider>,
  );
}

// RTK Query builds a Request from a same-origin path ("/api/…"), which a browser resolves against
// the page; Node's Request needs the origin spelled out.
const NodeRequest = globalThis.Request;
class PageRequest extends NodeRequest {
  constructor(input: RequestInfo | URL, init?: RequestInit) {
    super(typeof input === "string" ? new URL(input, window.location.origin) : input, init);
  }
}
beforeEach(() => vi.stubGlobal("Request", PageRequest));
afterEach(() => vi.unstubAllGlobals());

describe("ResetPasswordPage", () => {
  it("sends the link's token with the new password, and says every session ended", async () => {
    const fetch = answer(200, {});
    vi.stubGlobal("fetch", fetch);
    show(<ResetPasswordPage />, "/reset-password?token=abc_DEF-123");
    await userEvent.type(screen.getByLabelText(/^new password/i), "a new passphrase 2");
    await userEvent.click(screen.getByRole("button", { name: "Set the new password" }));
    expect(await screen.findByRole("status")).toHaveTextContent("every session of your account was signed out");
    expect(await sent(fetch)).toEqual({
      url: "/api/v1/auth/password:confirmReset",
      method: "POST",
      body: { token: "abc_DEF-123", new_password: "a new passphrase 2" },
    });
  });

  it("puts a refused password beside its field, and explains a spent link", async () => {
    vi.stubGlobal("fetch", answer(400, { code: 3, message: "invalid", details: [info("INVALID_INPUT"), violations(["new_password", "must be 10 to 256 characters"])] }));
    const { unmount } = show(<ResetPasswordPage />, "/reset-password?token=t");
    await userEvent.type(screen.getByLabelText(/^new password/i), "short");
    await userEvent.click(screen.getByRole("button", { name: "Set the new password" }));
    const field = screen.getByLabelText(/^new password/i);
    expect(await screen.findByText("must be 10 to 256 characters")).toBeInTheDocument();
    expect(field).toHaveAttribute("aria-invalid", "true");
    expect(field).toHaveAccessibleDescription("must be 10 to 256 characters");
    unmount();

    vi.stubGlobal("fetch", answer(401, { code: 16, message: "used", details: [info("MAIL_TOKEN_USED")] }));
    show(<ResetPasswordPage />, "/reset-password?token=t");
    await userEvent.type(screen.getByLabelText(/^new password/i), "a new passphrase 2");
    await userEvent.click(screen.getByRole("button", { name: "Set the new password" }));
    expect(await screen.findByRole("alert")).toHaveTextContent("This link was already used.");
    expect(screen.getByRole("link", { name: "Ask for a new link" })).toHaveAttribute("href", "/signin");
  });

  it("without a token says to open the mail's link, and calls nothing", () => {
    const fetch = vi.fn();
    vi.stubGlobal("fetch", fetch);
    show(<ResetPasswordPage />, "/reset-password");
    expect(screen.getByRole("alert")).toHaveTextContent("needs the link from the password-reset mail");
    expect(screen.queryByRole("button", { name: "Set the new password" })).toBeNull();
    expect(fetch).not.toHaveBeenCalled();
  });
});

describe("ForgotPassword", () => {
  it("asks for the reset mail and answers the same whether or not the account exists", async () => {
    const fetch = answer(200, {});
    vi.stubGlobal("fetch", fetch);
    show(<ForgotPassword />);
    await userEvent.type(screen.getByLabelText(/your e-mail address/i), "ada@example.com");
    await userEvent.click(screen.getByRole("button", { name: "Send the reset link" }));
    expect(await screen.findByRole("status")).toHaveTextContent("If an account has the address ada@example.com");
    expect(await sent(fetch)).toEqual({ url: "/api/v1/auth/password:reset", method: "POST", body: { email: "ada@example.com" } });
  });

  it("shows a throttled request with when to try again", async () => {
    vi.stubGlobal(
      "fetch",
      answer(429, { code: 8, message: "slow down", details: [info("TOO_MANY_MAILS"), { "@type": "type.googleapis.com/google.rpc.RetryInfo", retry_delay: "1800s" }] }, { "retry-after": "1800" }),
    );
    show(<ForgotPassword />);
    await userEvent.type(screen.getByLabelText(/your e-mail address/i), "ada@example.com");
    await userEvent.click(screen.getByRole("button", { name: "Send the reset link" }));
    expect(await screen.findByRole("alert")).toHaveTextContent("Too many mails were asked for. Try again in 30 minutes.");
  });
});

describe("ChangePasswordForm", () => {
  it("words a wrong current password as such, beside its field", async () => {
    const fetch = answer(400, {
      code: 3,
      message: "the current password is incorrect",
      details: [info("INVALID_CREDENTIALS"), violations(["current_password", "is incorrect"])],
    });
    vi.stubGlobal("fetch", fetch);
    show(<ChangePasswordForm userId="u-1" />);
    await userEvent.type(screen.getByLabelText(/^current password/i), "wrong guess here");
    await userEvent.type(screen.getByLabelText(/^new password/i), "a new passphrase 2");
    await userEvent.click(screen.getByRole("button", { name: "Change password" }));
    expect(await screen.findByRole("alert")).toHaveTextContent("Your current password is not right.");
    expect(screen.getByLabelText(/^current password/i)).toHaveAccessibleDescription("is incorrect");
    expect(screen.getByLabelText(/^new password/i)).not.toHaveAttribute("aria-invalid", "true");
    expect(await sent(fetch)).toEqual({
      url: "/api/v1/users/u-1:changePassword",
      method: "POST",
      body: { current_password: "wrong guess here", new_password: "a new passphrase 2" },
    });
  });
});

describe("describeAgent", () => {
  it("names a browser and its system, else shows the agent", () => {
    expect(describeAgent("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36")).toBe("Chrome on Linux");
    expect(describeAgent("Mozilla/5.0 (Windows NT 10.0; rv:133.0) Gecko/20100101 Firefox/133.0")).toBe("Firefox on Windows");
    expect(describeAgent("PinexaApp/2.1 (iPhone)")).toBe("PinexaApp/2.1 (iPhone)");
    expect(describeAgent("")).toBe("Unknown device");
  });
});
