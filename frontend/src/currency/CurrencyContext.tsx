/**
 * The shopper's currency: chosen in the header, kept in localStorage, and the converter
 * every <Price> reads through. Without a provider (component tests) prices show as sent.
 */
import type { Money } from "@gen/shop/common/v1/common_pb.js";
import { CurrencyService } from "@gen/shop/currency/v1/currency_pb.js";
import {
  createContext,
  type ReactNode,
  useCallback,
  useContext,
  useEffect,
  useMemo,
  useState,
  useSyncExternalStore,
} from "react";
import { useClient } from "../api/use-client";
import { PriceConverter } from "./converter";

export const CURRENCY_KEY = "shopmesh.currency";
export const BASE_CURRENCY = "USD";

interface CurrencyApi {
  currency: string;
  currencies: string[];
  setCurrency: (code: string) => void;
  converter: PriceConverter;
}

const CurrencyContext = createContext<CurrencyApi | null>(null);

export function CurrencyProvider({ storage, children }: { storage: Storage; children: ReactNode }) {
  const client = useClient(CurrencyService);
  const converter = useMemo(() => new PriceConverter(client), [client]);
  const [currency, setChosen] = useState(() => storage.getItem(CURRENCY_KEY) || BASE_CURRENCY);
  const [currencies, setCurrencies] = useState<string[]>([BASE_CURRENCY]);

  useEffect(() => {
    const controller = new AbortController();
    client
      .listCurrencies({}, { signal: controller.signal })
      .then((r) => setCurrencies(r.currencyCodes.length ? r.currencyCodes : [BASE_CURRENCY]))
      .catch(() => undefined); // the switch offers the catalog's currency only
    return () => controller.abort();
  }, [client]);

  const setCurrency = useCallback(
    (code: string) => {
      storage.setItem(CURRENCY_KEY, code);
      converter.reset();
      setChosen(code);
    },
    [storage, converter],
  );

  const value = useMemo(
    () => ({ currency, currencies, setCurrency, converter }),
    [currency, currencies, setCurrency, converter],
  );
  return <CurrencyContext.Provider value={value}>{children}</CurrencyContext.Provider>;
}

export function useCurrency(): CurrencyApi | null {
  return useContext(CurrencyContext);
}

/**
 * `value` in the chosen currency: converted when the answer is in, the original meanwhile
 * (and when the currency service is down). `converted` says which one it is.
 */
export function useConverted(value: Money | undefined): { money: Money | undefined; converted: boolean } {
  const api = useContext(CurrencyContext);
  const converter = api?.converter;
  useSyncExternalStore(
    converter?.subscribe ?? noSubscribe,
    converter?.getVersion ?? zero,
    converter?.getVersion ?? zero,
  );
  if (!api || !value) return { money: value, converted: false };
  const got = api.converter.get(value, api.currency);
  return got ? { money: got, converted: got.currencyCode === api.currency } : { money: value, converted: false };
}

const noSubscribe = () => () => undefined;
const zero = () => 0;
