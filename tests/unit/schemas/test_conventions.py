"""The API conventions common.proto's header states, checked on the descriptor set
(gen/descriptor/shop.binpb) rather than trusted: List/Search requests page inline with the
same bounds, and every id a client sends has the shared rule."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from google.protobuf import descriptor_pb2

from buf.validate import validate_pb2  # registers the (buf.validate.field) extension

ROOT = Path(__file__).resolve().parents[3]
DESCRIPTOR = ROOT / "gen" / "descriptor" / "shop.binpb"
ID_PATTERN = "^[A-Za-z0-9_-]+$"
ID_LEN = (1, 64)
PAGE_SIZE = (0, 100)
PAGE_TOKEN_MAX = 512
# Lists returned whole, each with its reason (common.proto names it too).
UNPAGED = {
    "shop.user.v1.UserService.ListAddresses": "a user's own saved addresses",
    "shop.product.v1.ProductService.ListCategories": "the catalog's categories",
    "shop.currency.v1.CurrencyService.ListCurrencies": "the currencies a shopper may choose",
    "shop.recommendation.v1.RecommendationService.ListRecommendations": "at most 20 products",
}

Field = descriptor_pb2.FieldDescriptorProto


def _load() -> tuple[dict[str, descriptor_pb2.DescriptorProto], list[tuple[str, Any]]]:
    fds = descriptor_pb2.FileDescriptorSet()
    fds.ParseFromString(DESCRIPTOR.read_bytes())
    messages, methods = {}, []

    def walk(prefix: str, msgs: Any) -> None:
        for m in msgs:
            messages[f"{prefix}.{m.name}"] = m
            walk(f"{prefix}.{m.name}", m.nested_type)

    for f in fds.file:
        if not f.package.startswith("shop."):
            continue
        walk(f".{f.package}", f.message_type)
        for svc in f.service:
            methods += [(f"{f.package}.{svc.name}.{m.name}", m) for m in svc.method]
    return messages, methods


MESSAGES, METHODS = _load()


def _field(message: str, name: str) -> Field | None:
    return next((f for f in MESSAGES[message].field if f.name == name), None)


def _rules(field: Field) -> validate_pb2.FieldRules:
    return field.options.Extensions[validate_pb2.field]


def _sent_by_clients() -> set[str]:
    """Every request message and every message type reachable from one."""
    seen: set[str] = set()
    todo = [m.input_type for _, m in METHODS]
    while todo:
        name = todo.pop()
        if name in seen or name not in MESSAGES:  # google.protobuf.* types are not ours
            continue
        seen.add(name)
        todo += [f.type_name for f in MESSAGES[name].field if f.type == Field.TYPE_MESSAGE]
    return seen


def _is_id(field: Field) -> bool:
    return field.name == "id" or field.name.endswith("_id")


LIST_METHODS = [
    (name, m) for name, m in METHODS if name.rsplit(".", 1)[1].startswith(("List", "Search"))
]
ID_FIELDS = sorted(
    (msg, f.name)
    for msg in _sent_by_clients()
    for f in MESSAGES[msg].field
    if _is_id(f) and f.label != Field.LABEL_REPEATED
)


def test_the_conventions_have_something_to_check() -> None:
    assert len(LIST_METHODS) >= 4 and len(ID_FIELDS) >= 10
    for name in UNPAGED:  # an exemption outlives its RPC or its reason only by mistake
        method = dict(METHODS)[name]
        assert _field(method.input_type, "page_size") is None, f"{name} pages now: unexempt it"


@pytest.mark.parametrize("name,method", LIST_METHODS, ids=[n for n, _ in LIST_METHODS])
def test_list_requests_page_inline_with_the_shared_bounds(name: str, method: Any) -> None:
    if name in UNPAGED:
        pytest.skip(f"returned whole: {UNPAGED[name]}")
    size = _field(method.input_type, "page_size")
    token = _field(method.input_type, "page_token")
    assert size is not None and size.type == Field.TYPE_INT32, f"{name}: int32 page_size"
    assert token is not None and token.type == Field.TYPE_STRING, f"{name}: string page_token"
    size_rules = _rules(size).int32
    assert (size_rules.gte, size_rules.lte) == PAGE_SIZE, name
    assert _rules(token).string.max_len == PAGE_TOKEN_MAX, name
    nxt = _field(method.output_type, "next_page_token")
    assert nxt is not None and nxt.type == Field.TYPE_STRING, f"{name}: next_page_token"


@pytest.mark.parametrize("message,name", ID_FIELDS, ids=[f"{m[1:]}.{n}" for m, n in ID_FIELDS])
def test_every_id_a_client_sends_has_the_shared_rule(message: str, name: str) -> None:
    field = _field(message, name)
    assert field.type == Field.TYPE_STRING, f"{message}.{name}: ids are strings"
    rules = _rules(field).string
    assert (rules.min_len, rules.max_len) == ID_LEN, f"{message}.{name}"
    assert rules.pattern == ID_PATTERN, f"{message}.{name}"


def test_repeated_ids_a_client_sends_keep_the_length_per_item() -> None:
    repeated = [
        (msg, f)
        for msg in _sent_by_clients()
        for f in MESSAGES[msg].field
        if f.name.endswith("_ids") and f.label == Field.LABEL_REPEATED
    ]
    assert repeated, "no repeated id field left: drop this test and the sentence in common.proto"
    for msg, f in repeated:
        items = _rules(f).repeated.items.string
        assert f.type == Field.TYPE_STRING, f"{msg}.{f.name}"
        assert (items.min_len, items.max_len) == ID_LEN, f"{msg}.{f.name}"
