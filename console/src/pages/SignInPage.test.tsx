// A component test in jsdom: there is no server here, so `fetch` is replaced by one that answers
// as auth does through Envoy (the real server is driven by the Playwright journeys in e2e/).
import { render, screen } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { MemoryRouter } from "react-router-dom";
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
