"""A real single-node Apache Kafka (KRaft) on 127.0.0.1, run from jars fetched by Maven.

Everything lives under ``$SIGNALYARD_HOME/kafka``: the jar cache per version, the data
directory, the generated ``server.properties``, the broker's log and the pid file of the
process that ``up`` started (``down`` stops only that process).
"""

from __future__ import annotations

import base64
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from config.settings import StackSettings

RESOURCES = Path(__file__).resolve().parent
BROKER_MAIN_CLASS = "kafka.Kafka"
STORAGE_TOOL_CLASS = "kafka.tools.StorageTool"
JAR_CACHE_MARKER = ".complete"


class StackError(Exception):
    """The local broker cannot be set up, started or stopped; the message says why."""


@dataclass(frozen=True)
class BrokerPaths:
    root: Path
    version: str

    @property
    def libs(self) -> Path:
        return self.root / self.version / "libs"

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def properties(self) -> Path:
        return self.root / "server.properties"

    @property
    def log(self) -> Path:
        return self.root / "broker.log"

    @property
    def pid_file(self) -> Path:
        return self.root / "broker.pid"


@dataclass(frozen=True)
class BrokerStatus:
    running: bool
    answering: bool
    pid: int | None
    address: str
    log: Path


def broker_paths(home: Path, stack: StackSettings) -> BrokerPaths:
    return BrokerPaths(root=home / "kafka", version=stack.kafka_version)


def require_tool(name: str, package_hint: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise StackError(f"{name} not found on PATH: install {package_hint}")
    return path


def fetch_jars(paths: BrokerPaths) -> bool:
    """Resolve the broker's jars through Maven once; return True when they were fetched now."""
    if (paths.libs / JAR_CACHE_MARKER).is_file():
        return False
    mvn = require_tool("mvn", "Maven (Debian package: maven)")
    require_tool("java", "Java 17 or newer (Debian package: openjdk-17-jre-headless)")
    staging = paths.libs.with_name("libs.partial")
    shutil.rmtree(staging, ignore_errors=True)
    command = [
        mvn,
        "-q",
        "-B",
        "-f",
        str(RESOURCES / "pom.xml"),
        f"-Dkafka.version={paths.version}",
        "dependency:copy-dependencies",
        f"-DoutputDirectory={staging}",
        "-DincludeScope=runtime",
    ]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        detail = (result.stdout + result.stderr).strip().splitlines()
        raise StackError(
            f"Maven could not fetch Kafka {paths.version}: {detail[-1] if detail else ''}"
        )
    (staging / JAR_CACHE_MARKER).write_text(paths.version)
    shutil.rmtree(paths.libs, ignore_errors=True)
    staging.rename(paths.libs)
    return True


def server_properties(paths: BrokerPaths, stack: StackSettings) -> str:
    host = "127.0.0.1"
    listeners = [f"PLAINTEXT://{host}:{stack.port}"]
    sasl: list[str] = []
    if stack.sasl_port:
        listeners.append(f"SASL_PLAINTEXT://{host}:{stack.sasl_port}")
        secret = stack.sasl_password.get_secret_value()
        sasl = [
            "sasl.enabled.mechanisms=PLAIN",
            "listener.name.sasl_plaintext.plain.sasl.jaas.config="
            "org.apache.kafka.common.security.plain.PlainLoginModule required "
            f'username="{stack.sasl_username}" password="{secret}" '
            f'user_{stack.sasl_username}="{secret}";',
        ]
    return "\n".join(
        [
            "process.roles=broker,controller",
            "node.id=1",
            f"controller.quorum.voters=1@{host}:{stack.controller_port}",
            f"listeners={','.join(listeners)},CONTROLLER://{host}:{stack.controller_port}",
            f"advertised.listeners={','.join(listeners)}",
            "controller.listener.names=CONTROLLER",
            "listener.security.protocol.map="
            "PLAINTEXT:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT,CONTROLLER:PLAINTEXT",
            "inter.broker.listener.name=PLAINTEXT",
            *sasl,
            f"log.dirs={paths.data}",
            # One node: internal topics cannot have more than one replica.
            "offsets.topic.replication.factor=1",
            "transaction.state.log.replication.factor=1",
            "transaction.state.log.min.isr=1",
            "share.coordinator.state.topic.replication.factor=1",
            # Tests and the demo start consumers right away; waiting for more members helps no one.
            "group.initial.rebalance.delay.ms=0",
            "auto.create.topics.enable=false",
            "",
        ]
    )


def _java_command(paths: BrokerPaths, main_class: str, *args: str) -> list[str]:
    java = require_tool("java", "Java 17 or newer (Debian package: openjdk-17-jre-headless)")
    return [
        java,
        "-Xms256m",
        "-Xmx1g",
        f"-Dlog4j2.configurationFile={RESOURCES / 'log4j2.yaml'}",
        "-cp",
        f"{paths.libs}/*",
        main_class,
        *args,
    ]


def format_storage(paths: BrokerPaths, cluster_id: str | None = None) -> None:
    """Format the data directory once, for a new random cluster id unless one is given."""
    if (paths.data / "meta.properties").is_file():
        return
    cluster_id = cluster_id or base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
    # One random id in 64 starts with "-"; as a separate argument the tool's parser takes it
    # for an option and refuses to format.
    command = _java_command(
        paths,
        STORAGE_TOOL_CLASS,
        "format",
        f"--cluster-id={cluster_id}",
        "-c",
        str(paths.properties),
    )
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise StackError(f"formatting {paths.data} failed: {result.stderr.strip()[-300:]}")


def port_answers(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def _read_pid(paths: BrokerPaths) -> int | None:
    try:
        pid = int(paths.pid_file.read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if _is_our_broker(pid, paths) else None


def _is_our_broker(pid: int, paths: BrokerPaths) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return BROKER_MAIN_CLASS.encode() in cmdline and str(paths.properties).encode() in cmdline


def status(home: Path, stack: StackSettings) -> BrokerStatus:
    paths = broker_paths(home, stack)
    pid = _read_pid(paths)
    return BrokerStatus(
        running=pid is not None,
        answering=port_answers(stack.port),
        pid=pid,
        address=f"127.0.0.1:{stack.port}",
        log=paths.log,
    )


def up(home: Path, stack: StackSettings) -> BrokerStatus:
    """Start the broker unless it runs already, and wait until it answers."""
    paths = broker_paths(home, stack)
    current = status(home, stack)
    if current.running:
        _wait_until_answering(paths, stack, lambda: True, fresh_log=False)
        return status(home, stack)
    if current.answering:
        raise StackError(
            f"port {stack.port} is taken by a process signalyard did not start; "
            "stop it or set SIGNALYARD_STACK__PORT"
        )
    paths.root.mkdir(parents=True, exist_ok=True)
    fetch_jars(paths)
    paths.properties.write_text(server_properties(paths, stack))
    format_storage(paths)
    if paths.log.exists():
        paths.log.replace(paths.log.with_suffix(".log.previous"))
    with paths.log.open("wb") as log:
        process = subprocess.Popen(
            _java_command(paths, BROKER_MAIN_CLASS, str(paths.properties)),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    paths.pid_file.write_text(str(process.pid))
    _wait_until_answering(paths, stack, lambda: process.poll() is None, fresh_log=True)
    return status(home, stack)


def _wait_until_answering(
    paths: BrokerPaths, stack: StackSettings, alive: Callable[[], bool], fresh_log: bool
) -> None:
    deadline = time.monotonic() + stack.start_timeout_s
    while time.monotonic() < deadline:
        if not alive():
            raise StackError(f"the broker exited during start-up; see {paths.log}")
        if port_answers(stack.port) and (not fresh_log or _broker_started(paths)):
            return
        time.sleep(0.2)
    raise StackError(
        f"the broker did not answer within {stack.start_timeout_s:g}s; see {paths.log}"
    )


def _broker_started(paths: BrokerPaths) -> bool:
    # The port opens before the broker finishes recovery; this line says it is ready.
    try:
        return b"Kafka Server started" in paths.log.read_bytes()
    except OSError:
        return False


def down(home: Path, stack: StackSettings, timeout_s: float = 30.0) -> bool:
    """Stop the broker that ``up`` started; return False when none was running."""
    paths = broker_paths(home, stack)
    pid = _read_pid(paths)
    if pid is None:
        paths.pid_file.unlink(missing_ok=True)
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while _is_our_broker(pid, paths) and time.monotonic() < deadline:
        time.sleep(0.2)
    if _is_our_broker(pid, paths):
        os.kill(pid, signal.SIGKILL)
    paths.pid_file.unlink(missing_ok=True)
    return True
