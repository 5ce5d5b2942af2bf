import { create } from "@bufbuild/protobuf";
import { MoneySchema } from "@gen/shop/common/v1/common_pb.js";
import { describe, expect, it } from "vitest";
import { PriceConverter } from "./converter";

const usd = (units: number, nanos = 0) => create(MoneySchema, { currencyCode: "USD", units: BigInt(units), nanos });

function fakeClient(fail = false) {
  const calls: { amounts: { units: bigint }[]; toCurrencyCode: string }[] = [];
  return {
    calls,
    async convert(req: { amounts: { units: bigint; nanos: number }[]; toCurrencyCode: string }) {
      calls.push(req);
      if (fail) throw new Error("unavailable");
      // "Converts" at 2 per unit, as a stand-in for the service.
      return {
        amounts: req.amounts.map((a) => create(MoneySchema, { currencyCode: req.toCurrencyCode, units: a.units * 2n, nanos: a.nanos })),
        rateVersion: 7n,
      };
    },
  };
}

const settle = () => new Promise((r) => setTimeout(r, 0));

describe("PriceConverter", () => {
  it("asks once per tick for every price shown, then answers from its cache", async () => {
    const client = fakeClient();
    const converter = new PriceConverter(client as never);
    let changes = 0;
    converter.subscribe(() => (changes += 1));
    expect(converter.get(usd(1), "EUR")).toBeUndefined();
    expect(converter.get(usd(2), "EUR")).toBeUndefined();
    expect(converter.get(usd(1), "EUR")).toBeUndefined();
    await settle();
    expect(client.calls).toHaveLength(1);
    expect(client.calls[0].amounts.map((a) => a.units)).toEqual([1n, 2n]);
    expect(changes).toBe(1);
    expect(converter.get(usd(2), "EUR")?.units).toBe(4n);
    expect(converter.get(usd(2), "USD")?.units).toBe(2n); // its own currency: as it is
    await settle();
    expect(client.calls).toHaveLength(1);
  });

  it("falls back to the catalog currency when the service cannot answer", async () => {
    const converter = new PriceConverter(fakeClient(true) as never);
    converter.get(usd(1), "EUR");
    await settle();
    expect(converter.failed).toBe(true);
    expect(converter.get(usd(1), "EUR")).toBeUndefined(); // <Price> shows the original
    converter.reset(); // another currency chosen: ask again
    expect(converter.failed).toBe(false);
  });
});
