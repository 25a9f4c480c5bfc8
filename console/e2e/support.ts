import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";

import AxeBuilder from "@axe-core/playwright";
import { expect, type APIRequestContext, type Page } from "@playwright/test";

export const PASSWORD = "correct horse battery";

export function uniqueName(prefix = "pw"): string {
  return `${prefix}${Date.now().toString(36)}${Math.random().toString(36).slice(2, 6)}`;
}

/** Sign up through the console's page; lands on the items page, signed in. */
export async function signUp(page: Page, username = uniqueName()): Promise<string> {
  await page.goto("/signup");
  await page.getByLabel("Username").fill(username);
  await page.getByLabel("E-mail").fill(`${username}@example.com`);
  await page.getByLabel("Display name").fill(`Tester ${username}`);
  await page.getByLabel("Password").fill(PASSWORD);
  await page.getByRole("button", { name: "Create account" }).click();
  await expect(page.getByRole("heading", { name: "Your items" })).toBeVisible();
  return username;
}

/** A new account, already signed in in `page`'s browser context, for journeys that are not about
 * signing up or in: the account is made over the API and signed in in cookie mode through the
 * context's own request client, which shares the browser's cookie jar, so the page starts with
 * the refresh cookie a sign-in through the form would have left. Lands on the items page. */
export async function signedIn(page: Page, username = uniqueName()): Promise<string> {
  const created = await page.request.post("/api/v1/users", {
    data: { username, email: `${username}@example.com`, display_name: `Tester ${username}`, password: PASSWORD },
  });
  expect(created.status(), await created.text()).toBe(200);
  const login = await page.request.post("/api/v1/auth/login", {
    data: { username, password: PASSWORD },
    headers: { "x-pinexa-session": "cookie" },
  });
  expect(login.status(), await login.text()).toBe(200);
  await page.goto("/items");
  await expect(page.getByRole("heading", { name: "Your items" })).toBeVisible();
  return username;
}

export async function signIn(page: Page, username: string, password = PASSWORD): Promise<void> {
  await page.goto("/signin");
  await page.getByLabel("Username or e-mail").fill(username);
  await page.getByLabel("Password").fill(password);
  await page.getByRole("button", { name: "Sign in" }).click();
  await expect(page.getByRole("button", { name: "Sign out" })).toBeVisible();
}

/** A token pair over the JSON API, as a native client gets it (no cookie mode). */
export async function apiLogin(request: APIRequestContext, username: string, password = PASSWORD, userAgent?: string) {
  const headers = userAgent ? { "user-agent": userAgent } : undefined;
  const response = await request.post("/api/v1/auth/login", { data: { username, password }, headers });
  expect(response.status()).toBe(200);
  return (await response.json()) as { access_token: string; refresh_token: string };
}

/** Axe finds no serious or critical violation on what the page shows now; and a screenshot of
 * it goes to screenshots/ (gitignored) to be looked at. */
export async function checkPage(page: Page, name: string): Promise<void> {
  // A dialog fading in is half transparent: axe would measure the contrast of a frame of the
  // animation, not of what the user reads, so wait until every animation has finished or was
  // cancelled (an element that went away). A spinner's animation never ends: only the finite
  // ones are waited for. Checked again every 100 ms until none runs, so an animation that starts
  // meanwhile is waited for too, and a page in the background (no animation frames) cannot hang it.
  await page.waitForFunction(
    () =>
      document
        .getAnimations()
        .every((a) => a.playState !== "running" || !Number.isFinite(Number(a.effect?.getComputedTiming().endTime))),
    undefined,
    { polling: 100, timeout: 10_000 },
  );
  await page.screenshot({ path: `screenshots/${name}.png`, fullPage: true });
  const results = await new AxeBuilder({ page }).withTags(["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]).analyze();
  const bad = results.violations.filter((v) => v.impact === "serious" || v.impact === "critical");
  expect(
    bad.map((v) => `${v.id} (${v.impact}): ${v.help} — ${v.nodes.map((n) => `${n.target.join(" ")} ${n.failureSummary ?? ""} ${n.html.slice(0, 120)}`).join(", ")}`),
    `axe on ${name}`,
  ).toEqual([]);
}

const MAIL_DIR = process.env.MAIL_DIR ?? "";

/** The links of the given kind ("verify-email", "reset-password") in the mails the stack's SMTP
 * server wrote for `address` (MAIL_DIR/*.eml, oldest first), once there are at least `count`:
 * the real mails the services sent, read as a person would open them. */
export async function mailedLinks(address: string, kind: string, count = 1): Promise<string[]> {
  expect(MAIL_DIR, "MAIL_DIR names the stack's mail folder").not.toBe("");
  const pattern = new RegExp(`https?://[^\\s"'<>]+/${kind}\\?token=[A-Za-z0-9_-]+`);
  let links: string[] = [];
  await expect
    .poll(
      () => {
        links = [];
        const files = readdirSync(MAIL_DIR).filter((name) => name.endsWith(".eml")).sort();
        for (const name of files) {
          const text = readFileSync(join(MAIL_DIR, name), "utf8");
          const to = /^To: (.*)$/m.exec(text)?.[1] ?? "";
          const link = pattern.exec(text)?.[0];
          if (link && to.toLowerCase().includes(address.toLowerCase())) links.push(link);
        }
        return links.length;
      },
      { message: `${count} ${kind} mail(s) to ${address} in ${MAIL_DIR}`, timeout: 20_000 },
    )
    .toBeGreaterThanOrEqual(count);
  return links;
}
