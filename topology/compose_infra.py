"""The infrastructure containers of docker-compose.yml (PostgreSQL primary and replica,
Kafka, the MongoDB store, the registry's store, the mail catcher...), at the manifest's
images and versions, and the compose building blocks compose.py uses for the rest."""

from __future__ import annotations

from typing import Any

from topology.model import Topology

# Ports inside the containers of the official images (the local stack's may differ).
POSTGRES, KAFKA, KAFKA_CONTROLLER, MONGO = 5432, 9092, 9093, 27017
PYTHON_DOCKERFILE = "deploy/docker/python.Dockerfile"
PG_PASSWORD = "${SHOPMESH_PG_PASSWORD:-shopmesh}"


def _healthcheck(test: list[str], interval: str, timeout: str, retries: int) -> dict[str, Any]:
    return {"test": test, "interval": interval, "timeout": timeout, "retries": retries}


def _healthy(*names: str) -> dict[str, Any]:
    return {n: {"condition": "service_healthy"} for n in names}


def _completed(*names: str) -> dict[str, Any]:
    return {n: {"condition": "service_completed_successfully"} for n in names}


def _python_build(t: Topology, target: str, **args: str) -> dict[str, Any]:
    return {
        "context": ".",
        "dockerfile": PYTHON_DOCKERFILE,
        "target": target,
        "args": {"PYTHON_IMAGE": t.infra("python").image, **args},
    }


def _smtp(t: Topology) -> int:
    return t.infra("mail").port("smtp")


def _infrastructure(t: Topology) -> dict[str, dict[str, Any]]:
    pg_env = {
        "POSTGRES_PASSWORD": "${SHOPMESH_PG_SUPERUSER_PASSWORD:-postgres}",
        "APP_PASSWORD": PG_PASSWORD,
        "REPLICATION_PASSWORD": "${SHOPMESH_PG_REPLICATION_PASSWORD:-replicator}",
    }
    kafka_image = t.infra("kafka").image
    mail = t.infra("mail")
    return {
        "postgres-primary": {
            "image": t.infra("postgres").image,
            "restart": "unless-stopped",
            "networks": ["shopmesh"],
            "environment": pg_env,
            "command": [
                "postgres",
                "-c",
                "wal_level=replica",
                "-c",
                "max_wal_senders=10",
                "-c",
                "max_replication_slots=10",
                "-c",
                "wal_keep_size=256MB",
            ],
            "volumes": [
                "pg-primary:/var/lib/postgresql/data",
                "./k8s/generated/stores/primary-init.sh:/docker-entrypoint-initdb.d/10-shopmesh.sh:ro",
            ],
            "healthcheck": _healthcheck(
                ["CMD-SHELL", "pg_isready -U postgres -d registry"], "5s", "3s", 20
            ),
        },
        "postgres-replica": {
            "image": t.infra("postgres").image,
            "restart": "unless-stopped",
            "networks": ["shopmesh"],
            "user": "postgres",
            "environment": {
                "PGDATA": "/var/lib/postgresql/data",
                "PRIMARY_HOST": "postgres-primary",
                "REPLICATION_PASSWORD": pg_env["REPLICATION_PASSWORD"],
            },
            "entrypoint": ["/usr/local/bin/replica-start.sh"],
            "volumes": [
                "pg-replica:/var/lib/postgresql/data",
                "./k8s/base/postgres/replica-start.sh:/usr/local/bin/replica-start.sh:ro",
            ],
            "depends_on": _healthy("postgres-primary"),
            # Healthy only as a standby that is streaming (not a promoted or diverged copy).
            "healthcheck": _healthcheck(
                ["CMD-SHELL", "psql -U postgres -tAc 'select pg_is_in_recovery()' | grep -q t"],
                "5s",
                "3s",
                30,
            ),
        },
        "kafka": {
            "image": kafka_image,
            "restart": "unless-stopped",
            "networks": ["shopmesh"],
            "environment": {
                "KAFKA_NODE_ID": 1,
                "KAFKA_PROCESS_ROLES": "broker,controller",
                "KAFKA_LISTENERS": f"PLAINTEXT://:{KAFKA},CONTROLLER://:{KAFKA_CONTROLLER}",
                "KAFKA_ADVERTISED_LISTENERS": f"PLAINTEXT://kafka:{KAFKA}",
                "KAFKA_CONTROLLER_LISTENER_NAMES": "CONTROLLER",
                "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
                "KAFKA_CONTROLLER_QUORUM_VOTERS": f"1@kafka:{KAFKA_CONTROLLER}",
                "CLUSTER_ID": "c2hvcG1lc2gta3JhZnQwMQ",  # base64 of a 16-byte id (KRaft)
                "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR": 1,
                "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR": 1,
                "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR": 1,
                "KAFKA_AUTO_CREATE_TOPICS_ENABLE": "false",
                "KAFKA_LOG_DIRS": "/var/lib/kafka/data",
            },
            "volumes": ["kafka:/var/lib/kafka/data"],
            "healthcheck": {
                **_healthcheck(
                    [
                        "CMD-SHELL",
                        "/opt/kafka/bin/kafka-broker-api-versions.sh "
                        f"--bootstrap-server localhost:{KAFKA} >/dev/null",
                    ],
                    "10s",
                    "10s",
                    20,
                ),
                "start_period": "20s",
            },
        },
        "kafka-init": {
            # Creates the manifest's topics (k8s/generated/stores/topics.sh), then exits.
            "image": kafka_image,
            "networks": ["shopmesh"],
            "restart": "no",
            "environment": {"KAFKA_BOOTSTRAP": f"kafka:{KAFKA}", "TOPIC_REPLICATION_FACTOR": 1},
            "entrypoint": ["/bin/sh", "/topics.sh"],
            "volumes": ["./k8s/generated/stores/topics.sh:/topics.sh:ro"],
            "depends_on": _healthy("kafka"),
        },
        "mongo": {
            "image": t.infra("mongo").image,
            "restart": "unless-stopped",
            "networks": ["shopmesh"],
            "volumes": ["mongo:/data/db"],
            "healthcheck": _healthcheck(
                ["CMD", "mongosh", "--quiet", "--eval", "db.adminCommand({ping: 1}).ok"],
                "5s",
                "5s",
                20,
            ),
        },
        "smtp-sink": {
            # The mail catcher the local stack runs too (stack/smtp_sink.py), healthy when its
            # HTTP API answers. GET /messages lists what was sent.
            "build": _python_build(
                t, "smtp-sink", SMTP_PORT=str(_smtp(t)), HTTP_PORT=str(mail.port("http"))
            ),
            "image": f"{mail.image}:dev",
            "restart": "unless-stopped",
            "networks": ["shopmesh"],
            "ports": [f"127.0.0.1:{mail.port('http')}:{mail.port('http')}"],
            "volumes": ["mail:/mail"],
            "healthcheck": _healthcheck(
                [
                    "CMD",
                    "python",
                    "deploy/probe.py",
                    "http",
                    f"http://127.0.0.1:{mail.port('http')}/health",
                ],
                "5s",
                "3s",
                20,
            ),
        },
    }
