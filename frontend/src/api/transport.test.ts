import { Code, ConnectError, createClient, createRouterTransport } from "@connectrpc/connect";
import { create } from "@bufbuild/protobuf";
import { AuthService } from "@gen/shop/auth/v1/auth_pb.js";
import { OrderSchema, OrderService } from "@gen/shop/order/v1/order_pb.js";
import { ProductSchema, ProductService } from "@gen/shop/product/v1/product_pb.js";
import { describe, expect, it } from "vitest";
import { fakeJwt, tokenPair } from "../test-utils";
import { AuthSession, rolesFromJwt } from "./session";
import {
  LSN_HEADER,
  LsnTracker,
  TRACEPARENT_HEADER,
  authInterceptor,
  lsnInterceptor,
  newTraceparent,
  traceInterceptor,
  wireRefresh,
} from "./transport";

function stack(opts: { refreshFails?: Code } = {}) {
  const seen: string[] = [];
  let refreshes = 0;
  let valid = "access-2";
  const session = new AuthSession(sessionStorage);
  const transport = createRouterTransport(
    (router) => {
      router.service(OrderService, {
        async getOrder(req, ctx) {
          const auth = ctx.requestHeader.get("authorization") ?? "";
          seen.push(auth);
          if (auth !== `Bearer ${valid}`) throw new ConnectError("token expired", Code.Unauthenticated);
          return { order: create(OrderSchema, { id: req.id }) };
        },
      });
      router.service(AuthService, {
        async refreshToken(req, ctx) {
          refreshes++;
          expect(ctx.requestHeader.get("authorization")).toBeNull();
          if (opts.refreshFails) throw new ConnectError("refused", opts.refreshFails);
          expect(req.refreshToken).toBe("refresh-token-0000000001");
          await new Promise((r) => setTimeout(r, 10));
          return { tokens: tokenPair(valid, "refresh-token-0000000002") };
        },
      });
    },
    { transport: { interceptors: [authInterceptor(session)] } },
  );
  wireRefresh(session, transport);
  return { session, client: createClient(OrderService, transport), seen, refreshes: () => refreshes, setValid: (v: string) => (valid = v) };
}

describe("auth interceptor", () => {
  it("adds the bearer token, refreshes once on UNAUTHENTICATED and retries", async () => {
    const s = stack();
    s.session.setTokens(tokenPair("access-1", "refresh-token-0000000001"), "ann@example.com");
    const [a, b] = await Promise.all([s.client.getOrder({ id: "o-1" }), s.client.getOrder({ id: "o-2" })]);
    expect(a.order?.id).toBe("o-1");
    expect(b.order?.id).toBe("o-2");
    // Rotating refresh tokens allow one use: concurrent failures share one refresh.
    expect(s.refreshes()).toBe(1);
    expect(s.seen.filter((h) => h === "Bearer access-1")).toHaveLength(2);
    expect(s.seen.filter((h) => h === "Bearer access-2")).toHaveLength(2);
    expect(s.session.currentRefreshToken).toBe("refresh-token-0000000002");
  });

  it("keeps the access token out of storage; only the refresh token is in sessionStorage", () => {
    const s = stack();
    s.session.setTokens(tokenPair("access-secret-1", "refresh-token-0000000001"), "ann@example.com");
    const stored = JSON.stringify({ ...sessionStorage }) + JSON.stringify({ ...localStorage });
    expect(stored).not.toContain("access-secret-1");
    expect(sessionStorage.getItem("shopmesh.session")).toContain("refresh-token-0000000001");
    expect(localStorage.length).toBe(0);
  });

  it("after a reload (refresh token only) the first call refreshes before sending", async () => {
    const first = stack();
    first.session.setTokens(tokenPair("access-1", "refresh-token-0000000001"), "ann@example.com");
    const reloaded = stack();
    expect(reloaded.session.getSnapshot()?.userId).toBe("u-1");
    await reloaded.client.getOrder({ id: "o-1" });
    expect(reloaded.seen).toEqual(["Bearer access-2"]);
  });

  it("a refused refresh signs the shopper out and surfaces UNAUTHENTICATED", async () => {
    const s = stack({ refreshFails: Code.Unauthenticated });
    s.session.setTokens(tokenPair("access-1", "refresh-token-0000000001"), "ann@example.com");
    await expect(s.client.getOrder({ id: "o-1" })).rejects.toMatchObject({ code: Code.Unauthenticated });
    expect(s.session.signedIn).toBe(false);
    expect(sessionStorage.getItem("shopmesh.session")).toBeNull();
  });

  it("a refresh that fails for network reasons keeps the session", async () => {
    const s = stack({ refreshFails: Code.Unavailable });
    s.session.setTokens(tokenPair("access-1", "refresh-token-0000000001"), "ann@example.com");
    await expect(s.client.getOrder({ id: "o-1" })).rejects.toMatchObject({ code: Code.Unauthenticated });
    expect(s.session.signedIn).toBe(true);
  });

  it("reads roles from the access token for display", () => {
    expect(rolesFromJwt(fakeJwt({ roles: ["ROLE_ADMIN", "customer"] }))).toEqual(["admin", "customer"]);
    expect(rolesFromJwt(fakeJwt({ scope: "admin orders" }))).toEqual(["admin", "orders"]);
    expect(rolesFromJwt("garbage")).toEqual([]);
  });
});

describe("read-your-writes LSN echo", () => {
  it("sends the newest x-shop-lsn any call returned, never an older one", async () => {
    const sent: (string | null)[] = [];
    const answers = ["0/1A0", "1/10", "0/FFFF"]; // the last is older than 1/10
    const transport = createRouterTransport(
      (router) => {
        router.service(ProductService, {
          async updateProduct(req, ctx) {
            sent.push(ctx.requestHeader.get(LSN_HEADER));
            ctx.responseTrailer.set(LSN_HEADER, answers.shift() ?? "");
            return { product: create(ProductSchema, { id: req.id }) };
          },
          async getProduct(req, ctx) {
            sent.push(ctx.requestHeader.get(LSN_HEADER));
            return { product: create(ProductSchema, { id: req.id }) };
          },
        });
      },
      { transport: { interceptors: [lsnInterceptor(new LsnTracker())] } },
    );
    const client = createClient(ProductService, transport);
    await client.getProduct({ id: "p-1" });
    await client.updateProduct({ id: "p-1" });
    await client.getProduct({ id: "p-1" });
    await client.updateProduct({ id: "p-1" });
    await client.updateProduct({ id: "p-1" });
    await client.getProduct({ id: "p-1" });
    expect(sent).toEqual([null, null, "0/1A0", "0/1A0", "1/10", "1/10"]);
  });

  it("ignores malformed values", () => {
    const t = new LsnTracker();
    for (const bad of ["", "x/y", "1/2/3", "123456789/0", " "]) t.see(bad);
    expect(t.text).toBe("");
    t.see(" 2/0 ");
    expect(t.text).toBe("2/0");
  });
});

describe("trace context", () => {
  it("starts a new sampled W3C trace on every call", async () => {
    const seen: (string | null)[] = [];
    const transport = createRouterTransport(
      (router) => {
        router.service(ProductService, {
          async getProduct(req, ctx) {
            seen.push(ctx.requestHeader.get(TRACEPARENT_HEADER));
            return { product: create(ProductSchema, { id: req.id }) };
          },
        });
      },
      { transport: { interceptors: [traceInterceptor()] } },
    );
    const client = createClient(ProductService, transport);
    await client.getProduct({ id: "p-1" });
    await client.getProduct({ id: "p-1" });
    expect(seen).toHaveLength(2);
    for (const tp of seen) expect(tp).toMatch(/^00-[0-9a-f]{32}-[0-9a-f]{16}-01$/);
    const traceIds = seen.map((tp) => tp!.split("-")[1]);
    expect(traceIds[0]).not.toEqual(traceIds[1]);
    expect(traceIds[0]).not.toMatch(/^0+$/);
  });

  it("keeps a traceparent the caller set", async () => {
    const given = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let seen: string | null = null;
    const transport = createRouterTransport(
      (router) => {
        router.service(ProductService, {
          async getProduct(req, ctx) {
            seen = ctx.requestHeader.get(TRACEPARENT_HEADER);
            return { product: create(ProductSchema, { id: req.id }) };
          },
        });
      },
      { transport: { interceptors: [traceInterceptor()] } },
    );
    await createClient(ProductService, transport).getProduct({ id: "p-1" }, { headers: { traceparent: given } });
    expect(seen).toBe(given);
    expect(newTraceparent()).not.toBe(newTraceparent());
  });
});
