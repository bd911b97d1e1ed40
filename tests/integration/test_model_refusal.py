"""A broken model version never reaches the pipeline: announced on ``model.updates``, a version
whose files changed after it was registered, or whose config does not match its weights, is
refused by the running worker with one log line and a metric, and the live version scores on
(real broker, a worker process, tiny real models)."""

from __future__ import annotations

import asyncio
import json
import shutil
import urllib.request
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from conftest import Worker, new_worker
from helpers import free_port, ids_of, provision, read_until, ready, send, synthetic, wait_for
from prometheus_client.parser import text_string_to_metric_families

from config.settings import Settings
from models.errors import BrokenModelError
from models.registry import Registry
from models.serving.loading import load_scorer
from streams.adaptation.announce import announce
from streams.adaptation.messages import ModelUpdate

pytestmark = pytest.mark.kafka


def truncated(registry: Registry, live: str) -> str:
    """A copy of the live version, registered, whose weights lose their second half after."""
    version = registry.register("news", registry.version_dir("news", live), promote=False)
    weights = registry.version_dir("news", version) / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    return version


def mismatched(registry: Registry, live: str, scratch: Path) -> str:
    """A copy of the live version with one layer fewer in its config than in its weights,
    registered as it is (its hash is of these very files)."""
    folder = Path(shutil.copytree(registry.version_dir("news", live), scratch / "mismatched"))
    config = json.loads((folder / "config.json").read_text())
    config["num_hidden_layers"] -= 1
    (folder / "config.json").write_text(json.dumps(config))
    return registry.register("news", folder, promote=False)


def test_broken_versions_fail_to_load_with_the_reason(registry_dir: Path, tmp_path: Path) -> None:
    registry = Registry(shutil.copytree(registry_dir, tmp_path / "models"))
    live = registry.live_version("news")
    assert live is not None
    for version, reason in (
        (truncated(registry, live), "changed since it was registered"),
        (mismatched(registry, live, tmp_path), "config does not match its weights"),
    ):
        with pytest.raises(BrokenModelError, match=reason):
            load_scorer(registry.version_dir("news", version), "cpu")


def refusals(url: str) -> float:
    with urllib.request.urlopen(url + "/metrics", timeout=10) as response:
        body = response.read().decode()
    return sum(
        sample.value
        for family in text_string_to_metric_families(body)
        for sample in family.samples
        if sample.name == "signalyard_model_refusals_total" and sample.labels["domain"] == "news"
    )


def test_a_worker_refuses_broken_versions_and_scores_on_with_the_live_one(
    kafka: Settings, registry_dir: Path, workers: list[Worker], tmp_path: Path
) -> None:
    settings = kafka
    provision(settings)
    registry = Registry(shutil.copytree(registry_dir, tmp_path / "models"))
    live = registry.live_version("news")
    assert live is not None
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    worker = new_worker(workers, settings, registry.root, f"t-{uuid.uuid4().hex[:8]}", "w")
    worker.env["SIGNALYARD_PIPELINE__WEB_PORT"] = str(port)
    worker.start("news")
    wait_for("readiness", lambda: ready(port), worker)

    broken = [truncated(registry, live), mismatched(registry, live, tmp_path)]
    for version in broken:
        update = ModelUpdate(
            domain="news", version=version, model_name="tiny", reason="test",
            announced_at=datetime.now(UTC),
        )  # fmt: skip
        asyncio.run(announce(settings, update))
    wait_for("both refusals", lambda: refusals(url) == len(broken), worker)

    records = synthetic("news", 30, seed=7)
    asyncio.run(send(settings, "news", records))
    scored = asyncio.run(read_until(settings, lambda s: len(s.ids["news"]) >= 30, ("news",)))
    assert ready(port)
    assert worker.stop() == 0, worker.tail()
    assert set(scored.ids["news"]) == ids_of(records)
    assert {scored.results[i]["model_version"] for i in scored.ids["news"]} == {live}
    log = worker.log.read_text()
    lines = [line for line in log.splitlines() if "refused" in line]
    assert len(lines) == len(broken), lines
    assert all(f"{live} keeps scoring" in line for line in lines), lines
    assert "Traceback" not in log
