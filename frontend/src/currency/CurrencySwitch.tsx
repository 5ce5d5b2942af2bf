import { useId } from "react";
import { useCurrency } from "./CurrencyContext";

/** The header's currency choice: every price on the site follows it. */
export function CurrencySwitch() {
  const api = useCurrency();
  const id = useId();
  if (!api) return null;
  const { currency, currencies, setCurrency, converter } = api;
  const options = currencies.includes(currency) ? currencies : [currency, ...currencies];
  return (
    <div className="currency-switch">
      <label htmlFor={id}>Currency</label>
      <select id={id} value={currency} onChange={(e) => setCurrency(e.target.value)}>
        {options.map((c) => (
          <option key={c} value={c}>
            {c}
          </option>
        ))}
      </select>
      {converter.failed && (
        <span role="status" className="hint">
          {" "}
          Prices in USD: currency conversion is unavailable.
        </span>
      )}
    </div>
  );
}
