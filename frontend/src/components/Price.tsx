import type { Money } from "@gen/shop/common/v1/common_pb.js";
import { formatMoney } from "../money";

export function Price({ value, className = "price" }: { value: Money | undefined; className?: string }) {
  return <span className={className}>{formatMoney(value)}</span>;
}
