/**
 * The shipping quote of the checkout: asked of the shipping service for the cart, the
 * destination country and the chosen currency whenever one of them changes (debounced),
 * and again when it expires. "unavailable" when the service cannot answer: the order is
 * still placed, at the default shipping rule.
 */
import { ShippingService, type Quote } from "@gen/shop/shipping/v1/shipping_pb.js";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import { useCallback, useEffect, useRef, useState } from "react";
import { useClient } from "../api/use-client";

export type QuoteState =
  | { status: "idle" | "loading" | "unavailable" }
  | { status: "ready"; quote: Quote };

const DEBOUNCE_MS = 300;
const RENEW_BEFORE_MS = 30_000;

/**
 * The quote state, and `settled()`: the state once no quote is on its way (what "Place
 * order" waits for, so an order names the quote the page is about to show).
 */
export function useShippingQuote(
  lines: { productId: string; quantity: number }[],
  countryCode: string,
  currencyCode: string,
): QuoteState & { settled: () => Promise<QuoteState> } {
  const shipping = useClient(ShippingService);
  const [state, setState] = useState<QuoteState>({ status: "idle" });
  const current = useRef(state);
  const waiters = useRef<((s: QuoteState) => void)[]>([]);
  current.current = state;
  useEffect(() => {
    if (state.status === "loading") return;
    for (const resolve of waiters.current.splice(0)) resolve(state);
  }, [state]);
  const settled = useCallback(
    () =>
      current.current.status === "loading"
        ? new Promise<QuoteState>((resolve) => waiters.current.push(resolve))
        : Promise.resolve(current.current),
    [],
  );
  const [renewals, setRenewals] = useState(0);
  const key = JSON.stringify(lines.map((l) => [l.productId, l.quantity]));
  const country = countryCode.trim().toUpperCase();

  useEffect(() => {
    if (!/^[A-Z]{2}$/.test(country) || lines.length === 0) {
      setState({ status: "idle" });
      return;
    }
    const controller = new AbortController();
    let renew: ReturnType<typeof setTimeout> | undefined;
    setState({ status: "loading" });
    const timer = setTimeout(() => {
      shipping
        .createQuote({ countryCode: country, lines, currencyCode }, { signal: controller.signal })
        .then((r) => {
          if (!r.quote) throw new Error("no quote in response");
          const quote = r.quote;
          setState({ status: "ready", quote });
          const left = quote.expireTime ? timestampDate(quote.expireTime).getTime() - Date.now() : 0;
          renew = setTimeout(() => setRenewals((n) => n + 1), Math.max(1_000, left - RENEW_BEFORE_MS));
        })
        .catch(() => {
          if (!controller.signal.aborted) setState({ status: "unavailable" });
        });
    }, DEBOUNCE_MS);
    return () => {
      controller.abort();
      clearTimeout(timer);
      clearTimeout(renew);
    };
    // `key` stands for `lines` (a new array each render).
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [shipping, key, country, currencyCode, renewals]);

  return { ...state, settled } as QuoteState & { settled: () => Promise<QuoteState> };
}
