#!/usr/bin/env node
/**
 * One round of bench/frontend_transport.py: the storefront's client library (Connect-ES,
 * frontend/node_modules) calling ProductService through gateways with several transports
 * ("arms"), interleaved in small slices so that every arm meets the same noise on a shared
 * machine. Each slice runs `sliceCalls` calls of one arm at a fixed concurrency; the arms
 * take turns (shuffled each pass) until the time is up. Around each slice the CPU of the
 * arm's Envoy and NGINX processes is read from /proc. Prints one JSON line.
 *
 *   node bench/frontend_transport.mjs '<json: {arms, method, concurrency, seconds, sliceCalls}>'
 *   arm = {name, baseUrl, transport: grpc-web|connect-proto|connect-json,
 *          pids: {envoy: [..], nginx: [..]}}
 *
 * The service descriptor comes from gen/descriptor/shop.binpb (the schema the generated
 * TypeScript embeds), so this runs in plain Node without a TypeScript build.
 */
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..");
const frontendRequire = createRequire(join(ROOT, "frontend", "package.json"));
const load = (name) => import(pathToFileURL(frontendRequire.resolve(name)).href);

const { createClient } = await load("@connectrpc/connect");
const { createConnectTransport, createGrpcWebTransport } = await load("@connectrpc/connect-web");
const { createFileRegistry, fromBinary } = await load("@bufbuild/protobuf");
const { FileDescriptorSetSchema } = await load("@bufbuild/protobuf/wkt");

const plan = JSON.parse(process.argv[2]);
const fds = fromBinary(FileDescriptorSetSchema, readFileSync(join(ROOT, "gen", "descriptor", "shop.binpb")));
const service = createFileRegistry(fds).getService("shop.product.v1.ProductService");
const factories = {
  "grpc-web": (baseUrl) => createGrpcWebTransport({ baseUrl }),
  "connect-proto": (baseUrl) => createConnectTransport({ baseUrl, useBinaryFormat: true }),
  "connect-json": (baseUrl) => createConnectTransport({ baseUrl, useBinaryFormat: false }),
};
const TICK_US = 10_000; // /proc/<pid>/stat counts clock ticks (USER_HZ = 100)

function cpuUs(pids) {
  let ticks = 0;
  for (const pid of pids) {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    ticks += Number(fields[11]) + Number(fields[12]);
  }
  return ticks * TICK_US;
}

const arms = plan.arms.map((arm) => {
  const client = createClient(service, factories[arm.transport](arm.baseUrl));
  const call =
    plan.method === "GetProduct"
      ? async () => (await client.getProduct({ id: "p-0001" })).product.id
      : async () => (await client.listProducts({ pageSize: 20 })).products.length;
  return { ...arm, call, latencies: [], errors: 0, firstError: "", envoyUs: 0, nginxUs: 0, clientCpuUs: 0, ms: 0 };
});
const expected = plan.method === "GetProduct" ? "p-0001" : 20;
for (const arm of arms) {
  for (let i = 0; i < 20; i += 1) {
    const got = await arm.call(); // correctness, and warm connections
    if (got !== expected) throw new Error(`${arm.name}: got ${got}, want ${expected}`);
  }
}

async function slice(arm) {
  let left = plan.sliceCalls;
  const envoy0 = cpuUs(arm.pids.envoy);
  const nginx0 = cpuUs(arm.pids.nginx);
  const client0 = process.cpuUsage();
  const t0 = performance.now();
  async function worker() {
    while (left > 0) {
      left -= 1;
      const start = performance.now();
      try {
        await arm.call();
        arm.latencies.push(performance.now() - start);
      } catch (err) {
        arm.errors += 1;
        arm.firstError ||= String(err);
      }
    }
  }
  await Promise.all(Array.from({ length: plan.concurrency }, worker));
  arm.ms += performance.now() - t0;
  const c = process.cpuUsage(client0);
  arm.clientCpuUs += c.user + c.system;
  arm.envoyUs += cpuUs(arm.pids.envoy) - envoy0;
  arm.nginxUs += cpuUs(arm.pids.nginx) - nginx0;
}

const stopAt = performance.now() + plan.seconds * 1000;
let passes = 0;
while (performance.now() < stopAt) {
  const order = [...arms].sort(() => Math.random() - 0.5);
  for (const arm of order) await slice(arm);
  passes += 1;
}

const out = arms.map((arm) => {
  const xs = [...arm.latencies].sort((a, b) => a - b);
  const n = xs.length;
  const at = (p) => Math.round(xs[Math.min(n - 1, Math.floor(n * p))] * 1000) / 1000;
  return {
    name: arm.name,
    transport: arm.transport,
    calls: n,
    errors: arm.errors,
    first_error: arm.firstError,
    calls_per_s: Math.round((n / (arm.ms / 1000)) * 10) / 10,
    p50_ms: at(0.5),
    p90_ms: at(0.9),
    p99_ms: at(0.99),
    envoy_cpu_us_per_call: Math.round((arm.envoyUs / n) * 10) / 10,
    nginx_cpu_us_per_call: Math.round((arm.nginxUs / n) * 10) / 10,
    client_cpu_us_per_call: Math.round((arm.clientCpuUs / n) * 10) / 10,
  };
});
console.log(JSON.stringify({ method: plan.method, passes, arms: out }));
