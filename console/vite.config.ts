/// <reference types="vitest" />
import react from "@vitejs/plugin-react";
import { defineConfig } from "vite";

// Built into dist/ with fixed file names (no hashes, one bundle): Envoy serves exactly these
// files as direct responses (envoy/envoy.yaml.tmpl, console section), so their names are part of
// its config. index.html is sent with `cache-control: no-cache`, so a new build is seen at once.
export default defineConfig({
  plugins: [react()],
  build: {
    outDir: "dist",
    emptyOutDir: true,
    cssCodeSplit: false,
    chunkSizeWarningLimit: 1024,
    assetsInlineLimit: 100_000,
    rollupOptions: {
      output: {
        entryFileNames: "assets/console.js",
        assetFileNames: "assets/console[extname]",
        inlineDynamicImports: true,
      },
    },
  },
  server: {
    // `npm run dev` next to `make run`: the API through Vite's proxy, so it stays same-origin
    // (the refresh cookie is SameSite=Strict and scoped to /api/v1/auth/...).
    proxy: {
      "/api": "http://127.0.0.1:8080",
      "/.well-known": "http://127.0.0.1:8080",
    },
  },
  test: {
    environment: "jsdom",
    globals: true,
    // The machine is shared and jsdom is slow under load: generous, so a busy CI is not a failure.
    testTimeout: 30_000,
    include: ["src/**/*.test.ts", "src/**/*.test.tsx"],
    setupFiles: ["src/test-setup.ts"],
  },
});
