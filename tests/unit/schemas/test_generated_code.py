"""The generated Python code imports, round-trips every message, and matches the schemas'
rules: every RPC states its mesh policy and every edge RPC has a REST path."""

from __future__ import annotations

import importlib
import subprocess
from pathlib import Path

import pytest
from google.api import annotations_pb2
from google.protobuf import descriptor_pb2, message_factory
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message
from grpclib.client import Channel

from shop.mesh.v1 import options_pb2

ROOT = Path(__file__).resolve().parents[3]


def _modules(suffix: str) -> list:
    # gen/python/shop is a namespace package (buf cleans the tree), so walk the files.
    gen = ROOT / "gen" / "python"
    names = sorted(
        ".".join(p.relative_to(gen).with_suffix("").parts)
        for p in (gen / "shop").rglob(f"*{suffix}.py")
    )
    return [importlib.import_module(n) for n in names]


PB2 = _modules("_pb2")
MESSAGES = [
    cls
    for mod in PB2
    for desc in mod.DESCRIPTOR.message_types_by_name.values()
    for cls in [message_factory.GetMessageClass(desc)]
]
SERVICES = [s for mod in PB2 for s in mod.DESCRIPTOR.services_by_name.values()]
METHODS = [m for s in SERVICES for m in s.methods]


def _fill(msg: Message, depth: int = 0) -> None:
    """Set every field of msg (recursively) to a non-default value."""
    for field in msg.DESCRIPTOR.fields:
        repeated = field.is_repeated
        if field.type == FieldDescriptor.TYPE_MESSAGE:
            if field.message_type.GetOptions().map_entry or depth > 3:
                continue
            target = getattr(msg, field.name).add() if repeated else getattr(msg, field.name)
            _fill(target, depth + 1)
            if not repeated and not target.ListFields():
                target.SetInParent()
            continue
        value = {
            FieldDescriptor.TYPE_STRING: f"v-{field.name}",
            FieldDescriptor.TYPE_BYTES: b"\x01\x02",
            FieldDescriptor.TYPE_BOOL: True,
            FieldDescriptor.TYPE_ENUM: field.enum_type.values[-1].number if field.enum_type else 0,
            FieldDescriptor.TYPE_DOUBLE: 1.5,
            FieldDescriptor.TYPE_FLOAT: 1.5,
        }.get(field.type, 7)
        if repeated:
            getattr(msg, field.name).append(value)
        else:
            setattr(msg, field.name, value)


def test_every_domain_has_messages() -> None:
    packages = {mod.DESCRIPTOR.package for mod in PB2}
    for domain in ("common", "product", "user", "order", "notification", "auth", "mesh"):
        assert f"shop.{domain}.v1" in packages
    assert len(MESSAGES) > 50


@pytest.mark.parametrize("cls", MESSAGES, ids=lambda c: c.DESCRIPTOR.full_name)
def test_message_round_trips(cls: type[Message]) -> None:
    original = cls()
    _fill(original)
    wire = original.SerializeToString()
    decoded = cls.FromString(wire)
    assert decoded == original
    if cls.DESCRIPTOR.fields:
        assert decoded.ListFields(), "filled message must carry data"


def test_messages_use_the_upb_runtime() -> None:
    from google.protobuf.internal import api_implementation

    assert api_implementation.Type() == "upb"


@pytest.mark.parametrize("service", SERVICES, ids=lambda s: s.full_name)
async def test_grpclib_base_and_stub_exist(service) -> None:
    module_name = service.file.name.removesuffix(".proto").replace("/", ".") + "_grpc"
    module = importlib.import_module(module_name)
    base = getattr(module, f"{service.name}Base")
    channel = Channel("127.0.0.1", 9)  # never connected: the stub only binds paths
    try:
        stub = getattr(module, f"{service.name}Stub")(channel)
        for method in service.methods:
            assert method.name in base.__abstractmethods__
            assert getattr(stub, method.name).name == f"/{service.full_name}/{method.name}"
    finally:
        channel.close()


def _options(method) -> descriptor_pb2.MethodOptions:
    opts = descriptor_pb2.MethodOptions()
    opts.ParseFromString(method.GetOptions().SerializeToString())
    return opts


@pytest.mark.parametrize("method", METHODS, ids=lambda m: m.full_name)
def test_every_rpc_states_its_policy(method) -> None:
    policy = _options(method).Extensions[options_pb2.policy]
    assert policy.access != options_pb2.ACCESS_UNSPECIFIED, "set (shop.mesh.v1.policy).access"
    assert 0 < policy.timeout_ms <= 60000


@pytest.mark.parametrize("method", METHODS, ids=lambda m: m.full_name)
def test_edge_rpcs_have_rest_paths_and_internal_ones_do_not(method) -> None:
    opts = _options(method)
    policy = opts.Extensions[options_pb2.policy]
    has_http = opts.HasExtension(annotations_pb2.http)
    if policy.access == options_pb2.ACCESS_INTERNAL:
        assert not has_http, "internal RPCs must not be reachable over REST"
        return
    assert has_http, "every edge RPC needs a google.api.http annotation"
    rule = opts.Extensions[annotations_pb2.http]
    path = getattr(rule, rule.WhichOneof("pattern"))
    assert path.startswith("/api/v1/")


def test_rpc_names_follow_request_response_convention() -> None:
    for method in METHODS:
        assert method.input_type.name == f"{method.name}Request"
        assert method.output_type.name == f"{method.name}Response"


def test_typescript_output_compiles() -> None:
    tsc = ROOT / "node_modules" / ".bin" / "tsc"
    if not tsc.exists():
        pytest.fail("node tooling missing: run `make install`")
    result = subprocess.run(
        [str(tsc), "-p", "tsconfig.gen.json"], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert (ROOT / "gen/ts/shop/order/v1/order_pb.ts").exists()
