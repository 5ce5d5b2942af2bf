"""gRPC handlers of shop.notification.v1.NotificationService: map, call one use case, map."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC

from google.protobuf.timestamp_pb2 import Timestamp
from grpclib.server import Stream

from services.notification.domain import Kind, LogEntry, LogStatus
from services.notification.ports import NotificationLog
from services.notification.replay import ReplayFilter, ReplayResult
from services.notification.service import list_notifications
from services.runtime.auth import require_self_or_admin
from shop.notification.v1 import notification_grpc
from shop.notification.v1 import notification_pb2 as pb

Replayer = Callable[[ReplayFilter], Awaitable[ReplayResult]]

_KIND = {
    Kind.WELCOME: pb.NOTIFICATION_KIND_WELCOME,
    Kind.ORDER_CONFIRMED: pb.NOTIFICATION_KIND_ORDER_CONFIRMED,
    Kind.ORDER_STATUS: pb.NOTIFICATION_KIND_ORDER_STATUS,
    Kind.ORDER_CANCELLED: pb.NOTIFICATION_KIND_ORDER_CANCELLED,
}
_STATUS = {
    LogStatus.SENT: pb.NOTIFICATION_STATUS_SENT,
    LogStatus.FAILED: pb.NOTIFICATION_STATUS_FAILED,
}


def to_proto(entry: LogEntry) -> pb.Notification:
    created = Timestamp()
    if entry.created_at is not None:
        created.FromDatetime(entry.created_at.astimezone(UTC))
    return pb.Notification(
        id=entry.id,
        event_id=entry.event_id,
        user_id=entry.user_id,
        kind=_KIND.get(entry.kind, pb.NOTIFICATION_KIND_UNSPECIFIED) if entry.kind else 0,
        recipient=entry.recipient,
        subject=entry.subject,
        status=_STATUS.get(entry.status, pb.NOTIFICATION_STATUS_UNSPECIFIED),
        order_id=entry.order_id,
        create_time=created,
    )


def to_filter(req: pb.ReplayDeadLettersRequest) -> ReplayFilter:
    return ReplayFilter(
        topics=(req.topic,) if req.topic else (),
        since=req.since.ToDatetime(tzinfo=UTC) if req.HasField("since") else None,
        until=req.until.ToDatetime(tzinfo=UTC) if req.HasField("until") else None,
        event_ids=frozenset(req.event_ids),
        max_records=req.max_records or 1000,
    )


class NotificationHandlers(notification_grpc.NotificationServiceBase):
    def __init__(self, log: Callable[[], NotificationLog], replayer: Replayer) -> None:
        self._log = log  # a factory: one unit of work per request
        self._replay = replayer

    async def ListNotifications(
        self, stream: Stream[pb.ListNotificationsRequest, pb.ListNotificationsResponse]
    ) -> None:
        req = await stream.recv_message()
        assert req is not None
        require_self_or_admin(req.user_id)  # only your own notifications (or admin, service)
        page, token = await list_notifications(
            self._log(), req.user_id, req.page_size, req.page_token
        )
        await stream.send_message(
            pb.ListNotificationsResponse(
                notifications=[to_proto(e) for e in page], next_page_token=token
            )
        )

    async def ReplayDeadLetters(
        self, stream: Stream[pb.ReplayDeadLettersRequest, pb.ReplayDeadLettersResponse]
    ) -> None:
        req = await stream.recv_message()
        assert req is not None
        result = await self._replay(to_filter(req))
        await stream.send_message(
            pb.ReplayDeadLettersResponse(replayed=result.replayed, scanned=result.scanned)
        )
