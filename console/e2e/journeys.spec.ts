// A new user's journeys through the console in Chromium, against the real stack (Envoy and the
// three services, started by tests/console/test_console.py): every page is checked with axe and
// photographed into screenshots/.
import { expect, test } from "@playwright/test";

import { PASSWORD, apiLogin, checkPage, signIn, signUp, signedIn, uniqueName } from "./support";

const ADMIN_USERNAME = process.env.ADMIN_USERNAME ?? "";
const ADMIN_PASSWORD = process.env.ADMIN_PASSWORD ?? "";

test("sign up, sign out and sign in again; the tokens stay out of the page's reach", async ({ page, context }) => {
  await page.goto("/");
  await expect(page).toHaveURL(/\/signin$/);
  await checkPage(page, "sign-in");
  await page.getByRole("link", { name: "Create an account" }).click();
  await checkPage(page, "sign-up");

  // Field errors from the API's BadRequest appear beside their fields.
  await page.getByLabel("Username").fill("x");
  await page.getByLabel("E-mail").fill("not-an-address");
  await page.getByLabel("Password").fill("short");
  await page.getByRole("button", { name: "Create account" }).click();
  await expect(page.getByRole("alert")).toContainText("Some fields need fixing.");
  await expect(page.getByLabel("Username")).toHaveAttribute("aria-invalid", "true");
  await expect(page.getByLabel("Password")).toHaveAttribute("aria-invalid", "true");
  await checkPage(page, "sign-up-errors");

  const username = await signUp(page);

  // The refresh token is an HttpOnly, SameSite=Strict cookie scoped to refresh and logout; no
  // token is in web storage.
  const cookies = (await context.cookies()).filter((c) => c.name === "pinexa_refresh");
  expect(cookies.map((c) => c.path).sort()).toEqual(["/api/v1/auth/logout", "/api/v1/auth/refresh"]);
  for (const cookie of cookies) {
    expect(cookie.httpOnly).toBe(true);
    expect(cookie.sameSite).toBe("Strict");
  }
  expect(await page.evaluate(() => [localStorage.length, sessionStorage.length, document.cookie])).toEqual([0, 0, ""]);

  // A reload keeps the session (the cookie refreshes it); a second tab shares it, and both
  // refreshing at once log neither out.
  await page.reload();
  await expect(page.getByRole("heading", { name: "Your items" })).toBeVisible();
  const second = await context.newPage();
  await Promise.all([page.reload(), second.goto("/items")]);
  await expect(page.getByRole("heading", { name: "Your items" })).toBeVisible();
  await expect(second.getByRole("heading", { name: "Your items" })).toBeVisible();
  await second.close();

  await page.getByRole("button", { name: "Sign out" }).click();
  await expect(page.getByRole("heading", { name: "Sign in" })).toBeVisible();
  expect((await context.cookies()).filter((c) => c.name === "pinexa_refresh")).toEqual([]);
  await page.goto("/items");
  await expect(page).toHaveURL(/\/signin$/);

  await page.getByLabel("Username or e-mail").fill(username);
  await page.getByLabel("Password").fill("wrong password!");
  await page.getByRole("button", { name: "Sign in" }).click();
  await expect(page.getByRole("alert")).toHaveText("The username or password is wrong.");
  await checkPage(page, "sign-in-error");
  await signIn(page, username);
  await expect(page.getByRole("heading", { name: "Your items" })).toBeVisible();
});

test("create, filter, search, sort, page, edit and delete items", async ({ page }) => {
  await signedIn(page);
  await checkPage(page, "items-empty");
  for (const [title, status, attributes] of [
    ["alpha notes", "Published", '{"color": "red", "n": 3}'],
    ["beta draft", "Draft", '{"color": "blue", "n": 1}'],
    ["gamma list", "Published", '{"color": "red", "n": 5, "tags": ["x"]}'],
  ]) {
    await page.getByRole("button", { name: "New item" }).click();
    const dialog = page.getByRole("dialog", { name: "New item" });
    await dialog.getByLabel("Title").fill(title);
    await dialog.getByLabel("Content").fill(`the ${title} body with words`);
    await dialog.getByLabel("Status").click();
    await page.getByRole("option", { name: status }).click();
    await dialog.getByLabel("Attributes (JSON object)").fill(attributes);
    if (title === "alpha notes") await checkPage(page, "item-new");
    await dialog.getByRole("button", { name: "Save" }).click();
    await expect(dialog).toBeHidden();
  }
  const rows = page.getByRole("table", { name: "Your items" }).getByRole("row");
  await expect(rows).toHaveCount(4); // the header and three items
  await checkPage(page, "items");

  // Filter (AIP-160), then full-text search, then sort.
  await page.getByLabel("Filter").fill('status = "PUBLISHED" AND attributes.n >= 3');
  await page.getByRole("button", { name: "Apply" }).click();
  await expect(rows).toHaveCount(3);
  await expect(page.getByRole("rowheader", { name: "beta draft" })).toBeHidden();
  await page.getByLabel("Filter").fill("");
  await page.getByLabel("Search").fill("gamma");
  await page.getByRole("button", { name: "Apply" }).click();
  await expect(rows).toHaveCount(2);
  await expect(page.getByRole("rowheader", { name: "gamma list" })).toBeVisible();
  await page.getByLabel("Search").fill("");
  await page.getByLabel("Sort").click();
  await page.getByRole("option", { name: "Title A–Z" }).click();
  await page.getByRole("button", { name: "Apply" }).click();
  await expect(page.getByRole("rowheader")).toHaveText(["alpha notes", "beta draft", "gamma list"]);

  // A filter the API cannot parse is explained.
  await page.getByLabel("Filter").fill("status = ");
  await page.getByRole("button", { name: "Apply" }).click();
  await expect(page.getByRole("alert")).toContainText("The filter could not be understood");
  await checkPage(page, "items-bad-filter");
  await page.getByLabel("Filter").fill("");
  await page.getByRole("button", { name: "Apply" }).click();

  // Edit: the attributes are shown as JSON and can change freely.
  await page.getByRole("button", { name: "Edit beta draft" }).click();
  const editor = page.getByRole("dialog", { name: "Edit item" });
  await expect(editor.getByLabel("Attributes (JSON object)")).toHaveValue(/"color": "blue"/);
  await editor.getByLabel("Title").fill("beta final");
  await editor.getByLabel("Attributes (JSON object)").fill('{"color": "green", "size": {"w": 2}}');
  await checkPage(page, "item-edit");
  await editor.getByRole("button", { name: "Save" }).click();
  await expect(editor).toBeHidden();
  await expect(page.getByRole("rowheader", { name: "beta final" })).toBeVisible();
  // Struct keys come back in the store's order, not the order typed.
  const edited = page.getByRole("row", { name: /beta final/ });
  await expect(edited).toContainText('"color":"green"');
  await expect(edited).toContainText('"size":{"w":2}');

  // Delete, after confirming.
  await page.getByRole("button", { name: "Delete alpha notes" }).click();
  await checkPage(page, "item-delete");
  await page.getByRole("dialog").getByRole("button", { name: "Delete" }).click();
  await expect(page.getByRole("rowheader", { name: "alpha notes" })).toBeHidden();
  await expect(rows).toHaveCount(3);
});

test("keyset paging walks forward and back", async ({ page, request }) => {
  const username = await signedIn(page);
  const { access_token } = await apiLogin(request, username);
  for (let i = 0; i < 12; i++) {
    const response = await request.post("/api/v1/data", {
      headers: { authorization: `Bearer ${access_token}` },
      data: { title: `page item ${String(i).padStart(2, "0")}` },
    });
    expect(response.status()).toBe(200);
  }
  await page.reload();
  const titles = page.getByRole("rowheader");
  await expect(titles).toHaveCount(10);
  await page.getByRole("button", { name: "Next page" }).click();
  await expect(titles).toHaveCount(2);
  await expect(page.getByText("Page 2")).toBeVisible();
  await expect(page.getByRole("button", { name: "Next page" })).toBeDisabled();
  await page.getByRole("button", { name: "Previous page" }).click();
  await expect(titles).toHaveCount(10);
});

test("an etag conflict is explained, and the latest version can be loaded", async ({ page, request }) => {
  const username = await signedIn(page);
  await page.getByRole("button", { name: "New item" }).click();
  await page.getByRole("dialog").getByLabel("Title").fill("shared doc");
  await page.getByRole("dialog").getByRole("button", { name: "Save" }).click();
  await page.getByRole("button", { name: "Edit shared doc" }).click();
  const editor = page.getByRole("dialog", { name: "Edit item" });

  // Meanwhile another client (the JSON API, as a native app) changes it.
  const { access_token } = await apiLogin(request, username);
  const auth = { authorization: `Bearer ${access_token}` };
  const list = await (await request.get("/api/v1/data", { headers: auth })).json();
  const id = list.items[0].id;
  const changed = await request.patch(`/api/v1/data/${id}?update_mask=title`, {
    headers: auth,
    data: { title: "shared doc (their edit)" },
  });
  expect(changed.status()).toBe(200);

  await editor.getByLabel("Title").fill("shared doc (my edit)");
  await editor.getByRole("button", { name: "Save" }).click();
  await expect(editor.getByRole("alert")).toContainText("Someone else changed this in the meantime");
  await checkPage(page, "item-conflict");
  await editor.getByRole("button", { name: "Load latest" }).click();
  await expect(editor.getByLabel("Title")).toHaveValue("shared doc (their edit)");
  await editor.getByLabel("Title").fill("shared doc (merged)");
  await editor.getByRole("button", { name: "Save" }).click();
  await expect(editor).toBeHidden();
  await expect(page.getByRole("rowheader", { name: "shared doc (merged)" })).toBeVisible();
});

test("profile: display name and e-mail change", async ({ page }) => {
  const username = await signedIn(page);
  await page.getByRole("link", { name: "Profile" }).click();
  await expect(page.getByLabel("Display name")).toHaveValue(`Tester ${username}`);
  await checkPage(page, "profile");
  await page.getByLabel("Display name").fill("Ada L.");
  await page.getByLabel("E-mail", { exact: true }).fill(`${username}.new@example.com`);
  await page.getByRole("button", { name: "Save" }).click();
  await expect(page.getByRole("status")).toHaveText("Saved.");
  await expect(page.getByRole("banner")).toContainText("Ada L.");
  await page.getByLabel("E-mail", { exact: true }).fill("not an address");
  await page.getByRole("button", { name: "Save" }).click();
  await expect(page.getByLabel("E-mail", { exact: true })).toHaveAttribute("aria-invalid", "true");
  await checkPage(page, "profile-error");
  await page.reload();
  // The new address is pending until it is confirmed from its mail; the old one stays.
  await expect(page.getByLabel("E-mail change")).toContainText(`${username}.new@example.com`);
  await expect(page.getByLabel("E-mail", { exact: true })).toHaveValue(`${username}@example.com`);
});

test("the admin pages refuse a user who is not an admin", async ({ page, request }) => {
  const username = await signedIn(page);
  await expect(page.getByRole("link", { name: "Users" })).toHaveCount(0);
  await page.goto("/admin/users");
  await expect(page.getByRole("alert")).toHaveText("Only an administrator may see this page.");
  await checkPage(page, "admin-refused");
  await page.goto("/admin/items");
  await expect(page.getByRole("alert")).toHaveText("Only an administrator may see this page.");
  // The API refuses too, whatever the page shows.
  const { access_token } = await apiLogin(request, username);
  const response = await request.get("/api/v1/users", { headers: { authorization: `Bearer ${access_token}` } });
  expect(response.status()).toBe(403);
  expect(JSON.stringify(await response.json())).toContain("ADMIN_ONLY");
});

test("an admin lists users, changes a role, signs a user out, disables and enables them, and sees their items", async ({
  browser,
  page,
}) => {
  test.skip(!ADMIN_USERNAME, "ADMIN_USERNAME and ADMIN_PASSWORD name the stack's admin");
  // A user with an item, signed in in a browser context of their own.
  const other = await browser.newContext();
  const userPage = await other.newPage();
  const username = await signedIn(userPage, uniqueName("own"));
  await userPage.getByRole("button", { name: "New item" }).click();
  await userPage.getByRole("dialog").getByLabel("Title").fill(`${username}'s item`);
  await userPage.getByRole("dialog").getByRole("button", { name: "Save" }).click();
  await expect(userPage.getByRole("rowheader", { name: `${username}'s item` })).toBeVisible();

  await signIn(page, ADMIN_USERNAME, ADMIN_PASSWORD);
  await page.getByRole("link", { name: "Users" }).click();
  await expect(page.getByRole("heading", { name: "Users" })).toBeVisible();
  let row = page.getByRole("row", { name: new RegExp(username) });
  while (!(await row.count()) && (await page.getByRole("button", { name: "Next page" }).isEnabled())) {
    await page.getByRole("button", { name: "Next page" }).click();
    await page.waitForLoadState("networkidle");
    row = page.getByRole("row", { name: new RegExp(username) });
  }
  await expect(row).toBeVisible();
  await checkPage(page, "admin-users");
  // The admin's own row has no Disable (auth refuses CANNOT_DISABLE_SELF anyway).
  await expect(page.getByRole("button", { name: `Disable ${ADMIN_USERNAME}` })).toHaveCount(0);

  // Sign out, after confirming; Escape (or Cancel) does nothing and gives the focus back.
  const dialog = page.getByRole("dialog");
  await row.getByRole("button", { name: `Sign out ${username}` }).click();
  await expect(dialog).toHaveAccessibleName(`Sign ${username} out everywhere?`);
  await expect(dialog.getByRole("button", { name: "Cancel" })).toBeFocused();
  await page.keyboard.press("Escape");
  await expect(dialog).toBeHidden();
  await expect(row.getByRole("button", { name: `Sign out ${username}` })).toBeFocused();
  await userPage.reload();
  await expect(userPage.getByRole("heading", { name: "Your items" })).toBeVisible();
  await row.getByRole("button", { name: `Sign out ${username}` }).click();
  await checkPage(page, "admin-sign-out");
  await dialog.getByRole("button", { name: "Sign out" }).click();
  await expect(dialog).toBeHidden();
  await expect(page.getByRole("status")).toHaveText(`${username} is signed out; 1 session ended.`);
  await userPage.goto("/items");
  await expect(userPage).toHaveURL(/\/signin$/);

  // Disable (by keyboard alone): the account cannot sign in; enable: it can again.
  await row.getByRole("button", { name: `Disable ${username}` }).press("Enter");
  await expect(dialog.getByRole("button", { name: "Cancel" })).toBeFocused();
  await page.keyboard.press("Tab");
  await expect(dialog.getByRole("button", { name: "Disable" })).toBeFocused();
  await page.keyboard.press("Enter");
  await expect(row).toContainText("Disabled");
  await expect(page.getByRole("status")).toHaveText(`${username} is disabled; 0 sessions ended.`);
  await userPage.getByLabel("Username or e-mail").fill(username);
  await userPage.getByLabel("Password").fill(PASSWORD);
  await userPage.getByRole("button", { name: "Sign in" }).click();
  await expect(userPage.getByRole("alert")).toHaveText("This account has been disabled. Ask an administrator.");
  await checkPage(userPage, "sign-in-disabled");
  await row.getByRole("button", { name: `Enable ${username}` }).click();
  await dialog.getByRole("button", { name: "Enable" }).click();
  await expect(row).not.toContainText("Disabled");
  await signIn(userPage, username);
  await other.close();

  await row.getByLabel(`Role of ${username}`).click();
  await page.getByRole("option", { name: "Administrator" }).click();
  await expect(row.getByLabel(`Role of ${username}`)).toHaveText("Administrator");

  await page.getByRole("link", { name: "All items" }).click();
  await page.getByLabel("Owner").click();
  await page.getByRole("option", { name: username, exact: true }).click();
  await page.getByRole("button", { name: "Apply" }).click();
  await expect(page.getByRole("rowheader")).toHaveText([`${username}'s item`]);
  await expect(page.getByRole("row", { name: new RegExp(`${username}'s item`) })).toContainText(username);
  await checkPage(page, "admin-items");
});
