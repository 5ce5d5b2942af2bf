import type { Money } from "@gen/shop/common/v1/common_pb.js";
import { useConverted } from "../currency/CurrencyContext";
import { formatMoney } from "../money";

/**
 * An amount in the shopper's chosen currency (converted by the currency service; the
 * catalog's until the answer is in or when it cannot be had). `fixed`: an amount already
 * in its final currency (an order's), shown as it is.
 */
export function Price({
  value,
  className = "price",
  fixed = false,
}: {
  value: Money | undefined;
  className?: string;
  fixed?: boolean;
}) {
  const { money } = useConverted(fixed ? undefined : value);
  return <span className={className}>{formatMoney(fixed ? value : money)}</span>;
}
