import { create } from "@bufbuild/protobuf";
import { MoneySchema } from "@gen/shop/common/v1/common_pb.js";
import { describe, expect, it } from "vitest";
import { formatMoney, moneyToDecimal, multiplyMoney, parseMoney, sumMoney } from "./money";

const usd = (units: bigint, nanos = 0) => create(MoneySchema, { currencyCode: "USD", units, nanos });

describe("formatMoney", () => {
  it("formats units and nanos as dollars and cents", () => {
    expect(formatMoney(usd(12n, 500_000_000))).toBe("$12.50");
    expect(formatMoney(usd(0n, 990_000_000))).toBe("$0.99");
    expect(formatMoney(usd(1234n))).toBe("$1,234.00");
  });

  it("rounds sub-cent nanos half up instead of truncating", () => {
    expect(formatMoney(usd(1n, 5_000_000))).toBe("$1.01");
    expect(formatMoney(usd(1n, 4_999_999))).toBe("$1.00");
  });

  it("keeps int64 amounts beyond double precision exact", () => {
    // 2^53 + 1 dollars cannot be represented as a JS number.
    expect(moneyToDecimal(usd(9_007_199_254_740_993n, 10_000_000))).toBe("9007199254740993.01");
    expect(formatMoney(usd(9_007_199_254_740_993n, 10_000_000))).toBe("$9,007,199,254,740,993.01");
  });

  it("handles negative amounts (nanos carry the sign of units)", () => {
    expect(formatMoney(usd(-3n, -250_000_000))).toBe("-$3.25");
  });

  it("uses the currency code and shows a dash for a missing price", () => {
    expect(formatMoney(create(MoneySchema, { currencyCode: "EUR", units: 5n }))).toBe("€5.00");
    expect(formatMoney(create(MoneySchema, { currencyCode: "JPY", units: 500n }))).toBe("¥500");
    expect(formatMoney(undefined)).toBe("—");
  });
});

describe("parseMoney / multiply / sum", () => {
  it("parses typed prices exactly", () => {
    const m = parseMoney("19.99", "USD");
    expect(m?.units).toBe(19n);
    expect(m?.nanos).toBe(990_000_000);
    expect(parseMoney("1,299.5", "USD")?.nanos).toBe(500_000_000);
    expect(parseMoney("$7", "USD")?.units).toBe(7n);
  });

  it("rejects what is not a plain non-negative amount", () => {
    for (const bad of ["", "abc", "-1", "1.2.3", "1e3", "0.0000000001"]) expect(parseMoney(bad, "USD")).toBeUndefined();
  });

  it("multiplies and sums without floating point drift", () => {
    // 0.1 * 3 is 0.30000000000000004 in floating point.
    expect(formatMoney(multiplyMoney(usd(0n, 100_000_000), 3))).toBe("$0.30");
    const total = sumMoney([usd(0n, 100_000_000), usd(0n, 200_000_000), usd(1n, 700_000_000)]);
    expect(total && moneyToDecimal(total)).toBe("2");
    expect(sumMoney([usd(1n), create(MoneySchema, { currencyCode: "EUR", units: 1n })])).toBeUndefined();
    expect(sumMoney([])).toBeUndefined();
  });
});
