import { create } from "@bufbuild/protobuf";
import { MoneySchema } from "@gen/shop/common/v1/common_pb.js";
import { ProductSchema } from "@gen/shop/product/v1/product_pb.js";
import { describe, expect, it } from "vitest";
import { formatMoney } from "../money";
import { addItem, cartCount, cartTotal, CartStore, MAX_QUANTITY, parseCart, removeItem, setQuantity, STORAGE_KEY } from "./cart";

const product = (id: string, units: bigint, nanos = 0) =>
  create(ProductSchema, {
    id,
    name: `Product ${id}`,
    price: create(MoneySchema, { currencyCode: "USD", units, nanos }),
    imageUrls: [`https://img.example/${id}.png`],
    stock: 5,
  });

describe("cart functions", () => {
  it("adds, merges lines of the same product and totals exactly", () => {
    let cart = addItem([], product("p-1", 2n, 500_000_000));
    cart = addItem(cart, product("p-2", 10n), 2);
    cart = addItem(cart, product("p-1", 2n, 500_000_000));
    expect(cart).toHaveLength(2);
    expect(cart[0].quantity).toBe(2);
    expect(cartCount(cart)).toBe(4);
    expect(formatMoney(cartTotal(cart))).toBe("$25.00");
  });

  it("clamps quantities to the order schema's 1..100 and removes at 0", () => {
    let cart = addItem([], product("p-1", 1n), 500);
    expect(cart[0].quantity).toBe(MAX_QUANTITY);
    cart = setQuantity(cart, "p-1", 3);
    expect(cart[0].quantity).toBe(3);
    cart = setQuantity(cart, "p-1", Number.NaN);
    expect(cart[0].quantity).toBe(3);
    expect(setQuantity(cart, "p-1", 0)).toEqual([]);
    expect(removeItem(cart, "p-1")).toEqual([]);
  });

  it("ignores corrupt or foreign stored data", () => {
    expect(parseCart("not json")).toEqual([]);
    expect(parseCart('{"a":1}')).toEqual([]);
    expect(parseCart('[{"productId":"p","name":"x","quantity":1,"unitPrice":{"currencyCode":"USD","units":1.5,"nanos":0}}]')).toEqual([]);
    const ok = parseCart('[{"productId":"p","name":"x","quantity":1,"unitPrice":{"currencyCode":"USD","units":"3","nanos":0}}, 42]');
    expect(ok).toHaveLength(1);
    expect(ok[0].imageUrl).toBe("");
  });
});

describe("CartStore", () => {
  it("keeps the cart across reloads (a new store reads localStorage)", () => {
    const first = new CartStore(localStorage);
    first.add(product("p-9", 9007199254740993n), 2);
    expect(JSON.parse(localStorage.getItem(STORAGE_KEY) ?? "[]")[0].unitPrice.units).toBe("9007199254740993");
    const afterReload = new CartStore(localStorage);
    expect(afterReload.getSnapshot()).toHaveLength(1);
    expect(afterReload.getSnapshot()[0].quantity).toBe(2);
    expect(formatMoney(cartTotal(afterReload.getSnapshot()))).toBe("$18,014,398,509,481,986.00");
    afterReload.clear();
    expect(new CartStore(localStorage).getSnapshot()).toEqual([]);
  });

  it("notifies subscribers and follows changes made in another tab", () => {
    const store = new CartStore(localStorage);
    let calls = 0;
    const unsubscribe = store.subscribe(() => calls++);
    store.add(product("p-1", 1n));
    expect(calls).toBe(1);
    const other = JSON.stringify([{ productId: "p-7", name: "x", imageUrl: "", quantity: 4, unitPrice: { currencyCode: "USD", units: "1", nanos: 0 } }]);
    window.dispatchEvent(new StorageEvent("storage", { key: STORAGE_KEY, newValue: other }));
    expect(calls).toBe(2);
    expect(store.getSnapshot()[0].productId).toBe("p-7");
    unsubscribe();
    store.add(product("p-2", 1n));
    expect(calls).toBe(2);
  });
});
