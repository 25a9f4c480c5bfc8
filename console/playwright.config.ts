// The console's journeys in Debian's Chromium (no browser download: PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD
// and CHROMIUM_PATH, default /usr/bin/chromium), against a running stack at CONSOLE_URL. `make test`
// runs them from tests/console/test_console.py, which starts the stack on free ports.
import { defineConfig } from "@playwright/test";

export default defineConfig({
  testDir: "e2e",
  // Generous: the journeys sign up several accounts (argon2) on a shared 2-core machine.
  timeout: 180_000,
  expect: { timeout: 10_000 },
  fullyParallel: false,
  workers: 1,
  retries: 0,
  reporter: [["list"]],
  outputDir: "test-results",
  use: {
    baseURL: process.env.CONSOLE_URL ?? "http://127.0.0.1:8080",
    browserName: "chromium",
    headless: true,
    launchOptions: {
      executablePath: process.env.CHROMIUM_PATH ?? "/usr/bin/chromium",
      args: ["--no-sandbox", "--disable-dev-shm-usage"],
    },
    trace: "off",
    screenshot: "only-on-failure",
  },
});
