"""The runtime's grpclib Server: grpclib's HTTP/2 stack with two per-connection changes that
cut what a call costs on the wire, measured in bench/results/runtime_hot_path.json.

- One write per loop turn: grpclib writes the response headers, the message and the trailers
  with one `transport.write` each (three send() calls and three TCP segments per unary call,
  plus one per flow-control ack). `_CoalescingTransport` gathers what a connection writes
  during one turn of the event loop and sends it with one write at the end of that turn, as
  grpc's C core does. Nothing waits on a timer: the flush is the next ready callback.
- Response header blocks without Huffman coding and without per-call values in the HPACK
  table: the per-call trailers (`x-request-id`, `x-shop-lsn`, error messages) are sent
  "never indexed" (a fresh trace id per call would otherwise evict the useful entries and
  make every table search walk ~50 dead ones), and a header block that only refers to table
  entries (`:status 200`, `content-type`, `grpc-status 0`) is encoded once per table state.
  Huffman coding is optional in HPACK (RFC 7541 5.2); hpack's coder is pure Python, ~8 us
  for a 32-digit trace id, to save ~8 bytes on loopback or in-cluster links.

The client side (`tune_channel`, for the channels a service calls its peers on) does the same
for requests: one write per loop turn (HEADERS and DATA of a call leave together), no Huffman
coding, per-call values (`traceparent`, `grpc-timeout`) never indexed, and the caller's own
service token indexed. h2 sends every `authorization` header "never indexed" (a dictionary
attack on basic credentials could otherwise probe the table), so a service token of ~330
bytes would be Huffman-coded on every call by the caller and decoded by the callee, ~100 us
each in pure Python. The caller's own token is a signed value the caller chose, the same for
minutes, on a connection only the caller writes: indexing it sends two bytes instead. Any
other authorization value (a user's token forwarded) stays never indexed.

h2's frame parser and HPACK decoder are unchanged. Only grpclib's `_protocol_factory` (of
Server, and of each tuned Channel) is overridden; tests/unit/runtime/test_runtime_transport.py
fails if grpclib stops calling it. Imports grpclib, h2 and hpack only.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from grpclib.client import Channel, Handler
from grpclib.protocol import H2Protocol
from grpclib.server import Server
from hpack import Encoder
from hpack.table import HeaderTable

# Response headers whose value differs per call: never worth a table entry.
PER_CALL_HEADERS = frozenset(
    {b"x-request-id", b"x-shop-lsn", b"grpc-message", b"grpc-status-details-bin"}
)
# Request headers whose value differs per call.
PER_CALL_REQUEST_HEADERS = frozenset({b"traceparent", b"tracestate", b"grpc-timeout"})
_MAX_CACHED_BLOCKS = 64


class _CoalescingTransport:
    """A transport proxy whose writes within one loop turn leave as one write."""

    __slots__ = ("_loop", "_pending", "_transport")

    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        self._loop = asyncio.get_running_loop()
        self._pending: list[bytes] = []

    def write(self, data: bytes) -> None:
        if not data:
            return
        if not self._pending:
            self._loop.call_soon(self._flush)
        self._pending.append(data)

    def writelines(self, chunks: Any) -> None:
        for chunk in chunks:
            self.write(chunk)

    def _flush(self) -> None:
        pending = self._pending
        if not pending:
            return
        self._pending = []
        if not self._transport.is_closing():
            self._transport.write(pending[0] if len(pending) == 1 else b"".join(pending))

    def close(self) -> None:
        self._flush()  # a GOAWAY or the last trailers written just before must still leave
        self._transport.close()

    def abort(self) -> None:
        self._pending = []
        self._transport.abort()

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size() + sum(map(len, self._pending))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class _VersionedTable(HeaderTable):
    """hpack's table, counting the changes that move entries (adds, resizes)."""

    def __init__(self) -> None:
        super().__init__()
        self.version = 0

    def add(self, name: bytes, value: bytes) -> None:
        self.version += 1
        super().add(name, value)

    @property  # type: ignore[override]
    def maxsize(self) -> int:
        return self._maxsize

    @maxsize.setter
    def maxsize(self, newmax: int) -> None:
        self.version += 1
        HeaderTable.maxsize.fset(self, newmax)  # type: ignore[attr-defined]


class _ResponseEncoder(Encoder):
    """hpack's Encoder for the server side of one connection (see the module docstring)."""

    def __init__(self) -> None:
        super().__init__()
        self.header_table = _VersionedTable()
        self._blocks: dict[tuple[Any, ...], tuple[int, bytes]] = {}

    def encode(self, headers: Any, huffman: bool = True) -> bytes:
        table = self.header_table
        items = tuple(headers)
        hit = self._blocks.get(items)
        if hit is not None and hit[0] == table.version and not table.resized:
            return hit[1]
        per_call = False
        marked = []
        for header in items:
            if header[0] in PER_CALL_HEADERS:
                per_call = True
                marked.append((header[0], header[1], True))
            else:
                marked.append(header)
        version, resized = table.version, table.resized
        block = super().encode(marked, huffman=False)
        if not per_call and not resized and table.version == version:
            # Only table references: the same bytes until the table changes.
            if len(self._blocks) >= _MAX_CACHED_BLOCKS:
                self._blocks.clear()
            self._blocks[items] = (version, block)
        return block


class _Protocol(H2Protocol):
    def connection_made(self, transport: Any) -> None:
        super().connection_made(_CoalescingTransport(transport))
        self.connection._connection.encoder = _ResponseEncoder()


class RuntimeServer(Server):
    """grpclib's Server whose connections use `_Protocol` (same API, same behaviour)."""

    def _protocol_factory(self) -> H2Protocol:
        base = super()._protocol_factory()  # registers the connection's handler
        return _Protocol(base.handler, base.config, base.h2_config)


class _RequestEncoder(Encoder):
    """hpack's Encoder for the client side of one connection (see the module docstring)."""

    def __init__(self, own_authorization: Callable[[], bytes | None]) -> None:
        super().__init__()
        self._own_authorization = own_authorization

    def encode(self, headers: Any, huffman: bool = True) -> bytes:
        marked = []
        own: bytes | None = None
        for header in headers:
            name = header[0]
            if name in PER_CALL_REQUEST_HEADERS:
                marked.append((name, header[1], True))
            elif name == b"authorization":
                if own is None:
                    own = self._own_authorization() or b""
                marked.append((name, header[1], header[1] != own))
            else:
                marked.append(header)
        return super().encode(marked, huffman=False)


class _ClientProtocol(H2Protocol):
    own_authorization: Callable[[], bytes | None] = staticmethod(lambda: None)  # type: ignore[assignment]

    def connection_made(self, transport: Any) -> None:
        super().connection_made(_CoalescingTransport(transport))
        self.connection._connection.encoder = _RequestEncoder(self.own_authorization)


def tune_channel(
    channel: Channel, own_authorization: Callable[[], bytes | None] = lambda: None
) -> Channel:
    """Make `channel`'s connections use the client half of this module: coalesced writes and
    the request encoder, indexing the authorization value `own_authorization()` returns (the
    caller's service token header, as bytes) and no other. Returns the channel."""

    def factory() -> H2Protocol:
        protocol = _ClientProtocol(Handler(), channel._config, channel._h2_config)
        protocol.own_authorization = own_authorization  # type: ignore[method-assign]
        return protocol

    channel._protocol_factory = factory  # type: ignore[method-assign]
    return channel
