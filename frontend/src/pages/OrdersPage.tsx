import { OrderService } from "@gen/shop/order/v1/order_pb.js";
import { useState } from "react";
import { Link } from "react-router";
import { useClient, useSession } from "../api/use-client";
import { useQuery } from "../api/use-query";
import { Price } from "../components/Price";
import { RequireLogin } from "../components/RequireLogin";
import { Empty, ErrorNotice, Loading } from "../components/Status";
import { formatTime, STATUS_LABEL } from "./orderStatus";

export function OrdersPage() {
  return (
    <section aria-labelledby="orders-heading">
      <h1 id="orders-heading">Your orders</h1>
      <RequireLogin what="see your orders">
        <OrderList />
      </RequireLogin>
    </section>
  );
}

function OrderList() {
  const orders = useClient(OrderService);
  const { info } = useSession();
  const userId = info?.userId ?? "";
  const [tokens, setTokens] = useState<string[]>([""]);
  const [page, setPage] = useState(0);
  const query = useQuery(
    (signal) => orders.listOrders({ userId, pageSize: 20, pageToken: tokens[page] }, { signal }),
    [orders, userId, page, tokens[page]],
  );
  if (query.status === "loading") return <Loading label="Loading your orders…" />;
  if (query.status === "error") return <ErrorNotice error={query.error} onRetry={query.reload} />;
  const list = query.data.orders;
  const next = query.data.nextPageToken;
  return (
    <>
      {list.length === 0 ? (
        <Empty title="You haven't placed any orders yet.">
          <p>
            <Link to="/">Start shopping</Link>
          </p>
        </Empty>
      ) : (
        <table className="table">
          <caption className="sr-only">Your orders, newest first</caption>
          <thead>
            <tr>
              <th scope="col">Order</th>
              <th scope="col">Placed</th>
              <th scope="col">Status</th>
              <th scope="col">Total</th>
            </tr>
          </thead>
          <tbody>
            {list.map((o) => (
              <tr key={o.id}>
                <td data-label="Order">
                  <Link to={`/orders/${encodeURIComponent(o.id)}`}>{o.id}</Link>
                </td>
                <td data-label="Placed">{formatTime(o.createTime)}</td>
                <td data-label="Status">
                  <span className={`badge status-${o.status}`}>{STATUS_LABEL[o.status]}</span>
                </td>
                <td data-label="Total">
                  <Price value={o.grandTotal ?? o.total} fixed />
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      <nav className="pager" aria-label="Pages">
        <button type="button" className="button secondary" disabled={page === 0} onClick={() => setPage(page - 1)}>
          ← Previous
        </button>
        <span>Page {page + 1}</span>
        <button
          type="button"
          className="button secondary"
          disabled={!next}
          onClick={() => {
            setTokens((t) => [...t.slice(0, page + 1), next]);
            setPage(page + 1);
          }}
        >
          Next →
        </button>
      </nav>
    </>
  );
}
