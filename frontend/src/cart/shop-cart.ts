/**
 * The cart the app uses: the shopper's cart on the server (shop.cart.v1.CartService) while
 * signed in, the browser's CartStore (localStorage) while signed out. On sign-in the
 * browser's lines are merged into the server cart (MergeCart: a product in both keeps the
 * larger quantity, so a repeated merge is harmless) and the browser copy is cleared.
 *
 * A change shows at once (the header's count too) and is then replaced by the cart the
 * server answers; a refused change shows the server's cart again, with the reason.
 *
 * A cart service that cannot be reached never blocks shopping or checkout: the cart is then
 * kept in the browser (with what was shown of the server's), and merged into the server's
 * cart as soon as it answers again (tried every `retryMs`).
 *
 * The server keeps product ids and quantities only; the lines shown carry the catalog's
 * current name, picture and price (GetProduct, remembered per product for this page view).
 * After an order is placed the cart service takes the ordered lines out when it sees the
 * OrderPlaced event: `clear()` empties what this page shows meanwhile, without a call.
 */
import { type Client, Code, ConnectError, createClient, type Transport } from "@connectrpc/connect";
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

/** The cart service is down or unreachable (as opposed to refusing a change). */
function unreachable(err: unknown): boolean {
  const code = ConnectError.from(err).code;
  return code === Code.Unavailable || code === Code.DeadlineExceeded || code === Code.Unknown;
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
  // Signed in, but the cart service is down: the browser's cart stands in for it.
  private offline = false;
  private retry: ReturnType<typeof setTimeout> | undefined;

  constructor(
    private readonly local: CartStore,
    private readonly session: AuthSession,
    transport: Transport,
    private readonly retryMs = 10_000,
  ) {
    this.carts = createClient(CartService, transport);
    this.catalog = createClient(ProductService, transport);
    local.subscribe(() => {
      if (!this.server) this.notify();
    });
    session.subscribe(() => this.sessionChanged());
    this.sessionChanged();
  }

  get error(): string {
    return this.lastError;
  }

  /** Whether the server's cart is the one shown and changed. */
  private get server(): boolean {
    return this.userId !== "" && !this.offline;
  }

  getSnapshot = (): Cart => (this.server ? this.lines : this.local.getSnapshot());

  subscribe = (listener: () => void): (() => void) => {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  };

  add = (product: Product, quantity = 1) => {
    if (!this.server) return this.local.add(product, quantity);
    this.products.set(product.id, product);
    this.preview((c) => addItem(c, product, quantity));
    return this.change(() => this.carts.addItem({ userId: this.userId, productId: product.id, quantity }));
  };

  setQuantity = (productId: string, quantity: number) => {
    if (!this.server) return this.local.setQuantity(productId, quantity);
    if (!Number.isFinite(quantity)) return;
    const q = Math.max(0, Math.min(MAX_QUANTITY, Math.floor(quantity)));
    this.preview((c) => setQuantity(c, productId, q));
    return this.change(() => this.carts.setItemQuantity({ userId: this.userId, productId, quantity: q }));
  };

  remove = (productId: string) => {
    if (!this.server) return this.local.remove(productId);
    this.preview((c) => removeItem(c, productId));
    return this.change(() => this.carts.removeItem({ userId: this.userId, productId }));
  };

  clear = () => {
    if (!this.server) return this.local.clear();
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
    this.offline = false;
    clearTimeout(this.retry);
    this.notify();
    if (userId) void this.signedIn(userId);
  }

  /** Fold the browser's cart into the server's, or just read the server's. */
  private signedIn(userId: string): Promise<void> {
    const next = this.queue.then(async () => {
      if (userId !== this.userId) return;
      const browser = this.local.getSnapshot();
      try {
        const reply =
          browser.length === 0
            ? await this.carts.getCart({ userId })
            : await this.carts.mergeCart({
                userId,
                items: browser.map((l) => ({ productId: l.productId, quantity: l.quantity })),
              });
        if (userId !== this.userId) return;
        if (browser.length) this.local.clear();
        this.offline = false;
        this.lastError = "";
        if (reply.cart) await this.show(reply.cart);
        else this.notify();
      } catch (err) {
        if (userId !== this.userId) return;
        if (unreachable(err)) return this.goOffline(userId);
        this.lastError = describeError(err).message;
        this.notify();
      }
    });
    this.queue = next;
    return next;
  }

  /** Keep the cart in the browser (starting from what was shown) and try the server later. */
  private goOffline(userId: string): void {
    if (!this.offline && this.lines.length) {
      const shown = this.lines;
      this.local.update(() => shown);
    }
    this.offline = true;
    this.lastError = "The cart service is not answering: your cart is kept in this browser for now.";
    this.notify();
    clearTimeout(this.retry);
    this.retry = setTimeout(() => void this.signedIn(userId), this.retryMs);
  }

  private change(call: () => Promise<{ cart?: ServerCart }>, userId = this.userId): Promise<void> {
    const next = this.queue.then(async () => {
      try {
        const reply = await call();
        this.lastError = "";
        if (reply.cart && userId === this.userId) await this.show(reply.cart);
      } catch (err) {
        if (userId !== this.userId) return;
        if (unreachable(err)) return this.goOffline(userId);
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
