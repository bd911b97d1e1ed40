"""The model registry: versions appear whole, exactly one is live, promote and rollback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from models.errors import ModelNotFoundError, RegistryError
from models.registry import Registry


def model_folder(tmp_path: Path, tag: str) -> Path:
    folder = tmp_path / f"build-{tag}"
    folder.mkdir()
    (folder / "metadata.json").write_text(json.dumps({"domain": "news", "model_name": tag}))
    (folder / "model.safetensors").write_bytes(tag.encode())
    return folder


def test_register_promote_and_rollback(tmp_path: Path) -> None:
    registry = Registry(tmp_path / "registry")
    assert registry.live_version("news") is None
    with pytest.raises(ModelNotFoundError, match="no live news model"):
        registry.live_dir("news")

    first = registry.register("news", model_folder(tmp_path, "a"))
    second = registry.register("news", model_folder(tmp_path, "b"))
    staged = registry.register("news", model_folder(tmp_path, "c"), promote=False)
    assert (first, second, staged) == ("v1", "v2", "v3")
    assert registry.live_version("news") == "v2"
    assert (registry.version_dir("news", "v3") / "model.safetensors").read_bytes() == b"c"
    assert [(i.version, i.live) for i in registry.versions("news")] == [
        ("v1", False),
        ("v2", True),
        ("v3", False),
    ]
    assert registry.versions("news")[0].metadata["model_name"] == "a"

    registry.promote("news", "v3")
    assert registry.live_version("news") == "v3"
    assert registry.rollback("news") == "v2"
    assert registry.rollback("news") == "v1"
    assert registry.live_version("news") == "v1"
    with pytest.raises(RegistryError, match="no earlier live version"):
        registry.rollback("news")
    # Other domains are untouched, and nothing half-written is left behind.
    assert registry.live_version("tickets") is None
    leftovers = [p.name for p in (tmp_path / "registry" / "news").iterdir()]
    assert sorted(leftovers) == ["live.json", "versions"]


def test_live_pointer_is_plain_json(tmp_path: Path) -> None:
    registry = Registry(tmp_path)
    registry.register("sensors", model_folder(tmp_path, "a"))
    pointer = json.loads((tmp_path / "sensors" / "live.json").read_text())
    assert pointer == {"version": "v1", "history": ["v1"]}


def test_bad_operations_are_refused(tmp_path: Path) -> None:
    registry = Registry(tmp_path / "registry")
    registry.register("tickets", model_folder(tmp_path, "a"))
    with pytest.raises(RegistryError, match="no version 'v9'"):
        registry.promote("tickets", "v9")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(RegistryError, match="not a model folder"):
        registry.register("tickets", empty)
    with pytest.raises(RegistryError, match="invalid domain name"):
        registry.live_version("../weather")


def test_a_registration_killed_midway_leaves_no_version(tmp_path: Path) -> None:
    """A trainer killed while copying its model in leaves a staging folder, never a version:
    the version appears by one rename of the finished copy."""
    registry = Registry(tmp_path / "registry")
    registry.register("news", model_folder(tmp_path, "a"))
    half = tmp_path / "registry" / "news" / ".staging-killed"
    half.mkdir()
    (half / "config.json").write_text("{")  # what a kill mid-copy leaves
    assert [info.version for info in registry.versions("news")] == ["v1"]
    assert registry.register("news", model_folder(tmp_path, "b")) == "v2"
