"""Apache Kafka, KRaft, one combined broker+controller; jars from Maven Central. The version
is the manifest's (schemas/topology.yaml), the same the images run.

`pom.xml` beside this file lists the jars; `mvn -Dkafka.version=<version>
dependency:copy-dependencies` puts them in ~/.cache/shopmesh/kafka-<version>/libs (the ~/.m2
cache survives between runs). The topics are the manifest's too.
"""

from __future__ import annotations

import base64
import re
import shutil
import subprocess
import uuid
from pathlib import Path

from stack.model import CACHE_DIR, Component, Custom, Step, Tcp, port, state_dir
from stack.runner import StackError, run_cmd
from topology import topology

VERSION = topology().infra("kafka").version
POM = Path(__file__).with_name("pom.xml")
HOME = CACHE_DIR / f"kafka-{VERSION}"
LIBS = HOME / "libs"


def broker_port() -> int:
    return port("SHOPMESH_KAFKA_PORT", topology().infra("kafka").port("broker"))


def controller_port() -> int:
    return port("SHOPMESH_KAFKA_CONTROLLER_PORT", topology().infra("kafka").port("controller"))


def bootstrap_servers() -> str:
    return f"127.0.0.1:{broker_port()}"


JAVA_MIN = 17
JAVA_HINT = "apt-get install -y openjdk-17-jre-headless (or put a JDK 17+ first on PATH)"


def java_major(version_output: str) -> int | None:
    """17 from `openjdk version "17.0.15" ...`, 8 from the pre-9 form `"1.8.0_292"`."""
    m = re.search(r'version "(\d+)(?:\.(\d+))?', version_output)
    if m is None:
        return None
    major = int(m.group(1))
    return int(m.group(2) or 0) if major == 1 else major


def check_java() -> None:
    """Kafka 4 runs on Java 17+. Checked before mvn (which needs a JDK too) and before each
    start, so a missing or old java is named with its fix instead of failing as a crash."""
    java = shutil.which("java")
    if java is None:
        raise StackError(
            "kafka", f"java not found (Kafka {VERSION} needs Java 17+)", hint=JAVA_HINT
        )
    out = subprocess.run([java, "-version"], capture_output=True, text=True, check=False)
    major = java_major(out.stderr + out.stdout)
    if major is None or major < JAVA_MIN:
        found = f"Java {major}" if major else "a java of unknown version"
        raise StackError(
            "kafka", f"{java} is {found}; Kafka {VERSION} needs Java {JAVA_MIN}+", hint=JAVA_HINT
        )


def _jars_present() -> bool:
    return (LIBS / f"kafka_2.13-{VERSION}.jar").exists() and (LIBS / ".complete").exists()


def _install_jars() -> None:
    check_java()
    if shutil.which("mvn") is None:
        raise StackError("kafka", "mvn not found", hint="apt-get install -y maven")
    tmp = HOME / "libs.partial"
    shutil.rmtree(tmp, ignore_errors=True)
    run_cmd(
        [
            "mvn", "-q", "-B", "-f", str(POM), f"-Dkafka.version={VERSION}",
            "dependency:copy-dependencies",
            f"-DoutputDirectory={tmp}", "-DincludeScope=runtime",
        ],
        "kafka",
        state_dir() / "logs" / "install.log",
    )  # fmt: skip
    shutil.rmtree(LIBS, ignore_errors=True)
    tmp.rename(LIBS)  # atomic-ish: an interrupted download never looks complete
    (LIBS / ".complete").write_text(VERSION)


def _dir() -> Path:
    return state_dir() / "kafka"


LOG4J2 = """\
status = warn
appender.console.type = Console
appender.console.name = STDOUT
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.stdout.ref = STDOUT
logger.kafka.name = kafka
logger.kafka.level = INFO
logger.state.name = state.change.logger
logger.state.level = WARN
logger.request.name = kafka.request.logger
logger.request.level = WARN
"""


def _server_properties() -> str:
    data = _dir() / "data"
    return f"""\
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:{controller_port()}
listeners=PLAINTEXT://127.0.0.1:{broker_port()},CONTROLLER://127.0.0.1:{controller_port()}
advertised.listeners=PLAINTEXT://127.0.0.1:{broker_port()}
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs={data}
num.partitions=3
default.replication.factor=1
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
min.insync.replicas=1
# Topics are declared in schemas/topology.yaml; a typo must fail loudly, not create one.
auto.create.topics.enable=false
group.initial.rebalance.delay.ms=0
log.retention.hours=168
"""


def _java(main: str, *args: str, heap: str = "-Xmx512m") -> list[str]:
    return [
        "java", heap, "-Xms64m", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20",
        "-Djava.awt.headless=true",
        f"-Dlog4j2.configurationFile={_dir() / 'log4j2.properties'}",
        "-cp", f"{LIBS}/*", main, *args,
    ]  # fmt: skip


def _prepare() -> None:
    check_java()
    d = _dir()
    d.mkdir(parents=True, exist_ok=True)
    (d / "server.properties").write_text(_server_properties())
    (d / "log4j2.properties").write_text(LOG4J2)
    if (d / "data" / "meta.properties").exists():
        return
    # A Kafka cluster id is 16 random bytes in base64url. One that starts with "-" would be
    # read as an option by StorageTool's argument parser (1 start in 64 failed that way),
    # so the id is passed in --opt=value form.
    cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
    run_cmd(
        _java(
            "kafka.tools.StorageTool", "format", f"--cluster-id={cluster_id}",
            "-c", str(d / "server.properties"), heap="-Xmx256m",
        ),
        "kafka",
        state_dir() / "logs" / "kafka.log",
    )  # fmt: skip


def _admin():  # confluent-kafka is a project dependency; import lazily (slow import)
    from confluent_kafka.admin import AdminClient

    # log_level 0: a probe that outlives a broker crash must not flood stderr with
    # reconnect errors (the reliability suite kills Kafka on purpose).
    return AdminClient(
        {"bootstrap.servers": bootstrap_servers(), "socket.timeout.ms": 3000, "log_level": 0}
    )


def _metadata_ok() -> bool:
    _admin().list_topics(timeout=2)
    return True


def ensure_topics() -> None:
    """Create the declared topics that are missing (existing ones are left as they are)."""
    from confluent_kafka.admin import NewTopic

    admin = _admin()
    existing = set(admin.list_topics(timeout=10).topics)
    new = [
        # One local broker, so one replica; deployments set their own (the k8s prod overlay: 3).
        NewTopic(t.name, t.partitions, 1, config=t.config)
        for t in topology().all_topics()
        if t.name not in existing
    ]
    if not new:
        return
    for name, fut in admin.create_topics(new, operation_timeout=20).items():
        try:
            fut.result()
        except Exception as exc:
            if "TOPIC_ALREADY_EXISTS" not in str(exc):
                raise StackError("kafka", f"creating topic {name} failed: {exc}") from exc


def components() -> list[Component]:
    return [
        Component(
            name="kafka",
            command=lambda: _java("kafka.Kafka", str(_dir() / "server.properties")),
            health=Custom(
                lambda: Tcp(broker_port())() and _metadata_ok(),
                f"kafka metadata on :{broker_port()}",
            ),
            requires=[Step(f"mvn kafka {VERSION} jars", _jars_present, _install_jars)],
            prepare=_prepare,
            post_start=ensure_topics,
            start_timeout=90,
            stop_timeout=30,
            info=bootstrap_servers,
        )
    ]
