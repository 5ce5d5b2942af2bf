"""Registry use cases on the in-memory store (no I/O): Confluent's rules for ids, versions,
deletion, config, mode and the catalog/CI check."""

from __future__ import annotations

import json

import pytest

from registry.catalog import subjects_from_files
from registry.cli import check_against
from registry.compatibility import Level
from registry.errors import RegistryError
from registry.service import Registry
from registry.store_memory import MemoryStore

V1 = json.dumps({"type": "record", "name": "R", "fields": [{"name": "a", "type": "int"}]})
V2 = json.dumps(
    {
        "type": "record",
        "name": "R",
        "fields": [{"name": "a", "type": "int"}, {"name": "b", "type": "string", "default": ""}],
    }
)
V2_REORDERED = json.dumps(
    {
        "fields": [{"type": "int", "name": "a"}, {"default": "", "name": "b", "type": "string"}],
        "name": "R",
        "type": "record",
    },
    indent=2,
)
BAD = json.dumps({"type": "record", "name": "R", "fields": [{"name": "c", "type": "int"}]})


def code(exc: pytest.ExceptionInfo[RegistryError]) -> int:
    return exc.value.code


@pytest.fixture
def reg() -> Registry:
    return Registry(MemoryStore())


async def test_same_schema_same_id_and_other_subject_reuses_it(reg: Registry) -> None:
    first = await reg.register("s", {"schema": V1})
    assert await reg.register("s", {"schema": V1}) == first
    other = await reg.register("t", {"schema": V1})
    assert other["id"] == first["id"] and other["version"] == 1
    assert await reg.versions("s") == [1]


async def test_key_order_and_whitespace_do_not_make_a_new_version(reg: Registry) -> None:
    a = await reg.register("s", {"schema": V2})
    b = await reg.register("s", {"schema": V2_REORDERED})
    assert a == b


async def test_incompatible_registration_is_409(reg: Registry) -> None:
    await reg.register("s", {"schema": V1})
    with pytest.raises(RegistryError) as exc:
        await reg.register("s", {"schema": BAD})
    assert code(exc) == 409 and exc.value.status == 409
    await reg.set_config("s", {"compatibility": "NONE"})
    assert (await reg.register("s", {"schema": BAD}))["version"] == 2


async def test_ids_increase(reg: Registry) -> None:
    a = await reg.register("s", {"schema": V1})
    b = await reg.register("s", {"schema": V2})
    assert b["id"] > a["id"] and b["version"] == 2


async def test_lookup_finds_version_or_40403(reg: Registry) -> None:
    await reg.register("s", {"schema": V1})
    found = await reg.lookup("s", {"schema": V1})
    assert (found["version"], found["subject"]) == (1, "s")
    assert "schemaType" not in found
    with pytest.raises(RegistryError) as exc:
        await reg.lookup("s", {"schema": V2})
    assert code(exc) == 40403
    with pytest.raises(RegistryError) as exc:
        await reg.lookup("nope", {"schema": V1})
    assert code(exc) == 40401


async def test_malformed_schema_is_42201(reg: Registry) -> None:
    for body in (
        {"schema": "{not json"},
        {"schema": '{"type":"record","name":"R"}'},
        {},
        {"schema": V1, "schemaType": "XML"},
    ):
        with pytest.raises(RegistryError) as exc:
            await reg.register("s", body)
        assert code(exc) == 42201, body


async def test_versions_and_latest(reg: Registry) -> None:
    await reg.register("s", {"schema": V1})
    await reg.register("s", {"schema": V2})
    assert (await reg.version("s", "latest"))["version"] == 2
    assert (await reg.version("s", "-1"))["version"] == 2
    with pytest.raises(RegistryError) as exc:
        await reg.version("s", 3)
    assert code(exc) == 40402
    for bad in ("0", "abc", str(2**31)):
        with pytest.raises(RegistryError) as exc:
            await reg.version("s", bad)
        assert code(exc) == 42202


async def test_soft_then_permanent_delete_rules(reg: Registry) -> None:
    await reg.register("s", {"schema": V1})
    await reg.register("s", {"schema": V2})
    with pytest.raises(RegistryError) as exc:
        await reg.delete_version("s", 1, permanent=True)
    assert code(exc) == 40407
    assert await reg.delete_version("s", 1) == 1
    with pytest.raises(RegistryError) as exc:
        await reg.delete_version("s", 1)
    assert code(exc) == 40406
    assert await reg.versions("s") == [2]
    assert await reg.versions("s", deleted=True) == [1, 2]
    with pytest.raises(RegistryError) as exc:
        await reg.delete_subject("s", permanent=True)
    assert code(exc) == 40405
    assert await reg.delete_subject("s") == [2]
    with pytest.raises(RegistryError) as exc:
        await reg.delete_subject("s")
    assert code(exc) == 40404
    assert await reg.subjects() == []
    assert await reg.subjects(deleted=True) == ["s"]
    assert await reg.delete_subject("s", permanent=True) == [1, 2]
    assert await reg.subjects(deleted=True) == []
    with pytest.raises(RegistryError) as exc:
        await reg.delete_subject("s")
    assert code(exc) == 40401


async def test_reregistering_after_soft_delete_gets_new_version_same_id(reg: Registry) -> None:
    first = await reg.register("s", {"schema": V1})
    await reg.delete_subject("s")
    again = await reg.register("s", {"schema": V1})
    assert again["id"] == first["id"] and again["version"] == 2


async def test_config_levels(reg: Registry) -> None:
    assert await reg.get_config(None) == {"compatibilityLevel": "BACKWARD"}
    assert await reg.set_config(None, {"compatibility": "full"}) == {"compatibility": "FULL"}
    with pytest.raises(RegistryError) as exc:
        await reg.get_config("s")
    assert code(exc) == 40408
    assert await reg.get_config("s", default_to_global=True) == {"compatibilityLevel": "FULL"}
    with pytest.raises(RegistryError) as exc:
        await reg.set_config("s", {"compatibility": "SIDEWAYS"})
    assert code(exc) == 42203
    await reg.set_config("s", {"compatibility": "NONE"})
    assert await reg.delete_config("s") == {"compatibilityLevel": "NONE"}
    assert await reg.delete_config(None) == {"compatibilityLevel": "FULL"}
    assert await reg.get_config(None) == {"compatibilityLevel": "BACKWARD"}


async def test_readonly_mode_blocks_writes_and_import_keeps_ids(reg: Registry) -> None:
    await reg.set_mode("s", {"mode": "READONLY"})
    with pytest.raises(RegistryError) as exc:
        await reg.register("s", {"schema": V1})
    assert code(exc) == 42205
    with pytest.raises(RegistryError) as exc:
        await reg.set_mode(None, {"mode": "BOGUS"})
    assert code(exc) == 42204
    await reg.set_mode("imp", {"mode": "IMPORT"})
    assert await reg.register("imp", {"schema": V1, "id": 100, "version": 7}) == {
        "id": 100,
        "version": 7,
    }
    assert (await reg.register("other", {"schema": V2}))["id"] > 100
    with pytest.raises(RegistryError) as exc:
        await reg.register("s2", {"schema": V2, "id": 5})
    assert code(exc) == 42205


async def test_references_resolve_named_types_from_other_subjects(reg: Registry) -> None:
    money = json.dumps(
        {
            "type": "record",
            "name": "Money",
            "namespace": "m",
            "fields": [{"name": "units", "type": "long"}],
        }
    )
    order = json.dumps(
        {
            "type": "record",
            "name": "Order",
            "namespace": "m",
            "fields": [{"name": "total", "type": "m.Money"}],
        }
    )
    await reg.register("money", {"schema": money})
    ref = [{"name": "m.Money", "subject": "money", "version": 1}]
    got = await reg.register("order", {"schema": order, "references": ref})
    assert await reg.referenced_by("money", 1) == [got["id"]]
    assert (await reg.schema_by_id(got["id"]))["references"] == ref
    with pytest.raises(RegistryError) as exc:
        await reg.delete_version("money", 1)
    assert code(exc) == 42206


async def test_compatibility_endpoint_verbose(reg: Registry) -> None:
    await reg.register("s", {"schema": V1})
    ok = await reg.test_compatibility("s", "latest", {"schema": V2}, verbose=True)
    assert ok == {"is_compatible": True, "messages": []}
    bad = await reg.test_compatibility("s", "1", {"schema": BAD}, verbose=True)
    assert bad["is_compatible"] is False and bad["messages"]


FILES = {
    "topics.json": json.dumps({"shop.orders.v1": ["x.Order"]}),
    "x/Money.avsc": json.dumps(
        {
            "type": "record",
            "name": "Money",
            "namespace": "x",
            "fields": [{"name": "units", "type": "long"}],
        }
    ),
    "x/Order.avsc": json.dumps(
        {
            "type": "record",
            "name": "Order",
            "namespace": "x",
            "fields": [{"name": "total", "type": "x.Money"}, {"name": "tax", "type": "Money"}],
        }
    ),
}


def test_catalog_inlines_shared_types_once_and_names_subjects() -> None:
    (only,) = subjects_from_files(FILES)
    assert only.subject == "shop.orders.v1-x.Order"
    fields = json.loads(only.schema)["fields"]
    assert fields[0]["type"]["name"] == "Money" and fields[1]["type"] == "Money"


async def test_check_against_base_reports_subject_and_reason() -> None:
    base = subjects_from_files(FILES)
    changed = dict(FILES)
    changed["x/Order.avsc"] = json.dumps(
        {
            "type": "record",
            "name": "Order",
            "namespace": "x",
            "fields": [{"name": "total", "type": "x.Money"}, {"name": "coupon", "type": "string"}],
        }
    )
    problems = await check_against(base, subjects_from_files(changed), Level.BACKWARD)
    assert len(problems) == 1 and problems[0].startswith("shop.orders.v1-x.Order:")
    assert "coupon" in problems[0]
    assert await check_against(base, base, Level.FULL) == []
