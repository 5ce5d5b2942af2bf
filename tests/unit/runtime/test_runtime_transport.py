"""The runtime server's HPACK encoder and write coalescing (services/runtime/transport.py):
whatever it caches or leaves out of the table, a standard decoder reads the same headers."""

from __future__ import annotations

import asyncio
import os
import random

from hpack import Decoder
from hpack.struct import NeverIndexedHeaderTuple

from services.runtime.transport import (
    RuntimeServer,
    _CoalescingTransport,
    _RequestEncoder,
    _ResponseEncoder,
    tune_channel,
)


def test_encoded_blocks_decode_to_the_same_headers_across_table_changes() -> None:
    encoder, decoder = _ResponseEncoder(), Decoder()
    rng = random.Random(7)
    for i in range(3000):
        if rng.random() < 0.02:  # the peer changes SETTINGS_HEADER_TABLE_SIZE
            size = rng.choice([0, 64, 256, 4096])
            encoder.header_table_size = size
            decoder.header_table_size = size
        if i % 2:
            headers = [(b":status", b"200"), (b"content-type", b"application/grpc")]
        else:
            headers = [(b"grpc-status", b"0"), (b"x-request-id", os.urandom(16).hex().encode())]
        if rng.random() < 0.1:  # an occasional header that does go into the table
            headers.append((b"x-shop-region", str(rng.randint(0, 40)).encode()))
        got = decoder.decode(encoder.encode(headers), raw=True)
        assert [tuple(h) for h in got] == headers, i


def test_per_call_trailers_never_enter_the_table() -> None:
    encoder = _ResponseEncoder()
    for _ in range(100):
        encoder.encode([(b"grpc-status", b"0"), (b"x-request-id", os.urandom(16).hex().encode())])
    assert [n for n, _ in encoder.header_table.dynamic_entries] == [b"grpc-status"]


def test_a_block_of_table_references_is_encoded_once_per_table_state() -> None:
    encoder = _ResponseEncoder()
    headers = [(b":status", b"200"), (b"content-type", b"application/grpc")]
    encoder.encode(headers)  # adds content-type to the table
    second = encoder.encode(headers)
    assert encoder.encode(headers) is second  # served from the cache
    encoder.encode([(b"x-new", b"1")])  # the table changed: indexes moved
    assert encoder.encode(headers) is not second


class _Recorder:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True


async def test_writes_of_one_loop_turn_leave_as_one_write_in_order() -> None:
    real = _Recorder()
    transport = _CoalescingTransport(real)  # type: ignore[arg-type]
    for chunk in (b"headers", b"data", b"trailers"):
        transport.write(chunk)
    assert real.writes == []
    await asyncio.sleep(0)
    assert real.writes == [b"headersdatatrailers"]
    transport.write(b"goaway")
    transport.close()  # what was written before close still leaves
    assert real.writes[-1] == b"goaway" and real.closed


OWN = b"Bearer own-service-token." + b"x" * 300
FORWARDED = b"Bearer a-user-token." + b"y" * 300


def _request(authorization: bytes, call: int) -> list[tuple[bytes, bytes]]:
    return [
        (b":method", b"POST"),
        (b":path", b"/shop.user.v1.UserService/GetUser"),
        (b"content-type", b"application/grpc"),
        (b"grpc-timeout", f"{call}m".encode()),
        (b"traceparent", f"00-{call:032x}-{call:016x}-01".encode()),
        (b"authorization", authorization),
    ]


def test_request_encoder_indexes_only_the_callers_own_token() -> None:
    encoder, decoder = _RequestEncoder(lambda: OWN), Decoder()
    sizes = []
    for call in range(1, 50):
        headers = _request(OWN if call % 2 else FORWARDED, call)
        block = encoder.encode(never_indexed(headers))
        assert [tuple(h) for h in decoder.decode(block, raw=True)] == headers, call
        if call % 2:
            sizes.append(len(block))
    table = dict(encoder.header_table.dynamic_entries)
    assert table.get(b"authorization") == OWN
    assert FORWARDED not in table.values()  # a forwarded token stays out of the table
    assert b"traceparent" not in table and b"grpc-timeout" not in table
    assert sizes[-1] < len(OWN) < sizes[0]  # the own token: a table reference from then


def test_request_encoder_writes_strings_without_huffman_coding() -> None:
    block = _RequestEncoder(lambda: None).encode(never_indexed(_request(FORWARDED, 7)))
    assert FORWARDED in block and b"00-" + b"0" * 31 + b"7" in block


async def test_a_tuned_channel_calls_a_runtime_server_with_its_token_indexed() -> None:
    from grpclib.client import Channel
    from grpclib.health.service import Health
    from grpclib.health.v1.health_grpc import HealthStub
    from grpclib.health.v1.health_pb2 import HealthCheckRequest, HealthCheckResponse

    server = RuntimeServer([Health()])
    await server.start("127.0.0.1", 0)
    port = server._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    channel = tune_channel(Channel("127.0.0.1", port), lambda: OWN)
    try:
        stub = HealthStub(channel)
        for token in (OWN, FORWARDED, OWN):
            reply = await stub.Check(
                HealthCheckRequest(), metadata={"authorization": token.decode()}
            )
            assert reply.status == HealthCheckResponse.SERVING
        encoder = channel._protocol.connection._connection.encoder  # type: ignore[union-attr]
        assert isinstance(encoder, _RequestEncoder)
        assert (b"authorization", OWN) in encoder.header_table.dynamic_entries
        assert all(v != FORWARDED for _, v in encoder.header_table.dynamic_entries)
    finally:
        channel.close()
        server.close()
        await server.wait_closed()


def never_indexed(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """What h2 hands the encoder: every authorization header marked never indexed."""
    return [NeverIndexedHeaderTuple(n, v) if n == b"authorization" else (n, v) for n, v in headers]
