"""Load and check schemas/topology.yaml into the frozen dataclasses of model.py.

Every error names the file and the key path (`services.order.calls[1]`) and says what was
expected, so a typo in the manifest fails `make gen` with one readable line. Cross-checks
that need only the manifest and the Avro topic map live here; the one that needs the
protobuf descriptors (a method's policy.callers against `calls`) is mesh/api.py's.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml

from topology.model import (
    Infra,
    ManifestError,
    Mongo,
    Postgres,
    SecretRef,
    Service,
    Topic,
    Topology,
    Workers,
)

ROOT = Path(__file__).resolve().parent.parent
MANIFEST = ROOT / "schemas" / "topology.yaml"
TOPIC_MAP = ROOT / "schemas" / "avro" / "topics.json"

NAME = re.compile(r"^[a-z][a-z0-9-]{0,62}$")
ENV_SUFFIX = re.compile(r"^[A-Z][A-Z0-9_]*$")
REF = re.compile(r"^(?:(configmap):)?([a-z0-9][a-z0-9.-]*)/([A-Za-z0-9_.-]+)$")
# A service's /metrics port sits this far below its gRPC port (50051 -> 9451).
METRICS_OFFSET = 40600
ENVIRONMENTS = ("local", "compose", "kubernetes")


# ---------------------------------------------------------------- reading, with key paths


class _Node:
    """A mapping at a key path; every read names the path when it fails."""

    def __init__(self, data: Any, path: str, file: str) -> None:
        self.file, self.path = file, path
        if not isinstance(data, Mapping):
            raise self.error(f"expected a mapping, got {_kind(data)}")
        self.data = data

    def error(self, message: str, key: str | None = None) -> ManifestError:
        where = self.path if key is None else _join(self.path, key)
        return ManifestError(f"{self.file}: {where or '(top level)'}: {message}")

    def only(self, *allowed: str) -> None:
        unknown = sorted(set(self.data) - set(allowed))
        if unknown:
            raise self.error(
                f"unknown key {unknown[0]!r} (expected one of {', '.join(allowed)})", unknown[0]
            )

    def child(self, key: str, default: Any = None) -> _Node:
        value = self.data.get(key, {} if default is None else default)
        return _Node(value, _join(self.path, key), self.file)

    def get(self, key: str, kind: type | tuple[type, ...], default: Any = ...) -> Any:
        if key not in self.data:
            if default is ...:
                raise self.error("missing", key)
            return default
        value = self.data[key]
        # bool is an int in Python: a port of `true` is still wrong.
        if not isinstance(value, kind) or (isinstance(value, bool) and bool not in _kinds(kind)):
            raise self.error(f"expected {_names(kind)}, got {_kind(value)}", key)
        return value

    def port(self, key: str, default: Any = ...) -> int:
        value = self.get(key, int, default)
        if value is not None and not 0 < value < 65536:
            raise self.error(f"port {value} out of range 1..65535", key)
        return value

    def names(self, key: str) -> tuple[str, ...]:
        values = self.get(key, list, [])
        for i, v in enumerate(values):
            if not isinstance(v, str):
                raise self.error(f"expected a name, got {_kind(v)}", f"{key}[{i}]")
        if len(set(values)) != len(values):
            raise self.error("names an entry twice", key)
        return tuple(values)

    def items(self) -> Iterator[tuple[str, Any]]:
        return iter(self.data.items())


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _kinds(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


def _names(kind: type | tuple[type, ...]) -> str:
    words = {int: "an integer", str: "a string", bool: "true or false", list: "a list"}
    words |= {dict: "a mapping", float: "a number"}
    return " or ".join(words.get(k, k.__name__) for k in _kinds(kind))


def _kind(value: Any) -> str:
    if value is None:
        return "nothing"
    return {bool: "a boolean", int: "an integer", str: "a string", list: "a list"}.get(
        type(value), type(value).__name__
    )


# ---------------------------------------------------------------- the manifest


def _service(
    name: str, node: _Node, defaults: _Node, topic_names: set[str], known: set[str]
) -> Service:
    node.only(
        "port", "metrics_port", "postgres", "mongo", "produces", "consumes", "calls", "smtp",
        "workers", "replicas", "secrets", "demo",
    )  # fmt: skip
    if not NAME.match(name):
        raise node.error("a service name is lower case letters, digits and '-'")
    port = node.port("port")
    metrics = node.port("metrics_port", port - METRICS_OFFSET)
    if not 0 < metrics < 65536:
        raise node.error(f"port - {METRICS_OFFSET} = {metrics} is no port: set metrics_port")
    postgres = None
    if "postgres" in node.data:
        pg = node.child("postgres")
        pg.only("database", "replica")
        postgres = Postgres(pg.get("database", str), pg.get("replica", bool, True))
    mongo = None
    if "mongo" in node.data:
        mg = node.child("mongo")
        mg.only("database")
        mongo = Mongo(mg.get("database", str))
    produces, consumes, calls = node.names("produces"), node.names("consumes"), node.names("calls")
    for key, topics in (("produces", produces), ("consumes", consumes)):
        for i, t in enumerate(topics):
            if t not in topic_names:
                raise node.error(
                    f"{t!r} is not a topic of schemas/avro/topics.json "
                    f"({', '.join(sorted(topic_names))})",
                    f"{key}[{i}]",
                )
    for i, callee in enumerate(calls):
        if callee not in known or callee == name:
            why = "itself" if callee == name else "not a service"
            raise node.error(
                f"{callee!r} is {why} (services: {', '.join(sorted(known))})", f"calls[{i}]"
            )
    # A value taken from `defaults` is reported under defaults.<key> when it is wrong.
    workers_node = (node if "workers" in node.data else defaults).child("workers")
    workers_node.only(*ENVIRONMENTS)
    counts = [workers_node.get(env, int) for env in ENVIRONMENTS]
    if any(c < 0 for c in counts):
        raise workers_node.error("a worker count is 0 (one per core) or more")
    replicas_node = node if "replicas" in node.data else defaults
    replicas = replicas_node.get("replicas", list, [1, 1])
    if (
        len(replicas) != 2
        or not all(isinstance(r, int) and not isinstance(r, bool) for r in replicas)
        or not 1 <= replicas[0] <= replicas[1]
    ):
        raise replicas_node.error("expected [min, max] with 1 <= min <= max", "replicas")
    secrets = []
    for var, ref in node.child("secrets").items():
        if not ENV_SUFFIX.match(str(var)):
            raise node.error("an upper-case variable suffix (<NAME>_ is added)", f"secrets.{var}")
        m = REF.match(ref) if isinstance(ref, str) else None
        if m is None:
            raise node.error("expected 'secret/key' or 'configmap:name/key'", f"secrets.{var}")
        secrets.append(SecretRef(var, m.group(1) or "secret", m.group(2), m.group(3)))
    demo = node.get("demo", str, None)
    return Service(
        name=name,
        port=port,
        metrics_port=metrics,
        postgres=postgres,
        mongo=mongo,
        produces=produces,
        consumes=consumes,
        calls=calls,
        smtp=node.get("smtp", bool, False),
        workers=Workers(*counts),
        replicas=(replicas[0], replicas[1]),
        secrets=tuple(secrets),
        demo=demo,
    )


def _topic_settings(name: str, node: _Node, *extra: str) -> Topic:
    node.only("partitions", "retention_days", *extra)
    partitions, days = node.get("partitions", int), node.get("retention_days", int)
    if partitions < 1 or days < 1:
        raise node.error("partitions and retention_days are 1 or more")
    return Topic(name, partitions, days)


def _infra(name: str, node: _Node) -> Infra:
    node.only("local", "image", "drift")
    local = node.child("local")
    local.only("version", "from", "ports")
    ports_node = local.child("ports")
    ports = {str(key): ports_node.port(str(key)) for key, _ in ports_node.items()}
    version = str(local.get("version", (str, int, float), ""))
    image = node.get("image", str)
    drift = node.get("drift", str, "")
    tag = image.rpartition(":")[2] if ":" in image else ""
    if version and tag and not drift and not tag.removeprefix("v").startswith(version):
        raise node.error(
            f"image tag {tag!r} is not local version {version!r}: make them agree or say why "
            "in `drift`",
            "image",
        )
    return Infra(name, version, local.get("from", str, ""), ports, image, drift)


def parse(data: Any, topic_map: Mapping[str, Any], file: str = "schemas/topology.yaml") -> Topology:
    """The manifest `data` (parsed YAML) checked against the Avro topic map."""
    top = _Node(data, "", file)
    top.only("services", "defaults", "topics", "infrastructure", "kubernetes")
    defaults = top.child("defaults")
    defaults.only("workers", "replicas")
    topic_names = set(topic_map)
    topics_node = top.child("topics")
    retry_node = topics_node.child("retry")
    retry = _topic_settings("retry", retry_node, "delays_s")
    delays = retry_node.get("delays_s", list)
    if not delays or not all(
        isinstance(d, int | float) and not isinstance(d, bool) and d >= 0 for d in delays
    ):
        raise retry_node.error("one or more delays of 0 s or more", "delays_s")
    dlq = _topic_settings("dlq", topics_node.child("dlq"))
    topics = []
    for name, _ in topics_node.items():
        if name in ("retry", "dlq"):
            continue
        if name not in topic_names:
            raise topics_node.error(
                f"{name!r} is not a topic of schemas/avro/topics.json", str(name)
            )
        topics.append(_topic_settings(name, topics_node.child(name)))
    missing = sorted(topic_names - {t.name for t in topics})
    if missing:
        raise topics_node.error(f"no entry for {missing[0]!r} (schemas/avro/topics.json has it)")
    services_node = top.child("services")
    known = set(services_node.data)
    if not known:
        raise services_node.error("no service")
    services = tuple(
        _service(str(name), services_node.child(str(name)), defaults, topic_names, known)
        for name, _ in services_node.items()
    )
    produced = {t for s in services for t in s.produces}
    for s in services:
        for t in s.consumes:
            if t not in produced:
                raise services_node.error(f"{t!r} is consumed but no service produces it",
                                          f"{s.name}.consumes")  # fmt: skip
    infra_node = top.child("infrastructure")
    infrastructure = {
        str(n): _infra(str(n), infra_node.child(str(n))) for n, _ in infra_node.items()
    }
    for required in ("postgres", "kafka", "mongo", "registry", "mail", "envoy"):
        if required not in infrastructure:
            raise infra_node.error(f"no entry for {required!r}")
    _unique_ports(services, infrastructure, file)
    k8s = top.child("kubernetes")
    k8s.only("namespace", "image_tags")
    namespace = k8s.get("namespace", str)
    if not NAME.match(namespace):
        raise k8s.error("a Kubernetes namespace name", "namespace")
    tags = {str(k): str(v) for k, v in k8s.child("image_tags").items()}
    return Topology(
        services=services,
        topics=tuple(topics),
        retry_delays_s=tuple(float(d) for d in delays),
        retry=retry,
        dlq=dlq,
        infrastructure=infrastructure,
        namespace=namespace,
        image_tags=tags,
    )


def _unique_ports(services: tuple[Service, ...], infra: Mapping[str, Infra], file: str) -> None:
    """Every local port belongs to one thing (all share 127.0.0.1 in the local stack)."""
    owners: dict[int, str] = {}
    claims = [(s.port, f"services.{s.name}.port") for s in services]
    claims += [(s.metrics_port, f"services.{s.name}.metrics_port") for s in services]
    claims += [
        (p, f"infrastructure.{name}.local.ports.{key}")
        for name, part in infra.items()
        for key, p in part.ports.items()
    ]
    for port, where in claims:
        if port in owners:
            raise ManifestError(f"{file}: {where}: port {port} is already {owners[port]}'s")
        owners[port] = where


def load(path: Path = MANIFEST, topic_map: Path = TOPIC_MAP) -> Topology:
    """Read and check the manifest; raises ManifestError naming the bad key."""
    file = path.relative_to(ROOT).as_posix() if path.is_relative_to(ROOT) else str(path)
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ManifestError(f"{file}: not valid YAML: {' '.join(str(exc).split())}") from None
    return parse(data, json.loads(topic_map.read_text()), file)


@functools.cache
def topology() -> Topology:
    """The repository's manifest, read once per process."""
    return load()
