"""Orders in the MongoDB wire protocol (motor against FerretDB v1).

- mapping.py: document <-> domain mapping and the outbox entry of an event;
- claims.py: version claims, the write protocol (and outbox) of order documents;
- store.py: MongoOrders, the OrderRepository adapter and the runtime Resource;
- relay_reads.py: its reads and deletes for the outbox relay (a base class of MongoOrders);
- commands.py: what every store command shares (span, UNAVAILABLE mapping, Written).
"""

from services.order.repository.claims import CLAIMS, Verdict, bucket_of, claim_id, verdict
from services.order.repository.mapping import (
    EPOCH,
    event_to_doc,
    from_doc,
    pack_entry,
    to_doc,
    unpack_entry,
)
from services.order.repository.store import (
    LOCK_LEASE,
    LOCK_WAIT_S,
    MAX_POOL,
    OUTBOX_FLAG,
    MongoOrders,
    OrderLockTimeout,
    Written,
)

__all__ = [
    "CLAIMS",
    "EPOCH",
    "LOCK_LEASE",
    "LOCK_WAIT_S",
    "MAX_POOL",
    "OUTBOX_FLAG",
    "MongoOrders",
    "OrderLockTimeout",
    "Verdict",
    "Written",
    "bucket_of",
    "claim_id",
    "event_to_doc",
    "from_doc",
    "pack_entry",
    "to_doc",
    "unpack_entry",
    "verdict",
]
