"""The REST API over real PostgreSQL: Confluent shapes, error codes, concurrency, restart."""

from __future__ import annotations

import asyncio
import json
import uuid

import httpx
import pytest

from tests.integration.registry.conftest import RegistryProcess

pytestmark = pytest.mark.stack
CT = {"Content-Type": "application/vnd.schemaregistry.v1+json"}


def record(name: str, *fields: tuple[str, object, object]) -> str:
    out = []
    for fname, ftype, default in fields:
        field = {"name": fname, "type": ftype}
        if default is not ...:
            field["default"] = default
        out.append(field)
    return json.dumps({"type": "record", "name": name, "namespace": "it", "fields": out})


def subject() -> str:
    return f"it-{uuid.uuid4().hex[:8]}"


def post(url: str, body: object, **params: str) -> httpx.Response:
    data = body if isinstance(body, str | bytes) else json.dumps(body)
    return httpx.post(url, content=data, headers=CT, params=params)


def test_root_types_and_content_type(registry_server: RegistryProcess) -> None:
    root = httpx.get(f"{registry_server.url}/")
    assert root.json() == {}
    assert root.headers["content-type"].startswith("application/vnd.schemaregistry.v1+json")
    assert httpx.get(f"{registry_server.url}/schemas/types").json() == ["AVRO"]


def test_register_get_and_lookup_shapes(registry_server: RegistryProcess) -> None:
    url, s = registry_server.url, subject()
    schema = record("Shape", ("a", "int", ...))
    first = post(f"{url}/subjects/{s}/versions", {"schema": schema})
    assert first.status_code == 200 and set(first.json()) == {"id"}
    sid = first.json()["id"]
    got = httpx.get(f"{url}/subjects/{s}/versions/latest").json()
    assert got == {"subject": s, "version": 1, "id": sid, "schema": got["schema"]}
    assert json.loads(got["schema"]) == json.loads(schema)
    raw = httpx.get(f"{url}/subjects/{s}/versions/1/schema")
    assert json.loads(raw.text) == json.loads(schema)
    assert json.loads(httpx.get(f"{url}/schemas/ids/{sid}").json()["schema"]) == json.loads(schema)
    assert httpx.get(f"{url}/schemas/ids/{sid}/versions").json() == [{"subject": s, "version": 1}]
    found = post(f"{url}/subjects/{s}", {"schema": schema}).json()
    assert (found["id"], found["version"]) == (sid, 1)
    assert s in httpx.get(f"{url}/subjects").json()
    # application/json is accepted too
    again = httpx.post(f"{url}/subjects/{s}/versions", json={"schema": schema})
    assert again.json() == {"id": sid}


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "code"),
    [
        ("POST", "/subjects/{s}/versions", {"schema": "{nope"}, 422, 42201),
        ("POST", "/subjects/{s}/versions", {"schema": '{"type":"record","name":"X"}'}, 422, 42201),
        ("POST", "/subjects/{s}/versions", "{not json", 400, 400),
        ("POST", "/subjects/{s}/versions", "[1, 2]", 400, 400),
        ("GET", "/subjects/unknown-{s}/versions", None, 404, 40401),
        ("GET", "/subjects/{s}/versions/99", None, 404, 40402),
        ("GET", "/subjects/{s}/versions/zero", None, 422, 42202),
        ("GET", "/schemas/ids/987654321", None, 404, 40403),
        ("PUT", "/config/{s}", {"compatibility": "SOMETIMES"}, 422, 42203),
        ("PUT", "/mode/{s}", {"mode": "WRITEONLY"}, 422, 42204),
        ("GET", "/config/{s}", None, 404, 40408),
        ("GET", "/no/such/route", None, 404, 404),
    ],
)
def test_errors_have_confluent_shape(
    registry_server: RegistryProcess, method: str, path: str, body: object, status: int, code: int
) -> None:
    s = subject()
    post(f"{registry_server.url}/subjects/{s}/versions", {"schema": record("E", ("a", "int", ...))})
    content = None if body is None else body if isinstance(body, str) else json.dumps(body)
    resp = httpx.request(
        method, registry_server.url + path.format(s=s), content=content, headers=CT
    )
    assert resp.status_code == status
    assert resp.json()["error_code"] == code and resp.json()["message"]


def test_compatibility_through_http(registry_server: RegistryProcess) -> None:
    url, s = registry_server.url, subject()
    v1 = record("C", ("a", "int", ...))
    v2_ok = record("C", ("a", "long", ...), ("b", "string", ""))
    v2_bad = record("C", ("a", "int", ...), ("b", "string", ...))
    post(f"{url}/subjects/{s}/versions", {"schema": v1})
    ok = post(f"{url}/compatibility/subjects/{s}/versions/latest", {"schema": v2_ok})
    assert ok.json() == {"is_compatible": True}
    bad = post(
        f"{url}/compatibility/subjects/{s}/versions/latest", {"schema": v2_bad}, verbose="true"
    ).json()
    assert bad["is_compatible"] is False
    assert any("READER_FIELD_MISSING_DEFAULT_VALUE" in m for m in bad["messages"])
    rejected = post(f"{url}/subjects/{s}/versions", {"schema": v2_bad})
    assert rejected.status_code == 409 and rejected.json()["error_code"] == 409
    # FORWARD forbids adding a union branch the old reader lacks; NONE allows it.
    assert httpx.put(f"{url}/config/{s}", json={"compatibility": "FORWARD"}).json() == {
        "compatibility": "FORWARD"
    }
    assert post(f"{url}/subjects/{s}/versions", {"schema": v2_ok}).status_code == 409
    httpx.put(f"{url}/config/{s}", json={"compatibility": "NONE"})
    assert post(f"{url}/subjects/{s}/versions", {"schema": v2_bad}).status_code == 200
    assert httpx.get(f"{url}/config/{s}").json() == {"compatibilityLevel": "NONE"}


def test_transitive_level_through_http(registry_server: RegistryProcess) -> None:
    url, s = registry_server.url, subject()
    httpx.put(f"{url}/config/{s}", json={"compatibility": "BACKWARD_TRANSITIVE"})
    assert post(
        f"{url}/subjects/{s}/versions", {"schema": record("T", ("a", "int", ...))}
    ).is_success
    v2 = record("T", ("b", "string", ""))
    assert post(f"{url}/subjects/{s}/versions", {"schema": v2}).is_success
    v3 = record("T", ("b", "string", ...))  # reads v2, not v1 (no b there, no default)
    assert post(f"{url}/subjects/{s}/versions", {"schema": v3}).status_code == 409
    httpx.put(f"{url}/config/{s}", json={"compatibility": "BACKWARD"})
    assert post(f"{url}/subjects/{s}/versions", {"schema": v3}).is_success


def test_soft_and_permanent_delete(registry_server: RegistryProcess) -> None:
    url, s = registry_server.url, subject()
    post(f"{url}/subjects/{s}/versions", {"schema": record("D", ("a", "int", ...))})
    hard = httpx.delete(f"{url}/subjects/{s}", params={"permanent": "true"})
    assert hard.status_code == 404 and hard.json()["error_code"] == 40405
    assert httpx.delete(f"{url}/subjects/{s}").json() == [1]
    assert httpx.delete(f"{url}/subjects/{s}").json()["error_code"] == 40404
    assert s not in httpx.get(f"{url}/subjects").json()
    assert s in httpx.get(f"{url}/subjects", params={"deleted": "true"}).json()
    assert httpx.delete(f"{url}/subjects/{s}", params={"permanent": "true"}).json() == [1]
    assert httpx.get(f"{url}/subjects/{s}/versions").json()["error_code"] == 40401


def test_compatibility_against_soft_deleted_or_missing_version(
    registry_server: RegistryProcess,
) -> None:
    """As Confluent's CompatibilityResource: a numbered version that is not live answers
    40402 (version not found), also when the subject's only version is soft-deleted; "latest"
    with nothing live checks against nothing and is compatible."""
    url, s = registry_server.url, subject()
    v1 = record("E", ("a", "int", ...))
    post(f"{url}/subjects/{s}/versions", {"schema": v1})
    missing = post(f"{url}/compatibility/subjects/{s}/versions/7", {"schema": v1})
    assert missing.status_code == 404 and missing.json()["error_code"] == 40402
    assert httpx.delete(f"{url}/subjects/{s}/versions/1").json() == 1
    gone = post(f"{url}/compatibility/subjects/{s}/versions/1", {"schema": v1})
    assert gone.status_code == 404 and gone.json()["error_code"] == 40402, gone.text
    assert "1" in gone.json()["message"]
    latest = post(f"{url}/compatibility/subjects/{s}/versions/latest", {"schema": v1})
    assert latest.status_code == 200 and latest.json() == {"is_compatible": True}
    # Reading the soft-deleted version itself stays "subject not found", as in Confluent.
    assert httpx.get(f"{url}/subjects/{s}/versions/1").json()["error_code"] == 40401


def test_mode_readonly_rejects_registration(registry_server: RegistryProcess) -> None:
    url, s = registry_server.url, subject()
    assert httpx.put(f"{url}/mode/{s}", json={"mode": "READONLY"}).json() == {"mode": "READONLY"}
    resp = post(f"{url}/subjects/{s}/versions", {"schema": record("M", ("a", "int", ...))})
    assert resp.status_code == 422 and resp.json()["error_code"] == 42205
    assert httpx.get(f"{url}/mode").json() == {"mode": "READWRITE"}
    assert httpx.delete(f"{url}/mode/{s}").json() == {"mode": "READONLY"}


async def test_concurrent_registration_yields_one_id(registry_server: RegistryProcess) -> None:
    schema = record("Race", ("a", "int", ...), ("tag", "string", uuid.uuid4().hex))
    subjects = [subject() for _ in range(4)]
    async with httpx.AsyncClient(base_url=registry_server.url, headers=CT) as client:
        responses = await asyncio.gather(
            *[
                client.post(
                    f"/subjects/{subjects[i % 4]}/versions", content=json.dumps({"schema": schema})
                )
                for i in range(20)
            ]
        )
        assert all(r.status_code == 200 for r in responses), [r.text for r in responses]
        assert len({r.json()["id"] for r in responses}) == 1
        for s in subjects:  # one version per subject, not one per request
            assert (await client.get(f"/subjects/{s}/versions")).json() == [1]


def test_restart_keeps_all_ids(registry_server: RegistryProcess) -> None:
    url = registry_server.url
    registered = {}
    for i in range(5):
        s = subject()
        schema = record(f"Keep{i}", ("a", "int", ...))
        registered[s] = (
            post(f"{url}/subjects/{s}/versions", {"schema": schema}).json()["id"],
            schema,
        )
    registry_server.stop()
    registry_server.start()
    for s, (sid, schema) in registered.items():
        assert httpx.get(f"{url}/subjects/{s}/versions/1").json()["id"] == sid
        assert json.loads(httpx.get(f"{url}/schemas/ids/{sid}/schema").text) == json.loads(schema)
        assert post(f"{url}/subjects/{s}/versions", {"schema": schema}).json() == {"id": sid}
    fresh = post(
        f"{url}/subjects/{subject()}/versions",
        {"schema": record("AfterRestart", ("a", "int", ...))},
    ).json()["id"]
    assert fresh > max(sid for sid, _ in registered.values())
