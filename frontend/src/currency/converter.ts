/**
 * Prices in the shopper's currency, converted by the currency service (CurrencyService.
 * Convert), never in the browser: the rounding the page shows is the one orders charge.
 *
 * Every <Price> asks for its amount; asks made in the same tick go out as one Convert call
 * (up to 200 amounts, the schema's limit), answers are cached per amount and currency for
 * the page's life, and subscribers re-render when answers arrive. When the currency
 * service cannot answer, `failed` is set and prices show in the catalog's currency.
 */
import { create } from "@bufbuild/protobuf";
import type { Client } from "@connectrpc/connect";
import { type Money, MoneySchema } from "@gen/shop/common/v1/common_pb.js";
import type { CurrencyService } from "@gen/shop/currency/v1/currency_pb.js";

const BATCH = 200;

export const keyOf = (m: Pick<Money, "currencyCode" | "units" | "nanos">, to: string) =>
  `${m.currencyCode}|${m.units}|${m.nanos}>${to}`;

export class PriceConverter {
  private readonly done = new Map<string, Money>();
  private readonly wanted = new Map<string, Money>();
  private readonly listeners = new Set<() => void>();
  private to = "";
  private scheduled = false;
  failed = false;
  /** Bumped on every change, for useSyncExternalStore. */
  version = 0;

  constructor(private readonly client: Pick<Client<typeof CurrencyService>, "convert">) {}

  subscribe = (listener: () => void): (() => void) => {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  };

  getVersion = (): number => this.version;

  /** `m` in `to`, if known; otherwise asks for it and returns undefined. */
  get(m: Money, to: string): Money | undefined {
    if (!to || m.currencyCode === to) return m;
    const key = keyOf(m, to);
    const hit = this.done.get(key);
    if (hit || this.failed) return hit;
    if (to !== this.to) {
      this.wanted.clear();
      this.to = to;
    }
    this.wanted.set(key, m);
    if (!this.scheduled) {
      this.scheduled = true;
      queueMicrotask(() => void this.flush());
    }
    return undefined;
  }

  /** Converts now (e.g. the checkout's unit prices); throws when the service cannot. */
  async convertAll(amounts: Money[], to: string): Promise<{ amounts: Money[]; rateVersion: bigint }> {
    const reply = await this.client.convert({ amounts, toCurrencyCode: to });
    reply.amounts.forEach((c, i) => this.done.set(keyOf(amounts[i], to), c));
    return { amounts: reply.amounts, rateVersion: reply.rateVersion };
  }

  /** A new currency was chosen: let a failed service be asked again. */
  reset(): void {
    this.failed = false;
    this.changed();
  }

  private async flush(): Promise<void> {
    this.scheduled = false;
    const to = this.to;
    const batch = [...this.wanted.values()];
    this.wanted.clear();
    for (let i = 0; i < batch.length; i += BATCH) {
      const part = batch.slice(i, i + BATCH).map((m) => create(MoneySchema, m));
      try {
        const reply = await this.client.convert({ amounts: part, toCurrencyCode: to });
        reply.amounts.forEach((c, j) => this.done.set(keyOf(part[j], to), c));
      } catch {
        this.failed = true; // shown in the catalog's currency, with a note in the header
      }
    }
    this.changed();
  }

  private changed(): void {
    this.version += 1;
    for (const l of this.listeners) l();
  }
}
