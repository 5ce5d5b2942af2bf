"""Generate Python event types from the Avro schemas (schemas/avro) into gen/python.

Writes gen/python/shop/events/v1/__init__.py: one dataclass per record (dataclasses-avroschema
models, with to_dict()/parse_obj()), plus SCHEMAS (record full name -> the exact .avsc
text, which is what producers register and serialize with) and TOPICS (topic -> record
names, from schemas/avro/topics.json). Run by `make gen`; never edit the output.
"""

from __future__ import annotations

import json
from pathlib import Path

from dataclasses_avroschema import ModelGenerator

ROOT = Path(__file__).resolve().parent.parent
AVRO = ROOT / "schemas" / "avro"
OUT = ROOT / "gen" / "python" / "shop" / "events" / "v1" / "__init__.py"

HEADER = '''"""Kafka event types generated from schemas/avro by tools/gen_events.py. DO NOT EDIT."""
# ruff: noqa
# fmt: off
'''


def main() -> None:
    files = sorted(AVRO.rglob("*.avsc"))
    schemas = [json.loads(f.read_text()) for f in files]
    module = ModelGenerator().render_module(schemas=schemas, model_type="AvroModel")
    full_names = {f"{s['namespace']}.{s['name']}": f for s, f in zip(schemas, files, strict=True)}
    topics = json.loads((AVRO / "topics.json").read_text())
    for topic, names in topics.items():
        missing = [n for n in names if n not in full_names]
        if missing:
            raise SystemExit(f"gen_events: {topic} lists unknown records: {missing}")
    lines = [
        HEADER,
        module.rstrip(),
        "",
        "",
        "# Record full name -> the schema text from schemas/avro.",
    ]
    lines.append("SCHEMAS: dict[str, str] = {")
    for name, path in sorted(full_names.items()):
        text = json.dumps(json.loads(path.read_text()), separators=(",", ":"), sort_keys=True)
        lines.append(f"    {name!r}: {text!r},")
    lines.append("}")
    lines.append("")
    lines.append("# Topic -> the record full names it carries (TopicRecordNameStrategy subjects).")
    lines.append(f"TOPICS: dict[str, list[str]] = {json.dumps(topics, sort_keys=True)}")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text("\n".join(lines) + "\n")
    print(f"generated {len(full_names)} event types into {OUT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
