"""The project's Avro event schemas on disk (or at a git revision) and their subjects.

Each `.avsc` under schemas/avro holds one named type. Types used across files (e.g.
`shop.events.v1.Money` inside `OrderPlaced`) are inlined at their first use, so every
registered schema is self-contained: producers hand AvroSerializer one schema string and
need no Confluent `references`. Subjects follow TopicRecordNameStrategy,
`<topic>-<record full name>`, with topics from `topics.json` (or `topics.yaml`) beside the
schemas: `{"shop.orders.v1": ["shop.events.v1.OrderPlaced", ...]}`.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PRIMITIVES = {"null", "boolean", "int", "long", "float", "double", "bytes", "string"}


@dataclass(frozen=True)
class SubjectSchema:
    subject: str
    topic: str
    record: str
    schema: str  # self-contained JSON text


def _full(name: str, namespace: str | None) -> str:
    return name if "." in name or not namespace else f"{namespace}.{name}"


def _named(data: Mapping[str, Any]) -> str:
    return _full(data["name"], data.get("namespace"))


def inline(root: dict[str, Any], library: Mapping[str, dict[str, Any]]) -> dict[str, Any]:
    """Return `root` with references to other library types replaced by their definitions."""
    defined: set[str] = set()

    def walk(node: Any, namespace: str | None) -> Any:
        if isinstance(node, str):
            if node in PRIMITIVES:
                return node
            full = _full(node, namespace)
            if full in defined or full not in library:
                return node  # already defined above, or left for the parser to reject
            return walk(dict(library[full]), None)
        if isinstance(node, list):
            return [walk(n, namespace) for n in node]
        if not isinstance(node, dict):
            return node
        out = dict(node)
        kind = node.get("type")
        if kind in ("record", "error", "enum", "fixed"):
            full = _named(node)
            defined.add(full)
            namespace = full.rpartition(".")[0] or None
            if "." not in node["name"] and namespace and "namespace" not in node:
                out["namespace"] = namespace
        if kind in ("record", "error"):
            out["fields"] = [{**f, "type": walk(f["type"], namespace)} for f in node["fields"]]
        elif kind == "array":
            out["items"] = walk(node["items"], namespace)
        elif kind == "map":
            out["values"] = walk(node["values"], namespace)
        elif isinstance(kind, dict | list):
            out["type"] = walk(kind, namespace)
        return out

    return walk(root, None)


def _topics(files: Mapping[str, str]) -> dict[str, list[str]]:
    if "topics.json" in files:
        return json.loads(files["topics.json"])
    if "topics.yaml" in files or "topics.yml" in files:
        import yaml  # PyYAML is only needed when a team prefers YAML

        return yaml.safe_load(files.get("topics.yaml") or files["topics.yml"]) or {}
    return {}


def subjects_from_files(files: Mapping[str, str]) -> list[SubjectSchema]:
    """`files` maps paths relative to schemas/avro to their text."""
    library: dict[str, dict[str, Any]] = {}
    for path, text in sorted(files.items()):
        if path.endswith(".avsc"):
            try:
                data = json.loads(text)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}: invalid JSON: {exc}") from exc
            library[_named(data)] = data
    out = []
    for topic, records in sorted(_topics(files).items()):
        for record in records:
            if record not in library:
                raise ValueError(f"topics file maps {topic} to {record}, which has no .avsc file")
            schema = json.dumps(inline(library[record], library), separators=(",", ":"))
            out.append(SubjectSchema(f"{topic}-{record}", topic, record, schema))
    return out


def _is_schema_file(name: str) -> bool:
    return name.endswith(".avsc") or name.rsplit("/", 1)[-1] in {
        "topics.json",
        "topics.yaml",
        "topics.yml",
    }


def load_dir(root: str | Path) -> list[SubjectSchema]:
    root = Path(root)
    files = {
        p.relative_to(root).as_posix(): p.read_text()
        for p in root.rglob("*")
        if p.is_file() and _is_schema_file(p.name)
    }
    return subjects_from_files(files)


def load_git(
    revision: str, root: str = "schemas/avro", repo: str | Path = "."
) -> list[SubjectSchema]:
    """Schemas as of `revision`; [] when that revision has none (or does not exist)."""
    listing = subprocess.run(
        ["git", "ls-tree", "-r", "--name-only", revision, "--", root],
        cwd=repo,
        capture_output=True,
        text=True,
    )
    if listing.returncode != 0:
        return []
    files: dict[str, str] = {}
    for path in listing.stdout.split():
        if not _is_schema_file(path):
            continue
        shown = subprocess.run(
            ["git", "show", f"{revision}:{path}"],
            cwd=repo,
            capture_output=True,
            text=True,
            check=True,
        )
        files[path[len(root) :].lstrip("/")] = shown.stdout
    return subjects_from_files(files)
