"""The outbox relay: publishes the events of order writes to Kafka (shop.orders.v1, key =
order id, Avro via the registry) and then deletes their claims (repository/claims.py: every
write to an order first stores a claim with its events; the claims collection is the outbox).

Never runs in the request path; several relays may run (in the order process or alone:
`python -m services.order.outbox`). Two ways in:

- in process: the repository hands every claim it wrote to the relay of its process
  (`attach=True`) and wakes it. Those claims are known to have landed, so they are sent at
  once: no read, no idle poll. Events of one order go out in version order, keyed by the
  order id (one partition, idempotent producer).
- fallback, every `poll_s`: claims this process does not hold (written by another instance,
  by a process that died, or before it started), at least `grace_s` old. A relay takes their
  orders by inserting `{_id: order_id, owner, until}` into `outbox_claims` (one insert for
  the batch; one relay wins an order, a lease lets a dead relay's orders go), reads the
  orders they belong to (one query per bucket, the tenth of a second the claims were
  written in) and publishes the claims whose write landed (claims.verdict), in version
  order per order; claims of writes that never landed are deleted unpublished.

Sends are not awaited one by one: a batch is sent, then all acknowledgements awaited.
Acknowledged claims are deleted together (one command per bucket they were written in; in
the service, batched over `delete_after_s`). A crash between the ack and the delete
republishes them: at least once, with the event id stored in the claim (the `event_id`
header and field), so consumers dedupe. A batch whose send fails (broker lost mid-flush)
stays and is sent again; acknowledged events of it may be sent twice, never lost.

Kafka being down never stops the order service: `LazyProducer` starts the producer from the
relay loop, retrying with backoff, and reports it as the optional `kafka` health dependency
(NOT_SERVING until connected, and while publishes fail). Orders are still placed; their
claims wait (in memory up to `memory_cap`, always in the store). The backlog gauges are
refreshed on their own timer whether or not Kafka answers, so a stuck outbox shows its age.

Modules: producer.py (record mapping, LazyProducer), relay.py (OutboxRelay), fallback.py
(its fallback round), __main__.py (the standalone relay process).
"""

from services.order.outbox.producer import BATCH, MEMORY_CAP, TOPIC, LazyProducer, to_record
from services.order.outbox.relay import OutboxRelay

__all__ = ["BATCH", "MEMORY_CAP", "TOPIC", "LazyProducer", "OutboxRelay", "to_record"]
