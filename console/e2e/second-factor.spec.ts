// The second factor in Chromium against the real stack: set up with the QR code (the code each
// time computed here with otpauth, as an authenticator app would), new recovery codes behind a
// step-up, sign-in with the code and with a recovery code (which works once), and turning it off.
// Every new page and dialog is checked with axe and photographed.
import { expect, test, type Page } from "@playwright/test";
import * as OTPAuth from "otpauth";

import { PASSWORD, checkPage, signedIn } from "./support";

/** The code of the RFC 6238 step `offset` steps from now (the server takes now ± 1, each once). */
function codeAt(secret: string, offset: number): string {
  const totp = new OTPAuth.TOTP({ secret: OTPAuth.Secret.fromBase32(secret), digits: 6, period: 30, algorithm: "SHA1" });
  return totp.generate({ timestamp: Date.now() + offset * 30_000 });
}

async function password(page: Page, username: string): Promise<void> {
  await page.goto("/signin");
  await page.getByLabel("Username or e-mail").fill(username);
  await page.getByLabel("Password").fill(PASSWORD);
  await page.getByRole("button", { name: "Sign in" }).click();
}

async function signOut(page: Page): Promise<void> {
  await page.getByRole("button", { name: "Sign out", exact: true }).click();
  await expect(page.getByRole("heading", { name: "Sign in" })).toBeVisible();
}

async function recoveryCodes(page: Page): Promise<string[]> {
  const list = page.getByRole("list", { name: "Recovery codes" });
  await expect(list.getByRole("listitem")).toHaveCount(10);
  return list.getByRole("listitem").allTextContents();
}

test("set up TOTP, sign in with a code and with a recovery code (once), step up, turn it off", async ({ page }) => {
  // Wait for a fresh 30 s step: the journey spends steps now and now+1 within it.
  const intoStep = Date.now() % 30_000;
  if (intoStep > 15_000) await page.waitForTimeout(30_000 - intoStep + 200);

  const username = await signedIn(page);
  await page.getByRole("link", { name: "Profile" }).click();
  const panel = page.getByRole("region", { name: "Second factor" });
  await panel.getByRole("button", { name: "Set up" }).click();
  const qr = panel.getByRole("img", { name: /QR code/ });
  await expect(qr).toBeVisible();
  expect(await qr.getAttribute("src")).toMatch(/^data:image\/svg\+xml;charset=utf-8,/);
  expect(await qr.evaluate((img: HTMLImageElement) => img.naturalWidth)).toBeGreaterThan(0); // it decoded
  const secret = (await panel.getByLabel("Secret key").textContent()) ?? "";
  expect(secret).toMatch(/^[A-Z2-7]{32}$/);
  await checkPage(page, "second-factor-enrol");

  await panel.getByLabel("Code from the app").fill("000000" === codeAt(secret, 0) ? "111111" : "000000");
  await panel.getByRole("button", { name: "Turn on" }).click();
  await expect(panel.getByRole("alert")).toContainText("not right");
  await panel.getByLabel("Code from the app").fill(codeAt(secret, 0));
  await panel.getByRole("button", { name: "Turn on" }).click();
  const first = await recoveryCodes(page);
  await checkPage(page, "second-factor-recovery-codes");
  await panel.getByRole("button", { name: "I have saved them" }).click();
  await expect(panel.getByRole("list", { name: "Recovery codes" })).toHaveCount(0);

  // This session signed in with the password alone: new recovery codes ask for a code first.
  await panel.getByRole("button", { name: "New recovery codes" }).click();
  const dialog = page.getByRole("dialog", { name: "Confirm it is you" });
  await expect(dialog).toBeVisible();
  await checkPage(page, "second-factor-step-up");
  await dialog.getByRole("button", { name: "Use a recovery code instead" }).click();
  await dialog.getByLabel("Recovery code").fill(first[0]);
  await dialog.getByRole("button", { name: "Verify" }).click();
  await expect(dialog).toBeHidden();
  const codes = await recoveryCodes(page);
  expect(codes.filter((c) => first.includes(c))).toEqual([]);
  await panel.getByRole("button", { name: "I have saved them" }).click();
  await signOut(page);

  // Password, then the code the app shows (the next step: this one was spent turning it on).
  await password(page, username);
  const code = page.getByLabel("Authenticator code");
  await expect(code).toBeFocused();
  await checkPage(page, "sign-in-code");
  await code.fill(codeAt(secret, 1));
  await page.getByRole("button", { name: "Verify" }).click();
  await expect(page.getByRole("heading", { name: "Your items" })).toBeVisible();
  await signOut(page);

  // A recovery code signs in once; the same code again is refused in words; a replaced one too.
  await password(page, username);
  await page.getByRole("button", { name: "Use a recovery code instead" }).click();
  await page.getByLabel("Recovery code").fill(codes[0]);
  await page.getByRole("button", { name: "Verify" }).click();
  await expect(page.getByRole("heading", { name: "Your items" })).toBeVisible();
  await signOut(page);
  await password(page, username);
  await page.getByRole("button", { name: "Use a recovery code instead" }).click();
  for (const spent of [codes[0], first[1]]) {
    await page.getByLabel("Recovery code").fill(spent);
    await page.getByRole("button", { name: "Verify" }).click();
    await expect(page.getByRole("alert")).toHaveText(
      "That code is not right. Enter the code your app shows now, or a recovery code.",
    );
  }
  await checkPage(page, "sign-in-code-refused");
  await page.getByLabel("Recovery code").fill(codes[1]);
  await page.getByRole("button", { name: "Verify" }).click();
  await expect(page.getByRole("heading", { name: "Your items" })).toBeVisible();

  // Signed in with the second factor just now: turning it off needs no further code.
  await page.getByRole("link", { name: "Profile" }).click();
  await panel.getByRole("button", { name: "Turn off" }).click();
  await expect(panel.getByRole("status")).toHaveText("The second factor is off. Signing in needs only your password now.");
  await expect(panel.getByRole("button", { name: "Set up" })).toBeVisible();
  await signOut(page);
  await password(page, username);
  await expect(page.getByRole("heading", { name: "Your items" })).toBeVisible();
});
