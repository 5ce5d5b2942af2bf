import { OrderStatus } from "@gen/shop/order/v1/order_pb.js";
import type { Timestamp } from "@bufbuild/protobuf/wkt";

export const STATUS_LABEL: Record<OrderStatus, string> = {
  [OrderStatus.UNSPECIFIED]: "Unknown",
  [OrderStatus.PENDING]: "Pending",
  [OrderStatus.CONFIRMED]: "Confirmed",
  [OrderStatus.PAID]: "Paid",
  [OrderStatus.SHIPPED]: "Shipped",
  [OrderStatus.DELIVERED]: "Delivered",
  [OrderStatus.CANCELLED]: "Cancelled",
};

/** States after which the order never changes again: stop polling there. */
export const FINAL = new Set([OrderStatus.DELIVERED, OrderStatus.CANCELLED]);

export function formatTime(ts: Timestamp | undefined): string {
  if (!ts) return "";
  return new Date(Number(ts.seconds) * 1000).toLocaleString("en-US", { dateStyle: "medium", timeStyle: "short" });
}
