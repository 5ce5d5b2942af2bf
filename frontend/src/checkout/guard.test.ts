import { Code, ConnectError } from "@connectrpc/connect";
import { describe, expect, it } from "vitest";
import { CheckoutGuard, newIdempotencyKey } from "./guard";

function deferred<T>() {
  let resolve!: (v: T) => void;
  let reject!: (e: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

let n = 0;
const keys = () => `key-${++n}-abcdefgh`;

describe("CheckoutGuard", () => {
  it("a double submit sends one request, and both callers get the same order", async () => {
    const guard = new CheckoutGuard<string>(keys);
    const seen: string[] = [];
    const d = deferred<string>();
    const place = (key: string) => {
      seen.push(key);
      return d.promise;
    };
    const a = guard.submit("cart-1", place);
    const b = guard.submit("cart-1", place);
    expect(guard.pending).toBe(true);
    d.resolve("order-1");
    expect(await a).toBe("order-1");
    expect(await b).toBe("order-1");
    expect(seen).toHaveLength(1);
    expect(guard.pending).toBe(false);
    // Submitting again after success does not place a second order either.
    expect(await guard.submit("cart-1", place)).toBe("order-1");
    expect(seen).toHaveLength(1);
  });

  it("a retry after a network failure reuses the idempotency key", async () => {
    const guard = new CheckoutGuard<string>(keys);
    const seen: string[] = [];
    await expect(
      guard.submit("cart-1", async (key) => {
        seen.push(key);
        throw new ConnectError("timeout", Code.Unavailable);
      }),
    ).rejects.toThrow();
    await guard.submit("cart-1", async (key) => {
      seen.push(key);
      return "order";
    });
    expect(seen).toHaveLength(2);
    expect(seen[1]).toBe(seen[0]);
  });

  it("a changed request or a definitive refusal gets a new key", async () => {
    const guard = new CheckoutGuard<string>(keys);
    const k1 = guard.keyFor("cart-1");
    expect(guard.keyFor("cart-1")).toBe(k1);
    const k2 = guard.keyFor("cart-2");
    expect(k2).not.toBe(k1);
    const seen: string[] = [];
    await expect(
      guard.submit("cart-2", async (key) => {
        seen.push(key);
        throw new ConnectError("postal_code: required", Code.InvalidArgument);
      }),
    ).rejects.toThrow();
    await guard.submit("cart-2", async (key) => {
      seen.push(key);
      return "order";
    });
    expect(seen[0]).toBe(k2);
    expect(seen[1]).not.toBe(k2);
  });

  it("generated keys fit PlaceOrderRequest.idempotency_key and differ", () => {
    const a = newIdempotencyKey();
    expect(a).toMatch(/^[A-Za-z0-9_.:-]{8,128}$/);
    expect(newIdempotencyKey()).not.toBe(a);
  });
});
