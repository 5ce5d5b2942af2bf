/**
 * Money (google.type.Money style: int64 units + int32 nanos) to and from display strings.
 *
 * Amounts never pass through binary floating point: units are bigint, nanos an integer,
 * and Intl.NumberFormat gets an exact decimal string (Intl.NumberFormat v3 rounds it
 * half-expand to the currency's minor digits).
 */
import { create } from "@bufbuild/protobuf";
import { type Money, MoneySchema } from "@gen/shop/common/v1/common_pb.js";

const NANOS = 1_000_000_000n;

/** The exact decimal string of a Money, e.g. {units: 12, nanos: 500000000} -> "12.5". */
export function moneyToDecimal(m: Pick<Money, "units" | "nanos">): string {
  const total = BigInt(m.units) * NANOS + BigInt(m.nanos);
  const negative = total < 0n;
  const abs = negative ? -total : total;
  const whole = abs / NANOS;
  const frac = (abs % NANOS).toString().padStart(9, "0").replace(/0+$/, "");
  return `${negative ? "-" : ""}${whole}${frac ? `.${frac}` : ""}`;
}

const formatters = new Map<string, Intl.NumberFormat>();

/** "$12.50" (locale-aware); an unset Money shows as an em dash rather than "$0.00". */
export function formatMoney(m: Money | undefined, locale = "en-US"): string {
  if (!m) return "—";
  const currency = m.currencyCode || "USD";
  const key = `${locale}|${currency}`;
  let fmt = formatters.get(key);
  if (!fmt) {
    fmt = new Intl.NumberFormat(locale, { style: "currency", currency });
    formatters.set(key, fmt);
  }
  // format() takes a decimal string exactly; the cast is for older lib typings.
  return fmt.format(moneyToDecimal(m) as unknown as number);
}

/**
 * Parses what a person types into a price field ("12", "12.5", "1,299.99") into Money.
 * Returns undefined for anything that is not a plain non-negative amount.
 */
export function parseMoney(text: string, currencyCode: string): Money | undefined {
  const cleaned = text.trim().replace(/[,\s]/g, "").replace(/^\$/, "");
  const match = /^(\d{1,15})(?:\.(\d{0,9}))?$/.exec(cleaned);
  if (!match) return undefined;
  const units = BigInt(match[1]);
  const nanos = Number((match[2] ?? "").padEnd(9, "0"));
  return create(MoneySchema, { currencyCode, units, nanos });
}

/** Multiplies a unit price by a quantity (for cart line totals). */
export function multiplyMoney(m: Money, quantity: number): Money {
  const total = (BigInt(m.units) * NANOS + BigInt(m.nanos)) * BigInt(quantity);
  return create(MoneySchema, {
    currencyCode: m.currencyCode,
    units: total / NANOS,
    nanos: Number(total % NANOS),
  });
}

/** Sums amounts of one currency; undefined when the list is empty or currencies differ. */
export function sumMoney(items: Money[]): Money | undefined {
  if (items.length === 0) return undefined;
  const currency = items[0].currencyCode;
  let total = 0n;
  for (const m of items) {
    if (m.currencyCode !== currency) return undefined;
    total += BigInt(m.units) * NANOS + BigInt(m.nanos);
  }
  return create(MoneySchema, {
    currencyCode: currency,
    units: total / NANOS,
    nanos: Number(total % NANOS),
  });
}
