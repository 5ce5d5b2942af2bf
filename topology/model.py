"""The topology as frozen dataclasses: services, topics, infrastructure parts, and the
names derived from them (retry stages, dead-letter topics). manifest.py reads and checks
schemas/topology.yaml into these; the generators read them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

DAY_MS = 24 * 60 * 60 * 1000


class ManifestError(ValueError):
    """The manifest breaks a rule; the message names the key."""


@dataclass(frozen=True)
class Postgres:
    database: str
    replica: bool


@dataclass(frozen=True)
class Mongo:
    database: str


@dataclass(frozen=True)
class Workers:
    """<NAME>_WORKERS per environment (0 = one per CPU the process may use)."""

    local: int
    compose: int
    kubernetes: int


@dataclass(frozen=True)
class SecretRef:
    """<NAME>_<var> taken from a Kubernetes Secret (or a ConfigMap) key."""

    var: str
    kind: str  # "secret" | "configmap"
    name: str
    key: str


@dataclass(frozen=True)
class Service:
    name: str
    port: int
    metrics_port: int
    postgres: Postgres | None
    mongo: Mongo | None
    produces: tuple[str, ...]
    consumes: tuple[str, ...]
    calls: tuple[str, ...]
    smtp: bool
    workers: Workers
    replicas: tuple[int, int]
    secrets: tuple[SecretRef, ...]
    demo: str | None

    @property
    def prefix(self) -> str:
        """Its environment variables' prefix: ORDER for order."""
        return self.name.upper().replace("-", "_")

    @property
    def module(self) -> str:
        return f"services.{self.name.replace('-', '_')}.main"

    @property
    def uses_kafka(self) -> bool:
        return bool(self.produces or self.consumes)

    def env(self, suffix: str) -> str:
        return f"{self.prefix}_{suffix}"


@dataclass(frozen=True)
class Topic:
    name: str
    partitions: int
    retention_days: int

    @property
    def config(self) -> dict[str, str]:
        return {"retention.ms": str(self.retention_days * DAY_MS), "cleanup.policy": "delete"}


@dataclass(frozen=True)
class Infra:
    """One infrastructure part: what the local stack runs and the image deployments run."""

    name: str
    version: str  # the local version ("" when the part runs only in containers)
    source: str
    ports: Mapping[str, int]
    image: str
    drift: str

    def port(self, name: str) -> int:
        try:
            return self.ports[name]
        except KeyError:
            raise ManifestError(
                f"schemas/topology.yaml: infrastructure.{self.name}.local.ports has no {name!r}"
            ) from None


@dataclass(frozen=True)
class Topology:
    services: tuple[Service, ...]
    topics: tuple[Topic, ...]  # the event topics (schemas/avro/topics.json)
    retry_delays_s: tuple[float, ...]
    retry: Topic  # partitions and retention of every retry stage (name unused)
    dlq: Topic
    infrastructure: Mapping[str, Infra]
    namespace: str
    image_tags: Mapping[str, str]

    def service(self, name: str) -> Service:
        for s in self.services:
            if s.name == name:
                return s
        raise KeyError(name)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.services)

    def infra(self, name: str) -> Infra:
        return self.infrastructure[name]

    @property
    def consumed(self) -> tuple[str, ...]:
        """Topics some service consumes: each has retry stages and a dead-letter topic."""
        seen = {t for s in self.services for t in s.consumes}
        return tuple(t.name for t in self.topics if t.name in seen)

    def all_topics(self) -> tuple[Topic, ...]:
        """Every topic the platform creates: each event topic, followed by the retry stages
        and the dead-letter topic of a consumed one."""
        consumed = set(self.consumed)
        out: list[Topic] = []
        for topic in self.topics:
            out.append(topic)
            if topic.name in consumed:
                out += [
                    Topic(retry_topic(topic.name, n), self.retry.partitions,
                          self.retry.retention_days)
                    for n in range(1, len(self.retry_delays_s) + 1)
                ]  # fmt: skip
                out.append(Topic(dlq_topic(topic.name), self.dlq.partitions,
                                 self.dlq.retention_days))  # fmt: skip
        return tuple(out)

    def callers_of(self, name: str) -> tuple[str, ...]:
        return tuple(s.name for s in self.services if name in s.calls)


def retry_topic(base: str, stage: int) -> str:
    return f"{base}.retry.{stage}"


def dlq_topic(base: str) -> str:
    return f"{base}.dlq"
