"""The runtime server's HPACK encoder and write coalescing (services/runtime/transport.py):
whatever it caches or leaves out of the table, a standard decoder reads the same headers."""

from __future__ import annotations

import asyncio
import os
import random

from hpack import Decoder

from services.runtime.transport import _CoalescingTransport, _ResponseEncoder


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
