"""Stand-in servicers built from a service's descriptor, for tests and benchmarks.

`Stub(SERVICE)` serves every method of a gRPC service (grpclib's `__mapping__`) with the
request and reply classes the descriptor names, so a new RPC in the .proto is served by
every stand-in without a hand edit. Each method answers from `answers` (a reply message,
or a function of the request, sync or async) or else from `default`: UNIMPLEMENTED, or an
empty reply. Calls are counted per method; `on_call(path, metadata)`, when given, sees the
metadata of every call (e.g. the headers a proxy added).

    product = Stub(product_pb2.DESCRIPTOR.services_by_name["ProductService"],
                   {"GetProduct": lambda req: GetProductResponse(...)})
    server = Server([product, Health()])        # or App(config, [product]) in the runtime

The descriptor may come from the generated modules (their classes are used) or from any
descriptor set (`service_of`: classes are made from it). Like mesh/testing.py, used by
tests and bench/ only, never by a service.
"""

from __future__ import annotations

import inspect
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.descriptor import MethodDescriptor, ServiceDescriptor
from google.protobuf.message import Message
from grpclib.const import Cardinality, Handler, Status
from grpclib.exceptions import GRPCError

# A reply, or what makes one from the request (may raise GRPCError or a runtime error).
Answer = Message | Callable[[Any], Message | Awaitable[Message]]
UNIMPLEMENTED = "unimplemented"
EMPTY = "empty"


def message_class(descriptor: Any) -> type[Message]:
    """The message class of a descriptor: the generated one for the default pool's."""
    return message_factory.GetMessageClass(descriptor)


def service_of(descriptor_set: Path | bytes, full_name: str) -> ServiceDescriptor:
    """A service of a descriptor set (e.g. a copy of the schemas' build), in a pool of its
    own so it may differ from the generated modules."""
    data = descriptor_set.read_bytes() if isinstance(descriptor_set, Path) else descriptor_set
    pool = descriptor_pool.DescriptorPool()
    for fd in descriptor_pb2.FileDescriptorSet.FromString(data).file:
        pool.Add(fd)
    return pool.FindServiceByName(full_name)


class Stub:
    """Serves every method of `service`: from `answers[name]`, else `default`."""

    def __init__(
        self,
        service: ServiceDescriptor,
        answers: Mapping[str, Answer] | None = None,
        *,
        default: str = UNIMPLEMENTED,
        on_call: Callable[[str, dict[str, str]], None] | None = None,
    ) -> None:
        unknown = sorted(set(answers or {}) - {m.name for m in service.methods})
        if unknown:
            raise ValueError(f"{service.full_name} has no method {unknown}")
        if default not in (UNIMPLEMENTED, EMPTY):
            raise ValueError(f"default is {UNIMPLEMENTED!r} or {EMPTY!r}, not {default!r}")
        self.service = service
        self.answers = dict(answers or {})
        self.default = default
        self.on_call = on_call
        self.calls: Counter[str] = Counter()
        self._mapping = {
            f"/{service.full_name}/{m.name}": self._handler(m) for m in service.methods
        }

    def __mapping__(self) -> dict[str, Handler]:
        return self._mapping

    def _handler(self, method: MethodDescriptor) -> Handler:
        if method.client_streaming or method.server_streaming:
            raise ValueError(f"{method.full_name}: only unary methods are stubbed")
        request, reply = message_class(method.input_type), message_class(method.output_type)
        name, answer = method.name, self.answers.get(method.name)
        calls = self.calls

        if isinstance(answer, Message):
            fixed = answer

            async def handle(stream: Any) -> None:
                await stream.recv_message()
                calls[name] += 1
                await stream.send_message(fixed)

        elif answer is not None:
            make = answer
            is_async = inspect.iscoroutinefunction(make)

            async def handle(stream: Any) -> None:
                req = await stream.recv_message()
                calls[name] += 1
                out = make(req)
                await stream.send_message(await out if is_async else out)  # type: ignore[misc]

        elif self.default == EMPTY:
            empty = reply()

            async def handle(stream: Any) -> None:
                await stream.recv_message()
                calls[name] += 1
                await stream.send_message(empty)

        else:

            async def handle(stream: Any) -> None:
                await stream.recv_message()
                calls[name] += 1
                raise GRPCError(Status.UNIMPLEMENTED, f"{name}: not answered by this stub")

        if self.on_call is not None:  # wrapped only when asked: benchmarks' stubs stay lean
            answer_call, note = handle, self.on_call
            path = f"/{self.service.full_name}/{name}"

            async def handle(stream: Any) -> None:
                note(path, dict(stream.metadata or {}))
                await answer_call(stream)

        handle.__qualname__ = f"Stub.{name}"
        return Handler(handle, Cardinality.UNARY_UNARY, request, reply)
