/// <reference types="vitest/config" />
import { fileURLToPath } from "node:url";
import react from "@vitejs/plugin-react";
import { defineConfig } from "vite";

// The generated Connect-ES code lives outside this package (../gen/ts, written only by
// `make gen`). `@gen/*` points at it, and `dedupe` makes its `@bufbuild/protobuf` imports
// resolve to this package's copy: two copies of the runtime would break message identity.
const gen = fileURLToPath(new URL("../gen/ts", import.meta.url));

export default defineConfig({
  plugins: [react()],
  resolve: {
    alias: { "@gen": gen },
    dedupe: ["@bufbuild/protobuf", "@connectrpc/connect"],
  },
  server: {
    fs: { allow: [".", gen] },
    // `npm run dev` talks to the local gateway (NGINX on 8080), same paths as production.
    proxy: { "/api": "http://127.0.0.1:8080" },
  },
  build: {
    sourcemap: false,
    reportCompressedSize: true,
    // One ~150 kB gzip bundle: react-dom plus the protobuf runtime and the descriptors the
    // generated files embed (buf/validate's is the largest). Splitting would not shrink it.
    chunkSizeWarningLimit: 600,
  },
  test: {
    environment: "jsdom",
    include: ["src/**/*.test.{ts,tsx}"],
    setupFiles: ["src/test-setup.ts"],
  },
});
