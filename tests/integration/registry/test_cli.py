"""The registry CLI (`shopmesh-registry` / `python -m registry`) against a real registry
server on real PostgreSQL: register is idempotent, check passes the project's schemas and
fails an incompatible one readably; and ?normalize=true gives equivalent texts one id."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

from registry.catalog import load_dir
from tests.integration.registry.conftest import REPO, RegistryProcess

pytestmark = pytest.mark.stack

SCHEMAS = REPO / "schemas" / "avro"
CT = {"Content-Type": "application/vnd.schemaregistry.v1+json"}


def cli(
    server: RegistryProcess, *args: str, schemas: Path = SCHEMAS
) -> subprocess.CompletedProcess:
    """The installed console script when there is one (what users type), else -m."""
    script = Path(sys.executable).parent / "shopmesh-registry"
    head = [str(script)] if script.exists() else [sys.executable, "-m", "registry"]
    return subprocess.run(
        [*head, "--url", server.url, "--schemas", str(schemas), *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )


def registered_ids(out: str) -> dict[str, int]:
    return {s: int(i) for s, i in re.findall(r"^registered (\S+) id=(\d+)$", out, re.M)}


def test_register_twice_yields_the_same_ids_and_one_version(registry_server):
    subjects = sorted(s.subject for s in load_dir(SCHEMAS))
    assert subjects  # the project has schemas to register
    first = cli(registry_server, "register")
    assert first.returncode == 0, first.stderr
    second = cli(registry_server, "register")
    assert second.returncode == 0, second.stderr
    ids = registered_ids(first.stdout)
    assert sorted(ids) == subjects
    assert registered_ids(second.stdout) == ids
    for subject, schema_id in ids.items():
        versions = httpx.get(f"{registry_server.url}/subjects/{quote(subject, safe='')}/versions")
        assert versions.json() == [1], subject
        by_id = httpx.get(f"{registry_server.url}/schemas/ids/{schema_id}/subjects")
        assert subject in by_id.json()


def test_check_passes_the_project_schemas_and_fails_an_incompatible_one(registry_server, tmp_path):
    assert cli(registry_server, "register").returncode == 0
    ok = cli(registry_server, "check")
    assert ok.returncode == 0, ok.stderr
    assert sorted(re.findall(r"^ok (\S+)$", ok.stdout, re.M)) == sorted(
        s.subject for s in load_dir(SCHEMAS)
    )

    changed = tmp_path / "avro"
    shutil.copytree(SCHEMAS, changed)
    path = changed / "shop" / "events" / "v1" / "UserRegistered.avsc"
    schema = json.loads(path.read_text())
    # A new field without a default: readers of the new schema cannot read old events.
    schema["fields"].append({"name": "loyalty_tier", "type": "string"})
    path.write_text(json.dumps(schema))
    bad = cli(registry_server, "check", schemas=changed)
    assert bad.returncode != 0
    lines = bad.stderr.strip().splitlines()
    assert len(lines) == 1, bad.stderr  # one readable line, no traceback
    assert lines[0].startswith("INCOMPATIBLE shop.users.v1-shop.events.v1.UserRegistered: ")
    assert "READER_FIELD_MISSING_DEFAULT_VALUE" in lines[0] and "loyalty_tier" in lines[0]
    assert "oldSchema:" not in lines[0]  # the reason, not a dump of the old schema
    assert "Traceback" not in bad.stderr + bad.stdout
    # check never registers: the subject still has its one version
    subject = quote("shop.users.v1-shop.events.v1.UserRegistered", safe="")
    assert httpx.get(f"{registry_server.url}/subjects/{subject}/versions").json() == [1]


def test_normalize_gives_equivalent_schemas_one_id(registry_server):
    url = registry_server.url
    subject = "cli-test-normalize-value"
    first = {
        "type": "record",
        "name": "Thing",
        "namespace": "shop.test",
        "fields": [
            {"name": "id", "type": "string"},
            {"name": "count", "type": "int", "default": 0},
        ],
    }
    # The same schema: keys reordered, a primitive spelled as {"type": ...}, the namespace
    # folded into the full name, other whitespace.
    second_text = (
        '{ "fields" : [ {"type": {"type": "string"}, "name": "id"},'
        ' {"default": 0, "type": "int", "name": "count"} ],'
        '  "name": "shop.test.Thing", "type": "record" }'
    )
    first_text = json.dumps(first)
    assert first_text != second_text

    def post(path: str, text: str) -> httpx.Response:
        return httpx.post(f"{url}{path}", json={"schema": text}, headers=CT)

    a = post(f"/subjects/{subject}/versions?normalize=true", first_text)
    b = post(f"/subjects/{subject}/versions?normalize=true", second_text)
    assert a.status_code == b.status_code == 200, (a.text, b.text)
    assert a.json()["id"] == b.json()["id"]
    assert httpx.get(f"{url}/subjects/{subject}/versions").json() == [1]
    found = post(f"/subjects/{subject}?normalize=true", second_text)
    assert found.status_code == 200 and found.json()["id"] == a.json()["id"]
    # Without normalize the texts are different schemas: what the flag is for.
    plain = post(f"/subjects/{subject}-plain/versions", first_text).json()["id"]
    other = post(f"/subjects/{subject}-plain/versions", second_text).json()["id"]
    assert plain != other
