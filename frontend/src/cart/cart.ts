/**
 * The cart: pure functions over a list of lines, plus a store that keeps it in
 * localStorage so it survives reloads (and follows other tabs through `storage` events).
 *
 * Prices here are a snapshot for display only; PlaceOrder sends product ids and
 * quantities, and the order service prices lines from the catalog.
 */
import { create } from "@bufbuild/protobuf";
import { type Money, MoneySchema } from "@gen/shop/common/v1/common_pb.js";
import type { Product } from "@gen/shop/product/v1/product_pb.js";
import { multiplyMoney, sumMoney } from "../money";

export const STORAGE_KEY = "shopmesh.cart.v1";
/** LineItem.quantity is 1..100 in the order schema. */
export const MAX_QUANTITY = 100;
/** PlaceOrderRequest.lines holds at most 50 lines. */
export const MAX_LINES = 50;

export interface CartLine {
  productId: string;
  name: string;
  imageUrl: string;
  quantity: number;
  /** JSON-safe Money snapshot (units as a decimal string: int64 does not fit a double). */
  unitPrice: { currencyCode: string; units: string; nanos: number };
}

export type Cart = readonly CartLine[];

const clampQuantity = (q: number) => Math.max(1, Math.min(MAX_QUANTITY, Math.floor(q)));

export function lineUnitPrice(line: CartLine): Money {
  return create(MoneySchema, {
    currencyCode: line.unitPrice.currencyCode,
    units: BigInt(line.unitPrice.units),
    nanos: line.unitPrice.nanos,
  });
}

export function lineTotal(line: CartLine): Money {
  return multiplyMoney(lineUnitPrice(line), line.quantity);
}

export function cartTotal(cart: Cart): Money | undefined {
  return sumMoney(cart.map(lineTotal));
}

export function cartCount(cart: Cart): number {
  return cart.reduce((n, l) => n + l.quantity, 0);
}

/** Adds `quantity` of a product, merging with an existing line. */
export function addItem(cart: Cart, product: Product, quantity = 1): Cart {
  const existing = cart.find((l) => l.productId === product.id);
  if (existing) {
    return cart.map((l) => (l === existing ? { ...l, quantity: clampQuantity(l.quantity + quantity) } : l));
  }
  if (cart.length >= MAX_LINES) return cart;
  const price = product.price;
  return [
    ...cart,
    {
      productId: product.id,
      name: product.name,
      imageUrl: product.imageUrls[0] ?? "",
      quantity: clampQuantity(quantity),
      unitPrice: {
        currencyCode: price?.currencyCode ?? "USD",
        units: String(price?.units ?? 0n),
        nanos: price?.nanos ?? 0,
      },
    },
  ];
}

/** Sets a line's quantity; 0 or less removes it. */
export function setQuantity(cart: Cart, productId: string, quantity: number): Cart {
  if (!Number.isFinite(quantity)) return cart;
  if (quantity <= 0) return removeItem(cart, productId);
  return cart.map((l) => (l.productId === productId ? { ...l, quantity: clampQuantity(quantity) } : l));
}

export function removeItem(cart: Cart, productId: string): Cart {
  return cart.filter((l) => l.productId !== productId);
}

function isLine(v: unknown): v is CartLine {
  if (typeof v !== "object" || v === null) return false;
  const l = v as Record<string, unknown>;
  const p = l.unitPrice as Record<string, unknown> | undefined;
  return (
    typeof l.productId === "string" &&
    l.productId !== "" &&
    typeof l.name === "string" &&
    typeof l.quantity === "number" &&
    l.quantity >= 1 &&
    typeof p === "object" &&
    p !== null &&
    typeof p.currencyCode === "string" &&
    typeof p.units === "string" &&
    /^-?\d+$/.test(p.units) &&
    typeof p.nanos === "number"
  );
}

/** Parses stored JSON; anything malformed (old version, hand-edited) yields an empty cart. */
export function parseCart(raw: string | null): Cart {
  if (!raw) return [];
  try {
    const data = JSON.parse(raw) as unknown;
    if (!Array.isArray(data)) return [];
    return data.filter(isLine).map((l) => ({ ...l, imageUrl: l.imageUrl ?? "", quantity: clampQuantity(l.quantity) }));
  } catch {
    return [];
  }
}

/** A cart kept in localStorage; subscribe/getSnapshot fit useSyncExternalStore. */
export class CartStore {
  private cart: Cart;
  private listeners = new Set<() => void>();

  constructor(private readonly storage: Storage | undefined = globalThis.localStorage) {
    this.cart = parseCart(this.safeGet());
  }

  getSnapshot = (): Cart => this.cart;

  subscribe = (listener: () => void): (() => void) => {
    this.listeners.add(listener);
    const onStorage = (e: StorageEvent) => {
      if (e.key === STORAGE_KEY) {
        this.cart = parseCart(e.newValue);
        listener();
      }
    };
    globalThis.addEventListener?.("storage", onStorage);
    return () => {
      this.listeners.delete(listener);
      globalThis.removeEventListener?.("storage", onStorage);
    };
  };

  update(change: (cart: Cart) => Cart): void {
    const next = change(this.cart);
    if (next === this.cart) return;
    this.cart = next;
    try {
      this.storage?.setItem(STORAGE_KEY, JSON.stringify(next));
    } catch {
      // storage full or disabled: the cart still works for this page view
    }
    for (const l of this.listeners) l();
  }

  add = (product: Product, quantity = 1) => this.update((c) => addItem(c, product, quantity));
  setQuantity = (productId: string, quantity: number) => this.update((c) => setQuantity(c, productId, quantity));
  remove = (productId: string) => this.update((c) => removeItem(c, productId));
  clear = () => this.update((c) => (c.length ? [] : c));

  private safeGet(): string | null {
    try {
      return this.storage?.getItem(STORAGE_KEY) ?? null;
    } catch {
      return null;
    }
  }
}
