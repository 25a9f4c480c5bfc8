// The account lifecycle in Chromium against the real stack: the verification and reset mails read
// from the stack's SMTP server and their links opened as mailed, the password change ending the
// other sessions, and the sessions list. Every page is checked with axe and photographed.
import { expect, test, type APIRequestContext } from "@playwright/test";

import { PASSWORD, apiLogin, checkPage, mailedLinks, signIn, signUp, signedIn } from "./support";

const NEW_PASSWORD = "a new passphrase 2";

async function profileStatus(request: APIRequestContext, token: string): Promise<number> {
  return (await request.get("/api/profile", { headers: { authorization: `Bearer ${token}` } })).status();
}

test("the verification mail's link confirms the address once; asking again is throttled", async ({ page }) => {
  const username = await signUp(page);
  const address = `${username}@example.com`;
  const [first] = await mailedLinks(address, "verify-email");

  await page.getByRole("link", { name: "Profile" }).click();
  await expect(page.getByLabel("E-mail status")).toHaveText("Your e-mail address is not confirmed yet.");
  await page.getByRole("button", { name: "Send the link again" }).click();
  await expect(page.getByRole("status")).toHaveText(`A new link is on its way to ${address}.`);
  // The stack allows one resend per address (MAIL_LIMIT_PER_ADDRESS=1): the next is a 429 that
  // says when to try again (its RetryInfo).
  await page.getByRole("button", { name: "Send the link again" }).click();
  await expect(page.getByRole("alert")).toHaveText(/^Too many mails were asked for\. Try again in \d+ minutes\.$/);
  await checkPage(page, "profile-resend-throttled");
  const links = await mailedLinks(address, "verify-email", 2);
  const latest = links[links.length - 1]!;

  // The first link was superseded by the resend; the latest confirms, once.
  await page.goto(first!);
  await expect(page.getByRole("alert")).toHaveText("A newer link was sent since this one. Use the link in the latest mail.");
  await checkPage(page, "verify-email-superseded");
  await page.goto(latest);
  await expect(page.getByRole("status")).toHaveText(`Your e-mail address ${address} is confirmed.`);
  await expect(page).toHaveURL(/\/verify-email$/); // the token leaves the address bar
  await checkPage(page, "verify-email");
  await page.goto(latest);
  await expect(page.getByRole("alert")).toHaveText("This link was already used. Ask for a new one if you still need it.");
  await page.goto("/verify-email");
  await expect(page.getByRole("alert")).toContainText("This page needs the link from the mail");

  await page.goto("/profile");
  await expect(page.getByLabel("E-mail status")).toHaveText("Your e-mail address is confirmed.");
  await expect(page.getByRole("button", { name: "Send the link again" })).toHaveCount(0);
});

test("sessions: see them, end one, change the password (the others end) and sign out the rest", async ({
  browser,
  page,
  request,
}) => {
  const username = await signedIn(page);
  // A second browser signed in, and a native app (the JSON API with its own user agent).
  const laptop = await browser.newContext();
  const laptopPage = await laptop.newPage();
  await signIn(laptopPage, username);
  const phone = await apiLogin(request, username, PASSWORD, "PinexaApp/2.1 (iPhone)");

  await page.getByRole("link", { name: "Profile" }).click();
  const panel = page.getByRole("region", { name: "Sessions" });
  const form = page.getByRole("form", { name: "Password" });
  const sessions = panel.getByRole("table", { name: "Sessions" }).getByRole("row");
  await expect(sessions).toHaveCount(4); // the header and three sessions
  await expect(page.getByRole("row", { name: /This session/ })).toHaveCount(1);
  await checkPage(page, "profile-sessions");

  // End the phone's session: its access token is refused at once.
  await panel.getByRole("button", { name: /^End the session of PinexaApp\/2\.1 \(iPhone\)/ }).click();
  await expect(panel.getByRole("status")).toHaveText("Signed out PinexaApp/2.1 (iPhone).");
  await expect(sessions).toHaveCount(3);
  await expect.poll(() => profileStatus(request, phone.access_token), { timeout: 5_000 }).toBe(401);

  // A wrong current password is refused beside its field; a short new one beside its own.
  const current = page.getByLabel("Current password");
  const next = page.getByLabel("New password");
  await current.fill("not my password");
  await next.fill(NEW_PASSWORD);
  await page.getByRole("button", { name: "Change password" }).click();
  await expect(form.getByRole("alert")).toHaveText("Your current password is not right.");
  await expect(current).toHaveAttribute("aria-invalid", "true");
  await expect(current).toHaveAccessibleDescription("is incorrect");
  await checkPage(page, "profile-password-error");
  await current.fill(PASSWORD);
  await next.fill("short");
  await page.getByRole("button", { name: "Change password" }).click();
  await expect(next).toHaveAttribute("aria-invalid", "true");
  await expect(current).not.toHaveAttribute("aria-invalid", "true");

  // The change signs the laptop out and keeps this session.
  await next.fill(NEW_PASSWORD);
  await next.press("Enter"); // the form submits from the keyboard
  await expect(form.getByRole("status")).toHaveText("Your password is changed. 1 other session was signed out.");
  await expect(sessions).toHaveCount(2);
  await laptopPage.goto("/items");
  await expect(laptopPage).toHaveURL(/\/signin$/);
  await laptop.close();
  await page.reload();
  await expect(page.getByRole("heading", { name: "Your profile" })).toBeVisible();

  // Sign out every other session at once.
  const tablet = await apiLogin(request, username, NEW_PASSWORD, "PinexaApp/2.1 (iPad)");
  await page.reload();
  await expect(sessions).toHaveCount(3);
  await panel.getByRole("button", { name: "Sign out other sessions" }).click();
  await expect(panel.getByRole("status")).toHaveText("1 other session was signed out.");
  await expect(sessions).toHaveCount(2);
  await expect(panel.getByRole("button", { name: "Sign out other sessions" })).toBeDisabled();
  await expect.poll(() => profileStatus(request, tablet.access_token), { timeout: 5_000 }).toBe(401);
  await page.reload();
  await expect(page.getByRole("row", { name: /This session/ })).toHaveCount(1);
});

test("forgot password: the mailed link sets a new one, every session ends and the old password fails", async ({
  browser,
  page,
}) => {
  const username = await signedIn(page); // a session that the reset must end
  const address = `${username}@example.com`;
  const other = await browser.newContext();
  const guest = await other.newPage();
  await guest.goto("/signin");
  // By keyboard: the link opens the form and its field takes the focus; Enter sends it.
  await guest.getByRole("button", { name: "Forgot your password?" }).press("Enter");
  const email = guest.getByLabel("Your e-mail address");
  await expect(email).toBeFocused();
  const answer = (to: string) => `If an account has the address ${to}, a link to reset its password is on its way. Check your mail.`;
  await email.fill(`nobody-${address}`);
  await email.press("Enter");
  await expect(guest.getByRole("status")).toHaveText(answer(`nobody-${address}`));
  // The same words for an account's address as for an unknown one.
  await email.fill(address);
  await email.press("Enter");
  await expect(guest.getByRole("status")).toHaveText(answer(address));
  await checkPage(guest, "forgot-password");

  const [link] = await mailedLinks(address, "reset-password");
  await guest.goto(link!);
  await expect(guest).toHaveURL(/\/reset-password$/); // the token leaves the address bar
  const password = guest.getByLabel("New password");
  await password.fill("short");
  await guest.getByRole("button", { name: "Set the new password" }).click();
  await expect(password).toHaveAttribute("aria-invalid", "true");
  await checkPage(guest, "reset-password-error");
  await password.fill(NEW_PASSWORD);
  await password.press("Enter");
  await expect(guest.getByRole("status")).toHaveText(
    "Your password is changed, and every session of your account was signed out.",
  );
  await checkPage(guest, "reset-password");

  // The session that was open has ended; the old password fails, the new one works.
  await page.goto("/items");
  await expect(page).toHaveURL(/\/signin$/);
  await page.getByLabel("Username or e-mail").fill(username);
  await page.getByLabel("Password").fill(PASSWORD);
  await page.getByRole("button", { name: "Sign in" }).click();
  await expect(page.getByRole("alert")).toHaveText("The username or password is wrong.");
  await signIn(page, username, NEW_PASSWORD);
  await page.goto("/profile"); // the reset link proved the address too
  await expect(page.getByLabel("E-mail status")).toHaveText("Your e-mail address is confirmed.");

  // The link works once.
  await guest.goto(link!);
  await guest.getByLabel("New password").fill("another passphrase 3");
  await guest.getByRole("button", { name: "Set the new password" }).click();
  await expect(guest.getByRole("alert")).toHaveText("This link was already used. Ask for a new one if you still need it.");
  await other.close();
});
