/** One order, its status kept live by polling GetOrder while the page is open. */
import { Code, ConnectError } from "@connectrpc/connect";
import { OrderService, OrderStatus } from "@gen/shop/order/v1/order_pb.js";
import { useState } from "react";
import { Link, useParams, useSearchParams } from "react-router";
import { useClient } from "../api/use-client";
import { useQuery } from "../api/use-query";
import { Price } from "../components/Price";
import { RequireLogin } from "../components/RequireLogin";
import { ErrorNotice, Loading } from "../components/Status";
import { FINAL, formatTime, STATUS_LABEL } from "./orderStatus";

export const POLL_MS = 3000;
const STOP_POLLING = new Set([Code.NotFound, Code.PermissionDenied, Code.Unauthenticated, Code.InvalidArgument]);

export function OrderDetailPage() {
  return (
    <RequireLogin what="see this order">
      <OrderDetail />
    </RequireLogin>
  );
}

function OrderDetail() {
  const { id = "" } = useParams();
  const [params] = useSearchParams();
  const orders = useClient(OrderService);
  const query = useQuery((signal) => orders.getOrder({ id }, { signal }), [orders, id], {
    intervalMs: POLL_MS,
    // Delivered or cancelled never changes again; refused or gone will not change either
    // by asking every few seconds.
    pollWhile: (o) => ("data" in o ? !(o.data.order && FINAL.has(o.data.order.status)) : !STOP_POLLING.has(ConnectError.from(o.error).code)),
  });
  const [cancelError, setCancelError] = useState<unknown>(null);
  const [cancelling, setCancelling] = useState(false);

  if (query.status === "loading" && !query.data) return <Loading label="Loading order…" />;
  const order = query.data?.order;
  if (!order) return <ErrorNotice error={query.error ?? new Error("empty response")} onRetry={query.reload} />;

  const canCancel = order.status === OrderStatus.PENDING || order.status === OrderStatus.CONFIRMED;
  const cancel = async () => {
    setCancelling(true);
    setCancelError(null);
    try {
      await orders.cancelOrder({ id: order.id, reason: "cancelled by the customer" });
      query.reload();
    } catch (err) {
      setCancelError(err);
    } finally {
      setCancelling(false);
    }
  };
  const a = order.shippingAddress;

  return (
    <article className="order-detail" aria-labelledby="order-heading">
      <p>
        <Link to="/orders">← All orders</Link>
      </p>
      {params.get("placed") && <p className="notice-ok">Thank you! Your order has been placed.</p>}
      <h1 id="order-heading">Order {order.id}</h1>
      <p>
        Status:{" "}
        <span className={`badge status-${order.status}`} role="status" aria-live="polite" data-testid="order-status">
          {STATUS_LABEL[order.status]}
        </span>
        {!FINAL.has(order.status) && <span className="hint"> (updates automatically)</span>}
      </p>
      {order.cancelReason && <p>Cancel reason: {order.cancelReason}</p>}
      {query.status === "error" && <ErrorNotice error={query.error} onRetry={query.reload} />}
      <p className="meta">
        Placed {formatTime(order.createTime)} · last update {formatTime(order.updateTime)}
      </p>
      <table className="table">
        <caption className="sr-only">Items in this order</caption>
        <thead>
          <tr>
            <th scope="col">Product</th>
            <th scope="col">Quantity</th>
            <th scope="col">Unit price</th>
            <th scope="col">Total</th>
          </tr>
        </thead>
        <tbody>
          {order.lines.map((l) => (
            <tr key={l.productId}>
              <td data-label="Product">
                <Link to={`/products/${encodeURIComponent(l.productId)}`}>{l.productName || l.productId}</Link>
              </td>
              <td data-label="Quantity">{l.quantity}</td>
              <td data-label="Unit price">
                <Price value={l.convertedUnitPrice ?? l.unitPrice} fixed />
              </td>
              <td data-label="Total">
                <Price value={l.convertedLineTotal ?? l.lineTotal} fixed />
              </td>
            </tr>
          ))}
        </tbody>
        <tfoot>
          {order.shippingCost && (
            <tr>
              <th scope="row" colSpan={3}>
                Shipping{order.shippingQuoteId ? " (quoted)" : " (standard rate)"}
              </th>
              <td>
                <Price value={order.shippingCost} fixed />
              </td>
            </tr>
          )}
          <tr>
            <th scope="row" colSpan={3}>
              Order total
            </th>
            <td>
              <Price value={order.grandTotal ?? order.total} fixed className="price big-price order-total" />
            </td>
          </tr>
        </tfoot>
      </table>
      {a && (
        <section aria-labelledby="ship-heading">
          <h2 id="ship-heading">Shipping to</h2>
          <address>
            {a.recipientName}
            <br />
            {a.line1}
            {a.line2 && (
              <>
                <br />
                {a.line2}
              </>
            )}
            <br />
            {a.postalCode} {a.city} {a.region}
            <br />
            {a.countryCode}
          </address>
        </section>
      )}
      {canCancel && (
        <p>
          <button type="button" className="button secondary" disabled={cancelling} onClick={cancel}>
            {cancelling ? "Cancelling…" : "Cancel order"}
          </button>
        </p>
      )}
      {cancelError !== null && <ErrorNotice error={cancelError} />}
    </article>
  );
}
