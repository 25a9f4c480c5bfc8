// The admins' audit trail in Chromium against the real stack: a failed sign-in of a new account
// is found by filtering on its subject and type; a non-admin is told the page is not theirs.
import { expect, test } from "@playwright/test";

import { apiLogin, checkPage, signIn, signedIn, uniqueName } from "./support";

const ADMIN_USERNAME = process.env.ADMIN_USERNAME ?? "";
const ADMIN_PASSWORD = process.env.ADMIN_PASSWORD ?? "";

test("an admin filters the audit trail and pages through it; a user may not see it", async ({ page, browser }) => {
  expect(ADMIN_USERNAME, "ADMIN_USERNAME and ADMIN_PASSWORD name the stack's admin").not.toBe("");
  const other = await browser.newContext();
  const userPage = await other.newPage();
  const username = await signedIn(userPage, uniqueName("aud"));
  for (let i = 0; i < 3; i++) {
    const refused = await userPage.request.post("/api/v1/auth/login", { data: { username, password: "not the password" } });
    expect([401, 429]).toContain(refused.status()); // wrong, then throttled: each one is an event
  }
  await userPage.goto("/admin/audit");
  await expect(userPage.getByRole("alert")).toHaveText("Only an administrator may see this page.");
  await userPage.goto("/profile");
  const token = await userPage.evaluate(async () => {
    const answer = await fetch("/api/v1/auth/refresh", { method: "POST", headers: { "x-pinexa-session": "cookie" }, body: "{}" });
    return ((await answer.json()) as { access_token: string }).access_token;
  });
  const userId = (JSON.parse(Buffer.from(token.split(".")[1], "base64url").toString()) as { sub: string }).sub;
  await other.close();

  for (let i = 0; i < 6; i++) {
    const name = uniqueName("audx");
    const made = await page.request.post("/api/v1/users", {
      data: { username: name, email: `${name}@example.com`, password: "correct horse battery" },
    });
    expect(made.status()).toBe(200); // ACCOUNT_CREATED each: more than one page of 10
  }
  // auth's events reach the trail through users a moment later: wait until there are two pages.
  const admin = await apiLogin(page.request, ADMIN_USERNAME, ADMIN_PASSWORD);
  await expect
    .poll(async () => {
      const answer = await page.request.get("/api/v1/audit-events?page_size=10", {
        headers: { authorization: `Bearer ${admin.access_token}` },
      });
      return ((await answer.json()) as { next_page_token?: string }).next_page_token ?? "";
    }, { timeout: 20_000 })
    .not.toBe("");
  await signIn(page, ADMIN_USERNAME, ADMIN_PASSWORD);
  await page.getByRole("link", { name: "Audit trail" }).click();
  await expect(page.getByRole("heading", { name: "Audit trail" })).toBeVisible();
  await expect(page.getByRole("table", { name: "Audit events" }).getByRole("row")).not.toHaveCount(1);
  await page.getByLabel("Per page").click();
  await page.getByRole("option", { name: "10", exact: true }).click();
  await expect(page.getByRole("table", { name: "Audit events" }).getByRole("row")).toHaveCount(11);
  await expect(page.getByRole("button", { name: "Next page" })).toBeEnabled(); // more than 10 events by now
  await page.getByRole("button", { name: "Next page" }).click();
  await expect(page.getByRole("button", { name: "Previous page" })).toBeEnabled();
  await checkPage(page, "admin-audit");

  await page.getByLabel("Subject id").fill(userId);
  await page.getByLabel("Type").fill("login_failed");
  await page.getByRole("button", { name: "Apply" }).click();
  const rows = page.getByRole("table", { name: "Audit events" }).getByRole("row");
  // The unfiltered page stays on screen until the filtered one arrives: wait until every row but
  // the header is a LOGIN_FAILED (a snapshot of the rows taken before then goes stale).
  await expect(rows.filter({ hasNotText: "LOGIN_FAILED" })).toHaveCount(1);
  await expect(rows).not.toHaveCount(1);
  await expect(rows.nth(1)).toContainText("FAILURE");
  await expect(page.getByRole("button", { name: "Previous page" })).toBeDisabled();

  await page.getByLabel("Type").fill("ACCOUNT_CREATED");
  await page.getByRole("button", { name: "Apply" }).click();
  await expect(rows).toHaveCount(2);
  await expect(rows.nth(1)).toContainText("ACCOUNT_CREATED");
  await checkPage(page, "admin-audit-filtered");
});
