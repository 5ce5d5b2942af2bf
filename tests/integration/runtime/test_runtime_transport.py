"""The runtime's grpclib Server over real loopback TCP: a unary reply (headers, message and
trailers) leaves in one write, and a grpclib client reads it unchanged."""

from __future__ import annotations

from grpclib.client import Channel
from hyperframe.frame import DataFrame, Frame, HeadersFrame

from services.runtime import transport
from services.runtime.transport import RuntimeServer
from shop.product.v1 import product_grpc
from shop.product.v1 import product_pb2 as pb
from tests.integration.runtime.test_runtime_server import memory_products


def frames(chunk: bytes) -> list[Frame]:
    out, pos = [], 0
    while pos < len(chunk):
        frame, length = Frame.parse_frame_header(memoryview(chunk[pos : pos + 9]))
        frame.parse_body(memoryview(chunk[pos + 9 : pos + 9 + length]))
        out.append(frame)
        pos += 9 + length
    return out


async def test_unary_reply_leaves_in_one_write(monkeypatch) -> None:
    writes: list[bytes] = []

    class Recording(transport._CoalescingTransport):
        __slots__ = ()

        def _flush(self) -> None:
            if self._pending:  # what one write to the socket carries
                writes.append(b"".join(self._pending))
            super()._flush()

    monkeypatch.setattr(transport, "_CoalescingTransport", Recording)
    server = RuntimeServer([memory_products()])
    await server.start("127.0.0.1", 0)
    port = server._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    channel = Channel("127.0.0.1", port)
    try:
        reply = await product_grpc.ProductServiceStub(channel).GetProduct(
            pb.GetProductRequest(id="p-0001")
        )
    finally:
        channel.close()
        server.close()
        await server.wait_closed()
    assert reply.product.name == "Mug"
    # The write that carries the reply's DATA frame also carries its headers and trailers.
    (reply_write,) = [w for w in writes if any(isinstance(f, DataFrame) for f in frames(w))]
    kinds = [type(f) for f in frames(reply_write)]
    assert kinds == [HeadersFrame, DataFrame, HeadersFrame]
    assert "END_STREAM" in frames(reply_write)[-1].flags
