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

export async function signIn(page: Page, username: string, password = PASSWORD): Promise<void> {
  await page.goto("/signin");
  await page.getByLabel("Username or e-mail").fill(username);
  await page.getByLabel("Password").fill(password);
  await page.getByRole("button", { name: "Sign in" }).click();
  await expect(page.getByRole("button", { name: "Sign out" })).toBeVisible();
}

/** A token pair over the JSON API, as a native client gets it (no cookie mode). */
export async function apiLogin(request: APIRequestContext, username: string, password = PASSWORD) {
  const response = await request.post("/api/v1/auth/login", { data: { username, password } });
  expect(response.status()).toBe(200);
  return (await response.json()) as { access_token: string; refresh_token: string };
}

/** Axe finds no serious or critical violation on what the page shows now; and a screenshot of
 * it goes to screenshots/ (gitignored) to be looked at. */
export async function checkPage(page: Page, name: string): Promise<void> {
  // A dialog fading in is half transparent: axe would measure the contrast of a frame of the
  // animation, not of what the user reads, so wait until every animation has finished (or was
  // cancelled: an element that went away rejects its `finished`).
  // A spinner's animation never ends: only the finite ones are waited for.
  await page.evaluate(() =>
    Promise.all(
      document
        .getAnimations()
        .filter((a) => Number.isFinite(Number(a.effect?.getComputedTiming().endTime)))
        .map((a) => a.finished.catch(() => undefined)),
    ),
  );
  await page.screenshot({ path: `screenshots/${name}.png`, fullPage: true });
  const results = await new AxeBuilder({ page }).withTags(["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]).analyze();
  const bad = results.violations.filter((v) => v.impact === "serious" || v.impact === "critical");
  expect(
    bad.map((v) => `${v.id} (${v.impact}): ${v.help} — ${v.nodes.map((n) => n.target.join(" ")).join(", ")}`),
    `axe on ${name}`,
  ).toEqual([]);
}
