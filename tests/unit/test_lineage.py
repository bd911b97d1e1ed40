"""Lineage and exactly-once pieces that need no broker: the model content hash, and the gate
that keeps a transaction's commit out of the middle of a delivery."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path

from models.registry import CONTENT_HASH, Registry, content_sha256, recorded_sha256
from streams.transactions import TransactionGate


def model_folder(root: Path) -> Path:
    folder = root / "model"
    (folder / "tokenizer").mkdir(parents=True)
    (folder / "config.json").write_text('{"hidden_size": 8}')
    (folder / "model.safetensors").write_bytes(b"\x00\x01weights")
    (folder / "tokenizer" / "vocab.txt").write_text("a\nb\n")
    (folder / "metadata.json").write_text(json.dumps({"domain": "news", "model_name": "m"}))
    return folder


def test_the_content_hash_follows_the_model_bytes_not_its_place_or_description(
    tmp_path: Path,
) -> None:
    folder = model_folder(tmp_path)
    digest = content_sha256(folder)
    assert len(digest) == 64
    moved = shutil.copytree(folder, tmp_path / "elsewhere")
    (moved / "metrics.json").write_text('{"accuracy": 0.9}')
    (moved / "metadata.json").write_text('{"domain": "news", "model_name": "renamed"}')
    assert content_sha256(moved) == digest
    (moved / "model.safetensors").write_bytes(b"\x00\x02weights")
    assert content_sha256(moved) != digest
    (moved / "model.safetensors").write_bytes(b"\x00\x01weights")
    (moved / "tokenizer" / "vocab.txt").rename(moved / "vocab.txt")  # same bytes, other path
    assert content_sha256(moved) != digest


def test_registering_records_the_hash_in_the_version_metadata(tmp_path: Path) -> None:
    folder = model_folder(tmp_path)
    registry = Registry(tmp_path / "registry")
    version = registry.register("news", folder)
    assert registry.metadata("news", version)[CONTENT_HASH] == content_sha256(folder)
    assert recorded_sha256(registry.version_dir("news", version)) == content_sha256(folder)


def test_a_commit_waits_for_deliveries_inside_and_keeps_new_ones_out() -> None:
    async def scenario() -> list[str]:
        gate = TransactionGate()
        order: list[str] = []
        inside = asyncio.Event()

        async def deliver(name: str, hold_s: float) -> None:
            async with gate.delivering():
                order.append(f"{name} in")
                inside.set()
                await asyncio.sleep(hold_s)
                order.append(f"{name} out")

        async def commit() -> None:
            async with gate.committing():
                order.append("commit")
                await asyncio.sleep(0.05)
                order.append("committed")

        first = asyncio.create_task(deliver("a", 0.1))
        await inside.wait()
        committing = asyncio.create_task(commit())
        await asyncio.sleep(0.01)
        late = asyncio.create_task(deliver("b", 0))
        await asyncio.gather(first, committing, late)
        return order

    assert asyncio.run(scenario()) == ["a in", "a out", "commit", "committed", "b in", "b out"]
