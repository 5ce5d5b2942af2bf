import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, createRouterTransport } from "@connectrpc/connect";
import { type CartItem, CartSchema, CartService } from "@gen/shop/cart/v1/cart_pb.js";
import { MoneySchema } from "@gen/shop/common/v1/common_pb.js";
import { ProductSchema, ProductService } from "@gen/shop/product/v1/product_pb.js";
import { beforeEach, describe, expect, it } from "vitest";
import { AuthSession } from "../api/session";
import { fakeJwt, tokenPair } from "../test-utils";
import { CartStore } from "./cart";
import { ShopCart } from "./shop-cart";

const product = (id: string) =>
  create(ProductSchema, {
    id,
    name: `Product ${id}`,
    price: create(MoneySchema, { currencyCode: "USD", units: 3n }),
    imageUrls: [`/images/products/${id}.svg`],
    stock: 5,
  });

/** A cart service kept in memory, as the server behaves (merge keeps the larger quantity). */
function fakeServer() {
  const calls: string[] = [];
  const state = { down: false };
  let items: { productId: string; quantity: number }[] = [];
  const reply = () => ({ cart: create(CartSchema, { userId: "u-1", items: items as CartItem[] }) });
  const transport = createRouterTransport(({ service }) => {
    const up = () => {
      if (state.down) throw new ConnectError("no healthy upstream", Code.Unavailable);
    };
    service(CartService, {
      getCart: () => (up(), calls.push("get"), reply()),
      addItem: (r) => {
        up();
        calls.push(`add ${r.productId} ${r.quantity}`);
        if (r.productId === "p-full") throw new ConnectError("the cart holds 50 products", Code.FailedPrecondition);
        const line = items.find((i) => i.productId === r.productId);
        if (line) line.quantity += r.quantity;
        else items.push({ productId: r.productId, quantity: r.quantity });
        return reply();
      },
      setItemQuantity: (r) => {
        calls.push(`set ${r.productId} ${r.quantity}`);
        items = items.map((i) => (i.productId === r.productId ? { ...i, quantity: r.quantity } : i)).filter((i) => i.quantity > 0);
        return reply();
      },
      removeItem: (r) => (calls.push(`remove ${r.productId}`), (items = items.filter((i) => i.productId !== r.productId)), reply()),
      mergeCart: (r) => {
        up();
        calls.push(`merge ${r.items.map((i) => `${i.productId}x${i.quantity}`).join(",")}`);
        for (const i of r.items) {
          const line = items.find((l) => l.productId === i.productId);
          if (line) line.quantity = Math.max(line.quantity, i.quantity);
          else items.push({ productId: i.productId, quantity: i.quantity });
        }
        return { ...reply(), droppedProductIds: [] };
      },
      emptyCart: () => ((items = []), reply()),
    });
    service(ProductService, { getProduct: (r) => ({ product: product(r.id) }) });
  });
  return { calls, transport, state, setItems: (v: typeof items) => (items = v), items: () => items };
}

const settle = () => new Promise((r) => setTimeout(r, 20));

describe("ShopCart", () => {
  beforeEach(() => {
    localStorage.clear();
    sessionStorage.clear();
  });

  it("keeps a signed-out cart in the browser, merges it on sign-in and then uses the server", async () => {
    const server = fakeServer();
    server.setItems([{ productId: "p-1", quantity: 1 }]);
    const session = new AuthSession(sessionStorage);
    const local = new CartStore(localStorage);
    const cart = new ShopCart(local, session, server.transport);
    cart.add(product("p-1"), 4);
    cart.add(product("p-2"));
    expect(server.calls).toEqual([]);
    expect(cart.getSnapshot().map((l) => [l.productId, l.quantity])).toEqual([["p-1", 4], ["p-2", 1]]);

    session.setTokens(tokenPair(fakeJwt({ sub: "u-1" }), "refresh-token-0000000001"), "ann@example.com");
    await settle();
    expect(server.calls).toEqual(["merge p-1x4,p-2x1"]);
    expect(local.getSnapshot()).toEqual([]);
    const lines = cart.getSnapshot();
    expect(lines.map((l) => [l.productId, l.quantity, l.name, l.imageUrl])).toEqual([
      ["p-1", 4, "Product p-1", "/images/products/p-1.svg"],
      ["p-2", 1, "Product p-2", "/images/products/p-2.svg"],
    ]);

    await cart.add(product("p-3"), 2);
    await cart.setQuantity("p-1", 2);
    await cart.remove("p-2");
    expect(server.calls.slice(1)).toEqual(["add p-3 2", "set p-1 2", "remove p-2"]);
    expect(cart.getSnapshot().map((l) => [l.productId, l.quantity])).toEqual([["p-1", 2], ["p-3", 2]]);

    // After checkout the page empties what it shows; the OrderPlaced event empties the server.
    cart.clear();
    expect(cart.getSnapshot()).toEqual([]);
    expect(server.calls).toHaveLength(4);
  });

  it("reads the server cart when signed in with nothing in the browser", async () => {
    const server = fakeServer();
    server.setItems([{ productId: "p-7", quantity: 3 }]);
    const session = new AuthSession(sessionStorage);
    session.setTokens(tokenPair(fakeJwt({ sub: "u-1" }), "refresh-token-0000000001"), "ann@example.com");
    const cart = new ShopCart(new CartStore(localStorage), session, server.transport);
    await settle();
    expect(server.calls).toEqual(["get"]);
    expect(cart.getSnapshot().map((l) => [l.productId, l.quantity])).toEqual([["p-7", 3]]);
    session.clear();
    expect(cart.getSnapshot()).toEqual([]);
  });

  it("shows a change at once, and the server's cart again when the change is refused", async () => {
    const server = fakeServer();
    server.setItems([{ productId: "p-1", quantity: 1 }]);
    const session = new AuthSession(sessionStorage);
    session.setTokens(tokenPair(fakeJwt({ sub: "u-1" }), "refresh-token-0000000001"), "ann@example.com");
    const cart = new ShopCart(new CartStore(localStorage), session, server.transport);
    await settle();
    const pending = cart.add(product("p-2"), 2);
    // Before any answer: the header's count already includes it.
    expect(cart.getSnapshot().map((l) => [l.productId, l.quantity])).toEqual([["p-1", 1], ["p-2", 2]]);
    await pending;
    await cart.add(product("p-full"));
    expect(cart.error).not.toBe("");
    expect(cart.getSnapshot().map((l) => [l.productId, l.quantity])).toEqual([["p-1", 1], ["p-2", 2]]);
  });

  it("keeps the cart in the browser while the cart service is down, and merges it back after", async () => {
    const server = fakeServer();
    server.setItems([{ productId: "p-1", quantity: 1 }]);
    const session = new AuthSession(sessionStorage);
    session.setTokens(tokenPair(fakeJwt({ sub: "u-1" }), "refresh-token-0000000001"), "ann@example.com");
    const local = new CartStore(localStorage);
    const cart = new ShopCart(local, session, server.transport, 30);
    await settle();
    server.state.down = true;
    await cart.add(product("p-2"), 2); // refused: unreachable -> the browser keeps the cart
    expect(cart.error).toMatch(/not answering/);
    expect(cart.getSnapshot().map((l) => [l.productId, l.quantity])).toEqual([["p-1", 1], ["p-2", 2]]);
    cart.add(product("p-3"));
    expect(cart.getSnapshot().map((l) => [l.productId, l.quantity])).toEqual([["p-1", 1], ["p-2", 2], ["p-3", 1]]);
    server.state.down = false;
    await new Promise((r) => setTimeout(r, 120));
    expect(server.items()).toEqual([
      { productId: "p-1", quantity: 1 },
      { productId: "p-2", quantity: 2 },
      { productId: "p-3", quantity: 1 },
    ]);
    expect(local.getSnapshot()).toEqual([]);
    expect(cart.error).toBe("");
    expect(cart.getSnapshot().map((l) => [l.productId, l.quantity])).toEqual([["p-1", 1], ["p-2", 2], ["p-3", 1]]);
  });
});
