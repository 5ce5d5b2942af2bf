/**
 * Build config for bench/frontend_transport.py: the storefront's own vite config with the
 * transport in src/api/transport.ts swapped by BENCH_TRANSPORT (grpc-web | connect-proto |
 * connect-json), so the bundle sizes compared differ in the transport alone.
 *   (cd frontend && BENCH_TRANSPORT=connect-proto npx vite build --config ../bench/frontend_transport.vite.config.ts --outDir <dir>)
 */
// No value import of "vite" here: it resolves from frontend/, not from bench/.
import type { Plugin, UserConfig } from "vite";
import base from "../frontend/vite.config";

const FACTORIES: Record<string, string> = {
  "grpc-web": "createGrpcWebTransport({ baseUrl, interceptors })",
  "connect-proto": "createConnectTransport({ baseUrl, interceptors, useBinaryFormat: true })",
  "connect-json": "createConnectTransport({ baseUrl, interceptors, useBinaryFormat: false })",
};

function swapTransport(kind: string): Plugin {
  return {
    name: "bench-swap-transport",
    enforce: "pre",
    transform(code, id) {
      if (!id.endsWith("/src/api/transport.ts")) return null;
      const call = /create(GrpcWeb|Connect)Transport\(\{[^}]*\}\)/;
      if (!call.test(code)) throw new Error("transport.ts: no transport factory call found");
      return code
        .replace(/import \{ create(GrpcWeb|Connect)Transport \} from "@connectrpc\/connect-web";/,
          'import { createConnectTransport, createGrpcWebTransport } from "@connectrpc/connect-web";')
        .replace(call, FACTORIES[kind]);
    },
  };
}

const kind = process.env.BENCH_TRANSPORT ?? "grpc-web";
if (!(kind in FACTORIES)) throw new Error(`BENCH_TRANSPORT=${kind}: one of ${Object.keys(FACTORIES)}`);

const config = base as UserConfig;
export default { ...config, plugins: [swapTransport(kind), ...(config.plugins ?? [])] };
