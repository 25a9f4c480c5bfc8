// A component test in jsdom: there is no server here, so `fetch` is replaced by one that answers
// as auth does through Envoy (the real server is driven by the Playwright journeys in e2e/).
import { render, screen } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { MemoryRouter, Route, Routes } from "react-router-dom";
import { afterEach, describe, expect, it, vi } from "vitest";

import { ItemEditor } from "./ItemEditor";
import { SignInPage } from "./SignInPage";
import { Provider } from "react-redux";
import { makeStore } from "../store";

function answer(status: number, body: unknown, headers: Record<string, string> = {}) {
  return vi.fn(async () => new Response(JSON.stringify(body), { status, headers: { "content-type": "application/json", ...headers } }));
}

afterEach(() => vi.unstubAllGlobals());

describe("SignInPage", () => {
  it("sends cookie mode and shows a throttled sign-in with when to try again", async () => {
    const fetch = answer(
      429,
      {
        code: 8,
        message: "too many failed logins",
        details: [
          { "@type": "type.googleapis.com/google.rpc.ErrorInfo", reason: "LOGIN_THROTTLED", domain: "pinexa.auth" },
          { "@type": "type.googleapis.com/google.rpc.RetryInfo", retry_delay: "30s" },
        ],
      },
      { "retry-after": "30" },
    );
    vi.stubGlobal("fetch", fetch);
    render(
      <MemoryRouter>
        <SignInPage />
      </MemoryRouter>,
    );
    await userEvent.type(screen.getByLabelText(/username or e-mail/i), "ada");
    await userEvent.type(screen.getByLabelText(/^password/i), "wrong password");
    await userEvent.click(screen.getByRole("button", { name: "Sign in" }));
    expect(await screen.findByRole("alert")).toHaveTextContent("Too many failed sign-ins. Try again in 30 seconds.");
    const [url, init] = fetch.mock.calls[0] as unknown as [string, RequestInit];
    expect(url).toBe("/api/v1/auth/login");
    expect((init.headers as Record<string, string>)["x-pinexa-session"]).toBe("cookie");
    expect(init.credentials).toBe("same-origin");
  });

  it("puts field violations beside their fields", async () => {
    vi.stubGlobal(
      "fetch",
      answer(400, {
        code: 3,
        message: "invalid",
        details: [
          { "@type": "type.googleapis.com/google.rpc.ErrorInfo", reason: "INVALID_INPUT", domain: "pinexa.auth" },
          { "@type": "type.googleapis.com/google.rpc.BadRequest", field_violations: [{ field: "username", description: "is required" }] },
        ],
      }),
    );
    render(
      <MemoryRouter>
        <SignInPage />
      </MemoryRouter>,
    );
    await userEvent.click(screen.getByRole("button", { name: "Sign in" }));
    const username = screen.getByLabelText(/username or e-mail/i);
    expect(await screen.findByText("is required")).toBeInTheDocument();
    expect(username).toHaveAttribute("aria-invalid", "true");
    expect(username).toHaveAccessibleDescription("is required");
  });
});

describe("SignInPage's second-factor step", () => {
  const info = (reason: string, metadata?: Record<string, string>) => ({
    "@type": "type.googleapis.com/google.rpc.ErrorInfo",
    reason,
    domain: "pinexa.auth",
    ...(metadata ? { metadata } : {}),
  });
  const json = (status: number, body: unknown) =>
    new Response(JSON.stringify(body), { status, headers: { "content-type": "application/json" } });

  function renderPage() {
    render(
      <MemoryRouter initialEntries={["/signin"]}>
        <Routes>
          <Route path="/signin" element={<SignInPage />} />
          <Route path="/items" element={<p>the items page</p>} />
        </Routes>
      </MemoryRouter>,
    );
  }

  async function password() {
    await userEvent.type(screen.getByLabelText(/username or e-mail/i), "ada");
    await userEvent.type(screen.getByLabelText(/^password/i), "correct horse battery");
    await userEvent.click(screen.getByRole("button", { name: "Sign in" }));
  }

  it("asks for the code after the password, says a wrong one in words, and signs in with the right one", async () => {
    const answers = [
      json(401, { code: 16, message: "mfa", details: [info("MFA_REQUIRED", { mfa_token: "tok-1", expires_in: "300" })] }),
      json(401, { code: 16, message: "wrong", details: [info("INVALID_SECOND_FACTOR")] }),
      json(200, { access_token: "access", refresh_token: "", token_type: "Bearer", expires_in: 900 }),
    ];
    const fetch = vi.fn(async () => answers.shift() as Response);
    vi.stubGlobal("fetch", fetch);
    renderPage();
    await password();
    const code = await screen.findByLabelText(/authenticator code/i);
    expect(screen.queryByRole("alert")).not.toBeInTheDocument(); // MFA_REQUIRED is a step, not an error
    await userEvent.type(code, "123456");
    await userEvent.click(screen.getByRole("button", { name: "Verify" }));
    expect(await screen.findByRole("alert")).toHaveTextContent("That code is not right.");
    await userEvent.clear(code);
    await userEvent.type(code, "654321");
    await userEvent.click(screen.getByRole("button", { name: "Verify" }));
    expect(await screen.findByText("the items page")).toBeInTheDocument();
    const calls = fetch.mock.calls as unknown as Array<[string, RequestInit]>;
    expect(calls.map(([url]) => url)).toEqual(["/api/v1/auth/login", "/api/v1/auth/login:mfa", "/api/v1/auth/login:mfa"]);
    const [, init] = calls[2];
    expect(JSON.parse(init.body as string)).toEqual({ mfa_token: "tok-1", code: "654321" });
    expect((init.headers as Record<string, string>)["x-pinexa-session"]).toBe("cookie");
  });

  it("takes a recovery code instead, and an expired step goes back to the password", async () => {
    const answers = [
      json(401, { code: 16, message: "mfa", details: [info("MFA_REQUIRED", { mfa_token: "tok-2" })] }),
      json(401, { code: 16, message: "gone", details: [info("MFA_TOKEN_INVALID")] }),
    ];
    const fetch = vi.fn(async () => answers.shift() as Response);
    vi.stubGlobal("fetch", fetch);
    renderPage();
    await password();
    await userEvent.click(await screen.findByRole("button", { name: "Use a recovery code instead" }));
    await userEvent.type(screen.getByLabelText(/recovery code/i), "abcd-efgh ");
    await userEvent.click(screen.getByRole("button", { name: "Verify" }));
    expect(await screen.findByRole("alert")).toHaveTextContent("This sign-in took too long. Start again with your password.");
    expect(screen.getByLabelText(/^password/i)).toHaveValue("");
    const [, init] = (fetch.mock.calls as unknown as Array<[string, RequestInit]>)[1];
    expect(JSON.parse(init.body as string)).toEqual({ mfa_token: "tok-2", recovery_code: "abcd-efgh" });
  });
});

describe("ItemEditor", () => {
  it("refuses attributes that are not a JSON object, beside the field, without calling the API", async () => {
    const fetch = vi.fn();
    vi.stubGlobal("fetch", fetch);
    render(
      <Provider store={makeStore()}>
        <ItemEditor item={null} open onClose={() => undefined} />
      </Provider>,
    );
    await userEvent.type(screen.getByLabelText(/^title/i), "notes");
    const attributes = screen.getByLabelText(/attributes/i);
    await userEvent.clear(attributes);
    await userEvent.type(attributes, "[[1, 2]");
    await userEvent.click(screen.getByRole("button", { name: "Save" }));
    expect(attributes).toHaveAccessibleDescription("must be a JSON object: { … }");
    expect(fetch).not.toHaveBeenCalled();
  });
});
