/**
 * The cart the app uses: the shopper's cart on the server (shop.cart.v1.CartService) while
 * signed in, the browser's CartStore (localStorage) while signed out. On sign-in the
 * browser's lines are merged into the server cart (MergeCart: a product in both keeps the
 * larger quantity, so a repeated merge is harmless) and the browser copy is cleared.
 *
 * A change shows at once (the header's count too) and is then replaced by the cart the
 * server answers; a refused change shows the server's cart again, with the reason.
 *
 * The server keeps product ids and quantities only; the lines shown carry the catalog's
 * current name, picture and price (GetProduct, remembered per product for this page view).
 * After an order is placed the cart service takes the ordered lines out when it sees the
 * OrderPlaced event: `clear()` empties what this page shows meanwhile, without a call.
 */
import { type Client, createClient, type Transport } from "@connectrpc/connect";
import type { Cart as ServerCart } from "@gen/shop/cart/v1/cart_pb.js";
import { CartService } from "@gen/shop/cart/v1/cart_pb.js";
import { type Product, ProductService } from "@gen/shop/product/v1/product_pb.js";
import { describeError } from "../api/errors";
import type { AuthSession } from "../api/session";
import { addItem, type Cart, type CartLine, type CartStore, MAX_QUANTITY, removeItem, setQuantity } from "./cart";

/** What the pages need of a cart (CartStore, the browser-only cart, is one too). */
export interface CartApi {
  getSnapshot(): Cart;
  subscribe(listener: () => void): () => void;
  add(product: Product, quantity?: number): void | Promise<void>;
  setQuantity(productId: string, quantity: number): void | Promise<void>;
  remove(productId: string): void | Promise<void>;
  clear(): void;
  /** The last refusal of the server (cart full, too many units), for the cart page. */
  readonly error?: string;
}

function lineOf(product: Product | undefined, productId: string, quantity: number): CartLine {
  const price = product?.price;
  return {
    productId,
    name: product?.name ?? `Unavailable product ${productId}`,
    imageUrl: product?.imageUrls[0] ?? "",
    quantity,
    unitPrice: {
      currencyCode: price?.currencyCode ?? "USD",
      units: String(price?.units ?? 0n),
      nanos: price?.nanos ?? 0,
    },
  };
}

export class ShopCart implements CartApi {
  private lines: Cart = [];
  private listeners = new Set<() => void>();
  private products = new Map<string, Product | undefined>();
  private readonly carts: Client<typeof CartService>;
  private readonly catalog: Client<typeof ProductService>;
  private userId = "";
  private lastError = "";
  // Changes are sent one after the other, so their answers arrive in the order made.
  private queue: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly local: CartStore,
    private readonly session: AuthSession,
    transport: Transport,
  ) {
    this.carts = createClient(CartService, transport);
    this.catalog = createClient(ProductService, transport);
    local.subscribe(() => {
      if (!this.userId) this.notify();
    });
    session.subscribe(() => this.sessionChanged());
    this.sessionChanged();
  }

  get error(): string {
    return this.lastError;
  }

  getSnapshot = (): Cart => (this.userId ? this.lines : this.local.getSnapshot());

  subscribe = (listener: () => void): (() => void) => {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  };

  add = (product: Product, quantity = 1) => {
    if (!this.userId) return this.local.add(product, quantity);
    this.products.set(product.id, product);
    this.preview((c) => addItem(c, product, quantity));
    return this.change(() => this.carts.addItem({ userId: this.userId, productId: product.id, quantity }));
  };

  setQuantity = (productId: string, quantity: number) => {
    if (!this.userId) return this.local.setQuantity(productId, quantity);
    if (!Number.isFinite(quantity)) return;
    const q = Math.max(0, Math.min(MAX_QUANTITY, Math.floor(quantity)));
    this.preview((c) => setQuantity(c, productId, q));
    return this.change(() => this.carts.setItemQuantity({ userId: this.userId, productId, quantity: q }));
  };

  remove = (productId: string) => {
    if (!this.userId) return this.local.remove(productId);
    this.preview((c) => removeItem(c, productId));
    return this.change(() => this.carts.removeItem({ userId: this.userId, productId }));
  };

  clear = () => {
    if (!this.userId) return this.local.clear();
    this.lines = [];
    this.notify();
  };

  /** The change as it will most likely be stored, shown before the server answers. */
  private preview(change: (cart: Cart) => Cart): void {
    const next = change(this.lines);
    if (next === this.lines) return;
    this.lines = next;
    this.notify();
  }

  private notify(): void {
    for (const l of this.listeners) l();
  }

  private sessionChanged(): void {
    const userId = this.session.getSnapshot()?.userId ?? "";
    if (userId === this.userId) return;
    this.userId = userId;
    this.lines = [];
    this.lastError = "";
    this.notify();
    if (userId) void this.signedIn(userId);
  }

  /** Fold the browser's cart into the server's, or just read the server's. */
  private async signedIn(userId: string): Promise<void> {
    const browser = this.local.getSnapshot();
    await this.change(async () => {
      if (browser.length === 0) return this.carts.getCart({ userId });
      const reply = await this.carts.mergeCart({
        userId,
        items: browser.map((l) => ({ productId: l.productId, quantity: l.quantity })),
      });
      this.local.clear();
      return reply;
    }, userId);
  }

  private change(call: () => Promise<{ cart?: ServerCart }>, userId = this.userId): Promise<void> {
    const next = this.queue.then(async () => {
      try {
        const reply = await call();
        this.lastError = "";
        if (reply.cart && userId === this.userId) await this.show(reply.cart);
      } catch (err) {
        this.lastError = describeError(err).message;
        this.notify();
        // Show what the server holds instead of the refused change.
        const truth = await this.carts.getCart({ userId }).catch(() => undefined);
        if (truth?.cart && userId === this.userId) await this.show(truth.cart);
      }
    });
    this.queue = next;
    return next;
  }

  private async show(cart: ServerCart): Promise<void> {
    const missing = cart.items.map((i) => i.productId).filter((id) => this.products.get(id) === undefined);
    await Promise.all(
      missing.map(async (id) => {
        try {
          this.products.set(id, (await this.catalog.getProduct({ id })).product);
        } catch {
          this.products.set(id, undefined); // gone from the catalog: shown as unavailable
        }
      }),
    );
    this.lines = cart.items.map((i) => lineOf(this.products.get(i.productId), i.productId, i.quantity));
    this.notify();
  }
}
