import { NotificationKind, NotificationService, NotificationStatus } from "@gen/shop/notification/v1/notification_pb.js";
import { Link } from "react-router";
import { useClient, useSession } from "../api/use-client";
import { useQuery } from "../api/use-query";
import { RequireLogin } from "../components/RequireLogin";
import { Empty, ErrorNotice, Loading } from "../components/Status";
import { formatTime } from "./orderStatus";

const KIND: Record<NotificationKind, string> = {
  [NotificationKind.UNSPECIFIED]: "Message",
  [NotificationKind.WELCOME]: "Welcome",
  [NotificationKind.ORDER_CONFIRMED]: "Order confirmed",
  [NotificationKind.ORDER_STATUS]: "Order update",
  [NotificationKind.ORDER_CANCELLED]: "Order cancelled",
};

export function NotificationsPage() {
  return (
    <section aria-labelledby="notif-heading">
      <h1 id="notif-heading">Notifications</h1>
      <RequireLogin what="see your notifications">
        <NotificationList />
      </RequireLogin>
    </section>
  );
}

function NotificationList() {
  const client = useClient(NotificationService);
  const { info } = useSession();
  const userId = info?.userId ?? "";
  const query = useQuery((signal) => client.listNotifications({ userId, pageSize: 50 }, { signal }), [client, userId]);
  if (query.status === "loading") return <Loading label="Loading notifications…" />;
  if (query.status === "error") return <ErrorNotice error={query.error} onRetry={query.reload} />;
  const items = query.data.notifications;
  if (items.length === 0) return <Empty title="No notifications yet." />;
  return (
    <ul className="notification-list">
      {items.map((n) => (
        <li key={n.id} className="notification">
          <p className="state-title">{n.subject || KIND[n.kind]}</p>
          <p className="meta">
            {KIND[n.kind]} · sent to {n.recipient} · {formatTime(n.createTime)}
            {n.status === NotificationStatus.FAILED && <strong className="warn"> · delivery failed</strong>}
          </p>
          {n.orderId && (
            <p>
              <Link to={`/orders/${encodeURIComponent(n.orderId)}`}>View order {n.orderId}</Link>
            </p>
          )}
        </li>
      ))}
    </ul>
  );
}
